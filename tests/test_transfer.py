"""
Tests for the device-state transfer (L{spicesrv.migration.statewire},
L{spicesrv.migration.outgoing}, L{spicesrv.migration.incoming},
L{spicesrv.migration.uri}): device state moving from a source server to
a target server over AMP, in memory (L{twisted.test.iosim}) and over real
loopback TCP, UNIX and TLS sockets.
"""

import datetime
import io
import ipaddress
import random

import numpy as np
from PIL import Image
from twisted.internet.address import IPv4Address
from twisted.internet import defer, endpoints, protocol, reactor, ssl, task
from twisted.internet.defer import CancelledError
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.protocols import amp
from twisted.test import iosim
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from spicesrv.interfaces import IMigratableState
from spicesrv.sources.demo import DemoSource
from spicesrv.sources.image import ImageSource
from spicesrv.migration.incoming import IncomingState, listenIncoming
from spicesrv.migration.outgoing import sendState
from spicesrv.migration.statewire import CHUNK_SIZE, Commit, Hello, State, TransferError
from spicesrv.migration.uri import incomingEndpoint, parseMigrationURI
from spicesrv.testing import RecordingState
from tests.interop.processes import Twistd, freePort
from tests.test_sources_image import peakMemory, pngBomb


def randomBytes(size, seed=1):
    return random.Random(seed).randbytes(size)


def png(colour, size=(64, 48)):
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out


class Silent(protocol.Protocol):
    """
    A peer that accepts a connection and never says anything.
    """


class Garbage(protocol.Protocol):
    """
    A peer that speaks something other than AMP.
    """

    def connectionMade(self):
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


class Closing(protocol.Protocol):
    """
    A client that sends C{payload} and tells when its connection ends.
    """

    def __init__(self, payload):
        self.payload = payload
        self.closed = defer.Deferred()

    def connectionMade(self):
        self.transport.write(self.payload)

    def connectionLost(self, reason):
        self.closed.callback(None)


def memoryTransfer(devices, target, uri="tcp:127.0.0.1:4444", server=None, timeout=60,
                   clock=None):
    """
    Start L{sendState} on a L{MemoryReactorClock} and connect its connection
    attempt in memory to C{target}'s protocol (or to C{server}).

    @return: the result L{Deferred}, the pump, the reactor and the target
        protocol.
    """
    clock = clock or MemoryReactorClock()
    d = sendState(clock, uri, devices, timeout=timeout)
    factory = clock.tcpClients[-1][2]
    client = factory.buildProtocol(None)
    serverProto = server if server is not None else target.buildProtocol(None)
    serverTransport = iosim.FakeTransport(serverProto, isServer=True,
                                          peerAddress=IPv4Address("TCP", "10.0.0.1", 40000))
    pump = iosim.connect(serverProto, serverTransport,
                         client, iosim.makeFakeClient(client), greet=False)
    return d, pump, clock, serverProto


class URITests(unittest.TestCase):

    def test_valid(self):
        self.assertEqual(parseMigrationURI("tcp:127.0.0.1:4444"), ("tcp", "127.0.0.1", 4444))
        self.assertEqual(parseMigrationURI("tcp:dst.example:4444"),
                         ("tcp", "dst.example", 4444))
        self.assertEqual(parseMigrationURI("tcp:[::1]:4444"), ("tcp", "::1", 4444))
        self.assertEqual(parseMigrationURI("tls:10.0.0.2:4445"), ("tls", "10.0.0.2", 4445))
        self.assertEqual(parseMigrationURI("unix:/run/mig.sock"), ("unix", "/run/mig.sock", None))
        self.assertEqual(parseMigrationURI("tcp::4444", incoming=True), ("tcp", "", 4444))
        self.assertEqual(parseMigrationURI("tcp:127.0.0.1:0", incoming=True),
                         ("tcp", "127.0.0.1", 0))

    def assertBad(self, uri, *words, incoming=False):
        e = self.assertRaises(ValueError, parseMigrationURI, uri, incoming=incoming)
        message = str(e)
        self.assertNotIn("\n", message)
        for word in words:
            self.assertIn(word, message)

    def test_invalid(self):
        supported = "tcp:HOST:PORT, unix:PATH or tls:HOST:PORT"
        for scheme in ("exec", "fd", "rdma", "file"):
            self.assertBad(scheme + ":whatever", "unsupported migration URI scheme '%s:'"
                           % (scheme,), supported)
        self.assertBad("127.0.0.1", "not a migration URI", supported)
        self.assertBad("tcp:127.0.0.1", "tcp:HOST:PORT")
        self.assertBad("tcp::4444", "names no host")
        self.assertBad("tcp:h:0", "port must be a number from 1 to 65535")
        self.assertBad("tcp:h:65536", "port must be")
        self.assertBad("tcp:h:http", "port must be")
        self.assertBad("tcp:::1:4444", "IPv6 address in brackets")
        self.assertBad("tcp:[nothost]:4444", "is not an IPv6 address")
        self.assertBad("unix:", "unix:PATH")

    def test_incomingEndpoint(self):
        clock = MemoryReactorClock()
        endpoint, useTLS = incomingEndpoint(clock, "tcp:127.0.0.1:0")
        self.assertIsInstance(endpoint, endpoints.TCP4ServerEndpoint)
        self.assertEqual(endpoint._interface, "127.0.0.1")
        self.assertFalse(useTLS)
        endpoint, _ = incomingEndpoint(clock, "tcp:[::1]:4444")
        self.assertIsInstance(endpoint, endpoints.TCP6ServerEndpoint)
        endpoint, _ = incomingEndpoint(clock, "tcp:4444:interface=127.0.0.1")
        self.assertEqual((endpoint._port, endpoint._interface), (4444, "127.0.0.1"))
        endpoint, _ = incomingEndpoint(clock, "unix:/tmp/x.sock")
        self.assertIsInstance(endpoint, endpoints.UNIXServerEndpoint)
        self.assertEqual(endpoint._mode, 0o600)
        endpoint, _ = incomingEndpoint(clock, "unix:/tmp/x.sock:mode=640")
        self.assertEqual(endpoint._mode, 0o640)
        e = self.assertRaises(ValueError, incomingEndpoint, clock, "tls:127.0.0.1:4444")
        self.assertIn("needs TLS options", str(e))
        _, useTLS = incomingEndpoint(clock, "tls:127.0.0.1:4444", tlsOptions=object())
        self.assertTrue(useTLS)
        e = self.assertRaises(ValueError, incomingEndpoint, clock, "bogus:1")
        self.assertIn("cannot listen for incoming migrations on 'bogus:1'", str(e))


