"""
spice-html5 in headless Chromium against spicesrv, the way a user without
remote-viewer meets it: the browser loads the page from the SPICE port
(C{--web-client}), the client links over WebSocket, the canvas shows the
demo's picture pixel for pixel, the page's mouse cursor is the demo's, a
typed key and a drag reach the demo, a tone plays in the page (Opus in
WebM through MediaSource, heard by a WebAudio analyser), the same over
https/wss with the development CA trusted through an NSS database and
through a C{--listen} endpoint, and a wrong password is refused with a
message on the page.

Needs Debian's C{chromium}, C{libnss3-tools} and C{spice-html5}: missing,
the tests are skipped, and fail under C{CI=true}.
"""

import os

import numpy
from twisted.internet import defer, endpoints, reactor, task
from twisted.trial import unittest

from spicesrv.sound.tone import ToneSource
from spicesrv.tls.devcerts import write_dev_certs
from spicesrv.testing import sessionChannel, waitUntil
from spicesrv.web import WebFrontend
from spicesrv.web.client import ClientNotFound, WebClient
from spicesrv.wire.constants import ChannelType
from spicesrv.wire.sound import AudioDataMode, PlaybackCap
from tests.interop.chromium import Chromium, ChromiumError, requireChromium
from tests.interop.common import PASSWORD, RunningServer, serveOnLoopback, tlsOnly
from tests.interop.slowlink import SlowLink

#: The browser's viewport; the demo's agent resizes the screen to fit it.
VIEWPORT = (1024, 800)

CANVAS = "#spice_surface_0"

#: True once the demo's picture has arrived: the canvas is not one colour.
PICTURE = """(() => {
    const c = document.querySelector(%r);
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 4; i < d.length; i += 4)
        if (d[i] !== d[0] || d[i + 1] !== d[1] || d[i + 2] !== d[2]) return true;
    return false;
})()""" % (CANVAS,)

#: The <audio> element spice-html5 adds to the screen when playback starts.
AUDIO = "#spice-screen audio"

#: Routes the page's <audio> through a WebAudio analyser (the sound still
#: plays; Chromium runs with --mute-audio) and keeps it as window.ear.
LISTEN = """(() => {
    const audio = document.querySelector(%r);
    const context = new AudioContext();
    const analyser = context.createAnalyser();
    analyser.fftSize = 8192;
    context.createMediaElementSource(audio).connect(analyser);
    analyser.connect(context.destination);
    window.ear = {audio, context, analyser};
    return context.state;
})()""" % (AUDIO,)

#: What the page plays and hears: the <audio> element's buffered and
#: played seconds, the analyser's loudest frequency (Hz), its level and the
#: median level (dB).
HEARD = """(() => {
    const {audio, context, analyser} = window.ear;
    const levels = new Float32Array(analyser.frequencyBinCount);
    analyser.getFloatFrequencyData(levels);
    let loudest = 1;
    for (let i = 1; i < levels.length; i++) if (levels[i] > levels[loudest]) loudest = i;
    const sorted = Array.from(levels.subarray(1)).sort((a, b) => a - b);
    return {buffered: audio.buffered.length ? audio.buffered.end(audio.buffered.length - 1) : 0,
            played: audio.currentTime, paused: audio.paused, error: audio.error && audio.error.message,
            state: context.state, peak: loudest * context.sampleRate / analyser.fftSize,
            bin: context.sampleRate / analyser.fftSize, level: levels[loudest],
            median: sorted[sorted.length >> 1]};
})()"""


def webClient(testcase):
    try:
        return WebClient()
    except ClientNotFound as e:
        if os.environ.get("CI") == "true":
            testcase.fail(str(e))
        raise unittest.SkipTest(str(e))


class BrowserServer(RunningServer):
    """
    The demo on a free loopback port, serving the browser client; with
    C{certs}, on a TLS port (and every channel must use TLS).
    """

    def __init__(self, testcase, client, certs=None, **kwargs):
        RunningServer.__init__(self, testcase, **kwargs)
        self.server.web = WebFrontend(client)
        self.endpoint = None if certs is None else tlsOnly(self.server, certs)

    def listen(self):
        return RunningServer.listen(self, self.endpoint)


def rgbOf(framebuffer):
    """
    The source's BGRX framebuffer as RGB.
    """
    return framebuffer[:, :, 2::-1]


