"""
Tests for L{spicesrv.tls.endpoint}: a SPICE server on a real TLS loopback port,
read by a client that reads as spice-gtk does.

spice-gtk reads each message with C{SSL_read} of exactly the sizes it needs
and, between messages, waits for the socket to become readable; it never
looks at C{SSL_pending}.  A message that shares a TLS record with the one
before it is already decrypted in OpenSSL's buffer while the socket is
quiet, and the client only sees it when some later bytes arrive (with
Twisted's default TLS transport: the first PING, 100 ms late).  These tests
check the property that prevents it, the way libspice-server has it: after
every message the client reads, nothing is left decrypted and unread.  They
also check that TCP_NODELAY reaches the socket under the TLS layer.
"""

import fcntl
import select
import socket
import struct
import termios
import time

import numpy
from OpenSSL import SSL

from twisted.internet import defer, endpoints, reactor, task, threads
from twisted.internet.interfaces import IHandshakeListener, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from zope.interface import implementer

from spicesrv import tls
from spicesrv.link import LinkProtocol
from spicesrv.channel import MINI_HEADER
from spicesrv.display import ratecontrol
from spicesrv.testing import (
    FakeDisplaySource, linkMessage, makeTestServer, parseLinkReply, ticketBytes)
from spicesrv.tls.endpoint import THREAD_PAUSE, TLSServerEndpoint
from spicesrv.wire.constants import ChannelType, LinkErr
from spicesrv.wire.messages import DISPLAY_CLIENT, DISPLAY_SERVER, MAIN_CLIENT, MAIN_SERVER

#: Seconds the client waits for the socket before giving up.
WAIT = 10


class SpiceGtkLikeChannel(object):
    """
    One channel's client end over TLS on a blocking-style loop: reads
    exactly the bytes a message needs, waits only on the socket, and
    records after each message how many decrypted bytes OpenSSL still held
    (C{SSL_pending}); spice-gtk would not see those until the socket woke
    it.  Runs in a thread (it blocks).
    """

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
        self.sock.setblocking(False)
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_verify(SSL.VERIFY_NONE, lambda *args: True)
        self.conn = SSL.Connection(context, self.sock)
        self.conn.set_connect_state()
        self._retry(self.conn.do_handshake)
        #: C{(what, pending bytes)} after each message read.
        self.leftovers = []

    def _wait(self, forWrite=False):
        ready = select.select([] if forWrite else [self.sock],
                              [self.sock] if forWrite else [], [], WAIT)
        if not any(ready):
            raise AssertionError("nothing arrived on the socket within %d s" % (WAIT,))

    def _retry(self, call, *args):
        while True:
            try:
                return call(*args)
            except SSL.WantReadError:
                self._wait()
            except SSL.WantWriteError:
                self._wait(forWrite=True)

    def send(self, data):
        while data:
            sent = self._retry(self.conn.send, data)
            data = data[sent:]

    def read(self, size):
        data = b""
        while len(data) < size:
            data += self._retry(self.conn.recv, size - len(data))
        return data

    def done(self, what):
        self.leftovers.append((what, self.conn.pending()))

    def link(self, channelType, connectionId=0):
        """
        Link the channel without a password; return the link result.
        """
        self.send(linkMessage(channelType, connection_id=connectionId))
        header = self.read(16)
        (size,) = struct.unpack_from("<I", header, 12)
        reply = parseLinkReply(header + self.read(size))[0]
        self.done("link reply")
        self.send(ticketBytes(reply))
        (result,) = struct.unpack("<I", self.read(4))
        self.done("link result")
        return result

    def message(self, table):
        """
        Read one message (mini header); return its name and record.
        """
        msgType, size = MINI_HEADER.unpack(self.read(MINI_HEADER.size))
        body = self.read(size)
        message = table.byNumber[msgType]
        self.done(message.name)
        return message.name, message.unpack(body, exact=False)

    def sendMessage(self, message, **fields):
        body = message.pack(**fields)
        self.send(MINI_HEADER.pack(message.number, len(body)) + body)

    def close(self):
        self.sock.close()


