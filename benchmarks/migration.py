"""
The migration benchmark: how long an operator's C{migrate} takes, and how
long a real SPICE client (spice-gtk) goes without a live picture, when a
connected client moves from a source server to a target, semi-seamlessly
(the default) and seamlessly (C{--seamless-migration} on both servers), for
spicesrv and for the reference SPICE server, QEMU's libspice-server, when
C{qemu-system-x86_64} is installed.

Each run uses fresh processes: a source, a target (a target accepts a
single migration) and a client.  The operator's part goes through each
server's QMP monitor, as in C{tests/interop/test_operator.py}:
C{client_migrate_info} on the source, then, once the client has
pre-connected to the target, C{migrate} to the target's C{--incoming}
address (QEMU: C{-incoming}).

Every time is the arrival of a QMP event (L{QMPClient}) or of a client
event (L{tests.interop.harness}) on the benchmark's reactor clock; time
zero is the moment QMP C{migrate} is written to the source's monitor.

- B{migrate}: until the source's MIGRATION C{{"status": "completed"}}
  event, and until its SPICE_MIGRATE_COMPLETED event (its clients have
  left).
- B{blackout}: from the client event closest to "the source told the client
  to switch" to the first complete frame the target drew on the client.

  The switch, as seen from the client (checked with C{SPICE_DEBUG=1}):

  - semi-seamless: C{agent-update}.  spice-gtk handles the source's
    MIGRATE_END by resetting its channels for the switch; the reset of the
    main channel clears the agent state, which emits C{main-agent-update}
    in the same main-loop dispatch (the debug log shows "migration message:
    migrate-end", then "agent connected: no", in the same millisecond).  It
    is the first client event after MIGRATE_END.  C{migration-state} goes
    back to NONE about a millisecond later, when the target's INIT has come
    on the swapped main channel.
  - seamless: C{migration-state} NONE.  The source sends SPICE_MSG_MIGRATE
    on every channel at once; spice-gtk answers each with FLUSH_MARK, reads
    the channel's MIGRATE_DATA and swaps the channel onto its pre-connected
    twin; the swap of the last channel sets the state back to NONE.  No
    client event marks the arrival of SPICE_MSG_MIGRATE itself; this one
    comes one client-source round trip after it (under a millisecond here).

  The frame, for spicesrv: the target's first C{display-invalidate} after
  the migration started, provided the client's primary then holds the
  source's picture (sha256; the target started with another picture, so
  only the migrated state makes it match).  spice-gtk keeps its primary
  surface through both kinds of switch and spicesrv's target redraws the
  same picture into it, so the pixels never change: only the invalidate
  tells when the target drew.  gtkclient coalesces invalidates: it emits
  them at once when a MARK (or a primary surface change) follows, else from
  a 100 ms GLib timer armed by the first invalidate after its previous
  firing (a MARK flushes without disarming it).

  - semi-seamless: the target sends SURFACE_CREATE, the whole picture and
    MARK: the invalidate comes with the mark, exact.
  - seamless: the target refreshes the inherited surface with one DRAW_COPY
    and no MARK: the invalidate comes from the timer.  The benchmark lets the
    display settle (L{QUIET}) before C{migrate}, so the refresh arms the
    timer; when the batch holds that one invalidate and nothing flushed in
    the 100 ms before, the draw happened 100 ms before the emission, to the
    GLib timer's precision (about a millisecond on an idle client).  Runs
    where that does not hold are reported apart, with the emission time (an
    upper bound).

  The frame, for QEMU: its target usually destroys and re-creates the
  client's primary surface and then draws the BIOS text screen in many
  small draws, one MARK early on, so the invalidates cannot time the end of
  the picture.  The benchmark polls the client's primary from the switch on
  (a C{primary} query with a dump, L{POLL} s apart: about 4 ms a cycle) and
  takes the reply of the first poll, after the client's last primary
  surface change, whose pixels equal the screen (QMP C{screendump} of the
  source just before C{migrate}, checked against the target's afterwards;
  at most one 9x16 text cell may differ: the BIOS cursor blinks).  That
  time is an upper bound; the frame was complete at most one poll cycle
  earlier (the output gives the median cycle).  Now and then (seamless)
  QEMU's target keeps the surface and only redraws the text into it, which
  changes no pixel: then the frame is its first draw, the first invalidate
  drawn after the source's MIGRATION completed event, timed as above
  ("timer, first of a burst": the draws of one QEMU display refresh arrive
  together).

The spicesrv pictures: a generated 1024x768 picture
(L{benchmarks.connect.makePicture}) shown with C{--source image:PATH} on
the source; the target starts with its mirror image.  QEMU: a BIOS-only VM
(C{-nodefaults -vga std}, no disk, 128 MiB), identical on both sides, at
its boot-menu prompt (720x400 text mode).
"""

import argparse
import json
import os
import re
import statistics
import sys

import numpy as np
from PIL import Image
from twisted.internet import defer, endpoints, error
from twisted.protocols.basic import LineOnlyReceiver

from benchmarks import BenchmarkError
from benchmarks import connect
from benchmarks.connect import (
    BIG, BIOS, HOST, KnownPicture, ServerProcess, afterwards,
    compareFrames, freePort, ms, primaryRGB, qemuVersion, sleep, twistdPath)
from tests.interop import harness

NAME = "migration"
DESCRIPTION = ("Migration of a live spice-gtk client between two server "
               "processes (QMP client_migrate_info + migrate): how long "
               "migrate takes and how long the client has no live picture, "
               "semi-seamless and seamless, spicesrv vs QEMU.")

