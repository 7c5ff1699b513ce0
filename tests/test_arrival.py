"""
Tests for L{spicesrv.migration.arrival}: the target's state machine for one
client migrating in, alone, with a fake server, session, main channel and
links (L{StringTransport}) and a L{task.Clock}.  The same choreography over
real links is in L{tests.test_migration}.
"""

from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from spicesrv.link import LinkInfo
from spicesrv.migration import arrival
from spicesrv.migration.arrival import (
    ABANDONED, ARRIVED, PARKED, SEAMLESS_RESTORE, TIMED_OUT, WAITING, Arrival)
from spicesrv.migration.source import MIGRATION_PROTOCOL_VERSION
from spicesrv.registry import ChannelRegistry
from spicesrv.wire.constants import ChannelType, MainCap

TIMEOUT = 300.0


def linkInfo(channel_type, channel_id=0, caps=()):
    return LinkInfo(connection_id=7, channel_type=channel_type, channel_id=channel_id,
                    common_caps=frozenset(), channel_caps=frozenset(caps), secure=False,
                    peer="10.0.0.1:4000")


class FakeLink:
    def __init__(self, channel_type, channel_id=0):
        self.info = linkInfo(channel_type, channel_id)
        self.transport = StringTransport()
        self.channel = None

    def runChannel(self, channel):
        self.channel = channel


class FakeChannel:
    def __init__(self, session, info, awaiting=False):
        self.session = session
        self.info = info
        self.awaitingMigrationData = awaiting


class FakeMain:
    def __init__(self, caps=(MainCap.SEMI_SEAMLESS_MIGRATE,)):
        self.info = linkInfo(ChannelType.MAIN, caps=caps)
        self.calls = []
        self.awaitingMigrationData = False

    def welcomeMigrated(self):
        self.calls.append("welcome")

    def answerSeamless(self, accepted):
        self.calls.append("ack" if accepted else "nack")

    def awaitMigrationData(self):
        self.awaitingMigrationData = True
        self.calls.append("await")

    def sendMultiMediaTime(self):
        self.calls.append("mm-time")


class FakeSession:
    def __init__(self, server):
        self.id = 7
        self.main = None
        self.channels = {}
        self.ended = False
        self.arrival = None
        self.server = server

    @property
    def arriving(self):
        return self.arrival is not None and self.arrival.inProgress

    def end(self):
        self.ended = True
        self.arrival.abandon()


class FakeServer:
    def __init__(self, seamless=False):
        self.clock = task.Clock()
        self.registry = ChannelRegistry()
        for channel_type in (ChannelType.INPUTS, ChannelType.DISPLAY):
            self.registry.register(channel_type, 0, FakeChannel)
        self.seamless = seamless
        self.sessions = {}
        self.arrived = []
        self.restoring = False

    def newChannel(self, session, info, entry):
        channel = FakeChannel(session, info, awaiting=self.restoring)
        session.channels[(info.channel_type, info.channel_id)] = channel
        return channel

    def sessionArrived(self, session):
        self.arrived.append(session)


class ArrivalTests(unittest.TestCase):
    def setUp(self):
        self.server = FakeServer()
        self.session = FakeSession(self.server)
        self.server.sessions[7] = self.session
        self.arrival = self.session.arrival = Arrival(self.session, self.server, TIMEOUT)
        self.main = FakeMain()
        self.session.main = self.main
        self.session.channels[(ChannelType.MAIN, 0)] = self.main

    def park(self, channel_type):
        link = FakeLink(channel_type)
        self.arrival.park(link, self.server.registry.lookup(channel_type, 0))
        return link

    def test_waiting(self):
        self.assertEqual(self.arrival.state, WAITING)
        self.assertTrue(self.arrival.inProgress)
        self.assertTrue(self.arrival.parksLinks)
        self.assertFalse(self.arrival.restoring)
        self.assertEqual(self.server.clock.getDelayedCalls()[0].getTime(), TIMEOUT)

    def test_parked(self):
        inputs = self.park(ChannelType.INPUTS)
        self.assertEqual(self.arrival.state, PARKED)
        self.assertTrue(self.arrival.parksLinks)
        self.assertIsNone(inputs.channel)
        self.assertEqual(len(self.arrival.parked), 1)

    def test_lastParkedLinkGoneIsWaitingAgain(self):
        inputs = self.park(ChannelType.INPUTS)
        display = self.park(ChannelType.DISPLAY)
        self.arrival.unpark(inputs)
        self.assertEqual(self.arrival.state, PARKED)
        self.arrival.unpark(display)
        self.assertEqual(self.arrival.state, WAITING)

    def test_arrived(self):
        """
        MIGRATE_END: the main channel is welcomed, the parked links start,
        the timer stops and the server hears of it, once.
        """
        inputs = self.park(ChannelType.INPUTS)
        self.arrival.clientSwitched(self.main)
        self.assertEqual(self.arrival.state, ARRIVED)
        self.assertEqual(self.main.calls, ["welcome"])
        self.assertIsInstance(inputs.channel, FakeChannel)
        self.assertEqual(self.arrival.parked, [])
        self.assertEqual(self.server.arrived, [self.session])
        self.assertEqual(self.server.clock.getDelayedCalls(), [])
        self.assertFalse(self.arrival.inProgress)
        self.assertFalse(self.arrival.parksLinks)

    def test_secondMigrateEndIgnored(self):
        self.arrival.clientSwitched(self.main)
        self.arrival.clientSwitched(self.main)
        self.assertEqual(self.main.calls, ["welcome"])
        self.assertEqual(self.server.arrived, [self.session])

    def test_migrateEndWithoutCapabilityIgnored(self):
        main = FakeMain(caps=())
        self.arrival.clientSwitched(main)
        self.assertEqual(self.arrival.state, WAITING)
        self.assertEqual(main.calls, [])

    def test_goneChannelDropped(self):
        """
        A parked link whose channel the server stopped offering is closed,
        not started.
        """
        display = self.park(ChannelType.DISPLAY)
        self.server.registry.unregister(ChannelType.DISPLAY, 0)
        self.arrival.clientSwitched(self.main)
        self.assertIsNone(display.channel)
        self.assertTrue(display.transport.disconnecting)

    def test_timedOut(self):
        inputs = self.park(ChannelType.INPUTS)
        self.server.clock.advance(TIMEOUT - 1)
        self.assertEqual(self.arrival.state, PARKED)
        self.server.clock.advance(1)
        self.assertEqual(self.arrival.state, TIMED_OUT)
        self.assertTrue(self.session.ended)
        self.assertTrue(inputs.transport.disconnected)
        self.assertFalse(self.arrival.inProgress)

    def test_abandoned(self):
        """
        The session ends (its main link closed) before the client switched:
        the parked links are aborted and the timer stops.
        """
        inputs = self.park(ChannelType.INPUTS)
        self.session.end()
        self.assertEqual(self.arrival.state, ABANDONED)
        self.assertTrue(inputs.transport.disconnected)
        self.assertEqual(self.server.clock.getDelayedCalls(), [])

    def test_endAfterArrivalKeepsArrived(self):
        self.arrival.clientSwitched(self.main)
        self.session.end()
        self.assertEqual(self.arrival.state, ARRIVED)


