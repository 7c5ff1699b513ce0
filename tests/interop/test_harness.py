"""
Tests for the real-client harness that need no SPICE server.
"""

import os
import socket
import tempfile
from unittest import mock

from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

from tests.interop import harness


def closedPort():
    """A loopback TCP port that nothing listens on (bound, then closed)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class RequireRealClientTests(unittest.SynchronousTestCase):
    """
    L{harness.requireRealClient} fails under CI and skips elsewhere when the
    client is missing.
    """

    def setUp(self):
        self.patch(harness, "findGtkClient", lambda: None)

    def test_missingUnderCI(self):
        with mock.patch.dict(os.environ, {"CI": "true"}):
            exc = self.assertRaises(self.failureException,
                                    harness.requireRealClient, self)
        self.assertIn("gir1.2-spiceclientglib-2.0", str(exc))
        self.assertIn("python3-gi", str(exc))

    def test_missingElsewhere(self):
        env = dict(os.environ)
        env.pop("CI", None)
        with mock.patch.dict(os.environ, env, clear=True):
            exc = self.assertRaises(harness.unittest.SkipTest,
                                    harness.requireRealClient, self)
        self.assertIn("apt-get install", str(exc))

    def test_present(self):
        self.patch(harness, "findGtkClient", lambda: "/usr/bin/python3")
        self.assertEqual(harness.requireRealClient(self), "/usr/bin/python3")


class HelperTests(unittest.SynchronousTestCase):
    def test_matchesDict(self):
        ev = {"event": "channel-event", "type": 1, "what": "X"}
        self.assertTrue(harness.matches({"event": "channel-event"}, ev))
        self.assertTrue(harness.matches({"type": 1, "what": "X"}, ev))
        self.assertFalse(harness.matches({"type": 2}, ev))
        self.assertFalse(harness.matches({"id": 0}, ev))

    def test_matchesCallable(self):
        self.assertTrue(harness.matches(lambda e: e["a"] > 1, {"a": 2}))
        self.assertFalse(harness.matches(lambda e: e["a"] > 1, {"a": 1}))

    def test_childEnvironment(self):
        with mock.patch.dict(os.environ, {"PYTHONPATH": "/pyenv/lib",
                                          "PYENV_VERSION": "3.11.7",
                                          "SPICESRV_SPICE_DEBUG": ""}):
            env = harness.childEnvironment({"EXTRA": "1"})
        self.assertNotIn("PYTHONPATH", env)
        self.assertNotIn("PYENV_VERSION", env)
        self.assertNotIn("SPICE_DEBUG", env)
        self.assertEqual(env["EXTRA"], "1")
        self.assertIn("/usr/bin", env["PATH"].split(":"))
        with mock.patch.dict(os.environ, {"SPICESRV_SPICE_DEBUG": "1"}):
            self.assertEqual(harness.childEnvironment()["SPICE_DEBUG"], "1")

    def test_loadPrimary(self):
        """
        A dump with row padding loads as (height, width, 4) without the
        padding.
        """
        width, height, stride = 3, 2, 16
        raw = bytearray(height * stride)
        for y in range(height):
            for x in range(width):
                off = y * stride + x * 4
                raw[off:off + 4] = bytes([x, y, 10 * x + y, 255])
            raw[y * stride + width * 4:(y + 1) * stride] = b"\xee" * (
                stride - width * 4)
        fd, path = tempfile.mkstemp()
        self.addCleanup(os.unlink, path)
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        a = harness.loadPrimary({"dump": path, "width": width,
                                 "height": height, "stride": stride,
                                 "format": 32})
        self.assertEqual(a.shape, (height, width, 4))
        self.assertEqual(list(a[1, 2]), [2, 1, 21, 255])
        self.assertEqual(list(a[0, 1]), [1, 0, 10, 255])
        b = harness.loadPrimary(bytes(raw), width, height, stride)
        self.assertEqual(a.tolist(), b.tolist())
        self.assertRaises(ValueError, harness.loadPrimary, b"\0" * 5, 3, 2)


class GtkClientTests(unittest.TestCase):
    """
    The real spice-gtk client, driven through the harness, without a
    server.
    """

    timeout = 120

    def setUp(self):
        self.python = harness.requireRealClient(self)

    @defer.inlineCallbacks
    def startClient(self, port, *extra):
        client = yield harness.GtkClient.start(
            reactor, "127.0.0.1", port, extra_args=extra)
        self.addCleanup(client.stop)
        return client

    def test_found(self):
        """The client is found, and the answer is cached."""
        self.assertTrue(os.access(self.python, os.X_OK))
        self.assertEqual(harness.findGtkClient(), self.python)

    @defer.inlineCallbacks
    def test_connectionRefused(self):
        """
        Connecting to a closed loopback port reports
        SPICE_CHANNEL_ERROR_CONNECT on the main channel.
        """
        client = yield self.startClient(closedPort())
        ready = client.events[0]
        self.assertEqual(ready["event"], "ready")
        self.assertTrue(ready["version"])
        ev = yield client.waitForEvent(
            {"event": "channel-event", "what": "SPICE_CHANNEL_ERROR_CONNECT"},
            timeout=30)
        self.assertEqual((ev["type"], ev["id"], ev["name"]), (1, 0, "main"))
        yield client.stop()
        self.assertEqual(client.exitStatus, 0)

    @defer.inlineCallbacks
    def test_notSpice(self):
        """
        A peer that answers the link message with something that is not
        SPICE gives SPICE_CHANNEL_ERROR_LINK on the main channel.
        """
        class NotSpice(protocol.Protocol):
            def dataReceived(self, data):
                self.transport.write(b"HTTP/1.0 400 Bad Request\r\n\r\n")
                self.transport.loseConnection()

        factory = protocol.ServerFactory.forProtocol(NotSpice)
        listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        client = yield self.startClient(listening.getHost().port)
        ev = yield client.waitForEvent(
            {"event": "channel-event", "type": 1}, timeout=30)
        self.assertEqual(ev["what"], "SPICE_CHANNEL_ERROR_LINK")

    @defer.inlineCallbacks
    def test_primaryBeforeConnection(self):
        """
        C{primary} before any connection answers ok false with a reason;
        after C{connect} to a closed port the error arrives.
        """
        client = yield self.startClient(closedPort(), "--no-autoconnect")
        reply = yield client.command("primary")
        self.assertEqual(reply["reply"], "primary")
        self.assertIs(reply["ok"], False)
        self.assertIn("no display channel", reply["reason"])
        reply = yield client.command("channels")
        self.assertEqual((reply["ok"], reply["channels"]), (True, []))
        reply = yield client.command("key_press", scancode=0x1e)
        self.assertIs(reply["ok"], False)
        yield client.check("connect")
        yield client.waitForEvent(
            {"event": "channel-event", "what": "SPICE_CHANNEL_ERROR_CONNECT"})
        reply = yield client.command("primary")
        self.assertIs(reply["ok"], False)

    @defer.inlineCallbacks
    def test_commandErrors(self):
        """
        Unknown commands and bad arguments answer ok false; a line that is
        not JSON is reported as an error event; the client keeps going.
        """
        client = yield self.startClient(closedPort(), "--no-autoconnect")
        reply = yield client.command("no_such_command")
        self.assertIs(reply["ok"], False)
        self.assertIn("unknown command", reply["reason"])
        with self.assertRaises(harness.GtkClientError):
            yield client.check("no_such_command")
        client.transport.write(b"this is not json\n")
        ev = yield client.waitForEvent({"event": "error"})
        self.assertIn("bad command", ev["message"])
        reply = yield client.command("session")
        self.assertTrue(reply["ok"])
        self.assertEqual(reply["host"], "127.0.0.1")
        self.assertEqual(reply["migration_state"], 0)

    @defer.inlineCallbacks
    def test_waitForEventTimeout(self):
        """
        A wait that times out fails with L{harness.HarnessTimeout} naming
        the recent events.
        """
        client = yield self.startClient(closedPort(), "--no-autoconnect")
        with self.assertRaises(harness.HarnessTimeout) as cm:
            yield client.waitForEvent({"event": "never"}, timeout=0.2)
        self.assertIn("recent events", str(cm.exception))
        self.assertIn('"ready"', str(cm.exception))
        self.assertEqual(client._waiters, [])

    @defer.inlineCallbacks
    def test_waitForPrimaryTimeout(self):
        """
        L{harness.GtkClient.waitForPrimary} fails with the last reply when
        no primary comes.
        """
        client = yield self.startClient(closedPort(), "--no-autoconnect")
        with self.assertRaises(harness.HarnessTimeout) as cm:
            yield client.waitForPrimary(timeout=0.3)
        self.assertIn("last reply", str(cm.exception))
        self.assertIn("no display channel", str(cm.exception))

    @defer.inlineCallbacks
    def test_stdinEOF(self):
        """Closing stdin makes the client exit 0."""
        client = yield self.startClient(closedPort(), "--no-autoconnect")
        client.transport.closeStdin()
        yield client.whenEnded()
        self.assertEqual(client.exitStatus, 0)
        with self.assertRaises(harness.GtkClientError):
            yield client.command("channels")
