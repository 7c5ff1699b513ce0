"""
Tests for L{spicesrv.session.ClientSession}: one client's channels, the end
of the session, and what it offers its channels.
"""

from twisted.trial import unittest

from spicesrv.context import ChannelContext
from spicesrv.link import LinkInfo
from spicesrv.migration.arrival import ARRIVED, WAITING
from spicesrv.session import ClientSession
from spicesrv.testing import (
    FakeDisplaySource, RecordingKeyboard, TestClientChannel, makeTestServer)
from spicesrv.wire.constants import ChannelType, MainCap, MouseMode
from spicesrv.wire.messages import MAIN_CLIENT


class FakeChannel:
    def __init__(self, channel_type, channel_id=0):
        self.channelType = channel_type
        self.channelId = channel_id
        self.info = LinkInfo(connection_id=42, channel_type=channel_type,
                             channel_id=channel_id, common_caps=frozenset(),
                             channel_caps=frozenset(), secure=False)
        self.closed = None
        self.aborted = False
        self.transport = self
        self.calls = []

    def close(self, reason):
        self.closed = reason

    def abortConnection(self):
        self.aborted = True

    def ledsChanged(self):
        self.calls.append("ledsChanged")


class SessionTests(unittest.TestCase):
    def setUp(self):
        self.server = makeTestServer(disable_ticketing=True)
        self.closed = []
        self.server.addEventObserver(lambda name, data: self.closed.append(name))
        self.session = ClientSession(self.server, 42, "10.0.0.1:4000")
        self.server.sessions[42] = self.session

    def test_context(self):
        self.assertIsInstance(self.session.context, ChannelContext)
        self.assertIs(self.session.context, self.server.context)
        self.assertEqual(repr(self.session), "<ClientSession 42 from 10.0.0.1:4000>")

    def test_ordinarySessionIsNotArriving(self):
        self.assertIsNone(self.session.arrival)
        self.assertFalse(self.session.arriving)
        self.assertFalse(self.session.restoringSeamlessly)

    def test_addAndReplace(self):
        main = FakeChannel(ChannelType.MAIN)
        inputs = FakeChannel(ChannelType.INPUTS)
        self.session.add(main)
        self.session.add(inputs)
        self.assertIs(self.session.main, main)
        again = FakeChannel(ChannelType.INPUTS)
        self.session.add(again)
        self.assertEqual(inputs.closed, "replaced by a new link of the same channel")
        self.assertIs(self.session.channels[(ChannelType.INPUTS, 0)], again)

    def test_lostReplacedChannelKeepsTheNewOne(self):
        old = FakeChannel(ChannelType.INPUTS)
        new = FakeChannel(ChannelType.INPUTS)
        self.session.add(old)
        self.session.add(new)
        self.session.channelLost(old)
        self.assertIs(self.session.channels[(ChannelType.INPUTS, 0)], new)

    def test_losingMainEndsTheSession(self):
        main = FakeChannel(ChannelType.MAIN)
        inputs = FakeChannel(ChannelType.INPUTS)
        self.session.add(main)
        self.session.add(inputs)
        self.session.channelLost(inputs)
        self.assertFalse(self.session.ended)
        self.session.channelLost(main)
        self.assertTrue(self.session.ended)
        self.assertNotIn(42, self.server.sessions)
        self.assertEqual(self.closed, ["SPICE_DISCONNECTED"] * 2)

    def test_endAbortsChannelsOnce(self):
        inputs = FakeChannel(ChannelType.INPUTS)
        self.session.add(inputs)
        self.session.end()
        self.assertTrue(inputs.aborted)
        inputs.aborted = False
        self.session.end()
        self.assertFalse(inputs.aborted)

    def test_broadcast(self):
        inputs = FakeChannel(ChannelType.INPUTS)
        self.session.add(inputs)
        self.session.add(FakeChannel(ChannelType.MAIN))
        self.session.broadcast("ledsChanged")
        self.assertEqual(inputs.calls, ["ledsChanged"])

    def test_migratingInHasAnArrival(self):
        session = ClientSession(self.server, 43, "peer", migratingIn=True)
        self.assertEqual(session.arrival.state, WAITING)
        self.assertTrue(session.arriving)
        self.assertEqual(session.arrival.timeout, self.server.migrationArrivalTimeout)
        session.end()
        self.assertFalse(session.arriving)

    def test_channelClosedEvent(self):
        """
        The session reports closed channels to the server, which emits
        SPICE_DISCONNECTED.
        """
        main = TestClientChannel(self.server, ChannelType.MAIN)
        main.protocol.connectionLost(None)
        self.assertEqual(self.closed, ["SPICE_CONNECTED", "SPICE_INITIALIZED",
                                       "SPICE_DISCONNECTED"])


class ArrivingSessionTests(unittest.TestCase):
    """
    A session migrating in, over real in-memory links.
    """

    def setUp(self):
        self.server = makeTestServer(disable_ticketing=True)
        self.server.addInterface(FakeDisplaySource())

    def test_arrival(self):
        main = TestClientChannel(self.server, ChannelType.MAIN, connection_id=5,
                                 channel_caps={MainCap.SEMI_SEAMLESS_MIGRATE})
        session = self.server.sessions[5]
        self.assertTrue(session.arriving)
        main.send(MAIN_CLIENT["MIGRATE_END"])
        self.assertEqual(session.arrival.state, ARRIVED)
        self.assertFalse(session.arriving)
        self.assertEqual(main.next("INIT").session_id, 5)


class ContextTests(unittest.TestCase):
    """
    L{ChannelContext} shows channels the server's devices and settings.
    """

    def test_view(self):
        server = makeTestServer(disable_ticketing=True, name="vm", seamless_migration=True)
        context = server.context
        keyboard = RecordingKeyboard()
        server.addInterface(keyboard)
        display = FakeDisplaySource()
        server.addInterface(display)
        self.assertIs(context.clock, server.clock)
        self.assertEqual(context.name, "vm")
        self.assertIsNone(context.uuid)
        self.assertTrue(context.seamless)
        self.assertFalse(context.tlsAvailable)
        self.assertIs(context.keyboard, keyboard)
        self.assertIsNone(context.mouse)
        self.assertIsNone(context.tablet)
        self.assertEqual(context.displays, [display])
        self.assertEqual(context.mouseMode, MouseMode.SERVER)
        self.assertEqual(context.supportedMouseModes, MouseMode.SERVER)
        self.assertEqual(context.mmTime(), server.mmTime())
        self.assertEqual([(e.channel_type, e.channel_id) for e in context.channelEntries()],
                         [(1, 0), (2, 0), (3, 0), (4, 0)])

    def test_requestMouseMode(self):
        server = makeTestServer(disable_ticketing=True)
        server.context.requestMouseMode(MouseMode.CLIENT)     # no tablet: refused
        self.assertEqual(server.mouseMode, MouseMode.SERVER)
