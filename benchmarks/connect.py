"""
The connect benchmark: how long a real SPICE client (spice-gtk) takes, from
the moment it is told to connect, to

1. have all four channels (main, display, inputs, cursor) report
   C{SPICE_CHANNEL_OPENED} (the "link" figure), and
2. hold the complete first picture in its primary surface (the "first
   frame" figure),

against spicesrv (with LZ4 images and with raw bitmaps) and against the
reference SPICE server, QEMU's libspice-server, when C{qemu-system-x86_64} is
installed.

How it measures (the same for every server):

- Each server is started once per variant, as a subprocess on a free
  loopback port; the benchmark waits until the port accepts connections
  (and, for QEMU, until its BIOS screen has settled).  All of them keep
  running until the end: after one warm-up run each (not counted), the runs
  go in rounds, one run per variant per round, in an order that rotates,
  so that load changes on the machine spread over all variants alike.
- Each run is a fresh client process (C{tests/interop/gtkclient.py} under
  Debian's Python, through L{tests.interop.harness.GtkClient}) started with
  C{--no-autoconnect}, so that process start-up is not measured.  Time zero
  is the moment the C{connect} command is written to the client's stdin.
- The client's events carry no timestamp: the harness stamps each on arrival
  (C{_time}, the reactor's clock).  The pipe adds well under a millisecond,
  the same for every server.
- The client's C{display-invalidate} events are coalesced for up to 100 ms
  by the test client; the benchmark asks it (C{watch invalidates}) for
  every invalidate at once as well (C{invalidate-now}), and times the
  first frame by those, so that the coalescing never delays it.
- First frame = the arrival of the last C{invalidate-now} received
  before a C{primary} query whose answer equals the expected picture (one
  query after each invalidate).  For spicesrv the expected picture is the
  one it was given (a generated picture, or QEMU's captured BIOS screen), and
  equality is the sha256 of the client's primary against the picture as
  BGRX.  For QEMU it is QEMU's own framebuffer, taken with the QMP
  C{screendump} command right after the query, equal pixel for pixel except
  possibly one 9x16 text cell (the BIOS screen's blinking cursor).
"""

import atexit
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image, ImageDraw
from twisted.internet import defer, task

from benchmarks import BenchmarkError
from tests.interop import harness

NAME = "connect"
DESCRIPTION = ("Link time for all channels and time to the first complete "
               "frame, with a real spice-gtk client, spicesrv vs QEMU.")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"

#: main, display, inputs, cursor
CHANNEL_TYPES = (1, 2, 3, 4)

#: The generated picture's sizes: the benchmark's own, and QEMU's BIOS
#: screen (VGA text mode) for a like-for-like comparison.
BIG = (1024, 768)
BIOS = (720, 400)

#: A text cell of the VGA text mode QEMU's BIOS screen uses: the blinking
#: cursor may differ between the client's copy and a later screendump.
TEXT_CELL = (9, 16)

#: Seconds a run may take to link and show its first frame.
RUN_TIMEOUT = 30
#: Seconds between runs, so the server has finished with the last session.
PAUSE = 0.2
#: Seconds a server has to start listening.
START_TIMEOUT = 30
#: How long QEMU's BIOS shows its boot-menu prompt (QEMU's maximum is
#: 65535): all the benchmark's runs against QEMU see that same screen.
SPLASH_MS = 60000

QEMU_BINARY = "qemu-system-x86_64"


def addArguments(group):
    group.add_argument(
        "--qemu", default=None, metavar="PATH",
        help="the QEMU binary for the reference figures (default: %s from "
        "PATH)" % (QEMU_BINARY,))
    group.add_argument(
        "--no-qemu", action="store_true",
        help="skip the reference (QEMU's libspice-server) figures")
    group.add_argument(
        "--no-browser", action="store_true",
        help="skip the browser figures (spice-html5 in headless Chromium)")
    group.add_argument(
        "--baseline", default=None, metavar="DIR",
        help="also measure the native link against the spicesrv in this "
        "checkout (e.g. one without WebSocket detection: git archive "
        "COMMIT | tar -x -C DIR), interleaved with the current one")
    group.add_argument(
        "--per-run", action="store_true",
        help="also print every run's figures")
    group.add_argument(
        "--keep-temp", action="store_true",
        help="keep the temporary directory (pictures, server logs, dumps)")


# -- pictures ------------------------------------------------------------------

