"""
Tests for L{spicesrv.sources.demo}.
"""

import numpy as np
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from spicesrv.display.cursor import Cursor
from spicesrv.interfaces import (
    IAgent, IDisplayObserver, IDisplaySource, IKeyboard, IMigratableState, IMouse,
    ISource, ITablet)
from spicesrv.sources import demo
from spicesrv.sources.demo import DemoSource
from spicesrv.agent import Monitor
from spicesrv.testing import (
    RecordingObserver, TestAgentClient, TestClientChannel, makeTestServer)
from spicesrv.wire.constants import ChannelType
from spicesrv.wire.vdagent import ClipboardType

LEFT, MIDDLE, RIGHT = 1, 2, 4
# Scancodes, set 1.
H, I, A, B = 0x23, 0x17, 0x1E, 0x30
LSHIFT, BACKSPACE, ENTER, SPACE = 0x2A, 0x0E, 0x1C, 0x39
LCTRL, C, V = 0x1D, 0x2E, 0x2F
CAPS, NUM, SCROLL = 0x3A, 0x45, 0x46
RELEASE = 0x80


def press(keyboard, *codes):
    """
    Press and release each key in turn.
    """
    for code in codes:
        keyboard.push_scan_freg(code)
        keyboard.push_scan_freg(code | RELEASE)


class DemoTestCase(unittest.TestCase):

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(45296)  # 12:34:56 UTC on day one
        self.demo = DemoSource(clock=self.clock)
        self.observer = RecordingObserver()
        self.demo.addObserver(self.observer)

    def snapshot(self):
        return self.demo.framebuffer().copy()

    def text_area(self, frame=None):
        frame = self.demo.framebuffer() if frame is None else frame
        bottom = self.demo.height - demo.STATUS_HEIGHT
        return frame[bottom - demo.TEXT_HEIGHT:bottom].copy()

    def assertDamageCovers(self, before, after):
        """
        Every pixel that differs between frames C{before} and C{after} lies
        in a rectangle the observer was told about.
        """
        changed = (before != after).any(axis=2)
        covered = np.zeros_like(changed)
        for left, top, right, bottom in self.observer.rects():
            covered[top:bottom, left:right] = True
        self.assertFalse((changed & ~covered).any(),
                         "changed pixels outside the reported damage")

    def pixel(self, x, y):
        """
        The (blue, green, red) of a frame pixel.
        """
        return tuple(int(v) for v in self.demo.framebuffer()[y, x, :3])


class InterfaceTests(DemoTestCase):

    def test_source(self):
        self.assertTrue(verifyObject(IDisplaySource, self.demo))
        self.assertTrue(verifyObject(IMigratableState, self.demo))
        self.assertTrue(verifyObject(ISource, self.demo))
        self.assertEqual(self.demo.type, "display")
        self.assertEqual(self.demo.major_version,
                         IDisplaySource.getTaggedValue("major_version"))
        self.assertEqual(self.demo.minor_version,
                         IDisplaySource.getTaggedValue("minor_version"))
        self.assertEqual(self.demo.migration_key, "display.demo")

    def test_devices(self):
        for device, interface in [(self.demo.keyboard, IKeyboard),
                                  (self.demo.mouse, IMouse),
                                  (self.demo.tablet, ITablet)]:
            self.assertTrue(verifyObject(interface, device))
            self.assertEqual(device.type, interface.getTaggedValue("type"))
            self.assertEqual(device.major_version,
                             interface.getTaggedValue("major_version"))
            self.assertEqual(device.minor_version,
                             interface.getTaggedValue("minor_version"))
            self.assertIsInstance(device.description, str)
        self.assertEqual(self.demo.devices(),
                         [self.demo, self.demo.keyboard, self.demo.mouse,
                          self.demo.tablet, self.demo.agent, self.demo.sound])
        self.assertTrue(verifyObject(IAgent, self.demo.agent))

    def test_observer(self):
        self.assertTrue(verifyObject(IDisplayObserver, self.observer))

    def test_framebuffer(self):
        frame = self.demo.framebuffer()
        self.assertEqual((self.demo.width, self.demo.height), (1024, 768))
        self.assertEqual(frame.shape, (768, 1024, 4))
        self.assertEqual(frame.dtype, np.uint8)
        self.assertTrue(frame.flags["C_CONTIGUOUS"])
        self.assertEqual(self.pixel(500, 400), (255, 255, 255))

    def test_size(self):
        small = DemoSource(320, 240, clock=self.clock)
        self.assertEqual(small.framebuffer().shape, (240, 320, 4))
        self.assertRaises(ValueError, DemoSource, 100, 100, clock=self.clock)

    def test_cursor(self):
        cursor = self.demo.cursor()
        self.assertIsInstance(cursor, Cursor)
        self.assertEqual((cursor.hot_x, cursor.hot_y), (0, 0))
        alpha = np.frombuffer(cursor.argb, np.uint8)[3::4]
        self.assertIn(0, alpha)
        self.assertIn(255, alpha)
        self.assertEqual(self.demo.cursor_position(), (512, 384))

    def test_remove_observer(self):
        self.demo.removeObserver(self.observer)
        press(self.demo.keyboard, A)
        self.clock.advance(0)
        self.assertEqual(self.observer.events, [])


