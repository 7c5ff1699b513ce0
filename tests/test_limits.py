"""
Tests for spicesrv.limits, and the limits at work over real loopback
sockets: the link deadline, TCP keepalive, the connection caps and the
abort of a close that a non-reading client would hold open forever.
"""

import socket

from twisted.internet import defer, endpoints, protocol, reactor, task
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import StringTransport
from twisted.logger import Logger, formatEvent, globalLogPublisher
from twisted.trial import unittest

from spicesrv.display.ratecontrol import queuedBytes
from spicesrv.limits import (
    ConnectionCounter, GracefulClose, Limits, LogLimiter, peerKey, setKeepalive, socketOf)
from spicesrv.testing import (
    linkMessage, makeTestServer, parseLinkReply, ticketBytes, waitUntil)
from spicesrv.wire.constants import ChannelType, LinkErr


class CapturedLog:
    def __init__(self, testcase):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        testcase.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def texts(self):
        return [formatEvent(e) for e in self.events]


class ConnectionCounterTests(unittest.TestCase):
    def test_peerKey(self):
        self.assertEqual(peerKey(IPv4Address("TCP", "10.1.2.3", 5)), "10.1.2.3")
        self.assertEqual(peerKey(IPv6Address("TCP", "::1", 5)), "::1")
        self.assertIsNone(peerKey(UNIXAddress(None)))
        self.assertIsNone(peerKey(None))

    def test_limitsAreReadAtEachAdmission(self):
        limits = Limits(maxConnections=1)
        counter = ConnectionCounter(lambda: limits)
        a = IPv4Address("TCP", "10.0.0.1", 1)
        self.assertIsNone(counter.admit(a))
        self.assertIn("--max-connections", counter.admit(a))
        limits.maxConnections = 2
        self.assertIsNone(counter.admit(a))
        counter.release(a)
        counter.release(a)
        self.assertEqual((counter.total, dict(counter.perAddress)), (0, {}))


