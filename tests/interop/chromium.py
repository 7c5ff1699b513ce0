"""
Drive Debian's headless Chromium from Twisted trial tests and benchmarks,
through the DevTools protocol (a JSON-RPC over a WebSocket, spoken here with
autobahn's client).

    browser = yield Chromium.start(reactor, tmpdir, caFile=None)
    self.addCleanup(browser.stop)
    yield browser.navigate("http://127.0.0.1:%d/" % port)
    value = yield browser.evaluate("window.spicesrv.phase")
    yield browser.waitFor("window.spicesrv.phase === 'connected'")

Trusting a CA: Chromium on Linux reads the user's NSS database
(C{$HOME/.pki/nssdb}); L{Chromium.start} gives Chromium a fresh C{HOME}
whose database trusts C{caFile} (made with C{certutil}, from Debian's
C{libnss3-tools}), so no certificate error is ignored.

Sound: Chromium runs with C{--autoplay-policy=no-user-gesture-required}
(a page may play sound, and start an C{AudioContext}, without a user's
click, as spice-html5's <audio> element needs) and C{--mute-audio}
(headless Chromium still decodes and plays it, into no speaker).

Environment: C{CI=true} makes a missing Chromium fail the test instead of
skipping it.
"""

import base64
import io
import json
import os
import shutil
import subprocess
import unittest

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, endpoints, protocol, task

BINARY = "chromium"
APT_PACKAGES = "chromium libnss3-tools"


class ChromiumError(Exception):
    """
    The browser answered a command with an error, or did not do in time
    what was waited for.
    """


def findChromium():
    return shutil.which(BINARY)


def requireChromium(testcase):
    """
    Return Chromium's path and C{certutil}'s, or stop C{testcase}: under
    C{CI=true} it fails, elsewhere it is skipped.
    """
    chromium, certutil = findChromium(), shutil.which("certutil")
    if chromium is None or certutil is None:
        msg = ("headless Chromium tests need chromium and certutil; install them with: "
               "apt-get install -y %s (./dev does)" % (APT_PACKAGES,))
        if os.environ.get("CI") == "true":
            testcase.fail(msg)
        raise unittest.SkipTest(msg)
    return chromium, certutil