#: Runs per variant when C{--runs} is not given (see benchmarks/run.py).
DEFAULT_RUNS = 10

#: The migration modes, in the order they are measured.
MODES = ("semi-seamless", "seamless")

#: gtkclient's invalidate coalescing delay (GLib.timeout_add(100, ...)).
COALESCE = 0.100
#: Events that make gtkclient emit its pending invalidates at once.
FLUSHERS = ("display-mark", "primary-create", "primary-destroy")

#: Seconds without display events before the migration starts, so that no
#: invalidate batch is pending in gtkclient (more than L{COALESCE}).
QUIET = 0.15
#: Seconds between two polls of the client's primary surface (QEMU).
POLL = 0.002
#: Seconds without a primary surface change after which QEMU's target is
#: taken to have settled on its surface.
SETTLE = 0.2

#: Seconds any step of a run may take.
STEP_TIMEOUT = 30
#: Seconds a source may take to report SPICE_MIGRATE_COMPLETED.  spicesrv's
#: source waits up to 10 s (libspice's MIGRATE_TIMEOUT) for its clients to
#: leave: such a run lingers in the background while the next ones run.
LINGER_TIMEOUT = 20
#: Seconds between runs.
PAUSE = 0.1


def addArguments(group):
    # Options every benchmark with a QEMU reference has: whichever module
    # registers them first (connect, when both run) owns them.
    def shared(*names, **options):
        try:
            group.add_argument(*names, **options)
        except argparse.ArgumentError:
            pass
    shared("--qemu", default=None, metavar="PATH",
           help="the QEMU binary for the reference figures (default: %s "
           "from PATH)" % (connect.QEMU_BINARY,))
    shared("--no-qemu", action="store_true",
           help="skip the reference (QEMU's libspice-server) figures")
    shared("--per-run", action="store_true",
           help="also print every run's figures")
    shared("--keep-temp", action="store_true",
           help="keep the temporary directory (pictures, server logs, "
           "dumps)")


# -- a QMP client on the reactor -------------------------------------------------

class QMPError(Exception):
    """A QMP command failed, or the monitor went away."""


class QMPClient(LineOnlyReceiver):
    """
    A small QMP client on the benchmark's reactor: commands return
    Deferreds; events are kept in L{events}, each stamped with its arrival
    (C{_time}, the reactor's clock, as the client harness stamps its events).
    """

    delimiter = b"\n"
    MAX_LENGTH = 16 * 1024 * 1024

    def __init__(self, reactor, name):
        self.reactor = reactor
        self.name = name
        self.greeted = defer.Deferred()
        self.events = []
        self._waiters = []
        self._pending = {}
        self._id = 0
        self.lost = False

    def lineReceived(self, line):
        now = self.reactor.seconds()
        try:
            message = json.loads(line)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        if "QMP" in message:
            if not self.greeted.called:
                self.greeted.callback(message)
        elif "event" in message:
            message["_time"] = now
            self.events.append(message)
            for waiter in list(self._waiters):
                predicate, d = waiter
                if predicate(message):
                    self._waiters.remove(waiter)
                    d.callback(message)
        elif "id" in message:
            d = self._pending.pop(message["id"], None)
            if d is None:
                return
            if "error" in message:
                d.errback(QMPError("%s: %s failed: %s" % (
                    self.name, d.command, message["error"].get("desc"))))
            else:
                d.callback(message.get("return"))

    def connectionLost(self, reason):
        self.lost = True
        why = QMPError("%s: the QMP connection was lost" % (self.name,))
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(why)
        waiters, self._waiters = self._waiters, []
        for _, d in waiters:
            d.errback(why)
        if not self.greeted.called:
            self.greeted.errback(why)

    def execute(self, command, arguments=None, timeout=STEP_TIMEOUT):
        """Send a command; fire with its C{return}, fail with L{QMPError}."""
        if self.lost:
            return defer.fail(QMPError("%s: the QMP connection is gone"
                                       % (self.name,)))
        self._id += 1
        request = {"execute": command, "id": self._id}
        if arguments:
            request["arguments"] = arguments
        d = defer.Deferred()
        d.command = command
        self._pending[self._id] = d
        self.transport.write(json.dumps(request).encode("utf-8") + b"\r\n")
        return self._timeout(d, "no answer to %s" % (command,), timeout)

    def waitEvent(self, name, match=None, since=0, timeout=STEP_TIMEOUT):
        """
        Fire with the first event called C{name} whose data has the items of
        C{match}, among C{events[since:]} and those to come.
        """
        def predicate(event):
            data = event.get("data") or {}
            return event["event"] == name and all(
                data.get(k) == v for k, v in (match or {}).items())
        for event in self.events[since:]:
            if predicate(event):
                return defer.succeed(event)
        if self.lost:
            return defer.fail(QMPError("%s: the QMP connection is gone"
                                       % (self.name,)))
        d = defer.Deferred()
        self._waiters.append((predicate, d))
        return self._timeout(d, "no %s event %s" % (
            name, json.dumps(match) if match else ""), timeout)

    def _timeout(self, d, what, timeout):
        def timedOut(result, t):
            self._waiters[:] = [w for w in self._waiters if w[1] is not d]
            raise BenchmarkError("%s: %s within %s s" % (self.name, what, t))
        return d.addTimeout(timeout, self.reactor, onTimeoutCancel=timedOut)

    def close(self):
        if not self.lost and self.transport is not None:
            self.transport.loseConnection()


