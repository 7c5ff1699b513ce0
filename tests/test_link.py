"""
Tests for the link stage: each error is sent as the reference server sends
it, the connection is closed, and other clients keep working.
"""

import struct

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from spicesrv import keys
from spicesrv.link import SECURITY_SSL, error_reply
from spicesrv.testing import (
    LogCapture, TestClientChannel, linkMessage, makeTestServer, parseLinkReply, testKey, ticketBytes)
from spicesrv.wire.constants import ChannelType, CommonCap, LinkErr, MainCap
from spicesrv.wire.messages import LinkHeader, LinkMess


class Connection:
    """
    A raw connection to the server's link protocol.
    """

    def __init__(self, server, peer=None):
        self.protocol = server.factory().buildProtocol(None)
        self.transport = StringTransport(peerAddress=peer)
        self.protocol.makeConnection(self.transport)

    def send(self, data):
        self.protocol.dataReceived(data)

    def take(self):
        data = self.transport.value()
        self.transport.clear()
        return data

    @property
    def closed(self):
        return self.transport.disconnecting


class LinkErrorTests(unittest.TestCase):
    def setUp(self):
        self.server = makeTestServer(password="secret")
        self.log = LogCapture(self)

    def assertRefused(self, conn, error):
        reply = conn.take()
        self.assertEqual(reply, error_reply(error))
        self.assertTrue(conn.closed)

    def assertOneLogLine(self, *words):
        lines = [t for t in self.log.texts() if "refused" in t or "closed" in t
                 or "closing" in t]
        self.assertEqual(len(lines), 1, lines)
        for word in words:
            self.assertIn(word, lines[0])

    def test_badMagic(self):
        # (An HTTP request is no longer a bad magic: it goes to the web front.)
        conn = Connection(self.server)
        conn.send(b"SSH-2.0-OpenSSH_9.2\r\n")
        self.assertRefused(conn, LinkErr.INVALID_MAGIC)
        self.assertOneLogLine("INVALID_MAGIC")

    def test_versionMismatch(self):
        conn = Connection(self.server)
        conn.send(linkMessage(ChannelType.MAIN, major=3))
        self.assertRefused(conn, LinkErr.VERSION_MISMATCH)

    def test_majorZeroJustCloses(self):
        conn = Connection(self.server)
        conn.send(linkMessage(ChannelType.MAIN, major=0))
        self.assertEqual(conn.take(), b"")
        self.assertTrue(conn.closed)

    def test_sizeTooSmall(self):
        conn = Connection(self.server)
        conn.send(LinkHeader.pack(magic=b"REDQ", major_version=2, minor_version=2, size=17))
        self.assertRefused(conn, LinkErr.INVALID_DATA)

    def test_sizeTooLarge(self):
        conn = Connection(self.server)
        conn.send(LinkHeader.pack(magic=b"REDQ", major_version=2, minor_version=2,
                                  size=4097))
        self.assertRefused(conn, LinkErr.INVALID_DATA)

    def test_tooManyCapWords(self):
        conn = Connection(self.server)
        mess = LinkMess.pack(connection_id=0, channel_type=1, channel_id=0,
                             num_common_caps=1025, num_channel_caps=0, caps_offset=18)
        conn.send(LinkHeader.pack(magic=b"REDQ", major_version=2, minor_version=2,
                                  size=len(mess)) + mess)
        self.assertRefused(conn, LinkErr.INVALID_DATA)

    def test_badCapsOffset(self):
        conn = Connection(self.server)
        mess = LinkMess.pack(connection_id=0, channel_type=1, channel_id=0,
                             num_common_caps=1, num_channel_caps=1, caps_offset=20)
        body = mess + b"\0" * 8
        conn.send(LinkHeader.pack(magic=b"REDQ", major_version=2, minor_version=2,
                                  size=len(body)) + body)
        self.assertRefused(conn, LinkErr.INVALID_DATA)
        self.assertOneLogLine("capability")

    def test_capsOffsetInsideHeader(self):
        conn = Connection(self.server)
        mess = LinkMess.pack(connection_id=0, channel_type=1, channel_id=0,
                             num_common_caps=1, num_channel_caps=0, caps_offset=10)
        body = mess + b"\0" * 4
        conn.send(LinkHeader.pack(magic=b"REDQ", major_version=2, minor_version=2,
                                  size=len(body)) + body)
        self.assertRefused(conn, LinkErr.INVALID_DATA)

    def test_unknownChannel(self):
        conn = Connection(self.server)
        conn.send(linkMessage(ChannelType.DISPLAY, channel_id=5, connection_id=1))
        self.assertRefused(conn, LinkErr.CHANNEL_NOT_AVAILABLE)

    def test_needSecured(self):
        self.server.setChannelSecurity("main", SECURITY_SSL)
        conn = Connection(self.server)
        conn.send(linkMessage(ChannelType.MAIN))
        self.assertRefused(conn, LinkErr.NEED_SECURED)

    def test_unknownMechanism(self):
        conn = Connection(self.server)
        conn.send(linkMessage(ChannelType.MAIN))
        parseLinkReply(conn.take())
        conn.send(struct.pack("<I", 2))
        self.assertRefused(conn, LinkErr.INVALID_DATA)

    def test_wrongPassword(self):
        client = TestClientChannel(self.server, ChannelType.MAIN, password="wrong")
        self.assertEqual(client.result, LinkErr.PERMISSION_DENIED)
        self.assertTrue(client.transport.disconnecting)
        self.assertOneLogLine("wrong password")
        self.assertNotIn("secret", " ".join(self.log.texts()))
        self.assertNotIn("wrong\0", " ".join(self.log.texts()))

    def test_garbageTicket(self):
        conn = Connection(self.server)
        conn.send(linkMessage(ChannelType.MAIN))
        parseLinkReply(conn.take())
        conn.send(struct.pack("<I", 1) + b"\x01" * 128)
        self.assertEqual(conn.take(), struct.pack("<I", LinkErr.PERMISSION_DENIED))
        self.assertTrue(conn.closed)

    def test_noPasswordSet(self):
        server = makeTestServer()
        client = TestClientChannel(server, ChannelType.MAIN, password="")
        self.assertEqual(client.result, LinkErr.PERMISSION_DENIED)

    def test_expiredPassword(self):
        clock = Clock()
        server = makeTestServer(clock=clock, password="secret")
        server.ticket.expire_in(10)
        self.assertEqual(TestClientChannel(server, ChannelType.MAIN, password="secret").result,
                         LinkErr.OK)
        clock.advance(10)
        self.assertEqual(TestClientChannel(server, ChannelType.MAIN, password="secret").result,
                         LinkErr.PERMISSION_DENIED)

    def test_disabledTicketingAcceptsAnything(self):
        server = makeTestServer(disable_ticketing=True)
        self.assertEqual(TestClientChannel(server, ChannelType.MAIN, password="x").result,
                         LinkErr.OK)
        self.assertEqual(TestClientChannel(server, ChannelType.MAIN, password="").result,
                         LinkErr.OK)

    def test_badConnectionId(self):
        client = TestClientChannel(self.server, ChannelType.INPUTS, connection_id=1234,
                                   password="secret")
        self.assertEqual(client.result, LinkErr.BAD_CONNECTION_ID)
        self.assertTrue(client.transport.disconnecting)

    def test_errorsLeaveOtherSessionsAlone(self):
        """
        A bad link in the middle of a session's life changes nothing for it.
        """
        main = TestClientChannel(self.server, ChannelType.MAIN, password="secret")
        session_id = main.next("INIT").session_id
        conn = Connection(self.server)
        conn.send(b"junkjunkjunkjunk")
        self.assertTrue(conn.closed)
        inputs = TestClientChannel(self.server, ChannelType.INPUTS, connection_id=session_id,
                                   password="secret")
        self.assertEqual(inputs.result, LinkErr.OK)
        self.assertFalse(main.transport.disconnecting)
        self.assertIn(session_id, self.server.sessions)

    def test_linkTimeout(self):
        conn = Connection(self.server)
        conn.send(b"RE")
        self.server.clock.advance(31)
        # The deadline runs on the server's clock, not the global reactor.
        self.assertTrue(conn.closed)


