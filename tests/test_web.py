"""
Tests for browsers on SPICE's ports (L{spicesrv.web}): HTTP is told from
native SPICE by the first four bytes, the browser client's files are served
and nothing else, a WebSocket carries a SPICE link under the same rules as a
native one, and bad input gets a log line and a closed connection.
"""

import os
import struct

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import alsoProvides

from spicesrv.link import SECURITY_SSL, LinkProtocol, looks_like_http
from spicesrv.testing import (
    LogCapture, linkMessage, makeTestServer, parseLinkReply, sessionChannel, ticketBytes)
from spicesrv.web import WebFrontend
from spicesrv.web.client import (
    CLIENT_CACHE, LANDING_CACHE, ClientNotFound, WebClient, locate_client)
from spicesrv.web.websocket import MAX_CLIENT_MESSAGE, WebSocketTransport, origin_allowed
from spicesrv.wire.constants import ChannelType, LinkErr

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
HOST = "127.0.0.1:5900"


def upgradeRequest(host=HOST, origin="http://" + HOST, protocols="binary", path=b"/",
                   extra=b""):
    lines = [b"GET " + path + b" HTTP/1.1", b"Host: " + host.encode(),
             b"Upgrade: websocket", b"Connection: Upgrade",
             b"Sec-WebSocket-Key: " + KEY, b"Sec-WebSocket-Version: 13"]
    if protocols is not None:
        lines.append(b"Sec-WebSocket-Protocol: " + protocols.encode())
    if origin is not None:
        lines.append(b"Origin: " + origin.encode())
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n"


def clientFrame(payload, opcode=2, fin=True, mask=True, length=None):
    """
    A WebSocket frame as a browser sends it: masked.
    """
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | opcode
    bit = 0x80 if mask else 0
    if n < 126:
        header = struct.pack("!BB", first, bit | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, bit | 127, n)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def serverFrames(data):
    """
    The server's frames in C{data}: C{(fin, opcode, payload)}; the server
    never masks.
    """
    frames = []
    while data:
        first, second = data[0], data[1]
        assert not second & 0x80, "a masked server frame"
        n, at = second & 0x7F, 2
        if n == 126:
            (n,), at = struct.unpack("!H", data[2:4]), 4
        elif n == 127:
            (n,), at = struct.unpack("!Q", data[2:10]), 10
        frames.append((bool(first & 0x80), first & 0x0F, data[at:at + n]))
        data = data[at + n:]
    return frames


class TCPTransport(StringTransport):
    """
    A string transport that, as TCP's, lets a consumer unregister a
    producer it does not have (autobahn does, when it drops a connection).
    """

    def unregisterProducer(self):
        self.producer = None


class Connection:
    """
    A connection to a SPICE port, from 127.0.0.1, over a string transport.
    """

    def __init__(self, server):
        self.protocol = server.factory().buildProtocol(None)
        self.transport = TCPTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
                                      hostAddress=IPv4Address("TCP", "127.0.0.1", 5900))
        self.protocol.makeConnection(self.transport)

    def send(self, data):
        self.protocol.dataReceived(data)

    def lose(self):
        self.protocol.connectionLost(Failure(ConnectionDone()))

    def take(self):
        data = self.transport.value()
        self.transport.clear()
        return data

    @property
    def closed(self):
        return self.transport.disconnecting or self.transport.disconnected

    def response(self):
        """
        The status, headers (lower-case names) and body of one HTTP answer.
        """
        data = self.take()
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = dict((k.strip().lower(), v.strip())
                       for k, v in (line.split(b":", 1) for line in lines[1:]))
        return status, headers, body


class WebSocketConnection(Connection):
    """
    A connection that has become a WebSocket; C{sendSpice} and C{takeSpice}
    carry SPICE bytes in frames.
    """

    def __init__(self, server, **kwargs):
        Connection.__init__(self, server)
        self.send(upgradeRequest(**kwargs))
        self.handshake = self.take()

    def sendSpice(self, data):
        self.send(clientFrame(data))

    def frames(self):
        return serverFrames(self.take())

    def takeSpice(self):
        return b"".join(payload for fin, opcode, payload in self.frames() if opcode == 2)