class DeviceTests(unittest.TestCase):

    def test_verify(self):
        self.assertTrue(verifyObject(IMigratableState, RecordingState("blob")))
        self.assertTrue(verifyObject(IMigratableState, DemoSource(clock=task.Clock())))
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(png((1, 2, 3)).getvalue())
        self.assertTrue(verifyObject(IMigratableState, ImageSource(path)))


class MemoryTransferTests(unittest.TestCase):
    """
    Source and target in memory.
    """

    def test_roundTrip(self):
        big = randomBytes(1024 * 1024)
        exact = randomBytes(2 * CHUNK_SIZE, seed=2)
        source = [RecordingState("big", big), RecordingState("small", b"hello"),
                  RecordingState("empty", b""), RecordingState("exact", exact)]
        fresh = [RecordingState("exact"), RecordingState("big"),
                 RecordingState("small", b"old"), RecordingState("empty", b"x"),
                 RecordingState("targetOnly", b"mine")]
        completed = []
        target = IncomingState(lambda: fresh, onComplete=lambda: completed.append(True),
                               clock=task.Clock())
        pieces = []
        original = target._state

        def spy(proto, key, offset, data, last):
            pieces.append((key, offset, len(data), last))
            return original(proto, key, offset, data, last)
        target._state = spy
        d, pump, clock, _ = memoryTransfer(source, target)
        pump.flush()
        summary = self.successResultOf(d)
        self.assertEqual(summary["keys"], ["big", "small", "empty", "exact"])
        self.assertEqual(summary["bytes"], len(big) + 5 + len(exact))
        self.assertEqual(summary["targetOnly"], ["targetOnly"])
        self.assertIn("seconds", summary)
        self.assertEqual([device.applied for device in fresh],
                         [[exact], [big], [b"hello"], [b""], []])
        self.assertEqual(fresh[4].data, b"mine")
        self.assertEqual(completed, [True])
        self.assertEqual(target.state, "done")
        # chunked: 18 pieces of at most CHUNK_SIZE for the big state, 2 for exact
        bigPieces = [p for p in pieces if p[0] == "big"]
        self.assertEqual(len(bigPieces), -(-len(big) // CHUNK_SIZE))
        self.assertTrue(all(size <= CHUNK_SIZE < 65535 for _, _, size, _ in pieces))
        self.assertEqual([p[3] for p in bigPieces], [False] * (len(bigPieces) - 1) + [True])
        self.assertEqual([p for p in pieces if p[0] == "empty"], [("empty", 0, 0, True)])
        self.assertEqual(len([p for p in pieces if p[0] == "exact"]), 2)

    def test_oneRoundTrip(self):
        """
        A small state crosses in one round trip: Hello, the States and
        Commit leave before the target has answered anything.
        """
        fresh = [RecordingState("a"), RecordingState("b")]
        target = IncomingState(lambda: fresh, clock=task.Clock())
        d, pump, clock, serverProto = memoryTransfer(
            [RecordingState("a", b"1" * 100), RecordingState("b", b"2" * 100)], target)
        sent = b"".join(pump.clientIO.stream)
        self.assertEqual([sent.count(b"\x00\x08_command\x00" + name)
                          for name in (b"\x05Hello", b"\x05State", b"\x06Commit")],
                         [1, 2, 1])
        pump.flush()
        self.assertEqual(self.successResultOf(d)["keys"], ["a", "b"])
        self.assertEqual([device.applied for device in fresh], [[b"1" * 100], [b"2" * 100]])

    def test_refusedHelloThenStates(self):
        """
        The States that followed a refused Hello change nothing, and the
        Hello's refusal is what the source reports.
        """
        fresh = RecordingState("a", b"original")
        target = IncomingState(lambda: [fresh], clock=task.Clock())
        d, pump, clock, _ = memoryTransfer([RecordingState("zz", b"x" * 100)], target)
        pump.flush()
        self.assertEqual(str(self.failureResultOf(d, TransferError).value),
                         "the target refused the state: unknown device zz (target has a)")
        self.assertEqual(fresh.applied, [])
        self.assertEqual(target.state, "waiting")
        d, pump, _, _ = memoryTransfer([RecordingState("a", b"retry")], target, clock=clock)
        pump.flush()
        self.successResultOf(d)
        self.assertEqual(fresh.applied, [b"retry"])

    def test_demoAndImage(self):
        """
        The target demo's framebuffer equals the source demo's, after
        typing and painting on the source; the picture moves too.
        """
        demo = DemoSource(clock=task.Clock())
        for code in (0x23, 0x17):      # h, i
            demo.keyboard.push_scan_freg(code)
            demo.keyboard.push_scan_freg(code | 0x80)
        demo.tablet.position(100, 200, 1)
        demo.tablet.position(300, 250, 1)
        demo.tablet.position(300, 250, 0)
        picturePath = self.mktemp()
        with open(picturePath, "wb") as f:
            f.write(png((200, 10, 10), (80, 60)).getvalue())
        image = ImageSource(picturePath)
        otherPath = self.mktemp()
        with open(otherPath, "wb") as f:
            f.write(png((0, 0, 255), (32, 32)).getvalue())

        newDemo = DemoSource(clock=task.Clock())
        newImage = ImageSource(otherPath)
        self.assertFalse(np.array_equal(newDemo.framebuffer(), demo.framebuffer()))
        target = IncomingState(lambda: [newDemo, newImage], clock=task.Clock())
        d, pump, _, _ = memoryTransfer([demo, image], target)
        pump.flush()
        self.assertEqual(self.successResultOf(d)["keys"], ["display.demo", "display.image"])
        self.assertEqual(newDemo.text, "hi")
        self.assertTrue(np.array_equal(newDemo.framebuffer(), demo.framebuffer()))
        self.assertEqual((newImage.width, newImage.height), (80, 60))
        self.assertTrue(np.array_equal(newImage.framebuffer(), image.framebuffer()))

    def test_unknownKey(self):
        demo = DemoSource(clock=task.Clock())
        target = IncomingState(lambda: [demo], clock=task.Clock())
        before = demo.framebuffer().copy()
        d, pump, _, _ = memoryTransfer([RecordingState("display.image", b"x")], target)
        pump.flush()
        e = self.failureResultOf(d, TransferError).value
        self.assertEqual(str(e), "the target refused the state: unknown device display.image "
                                 "(target has display.demo)")
        self.assertEqual(target.state, "waiting")
        self.assertTrue(np.array_equal(demo.framebuffer(), before))

    def test_unknownKeys(self):
        target = IncomingState(lambda: [], clock=task.Clock())
        d, pump, _, _ = memoryTransfer([RecordingState("a"), RecordingState("b")], target)
        pump.flush()
        self.assertEqual(str(self.failureResultOf(d, TransferError).value),
                         "the target refused the state: unknown devices a, b "
                         "(target has no migratable devices)")

    def test_applyValueError(self):
        """
        A device that rejects its state fails the migration with its key and
        reason; the devices before it get their own state back, and the
        target waits for a correct migration, which it then takes.
        """
        failures = []
        first = RecordingState("first", b"0")
        broken = RecordingState("broken", reject="checksum mismatch")
        target = IncomingState(lambda: [first, broken], onFailure=failures.append,
                               clock=task.Clock())
        d, pump, clock, _ = memoryTransfer(
            [RecordingState("first", b"1"), RecordingState("broken", b"2")], target)
        pump.flush()
        message = str(self.failureResultOf(d, TransferError).value)
        self.assertEqual(message, "the target failed: cannot apply the state of broken: "
                                  "checksum mismatch; nothing was applied; the target waits "
                                  "for another migration")
        self.assertEqual(target.state, "waiting")
        self.assertEqual(failures, ["cannot apply the state of broken: checksum mismatch"])
        self.assertEqual(first.applied, [b"1", b"0"])       # applied, then given back
        self.assertEqual(first.data, b"0")
        broken.reject = None
        d, pump, _, _ = memoryTransfer(
            [RecordingState("first", b"3"), RecordingState("broken", b"4")],
            target, clock=clock)
        pump.flush()
        self.assertEqual(self.successResultOf(d)["keys"], ["first", "broken"])
        self.assertEqual((first.data, broken.data, target.state), (b"3", b"4", "done"))

    def test_rollBackRefused(self):
        """
        A device that cannot take its own state back is named; the target
        still waits for another migration.
        """
        @implementer(IMigratableState)
        class OneWay(RecordingState):
            def set_migration_state(self, data):
                if self.applied:
                    raise RuntimeError("no going back")
                RecordingState.set_migration_state(self, data)
        first = OneWay("first", b"0")
        target = IncomingState(lambda: [first, RecordingState("broken", reject="bad")],
                               clock=task.Clock())
        d, pump, _, _ = memoryTransfer(
            [RecordingState("first", b"1"), RecordingState("broken", b"2")], target)
        with capturedLogs() as events:
            pump.flush()
        self.assertIn("first kept part of the refused state; the target waits for another "
                      "migration", str(self.failureResultOf(d, TransferError).value))
        self.assertEqual(target.state, "waiting")
        self.assertIn("cannot take back its own state", "\n".join(formatEvent(e) for e in events))
        self.flushLoggedErrors(RuntimeError)

    def test_demoRejectsDamagedState(self):
        demo = DemoSource(clock=task.Clock())
        target = IncomingState(lambda: [demo], clock=task.Clock())
        d, pump, _, _ = memoryTransfer([RecordingState("display.demo", b"rubbish")], target)
        pump.flush()
        message = str(self.failureResultOf(d, TransferError).value)
        self.assertIn("cannot apply the state of display.demo: not demo display state", message)

    def test_demoRefusesHugeCanvas(self):
        """
        Demo state whose canvas picture claims a huge size is refused from
        the picture's header, and the demo keeps its own picture.
        """
        demo = DemoSource(clock=task.Clock())
        before = demo.framebuffer().copy()
        state = DemoSource(clock=task.Clock()).get_migration_state()
        canvas = state.index(b"\x89PNG")
        target = IncomingState(lambda: [demo], clock=task.Clock())
        d, pump, _, _ = memoryTransfer(
            [RecordingState("display.demo", state[:canvas] + pngBomb(13000, 13000))], target)
        memory = peakMemory()
        pump.flush()
        self.assertLess(peakMemory() - memory, 100 * 1024 * 1024)
        message = str(self.failureResultOf(d, TransferError).value)
        self.assertIn("cannot apply the state of display.demo: damaged demo display state: "
                      "the migrated canvas is 13000x13000 pixels; pictures may be at most",
                      message)
        self.assertEqual(target.state, "waiting")
        self.assertTrue(np.array_equal(demo.framebuffer(), before))

    def test_onCompleteFails(self):
        def broken():
            raise RuntimeError("cannot start the VM")
        target = IncomingState(lambda: [RecordingState("a")], onComplete=broken,
                               clock=task.Clock())
        d, pump, _, _ = memoryTransfer([RecordingState("a", b"1")], target)
        pump.flush()
        self.assertIn("the target failed after applying the state: cannot start the VM",
                      str(self.failureResultOf(d, TransferError).value))
        self.assertEqual(target.state, "waiting")

    def test_secondConcurrentMigration(self):
        fresh = [RecordingState("big")]
        target = IncomingState(lambda: fresh, clock=task.Clock())
        big = randomBytes(1024 * 1024)
        first, pump1, clock, _ = memoryTransfer([RecordingState("big", big)], target)
        for _ in range(3):
            pump1.pump()
        self.assertEqual(target.state, "receiving")
        second, pump2, _, proto2 = memoryTransfer([RecordingState("big", b"other")], target,
                                                  clock=clock)
        pump2.flush()
        self.assertEqual(str(self.failureResultOf(second, TransferError).value),
                         "the migration target at tcp:127.0.0.1:4444 is busy: another "
                         "migration into this target is in progress (from 10.0.0.1:40000)")
        self.assertTrue(pump2.serverIO.disconnected)
        pump1.flush()
        self.assertEqual(self.successResultOf(first)["bytes"], len(big))
        self.assertEqual(fresh[0].applied, [big])
        # after success the target takes no other migration
        third, pump3, _, _ = memoryTransfer([RecordingState("big", b"x")], target, clock=clock)
        pump3.flush()
        self.assertEqual(str(self.failureResultOf(third, TransferError).value),
                         "the migration target at tcp:127.0.0.1:4444 is busy: this target "
                         "has already received a migration")

    def test_cancelMidTransfer(self):
        """
        Cancelling aborts the connection; the target throws away what it got,
        applies nothing and takes the next migration.
        """
        fresh = RecordingState("big", b"original")
        target = IncomingState(lambda: [fresh], clock=task.Clock())
        big = randomBytes(1024 * 1024)
        d, pump, clock, proto = memoryTransfer([RecordingState("big", big)], target)
        while not (proto.buffers and len(proto.buffers["big"]) > 2 * CHUNK_SIZE):
            pump.pump()
        d.cancel()
        self.failureResultOf(d, CancelledError)
        pump.flush()
        self.assertTrue(pump.serverIO.disconnected)
        self.assertEqual(target.state, "waiting")
        self.assertIsNone(target._active)
        self.assertEqual(fresh.applied, [])
        self.assertEqual(fresh.data, b"original")
        d, pump, _, _ = memoryTransfer([RecordingState("big", b"retry")], target, clock=clock)
        pump.flush()
        self.successResultOf(d)
        self.assertEqual(fresh.applied, [b"retry"])

    def test_cancelWhileConnecting(self):
        clock = MemoryReactorClock()
        d = sendState(clock, "tcp:127.0.0.1:4444", [RecordingState("a")])
        connector = clock.connectors[-1]
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(connector.stoppedConnecting)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_oversizeState(self):
        target = IncomingState(lambda: [RecordingState("a"), RecordingState("b")],
                               maxStateSize=1000, maxTotalSize=1500,
                               clock=task.Clock())
        d, pump, clock, _ = memoryTransfer([RecordingState("a", b"x" * 2000)], target)
        pump.flush()
        self.assertEqual(str(self.failureResultOf(d, TransferError).value),
                         "the target refused the state: the state of a is 2000 bytes; "
                         "this target accepts at most 1000 bytes per device")
        d, pump, _, _ = memoryTransfer(
            [RecordingState("a", b"x" * 900), RecordingState("b", b"y" * 900)],
            target, clock=clock)
        pump.flush()
        self.assertEqual(str(self.failureResultOf(d, TransferError).value),
                         "the target refused the state: the state is 1800 bytes in all; "
                         "this target accepts at most 1500")
        self.assertEqual(target.state, "waiting")

    def test_targetNeverAnswers(self):
        d, pump, clock, _ = memoryTransfer([RecordingState("a", b"1")], None, server=Silent(),
                                           timeout=60)
        pump.flush()
        clock.advance(59)
        pump.flush()
        self.assertNoResult(d)
        clock.advance(1)
        pump.flush()
        self.assertEqual(str(self.failureResultOf(d, TransferError).value),
                         "the migration target at tcp:127.0.0.1:4444 did not answer for "
                         "60 seconds")
        self.assertTrue(pump.clientIO.disconnected)

    def test_connectTimeout(self):
        clock = MemoryReactorClock()
        d = sendState(clock, "tcp:127.0.0.1:4444", [RecordingState("a")], timeout=5)
        clock.advance(5)
        self.assertEqual(str(self.failureResultOf(d, TransferError).value),
                         "cannot connect to the migration target at tcp:127.0.0.1:4444: "
                         "timed out after 5 seconds")

    def test_garbageTarget(self):
        d, pump, _, _ = memoryTransfer([RecordingState("a", b"1")], None, server=Garbage())
        pump.flush()
        self.assertEqual(str(self.failureResultOf(d, TransferError).value),
                         "the migration target at tcp:127.0.0.1:4444 ended the transfer: "
                         "it does not speak the spicesrv migration protocol (AMP)")

    def test_targetClosesEarly(self):
        class Hangup(protocol.Protocol):
            def dataReceived(self, data):
                self.transport.loseConnection()
        d, pump, _, _ = memoryTransfer([RecordingState("a", b"1")], None, server=Hangup())
        pump.flush()
        self.assertEqual(str(self.failureResultOf(d, TransferError).value),
                         "the migration target at tcp:127.0.0.1:4444 ended the transfer: "
                         "it closed the connection")

    def test_sourceErrors(self):
        clock = MemoryReactorClock()
        for devices, message in [
                ([RecordingState("a"), RecordingState("a")],
                 "two devices share the migration key a"),
                ([object()], "does not provide IMigratableState"),
                ([RecordingState("k" * 150 + str(i)) for i in range(500)],
                 "too many devices (500) for one Hello")]:
            d = sendState(clock, "tcp:127.0.0.1:4444", devices)
            if clock.tcpClients:
                factory = clock.tcpClients.pop()[2]
                client = factory.buildProtocol(None)
                pump = iosim.connect(Silent(), iosim.makeFakeServer(Silent()), client,
                                     iosim.makeFakeClient(client), greet=False)
                pump.flush()
            self.assertIn(message, str(self.failureResultOf(d, TransferError).value))

    def test_unsupportedAndTLSWithoutOptions(self):
        for uri in ("exec:cat > /tmp/x", "fd:3", "rdma:host:4444"):
            message = str(self.failureResultOf(
                sendState(MemoryReactorClock(), uri, []), TransferError).value)
            self.assertIn("unsupported migration URI scheme", message)
            self.assertIn("tcp:HOST:PORT, unix:PATH or tls:HOST:PORT", message)
        self.assertEqual(
            str(self.failureResultOf(sendState(MemoryReactorClock(), "tls:h:1", []),
                                     TransferError).value),
            "tls:h:1 needs TLS options that check the target's certificate")

    def test_logsOneLine(self):
        target = IncomingState(lambda: [RecordingState("a"), RecordingState("b")],
                               clock=task.Clock())
        with capturedLogs() as events:
            d, pump, _, _ = memoryTransfer(
                [RecordingState("a", b"12345"), RecordingState("b", b"678")], target)
            pump.flush()
        self.successResultOf(d)
        lines = [formatEvent(e) for e in events
                 if e.get("log_namespace") == "spicesrv.migration.incoming"
                 and "incoming migration" in e["log_format"]]
        self.assertEqual(len(lines), 1)
        self.assertRegex(lines[0], r"^incoming migration from 10\.0\.0\.1:40000: 2 devices, "
                                   r"8 bytes in [0-9.]+ s \(a, b\)$")

    def test_onCompleteDeferred(self):
        """
        The source gets its answer once C{onComplete}'s Deferred fires; a
        connection lost meanwhile does not undo the applied state.
        """
        ready = defer.Deferred()
        fresh = RecordingState("a")
        target = IncomingState(lambda: [fresh], onComplete=lambda: ready, clock=task.Clock())
        d, pump, _, _ = memoryTransfer([RecordingState("a", b"1")], target)
        pump.flush()
        self.assertNoResult(d)
        self.assertEqual((target.state, fresh.applied), ("applying", [b"1"]))
        ready.callback(None)
        pump.flush()
        self.successResultOf(d)
        self.assertEqual(target.state, "done")

        ready = defer.Deferred()
        fresh = RecordingState("a")
        target = IncomingState(lambda: [fresh], onComplete=lambda: ready, clock=task.Clock())
        d, pump, _, _ = memoryTransfer([RecordingState("a", b"1")], target)
        pump.flush()
        d.cancel()
        pump.flush()
        self.failureResultOf(d, CancelledError)
        self.assertEqual(target.state, "applying")
        ready.callback(None)
        self.assertEqual(target.state, "done")
        self.assertEqual(fresh.applied, [b"1"])

    def test_noDevices(self):
        target = IncomingState(lambda: [RecordingState("a", b"keep")], clock=task.Clock())
        d, pump, _, _ = memoryTransfer([], target)
        pump.flush()
        summary = self.successResultOf(d)
        self.assertEqual((summary["keys"], summary["bytes"], summary["targetOnly"]),
                         ([], 0, ["a"]))


class RawAMPTests(unittest.TestCase):
    """
    A misbehaving source, talking AMP by hand to the target.
    """

    def setUp(self):
        self.clock = task.Clock()
        self.device = RecordingState("a")
        self.target = IncomingState(lambda: [self.device], clock=self.clock, idleTimeout=30)
        self.server = self.target.buildProtocol(None)
        self.client = amp.AMP()
        self.pump = iosim.connect(self.server, iosim.makeFakeServer(self.server),
                                  self.client, iosim.makeFakeClient(self.client))

    def call(self, command, **kwargs):
        """
        Call C{command} and return its answer or L{Failure}.  (AMP hands an
        error that has no errback yet when it arrives to C{unhandledError}.)
        """
        results = []
        self.client.callRemote(command, **kwargs).addBoth(results.append)
        self.pump.flush()
        return results[0]

    def refused(self, command, **kwargs):
        failure = self.call(command, **kwargs)
        self.assertIsInstance(failure, Failure)
        self.assertTrue(self.pump.serverIO.disconnected)
        return failure.getErrorMessage()

    def hello(self, devices=({"key": "a", "size": 3},), version=1):
        return self.call(Hello, version=version, devices=list(devices))

    def test_newerVersion(self):
        self.assertEqual(self.refused(Hello, version=2, devices=[]),
                         "the source speaks migration protocol version 2 but this target "
                         "only knows version 1; upgrade the target")

    def test_duplicateKey(self):
        self.assertEqual(self.refused(Hello, version=1, devices=[{"key": "a", "size": 1}] * 2),
                         "device a is listed twice")

    def test_stateBeforeHello(self):
        self.assertEqual(self.refused(State, key="a", offset=0, data=b"x", last=True),
                         "State before an accepted Hello")

    def test_wrongOffset(self):
        self.hello()
        self.assertEqual(self.refused(State, key="a", offset=1, data=b"x", last=False),
                         "state for a at offset 1; expected offset 0")
        self.assertEqual(self.target.state, "waiting")

    def test_tooMuch(self):
        self.hello()
        self.assertEqual(self.refused(State, key="a", offset=0, data=b"xyzw", last=True),
                         "more state for a than the 3 bytes announced")

    def test_commitTooEarly(self):
        self.hello()
        (self.call(State, key="a", offset=0, data=b"xy", last=False))
        self.assertEqual(self.refused(Commit), "Commit before the state of a was complete")
        self.assertEqual(self.device.applied, [])

    def test_commitAnswer(self):
        self.assertEqual(self.hello(), {"version": 1, "accepted": ["a"], "targetOnly": []})
        (self.call(State, key="a", offset=0, data=b"xy", last=False))
        (self.call(State, key="a", offset=2, data=b"z", last=True))
        self.assertEqual((self.call(Commit)), {"keys": ["a"], "bytes": 3})
        self.assertEqual(self.device.applied, [b"xyz"])

    def test_malformed(self):
        results = []
        self.client._sendBoxCommand(b"State", amp.Box({b"key": b"a"})).addBoth(results.append)
        self.pump.flush()
        self.assertIn("malformed State command (KeyError: b'offset')",
                      results[0].getErrorMessage())
        self.assertTrue(self.pump.serverIO.disconnected)

    def test_otherCommands(self):
        self.call(amp.StartTLS).trap(amp.UnhandledCommand)

    def test_notACommand(self):
        amp.Box({b"hello": b"world"})._sendTo(self.client)
        self.pump.flush()
        self.assertTrue(self.pump.serverIO.disconnected)

    def test_idleSource(self):
        """
        A source that goes quiet after Hello is dropped after the idle
        timeout, and what it sent is discarded.
        """
        self.hello()
        (self.call(State, key="a", offset=0, data=b"xy", last=False))
        self.clock.advance(29)
        self.pump.flush()
        self.assertEqual(self.target.state, "receiving")
        self.clock.advance(1)
        self.pump.flush()
        self.assertTrue(self.pump.serverIO.disconnected)
        self.assertEqual(self.target.state, "waiting")
        self.assertEqual(self.device.applied, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stopDiscards(self):
        self.hello()
        d = self.target.stop()
        self.pump.flush()
        self.successResultOf(d)
        self.assertEqual(self.target.state, "waiting")
        self.assertEqual(self.device.applied, [])


class SocketTests(unittest.TestCase):
    """
    Real loopback sockets with the global reactor.
    """

    def listen(self, devices, description="tcp:127.0.0.1:0", tlsOptions=None, **kwargs):
        target = IncomingState(lambda: devices, clock=reactor, **kwargs)
        self.addCleanup(target.stop)
        d = target.listen(reactor, description, tlsOptions)
        return d.addCallback(lambda port: (target, port))

    @defer.inlineCallbacks
    def test_tcpRoundTrip(self):
        demo = DemoSource(clock=task.Clock())
        demo.keyboard.push_scan_freg(0x23)
        demo.keyboard.push_scan_freg(0xA3)
        demo.tablet.position(50, 120, 1)
        demo.tablet.position(400, 300, 1)
        newDemo = DemoSource(clock=task.Clock())
        big = randomBytes(1024 * 1024)
        fresh = RecordingState("big")
        completed = []
        target, port = yield self.listen(
            [newDemo, fresh], onComplete=lambda: completed.append(target.state))
        uri = "tcp:127.0.0.1:%d" % (port.getHost().port,)
        summary = yield sendState(reactor, uri, lambda: [demo, RecordingState("big", big)])
        self.assertEqual(summary["keys"], ["display.demo", "big"])
        self.assertEqual(completed, ["applying"])
        self.assertEqual(fresh.applied, [big])
        self.assertEqual(newDemo.text, "h")
        self.assertTrue(np.array_equal(newDemo.framebuffer(), demo.framebuffer()))
        # QEMU's -incoming takes one migration: the port is closed now
        self.assertEqual(target.state, "done")
        self.assertIsNone(target.port)
        yield target.stopped
        e = yield self.assertFailure(sendState(reactor, uri, [demo]), TransferError)
        self.assertEqual(str(e), "cannot connect to the migration target at %s: "
                                 "Connection refused" % (uri,))

    @defer.inlineCallbacks
    def test_unixRoundTrip(self):
        path = self.mktemp()
        fresh = RecordingState("a")
        target, port = yield self.listen([fresh], "unix:" + path)
        summary = yield sendState(reactor, "unix:" + path, [RecordingState("a", b"state")])
        self.assertEqual((summary["keys"], summary["bytes"]), (["a"], 5))
        self.assertEqual(fresh.applied, [b"state"])

    @defer.inlineCallbacks
    def test_listenIncoming(self):
        fresh = RecordingState("a")
        done = defer.Deferred()
        port = yield listenIncoming(reactor, "tcp:127.0.0.1:0", lambda: [fresh],
                                    onComplete=lambda: done.callback(None))
        self.addCleanup(port.factory.stop)
        self.assertIsInstance(port.factory, IncomingState)
        yield sendState(reactor, "tcp:127.0.0.1:%d" % (port.getHost().port,),
                        [RecordingState("a", b"1")])
        yield done
        self.assertEqual(fresh.applied, [b"1"])

    @defer.inlineCallbacks
    def test_connectionRefused(self):
        port = reactor.listenTCP(0, protocol.Factory.forProtocol(Silent),
                                 interface="127.0.0.1")
        number = port.getHost().port
        yield port.stopListening()
        e = yield self.assertFailure(
            sendState(reactor, "tcp:127.0.0.1:%d" % (number,), [RecordingState("a")]),
            TransferError)
        self.assertEqual(str(e), "cannot connect to the migration target at "
                                 "tcp:127.0.0.1:%d: Connection refused" % (number,))

    @defer.inlineCallbacks
    def test_unixMissing(self):
        e = yield self.assertFailure(
            sendState(reactor, "unix:nonexistent.sock", [RecordingState("a")]), TransferError)
        self.assertEqual(str(e), "cannot connect to the migration target at "
                                 "unix:nonexistent.sock: No such file or directory")

    @defer.inlineCallbacks
    def test_garbagePeer(self):
        """
        A peer that is not a migration source is dropped without harm; a
        real source migrates afterwards.
        """
        fresh = RecordingState("a")
        target, port = yield self.listen([fresh])
        address = port.getHost()
        for payload in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                        amp.Box({b"not": b"a command"}).serialize()):
            client = Closing(payload)
            yield endpoints.connectProtocol(
                endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", address.port), client)
            yield client.closed
        self.assertEqual(target.state, "waiting")
        yield sendState(reactor, "tcp:127.0.0.1:%d" % (address.port,),
                        [RecordingState("a", b"ok")])
        self.assertEqual(fresh.applied, [b"ok"])


try:
    from spicesrv.tls import write_dev_certs
except ImportError:        # written by someone else; generate them here until then
    write_dev_certs = None


def makeCertificates(directory):
    """
    Make a CA and a server certificate for 127.0.0.1 signed by it.

    @return: the server's TLS options and the CA's certificate.
    """
    if write_dev_certs is not None:
        paths = write_dev_certs(directory, subject="CN=127.0.0.1", sans=("IP:127.0.0.1",))
        with open(paths.server_cert, "rb") as f:
            serverPEM = f.read()
        with open(paths.server_key, "rb") as f:
            serverPEM += f.read()
        with open(paths.ca_cert, "rb") as f:
            caPEM = f.read()
    else:
        caKey, caCert = makeCA("spicesrv test CA")
        key, cert = makeServerCert(caKey, caCert, "127.0.0.1")
        serverPEM, caPEM = pem(key, cert), pem(cert=caCert)
    return (ssl.PrivateCertificate.loadPEM(serverPEM).options(),
            ssl.Certificate.loadPEM(caPEM))


def makeCA(name):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                         False, False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def makeServerCert(caKey, caCert, address):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, address)]))
            .issuer_name(caCert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(address))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .sign(caKey, hashes.SHA256()))
    return key, cert


