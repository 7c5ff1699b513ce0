"""
The X11 benchmark: the X11 source on a full-HD Xvfb screen where an X client
redraws everything at 30 fps (C{tests/x11client.py --animate 30}: coloured
stripes that move, so every row changes every frame), with the real
spice-gtk client on loopback.

1. B{capture + encode}: in this process, per frame, the time
   C{X11Source.framebuffer()} takes to fetch the damaged rows (MIT-SHM, and
   for comparison the core GetImage fallback) and the time to LZ4-encode
   the frame as the display channel does (256 KiB strips).
2. B{client fps}: spicesrv serves that screen to spice-gtk for
   C{--seconds}; the figure is how many frames per second the display
   channel captured and sent (it pulls: one capture per update it sends,
   when the client's ACK window and the socket allow), next to the X
   client's own 30 fps.
3. B{keypress to pixels}: with control allowed, spice-gtk sends a key; the
   X client (C{--keybox}, no animation) repaints a 64x64 box on the key
   press; the time from the key command to the client's primary showing
   the new colour (polled every 2 ms), over C{--runs} presses, on a
   1024x768 screen (each poll copies and hashes the client's whole
   primary: 30 ms at full HD); and the part spent in the server, from the
   key reaching the X11 keyboard to the damaged rows captured.
"""

import statistics
import time

import numpy

from twisted.internet import defer, endpoints, task

from benchmarks import BenchmarkError

NAME = "x11"
DESCRIPTION = ("The X11 source on a full-HD Xvfb redrawn at 30 fps: capture and "
               "encode time per frame, the fps spice-gtk gets, keypress-to-pixels "
               "latency through XTEST.")
DEFAULT_RUNS = 20
SIZE = (1920, 1080)
LATENCY_SIZE = (1024, 768)
FPS = 30


#: How long spice-gtk watches the animation (C{--seconds}).
DEFAULT_SECONDS = 10.0


def addArguments(group):
    group.add_argument("--frames", type=int, default=60,
                       help="frames timed for capture + encode (default 60)")


def sleep(reactor, seconds):
    return task.deferLater(reactor, seconds, lambda: None)


def ms(values):
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(len(values) * 0.9))]
    return "median %6.1f ms   p90 %6.1f ms   (n=%d)" % (
        statistics.median(values) * 1000, p90 * 1000, len(values))


class _Testcase:
    """
    Enough of a trial test case for L{tests.x11display}'s helpers.
    """

    def __init__(self):
        self.cleanups = []

    def addCleanup(self, f, *args):
        self.cleanups.append((f, args))

    def fail(self, msg):
        raise BenchmarkError(msg)

    @defer.inlineCallbacks
    def cleanUp(self):
        for f, args in reversed(self.cleanups):
            try:
                yield f(*args)
            except Exception:
                pass
        self.cleanups = []


def run(reactor, args):
    return _run(reactor, args)