class DetectionTests(unittest.TestCase):
    def test_methods(self):
        for first in (b"GET ", b"HEAD", b"POST", b"PUT ", b"OPTI"):
            self.assertTrue(looks_like_http(first), first)
        for first in (b"REDQ", b"\x16\x03\x01\x00", b"GET/", b"get ", b"SSH-"):
            self.assertFalse(looks_like_http(first), first)

    def test_nativeLinkNeedsNoMoreThanItsHeader(self):
        """
        A native link is decided on its first four bytes and answered as
        soon as its link message is complete: detection adds no wait.
        """
        server = makeTestServer(password="secret")
        conn = Connection(server)
        message = linkMessage(ChannelType.MAIN)
        for byte in message[:-1]:
            conn.send(bytes([byte]))
        self.assertIsNone(conn.protocol.web)
        self.assertEqual(conn.take(), b"")
        conn.send(message[-1:])
        reply, _, _, _ = parseLinkReply(conn.take())
        self.assertEqual(reply.error, LinkErr.OK)

    def test_httpGoesToTheWebFront(self):
        server = makeTestServer(password="secret")
        conn = Connection(server)
        conn.send(b"GET / HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n\r\n")
        self.assertIsNotNone(conn.protocol.web)
        status, headers, body = conn.response()
        self.assertEqual(status, 404)
        self.assertIn(b"--web-client", body)
        self.assertFalse(conn.closed)

    def test_httpInsideAWebSocketIsABadMagic(self):
        server = makeTestServer(password="secret")
        conn = WebSocketConnection(server)
        conn.sendSpice(b"GET / HTTP/1.1\r\n")
        data = conn.takeSpice()
        self.assertEqual(LinkProtocol.__module__, "spicesrv.link")
        self.assertEqual(data[16:20], struct.pack("<I", LinkErr.INVALID_MAGIC))


def fakeClient(root):
    """
    A spice-html5-like directory under C{root}, with things that must not
    be served.
    """
    client = os.path.join(root, "client")
    os.makedirs(os.path.join(client, "thirdparty"))
    for name, text in (("main.js", "export {};\n"), ("spiceconn.js", "// conn\n"),
                       ("spice.css", "body {}\n"), ("thirdparty/rsa.js", "// rsa\n"),
                       ("README", "not served\n"), (".hidden.js", "// hidden\n")):
        with open(os.path.join(client, name), "w") as f:
            f.write(text)
    with open(os.path.join(root, "secret.js"), "w") as f:
        f.write("// outside\n")
    os.symlink(os.path.join(root, "secret.js"), os.path.join(client, "escape.js"))
    return client


class ClientFilesTests(unittest.TestCase):
    def setUp(self):
        self.root = os.path.abspath(self.mktemp())
        self.dir = fakeClient(self.root)
        self.server = makeTestServer(password="secret")
        self.server.web = WebFrontend(WebClient(self.dir))

    def get(self, path, method=b"GET", headers=b""):
        conn = Connection(self.server)
        conn.send(method + b" " + path + b" HTTP/1.1\r\nHost: " + HOST.encode() + b"\r\n"
                  + headers + b"\r\n")
        return conn.response()

    def test_landingPage(self):
        status, headers, body = self.get(b"/")
        self.assertEqual(status, 200)
        self.assertEqual(headers[b"content-type"], b"text/html; charset=utf-8")
        self.assertEqual(headers[b"cache-control"], LANDING_CACHE.encode())
        self.assertIn(b"frame-ancestors 'none'", headers[b"content-security-policy"])
        self.assertEqual(headers[b"x-content-type-options"], b"nosniff")
        self.assertIn(b'src="spicesrv.js"', body)
        status, headers, body = self.get(b"/spicesrv.js")
        self.assertEqual(headers[b"content-type"], b"text/javascript; charset=utf-8")
        self.assertIn(b"./spice-html5/main.js", body)

    def test_clientFiles(self):
        status, headers, body = self.get(b"/spice-html5/main.js")
        self.assertEqual((status, body), (200, b"export {};\n"))
        self.assertEqual(headers[b"content-type"], b"text/javascript; charset=utf-8")
        self.assertEqual(headers[b"cache-control"], CLIENT_CACHE.encode())
        status, headers, body = self.get(b"/spice-html5/spice.css?v=1")
        self.assertEqual((status, headers[b"content-type"]), (200, b"text/css; charset=utf-8"))
        self.assertEqual(self.get(b"/spice-html5/thirdparty/rsa.js")[0], 200)

    def test_revalidation(self):
        status, headers, body = self.get(b"/spice-html5/main.js")
        etag = headers[b"etag"]
        status, headers, body = self.get(b"/spice-html5/main.js",
                                         headers=b"If-None-Match: " + etag + b"\r\n")
        self.assertEqual((status, body), (304, b""))

    def test_head(self):
        status, headers, body = self.get(b"/spice-html5/main.js", method=b"HEAD")
        self.assertEqual((status, body, headers[b"content-length"]), (200, b"", b"11"))

    def test_nothingElse(self):
        for path in (b"/spice-html5/", b"/spice-html5", b"/spice-html5/thirdparty/",
                     b"/spice-html5/README", b"/spice-html5/.hidden.js",
                     b"/spice-html5/escape.js", b"/spice-html5/../secret.js",
                     b"/spice-html5/%2e%2e/secret.js", b"/secret.js", b"/index.html",
                     b"/spice-html5//main.js", b"/../../etc/passwd"):
            self.assertEqual(self.get(path)[0], 404, path)

    def test_otherMethods(self):
        conn = Connection(self.server)
        conn.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
        status, headers, body = conn.response()
        self.assertEqual((status, headers[b"allow"]), (405, b"GET, HEAD"))
        self.assertTrue(conn.closed)

    def test_keepAlive(self):
        conn = Connection(self.server)
        request = b"GET /spice-html5/main.js HTTP/1.1\r\nHost: a\r\n\r\n"
        conn.send(request * 2)
        self.assertEqual(conn.take().count(b"HTTP/1.1 200 OK"), 2)
        conn.send(request)
        self.assertEqual(conn.take().count(b"HTTP/1.1 200 OK"), 1)
        self.assertFalse(conn.closed)

    def test_locate(self):
        self.assertEqual(locate_client(self.dir), os.path.realpath(self.dir))
        e = self.assertRaises(ClientNotFound, locate_client, self.root)
        self.assertIn("main.js", str(e))


