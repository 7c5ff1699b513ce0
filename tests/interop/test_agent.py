"""
The agent against the real spice-gtk client: it sees an agent, text and PNG
images copied on either side arrive on the other (through both
selections), and a resized client window resizes the demo and the
client's surface.
"""

import io

import numpy
from PIL import Image
from twisted.internet import defer

from spicesrv.sources import demo
from spicesrv.wire.vdagent import AgentCap, ClipboardType, Selection
from tests.interop.common import PASSWORD, SCANCODES, InteropTestCase, RunningServer

CTRL, C, V = 0x1D, 0x2E, 0x2F
TEXT, PNG = int(ClipboardType.UTF8_TEXT), int(ClipboardType.IMAGE_PNG)


def pngBytes(image):
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


class AgentTests(InteropTestCase):
    @defer.inlineCallbacks
    def connect(self):
        """
        A demo server and a client whose agent runs.
        """
        self.running = RunningServer(self, password=PASSWORD)
        port = yield self.running.listen()
        client = yield self.startClient(port)
        yield client.waitForChannelsOpened((1, 2, 3), timeout=20)
        yield client.waitForEvent({"event": "agent-update", "connected": True}, timeout=20)
        yield self.waitUntil(lambda: self.mainAgent() is not None and self.mainAgent().ready)
        return client

    def mainAgent(self):
        sessions = list(self.running.server.sessions.values())
        if not sessions or sessions[0].main is None:
            return None
        return sessions[0].main.agent

    @defer.inlineCallbacks
    def ctrl(self, client, key):
        yield client.check("key_press", scancode=CTRL)
        yield client.check("key_press_and_release", scancode=key)
        yield client.check("key_release", scancode=CTRL)

    @defer.inlineCallbacks
    def test_agentConnected(self):
        """
        The client sees an agent and the capabilities spicesrv announces.
        """
        client = yield self.connect()
        reply = yield client.check("agent")
        self.assertTrue(reply["connected"])
        for cap in (AgentCap.MONITORS_CONFIG, AgentCap.CLIPBOARD_BY_DEMAND,
                    AgentCap.CLIPBOARD_SELECTION):
            self.assertIn(int(cap), reply["caps"])
        self.assertNotIn(int(AgentCap.CLIPBOARD_GRAB_SERIAL), reply["caps"])
        self.assertIn(AgentCap.CLIPBOARD_SELECTION, self.mainAgent().clientCaps)

    @defer.inlineCallbacks
    def test_textAndPngFromDemoToClient(self):
        """
        Ctrl+C in the demo: the client hears of text and a PNG on its
        CLIPBOARD, and asking for them gives the typed text and the canvas.
        """
        client = yield self.connect()
        for key in ("h", "i"):
            yield client.check("key_press_and_release", scancode=SCANCODES[key])
        yield self.waitUntil(lambda: self.running.source.text == "hi")
        since = len(client.events)
        yield self.ctrl(client, C)
        grab = yield client.waitForEvent({"event": "clipboard-grab"}, since=since)
        self.assertEqual((grab["selection"], grab["types"]), (0, [TEXT, PNG]))
        yield client.check("clipboard_request", type=TEXT)
        text = yield client.waitForEvent({"event": "clipboard", "type": TEXT})
        self.assertEqual(bytes.fromhex(text["hex"]), b"hi")
        yield client.check("clipboard_request", type=PNG)
        png = yield client.waitForEvent({"event": "clipboard", "type": PNG})
        image = numpy.asarray(Image.open(io.BytesIO(bytes.fromhex(png["hex"]))).convert("RGB"))
        source = self.running.source
        top = demo.TITLE_HEIGHT + demo.HINT_HEIGHT
        canvas = source.framebuffer()[top:top + image.shape[0], :, 2::-1]
        self.assertEqual(image.shape, (source.height - top - demo.TEXT_HEIGHT
                                       - demo.STATUS_HEIGHT, source.width, 3))
        numpy.testing.assert_array_equal(image, canvas)

    @defer.inlineCallbacks
    def test_textFromClientToDemo(self):
        """
        Text the client copied is typed into the demo by Ctrl+V, and the
        client shows it.
        """
        client = yield self.connect()
        pasted = "pasted, ünïcode"
        yield client.check("clipboard_grab", types=[TEXT],
                           data={str(TEXT): pasted.encode("utf-8").hex()})
        yield self.waitUntil(
            lambda: self.running.server.agent.clipboard_owner(Selection.CLIPBOARD) == [TEXT])
        yield self.ctrl(client, V)
        request = yield client.waitForEvent({"event": "clipboard-request"})
        self.assertEqual((request["selection"], request["type"], request["answered"]),
                         (0, TEXT, True))
        yield self.waitUntil(lambda: self.running.source.text == pasted)
        yield self.waitForSamePicture(client, self.running.source)

    @defer.inlineCallbacks
    def test_pngFromClientToDemo(self):
        """
        A PNG the client copied is drawn on the demo's canvas by Ctrl+V.
        """
        client = yield self.connect()
        image = Image.new("RGB", (40, 30), (200, 20, 40))
        yield client.check("clipboard_grab", types=[PNG],
                           data={str(PNG): pngBytes(image).hex()})
        yield self.waitUntil(
            lambda: self.running.server.agent.clipboard_owner(Selection.CLIPBOARD) == [PNG])
        yield self.ctrl(client, V)
        top = demo.TITLE_HEIGHT + demo.HINT_HEIGHT
        frame = self.running.source.framebuffer
        yield self.waitUntil(lambda: tuple(frame()[top + 29, 39, :3]) == (40, 20, 200))
        yield self.waitForSamePicture(client, self.running.source)

    @defer.inlineCallbacks
    def test_primarySelectionBothWays(self):
        """
        The PRIMARY selection travels with its selection byte: the client's
        grab reaches the device, and the device's request reaches the
        client and comes back with its data.
        """
        client = yield self.connect()
        yield client.check("clipboard_grab", selection=1, types=[TEXT],
                           data={str(TEXT): b"primary".hex()})
        hub = self.running.server.agent
        yield self.waitUntil(lambda: hub.clipboard_owner(Selection.PRIMARY) == [TEXT])
        self.assertIsNone(hub.clipboard_owner(Selection.CLIPBOARD))
        data = yield hub.clipboard_request(Selection.PRIMARY, TEXT)
        self.assertEqual(data, b"primary")
        since = len(client.events)
        hub.clipboard_grab(Selection.PRIMARY, [TEXT])
        grab = yield client.waitForEvent({"event": "clipboard-grab"}, since=since)
        self.assertEqual((grab["selection"], grab["types"]), (1, [TEXT]))
        yield client.check("clipboard_release", selection=1)

    @defer.inlineCallbacks
    def test_resize(self):
        """
        The client's window becomes 800x600: the demo re-creates its screen
        at that size, the client's surface follows, and the pointer still
        lands where the client points (the tablet's logical size followed).
        """
        client = yield self.connect()
        yield client.waitForEvent({"event": "mouse-mode", "mode": 2}, timeout=20)
        yield self.waitForSamePicture(client, self.running.source)
        since = len(client.events)
        yield client.check("update_display", width=800, height=600)
        created = yield client.waitForEvent({"event": "primary-create"}, since=since)
        self.assertEqual((created["width"], created["height"]), (800, 600))
        source = self.running.source
        self.assertEqual((source.width, source.height), (800, 600))
        yield self.waitForSamePicture(client, source)
        yield self.drag(client, 300, 300, 700)
        yield self.waitUntil(lambda: tuple(source.framebuffer()[300, 500, :3]) == (0, 0, 0))
        yield self.waitForSamePicture(client, source)


