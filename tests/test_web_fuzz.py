"""
Fuzz tests (Hypothesis, seeded, a short budget) for what browsers' ports
take from anyone: the HTTP/SPICE detection, the HTTP request reader and the
WebSocket framing.  Whatever arrives, nothing raises out of the protocol,
and a connection is either still open or closed; nothing leaks past the
connection caps.
"""

from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from spicesrv.link import HTTP_STARTS, looks_like_http
from spicesrv.testing import linkMessage, makeTestServer
from spicesrv.wire.constants import ChannelType
from tests.test_web import Connection, WebSocketConnection, clientFrame

FUZZ = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def chunked(data, cuts):
    """
    C{data} split at the offsets in C{cuts}: how TCP may deliver it.
    """
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for point in points + [len(data)]:
        pieces.append(data[last:point])
        last = point
    return [p for p in pieces if p]


requestLine = st.sampled_from(sorted(HTTP_STARTS)).map(lambda m: m.rstrip(b" ")).flatmap(
    lambda method: st.tuples(st.just(method), st.binary(max_size=40)))
headerLines = st.lists(st.tuples(st.binary(min_size=0, max_size=20),
                                 st.binary(max_size=60)), max_size=8)


@st.composite
def httpRequests(draw):
    method, target = draw(requestLine)
    headers = draw(headerLines)
    if draw(st.booleans()):
        headers.append((b"Upgrade", b"websocket"))
        headers.append((b"Sec-WebSocket-Key", b"dGhlIHNhbXBsZSBub25jZQ=="))
        headers.append((b"Sec-WebSocket-Version", draw(st.sampled_from([b"13", b"8", b"x"]))))
    head = method + b" /" + target + b" HTTP/1.1\r\n" + b"".join(
        name + b": " + value + b"\r\n" for name, value in headers) + b"\r\n"
    return head + draw(st.binary(max_size=64))


@st.composite
def frames(draw):
    """
    A WebSocket frame from a client, often well-formed, sometimes not:
    any opcode, FIN or not, masked or not, a length field that may lie.
    """
    payload = draw(st.binary(max_size=300))
    opcode = draw(st.sampled_from([0, 1, 2, 8, 9, 10, 3, 11]))
    frame = clientFrame(payload, opcode=opcode, fin=draw(st.booleans()),
                        mask=draw(st.booleans()) or draw(st.booleans()),
                        length=draw(st.one_of(st.none(), st.integers(0, 2 ** 63 - 1))))
    if draw(st.booleans()):
        frame = frame[:draw(st.integers(0, len(frame)))]
    return frame


class DetectionFuzzTests(unittest.TestCase):
    @seed(20261201)
    @FUZZ
    @given(st.binary(min_size=0, max_size=200), st.lists(st.integers(0, 200), max_size=5))
    def test_anyFirstBytes(self, data, cuts):
        server = makeTestServer(password="secret")
        conn = Connection(server)
        for piece in chunked(data, cuts):
            conn.send(piece)
        wentWeb = conn.protocol.web is not None
        self.assertEqual(wentWeb, len(data) >= 4 and looks_like_http(data[:4]))
        conn.lose()
        self.assertEqual(server.connections.total, 0)

    @seed(20261202)
    @FUZZ
    @given(httpRequests(), st.lists(st.integers(0, 1000), max_size=6))
    def test_anyRequest(self, request, cuts):
        server = makeTestServer(password="secret")
        conn = Connection(server)
        for piece in chunked(request, cuts):
            conn.send(piece)
        answer = conn.take()
        self.assertTrue(answer == b"" or answer.startswith(b"HTTP/1.1 "), answer[:60])
        conn.lose()
        self.assertEqual(server.connections.total, 0)


class FramingFuzzTests(unittest.TestCase):
    @seed(20261203)
    @FUZZ
    @given(st.lists(frames(), max_size=6), st.lists(st.integers(0, 2000), max_size=6),
           st.booleans())
    def test_anyFrames(self, sent, cuts, linked):
        server = makeTestServer(password="secret")
        conn = WebSocketConnection(server)
        self.assertIn(b" 101 ", conn.handshake)
        data = b"".join(sent)
        if linked:
            data = clientFrame(linkMessage(ChannelType.MAIN)) + data
        for piece in chunked(data, cuts):
            conn.send(piece)
            if conn.closed:
                break
        conn.lose()
        self.assertEqual(server.connections.total, 0)
        self.assertEqual(server.sessions, {})