class BadHTTPTests(unittest.TestCase):
    def setUp(self):
        self.server = makeTestServer(password="secret")
        self.log = LogCapture(self)

    def assertClosedWith(self, conn, status, words):
        got, headers, body = conn.response()
        self.assertEqual(got, status)
        self.assertTrue(conn.closed)
        lines = self.log.matching("web connection from 127.0.0.1")
        self.assertEqual(len(lines), 1, lines)
        self.assertIn(words, lines[0])

    def test_malformed(self):
        conn = Connection(self.server)
        conn.send(b"GET / HTTP/1.1\r\nthis is not a header\r\n\r\n")
        self.assertClosedWith(conn, 400, "malformed HTTP request")

    def test_badRequestLine(self):
        conn = Connection(self.server)
        conn.send(b"GET \x00\x01 nonsense\r\n\r\n")
        self.assertClosedWith(conn, 400, "malformed HTTP request")

    def test_oversizedHead(self):
        conn = Connection(self.server)
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n")
        for i in range(200):
            conn.send(b"X-Padding-%d: %s\r\n" % (i, b"x" * 60))
        self.assertClosedWith(conn, 431, "HTTP request head over 8192 bytes")

    def test_httpStageHasTheLinkDeadline(self):
        conn = Connection(self.server)
        conn.send(b"GET / HTTP/1.1\r\n")
        self.server.clock.advance(self.server.limits.linkTimeout)
        self.assertTrue(conn.closed)

    def test_keptAliveConnectionClosedQuietly(self):
        """
        A browser's page connection, idle after its answers, is closed at
        the deadline without a warning; one in the middle of a request
        gets the link's warning.
        """
        idle, partial = Connection(self.server), Connection(self.server)
        idle.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        partial.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HT")
        self.server.clock.advance(self.server.limits.linkTimeout)
        self.assertTrue(idle.closed and partial.closed)
        self.assertEqual(len(self.log.matching("did not finish the link")), 1)

    def test_countsAsOneConnection(self):
        conn = Connection(self.server)
        conn.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(self.server.connections.total, 1)
        conn.lose()
        self.assertEqual(self.server.connections.total, 0)