class BrowserTests(unittest.TestCase):
    timeout = 120

    def setUp(self):
        requireChromium(self)
        self.client = webClient(self)
        self.tmp = os.path.abspath(self.mktemp())
        os.makedirs(self.tmp)

    @defer.inlineCallbacks
    def openPage(self, running, scheme="http", caFile=None):
        port = yield running.listen()
        browser = yield Chromium.start(reactor, self.tmp, *VIEWPORT, caFile=caFile)
        self.addCleanup(browser.stop)
        yield browser.navigate("%s://127.0.0.1:%d/" % (scheme, port))
        return browser

    def waitUntil(self, predicate, timeout=20):
        return waitUntil(reactor, predicate, timeout, 0.05,
                         "timed out waiting for %r" % (predicate,))

    @defer.inlineCallbacks
    def waitForSamePicture(self, browser, source, timeout=20):
        """
        Poll the page's canvas until it is the source's picture, pixel for
        pixel; then the screenshot of the canvas must show it too.
        """
        started = reactor.seconds()
        while True:
            frame = source.framebuffer()
            try:
                pixels = yield browser.canvasPixels(CANVAS)
            except ChromiumError:
                pixels = None
            if pixels is not None and pixels.shape[:2] == frame.shape[:2] and \
                    numpy.array_equal(pixels[:, :, :3], rgbOf(frame)):
                break
            if reactor.seconds() - started > timeout:
                differing = (None if pixels is None or pixels.shape[:2] != frame.shape[:2]
                             else int((pixels[:, :, :3] != rgbOf(frame)).any(axis=2).sum()))
                self.fail("the canvas never showed the source's picture (%s; %s pixels "
                          "differ); the page logged: %s"
                          % (None if pixels is None else pixels.shape, differing,
                             browser.consoleMessages[-10:]))
            yield task.deferLater(reactor, 0.1, lambda: None)
        rect = yield browser.evaluate(
            "(() => { const r = document.querySelector(%r).getBoundingClientRect(); "
            "return [r.x, r.y, r.width, r.height]; })()" % (CANVAS,))
        x, y, width, height = rect
        visible = (min(int(width), VIEWPORT[0] - int(x)), min(int(height), VIEWPORT[1] - int(y)))
        shot = yield browser.screenshot(x, y, *visible)
        expected = rgbOf(frame)[:visible[1], :visible[0]]
        self.assertEqual(shot.shape, expected.shape)
        self.assertTrue(numpy.array_equal(shot, expected),
                        "the screenshot differs from the source's picture in %d pixels"
                        % int((shot != expected).any(axis=2).sum()))
        return rect

    @defer.inlineCallbacks
    def connected(self, browser, running):
        yield browser.waitFor("window.spicesrv && window.spicesrv.phase === 'connected'")
        yield browser.waitFor("document.querySelector(%r) !== null" % (CANVAS,))
        yield self.waitUntil(lambda: len(running.server.sessions) == 1 and
                             len(next(iter(running.server.sessions.values())).channels) >= 4)

    @defer.inlineCallbacks
    def pageCursor(self, browser, unlike=None):
        """
        The mouse cursor spice-html5 gave the screen (a CSS C{url()} of a
        PNG and its hot spot), once there is one (other than C{unlike}): its
        pixels as an (height, width, 4) RGBA array, and the hot spot.
        """
        import io
        import re
        from urllib.parse import unquote_to_bytes
        from PIL import Image
        started = reactor.seconds()
        while True:
            style = yield browser.evaluate(
                "document.getElementById('spice-screen').style.cursor")
            found = re.match(r'url\("?data:image/png,([^")]*)"?\) (\d+) (\d+)', style or "")
            if found and style != unlike:
                break
            if reactor.seconds() - started > 20:
                self.fail("the page's cursor stayed %r; the page logged: %s"
                          % (style, browser.consoleMessages[-10:]))
            yield task.deferLater(reactor, 0.05, lambda: None)
        image = Image.open(io.BytesIO(unquote_to_bytes(found.group(1)))).convert("RGBA")
        return numpy.asarray(image), (int(found.group(2)), int(found.group(3))), style

    def assertSameCursor(self, page, shape):
        """
        The page's cursor (L{pageCursor}) is the source's L{Cursor} as
        spice-html5 shows it: the same size, alpha and hot spot, and red
        and blue exchanged.  SPICE's ALPHA cursor is 32-bit ARGB, bytes B,
        G, R, A (spice-gtk reads it so); spice-html5 (0.3.0, and upstream)
        copies those bytes into an RGBA PNG unchanged.
        """
        pixels, hotSpot, _ = page
        bgra = numpy.frombuffer(shape.argb, numpy.uint8).reshape(shape.height, shape.width, 4)
        self.assertEqual(pixels.shape, bgra.shape)
        self.assertTrue(numpy.array_equal(pixels, bgra),
                        "the page's cursor is not the source's shape (in %d pixels)"
                        % int((pixels != bgra).any(axis=2).sum()))
        self.assertEqual(hotSpot, (shape.hot_x, shape.hot_y))

    @defer.inlineCallbacks
    def test_pageShowsTheDemo(self):
        """
        The page loads from the SPICE port, spice-html5 links main,
        display, inputs, cursor and playback over WebSocket, the demo's
        agent fits the screen to the window, the canvas (read back, and in
        a screenshot) is the demo's picture, the page's mouse cursor is the
        demo's cursor from the start, and after a right-click (the demo's
        next colour) it is the new one.
        """
        running = BrowserServer(self, self.client, disable_ticketing=True)
        browser = yield self.openPage(running)
        yield self.connected(browser, running)
        # No input yet: the cursor comes from the channel's start.
        first = running.source.cursor()
        page = yield self.pageCursor(browser)
        self.assertSameCursor(page, first)
        (session,) = running.server.sessions.values()
        # Every channel the demo offers, its click sound's playback too.
        offered = sorted(e.channel_type for e in running.server.registry.entries())
        self.assertEqual(offered, [ChannelType.MAIN, ChannelType.DISPLAY, ChannelType.INPUTS,
                                   ChannelType.CURSOR, ChannelType.PLAYBACK])
        yield self.waitUntil(lambda: sorted(t for t, _ in session.channels) == offered)
        x, y, _, _ = yield self.waitForSamePicture(browser, running.source)
        width, height = running.source.width, running.source.height
        self.assertEqual(width, VIEWPORT[0])
        self.assertLessEqual(height, VIEWPORT[1])
        # A right-click gives the demo's cursor the next colour, and the
        # page's mouse cursor becomes that shape.
        for kind in ("mousePressed", "mouseReleased"):
            yield browser.send("Input.dispatchMouseEvent", {
                "type": kind, "x": x + 100, "y": y + 100, "button": "right",
                "clickCount": 1})
        yield self.waitUntil(lambda: running.source.cursor() is not first)
        page = yield self.pageCursor(browser, unlike=page[2])
        self.assertSameCursor(page, running.source.cursor())

    @defer.inlineCallbacks
    def hearTone(self, browser, hz, seconds=2.0):
        """
        Listen to the page's <audio> (from the first call on) until it has
        played C{seconds} more: the loudest frequency is C{hz} (within a
        bin of the analyser), well above the rest; what the page played
        and heard last.
        """
        yield browser.waitFor("document.querySelector(%r) !== null" % (AUDIO,))
        state = yield browser.evaluate("window.ear ? window.ear.context.state : %s" % (LISTEN,))
        self.assertIn(state, ("running", "suspended"))
        start = yield browser.evaluate("window.ear.audio.currentTime")
        heard = yield browser.waitFor(
            "(() => { const h = %s; return h.played >= %r && h; })()"
            % (HEARD, start + seconds), timeout=20)
        self.assertFalse(heard["paused"])
        self.assertIsNone(heard["error"])
        self.assertEqual(heard["state"], "running")
        self.assertGreaterEqual(heard["buffered"], heard["played"])
        self.assertLessEqual(abs(heard["peak"] - hz), heard["bin"], heard)
        self.assertGreater(heard["level"], -50, heard)
        self.assertGreater(heard["level"] - heard["median"], 30, heard)
        return heard

    @defer.inlineCallbacks
    def test_soundPlays(self):
        """
        spice-html5 advertises Opus when the browser's MediaSource takes
        WebM/Opus (Chromium's does), and plays only that: the playback
        channel is in Opus mode, and the page's <audio> element (a
        MediaSource fed the packets in WebM clusters) plays the server's
        1000 Hz tone: its buffered and played time grow, and a WebAudio
        analyser on it hears 1000 Hz.  Headless Chromium decodes and plays
        sound (with --autoplay-policy=no-user-gesture-required, since no
        user clicked; --mute-audio keeps it out of the speakers).
        """
        running = BrowserServer(self, self.client, disable_ticketing=True)
        # The demo's click sound gives way to the tone, as --playback does.
        running.server.removeInterface(running.source.sound)
        tone = ToneSource(reactor, 1000)
        self.addCleanup(tone.close)
        running.server.addInterface(tone)
        browser = yield self.openPage(running)
        yield self.connected(browser, running)
        yield self.waitUntil(lambda: (ChannelType.PLAYBACK, 0) in next(
            iter(running.server.sessions.values())).channels)
        playback = running.channel(ChannelType.PLAYBACK)
        self.assertIn(PlaybackCap.OPUS, playback.info.channel_caps)
        self.assertEqual(playback.mode, AudioDataMode.OPUS)
        first = yield self.hearTone(browser, 1000)
        # Still playing, from the packets that keep coming.
        sent = playback.sent
        later = yield browser.waitFor(
            "(() => { const h = %s; return h.played >= %r && h; })()"
            % (HEARD, first["played"] + 1.0))
        self.assertGreater(later["buffered"], first["buffered"] + 0.5)
        self.assertGreater(playback.sent, sent)
        self.assertEqual(playback.mode, AudioDataMode.OPUS)

    @defer.inlineCallbacks
    def test_soundStartsOnFirstClick(self):
        """
        With the browser's own autoplay policy, spice-html5's <audio>
        element may not start by itself (no click or key yet) and stays
        paused while its buffer grows; the landing page says "Click or press
        a key for sound.", and the first click starts the sound at the
        newest data (not seconds behind): the page plays the tone.
        """
        running = BrowserServer(self, self.client, disable_ticketing=True)
        running.server.removeInterface(running.source.sound)
        tone = ToneSource(reactor, 1000)
        self.addCleanup(tone.close)
        running.server.addInterface(tone)
        port = yield running.listen()
        browser = yield Chromium.start(reactor, self.tmp, *VIEWPORT, autoplay=False)
        self.addCleanup(browser.stop)
        yield browser.navigate("http://127.0.0.1:%d/" % port)
        yield self.connected(browser, running)
        yield browser.waitFor("window.spicesrv.sound === 'waiting'")
        hint = yield browser.evaluate(
            "[document.getElementById('status').textContent, "
            "getComputedStyle(document.getElementById('status')).display]")
        self.assertEqual(hint, ["Click or press a key for sound.", "block"])
        yield browser.waitFor("document.querySelector(%r).buffered.length && "
                              "document.querySelector(%r).buffered.end(0) > 1.5"
                              % (AUDIO, AUDIO))
        paused = yield browser.evaluate("[document.querySelector(%r).paused, "
                                        "document.querySelector(%r).currentTime]"
                                        % (AUDIO, AUDIO))
        self.assertEqual(paused, [True, 0])
        x, y = yield browser.evaluate(
            "(() => { const r = document.querySelector(%r).getBoundingClientRect(); "
            "return [r.x, r.y]; })()" % (CANVAS,))
        for kind in ("mousePressed", "mouseReleased"):
            yield browser.send("Input.dispatchMouseEvent", {
                "type": kind, "x": x + 100, "y": y + 100, "button": "left",
                "clickCount": 1})
        yield browser.waitFor("window.spicesrv.sound === 'playing'")
        status = yield browser.evaluate(
            "getComputedStyle(document.getElementById('status')).display")
        self.assertEqual(status, "none")
        heard = yield self.hearTone(browser, 1000, seconds=1.0)
        # Played from the newest sound: what is buffered ahead stays short.
        self.assertLess(heard["buffered"] - heard["played"], 1.0, heard)

    @defer.inlineCallbacks
    def test_typedKeysReachTheDemo(self):
        """
        Keys typed into the page reach the demo's keyboard as scancodes: the
        demo shows the text, and the canvas shows the demo's new picture.
        """
        running = BrowserServer(self, self.client, disable_ticketing=True)
        browser = yield self.openPage(running)
        yield self.connected(browser, running)
        yield self.waitForSamePicture(browser, running.source)
        yield browser.evaluate("document.querySelector(%r).focus()" % (CANVAS,))
        for key, code, keyCode in (("h", "KeyH", 72), ("i", "KeyI", 73)):
            yield browser.typeKey(key, code, keyCode)
        yield self.waitUntil(lambda: running.source.text == "hi")
        yield self.waitForSamePicture(browser, running.source)

    @defer.inlineCallbacks
    def test_dragPaints(self):
        """
        A left-button drag on the canvas paints on the demo (client mouse
        mode: spice-html5 sends positions), and the canvas shows the paint.
        """
        running = BrowserServer(self, self.client, disable_ticketing=True)
        browser = yield self.openPage(running)
        yield self.connected(browser, running)
        x, y, _, _ = yield self.waitForSamePicture(browser, running.source)
        row = 300
        before = running.source.framebuffer()[row, 400, :3].copy()
        yield browser.drag([(x + px, y + row) for px in range(200, 620, 20)])
        yield self.waitUntil(lambda: not numpy.array_equal(
            running.source.framebuffer()[row, 400, :3], before))
        yield self.waitForSamePicture(browser, running.source)
        pixels = yield browser.canvasPixels(CANVAS)
        self.assertFalse(numpy.array_equal(pixels[row, 400, :3], before[::-1]))

    @defer.inlineCallbacks
    def test_wrongPasswordThenRight(self):
        """
        With a password the page asks for it; a wrong one is refused with
        a message on the page and no session; the right one connects.
        """
        running = BrowserServer(self, self.client, password=PASSWORD)
        browser = yield self.openPage(running)
        yield browser.waitFor("window.spicesrv && window.spicesrv.phase === 'password'")
        first = yield browser.evaluate("document.getElementById('login-message').textContent")
        self.assertEqual(first, "This server needs a password.")
        yield browser.evaluate("document.getElementById('password').value = 'not-it'; "
                               "document.getElementById('login').requestSubmit(); true")
        yield browser.waitFor("window.spicesrv.phase === 'password' && "
                              "window.spicesrv.tries === 2")
        shown = yield browser.evaluate(
            "[document.getElementById('login').hidden, "
            "document.getElementById('login-message').textContent, "
            "document.getElementById('status').textContent]")
        self.assertEqual(shown, [False, "Wrong password; try again.", "Wrong password."])
        self.assertEqual(running.server.sessions, {})
        yield browser.evaluate("document.getElementById('password').value = %r; "
                               "document.getElementById('login').requestSubmit(); true"
                               % (PASSWORD,))
        yield self.connected(browser, running)
        yield self.waitForSamePicture(browser, running.source)

    @defer.inlineCallbacks
    def test_overTLS(self):
        """
        The page over https from the TLS port, with the development CA
        trusted in Chromium's NSS database (no certificate error ignored):
        spice-html5 links over wss, which is secure, since every channel
        must use TLS here, and shows the demo.
        """
        certs = os.path.join(self.tmp, "certs")
        write_dev_certs(certs)
        running = BrowserServer(self, self.client, certs=certs, disable_ticketing=True)
        browser = yield self.openPage(running, "https",
                                      caFile=os.path.join(certs, "ca-cert.pem"))
        yield self.connected(browser, running)
        scheme = yield browser.evaluate("window.spice_connection.ws.url")
        self.assertTrue(scheme.startswith("wss://127.0.0.1:"), scheme)
        (session,) = running.server.sessions.values()
        self.assertTrue(all(channel.info.secure for channel in session.channels.values()))
        yield self.waitForSamePicture(browser, running.source)

    @defer.inlineCallbacks
    def test_migration(self):
        """
        spice-html5 cannot follow a migration: it advertises neither
        semi-seamless nor seamless migration, and ignores MIGRATE_BEGIN,
        SWITCH_HOST and MIGRATE_END ("Unimplemented function").  spicesrv
        therefore sends it no MIGRATE_BEGIN (it is not asked to pre-connect
        and the migration does not wait for it), then SWITCH_HOST at the
        end as libspice-server does; the client stays, so after the source's
        migration timeout its session is closed and the page says it was
        disconnected.
        """
        from spicesrv.migration import source as migrationSource
        self.patch(migrationSource, "MIGRATE_TIMEOUT", 1.0)
        running = BrowserServer(self, self.client, disable_ticketing=True)
        browser = yield self.openPage(running)
        yield self.connected(browser, running)
        (session,) = running.server.sessions.values()
        yield running.server.migrate_connect("127.0.0.1", port=1, tls_port=0)
        self.assertEqual(running.server.sourceMigration.answers,
                         {session.id: migrationSource.NO_CAPABILITY})
        ended = running.server.migrate_end(True)
        yield browser.waitFor("document.getElementById('message-div').textContent"
                              ".includes('Main Migrate Switch Host')")
        self.assertEqual(len(running.server.sessions), 1)
        yield ended
        self.assertEqual(running.server.sessions, {})
        self.assertEqual(running.server.sourceMigration.forcedDisconnects, 1)
        yield browser.waitFor("window.spicesrv.phase === 'error'")
        status = yield browser.evaluate("document.getElementById('status').textContent")
        self.assertTrue(status.startswith("Disconnected"), status)

    @defer.inlineCallbacks
    def test_twistdWebClient(self):
        """
        The operator's whole setup: ``twistd spice --web-client``, with a
        password, on a plain and a TLS port, and a browser on each: the
        page asks for the password, then shows the demo; over https the
        WebSocket is wss.
        """
        from tests.interop.processes import Twistd, freePort
        certs = os.path.join(self.tmp, "certs")
        write_dev_certs(certs)
        password = os.path.join(self.tmp, "password")
        with open(password, "w") as f:
            f.write(PASSWORD + "\n")
        port, tlsPort = freePort(), freePort()
        process = Twistd(self, "--port", str(port), "--tls-port", str(tlsPort),
                         "--x509-dir", certs, "--password-file", password, "--web-client")
        yield process.waitForPorts(port, tlsPort)
        browser = yield Chromium.start(reactor, self.tmp, *VIEWPORT,
                                       caFile=os.path.join(certs, "ca-cert.pem"))
        self.addCleanup(browser.stop)
        for url in ("http://127.0.0.1:%d/" % port, "https://localhost:%d/" % tlsPort):
            yield browser.navigate(url)
            yield browser.waitFor("window.spicesrv && window.spicesrv.phase === 'password'")
            yield browser.evaluate("document.getElementById('password').value = %r; "
                                   "document.getElementById('login').requestSubmit(); true"
                                   % (PASSWORD,))
            yield browser.waitFor("window.spicesrv.phase === 'connected'")
            yield browser.waitFor("document.querySelector(%r) !== null" % (CANVAS,))
            ws = yield browser.evaluate("window.spice_connection.ws.url")
            self.assertTrue(ws.startswith("wss://" if url.startswith("https") else "ws://"),
                            ws)
            yield browser.waitFor(PICTURE)

    @defer.inlineCallbacks
    def test_twistdListen(self):
        """
        A C{--listen} endpoint tells browsers from native links as the
        SPICE ports do: ``twistd spice --web-client --port 0 --listen
        tcp:PORT:interface=127.0.0.1 --playback tone:1000`` (no plain
        port), and a browser on that endpoint gets the page, links every
        channel over WebSocket there, shows the demo and plays the tone.
        """
        from tests.interop.processes import Twistd, freePort
        port = freePort()
        process = Twistd(self, "--port", "0", "--listen", "tcp:%d:interface=127.0.0.1" % port,
                         "--web-client", "--playback", "tone:1000")
        yield process.waitForPorts(port)
        browser = yield Chromium.start(reactor, self.tmp, *VIEWPORT)
        self.addCleanup(browser.stop)
        yield browser.navigate("http://127.0.0.1:%d/" % port)
        yield browser.waitFor("window.spicesrv && window.spicesrv.phase === 'connected'")
        ws = yield browser.evaluate("window.spice_connection.ws.url")
        self.assertEqual(ws, "ws://127.0.0.1:%d/" % port)
        yield browser.waitFor("document.querySelector(%r) !== null" % (CANVAS,))
        yield browser.waitFor(PICTURE)
        yield self.hearTone(browser, 1000)
        self.assertIn("playing tone 1000 Hz in OPUS mode", process.text())

    @defer.inlineCallbacks
    def test_portChannel(self):
        """
        spice-html5 links a named port and hands what the port's backend
        sends to the page as C{spice-port-data} events (it has no way to
        send on a port).
        """
        from twisted.internet.protocol import Factory, Protocol
        from spicesrv.channels.port import PortChannel, portBackend

        class Greeter(Protocol):
            def connectionMade(self):
                self.transport.write(b"hello from the port")

        backend = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(Greeter))
        self.addCleanup(backend.stopListening)
        running = BrowserServer(self, self.client, disable_ticketing=True)
        running.server.registry.register(
            ChannelType.PORT, 0, PortChannel, name="com.example.greeter",
            endpoint=portBackend(reactor, "tcp:127.0.0.1:%d" % backend.getHost().port))
        port = yield running.listen()
        browser = yield Chromium.start(reactor, self.tmp, *VIEWPORT)
        self.addCleanup(browser.stop)
        yield browser.send("Page.addScriptToEvaluateOnNewDocument", {"source": """
            window.portData = [];
            window.addEventListener('spice-port-data', (e) => window.portData.push(
                [e.detail.channel.portName,
                 String.fromCharCode.apply(null, new Uint8Array(e.detail.data))]));
        """})
        yield browser.navigate("http://127.0.0.1:%d/" % port)
        got = yield browser.waitFor("window.portData.length > 0 && window.portData")
        self.assertEqual(got[0], ["com.example.greeter", "hello from the port"])


    def test_photoAsJpeg(self):
        """
        An C{image:} source, UI and text beside a photograph, with
        C{jpeg_wan_compression="always"}: the canvas shows the text and UI
        exactly and the photograph above 35 dB from JPEG images (spice-html5
        has no LZ4 but decodes JPEG itself, an C{Image} from a data URL);
        after the idle refresh, the canvas is the picture pixel for pixel.
        """
        return self.photoThenExact(jpeg_wan_compression="always")

    def test_photoAsJpegOnASlowLink(self):
        """
        The same with the default C{auto}, the page and its WebSocket
        through a 4 Mbit/s link (L{SlowLink}): the server tells by itself
        that the link is slow, under the WebSocket (which has no socket
        handle of its own: the server once saw no queue at all there and
        took every browser's link for a fast one).
        """
        return self.photoThenExact(slowLink=4e6 / 8)

    @defer.inlineCallbacks
    def photoThenExact(self, slowLink=None, **options):
        from spicesrv.display import stills
        from spicesrv.server import SpiceServer
        from spicesrv.sources.image import ImageSource
        from tests.pictures import mixedPicture, rgbImage
        self.patch(stills, "IDLE_REFRESH", 600.0)
        size = (1024, 600)
        path = os.path.join(self.tmp, "mixed.png")
        rgbImage(mixedPicture(*size)).save(path)
        source = ImageSource(path)
        server = SpiceServer(clock=reactor, disable_ticketing=True, **options)
        server.web = WebFrontend(self.client)
        port = yield serveOnLoopback(self, server, [source])
        if slowLink is not None:
            link = SlowLink(reactor, port, slowLink)
            port = yield link.listen()
            self.addCleanup(link.stop)
        browser = yield Chromium.start(reactor, self.tmp, *VIEWPORT)
        self.addCleanup(browser.stop)
        yield browser.navigate("http://127.0.0.1:%d/" % (port,))
        yield browser.waitFor("document.querySelector(%r) !== null" % (CANVAS,), timeout=30)
        want = rgbOf(source.framebuffer())
        half = (size[0] // 2) // 64 * 64
        started = reactor.seconds()
        while True:
            try:
                pixels = yield browser.canvasPixels(CANVAS)
            except ChromiumError:
                pixels = None
            if (pixels is not None and pixels.shape[:2] == want.shape[:2]
                    and numpy.array_equal(pixels[:, :half, :3], want[:, :half])):
                mse = numpy.mean((pixels[:, half:, :3].astype(float) - want[:, half:]) ** 2)
                quality = 10 * numpy.log10(255.0 ** 2 / mse) if mse else float("inf")
                if quality > 35.0:
                    break
            if reactor.seconds() - started > 30:
                self.fail("the canvas never showed the picture; the page logged: %s"
                          % (browser.consoleMessages[-10:],))
            yield task.deferLater(reactor, 0.1, lambda: None)
        self.assertNotEqual(quality, float("inf"), "the photograph did not go lossy")
        display = sessionChannel(server, ChannelType.DISPLAY)
        self.assertEqual(display.encoding, "raw")
        self.assertGreater(display.stills.sent["jpeg"], 0)
        if slowLink is not None:
            self.assertLess(display.stills.probedRate, stills.WAN_RATE)
        self.patch(stills, "IDLE_REFRESH", 0.5)
        display._idleCall.reset(0)
        yield self.waitForSamePicture(browser, source, timeout=60)
        self.assertGreater(display.stills.refreshed, 0)
