"""
The bulk benchmark: display throughput over plain TCP against TLS, with the
real client (spice-gtk) on loopback.

A full-HD source changes every pixel many times a second (L{NoiseSource}:
deterministic noise, shifted by one pixel per tick, so neither LZ4 nor any
cache finds anything to save), and spicesrv sends it as fast as the client
takes it: the display channel pulls, capturing when the client's ACK window
and the socket allow.  Each run is a fresh spice-gtk that links main and
display, waits for its first frame and a warm-up second, then reads for
C{--seconds}.  Figures, per run, from the client's own counters:

- B{MB/s}: the display channel's C{total-read-bytes} (SPICE message bytes,
  after TLS), per second;
- B{frames/s}: the area of every C{display-invalidate} signal the client
  emitted, in full screens, per second;
- B{server CPU}: the server process's user + system CPU per second of the
  run (all threads, and its key workers); B{client CPU} likewise for the
  spice-gtk process.

Variants: raw bitmaps (client C{--no-lz4}: 8 MB per frame, the pure byte
rate) and LZ4 (the default; noise does not compress, so the same bytes plus
LZ4's work), each over plain TCP and over TLS (every channel on the TLS
port, the development certificates).  Runs alternate between the variants,
one server process each, so load changes on the machine hit all alike.

The reference for TLS: the same plain server behind stunnel (Debian's
C{stunnel4}), a TLS terminator in C in a process of its own, where OpenSSL
encrypts straight onto the socket; it shows what TLS costs on this machine
when it is done outside Python (its CPU counts as the server's).  Without
stunnel those variants are skipped, and said so.

The server is spicesrv's C{twistd spice} service made in a subprocess of
this module (C{python3 -m benchmarks.bulk --serve -- OPTIONS}), so that the
noise source can be given as C{--source noise} without installing a plugin.
"""

import argparse
import os
import shutil
import statistics
import sys
import time

import numpy as np
from twisted.internet import defer, task
from zope.interface import implementer

from spicesrv.interfaces import ISourcePlugin

from benchmarks import BenchmarkError
from benchmarks import connect
from spicesrv.sources.base import FramebufferSource
from spicesrv.tls.context import SERVER_CERT_FILE, SERVER_KEY_FILE, TLS13_CIPHERSUITES

NAME = "bulk"
DESCRIPTION = ("Display throughput (bytes and frames per second spice-gtk "
               "receives) of a full-HD screen that changes every frame, "
               "plain TCP vs TLS.")
DEFAULT_RUNS = 3
SIZE = (1920, 1080)
#: Ticks of the noise source per second: faster than any frame rate the
#: channel reaches, so every capture finds a new picture.
TICKS = 200


#: Seconds each client reads (C{--seconds}, shared by the benchmarks).
DEFAULT_SECONDS = 5.0
#: The reference TLS terminator.
STUNNEL_BINARY = "stunnel4"


def addArguments(group):
    def shared(*names, **options):
        try:
            group.add_argument(*names, **options)
        except argparse.ArgumentError:
            pass            # connect's group has it already
    shared("--qemu", default=None, metavar="PATH", help="unused by bulk (spicesrv only)")
    shared("--no-qemu", action="store_true", help="unused by bulk (spicesrv only)")
    shared("--keep-temp", action="store_true", help="keep the temporary directory")


# -- the source ----------------------------------------------------------------

