"""
One client cannot starve the others, nor make the server hold unbounded
output for it: a server on real loopback sockets, flooding clients and
clients that never read (issue 8, items 4 and 5).

Nothing here measures time: each test checks what another client got
while the flood was still being worked through, or what the server holds
for clients that do not read.
"""

import struct

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.trial import unittest

from spicesrv.channel import ACK_WINDOW_FACTOR, MINI_HEADER
from spicesrv.channels.inputs import MAX_SCANCODES_PER_TURN
from spicesrv.display.cursor import Cursor
from spicesrv.sources.demo import DemoSource
from spicesrv.testing import (
    SERVER_TABLES, FakeDisplaySource, RecordingObserver, ServerMessages, initDisplayChannel,
    linkMessage, makeTestServer, parseLinkReply, ticketBytes)
from spicesrv.wire.constants import ChannelType, LinkErr, MouseMode
from spicesrv.wire.messages import INPUTS_CLIENT, MAIN_CLIENT


class RawChannel(Protocol):
    """
    One channel of a client on a real socket: it links, then collects the
    server's messages, or (with C{read=False}) stops reading once linked.
    """

    def __init__(self, channelType, connectionId=0, read=True):
        self.channelType = channelType
        self.connectionId = connectionId
        self.read = read
        self.buffer = b""
        self.reply = None
        self.result = None
        self.linked = defer.Deferred()
        self.messages = ServerMessages(SERVER_TABLES[channelType])
        self.waiting = []

    def connectionMade(self):
        self.transport.write(linkMessage(self.channelType, 0, self.connectionId))

    def dataReceived(self, data):
        self.buffer += data
        if self.reply is None:
            try:
                self.reply, _, _, self.buffer = parseLinkReply(self.buffer)
            except (ValueError, struct.error):
                return
            self.transport.write(ticketBytes(self.reply))
        if self.result is None:
            if len(self.buffer) < 4:
                return
            (self.result,) = struct.unpack_from("<I", self.buffer)
            self.buffer = self.buffer[4:]
            if not self.read:
                self.transport.pauseProducing()
            self.linked.callback(self.result)
        self.messages.feed(self.buffer)
        self.buffer = b""
        self._check()

    def _check(self):
        for name, d in list(self.waiting):
            for got, record in self.messages.messages:
                if got == name:
                    self.waiting.remove((name, d))
                    d.callback(record)
                    break

    def waitFor(self, name):
        """
        A L{Deferred} firing with the first message called C{name}.
        """
        d = defer.Deferred()
        self.waiting.append((name, d))
        self._check()
        return d

    def send(self, message, **fields):
        body = message.pack(**fields)
        self.transport.write(MINI_HEADER.pack(message.number, len(body)) + body)


class LoopbackServer:
    """
    A spicesrv server listening on 127.0.0.1, run by the real reactor.
    """

    def __init__(self, testcase, *devices):
        self.server = makeTestServer(clock=reactor, disable_ticketing=True)
        for device in devices:
            self.server.addInterface(device)
        self.port = reactor.listenTCP(0, self.server.factory(), interface="127.0.0.1")
        self.connections = []
        testcase.addCleanup(self.stop)

    @defer.inlineCallbacks
    def connect(self, channelType, connectionId=0, read=True):
        proto = RawChannel(channelType, connectionId, read)
        factory = ClientFactory.forProtocol(lambda: proto)
        self.connections.append(reactor.connectTCP("127.0.0.1", self.port.getHost().port,
                                                   factory))
        result = yield proto.linked
        if result != LinkErr.OK:
            raise AssertionError("link refused: %d" % (result,))
        return proto

    @defer.inlineCallbacks
    def client(self):
        """
        Link a main channel; return it and the session id.
        """
        main = yield self.connect(ChannelType.MAIN)
        init = yield main.waitFor("INIT")
        return main, init.session_id

    def stop(self):
        for connector in self.connections:
            connector.disconnect()
        for session in list(self.server.sessions.values()):
            session.end()
        return self.port.stopListening()


class CountingDemo:
    """
    The demo screen, with a count of what its keyboard and tablet got.
    """

    def __init__(self):
        self.demo = DemoSource(clock=task.Clock(), scheduler=reactor)
        self.scancodes = 0
        self.positions = 0
        push, position = self.demo.keyboard.push_scan_freg, self.demo.tablet.position

        def countedPush(byte):
            self.scancodes += 1
            push(byte)

        def countedPosition(x, y, buttons):
            self.positions += 1
            position(x, y, buttons)
        self.demo.keyboard.push_scan_freg = countedPush
        self.demo.tablet.position = countedPosition


class ReactorTurns:
    """
    Numbers the real reactor's turns: one turn is its timed calls and then
    one poll of the sockets (C{doIteration}); L{now} is the current turn's
    number.
    """

    def __init__(self, testcase):
        self.now = 0
        poll = reactor.doIteration

        def counted(timeout):
            try:
                poll(timeout)
            finally:
                self.now += 1
        testcase.patch(reactor, "doIteration", counted)


class FloodTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def flooder(self, loopback):
        main, session = yield loopback.client()
        inputs = yield loopback.connect(ChannelType.INPUTS, session)
        yield inputs.waitFor("INIT")
        return main, inputs

    @defer.inlineCallbacks
    def servedMeanwhile(self, loopback):
        """
        Link a second client and wait until it has its first picture.
        """
        main, session = yield loopback.client()
        main.send(MAIN_CLIENT["ATTACH_CHANNELS"])
        yield main.waitFor("CHANNELS_LIST")
        display = yield loopback.connect(ChannelType.DISPLAY, session)
        initDisplayChannel(RawSender(display))
        yield display.waitFor("DRAW_COPY")

    @defer.inlineCallbacks
    def test_keyScancodeFlood(self):
        """
        While one client's KEY_SCANCODE messages are worked through (the
        demo draws each key), another client links and gets its picture.
        """
        counting = CountingDemo()
        loopback = LoopbackServer(self, *counting.demo.devices())
        _, inputs = yield self.flooder(loopback)
        codes = bytes([0x1E, 0x9E]) * 1024            # 'a' 1024 times, 2048 bytes
        messages = 40
        for _ in range(messages):
            inputs.send(INPUTS_CLIENT["KEY_SCANCODE"], codes=codes)
        yield self.servedMeanwhile(loopback)
        self.assertGreater(counting.scancodes, 0)
        self.assertLess(counting.scancodes, messages * len(codes))

    @defer.inlineCallbacks
    def test_oneKeyMessagesFlood(self):
        """
        A flood of one-scancode KEY_SCANCODE messages, as a client sends a
        held key: no reactor turn gives the keyboard more than its share of
        scancodes, the demo tells its observers of the keys at most once per
        turn, and another client links and gets its picture while the flood
        is still being worked through.
        """
        counting = CountingDemo()
        loopback = LoopbackServer(self, *counting.demo.devices())
        observer = RecordingObserver()
        counting.demo.addObserver(observer)
        _, inputs = yield self.flooder(loopback)
        turns = ReactorTurns(self)
        perTurn = {}
        push = counting.demo.keyboard.push_scan_freg

        def recordedPush(byte):
            perTurn[turns.now] = perTurn.get(turns.now, 0) + 1
            push(byte)
        counting.demo.keyboard.push_scan_freg = recordedPush
        reports = []
        damaged = observer.damaged
        observer.damaged = lambda rects: (reports.append(turns.now), damaged(rects))
        message = INPUTS_CLIENT["KEY_SCANCODE"]
        messages = 20000
        flood = b"".join(MINI_HEADER.pack(message.number, 1) + message.pack(codes=bytes([c]))
                         for c in [0x1E, 0x9E] * (messages // 2))
        inputs.transport.write(flood)
        yield self.servedMeanwhile(loopback)
        self.assertGreater(counting.scancodes, 0)
        self.assertLess(counting.scancodes, messages)
        self.assertLessEqual(max(perTurn.values()), MAX_SCANCODES_PER_TURN)
        self.assertTrue(reports)
        self.assertEqual(len(reports), len(set(reports)))

    @defer.inlineCallbacks
    def test_mousePositionFlood(self):
        """
        While one client's MOUSE_POSITION flood is worked through, another
        client links and gets its picture; the tablet is given one position
        per turn, not one per message.
        """
        counting = CountingDemo()
        loopback = LoopbackServer(self, *counting.demo.devices())
        main, inputs = yield self.flooder(loopback)
        self.assertEqual(loopback.server.mouseMode, MouseMode.CLIENT)    # the demo's tablet
        messages = 100000
        message = INPUTS_CLIENT["MOUSE_POSITION"]
        body = b"".join(MINI_HEADER.pack(message.number, 11)
                        + message.pack(x=i % 1000, y=i % 700, buttons_state=1, display_id=0)
                        for i in range(messages))
        inputs.transport.write(body)
        yield self.servedMeanwhile(loopback)
        channel = [c for s in loopback.server.sessions.values() for c in s.channels.values()
                   if c.channelType == ChannelType.INPUTS][0]
        self.assertLess(channel._motions, messages)
        self.assertLess(counting.positions, channel._motions)


class RawSender:
    """
    Lets the L{spicesrv.testing} helpers send on a L{RawChannel}.
    """

    def __init__(self, channel):
        self.channel = channel

    def send(self, message, **fields):
        self.channel.send(message, **fields)


class CursorBacklogTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def test_cursorChannelsThatNeverRead(self):
        """
        20 clients whose cursor channels never read while the shape changes
        6,000 times: each channel sends at most what the ACK window allows
        (the latest shape waits), so what the server holds for them in its
        transports stays bounded.
        """
        source = FakeDisplaySource()
        loopback = LoopbackServer(self, source)
        channels = []
        for _ in range(20):
            _, session = yield loopback.client()
            yield loopback.connect(ChannelType.CURSOR, session, read=False)
            channels.append(loopback.server.sessions[session].channels[
                (ChannelType.CURSOR, 0)])
        shape = 32 * 32 * 4
        for i in range(6000):
            source.setCursor(Cursor(32, 32, 0, 0, bytes([i % 256]) * shape))
            if i % 100 == 99:
                yield task.deferLater(reactor, 0, lambda: None)
        # The window's messages, and a latency probe (two PINGs) on top.
        most = ACK_WINDOW_FACTOR * channels[0].ackWindow + 1 + 2
        for channel in channels:
            self.assertTrue(channel.connected)
            self.assertLessEqual(channel.unacked, most)
            transport = channel.transport
            queued = (len(transport.dataBuffer) - transport.offset
                      + transport._tempDataLen)
            self.assertLessEqual(queued, (most + 2) * (shape + 64))
            self.assertTrue(channel._shapeChanged)        # the latest shape waits