class KeyboardTests(DemoTestCase):

    def test_typing(self):
        before = self.snapshot()
        press(self.demo.keyboard, H, I)
        after = self.snapshot()
        self.assertFalse(np.array_equal(self.text_area(before),
                                        self.text_area(after)))
        self.clock.advance(0)
        self.assertDamageCovers(before, after)

    def test_keys_reported_once_per_turn(self):
        """
        The observers hear of the keys once per reactor turn, however many
        came in it: one report, after the turn, covering all they changed.
        The framebuffer shows them at once.
        """
        before = self.snapshot()
        press(self.demo.keyboard, *[H, I, SPACE] * 30)
        self.assertEqual(self.observer.events, [])
        after = self.snapshot()
        self.assertFalse(np.array_equal(self.text_area(before),
                                        self.text_area(after)))
        self.clock.advance(0)
        self.assertEqual(len(self.observer.of("damaged")), 1)
        self.assertDamageCovers(before, after)
        self.clock.advance(0)
        self.assertEqual(len(self.observer.of("damaged")), 1)

    def test_keys_reported_after_a_read(self):
        """
        The framebuffer read before the turn's report (by an observer that
        flushed for other damage) draws the keys; the report still names
        the rows they changed.
        """
        before = self.snapshot()
        press(self.demo.keyboard, H, I)
        self.snapshot()
        press(self.demo.keyboard, A)
        after = self.snapshot()
        self.clock.advance(0)
        self.assertDamageCovers(before, after)

    def test_stop_reports_keys(self):
        """
        Stopping the demo tells the observers now what the last keys
        changed, and leaves no call behind.
        """
        self.demo.start()
        before = self.snapshot()
        press(self.demo.keyboard, H)
        after = self.snapshot()
        self.demo.stop()
        self.assertDamageCovers(before, after)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_scheduler(self):
        """
        With a scheduler of its own, the demo reports keys in that
        scheduler's turns, and its clock only tells the time.
        """
        scheduler = Clock()
        other = DemoSource(clock=self.clock, scheduler=scheduler)
        observer = RecordingObserver()
        other.addObserver(observer)
        press(other.keyboard, H)
        self.clock.advance(0)
        self.assertEqual(observer.events, [])
        scheduler.advance(0)
        self.assertEqual(len(observer.of("damaged")), 1)

    def test_backspace(self):
        empty = self.text_area()
        press(self.demo.keyboard, H, I)
        press(self.demo.keyboard, BACKSPACE, BACKSPACE)
        np.testing.assert_array_equal(self.text_area(), empty)
        press(self.demo.keyboard, BACKSPACE)
        np.testing.assert_array_equal(self.text_area(), empty)

    def typed(self, *codes):
        """
        The text area of a fresh demo after pressing C{codes}.
        """
        other = DemoSource(clock=self.clock)
        for code in codes:
            other.keyboard.push_scan_freg(code)
        return self.text_area(other.framebuffer())

    def test_shift(self):
        shifted = self.typed(LSHIFT, H, H | RELEASE, LSHIFT | RELEASE)
        capital = self.typed(CAPS, CAPS | RELEASE, H, H | RELEASE)
        small = self.typed(H, H | RELEASE)
        np.testing.assert_array_equal(shifted, capital)
        self.assertFalse(np.array_equal(shifted, small))
        after_release = self.typed(LSHIFT, LSHIFT | RELEASE, H, H | RELEASE)
        np.testing.assert_array_equal(after_release, small)

    def test_enter_and_space(self):
        together = self.typed(A, B)
        self.assertFalse(np.array_equal(together, self.typed(A, ENTER, B)))
        self.assertFalse(np.array_equal(together, self.typed(A, SPACE, B)))

    def test_extended_key_types_nothing(self):
        """
        An extended key (left arrow, E0 4B) shows in the status line but
        types nothing, not even the character of its second byte.
        """
        before = self.snapshot()
        for code in (0xE0, 0x4B, 0xE0, 0xCB, 0xE0, H):
            self.demo.keyboard.push_scan_freg(code)
        np.testing.assert_array_equal(self.text_area(),
                                      self.text_area(before))
        self.assertFalse(np.array_equal(self.snapshot(), before))
        self.clock.advance(0)
        self.assertDamageCovers(before, self.snapshot())

    def test_wrap(self):
        """
        Lines are broken greedily: each takes characters while their widths
        fit the limit, and at least one, as a loop over the characters
        would break them.
        """
        def reference(paragraph, limit):
            lines, line, used = [], "", 0
            for char in paragraph:
                width = self.demo._font.getlength(char)
                if line and used + width > limit:
                    lines.append(line)
                    line, used = "", 0
                line += char
                used += width
            lines.append(line)
            return lines
        import random
        rng = random.Random(4)
        alphabet = "aiIlmMW .,;:!?_-0123456789éß€\u200b"
        for limit in (0, 3, 7, 40, 100, 1012):
            for length in (0, 1, 2, 5, 60, 700):
                paragraph = "".join(rng.choice(alphabet) for _ in range(length))
                self.assertEqual(self.demo._wrap(paragraph, limit),
                                 reference(paragraph, limit), (paragraph, limit))

    def test_leds(self):
        keyboard = self.demo.keyboard
        self.assertEqual(keyboard.get_leds(), 0)
        press(keyboard, CAPS)
        self.assertEqual(keyboard.get_leds(), 4)
        press(keyboard, NUM)
        self.assertEqual(keyboard.get_leds(), 6)
        press(keyboard, SCROLL)
        self.assertEqual(keyboard.get_leds(), 7)
        press(keyboard, CAPS, NUM, SCROLL)
        self.assertEqual(keyboard.get_leds(), 0)

    def test_lock_repeat(self):
        """
        A held lock key that repeats toggles only once.
        """
        keyboard = self.demo.keyboard
        for _ in range(3):
            keyboard.push_scan_freg(CAPS)
        self.assertEqual(keyboard.get_leds(), 4)
        keyboard.push_scan_freg(CAPS | RELEASE)
        self.assertEqual(keyboard.get_leds(), 4)


