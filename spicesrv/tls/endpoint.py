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

Encrypting is work the reactor thread need not do.  After the handshake, a
write of L{THREAD_WRITE} bytes or more (a display channel's pictures) is
encrypted by one of a few threads shared by all connections
(L{EncryptionThreads}), while the reactor goes on: OpenSSL runs without
Python's lock.  A connection's writes still become records in the order
they were made (a write made while an earlier one waits for its thread
waits too), and its records reach the socket in the order OpenSSL made
them.  Every use of a connection's OpenSSL object holds the connection's
lock; the reactor thread waits for it at most while L{LOCKED_CHUNK} bytes
are encrypted.

The thread also sends the records, on a socket of its own (a duplicate of
the connection's), when the TCP transport held nothing the kernel had not
taken as the thread began: their copy into the kernel and the system calls
then stay off the reactor thread, which spent about a quarter of its time on
them for a display sending pictures as fast as loopback takes them.  It sends
only while the kernel takes the records at once: at the first refusal (a
slow link, a peer that does not read) it gives its socket up, and the rest
of its records, like all records when it has none, go to the TCP transport
from the reactor thread, which waits for the link; a thread never waits for
a socket.  A producer that wrote more than L{THREAD_PAUSE} ahead of such a
thread is paused, as a full TCP buffer pauses it, until under
L{THREAD_RESUME} wait.

Bytes waiting for a thread and the records not yet handed to the kernel
or the TCP transport count as queued for the display's flow control
(L{MessageRecordsTLSProtocol.bufferedBytes}); a close waits until they
have gone, an abort drops them.
"""

import os
import socket
import threading
from collections import deque

from OpenSSL.SSL import Error, WantReadError
from zope.interface import implementer

from twisted.internet import defer
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from spicesrv.limits import transportBuffered

__all__ = ["EncryptionThreads", "MessageRecordsTLSFactory", "MessageRecordsTLSProtocol",
           "TLSServerEndpoint"]

#: The most application bytes given to OpenSSL in one call.
WRITE_CHUNK = 1 << 20
#: The most TLS bytes taken out of OpenSSL in one call.
READ_CHUNK = 1 << 20
#: Bytes waiting for a thread that sends on its own socket over which the
#: producer pauses (as the TCP transport's full buffer would pause it), and
#: under which it resumes: about two full-HD pictures and one, so that a
#: display prepares its next picture while the thread encrypts the last
#: (with half a MiB, the display waited for the thread to finish each
#: picture, and the thread then for the display: bulk pictures over TLS came
#: 5 % (raw) and 12 % (LZ4) slower; benchmarks/README.md, issue 14's eighth
#: pass).  A slow link never gets this far: there the thread gives its
#: socket up and the display's own rate control holds it.
THREAD_PAUSE = 16 * 1024 * 1024
THREAD_RESUME = 8 * 1024 * 1024

#: Writes at least this long are encrypted by a thread, once the handshake
#: is done.
THREAD_WRITE = 64 * 1024
#: The most bytes a thread encrypts per hold of a connection's lock.
LOCKED_CHUNK = 256 * 1024
#: The most bytes a thread encrypts for one connection before it lets the
#: other connections' waiting writes have their turn.
TURN_BYTES = 1 << 20


class EncryptionThreads:
    """
    The threads that encrypt long writes for the TLS connections of one
    reactor (L{encryptionThreads}): one fewer than the CPUs (at least one),
    started when first needed and stopped when the reactor stops.  A
    connection has at most one of them at work at a time.
    """

    def __init__(self, reactor, size=None):
        self.reactor = reactor
        self._size = size or max(1, (os.cpu_count() or 2) - 1)
        self._pool = None

    def run(self, job):
        """Call C{job} in one of the threads."""
        if self._pool is None:
            self._pool = ThreadPool(0, self._size, name="spicesrv-tls-encrypt")
            self._pool.start()
            self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        self._pool.callInThread(job)

    def stop(self):
        if self._pool is not None:
            self._pool.stop()
            self._pool = None


_shared = []


def encryptionThreads(reactor):
    """The L{EncryptionThreads} of this process, for C{reactor}."""
    if not _shared or _shared[0].reactor is not reactor:
        _shared[:] = [EncryptionThreads(reactor)]
    return _shared[0]


class MessageRecordsTLSProtocol(TLSMemoryBIOProtocol):
    """
    L{TLSMemoryBIOProtocol} that encrypts a large write in few calls (the
    same records: every write encrypted at once, 16 KiB records, the last
    one ending with the write), long writes in a thread.

    @ivar awaitingEncryption: bytes written and not yet encrypted.
    """

    awaitingEncryption = 0

    @property
    def bufferedBytes(self):
        """
        Bytes written that the TCP socket has not taken yet, above Twisted's
        buffer: those waiting for encryption, and the records a thread made
        that wait for it or for the reactor thread to send them.
        """
        with self._handover:
            return self.awaitingEncryption + sum(len(record) for record in self._records)

    def makeConnection(self, transport):
        # The OpenSSL object's lock, and the lock of what is handed between
        # the threads (taken inside the first, never the other way round).
        self._lock = threading.RLock()
        self._handover = threading.Lock()
        self._waiting = deque()         # pieces of writes for the thread
        self._threadBusy = False
        self._records = []              # TLS bytes not yet on the transport
        self._threadFailure = None
        self._shutdownWaits = False
        self._socket = None             # the busy thread's own socket
        self._pausedForThread = False   # the producer waits for the thread
        self._resumeAsked = False
        TLSMemoryBIOProtocol.makeConnection(self, transport)

    # -- writing ---------------------------------------------------------------

    def writeSequence(self, iovec):
        pieces = [piece for piece in iovec if piece]
        if self._handshakeDone and sum(len(piece) for piece in pieces) >= THREAD_WRITE:
            if self.disconnecting and self._producer is None:
                return
            # Not joined here: the thread encrypts the pieces one by one.
            self._queue(pieces)
        else:
            self.write(b"".join(pieces))

    def _write(self, data):
        if self._lostTLSConnection:
            return
        if self._handshakeDone and (self._threadBusy or len(data) >= THREAD_WRITE):
            self._queue([data])
            return
        with self._lock:
            self._encrypt(data)
        self._flushRecords()

    def _encrypt(self, data):
        """Encrypt C{data} now (the lock held)."""
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
                self._takeRecords()

    def _queue(self, pieces):
        if self._lostTLSConnection:
            return
        with self._handover:
            for piece in pieces:
                self._waiting.append(memoryview(piece))
                self.awaitingEncryption += len(piece)
            start, self._threadBusy = not self._threadBusy, True
            if start:
                self._socket = self._threadSocket()
        if (self._socket is not None and self._producer is not None
                and not self._pausedForThread and self.bufferedBytes > THREAD_PAUSE):
            # As the TCP transport does when its buffer fills.
            self._pausedForThread = True
            self._producer.pauseProducing()
        if start:
            self.factory.encryptionThreads.run(self._encryptWaiting)

    def _threadSocket(self):
        """
        A socket of the thread's own on the connection, when the TCP
        transport holds nothing the kernel did not take (so the thread's
        records follow everything written before); else L{None}, and the
        reactor thread writes the records.
        """
        transport = self.transport
        if transportBuffered(transport):
            return None
        # Only the transport's own socket (not limits.socketOf, which looks
        # through further layers): records sent under a layer would skip it.
        try:
            handle = transport.getHandle()
        except Exception:
            return None
        if not isinstance(handle, socket.socket):
            return None
        try:
            return socket.socket(fileno=os.dup(handle.fileno()))
        except OSError:
            return None

    def _encryptWaiting(self):
        """
        In a thread: encrypt the waiting pieces in order, a locked chunk at
        a time, and send the records on the thread's socket while the kernel
        takes them at once (else have the reactor write them out); after
        L{TURN_BYTES}, wait behind the other connections' turns.
        """
        threads = self.factory.encryptionThreads
        callFromThread = threads.reactor.callFromThread
        done = 0
        while True:
            if done >= TURN_BYTES:
                # The others' turn: this connection goes to the back of the
                # line (a display that keeps writing would hold the thread).
                threads.run(self._encryptWaiting)
                return
            with self._lock:
                with self._handover:
                    if (not self._waiting or self._tlsConnection is None
                            or self._lostTLSConnection):
                        self._dropWaiting()
                        self._threadBusy = False
                        break
                    piece = self._waiting[0]
                try:
                    sent = self._tlsConnection.send(piece[:LOCKED_CHUNK])
                except Error:
                    # (WantReadError too: TLS 1.3 has no renegotiation.)
                    with self._handover:
                        self._threadFailure = Failure()
                        self._dropWaiting()
                        self._threadBusy = False
                    break
                records = self._bioRecords()
                done += sent
                with self._handover:
                    if self._waiting and self._waiting[0] is piece:
                        if sent == len(piece):
                            self._waiting.popleft()
                        else:
                            self._waiting[0] = piece[sent:]
                        self.awaitingEncryption -= sent
                    self._records.extend(records)
            if self._socket is None or not self._sendRecords():
                callFromThread(self._flushRecords)
        self._closeSocket()
        callFromThread(self._flushRecords)

    def _sendRecords(self):
        """
        In a thread: send the records on the thread's socket.  When the
        kernel does not take them all at once (a slow link), the thread
        gives its socket up: the rest, and the records it makes until it
        is done, go through the TCP transport, which waits for the link in
        the reactor.  Returns whether all were sent.
        """
        while True:
            with self._handover:
                if not self._records:
                    break
                record = self._records[0]
            try:
                sent = self._socket.send(record)
            except OSError as e:
                if not isinstance(e, BlockingIOError):
                    with self._handover:
                        self._threadFailure = Failure(ConnectionLost(
                            "sending TLS records: %s" % (e.strerror or e,)))
                        self._dropWaiting()
                self._closeSocket()
                return False
            with self._handover:
                if self._records and self._records[0] is record:
                    if sent == len(record):
                        del self._records[0]
                    else:
                        self._records[0] = record[sent:]
        if self._pausedForThread and not self._resumeAsked and self.bufferedBytes < THREAD_RESUME:
            self._resumeAsked = True
            self.factory.encryptionThreads.reactor.callFromThread(self._resumeForThread)
        return True

    def _closeSocket(self):
        """In a thread: the thread is done with its socket."""
        with self._handover:
            sock, self._socket = self._socket, None
        if sock is not None:
            sock.close()

    def _resumeForThread(self):
        """In the reactor thread: what waited for the thread went out."""
        self._resumeAsked = False
        if self._pausedForThread:
            self._pausedForThread = False
            if self._producer is not None:
                self._producer.resumeProducing()

    def _bioRecords(self):
        """The TLS bytes OpenSSL made, taken out of it (the lock held)."""
        records = []
        while True:
            try:
                records.append(self._tlsConnection.bio_read(READ_CHUNK))
            except WantReadError:
                return records

    def _takeRecords(self):
        """Take the TLS bytes OpenSSL made out of it (the lock held)."""
        records = self._bioRecords()
        with self._handover:
            self._records.extend(records)

    def _dropWaiting(self):
        """Forget what waits for encryption (the handover lock held)."""
        self._waiting.clear()
        self.awaitingEncryption = 0

    def _flushRecords(self):
        """
        In the reactor thread: write what OpenSSL made, in its order (unless
        the thread sends it on its own socket); then a close that waited
        for the thread, or the thread's error.
        """
        with self._handover:
            if self._socket is not None:
                return
            records, self._records = self._records, []
            idle = not self._threadBusy
            failure, self._threadFailure = self._threadFailure, None
        if records and self.transport is not None:
            self.transport.writeSequence(records)
        if idle:
            self._resumeForThread()
        if failure is not None and not failure.check(Error):
            # The thread's socket failed: the connection is gone.
            if self._reason is None:
                self._reason = failure
            self._lostTLSConnection = True
            if self.transport is not None:
                self.transport.abortConnection()
        elif failure is not None:
            self._tlsShutdownFinished(failure)
        elif idle and self._shutdownWaits:
            self._shutdownWaits = False
            self._shutdownTLS()

    def _flushSendBIO(self):
        with self._lock:
            if self._tlsConnection is not None:
                self._takeRecords()
        self._flushRecords()

    # -- everything else that uses OpenSSL holds the lock --------------------------

    def dataReceived(self, data):
        with self._lock:
            TLSMemoryBIOProtocol.dataReceived(self, data)

    def _shutdownTLS(self):
        with self._lock:
            with self._handover:
                if self._threadBusy and not self._aborted:
                    # What waits for the thread goes before the close alert.
                    self._shutdownWaits = True
                    return
                self._dropWaiting()
            TLSMemoryBIOProtocol._shutdownTLS(self)

    def connectionLost(self, reason):
        with self._lock:
            with self._handover:
                self._dropWaiting()
            TLSMemoryBIOProtocol.connectionLost(self, reason)

    def getPeerCertificate(self):
        with self._lock:
            return TLSMemoryBIOProtocol.getPeerCertificate(self)

    @property
    def negotiatedProtocol(self):
        with self._lock:
            return TLSMemoryBIOProtocol.negotiatedProtocol.fget(self)


class MessageRecordsTLSFactory(TLSMemoryBIOFactory):
    """
    Server-side TLS around C{wrappedFactory}'s protocols, encrypting each
    write into records of its own (no buffering across writes), long ones
    in its L{EncryptionThreads}.
    """

    protocol = MessageRecordsTLSProtocol

    def __init__(self, *args, **kwargs):
        TLSMemoryBIOFactory.__init__(self, *args, **kwargs)
        reactor = kwargs.get("clock")
        if reactor is None:
            from twisted.internet import reactor
        self.encryptionThreads = encryptionThreads(reactor)


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
