"""
A slow link for the interop tests, without root or netem: a TCP proxy on
loopback that carries what the server sends to the client at a fixed rate
(and the client's bytes at once).  It reads from the server only as fast as
it passes the bytes on, with a small receive buffer, so the server's socket
fills as it would in front of a slow network: what the server measures of
the link is the proxy's rate.  TLS passes through untouched.
"""

import socket

from twisted.internet import endpoints, protocol, task

#: Seconds between two releases of bytes to the client.
TICK = 0.01
#: The proxy's receive buffer on its connection to the server, in bytes.
RECEIVE_BUFFER = 16 * 1024


class _ToServer(protocol.Protocol):
    """The proxy's connection to the server, for one client connection."""

    def __init__(self, client):
        self.client = client

    def connectionMade(self):
        sock = self.transport.getHandle()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.client.serverConnected(self)

    def dataReceived(self, data):
        self.client.fromServer(data)

    def connectionLost(self, reason):
        self.client.serverLost()


class _FromClient(protocol.Protocol):
    """One client connection through the proxy."""

    def __init__(self, link):
        self.link = link
        self.server = None
        self.pending = bytearray()
        self.paused = False
        self.pump = None

    def connectionMade(self):
        self.transport.pauseProducing()
        endpoint = endpoints.TCP4ClientEndpoint(self.link.reactor, "127.0.0.1",
                                                self.link.serverPort)
        d = endpoint.connect(protocol.Factory.forProtocol(lambda: _ToServer(self)))
        d.addErrback(lambda failure: self.transport.loseConnection())
        self.pump = task.LoopingCall(self._release)
        self.pump.clock = self.link.reactor
        self.pump.start(TICK, now=False)

    def serverConnected(self, server):
        self.server = server
        self.transport.resumeProducing()

    def dataReceived(self, data):
        self.server.transport.write(data)

    def fromServer(self, data):
        self.pending += data
        if len(self.pending) >= self.link.perTick and not self.paused:
            self.paused = True
            self.server.transport.pauseProducing()

    def _release(self):
        if self.pending:
            chunk = bytes(self.pending[:self.link.perTick])
            del self.pending[:len(chunk)]
            self.transport.write(chunk)
        if self.paused and len(self.pending) < self.link.perTick:
            self.paused = False
            self.server.transport.resumeProducing()

    def serverLost(self):
        self.server = None
        if self.pending:
            self.transport.write(bytes(self.pending))
            self.pending.clear()
        self.transport.loseConnection()

    def connectionLost(self, reason):
        if self.pump is not None and self.pump.running:
            self.pump.stop()
        if self.server is not None:
            self.server.transport.loseConnection()


class SlowLink:
    """
    A proxy to the server at C{serverPort} that gives each of its clients
    the server's bytes at C{rate} bytes per second.  L{listen} starts it.
    """

    def __init__(self, reactor, serverPort, rate):
        self.reactor = reactor
        self.serverPort = serverPort
        self.perTick = max(1, int(rate * TICK))
        self.port = None

    def listen(self):
        """Listen on a free loopback port; fire with its number."""
        endpoint = endpoints.TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1")
        d = endpoint.listen(protocol.Factory.forProtocol(lambda: _FromClient(self)))

        def listening(port):
            self.port = port
            return port.getHost().port
        return d.addCallback(listening)

    def stop(self):
        if self.port is not None:
            return self.port.stopListening()