@defer.inlineCallbacks
def connectQMP(reactor, path, name, process, timeout=STEP_TIMEOUT):
    """
    Connect to the QMP monitor at C{path} (retrying until it answers),
    negotiate capabilities, and fire with the L{QMPClient}.
    """
    deadline = reactor.seconds() + timeout
    while True:
        if not process.alive():
            raise BenchmarkError(
                "%s exited (status %s) before its QMP monitor answered" % (
                    process.name, process.popen.returncode))
        client = QMPClient(reactor, name)
        try:
            yield endpoints.connectProtocol(
                endpoints.UNIXClientEndpoint(reactor, path, timeout=5), client)
        except (error.ConnectError, OSError):
            if reactor.seconds() > deadline:
                raise BenchmarkError("%s: no QMP monitor at %s within %d s"
                                     % (name, path, timeout))
            yield sleep(reactor, 0.02)
            continue
        break
    yield client._timeout(client.greeted, "no QMP greeting", timeout)
    yield client.execute("qmp_capabilities")
    return client


# -- servers ---------------------------------------------------------------------

class Pair(object):
    """
    The source and the target of one run: processes, SPICE ports, QMP
    monitors, the target's incoming address.
    """

    def __init__(self, variant, tmpdir, run):
        self.variant = variant
        self.sourcePort = freePort()
        self.targetPort = freePort()
        self.incomingPort = freePort()
        # Every run has its own sockets: an earlier run may still linger.
        self.sourceQmpPath = os.path.join(tmpdir, "%s-%s-%s-s.qmp" % (
            variant.short, variant.mode, run))
        self.targetQmpPath = os.path.join(tmpdir, "%s-%s-%s-t.qmp" % (
            variant.short, variant.mode, run))
        for path in (self.sourceQmpPath, self.targetQmpPath):
            if os.path.exists(path):
                os.unlink(path)
        self.source = variant.makeServer(self, "source", run)
        self.target = variant.makeServer(self, "target", run)
        self.sourceQmp = None
        self.targetQmp = None

    @property
    def processes(self):
        return [self.source, self.target]

    @property
    def incomingURI(self):
        return "tcp:%s:%d" % (HOST, self.incomingPort)

    @defer.inlineCallbacks
    def start(self, reactor, children):
        for process in self.processes:
            children.servers.add(process)
            process.start()
        # Only the SPICE ports are probed: a connection to the incoming port
        # would be taken for a migration stream.
        for process in self.processes:
            yield process.waitListening(reactor)

    @defer.inlineCallbacks
    def connectMonitors(self, reactor):
        self.sourceQmp = yield connectQMP(reactor, self.sourceQmpPath,
                                          "source", self.source)
        self.targetQmp = yield connectQMP(reactor, self.targetQmpPath,
                                          "target", self.target)

    def stop(self, reactor, children):
        for qmp in (self.sourceQmp, self.targetQmp):
            if qmp is not None:
                qmp.close()
        ds = []
        for process in self.processes:
            children.servers.discard(process)
            ds.append(process.stop(reactor, 3))
        return defer.DeferredList(ds, consumeErrors=True)


class Variant(object):
    """
    One server (spicesrv or QEMU) in one migration mode, measured C{runs}
    times, each with fresh processes.
    """

    def __init__(self, server, short, mode, picture, size, makeServer,
                 makeExpected, reference=False):
        self.server = server            # "spicesrv", "QEMU 7.2.22"
        self.short = short              # for file names: "spicesrv", "qemu"
        self.mode = mode                # one of MODES
        self.picture = picture          # "generated", "BIOS screen"
        self.size = size
        self.makeServer = makeServer    # (pair, role, run) -> ServerProcess
        self.makeExpected = makeExpected  # (pair) -> SourcePicture/QemuScreen
        self.reference = reference
        self.samples = []
        self.commands = {}              # role -> command line
        self.clientVersion = None
        self.failed = None              # why the reference was dropped

    @property
    def seamless(self):
        return self.mode == "seamless"

    @property
    def name(self):
        return "%s %s" % (self.server, self.mode)

    @property
    def tag(self):
        return re.sub(r"[^A-Za-z0-9.]+", "-", self.name).strip("-").lower()


def spicesrvVariants(tmpdir):
    """
    spicesrv in both modes: a generated picture on the source, its mirror
    image on the target until the migrated state replaces it.
    """
    picture = connect.makePicture(*BIG)
    sourcePath = os.path.join(tmpdir, "source-%dx%d.png" % BIG)
    targetPath = os.path.join(tmpdir, "target-%dx%d.png" % BIG)
    picture.save(sourcePath)
    picture.transpose(Image.FLIP_LEFT_RIGHT).save(targetPath)
    rgb = np.asarray(picture)

    def makeServer(pair, role, run):
        variant = pair.variant
        argv = [twistdPath(), "-n", "--pidfile=", "spice", "--addr", HOST,
                "--disable-ticketing"]
        if variant.seamless:
            argv.append("--seamless-migration")
        if role == "source":
            port = pair.sourcePort
            argv += ["--port", str(port), "--qmp", "unix:" + pair.sourceQmpPath,
                     "--source", "image:" + sourcePath]
        else:
            port = pair.targetPort
            argv += ["--port", str(port), "--qmp", "unix:" + pair.targetQmpPath,
                     "--incoming", pair.incomingURI,
                     "--source", "image:" + targetPath]
        return ServerProcess(
            "spicesrv %s" % (role,), argv, port,
            os.path.join(tmpdir, "%s-%s-%s.log" % (variant.tag, run, role)),
            env={"PYTHONPATH": connect.REPO})

    def makeExpected(pair):
        return SourcePicture(rgb, tmpdir)

    return [Variant("spicesrv", "spicesrv", mode, "generated", BIG,
                    makeServer, makeExpected) for mode in MODES]