def trustingNSSDatabase(home, caFile):
    """
    Make C{home}/.pki/nssdb, an NSS database that trusts C{caFile} to
    issue server certificates.
    """
    db = os.path.join(home, ".pki", "nssdb")
    os.makedirs(db, exist_ok=True)
    subprocess.run(["certutil", "-N", "-d", "sql:" + db, "--empty-password"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(["certutil", "-A", "-d", "sql:" + db, "-n", "spicesrv test CA",
                    "-t", "C,,", "-i", caFile], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return db


class _DevTools(WebSocketClientProtocol):
    def onOpen(self):
        self.factory.opened.callback(self)

    def onMessage(self, payload, isBinary):
        self.factory.browser._message(json.loads(payload.decode("utf-8")))

    def onClose(self, wasClean, code, reason):
        if not self.factory.opened.called:
            self.factory.opened.errback(ChromiumError("DevTools refused: %s" % (reason,)))
        self.factory.browser._closed()


class _Process(protocol.ProcessProtocol):
    def __init__(self):
        self.ended = defer.Deferred()
        self.stderr = []

    def errReceived(self, data):
        self.stderr.append(data)

    def processEnded(self, reason):
        self.ended.callback(None)


class Chromium:
    """
    One headless Chromium and one page (a DevTools session on its tab).

    @ivar consoleMessages: what the page logged (console API calls and
        exceptions), as text.
    """

    def __init__(self, reactor):
        self.reactor = reactor
        self._nextId = 0
        self._pending = {}
        self.session = None
        self.consoleMessages = []
        self._ws = None
        self._process = None
        self._transport = None

    @classmethod
    @defer.inlineCallbacks
    def start(cls, reactor, directory, width=1024, height=800, caFile=None, timeout=30,
              autoplay=True):
        """
        Start Chromium with its profile and C{HOME} in C{directory} and
        attach to a blank tab whose viewport is C{width} x C{height}.
        With C{autoplay=False}, Chromium's own autoplay policy applies (a
        page plays sound only after the user's click or key).
        """
        self = cls(reactor)
        home = os.path.join(directory, "home")
        profile = os.path.join(directory, "profile")
        os.makedirs(home, exist_ok=True)
        os.makedirs(profile, exist_ok=True)
        if caFile is not None:
            trustingNSSDatabase(home, caFile)
        env = {"HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
               "LANG": "C.UTF-8", "TMPDIR": os.environ.get("TMPDIR", "/tmp")}
        args = [findChromium(), "--headless", "--no-sandbox", "--disable-gpu",
                "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--force-color-profile=srgb",
                "--hide-scrollbars", "--mute-audio", "--password-store=basic",
                "--window-size=%d,%d" % (width, height),
                "--remote-debugging-port=0", "--user-data-dir=" + profile, "about:blank"]
        if autoplay:
            args[1:1] = ["--autoplay-policy=no-user-gesture-required"]
        self._process = _Process()
        self._transport = reactor.spawnProcess(self._process, args[0], args, env=env)
        portFile = os.path.join(profile, "DevToolsActivePort")
        for _ in range(int(timeout / 0.05)):
            if os.path.exists(portFile):
                with open(portFile) as f:
                    lines = f.read().split()
                if len(lines) >= 2:
                    break
            yield task.deferLater(reactor, 0.05, lambda: None)
        else:
            self._kill()
            raise ChromiumError("Chromium did not open its DevTools port within %d s: %s"
                                % (timeout, b"".join(self._process.stderr)[-2000:]))
        port, path = int(lines[0]), lines[1]
        factory = WebSocketClientFactory("ws://127.0.0.1:%d%s" % (port, path))
        factory.protocol = _DevTools
        factory.browser = self
        factory.opened = defer.Deferred()
        factory.setProtocolOptions(maxFramePayloadSize=0, maxMessagePayloadSize=0)
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        yield endpoint.connect(factory)
        self._ws = yield factory.opened
        targets = yield self.send("Target.getTargets", session=False)
        page = [t for t in targets["targetInfos"] if t["type"] == "page"][0]
        attached = yield self.send("Target.attachToTarget",
                                   {"targetId": page["targetId"], "flatten": True},
                                   session=False)
        self.session = attached["sessionId"]
        yield self.send("Runtime.enable")
        yield self.send("Page.enable")
        yield self.send("Emulation.setDeviceMetricsOverride",
                        {"width": width, "height": height, "deviceScaleFactor": 1,
                         "mobile": False})
        return self

    # -- the protocol ----------------------------------------------------------

    def send(self, method, params=None, session=True, timeout=30):
        """
        Send one DevTools command; the Deferred fires with its result.
        """
        self._nextId += 1
        message = {"id": self._nextId, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = self.session
        d = defer.Deferred()
        self._pending[self._nextId] = (method, d)
        self._ws.sendMessage(json.dumps(message).encode("utf-8"))
        return d.addTimeout(timeout, self.reactor)

    def _message(self, message):
        if "id" in message:
            method, d = self._pending.pop(message["id"], (None, None))
            if d is None:
                return
            if "error" in message:
                d.errback(ChromiumError("%s: %s" % (method, message["error"])))
            else:
                d.callback(message.get("result", {}))
            return
        params = message.get("params", {})
        if message.get("method") == "Runtime.consoleAPICalled":
            self.consoleMessages.append(" ".join(
                str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif message.get("method") == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.consoleMessages.append("exception: %s" % (
                details.get("exception", {}).get("description") or details.get("text"),))

    def _closed(self):
        for method, d in self._pending.values():
            d.errback(ChromiumError("the DevTools connection closed during %s" % method))
        self._pending.clear()

    # -- the page ----------------------------------------------------------------

    def navigate(self, url):
        return self.send("Page.navigate", {"url": url})

    @defer.inlineCallbacks
    def evaluate(self, expression, awaitPromise=True):
        """
        The value of a JavaScript expression in the page.
        """
        result = yield self.send("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": awaitPromise})
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise ChromiumError("%s: %s" % (expression[:80], details.get("exception", {})
                                            .get("description") or details.get("text")))
        return result["result"].get("value")

    @defer.inlineCallbacks
    def waitFor(self, expression, timeout=20, interval=0.05):
        """
        Evaluate C{expression} until it is truthy; its value.
        """
        started = self.reactor.seconds()
        while True:
            try:
                value = yield self.evaluate(expression)
            except ChromiumError:
                value = None
            if value:
                return value
            if self.reactor.seconds() - started > timeout:
                raise ChromiumError("%s stayed false for %d s; the page logged: %s"
                                    % (expression, timeout, self.consoleMessages[-10:]))
            yield task.deferLater(self.reactor, interval, lambda: None)

    @defer.inlineCallbacks
    def canvasPixels(self, selector):
        """
        The pixels of a canvas, as an (height, width, 4) RGBA numpy array.
        """
        import numpy
        data = yield self.evaluate("""(() => {
            const c = document.querySelector(%s);
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let s = '';
            for (let i = 0; i < d.length; i += 32768)
                s += String.fromCharCode.apply(null, d.subarray(i, i + 32768));
            return [c.width, c.height, btoa(s)];
        })()""" % (json.dumps(selector),))
        width, height, encoded = data
        return numpy.frombuffer(base64.b64decode(encoded), numpy.uint8).reshape(
            height, width, 4)

    @defer.inlineCallbacks
    def screenshot(self, x, y, width, height):
        """
        What the page shows in that rectangle (CSS pixels), as an (height,
        width, 3) RGB numpy array.
        """
        import numpy
        from PIL import Image
        result = yield self.send("Page.captureScreenshot", {
            "format": "png", "clip": {"x": x, "y": y, "width": width, "height": height,
                                      "scale": 1}})
        image = Image.open(io.BytesIO(base64.b64decode(result["data"]))).convert("RGB")
        return numpy.asarray(image)

    @defer.inlineCallbacks
    def typeKey(self, key, code, keyCode):
        """
        Press and release one key (DOM C{key}, C{code}, Windows virtual
        key code), as a user's keyboard does.
        """
        for kind in ("keyDown", "keyUp"):
            params = {"type": kind, "key": key, "code": code,
                      "windowsVirtualKeyCode": keyCode, "nativeVirtualKeyCode": keyCode}
            if kind == "keyDown" and len(key) == 1:
                params["text"] = key
            yield self.send("Input.dispatchKeyEvent", params)

    @defer.inlineCallbacks
    def drag(self, points):
        """
        Press the left button at the first point, move through the others,
        release it at the last (page coordinates).
        """
        (x, y) = points[0]
        yield self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
        yield self.send("Input.dispatchMouseEvent", {"type": "mousePressed", "x": x, "y": y,
                                                     "button": "left", "buttons": 1,
                                                     "clickCount": 1})
        for (x, y) in points[1:]:
            yield self.send("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y,
                                                         "button": "left", "buttons": 1})
        yield self.send("Input.dispatchMouseEvent", {"type": "mouseReleased", "x": x, "y": y,
                                                     "button": "left", "buttons": 0,
                                                     "clickCount": 1})

    # -- the end -----------------------------------------------------------------

    def _kill(self):
        if self._transport is not None and self._transport.pid is not None:
            try:
                self._transport.signalProcess("KILL")
            except Exception:
                pass

    @defer.inlineCallbacks
    def stop(self):
        if self._ws is not None:
            try:
                yield self.send("Browser.close", session=False, timeout=5)
            except Exception:
                pass
        if self._process is not None and not self._process.ended.called:
            timer = self.reactor.callLater(5, self._kill)
            yield self._process.ended
            if timer.active():
                timer.cancel()
