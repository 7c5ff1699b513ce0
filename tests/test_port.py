"""
In-memory tests of the port channel: the client end links through the real
link stage (L{TestClientChannel}), the backend is a real
C{TCP4ClientEndpoint} (made by L{portBackend}) on a L{MemoryReactor}, so
the test decides when and how each backend connection attempt ends.
"""

import os
import struct

import lz4.block
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject
from twisted.internet.interfaces import IPushProducer, IStreamClientEndpoint

from spicesrv.channels import port as portmodule
from spicesrv.channels.port import PortBackend, PortChannel, parseSpiceport, portBackend
from spicesrv.testing import LogCapture, ServerMessages, TestClientChannel, makeTestServer
from spicesrv.wire.constants import ChannelType, LinkErr
from spicesrv.wire.port import (
    PORT_CLIENT, PORT_SERVER, SPICEVMC_CLIENT, SPICEVMC_SERVER, DataCompression, PortEvent,
    SpicevmcCap)
from spicesrv.wire.schema import WireError

NAME = "org.qemu.console.serial.0"
ENDPOINT = "tcp:host=127.0.0.1:port=7000"
OPENED, CLOSED, BREAK = PortEvent.OPENED, PortEvent.CLOSED, PortEvent.BREAK


class WireTests(unittest.TestCase):
    def test_numbers(self):
        """
        The numbers of spice.proto's SpicevmcChannel and PortChannel.
        """
        self.assertEqual({m.name: m.number for m in PORT_SERVER if m.number > 100},
                         {"DATA": 101, "COMPRESSED_DATA": 102, "PORT_INIT": 201,
                          "PORT_EVENT": 202})
        self.assertEqual({m.name: m.number for m in PORT_CLIENT if m.number > 100},
                         {"DATA": 101, "COMPRESSED_DATA": 102, "PORT_EVENT": 201})
        self.assertEqual(sorted(m.number for m in SPICEVMC_SERVER if m.number > 100), [101, 102])
        self.assertEqual(sorted(m.number for m in SPICEVMC_CLIENT if m.number > 100), [101, 102])
        self.assertEqual((int(OPENED), int(CLOSED), int(BREAK)), (0, 1, 2))
        self.assertEqual(int(SpicevmcCap.DATA_COMPRESS_LZ4), 0)
        self.assertEqual((int(DataCompression.NONE), int(DataCompression.LZ4)), (0, 1))

    def test_portInitLayout(self):
        """
        name_size u32, name ptr32 (to just after the 9-byte fixed part),
        opened u8, then the name with its NUL, counted in name_size.
        """
        body = PORT_SERVER["PORT_INIT"].pack(name=b"com.example.echo\0", opened=1)
        self.assertEqual(body, struct.pack("<IIB", 17, 9, 1) + b"com.example.echo\0")
        parsed = PORT_SERVER["PORT_INIT"].unpack(body)
        self.assertEqual((parsed.name, parsed.opened), (b"com.example.echo\0", 1))
        self.assertRaises(WireError, PORT_SERVER["PORT_INIT"].unpack,
                          struct.pack("<IIB", 17, 0, 1) + b"com.example.echo\0")

    def test_compressedDataLayout(self):
        """
        uncompressed_size is on the wire only when the type is not NONE.
        """
        for table in (PORT_SERVER, PORT_CLIENT):
            message = table["COMPRESSED_DATA"]
            self.assertEqual(message.number, 102)
            lz4body = message.pack(type=1, uncompressed_size=300, compressed_data=b"xyz")
            self.assertEqual(lz4body, b"\x01" + struct.pack("<I", 300) + b"xyz")
            self.assertEqual(tuple(message.unpack(lz4body)), (1, 300, b"xyz"))
            plain = message.pack(type=0, uncompressed_size=None, compressed_data=b"xyz")
            self.assertEqual(plain, b"\x00xyz")
            self.assertEqual(tuple(message.unpack(plain)), (0, None, b"xyz"))
            self.assertRaises(WireError, message.unpack, b"\x01\x00\x00")

    def test_events(self):
        self.assertEqual(PORT_SERVER["PORT_EVENT"].pack(event=1), b"\x01")
        self.assertEqual(PORT_CLIENT["PORT_EVENT"].unpack(b"\x02").event, 2)


