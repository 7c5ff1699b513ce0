"""
The limits that keep one peer from holding the server's resources: a
deadline for the link handshake and for each partial message, TCP
keepalive, caps on connections per peer address and in total, a grace time
for closing a connection whose peer stopped reading, and a rate limit on the
log lines one connection can cause.

A L{SpiceServer} has one L{Limits} (C{server.limits}), which ``twistd spice``
fills from its options and an embedder may change before listening.
"""

import socket
from collections import Counter
from dataclasses import dataclass

from twisted.internet.address import IPv4Address, IPv6Address

# libspice-server's KEEPALIVE_TIMEOUT (reds.cpp): seconds of silence before
# the kernel starts probing a TCP peer.
KEEPALIVE_IDLE = 10 * 60


@dataclass
class Limits:
    """
    @ivar linkTimeout: seconds from a connection's first moment until its
        link handshake must be done (the ticket checked); not restarted by
        the bytes that arrive, and stopped while the server makes its RSA
        key for the link (a burst of links queues for keys).
    @ivar messageTimeout: seconds a channel may hold a partial client
        message before it is closed.
    @ivar closeGrace: seconds a closing connection may take to hand its
        last bytes to the peer before it is aborted.
    @ivar keepaliveIdle: TCP keepalive: seconds of silence before the first
        probe (as libspice-server).
    @ivar maxConnections: connections open at once, in every stage.
    @ivar maxConnectionsPerAddress: connections open at once from one IP
        address (UNIX socket peers only count towards C{maxConnections}).
    @ivar logBurst: log lines one connection may cause per C{logInterval}
        for what its peer sends; the rest are counted and summarised.
    @ivar logInterval: seconds of that window.
    """

    linkTimeout: float = 30.0
    messageTimeout: float = 60.0
    closeGrace: float = 5.0
    keepaliveIdle: int = KEEPALIVE_IDLE
    maxConnections: int = 256
    maxConnectionsPerAddress: int = 64
    logBurst: int = 20
    logInterval: float = 60.0


def peerKey(address):
    """
    The key connections from C{address} are counted under: the IP address,
    or L{None} for peers without one (UNIX sockets, test transports).
    """
    if isinstance(address, (IPv4Address, IPv6Address)):
        return address.host
    return None


class ConnectionCounter:
    """
    The connections a server has open, in total and per peer address.

    @param limits: a callable returning the L{Limits} in force, read at each
        admission so a change applies to the next connection.
    """

    def __init__(self, limits):
        self._limits = limits
        self.total = 0
        self.perAddress = Counter()

    def admit(self, address):
        """
        Count a new connection from C{address}.  Returns L{None} when it is
        admitted, or else why not (and it is not counted).
        """
        limits = self._limits()
        key = peerKey(address)
        if self.total >= limits.maxConnections:
            return ("%d connections are open, the most allowed (--max-connections)"
                    % self.total)
        if key is not None and self.perAddress[key] >= limits.maxConnectionsPerAddress:
            return ("%d connections from %s are open, the most allowed from one address "
                    "(--max-connections-per-address)" % (self.perAddress[key], key))
        self.total += 1
        if key is not None:
            self.perAddress[key] += 1
        return None

    def release(self, address):
        """
        Forget an admitted connection from C{address}.
        """
        self.total -= 1
        key = peerKey(address)
        if key is not None:
            self.perAddress[key] -= 1
            if self.perAddress[key] <= 0:
                del self.perAddress[key]


#: How many layers (TLS, WebSocket) L{transportLayers} looks through.
LAYERS = 4


def transportLayers(transport):
    """
    C{transport}, then the transports under it, top first: a TLS layer's
    TCP transport, a WebSocket's TLS or TCP transport.
    """
    for _ in range(LAYERS):
        yield transport
        transport = getattr(transport, "transport", None)
        if transport is None:
            return


