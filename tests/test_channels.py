"""
In-memory tests of the main, display, inputs and cursor channels, through
the real link stage, with the verified fakes of spicesrv.testing (the fakes
themselves are tested in tests.test_testing).
"""

import uuid

import numpy
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from spicesrv.display.cursor import Cursor
from spicesrv.interfaces import IDisplayObserver
from spicesrv.testing import (
    ClientSurface, FakeDisplaySource, LogCapture, MonitoredDisplaySource, RecordingKeyboard,
    RecordingMouse, RecordingTablet, TestClientChannel, makeTestServer)
from spicesrv.wire.constants import ChannelType, DisplayCap, LinkErr, MainCap, MouseMode
from spicesrv.channel import MINI_HEADER
from spicesrv.channels.main import MOUSE_MODE_REQUEST_INTERVAL
from spicesrv.wire.messages import (
    COMMON_CLIENT, DISPLAY_CLIENT, INPUTS_CLIENT, MAIN_CLIENT)


def oneTurn(clock):
    """
    Run the calls of C{clock} that are due now, but not those they schedule
    (L{Clock.advance} runs those too; a reactor leaves them for its next
    turn).
    """
    due = [call for call in clock.getDelayedCalls() if call.getTime() <= clock.seconds()]
    for call in due:
        if call.active():
            clock.calls.remove(call)
            call.called = True
            call.func(*call.args, **call.kw)


def displayInit(client):
    client.send(DISPLAY_CLIENT["INIT"], pixmap_cache_id=1, pixmap_cache_size=20971520,
                glz_dictionary_id=1, glz_dictionary_window_size=1 << 22)


class Setup:
    def setUp(self):
        self.source = FakeDisplaySource(64, 48)
        self.keyboard = RecordingKeyboard()
        self.mouse = RecordingMouse()
        self.server = makeTestServer(disable_ticketing=True, name="vm1",
                                     uuid=uuid.UUID("12345678-1234-5678-1234-567812345678"))
        for device in (self.source, self.keyboard, self.mouse):
            self.server.addInterface(device)
        self.main = TestClientChannel(self.server, ChannelType.MAIN,
                                      channel_caps={MainCap.NAME_AND_UUID})
        self.session_id = self.main.next("INIT").session_id
        self.log = LogCapture(self)

    def link(self, channel_type, channel_id=0, **kwargs):
        client = TestClientChannel(self.server, channel_type, channel_id,
                                   connection_id=self.session_id, **kwargs)
        self.assertEqual(client.result, LinkErr.OK)
        return client

    def logText(self):
        return self.log.text()