class WebSocketLinkTests(unittest.TestCase):
    def setUp(self):
        self.server = makeTestServer(password="secret")
        self.log = LogCapture(self)

    def link(self, conn, channel=ChannelType.MAIN, password="secret"):
        conn.sendSpice(linkMessage(channel))
        reply, _, _, _ = parseLinkReply(conn.takeSpice())
        if reply.error != LinkErr.OK:
            return reply.error
        conn.sendSpice(ticketBytes(reply, password))
        return struct.unpack("<I", conn.takeSpice()[:4])[0]

    def test_handshake(self):
        conn = WebSocketConnection(self.server)
        self.assertTrue(conn.handshake.startswith(b"HTTP/1.1 101 "))
        self.assertIn(b"Sec-WebSocket-Protocol: binary\r\n", conn.handshake)
        self.assertIn(b"Sec-WebSocket-Accept: " + ACCEPT, conn.handshake)

    def test_withoutSubprotocol(self):
        conn = WebSocketConnection(self.server, protocols=None)
        self.assertTrue(conn.handshake.startswith(b"HTTP/1.1 101 "))
        self.assertNotIn(b"Sec-WebSocket-Protocol", conn.handshake)

    def test_otherSubprotocolRefused(self):
        conn = WebSocketConnection(self.server, protocols="base64")
        self.assertTrue(conn.handshake.startswith(b"HTTP/1.1 400 "))
        self.assertTrue(conn.closed)
        self.assertTrue(self.log.matching("SPICE speaks only 'binary'"))

    def test_anyPath(self):
        conn = WebSocketConnection(self.server, path=b"/websockify")
        self.assertTrue(conn.handshake.startswith(b"HTTP/1.1 101 "))

    def test_link(self):
        """
        A SPICE link inside a WebSocket: the reply comes in binary frames,
        the ticket is checked, the main channel starts.
        """
        conn = WebSocketConnection(self.server)
        self.assertEqual(self.link(conn), LinkErr.OK)
        self.assertEqual(len(self.server.sessions), 1)
        self.assertEqual(self.server.connections.total, 1)
        main = sessionChannel(self.server, ChannelType.MAIN)
        self.assertFalse(main.info.secure)

    def test_eachMessageItsOwnFrame(self):
        conn = WebSocketConnection(self.server)
        self.link(conn)
        # The main channel's INIT and what follows it: one frame per
        # message, each a whole SPICE mini-header message.
        conn.sendSpice(struct.pack("<HI", 104, 0))  # ATTACH_CHANNELS
        frames = conn.frames()
        self.assertTrue(frames)
        for fin, opcode, payload in frames:
            self.assertEqual((fin, opcode), (True, 2))
            msgType, size = struct.unpack("<HI", payload[:6])
            self.assertEqual(len(payload), 6 + size)

    def test_wrongPassword(self):
        conn = WebSocketConnection(self.server)
        self.assertEqual(self.link(conn, password="wrong"), LinkErr.PERMISSION_DENIED)
        self.assertTrue(conn.closed)
        self.assertTrue(self.log.matching("wrong password"))

    def spiceHtml5Ticket(self, reply, password):
        """
        The ticket as spice-html5 0.3.0 sends it when its ciphertext starts
        with a zero byte: without that byte, zero-padded at the end.
        """
        from spicesrv import keys
        while True:
            ciphertext = keys.encrypt_ticket(reply.pub_key, password)
            if ciphertext[0] == 0:
                break
        stripped = ciphertext.lstrip(b"\0")
        return (struct.pack("<I", 1)
                + stripped + b"\0" * (len(ciphertext) - len(stripped)))

    def test_spiceHtml5LeadingZeroTicket(self):
        """
        spice-html5's ciphertext that lost its leading zero byte still
        authenticates over WebSocket (about one link in 256 would fail).
        """
        conn = WebSocketConnection(self.server)
        conn.sendSpice(linkMessage(ChannelType.MAIN))
        reply, _, _, _ = parseLinkReply(conn.takeSpice())
        conn.sendSpice(self.spiceHtml5Ticket(reply, "secret"))
        self.assertEqual(struct.unpack("<I", conn.takeSpice()[:4])[0], LinkErr.OK)

    def test_leadingZeroWrongPasswordStillRefused(self):
        conn = WebSocketConnection(self.server)
        conn.sendSpice(linkMessage(ChannelType.MAIN))
        reply, _, _, _ = parseLinkReply(conn.takeSpice())
        conn.sendSpice(self.spiceHtml5Ticket(reply, "wrong"))
        self.assertEqual(struct.unpack("<I", conn.takeSpice()[:4])[0],
                         LinkErr.PERMISSION_DENIED)

    def test_nativeLinksGetNoRetry(self):
        """
        Native links are checked as libspice-server checks them: a shifted
        ciphertext is refused.
        """
        conn = Connection(self.server)
        conn.send(linkMessage(ChannelType.MAIN))
        reply, _, _, _ = parseLinkReply(conn.take())
        conn.send(self.spiceHtml5Ticket(reply, "secret"))
        self.assertEqual(struct.unpack("<I", conn.take()[:4])[0], LinkErr.PERMISSION_DENIED)

    def test_plainWebSocketIsNotSecure(self):
        self.server.setChannelSecurity("main", SECURITY_SSL)
        conn = WebSocketConnection(self.server)
        self.assertEqual(self.link(conn), LinkErr.NEED_SECURED)

    def test_wssIsSecure(self):
        """
        On a TLS port the WebSocket's transport is a TLS transport, so the
        link inside is secure (the Chromium tests link every channel over
        wss with --tls-channel default).
        """
        conn = WebSocketConnection(self.server)
        alsoProvides(conn.transport, ISSLTransport)
        self.assertTrue(ISSLTransport.providedBy(WebSocketTransport(conn.protocol.web.ws)))

    def test_linkDeadlineFromTheConnectionsStart(self):
        conn = Connection(self.server)
        self.server.clock.advance(self.server.limits.linkTimeout - 1)
        conn.send(upgradeRequest())
        self.assertIn(b" 101 ", conn.take())
        self.server.clock.advance(1)
        self.assertTrue(conn.closed)
        self.assertTrue(self.log.matching("did not finish the link"))

    def test_connectionCap(self):
        self.server.limits.maxConnections = 1
        first = WebSocketConnection(self.server)
        second = Connection(self.server)
        self.assertTrue(second.closed)
        self.assertFalse(first.closed)
        first.lose()
        self.assertEqual(self.server.connections.total, 0)

    def test_closeFromTheServer(self):
        conn = WebSocketConnection(self.server)
        conn.sendSpice(linkMessage(ChannelType.MAIN))
        reply, _, _, _ = parseLinkReply(conn.takeSpice())
        conn.sendSpice(ticketBytes(reply, "wrong"))
        frames = conn.frames()
        self.assertEqual(frames[0], (True, 2, struct.pack("<I", LinkErr.PERMISSION_DENIED)))
        self.assertTrue(conn.closed)
        self.assertEqual(frames[-1][1], 8)  # a close frame after the result
        self.assertEqual(struct.unpack("!H", frames[-1][2][:2])[0], 1000)

    def test_ping(self):
        conn = WebSocketConnection(self.server)
        conn.send(clientFrame(b"hello", opcode=9))
        self.assertEqual(conn.frames(), [(True, 10, b"hello")])

    def test_clientClose(self):
        conn = WebSocketConnection(self.server)
        self.link(conn)
        conn.send(clientFrame(struct.pack("!H", 1000), opcode=8))
        self.assertEqual(conn.frames()[-1][1], 8)
        self.assertTrue(conn.closed)
        conn.lose()
        self.assertEqual(self.server.sessions, {})

    def test_fragmentsAreOneStream(self):
        conn = WebSocketConnection(self.server)
        message = linkMessage(ChannelType.MAIN)
        conn.send(clientFrame(message[:5], fin=False) + clientFrame(message[5:], opcode=0))
        reply, _, _, _ = parseLinkReply(conn.takeSpice())
        self.assertEqual(reply.error, LinkErr.OK)


