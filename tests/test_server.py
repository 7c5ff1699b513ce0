"""
Tests for SpiceServer's embedding API: addInterface, channel security
settings, mouse modes and the key pool.
"""

from twisted.internet import defer, task
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from spicesrv import keys
from spicesrv.channels.cursor import CursorChannel
from spicesrv.channels.display import DisplayChannel
from spicesrv.interfaces import IDisplayObserver, IKeyboard, IMigration
from spicesrv.link import SECURITY_NONE, SECURITY_SSL
from spicesrv import server as server_module
from spicesrv.server import InterfaceError, SpiceServer
from spicesrv.testing import (
    FakeDisplaySource, RecordingKeyboard, RecordingMigration, RecordingTablet, makeTestServer,
    testKey, testKeyPool)
from spicesrv.wire.constants import MM_TIME_DELTA_MS, ChannelType, LinkErr, MouseMode


class AddInterfaceTests(unittest.TestCase):
    def setUp(self):
        self.server = makeTestServer()

    def test_displayGetsChannels(self):
        self.server.addInterface(FakeDisplaySource())
        self.server.addInterface(FakeDisplaySource())
        self.assertEqual(self.server.channelClass(ChannelType.DISPLAY, 1), DisplayChannel)
        self.assertEqual(self.server.channelClass(ChannelType.CURSOR, 1), CursorChannel)
        self.assertIsNone(self.server.channelClass(ChannelType.DISPLAY, 2))

    def test_wrongMajorVersionRefused(self):
        keyboard = RecordingKeyboard()
        keyboard.major_version = 2
        e = self.assertRaises(InterfaceError, self.server.addInterface, keyboard)
        self.assertIn("keyboard interface", str(e))
        self.assertIn("major version 2", str(e))
        self.assertIn("implements 1", str(e))
        self.assertIsNone(self.server.keyboard)

    def test_otherMinorVersionAccepted(self):
        keyboard = RecordingKeyboard()
        keyboard.minor_version = 99
        self.server.addInterface(keyboard)
        self.assertIs(self.server.keyboard, keyboard)

    def test_notADevice(self):
        e = self.assertRaises(InterfaceError, self.server.addInterface, object())
        self.assertIn("provides none of", str(e))

    def test_incompleteProvider(self):
        @implementer(IKeyboard)
        class Half:
            type = "keyboard"
            description = "half a keyboard"
            major_version = 1
            minor_version = 1

            def push_scan_freg(self, byte):
                pass

        e = self.assertRaises(InterfaceError, self.server.addInterface, Half())
        self.assertIn("get_leds", str(e))

    def test_tabletEnablesClientMode(self):
        self.server.addInterface(FakeDisplaySource(100, 50))
        tablet = RecordingTablet()
        self.server.addInterface(tablet)
        self.assertEqual(self.server.supportedMouseModes, MouseMode.SERVER | MouseMode.CLIENT)
        self.assertEqual(self.server.mouseMode, MouseMode.CLIENT)
        self.assertEqual(tablet.events, [("size", 100, 50)])

    def test_migrationInterface(self):
        migration = RecordingMigration()
        verifyObject(IMigration, migration)
        self.server.addInterface(migration)
        self.assertIs(self.server.migration, migration)

    def test_observersVerified(self):
        verifyObject(IDisplayObserver, DisplayChannel.__new__(DisplayChannel))
        verifyObject(IDisplayObserver, CursorChannel.__new__(CursorChannel))


class SecurityTests(unittest.TestCase):
    def test_defaults(self):
        server = makeTestServer()
        self.assertEqual(server.channelSecurity(ChannelType.MAIN), SECURITY_NONE | SECURITY_SSL)

    def test_perChannelAndDefault(self):
        server = makeTestServer()
        server.setChannelSecurity("main", SECURITY_SSL)
        server.setChannelSecurity("default", SECURITY_NONE)
        self.assertEqual(server.channelSecurity(ChannelType.MAIN), SECURITY_SSL)
        self.assertEqual(server.channelSecurity(ChannelType.DISPLAY), SECURITY_NONE)

    def test_unknownName(self):
        e = self.assertRaises(ValueError, makeTestServer().setChannelSecurity, "bogus", 1)
        self.assertIn("bogus", str(e))