class ChannelLimitTests(Setup, unittest.TestCase):
    """
    What one client can make a channel hold or log is bounded, and a close
    happens even when the client stopped reading.
    """

    def test_stalledPartialMessageClosesThatChannelOnly(self):
        inputs = self.link(ChannelType.INPUTS)
        timeout = self.server.limits.messageTimeout
        inputs.protocol.dataReceived(b"\x65\x00\x04\x00\x00\x00\x1c")  # KEY_DOWN, 1 of 4
        self.server.clock.advance(timeout * 0.9)
        inputs.protocol.dataReceived(b"\x00")  # progress does not restart the time
        self.assertFalse(inputs.transport.disconnecting)
        self.server.clock.advance(timeout * 0.1)
        self.assertTrue(inputs.transport.disconnecting)
        self.assertFalse(self.main.transport.disconnecting)
        self.assertIn("partial message (8 bytes so far) did not complete within", self.logText())
        self.assertIn(self.session_id, self.server.sessions)

    def test_completeMessagesKeepTheChannel(self):
        """
        Each message has its own time: a client that sends complete messages
        slowly, one partial after another, stays.
        """
        timeout = self.server.limits.messageTimeout
        ping = MAIN_CLIENT["CLIENT_INFO"]
        body = ping.pack(cache_size=1)
        message = ping.number.to_bytes(2, "little") + len(body).to_bytes(4, "little") + body
        for _ in range(5):
            self.main.protocol.dataReceived(message[:3])
            self.server.clock.advance(timeout * 0.9)
            self.main.protocol.dataReceived(message[3:])
        self.server.clock.advance(timeout * 10)
        self.assertFalse(self.main.transport.disconnecting)

    def test_unknownMessageFloodIsRateLimited(self):
        """
        100000 unknown messages log a bounded number of lines and one
        summary with the count.
        """
        limits = self.server.limits
        before = len(self.log.events)
        self.main.protocol.dataReceived(
            b"".join((999 + i % 7).to_bytes(2, "little") + b"\0\0\0\0" for i in range(100000)))
        self.main.send(MAIN_CLIENT["CLIENT_INFO"], cache_size=5)
        # The channel handles a bounded share per reactor turn: let every
        # turn run before the log window closes.
        self.server.clock.advance(0)
        self.assertFalse(self.main.transport.disconnecting)
        lines = self.log.texts()[before:]
        self.assertEqual(len(lines), limits.logBurst)
        self.server.clock.advance(limits.logInterval)
        lines = self.log.texts()[before:]
        self.assertEqual(len(lines), limits.logBurst + 1)
        self.assertIn("%d more log lines suppressed" % (100000 + 1 - limits.logBurst),
                      lines[-1])
        self.assertIn("unknown message types: %d" % (100000 - limits.logBurst), lines[-1])
        self.assertIn("ignored CLIENT_INFO: 1", lines[-1])
        # A new window logs again.
        self.main.sendRaw(999, b"")
        self.assertEqual(len(self.log.events[before:]), limits.logBurst + 2)

    def test_clientCausedLinesAreRateLimited(self):
        """
        A line a client's message makes a channel log goes through the
        channel's limit (a L{task.Clock} runs its window): a flood of
        PREFERRED_COMPRESSION logs a bounded number of lines, then one
        summary with the count.
        """
        limits = self.server.limits
        display = self.link(ChannelType.DISPLAY)
        before = len(self.log.events)
        for _ in range(1000):
            display.send(DISPLAY_CLIENT["PREFERRED_COMPRESSION"], image_compression=1)
        self.server.clock.advance(0)
        self.assertFalse(display.transport.disconnecting)
        lines = self.log.texts()[before:]
        self.assertEqual(len(lines), limits.logBurst)
        self.assertIn("client prefers compression 1", lines[0])
        self.server.clock.advance(limits.logInterval)
        lines = self.log.texts()[before:]
        self.assertEqual(len(lines), limits.logBurst + 1)
        self.assertIn("PREFERRED_COMPRESSION: %d" % (1000 - limits.logBurst), lines[-1])

    def test_clientCausedWarningsAreRateLimited(self):
        """
        Warnings a client causes (MIGRATE_END while not migrating) keep
        their level and share the limit.
        """
        from twisted.logger import LogLevel
        limits = self.server.limits
        before = len(self.log.events)
        for _ in range(500):
            self.main.send(MAIN_CLIENT["MIGRATE_END"])
        self.server.clock.advance(0)
        events = self.log.events[before:]
        self.assertEqual(len(events), limits.logBurst)
        self.assertEqual({event["log_level"] for event in events}, {LogLevel.warn})
        self.main.protocol.connectionLost(None)
        self.assertEqual(len(self.log.matching(
            "MIGRATE_END while not migrating in: %d" % (500 - limits.logBurst))), 1)

    def test_suppressedLinesSummarisedAtClose(self):
        limits = self.server.limits
        inputs = self.link(ChannelType.INPUTS)
        before = len(self.log.events)
        for _ in range(limits.logBurst + 3):
            inputs.sendRaw(999, b"")
        inputs.protocol.connectionLost(None)
        lines = self.log.texts()[before:]
        self.assertIn("3 more log lines suppressed", "\n".join(lines))

    def test_linesAreLimitedPerConnection(self):
        limits = self.server.limits
        inputs = self.link(ChannelType.INPUTS)
        for _ in range(limits.logBurst * 2):
            inputs.sendRaw(999, b"")
        before = len(self.log.events)
        self.main.sendRaw(999, b"")
        self.assertEqual(len(self.log.events), before + 1)

    def test_closeAbortsAClientThatStoppedReading(self):
        display = self.link(ChannelType.DISPLAY)
        display.channel.close("test")
        self.assertTrue(display.transport.disconnecting)
        self.assertFalse(display.transport.disconnected)
        self.server.clock.advance(self.server.limits.closeGrace * 0.99)
        self.assertFalse(display.transport.disconnected)
        self.server.clock.advance(self.server.limits.closeGrace * 0.01)
        self.assertTrue(display.transport.disconnected)
        self.assertIn("did not take the last bytes", self.logText())
        self.assertFalse(self.main.transport.disconnecting)

    def test_closeThatCompletesIsNotAborted(self):
        display = self.link(ChannelType.DISPLAY)
        display.channel.close("test")
        display.protocol.connectionLost(None)
        self.server.clock.advance(self.server.limits.closeGrace)
        self.assertFalse(display.transport.disconnected)
        self.assertNotIn("did not take the last bytes", self.logText())

    def test_nothingDispatchedAfterClose(self):
        """
        Messages after the one that closed the channel are not handled.
        """
        inputs = self.link(ChannelType.INPUTS)
        inputs.protocol.dataReceived(b"\x65\x00\x01\x00\x00\x00\x01"
                                     + b"\x65\x00\x04\x00\x00\x00\x1c\x00\x00\x00")
        self.assertTrue(inputs.transport.disconnecting)
        self.assertEqual(self.keyboard.scancodes, [])


