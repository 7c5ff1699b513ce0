"""
The TLS port for SPICE clients (L{TLSServerEndpoint}): every write becomes
TLS records of its own.

Twisted's default TLS transport (L{twisted.protocols.tls.BufferingTLSTransport},
what C{reactor.listenSSL}, C{SSL4ServerEndpoint} and C{ssl:} endpoint strings
give) gathers the writes of one reactor iteration and encrypts them together,
so several SPICE messages share one TLS record: the link result and the main
channel's INIT, a DRAW_COPY's last bytes and the MARK after it.

spice-gtk cannot read that promptly.  Its channel loop reads one message at
a time with C{SSL_read} and, between messages, waits for the I{socket} to
become readable (C{spice_channel_iterate_read}); it never asks OpenSSL
whether decrypted bytes are already waiting (C{SSL_pending}).  Whatever
followed the message it read in the same record stays in OpenSSL's buffer
until more bytes reach the socket: over loopback that was the first PING,
100 ms later.  The client's timeline showed it as the main channel opening
at 9 ms and the channel list arriving at 117 ms.

libspice-server writes every message with C{SSL_write}s of its own (no
message shares a record with the next), and so does this port: it wraps
connections in L{twisted.protocols.tls.TLSMemoryBIOProtocol}, which encrypts
each C{write} at once.  A channel writes one message per call, so a message
always ends its last record.  Large messages still go as full 16 KiB
records, and the TCP layer underneath still gathers records into segments.

That protocol hands OpenSSL 16 KiB at a time and takes each record out with
a round of Python calls of its own; for a display channel sending full-HD
pictures that per-record overhead cost more than the encryption (about 1.2
ms of CPU per MB against 0.2).  L{MessageRecordsTLSProtocol} hands OpenSSL
up to L{WRITE_CHUNK} at once (OpenSSL cuts it into the same 16 KiB records)
and takes all the records out together.
"""

from OpenSSL.SSL import Error, WantReadError
from zope.interface import implementer

from twisted.internet import defer
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure

__all__ = ["MessageRecordsTLSFactory", "MessageRecordsTLSProtocol", "TLSServerEndpoint"]

#: The most application bytes given to OpenSSL in one call.
WRITE_CHUNK = 1 << 20
#: The most TLS bytes taken out of OpenSSL in one call.
READ_CHUNK = 1 << 20


class MessageRecordsTLSProtocol(TLSMemoryBIOProtocol):
    """
    L{TLSMemoryBIOProtocol} that encrypts a large write in few calls: the
    same records (every write encrypted at once, 16 KiB records, the last
    one ending with the write), with a Python round per L{WRITE_CHUNK}
    instead of one per record.
    """

    def _write(self, data):
        if self._lostTLSConnection:
            return
        view = memoryview(data)
        sent = 0
        while sent < len(view):
            try:
                sent += self._tlsConnection.send(view[sent:sent + WRITE_CHUNK])
            except WantReadError:
                # A renegotiation waits for the peer; the rest goes after.
                self._bufferedWrite(bytes(view[sent:]))
                break
            except Error:
                # As Twisted's own: lose the connection, with the error.
                self._tlsShutdownFinished(Failure())
                break
            else:
                self._flushSendBIO()

    def _flushSendBIO(self):
        chunks = []
        while True:
            try:
                chunks.append(self._tlsConnection.bio_read(READ_CHUNK))
            except WantReadError:
                break
        if chunks:
            self.transport.writeSequence(chunks)


class MessageRecordsTLSFactory(TLSMemoryBIOFactory):
    """
    Server-side TLS around C{wrappedFactory}'s protocols, encrypting each
    write into records of its own (no buffering across writes).
    """

    protocol = MessageRecordsTLSProtocol


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint(object):
    """
    Listen for TLS on TCP, as L{twisted.internet.endpoints.SSL4ServerEndpoint}
    does, but with L{MessageRecordsTLSFactory}: the endpoint for SPICE's
    C{tls-port}.

    @param options: the server's TLS settings, a
        L{spicesrv.tls.context.ServerTLS} (or any connection creator or context
        factory C{TLSMemoryBIOFactory} takes).
    @param interface: the address to listen on (IPv4 or IPv6).
    """

    def __init__(self, reactor, port, options, backlog=50, interface=""):
        self._reactor = reactor
        self._port = port
        self._options = options
        self._backlog = backlog
        self._interface = interface

    def listen(self, protocolFactory):
        factory = MessageRecordsTLSFactory(self._options, False, protocolFactory,
                                           clock=self._reactor)
        return defer.execute(self._reactor.listenTCP, self._port, factory,
                             backlog=self._backlog, interface=self._interface)
