"""
Tests for L{spicesrv.sources.x11} against real X servers: Xvfb (and Xvnc,
which RandR can resize), with the X client of C{tests/x11client.py}
reporting what reaches it.
"""

import io
import os
import struct

import numpy
import xcffib
import xcffib.xfixes
import xcffib.xproto as xp
from PIL import Image
from twisted.internet import defer, reactor, threads
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from spicesrv.interfaces import (
    IAgent, IDisplaySource, IKeyboard, IMonitorLayout, IMouse, ITablet)
from spicesrv.plugin import sourcePlugins
from spicesrv.sources import x11clipboard
from spicesrv.sources.x11 import X11Source, X11SourceError
from spicesrv.sources.x11devices import boundingBox
from spicesrv.sources.x11keys import EXTENDED
from spicesrv.agent import Monitor
from spicesrv.testing import LogCapture, RecordingAgentClients, RecordingObserver, waitUntil
from spicesrv.wire.vdagent import ClipboardType, Selection
from tests.x11client import QUARTERS
from tests.x11display import (
    XClient, convertSelection, pressXKey, requireX, startXServer, twoOutputs,
    xclipCopy, xclipPaste)

SHIFT, A, H, I, Y, CAPS = 0x2A, 0x1E, 0x23, 0x17, 0x15, 0x3A
TEXT, PNG = ClipboardType.UTF8_TEXT, ClipboardType.IMAGE_PNG


def bgr(rgb):
    return (rgb & 0xFF, (rgb >> 8) & 0xFF, rgb >> 16)


def grab(display, width, height, env=None):
    """
    The screen as an independent X client sees it (core GetImage), BGRX.
    """
    conn = xcffib.connect(display=display)
    try:
        root = conn.get_setup().roots[conn.pref_screen].root
        reply = conn.core.GetImage(2, root, 0, 0, width, height, 0xFFFFFFFF).reply()
        return numpy.frombuffer(reply.data.buf(), numpy.uint8).reshape(height, width, 4)
    finally:
        conn.disconnect()


def largeText(size):
    """
    At least C{size} bytes of UTF-8 text that no two chunks of repeat.
    """
    line = "line %08d of a large clipboard, ünï\n"
    count = size // len((line % 0).encode("utf-8")) + 1
    return "".join(line % i for i in range(count)).encode("utf-8")


