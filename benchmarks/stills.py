"""
The stills benchmark (issue 10): how long a real spice-gtk client waits for
a full-HD still picture, and how many bytes it costs, lossless against
JPEG where it pays, on loopback and on links limited to 50 and 10 Mbit/s
(the motion benchmark's network namespaces: tbf on the namespace's
loopback).

Pictures (1920x1080, deterministic, L{tests.pictures}): C{photo}, a
photograph-like picture, and C{ui}, windows with buttons, labels and text.

Modes: C{lossless} (C{--jpeg-wan-compression never}: LZ4), C{auto} (the
default: JPEG for photographs on links under 10 Mibit/s, told by testing
the link with the picture's first 256 KiB) and C{jpeg} (C{always}).

Figures, from the client's DISPLAY_INIT reaching the server:

- first ms: until the first complete picture is delivered (the server has
  sent it and the kernel's send queue is empty: the client has every
  byte), checked in the client's primary surface afterwards: exact, or
  above 35 dB for a photograph sent as JPEG (its PSNR is shown);
- first KiB: the display channel's bytes until then;
- exact ms: for a picture that went as JPEG, from the start of the
  lossless refresh (run at once here, not after the idle time) until it
  is delivered and the client's picture is exact; exact KiB its bytes.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time

from benchmarks import shaped
from benchmarks.shaped import LINKS

NAME = "stills"
DESCRIPTION = ("A full-HD photograph and a UI picture, lossless (LZ4) against JPEG where it "
               "pays, on loopback and 50/10 Mbit/s links: time to the first complete picture "
               "and bytes.")
DEFAULT_RUNS = 1
PICTURES = ("photo", "ui")
MODES = {"lossless": "never", "auto": "auto", "jpeg": "always"}
SIZE = (1920, 1080)
PSNR_BOUND = 35.0


def addArguments(group):
    group.add_argument("--stills-links", default=",".join(LINKS),
                       help="links (default: %s)" % (",".join(LINKS),))
    group.add_argument("--stills-pictures", default=",".join(PICTURES),
                       help="photo and/or ui (default: both)")
    group.add_argument("--stills-modes", default=",".join(MODES),
                       help="lossless, auto and/or jpeg (default: all)")


# -- the worker: one server, one client, one variant -------------------------------

def worker(reactor, options):
    from twisted.internet import defer, task

    from benchmarks import loopback
    from spicesrv.channels.display import DisplayChannel
    from spicesrv.display import stills
    from spicesrv.sources.image import ImageSource
    from spicesrv.testing import sessionChannel
    from spicesrv.wire.constants import ChannelType
    from tests import pictures
    from tests.interop.harness import pixelsEqual

    # The exact refresh is started by the benchmark, once the first picture
    # is measured.
    stills.IDLE_REFRESH = 3600.0
    inits = []
    original = DisplayChannel.msg_INIT

    def msg_INIT(self, msg):
        inits.append(time.monotonic())
        return original(self, msg)
    DisplayChannel.msg_INIT = msg_INIT

    def sleep(seconds):
        return task.deferLater(reactor, seconds, lambda: None)

    @defer.inlineCallbacks
    def delivered(display, timeout=120):
        deadline = time.monotonic() + timeout
        while not (display.initialized and not display.damage and not display.exact
                   and display._wanProbe is None and display.queuedBytes() == 0):
            if time.monotonic() > deadline:
                raise RuntimeError("the picture was not delivered in %s s" % (timeout,))
            yield sleep(0.002)
        return time.monotonic()

    @defer.inlineCallbacks
    def run():
        tmp = tempfile.mkdtemp(prefix="spicesrv-stills-")
        frame = (pictures.photoPicture(*SIZE) if options.picture == "photo"
                 else pictures.uiPicture(*SIZE))
        path = os.path.join(tmp, "picture.png")
        pictures.rgbImage(frame).save(path)
        source = ImageSource(path)
        frame = source.framebuffer()
        served = yield loopback.serve(reactor, source.devices(),
                                      jpeg_wan_compression=MODES[options.mode])
        server = served.server
        client = yield served.startClient()
        result = {}
        dump = os.path.join(tmp, "primary.raw")
        try:
            yield client.waitForChannelsOpened((1, 2), timeout=30)
            display = sessionChannel(server, ChannelType.DISPLAY)
            done = yield delivered(display)
            result.update(firstMs=(done - inits[0]) * 1000,
                          firstBytes=display.bytesWritten,
                          jpegImages=display.stills.sent["jpeg"],
                          probedMbit=(display.stills.probedRate or 0) * 8 / 1e6)
            shown = []

            def complete(pixels):
                if pixels.shape != frame.shape:
                    return False
                shown[:] = [pictures.psnr(pixels, frame)]
                return shown[0] > PSNR_BOUND
            yield client.waitForPixels(complete, dump, timeout=60)
            result["psnr"] = shown[0]
            if display.stills.lossy:
                # Now; and if a message is in flight at this moment (the
                # refresh waits for an idle link), again at once after it.
                stills.IDLE_REFRESH = 0.01
                display._idleCall.reset(0)
                yield sleep(0)
                start, before = time.monotonic(), display.bytesWritten
                yield sleep(0.01)
                done = yield delivered(display)
                result.update(exactMs=(done - start) * 1000,
                              exactBytes=display.bytesWritten - before)

                yield client.waitForPixels(lambda pixels: pixelsEqual(pixels, frame), dump,
                                           timeout=60)
        finally:
            yield client.stop()
            yield served.stop()
            shutil.rmtree(tmp, ignore_errors=True)
        print("RESULT " + json.dumps(result))
        sys.stdout.flush()

    return run()


# -- the driver ---------------------------------------------------------------------

def runWorker(prefix, picture, mode):
    return shaped.runWorker("stills", prefix, ["--picture", picture, "--mode", mode], 400,
                            "%s/%s" % (picture, mode))


HEADER = ("link     picture mode     | first ms  first KiB  PSNR dB  JPEG imgs | "
          "exact ms  exact KiB | probe Mbit/s")


def formatRow(link, picture, mode, r):
    exact = ("%8.0f  %9.0f" % (r["exactMs"], r["exactBytes"] / 1024) if "exactMs" in r
             else "%8s  %9s" % ("-", "-"))
    quality = "exact" if r["psnr"] == float("inf") else "%.1f" % (r["psnr"],)
    probe = "%.1f" % (r["probedMbit"],) if r["probedMbit"] else "-"
    return ("%-8s %-7s %-8s | %8.0f  %9.0f  %7s  %9d | %s | %s" % (
        link, picture, mode, r["firstMs"], r["firstBytes"] / 1024, quality, r["jpegImages"],
        exact, probe))


def run(reactor, args):
    from twisted.internet import threads
    return threads.deferToThread(runAll, args)


def runAll(args):
    links, pictureNames, modes = shaped.choices(
        ("link", args.stills_links, LINKS), ("picture", args.stills_pictures, PICTURES),
        ("mode", args.stills_modes, MODES))
    print("stills benchmark: %dx%d, spice-gtk, %d run%s each" % (
        SIZE[0], SIZE[1], args.runs, "" if args.runs == 1 else "s"))
    links = shaped.usableLinks(links)
    print()
    print(HEADER)
    print("-" * len(HEADER))
    sys.stdout.flush()
    return shaped.runVariants(links, [(p, m) for p in pictureNames for m in modes],
                              args.runs, runWorker, formatRow)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.stills")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--picture", default="photo", choices=PICTURES)
    parser.add_argument("--mode", default="auto", choices=list(MODES))
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    addArguments(parser)
    args = parser.parse_args(argv)
    if args.worker:
        from twisted.internet import task
        task.react(lambda reactor: worker(reactor, args))
    else:
        runAll(args)


if __name__ == "__main__":
    main()