def pem(key=None, cert=None):
    from cryptography.hazmat.primitives import serialization
    out = b""
    if cert is not None:
        out += cert.public_bytes(serialization.Encoding.PEM)
    if key is not None:
        out += key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())
    return out


class TLSTests(unittest.TestCase):
    """
    C{tls:HOST:PORT} transfers, with certificates made here (with
    L{spicesrv.tls.write_dev_certs} when it exists).
    """

    def setUp(self):
        self.serverOptions, self.ca = makeCertificates(self.mktemp())
        _, self.otherCA = makeCertificates(self.mktemp())

    @defer.inlineCallbacks
    def start(self, fresh):
        target = IncomingState(lambda: fresh, clock=reactor)
        self.addCleanup(target.stop)
        port = yield target.listen(reactor, "tls:127.0.0.1:0", self.serverOptions)
        defer.returnValue((target, "tls:127.0.0.1:%d" % (port.getHost().port,)))

    @defer.inlineCallbacks
    def test_trusted(self):
        fresh = RecordingState("a")
        target, uri = yield self.start([fresh])
        options = ssl.optionsForClientTLS("127.0.0.1", trustRoot=self.ca)
        summary = yield sendState(reactor, uri, [RecordingState("a", randomBytes(200000))],
                                  tlsOptions=options)
        self.assertEqual(summary["bytes"], 200000)
        self.assertEqual(fresh.applied, [randomBytes(200000)])

    @defer.inlineCallbacks
    def test_untrusted(self):
        fresh = RecordingState("a")
        target, uri = yield self.start([fresh])
        options = ssl.optionsForClientTLS("127.0.0.1", trustRoot=self.otherCA)
        e = yield self.assertFailure(sendState(reactor, uri, [RecordingState("a", b"1")],
                                               tlsOptions=options), TransferError)
        self.assertEqual(str(e), "TLS with the migration target at %s failed: "
                                 "certificate verify failed" % (uri,))
        self.assertEqual(fresh.applied, [])
        self.assertEqual(target.state, "waiting")

    @defer.inlineCallbacks
    def test_wrongName(self):
        fresh = RecordingState("a")
        target, uri = yield self.start([fresh])
        options = ssl.optionsForClientTLS("dst.example", trustRoot=self.ca)
        e = yield self.assertFailure(sendState(reactor, uri, [RecordingState("a", b"1")],
                                               tlsOptions=options), TransferError)
        self.assertEqual(str(e), "TLS with the migration target at %s failed: its "
                                 "certificate is not valid for dst.example" % (uri,))
        self.assertEqual(fresh.applied, [])


