"""
Tests for L{spicesrv.sources.x11} against real X servers: Xvfb (and Xvnc,
which RandR can resize), with the X client of C{tests/x11client.py}
reporting what reaches it.
"""

import os

import numpy
import xcffib
import xcffib.xproto as xp
from twisted.internet import defer, reactor
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from spicesrv.interfaces import IDisplaySource, IKeyboard, IMouse, ITablet
from spicesrv.plugin import sourcePlugins
from spicesrv.sources.x11 import X11Source, X11SourceError
from spicesrv.sources.x11keys import EXTENDED
from spicesrv.testing import RecordingObserver
from tests.x11client import QUARTERS
from tests.x11display import XClient, pressXKey, startXServer, waitFor

SHIFT, A, H, I, Y, CAPS = 0x2A, 0x1E, 0x23, 0x17, 0x15, 0x3A


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
        _, keyboard, mouse, tablet = controlled.devices()
        self.assertTrue(verifyObject(IKeyboard, keyboard))
        self.assertTrue(verifyObject(IMouse, mouse))
        self.assertTrue(verifyObject(ITablet, tablet))

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
        yield waitFor(reactor, lambda: (30, 40, 80, 60) in observer.rects())
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
        yield waitFor(reactor, lambda: observer.of("cursor_changed"))
        shape = observer.of("cursor_changed")[-1][0]
        self.assertNotEqual(shape.argb, first.argb)
        self.assertEqual(len(shape.argb), shape.width * shape.height * 4)
        yield waitFor(reactor, lambda: source.cursor_position() == (200, 150))
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
        controlled = plugin.makeSource(self.x.display, {"x11-allow-control": True}, reactor)
        self.addCleanup(controlled.stop)
        self.assertEqual(len(controlled.devices()), 4)
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
        yield waitFor(reactor, lambda: calls)
        self.assertEqual(calls[-1], 4)
        pressXKey(self.x, source.keymap.keycode(CAPS))
        yield waitFor(reactor, lambda: calls[-1] == 0)

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
        yield waitFor(reactor, lambda: observer.of("surface_changed"))
        self.assertEqual(observer.of("surface_changed"), [(800, 600)])
        self.assertEqual(source.framebuffer().shape, (600, 800, 4))
        numpy.testing.assert_array_equal(source.framebuffer()[..., :3],
                                         grab(self.x.display, 800, 600)[..., :3])


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
        yield waitFor(reactor, lambda: observer.of("surface_changed"))
        self.assertEqual(observer.of("surface_changed"), [(1280, 800)])
        self.assertIn("1280 x 800", self.x.run("xrandr").splitlines()[0])
        self.assertRaises(ValueError, source.resize, 1234, 567)


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
