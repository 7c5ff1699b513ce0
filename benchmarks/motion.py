"""
The motion benchmark (issue 10): what a real spice-gtk client gets of moving
pictures, with video streams (MJPEG, VP8, VP9, H.264) and with the lossless
pipeline (C{--streaming-video off}), on loopback and on links limited to 50
and 10 Mbit/s.

Pipelines: C{stream} (MJPEG, the default server), C{vp8}, C{vp9} and C{h264}
(C{--video-codecs ffmpeg:CODEC}; spice-gtk decodes them through GStreamer),
and C{lossless}; the scroll goes as COPY_BITS in all of them.  Two more
export an X display that an X client (L{benchmarks.xmotion}) draws the
video and scroll workloads into, as applications draw: C{xspice}, the
reference (Xspice, i.e. Xorg with libspice-server 0.15, showing its own
screen; L{benchmarks.xspice}), and C{x11} (spicesrv's X11 source exporting
that same screen).  Every pipeline runs over TLS too, named with C{+tls}
after it (C{stream+tls}, C{xspice+tls}): the client's channels all on the
server's TLS port, with development certificates.

Workloads (L{spicesrv.sources.motion}, deterministic, 1920x1080):

- C{video}: a 640x360 area plays video at 30 fps on a still desktop;
- C{scroll}: the whole screen scrolls a photograph-like picture at 30 fps;
- C{typing}: 20 characters a second appear in a text area.

Links: C{loopback} is the host's own; C{50mbit} and C{10mbit} run inside a
network namespace the benchmark makes (``ip netns add``), whose loopback
has MTU 1500 and a token-bucket filter (``tc qdisc add dev lo root tbf rate
50mbit burst 32kb latency 300ms``; this kernel has no netem).  Each variant
runs in a worker process (``python3 -m benchmarks.motion --worker ...``,
under ``ip netns exec`` for the shaped links) holding the server and the
harness; the client (``tests/interop/gtkclient.py``) is its child, so it is
in the same namespace.

Figures, over a measured window after the warm-up (streams are detected
after 20 frames):

- fps: distinct frames the client showed per second (its ``watch`` reads the
  frame's bar code at every invalidate); for C{typing}, characters shown;
- KiB/frame: display-channel bytes in the window per frame shown;
- PSNR: the client's moving area (dumped a few times in the window, when its
  top and bottom frame codes agree) against the source's frame of that
  number; "exact" when equal; for C{typing}, whether each dump equals one
  of the source's recent states;
- latency: from the source drawing a frame (``time.monotonic``) to the
  client's invalidate that showed it (``g_get_monotonic_time``, the same
  clock), median and 90th percentile;
- CPU/frame: the worker's CPU (server, encoder threads, harness) per frame
  shown, and the same without the source's own drawing; CPU% is per core;
- exact after stop: seconds from the motion stopping until the client's
  picture equals the source's exactly.
"""

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy

from benchmarks import shaped
from benchmarks.shaped import LINKS, REPO
from tests.pictures import psnr

NAME = "motion"
DESCRIPTION = ("Video area, full-HD scroll and typing with MJPEG, VP8, H.264 (VP9) streams and lossless, "
               "on loopback and 50/10 Mbit/s links (tbf in a network namespace).")
DEFAULT_RUNS = 1

WORKLOADS = ("video", "scroll", "typing")
PIPELINES = ("stream", "vp8", "h264", "vp9", "lossless", "x11", "xspice")
#: The pipelines that export an X display an X client draws the workload
#: into (benchmarks.xmotion): spicesrv's X11 source, and Xspice
#: (libspice-server 0.15), the reference.
X_PIPELINES = ("x11", "xspice")
DEFAULT_PIPELINES = ("stream", "vp8", "h264", "lossless")
#: A pipeline's name with this after it: the same over TLS (every channel
#: on the TLS port, development certificates; Xspice too).
TLS_SUFFIX = "+tls"
KNOWN_PIPELINES = PIPELINES + tuple(p + TLS_SUFFIX for p in PIPELINES)
#: The --video-codecs of each streaming pipeline.
CODECS = {"stream": "spice:mjpeg", "vp8": "ffmpeg:vp8", "h264": "ffmpeg:h264",
          "vp9": "ffmpeg:vp9"}
