"""
SPICE inside a WebSocket: the framing comes from autobahn
(L{autobahn.twisted.websocket.WebSocketServerProtocol}); this module adds
the policy (subprotocol, Origin, limits, logging) and a transport that
carries a L{spicesrv.link.LinkProtocol} in binary frames.

Why autobahn and not Twisted's own C{twisted.web.websocket} (on wsproto),
measured with C{benchmarks/websocket_libraries.py} (Twisted 26.10, wsproto
1.3.2, autobahn 26.11, two runs on a loaded 2-CPU machine): sending a
256 KiB display update costs 28-33 us with autobahn and 385-413 us with
wsproto (12 to 13 times as much, on the display path); a small client
frame costs 17-25 us with either; the opening handshake costs about
0.5 ms with autobahn, 0.15-0.46 ms with wsproto (once per channel).
Twisted's wrapper can neither answer the C{binary} subprotocol
spice-html5 asks for nor bound a message's size (it reassembles messages
without a limit), while autobahn checks frame and message sizes on the
frame header, before the payload arrives.
"""

import ipaddress
from urllib.parse import urlsplit

from autobahn.twisted.websocket import (
    WebSocketServerFactory, WebSocketServerProtocol)
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import ISSLTransport, ITransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

#: The WebSocket subprotocol spice-html5 asks for (and libspice-server
#: answers): SPICE's bytes in binary frames.
SUBPROTOCOL = "binary"

#: Bytes a client frame, and a client message, may carry.  The largest
#: SPICE client messages are agent data (2 KiB chunks), port data and
#: recorded sound; a browser sends each SPICE message as one frame.
MAX_CLIENT_MESSAGE = 256 * 1024