def socketOf(transport, tcpOnly=True):
    """
    The socket under C{transport}, also under layers over it (a TLS layer,
    whose handle is OpenSSL's connection; a WebSocket, which has none): a
    TCP one, or with C{tcpOnly=False} any.  L{None} if there is none.
    """
    for layer in transportLayers(transport):
        getHandle = getattr(layer, "getHandle", None)
        try:
            handle = getHandle() if getHandle is not None else None
        except Exception:
            handle = None
        if isinstance(handle, socket.socket):
            if tcpOnly and handle.family not in (socket.AF_INET, socket.AF_INET6):
                return None
            return handle
    return None


def transportBuffered(transport):
    """
    The bytes Twisted's own transport (a L{FileDescriptor}: TCP, UNIX)
    holds that the kernel has not taken yet; 0 for any other transport.
    """
    pending = getattr(transport, "_tempDataLen", 0) or 0
    data = getattr(transport, "dataBuffer", None)
    if isinstance(data, (bytes, bytearray, memoryview)):
        pending += len(data) - (getattr(transport, "offset", 0) or 0)
    return pending


def setKeepalive(transport, idle):
    """
    Turn TCP keepalive on for C{transport}, with the first probe after
    C{idle} seconds of silence where the system allows it, as
    libspice-server does on every link.  Returns whether it was set (not on
    UNIX sockets or test transports).
    """
    sock = socketOf(transport)
    if sock is None:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, int(idle))
    except OSError:
        return False
    return True


class GracefulClose:
    """
    Close a connection politely, then abort it if its peer has not taken
    the last bytes within a grace time.  C{loseConnection} alone waits for
    buffered output forever when the peer stopped reading.

    @param onAbort: called with no arguments just before the abort (to log).
    """

    def __init__(self, clock):
        self.clock = clock
        self._call = None

    def close(self, transport, grace, onAbort=None):
        transport.loseConnection()
        if self._call is None:
            self._call = self.clock.callLater(grace, self._abort, transport, onAbort)

    def _abort(self, transport, onAbort):
        self._call = None
        if onAbort is not None:
            onAbort()
        transport.abortConnection()

    def connectionLost(self):
        """
        The connection is gone: nothing to abort.
        """
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    @property
    def pending(self):
        return self._call is not None


class LogLimiter:
    """
    At most C{limits.logBurst} log lines per C{limits.logInterval} seconds
    for what one connection's peer does; past that, lines are counted by
    kind and summarised in one line at the end of the window or when the
    connection closes.

    @param log: the L{twisted.logger.Logger}.
    @param prefix: a format string opening the summary line, with C{fields}.
    """

    def __init__(self, clock, limits, log, prefix="", **fields):
        self.clock = clock
        self.limits = limits
        self.log = log
        self.prefix = prefix
        self.fields = fields
        self._windowStart = None
        self._lines = 0
        self._suppressed = Counter()
        self._summaryCall = None

    def info(self, kind, format, **kw):
        """
        Log C{format} at info level unless this connection has used up its
        lines; C{kind} names the line in the summary.
        """
        self._emit(self.log.info, kind, format, kw)

    def warn(self, kind, format, **kw):
        """
        As L{info}, at warning level (the same lines count for both).
        """
        self._emit(self.log.warn, kind, format, kw)

    def _emit(self, emit, kind, format, kw):
        now = self.clock.seconds()
        if self._windowStart is None or now - self._windowStart >= self.limits.logInterval:
            self.flush()
            self._windowStart = now
            self._lines = 0
        if self._lines < self.limits.logBurst:
            self._lines += 1
            emit(format, **kw)
            return
        self._suppressed[kind] += 1
        if self._summaryCall is None:
            self._summaryCall = self.clock.callLater(
                max(0, self._windowStart + self.limits.logInterval - now), self._windowEnded)

    def _windowEnded(self):
        self._summaryCall = None
        self.flush()

    def flush(self):
        """
        Log the summary of what was suppressed, if anything was.
        """
        if self._summaryCall is not None:
            if self._summaryCall.active():
                self._summaryCall.cancel()
            self._summaryCall = None
        if not self._suppressed:
            return
        counts, self._suppressed = self._suppressed, Counter()
        self.log.info(self.prefix + "{suppressed} more log lines suppressed ({kinds})",
                      suppressed=sum(counts.values()),
                      kinds=", ".join("%s: %d" % (kind, n) for kind, n in
                                      sorted(counts.items())),
                      **self.fields)