def firstPicture(port):
    """
    Link main and display as spice-gtk does and read up to the first
    picture's MARK.  Return the two channels (still open).
    """
    main = SpiceGtkLikeChannel(port)
    try:
        if main.link(ChannelType.MAIN) != LinkErr.OK:
            raise AssertionError("main link refused")
        name, init = main.message(MAIN_SERVER)
        if name != "INIT":
            raise AssertionError("main channel began with %s" % (name,))
        main.sendMessage(MAIN_CLIENT["ATTACH_CHANNELS"])
        while main.message(MAIN_SERVER)[0] != "CHANNELS_LIST":
            pass
        display = SpiceGtkLikeChannel(port)
    except BaseException:
        main.close()
        raise
    try:
        if display.link(ChannelType.DISPLAY, init.session_id) != LinkErr.OK:
            raise AssertionError("display link refused")
        display.sendMessage(DISPLAY_CLIENT["INIT"], pixmap_cache_id=1,
                            pixmap_cache_size=1 << 20, glz_dictionary_id=1,
                            glz_dictionary_window_size=1 << 22)
        while display.message(DISPLAY_SERVER)[0] != "MARK":
            pass
    except BaseException:
        main.close()
        display.close()
        raise
    return main, display


class RecordingFactory(Factory):
    """The server's factory, keeping every protocol it builds."""

    def __init__(self, factory):
        self.factory = factory
        self.built = []

    def buildProtocol(self, addr):
        protocol = self.factory.buildProtocol(addr)
        self.built.append(protocol)
        return protocol


class TLSPortTests(unittest.TestCase):
    def setUp(self):
        made = tls.write_dev_certs(self.mktemp())
        self.options = tls.load_server_tls(x509_dir=made.directory)
        self.server = makeTestServer(clock=reactor, disable_ticketing=True)
        self.server.tlsAvailable = True
        source = FakeDisplaySource(320, 200)
        # Noise: an image that does not compress, so the DRAW_COPY spans
        # several 16 KiB records before the MARK.
        noise = numpy.random.RandomState(7).randint(0, 256, source.frame.shape)
        source.frame[...] = noise.astype(numpy.uint8)
        self.server.addInterface(source)

    @defer.inlineCallbacks
    def listen(self, endpoint):
        factory = RecordingFactory(self.server.factory())
        port = yield endpoint.listen(factory)
        self.addCleanup(port.stopListening)
        return port.getHost().port, factory

    @defer.inlineCallbacks
    def firstPicture(self, port):
        main, display = yield threads.deferToThread(firstPicture, port)
        self.addCleanup(main.close)
        self.addCleanup(display.close)
        return main, display

    @defer.inlineCallbacks
    def test_everyMessageEndsItsRecords(self):
        """
        Over the TLS port no message shares a TLS record with the message
        after it: the link result is not followed by INIT in the same
        record, nor a DRAW_COPY's end by the MARK.  A client that waits on
        the socket between messages, as spice-gtk does, never has a message
        stuck in OpenSSL's buffer.
        """
        port, _ = yield self.listen(TLSServerEndpoint(reactor, 0, self.options,
                                                      interface="127.0.0.1"))
        main, display = yield self.firstPicture(port)
        mainNames = [what for what, _ in main.leftovers]
        self.assertEqual(mainNames[:3], ["link reply", "link result", "INIT"])
        self.assertIn("DRAW_COPY", [what for what, _ in display.leftovers])
        self.assertEqual([(what, n) for what, n in main.leftovers + display.leftovers if n],
                         [])

    @defer.inlineCallbacks
    def test_twistedDefaultSharesRecords(self):
        """
        The control: with Twisted's default TLS transport
        (C{SSL4ServerEndpoint}, which buffers writes within a reactor
        iteration) the same client finds messages already decrypted behind
        the one it read, the stall this port exists to avoid.  (If Twisted
        stops buffering, this is skipped, not failed.)
        """
        self.patch(LinkProtocol, "_warnedBuffering", False)
        logged = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        port, _ = yield self.listen(endpoints.SSL4ServerEndpoint(
            reactor, 0, self.options, interface="127.0.0.1"))
        main, display = yield self.firstPicture(port)
        warnings = [e for e in logged
                    if "buffering TLS transport" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1, "one warning for the server, not one per link")
        stuck = [what for what, n in main.leftovers + display.leftovers if n]
        if not stuck:
            raise unittest.SkipTest("Twisted's default TLS transport no longer "
                                    "puts several writes in one record")
        self.assertIn("link result", stuck)

    @defer.inlineCallbacks
    def test_tcpNoDelayUnderTLS(self):
        """
        The link sets TCP_NODELAY; under the TLS layer it reaches the TCP
        socket, as with plain TCP (libspice-server sets it on every
        channel).
        """
        port, factory = yield self.listen(TLSServerEndpoint(reactor, 0, self.options,
                                                            interface="127.0.0.1"))
        yield self.firstPicture(port)
        self.assertEqual(len(factory.built), 2)
        for link in factory.built:
            tcp = link.transport.transport
            sock = tcp.getHandle()
            self.assertNotEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 0)

    @defer.inlineCallbacks
    def test_ipv6Interface(self):
        """
        The endpoint listens on an IPv6 address too (C{--addr ::1}).
        """
        if not socket.has_ipv6:
            raise unittest.SkipTest("no IPv6")
        endpoint = TLSServerEndpoint(reactor, 0, self.options, interface="::1")
        try:
            port = yield endpoint.listen(self.server.factory())
        except Exception as e:
            raise unittest.SkipTest("cannot listen on ::1: %s" % (e,))
        self.addCleanup(port.stopListening)
        self.assertEqual(port.getHost().host, "::1")


