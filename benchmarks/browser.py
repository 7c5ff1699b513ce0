"""
The browser part of the connect benchmark: spice-html5 in headless
Chromium, served by spicesrv itself (C{--web-client}), from the moment the
page is asked for to the first complete frame on its canvas.

How it measures:

- One spicesrv server (C{twistd spice --web-client --source image:PATH},
  the benchmark's generated 1024x768 picture) and one headless Chromium,
  driven through the DevTools protocol (L{tests.interop.chromium}), with
  its HTTP cache disabled: every run loads the page and all of
  spice-html5's files (about 25 requests) as a first visit does.
- Time zero is the browser's navigation start (C{performance.timeOrigin},
  the moment C{Page.navigate} begins a new document); every time is
  C{performance.now()} in the page, so no DevTools round trip is counted.
- page load: the page's C{load} event (the landing page and spice-html5's
  modules fetched and run).
- first frame: the last draw on the primary canvas (a script added before
  the page's own wraps C{putImageData} and C{drawImage} and stamps each
  draw on C{spice_surface_0}), once the canvas read back equals the
  picture pixel for pixel (spice-html5 has no LZ4: raw bitmaps); for a
  photograph sent as JPEG (C{--jpeg-wan-compression always}), the last
  C{drawImage} (spice-html5 draws JPEG images so) once the canvas is
  within 35 dB of the picture: the exact refresh that follows half a
  second later is not part of the first frame.
- Between runs the page goes to C{about:blank}, which closes its
  WebSockets, and the benchmark pauses.
"""

import shutil
import statistics
import sys
import tempfile

import numpy as np
from twisted.internet import defer, task

from benchmarks import BenchmarkError

DRAW_STAMPS = """
(() => {
    window.__spiceDraws = [];
    for (const name of ['putImageData', 'drawImage']) {
        const original = CanvasRenderingContext2D.prototype[name];
        CanvasRenderingContext2D.prototype[name] = function (...args) {
            const result = original.apply(this, args);
            if (this.canvas && this.canvas.id === 'spice_surface_0')
                window.__spiceDraws.push([name, performance.now()]);
            return result;
        };
    }
})();
"""

RUN_TIMEOUT = 30
PAUSE = 0.3


def unavailable():
    """
    Why the browser figures cannot be had here, or L{None}.
    """
    from spicesrv.web.client import ClientNotFound, locate_client
    if shutil.which("chromium") is None:
        return "chromium not installed (apt-get install chromium)"
    try:
        locate_client()
    except ClientNotFound as e:
        return str(e)
    return None


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def shows(pixels, rgb, minPsnr):
    """
    Whether the canvas C{pixels} (RGBA) show C{rgb}: exactly, or with
    C{minPsnr} at least that many dB (a picture sent as JPEG).
    """
    if pixels.shape[:2] != rgb.shape[:2]:
        return False
    if minPsnr is None:
        return np.array_equal(pixels[:, :, :3], rgb)
    return psnr(pixels[:, :, :3], rgb) >= minPsnr


@defer.inlineCallbacks
def measureOnce(reactor, browser, url, rgb, minPsnr=None):
    yield browser.navigate(url)
    deadline = reactor.seconds() + RUN_TIMEOUT
    while True:
        ready = yield browser.evaluate(
            "window.spicesrv && window.spicesrv.phase === 'connected' && "
            "document.querySelector('#spice_surface_0') !== null")
        if ready:
            pixels = yield browser.canvasPixels("#spice_surface_0")
            if shows(pixels, rgb, minPsnr):
                break
        if reactor.seconds() > deadline:
            raise BenchmarkError("the browser did not show the picture within %d s; the "
                                 "page logged: %s" % (RUN_TIMEOUT, browser.consoleMessages[-5:]))
        yield task.deferLater(reactor, 0.02, lambda: None)
    # A picture sent as JPEG is drawn with drawImage (spice-html5 decodes
    # it as an Image); its exact refresh half a second later comes with
    # putImageData and is not part of the first frame.
    kinds = "['drawImage']" if minPsnr is not None else "['drawImage', 'putImageData']"
    times = yield browser.evaluate(
        "(() => { const d = window.__spiceDraws.filter(e => %s.includes(e[0])); "
        "return [performance.getEntriesByType('navigation')[0].loadEventEnd, "
        "Math.max(...d.map(e => e[1])), d.length]; })()" % (kinds,))
    yield browser.navigate("about:blank")
    yield task.deferLater(reactor, PAUSE, lambda: None)
    return times[0] / 1000.0, times[1] / 1000.0, times[2]


@defer.inlineCallbacks
def measureBrowser(reactor, args, server, rgb, tmpdir, minPsnr=None):
    """
    Measure C{args.runs} page loads (after C{args.warmup} not counted)
    against C{server} (a started L{benchmarks.connect.ServerProcess} with
    C{--web-client}); fire with C{[(load, frame, draws)]} in seconds.
    """
    from tests.interop.chromium import Chromium
    # A profile of its own per browser: a Chromium that just stopped may
    # still hold the last one's lock.
    directory = tempfile.mkdtemp(prefix="chromium-", dir=tmpdir)
    browser = yield Chromium.start(reactor, directory, 1024, 800)
    try:
        yield browser.send("Network.enable")
        yield browser.send("Network.setCacheDisabled", {"cacheDisabled": True})
        yield browser.send("Page.addScriptToEvaluateOnNewDocument", {"source": DRAW_STAMPS})
        url = "http://127.0.0.1:%d/" % (server.port,)
        samples = []
        sys.stdout.write("  browser: %d runs:" % (args.runs,))
        for i in range(args.warmup + args.runs):
            sample = yield measureOnce(reactor, browser, url, rgb, minPsnr)
            if i >= args.warmup:
                samples.append(sample)
                sys.stdout.write(" %d" % (i - args.warmup + 1,))
                sys.stdout.flush()
        print()
        return samples
    finally:
        yield browser.stop()


def printBrowser(samples, picture, label="generated", header=True):
    def triple(values):
        values = [v * 1000.0 for v in values]
        return "%7.1f %7.1f %7.1f" % (statistics.median(values), min(values), max(values))
    if header:
        print("browser: spice-html5 in headless Chromium, page from spicesrv --web-client "
              "(HTTP cache disabled), raw bitmaps (JPEG where said)")
        print("%-38s | %-23s | %-23s | %4s" % ("client", "page load ms", "first frame ms",
                                                "runs"))
        print("%-38s | %23s | %23s |" % ("", " median     min     max",
                                          " median     min     max"))
    print("%-38s | %s | %s | %4d" % ("spice-html5 %s %s" % (picture, label),
                                     triple(s[0] for s in samples),
                                     triple(s[1] for s in samples), len(samples)))
    if header:
        print("  time zero: navigation start; page load: the load event; first frame: the "
              "last draw on the canvas, which then equals the picture (exact pixels; for "
              "JPEG: the last JPEG draw, PSNR of at least 35 dB).")