SIZE = (1920, 1080)
FPS = {"video": 30, "scroll": 30, "typing": 20}


#: Measured seconds per variant (C{--seconds}, shared by the benchmarks).
DEFAULT_SECONDS = 6.0


def addArguments(group):
    group.add_argument("--links", default=",".join(LINKS),
                       help="links to measure (default: %s)" % (",".join(LINKS),))
    group.add_argument("--workloads", default=",".join(WORKLOADS),
                       help="workloads (default: %s)" % (",".join(WORKLOADS),))
    group.add_argument("--pipelines", default=",".join(DEFAULT_PIPELINES),
                       help="stream (MJPEG streams, the default server), vp8, h264, vp9 "
                       "(streams of that codec), lossless (--streaming-video off), x11 "
                       "and xspice (an X client draws into Xspice); each with +tls after "
                       "it over TLS (e.g. stream+tls); default: %s"
                       % (",".join(DEFAULT_PIPELINES),))


# -- the worker: one server, one client, one variant -------------------------------

def percentile(values, q):
    if not values:
        return None
    return float(numpy.percentile(numpy.array(values), q))


def cpuSeconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sampleWindow(reactor, client, tmp, seconds, lastFrame):
    """
    The measured window, C{seconds} long: six dumps of the client's
    primary surface, each with C{lastFrame()}, the source's latest frame
    then.  Fires with C{([(reply, n)], elapsed seconds)}.  The dumps are
    compared afterwards: comparing during the window would stall the
    server, which shares this reactor.
    """
    from twisted.internet import defer, task

    @defer.inlineCallbacks
    def sample():
        t0 = time.monotonic()
        dumps = []
        while time.monotonic() - t0 < seconds:
            yield task.deferLater(reactor, seconds / 6, lambda: None)
            path = os.path.join(tmp, "sample%d.raw" % (len(dumps),))
            reply = yield client.check("primary", dump=path)
            dumps.append((reply, lastFrame()))
        return dumps, time.monotonic() - t0
    return sample()


def codedSamples(dumps, rect, render):
    """
    The PSNR of the moving area C{rect} in each dump whose frame code reads
    the same at its top and bottom (not torn) and is not ahead of the
    source, against C{render(n)} of the frame it shows.
    """
    from spicesrv.sources.motion import CODE_BLOCK, readFrameCode
    from tests.interop import harness
    left, top, right, bottom = rect
    samples = []
    for reply, last in dumps:
        shown = harness.loadPrimary(reply)[top:bottom, left:right]
        n = readFrameCode(shown, 0, bottom - top)
        if n == readFrameCode(shown, 0, CODE_BLOCK) and n <= last:
            samples.append(psnr(shown, render(n)))
    return samples


def codedLatencies(events, frameTimes):
    """
    The client's C{frame} events (a new frame code shown): how many, and
    each one's latency from the source drawing it (C{frameTimes}).
    """
    shownFrames = [e for e in events if e["event"] == "frame"]
    return len(shownFrames), [e["t"] - frameTimes[e["n"]] for e in shownFrames
                              if e["n"] in frameTimes]


