"""
The measurement behind spicesrv's choice of WebSocket library (see
spicesrv/web/websocket.py): the cost of the framing alone, in process, for
autobahn's Twisted protocol and for wsproto (what Twisted's own
twisted.web.websocket is built on).

    pip install wsproto      # not a spicesrv dependency
    python -m benchmarks.websocket_libraries

It prints, per library: the opening handshake, parsing one small masked
client frame (an input event), sending one 256 KiB binary frame (a display
update) and one 40-byte frame.  Best of 5 repetitions, microseconds.
"""
import os
import struct
import time
from twisted.internet.testing import StringTransport
from twisted.internet.address import IPv4Address

REQ = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1:5900\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
       b"Sec-WebSocket-Protocol: binary\r\nOrigin: http://127.0.0.1:5900\r\n\r\n")

def clientFrame(payload):
    key = os.urandom(4)
    n = len(payload)
    if n < 126: h = struct.pack("!BB", 0x82, 0x80 | n)
    elif n < 65536: h = struct.pack("!BBH", 0x82, 0x80 | 126, n)
    else: h = struct.pack("!BBQ", 0x82, 0x80 | 127, n)
    import numpy as np
    p = np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(key, np.uint8), n)
    return h + key + p.tobytes()

small = [clientFrame(os.urandom(n)) for n in (14, 20, 30) * 2000]   # input events
big_out = os.urandom(256 * 1024)

def timeit(f, reps):
    ts = []
    for _ in range(5):
        t = time.perf_counter(); f(); ts.append((time.perf_counter() - t) / reps)
    return min(ts) * 1e6

# wsproto
from wsproto import WSConnection, ConnectionType
from wsproto.events import AcceptConnection, BytesMessage, Request
def wsproto_setup():
    c = WSConnection(ConnectionType.SERVER)
    c.receive_data(REQ)
    ev = list(c.events()); assert isinstance(ev[0], Request), ev
    c.send(AcceptConnection(subprotocol="binary"))
    return c
t = time.perf_counter()
for _ in range(200): wsproto_setup()
hs_wsproto = (time.perf_counter() - t) / 200 * 1e6
c = wsproto_setup()
def w_in():
    for f in small:
        c.receive_data(f)
        for e in c.events(): pass
def w_out():
    for _ in range(20): c.send(BytesMessage(big_out))
def w_out_small():
    for _ in range(2000): c.send(BytesMessage(b"x" * 40))
print("wsproto: handshake %.0f us; in small frame %.2f us; out 256KiB %.1f us; out 40B %.2f us" % (
    hs_wsproto, timeit(w_in, len(small)), timeit(w_out, 20), timeit(w_out_small, 2000)))

# autobahn
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
class P(WebSocketServerProtocol):
    def onConnect(self, request): return "binary"
    def onMessage(self, payload, isBinary): pass
fac = WebSocketServerFactory()
fac.protocol = P
fac.setProtocolOptions(autoPingInterval=0, openHandshakeTimeout=0)
def ab_setup():
    p = fac.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1234))
    tr = StringTransport(); p.makeConnection(tr); p.dataReceived(REQ)
    assert b"101" in tr.value()[:20], tr.value()[:200]
    return p, tr
t = time.perf_counter()
for _ in range(200): ab_setup()
hs_ab = (time.perf_counter() - t) / 200 * 1e6
p, tr = ab_setup()
def a_in():
    for f in small: p.dataReceived(f)
def a_out():
    for _ in range(20): p.sendMessage(big_out, isBinary=True)
    tr.clear()
def a_out_small():
    for _ in range(2000): p.sendMessage(b"x" * 40, isBinary=True)
    tr.clear()
print("autobahn: handshake %.0f us; in small frame %.2f us; out 256KiB %.1f us; out 40B %.2f us" % (
    hs_ab, timeit(a_in, len(small)), timeit(a_out, 20), timeit(a_out_small, 2000)))