class BadFrameTests(unittest.TestCase):
    """
    Bad WebSocket input: a log line naming the peer and what was wrong, and
    that connection closed.
    """

    def setUp(self):
        self.server = makeTestServer(password="secret")
        self.log = LogCapture(self)
        self.conn = WebSocketConnection(self.server)

    def assertFailed(self, words):
        self.assertTrue(self.conn.closed)
        lines = self.log.matching("web connection from 127.0.0.1")
        self.assertEqual(len(lines), 1, self.log.texts())
        self.assertIn(words, lines[0])

    def test_unmasked(self):
        self.conn.send(clientFrame(b"REDQ", mask=False))
        self.assertFailed("unmasked")

    def test_hugeLength(self):
        self.conn.send(clientFrame(b"", length=2 ** 40)[:14])
        self.assertFailed("exceeds payload limit of %d" % MAX_CLIENT_MESSAGE)

    def test_messageTooBig(self):
        chunk = b"x" * (64 * 1024)
        for i in range(4):
            self.conn.send(clientFrame(chunk, fin=False, opcode=2 if i == 0 else 0))
        self.conn.send(clientFrame(b"y", opcode=0))
        self.assertFailed("exceeds payload limit")

    def test_fragmentedControlFrame(self):
        self.conn.send(clientFrame(b"ping", opcode=9, fin=False))
        self.assertFailed("fragmented control frame")

    def test_reservedOpcode(self):
        self.conn.send(clientFrame(b"x", opcode=3))
        self.assertFailed("reserved opcode")

    def test_textFrame(self):
        self.conn.send(clientFrame(b"REDQ", opcode=1))
        frames = self.conn.frames()
        self.assertEqual(frames[-1][1], 8)
        self.assertEqual(struct.unpack("!H", frames[-1][2][:2])[0], 1003)
        self.assertFailed("text frame")