class MainChannelTests(Setup, unittest.TestCase):
    def test_init(self):
        server = makeTestServer(disable_ticketing=True)
        server.addInterface(FakeDisplaySource())
        client = TestClientChannel(server, ChannelType.MAIN)
        init = client.next("INIT")
        self.assertNotEqual(init.session_id, 0)
        self.assertEqual(init.display_channels_hint, 1)
        self.assertEqual(init.supported_mouse_modes, MouseMode.SERVER)
        self.assertEqual(init.current_mouse_mode, MouseMode.SERVER)
        self.assertEqual((init.agent_connected, init.agent_tokens), (0, 10))
        self.assertEqual(init.multi_media_time, (0 - 400) & 0xFFFFFFFF)
        self.assertEqual(client.names(), [])

    def test_nameAndUuid(self):
        server = makeTestServer(disable_ticketing=True, name="vm1",
                                uuid=uuid.UUID("12345678-1234-5678-1234-567812345678"))
        client = TestClientChannel(server, ChannelType.MAIN, channel_caps={MainCap.NAME_AND_UUID})
        names = client.poll()
        self.assertEqual([n for n, _ in names], ["INIT", "NAME", "UUID"])
        self.assertEqual(names[1][1].name, b"vm1\0")
        self.assertEqual(names[2][1].uuid, bytes.fromhex("12345678123456781234567812345678"))
        plain = TestClientChannel(server, ChannelType.MAIN)
        self.assertEqual(plain.names(), ["INIT"])

    def test_attachChannels(self):
        self.main.send(MAIN_CLIENT["ATTACH_CHANNELS"])
        listed = self.main.next("CHANNELS_LIST")
        self.assertEqual([(c.type, c.id) for c in listed.channels],
                         [(2, 0), (3, 0), (4, 0)])

    def test_laterChannelAnnounced(self):
        self.server.addInterface(FakeDisplaySource())
        self.assertNotIn("CHANNELS_LIST", self.main.names())
        self.main.send(MAIN_CLIENT["ATTACH_CHANNELS"])
        self.main.take()
        self.server.addInterface(FakeDisplaySource())
        lists = [r for n, r in self.main.take() if n == "CHANNELS_LIST"]
        self.assertEqual([[(c.type, c.id) for c in r.channels] for r in lists],
                         [[(2, 2)], [(4, 2)]])

    def test_mouseModes(self):
        self.main.send(MAIN_CLIENT["MOUSE_MODE_REQUEST"], mode=MouseMode.CLIENT)
        mode = self.main.next("MOUSE_MODE")
        self.assertEqual((mode.supported_modes, mode.current_mode),
                         (MouseMode.SERVER, MouseMode.SERVER))
        self.server.addInterface(RecordingTablet())
        mode = self.main.next("MOUSE_MODE")
        self.assertEqual((mode.supported_modes, mode.current_mode),
                         (MouseMode.SERVER | MouseMode.CLIENT, MouseMode.CLIENT))
        self.server.clock.advance(MOUSE_MODE_REQUEST_INTERVAL)
        self.main.send(MAIN_CLIENT["MOUSE_MODE_REQUEST"], mode=MouseMode.SERVER)
        self.assertEqual(self.main.next("MOUSE_MODE").current_mode, MouseMode.SERVER)
        self.assertEqual(self.server.mouseMode, MouseMode.SERVER)

    def test_mouseModeRequestsBounded(self):
        """
        Only a change of mouse mode is told to every client, at most once
        per L{MOUSE_MODE_REQUEST_INTERVAL} per asking client, the latest
        request winning; an unsupported one is answered to the asker only.
        """
        self.server.addInterface(RecordingTablet())
        other = TestClientChannel(self.server, ChannelType.MAIN)
        self.main.take()
        other.take()
        for i in range(1000):
            self.main.send(MAIN_CLIENT["MOUSE_MODE_REQUEST"],
                           mode=MouseMode.SERVER if i % 2 else MouseMode.CLIENT)
        self.assertEqual(self.main.names(), [])           # CLIENT is current already
        self.server.clock.advance(MOUSE_MODE_REQUEST_INTERVAL)
        modes = [r for n, r in other.take() if n == "MOUSE_MODE"]
        self.assertEqual([r.current_mode for r in modes], [MouseMode.SERVER])   # the latest
        self.assertEqual(self.server.mouseMode, MouseMode.SERVER)
        self.server.clock.advance(MOUSE_MODE_REQUEST_INTERVAL)
        self.assertNotIn("MOUSE_MODE", other.names())
        self.main.take()
        for i in range(100):
            self.main.send(MAIN_CLIENT["MOUSE_MODE_REQUEST"], mode=7)
        self.server.clock.advance(MOUSE_MODE_REQUEST_INTERVAL)
        self.assertEqual(self.main.names().count("MOUSE_MODE"), 1)
        self.assertNotIn("MOUSE_MODE", other.names())

    def test_unknownMessageIgnored(self):
        self.main.sendRaw(999, b"whatever")
        self.main.send(MAIN_CLIENT["CLIENT_INFO"], cache_size=5)
        self.assertFalse(self.main.transport.disconnecting)
        self.assertIn("unknown message type 999", self.logText())
        self.assertIn("ignoring CLIENT_INFO", self.logText())

    def test_malformedClosesOnlyThatChannel(self):
        inputs = self.link(ChannelType.INPUTS)
        inputs.sendRaw(101, b"\1")  # KEY_DOWN needs 4 bytes
        self.assertTrue(inputs.transport.disconnecting)
        self.assertFalse(self.main.transport.disconnecting)
        self.assertIn("malformed KEY_DOWN", self.logText())

    def test_oversizedMessageCloses(self):
        self.main.protocol.dataReceived(b"\x68\x00" + (2 ** 31).to_bytes(4, "little"))
        self.assertTrue(self.main.transport.disconnecting)
        self.assertIn("claims", self.logText())

    def test_agentMessagesWithoutAgent(self):
        """
        Without an agent device, INIT says so and the client's agent
        messages are dropped (with a log line for its data).
        """
        self.main.take()
        self.main.send(MAIN_CLIENT["AGENT_START"], num_tokens=5)
        self.main.send(MAIN_CLIENT["AGENT_TOKEN"], num_tokens=3)
        self.main.send(MAIN_CLIENT["AGENT_DATA"], data=b"\1" * 30)
        self.assertEqual(self.main.names(), [])
        self.assertFalse(self.main.transport.disconnecting)
        self.assertIn("no agent; dropping 30 bytes", self.logText())

    def test_mainLossEndsSession(self):
        inputs = self.link(ChannelType.INPUTS)
        self.main.protocol.connectionLost(None)
        self.assertTrue(inputs.transport.disconnecting)
        self.assertNotIn(self.session_id, self.server.sessions)

    def test_pingPong(self):
        self.main.take()
        self.server.clock.advance(0.1)
        pings = [r for n, r in self.main.take() if n == "PING"]
        self.assertEqual(len(pings), 2)
        self.server.clock.advance(0.02)
        self.main.send(COMMON_CLIENT["PONG"], id=pings[1].id, timestamp=pings[1].timestamp)
        self.assertAlmostEqual(self.main.channel.latency, 0.02)

    def test_notify(self):
        self.main.channel.notify("hello")
        record = self.main.next("NOTIFY")
        self.assertEqual(record.message, b"hello\0")


