"""
The foundation against the real spice-gtk client: every channel links, the
client shows exactly what the source shows, typing and clicking in the
client reach the source, a wrong password is an auth error, and both the
raw and the LZ4 image paths work.  The last test runs the operator's own
command, ``twistd -n spice``.
"""

import numpy
from twisted.internet import defer, reactor
from twisted.trial import unittest

from spicesrv.wire.constants import ChannelType
from tests.interop import harness
from tests.interop.common import (
    PASSWORD, SCANCODES, InteropTestCase, RunningServer, pixelsEqual)
from tests.interop.processes import Twistd, freePort


class FoundationTests(InteropTestCase):
    @defer.inlineCallbacks
    def test_channelsLinkAndPictureMatches(self):
        """
        All four channels open; the client's primary surface is pixel for
        pixel the demo's framebuffer; the cursor channel delivers the shape.
        """
        running = RunningServer(self, password=PASSWORD)
        port = yield running.listen()
        client = yield self.startClient(port)
        opened = yield client.waitForChannelsOpened((1, 2, 3, 4), timeout=20)
        self.assertEqual(len(opened), 4)
        created = yield client.waitForEvent({"event": "primary-create"}, timeout=20)
        self.assertEqual((created["width"], created["height"]), (1024, 768))
        yield self.waitForSamePicture(client, running.source)
        yield client.waitForEvent({"event": "cursor-set"}, timeout=20)
        self.assertEqual(running.channel(ChannelType.DISPLAY).encoding, "lz4")

    @defer.inlineCallbacks
    def test_typingReachesSource(self):
        """
        Keys typed in the client are the source's keys: the demo shows the
        text and the client shows the demo's new picture.
        """
        running = RunningServer(self, password=PASSWORD)
        port = yield running.listen()
        client = yield self.startClient(port)
        yield client.waitForChannelsOpened((1, 2, 3), timeout=20)
        yield self.waitForSamePicture(client, running.source)
        before = (yield self.clientPixels(client, "before")).copy()
        for key in ("h", "i"):
            yield client.check("key_press_and_release", scancode=SCANCODES[key])
        yield self.waitUntil(lambda: running.source.text == "hi")
        yield self.waitForSamePicture(client, running.source)
        after = yield self.clientPixels(client, "after")
        self.assertFalse(pixelsEqual(before, after), "typing changed nothing on screen")

    @defer.inlineCallbacks
    def test_mouseReachesSource(self):
        """
        A left-button drag in the client (client mouse mode, the demo has a
        tablet) paints on the demo's canvas, and the client sees the paint.
        """
        running = RunningServer(self, password=PASSWORD)
        port = yield running.listen()
        client = yield self.startClient(port)
        yield client.waitForChannelsOpened((1, 2, 3), timeout=20)
        yield client.waitForEvent({"event": "mouse-mode", "mode": 2}, timeout=20)
        yield self.waitForSamePicture(client, running.source)
        white = running.source.framebuffer()[400, 500, :3].copy()
        yield self.drag(client, 400, 300, 720)
        yield self.waitUntil(
            lambda: not numpy.array_equal(running.source.framebuffer()[400, 500, :3], white))
        yield self.waitForSamePicture(client, running.source)
        shown = yield self.clientPixels(client)
        self.assertFalse(numpy.array_equal(shown[400, 500, :3], white))

    @defer.inlineCallbacks
    def test_wrongPasswordIsAuthError(self):
        running = RunningServer(self, password=PASSWORD)
        port = yield running.listen()
        client = yield self.startClient(port, password="not-it")
        event = yield client.waitForEvent({"event": "channel-event", "type": 1}, timeout=20)
        self.assertEqual(event["what"], "SPICE_CHANNEL_ERROR_AUTH")
        self.assertEqual(running.server.sessions, {})

    @defer.inlineCallbacks
    def test_emptyPasswordRefusesEveryone(self):
        """
        After C{set_password("")} (QMP's, through the same server call) the
        real client is refused with an auth error, even with the old
        password or an empty one, as libspice-server refuses it.
        """
        running = RunningServer(self, password=PASSWORD)
        port = yield running.listen()
        running.server.set_password("")
        for offered in (PASSWORD, ""):
            client = yield self.startClient(port, password=offered)
            event = yield client.waitForEvent({"event": "channel-event", "type": 1},
                                              timeout=20)
            self.assertEqual(event["what"], "SPICE_CHANNEL_ERROR_AUTH")
        self.assertEqual(running.server.sessions, {})

    @defer.inlineCallbacks
    def test_rawBitmaps(self):
        """
        A client without LZ4 gets raw bitmaps and the same picture.
        """
        running = RunningServer(self, password=PASSWORD)
        port = yield running.listen()
        client = yield self.startClient(port, extra_args=["--no-lz4"])
        yield client.waitForChannelsOpened((1, 2), timeout=20)
        yield self.waitForSamePicture(client, running.source)
        self.assertEqual(running.channel(ChannelType.DISPLAY).encoding, "raw")
        yield client.check("key_press_and_release", scancode=SCANCODES["h"])
        yield self.waitUntil(lambda: running.source.text == "h")
        yield self.waitForSamePicture(client, running.source)

    @defer.inlineCallbacks
    def test_preferredCompressionOff(self):
        """
        spice-gtk's preferred-compression=off (1) makes the server send raw
        bitmaps even though the client can decode LZ4.
        """
        running = RunningServer(self, password=PASSWORD)
        port = yield running.listen()
        client = yield self.startClient(port, extra_args=["--preferred-compression", "1"])
        yield client.waitForChannelsOpened((1, 2), timeout=20)
        yield self.waitForSamePicture(client, running.source)
        self.assertEqual(running.channel(ChannelType.DISPLAY).encoding, "raw")