class AgentMigrationTests(InteropTestCase):
    """
    A client's agent keeps working on the migration target: what it copied
    on the source can be pasted there, and its resize requests are heard.
    """

    @defer.inlineCallbacks
    def migrate(self, seamless):
        source = RunningServer(self, password=PASSWORD, seamless_migration=seamless)
        target = RunningServer(self, password=PASSWORD, seamless_migration=seamless)
        sourcePort = yield source.listen()
        targetPort = yield target.listen()
        client = yield self.startClient(sourcePort)
        yield client.waitForChannelsOpened((1, 2, 3, 4), timeout=20)
        yield client.waitForEvent({"event": "agent-update", "connected": True}, timeout=20)
        copied = "copied on the source"
        yield client.check("clipboard_grab", types=[TEXT],
                           data={str(TEXT): copied.encode("utf-8").hex()})
        yield self.waitUntil(
            lambda: source.server.agent.clipboard_owner(Selection.CLIPBOARD) == [TEXT])
        (sessionId,) = source.server.sessions
        answers = yield source.server.migrate_connect("127.0.0.1", targetPort, None, None)
        self.assertEqual(answers, {sessionId: "connected"})
        self.assertEqual(source.server.sourceMigration._seamless,
                         {sessionId} if seamless else set())
        # The device state, as the migrate command carries it.
        for device in source.server.migratable:
            (other,) = [d for d in target.server.migratable
                        if d.migration_key == device.migration_key]
            other.set_migration_state(device.get_migration_state())
        yield source.server.migrate_end(True)
        yield self.waitUntil(lambda: sessionId in target.server.sessions
                             and len(target.server.sessions[sessionId].channels) == 4
                             and not target.server.sessions[sessionId].arriving)
        yield self.waitForPeers(client, targetPort)
        self.assertEqual(target.server.agent.clipboard_owner(Selection.CLIPBOARD), [TEXT])
        yield client.check("key_press", scancode=CTRL)
        yield client.check("key_press_and_release", scancode=V)
        yield client.check("key_release", scancode=CTRL)
        yield self.waitUntil(lambda: target.source.text == copied)
        since = len(client.events)
        yield client.check("update_display", width=640, height=480)
        created = yield client.waitForEvent({"event": "primary-create"}, since=since)
        self.assertEqual((created["width"], created["height"]), (640, 480))
        yield self.waitForSamePicture(client, target.source)

    def test_semiSeamless(self):
        return self.migrate(seamless=False)

    def test_seamless(self):
        return self.migrate(seamless=True)
