"""
Semi-seamless migration with the real spice-gtk client between two real
servers on loopback: the client pre-connects to the target, switches on
MIGRATE_END without its session closing, shows the target's picture and
types into the target.
"""

from twisted.internet import defer

from tests.interop.common import PASSWORD, SCANCODES, InteropTestCase, RunningServer


class MigrationTests(InteropTestCase):

    @defer.inlineCallbacks
    def twoServers(self, targetKwargs=None, **kwargs):
        source = RunningServer(self, password=PASSWORD, **kwargs)
        target = RunningServer(self, password=PASSWORD,
                               **(kwargs if targetKwargs is None else targetKwargs))
        sourcePort = yield source.listen()
        targetPort = yield target.listen()
        return source, sourcePort, target, targetPort

    @defer.inlineCallbacks
    def connect(self, port):
        client = yield self.startClient(port)
        yield client.waitForChannelsOpened((1, 2, 3, 4), timeout=20)
        return client

    @defer.inlineCallbacks
    def typeAndPreconnect(self, **kwargs):
        """
        Two servers, a client on the source that typed 'h', pre-connected to
        the target.
        """
        source, sourcePort, target, targetPort = yield self.twoServers(**kwargs)
        client = yield self.connect(sourcePort)
        # Something typed on the source, carried to the target as the VM
        # state would be.
        yield client.check("key_press_and_release", scancode=SCANCODES["h"])
        yield self.waitForSamePicture(client, source.source)
        (sessionId,) = source.server.sessions
        answers = yield source.server.migrate_connect("127.0.0.1", targetPort, None, None)
        self.assertEqual(answers, {sessionId: "connected"})
        return source, target, targetPort, client, sessionId

    @defer.inlineCallbacks
    def test_semiSeamless(self):
        source, target, targetPort, client, sessionId = yield self.typeAndPreconnect()
        self.assertEqual(list(target.server.sessions), [sessionId])
        self.assertTrue(target.server.sessions[sessionId].arriving)
        target.source.set_migration_state(source.source.get_migration_state())
        since = len(client.events)
        ended = source.server.migrate_end(True)
        yield ended
        self.assertEqual(source.server.sourceMigration.forcedDisconnects, 0)
        self.assertEqual(source.server.sessions, {})
        self.assertTrue(source.server.migrated)
        # spice-gtk swaps each channel onto its pre-connected twin: no new
        # channel opens, the target's session simply comes alive.
        yield self.waitUntil(lambda: sessionId in target.server.sessions
                           and set(target.server.sessions[sessionId].channels)
                           == {(1, 0), (2, 0), (3, 0), (4, 0)})
        self.assertFalse(target.server.sessions[sessionId].arriving)
        yield self.waitForPeers(client, targetPort)
        self.assertNotIn({"event": "disconnected"}, [
            {"event": e.get("event")} for e in client.events[since:]])
        self.assertEqual(target.source.text, "h")
        yield self.waitForSamePicture(client, target.source)
        yield client.check("key_press_and_release", scancode=SCANCODES["i"])
        yield self.waitUntil(lambda: target.source.text == "hi")
        yield self.waitForSamePicture(client, target.source)
        self.assertEqual(source.source.text, "h")

    @defer.inlineCallbacks
    def test_seamless(self):
        """
        With seamless migration on both servers, each channel moves with its
        state: no INIT on the target, the display is refreshed in place, and
        the client types into the target afterwards.
        """
        source, target, targetPort, client, sessionId = yield self.typeAndPreconnect(
            seamless_migration=True)
        self.assertEqual(source.server.sourceMigration._seamless, {sessionId})
        target.source.set_migration_state(source.source.get_migration_state())
        since = len(client.events)
        yield source.server.migrate_end(True)
        # The client left the source by itself, not at the 10 s timeout.
        self.assertEqual(source.server.sourceMigration.forcedDisconnects, 0)
        yield self.waitUntil(lambda: sessionId in target.server.sessions
                             and not target.server.sessions[sessionId].arriving)
        self.assertEqual(set(target.server.sessions[sessionId].channels),
                         {(1, 0), (2, 0), (3, 0), (4, 0)})
        self.assertNotIn("primary-destroy", [e.get("event") for e in client.events[since:]])
        yield self.waitForPeers(client, targetPort)
        yield self.waitForSamePicture(client, target.source)
        yield client.check("key_press_and_release", scancode=SCANCODES["i"])
        yield self.waitUntil(lambda: target.source.text == "hi")
        yield self.waitForSamePicture(client, target.source)

    @defer.inlineCallbacks
    def test_seamlessRefusedFallsBack(self):
        """
        A source offering seamless migration and a target without it: the
        target NACKs DST_DO_SEAMLESS, and the client goes on semi-seamlessly
        to the same end.
        """
        source, target, targetPort, client, sessionId = yield self.typeAndPreconnect(
            seamless_migration=True, targetKwargs={})
        self.assertEqual(source.server.sourceMigration._seamless, set())
        target.source.set_migration_state(source.source.get_migration_state())
        yield source.server.migrate_end(True)
        yield self.waitUntil(lambda: sessionId in target.server.sessions
                             and len(target.server.sessions[sessionId].channels) == 4
                             and not target.server.sessions[sessionId].arriving)
        yield self.waitForPeers(client, targetPort)
        yield self.waitForSamePicture(client, target.source)

    @defer.inlineCallbacks
    def test_cancelKeepsClientOnSource(self):
        source, sourcePort, target, targetPort = yield self.twoServers()
        client = yield self.connect(sourcePort)
        (sessionId,) = source.server.sessions
        answers = yield source.server.migrate_connect("127.0.0.1", targetPort, None, None)
        self.assertEqual(answers, {sessionId: "connected"})
        yield source.server.migrate_end(False)
        yield self.waitUntil(lambda: not target.server.sessions)
        yield client.check("key_press_and_release", scancode=SCANCODES["i"])
        yield self.waitUntil(lambda: source.source.text == "i")
        yield self.waitForSamePicture(client, source.source)
        self.assertEqual(list(source.server.sessions), [sessionId])

    @defer.inlineCallbacks
    def test_targetNotRunning(self):
        """
        The client cannot reach the target: it answers CONNECT_ERROR, gets
        SWITCH_HOST at the end (which fails too), and the source's migration
        still finishes.
        """
        source, sourcePort, target, targetPort = yield self.twoServers()
        client = yield self.connect(sourcePort)
        yield target.stop()
        (sessionId,) = source.server.sessions
        answers = yield source.server.migrate_connect("127.0.0.1", targetPort, None, None)
        self.assertEqual(answers, {sessionId: "connect-error"})
        yield client.check("key_press_and_release", scancode=SCANCODES["h"])
        yield self.waitUntil(lambda: source.source.text == "h")