class BackendTests(unittest.TestCase):
    def test_portBackend(self):
        reactor = MemoryReactor()
        endpoint = portBackend(reactor, ENDPOINT)
        verifyObject(IStreamClientEndpoint, endpoint)
        self.assertEqual(str(endpoint), ENDPOINT)
        self.assertIn(ENDPOINT, repr(endpoint))
        endpoint.connect(portmodule._BackendFactory(None, None))
        self.assertEqual(reactor.tcpClients[0][:2], ("127.0.0.1", 7000))

    def test_badDescriptions(self):
        for bad in ("bogus:x", "tcp:host=127.0.0.1", "tcp:host=h:port=abc", ""):
            e = self.assertRaises(ValueError, portBackend, MemoryReactor(), bad)
            self.assertIn("bad port endpoint", str(e))

    def test_parseSpiceport(self):
        name, endpoint = parseSpiceport(MemoryReactor(), "com.example.echo=" + ENDPOINT)
        self.assertEqual(name, "com.example.echo")
        self.assertIsInstance(endpoint, PortBackend)
        self.assertEqual(str(endpoint), ENDPOINT)
        name, endpoint = parseSpiceport(MemoryReactor(), "x=unix:path=/tmp/s.sock")
        self.assertEqual((name, str(endpoint)), ("x", "unix:path=/tmp/s.sock"))
        for bad in ("noequals", "=tcp:1.2.3.4:5", "name=", "name=bogus:1"):
            self.assertRaises(ValueError, parseSpiceport, MemoryReactor(), bad)


@implementer(IStreamClientEndpoint)
class UncancellableEndpoint:
    """
    An endpoint whose connection attempts cannot be cancelled: they complete
    when the test says so, wanted or not.
    """

    def __init__(self):
        self.attempts = []

    def connect(self, factory):
        d = Deferred()
        self.attempts.append((factory, d))
        return d

    def complete(self, index):
        factory, d = self.attempts[index]
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = StringTransport()
        protocol.makeConnection(transport)
        if not d.called:
            d.callback(protocol)
        return transport


class Setup:
    def setUp(self):
        self.reactor = MemoryReactor()
        self.server = makeTestServer(disable_ticketing=True)
        self.server.registry.register(ChannelType.PORT, 0, PortChannel, name=NAME,
                                      endpoint=portBackend(self.reactor, ENDPOINT))
        self.main = TestClientChannel(self.server, ChannelType.MAIN)
        self.session_id = self.main.next("INIT").session_id
        self.log = LogCapture(self)

    def link(self, channel_id=0, lz4=False):
        client = TestClientChannel(
            self.server, ChannelType.PORT, channel_id, connection_id=self.session_id,
            channel_caps={SpicevmcCap.DATA_COMPRESS_LZ4} if lz4 else ())
        self.assertEqual(client.result, LinkErr.OK)
        return client

    def accept(self, index=-1):
        """
        The backend accepts a connection attempt (the latest by default):
        returns its protocol (as the reactor sees it) and transport.
        """
        host, port, factory, _timeout, _bind = self.reactor.tcpClients[index]
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def refuse(self, index=-1):
        factory = self.reactor.tcpClients[index][2]
        factory.clientConnectionFailed(self.reactor.connectors[index],
                                       Failure(ConnectionRefusedError()))

    def opened(self, **kwargs):
        """
        A linked port channel whose backend accepted: (client, backend
        protocol, backend transport); the client's messages so far are
        dropped.
        """
        client = self.link(**kwargs)
        protocol, transport = self.accept()
        self.assertEqual(self.events(client), [OPENED])
        return client, protocol, transport

    def events(self, client):
        return [record.event for name, record in client.take() if name == "PORT_EVENT"]

    def data(self, client):
        """
        The bytes the client received as DATA or COMPRESSED_DATA, and the
        message names.
        """
        out, names = b"", []
        for name, record in client.take():
            if name == "DATA":
                out += record.data
            elif name == "COMPRESSED_DATA":
                self.assertEqual(record.type, DataCompression.LZ4)
                out += lz4.block.decompress(record.compressed_data,
                                            uncompressed_size=record.uncompressed_size)
            else:
                continue
            names.append(name)
        return out, names

    def write(self, client, data):
        client.send(PORT_CLIENT["DATA"], data=data)

    def event(self, client, event):
        client.send(PORT_CLIENT["PORT_EVENT"], event=event)

    def lose(self, client):
        """
        The client's connection goes away.
        """
        client.protocol.connectionLost(Failure(ConnectionDone()))

    def logText(self):
        return self.log.text()

    def logLines(self, text):
        return self.log.matching(text)


