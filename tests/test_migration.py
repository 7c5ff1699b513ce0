"""
The migration choreography in memory: the source's side (MIGRATE_BEGIN,
answers, timeouts, END / SWITCH_HOST / CANCEL) and the target's side (silent
main, parked links, INIT on MIGRATE_END), every branch of protocol.md
section 5.
"""

from twisted.trial import unittest

from spicesrv.migration.source import MIGRATE_TIMEOUT, MigrationError, TargetInfo
from spicesrv.testing import (
    FakeDisplaySource, RecordingKeyboard, RecordingMigration, TestClientChannel,
    makeTestServer)
from spicesrv.wire.constants import ChannelType, LinkErr, MainCap
from spicesrv.wire.messages import COMMON_CLIENT, DISPLAY_CLIENT, MAIN_CLIENT

SEMI = {MainCap.SEMI_SEAMLESS_MIGRATE}


class SourceTests(unittest.TestCase):
    def setUp(self):
        self.server = makeTestServer(disable_ticketing=True)
        self.server.addInterface(FakeDisplaySource())
        self.callbacks = RecordingMigration()
        self.server.addInterface(self.callbacks)
        self.events = []
        self.server.addEventObserver(lambda name, data: self.events.append(name))
        self.clock = self.server.clock

    def client(self, caps=SEMI):
        main = TestClientChannel(self.server, ChannelType.MAIN, channel_caps=caps)
        main.session_id = main.next("INIT").session_id
        main.take()
        return main

    def leave(self, client):
        client.protocol.connectionLost(None)

    def test_targetInfo(self):
        self.assertEqual(TargetInfo.make("h", 5900, None, None).dstInfo(),
                         dict(port=5900, sport=0, host_data=b"h\0", cert_subject_data=None))
        self.assertEqual(TargetInfo.make("h", -1, 5901, "CN=x").dstInfo(),
                         dict(port=0, sport=5901, host_data=b"h\0",
                              cert_subject_data=b"CN=x\0"))
        self.assertRaises(MigrationError, TargetInfo.make, "h", None, None)
        self.assertRaises(MigrationError, TargetInfo.make, "", 5900)
        self.assertRaises(MigrationError, TargetInfo.make, "h", 70000)
        e = self.assertRaises(MigrationError, TargetInfo.make, "h", 5900, None, "C=XX,CN=")
        self.assertIn("cert-subject", str(e))
        self.assertRaises(MigrationError, TargetInfo.make, "h", 5900, None, "novalue")

    def test_connectedThenEnd(self):
        a = self.client()
        d = self.server.migrate_connect("dst", 5930, None, "CN=dst")
        begin = a.next("MIGRATE_BEGIN")
        self.assertEqual((begin.port, begin.sport, begin.host_data, begin.cert_subject_data),
                         (5930, 0, b"dst\0", b"CN=dst\0"))
        self.assertNoResult(d)
        a.send(MAIN_CLIENT["MIGRATE_CONNECTED"])
        self.assertEqual(self.successResultOf(d), {a.session_id: "connected"})
        self.assertEqual(self.callbacks.calls, ["connect_complete"])
        self.server.migrate_start()
        ended = self.server.migrate_end(True)
        self.assertEqual(a.names(), ["MIGRATE_END"])
        self.assertNoResult(ended)
        self.leave(a)
        self.successResultOf(ended)
        self.assertEqual(self.callbacks.calls, ["connect_complete", "end_complete"])
        self.assertTrue(self.server.migrated)
        self.assertIn("SPICE_MIGRATE_COMPLETED", self.events)

    def test_connectErrorGetsSwitchHost(self):
        a = self.client()
        d = self.server.migrate_connect("dst", 5930, 5931, None)
        a.send(MAIN_CLIENT["MIGRATE_CONNECT_ERROR"])
        self.assertEqual(self.successResultOf(d), {a.session_id: "connect-error"})
        self.server.migrate_end(True)
        switch = a.next("MIGRATE_SWITCH_HOST")
        self.assertEqual((switch.port, switch.sport, switch.host_data, switch.cert_subject_size),
                         (5930, 5931, b"dst\0", 0))

    def test_timeout(self):
        a = self.client()
        b = self.client()
        d = self.server.migrate_connect("dst", 5930)
        b.send(MAIN_CLIENT["MIGRATE_CONNECTED"])
        self.clock.advance(MIGRATE_TIMEOUT - 0.1)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(d),
                         {a.session_id: "timed-out", b.session_id: "connected"})
        # A CONNECTED after the timeout is cancelled.
        a.take()
        a.send(MAIN_CLIENT["MIGRATE_CONNECTED"])
        self.assertEqual(a.names(), ["MIGRATE_CANCEL"])
        b.take()
        self.server.migrate_end(True)
        self.assertEqual(a.names(), ["MIGRATE_SWITCH_HOST"])
        self.assertEqual(b.names(), ["MIGRATE_END"])

    def test_cancel(self):
        a = self.client()
        old = self.client(caps=set())
        self.server.migrate_connect("dst", 5930)
        a.send(MAIN_CLIENT["MIGRATE_CONNECTED"])
        a.take()
        d = self.server.migrate_end(False)
        self.successResultOf(d)
        self.assertEqual(a.names(), ["MIGRATE_CANCEL"])
        self.assertEqual(old.names(), [])
        self.assertEqual(self.callbacks.calls, ["connect_complete"])
        self.assertFalse(self.server.migrated)
        self.assertFalse(a.transport.disconnecting)

    def test_cancelWhileWaiting(self):
        a = self.client()
        d = self.server.migrate_connect("dst", 5930)
        a.take()
        self.server.migrate_end(False)
        self.successResultOf(d)
        self.assertEqual(a.names(), ["MIGRATE_CANCEL"])
        self.clock.advance(MIGRATE_TIMEOUT * 2)
        self.assertNotIn("MIGRATE_SWITCH_HOST", a.names())

    def test_secondConnectCancelsFirst(self):
        a = self.client()
        first = self.server.migrate_connect("one", 5930)
        a.send(MAIN_CLIENT["MIGRATE_CONNECTED"])
        self.successResultOf(first)
        a.take()
        second = self.server.migrate_connect("two", 5940)
        messages = a.take()
        self.assertEqual([n for n, _ in messages], ["MIGRATE_CANCEL", "MIGRATE_BEGIN"])
        self.assertEqual(messages[1][1].host_data, b"two\0")
        a.send(MAIN_CLIENT["MIGRATE_CONNECTED"])
        self.successResultOf(second)
        a.take()
        self.server.migrate_end(True)
        self.assertEqual(a.names(), ["MIGRATE_END"])

    def test_clientWithoutCapability(self):
        old = self.client(caps=set())
        d = self.server.migrate_connect("dst", 5930)
        self.assertEqual(self.successResultOf(d), {old.session_id: "no-capability"})
        self.assertEqual(old.names(), [])
        self.server.migrate_end(True)
        self.assertEqual(old.names(), ["MIGRATE_SWITCH_HOST"])

    def test_clientLeavesMidMigration(self):
        a = self.client()
        d = self.server.migrate_connect("dst", 5930)
        self.leave(a)
        self.assertEqual(self.successResultOf(d), {a.session_id: "connect-error"})
        self.successResultOf(self.server.migrate_end(True))
        self.assertEqual(self.callbacks.calls, ["connect_complete", "end_complete"])

    def test_clientNeverLeaves(self):
        a = self.client()
        self.server.migrate_connect("dst", 5930)
        a.send(MAIN_CLIENT["MIGRATE_CONNECTED"])
        ended = self.server.migrate_end(True)
        self.clock.advance(MIGRATE_TIMEOUT)
        self.successResultOf(ended)
        self.assertTrue(a.transport.disconnecting)
        self.assertEqual(self.server.sourceMigration.forcedDisconnects, 1)
        self.assertEqual(self.server.sessions, {})

    def test_noClients(self):
        d = self.server.migrate_connect("dst", 5930)
        self.assertEqual(self.successResultOf(d), {})
        self.successResultOf(self.server.migrate_end(True))
        self.assertEqual(self.callbacks.calls, ["connect_complete", "end_complete"])

    def test_endWithoutConnectDisconnects(self):
        a = self.client()
        self.successResultOf(self.server.migrate_end(True))
        self.assertTrue(a.transport.disconnecting)
        self.assertIn("end_complete", self.callbacks.calls)

    def test_legacySwitch(self):
        a = self.client()
        self.assertRaises(MigrationError, self.server.migrate_switch)
        self.server.migrate_info("dst", 5930, 5931, "CN=x")
        self.assertEqual(a.names(), [])
        self.server.migrate_switch()
        switch = a.next("MIGRATE_SWITCH_HOST")
        self.assertEqual((switch.host_data, switch.cert_subject_data), (b"dst\0", b"CN=x\0"))

    def test_events(self):
        a = self.client()
        inputs = TestClientChannel(self.server, ChannelType.INPUTS, connection_id=a.session_id)
        inputs.protocol.connectionLost(None)
        self.assertEqual(self.events, ["SPICE_CONNECTED", "SPICE_INITIALIZED"] * 2
                         + ["SPICE_DISCONNECTED"])