class LogLimiterTests(unittest.TestCase):
    def setUp(self):
        self.clock = task.Clock()
        self.log = CapturedLog(self)
        self.limits = Limits(logBurst=3, logInterval=10)
        self.limiter = LogLimiter(self.clock, self.limits, Logger(), "conn {conn}: ",
                                  conn="c1")

    def test_burstThenSummaryAtWindowEnd(self):
        for i in range(1000):
            self.limiter.info("a", "line {i}", i=i)
        self.assertEqual(self.log.texts(), ["line 0", "line 1", "line 2"])
        self.clock.advance(10)
        self.assertEqual(self.log.texts()[3:], ["conn c1: 997 more log lines suppressed (a: 997)"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_flushAtClose(self):
        for i in range(5):
            self.limiter.info("a" if i % 2 else "b", "x")
        self.limiter.flush()
        self.assertEqual(self.log.texts()[-1], "conn c1: 2 more log lines suppressed (a: 1, b: 1)")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.limiter.flush()
        self.assertEqual(len(self.log.texts()), 4)

    def test_warnSharesTheBudget(self):
        """
        Warnings keep their level and count against the same lines as info.
        """
        from twisted.logger import LogLevel
        self.limiter.warn("w", "warning")
        for i in range(5):
            self.limiter.info("a", "x")
        self.assertEqual(self.log.texts(), ["warning", "x", "x"])
        self.assertEqual(self.log.events[0]["log_level"], LogLevel.warn)
        self.limiter.warn("w", "warning")
        self.clock.advance(10)
        self.assertEqual(self.log.texts()[-1],
                         "conn c1: 4 more log lines suppressed (a: 3, w: 1)")

    def test_nothingSuppressedNoSummary(self):
        self.limiter.info("a", "x")
        self.clock.advance(100)
        self.limiter.flush()
        self.assertEqual(self.log.texts(), ["x"])


class GracefulCloseTests(unittest.TestCase):
    def test_abortAfterGrace(self):
        clock = task.Clock()
        transport = StringTransport()
        aborting = []
        closer = GracefulClose(clock)
        closer.close(transport, 2, lambda: aborting.append(True))
        closer.close(transport, 2)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(2)
        self.assertTrue(transport.disconnected)
        self.assertEqual(aborting, [True])


class KeepaliveTests(unittest.TestCase):
    def test_notTcp(self):
        self.assertFalse(setKeepalive(StringTransport(), 600))


class Handle:
    """A transport with a handle: C{handle}."""

    def __init__(self, handle, **attributes):
        self.handle = handle
        vars(self).update(attributes)

    def getHandle(self):
        return self.handle


class Layer:
    """A layer over C{transport} (a WebSocket's: no handle of its own)."""

    def __init__(self, transport, **attributes):
        self.transport = transport
        vars(self).update(attributes)


class LayersTests(unittest.TestCase):
    """
    The socket under a connection's layers, and what waits in them: over
    TLS (whose handle is OpenSSL's connection) and under a WebSocket (no
    handle at all), the TCP socket and its send queue are still found.
    """

    def setUp(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        self.sender = socket.create_connection(listener.getsockname())
        self.receiver, _ = listener.accept()
        listener.close()
        for s in (self.sender, self.receiver):
            self.addCleanup(s.close)

    def test_throughLayers(self):
        tcp = Handle(self.sender)
        tls = Handle(object(), transport=tcp)
        self.assertIs(socketOf(tcp), self.sender)
        self.assertIs(socketOf(tls), self.sender)
        self.assertIs(socketOf(Layer(tls)), self.sender)
        self.assertIsNone(socketOf(Layer(Handle(object()))))

    def test_unixOnlyWhenAsked(self):
        left, right = socket.socketpair()
        self.addCleanup(left.close)
        self.addCleanup(right.close)
        self.assertIsNone(socketOf(Handle(left)))
        self.assertIs(socketOf(Layer(Handle(left)), tcpOnly=False), left)

    def test_queuedThroughLayers(self):
        """
        Under a WebSocket over TLS: the TLS layer's buffered bytes, Twisted's
        buffer and the kernel's queue for a peer that does not read.
        """
        self.receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sender.setblocking(False)
        sent = 0
        try:
            while True:
                sent += self.sender.send(b"x" * 65536)
        except BlockingIOError:
            pass
        tcp = Handle(self.sender, dataBuffer=b"y" * 100, _tempDataLen=20)
        tls = Handle(object(), transport=tcp, bufferedBytes=3)
        kernel = queuedBytes(Handle(self.sender))
        self.assertGreater(kernel, 0)
        self.assertLessEqual(kernel, sent)
        self.assertEqual(queuedBytes(Layer(tls)), kernel + 100 + 20 + 3)


class RawClient(protocol.Protocol):
    """
    A client on a real socket that links one channel with the testing
    helpers, or just connects; it can stop reading.
    """

    def __init__(self, channel_type=None, password="secret", connection_id=0):
        self.channel_type = channel_type
        self.password = password
        self.connection_id = connection_id
        self.received = b""
        self.linked = defer.Deferred()
        self.lost = defer.Deferred()
        self._replied = False

    def connectionMade(self):
        if self.channel_type is not None:
            self.transport.write(linkMessage(self.channel_type,
                                             connection_id=self.connection_id))

    def dataReceived(self, data):
        self.received += data
        if self.channel_type is None or self.linked.called:
            return
        if not self._replied:
            try:
                reply, _, _, rest = parseLinkReply(self.received)
            except Exception:
                return  # not all of it yet
            self._replied = True
            self.received = rest
            self.transport.write(ticketBytes(reply, self.password))
        if self._replied and len(self.received) >= 4:
            self.linked.callback(int.from_bytes(self.received[:4], "little"))

    def connectionLost(self, reason):
        self.lost.callback(None)


class RealSocketTests(unittest.TestCase):
    """
    The limits over loopback TCP, with the real reactor.  The limits are
    set short here so the tests finish quickly; the unit tests above and in
    test_link and test_channels check the logic with a Clock.
    """

    timeout = 60

    def setUp(self):
        self.server = makeTestServer(clock=reactor, password="secret")
        self.log = CapturedLog(self)
        self.serverSide = []
        factory = self.server.factory()
        build = factory.buildProtocol

        def buildProtocol(addr):
            p = build(addr)
            self.serverSide.append(p)
            return p

        factory.buildProtocol = buildProtocol
        return self._listen(factory)

    @defer.inlineCallbacks
    def _listen(self, factory):
        self.port = yield endpoints.serverFromString(
            reactor, "tcp:0:interface=127.0.0.1").listen(factory)
        self.addCleanup(self.port.stopListening)
        self.addCleanup(self._endSessions)

    def _endSessions(self):
        for session in list(self.server.sessions.values()):
            session.end()
        for p in self.serverSide:
            if not p._closed:
                p.transport.abortConnection()

    @defer.inlineCallbacks
    def connect(self, client):
        endpoint = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", self.port.getHost().port)
        yield endpoints.connectProtocol(endpoint, client)
        self.addCleanup(lambda: client.transport.abortConnection()
                        if not client.lost.called else None)
        return client

    def waitUntil(self, condition, timeout=20):
        return waitUntil(reactor, condition, timeout)

    @defer.inlineCallbacks
    def test_keepaliveOnAcceptedLinks(self):
        client = yield self.connect(RawClient(ChannelType.MAIN))
        result = yield client.linked
        self.assertEqual(result, LinkErr.OK)
        (serverSide,) = self.serverSide
        sock = serverSide.transport.getHandle()
        self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                             self.server.limits.keepaliveIdle)

    @defer.inlineCallbacks
    def test_slowDripClosedAtDeadline(self):
        """
        A client that sends a byte now and then, never finishing the link,
        is closed at the deadline counted from its connection.
        """
        self.server.limits.linkTimeout = 0.5
        client = yield self.connect(RawClient())
        started = reactor.seconds()
        drip = task.LoopingCall(lambda: client.transport.write(b"R"))
        drip.start(0.1)
        self.addCleanup(lambda: drip.running and drip.stop())
        yield client.lost
        drip.stop()
        self.assertGreaterEqual(reactor.seconds() - started, 0.45)
        self.assertTrue(any("did not finish the link within 0.5 seconds" in t
                            for t in self.log.texts()), self.log.texts())
        self.assertEqual(self.server.connections.total, 0)

    @defer.inlineCallbacks
    def test_capsCloseTheExtraConnectionOnly(self):
        self.server.limits.maxConnectionsPerAddress = 2
        main = yield self.connect(RawClient(ChannelType.MAIN))
        self.assertEqual((yield main.linked), LinkErr.OK)
        idle = yield self.connect(RawClient())
        over = yield self.connect(RawClient())
        yield over.lost
        self.assertTrue(any("connection from 127.0.0.1" in t and "refused" in t
                            and "--max-connections-per-address" in t
                            for t in self.log.texts()), self.log.texts())
        self.assertFalse(main.lost.called)
        self.assertFalse(idle.lost.called)
        (session_id,) = self.server.sessions
        idle.transport.abortConnection()
        yield idle.lost
        yield self.waitUntil(lambda: self.server.connections.total == 1)
        inputs = yield self.connect(RawClient(ChannelType.INPUTS, connection_id=session_id))
        self.assertEqual((yield inputs.linked), LinkErr.OK)

    @defer.inlineCallbacks
    def test_closeOfNonReadingClientAborts(self):
        """
        A client that stopped reading cannot hold a closed channel open:
        after the grace time the server-side connection is gone.
        """
        self.server.limits.closeGrace = 0.5
        client = RawClient(ChannelType.MAIN)
        yield self.connect(client)
        self.assertEqual((yield client.linked), LinkErr.OK)
        client.transport.pauseProducing()
        client.transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        (session,) = self.server.sessions.values()
        channel = session.main
        # More than the kernel buffers of both ends hold: the rest waits in
        # the server's transport, and a polite close would wait forever.
        channel.transport.write(b"\0" * (64 << 20))
        yield task.deferLater(reactor, 0.2, lambda: None)
        self.assertTrue(channel.connected)
        closed = reactor.seconds()
        channel.close("test of a non-reading client")
        yield self.waitUntil(lambda: not channel.connected, timeout=15)
        self.assertGreaterEqual(reactor.seconds() - closed, 0.45)
        self.assertTrue(any("did not take the last bytes" in t for t in self.log.texts()))
        self.assertEqual(self.server.connections.total, 0)