def qemuVariants(binary, version, tmpdir):
    """
    QEMU in both modes: the same BIOS-only VM on both sides, the target
    started with -incoming.
    """
    def makeServer(pair, role, run):
        variant = pair.variant
        port = pair.sourcePort if role == "source" else pair.targetPort
        spice = "port=%d,addr=%s,disable-ticketing=on" % (port, HOST)
        if variant.seamless:
            spice += ",seamless-migration=on"
        qmpPath = (pair.sourceQmpPath if role == "source"
                   else pair.targetQmpPath)
        argv = [binary, "-nodefaults", "-vga", "std", "-display", "none",
                "-spice", spice,
                "-boot", "menu=on,splash-time=%d" % (connect.SPLASH_MS,),
                "-qmp", "unix:%s,server=on,wait=off" % (qmpPath,)]
        if role == "target":
            argv += ["-incoming", pair.incomingURI]
        return ServerProcess(
            "QEMU %s" % (role,), argv, port,
            os.path.join(tmpdir, "%s-%s-%s.log" % (variant.tag, run, role)))

    def makeExpected(pair):
        return QemuScreen(pair, tmpdir)

    return [Variant("QEMU %s" % (version,), "qemu", mode, "BIOS screen",
                    BIOS, makeServer, makeExpected, reference=True)
            for mode in MODES]


# -- what the client must show, and when it shows it --------------------------------

class SourcePicture(KnownPicture):
    """
    spicesrv: the source's picture, exactly (sha256), before and after the
    migration; the target's frame is timed by its invalidate.
    """

    def prepare(self, reactor, pair):
        return defer.succeed(None)

    def beforeMigrate(self, pair, client):
        return defer.succeed(None)

    def checkBefore(self, reply):
        return defer.succeed(self.check(reply))

    checkAfter = checkBefore

    def frame(self, client, since, t0, completed):
        # The source's picture does not change: every invalidate after
        # migrate is the target's.
        return invalidateFrame(client, self, since, t0)

    def verifyAfter(self, client, pair):
        return defer.succeed(None)


class QemuScreen(object):
    """
    QEMU: its BIOS screen, which the client's primary must equal but for
    one text cell (the blinking cursor); the target's frame is timed by
    polling the client's primary.  Screendumps go through the benchmark's
    own monitor connections (QEMU serves one QMP client at a time).
    """

    def __init__(self, pair, tmpdir):
        self.pair = pair
        self.tmpdir = tmpdir
        self.dumpPath = os.path.join(tmpdir, "client-primary.raw")
        self.screenPath = os.path.join(tmpdir, "qemu-screen.ppm")
        self.screen = None

    @defer.inlineCallbacks
    def screendump(self, qmp):
        if os.path.exists(self.screenPath):
            os.unlink(self.screenPath)
        yield qmp.execute("screendump", {"filename": self.screenPath})
        with Image.open(self.screenPath) as picture:
            return np.array(picture.convert("RGB"))

    def prepare(self, reactor, pair):
        """
        Wait until the source shows the BIOS screen (720x400, not black,
        still but for the cursor), before the benchmark's own monitor
        connections: L{benchmarks.connect.QemuScreen} opens one for each
        screendump.
        """
        screen = connect.QemuScreen(pair.sourceQmpPath, self.tmpdir)
        return screen.waitSettled(reactor, BIOS)

    def primaryArgs(self):
        return {"dump": self.dumpPath}

    def match(self, reply, screen):
        got = primaryRGB(reply)
        if not got.any():
            return False, "primary is all black"
        return compareFrames(got, screen)

    @defer.inlineCallbacks
    def checkBefore(self, reply):
        screen = yield self.screendump(self.pair.sourceQmp)
        return self.match(reply, screen)

    @defer.inlineCallbacks
    def beforeMigrate(self, pair, client):
        """
        Take the screen the target must show.  The BIOS cursor blinks (a
        draw about every 270 ms): go on right after gtkclient has emitted
        one, so that no invalidate batch is pending when the migration
        starts (the source's VM stops before the next blink).
        """
        self.screen = yield self.screendump(pair.sourceQmp)
        try:
            yield client.waitForEvent(isInvalidate, timeout=1,
                                      since=len(client.events))
        except harness.HarnessTimeout:
            pass    # no blink: nothing is pending either

    def frame(self, client, since, t0, completed):
        return pollFrame(client, self, since, completed)

    @defer.inlineCallbacks
    def verifyAfter(self, client, pair):
        """The client's primary equals the target's own screen too."""
        reply = yield client.check("primary", dump=self.dumpPath)
        screen = yield self.screendump(pair.targetQmp)
        ok, note = self.match(reply, screen)
        if not ok:
            raise BenchmarkError("after the migration the client's primary "
                                 "differs from the target's screen: %s"
                                 % (note,))


def isInvalidate(event):
    return event["event"] == "display-invalidate" and event.get("id") == 0


def isDisplayEvent(event):
    return event["event"] in ("display-invalidate",) + FLUSHERS