class TargetTests(unittest.TestCase):
    SESSION = 0x1234

    def setUp(self):
        self.server = makeTestServer(password="pw")
        self.source = FakeDisplaySource()
        self.keyboard = RecordingKeyboard()
        self.server.addInterface(self.source)
        self.server.addInterface(self.keyboard)
        self.clock = self.server.clock

    def link(self, channel_type, **kwargs):
        return TestClientChannel(self.server, channel_type, connection_id=self.SESSION,
                                 password="pw", **kwargs)

    def arrive(self):
        main = self.link(ChannelType.MAIN, channel_caps=SEMI)
        inputs = self.link(ChannelType.INPUTS)
        display = self.link(ChannelType.DISPLAY)
        cursor = self.link(ChannelType.CURSOR)
        return main, inputs, display, cursor

    def test_silentAndParked(self):
        main, inputs, display, cursor = self.arrive()
        for client in (main, inputs, display, cursor):
            self.assertEqual(client.result, LinkErr.OK)
        self.clock.advance(1)
        self.assertEqual(main.names(), [])
        self.assertEqual(inputs.names(), [])
        self.assertEqual(cursor.names(), [])
        self.assertIsNone(inputs.channel)
        session = self.server.sessions[self.SESSION]
        self.assertTrue(session.arriving)
        self.assertEqual(len(session.arrival.parked), 3)
        main.send(MAIN_CLIENT["ATTACH_CHANNELS"])
        self.assertEqual(main.names(), [])

    def test_migrateEndStartsEverything(self):
        main, inputs, display, cursor = self.arrive()
        main.send(MAIN_CLIENT["MIGRATE_END"])
        init = main.next("INIT")
        self.assertEqual(init.session_id, self.SESSION)
        self.assertEqual(main.names(), [])  # no NAME/UUID, no channel list
        self.assertEqual(inputs.names(), ["INIT"])
        self.assertEqual(cursor.names(), ["SET_ACK", "INIT", "SET"])
        self.assertEqual(display.names(), [])
        display.send(DISPLAY_CLIENT["INIT"], pixmap_cache_id=1, pixmap_cache_size=1,
                     glz_dictionary_id=1, glz_dictionary_window_size=1)
        self.assertIn("SURFACE_CREATE", display.names())
        self.assertFalse(self.server.sessions[self.SESSION].arriving)

    def test_bytesSentWhileParkedAreKept(self):
        main, inputs, display, cursor = self.arrive()
        inputs.send(__import__("spicesrv.wire.messages", fromlist=["x"]).INPUTS_CLIENT["KEY_DOWN"],
                    code=0x1E)
        self.assertEqual(self.keyboard.scancodes, [])
        main.send(MAIN_CLIENT["MIGRATE_END"])
        self.assertEqual(self.keyboard.scancodes, [0x1E])

    def test_wrongPasswordStillRefused(self):
        main = TestClientChannel(self.server, ChannelType.MAIN, connection_id=self.SESSION,
                                 password="nope", channel_caps=SEMI)
        self.assertEqual(main.result, LinkErr.PERMISSION_DENIED)
        self.assertEqual(self.server.sessions, {})

    def test_neverSwitches(self):
        main, inputs, display, cursor = self.arrive()
        self.clock.advance(self.server.migrationArrivalTimeout)
        for client in (main, inputs, display, cursor):
            self.assertTrue(client.transport.disconnecting)
        self.assertEqual(self.server.sessions, {})

    def test_parkedLinkClosesEarly(self):
        main, inputs, display, cursor = self.arrive()
        inputs.protocol.connectionLost(None)
        session = self.server.sessions[self.SESSION]
        self.assertEqual(len(session.arrival.parked), 2)
        main.send(MAIN_CLIENT["MIGRATE_END"])
        self.assertEqual(set(session.channels), {(1, 0), (2, 0), (4, 0)})

    def test_mainClosesDropsParked(self):
        main, inputs, display, cursor = self.arrive()
        main.protocol.connectionLost(None)
        self.assertTrue(inputs.transport.disconnecting)
        self.assertEqual(self.server.sessions, {})

    def test_migrateEndWithoutCapabilityIgnored(self):
        main = self.link(ChannelType.MAIN)
        main.send(MAIN_CLIENT["MIGRATE_END"])
        self.assertEqual(main.names(), [])
        self.assertTrue(self.server.sessions[self.SESSION].arriving)

    def test_seamlessRequestNacked(self):
        main = self.link(ChannelType.MAIN, channel_caps=SEMI | {MainCap.SEAMLESS_MIGRATE})
        main.send(MAIN_CLIENT["MIGRATE_DST_DO_SEAMLESS"], src_version=1)
        self.assertEqual(main.names(), ["MIGRATE_DST_SEAMLESS_NACK"])

    def test_sessionIdInUse(self):
        self.arrive()
        again = self.link(ChannelType.MAIN, channel_caps=SEMI)
        self.assertEqual(again.result, LinkErr.BAD_CONNECTION_ID)

    def test_onwardsMigrationDeferredUntilArrival(self):
        """
        A migrate_connect while a client is still arriving sends its
        MIGRATE_BEGIN only once the client has switched here (T5).
        """
        main, inputs, display, cursor = self.arrive()
        d = self.server.migrate_connect("next", 5950)
        self.assertEqual(main.names(), [])
        main.send(MAIN_CLIENT["MIGRATE_END"])
        self.assertEqual(main.names(), ["INIT", "MIGRATE_BEGIN"])
        main.send(MAIN_CLIENT["MIGRATE_CONNECTED"])
        self.assertEqual(self.successResultOf(d), {self.SESSION: "connected"})