class PointerTests(DemoTestCase):

    def test_paint_dot(self):
        before = self.snapshot()
        self.demo.tablet.position(300, 300, LEFT)
        self.assertEqual(self.pixel(300, 300), (0, 0, 0))
        self.assertDamageCovers(before, self.snapshot())

    def test_paint_stroke(self):
        self.demo.tablet.position(300, 300, LEFT)
        before = self.snapshot()
        self.demo.tablet.position(400, 300, LEFT)
        self.assertEqual(self.pixel(350, 300), (0, 0, 0))
        self.assertEqual(self.pixel(350, 320), (255, 255, 255))
        self.assertDamageCovers(before, self.snapshot())

    def test_no_paint_without_button(self):
        canvas = slice(demo.TITLE_HEIGHT + demo.HINT_HEIGHT,
                       self.demo.height - demo.TEXT_HEIGHT
                       - demo.STATUS_HEIGHT)
        before = self.snapshot()
        self.demo.tablet.position(300, 300, 0)
        self.demo.tablet.position(400, 300, 0)
        np.testing.assert_array_equal(self.snapshot()[canvas],
                                      before[canvas])

    def test_mouse_relative(self):
        self.demo.mouse.motion(10, -5, 0, 0)
        self.assertEqual(self.demo.cursor_position(), (522, 379))
        self.assertEqual(self.observer.of("cursor_moved"), [(522, 379)])
        self.demo.mouse.motion(-5000, 5000, 0, 0)
        self.assertEqual(self.demo.cursor_position(), (0, 767))

    def test_mouse_paints(self):
        self.demo.mouse.buttons(LEFT)
        self.demo.mouse.motion(40, 0, 0, LEFT)
        self.assertEqual(self.pixel(530, 384), (0, 0, 0))
        self.demo.mouse.buttons(0)
        self.demo.mouse.motion(0, 40, 0, 0)
        self.assertEqual(self.pixel(552, 414), (255, 255, 255))

    def test_tablet_does_not_move_cursor(self):
        """
        In client mouse mode the client draws the pointer itself.
        """
        self.demo.tablet.position(10, 20, 0)
        self.assertEqual(self.demo.cursor_position(), (10, 20))
        self.assertEqual(self.observer.of("cursor_moved"), [])

    def test_tablet_logical_size(self):
        self.demo.tablet.set_logical_size(512, 384)
        self.demo.tablet.position(100, 150, 0)
        self.assertEqual(self.demo.cursor_position(), (200, 300))

    def test_right_click_changes_colour(self):
        first = self.demo.cursor()
        self.demo.tablet.buttons(RIGHT)
        self.demo.tablet.buttons(0)
        self.assertEqual(self.observer.of("cursor_changed"),
                         [(self.demo.cursor(),)])
        self.assertNotEqual(self.demo.cursor().unique, first.unique)
        self.demo.tablet.position(300, 300, LEFT)
        red, green, blue = demo.PALETTE[1][1]
        self.assertEqual(self.pixel(300, 300), (blue, green, red))

    def test_middle_click_clears(self):
        blank = self.snapshot()
        self.demo.tablet.position(300, 300, LEFT)
        self.demo.tablet.position(300, 300, 0)
        self.demo.tablet.position(300, 300, MIDDLE)
        self.assertEqual(self.pixel(300, 300), (255, 255, 255))
        self.assertDamageCovers(blank, self.snapshot())

    def test_wheel_brush_size(self):
        self.demo.tablet.position(300, 300, LEFT)
        self.assertEqual(self.pixel(300, 308), (255, 255, 255))
        for _ in range(10):
            self.demo.tablet.wheel(-1, 0)
        self.demo.tablet.position(300, 300, LEFT)
        self.assertEqual(self.pixel(300, 308), (0, 0, 0))

    def test_paint_outside_canvas(self):
        """
        A stroke into the title bar stays on the canvas.
        """
        title = self.demo.framebuffer()[:demo.TITLE_HEIGHT].copy()
        before = self.snapshot()
        self.demo.tablet.position(300, 100, LEFT)
        self.demo.tablet.position(300, 5, LEFT)
        np.testing.assert_array_equal(
            self.demo.framebuffer()[:demo.TITLE_HEIGHT], title)
        self.assertDamageCovers(before, self.snapshot())