def drawTime(events, index, quietAt=None, burst=False):
    """
    When the client drew what the invalidate at C{events[index]} reports:
    C{(time, how)}, C{how} being "mark" (flushed at once by the MARK or
    surface change that followed: exact), "timer" (flushed by the 100 ms
    timer, armed by this very invalidate: its arrival minus 100 ms) or
    "timer, upper bound" (a timer batch whose start is unknown: its
    arrival).  C{quietAt}: a time when no timer was pending (see
    L{waitQuiet}), if known.  With C{burst}, a timer batch of several
    invalidates counts as drawn when its first one armed the timer ("timer,
    first of a burst").
    """
    event = events[index]
    arrived = event["_time"]
    armed = arrived - COALESCE
    if quietAt is not None and armed < quietAt:
        # No timer armed after quietAt could have fired yet.
        return arrived, "mark"
    following = events[index + 1:index + 2]
    if (following and following[0]["event"] in FLUSHERS
            and following[0]["_time"] - arrived < 0.02):
        return arrived, "mark"
    flushed = [e for e in events[:index]
               if e["_time"] > armed and (e["event"] in FLUSHERS
                                          or isInvalidate(e))]
    if event.get("count") == 1 and not flushed:
        return armed, "timer"
    if burst and not flushed:
        return armed, "timer, first of a burst"
    return arrived, "timer, upper bound"


@defer.inlineCallbacks
def waitQuiet(client, reactor, quiet=QUIET):
    """
    Wait until the client has had no display event for C{quiet} seconds:
    no coalesced invalidate is pending in it then.
    """
    deadline = reactor.seconds() + STEP_TIMEOUT
    while True:
        last = max([e["_time"] for e in client.events if isDisplayEvent(e)]
                   or [0])
        left = last + quiet - reactor.seconds()
        if left <= 0:
            return
        if reactor.seconds() > deadline:
            raise BenchmarkError("the client's display did not stay still "
                                 "for %d ms" % (quiet * 1000,))
        yield sleep(reactor, left + 0.002)


class Frame(object):
    def __init__(self, time, how, note, resolution=None):
        self.time = time
        self.how = how
        self.note = note
        self.resolution = resolution


@defer.inlineCallbacks
def invalidateFrame(client, expected, since, notBefore):
    """
    spicesrv: fire with the L{Frame} of the first invalidate at or after
    C{client.events[since]} drawn after C{notBefore} (when no invalidate was
    pending in the client) and after which the primary holds the expected
    picture.
    """
    deadline = client.reactor.seconds() + STEP_TIMEOUT
    index = since
    while True:
        try:
            event, i = yield connect.nextEvent(client, isInvalidate, index,
                                               deadline)
        except harness.HarnessTimeout:
            why = yield expected.diagnose(client)
            raise BenchmarkError("no frame from the target within %d s: %s"
                                 % (STEP_TIMEOUT, why))
        index = i + 1
        reply = yield client.command("primary", **expected.primaryArgs())
        # Every invalidate the client emitted before answering is logged by
        # now; the picture it answered with was complete at the latest one.
        for j in range(len(client.events) - 1, i, -1):
            if isInvalidate(client.events[j]):
                i = j
                break
        drawn, how = drawTime(client.events, i, notBefore)
        if drawn < notBefore or not reply.get("ok"):
            continue
        ok, note = yield expected.checkAfter(reply)
        if ok:
            return Frame(drawn, how, note)


@defer.inlineCallbacks
def pollFrame(client, expected, since, completed):
    """
    QEMU: poll the client's primary (with a dump) until it equals
    C{expected.screen} after the last primary surface change since
    C{client.events[since]}, and no change has come for L{SETTLE} s; fire
    with the L{Frame} of the first matching poll after that change.

    Most of the time QEMU's target re-creates the surface (the client's
    picture goes black) and redraws the screen.  Sometimes it only redraws
    the text into the surface the client kept, which changes no pixel: then
    the frame is the target's first draw, the first invalidate drawn after
    C{completed} (the source's VM stopped before it).  Its draws come in one
    burst from one display refresh of QEMU's, and gtkclient emits them
    together from its timer: the benchmark takes the time of the first.
    """
    reactor = client.reactor
    start = reactor.seconds()
    deadline = start + STEP_TIMEOUT
    polls = []          # (reply time, events logged before the reply, ok)
    while True:
        reply = yield client.command("primary", **expected.primaryArgs())
        answered, seen = reactor.seconds(), len(client.events)
        ok = bool(reply.get("ok")) and expected.match(
            reply, expected.screen)[0]
        polls.append((answered, seen, ok))
        changes = [i for i in range(since, seen)
                   if client.events[i]["event"] in ("primary-create",
                                                    "primary-destroy")]
        if changes:
            last = changes[-1]
            lastTime = client.events[last]["_time"]
            after = [p for p in polls if p[1] > last]
            hits = [p for p in after if p[2]]
            if hits and answered - lastTime >= SETTLE:
                first = hits[0]
                before = [p for p in polls if p[0] < first[0]]
                resolution = first[0] - max(before[-1][0] if before else start,
                                            lastTime)
                return Frame(first[0], "poll", "equal to the screen",
                             resolution)
        elif ok and answered - start >= SETTLE:
            for i in range(since, seen):
                event = client.events[i]
                if isInvalidate(event) and event["_time"] >= completed:
                    drawn, how = drawTime(client.events, i, burst=True)
                    if drawn < completed:
                        # A batch begun on the source: the target's draws
                        # are in it, at some time before it arrived.
                        drawn, how = event["_time"], "timer, upper bound"
                    return Frame(drawn, how, "equal to the screen "
                                 "(the client kept its surface)")
        if reactor.seconds() > deadline:
            raise BenchmarkError(
                "the client's primary did not settle on the target's screen "
                "within %d s; its events since migrate:\n%s" % (
                    STEP_TIMEOUT, describeEvents(client.events[since:],
                                                 start)))
        yield sleep(reactor, POLL)