SEAMLESS = SEMI | {MainCap.SEAMLESS_MIGRATE, MainCap.AGENT_CONNECTED_TOKENS}


class SeamlessSourceTests(unittest.TestCase):
    def setUp(self):
        self.server = makeTestServer(disable_ticketing=True, seamless_migration=True)
        self.display = FakeDisplaySource()
        self.server.addInterface(self.display)
        self.main = TestClientChannel(self.server, ChannelType.MAIN, channel_caps=SEAMLESS)
        self.session_id = self.main.next("INIT").session_id
        self.main.take()
        self.displayClient = TestClientChannel(self.server, ChannelType.DISPLAY,
                                               connection_id=self.session_id)
        self.displayClient.send(DISPLAY_CLIENT["INIT"], pixmap_cache_id=1,
                                pixmap_cache_size=1, glz_dictionary_id=1,
                                glz_dictionary_window_size=1)
        self.cursorClient = TestClientChannel(self.server, ChannelType.CURSOR,
                                              connection_id=self.session_id)
        self.displayClient.take()
        self.cursorClient.take()

    def test_capabilityAdvertised(self):
        self.assertIn(MainCap.SEAMLESS_MIGRATE, self.main.serverChannelCaps)
        self.assertNotIn(MainCap.SEAMLESS_MIGRATE,
                         TestClientChannel(makeTestServer(disable_ticketing=True),
                                           ChannelType.MAIN).serverChannelCaps)

    def test_beginSeamless(self):
        self.server.migrate_connect("dst", 5930)
        begin = self.main.next("MIGRATE_BEGIN_SEAMLESS")
        self.assertEqual((begin.port, begin.host_data, begin.src_mig_version),
                         (5930, b"dst\0", 1))

    def test_semiSeamlessWithoutClientCaps(self):
        other = TestClientChannel(makeTestServer(disable_ticketing=True,
                                                 seamless_migration=True),
                                  ChannelType.MAIN, channel_caps=SEMI)
        other.take()
        other.protocol.server.migrate_connect("dst", 5930)
        self.assertEqual(other.names(), ["MIGRATE_BEGIN"])

    def test_perChannelMigrate(self):
        d = self.server.migrate_connect("dst", 5930)
        self.main.send(MAIN_CLIENT["MIGRATE_CONNECTED_SEAMLESS"])
        self.assertEqual(self.successResultOf(d), {self.session_id: "connected"})
        self.main.take()
        self.server.migrate_end(True)
        self.assertEqual([(n, r.flags) for n, r in self.main.take()], [("MIGRATE", 3)])
        self.assertEqual([(n, r.flags) for n, r in self.displayClient.take()],
                         [("MIGRATE", 3)])
        self.assertEqual([(n, r.flags) for n, r in self.cursorClient.take()],
                         [("MIGRATE", 0)])
        # Nothing but the data may follow MIGRATE.
        self.display.fill((0, 0, 4, 4), (1, 2, 3, 0))
        self.server.clock.advance(0)
        self.assertEqual(self.displayClient.names(), [])
        self.displayClient.send(COMMON_CLIENT["MIGRATE_FLUSH_MARK"])
        messages = self.displayClient.take()
        self.assertEqual([n for n, _ in messages], ["MIGRATE_DATA"])
        self.assertEqual(messages[0][1].data[:4], b"SPSV")
        self.display.fill((0, 0, 4, 4), (1, 2, 3, 0))
        self.server.clock.advance(0)
        self.assertEqual(self.displayClient.names(), [])


