"""
Tests for L{spicesrv.testing}'s fakes: one for every interface of
L{spicesrv.interfaces}, each verified, the log capture and the poller.
"""

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial import unittest
from zope.interface.interface import InterfaceClass
from zope.interface.verify import verifyObject

from spicesrv import interfaces
from spicesrv.testing import (
    FAKES, FakeChannelPlugin, FakeDisplaySource, FakeSourcePlugin, LogCapture,
    RecordingMigration, RecordingState, TestClientChannel, makeTestServer, sessionChannel,
    waitUntil)
from spicesrv.wire.constants import ChannelType


class FakesTests(unittest.TestCase):

    def test_everyInterfaceHasAFake(self):
        declared = {value for value in vars(interfaces).values()
                    if isinstance(value, InterfaceClass)
                    and value.__module__ == interfaces.__name__}
        self.assertEqual(declared - set(FAKES), set())

    def test_fakesVerified(self):
        for interface, make in FAKES.items():
            self.assertTrue(verifyObject(interface, make()), interface)

    def test_migrationCallbacks(self):
        server = makeTestServer(disable_ticketing=True)
        callbacks = RecordingMigration()
        server.addInterface(callbacks)
        callbacks.migrate_connect_complete()
        self.assertEqual(callbacks.calls, ["connect_complete"])

    def test_state(self):
        state = RecordingState("k", b"old")
        self.assertEqual(state.get_migration_state(), b"old")
        state.set_migration_state(b"new")
        self.assertEqual((state.data, state.applied), (b"new", [b"new"]))
        self.assertRaises(ValueError, RecordingState("k", reject="no").set_migration_state, b"x")

    def test_sourcePlugin(self):
        plugin = FakeSourcePlugin()
        source = plugin.makeSource("32x16", {}, Clock())
        self.assertIsInstance(source, FakeDisplaySource)
        self.assertEqual((source.width, source.height), (32, 16))
        self.assertEqual(len(plugin.made), 1)
        self.assertRaises(ValueError, plugin.makeSource, "big", {}, Clock())

    def test_channelPlugin(self):
        from spicesrv.channels.port import PortChannel
        server = makeTestServer(disable_ticketing=True)
        state = RecordingState()
        plugin = FakeChannelPlugin(ChannelType.PORT, PortChannel, devices=[state])
        self.assertEqual(plugin.install(server, {}, Clock()), [state])
        self.assertEqual(server.channelClass(ChannelType.PORT, 0), PortChannel)


class LogCaptureTests(unittest.TestCase):

    def test_capture(self):
        log = LogCapture(self)
        Logger().info("hello {who}", who="world")
        Logger().warn("other")
        self.assertEqual(log.matching("hello"), ["hello world"])
        self.assertIn("other", log.text())
        self.assertEqual(len(log.events), 2)


class SessionChannelTests(unittest.TestCase):
    def test_theOneSession(self):
        server = makeTestServer(disable_ticketing=True)
        self.assertRaises(unittest.FailTest, sessionChannel, server, ChannelType.MAIN)
        main = TestClientChannel(server, ChannelType.MAIN)
        self.assertIs(sessionChannel(server, ChannelType.MAIN), main.channel)
        TestClientChannel(server, ChannelType.MAIN)
        e = self.assertRaises(unittest.FailTest, sessionChannel, server, ChannelType.MAIN)
        self.assertEqual(str(e), "one session expected, the server has 2")


class WaitUntilTests(unittest.TestCase):

    def test_fires(self):
        calls = []

        def condition():
            calls.append(None)
            return len(calls) >= 3
        return waitUntil(reactor, condition, timeout=5, interval=0.001)

    def test_timesOut(self):
        d = waitUntil(reactor, lambda: False, timeout=0.05, interval=0.01)
        d = self.assertFailure(d, unittest.FailTest)
        return d.addCallback(lambda e: self.assertEqual(
            str(e), "condition not met within 0.05 seconds"))

    def test_failureMessage(self):
        d = waitUntil(reactor, lambda: False, timeout=0.01, interval=0.01,
                      failure="no echo within 0.01 s")
        d = self.assertFailure(d, unittest.FailTest)
        return d.addCallback(lambda e: self.assertEqual(str(e), "no echo within 0.01 s"))