def describeEvents(events, start, limit=40):
    """Events as lines of ms from C{start} and JSON, for error messages."""
    lines = []
    for event in events[:limit]:
        event = dict(event)
        at = event.pop("_time")
        lines.append("  %+8.1f ms %s" % (ms(at - start),
                                         json.dumps(event, sort_keys=True)))
    if len(events) > limit:
        lines.append("  ... %d more" % (len(events) - limit,))
    return "\n".join(lines)


def switchPredicate(seamless):
    """The client event that stands for "the source told me to switch"."""
    if seamless:
        def switched(event):
            return event["event"] == "migration-state" and event["state"] == 0
    else:
        def switched(event):
            return event["event"] == "agent-update"
    return switched


# -- one run ---------------------------------------------------------------------

class Sample(object):
    def __init__(self, **fields):
        self.__dict__.update(fields)


@defer.inlineCallbacks
def measureOnce(reactor, variant, run, tmpdir, children):
    """
    One migration with fresh servers and a fresh client.  Fire with
    C{(sample, lingering)}: C{lingering} is L{None}, or, when the source has
    not yet reported SPICE_MIGRATE_COMPLETED, a Deferred that fills the
    sample's C{spiceCompleted} once it has, and stops the run's processes.
    """
    pair = Pair(variant, tmpdir, run)
    variant.commands = {"source": pair.source.commandLine(),
                        "target": pair.target.commandLine()}
    state = {}

    def stop():
        ds = []
        client = state.get("client")
        if client is not None:
            children.clients.discard(client)
            ds.append(client.stop(5))
        ds.append(pair.stop(reactor, children))
        return defer.DeferredList(ds, consumeErrors=True)

    def explain(failure):
        failure.trap(harness.GtkClientError, harness.HarnessTimeout,
                     BenchmarkError, QMPError)
        dead = ["\n%s exited; its log:\n%s" % (p.name, p.logTail())
                for p in pair.processes
                if p.popen is not None and not p.alive()]
        raise BenchmarkError("%s, run %s: %s%s" % (
            variant.name, run, failure.value, "".join(dead)))

    d = _measure(reactor, variant, pair, state, children)
    d.addErrback(explain)
    d.addErrback(lambda f: afterwards(defer.fail(f), stop))
    sample, qmpSince, t0 = yield d

    def completed(event):
        sample.spiceCompleted = event["_time"] - t0
    done = pair.sourceQmp.waitEvent("SPICE_MIGRATE_COMPLETED", since=qmpSince,
                                    timeout=LINGER_TIMEOUT)
    done.addCallback(completed)
    done.addErrback(explain)
    finished = afterwards(done, stop)
    if finished.called:
        yield finished
        return sample, None
    return sample, finished


@defer.inlineCallbacks
def _measure(reactor, variant, pair, state, children):
    yield pair.start(reactor, children)
    expected = variant.makeExpected(pair)
    yield expected.prepare(reactor, pair)
    yield pair.connectMonitors(reactor)
    if variant.reference:
        # QEMU sends MIGRATION events only when asked to.
        yield pair.sourceQmp.execute("migrate-set-capabilities", {
            "capabilities": [{"capability": "events", "state": True}]})
    client = yield harness.GtkClient.start(reactor, HOST, pair.sourcePort)
    state["client"] = client
    children.clients.add(client)
    variant.clientVersion = next((e.get("version") for e in client.events
                                  if e["event"] == "ready"), None)
    yield client.waitForChannelsOpened(connect.CHANNEL_TYPES,
                                       timeout=STEP_TIMEOUT)
    # The client shows the source's picture...
    deadline = reactor.seconds() + STEP_TIMEOUT
    while True:
        reply = yield client.command("primary", **expected.primaryArgs())
        if reply.get("ok"):
            ok, note = yield expected.checkBefore(reply)
            if ok:
                break
        if reactor.seconds() > deadline:
            raise BenchmarkError("the client did not show the source's "
                                 "picture within %d s" % (STEP_TIMEOUT,))
        yield sleep(reactor, 0.02)
    # ... and pre-connects to the target (migration-state MIGRATING).
    since = len(client.events)
    infoSent = reactor.seconds()
    yield pair.sourceQmp.execute("client_migrate_info", {
        "protocol": "spice", "hostname": HOST, "port": pair.targetPort})
    migrating = yield client.waitForEvent(
        {"event": "migration-state", "state": 2}, timeout=STEP_TIMEOUT,
        since=since)
    preconnect = migrating["_time"] - infoSent
    yield waitQuiet(client, reactor)
    yield expected.beforeMigrate(pair, client)

    # The migration.
    since = len(client.events)
    qmpSince = len(pair.sourceQmp.events)
    t0 = reactor.seconds()
    yield pair.sourceQmp.execute("migrate", {"uri": pair.incomingURI})
    completed = yield pair.sourceQmp.waitEvent(
        "MIGRATION", {"status": "completed"}, since=qmpSince)
    switch = yield client.waitForEvent(switchPredicate(variant.seamless),
                                       timeout=STEP_TIMEOUT, since=since)
    frame = yield expected.frame(client, since, t0, completed["_time"])
    yield expected.verifyAfter(client, pair)
    # Where the client ended up, and how it got there.
    reply = yield client.check("channels")
    peers = {c["peer"] for c in reply["channels"]}
    if peers != {"%s:%d" % (HOST, pair.targetPort)}:
        raise BenchmarkError("after the migration the client's channels are "
                             "connected to %s, not only to the target port %d"
                             % (", ".join(sorted(map(str, peers))),
                                pair.targetPort))
    after = client.events[since:]
    if any(e["event"] == "disconnected" for e in after):
        raise BenchmarkError("the client's session was disconnected")
    noneAt = next((e["_time"] for e in after
                   if e["event"] == "migration-state" and e["state"] == 0),
                  None)
    sample = Sample(
        preconnect=preconnect,
        completed=completed["_time"] - t0,
        spiceCompleted=None,
        switch=switch["_time"] - t0,
        stateNone=None if noneAt is None else noneAt - t0,
        frame=frame.time - t0,
        blackout=frame.time - switch["_time"],
        how=frame.how, note=frame.note, resolution=frame.resolution,
        surfaceEvents=sorted({e["event"] for e in after
                              if e["event"].startswith("primary-")}))
    return sample, qmpSince, t0