class SeamlessTargetSetup:
    """
    A seamless-capable target with a client migrating in (main and display
    linked).
    """

    SESSION = 0x4321

    def setUp(self):
        self.server = makeTestServer(disable_ticketing=True, seamless_migration=True)
        self.display = FakeDisplaySource()
        self.server.addInterface(self.display)
        self.main = TestClientChannel(self.server, ChannelType.MAIN,
                                      connection_id=self.SESSION, channel_caps=SEAMLESS)
        self.displayClient = TestClientChannel(self.server, ChannelType.DISPLAY,
                                               connection_id=self.SESSION)

    def data(self, **fields):
        from spicesrv.migration.seamless import packMigrationData
        return packMigrationData(fields)


class SeamlessTargetTests(SeamlessTargetSetup, unittest.TestCase):
    def test_ackStartsChannels(self):
        self.assertIsNone(self.displayClient.channel)
        self.main.send(MAIN_CLIENT["MIGRATE_DST_DO_SEAMLESS"], src_version=1)
        self.assertEqual(self.main.names(), ["MIGRATE_DST_SEAMLESS_ACK"])
        self.assertIsNotNone(self.displayClient.channel)
        self.assertTrue(self.displayClient.channel.awaitingMigrationData)
        inputs = TestClientChannel(self.server, ChannelType.INPUTS, connection_id=self.SESSION)
        self.assertIsNotNone(inputs.channel)
        self.assertEqual(inputs.names(), [])
        session = self.server.sessions[self.SESSION]
        self.main.send(COMMON_CLIENT["MIGRATE_DATA"], data=self.data(serial=0, agent=None))
        self.assertTrue(session.arriving)
        self.displayClient.send(COMMON_CLIENT["MIGRATE_DATA"], data=self.data(
            serial=7, initialized=True, width=64, height=48, encoding="raw"))
        # The target assumes none of the client's streams: it clears them
        # and starts its own when it sees video.
        self.assertEqual(self.displayClient.names(),
                         ["SET_ACK", "STREAM_DESTROY_ALL", "DRAW_COPY"])
        inputs.send(COMMON_CLIENT["MIGRATE_DATA"], data=self.data(serial=0, motions=2))
        self.assertFalse(session.arriving)
        self.assertEqual(self.main.names(), ["MULTI_MEDIA_TIME"])  # no INIT on this path
        self.server.clock.advance(self.server.migrationArrivalTimeout)
        self.assertFalse(self.main.transport.disconnecting)

    def test_resizedSurfaceRecreated(self):
        self.main.send(MAIN_CLIENT["MIGRATE_DST_DO_SEAMLESS"], src_version=1)
        self.displayClient.send(COMMON_CLIENT["MIGRATE_DATA"], data=self.data(
            serial=0, initialized=True, width=800, height=600, encoding="raw"))
        self.assertEqual(self.displayClient.names(),
                         ["SET_ACK", "STREAM_DESTROY_ALL", "SURFACE_DESTROY", "SURFACE_CREATE",
                          "DRAW_COPY"])

    def test_newerVersionNacked(self):
        self.main.send(MAIN_CLIENT["MIGRATE_DST_DO_SEAMLESS"], src_version=2)
        self.assertEqual(self.main.names(), ["MIGRATE_DST_SEAMLESS_NACK"])
        self.assertIsNone(self.displayClient.channel)

    def test_offNacked(self):
        server = makeTestServer(disable_ticketing=True)
        main = TestClientChannel(server, ChannelType.MAIN, connection_id=9,
                                 channel_caps=SEAMLESS)
        main.send(MAIN_CLIENT["MIGRATE_DST_DO_SEAMLESS"], src_version=1)
        self.assertEqual(main.names(), ["MIGRATE_DST_SEAMLESS_NACK"])

    def test_badDataClosesChannel(self):
        self.main.send(MAIN_CLIENT["MIGRATE_DST_DO_SEAMLESS"], src_version=1)
        self.displayClient.send(COMMON_CLIENT["MIGRATE_DATA"], data=b"DCMD\1\0\0\0junk")
        self.assertTrue(self.displayClient.transport.disconnecting)
        self.assertFalse(self.main.transport.disconnecting)

    def test_unexpectedData(self):
        server = makeTestServer(disable_ticketing=True)
        main = TestClientChannel(server, ChannelType.MAIN)
        main.send(COMMON_CLIENT["MIGRATE_DATA"], data=self.data(serial=1))
        self.assertTrue(main.transport.disconnecting)