class OpenTests(Setup, unittest.TestCase):
    def test_portInit(self):
        """
        The first message is PORT_INIT with the name, NUL-terminated, and
        opened 0: the backend connection is being made.  The server
        advertises spicevmc cap 0 (LZ4).
        """
        fed = []
        feed = ServerMessages.feed
        self.patch(ServerMessages, "feed",
                   lambda reader, data: (fed.append(data), feed(reader, data))[1])
        client = self.link()
        raw = b"".join(fed)
        msgType, size = struct.unpack_from("<HI", raw)
        self.assertEqual(msgType, 201)
        name = NAME.encode() + b"\0"
        self.assertEqual(raw[6:6 + size], struct.pack("<IIB", len(name), 9, 0) + name)
        self.assertEqual(client.serverChannelCaps, {SpicevmcCap.DATA_COMPRESS_LZ4})
        init = client.next("PORT_INIT")
        self.assertEqual((init.name, init.opened), (name, 0))
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 7000))
        verifyObject(IPushProducer, client.channel)

    def test_connectedIsOpened(self):
        client = self.link()
        client.take()
        self.assertFalse(client.channel.opened)
        self.accept()
        self.assertEqual(self.events(client), [OPENED])
        self.assertTrue(client.channel.opened)
        self.assertEqual(len(self.logLines("connected to " + ENDPOINT)), 1)

    def test_dataBothWays(self):
        client, protocol, transport = self.opened()
        self.write(client, b"hello backend")
        self.assertEqual(transport.value(), b"hello backend")
        protocol.dataReceived(b"hello client")
        self.assertEqual(self.data(client), (b"hello client", ["DATA"]))

    def test_bigBackendDataSplit(self):
        """
        Backend data goes out in messages of at most 64 KiB, in order.
        """
        client, protocol, transport = self.opened()
        blob = os.urandom(150000)
        protocol.dataReceived(blob)
        messages = [r for n, r in client.take() if n == "DATA"]
        self.assertEqual([len(r.data) for r in messages], [65536, 65536, 150000 - 131072])
        self.assertEqual(b"".join(r.data for r in messages), blob)

    def test_maxMessage(self):
        self.server.registry.register(ChannelType.PORT, 1, PortChannel, name="small",
                                      endpoint=portBackend(self.reactor, ENDPOINT),
                                      maxMessage=10)
        client = self.link(channel_id=1)
        protocol, _ = self.accept()
        client.take()
        protocol.dataReceived(b"0123456789abcdefghij-")
        out, names = self.data(client)
        self.assertEqual((out, names), (b"0123456789abcdefghij-", ["DATA"] * 3))

    def test_maxMessageValidated(self):
        self.assertRaises(ValueError, PortChannel, None, None, name="x",
                          endpoint=None, maxMessage=0)

    def test_bytesWhileConnectingQueued(self):
        """
        What the client writes before the backend connection is made is
        delivered, in order, once it is.
        """
        client = self.link()
        self.write(client, b"early ")
        self.write(client, b"bird")
        _, transport = self.accept()
        self.write(client, b"!")
        self.assertEqual(transport.value(), b"early bird!")

    def test_queueLimitPausesReading(self):
        self.patch(portmodule, "PENDING_LIMIT", 10)
        client = self.link()
        self.write(client, b"12345")
        self.assertEqual(client.transport.producerState, "producing")
        self.write(client, b"678901")
        self.assertEqual(client.transport.producerState, "paused")
        _, transport = self.accept()
        self.assertEqual(transport.value(), b"12345678901")
        self.assertEqual(client.transport.producerState, "producing")