class MutualTLSTests(unittest.TestCase):
    """
    A tls: --incoming as twistd spice sets it up: the target shows its
    certificate and asks the source for one of the same CA
    (L{spicesrv.tls.ServerTLS.requiringClientCertificates} and
    L{spicesrv.tls.ServerTLS.clientOptions}).
    """

    def serverTLS(self, **kwargs):
        from spicesrv import tls
        directory = self.mktemp()
        tls.write_dev_certs(directory, **kwargs)
        return tls.load_server_tls(x509_dir=directory)

    @defer.inlineCallbacks
    def start(self, targetTLS, fresh):
        target = IncomingState(lambda: fresh, clock=reactor)
        self.addCleanup(target.stop)
        port = yield target.listen(reactor, "tls:127.0.0.1:0",
                                   targetTLS.requiringClientCertificates())
        defer.returnValue((target, "tls:127.0.0.1:%d" % (port.getHost().port,)))

    @defer.inlineCallbacks
    def test_sourceOfTheSameCA(self):
        """
        Source and target share the x509 dir (one CA): the transfer works.
        """
        tls = self.serverTLS()
        fresh = RecordingState("a")
        target, uri = yield self.start(tls, [fresh])
        yield sendState(reactor, uri, [RecordingState("a", b"state")],
                        tlsOptions=tls.clientOptions("127.0.0.1"))
        self.assertEqual(fresh.applied, [b"state"])

    @defer.inlineCallbacks
    def test_sourceWithoutCertificate(self):
        tls = self.serverTLS()
        fresh = RecordingState("a")
        target, uri = yield self.start(tls, [fresh])
        authority = ssl.Certificate.loadPEM(open(tls.cacert_file, "rb").read())
        options = ssl.optionsForClientTLS("127.0.0.1", trustRoot=authority)
        yield self.assertFailure(sendState(reactor, uri, [RecordingState("a", b"1")],
                                           tlsOptions=options), TransferError)
        self.assertEqual(fresh.applied, [])

    @defer.inlineCallbacks
    def test_sourceOfAnotherCA(self):
        """
        A source whose certificate comes from another CA is refused, even
        though it trusts the target.
        """
        targetTLS = self.serverTLS()
        sourceTLS = self.serverTLS()
        fresh = RecordingState("a")
        target, uri = yield self.start(targetTLS, [fresh])
        from OpenSSL import crypto
        mine = ssl.PrivateCertificate.fromCertificateAndKeyPair(
            ssl.Certificate(crypto.X509.from_cryptography(sourceTLS.certificate)),
            ssl.KeyPair(crypto.PKey.from_cryptography_key(sourceTLS._privateKey)))
        authority = ssl.Certificate.loadPEM(open(targetTLS.cacert_file, "rb").read())
        options = ssl.optionsForClientTLS("127.0.0.1", trustRoot=authority,
                                          clientCertificate=mine)
        yield self.assertFailure(sendState(reactor, uri, [RecordingState("a", b"1")],
                                           tlsOptions=options), TransferError)
        self.assertEqual(fresh.applied, [])