class LinkDeadlineTests(unittest.TestCase):
    """
    The whole handshake has one deadline that bytes do not restart.
    """

    def setUp(self):
        self.server = makeTestServer(password="secret")
        self.clock = self.server.clock
        self.log = LogCapture(self)

    def test_slowDripClosedAtDeadline(self):
        """
        A client sending one byte every 25 seconds is closed when the
        deadline from its first moment passes, with one log line.
        """
        conn = Connection(self.server)
        message = linkMessage(ChannelType.MAIN)
        for i in range(1, 3):
            self.clock.advance(self.server.limits.linkTimeout * 25 / 30)
            if conn.closed:
                break
            conn.send(message[i:i + 1])
        self.assertTrue(conn.closed)
        self.assertEqual(self.clock.seconds(), 2 * self.server.limits.linkTimeout * 25 / 30)
        lines = [t for t in self.log.texts() if "did not finish the link" in t]
        self.assertEqual(len(lines), 1, self.log.texts())
        self.assertIn("within 30 seconds", lines[0])

    def test_deadlineIsExact(self):
        self.server.limits.linkTimeout = 7
        conn = Connection(self.server)
        conn.send(b"R")
        self.clock.advance(6.9)
        conn.send(b"E")
        self.assertFalse(conn.closed)
        self.clock.advance(0.1)
        self.assertTrue(conn.closed)

    def test_waitingForTheServersKeyDoesNotCount(self):
        """
        While the server has no RSA key ready (a burst of links queues for
        them), the deadline stands still: the client is not closed for the
        server's own slowness, and gets the rest of its time once the link
        reply is sent.
        """
        from twisted.internet import defer
        pending = []

        class SlowKeys:
            def take(self):
                pending.append(defer.Deferred())
                return pending[-1]

        self.server.keys = SlowKeys()
        self.server.limits.linkTimeout = 10
        conn = Connection(self.server)
        self.clock.advance(4)
        conn.send(linkMessage(ChannelType.MAIN))
        self.assertEqual(len(pending), 1)
        self.clock.advance(100)                 # the key takes its time
        self.assertFalse(conn.closed)
        pending[0].callback(testKey())
        self.assertTrue(conn.take())            # the link reply
        self.clock.advance(5.9)                 # 4 + 5.9 of the client's 10 s
        self.assertFalse(conn.closed)
        self.clock.advance(0.1)
        self.assertTrue(conn.closed)
        self.assertTrue(any("within 10 seconds" in t for t in self.log.texts()))

    def test_linkedConnectionHasNoDeadline(self):
        client = TestClientChannel(self.server, ChannelType.MAIN, password="secret")
        self.assertEqual(client.result, LinkErr.OK)
        self.clock.advance(10 * self.server.limits.linkTimeout)
        self.assertFalse(client.transport.disconnecting)

    def test_closeAbortsAfterGrace(self):
        """
        A refused link is closed politely, and aborted if its peer has not
        taken the error within the grace time.
        """
        conn = Connection(self.server)
        conn.send(b"SSH-2.0-OpenSSH_9.2\r\n")
        self.assertTrue(conn.closed)
        self.assertFalse(conn.transport.disconnected)
        self.clock.advance(self.server.limits.closeGrace)
        self.assertTrue(conn.transport.disconnected)
        self.assertTrue(any("aborting" in t for t in self.log.texts()))

    def test_closedInTimeIsNotAborted(self):
        conn = Connection(self.server)
        conn.send(b"SSH-2.0-OpenSSH_9.2\r\n")
        conn.protocol.connectionLost(None)
        self.clock.advance(self.server.limits.closeGrace)
        self.assertFalse(conn.transport.disconnected)
        self.assertEqual(self.clock.getDelayedCalls(), [])