class CompressionTests(Setup, unittest.TestCase):
    def test_lz4ToClient(self):
        """
        With the client's cap: chunks over 1000 bytes that shrink go as
        COMPRESSED_DATA LZ4; small or incompressible chunks as DATA.
        """
        client, protocol, _ = self.opened(lz4=True)
        text = b"the quick brown fox jumps over the lazy dog " * 100
        protocol.dataReceived(text)
        (name, record), = client.take()
        self.assertEqual((name, record.type, record.uncompressed_size),
                         ("COMPRESSED_DATA", DataCompression.LZ4, len(text)))
        self.assertLess(len(record.compressed_data), len(text))
        self.assertEqual(lz4.block.decompress(record.compressed_data,
                                              uncompressed_size=len(text)), text)
        protocol.dataReceived(b"a" * 1000)
        self.assertEqual(self.data(client), (b"a" * 1000, ["DATA"]))
        noise = os.urandom(5000)
        protocol.dataReceived(noise)
        self.assertEqual(self.data(client), (noise, ["DATA"]))

    def test_noCapNoCompression(self):
        client, protocol, _ = self.opened()
        text = b"z" * 20000
        protocol.dataReceived(text)
        self.assertEqual(self.data(client), (text, ["DATA"]))

    def test_lz4FromClient(self):
        client, _, transport = self.opened()
        text = b"compress me " * 500
        client.send(PORT_CLIENT["COMPRESSED_DATA"], type=DataCompression.LZ4,
                    uncompressed_size=len(text),
                    compressed_data=lz4.block.compress(text, store_size=False))
        client.send(PORT_CLIENT["COMPRESSED_DATA"], type=DataCompression.NONE,
                    uncompressed_size=None, compressed_data=b"+raw")
        self.assertEqual(transport.value(), text + b"+raw")
        self.assertFalse(client.transport.disconnecting)

    def assertClosesOnlyThisChannel(self, body, logged):
        self.server.registry.register(ChannelType.PORT, 1, PortChannel, name="other",
                                      endpoint=portBackend(self.reactor, ENDPOINT))
        other = self.link(channel_id=1)
        _, otherBackend = self.accept()
        client, _, transport = self.opened()
        client.sendRaw(102, body)
        self.assertTrue(client.transport.disconnecting)
        self.assertIsNone(client.transport.producer)
        self.assertIn(logged, self.logText())
        self.assertEqual(transport.value(), b"")
        self.lose(client)
        self.assertTrue(transport.disconnecting)
        # Nothing else is affected.
        self.assertFalse(self.main.transport.disconnecting)
        self.assertFalse(other.transport.disconnecting)
        self.assertFalse(otherBackend.disconnecting)
        self.write(other, b"still here")
        self.assertEqual(otherBackend.value(), b"still here")

    def test_corruptLz4(self):
        self.assertClosesOnlyThisChannel(b"\x01" + struct.pack("<I", 100) + b"\xff\xff\xff",
                                         "malformed COMPRESSED_DATA")

    def test_wrongUncompressedSize(self):
        packed = lz4.block.compress(b"x" * 200, store_size=False)
        self.assertClosesOnlyThisChannel(b"\x01" + struct.pack("<I", 300) + packed,
                                         "decompressed to 200 bytes, uncompressed_size says 300")

    def test_hugeUncompressedSize(self):
        self.assertClosesOnlyThisChannel(b"\x01" + struct.pack("<I", 0xFFFFFFFF) + b"\0",
                                         "uncompressed_size 4294967295 is over")

    def test_unknownCompression(self):
        self.assertClosesOnlyThisChannel(b"\x07" + struct.pack("<I", 3) + b"abc",
                                         "unknown compression type 7")

    def test_truncated(self):
        self.assertClosesOnlyThisChannel(b"\x01\x00", "malformed COMPRESSED_DATA")