@defer.inlineCallbacks
def measureAll(reactor, variants, args, tmpdir, children):
    """
    Warm-up runs first (not counted), then rounds of one run per variant,
    the order rotating from round to round.  A run whose source has not
    reported SPICE_MIGRATE_COMPLETED yet lingers while the next ones run.
    """
    lingering = []

    @defer.inlineCallbacks
    def one(variant, run):
        try:
            sample, linger = yield measureOnce(reactor, variant, run, tmpdir,
                                               children)
        except BenchmarkError as e:
            if not variant.reference:
                raise
            # The reference failing leaves spicesrv's figures valid.
            variant.failed = str(e)
            print("\n  %s FAILED, no reference figures for it: %s" % (
                variant.name, e))
            return None
        if linger is not None:
            lingering.append(linger)
        yield sleep(reactor, PAUSE)
        return sample

    for variant in variants:
        for i in range(args.warmup):
            if not variant.failed:
                yield one(variant, "warm-up %d" % (i + 1,))
    sys.stdout.write("  %d variants x %d runs, interleaved; round:"
                     % (len(variants), args.runs))
    sys.stdout.flush()
    for r in range(args.runs):
        k = r % len(variants)
        for variant in variants[k:] + variants[:k]:
            if variant.failed:
                continue
            sample = yield one(variant, str(r + 1))
            if sample is not None:
                variant.samples.append(sample)
        sys.stdout.write(" %d" % (r + 1,))
        sys.stdout.flush()
    print()
    if lingering:
        print("  waiting for %d source(s) to report SPICE_MIGRATE_COMPLETED"
              % (len(lingering),))
        results = yield defer.DeferredList(lingering, consumeErrors=True)
        for ok, result in results:
            if not ok:
                raise BenchmarkError(result.getErrorMessage())


# -- output ------------------------------------------------------------------------

def triple(values):
    values = [ms(v) for v in values]
    if not values:
        return "%7s %7s %7s" % ("-", "-", "-")
    return "%7.1f %7.1f %7.1f" % (statistics.median(values), min(values),
                                  max(values))


def printTable(variants):
    print("%-12s %-13s %-20s | %-23s | %-23s | %-23s | %4s" % (
        "server", "mode", "picture", "migrate: completed ms",
        "migrate: SPICE_MIG_COMPL", "blackout ms", "runs"))
    sub = "%-12s %-13s %-20s |%s |%s |%s |" % (
        "", "", "", "  median     min     max", "  median     min     max",
        "  median     min     max")
    print(sub)
    print("-" * (len(sub) + 5))
    for v in variants:
        if not v.samples:
            continue
        print("%-12s %-13s %-20s | %s | %s | %s | %4d" % (
            v.server, v.mode, "%dx%d %s" % (v.size + (v.picture,)),
            triple(s.completed for s in v.samples),
            triple(s.spiceCompleted for s in v.samples
                   if s.spiceCompleted is not None),
            triple(s.blackout for s in v.samples), len(v.samples)))


TIMELINE = [
    ("MIGRATION", "completed"),
    ("switch", "switch"),
    ("NONE", "stateNone"),
    ("frame", "frame"),
    ("SPICE_MC", "spiceCompleted"),
]


def printTimeline(variants):
    print("median ms from client_migrate_info to the client's pre-connection, "
          "then from QMP migrate to each step:")
    print("%-12s %-13s | %11s | %s" % (
        "server", "mode", "pre-connect",
        " ".join("%9s" % (name,) for name, _ in TIMELINE)))
    for v in variants:
        if not v.samples:
            continue
        cells = []
        for _, field in TIMELINE:
            values = [getattr(s, field) for s in v.samples
                      if getattr(s, field) is not None]
            cells.append("%9.1f" % ms(statistics.median(values))
                         if values else "%9s" % "-")
        print("%-12s %-13s | %11.1f | %s" % (
            v.server, v.mode,
            ms(statistics.median(s.preconnect for s in v.samples)),
            " ".join(cells)))