class NoiseSource(FramebufferSource):
    """
    C{width}x{height} of seeded random bytes that move by one row and
    C{STEP} bytes every tick: every pixel changes every frame, nothing
    compresses, and the picture at tick C{n} is always the same.  No
    picture is an earlier one moved straight up, down or sideways (what
    spicesrv sends as COPY_BITS): between any two, the bytes moved by a
    number of rows and a part of a pixel, or by rows and some pixels
    sideways at once.  A tick is a new numpy view of one buffer (no
    copying) and one damage of the whole screen.
    """

    description = "noise: a full screen of pixels that all change every tick"
    PERIOD = 1024           # distinct pictures before they repeat
    STEP = 5                # bytes beyond a row per tick

    def __init__(self, width=SIZE[0], height=SIZE[1], ticks=TICKS, clock=None, seed=14):
        FramebufferSource.__init__(self, width, height)
        self._stride = width * 4 + self.STEP
        self._buffer = np.random.default_rng(seed).integers(
            0, 256, width * height * 4 + self._stride * self.PERIOD, np.uint8)
        self._ticks = ticks
        self._clock = clock
        self._loop = None
        self.tick = 0
        self.frame = self._view(0)

    def _view(self, n):
        offset = self._stride * (n % self.PERIOD)
        return self._buffer[offset:offset + self.width * self.height * 4].reshape(
            self.height, self.width, 4)

    def start(self):
        self._loop = task.LoopingCall(self.step)
        if self._clock is not None:
            self._loop.clock = self._clock
        self._loop.start(1.0 / self._ticks, now=False)

    def stop(self):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def step(self):
        self.tick += 1
        self.setFrame(self._view(self.tick))


@implementer(ISourcePlugin)
class NoisePlugin:
    """C{--source noise} for the server this module runs."""
    name = "noise"
    description = NoiseSource.description
    options = ()

    def makeSource(self, args, values, reactor):
        return NoiseSource(clock=reactor)