class CloseTests(Setup, unittest.TestCase):
    def test_connectionRefused(self):
        """
        A refused connection is a CLOSED event and one log line; the channel
        stays up, and bytes written to the closed port are dropped (logged
        once).
        """
        client = self.link()
        client.take()
        self.refuse()
        self.assertEqual(self.events(client), [CLOSED])
        self.assertFalse(client.transport.disconnecting)
        self.assertFalse(client.channel.opened)
        self.assertEqual(len(self.logLines("cannot connect to " + ENDPOINT)), 1)
        self.write(client, b"into the void")
        self.write(client, b"again")
        self.assertEqual(len(self.logLines("dropping")), 1)
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_refusedDropsQueued(self):
        client = self.link()
        self.write(client, b"abc")
        self.refuse()
        self.assertIn("3 bytes from the client dropped", self.logText())

    def test_backendCloses(self):
        client, protocol, _ = self.opened()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.events(client), [CLOSED])
        self.assertFalse(client.channel.opened)
        self.assertEqual(len(self.logLines("closed the connection")), 1)
        self.assertFalse(client.transport.disconnecting)

    def test_clientClose(self):
        """
        The client's CLOSED disconnects the backend (flushing first) and is
        confirmed with CLOSED; the backend's own end is then not reported
        again.
        """
        client, protocol, transport = self.opened()
        self.write(client, b"last words")
        self.event(client, CLOSED)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)
        self.assertIsNone(transport.producer)
        self.assertEqual(transport.value(), b"last words")
        self.assertEqual(self.events(client), [CLOSED])
        protocol.dataReceived(b"too late")
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(client.take(), [])
        # The flush finished: no abort is pending any more.
        self.assertEqual([c for c in self.server.clock.getDelayedCalls()
                          if c.func.__name__ == "_abort"], [])

    def test_closingBackendAbortedIfStuck(self):
        client, _, transport = self.opened()
        self.event(client, CLOSED)
        self.server.clock.advance(portmodule.BACKEND_CLOSE_TIMEOUT - 1)
        self.assertFalse(transport.disconnected)
        self.server.clock.advance(1)
        self.assertTrue(transport.disconnected)

    def test_closeTwiceIgnored(self):
        client, _, _ = self.opened()
        self.event(client, CLOSED)
        self.event(client, CLOSED)
        self.assertEqual(self.events(client), [CLOSED])

    def test_reopen(self):
        """
        OPENED from the client after a close makes a new connection; data
        goes to the new one.
        """
        client, _, old = self.opened()
        self.event(client, CLOSED)
        self.event(client, OPENED)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        protocol, new = self.accept()
        self.assertEqual(self.events(client), [CLOSED, OPENED])
        self.write(client, b"second life")
        self.assertEqual((old.value(), new.value()), (b"", b"second life"))
        protocol.dataReceived(b"back")
        self.assertEqual(self.data(client), (b"back", ["DATA"]))

    def test_reopenAfterRefused(self):
        client = self.link()
        self.refuse()
        self.event(client, OPENED)
        _, transport = self.accept()
        self.write(client, b"x")
        self.assertEqual(transport.value(), b"x")
        self.assertEqual([e for e in self.events(client)], [CLOSED, OPENED])

    def test_openWhileOpenIgnored(self):
        client, _, _ = self.opened()
        self.event(client, OPENED)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(client.take(), [])

    def test_clientCloseWhileConnecting(self):
        """
        The attempt is cancelled and CLOSED sent; a late success of it is
        not used.
        """
        client = self.link()
        client.take()
        self.write(client, b"queued")
        self.event(client, CLOSED)
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)
        self.assertEqual(self.events(client), [CLOSED])
        self.event(client, OPENED)
        protocol, transport = self.accept()
        self.assertEqual(self.events(client), [OPENED])
        self.assertEqual(transport.value(), b"")

    def test_staleConnectionClosed(self):
        """
        A connection that completes for an attempt no longer wanted (an
        endpoint that cannot cancel) is closed at once.
        """
        endpoint = UncancellableEndpoint()
        self.server.registry.register(ChannelType.PORT, 1, PortChannel, name="late",
                                      endpoint=endpoint)
        client = self.link(channel_id=1)
        client.take()
        self.event(client, CLOSED)
        self.assertEqual(self.events(client), [CLOSED])
        transport = endpoint.complete(0)
        self.assertTrue(transport.disconnecting)
        self.assertFalse(client.channel.opened)
        self.assertEqual(client.take(), [])
        self.event(client, OPENED)
        transport = endpoint.complete(1)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(self.events(client), [OPENED])

    def test_channelDownClosesBackend(self):
        client, _, transport = self.opened()
        self.lose(client)
        self.assertTrue(transport.disconnecting)

    def test_channelDownWhileConnecting(self):
        client = self.link()
        self.lose(client)
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)

    def test_break(self):
        client, _, transport = self.opened()
        self.event(client, BREAK)
        self.assertIn("BREAK from the client", self.logText())
        self.assertFalse(transport.disconnecting)
        self.assertEqual(client.take(), [])

    def test_unknownEventIgnored(self):
        client, _, transport = self.opened()
        self.event(client, 9)
        self.assertIn("ignoring port event 9", self.logText())
        self.assertFalse(transport.disconnecting)
        self.assertFalse(client.transport.disconnecting)

    def test_eachLinkItsOwnBackend(self):
        client, _, first = self.opened()
        other = TestClientChannel(self.server, ChannelType.MAIN)
        session = other.next("INIT").session_id
        second = TestClientChannel(self.server, ChannelType.PORT, 0, connection_id=session)
        _, secondTransport = self.accept()
        self.write(client, b"1")
        self.write(second, b"2")
        self.assertEqual((first.value(), secondTransport.value()), (b"1", b"2"))