class BadMigrationDataTests(SeamlessTargetSetup, unittest.TestCase):
    """
    Migration data is checked against each channel's declared schema
    before it is used: values a fuzzer found (huge and non-finite numbers,
    deep nesting, wrong types) close that one channel with a log line, and
    the closed channel leaves the session, the server's list and QMP's
    events as any other closed channel does.
    """

    BAD = [
        b'{"serial": 1e400, "initialized": true}',
        b'{"serial": 0, "initialized": true, "width": 1e400, "height": 1}',
        b'{"serial": Infinity, "initialized": true}',
        b'{"serial": -Infinity, "initialized": true}',
        b'{"serial": NaN, "initialized": true}',
        b'{"serial": -1, "initialized": true}',
        b'{"serial": 18446744073709551616, "initialized": true}',
        b'{"serial": true, "initialized": true}',
        b'{"serial": "7", "initialized": true}',
        b'{"serial": 0, "initialized": "yes"}',
        b'{"serial": 0, "initialized": 1}',
        b'{"serial": 0}',
        b'{"serial": 0, "initialized": true, "width": 640.5, "height": 480}',
        b'{"serial": 0, "initialized": true, "width": [640], "height": 480}',
        b'{"serial": 0, "initialized": true, "encoding": "jpeg"}',
        b'{"serial": 0, "initialized": true, "encoding": {"raw": 1}}',
        b'{"serial": 0, "initialized": true, "x": ' + b"[" * 100000 + b"]" * 100000 + b'}',
        b'{"serial": 0, "initialized": true, "x": [[[[[[[[[[1]]]]]]]]]]}',
        b'{"serial": 0, "initialized": true, "x": ' + b"[" * 100000 + b'}',
        b'[1, 2]',
        b'"serial"',
        b'\xff\xfe',
    ]

    def setUp(self):
        SeamlessTargetSetup.setUp(self)
        self.events = []
        self.server.addEventObserver(lambda name, data: self.events.append(name))
        self.main.send(MAIN_CLIENT["MIGRATE_DST_DO_SEAMLESS"], src_version=1)
        del self.events[:]

    def lose(self, client):
        """
        Deliver the end of a connection the server closed, as the reactor
        does.
        """
        self.assertTrue(client.transport.disconnecting)
        client.protocol.connectionLost(None)

    def test_badValuesCloseOnlyThatChannel(self):
        from spicesrv.migration.seamless import MIGRATION_DATA_HEADER, MIGRATION_DATA_MAGIC
        session = self.server.sessions[self.SESSION]
        for text in self.BAD:
            display = TestClientChannel(self.server, ChannelType.DISPLAY,
                                        connection_id=self.SESSION)
            self.assertIn((ChannelType.DISPLAY, 0), session.channels)
            del self.events[:]
            display.send(COMMON_CLIENT["MIGRATE_DATA"], data=MIGRATION_DATA_HEADER.pack(
                MIGRATION_DATA_MAGIC, 1) + text)
            self.assertTrue(display.transport.disconnecting, text[:60])
            self.lose(display)
            self.assertNotIn((ChannelType.DISPLAY, 0), session.channels)
            self.assertEqual(self.events, ["SPICE_DISCONNECTED"])
        self.assertFalse(self.main.transport.disconnecting)
        self.assertIs(self.server.sessions[self.SESSION], session)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_mainClosedEndsOnlyThatClient(self):
        other = TestClientChannel(self.server, ChannelType.MAIN)
        del self.events[:]
        self.main.send(COMMON_CLIENT["MIGRATE_DATA"],
                       data=self.data(serial=0, mouse_mode=1e300))
        self.lose(self.main)
        self.assertTrue(self.displayClient.transport.disconnecting)  # the whole client
        self.assertNotIn(self.SESSION, self.server.sessions)
        self.assertIn(other.channel.session.id, self.server.sessions)
        self.assertFalse(other.transport.disconnecting)
        self.assertEqual(self.events, ["SPICE_DISCONNECTED"])

    def test_logLine(self):
        from twisted.logger import capturedLogs, formatEvent
        with capturedLogs() as events:
            self.main.send(COMMON_CLIENT["MIGRATE_DATA"], data=self.data(serial=0,
                                                                          mouse_mode=-5))
        self.assertIn("closing: bad migration data: mouse_mode is -5, not from 1 to 2",
                      [formatEvent(e) for e in events][-1])

    def test_badAgentState(self):
        """
        The agent's state in main's migration data is checked as deeply as
        the rest: a bad value inside it closes the client with a line that
        names it.
        """
        from twisted.logger import capturedLogs, formatEvent
        good = dict(started=True, send_tokens=3, freed=0, client_caps=[1, 5],
                    caps_received=True, announced=True, offers={"0": [1]})
        for agent, why in [(dict(good, send_tokens=-1), "agent: send_tokens is -1"),
                           (dict(good, offers={"x": [1]}), "offers has the key"),
                           (dict(good, offers={"9": [1]}), "offers key is 9"),
                           (dict(good, queued=["not base64!"]), "queued[0] is not base64"),
                           (dict(good, partial=7), "partial is int"),
                           ("agent", "agent is str, not an object")]:
            self.setUp()
            with capturedLogs() as events:
                self.main.send(COMMON_CLIENT["MIGRATE_DATA"],
                               data=self.data(serial=0, mouse_mode=1, agent=agent))
            self.assertTrue(self.main.transport.disconnecting, why)
            self.assertIn(why, "\n".join(formatEvent(e) for e in events))
        self.setUp()
        self.main.send(COMMON_CLIENT["MIGRATE_DATA"],
                       data=self.data(serial=0, mouse_mode=1, agent=good))
        self.assertFalse(self.main.transport.disconnecting)

    def test_goodValuesAccepted(self):
        self.displayClient.send(COMMON_CLIENT["MIGRATE_DATA"], data=self.data(
            serial=2 ** 64 - 1, initialized=True, width=64, height=48, encoding="lz4",
            future_field=[1, {"a": None}]))
        self.assertFalse(self.displayClient.transport.disconnecting)
        self.assertEqual(self.displayClient.channel.encoding, "raw")   # no LZ4 cap
        self.assertFalse(self.displayClient.channel.awaitingMigrationData)

    def test_restoreFailureClosesChannel(self):
        """
        A channel that cannot continue from well-formed data is closed and
        its teardown completes.
        """
        def broken(fields):
            raise RuntimeError("no surface")
        self.displayClient.channel.restoreMigrationData = broken
        self.displayClient.send(COMMON_CLIENT["MIGRATE_DATA"], data=self.data(
            serial=0, initialized=True))
        self.lose(self.displayClient)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertNotIn((ChannelType.DISPLAY, 0), self.server.sessions[self.SESSION].channels)
        self.assertEqual(self.events, ["SPICE_DISCONNECTED"])