def largePng(width=1024, height=768, seed=1):
    """
    A PNG of noise, which compresses to about 2 MiB.
    """
    pixels = numpy.random.RandomState(seed).randint(0, 256, (height, width, 3), numpy.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def press(keyboard, *codes):
    """
    Press and release keys (extended ones as C{EXTENDED | code}) on an
    L{IKeyboard}, holding each until all are pressed, as a user types a
    shifted letter.
    """
    def push(code, release):
        if code & EXTENDED:
            keyboard.push_scan_freg(0xE0)
        keyboard.push_scan_freg((code & 0x7F) | (0x80 if release else 0))
    for code in codes:
        push(code, False)
    for code in reversed(codes):
        push(code, True)


class X11SourceTestCase(unittest.TestCase):
    timeout = 60
    kind = "Xvfb"
    size = (640, 480)

    def setUp(self):
        self.x = startXServer(self, self.kind, self.size)

    def source(self, **kwargs):
        source = X11Source(self.x.display, reactor=reactor, **kwargs)
        self.addCleanup(source.stop)
        source.start()
        return source

    @defer.inlineCallbacks
    def client(self, *args):
        client = yield XClient.start(reactor, self.x, *args)
        self.addCleanup(client.stop)
        return client


class PictureTests(X11SourceTestCase):
    def test_interfaces(self):
        """
        View-only, the source is the only device; with control it brings a
        keyboard, a mouse and a tablet.
        """
        source = self.source()
        self.assertTrue(verifyObject(IDisplaySource, source))
        self.assertEqual(source.devices(), [source])
        self.assertEqual((source.width, source.height), self.size)
        controlled = self.source(allow_control=True)
        _, keyboard, mouse, tablet, agent = controlled.devices()
        self.assertTrue(verifyObject(IKeyboard, keyboard))
        self.assertTrue(verifyObject(IMouse, mouse))
        self.assertTrue(verifyObject(ITablet, tablet))
        self.assertTrue(verifyObject(IAgent, agent))

    @defer.inlineCallbacks
    def test_pictureWithShm(self):
        """
        The framebuffer is the X screen, pixel for pixel, captured through
        MIT-SHM.
        """
        yield self.client()
        source = self.source()
        self.assertTrue(source.shm)
        frame = source.framebuffer()
        self.assertEqual(frame.shape, (480, 640, 4))
        screen = grab(self.x.display, 640, 480)
        numpy.testing.assert_array_equal(frame[..., :3], screen[..., :3])
        self.assertEqual(tuple(frame[100, 100, :3]), bgr(QUARTERS[0]))
        self.assertEqual(tuple(frame[100, 500, :3]), bgr(QUARTERS[1]))
        self.assertEqual(tuple(frame[400, 500, :3]), bgr(QUARTERS[2]))

    @defer.inlineCallbacks
    def test_pictureWithGetImage(self):
        """
        Without MIT-SHM the core GetImage request gives the same picture.
        """
        yield self.client()
        source = self.source(use_shm=False)
        self.assertFalse(source.shm)
        numpy.testing.assert_array_equal(source.framebuffer()[..., :3],
                                         grab(self.x.display, 640, 480)[..., :3])

    @defer.inlineCallbacks
    def test_damage(self):
        """
        Drawing on the X screen is reported as damage, without polling;
        the pixels are fetched when the framebuffer is asked for, and only
        the damaged rows are.
        """
        client = yield self.client()
        source = self.source()
        source.framebuffer()
        observer = RecordingObserver()
        source.addObserver(observer)
        conn = xcffib.connect(display=self.x.display)
        self.addCleanup(conn.disconnect)
        gc = conn.generate_id()
        window = client.events[0]["window"]
        conn.core.CreateGC(gc, window, xp.GC.Foreground, [0x123456])
        conn.core.PolyFillRectangle(window, gc, 1, [xp.RECTANGLE.synthetic(30, 40, 50, 20)])
        conn.flush()
        yield waitUntil(reactor, lambda: (30, 40, 80, 60) in observer.rects())
        self.assertEqual(tuple(source.frame[50, 50, :3]), bgr(QUARTERS[0]))
        self.assertEqual(source._pending, [(40, 60)])
        self.assertEqual(tuple(source.framebuffer()[50, 50, :3]), bgr(0x123456))
        self.assertEqual(source._pending, [])


class CursorTests(X11SourceTestCase):
    @defer.inlineCallbacks
    def test_shapeAndPosition(self):
        """
        A new cursor shape (XFIXES) reaches the observers; so does the
        pointer's position.
        """
        client = yield self.client()
        source = self.source(allow_control=True)
        observer = RecordingObserver()
        source.addObserver(observer)
        first = source.cursor()
        self.assertIsNotNone(first)
        conn = xcffib.connect(display=self.x.display)
        self.addCleanup(conn.disconnect)
        font, cursor = conn.generate_id(), conn.generate_id()
        conn.core.OpenFont(font, len("cursor"), "cursor")
        # The "cursor" font's hand (glyph 58) and its mask (59).
        conn.core.CreateGlyphCursor(cursor, font, font, 58, 59, 0, 0, 0,
                                    0xFFFF, 0xFFFF, 0xFFFF)
        conn.core.ChangeWindowAttributes(client.events[0]["window"], xp.CW.Cursor, [cursor])
        conn.flush()
        source.tablet.position(200, 150, 0)
        yield waitUntil(reactor, lambda: observer.of("cursor_changed"))
        shape = observer.of("cursor_changed")[-1][0]
        self.assertNotEqual(shape.argb, first.argb)
        self.assertEqual(len(shape.argb), shape.width * shape.height * 4)
        yield waitUntil(reactor, lambda: source.cursor_position() == (200, 150))
        self.assertIn((200, 150), observer.of("cursor_moved"))


class InputTests(X11SourceTestCase):
    @defer.inlineCallbacks
    def test_viewOnlyByDefault(self):
        """
        Without control the source has no input devices at all: nothing a
        client sends can reach the X server.
        """
        source = self.source()
        self.assertIsNone(source.keyboard)
        self.assertEqual(source.devices(), [source])
        plugin = sourcePlugins()["x11"]
        viewOnly = plugin.makeSource(self.x.display, {"x11-allow-control": False}, reactor)
        self.addCleanup(viewOnly.stop)
        self.assertEqual(viewOnly.devices(), [viewOnly])
        self.assertIsNone(viewOnly.agent)
        controlled = plugin.makeSource(self.x.display, {"x11-allow-control": True}, reactor)
        self.addCleanup(controlled.stop)
        self.assertEqual(len(controlled.devices()), 5)
        self.assertIsNotNone(controlled.clipboard)
        private = plugin.makeSource(self.x.display, {"x11-allow-control": True,
                                                     "x11-no-clipboard": True}, reactor)
        self.addCleanup(private.stop)
        self.assertIsNone(private.clipboard)
        self.assertIsNone(private.agent.clipboard_request(0, 1))
        yield defer.succeed(None)

    @defer.inlineCallbacks
    def test_typing(self):
        """
        Scancodes become the X server's keys: letters, shifted letters and
        an extended key arrive as the right keysyms.
        """
        client = yield self.client()
        source = self.source(allow_control=True)
        press(source.keyboard, H)
        press(source.keyboard, I)
        press(source.keyboard, SHIFT, A)
        press(source.keyboard, EXTENDED | 0x48)
        yield client.waitFor(lambda e: e["event"] == "key" and e["keysym"] == 0xFF52)
        self.assertEqual([sym for sym, _ in client.keys()],
                         [ord("h"), ord("i"), 0xFFE1, ord("A"), 0xFF52])

    @defer.inlineCallbacks
    def test_layoutIsTheServers(self):
        """
        The key at the US "y" position types "z" once the X server has a
        German layout: the client's key, the server's layout.
        """
        self.x.run("setxkbmap", "de")
        client = yield self.client()
        source = self.source(allow_control=True)
        press(source.keyboard, Y)
        yield client.waitFor(lambda e: e["event"] == "key")
        self.assertEqual(client.keys(), [(ord("z"), "z")])

    def test_locks(self):
        """
        Pressing Caps Lock locks it on the X server, and the lock flags say
        so; pressing it again unlocks it.
        """
        source = self.source(allow_control=True)
        self.assertEqual(source.keyboard.get_leds(), 0)
        press(source.keyboard, CAPS)
        self.assertEqual(source.keyboard.get_leds(), 4)
        press(source.keyboard, 0x45)
        self.assertEqual(source.keyboard.get_leds(), 4 | 2)
        press(source.keyboard, CAPS)
        press(source.keyboard, 0x45)
        self.assertEqual(source.keyboard.get_leds(), 0)

    @defer.inlineCallbacks
    def test_locksChangedOnTheXServer(self):
        """
        Caps Lock pressed on the X server itself (another X client's
        XTEST here) calls the keyboard's C{leds_changed} at once (XKB
        IndicatorStateNotify), and the flags show it.
        """
        source = self.source(allow_control=True)
        calls = []
        source.keyboard.leds_changed = lambda: calls.append(source.keyboard.get_leds())
        pressXKey(self.x, source.keymap.keycode(CAPS))
        yield waitUntil(reactor, lambda: calls)
        self.assertEqual(calls[-1], 4)
        pressXKey(self.x, source.keymap.keycode(CAPS))
        yield waitUntil(reactor, lambda: calls[-1] == 0)

    @defer.inlineCallbacks
    def test_buttonsAndWheel(self):
        """
        Absolute positions and the SPICE button mask become X pointer
        motion and buttons; the wheel is buttons 4 and 5.
        """
        client = yield self.client()
        source = self.source(allow_control=True)
        source.tablet.position(123, 321, 0)
        source.tablet.buttons(1)
        source.tablet.buttons(0)
        source.tablet.position(400, 100, 4)
        source.tablet.buttons(0)
        source.tablet.wheel(-1, 0)
        source.mouse.motion(10, 5, 1, 0)
        yield client.waitFor(lambda e: e["event"] == "button" and e["button"] == 5
                             and not e["press"])
        presses = [(e["button"], e["x"], e["y"]) for e in client.events
                   if e["event"] == "button" and e["press"]]
        self.assertEqual(presses, [(1, 123, 321), (3, 400, 100), (4, 400, 100),
                                   (5, 410, 105)])


class ResizeTests(X11SourceTestCase):
    kind = "Xvnc"
    size = (1024, 768)

    @defer.inlineCallbacks
    def test_randrResize(self):
        """
        xrandr on the X server re-creates the surface: observers hear the
        new size, and the framebuffer has it and the screen's pixels.
        """
        source = self.source()
        observer = RecordingObserver()
        source.addObserver(observer)
        self.x.run("xrandr", "--output", "VNC-0", "--mode", "800x600")
        yield waitUntil(reactor, lambda: observer.of("surface_changed"))
        self.assertEqual(observer.of("surface_changed"), [(800, 600)])
        self.assertEqual(source.framebuffer().shape, (600, 800, 4))
        numpy.testing.assert_array_equal(source.framebuffer()[..., :3],
                                         grab(self.x.display, 800, 600)[..., :3])


    @defer.inlineCallbacks
    def test_monitors(self):
        """
        The monitors are RandR's active CRTCs: after a size change the new
        one; a CRTC changed on a screen of the same size (another mode)
        tells the observers that listen (C{monitors_changed}).
        """
        source = self.source()
        self.assertTrue(verifyObject(IMonitorLayout, source))
        self.assertEqual(source.monitors(), [(0, 0, 1024, 768)])
        observer = RecordingObserver()
        observer.monitors_changed = lambda: observer.events.append(("monitors_changed",))
        source.addObserver(observer)
        self.x.run("xrandr", "--fb", "1280x800", "--output", "VNC-0", "--mode", "1024x768",
                   "--pos", "0x0")
        yield waitUntil(reactor, lambda: observer.of("surface_changed"))
        self.assertEqual(source.monitors(), [(0, 0, 1024, 768)])
        self.x.run("xrandr", "--fb", "1280x800", "--output", "VNC-0", "--mode", "800x600")
        yield waitUntil(reactor, lambda: observer.of("monitors_changed"))
        self.assertEqual(source.monitors(), [(0, 0, 800, 600)])
        self.assertEqual(observer.of("surface_changed"), [(1280, 800)])

    @defer.inlineCallbacks
    def test_resizeThroughRandr(self):
        """
        L{X11Source.resize} (the seam for a client's monitor configuration)
        changes the X screen's size with RandR; the surface follows.
        """
        source = self.source()
        observer = RecordingObserver()
        source.addObserver(observer)
        source.resize(1280, 800)
        yield waitUntil(reactor, lambda: observer.of("surface_changed"))
        self.assertEqual(observer.of("surface_changed"), [(1280, 800)])
        self.assertIn("1280 x 800", self.x.run("xrandr").splitlines()[0])

    @defer.inlineCallbacks
    def test_resizeCreatesAMode(self):
        """
        A size no mode has gets a new RandR mode, as ``xrandr --newmode``
        and ``--addmode`` would make; asking for it again reuses it.
        """
        source = self.source()
        observer = RecordingObserver()
        source.addObserver(observer)
        source.resize(1234, 567)
        yield waitUntil(reactor, lambda: observer.of("surface_changed"))
        self.assertEqual(observer.of("surface_changed"), [(1234, 567)])
        self.assertIn("1234 x 567", self.x.run("xrandr").splitlines()[0])
        source.resize(1024, 768)
        yield waitUntil(reactor, lambda: (source.width, source.height) == (1024, 768))
        source.resize(1234, 567)
        yield waitUntil(reactor, lambda: (source.width, source.height) == (1234, 567))
        self.assertEqual(self.x.run("xrandr").count("1234x567"), 1)
        self.assertRaises(ValueError, source.resize, 40000, 300)

    @defer.inlineCallbacks
    def test_agentResizes(self):
        """
        A client's monitors configuration resizes the X screen through the
        agent; a display turned off or the same size changes nothing.
        """
        source = self.source(allow_control=True)
        source.agent.agent_attached(RecordingAgentClients())
        source.agent.monitors_config([None])
        source.agent.monitors_config([Monitor(1024, 768, 0, 0)])
        source.agent.monitors_config([Monitor(1000, 700, 0, 0)])
        yield waitUntil(reactor, lambda: (source.width, source.height) == (1000, 700))


    @defer.inlineCallbacks
    def test_boundingBoxOnOneOutput(self):
        """
        Xvnc has one output: a client's two monitors side by side make the
        X screen the rectangle around them.
        """
        source = self.source(allow_control=True)
        source.agent.agent_attached(RecordingAgentClients())
        self.assertEqual(len(source.outputs()), 1)
        source.agent.monitors_config([Monitor(1024, 768, 0, 0), Monitor(800, 600, 1024, 100)])
        yield waitUntil(reactor, lambda: (source.width, source.height) == (1824, 768))
        self.assertEqual(source.monitors(), [(0, 0, 1824, 768)])


class BoundingBoxTests(unittest.TestCase):
    def test_boundingBox(self):
        """
        The rectangle around the monitors that are on, wherever the layout
        starts; L{None} when all are off.
        """
        self.assertEqual(boundingBox([Monitor(1024, 768, 0, 0), None,
                                      Monitor(800, 600, 1024, 300)]), (0, 0, 1824, 900))
        self.assertEqual(boundingBox([Monitor(640, 480, -640, 0), Monitor(640, 480, 0, 0)]),
                         (-640, 0, 1280, 480))
        self.assertIsNone(boundingBox([None, None]))
        self.assertIsNone(boundingBox([]))


class MultiMonitorTests(X11SourceTestCase):
    """
    Xorg with the dummy driver, which has several RandR outputs: two of
    them on, side by side.
    """

    kind = "Xorg"

    def setUp(self):
        X11SourceTestCase.setUp(self)
        twoOutputs(self.x)

    def test_monitorsAreTheOutputs(self):
        """
        The monitors clients hear of are the two CRTCs; both outputs count.
        """
        source = self.source(allow_control=True)
        self.assertEqual((source.width, source.height), (1824, 768))
        self.assertEqual(source.monitors(), [(0, 0, 1024, 768), (1024, 0, 800, 600)])
        self.assertEqual(len(source.outputs()), 2)

    @defer.inlineCallbacks
    def test_clientMonitorsOnTheOutputs(self):
        """
        A client's two monitors go to the two outputs, at their sizes (one
        a mode spicesrv creates) and places, the screen around them; then
        its single monitor turns the second output off, and two monitors
        turn it on again.
        """
        source = self.source(allow_control=True)
        source.agent.agent_attached(RecordingAgentClients())
        observer = RecordingObserver()
        source.addObserver(observer)
        source.agent.monitors_config([Monitor(1280, 720, 0, 0), Monitor(1000, 700, 1280, 20)])
        yield waitUntil(reactor, lambda: (source.width, source.height) == (2280, 720))
        yield waitUntil(reactor, lambda: source.monitors() == [(0, 0, 1280, 720),
                                                             (1280, 20, 1000, 700)])
        query = self.x.run("xrandr", "-q")
        self.assertIn("DUMMY0 connected primary 1280x720+0+0", query)
        self.assertIn("DUMMY1 connected 1000x700+1280+20", query)
        self.assertEqual(observer.of("surface_changed")[-1], (2280, 720))
        source.agent.monitors_config([Monitor(1024, 768, 0, 0), None])
        yield waitUntil(reactor, lambda: (source.width, source.height) == (1024, 768))
        yield waitUntil(reactor, lambda: source.monitors() == [(0, 0, 1024, 768)])
        self.assertIn("\nDUMMY1 connected\n", self.x.run("xrandr", "-q"))
        # Nothing changes for the same layout again.
        before = len(observer.events)
        source.agent.monitors_config([Monitor(1024, 768, 0, 0)])
        self.assertEqual(len(observer.events), before)
        # The output it turned off (which Xorg's dummy now calls
        # disconnected) takes a second monitor again.
        source.agent.monitors_config([Monitor(800, 600, 0, 0), Monitor(800, 600, 800, 0)])
        yield waitUntil(reactor, lambda: source.monitors() == [(0, 0, 800, 600),
                                                             (800, 0, 800, 600)])

    def test_allOffRefused(self):
        """
        A configuration with every monitor off changes nothing.
        """
        source = self.source(allow_control=True)
        self.assertRaises(ValueError, source.arrange, [None, None])
        self.assertEqual(source.monitors(), [(0, 0, 1024, 768), (1024, 0, 800, 600)])


class FixedSizeTests(X11SourceTestCase):
    def test_xvfbKeepsItsSize(self):
        """
        Xvfb's screen cannot grow past the size it started with: a client's
        resize request beyond it is logged and changes nothing, and no mode
        is left behind.
        """
        source = self.source(allow_control=True)
        source.agent.agent_attached(RecordingAgentClients())
        before = self.x.run("xrandr", "-q")
        log = LogCapture(self)
        source.agent.monitors_config([Monitor(1280, 800, 0, 0)])
        self.assertEqual((source.width, source.height), self.size)
        self.assertIn("it stays 640x480", log.text())
        self.assertEqual(self.x.run("xrandr", "-q"), before)


class ClipboardTests(X11SourceTestCase):
    """
    The clipboard bridge against real X clients (xclip) on Xvfb.
    """

    def setUp(self):
        X11SourceTestCase.setUp(self)
        requireX(self, "xclip")
        self.controlled = self.source(allow_control=True)
        self.clients = RecordingAgentClients()
        self.controlled.agent.agent_attached(self.clients)

    def xclipIn(self, data, *args):
        return xclipCopy(self, self.x, data, *args)

    def xclipOut(self, *args):
        return xclipPaste(reactor, self.x, *args)

    def owned(self, selection):
        """
        Wait until the bridge owns C{selection} in X (it takes a server
        timestamp first).
        """
        return waitUntil(reactor, lambda: selection in self.controlled.clipboard.owned)

    def count(self, name):
        """
        Count the calls of the bridge's method C{name}.
        """
        calls = []
        original = getattr(self.controlled.clipboard, name)

        def counted(*args):
            calls.append(args)
            return original(*args)
        setattr(self.controlled.clipboard, name, counted)
        return calls

    @defer.inlineCallbacks
    def test_xIncrOfferedToClients(self):
        """
        A 3 MiB text and a 2 MiB PNG that xclip offers (more than one X
        request, so xclip sends them incrementally, INCR) reach the client
        whole, chunk by chunk.
        """
        chunks = self.count("_chunkArrived")
        text = largeText(3 << 20)
        self.xclipIn(text, "-selection", "clipboard")
        yield waitUntil(reactor, lambda: ("clipboard_grab", Selection.CLIPBOARD, [TEXT])
                      in self.clients.events)
        data = yield self.controlled.agent.clipboard_request(Selection.CLIPBOARD, TEXT)
        self.assertEqual(data, text)
        self.assertGreater(len(chunks), 2)
        png = largePng()
        self.assertTrue((1 << 20) < len(png) < (4 << 20))
        self.xclipIn(png, "-selection", "primary", "-t", "image/png")
        yield waitUntil(reactor, lambda: ("clipboard_grab", Selection.PRIMARY, [PNG])
                      in self.clients.events)
        before = len(chunks)
        data = yield self.controlled.agent.clipboard_request(Selection.PRIMARY, PNG)
        self.assertEqual(data, png)
        self.assertGreater(len(chunks), before + 1)
        self.assertEqual(self.controlled.clipboard._receiving, {})

    @defer.inlineCallbacks
    def test_clientIncrPastedInX(self):
        """
        A client's 3 MiB text and 2 MiB PNG go to ``xclip -o``
        incrementally (INCR, chunks of L{x11clipboard.INCR_CHUNK}); the
        bridge stops watching xclip's window afterwards.
        """
        chunks = self.count("_sendChunk")
        text, png = largeText(3 << 20), largePng()
        self.clients.clipboards[(Selection.CLIPBOARD, TEXT)] = text
        self.clients.clipboards[(Selection.CLIPBOARD, PNG)] = png
        self.controlled.agent.clipboard_grab(Selection.CLIPBOARD, [TEXT, PNG])
        yield self.owned(Selection.CLIPBOARD)
        out, code = yield self.xclipOut("-selection", "clipboard", "-t", "UTF8_STRING")
        self.assertEqual((len(out), code), (len(text), 0))
        self.assertEqual(out, text)
        self.assertEqual(len(chunks), len(text) // x11clipboard.INCR_CHUNK + 2)
        out, code = yield self.xclipOut("-selection", "clipboard", "-t", "image/png")
        self.assertEqual((out, code), (png, 0))
        self.assertEqual(self.controlled.clipboard._sending, {})
        self.assertEqual(self.controlled.clipboard._watched, {})

    @defer.inlineCallbacks
    def test_incrBounded(self):
        """
        The bound holds for incremental transfers: with a 1 MiB bound, an X
        client's 3 MiB text is refused (nothing pasted, a log line), and so
        is a client's 2 MiB text to an X client.
        """
        log = LogCapture(self)
        self.controlled.clipboard.maxSize = 1 << 20
        self.xclipIn(largeText(3 << 20), "-selection", "clipboard")
        yield waitUntil(reactor, lambda: ("clipboard_grab", Selection.CLIPBOARD, [TEXT])
                      in self.clients.events)
        data = yield self.controlled.agent.clipboard_request(Selection.CLIPBOARD, TEXT)
        self.assertIsNone(data)
        self.assertIn("more than 1048576 bytes", log.text())
        self.assertEqual(self.controlled.clipboard._receiving, {})
        self.clients.clipboards[(Selection.PRIMARY, TEXT)] = largeText(2 << 20)
        self.controlled.agent.clipboard_grab(Selection.PRIMARY, [TEXT])
        yield self.owned(Selection.PRIMARY)
        out, code = yield self.xclipOut("-selection", "primary")
        self.assertNotEqual(code, 0)
        self.assertEqual(x11clipboard.MAX_SIZE, 16 << 20)

    @defer.inlineCallbacks
    def test_incrRequestorGone(self):
        """
        An X client that stops taking an incremental paste midway is given
        up after L{x11clipboard.INCR_TIMEOUT}: the bridge forgets it.
        """
        self.patch(x11clipboard, "INCR_TIMEOUT", 0.5)
        self.clients.clipboards[(Selection.CLIPBOARD, TEXT)] = largeText(1 << 20)
        self.controlled.agent.clipboard_grab(Selection.CLIPBOARD, [TEXT])
        yield self.owned(Selection.CLIPBOARD)
        # Asks, but never deletes the INCR property.
        answer = yield threads.deferToThread(convertSelection, self.x, "CLIPBOARD",
                                             "UTF8_STRING")
        self.assertEqual(answer[:2], ("INCR", 32))
        self.assertEqual(struct.unpack("=I", answer[2][:4])[0], len(largeText(1 << 20)))
        yield waitUntil(reactor, lambda: not self.controlled.clipboard._sending)
        self.assertEqual(self.controlled.clipboard._watched, {})

    @defer.inlineCallbacks
    def test_timestampAndMultiple(self):
        """
        TIMESTAMP is the server time the bridge took the selection at (a
        real one, not CurrentTime); MULTIPLE answers each (target,
        property) pair, with None for a target it cannot give.
        """
        self.clients.clipboards[(Selection.CLIPBOARD, TEXT)] = b"several at once"
        self.controlled.agent.clipboard_grab(Selection.CLIPBOARD, [TEXT])
        yield self.owned(Selection.CLIPBOARD)
        acquired = self.controlled.clipboard.acquired[Selection.CLIPBOARD]
        self.assertGreater(acquired, 0)
        answer = yield threads.deferToThread(convertSelection, self.x, "CLIPBOARD",
                                             "TIMESTAMP")
        self.assertEqual(answer, ("INTEGER", 32, struct.pack("=I", acquired)))
        answers = yield threads.deferToThread(
            convertSelection, self.x, "CLIPBOARD", "MULTIPLE",
            pairs=["UTF8_STRING", "image/png", "TIMESTAMP", "STRING"])
        self.assertEqual(answers, [("UTF8_STRING", 8, b"several at once"), None,
                                   ("INTEGER", 32, struct.pack("=I", acquired)),
                                   ("STRING", 8, b"several at once")])

    @defer.inlineCallbacks
    def test_releaseKeepsANewerOwner(self):
        """
        Releasing with the time the bridge took the selection at cannot
        undo a newer owner's grab (another server's bridge taking over a
        migrated client's copy), even if that grab comes between the
        bridge's check and its release.
        """
        self.controlled.agent.clipboard_grab(Selection.CLIPBOARD, [TEXT])
        yield self.owned(Selection.CLIPBOARD)
        acquired = self.controlled.clipboard.acquired[Selection.CLIPBOARD]
        other = self.source(allow_control=True)
        other.agent.agent_attached(RecordingAgentClients())
        other.agent.clipboard_grab(Selection.CLIPBOARD, [TEXT])
        yield waitUntil(reactor, lambda: Selection.CLIPBOARD in other.clipboard.owned)
        # As if the check still saw the bridge as the owner.
        bridge = self.controlled.clipboard
        core = bridge._conn.core
        core.SetSelectionOwner(0, bridge.atoms["CLIPBOARD"], acquired)
        core.GetInputFocus().reply()
        owner = core.GetSelectionOwner(bridge.atoms["CLIPBOARD"]).reply().owner
        self.assertEqual(owner, other.clipboard.window)

    @defer.inlineCallbacks
    def test_olderReleaseAfterGrab(self):
        """
        A release the bridge hears of after taking the selection, but made
        before it (the server the client migrated from giving up the
        selection while this bridge waited for its timestamp), leaves the
        bridge owning it: X clients still paste the client's copy.
        """
        self.controlled.agent.clipboard_grab(Selection.CLIPBOARD, [TEXT])
        yield self.owned(Selection.CLIPBOARD)
        acquired = self.controlled.clipboard.acquired[Selection.CLIPBOARD]
        other = self.source(allow_control=True)
        clients = RecordingAgentClients()
        clients.clipboards[(Selection.CLIPBOARD, TEXT)] = b"kept across the move"
        other.agent.agent_attached(clients)
        yield waitUntil(reactor, lambda: Selection.CLIPBOARD in other.clipboard.offered)
        heard = []
        handle = other.clipboard.handle

        def recorded(event):
            heard.append(event)
            return handle(event)
        other.clipboard.handle = recorded
        other.agent.clipboard_grab(Selection.CLIPBOARD, [TEXT])
        # The X server has made the timestamp (the other bridge's
        # PropertyNotify is on its way) when the first bridge releases.
        other.clipboard._conn.core.GetInputFocus().reply()
        bridge = self.controlled.clipboard
        bridge._conn.core.SetSelectionOwner(0, bridge.atoms["CLIPBOARD"], acquired)
        bridge._conn.core.GetInputFocus().reply()
        # Until the other bridge has heard of its own grab, after the release.
        yield waitUntil(reactor, lambda: any(
            isinstance(e, xcffib.xfixes.SelectionNotifyEvent)
            and e.owner == other.clipboard.window for e in heard))
        self.assertTrue(any(isinstance(e, xcffib.xfixes.SelectionNotifyEvent)
                            and e.owner == 0 for e in heard))
        self.assertEqual(other.clipboard.owned, {Selection.CLIPBOARD: [TEXT]})
        out = yield self.xclipOut("-selection", "clipboard")
        self.assertEqual(out, (b"kept across the move", 0))

    @defer.inlineCallbacks
    def test_xTextOfferedToClients(self):
        """
        Text an X client copies (CLIPBOARD, then PRIMARY) is offered to the
        clients as UTF-8 text, and a client's paste gets its bytes.
        """
        text = "copied in X, ünïcode".encode("utf-8")
        self.xclipIn(text, "-selection", "clipboard")
        yield waitUntil(reactor, lambda: ("clipboard_grab", Selection.CLIPBOARD, [TEXT])
                      in self.clients.events)
        data = yield self.controlled.agent.clipboard_request(Selection.CLIPBOARD, TEXT)
        self.assertEqual(data, text)
        none = yield self.controlled.agent.clipboard_request(Selection.CLIPBOARD, PNG)
        self.assertIsNone(none)
        self.xclipIn(b"primary text", "-selection", "primary")
        yield waitUntil(reactor, lambda: ("clipboard_grab", Selection.PRIMARY, [TEXT])
                      in self.clients.events)
        data = yield self.controlled.agent.clipboard_request(Selection.PRIMARY, TEXT)
        self.assertEqual(data, b"primary text")

    @defer.inlineCallbacks
    def test_xPngOfferedToClients(self):
        """
        An image/png an X client copies is offered as IMAGE_PNG.
        """
        png = b"\x89PNG\r\n\x1a\nnot really"
        self.xclipIn(png, "-selection", "clipboard", "-t", "image/png")
        yield waitUntil(reactor, lambda: ("clipboard_grab", Selection.CLIPBOARD, [PNG])
                      in self.clients.events)
        data = yield self.controlled.agent.clipboard_request(Selection.CLIPBOARD, PNG)
        self.assertEqual(data, png)

    @defer.inlineCallbacks
    def test_xOwnerGoneReleases(self):
        """
        The X owner exits: the clients hear the selection is released.
        """
        process = self.xclipIn(b"x", "-selection", "clipboard")
        yield waitUntil(reactor, lambda: self.clients.events)
        process.terminate()
        process.wait()
        yield waitUntil(reactor, lambda: self.clients.events[-1]
                      == ("clipboard_release", Selection.CLIPBOARD))

    @defer.inlineCallbacks
    def test_clientCopyPastedInX(self):
        """
        A client's copy owns the X selection: an X client pasting gets the
        client's text (UTF8_STRING, TEXT, STRING as Latin-1) and PNG, and
        TARGETS lists them; released, the selection has no owner.
        """
        text = "from the client, ünï".encode("utf-8")
        self.clients.clipboards[(Selection.CLIPBOARD, TEXT)] = text
        self.clients.clipboards[(Selection.CLIPBOARD, PNG)] = b"\x89PNG fake"
        self.controlled.agent.clipboard_grab(Selection.CLIPBOARD, [TEXT, PNG, 99])
        yield self.owned(Selection.CLIPBOARD)
        out, code = yield self.xclipOut("-selection", "clipboard", "-t", "TARGETS")
        self.assertEqual(code, 0)
        self.assertEqual(out.split(), [b"TARGETS", b"TIMESTAMP", b"MULTIPLE", b"UTF8_STRING",
                                       b"text/plain;charset=utf-8",
                                       b"TEXT", b"STRING", b"image/png"])
        out, _ = yield self.xclipOut("-selection", "clipboard", "-t", "UTF8_STRING")
        self.assertEqual(out, text)
        out, _ = yield self.xclipOut("-selection", "clipboard", "-t", "STRING")
        self.assertEqual(out, "from the client, ünï".encode("latin-1"))
        out, _ = yield self.xclipOut("-selection", "clipboard", "-t", "image/png")
        self.assertEqual(out, b"\x89PNG fake")
        self.controlled.agent.clipboard_release(Selection.CLIPBOARD)
        out, code = yield self.xclipOut("-selection", "clipboard")
        self.assertNotEqual(code, 0)

    @defer.inlineCallbacks
    def test_clientPrimary(self):
        """
        The PRIMARY selection too; a type the client does not offer is
        refused.
        """
        self.clients.clipboards[(Selection.PRIMARY, TEXT)] = b"primary"
        self.controlled.agent.clipboard_grab(Selection.PRIMARY, [TEXT])
        yield self.owned(Selection.PRIMARY)
        out, _ = yield self.xclipOut("-selection", "primary")
        self.assertEqual(out, b"primary")
        out, code = yield self.xclipOut("-selection", "primary", "-t", "image/png")
        self.assertNotEqual(code, 0)

    @defer.inlineCallbacks
    def test_clientUnavailable(self):
        """
        The client that copied does not give its data: the X client gets
        a refusal, not a hang.
        """
        self.controlled.agent.clipboard_grab(Selection.CLIPBOARD, [TEXT])
        yield self.owned(Selection.CLIPBOARD)
        out, code = yield self.xclipOut("-selection", "clipboard")
        self.assertNotEqual(code, 0)

    @defer.inlineCallbacks
    def test_xCopyAfterClientCopy(self):
        """
        An X client copying after a client did takes the selection: the
        bridge no longer owns it and offers the X client's text.
        """
        self.controlled.agent.clipboard_grab(Selection.CLIPBOARD, [TEXT])
        self.xclipIn(b"later", "-selection", "clipboard")
        yield waitUntil(reactor, lambda: ("clipboard_grab", Selection.CLIPBOARD, [TEXT])
                      in self.clients.events)
        self.assertEqual(self.controlled.clipboard.owned, {})
        data = yield self.controlled.agent.clipboard_request(Selection.CLIPBOARD, TEXT)
        self.assertEqual(data, b"later")


class AuthorityTests(unittest.TestCase):
    timeout = 60

    def test_xauthority(self):
        """
        A display that requires its cookie is refused without XAUTHORITY,
        with a message that says so, and shown with it.
        """
        x = startXServer(self, auth=True)
        saved = os.environ.get("XAUTHORITY")
        self.addCleanup(self._restore, saved)
        os.environ["XAUTHORITY"] = os.path.join(os.path.dirname(x.auth), "none")
        error = self.assertRaises(X11SourceError, X11Source, x.display, reactor=reactor)
        self.assertIn("XAUTHORITY", str(error))
        os.environ["XAUTHORITY"] = x.auth
        source = X11Source(x.display, reactor=reactor)
        self.addCleanup(source.stop)
        self.assertEqual((source.width, source.height), (1024, 768))

    def _restore(self, saved):
        if saved is None:
            os.environ.pop("XAUTHORITY", None)
        else:
            os.environ["XAUTHORITY"] = saved

    def test_noDisplay(self):
        error = self.assertRaises(X11SourceError, X11Source, ":999999", reactor=reactor)
        self.assertIn(":999999", str(error))