class DisplayChannelTests(Setup, unittest.TestCase):
    def test_waitsForInit(self):
        display = self.link(ChannelType.DISPLAY)
        self.assertEqual(display.names(), [])

    def test_initialFrame(self):
        self.source.fill((0, 0, 64, 48), (10, 20, 30, 0))
        self.source.fill((5, 6, 9, 8), (1, 2, 3, 0))
        display = self.link(ChannelType.DISPLAY)
        displayInit(display)
        messages = display.take()
        names = [n for n, _ in messages]
        self.assertEqual(names[:3], ["SET_ACK", "INVAL_ALL_PALETTES", "SURFACE_CREATE"])
        self.assertEqual(names[-1], "MARK")
        create = messages[2][1]
        self.assertEqual((create.width, create.height, create.format, create.flags),
                         (64, 48, 32, 1))
        surface = ClientSurface().applyAll(messages)
        numpy.testing.assert_array_equal(surface.pixels, self.source.frame)
        self.assertEqual(surface.imageTypes, [0])  # raw without the LZ4 cap

    def test_lz4(self):
        display = self.link(ChannelType.DISPLAY, channel_caps={DisplayCap.LZ4_COMPRESSION})
        self.source.fill((0, 0, 64, 48), (7, 7, 7, 0))
        displayInit(display)
        surface = ClientSurface().applyAll(display.take())
        self.assertEqual(surface.imageTypes, [109])
        numpy.testing.assert_array_equal(surface.pixels, self.source.frame)

    def test_preferredCompressionOff(self):
        display = self.link(ChannelType.DISPLAY, channel_caps={DisplayCap.LZ4_COMPRESSION})
        self.assertIn(DisplayCap.PREF_COMPRESSION, display.serverChannelCaps)
        display.send(DISPLAY_CLIENT["PREFERRED_COMPRESSION"], image_compression=1)
        displayInit(display)
        self.assertEqual(ClientSurface().applyAll(display.take()).imageTypes, [0])

    def test_damageUpdates(self):
        display = self.link(ChannelType.DISPLAY)
        displayInit(display)
        surface = ClientSurface().applyAll(display.take())
        self.source.fill((10, 10, 20, 15), (255, 0, 0, 0))
        self.source.fill((12, 12, 30, 14), (0, 255, 0, 0))
        self.assertEqual(display.take(), [])  # coalesced until the reactor turns
        self.server.clock.advance(0)
        messages = display.take()
        self.assertTrue(all(n == "DRAW_COPY" for n, _ in messages))
        surface.applyAll(messages)
        numpy.testing.assert_array_equal(surface.pixels, self.source.frame)
        for name, record in messages:
            box = record.base.box
            self.assertTrue(box.left >= 10 and box.right <= 30 and box.top >= 10
                            and box.bottom <= 15, box)

    def test_bigUpdateInStrips(self):
        """
        The first picture is one image of the whole surface; a big update
        later goes in strips.
        """
        source = FakeDisplaySource(1024, 768)
        self.server.addInterface(source)
        display = self.link(ChannelType.DISPLAY, 1)
        displayInit(display)
        draws = [r for n, r in display.take() if n == "DRAW_COPY"]
        self.assertEqual(len(draws), 1)
        source.fill((0, 0, 1024, 768), (1, 2, 3, 0))
        self.server.clock.advance(0)
        draws = [r for n, r in display.take() if n == "DRAW_COPY"]
        self.assertGreater(len(draws), 1)
        self.assertTrue(all(len(r.src_bitmap) <= 256 * 1024 + 64 for r in draws))

    def test_fullLinkReachesEveryRow(self):
        """
        A picture that changes all over faster than the link carries it is
        still brought up to date everywhere, a part at a time: an update cut
        short for room starts the next one where it stopped.  (Starting every
        update at the top, the bottom rows were never drawn again.)
        """
        source = FakeDisplaySource(640, 480)
        self.server.addInterface(source)
        display = self.link(ChannelType.DISPLAY, 1)
        displayInit(display)
        display.take()
        channel, clock = display.channel, self.server.clock
        # A 1 MB/s link: two 245 KB strips of the five go per update.
        channel.streams.rate.rate = 1e6
        start, begun = channel.bytesWritten, clock.seconds()
        channel.queuedBytes = lambda: max(
            0, channel.bytesWritten - start - 1e6 * (clock.seconds() - begun))
        noise = numpy.random.default_rng(3)
        drawn = numpy.zeros(480, int)
        for _ in range(40):
            source.frame[...] = noise.integers(0, 256, source.frame.shape, numpy.uint8)
            source.damage([(0, 0, 640, 480)])
            clock.advance(0.05)
            for name, record in display.take():
                if name == "DRAW_COPY":
                    drawn[record.base.box.top:record.base.box.bottom] += 1
        self.assertTrue(drawn.all(), "rows never drawn: %d of 480" % (drawn == 0).sum())
        self.assertLessEqual(drawn.max() - drawn.min(), 1)

    def test_ackWindow(self):
        """
        Without ACKs the channel stops after 2 * window messages; damage piles
        up as merged rectangles, and an ACK releases it.
        """
        display = self.link(ChannelType.DISPLAY)
        display.send(COMMON_CLIENT["ACK_SYNC"], generation=1)
        displayInit(display)
        display.take()
        for i in range(200):
            self.source.fill((i % 64, (i * 7) % 48, i % 64 + 1, (i * 7) % 48 + 1),
                             (i, i, i, 0))
            self.server.clock.advance(0)
        sent = len(display.take())
        self.assertLessEqual(sent, 2 * 20 + 17)
        self.assertTrue(self.server.displays[0] is self.source)
        channel = display.channel
        self.assertFalse(channel.canSend())
        self.assertTrue(channel.damage)
        display.send(COMMON_CLIENT["ACK"])
        self.server.clock.advance(0)
        self.assertGreater(len(display.take()), 0)

    def test_ackOfOldGenerationIgnored(self):
        display = self.link(ChannelType.DISPLAY)
        displayInit(display)
        display.channel.unacked = 30
        display.send(COMMON_CLIENT["ACK"])
        self.assertEqual(display.channel.unacked, 30)

    def test_socketBackpressure(self):
        display = self.link(ChannelType.DISPLAY)
        displayInit(display)
        display.take()
        display.channel.pauseProducing()
        self.source.fill((0, 0, 5, 5), (1, 1, 1, 0))
        self.server.clock.advance(0)
        self.assertEqual(display.take(), [])
        display.channel.resumeProducing()
        self.server.clock.advance(0)
        self.assertEqual([n for n, _ in display.take()], ["DRAW_COPY"])

    def test_resize(self):
        display = self.link(ChannelType.DISPLAY)
        displayInit(display)
        surface = ClientSurface().applyAll(display.take())
        self.source.resize(80, 60)
        self.source.fill((0, 0, 80, 60), (9, 8, 7, 0))
        self.server.clock.advance(0)
        messages = display.take()
        self.assertEqual([n for n, _ in messages[:2]], ["SURFACE_DESTROY", "SURFACE_CREATE"])
        surface.applyAll(messages)
        self.assertEqual(surface.pixels.shape, (60, 80, 4))
        numpy.testing.assert_array_equal(surface.pixels, self.source.frame)

    def test_observerReleased(self):
        display = self.link(ChannelType.DISPLAY)
        displayInit(display)
        verifyObject(IDisplayObserver, display.channel)
        channel = display.channel
        self.assertIn(channel, self.source.observers)
        display.protocol.connectionLost(None)
        self.assertNotIn(channel, self.source.observers)