class TwistdCommandTests(unittest.TestCase):
    """
    The operator's command, as the README gives it.
    """

    timeout = 120

    def setUp(self):
        harness.requireRealClient(self)

    @defer.inlineCallbacks
    def test_twistdSpiceShowsDemo(self):
        """
        ``twistd -n spice`` serves the demo: a client links every channel and
        shows a 1024x768 picture with the demo's title bar.
        """
        port = freePort()
        process = Twistd(self, "--port", str(port))
        yield process.waitForPorts(port)
        client = yield harness.GtkClient.start(reactor, "127.0.0.1", port)
        self.addCleanup(client.stop)
        yield client.waitForChannelsOpened((1, 2, 3, 4), timeout=20)
        reply = yield client.waitForPrimary(
            lambda r: r.get("ok") and r.get("marked"), timeout=20)
        self.assertEqual((reply["width"], reply["height"]), (1024, 768))
        path = self.mktemp()
        reply = yield client.check("primary", dump=path)
        pixels = harness.loadPrimary(reply)
        # The title bar is dark blue, the canvas below it white.
        b, g, r = pixels[4, 300, :3]
        self.assertTrue(b > r and b > 80, (b, g, r))
        self.assertEqual(tuple(pixels[300, 500, :3]), (255, 255, 255))
        code = yield process.stop()
        self.assertIn(code, (0, None))

    @defer.inlineCallbacks
    def test_refusesOpenAddressWithoutPassword(self):
        process = Twistd(self, "--addr", "0.0.0.0", "--port", str(freePort()))
        code = yield process.ended
        output = process.text()
        self.assertNotEqual(code, 0)
        self.assertEqual(len(output.strip().splitlines()), 1, output)
        self.assertIn("--password-file", output)

    @defer.inlineCallbacks
    def test_refusesEmptyPasswordFile(self):
        """
        An empty password file would authenticate nobody and must not pass
        for a password: twistd stops with one line naming the option.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("\n")
        process = Twistd(self, "--addr", "0.0.0.0", "--port", str(freePort()),
                         "--password-file", path)
        code = yield process.ended
        output = process.text()
        self.assertNotEqual(code, 0)
        self.assertEqual(len(output.strip().splitlines()), 1, output)
        self.assertIn("--password-file %s" % path, output)
        self.assertNotIn("Traceback", output)