def printNotes(variants, args, qemuSkipped):
    print()
    print("What is measured (times: arrival of QMP events and client events "
          "on the benchmark's clock; zero: QMP `migrate` written):")
    print("  migrate: completed        until the source's MIGRATION "
          "{status: completed} event.")
    print("  migrate: SPICE_MIG_COMPL  until the source's "
          "SPICE_MIGRATE_COMPLETED event (its clients have left it).")
    print("  blackout                  from the client's switch event to "
          "the target's first complete frame on the client.")
    print("    switch, semi-seamless:  `agent-update`: spice-gtk emits it "
          "while handling the source's MIGRATE_END (the main")
    print("                            channel's reset for the switch); "
          "the first client event after MIGRATE_END.")
    print("    switch, seamless:       `migration-state` NONE: the last "
          "channel has swapped onto the target, one client-source")
    print("                            round trip (FLUSH_MARK -> "
          "MIGRATE_DATA) after SPICE_MSG_MIGRATE arrived.")
    print("    frame, spicesrv:        the target's invalidate after which "
          "the primary's sha256 is the source's picture (the")
    print("                            target started with another one). "
          "'mark': it came with the MARK that follows the")
    print("                            whole surface: exact. 'timer': "
          "gtkclient's 100 ms coalescing timer emitted it and it")
    print("                            armed that timer: drawn 100 ms "
          "before it arrived (GLib timer precision, ~1 ms).")
    print("    frame, QEMU:            the first poll of the client's "
          "primary (dump), after its last surface re-creation,")
    print("                            that equals the screen (but for the "
          "blinking cursor's cell): an upper bound, one")
    print("                            poll cycle of resolution.")
    for v in variants:
        if not v.samples:
            continue
        hows = {}
        for s in v.samples:
            hows[s.how] = hows.get(s.how, 0) + 1
        resolution = [s.resolution for s in v.samples
                      if s.resolution is not None]
        print("  %s: frame timed by %s%s; verified: %s; client surface "
              "events after migrate: %s" % (
                  v.name, ", ".join("%s in %d/%d runs" % (
                      how, n, len(v.samples)) for how, n in sorted(
                          hows.items())),
                  "" if not resolution else
                  " (median poll cycle %.1f ms)" % (
                      ms(statistics.median(resolution)),),
                  ", ".join(sorted(set(s.note for s in v.samples))),
                  ", ".join(sorted(set(e for s in v.samples
                                       for e in s.surfaceEvents)))
                  or "none"))
    for v in variants:
        if v.samples:
            print("  %s: blackout of every run, sorted (ms): %s" % (
                v.name, " ".join("%.1f" % ms(b) for b in sorted(
                    s.blackout for s in v.samples))))
    print("  timeline: pre-connect is client_migrate_info -> the client's "
          "migration-state MIGRATING (pre-connected, answered")
    print("  the source); the rest are medians from `migrate`.  Runs are "
          "interleaved, one per variant per round.")
    for v in variants:
        if v.failed:
            print("reference: %s FAILED: %s" % (v.name, v.failed))
    if qemuSkipped:
        print("reference: %s" % (qemuSkipped,))
    print()
    versions = sorted(set(v.clientVersion for v in variants
                          if v.clientVersion))
    print("client: spice-gtk %s via %s %s, a fresh process per run; "
          "servers: a fresh source and target per run; %d warm-up run(s) per "
          "variant not counted." % (
              "/".join(versions) or "?", harness.findGtkClient(),
              os.path.relpath(harness.GTKCLIENT, connect.REPO), args.warmup))
    print("servers (PORT: free loopback ports; pictures and QMP sockets in "
          "the temporary directory):")
    for v in variants:
        for role in ("source", "target"):
            command = v.commands.get(role)
            if command is not None:
                print("  %s, %s: %s" % (v.name, role, generalize(command)))


def generalize(command):
    command = re.sub(r"(--port |port=)\d+", r"\1PORT", command)
    command = re.sub(r"tcp:127\.0\.0\.1:\d+", "tcp:127.0.0.1:PORT", command)
    command = re.sub(r"image:\S+/", "image:", command)
    command = re.sub(r"unix:\S+/[^/]*-([st])\.qmp", r"unix:\1.qmp", command)
    return command


def printPerRun(variants):
    for v in variants:
        if not v.samples:
            continue
        print("  %s:" % (v.name,))
        for i, s in enumerate(v.samples):
            print("    run %2d: pre-connect %6.1f | completed %6.1f, "
                  "SPICE_MIGRATE_COMPLETED %8.1f, switch %6.1f, frame %6.1f "
                  "(%s): blackout %6.1f ms" % (
                      i + 1, ms(s.preconnect), ms(s.completed),
                      ms(s.spiceCompleted), ms(s.switch), ms(s.frame),
                      s.how, ms(s.blackout)))


# -- the benchmark -------------------------------------------------------------------

def run(reactor, args):
    """
    Run the benchmark and print its tables; fire when done and every server
    and client has stopped.
    """
    return connect.startBenchmark(reactor, args, NAME, "spicesrv-mig-", _run)


@defer.inlineCallbacks
def _run(reactor, args, qemu, qemuSkipped, tmpdir, children):
    variants = spicesrvVariants(tmpdir)
    if qemu is not None:
        variants += qemuVariants(qemu, qemuVersion(qemu), tmpdir)
    yield measureAll(reactor, variants, args, tmpdir, children)
    print()
    printTable(variants)
    print()
    printTimeline(variants)
    printNotes(variants, args, qemuSkipped)
    if args.per_run:
        print()
        print("per run (ms from QMP migrate):")
        printPerRun(variants)


if __name__ == "__main__":
    from benchmarks import run as _runner
    _runner.main([NAME] + sys.argv[1:])