class OriginTests(unittest.TestCase):
    def test_policy(self):
        allowed = frozenset(["https://portal.example"])
        cases = [
            (None, HOST, False, True, None),
            ("http://127.0.0.1:5900", HOST, False, False, None),
            ("http://localhost:5900", "localhost:5900", False, False, None),
            ("https://127.0.0.1:5900", HOST, True, False, None),
            ("http://[::1]:5900", "[::1]:5900", False, False, None),
            ("https://portal.example", HOST, True, False, None),
            ("http://spice.example:5900", "spice.example:5900", False, True, None),
            ("http://spice.example:5900", "spice.example:5900", False, False, "rebinding"),
            ("http://evil.example", HOST, False, True, "may not open"),
            ("http://127.0.0.1:5901", HOST, False, True, "may not open"),
            ("https://127.0.0.1:5900", HOST, False, True, "may not open"),
            ("http://127.0.0.1:5900", HOST, True, True, "may not open"),
            ("null", HOST, False, True, "may not open"),
            ("http://127.0.0.1:5900", None, False, True, "Host"),
        ]
        for origin, host, secure, ticketed, refusal in cases:
            why = origin_allowed(origin, host, secure, allowed, ticketed)
            if refusal is None:
                self.assertIsNone(why, (origin, host))
            else:
                self.assertIn(refusal, why or "", (origin, host))

    def test_foreignPageRefused(self):
        server = makeTestServer(password="secret")
        log = LogCapture(self)
        conn = WebSocketConnection(server, origin="http://evil.example")
        self.assertTrue(conn.handshake.startswith(b"HTTP/1.1 403 "))
        self.assertTrue(conn.closed)
        self.assertTrue(log.matching("WebSocket refused (403)"))

    def test_allowedOrigin(self):
        server = makeTestServer(password="secret")
        server.web = WebFrontend(allowedOrigins=["https://portal.example/"])
        conn = WebSocketConnection(server, origin="https://portal.example")
        self.assertTrue(conn.handshake.startswith(b"HTTP/1.1 101 "))


class TransportTests(unittest.TestCase):
    def test_writeSequenceIsOneFrame(self):
        server = makeTestServer(password="secret")
        conn = WebSocketConnection(server)
        ws = conn.protocol.web.ws
        transport = WebSocketTransport(ws)
        transport.writeSequence([b"ab", b"cd"])
        transport.write(b"ef")
        self.assertEqual(conn.frames(), [(True, 2, b"abcd"), (True, 2, b"ef")])
        self.assertFalse(ISSLTransport.providedBy(transport))


class OptionsTests(unittest.TestCase):
    """
    C{twistd spice --web-client}, C{--web-client-dir}, C{--web-allow-origin}.
    """

    def parse(self, *args):
        from spicesrv import tap
        config = tap.Options()
        config.parseOptions(list(args))
        return config

    def test_webClientDir(self):
        directory = fakeClient(os.path.abspath(self.mktemp()))
        config = self.parse("--web-client", "--web-client-dir", directory,
                            "--web-allow-origin", "https://portal.example:8443")
        web = config["web"]
        self.assertIn("/spice-html5/main.js", web.client.files)
        self.assertEqual(web.allowedOrigins, frozenset(["https://portal.example:8443"]))

    def test_withoutWebClient(self):
        self.assertIsNone(self.parse()["web"].client)

    def test_serverGetsTheFront(self):
        from twisted.internet.testing import MemoryReactorClock
        from spicesrv import tap
        directory = fakeClient(os.path.abspath(self.mktemp()))
        config = self.parse("--web-client", "--web-client-dir", directory)
        top = tap.makeService(config, MemoryReactorClock())
        self.assertIs(top.server.web, config["web"])

    def test_mistakes(self):
        empty = os.path.abspath(self.mktemp())
        os.makedirs(empty)
        for args, words in (
                (("--web-client", "--web-client-dir", empty), "no spice-html5 client"),
                (("--web-client-dir", empty), "needs --web-client"),
                (("--web-allow-origin", "portal.example"), "is not an origin"),
                (("--web-allow-origin", "https://portal.example/page"), "is not an origin")):
            e = self.assertRaises(SystemExit, self.parse, *args)
            self.assertIn(words, str(e))