class KeyPoolTests(unittest.TestCase):
    def test_threadedPool(self):
        """
        The default pool makes real RSA-1024 keys in a thread.
        """
        pool = keys.KeyPool(size=2)
        pool.start()
        self.addCleanup(pool.stop)
        d = defer.gatherResults([pool.take(), pool.take(), pool.take()])

        def check(got):
            self.assertEqual(len({keys.public_key_der(k) for k in got}), 3)
            self.assertEqual(got[0].key_size, 1024)

        return d.addCallback(check)

    def test_sizeFollowsArrivalRate(self):
        """
        A burst of takes raises the number of keys kept ready to cover the
        pool's horizon at that rate (capped); once links stop coming it
        falls back towards the minimum.
        """
        clock = task.Clock()
        made = []

        def generate():
            made.append(object())
            return made[-1]
        pool = keys.KeyPool(size=4, generate=generate, inThread=False, maxSize=100,
                            horizon=2.0, halfLife=10.0, clock=clock)
        pool.start()
        self.assertEqual((pool.target, pool.ready), (4, 4))
        taken = [pool.take() for _ in range(30)]       # 30 links in one instant
        self.assertEqual(len({id(self.successResultOf(d)) for d in taken}), 30)
        self.assertEqual(pool.target, 60)              # 2 s at 30/s
        self.assertEqual(pool.ready, 60)
        for _ in range(200):                           # a far bigger burst: capped
            pool.take()
        self.assertEqual(pool.target, 100)
        clock.advance(30)                              # three half-lives of quiet
        pool.take()
        self.assertEqual(pool.target, 4 + 12)          # 4 + 96 / 8, rounded up
        self.assertEqual(len(made), len(set(map(id, made))))

    def test_workersBounded(self):
        """
        At most C{workers} keys are being made at once, whatever the target.
        """
        pending = []
        pool = keys.KeyPool(size=10, generate=lambda: None, inThread=False, workers=2,
                            clock=task.Clock())
        pool._generate = lambda: pending.append(defer.Deferred()) or pending[-1]
        pool.start()
        self.assertEqual(len(pending), 2)
        pending[0].callback("key")
        self.assertEqual(len(pending), 3)
        self.assertEqual(pool.ready, 1)

    def test_waitingTakeCancelled(self):
        pool = keys.KeyPool(size=0, generate=testKey, inThread=False)
        pool._refill = lambda: None
        d = pool.take()
        d.cancel()
        self.assertEqual(len(pool._waiting), 0)
        self.failureResultOf(d, defer.CancelledError)

    def test_ticketRoundTrip(self):
        der = keys.public_key_der(testKey())
        self.assertEqual(len(der), 162)
        ciphertext = keys.encrypt_ticket(der, "pw")
        self.assertEqual(len(ciphertext), 128)
        self.assertEqual(keys.decrypt_ticket(testKey(), ciphertext), b"pw\0")
        self.assertRaises(ValueError, keys.decrypt_ticket, testKey(), b"\0" * 127)