def serve(argv):
    """
    Run C{twistd spice} with C{argv} (its options) and the noise source, in
    this process, until SIGTERM.
    """
    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from spicesrv import tap
    from spicesrv.plugin import sourcePlugins

    sources = dict(sourcePlugins())
    sources["noise"] = NoisePlugin()
    config = tap.buildOptions(sources=sources)()
    config.parseOptions(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    top = tap.makeService(config, reactor)
    top.privilegedStartService()
    top.startService()
    reactor.addSystemEventTrigger("before", "shutdown", top.stopService)
    reactor.run()


# -- the measurement -------------------------------------------------------------

class Variant:
    def __init__(self, label, secure, clientArgs, stunnel=False):
        self.label = label
        self.secure = secure
        self.clientArgs = clientArgs
        self.stunnel = stunnel          # TLS by stunnel in front of plain spicesrv
        self.process = None
        self.caFile = None
        self.samples = []       # dicts, one per run

    @property
    def tag(self):
        return self.label.replace(" ", "-").replace("(", "").replace(")", "").replace(".", "")


@defer.inlineCallbacks
def counters(client):
    reply = yield client.check("channels")
    display = [c for c in reply["channels"] if c["type"] == 2 and c["id"] == 0]
    if not display:
        raise BenchmarkError("the client has no display channel")
    return display[0]["read_bytes"], display[0].get("invalidated_pixels", 0)


@defer.inlineCallbacks
def measureOnce(reactor, variant, seconds, children, warm=1.0):
    client = yield connect.startClient(
        reactor, variant.process.port, variant.caFile,
        extra_args=["--channel-types", "1,2"] + variant.clientArgs)
    children.clients.add(client)

    def stop():
        children.clients.discard(client)
        return client.stop(5)

    @defer.inlineCallbacks
    def body():
        yield client.waitForChannelsOpened((1, 2), timeout=60)
        yield client.waitForEvent({"event": "display-mark"}, timeout=60)
        yield connect.sleep(reactor, warm)
        bytes0, pixels0 = yield counters(client)
        server0, client0 = variant.process.cpuSeconds(), connect.processCPU(client.pid)
        t0 = time.monotonic()
        yield connect.sleep(reactor, seconds)
        bytes1, pixels1 = yield counters(client)
        t1 = time.monotonic()
        server1, client1 = variant.process.cpuSeconds(), connect.processCPU(client.pid)
        elapsed = t1 - t0
        moved = max(1, bytes1 - bytes0)
        return {"bytes": (bytes1 - bytes0) / elapsed,
                "serverPerMB": (server1 - server0) * 1e3 / (moved / 1e6),
                "clientPerMB": (client1 - client0) * 1e3 / (moved / 1e6),
                "frames": (pixels1 - pixels0) / float(SIZE[0] * SIZE[1]) / elapsed,
                "server": (server1 - server0) / elapsed,
                "client": (client1 - client0) / elapsed}
    result = yield connect.afterwards(body(), stop)
    return result


def variants(stunnel=True):
    todo = [Variant("raw (--no-lz4)", False, ["--no-lz4"]),
            Variant("TLS raw (--no-lz4)", True, ["--no-lz4"]),
            Variant("stunnel raw (ref.)", True, ["--no-lz4"], stunnel=True),
            Variant("lz4 (default)", False, []),
            Variant("TLS lz4 (default)", True, []),
            Variant("stunnel lz4 (ref.)", True, [], stunnel=True)]
    return [v for v in todo if stunnel or not v.stunnel]


class StunnelFront:
    """
    A plain spicesrv (C{inner}) behind stunnel (C{front}), measured as one
    server: TLS on the front's port, the CPU of both.
    """

    def __init__(self, inner, front):
        self.inner = inner
        self.front = front
        self.port = front.port

    def cpuSeconds(self):
        inner, front = self.inner.cpuSeconds(), self.front.cpuSeconds()
        return None if inner is None or front is None else inner + front

    def alive(self):
        return self.inner.alive() and self.front.alive()

    def logTail(self):
        return self.inner.logTail() + "\nstunnel:\n" + self.front.logTail()

    def commandLine(self):
        return "%s  (behind: %s)" % (self.front.commandLine(), self.inner.commandLine())


def stunnelConfig(tmpdir, tag, port, innerPort):
    """Write stunnel's configuration for the front on C{port}; its path."""
    x509 = connect.x509Dir(tmpdir)
    path = os.path.join(tmpdir, tag + ".stunnel.conf")
    with open(path, "w") as f:
        f.write("foreground = yes\npid =\ndebug = 4\n"
                "[spice]\naccept = %s:%d\nconnect = %s:%d\n"
                "cert = %s\nkey = %s\nsslVersionMin = TLSv1.2\nciphersuites = %s\n"
                "socket = l:TCP_NODELAY=1\nsocket = r:TCP_NODELAY=1\n" % (
                    connect.HOST, port, connect.HOST, innerPort,
                    os.path.join(x509, SERVER_CERT_FILE),
                    os.path.join(x509, SERVER_KEY_FILE),
                    TLS13_CIPHERSUITES.decode("ascii")))
    return path


def run(reactor, args):
    args.no_qemu = True         # no QEMU variant: TLS against plain, spicesrv only
    return connect.startBenchmark(reactor, args, NAME, "spicesrv-bench-bulk-", _run)


@defer.inlineCallbacks
def _run(reactor, args, qemu, qemuSkipped, tmpdir, children):
    seconds = DEFAULT_SECONDS if getattr(args, "seconds", None) is None else args.seconds
    stunnel = shutil.which(STUNNEL_BINARY)
    todo = variants(stunnel is not None)
    for v in todo:
        port = connect.freePort()                       # where the client connects
        serverPort = connect.freePort() if v.stunnel else port
        if v.secure and not v.stunnel:
            listen = ["--tls-port", str(port), "--x509-dir", connect.x509Dir(tmpdir)]
        else:
            listen = ["--port", str(serverPort)]
        if v.secure:
            v.caFile = connect.x509CaFile(tmpdir)
        server = connect.ServerProcess(
            "spicesrv", [sys.executable, "-m", "benchmarks.bulk", "--serve", "--"] + listen
            + ["--addr", connect.HOST, "--disable-ticketing", "--source", "noise"],
            serverPort, os.path.join(tmpdir, v.tag + ".log"), env={"PYTHONPATH": connect.REPO})
        servers = [server]
        if v.stunnel:
            servers.append(connect.ServerProcess(
                "stunnel", [stunnel, stunnelConfig(tmpdir, v.tag, port, server.port)],
                port, os.path.join(tmpdir, v.tag + ".stunnel.log")))
        for process in servers:
            children.servers.add(process)
            process.start()
            yield process.waitListening(reactor)
        v.process = StunnelFront(*servers) if v.stunnel else server
    try:
        load0 = os.getloadavg()
    except OSError:
        load0 = None
    for v in todo:
        for _ in range(args.warmup):
            yield measureOnce(reactor, v, min(1.0, seconds), children)
    sys.stdout.write("  %d variants x %d runs of %.0f s, interleaved; round:"
                     % (len(todo), args.runs, seconds))
    sys.stdout.flush()
    for r in range(args.runs):
        k = r % len(todo)
        for v in todo[k:] + todo[:k]:
            try:
                sample = yield measureOnce(reactor, v, seconds, children)
            except Exception as e:
                raise BenchmarkError("%s, run %d: %s%s" % (
                    v.label, r + 1, e, "" if v.process.alive() else
                    "\nthe server exited; its log:\n" + v.process.logTail()))
            v.samples.append(sample)
        sys.stdout.write(" %d" % (r + 1,))
        sys.stdout.flush()
    print()
    load1 = os.getloadavg()
    print()
    print("%-20s | %8s %8s | %8s %8s | %8s %8s | %s" % (
        "variant", "MB/s", "frames/s", "server", "client", "server", "client",
        "runs: MB/s each"))
    print("%-20s | %8s %8s | %8s %8s | %8s %8s |" % (
        "(%dx%d noise)" % SIZE, "median", "median", "CPU/s", "CPU/s", "CPU ms", "CPU ms"))
    print("%-20s | %8s %8s | %8s %8s | %8s %8s |" % (
        "", "", "", "", "", "per MB", "per MB"))
    for v in todo:
        med = {k: statistics.median(s[k] for s in v.samples) for k in v.samples[0]}
        print("%-20s | %8.1f %8.2f | %8.2f %8.2f | %8.2f %8.2f | %s" % (
            v.label, med["bytes"] / 1e6, med["frames"], med["server"], med["client"],
            med["serverPerMB"], med["clientPerMB"],
            " ".join("%.1f" % (s["bytes"] / 1e6) for s in v.samples)))
    print()
    print("TLS over plain, same run (medians):")
    for plain in [v for v in todo if not v.secure]:
        for secure in [v for v in todo if v.secure and v.clientArgs == plain.clientArgs]:
            for what, key in (("bytes/s", "bytes"), ("frames/s", "frames")):
                a = statistics.median(s[key] for s in plain.samples)
                b = statistics.median(s[key] for s in secure.samples)
                print("  %-20s %-8s %.2f" % (secure.label, what, b / a if a else float("nan")))
            a = statistics.median(s["serverPerMB"] + s["clientPerMB"] for s in plain.samples)
            b = statistics.median(s["serverPerMB"] + s["clientPerMB"] for s in secure.samples)
            print("  %-20s %-8s %.2f   (plain's CPU per byte, server + client, over TLS's: "
                  "the ratio when the two share busy CPUs)" % (secure.label, "CPU", a / b))
    if stunnel is None:
        print("reference: %s not installed (apt-get install -y stunnel4), the stunnel "
              "variants skipped" % (STUNNEL_BINARY,))
    if load0 is not None:
        print("load average (1, 5, 15 min): before %.2f %.2f %.2f, after %.2f %.2f %.2f"
              % (load0 + load1))
    print("client: spice-gtk (tests/interop/gtkclient.py --channel-types 1,2 [--no-lz4]), "
          "a fresh process per run; MB/s = the display channel's total-read-bytes; "
          "frames/s = display-invalidate area / %dx%d." % SIZE)
    print("servers:")
    for v in todo:
        print("  " + v.process.commandLine())


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        rest = sys.argv[2:]
        if rest[:1] == ["--"]:
            rest = rest[1:]
        serve(rest)
    else:
        from benchmarks import run as runner
        runner.main([NAME] + sys.argv[1:])