def ipv4(host, port=40000):
    from twisted.internet.address import IPv4Address
    return IPv4Address("TCP", host, port)


class ConnectionCapTests(unittest.TestCase):
    """
    Connections are capped per peer address and in total; the one over the
    limit is closed with a log line and the others keep working.
    """

    def setUp(self):
        self.server = makeTestServer(password="secret")
        self.log = LogCapture(self)

    def refusals(self):
        return [t for t in self.log.texts() if "connection from" in t and "refused" in t]

    def test_perAddress(self):
        self.server.limits.maxConnectionsPerAddress = 2
        main = TestClientChannel(self.server, ChannelType.MAIN, password="secret")
        session_id = main.next("INIT").session_id
        idle = Connection(self.server)
        over = Connection(self.server)
        self.assertTrue(over.closed)
        self.assertEqual(over.take(), b"")
        (line,) = self.refusals()
        self.assertIn("192.168.1.1", line)
        self.assertIn("--max-connections-per-address", line)
        # Another address is still welcome, and the existing ones work.
        other = Connection(self.server, peer=ipv4("10.0.0.9"))
        self.assertFalse(other.closed)
        self.assertFalse(main.transport.disconnecting)
        self.assertFalse(idle.closed)
        idle.send(linkMessage(ChannelType.MAIN))
        self.assertEqual(parseLinkReply(idle.take())[0].error, LinkErr.OK)
        # A connection that ends makes room for the next.
        idle.protocol.connectionLost(None)
        inputs = TestClientChannel(self.server, ChannelType.INPUTS, connection_id=session_id,
                                   password="secret")
        self.assertEqual(inputs.result, LinkErr.OK)
        self.assertIn(session_id, self.server.sessions)

    def test_total(self):
        self.server.limits.maxConnections = 3
        conns = [Connection(self.server, peer=ipv4("10.0.0.%d" % i)) for i in range(4)]
        self.assertEqual([c.closed for c in conns], [False, False, False, True])
        (line,) = self.refusals()
        self.assertIn("--max-connections", line)
        self.assertEqual(self.server.connections.total, 3)
        conns[0].protocol.connectionLost(None)
        self.assertEqual(self.server.connections.total, 2)
        self.assertFalse(Connection(self.server, peer=ipv4("10.0.0.8")).closed)

    def test_refusedIsNotCounted(self):
        self.server.limits.maxConnections = 1
        first = Connection(self.server)
        over = Connection(self.server)
        over.protocol.connectionLost(None)
        self.assertEqual(self.server.connections.total, 1)
        first.protocol.connectionLost(None)
        self.assertEqual(self.server.connections.total, 0)
        self.assertEqual(dict(self.server.connections.perAddress), {})

    def test_unixPeersShareOnlyTheTotal(self):
        from twisted.internet.address import UNIXAddress
        self.server.limits.maxConnectionsPerAddress = 1
        conns = [Connection(self.server, peer=UNIXAddress(None)) for _ in range(3)]
        self.assertFalse(any(c.closed for c in conns))

    def test_defaultsLeaveRoomForClients(self):
        """
        spice-gtk opens a main and up to a dozen other channels per session,
        and a migrating client opens a second set on the target.
        """
        self.assertGreaterEqual(self.server.limits.maxConnectionsPerAddress, 4 * 13)
        self.assertGreaterEqual(self.server.limits.maxConnections,
                                self.server.limits.maxConnectionsPerAddress)