class TargetProcessTests(unittest.TestCase):
    """
    A real C{twistd spice --incoming} target on loopback, as an operator
    starts it: state it refuses is reported to the source, and the process
    goes on waiting for a correct migration.
    """

    timeout = 120

    @defer.inlineCallbacks
    def test_bogusStateThenCorrectMigration(self):
        spicePort, incomingPort = freePort(), freePort()
        target = Twistd(self, "--port", str(spicePort), "--disable-ticketing",
                        "--incoming", "tcp:127.0.0.1:%d" % (incomingPort,))
        yield target.waitForPorts(spicePort, incomingPort)
        uri = "tcp:127.0.0.1:%d" % (incomingPort,)

        e = yield self.assertFailure(
            sendState(reactor, uri, [RecordingState("display.demo", b"\x00" * 16)]), TransferError)
        self.assertEqual(str(e), "the target failed: cannot apply the state of display.demo: "
                                 "not demo display state (starts with %r); nothing was "
                                 "applied; the target waits for another migration"
                                 % (b"\x00" * 16,))
        demo = DemoSource(clock=task.Clock())
        demo.keyboard.push_scan_freg(0x23)
        canvas = demo.get_migration_state()
        canvas = canvas[:canvas.index(b"\x89PNG")]
        e = yield self.assertFailure(
            sendState(reactor, uri,
                      [RecordingState("display.demo", canvas + pngBomb(13000, 13000))]),
            TransferError)
        self.assertIn("the migrated canvas is 13000x13000 pixels", str(e))
        self.assertFalse(target.ended.called, target.text())

        summary = yield sendState(reactor, uri, [demo])
        self.assertEqual(summary["keys"], ["display.demo"])
        self.assertFalse(target.ended.called, target.text())
        self.assertIn("incoming migration failed", target.text())
        self.assertIn("still waiting on --incoming", target.text())