class SeamlessArrivalTests(ArrivalTests):
    """
    The same with seamless migration on, plus the seamless path.
    """

    def setUp(self):
        ArrivalTests.setUp(self)
        self.server.seamless = True

    def accept(self):
        self.server.restoring = True
        self.arrival.seamlessRequested(self.main, MIGRATION_PROTOCOL_VERSION)

    def test_seamlessRestore(self):
        inputs = self.park(ChannelType.INPUTS)
        self.accept()
        self.assertEqual(self.arrival.state, SEAMLESS_RESTORE)
        self.assertEqual(self.main.calls, ["await", "ack"])
        self.assertTrue(self.arrival.restoring)
        self.assertFalse(self.arrival.parksLinks)
        self.assertTrue(self.arrival.inProgress)
        self.assertTrue(inputs.channel.awaitingMigrationData)

    def test_restoredOnceEveryChannelHasItsData(self):
        inputs = self.park(ChannelType.INPUTS)
        self.accept()
        self.main.awaitingMigrationData = False
        self.arrival.channelRestored()
        self.assertEqual(self.arrival.state, SEAMLESS_RESTORE)
        inputs.channel.awaitingMigrationData = False
        self.arrival.channelRestored()
        self.assertEqual(self.arrival.state, ARRIVED)
        self.assertEqual(self.main.calls, ["await", "ack", "mm-time"])
        self.assertEqual(self.server.arrived, [self.session])
        self.assertEqual(self.server.clock.getDelayedCalls(), [])

    def test_channelRestoredOutsideRestoreIgnored(self):
        self.arrival.channelRestored()
        self.assertEqual(self.arrival.state, WAITING)
        self.assertEqual(self.server.arrived, [])

    def test_migrateEndDuringRestoreIgnored(self):
        self.accept()
        self.arrival.clientSwitched(self.main)
        self.assertEqual(self.arrival.state, SEAMLESS_RESTORE)
        self.assertNotIn("welcome", self.main.calls)

    def test_restoreTimesOut(self):
        self.accept()
        self.server.clock.advance(TIMEOUT)
        self.assertEqual(self.arrival.state, TIMED_OUT)
        self.assertTrue(self.session.ended)

    def assertRefused(self, why, srcVersion=MIGRATION_PROTOCOL_VERSION):
        self.assertEqual(self.arrival.seamlessRefusal(srcVersion), why)
        self.arrival.seamlessRequested(self.main, srcVersion)
        self.assertEqual(self.main.calls, ["nack"])
        self.assertNotEqual(self.arrival.state, SEAMLESS_RESTORE)

    def test_refusedWhenOff(self):
        self.server.seamless = False
        self.assertRefused("seamless migration is off here (--seamless-migration)")

    def test_refusedNewerSource(self):
        self.assertRefused("the source speaks migration protocol %d, this server %d"
                           % (MIGRATION_PROTOCOL_VERSION + 1, MIGRATION_PROTOCOL_VERSION),
                           srcVersion=MIGRATION_PROTOCOL_VERSION + 1)

    def test_refusedWithSeveralArriving(self):
        other = FakeSession(self.server)
        other.id = 8
        other.arrival = Arrival(other, self.server, TIMEOUT)
        self.server.sessions[8] = other
        self.assertRefused("several clients are migrating in")

    def test_refusedAfterArrival(self):
        self.arrival.clientSwitched(self.main)
        self.main.calls = []
        self.assertRefused("the client is not migrating in")


class StatesTests(unittest.TestCase):
    def test_names(self):
        """
        Each state is a distinct, readable name; only three are in progress.
        """
        states = [WAITING, PARKED, SEAMLESS_RESTORE, ARRIVED, TIMED_OUT, ABANDONED]
        self.assertEqual(len(set(states)), 6)
        self.assertEqual(arrival.IN_PROGRESS, {WAITING, PARKED, SEAMLESS_RESTORE})

    def test_repr(self):
        server = FakeServer()
        session = FakeSession(server)
        self.assertEqual(repr(Arrival(session, server, 1)), "<Arrival of session 7: waiting>")