class LinkSuccessTests(unittest.TestCase):
    def setUp(self):
        self.server = makeTestServer(password="secret")

    def test_replyLayout(self):
        conn = Connection(self.server)
        conn.send(linkMessage(ChannelType.MAIN, channel_caps={MainCap.NAME_AND_UUID}))
        data = conn.take()
        header = LinkHeader.unpack(data[:16])
        self.assertEqual((header.magic, header.major_version, header.minor_version),
                         (b"REDQ", 2, 2))
        reply, common, channel, rest = parseLinkReply(data)
        self.assertEqual(header.size, 178 + 4 * (reply.num_common_caps
                                                 + reply.num_channel_caps))
        self.assertEqual(reply.num_common_caps, 1)
        self.assertEqual(channel, self.server.channelClass(1, 0).capabilities(self.server))
        self.assertEqual(reply.error, 0)
        self.assertEqual(reply.caps_offset, 178)
        self.assertEqual(common, {CommonCap.PROTOCOL_AUTH_SELECTION, CommonCap.AUTH_SPICE,
                                  CommonCap.MINI_HEADER})
        self.assertEqual(reply.pub_key[:3], b"\x30\x81\x9f")
        self.assertEqual(reply.pub_key, keys.public_key_der(testKey()))
        self.assertEqual(rest, b"")

    def test_ticketWithoutAuthSelection(self):
        """
        A client without PROTOCOL_AUTH_SELECTION sends the ticket straight
        away, with no mechanism word.
        """
        conn = Connection(self.server)
        conn.send(linkMessage(ChannelType.MAIN, common_caps={CommonCap.MINI_HEADER}))
        reply, _, _, _ = parseLinkReply(conn.take())
        conn.send(keys.encrypt_ticket(reply.pub_key, "secret"))
        self.assertEqual(conn.take()[:4], struct.pack("<I", 0))

    def test_byteByByte(self):
        """
        The link survives arbitrary fragmentation.
        """
        conn = Connection(self.server)
        for b in linkMessage(ChannelType.MAIN):
            conn.send(bytes([b]))
        reply, _, _, _ = parseLinkReply(conn.take())
        for b in ticketBytes(reply, "secret"):
            conn.send(bytes([b]))
        self.assertEqual(conn.take()[:4], struct.pack("<I", 0))

    def test_fullHeaderClient(self):
        client = TestClientChannel(self.server, ChannelType.MAIN, password="secret",
                                   common_caps={CommonCap.PROTOCOL_AUTH_SELECTION,
                                                CommonCap.AUTH_SPICE})
        self.assertEqual(client.result, 0)
        self.assertEqual(client.names()[0], "INIT")
        self.assertFalse(client.channel.mini)

    def test_freshKeyPerLink(self):
        """
        Every link gets its own key from the pool, as the reference does.
        """
        made = []

        def generate():
            key = keys.generate_key()
            made.append(key)
            return key

        server = makeTestServer(password="secret",
                                keys=keys.KeyPool(size=1, generate=generate, inThread=False))
        server.keys.start()
        a = TestClientChannel(server, ChannelType.MAIN, password="secret")
        b = TestClientChannel(server, ChannelType.MAIN, password="secret")
        self.assertNotEqual(a.reply.pub_key, b.reply.pub_key)
        self.assertEqual((a.result, b.result), (0, 0))