class ClockTests(DemoTestCase):

    def clock_area(self):
        return self.demo.framebuffer()[
            :demo.TITLE_HEIGHT, -demo.CLOCK_WIDTH:].copy()

    def test_tick(self):
        self.demo.start()
        self.assertEqual(len(self.observer.of("damaged")), 1)
        before = self.clock_area()
        self.clock.advance(1)
        rect = (1024 - demo.CLOCK_WIDTH, 0, 1024, demo.TITLE_HEIGHT)
        self.assertEqual(self.observer.of("damaged"), [([rect],), ([rect],)])
        self.assertFalse(np.array_equal(self.clock_area(), before))
        self.demo.stop()

    def test_stop(self):
        self.demo.start()
        self.demo.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.observer.events = []
        self.clock.advance(5)
        self.assertEqual(self.observer.events, [])

    def test_start_twice(self):
        self.demo.start()
        self.demo.start()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.demo.stop()
        self.demo.stop()


class ResizeTests(DemoTestCase):

    def test_resize(self):
        self.demo.tablet.position(100, 100, LEFT)
        self.demo.resize(800, 600)
        self.assertEqual(self.observer.of("surface_changed"), [(800, 600)])
        self.assertEqual((self.demo.width, self.demo.height), (800, 600))
        frame = self.demo.framebuffer()
        self.assertEqual(frame.shape, (600, 800, 4))
        self.assertTrue(frame.flags["C_CONTIGUOUS"])
        self.assertEqual(self.pixel(100, 100), (0, 0, 0))
        self.assertEqual(self.demo.cursor_position(), (100, 100))

    def test_resize_clamps_pointer(self):
        self.demo.tablet.position(1000, 700, 0)
        self.demo.resize(640, 480)
        self.assertEqual(self.demo.cursor_position(), (639, 479))

    def test_same_size(self):
        self.demo.resize(1024, 768)
        self.assertEqual(self.observer.events, [])

    def test_too_small(self):
        self.assertRaises(ValueError, self.demo.resize, 200, 100)
        self.assertEqual(self.demo.framebuffer().shape, (768, 1024, 4))


