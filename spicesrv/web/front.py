"""
The web front: what a SPICE port does with a connection that opened with
an HTTP request.

L{HTTPConnection} reads requests with h11: a WebSocket upgrade becomes a
L{spicesrv.web.websocket.SpiceWebSocket} carrying a SPICE link; a GET or
HEAD for one of the browser client's files (C{--web-client}) is answered;
anything else gets its HTTP error.  Malformed requests and oversized heads
get a log line, a 400 or 431, and the connection closed.
"""

from http import HTTPStatus

import h11
from twisted.logger import Logger

from spicesrv.web.websocket import makeFactory

#: Bytes a request head (request line and headers) may take.
MAX_REQUEST_HEAD = 8192

#: Headers on every answer.
COMMON_HEADERS = [
    (b"Server", b"spicesrv"),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Referrer-Policy", b"no-referrer"),
]

#: The landing page's content security policy: its own scripts and
#: WebSockets to itself; spice-html5 draws cursors and images from data:
#: and blob: URLs.
LANDING_CSP = (b"default-src 'self'; connect-src 'self'; img-src 'self' data: blob:; "
               b"media-src 'self' blob:; style-src 'self' 'unsafe-inline'; "
               b"frame-ancestors 'none'; base-uri 'none'; form-action 'none'")

NOT_ENABLED = (b"This is a SPICE server. Connect with a SPICE client, or start it with "
               b"--web-client to serve the browser client here.\n")


class WebFrontend:
    """
    What the SPICE ports of a server answer to browsers; a server's
    C{web} attribute (L{frontendOf}).

    @param client: the L{spicesrv.web.client.WebClient} to serve, or
        L{None}: WebSocket links only.
    @param allowedOrigins: origins (C{https://portal.example:8443}) whose
        pages may open SPICE WebSockets besides the server's own pages.
    """

    log = Logger()

    def __init__(self, client=None, allowedOrigins=()):
        self.client = client
        self.allowedOrigins = frozenset(o.rstrip("/") for o in allowedOrigins)
        self.maxRequestHead = MAX_REQUEST_HEAD
        self._wsFactory = None

    @property
    def wsFactory(self):
        if self._wsFactory is None:
            self._wsFactory = makeFactory(self)
        return self._wsFactory

    def connect(self, link):
        """
        The protocol for a connection (its L{spicesrv.link.LinkProtocol})
        that opened with an HTTP request.
        """
        return HTTPConnection(self, link)


_DEFAULT = None


def frontendOf(server):
    """
    The server's L{WebFrontend} (C{server.web}), or a shared one that takes
    WebSocket links and serves no pages.
    """
    global _DEFAULT
    web = getattr(server, "web", None)
    if web is not None:
        return web
    if _DEFAULT is None:
        _DEFAULT = WebFrontend()
    return _DEFAULT