class PasswordTests(unittest.TestCase):
    def setUp(self):
        from spicesrv.testing import TestClientChannel
        self.server = makeTestServer(password="old")
        self.client = TestClientChannel(self.server, ChannelType.MAIN, password="old")

    def test_keep(self):
        self.server.set_password("new")
        self.assertFalse(self.client.transport.disconnecting)
        self.assertTrue(self.server.ticket.check(b"new\0")[0])
        self.assertFalse(self.server.ticket.check(b"old\0")[0])

    def test_disconnect(self):
        self.server.set_password("new", connected="disconnect")
        self.assertTrue(self.client.transport.disconnecting)
        self.assertEqual(self.server.sessions, {})

    def test_fail(self):
        from spicesrv.server import PasswordError
        e = self.assertRaises(PasswordError, self.server.set_password, "new", connected="fail")
        self.assertIn("connected", str(e))
        self.assertTrue(self.server.ticket.check(b"old\0")[0])

    def test_expire(self):
        from spicesrv.server import PasswordError
        clock = self.server.clock
        self.server.expire_password("+10")
        clock.advance(9)
        self.assertTrue(self.server.ticket.check(b"old\0")[0])
        clock.advance(1)
        self.assertFalse(self.server.ticket.check(b"old\0")[0])
        self.server.expire_password("never")
        self.assertTrue(self.server.ticket.check(b"old\0")[0])
        self.server.expire_password("now")
        self.assertFalse(self.server.ticket.check(b"old\0")[0])
        self.server.set_password("again")
        self.assertTrue(self.server.ticket.check(b"again\0")[0])
        self.assertRaises(PasswordError, self.server.expire_password, "tomorrow")

    def test_emptyPasswordRefusesEveryone(self):
        """
        C{set_password("")} is taken, as libspice-server takes it, and from
        then on no client links, not with an empty ticket nor the old
        password, until a real password is set; clients already there stay.
        """
        from spicesrv.testing import TestClientChannel
        self.server.set_password("")
        self.assertFalse(self.client.transport.disconnecting)
        for offered in ("", "old"):
            self.assertEqual(TestClientChannel(self.server, ChannelType.MAIN,
                                               password=offered).result,
                             LinkErr.PERMISSION_DENIED)
        self.server.set_password("new")
        self.assertEqual(TestClientChannel(self.server, ChannelType.MAIN,
                                           password="new").result, LinkErr.OK)

    def test_emptyPasswordWithTicketingDisabled(self):
        """
        Setting an empty password turns ticketing on, so it locks out a
        server that accepted everyone.
        """
        from spicesrv.testing import TestClientChannel
        server = makeTestServer(disable_ticketing=True)
        server.set_password("")
        self.assertEqual(TestClientChannel(server, ChannelType.MAIN, password="").result,
                         LinkErr.PERMISSION_DENIED)

    def test_enablesTicketing(self):
        server = makeTestServer(disable_ticketing=True)
        server.set_password("pw")
        self.assertFalse(server.ticket.check(b"\0")[0])


class EventDataTests(unittest.TestCase):
    def test_unixAddressIsText(self):
        """
        QMP events carry JSON: a UNIX socket's path is text, not bytes.
        """
        import json
        from twisted.internet.address import UNIXAddress
        from spicesrv.control.events import channelEventData
        from spicesrv.link import LinkInfo
        info = LinkInfo(connection_id=0, channel_type=1, channel_id=0,
                        common_caps=frozenset(), channel_caps=frozenset(), secure=False,
                        peer_address=UNIXAddress(None),
                        host_address=UNIXAddress(b"/run/spice.sock"))
        data = channelEventData(info, auth="spice", session_id=7)
        self.assertEqual(data["server"]["host"], "/run/spice.sock")
        self.assertEqual(data["server"]["family"], "unix")
        self.assertEqual(data["client"]["connection-id"], 7)
        json.dumps(data)


class SteppingClock:
    """
    A reactor clock whose wall time a test sets, steps included.
    """

    def __init__(self, now):
        self.now = now

    def seconds(self):
        return self.now


class MultimediaClockTests(unittest.TestCase):
    def test_wallClockStepsDoNotMoveIt(self):
        """
        The multimedia time follows the monotonic clock it is given; the
        reactor's wall clock stepping back an hour or forward a day (NTP, a
        suspended VM) changes nothing.
        """
        wall = SteppingClock(1.7e9)
        monotonic = [1000.0]
        server = SpiceServer(clock=wall, disable_ticketing=True, keys=testKeyPool(),
                             mm_clock=lambda: monotonic[0])
        before = server.mmTime()
        self.assertEqual(before, 1000000 - MM_TIME_DELTA_MS)
        wall.now -= 3600
        self.assertEqual(server.mmTime(), before)
        wall.now += 86400
        self.assertEqual(server.mmTime(), before)
        monotonic[0] += 0.25
        self.assertEqual(server.mmTime(), before + 250)
        self.assertEqual(server.context.mmTime(), before + 250)

    def test_wraps(self):
        server = SpiceServer(clock=SteppingClock(0), disable_ticketing=True,
                             keys=testKeyPool(), mm_clock=lambda: 2 ** 32 / 1000.0 + 1)
        self.assertEqual(server.mmTime(), 1000 - MM_TIME_DELTA_MS)

    def test_defaultIsMonotonic(self):
        """
        Without C{mm_clock} the server uses C{time.monotonic}.
        """
        self.patch(server_module.walltime, "monotonic", lambda: 42.0)
        server = SpiceServer(clock=SteppingClock(1.7e9), disable_ticketing=True,
                             keys=testKeyPool())
        self.assertEqual(server.mmTime(), 42000 - MM_TIME_DELTA_MS)