def worker(reactor, options):
    from twisted.internet import defer, task

    from benchmarks import loopback
    from spicesrv.display.video import ThreadedEncoder
    from spicesrv.sources.motion import CODE_BITS, CODE_BLOCK, MotionSource
    from spicesrv.testing import sessionChannel
    from spicesrv.wire.constants import ChannelType
    from tests.interop import harness
    from tests.interop.harness import pixelsEqual

    def sleep(seconds):
        return task.deferLater(reactor, seconds, lambda: None)

    @defer.inlineCallbacks
    def waitUntil(condition, timeout, what):
        deadline = reactor.seconds() + timeout
        while not condition():
            if reactor.seconds() > deadline:
                raise RuntimeError("timed out (%s s) waiting for %s" % (timeout, what))
            yield sleep(0.02)

    @defer.inlineCallbacks
    def run():
        tmp = tempfile.mkdtemp(prefix="spicesrv-motion-")
        workload = options.workload
        source = MotionSource(width=SIZE[0], height=SIZE[1], workload=workload,
                              fps=FPS[workload], clock=reactor, autostart=False)
        pipeline, tls = splitPipeline(options.pipeline)
        streaming = pipeline in CODECS
        served = yield loopback.serve(reactor, source.devices(), tls=tls,
                                      streaming_video="filter" if streaming else "off",
                                      video_encoder=ThreadedEncoder(reactor),
                                      video_codecs=CODECS.get(pipeline))
        server = served.server
        client = yield served.startClient()
        result = {}
        try:
            yield client.waitForChannelsOpened((1, 2), timeout=30)
            dump = os.path.join(tmp, "primary.raw")

            yield client.waitForPixels(
                lambda shown: pixelsEqual(shown, source.framebuffer()), dump, timeout=60)
            code = source.codePosition()
            if code is not None:
                yield client.check("watch", code=[code[0], code[1], CODE_BITS, CODE_BLOCK])
            else:
                yield client.check("watch", invalidates=True)
            display = sessionChannel(server, ChannelType.DISPLAY)
            source.start()
            if streaming and workload == "video":
                yield waitUntil(lambda: display.streams.streams, 20, "a stream")
            yield sleep(1.0)

            left, top, right, bottom = source.movingRect()
            events0 = len(client.events)
            bytes0 = display.bytesWritten
            copies0, copied0 = display.copiesSent, display.copiedPixels
            cpu0, draw0, frame0 = cpuSeconds(), source.drawSeconds, source.frameNumber
            dumps, elapsed = yield sampleWindow(reactor, client, tmp, options.seconds,
                                                lambda: source.frameNumber)
            cpu = cpuSeconds() - cpu0
            draw = source.drawSeconds - draw0
            sent = display.bytesWritten - bytes0
            drawn = source.frameNumber - frame0
            events = client.events[events0:]
            if code is not None:
                samples = codedSamples(dumps, (left, top, right, bottom), source.render)
                delivered, latencies = codedLatencies(events, source.frameTimes)
            else:
                # Typing: whether each dump shows one of the latest frames
                # exactly, and each character's latency to the invalidate
                # that covered it.
                samples = []
                for reply, last in dumps:
                    shown = harness.loadPrimary(reply)[top:bottom, left:right]
                    samples.append(any(numpy.array_equal(shown[..., :3],
                                                         source.render(k)[..., :3])
                                       for k in range(max(0, last - 8), last + 1)))
                pending = {}
                delivered = 0
                for e in events:
                    if e["event"] != "invalidate-now":
                        continue
                    box = (e["x"], e["y"], e["x"] + e["width"], e["y"] + e["height"])
                    for i in range(frame0 + 1, source.frameNumber + 1):
                        if i in pending or i not in source.frameTimes:
                            continue
                        x0, y0, x1, y1 = source.charRect(i)
                        r = (left + x0, top + y0, left + x1, top + y1)
                        if (box[0] <= r[0] and box[1] <= r[1] and box[2] >= r[2]
                                and box[3] >= r[3] and source.frameTimes[i] <= e["t"]):
                            pending[i] = e["t"] - source.frameTimes[i]
                latencies = list(pending.values())
                delivered = len(pending)
            result.update(
                fps=delivered / elapsed, sourceFps=drawn / elapsed,
                bytesPerFrame=sent / max(1, delivered), mbit=sent * 8 / elapsed / 1e6,
                psnr=samples, latencyMedian=percentile(latencies, 50),
                latencyP90=percentile(latencies, 90), cpuPerFrame=cpu / max(1, delivered),
                cpuPerFrameNoDraw=(cpu - draw) / max(1, delivered), cpuShare=cpu / elapsed,
                streams=display.streams.created, quality=display.streams.rate.quality,
                codecs=sorted({s.codec.name for s in display.streams.streams.values()}),
                keyframes=sum(getattr(s.encoder, "keyframes", 0)
                              for s in display.streams.streams.values()),
                delayMs=display.streams.rate.delayMs, rate=display.streams.rate.rate,
                delivered=delivered, copies=display.copiesSent - copies0,
                copiedShare=(display.copiedPixels - copied0)
                / max(1, display.copiesSent - copies0) / ((right - left) * (bottom - top)),
                dropped=display.streams.rate.framesDropped,
                clientFrames=display.streams.rate.reportedFrames,
                clientDrops=display.streams.rate.reportedDrops)

            source.stop()
            stopped = time.monotonic()
            yield client.waitForPixels(
                lambda shown: pixelsEqual(shown, source.framebuffer()), dump, timeout=120)
            result["exactAfter"] = time.monotonic() - stopped
        finally:
            source.stop()
            yield client.stop()
            yield served.stop()
            shutil.rmtree(tmp, ignore_errors=True)
        print("RESULT " + json.dumps(result))
        sys.stdout.flush()

    return run()