class HTTPConnection:
    """
    HTTP on one connection, until it becomes a WebSocket.
    """

    log = Logger()

    def __init__(self, front, link):
        self.front = front
        self.link = link
        self.transport = link.transport
        self.peer = link.peer
        self.ws = None
        self._closed = False
        self._answered = 0
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=front.maxRequestHead)

    def dataReceived(self, data):
        if self.ws is not None:
            self.ws.dataReceived(data)
            return
        if self._closed:
            return
        self._h11.receive_data(data)
        self._process()

    def idle(self):
        """
        Whether this is a page connection kept alive between requests:
        every request answered, nothing of another one received.
        """
        return (self.ws is None and self._answered > 0
                and self._h11.their_state is h11.IDLE and not self._h11.trailing_data[0])

    def connectionLost(self, reason):
        self._closed = True
        if self.ws is not None:
            self.ws.connectionLost(reason)

    def _process(self):
        while not self._closed and self.ws is None:
            if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
                # Keep-alive: ready for the next request.
                self._h11.start_next_cycle()
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as e:
                status = e.error_status_hint
                self._fail(status, "malformed HTTP request" if status != 431
                           else "HTTP request head over %d bytes" % self.front.maxRequestHead,
                           str(e))
                return
            if event is h11.NEED_DATA:
                if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
                    self._h11.start_next_cycle()
                return
            if event is h11.PAUSED:
                if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
                    continue
                return
            if isinstance(event, h11.Request):
                self._request(event)
            elif isinstance(event, h11.ConnectionClosed):
                self._close()
                return

    def _request(self, request):
        headers = {name.lower(): value for name, value in request.headers}
        if (request.method == b"GET"
                and headers.get(b"upgrade", b"").strip().lower() == b"websocket"):
            self._upgrade(request)
            return
        if request.method not in (b"GET", b"HEAD"):
            self._answer(405, b"text/plain; charset=utf-8", b"Only GET and HEAD here.\n",
                         extra=[(b"Allow", b"GET, HEAD")], close=True)
            return
        client = self.front.client
        if client is None:
            self._answer(404, b"text/plain; charset=utf-8", NOT_ENABLED, method=request.method)
            return
        path = request.target.split(b"?", 1)[0].decode("latin-1")
        found = client.get(path)
        if found is None:
            self._answer(404, b"text/plain; charset=utf-8", b"Not found.\n",
                         method=request.method)
            return
        extra = [(b"Cache-Control", found.cacheControl.encode("ascii")),
                 (b"ETag", found.etag)]
        if path == "/":
            extra.append((b"Content-Security-Policy", LANDING_CSP))
        if found.etag in [t.strip() for t in headers.get(b"if-none-match", b"").split(b",")]:
            self._answer(304, None, b"", extra=extra, method=request.method)
            return
        self._answer(200, found.contentType.encode("ascii"), found.body, extra=extra,
                     method=request.method)

    def _upgrade(self, request):
        """
        Hand the connection to a WebSocket: replay the request head (and
        any bytes after it) to autobahn, which answers the handshake.
        """
        event = self._h11.next_event()
        if not isinstance(event, h11.EndOfMessage):
            self._fail(400, "malformed WebSocket request", "a body on the upgrade request")
            return
        trailing = self._h11.trailing_data[0]
        head = b"GET %s HTTP/1.1\r\n" % (request.target,) + b"".join(
            b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw_items()
        ) + b"\r\n"
        ws = self.front.wsFactory.buildProtocol(self.transport.getPeer())
        ws.outer = self.link
        ws.front = self.front
        self.ws = ws
        ws.makeConnection(self.transport)
        ws.dataReceived(head + trailing)

    def _answer(self, status, contentType, body, extra=(), close=False, method=b"GET"):
        headers = list(COMMON_HEADERS)
        if contentType is not None:
            headers.append((b"Content-Type", contentType))
        if status != 304:
            headers.append((b"Content-Length", b"%d" % len(body)))
        headers.extend(extra)
        if close:
            headers.append((b"Connection", b"close"))
        out = [self._h11.send(h11.Response(status_code=status, headers=headers,
                                                 reason=HTTPStatus(status).phrase.encode("ascii")))]
        if method != b"HEAD" and status != 304 and body:
            out.append(self._h11.send(h11.Data(data=body)))
        out.append(self._h11.send(h11.EndOfMessage()))
        self.transport.write(b"".join(out))
        self._answered += 1
        if close or self._h11.our_state is h11.MUST_CLOSE:
            self._close()

    def _fail(self, status, what, detail):
        self.log.warn("web connection from {peer}: {what} ({detail}); closing",
                      peer=self.peer, what=what, detail=detail)
        if status not in (400, 431):
            status = 400
        reason = HTTPStatus(status).phrase.encode("ascii")
        body = what.encode("utf-8") + b"\n"
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
            % (status, reason, len(body), body))
        self._close()

    def _close(self):
        self._closed = True
        self.link.closeWeb()
