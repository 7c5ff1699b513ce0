"""
The port channel against the real spice-gtk client (SpicePortChannel): a
spicesrv server in this process bridges ports to a TCP echo server on
loopback, and the client's bytes go round trip through spicesrv and back.

What spice-gtk does that these tests lean on: it opens a port by linking
its channel and closes it by unlinking (its API refuses to send PORT_EVENT
OPENED or CLOSED); its C{port-opened} property follows the server's
PORT_INIT and PORT_EVENT; its writes fail while the port is not opened;
each C{write_async} is one DATA message; its port channel neither
advertises nor understands COMPRESSED_DATA.
"""

import os
import signal

from twisted.internet import defer, endpoints, reactor, task
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest

from spicesrv.channels.port import PortChannel, portBackend
from spicesrv.testing import waitUntil
from spicesrv.wire.constants import ChannelType
from tests.interop import harness
from tests.interop.common import PASSWORD, RunningServer

ECHO = "com.example.echo"
SERIAL = "org.qemu.console.serial.0"
# More than loopback's socket buffers can hold on the way (a few MB each).
BULK = 16 * 1024 * 1024


class _Echo(Protocol):
    def connectionMade(self):
        self.received = bytearray()
        self.held = bytearray()
        self.factory.connections.append(self)
        self.factory.notify(self)

    def dataReceived(self, data):
        self.received += data
        if self.factory.echoing:
            self.transport.write(data)
        else:
            self.held += data

    def release(self):
        """
        Echo everything held back, in one write.
        """
        held, self.held = bytes(self.held), bytearray()
        self.transport.write(held)

    def connectionLost(self, reason):
        self.factory.lost.append(self)
        self.factory.notify(self)


class EchoServer(Factory):
    """
    A TCP echo server on a free loopback port; it records what each
    connection received.  With C{echoing} false it holds what it receives
    until told to L{_Echo.release} it.
    """

    protocol = _Echo
    echoing = True

    def __init__(self):
        self.connections = []
        self.lost = []
        self._waiters = []

    @defer.inlineCallbacks
    def listen(self, testcase):
        endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        self.port = yield endpoint.listen(self)
        testcase.addCleanup(self.stop)
        return self.port.getHost().port

    def stop(self):
        for connection in self.connections:
            connection.transport.abortConnection()
        return self.port.stopListening()

    def notify(self, _):
        waiters, self._waiters = self._waiters, []
        for condition, d in waiters:
            if condition():
                d.callback(None)
            else:
                self._waiters.append((condition, d))

    def waitFor(self, condition, timeout=20):
        if condition():
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiters.append((condition, d))
        d.addTimeout(timeout, reactor)
        return d


@defer.inlineCallbacks
def closedPort():
    """
    A loopback port nothing listens on (bound, then released).
    """
    endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    listening = yield endpoint.listen(Factory.forProtocol(Protocol))
    number = listening.getHost().port
    yield listening.stopListening()
    return number


def pattern(size):
    """
    Bytes that never repeat at the same offset (a running counter), so a
    lost, duplicated or reordered piece shows.
    """
    out = bytearray()
    i = 0
    while len(out) < size:
        out += b"%09d;" % i
        i += 1
    return bytes(out[:size])