class MigrationTests(DemoTestCase):

    def test_round_trip(self):
        press(self.demo.keyboard, CAPS, H, SPACE, I, ENTER, B)
        self.demo.tablet.buttons(RIGHT)
        self.demo.tablet.buttons(0)
        self.demo.tablet.position(200, 200, LEFT)
        self.demo.tablet.position(600, 400, LEFT)
        state = self.demo.get_migration_state()
        self.assertIsInstance(state, bytes)

        target = DemoSource(clock=self.clock)
        observer = RecordingObserver()
        target.addObserver(observer)
        self.assertFalse(np.array_equal(target.framebuffer(),
                                        self.demo.framebuffer()))
        target.set_migration_state(state)
        np.testing.assert_array_equal(target.framebuffer(),
                                      self.demo.framebuffer())
        self.assertEqual(observer.of("damaged"), [([(0, 0, 1024, 768)],)])
        self.assertEqual(observer.of("cursor_changed"), [(target.cursor(),)])
        self.assertEqual(observer.of("cursor_moved"), [(600, 400)])
        self.assertEqual(target.keyboard.get_leds(), 4)
        self.assertEqual(target.get_migration_state(), state)

    def test_other_size(self):
        """
        State from a bigger screen fits a smaller one, cropped.
        """
        self.demo.tablet.position(100, 100, LEFT)
        self.demo.tablet.position(1000, 700, 0)
        target = DemoSource(640, 480, clock=self.clock)
        target.set_migration_state(self.demo.get_migration_state())
        self.assertEqual(target.framebuffer().shape, (480, 640, 4))
        self.assertEqual(tuple(target.framebuffer()[100, 100, :3]),
                         (0, 0, 0))
        self.assertEqual(target.cursor_position(), (639, 479))

    def test_bad_state(self):
        state = self.demo.get_migration_state()
        self.assertIn(b'"colour": 0', state)
        for bad in [b"", b"garbage", state[:20], state[:-200],
                    state.replace(b'"colour": 0', b'"colour": 9'),
                    state.replace(b'"text"', b'"txet"')]:
            self.assertRaises(ValueError, self.demo.set_migration_state, bad)