class DisplayMonitorsTests(unittest.TestCase):
    """
    MONITORS_CONFIG: where a source's monitors are on its surface, for
    clients with SPICE_DISPLAY_CAP_MONITORS_CONFIG.
    """

    def setUp(self):
        self.server = makeTestServer(disable_ticketing=True)
        self.source = MonitoredDisplaySource(64, 48)
        self.server.addInterface(self.source)
        main = TestClientChannel(self.server, ChannelType.MAIN)
        self.session_id = main.next("INIT").session_id

    def display(self, caps=(DisplayCap.MONITORS_CONFIG,)):
        display = TestClientChannel(self.server, ChannelType.DISPLAY,
                                    connection_id=self.session_id, channel_caps=set(caps))
        displayInit(display)
        return display

    def heads(self, message):
        return [(h.monitor_id, h.surface_id, h.x, h.y, h.width, h.height)
                for h in message.heads]

    def test_afterSurfaceCreate(self):
        """
        The surface's creation is followed by the monitors: count,
        max_allowed, and a head per monitor on surface 0.
        """
        self.source.layout = [(0, 0, 32, 48), (32, 0, 32, 40)]
        messages = self.display().take()
        names = [name for name, _ in messages]
        index = names.index("SURFACE_CREATE") + 1
        self.assertEqual(names[index], "MONITORS_CONFIG")
        config = messages[index][1]
        self.assertEqual((config.count, config.max_allowed), (2, 2))
        self.assertEqual(self.heads(config), [(0, 0, 0, 0, 32, 48), (1, 0, 32, 0, 32, 40)])

    def test_changesAndResizes(self):
        """
        A new layout on the same surface, and a new surface, are reported.
        """
        display = self.display()
        display.take()
        self.source.setLayout([(8, 8, 16, 16)])
        self.assertEqual(self.heads(display.next("MONITORS_CONFIG")), [(0, 0, 8, 8, 16, 16)])
        self.source.layout = [(0, 0, 80, 60)]
        self.source.resize(80, 60)
        self.server.clock.advance(0)
        names = display.names()
        self.assertEqual(names[:3], ["SURFACE_DESTROY", "SURFACE_CREATE", "MONITORS_CONFIG"])

    def test_notWithoutTheCap(self):
        """
        A client without the capability, or a source without monitors,
        gets no MONITORS_CONFIG.
        """
        self.assertNotIn("MONITORS_CONFIG", self.display(caps=()).names())
        server = makeTestServer(disable_ticketing=True)
        server.addInterface(FakeDisplaySource())
        main = TestClientChannel(server, ChannelType.MAIN)
        display = TestClientChannel(server, ChannelType.DISPLAY,
                                    connection_id=main.next("INIT").session_id,
                                    channel_caps={DisplayCap.MONITORS_CONFIG})
        displayInit(display)
        self.assertNotIn("MONITORS_CONFIG", display.names())