class TeardownTests(SeamlessTargetSetup, unittest.TestCase):
    def test_channelDownRaises(self):
        """
        A channel whose own release fails still leaves its session and the
        server's list, and SPICE_DISCONNECTED is emitted.
        """
        self.main.send(MAIN_CLIENT["MIGRATE_DST_DO_SEAMLESS"], src_version=1)
        events = []
        self.server.addEventObserver(lambda name, data: events.append(name))
        channel = self.displayClient.channel

        def broken():
            raise ValueError("list.remove(x): x not in list")
        channel.channelDown = broken
        channel.transport.loseConnection()
        self.displayClient.protocol.connectionLost(None)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertNotIn((ChannelType.DISPLAY, 0), self.server.sessions[self.SESSION].channels)
        self.assertEqual(events, ["SPICE_DISCONNECTED"])


class ChoreographyTests(unittest.TestCase):
    """
    Source, target and a scripted client together, in memory, on one clock:
    the whole semi-seamless dance of protocol.md 5.9.
    """

    def setUp(self):
        from twisted.internet.task import Clock
        self.clock = Clock()
        self.source = makeTestServer(clock=self.clock, password="pw")
        self.target = makeTestServer(clock=self.clock, password="pw")
        self.callbacks = RecordingMigration()
        self.source.addInterface(self.callbacks)
        self.sourceDisplay = FakeDisplaySource()
        self.targetDisplay = FakeDisplaySource()
        self.source.addInterface(self.sourceDisplay)
        self.target.addInterface(self.targetDisplay)

    def linkAll(self, server, session_id=0):
        main = TestClientChannel(server, ChannelType.MAIN, connection_id=session_id,
                                 password="pw", channel_caps=SEMI)
        if not session_id:
            session_id = main.next("INIT").session_id
        others = {t: TestClientChannel(server, t, connection_id=session_id, password="pw")
                  for t in (ChannelType.DISPLAY, ChannelType.INPUTS, ChannelType.CURSOR)}
        return main, others, session_id

    def test_semiSeamlessDance(self):
        from spicesrv.testing import ClientSurface
        import numpy
        main, others, sid = self.linkAll(self.source)
        self.sourceDisplay.fill((0, 0, 8, 8), (1, 2, 3, 0))
        self.targetDisplay.fill((0, 0, 8, 8), (9, 8, 7, 0))
        connected = self.source.migrate_connect("target.example", 5930, None, None)
        begin = main.next("MIGRATE_BEGIN")
        self.assertEqual(begin.host_data, b"target.example\0")
        # The client pre-connects every channel to the target with its id.
        tmain, tothers, _ = self.linkAll(self.target, sid)
        self.assertTrue(all(c.result == LinkErr.OK for c in [tmain, *tothers.values()]))
        self.assertEqual(tmain.names(), [])
        main.send(MAIN_CLIENT["MIGRATE_CONNECTED"])
        self.assertEqual(self.successResultOf(connected), {sid: "connected"})
        ended = self.source.migrate_end(True)
        self.assertIn("MIGRATE_END", main.names())
        # The client drops the source and tells the target it has switched.
        for client in [main, *others.values()]:
            client.protocol.connectionLost(None)
        self.successResultOf(ended)
        self.assertEqual(self.callbacks.calls, ["connect_complete", "end_complete"])
        tmain.send(MAIN_CLIENT["MIGRATE_END"])
        self.assertEqual(tmain.next("INIT").session_id, sid)
        display = tothers[ChannelType.DISPLAY]
        display.send(DISPLAY_CLIENT["INIT"], pixmap_cache_id=1, pixmap_cache_size=1,
                     glz_dictionary_id=1, glz_dictionary_window_size=1)
        surface = ClientSurface().applyAll(display.take())
        numpy.testing.assert_array_equal(surface.pixels, self.targetDisplay.frame)
        self.assertEqual(self.source.sessions, {})
        self.assertEqual(list(self.target.sessions), [sid])