def xworker(reactor, options):
    """
    The X variants: an Xspice whose screen an X client (benchmarks.xmotion)
    draws the workload into, shown to spice-gtk by Xspice itself
    (C{xspice}: libspice-server) or by spicesrv's X11 source exporting the
    same display (C{x11}).  Measured as L{worker} measures, with the
    display channel's bytes as spice-gtk counts them (total-read-bytes) and
    the CPU of the X server (which runs libspice-server in Xspice) plus this
    process (spicesrv in C{x11}).
    """
    from twisted.internet import defer, protocol, task

    from benchmarks import loopback
    from benchmarks.xspice import Xspice
    from spicesrv.display.video import ThreadedEncoder
    from spicesrv.sources.motion import CODE_BITS, CODE_BLOCK, MotionSource
    from spicesrv.sources.x11 import X11Source
    from spicesrv.testing import sessionChannel
    from spicesrv.wire.constants import ChannelType
    from tests.interop import harness
    from tests.interop.harness import pixelsEqual

    def sleep(seconds):
        return task.deferLater(reactor, seconds, lambda: None)

    class Player(protocol.ProcessProtocol):
        def __init__(self):
            self.buffer = b""
            self.frameTimes = {}
            self.last = 0
            self.ready = defer.Deferred()
            self.stopped = None
            self.ended = defer.Deferred()

        def outReceived(self, data):
            self.buffer += data
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                event = json.loads(line)
                if event["event"] == "ready":
                    self.ready.callback(event)
                elif event["event"] == "frame":
                    self.frameTimes[event["n"]] = event["t"]
                    self.last = event["n"]
                elif event["event"] == "stopped" and self.stopped is not None:
                    self.stopped.callback(event["n"])

        def errReceived(self, data):
            sys.stderr.write(data.decode(errors="replace"))

        def processEnded(self, reason):
            self.ended.callback(None)

    @defer.inlineCallbacks
    def run():
        tmp = tempfile.mkdtemp(prefix="spicesrv-motion-x-")
        workload = options.workload
        pipeline, tls = splitPipeline(options.pipeline)
        reference = MotionSource(width=SIZE[0], height=SIZE[1], workload=workload,
                                 fps=FPS[workload], clock=task.Clock(), autostart=False)
        xs = Xspice(tmp, SIZE[0], SIZE[1], tls=tls)
        player = Player()
        env = xs.environment()
        env["PYTHONPATH"] = REPO
        playerProcess = reactor.spawnProcess(
            player, sys.executable,
            [sys.executable, "-m", "benchmarks.xmotion", "--workload", workload,
             "--fps", str(FPS[workload])], env=env, path=REPO)
        served = client = source = None
        result = {}
        try:
            yield player.ready
            if pipeline == "x11":
                source = X11Source(display=xs.display, reactor=reactor)
                served = yield loopback.serve(reactor, source.devices(), tls=tls,
                                              video_encoder=ThreadedEncoder(reactor))
                source.start()
                client = yield served.startClient()
            else:
                client = yield xs.startClient(reactor)
            yield client.waitForChannelsOpened((1, 2), timeout=30)
            dump = os.path.join(tmp, "primary.raw")
            left, top, right, bottom = reference.movingRect()

            def showsFrame(n, exact):
                expected = reference.framebuffer().copy()
                expected[top:bottom, left:right] = reference.render(n)

                def check(shown):
                    if exact:
                        return pixelsEqual(shown, expected)
                    return shown.shape == expected.shape and psnr(shown, expected) > 30
                return check

            # Xspice may send the first picture lossily (JPEG) on a slow link.
            yield client.waitForPixels(showsFrame(0, False), dump, timeout=90)
            code = reference.codePosition()
            yield client.check("watch", code=[code[0], code[1], CODE_BITS, CODE_BLOCK])

            def displayBytes(reply):
                for channel in reply["channels"]:
                    if channel["type"] == ChannelType.DISPLAY:
                        return channel["read_bytes"]
                return 0

            playerProcess.write(b"go\n")
            yield sleep(3.0)

            events0 = len(client.events)
            bytes0 = displayBytes((yield client.check("channels")))
            cpu0, xcpu0, frame0 = cpuSeconds(), xs.cpuSeconds(), player.last
            dumps, elapsed = yield sampleWindow(reactor, client, tmp, options.seconds,
                                                lambda: player.last)
            cpu, xcpu = cpuSeconds() - cpu0, xs.cpuSeconds() - xcpu0
            sent = displayBytes((yield client.check("channels"))) - bytes0
            drawn = player.last - frame0
            samples = codedSamples(dumps, (left, top, right, bottom), reference.render)
            delivered, latencies = codedLatencies(client.events[events0:], player.frameTimes)
            result.update(
                fps=delivered / elapsed, sourceFps=drawn / elapsed,
                bytesPerFrame=sent / max(1, delivered), mbit=sent * 8 / elapsed / 1e6,
                psnr=samples, latencyMedian=percentile(latencies, 50),
                latencyP90=percentile(latencies, 90),
                cpuPerFrame=(cpu + xcpu) / max(1, delivered),
                cpuPerFrameNoDraw=(cpu / max(1, delivered) if pipeline == "x11" else None),
                cpuShare=(cpu + xcpu) / elapsed, xorgShare=xcpu / elapsed,
                streams=0, delivered=delivered)
            if pipeline == "x11":
                display = sessionChannel(served.server, ChannelType.DISPLAY)
                result.update(streams=display.streams.created, copies=display.copiesSent,
                              copiedShare=display.copiedPixels / max(1, display.copiesSent)
                              / ((right - left) * (bottom - top)))

            player.stopped = defer.Deferred()
            playerProcess.write(b"stop\n")
            last = yield player.stopped
            stopped = time.monotonic()
            try:
                yield client.waitForPixels(showsFrame(last, True), dump, timeout=30)
                result["exactAfter"] = time.monotonic() - stopped
            except harness.HarnessTimeout:
                result["exactAfter"] = None
        finally:
            if client is not None:
                yield client.stop()
            if served is not None:
                yield served.stop()
            if source is not None:
                source.stop()
            playerProcess.closeStdin()
            yield player.ended
            xs.stop()
            shutil.rmtree(tmp, ignore_errors=True)
        print("RESULT " + json.dumps(result))
        sys.stdout.flush()

    return run()