class AgentTests(DemoTestCase):
    """
    The demo's agent, with a client's agent through an in-memory server.
    """

    def setUp(self):
        DemoTestCase.setUp(self)
        self.server = makeTestServer(disable_ticketing=True)
        for device in self.demo.devices():
            self.server.addInterface(device)
        self.main = TestClientChannel(self.server, ChannelType.MAIN)
        self.client = TestAgentClient(self.main)
        self.client.start()
        self.client.messages()

    def ctrl(self, code, right=False):
        keyboard = self.demo.keyboard
        ctrl = [0xE0, LCTRL] if right else [LCTRL]
        for byte in ctrl:
            keyboard.push_scan_freg(byte)
        press(keyboard, code)
        for byte in ctrl[:-1] + [LCTRL | RELEASE]:
            keyboard.push_scan_freg(byte)

    def test_resize(self):
        """
        The client's monitor configuration re-creates the screen at its
        size, within the demo's limits.
        """
        self.demo.agent.monitors_config([Monitor(800, 600, 0, 0)])
        self.assertEqual((self.demo.width, self.demo.height), (800, 600))
        self.assertEqual(self.observer.of("surface_changed")[-1], (800, 600))
        self.demo.agent.monitors_config([Monitor(100, 9000, 0, 0), None])
        self.assertEqual((self.demo.width, self.demo.height),
                         (demo.MIN_WIDTH, demo.MAX_HEIGHT))
        self.demo.agent.monitors_config([None])
        self.assertEqual(self.demo.width, demo.MIN_WIDTH)

    def test_resizeThroughTheAgent(self):
        self.client.send("MONITORS_CONFIG", num_of_monitors=1, flags=0, physical=b"",
                         monitors=[dict(height=500, width=700, depth=32, x=0, y=0)])
        self.assertEqual(self.demo.framebuffer().shape, (500, 700, 4))

    def test_copy(self):
        """
        Ctrl+C (either Ctrl) offers the text and the canvas; a client that
        pastes gets them.
        """
        press(self.demo.keyboard, H, I)
        self.ctrl(C, right=True)
        self.assertEqual(self.demo.text, "hi")
        ((name, grab),) = self.client.messages()
        self.assertEqual((name, grab.selection, grab.types), ("CLIPBOARD_GRAB", 0, [1, 2]))
        self.client.send("CLIPBOARD_REQUEST", selection=0, type=ClipboardType.UTF8_TEXT)
        self.client.send("CLIPBOARD_REQUEST", selection=0, type=ClipboardType.IMAGE_PNG)
        (_, text), (_, png) = self.client.messages()
        self.assertEqual(text.data, b"hi")
        self.assertTrue(png.data.startswith(b"\x89PNG"))

    def test_clientCopyEndsTheOffer(self):
        self.ctrl(C)
        self.client.send("CLIPBOARD_GRAB", selection=0, types=[1])
        self.assertFalse(self.demo.offering)
        self.assertIsNone(self.demo.agent.clipboard_request(0, ClipboardType.UTF8_TEXT))

    def test_pasteText(self):
        press(self.demo.keyboard, H)
        self.client.send("CLIPBOARD_GRAB", selection=0, types=[2, 1])
        self.ctrl(V)
        ((name, request),) = self.client.messages()
        self.assertEqual((name, request.type), ("CLIPBOARD_REQUEST", 1))
        self.client.send("CLIPBOARD", selection=0, type=1,
                         data="ello\r\nwörld\x07\t!".encode("utf-8"))
        self.assertEqual(self.demo.text, "hello\nwörld !")

    def test_pasteImage(self):
        from PIL import Image
        import io
        image = Image.new("RGB", (30, 20), (10, 200, 30))
        png = io.BytesIO()
        image.save(png, "PNG")
        self.client.send("CLIPBOARD_GRAB", selection=0, types=[2])
        self.ctrl(V)
        self.client.messages()
        before = self.snapshot()
        self.client.send("CLIPBOARD", selection=0, type=2, data=png.getvalue())
        top = demo.TITLE_HEIGHT + demo.HINT_HEIGHT
        self.assertEqual(self.pixel(0, top), (30, 200, 10))
        self.assertEqual(self.pixel(29, top + 19), (30, 200, 10))
        self.assertDamageCovers(before, self.snapshot())

    def test_nothingToPaste(self):
        self.ctrl(V)
        self.client.send("CLIPBOARD_GRAB", selection=0, types=[3])
        self.ctrl(V)
        self.assertEqual(self.client.messages(), [])
        self.assertEqual(self.demo.text, "")

    def test_badImageLogged(self):
        self.client.send("CLIPBOARD_GRAB", selection=0, types=[2])
        self.ctrl(V)
        self.client.send("CLIPBOARD", selection=0, type=2, data=b"not a png")
        self.assertFalse(self.main.transport.disconnecting)

    def test_offerMigrates(self):
        self.ctrl(C)
        target = DemoSource(clock=self.clock)
        server = makeTestServer(disable_ticketing=True)
        for device in target.devices():
            server.addInterface(device)
        target.set_migration_state(self.demo.get_migration_state())
        self.assertTrue(target.offering)
        self.assertIn(0, server.agent.deviceOffers)