class SeamlessArrivalTests(SeamlessTargetSetup, unittest.TestCase):
    def test_firstMainMessageAfterArrival(self):
        """
        Once every channel has its data, the target speaks first on main
        (MULTI_MEDIA_TIME), or spice-gtk would keep its source connection.
        """
        self.main.send(MAIN_CLIENT["MIGRATE_DST_DO_SEAMLESS"], src_version=1)
        self.main.take()
        self.main.send(COMMON_CLIENT["MIGRATE_DATA"], data=self.data(serial=0))
        self.assertEqual(self.main.names(), [])
        self.displayClient.send(COMMON_CLIENT["MIGRATE_DATA"], data=self.data(
            serial=0, initialized=True, width=64, height=48, encoding="raw"))
        self.assertEqual(self.main.names(), ["MULTI_MEDIA_TIME"])

    def test_noCursorInit(self):
        self.main.send(MAIN_CLIENT["MIGRATE_DST_DO_SEAMLESS"], src_version=1)
        cursor = TestClientChannel(self.server, ChannelType.CURSOR, connection_id=self.SESSION)
        self.assertEqual(cursor.names(), ["SET_ACK"])
        self.display.setCursor(None)
        self.assertEqual(cursor.names(), ["HIDE"])


class NoDelayTests(unittest.TestCase):
    def test_linksSetTcpNoDelay(self):
        from twisted.internet.testing import StringTransport

        class TCPTransport(StringTransport):
            nodelay = False

            def setTcpNoDelay(self, enabled):
                self.nodelay = enabled

        server = makeTestServer(disable_ticketing=True)
        protocol = server.factory().buildProtocol(None)
        transport = TCPTransport()
        protocol.makeConnection(transport)
        self.assertTrue(transport.nodelay)