# -- the driver ---------------------------------------------------------------------

def splitPipeline(name):
    """C{(pipeline, tls)} of a pipeline name (C{stream}, C{stream+tls})."""
    if name.endswith(TLS_SUFFIX):
        return name[:-len(TLS_SUFFIX)], True
    return name, False


def runWorker(prefix, workload, pipeline, seconds):
    return shaped.runWorker("motion", prefix, ["--workload", workload, "--pipeline", pipeline,
                                               "--seconds", str(seconds)],
                            seconds + 240, "%s/%s" % (workload, pipeline))


def formatPsnr(samples, workload):
    if not samples:
        return "n/a"
    if workload == "typing":
        return "exact %d/%d" % (sum(1 for s in samples if s), len(samples))
    finite = [s for s in samples if s != float("inf")]
    if not finite:
        return "exact"
    return "%.1f min %.1f" % (numpy.median([min(s, 99) for s in samples]), min(finite))


def formatRow(link, workload, pipeline, r):
    def ms(v):
        return "%6.0f" % (v * 1000) if v is not None else "   n/a"
    def opt(v, scale=1.0, width=6):
        return "%*.1f" % (width, v * scale) if v is not None else "%*s" % (width, "n/a")
    perFrame = "%8.1f" % (r["bytesPerFrame"] / 1024,) if r["fps"] else "     n/a"
    return ("%-8s %-7s %-12s | %5.1f %5.1f | %s %6.1f | %-16s | %s %s | %6.1f %s %5.0f%% |"
            " %s" % (
                link, workload, pipeline, r["fps"], r["sourceFps"], perFrame,
                r["mbit"], formatPsnr(r["psnr"], workload), ms(r["latencyMedian"]),
                ms(r["latencyP90"]), r["cpuPerFrame"] * 1000, opt(r["cpuPerFrameNoDraw"], 1000),
                r["cpuShare"] * 100, opt(r["exactAfter"])))