def default_port(scheme):
    return {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(scheme)


def split_host(hostport, scheme):
    """
    C{(host, port)} of a Host header value (C{host}, C{host:port},
    C{[v6]:port}), the port defaulting to the scheme's; L{None} if it is
    not one.
    """
    try:
        parts = urlsplit("%s://%s" % (scheme, hostport))
        port = parts.port or default_port(scheme)
        host = parts.hostname
    except ValueError:
        return None
    if not host or parts.path or parts.query or parts.username is not None:
        return None
    return host.lower(), port


def is_address_or_localhost(host):
    """
    Whether a browser's Origin host cannot have come from a DNS name an
    attacker controls: an IP address or C{localhost}.
    """
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def origin_allowed(origin, host, secure, allowed=(), ticketed=True):
    """
    The Origin policy of WebSocket links (see the operator guide,
    "Browsers").  A page may open a SPICE WebSocket when

    - it sent no Origin (not a browser: a native tool);
    - its origin is in C{allowed} (C{--web-allow-origin});
    - or it is this server's own origin (the scheme of this port, the host
      and port of the Host header), and either the server asks for a
      password or the host is an IP address or C{localhost}: without a
      password, a DNS name could be rebound to this server by a page that
      wants to look at it.

    @return: L{None} if allowed, else why not.
    """
    if origin is None:
        return None
    origin = origin.strip()
    if origin.rstrip("/") in allowed:
        return None
    scheme = "https" if secure else "http"
    try:
        parts = urlsplit(origin)
        oport = parts.port or default_port(parts.scheme)
        ohost = (parts.hostname or "").lower()
    except ValueError:
        return "Origin %r is not an origin" % (origin,)
    own = split_host(host or "", scheme)
    if own is None:
        return "no usable Host header (%r)" % (host,)
    if (parts.scheme, ohost, oport) != (scheme, own[0], own[1]):
        return ("a page from %s may not open a SPICE link here (only this server's own "
                "pages, or origins given with --web-allow-origin)" % (origin,))
    if not ticketed and not is_address_or_localhost(ohost):
        return ("without a password, only pages from an IP address or localhost may open "
                "a SPICE link (not %s, which a DNS rebinding could point here); use "
                "--web-allow-origin %s to allow it" % (origin, origin))
    return None


_log = Logger()


class _AutobahnLog:
    """
    What autobahn logs: only its errors.  Its debug lines (a dozen per
    connection) and its warnings, which repeat ours without the peer's
    name, are dropped.
    """

    def _drop(self, *args, **kwargs):
        pass

    trace = debug = info = warn = _drop

    def error(self, format, **kwargs):
        _log.error("autobahn: " + format, **kwargs)

    critical = error

    def failure(self, format=None, failure=None, **kwargs):
        _log.failure("autobahn: " + (format or "unexpected error"), failure, **kwargs)


@implementer(ITransport)
class WebSocketTransport:
    """
    The transport of a SPICE link inside a WebSocket: each write is one
    binary frame (so each SPICE message is its own frame, and on the TLS
    port its own TLS write); the rest is the TCP or TLS connection's.
    """

    def __init__(self, ws):
        self.ws = ws
        self.transport = ws.transport
        self.disconnecting = False
        if ISSLTransport.providedBy(self.transport):
            alsoProvides(self, ISSLTransport)

    def write(self, data):
        # sendFrame, not sendMessage: autobahn's message size limit is for
        # what clients send; the server's messages (a whole raw screen for
        # spice-html5, which has no LZ4) may be larger.
        if data and self.ws.state == WebSocketProtocol.STATE_OPEN:
            self.ws.sendFrame(opcode=2, payload=bytes(data))

    def writeSequence(self, data):
        self.write(b"".join(data))

    def loseConnection(self):
        if self.disconnecting:
            return
        self.disconnecting = True
        self.ws.close(1000)

    def abortConnection(self):
        self.disconnecting = True
        self.transport.abortConnection()

    def getPeer(self):
        return self.transport.getPeer()

    def getHost(self):
        return self.transport.getHost()

    def getPeerCertificate(self):
        return self.transport.getPeerCertificate()

    def setTcpNoDelay(self, enabled):
        return self.transport.setTcpNoDelay(enabled)

    def registerProducer(self, producer, streaming):
        self.transport.registerProducer(producer, streaming)

    def unregisterProducer(self):
        self.transport.unregisterProducer()

    def pauseProducing(self):
        self.transport.pauseProducing()

    def resumeProducing(self):
        self.transport.resumeProducing()

    def stopProducing(self):
        self.transport.stopProducing()


class SpiceWebSocket(WebSocketServerProtocol):
    """
    One WebSocket carrying one SPICE link (spice-html5 opens one per
    channel).  Made by L{spicesrv.web.front.HTTPConnection} for an upgrade
    request, which it replays to this protocol.

    @ivar outer: the L{spicesrv.link.LinkProtocol} of the TCP or TLS
        connection, which counts it and keeps the link deadline.
    @ivar link: the L{spicesrv.link.LinkProtocol} carried inside, once the
        WebSocket is open.
    """

    log = _AutobahnLog()

    outer = None
    link = None
    front = None
    _lost = False

    @property
    def peerName(self):
        return self.outer.peer

    def onConnect(self, request):
        headers = request.headers
        refused = origin_allowed(headers.get("origin"), headers.get("host"),
                                 self.outer.secure, self.front.allowedOrigins,
                                 not self.outer.server.ticket.disabled)
        if refused is not None:
            self._refuse(403, refused)
        if request.protocols and SUBPROTOCOL not in request.protocols:
            self._refuse(400, "WebSocket subprotocols %s offered; SPICE speaks only %r"
                         % (", ".join(request.protocols), SUBPROTOCOL))
        return SUBPROTOCOL if request.protocols else None

    def _refuse(self, code, reason):
        _log.warn("web connection from {peer}: WebSocket refused ({code}): {reason}",
                      peer=self.peerName, code=code, reason=reason)
        raise ConnectionDeny(code, reason)

    def onOpen(self):
        self.link = self.outer.carryLink()
        self.link.makeConnection(WebSocketTransport(self))

    def onMessage(self, payload, isBinary):
        if self.link is None:
            return
        if not isBinary:
            _log.warn("web connection from {peer}: a text frame; SPICE goes in binary "
                          "frames; closing", peer=self.peerName)
            self.close(1003, "SPICE goes in binary frames")
            return
        self.link.dataReceived(payload)

    def close(self, code, reason=None):
        """
        Send a close frame, then close the connection with the link's grace
        time (without waiting for the client's close frame: as the server,
        we close the TCP connection first).
        """
        if self.state == WebSocketProtocol.STATE_OPEN:
            self.sendCloseFrame(code=code, isReply=False,
                                reasonUtf8=reason.encode("utf-8") if reason else None)
        self.outer.closeWeb()

    def dropConnection(self, abort=False):
        if self.failedByMe and self.state != WebSocketProtocol.STATE_CLOSED:
            reason = self.wasNotCleanReason or ""
            reason = reason.replace("I dropped the WebSocket TCP connection: ", "")
            _log.warn("web connection from {peer}: bad WebSocket input ({reason}); "
                      "connection closed", peer=self.peerName, reason=reason)
        WebSocketServerProtocol.dropConnection(self, abort)

    def onClose(self, wasClean, code, reason):
        if self.link is not None and not self._lost:
            self._lost = True
            self.link.connectionLost(Failure(ConnectionDone("the WebSocket closed")))


def makeFactory(front):
    """
    The autobahn factory holding the WebSocket options of a web front.
    """
    factory = WebSocketServerFactory()
    factory.protocol = SpiceWebSocket
    factory.setProtocolOptions(
        maxFramePayloadSize=MAX_CLIENT_MESSAGE,
        maxMessagePayloadSize=MAX_CLIENT_MESSAGE,
        # The link deadline already bounds the handshake; SPICE has its
        # own pings.
        openHandshakeTimeout=0,
        autoPingInterval=0,
        # We close the connection after a close frame ourselves (close),
        # with the link's grace time on the server's clock.
        closeHandshakeTimeout=0,
        # Bad input from the client: the connection is dropped at once.
        failByDrop=True,
        # Frames are never split: each SPICE message is one frame.
        autoFragmentSize=0,
        # The Origin policy is ours (origin_allowed), checked in onConnect.
        allowedOrigins=["*"],
        # Only RFC 6455 (version 13), as every browser speaks.
        versions=[13],
        perMessageCompressionAccept=lambda offers: None,
    )
    factory.server = "spicesrv"
    return factory