def makePicture(width, height):
    """
    A deterministic RGB test picture: colour gradients and a few shapes with
    hard edges, so that a wrong or missing strip shows in the hash.
    """
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[..., 0] = x * 255 // max(1, width - 1)
    rgb[..., 1] = y * 255 // max(1, height - 1)
    rgb[..., 2] = (x + 2 * y) % 256
    picture = Image.fromarray(rgb, "RGB")
    draw = ImageDraw.Draw(picture)
    w, h = width, height
    draw.rectangle([w // 16, h // 12, w // 3, h // 3], fill=(255, 255, 255),
                   outline=(0, 0, 0), width=3)
    draw.ellipse([w // 2, h // 8, w * 7 // 8, h // 2], fill=(200, 30, 40))
    draw.polygon([(w // 10, h * 9 // 10), (w // 3, h // 2),
                  (w // 2, h * 9 // 10)], fill=(20, 40, 160))
    for i in range(0, w, max(1, w // 32)):
        draw.line([(i, h * 3 // 4), (w - 1 - i, h - 1)],
                  fill=(i % 256, 255 - i % 256, 128), width=1)
    draw.rectangle([w * 5 // 8, h * 5 // 8, w * 15 // 16, h * 15 // 16],
                   fill=(0, 0, 0))
    return picture


def bgrxHashes(rgb):
    """
    The sha256 digests the client's primary surface has when it holds
    C{rgb} (an (h, w, 3) array): 32-bit little-endian xRGB, i.e. bytes B, G,
    R, X, with X (which no one reads) either 0xff, as spicesrv sends, or 0.
    """
    frame = np.empty(rgb.shape[:2] + (4,), np.uint8)
    frame[..., :3] = rgb[..., ::-1]
    digests = set()
    for pad in (0xff, 0):
        frame[..., 3] = pad
        digests.add(hashlib.sha256(frame.tobytes()).hexdigest())
    return digests


def compareFrames(got, want):
    """
    Compare two (h, w, 3) RGB arrays.  Return C{(ok, note)}: equal, or
    differing only inside one text cell (a blinking text cursor).
    """
    if got.shape != want.shape:
        return False, "%dx%d, expected %dx%d" % (
            got.shape[1], got.shape[0], want.shape[1], want.shape[0])
    diff = np.any(got != want, axis=-1)
    count = int(diff.sum())
    if count == 0:
        return True, "exact"
    ys, xs = np.nonzero(diff)
    box = (int(xs.min()), int(ys.min()),
           int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
    if box[2] <= TEXT_CELL[0] and box[3] <= TEXT_CELL[1]:
        return True, "equal but the text cursor cell"
    return False, "%d pixels differ within %dx%d at (%d, %d)" % (
        count, box[2], box[3], box[0], box[1])


def primaryRGB(reply):
    """The RGB pixels of a C{primary} reply that has a C{dump}."""
    return np.array(harness.loadPrimary(reply)[..., 2::-1])


# -- child processes -----------------------------------------------------------

def freePort():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((HOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def sleep(reactor, seconds):
    return task.deferLater(reactor, seconds, lambda: None)


def afterwards(d, cleanup):
    """
    Run C{cleanup()} (which may return a Deferred) once C{d} has fired,
    whatever its result, then pass that result on.  Used instead of a
    C{finally} clause with a C{yield} in a generator, which an abandoned
    generator (after Ctrl-C) cannot run.
    """
    def both(result):
        done = defer.maybeDeferred(cleanup)
        done.addErrback(lambda f: sys.stderr.write(
            "cleanup failed: %s\n" % (f.getErrorMessage(),)))
        done.addCallback(lambda _: result)
        return done
    return d.addBoth(both)


def processCPU(pid):
    """User + system CPU seconds of process C{pid} (all its threads)."""
    try:
        with open("/proc/%d/stat" % (pid,)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid):
    """The process ids under C{pid}, from /proc's children lists."""
    found = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir("/proc/%d/task" % (parent,))
        except OSError:
            continue
        for thread in tasks:
            try:
                with open("/proc/%d/task/%s/children" % (parent, thread)) as f:
                    children = [int(c) for c in f.read().split()]
            except (OSError, ValueError):
                continue
            found += children
            todo += children
    return found


class ServerProcess(object):
    """
    A SPICE server subprocess (spicesrv's twistd or QEMU) listening on
    C{port}; its output goes to C{logPath}.
    """

    def __init__(self, name, argv, port, logPath, env=None):
        self.name = name
        self.argv = argv
        self.port = port
        self.logPath = logPath
        self.env = env
        self.popen = None

    def commandLine(self):
        prefix = ""
        if self.env:
            prefix = "".join("%s=%s " % (k, shlex.quote(v))
                             for k, v in sorted(self.env.items())
                             if os.environ.get(k) != v)
        return prefix + " ".join(shlex.quote(a) for a in self.argv)

    def start(self):
        env = dict(os.environ)
        env.update(self.env or {})
        with open(self.logPath, "ab") as log:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=env, cwd=REPO)

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def logTail(self, chars=3000):
        try:
            with open(self.logPath, "rb") as f:
                data = f.read()
        except OSError:
            return "(no log)"
        return data[-chars:].decode("utf-8", "replace") or "(empty log)"

    @defer.inlineCallbacks
    def waitListening(self, reactor, timeout=START_TIMEOUT):
        deadline = reactor.seconds() + timeout
        while True:
            if not self.alive():
                raise BenchmarkError(
                    "%s exited (status %s) before listening on port %d; "
                    "command: %s\nlog:\n%s" % (
                        self.name, self.popen.returncode, self.port,
                        self.commandLine(), self.logTail()))
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                pass
            if reactor.seconds() > deadline:
                raise BenchmarkError(
                    "%s did not listen on port %d within %d s; command: %s\n"
                    "log:\n%s" % (self.name, self.port, timeout,
                                  self.commandLine(), self.logTail()))
            yield sleep(reactor, 0.05)

    def cpuSeconds(self):
        """
        User + system CPU seconds the process and its living descendants
        (spicesrv's key workers) have used so far.
        """
        total = processCPU(self.pid)
        if total is None:
            return None
        for child in descendants(self.pid):
            total += processCPU(child) or 0.0
        return total

    @defer.inlineCallbacks
    def stop(self, reactor, timeout=5):
        """SIGTERM, then SIGKILL if it has not exited after C{timeout} s."""
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGTERM)
        deadline = reactor.seconds() + timeout
        while self.alive() and reactor.seconds() < deadline:
            yield sleep(reactor, 0.05)
        if self.alive():
            self.popen.kill()
            self.popen.wait()

    def killNow(self):
        if self.alive():
            self.popen.kill()
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                pass


class Children(object):
    """
    Every process this benchmark started and has not yet stopped, so that
    they all go away at the end, on error and on Ctrl-C (reactor shutdown),
    and even if the reactor never gets to shut down (atexit).
    """

    def __init__(self):
        self.servers = set()
        self.clients = set()

    def stopAll(self, reactor):
        ds = [defer.maybeDeferred(c.stop, 3) for c in list(self.clients)]
        ds += [s.stop(reactor, 3) for s in list(self.servers)]
        self.clients.clear()
        self.servers.clear()
        return defer.DeferredList(ds, consumeErrors=True)

    def killNow(self):
        for client in list(self.clients):
            if not client.ended and client.pid:
                try:
                    os.kill(client.pid, signal.SIGKILL)
                except OSError:
                    pass
        for server in list(self.servers):
            server.killNow()


# -- QEMU ----------------------------------------------------------------------

def qmpScreendump(path, filename, timeout=10):
    """
    Ask the QEMU whose QMP socket is at C{path} to write its screen to
    C{filename} (PPM) and return it as an (h, w, 3) RGB array.
    """
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        f = s.makefile("rwb")
        f.readline()                        # the greeting

        def call(command, **arguments):
            f.write(json.dumps({"execute": command,
                                "arguments": arguments}).encode() + b"\n")
            f.flush()
            while True:
                line = f.readline()
                if not line:
                    raise BenchmarkError("QMP connection closed during %s"
                                         % (command,))
                reply = json.loads(line)
                if "return" in reply:
                    return reply["return"]
                if "error" in reply:
                    raise BenchmarkError("QMP %s failed: %s" % (
                        command, reply["error"]))
                # anything else is an asynchronous event: skip it
        call("qmp_capabilities")
        call("screendump", filename=filename)
    finally:
        s.close()
    with Image.open(filename) as picture:
        return np.array(picture.convert("RGB"))


def qemuVersion(binary):
    try:
        out = subprocess.run([binary, "--version"], capture_output=True,
                             text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    match = re.search(r"version ([0-9][0-9.]*)", out)
    return match.group(1) if match else "?"


# -- what the client must show -------------------------------------------------

class KnownPicture(object):
    """
    spicesrv shows a picture the benchmark has: the client's primary must
    have its sha256.
    """

    def __init__(self, rgb, tmpdir):
        self.rgb = rgb
        self.height, self.width = rgb.shape[:2]
        self.hashes = bgrxHashes(rgb)
        self.dumpPath = os.path.join(tmpdir, "client-primary.raw")

    def primaryArgs(self):
        return {}

    def check(self, reply):
        if (reply["width"], reply["height"]) != (self.width, self.height):
            return False, "primary is %dx%d" % (reply["width"], reply["height"])
        if reply["sha256"] in self.hashes:
            return True, "sha256 equal"
        return False, "sha256 differs"

    @defer.inlineCallbacks
    def diagnose(self, client):
        """Say how the client's primary differs (for error messages)."""
        reply = yield client.command("primary", dump=self.dumpPath)
        if not reply.get("ok"):
            return "no primary: %s" % (reply.get("reason"),)
        return compareFrames(primaryRGB(reply), self.rgb)[1]


class QemuScreen(object):
    """
    QEMU shows its BIOS screen: the client's primary must equal QEMU's own
    framebuffer (QMP screendump), but for the blinking cursor's text cell.
    """

    def __init__(self, qmpPath, tmpdir):
        self.qmpPath = qmpPath
        self.dumpPath = os.path.join(tmpdir, "client-primary.raw")
        self.screenPath = os.path.join(tmpdir, "qemu-screen.ppm")
        self.last = None

    def primaryArgs(self):
        return {"dump": self.dumpPath}

    def screen(self):
        self.last = qmpScreendump(self.qmpPath, self.screenPath)
        return self.last

    def check(self, reply):
        got = primaryRGB(reply)
        if not got.any():
            return False, "primary is all black"
        return compareFrames(got, self.screen())

    @defer.inlineCallbacks
    def diagnose(self, client):
        reply = yield client.command("primary", dump=self.dumpPath)
        if not reply.get("ok"):
            return "no primary: %s" % (reply.get("reason"),)
        return self.check(reply)[1]

    @defer.inlineCallbacks
    def waitSettled(self, reactor, size, timeout=30, still=0.5):
        """
        Wait until QEMU's screen has C{size}, is not black, and has not
        changed (but for the text cursor) for C{still} seconds.
        """
        deadline = reactor.seconds() + timeout
        previous, since = None, None
        while True:
            try:
                now = self.screen()
            except (OSError, BenchmarkError):
                now = None
            if (now is not None and now.any()
                    and (now.shape[1], now.shape[0]) == size):
                if previous is not None and compareFrames(now, previous)[0]:
                    if reactor.seconds() - since >= still:
                        return now
                else:
                    previous, since = now, reactor.seconds()
            else:
                previous = None
            if reactor.seconds() > deadline:
                shape = None if now is None else now.shape
                raise BenchmarkError(
                    "QEMU's screen did not settle at %dx%d within %d s "
                    "(last screendump: %r)" % (size + (timeout, shape)))
            yield sleep(reactor, 0.1)


# -- one run -------------------------------------------------------------------

class Sample(object):
    def __init__(self, link, frame, box, note, steps):
        self.link = link            # seconds
        self.frame = frame          # seconds
        self.box = box              # (x, y, w, h) of that invalidate
        self.note = note            # how the picture was verified
        self.steps = steps          # {step name: seconds}, see STEPS


#: The steps of a connection shown in the timeline table, and how each is
#: found in the client's events (the first match after connect).
STEPS = [
    ("main", lambda e: _opened(e, 1)),
    # The main channel's CHANNELS_LIST: spice-gtk announces the others.
    ("list", lambda e: e["event"] == "channel-new" and e["type"] == 2),
    ("display", lambda e: _opened(e, 2)),
    ("inputs", lambda e: _opened(e, 3)),
    ("cursor", lambda e: _opened(e, 4)),
    ("surface", lambda e: e["event"] == "primary-create" and e["id"] == 0),
]


def _opened(event, channelType):
    return (event["event"] == "channel-event" and event["type"] == channelType
            and event["what"] == "SPICE_CHANNEL_OPENED")


def stepTimes(events, t0):
    times = {}
    for name, predicate in STEPS:
        for event in events:
            if predicate(event):
                times[name] = event["_time"] - t0
                break
    return times


def isInvalidate(event):
    """One invalidate of the primary surface, as the client got it."""
    return event["event"] == "invalidate-now" and event.get("id") == 0


@defer.inlineCallbacks
def nextEvent(client, predicate, index, deadline):
    """
    Fire with C{(event, i)}: the first event at C{client.events[i]},
    C{i >= index}, that matches.
    """
    while True:
        for i in range(index, len(client.events)):
            if predicate(client.events[i]):
                return client.events[i], i
        index = len(client.events)
        remaining = deadline - client.reactor.seconds()
        if remaining <= 0:
            raise harness.HarnessTimeout("no more events matching %s" % (
                predicate.__name__,))
        yield client.waitForEvent(predicate, timeout=remaining, since=index)


@defer.inlineCallbacks
def firstFrame(client, expected, since, t0):
    """
    Fire with C{(seconds, box, note)}: when, after C{t0}, the
    invalidate after which the primary equals what C{expected} wants
    arrived.
    """
    deadline = t0 + RUN_TIMEOUT
    index = since
    last = None
    while True:
        try:
            event, i = yield nextEvent(client, isInvalidate, index, deadline)
        except harness.HarnessTimeout:
            why = "never saw an invalidate"
            if last is not None:
                why = yield expected.diagnose(client)
            raise BenchmarkError(
                "the client's primary did not become the expected picture "
                "within %d s: %s" % (RUN_TIMEOUT, why))
        index = i + 1
        reply = yield client.command("primary", **expected.primaryArgs())
        # Every invalidate the client emitted before answering is in the log
        # now; the latest of them is when the picture we saw was complete.
        for j in range(len(client.events) - 1, since - 1, -1):
            if isInvalidate(client.events[j]):
                last = client.events[j]
                break
        if not reply.get("ok"):
            continue
        ok, note = expected.check(reply)
        if ok:
            box = (last["x"], last["y"], last["width"], last["height"])
            return last["_time"] - t0, box, note


@defer.inlineCallbacks
def measureOnce(reactor, port, clientArgs, expected, children, caFile=None):
    """
    Start a client, connect it, and fire with C{(Sample, clientVersion)}.
    With C{caFile}, C{port} is a TLS port and every channel uses TLS.
    """
    client = yield startClient(reactor, port, caFile,
                               extra_args=["--no-autoconnect"] + clientArgs)
    children.clients.add(client)

    def stop():
        children.clients.discard(client)
        return client.stop(5)
    result = yield afterwards(_measure(client, expected), stop)
    return result


@defer.inlineCallbacks
def _measure(client, expected):
    yield client.check("watch", channel_id=0, invalidates=True)
    since = len(client.events)
    t0 = client.reactor.seconds()
    yield client.check("connect")
    opened = yield client.waitForChannelsOpened(
        CHANNEL_TYPES, timeout=RUN_TIMEOUT, since=since)
    link = max(event["_time"] for event in opened) - t0
    frame, box, note = yield firstFrame(client, expected, since, t0)
    version = next((e.get("version") for e in client.events
                    if e["event"] == "ready"), None)
    steps = stepTimes(client.events[since:], t0)
    return Sample(link, frame, box, note, steps), version


# -- variants --------------------------------------------------------------------

class Variant(object):
    """
    One server configuration and one client configuration: its own server
    process, measured C{runs} times.
    """

    def __init__(self, server, label, picture, size, clientArgs,
                 makeServer, makeExpected, prepare=None, serverCPU=True,
                 reference=False, caFile=None):
        self.server = server            # "spicesrv", "QEMU 7.2.22"
        self.label = label              # "lz4", "raw (--no-lz4)", ...
        self.picture = picture          # "generated", "BIOS screen"
        self.size = size
        self.clientArgs = clientArgs
        self.makeServer = makeServer    # (port, variant) -> ServerProcess
        self.makeExpected = makeExpected  # () -> KnownPicture / QemuScreen
        self.prepare = prepare          # (reactor, expected) -> Deferred
        self.serverCPU = serverCPU
        self.reference = reference      # QEMU's libspice-server
        self.caFile = caFile            # TLS only: the CA the client trusts
        self.samples = []
        self.cpuPerRun = None
        self.process = None
        self.command = None
        self.clientVersion = None
        self.expected = None
        self.prepared = None

    @property
    def name(self):
        return "%s %s %dx%d %s" % ((self.server, self.label) + self.size
                                   + (self.picture,))

    @property
    def tag(self):
        """A file-name friendly name."""
        return re.sub(r"[^A-Za-z0-9.]+", "-", self.name).strip("-").lower()


@defer.inlineCallbacks
def startServer(reactor, variant, children):
    """
    Start the variant's server on a free port, wait until it accepts
    connections and until it is ready to be measured.
    """
    port = freePort()
    server = variant.process = variant.makeServer(port, variant)
    variant.command = server.commandLine()
    children.servers.add(server)
    server.start()
    yield server.waitListening(reactor)
    variant.expected = variant.makeExpected()
    if variant.prepare is not None:
        variant.prepared = yield variant.prepare(reactor, variant.expected)


@defer.inlineCallbacks
def measure(reactor, variant, children, what):
    """One run against the variant's server; fire with C{(Sample, version)}."""
    server = variant.process
    try:
        result = yield measureOnce(reactor, server.port, variant.clientArgs,
                                   variant.expected, children, variant.caFile)
    except (harness.GtkClientError, harness.HarnessTimeout,
            BenchmarkError) as e:
        raise BenchmarkError("%s, %s: %s%s" % (
            variant.name, what, e, "" if server.alive() else
            "\nthe server has exited; its log:\n" + server.logTail()))
    yield sleep(reactor, PAUSE)
    return result


@defer.inlineCallbacks
def measureAll(reactor, variants, args, children):
    """
    Warm every server up, then measure them in rounds: each round does one
    run per variant, the order rotating from round to round, so that
    changes in the machine's load during the benchmark spread over all the
    variants alike.
    """
    for variant in variants:
        for i in range(args.warmup):
            yield measure(reactor, variant, children,
                          "warm-up run %d" % (i + 1,))
    cpu0 = {v: v.process.cpuSeconds() for v in variants}
    sys.stdout.write("  %d variants x %d runs, interleaved; round:"
                     % (len(variants), args.runs))
    sys.stdout.flush()
    for r in range(args.runs):
        k = r % len(variants)
        for variant in variants[k:] + variants[:k]:
            sample, version = yield measure(reactor, variant, children,
                                            "run %d" % (r + 1,))
            variant.samples.append(sample)
            variant.clientVersion = version
        sys.stdout.write(" %d" % (r + 1,))
        sys.stdout.flush()
    print()
    for variant in variants:
        cpu1 = variant.process.cpuSeconds()
        if (variant.serverCPU and cpu0[variant] is not None
                and cpu1 is not None):
            variant.cpuPerRun = (cpu1 - cpu0[variant]) / args.runs


def twistdPath():
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.access(twistd, os.X_OK):
        return twistd
    return shutil.which("twistd") or "twistd"


def x509Dir(tmpdir):
    """
    A development CA and server certificate (QEMU's x509-dir layout) for
    the TLS variants, made once per benchmark.
    """
    directory = os.path.join(tmpdir, "x509")
    if not os.path.isdir(directory):
        from spicesrv import tls
        tls.write_dev_certs(directory, sans=("DNS:localhost", "IP:" + HOST))
    return directory


def x509CaFile(tmpdir):
    """The CA certificate of L{x509Dir}'s certificates, for the clients."""
    from spicesrv.tls.context import CA_CERT_FILE
    return os.path.join(x509Dir(tmpdir), CA_CERT_FILE)


def startClient(reactor, port, caFile=None, **kwargs):
    """
    Start a spice-gtk (L{harness.GtkClient.start}, with C{kwargs}) for the
    server on loopback at C{port}; with C{caFile}, C{port} is a TLS port and
    every channel uses TLS, trusting that CA.
    """
    if caFile is None:
        return harness.GtkClient.start(reactor, HOST, port, **kwargs)
    return harness.GtkClient.start(reactor, HOST, None, tls_port=port, ca_file=caFile,
                                   **kwargs)


def spicesrvVariants(picturePath, pictureName, rgb, tmpdir, plain=True,
                     secure=False, checkout=REPO, extraArgs=(),
                     labels=("lz4 (default)", "raw (--no-lz4)")):
    """
    spicesrv showing a picture: LZ4 and raw over plain TCP (C{plain}; a
    variant whose label is L{None} is left out), and LZ4 over TLS, every
    channel on the TLS port (C{secure}); the server runs from C{checkout}
    with C{extraArgs}.
    """
    size = (rgb.shape[1], rgb.shape[0])

    def makeServer(port, variant):
        if variant.caFile is None:
            listen = ["--port", str(port)]
        else:
            listen = ["--tls-port", str(port), "--x509-dir", x509Dir(tmpdir)]
        return ServerProcess(
            "spicesrv", [twistdPath(), "-n", "--pidfile=", "spice"] + listen
            + ["--addr", HOST, "--disable-ticketing",
               "--source", "image:" + picturePath] + list(extraArgs),
            port, os.path.join(tmpdir, variant.tag + ".log"),
            env={"PYTHONPATH": checkout})

    def makeExpected():
        return KnownPicture(rgb, tmpdir)

    variants = []
    if plain:
        variants += [variant for variant in [
            Variant("spicesrv", labels[0], pictureName, size, [],
                    makeServer, makeExpected),
            Variant("spicesrv", labels[1], pictureName, size,
                    ["--no-lz4"], makeServer, makeExpected),
        ] if variant.label]
    if secure:
        variants.append(Variant(
            "spicesrv", "TLS lz4 (default)", pictureName, size, [],
            makeServer, makeExpected,
            caFile=x509CaFile(tmpdir)))
    return variants


def qemuVariant(binary, version, tmpdir, secure=False):
    """
    QEMU's BIOS screen, over plain TCP or (C{secure}) with every channel
    on its TLS port, each its own QEMU process.
    """
    qmpPath = os.path.join(tmpdir, "qmp-tls.sock" if secure else "qmp.sock")

    def makeServer(port, variant):
        if os.path.exists(qmpPath):
            os.unlink(qmpPath)
        if secure:
            listen = "tls-port=%d,x509-dir=%s" % (port, x509Dir(tmpdir))
        else:
            listen = "port=%d" % (port,)
        return ServerProcess(
            "QEMU", [binary, "-nodefaults", "-vga", "std", "-display", "none",
                     "-spice", "%s,addr=%s,disable-ticketing=on"
                     % (listen, HOST),
                     "-boot", "menu=on,splash-time=%d" % (SPLASH_MS,),
                     "-qmp", "unix:%s,server=on,wait=off" % (qmpPath,)],
            port, os.path.join(tmpdir, variant.tag + ".log"))

    def makeExpected():
        return QemuScreen(qmpPath, tmpdir)

    def prepare(reactor, expected):
        return expected.waitSettled(reactor, BIOS)

    caFile = x509CaFile(tmpdir) if secure else None
    return Variant("QEMU %s" % (version,),
                   "TLS (auto_glz)" if secure else "default (auto_glz)",
                   "BIOS screen", BIOS, [], makeServer, makeExpected,
                   prepare=prepare, serverCPU=False, reference=True,
                   caFile=caFile)


# -- output ----------------------------------------------------------------------

def ms(seconds):
    return seconds * 1000.0


def triple(values):
    values = [ms(v) for v in values]
    return "%7.1f %7.1f %7.1f" % (statistics.median(values), min(values),
                                  max(values))


def printTable(variants, args):
    header = ("%-12s %-19s %-8s %-11s | %-23s | %-23s | %4s | %s" % (
        "server", "variant", "picture", "", "link ms", "first frame ms",
        "runs", "server CPU"))
    sub = ("%-12s %-19s %-8s %-11s | %23s | %23s | %4s | %s" % (
        "", "", "size", "content", " median     min     max",
        " median     min     max", "", "ms/run"))
    print(header)
    print(sub)
    print("-" * len(sub))
    for v in variants:
        if not v.samples:
            continue
        cpu = "n/a" if v.cpuPerRun is None else "%.0f" % (ms(v.cpuPerRun),)
        print("%-12s %-19s %-8s %-11s | %s | %s | %4d | %s" % (
            v.server, v.label, "%dx%d" % v.size, v.picture,
            triple(s.link for s in v.samples),
            triple(s.frame for s in v.samples), len(v.samples), cpu))


def printTimeline(variants):
    names = [name for name, _ in STEPS]
    print("median ms from connect to each channel's OPENED (list: the main channel's "
          "CHANNELS_LIST), to the primary "
          "surface's creation and to the first frame:")
    print("%-12s %-19s %-20s | %s | %7s" % (
        "server", "variant", "picture", " ".join("%7s" % n for n in names),
        "frame"))
    for v in variants:
        if not v.samples:
            continue
        cells = []
        for name in names:
            values = [s.steps[name] for s in v.samples if name in s.steps]
            cells.append("%7.1f" % ms(statistics.median(values))
                         if values else "%7s" % "-")
        print("%-12s %-19s %-20s | %s | %7.1f" % (
            v.server, v.label, "%dx%d %s" % (v.size + (v.picture,)),
            " ".join(cells),
            ms(statistics.median(s.frame for s in v.samples))))


def _medianStep(variant, name):
    if name == "link":
        values = [s.link for s in variant.samples]
    elif name == "frame":
        values = [s.frame for s in variant.samples]
    else:
        values = [s.steps[name] for s in variant.samples if name in s.steps]
    return statistics.median(values) if values else None


def printRatios(variants):
    """
    spicesrv's medians over QEMU's, same transport (plain or TLS), for the
    very picture QEMU shows (its BIOS screen), and for the bigger generated
    picture against the same QEMU figures.
    """
    references = {v.caFile is not None: v for v in variants
                  if v.reference and v.samples}
    if not references:
        return
    names = [name for name, _ in STEPS] + ["link", "frame"]
    print()
    print("spicesrv's median over QEMU's in the same run, same transport "
          "(under 1: spicesrv is faster):")
    print("%-12s %-19s %-20s | %s" % (
        "server", "variant", "picture", " ".join("%7s" % n for n in names)))
    for v in variants:
        reference = references.get(v.caFile is not None)
        if v.reference or not v.samples or reference is None:
            continue
        if v.label.startswith("raw"):
            continue
        cells = []
        for name in names:
            mine, theirs = _medianStep(v, name), _medianStep(reference, name)
            cells.append("%7.2f" % (mine / theirs) if mine and theirs
                         else "%7s" % "-")
        print("%-12s %-19s %-20s | %s" % (
            v.server, v.label, "%dx%d %s" % (v.size + (v.picture,)),
            " ".join(cells)))


def printNotes(variants, args, qemuSkipped):
    print()
    print("What is measured (time zero: the client's `connect` command is "
          "written to its stdin;")
    print("times are the arrival of the client's events in the harness):")
    print("  link ms:        until the last of the four "
          "SPICE_CHANNEL_OPENED events (main, display, inputs, cursor).")
    print("  first frame ms: until the display-invalidate after which the "
          "client's primary surface holds the complete picture:")
    print("    spicesrv: sha256 of the primary == the served picture as BGRX "
          "(exact pixels).")
    if any(v.samples and v.reference for v in variants):
        print("    QEMU:     the primary == QEMU's framebuffer from a QMP "
              "screendump taken just after (pixel for pixel,")
        print("              ignoring at most one 9x16 text cell: the BIOS "
              "cursor blinks); the BIOS text screen, 720x400.")
    print("  server CPU:     user+system CPU of the server process (all its "
          "threads) over the measured runs, per run;")
    print("                  not for QEMU, whose process also runs the "
          "guest and answers the QMP screendumps.")
    print("  runs:           interleaved, one per variant per round, "
          "the order rotating each round.")
    print("  timing: by each invalidate as the client got it (not the test client's "
          "100 ms coalescing of them).")
    for v in variants:
        if not v.samples:
            continue
        boxes = sorted(set(s.box for s in v.samples))
        notes = sorted(set(s.note for s in v.samples))
        print("  %s: last invalidate %s; "
              "verified: %s" % (
                  v.name,
                  ", ".join("%dx%d+%d+%d" % (b[2], b[3], b[0], b[1])
                            for b in boxes),
                  ", ".join(notes)))
    if qemuSkipped:
        print("reference: %s" % (qemuSkipped,))
    print()
    versions = sorted(set(v.clientVersion for v in variants
                          if v.clientVersion))
    print("client: spice-gtk %s via %s %s --no-autoconnect [--no-lz4], "
          "one fresh process per run; %d warm-up run(s) per variant not "
          "counted." % ("/".join(versions) or "?", harness.findGtkClient(),
                        os.path.relpath(harness.GTKCLIENT, REPO),
                        args.warmup))
    print("servers (one per variant; PORT: a free loopback port; pictures "
          "and QMP.sock in the temporary directory):")
    seen = set()
    for v in variants:
        if v.command is None:
            continue
        command = re.sub(r"port(=| )\d+", r"port\1PORT", v.command)
        command = re.sub(r"image:\S+/", "image:", command)
        command = re.sub(r"unix:\S+/(qmp[-a-z]*\.sock)", r"unix:\1", command)
        command = re.sub(r"(x509-dir[= ])[^\s,]+", r"\1X509DIR", command)
        if command not in seen:
            seen.add(command)
            print("  " + command)


def printPerRun(variants):
    for v in variants:
        print("  %s:" % (v.name,))
        for i, s in enumerate(v.samples):
            print("    run %2d: link %6.1f ms, first frame %6.1f ms" % (
                i + 1, ms(s.link), ms(s.frame)))


# -- the benchmark -----------------------------------------------------------------

def run(reactor, args):
    """
    Run the benchmark and print its table; fire when done and every server
    and client has stopped.
    """
    return startBenchmark(reactor, args, NAME, "spicesrv-bench-connect-", _run)


def startBenchmark(reactor, args, name, tmpPrefix, body):
    """
    What every benchmark does around its measurements: check that the real
    client is there, find QEMU (the reference) unless told not to, make a
    temporary directory, and stop every child process and remove the
    directory at the end, on error and on Ctrl-C.  C{body(reactor, args,
    qemu, qemuSkipped, tmpdir, children)} measures and prints.
    """
    if harness.findGtkClient() is None:
        return defer.fail(BenchmarkError(
            "the real client (spice-gtk's GLib library for %s) is missing: "
            "apt-get install -y %s" % (
                os.environ.get("SPICESRV_GTK_PYTHON", harness.DEFAULT_PYTHON),
                harness.APT_PACKAGES)))
    qemu = None
    qemuSkipped = None
    if args.no_qemu:
        qemuSkipped = "skipped (--no-qemu)"
    else:
        qemu = args.qemu or shutil.which(QEMU_BINARY)
        if qemu is None or not os.access(qemu, os.X_OK):
            qemuSkipped = ("QEMU not installed, skipped" if args.qemu is None
                           else "QEMU not found at %s, skipped" % (args.qemu,))
            qemu = None
    # A short path: it may hold QMP monitors' UNIX sockets.
    tmpdir = tempfile.mkdtemp(prefix=tmpPrefix)
    children = Children()
    atexit.register(children.killNow)
    cleaning = []

    def cleanup(fromShutdown=False):
        # At the end, on error, or on reactor shutdown (Ctrl-C): once.
        if cleaning:
            return None
        cleaning.append(True)
        if not fromShutdown:
            reactor.removeSystemEventTrigger(trigger)
        d = children.stopAll(reactor)

        def removeTemp(_):
            if args.keep_temp:
                print("kept %s" % (tmpdir,))
            else:
                shutil.rmtree(tmpdir, ignore_errors=True)
        return d.addBoth(removeTemp)
    trigger = reactor.addSystemEventTrigger("before", "shutdown", cleanup,
                                            True)
    print("%s benchmark: %d run(s) per variant, temporary files in %s"
          % (name, args.runs, tmpdir))
    sys.stdout.flush()
    return afterwards(body(reactor, args, qemu, qemuSkipped, tmpdir, children),
                      cleanup)


@defer.inlineCallbacks
def _run(reactor, args, qemu, qemuSkipped, tmpdir, children):
    started = time.monotonic()
    variants = []
    for size in (BIG, BIOS):
        picture = makePicture(*size)
        path = os.path.join(tmpdir, "gradient-%dx%d.png" % size)
        picture.save(path)
        variants += spicesrvVariants(path, "generated", np.asarray(picture),
                                     tmpdir, secure=size == BIG)
        if args.baseline is not None and size == BIG:
            # Before WebSocket detection: the native link must not regress.
            variants += spicesrvVariants(path, "generated", np.asarray(picture), tmpdir,
                                         checkout=os.path.abspath(args.baseline),
                                         labels=("lz4, baseline", None))
    for variant in variants:
        yield startServer(reactor, variant, children)
    if qemu is not None:
        version = qemuVersion(qemu)
        references = [qemuVariant(qemu, version, tmpdir),
                      qemuVariant(qemu, version, tmpdir, secure=True)]
        try:
            for reference in references:
                yield startServer(reactor, reference, children)
        except BenchmarkError as e:
            # The reference failing leaves spicesrv's figures valid.
            qemuSkipped = "QEMU FAILED, no reference figures: %s" % (e,)
            print("  %s" % (qemuSkipped,))
            for reference in references:
                if reference.process is not None:
                    children.servers.discard(reference.process)
                    yield reference.process.stop(reactor)
        else:
            variants.extend(references)
            # spicesrv showing the very pixels QEMU shows: like for like.
            bios = references[0].prepared
            path = os.path.join(tmpdir, "qemu-bios-%dx%d.png" % BIOS)
            Image.fromarray(bios, "RGB").save(path)
            for variant in spicesrvVariants(path, "BIOS screen", bios,
                                            tmpdir, secure=True):
                variants.append(variant)
                yield startServer(reactor, variant, children)
    print("  %d servers started and ready in %.1f s" % (
        len(variants), time.monotonic() - started))
    yield measureAll(reactor, variants, args, children)
    print()
    printTable(variants, args)
    print()
    printTimeline(variants)
    printRatios(variants)
    printNotes(variants, args, qemuSkipped)
    if args.per_run:
        print()
        print("per run:")
        printPerRun(variants)
    if not args.no_browser:
        yield _runBrowser(reactor, args, tmpdir, children)


@defer.inlineCallbacks
def _runBrowser(reactor, args, tmpdir, children):
    from benchmarks import browser
    print()
    why = browser.unavailable()
    if why is not None:
        print("browser: skipped: %s" % (why,))
        return
    picture = makePicture(*BIG)
    path = os.path.join(tmpdir, "browser-%dx%d.png" % BIG)
    picture.save(path)
    (variant,) = spicesrvVariants(path, "generated", np.asarray(picture), tmpdir,
                                  extraArgs=["--web-client"],
                                  labels=("web client", None))
    yield startServer(reactor, variant, children)
    samples = yield browser.measureBrowser(reactor, args, variant.process,
                                           np.asarray(picture), tmpdir)
    print()
    browser.printBrowser(samples, "%dx%d" % BIG)
    commands = [variant.command]
    # A photograph, raw (spice-html5 has no LZ4) against JPEG
    # (--jpeg-wan-compression always: on loopback "auto" finds the link
    # fast and sends raw bitmaps).
    from tests.pictures import photoPicture, rgbImage
    photo = rgbImage(photoPicture(*BIG))
    path = os.path.join(tmpdir, "browser-photo-%dx%d.png" % BIG)
    photo.save(path)
    for label, mode, minPsnr in (("photo raw", "never", None),
                                 ("photo JPEG", "always", 35.0)):
        (variant,) = spicesrvVariants(path, label, np.asarray(photo), tmpdir,
                                      extraArgs=["--web-client", "--jpeg-wan-compression",
                                                 mode],
                                      labels=("web client " + mode, None))
        yield startServer(reactor, variant, children)
        samples = yield browser.measureBrowser(reactor, args, variant.process,
                                               np.asarray(photo), tmpdir, minPsnr=minPsnr)
        browser.printBrowser(samples, "%dx%d" % BIG, label=label, header=False)
        commands.append(variant.command)
    for command in commands:
        print("  server: " + re.sub(r"port(=| )\d+", r"port\1PORT",
                                    re.sub(r"image:\S+/", "image:", command)))


if __name__ == "__main__":
    from benchmarks import run as runner
    runner.main([NAME] + sys.argv[1:])