HEADER = ("link     load    pipeline     |   fps   src | KiB/frm Mbit/s | PSNR dB med/min   |"
          " lat ms p50 p90 | CPU ms/frm nodraw  CPU%% | exact s")


def run(reactor, args):
    from twisted.internet import threads
    return threads.deferToThread(runAll, args)


def runAll(args):
    links, workloads, pipelines = shaped.choices(
        ("link", args.links, LINKS), ("workload", args.workloads, WORKLOADS),
        ("pipeline", args.pipelines, KNOWN_PIPELINES))
    seconds = DEFAULT_SECONDS if args.seconds is None else args.seconds
    print("motion benchmark: %s s measured per variant, %dx%d, %d run%s each" % (
        seconds, SIZE[0], SIZE[1], args.runs, "" if args.runs == 1 else "s"))
    links = shaped.usableLinks(links)
    def xPipeline(name):
        return splitPipeline(name)[0] in X_PIPELINES
    if any(xPipeline(p) for p in pipelines):
        from benchmarks import xspice
        if not xspice.available():
            print("x11/xspice pipelines need Xspice and xrandr (apt-get install "
                  "xserver-xspice x11-xserver-utils): skipped")
            pipelines = [p for p in pipelines if not xPipeline(p)]
        else:
            print("x11 and xspice: an X client (benchmarks.xmotion) draws the workload into "
                  "Xspice's screen (scroll: CopyArea and the new rows); xspice is Xspice's "
                  "own libspice-server, x11 is spicesrv --source x11: on that display. CPU: "
                  "the X server's (with libspice-server in it) plus the worker's; nodraw: "
                  "spicesrv's alone")
    print()
    print(HEADER.replace("%%", "%"))
    print("-" * len(HEADER))
    sys.stdout.flush()
    # (The X client plays video and scroll only.)
    variants = [(w, p) for w in workloads for p in pipelines
                if not (xPipeline(p) and w == "typing")]
    results = shaped.runVariants(
        links, variants, args.runs, lambda prefix, w, p: runWorker(prefix, w, p, seconds),
        formatRow)
    print()
    print("stream details (frames dropped for the full link, frames the client reported "
          "late of those it got, last quality, playback delay ms, measured link Mbit/s):")
    for link, workload, pipeline, r in results:
        if splitPipeline(pipeline)[0] in CODECS and r["streams"]:
            print("  %-8s %-7s %-10s dropped %4d  late %4d/%-4d  quality %2d  keyframes %2d  "
                  "delay %3.0f  link %s" % (
                link, workload, pipeline, r["dropped"], r["clientDrops"], r["clientFrames"],
                r["quality"], r.get("keyframes", 0), r["delayMs"],
                "%.1f" % (r["rate"] * 8 / 1e6) if r["rate"] else "unmeasured"))
    copying = [(l, w, p, r) for l, w, p, r in results if r.get("copies")]
    if copying:
        print()
        print("COPY_BITS (sent in the window, per frame shown, share of the moving area each "
              "copied):")
        for link, workload, pipeline, r in copying:
            shown = max(1, r["delivered"])
            print("  %-8s %-7s %-12s %5d  %4.2f a frame  %3.0f %%" % (
                link, workload, pipeline, r["copies"], r["copies"] / shown,
                r["copiedShare"] * 100))
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.motion")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workload", default="video", choices=WORKLOADS)
    parser.add_argument("--pipeline", default="stream", choices=KNOWN_PIPELINES)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS)
    addArguments(parser)
    args = parser.parse_args(argv)
    if args.worker:
        from twisted.internet import task
        work = xworker if splitPipeline(args.pipeline)[0] in X_PIPELINES else worker
        task.react(lambda reactor: work(reactor, args))
    else:
        runAll(args)


if __name__ == "__main__":
    main()