class BackpressureTests(Setup, unittest.TestCase):
    def test_fullBackendPausesClient(self):
        """
        The backend connection's transport sees a producer; when Twisted
        pauses it (the backend socket is full), reading from the client
        pauses, and resumes with it.
        """
        client, _, transport = self.opened()
        verifyObject(IPushProducer, transport.producer)
        self.assertTrue(transport.streaming)
        transport.producer.pauseProducing()
        self.assertEqual(client.transport.producerState, "paused")
        self.assertTrue(client.channel.readingPaused)
        transport.producer.resumeProducing()
        self.assertEqual(client.transport.producerState, "producing")
        self.assertFalse(client.channel.readingPaused)

    def test_fullClientPausesBackend(self):
        """
        The channel is the client connection's producer: when Twisted pauses
        it (the client socket is full), reading from the backend pauses.
        """
        client, _, transport = self.opened()
        self.assertIs(client.transport.producer, client.channel)
        self.assertTrue(client.transport.streaming)
        client.transport.producer.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        self.assertTrue(client.channel.clientFull)
        self.assertIs(client.channel.backendTransport, transport)
        client.transport.producer.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        self.assertFalse(client.channel.clientFull)

    def test_newBackendStartsPausedWhenClientFull(self):
        client = self.link()
        client.transport.producer.pauseProducing()
        _, transport = self.accept()
        self.assertEqual(transport.producerState, "paused")
        client.transport.producer.resumeProducing()
        self.assertEqual(transport.producerState, "producing")

    def test_backendLossReleasesClient(self):
        client, protocol, transport = self.opened()
        transport.producer.pauseProducing()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(client.transport.producerState, "producing")

    def test_clientCloseReleasesClient(self):
        client, _, transport = self.opened()
        transport.producer.pauseProducing()
        # A real paused transport would not read this; the model is that the
        # CLOSED was read before the pause took effect.
        self.event(client, CLOSED)
        self.assertEqual(client.transport.producerState, "producing")
        self.assertFalse(client.channel.readingPaused)

    def test_bothReasonsMustClear(self):
        """
        Reading from the client resumes only when neither the backend nor
        the connect queue holds it.
        """
        self.patch(portmodule, "PENDING_LIMIT", 1)
        client = self.link()
        self.write(client, b"xy")
        self.assertEqual(client.transport.producerState, "paused")
        _, transport = self.accept()
        self.assertEqual(client.transport.producerState, "producing")
        transport.producer.pauseProducing()
        transport.producer.pauseProducing()
        self.assertEqual(client.transport.producerState, "paused")
        transport.producer.resumeProducing()
        self.assertEqual(client.transport.producerState, "producing")