class PortTests(unittest.TestCase):
    timeout = 120

    def setUp(self):
        harness.requireRealClient(self)

    @defer.inlineCallbacks
    def serve(self, ports):
        """
        A listening server with the demo display and the given ports:
        C{[(name, endpoint description, extra kwargs)]}, ids 0, 1, ...
        Returns C{(running, port number)}.
        """
        running = RunningServer(self, password=PASSWORD)
        for channel_id, (name, description, kwargs) in enumerate(ports):
            running.server.registry.register(
                ChannelType.PORT, channel_id, PortChannel, name=name,
                endpoint=portBackend(reactor, description), **kwargs)
        number = yield running.listen()
        return running, number

    @defer.inlineCallbacks
    def startClient(self, port):
        client = yield harness.GtkClient.start(reactor, "127.0.0.1", port, password=PASSWORD)
        self.addCleanup(client.stop)
        return client

    @defer.inlineCallbacks
    def waitOpened(self, client, channel_id=0, since=0):
        ev = yield client.waitForEvent({"event": "port-opened", "id": channel_id,
                                        "opened": True}, timeout=20, since=since)
        return ev

    @defer.inlineCallbacks
    def receive(self, client, channel_id, size, since, timeout=30):
        """
        The port-data events of one port from C{since} on, once their sizes
        add up to C{size}.
        """
        def got():
            return [e for e in client.events[since:]
                    if e["event"] == "port-data" and e["id"] == channel_id]

        deadline = reactor.seconds() + timeout
        while sum(e["size"] for e in got()) < size:
            if reactor.seconds() > deadline or client.ended:
                self.fail("port %d: %d of %d bytes came back within %ss"
                          % (channel_id, sum(e["size"] for e in got()), size, timeout))
            yield task.deferLater(reactor, 0.02, lambda: None)
        return got()

    def assertEchoed(self, events, data):
        """
        The events carry C{data}, in order: sizes add up, and each event's
        visible head (spice-gtk's harness shows the first 4096 bytes of
        each message) is the data at its offset.
        """
        self.assertEqual(sum(e["size"] for e in events), len(data))
        offset = 0
        for e in events:
            head = bytes.fromhex(e["hex"])
            self.assertEqual(head, data[offset:offset + len(head)],
                             "bytes at offset %d differ" % offset)
            offset += e["size"]

    @defer.inlineCallbacks
    def echo(self, client, data, channel_id=0):
        since = len(client.events)
        yield client.check("port_write", hex=data.hex(), channel_id=channel_id)
        events = yield self.receive(client, channel_id, len(data), since)
        self.assertEchoed(events, data)
        return events

    @defer.inlineCallbacks
    def test_echoRoundTrip(self):
        """
        The client opens the port channel; spicesrv connects the backend and
        tells it the port is open; written bytes reach the echo server and
        come back as port-data.
        """
        echo = EchoServer()
        echoPort = yield echo.listen(self)
        running, port = yield self.serve([(ECHO, "tcp:host=127.0.0.1:port=%d" % echoPort, {})])
        client = yield self.startClient(port)
        yield client.waitForChannelsOpened((1, 10), timeout=20)
        opened = yield self.waitOpened(client)
        self.assertEqual(opened["port_name"], ECHO)
        yield client.waitForEvent({"event": "port-event", "id": 0, "port_event": 0})
        yield self.echo(client, b"hello through spicesrv\n")
        self.assertEqual(bytes(echo.connections[0].received), b"hello through spicesrv\n")
        # spicesrv advertises LZ4 (spicevmc cap 0); spice-gtk's port channel
        # does not, so everything it got was plain DATA.
        channels = (yield client.check("channels"))["channels"]
        (portInfo,) = [c for c in channels if c["type"] == 10]
        self.assertIn(0, portInfo["remote_caps"])
        channel = running.channel(ChannelType.PORT)
        self.assertEqual(set(channel.info.channel_caps), set())
        self.assertFalse(channel.compress)

    @defer.inlineCallbacks
    def test_largeWriteComesBackComplete(self):
        """
        200 KB in one write (one DATA message from spice-gtk) reach the echo
        server intact and come back complete and in order, split into 64 KiB
        messages; a port with 4 KiB messages shows every byte.  The data is
        compressible: had spicesrv compressed it for a client without the
        cap, spice-gtk would have dropped it.
        """
        echo = EchoServer()
        echoPort = yield echo.listen(self)
        description = "tcp:host=127.0.0.1:port=%d" % echoPort
        running, port = yield self.serve([(ECHO, description, {}),
                                          (SERIAL, description, {"maxMessage": 4096})])
        client = yield self.startClient(port)
        yield self.waitOpened(client, 0)
        yield self.waitOpened(client, 1)
        data = pattern(200 * 1000)
        events = yield self.echo(client, data, channel_id=0)
        self.assertLessEqual(max(e["size"] for e in events), 65536)
        exact = yield self.echo(client, data, channel_id=1)
        self.assertEqual(b"".join(bytes.fromhex(e["hex"]) for e in exact), data)
        received = sorted(bytes(c.received) for c in echo.connections)
        self.assertEqual(received, [data, data])

    @defer.inlineCallbacks
    def test_closeAndReopen(self):
        """
        Closing: spice-gtk closes a port by unlinking its channel (it refuses
        to send CLOSED itself), and spicesrv then disconnects the backend.
        Reopening: the next link connects anew.  When the backend hangs up,
        the client is told the port closed, and spice-gtk then refuses
        writes.  A BREAK reaches spicesrv and changes nothing.
        """
        echo = EchoServer()
        echoPort = yield echo.listen(self)
        running, port = yield self.serve([(ECHO, "tcp:host=127.0.0.1:port=%d" % echoPort, {})])
        first = yield self.startClient(port)
        yield self.waitOpened(first)
        yield self.echo(first, b"one")

        yield first.check("port_event", event=1)
        yield first.check("port_event", event=2)
        yield self.echo(first, b"still open")
        self.assertEqual(len(echo.connections), 1)
        yield self.waitUntil(lambda: "event > SPICE_PORT_EVENT_CLOSED" in first.stderrText(),
                             "spice-gtk refusing to send CLOSED")

        yield first.check("disconnect")
        yield echo.waitFor(lambda: len(echo.lost) == 1)
        self.assertIs(echo.lost[0], echo.connections[0])

        second = yield self.startClient(port)
        yield self.waitOpened(second)
        yield echo.waitFor(lambda: len(echo.connections) == 2)
        yield self.echo(second, b"two")
        self.assertEqual(bytes(echo.connections[1].received), b"two")

        since = len(second.events)
        echo.connections[1].transport.loseConnection()
        yield second.waitForEvent({"event": "port-opened", "id": 0, "opened": False},
                                  since=since)
        yield second.waitForEvent({"event": "port-event", "id": 0, "port_event": 1},
                                  since=since)
        yield second.check("port_write", hex=b"nobody home".hex())
        failed = yield second.waitForEvent({"event": "error"}, since=since)
        self.assertIn("not opened", failed["message"])
        # The channel itself stays linked, and the server serves on.
        self.assertTrue(running.channel(ChannelType.PORT).connected)
        yield second.waitForPrimary(lambda r: r["width"] == 1024, timeout=20)

    @defer.inlineCallbacks
    def test_refusedIsClosedNotACrash(self):
        """
        A port whose endpoint refuses connections is reported as closed
        (PORT_EVENT CLOSED; port-opened never becomes true); its channel
        stays linked, the other port and the display keep working.
        """
        dead = yield closedPort()
        echo = EchoServer()
        echoPort = yield echo.listen(self)
        running, port = yield self.serve([
            (SERIAL, "tcp:host=127.0.0.1:port=%d" % dead, {}),
            (ECHO, "tcp:host=127.0.0.1:port=%d" % echoPort, {})])
        client = yield self.startClient(port)
        yield client.waitForEvent({"event": "port-event", "id": 0, "port_event": 1}, timeout=20)
        yield self.waitOpened(client, 1)
        self.assertFalse([e for e in client.events
                          if e["event"] == "port-opened" and e["id"] == 0 and e["opened"]])
        channels = (yield client.check("channels"))["channels"]
        states = {(c["type"], c["id"]): c["state"] for c in channels}
        self.assertEqual(states[(10, 0)], "SPICE_CHANNEL_OPENED")
        self.assertTrue(running.channel(ChannelType.PORT, 0).connected)
        yield self.echo(client, b"the other port works", channel_id=1)
        reply = yield client.waitForPrimary(lambda r: r["width"] == 1024, timeout=20)
        self.assertTrue(reply["ok"])

    @defer.inlineCallbacks
    def test_backpressureOverRealSockets(self):
        """
        Both directions over real sockets.  The echo server stops reading:
        spicesrv's socket to it fills and spicesrv stops reading from the
        client.  Then the client process is stopped and the echo server
        sends everything back: the client's socket fills and spicesrv stops
        reading from the backend.  Resumed, everything arrives, in order.
        """
        echo = EchoServer()
        echo.echoing = False
        echoPort = yield echo.listen(self)
        running, port = yield self.serve([(ECHO, "tcp:host=127.0.0.1:port=%d" % echoPort, {})])
        client = yield self.startClient(port)
        yield self.waitOpened(client)
        yield echo.waitFor(lambda: len(echo.connections) == 1)
        backend = echo.connections[0]
        channel = running.channel(ChannelType.PORT)
        toBackend = channel.backendTransport
        data = pattern(BULK)
        piece = 512 * 1024

        # Client -> backend.
        backend.transport.pauseProducing()
        for start in range(0, len(data), piece):
            yield client.check("port_write", hex=data[start:start + piece].hex())
        yield self.waitUntil(lambda: channel.readingPaused,
                             "spicesrv pausing the client while the backend is full")
        backend.transport.resumeProducing()
        yield self.waitUntil(lambda: len(backend.received) == len(data),
                             "all the data at the echo server", timeout=60)
        self.assertEqual(bytes(backend.received), data)
        self.assertFalse(channel.readingPaused)

        # Backend -> client.
        since = len(client.events)
        os.kill(client.pid, signal.SIGSTOP)
        try:
            backend.release()
            yield self.waitUntil(
                lambda: channel.clientFull and toBackend not in reactor.getReaders(),
                "spicesrv pausing the backend while the client is full")
        finally:
            os.kill(client.pid, signal.SIGCONT)
        events = yield self.receive(client, 0, len(data), since, timeout=90)
        self.assertEchoed(events, data)
        self.assertIn(toBackend, reactor.getReaders())

    def waitUntil(self, condition, what, timeout=20):
        return waitUntil(reactor, condition, timeout, failure="no %s within %s s"
                         % (what, timeout))