@defer.inlineCallbacks
def _run(reactor, args):
    import shutil
    from spicesrv.display.encoders import encode_lz4, new_image_id
    from spicesrv.channels.display import strips
    from spicesrv.server import SpiceServer
    from spicesrv.sources.x11 import X11Source
    from tests.interop import harness
    from tests.x11display import XClient, XServer

    for program in ("Xvfb",):
        if shutil.which(program) is None:
            raise BenchmarkError("%s is not installed: apt-get install -y xvfb" % program)
    if harness.findGtkClient() is None:
        raise BenchmarkError("spice-gtk's client library is missing: apt-get install -y %s"
                             % (harness.APT_PACKAGES,))
    testcase = _Testcase()
    try:
        x = XServer("Xvfb", SIZE).start()
        testcase.addCleanup(x.stop)
        print("x11: Xvfb %s %dx%d, X client redrawing the whole screen at %d fps"
              % (x.display, SIZE[0], SIZE[1], FPS))
        animator = yield XClient.start(reactor, x, "--animate", FPS)
        testcase.addCleanup(animator.stop)

        # 1. capture + encode, per frame
        results = {}
        for shm in (True, False):
            source = X11Source(x.display, reactor=reactor, use_shm=shm)
            testcase.addCleanup(source.stop)
            source.start()
            source.framebuffer()
            capture, encode, rows = [], [], []
            for _ in range(args.frames):
                yield sleep(reactor, 1.0 / FPS)
                source.readEvents()
                rows.append(sum(b - t for t, b in source._pending))
                started = time.perf_counter()
                frame = source.framebuffer()
                capture.append(time.perf_counter() - started)
                if shm:
                    started = time.perf_counter()
                    for strip in strips((0, 0, source.width, source.height)):
                        left, top, right, bottom = strip
                        encode_lz4(frame[top:bottom, left:right], new_image_id())
                    encode.append(time.perf_counter() - started)
            source.stop()
            results[shm] = (capture, encode, rows)
        print()
        print("capture + encode per frame (%dx%d, whole screen damaged):" % SIZE)
        capture, encode, rows = results[True]
        print("  capture, MIT-SHM        %s   (rows per capture: median %d)"
              % (ms(capture), statistics.median(rows)))
        print("  capture, core GetImage  %s" % (ms(results[False][0]),))
        print("  LZ4 encode (strips)     %s" % (ms(encode),))
        noise = numpy.random.default_rng(1).integers(0, 256, (SIZE[1], SIZE[0], 4),
                                                     numpy.uint8)
        worst = []
        for _ in range(10):
            started = time.perf_counter()
            for left, top, right, bottom in strips((0, 0, SIZE[0], SIZE[1])):
                encode_lz4(noise[top:bottom, left:right], new_image_id())
            worst.append(time.perf_counter() - started)
        print("  LZ4 encode, random noise %s   (the worst case, for comparison)"
              % (ms(worst),))
        total = [c + e for c, e in zip(capture, encode)]
        print("  capture + encode        %s   -> at most %.0f fps on one core"
              % (ms(total), 1.0 / statistics.median(total)))

        # 2. the fps spice-gtk gets
        source = X11Source(x.display, reactor=reactor)
        testcase.addCleanup(source.stop)
        source.start()
        captures = []
        original = source._capture

        def counting():
            pending = list(source._pending)
            captures.append(sum(bottom - top for top, bottom in source._bands()))
            source._pending = pending
            original()
        source._capture = counting
        server = SpiceServer(clock=reactor, disable_ticketing=True)
        server.startService()
        server.addInterface(source)
        endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        port = yield endpoint.listen(server.factory())
        testcase.addCleanup(port.stopListening)
        client = yield harness.GtkClient.start(reactor, "127.0.0.1", port.getHost().port)
        testcase.addCleanup(client.stop)
        yield client.waitForChannelsOpened((1, 2), timeout=60)
        yield client.waitForEvent({"event": "primary-create"}, timeout=60)
        yield sleep(reactor, 2.0)
        seen = len(animator.events)
        del captures[:]
        started = time.monotonic()
        yield sleep(reactor, DEFAULT_SECONDS if args.seconds is None else args.seconds)
        elapsed = time.monotonic() - started
        frameEvents = [e for e in animator.events[seen:] if e["event"] == "frame"]
        drawn = (float("nan") if len(frameEvents) < 2 else
                 (frameEvents[-1]["n"] - frameEvents[0]["n"])
                 / (frameEvents[-1]["time"] - frameEvents[0]["time"]))
        print()
        print("spice-gtk on loopback, %.0f s: %.1f updates/s sent, %.1f full screens/s "
              "(the X client drew %.1f fps)"
              % (elapsed, len(captures) / elapsed, sum(captures) / SIZE[1] / elapsed,
                 drawn))
        yield client.stop()
        for session in list(server.sessions.values()):
            session.end()
        yield animator.stop()
        source.stop()

        # 3. keypress to pixels, on a smaller screen: every poll of the
        # client's primary copies and hashes all of it (30 ms at full HD).
        small = XServer("Xvfb", LATENCY_SIZE).start()
        testcase.addCleanup(small.stop)
        keyboxer = yield XClient.start(reactor, small, "--keybox")
        testcase.addCleanup(keyboxer.stop)
        source = X11Source(small.display, allow_control=True, reactor=reactor)
        testcase.addCleanup(source.stop)
        source.start()
        marks = {}
        key, capture = source.key, source._capture

        def keyed(*a):
            marks.setdefault("key", time.monotonic())
            key(*a)

        def captured():
            capture()
            marks.setdefault("captured", time.monotonic())
        source.key, source._capture = keyed, captured
        server = SpiceServer(clock=reactor, disable_ticketing=True)
        server.startService()
        for device in source.devices():
            server.addInterface(device)
        port = yield endpoint.listen(server.factory())
        testcase.addCleanup(port.stopListening)
        client = yield harness.GtkClient.start(reactor, "127.0.0.1", port.getHost().port)
        testcase.addCleanup(client.stop)
        yield client.waitForChannelsOpened((1, 2, 3), timeout=60)
        yield client.waitForPrimary(lambda r: r.get("ok"), timeout=60)
        latencies, inServer = [], []
        for _ in range(args.warmup + args.runs):
            reply = yield client.check("primary", pixels=[[10, 10]])
            before = reply["pixels"][0] & 0xFFFFFF
            marks.clear()
            started = time.monotonic()
            yield client.check("key_press_and_release", scancode=0x39)
            while True:
                reply = yield client.check("primary", pixels=[[10, 10]])
                if reply["pixels"][0] & 0xFFFFFF != before:
                    break
                if time.monotonic() - started > 10:
                    raise BenchmarkError("the key press never changed the client's pixels")
                yield sleep(reactor, 0.002)
            latencies.append(time.monotonic() - started)
            if "key" in marks and "captured" in marks:
                inServer.append(marks["captured"] - marks["key"])
            yield sleep(reactor, 0.2)
        latencies = latencies[args.warmup:]
        inServer = inServer[args.warmup:]
        print()
        print("keypress to pixels, %dx%d screen (spice-gtk key -> XTEST -> X client "
              "repaint -> DAMAGE -> capture -> spice-gtk primary, polled every 2 ms):"
              % LATENCY_SIZE)
        print("  end to end              %s" % (ms(latencies),))
        print("  in the server           %s   (key reaches the X11 keyboard -> "
              "damaged rows captured)" % (ms(inServer),))
    finally:
        yield testcase.cleanUp()