class InputsChannelTests(Setup, unittest.TestCase):
    def setUp(self):
        Setup.setUp(self)
        self.inputs = self.link(ChannelType.INPUTS)

    def test_init(self):
        self.keyboard.leds = 4
        inputs = self.link(ChannelType.INPUTS)
        self.assertEqual(inputs.next("INIT").keyboard_modifiers, 4)
        self.assertIn(0, inputs.serverChannelCaps)

    def test_keys(self):
        self.inputs.send(INPUTS_CLIENT["KEY_DOWN"], code=0x1E)
        self.inputs.send(INPUTS_CLIENT["KEY_UP"], code=0x9E)
        self.inputs.send(INPUTS_CLIENT["KEY_DOWN"], code=(0x48 << 8) | 0xE0)
        self.inputs.send(INPUTS_CLIENT["KEY_UP"], code=((0x48 | 0x80) << 8) | 0xE0)
        self.inputs.send(INPUTS_CLIENT["KEY_SCANCODE"], codes=b"\x1f\x9f")
        self.assertEqual(self.keyboard.scancodes,
                         [0x1E, 0x9E, 0xE0, 0x48, 0xE0, 0xC8, 0x1F, 0x9F])

    def test_ledsReported(self):
        self.inputs.take()
        self.inputs.send(INPUTS_CLIENT["KEY_DOWN"], code=0x3A)
        self.inputs.send(INPUTS_CLIENT["KEY_UP"], code=0xBA)
        self.assertEqual(self.inputs.next("KEY_MODIFIERS").modifiers, 4)

    def test_ledsChangedByTheKeyboard(self):
        """
        A keyboard's own LED change (its C{leds_changed}, set by the
        server) reaches the client at once, as C{spice_server_kbd_leds};
        calling it without a change sends nothing.
        """
        self.inputs.take()
        self.keyboard.setLeds(2)
        self.assertEqual(self.inputs.next("KEY_MODIFIERS").modifiers, 2)
        self.keyboard.setLeds(2)
        self.assertEqual(self.inputs.names(), [])

    def test_modifierSync(self):
        self.inputs.send(INPUTS_CLIENT["KEY_MODIFIERS"], modifiers=2 | 4)
        self.assertEqual(self.keyboard.scancodes, [0x45, 0xC5, 0x3A, 0xBA])
        self.assertEqual(self.keyboard.leds, 6)

    def test_motionAck(self):
        self.inputs.take()
        for i in range(9):
            self.inputs.send(INPUTS_CLIENT["MOUSE_MOTION"], dx=1, dy=-1, buttons_state=0)
        self.assertEqual(self.inputs.names(), ["MOUSE_MOTION_ACK"] * 2)
        self.server.clock.advance(0)
        # One reactor turn's motions reach the mouse as one.
        self.assertEqual(self.mouse.events, [("motion", 9, -9, 0, 0)])

    def test_motionCoalescedPerTurn(self):
        """
        Movement is given to the device once per reactor turn; a change of
        buttons and any other input keep their order with it.
        """
        send = self.inputs.send
        send(INPUTS_CLIENT["MOUSE_MOTION"], dx=1, dy=2, buttons_state=0)
        send(INPUTS_CLIENT["MOUSE_MOTION"], dx=3, dy=4, buttons_state=0)
        send(INPUTS_CLIENT["MOUSE_MOTION"], dx=1, dy=1, buttons_state=1)   # drag starts
        send(INPUTS_CLIENT["MOUSE_MOTION"], dx=1, dy=1, buttons_state=1)
        send(INPUTS_CLIENT["MOUSE_RELEASE"], button=1, buttons_state=0)
        send(INPUTS_CLIENT["MOUSE_MOTION"], dx=5, dy=5, buttons_state=0)
        self.assertEqual(self.mouse.events, [("motion", 4, 6, 0, 0), ("motion", 2, 2, 0, 1),
                                             ("buttons", 0)])
        self.server.clock.advance(0)
        self.assertEqual(self.mouse.events[3:], [("motion", 5, 5, 0, 0)])

    def test_positionsCoalescedPerTurn(self):
        tablet = RecordingTablet()
        self.server.addInterface(tablet)
        for x in range(1000):
            self.inputs.send(INPUTS_CLIENT["MOUSE_POSITION"], x=x, y=x, buttons_state=0,
                             display_id=0)
            if x % 64 == 63:
                self.server.clock.advance(0)
        self.server.clock.advance(0)
        positions = [e for e in tablet.events if e[0] == "position"]
        self.assertEqual(len(positions), 16)
        self.assertEqual(positions[-1], ("position", 999, 999, 0))
        self.assertEqual(self.inputs.names().count("MOUSE_MOTION_ACK"), 250)  # every message

    def test_scancodesAcrossTurns(self):
        """
        A long KEY_SCANCODE reaches the keyboard over several reactor turns,
        and the client's next messages wait for it.
        """
        from spicesrv.channels.inputs import MAX_INPUTS_MESSAGE, MAX_SCANCODES_PER_TURN
        codes = bytes([0x1E, 0x9E]) * (MAX_INPUTS_MESSAGE // 2)
        self.inputs.send(INPUTS_CLIENT["KEY_SCANCODE"], codes=codes)
        self.inputs.send(INPUTS_CLIENT["KEY_DOWN"], code=0x1F)
        self.assertEqual(len(self.keyboard.scancodes), MAX_SCANCODES_PER_TURN)
        self.assertEqual(self.inputs.transport.producerState, "paused")
        oneTurn(self.server.clock)
        self.assertEqual(len(self.keyboard.scancodes), 2 * MAX_SCANCODES_PER_TURN)
        for _ in range(MAX_INPUTS_MESSAGE // MAX_SCANCODES_PER_TURN + 1):
            oneTurn(self.server.clock)
        self.assertEqual(bytes(self.keyboard.scancodes), codes + b"\x1f")
        self.assertEqual(self.inputs.transport.producerState, "producing")

    def test_oversizedScancodesClose(self):
        """
        An inputs message larger than libspice-server accepts closes the
        channel.
        """
        self.inputs.send(INPUTS_CLIENT["KEY_SCANCODE"], codes=b"\x1e" * 5000)
        self.assertTrue(self.inputs.transport.disconnecting)
        self.assertEqual(self.keyboard.scancodes, [])
        self.assertIn("more than the 2048 allowed", self.logText())

    def test_messagesPerTurnBounded(self):
        """
        A channel handles a bounded number of messages per reactor turn,
        without reading its socket, and the rest in the next turns.
        """
        from spicesrv.channel import MAX_MESSAGES_PER_TURN
        message = INPUTS_CLIENT["MOUSE_PRESS"]
        one = self.inputs.protocol
        body = message.pack(button=1, buttons_state=1)
        flood = b"".join(MINI_HEADER.pack(message.number, len(body)) + body
                         for _ in range(3 * MAX_MESSAGES_PER_TURN))
        one.dataReceived(flood)
        self.assertEqual(len(self.mouse.events), MAX_MESSAGES_PER_TURN)
        self.assertEqual(self.inputs.transport.producerState, "paused")
        oneTurn(self.server.clock)
        self.assertEqual(len(self.mouse.events), 2 * MAX_MESSAGES_PER_TURN)
        oneTurn(self.server.clock)
        self.assertEqual(len(self.mouse.events), 3 * MAX_MESSAGES_PER_TURN)
        oneTurn(self.server.clock)
        self.assertEqual(self.inputs.transport.producerState, "producing")

    def test_scancodesPerTurnOverMessages(self):
        """
        The keyboard's share of a reactor turn counts the scancodes of all
        the turn's messages: a flood of one-key messages reaches it
        L{MAX_SCANCODES_PER_TURN} scancodes a turn, in order, with the
        socket unread until they are all handled.
        """
        from spicesrv.channels.inputs import MAX_SCANCODES_PER_TURN
        message = INPUTS_CLIENT["KEY_SCANCODE"]
        codes = [0x1E, 0x9E] * 50 + [0x1F]
        flood = b"".join(MINI_HEADER.pack(message.number, 1) + message.pack(codes=bytes([c]))
                         for c in codes)
        self.inputs.protocol.dataReceived(flood)
        self.assertEqual(self.keyboard.scancodes, codes[:MAX_SCANCODES_PER_TURN])
        self.assertEqual(self.inputs.transport.producerState, "paused")
        turns = 1
        while self.inputs.transport.producerState == "paused":
            before = len(self.keyboard.scancodes)
            oneTurn(self.server.clock)
            turns += 1
            self.assertLessEqual(len(self.keyboard.scancodes) - before, MAX_SCANCODES_PER_TURN)
        self.assertEqual(self.keyboard.scancodes, codes)
        self.assertEqual(turns, -(-len(codes) // MAX_SCANCODES_PER_TURN))

    def test_longScancodesThenShortOnesShareTurns(self):
        """
        After the rest of a long KEY_SCANCODE, the held messages that follow
        are handled within the same per-turn share.
        """
        from spicesrv.channels.inputs import MAX_SCANCODES_PER_TURN
        first = bytes([0x1E, 0x9E]) * 20
        self.inputs.send(INPUTS_CLIENT["KEY_SCANCODE"], codes=first)
        for _ in range(20):
            self.inputs.send(INPUTS_CLIENT["KEY_SCANCODE"], codes=b"\x1f")
        while self.inputs.transport.producerState == "paused":
            before = len(self.keyboard.scancodes)
            oneTurn(self.server.clock)
            self.assertLessEqual(len(self.keyboard.scancodes) - before, MAX_SCANCODES_PER_TURN)
        self.assertEqual(bytes(self.keyboard.scancodes), first + b"\x1f" * 20)

    def test_buttonsAndWheel(self):
        self.inputs.send(INPUTS_CLIENT["MOUSE_PRESS"], button=1, buttons_state=1)
        self.inputs.send(INPUTS_CLIENT["MOUSE_RELEASE"], button=1, buttons_state=0)
        self.inputs.send(INPUTS_CLIENT["MOUSE_PRESS"], button=4, buttons_state=0)
        self.inputs.send(INPUTS_CLIENT["MOUSE_RELEASE"], button=4, buttons_state=0)
        self.inputs.send(INPUTS_CLIENT["MOUSE_PRESS"], button=5, buttons_state=0)
        self.assertEqual(self.mouse.events, [("buttons", 1), ("buttons", 0),
                                             ("motion", 0, 0, -1, 0), ("motion", 0, 0, 1, 0)])

    def test_clientMode(self):
        tablet = RecordingTablet()
        self.server.addInterface(tablet)
        self.assertEqual(tablet.events, [("size", 64, 48)])
        self.inputs.send(INPUTS_CLIENT["MOUSE_POSITION"], x=5, y=6, buttons_state=1,
                         display_id=0)
        self.inputs.send(INPUTS_CLIENT["MOUSE_MOTION"], dx=1, dy=1, buttons_state=0)
        self.inputs.send(INPUTS_CLIENT["MOUSE_PRESS"], button=5, buttons_state=0)
        self.assertEqual(tablet.events[1:], [("position", 5, 6, 1), ("wheel", 1, 0)])
        self.assertEqual(self.mouse.events, [])


class CursorChannelTests(Setup, unittest.TestCase):
    def test_init(self):
        """
        INIT carries the shape, its visibility and position; the same shape
        follows as SET, the one message spice-html5 takes a shape from.
        """
        self.source.position = (3, 4)
        cursor = self.link(ChannelType.CURSOR)
        messages = cursor.take()
        self.assertEqual([n for n, _ in messages], ["SET_ACK", "INIT", "SET"])
        init, set_ = messages[1][1], messages[2][1]
        self.assertEqual((init.position.x, init.position.y, init.visible), (3, 4, 1))
        header, data = init.cursor
        self.assertEqual((header.width, header.height, header.type), (2, 2, 0))
        self.assertEqual(data, b"\xff" * 16)
        self.assertEqual((set_.position.x, set_.position.y, set_.visible), (3, 4, 1))
        self.assertEqual(set_.cursor, init.cursor)

    def test_initHidden(self):
        """
        Without a shape, INIT says the cursor is hidden, and HIDE follows.
        """
        self.source.setCursor(None)
        cursor = self.link(ChannelType.CURSOR)
        messages = cursor.take()
        self.assertEqual([n for n, _ in messages], ["SET_ACK", "INIT", "HIDE"])
        self.assertEqual(messages[1][1].visible, 0)

    def test_changes(self):
        cursor = self.link(ChannelType.CURSOR)
        cursor.take()
        shape = Cursor(1, 1, 0, 0, b"\0\0\xff\xff")
        self.source.setCursor(shape)
        self.source.moveCursor(7, 8)
        self.source.setCursor(None)
        messages = cursor.take()
        self.assertEqual([n for n, _ in messages], ["SET", "MOVE", "HIDE"])
        self.assertEqual(messages[0][1].cursor[1], b"\0\0\xff\xff")
        self.assertEqual((messages[1][1].position.x, messages[1][1].position.y), (7, 8))

    def test_noMoveInClientMode(self):
        self.server.addInterface(RecordingTablet())
        cursor = self.link(ChannelType.CURSOR)
        cursor.take()
        self.source.moveCursor(1, 1)
        self.assertEqual(cursor.take(), [])

    def test_shapesPulledWhenWindowFull(self):
        """
        Shape changes are not queued: while the window is full only the
        latest shape waits, and it goes out (with the latest position) once
        an ACK opens the window.
        """
        cursor = self.link(ChannelType.CURSOR)
        cursor.send(COMMON_CLIENT["ACK_SYNC"], generation=1)
        cursor.take()
        for i in range(1000):
            self.source.setCursor(Cursor(1, 1, 0, 0, bytes([i % 256, 0, 0, 255])))
        self.assertEqual(len(cursor.take()), 39)  # INIT, SET + 39 fill 2 windows + 1
        self.source.moveCursor(5, 6)
        cursor.send(COMMON_CLIENT["ACK"])
        last = cursor.take()
        self.assertEqual([n for n, _ in last], ["SET"])
        self.assertEqual(last[0][1].cursor[1], bytes([999 % 256, 0, 0, 255]))
        self.assertEqual((last[0][1].position.x, last[0][1].position.y), (5, 6))

    def test_waitsWhileSocketFull(self):
        cursor = self.link(ChannelType.CURSOR)
        cursor.take()
        channel = cursor.channel
        self.assertIs(cursor.transport.producer, channel)
        channel.pauseProducing()
        self.source.setCursor(None)
        self.source.setCursor(Cursor(1, 1, 0, 0, b"\0\0\0\xff"))
        self.assertEqual(cursor.take(), [])
        channel.resumeProducing()
        self.assertEqual(cursor.names(), ["SET"])

    def test_movesCoalescedWhenWindowFull(self):
        cursor = self.link(ChannelType.CURSOR)
        cursor.send(COMMON_CLIENT["ACK_SYNC"], generation=1)
        cursor.take()
        for i in range(100):
            self.source.moveCursor(i, i)
        self.assertEqual(len(cursor.take()), 39)  # INIT, SET + 39 moves fill 2 windows + 1
        cursor.send(COMMON_CLIENT["ACK"])
        last = cursor.take()
        self.assertEqual([(r.position.x, r.position.y) for _, r in last], [(99, 99)])