@implementer(IHandshakeListener)
class Sender(Protocol):
    """
    Once the handshake is done, calls C{plan} with its transport (the
    writes to make); records when its connection ends.
    """

    def __init__(self, plan):
        self.plan = plan
        self.lost = defer.Deferred()

    def handshakeCompleted(self):
        self.plan(self.transport)

    def connectionLost(self, reason):
        self.reason = reason
        self.lost.callback(None)


def readAll(port, stopAfter=None):
    """
    A blocking TLS client: read until the server's close alert, an error
    or C{stopAfter} bytes; return C{(data, "closed" | "reset" | "stopped")}.
    """
    channel = SpiceGtkLikeChannel(port)
    data = []
    received = 0
    try:
        while stopAfter is None or received < stopAfter:
            try:
                chunk = channel._retry(channel.conn.recv, 1 << 16)
            except SSL.ZeroReturnError:
                return b"".join(data), "closed"
            except (SSL.Error, OSError):
                return b"".join(data), "reset"
            data.append(chunk)
            received += len(chunk)
        return b"".join(data), "stopped"
    finally:
        channel.close()


class ThreadedEncryptionTests(unittest.TestCase):
    """
    After the handshake, long writes are encrypted by a thread: the peer
    still gets every byte in the order written, a close waits for what is
    being encrypted, an abort or a vanished peer ends it all quietly.
    """

    def setUp(self):
        made = tls.write_dev_certs(self.mktemp())
        self.options = tls.load_server_tls(x509_dir=made.directory)
        self.senders = []

    @defer.inlineCallbacks
    def serve(self, plan):
        def build():
            sender = Sender(plan)
            self.senders.append(sender)
            return sender
        endpoint = TLSServerEndpoint(reactor, 0, self.options, interface="127.0.0.1")
        port = yield endpoint.listen(Factory.forProtocol(build))
        self.addCleanup(port.stopListening)
        return port.getHost().port

    @defer.inlineCallbacks
    def test_orderAndCleanClose(self):
        """
        Short and long writes, and a long writeSequence, arrive in the order
        written; loseConnection right after them sends them all before the
        close alert.
        """
        noise = numpy.random.RandomState(3)
        long1 = noise.bytes(1 << 20)
        long2 = noise.bytes(300 * 1024)
        waited = []

        def plan(transport):
            transport.write(b"first")
            transport.write(long1)
            transport.write(b"between")
            transport.writeSequence([b"header", long2])
            waited.append(transport.awaitingEncryption)
            transport.write(b"last")
            transport.loseConnection()
        port = yield self.serve(plan)
        data, end = yield threads.deferToThread(readAll, port)
        self.assertEqual(end, "closed")
        self.assertEqual(data, b"first" + long1 + b"between" + b"header" + long2 + b"last")
        self.assertLessEqual(waited[0], len(long1 + b"between" + b"header" + long2))
        yield self.senders[0].lost
        self.assertEqual(self.senders[0].transport.awaitingEncryption, 0)

    @defer.inlineCallbacks
    def test_abortDropsWhatWaits(self):
        """
        abortConnection does not wait for the thread: the peer gets at most
        a beginning of what was written, and nothing is logged.
        """
        stream = numpy.random.RandomState(4).bytes(16 << 20)

        def plan(transport):
            for i in range(0, len(stream), 1 << 20):
                transport.write(stream[i:i + (1 << 20)])
            transport.abortConnection()
        port = yield self.serve(plan)
        data, end = yield threads.deferToThread(readAll, port)
        self.assertIn(end, ("reset", "closed"))
        self.assertLess(len(data), len(stream))
        self.assertEqual(data, stream[:len(data)])
        yield self.senders[0].lost

    @defer.inlineCallbacks
    def test_peerGoneMidStream(self):
        """
        A peer that closes while megabytes wait for encryption ends the
        connection (connectionLost) without an error logged.
        """
        stream = numpy.random.RandomState(5).bytes(32 << 20)

        def plan(transport):
            for i in range(0, len(stream), 1 << 20):
                transport.write(stream[i:i + (1 << 20)])
        port = yield self.serve(plan)
        data, end = yield threads.deferToThread(readAll, port, 1 << 20)
        self.assertEqual(end, "stopped")
        self.assertEqual(data, stream[:len(data)])
        yield self.senders[0].lost

    @defer.inlineCallbacks
    def test_connectionsTakeTurns(self):
        """
        A connection's thread work goes in turns of TURN_BYTES: a display
        that keeps writing does not hold a thread the other connections'
        writes wait for.  (The bytes still arrive whole and in order.)
        """
        from spicesrv.tls import endpoint
        pool = endpoint.encryptionThreads(reactor)
        jobs = []
        run = pool.run

        def counting(job):
            jobs.append(job)
            run(job)
        pool.run = counting
        self.addCleanup(setattr, pool, "run", run)
        stream = numpy.random.RandomState(6).bytes(4 * endpoint.TURN_BYTES)

        def plan(transport):
            transport.write(stream)
            transport.loseConnection()
        port = yield self.serve(plan)
        data, end = yield threads.deferToThread(readAll, port)
        self.assertEqual((end, data == stream), ("closed", True))
        self.assertGreaterEqual(len(jobs), 4)

    def test_queuedBytesCountsWhatWaits(self):
        """
        The display's flow control counts bytes the TLS layer holds as
        queued.
        """
        class Waiting:
            bufferedBytes = 12345

        self.assertEqual(ratecontrol.queuedBytes(Waiting()), 12345)

    @defer.inlineCallbacks
    def test_recordsWaitingForTheReactorCount(self):
        """
        Records a thread made count as buffered until the reactor thread
        hands them to TCP: between the two, the bytes are neither waiting
        for encryption nor anywhere TCP could report them.
        """
        payload = numpy.random.RandomState(5).bytes(600 * 1024)
        seen = []

        def write(transport):
            transport.write(payload)
            # The reactor thread stays here, so the records wait for it.
            deadline = time.monotonic() + WAIT
            while transport.awaitingEncryption and time.monotonic() < deadline:
                time.sleep(0.001)
            seen.append((transport.awaitingEncryption, transport.bufferedBytes))
            transport.loseConnection()

        def plan(transport):
            # (Out of the handshake's call, which holds the connection's lock.)
            reactor.callLater(0, write, transport)
        port = yield self.serve(plan)
        data, end = yield threads.deferToThread(readAll, port)
        self.assertEqual((end, data == payload), ("closed", True))
        (waiting, buffered), = seen
        self.assertEqual(waiting, 0)
        self.assertGreaterEqual(buffered, len(payload))
        self.assertEqual(self.senders[0].transport.bufferedBytes, 0)

    @defer.inlineCallbacks
    def test_queuedBytesCountsTheKernelQueueUnderTLS(self):
        """
        What the kernel still holds for a peer that does not read counts as
        queued through the TLS layer as it does for the TCP transport under
        it (the TLS layer's handle is OpenSSL's connection, not the socket:
        a display over TLS measured a 10 Mbit/s link as fast).
        """
        written = defer.Deferred()

        def plan(transport):
            transport.write(numpy.random.RandomState(6).bytes(4 << 20))
            written.callback(transport)
        port = yield self.serve(plan)
        channel = yield threads.deferToThread(SpiceGtkLikeChannel, port)
        self.addCleanup(channel.close)
        transport = yield written
        tcp = transport.transport
        previous = None
        for _ in range(500):
            yield task.deferLater(reactor, 0.01, lambda: None)
            now = ratecontrol.queuedBytes(tcp)
            if transport.bufferedBytes == 0 and now == previous:
                break
            previous = now
        kernel = struct.unpack("i", fcntl.ioctl(tcp.getHandle().fileno(), termios.TIOCOUTQ,
                                                b"\0\0\0\0"))[0]
        self.assertGreater(kernel, 0)
        self.assertEqual(ratecontrol.queuedBytes(transport),
                         transport.bufferedBytes + ratecontrol.queuedBytes(tcp))

    @defer.inlineCallbacks
    def test_threadSendsOnItsOwnSocket(self):
        """
        A thread that encrypts a long write also sends the records while the
        kernel takes them: the reactor thread does not hand them to TCP
        (their copy and system calls stay off it), and the peer gets every
        byte in order.
        """
        payload = numpy.random.RandomState(7).bytes(8 << 20)
        handed = []

        def plan(transport):
            tcp = transport.transport
            writeSequence = tcp.writeSequence

            def counting(iovec):
                handed.append(sum(len(piece) for piece in iovec))
                writeSequence(iovec)
            tcp.writeSequence = counting
            transport.write(payload)
            transport.loseConnection()
        port = yield self.serve(plan)
        data, end = yield threads.deferToThread(readAll, port)
        self.assertEqual((end, len(data), data == payload), ("closed", len(payload), True))
        self.assertLess(sum(handed), len(payload))
        yield self.senders[0].lost

    @defer.inlineCallbacks
    def test_peerThatDoesNotReadHoldsNoThread(self):
        """
        When the kernel stops taking a connection's records (a slow link, a
        peer that does not read), its thread hands them to the TCP transport
        and goes on: another connection's long writes still go out, and the
        slow peer, once it reads, gets every byte in order.
        """
        from spicesrv.tls import endpoint
        pool = endpoint.encryptionThreads(reactor)
        pool.run(lambda: None)
        # One thread, as on a two-CPU machine: a blocked one would block all.
        pool._pool.adjustPoolsize(0, 1)
        self.addCleanup(lambda: pool._pool and pool._pool.adjustPoolsize(0, pool._size))
        slowStream = numpy.random.RandomState(8).bytes(16 << 20)
        fastStream = numpy.random.RandomState(9).bytes(4 << 20)
        plans = [slowStream, fastStream]
        slowWritten = defer.Deferred()

        def plan(transport):
            stream = plans.pop(0)
            transport.write(stream)
            transport.loseConnection()
            if stream is slowStream:
                slowWritten.callback(transport)
        port = yield self.serve(plan)
        slow = yield threads.deferToThread(SpiceGtkLikeChannel, port)
        self.addCleanup(slow.close)
        slowTransport = yield slowWritten
        data, end = yield threads.deferToThread(readAll, port)
        self.assertEqual((end, data == fastStream), ("closed", True))
        self.assertGreater(slowTransport.awaitingEncryption + ratecontrol.queuedBytes(
            slowTransport.transport), 0)

        def readSlow():
            chunks = []
            while True:
                try:
                    chunks.append(slow._retry(slow.conn.recv, 1 << 16))
                except SSL.ZeroReturnError:
                    return b"".join(chunks)
        received = yield threads.deferToThread(readSlow)
        self.assertEqual((len(received), received == slowStream), (len(slowStream), True))

    @defer.inlineCallbacks
    def test_producerPausedForTheThreadResumes(self):
        """
        A streaming producer that wrote more than the thread has sent is
        paused, as a full TCP buffer would pause it, and resumed once the
        thread caught up.
        """
        events = []
        done = defer.Deferred()
        piece = numpy.random.RandomState(10).bytes(256 * 1024)
        # Twice what pauses it.
        total = 2 * THREAD_PAUSE // len(piece)

        @implementer(IPushProducer)
        class Producer:
            written = 0
            paused = False

            def __init__(self, transport):
                self.transport = transport

            def pauseProducing(self):
                events.append("pause")
                self.paused = True

            def resumeProducing(self):
                events.append("resume")
                self.paused = False
                self.produce()

            def stopProducing(self):
                pass

            def produce(self):
                while not self.paused and self.written < total:
                    self.written += 1
                    self.transport.write(piece)
                if self.written == total and not done.called:
                    done.callback(self)

        def plan(transport):
            producer = Producer(transport)
            transport.registerProducer(producer, True)
            reactor.callLater(0, producer.produce)
        port = yield self.serve(plan)
        data, end = yield threads.deferToThread(readAll, port, total * len(piece))
        self.assertEqual((end, data == piece * total), ("stopped", True))
        producer = yield done
        self.assertIn("pause", events)
        self.assertEqual(events[-1], "resume")
        self.assertFalse(producer.paused)
