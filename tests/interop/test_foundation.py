"""
The foundation against the real spice-gtk client: every channel links, the
client shows exactly what the source shows, typing and clicking in the
client reach the source, a wrong password is an auth error, and both the
raw and the LZ4 image paths work.  The last test runs the operator's own
command, ``twistd -n spice``.
"""

import os
import socket
import sys

import numpy
from twisted.internet import defer, endpoints, reactor, task
from twisted.internet.protocol import ProcessProtocol
from twisted.trial import unittest

from spicesrv.server import SpiceServer
from spicesrv.sources.demo import DemoSource
from spicesrv.wire.constants import ChannelType
from tests.interop import harness

PASSWORD = "s3cret"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# PC/XT set-1 make codes.
SCANCODES = {"h": 0x23, "i": 0x17, "space": 0x39}


def pixelsEqual(client, source):
    """
    Whether the client's primary (B, G, R, X) shows the source's frame; the
    unused X byte is not compared.
    """
    return (client.shape == source.shape
            and numpy.array_equal(client[:, :, :3], source[:, :, :3]))


class RunningServer:
    """
    A spicesrv server listening on a free loopback port in this process,
    showing a demo screen whose clock is frozen (so pictures are exact).
    """

    def __init__(self, testcase, **kwargs):
        self.clock = task.Clock()
        self.clock.advance(3600)
        self.source = DemoSource(clock=self.clock)
        self.server = SpiceServer(clock=reactor, **kwargs)
        self.server.startService()
        for device in self.source.devices():
            self.server.addInterface(device)
        self.testcase = testcase

    @defer.inlineCallbacks
    def listen(self):
        endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        self.port = yield endpoint.listen(self.server.factory())
        self.testcase.addCleanup(self.stop)
        return self.port.getHost().port

    def stop(self):
        for session in list(self.server.sessions.values()):
            session.end()
        return self.port.stopListening()

    def channel(self, channel_type, channel_id=0):
        (session,) = self.server.sessions.values()
        return session.channels[(channel_type, channel_id)]


class FoundationTests(unittest.TestCase):
    timeout = 120

    def setUp(self):
        harness.requireRealClient(self)
        self.tmp = self.mktemp()
        os.makedirs(self.tmp)

    @defer.inlineCallbacks
    def startClient(self, port, password=PASSWORD, extra_args=()):
        client = yield harness.GtkClient.start(reactor, "127.0.0.1", port, password=password,
                                               extra_args=extra_args)
        self.addCleanup(client.stop)
        return client

    @defer.inlineCallbacks
    def clientPixels(self, client, name="primary"):
        path = os.path.join(self.tmp, name + ".raw")
        reply = yield client.check("primary", dump=path)
        return harness.loadPrimary(reply)

    @defer.inlineCallbacks
    def waitForSamePicture(self, client, source, timeout=20):
        """
        Poll the client until its primary equals the source's frame.
        """
        path = os.path.join(self.tmp, "poll.raw")

        def same(reply):
            return reply.get("ok") and pixelsEqual(harness.loadPrimary(reply),
                                                   source.framebuffer())

        try:
            yield client.waitForPrimary(same, timeout=timeout, dump=path)
        except harness.HarnessTimeout:
            shown = harness.loadPrimary(path) if os.path.exists(path) else None
            differing = (None if shown is None or shown.shape != source.framebuffer().shape
                         else int((shown[:, :, :3] != source.framebuffer()[:, :, :3])
                                  .any(axis=2).sum()))
            self.fail("the client never showed the source's picture (%s pixels differ)"
                      % (differing,))

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
        yield client.check("position", x=300, y=400, display=0, buttons=0)
        yield client.check("button_press", button=1, buttons=1)
        for x in range(320, 720, 40):
            yield client.check("position", x=x, y=400, display=0, buttons=1)
        yield client.check("button_release", button=1, buttons=0)
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

    def waitUntil(self, condition, timeout=20, interval=0.02):
        deadline = reactor.seconds() + timeout

        @defer.inlineCallbacks
        def poll():
            while not condition():
                if reactor.seconds() > deadline:
                    self.fail("condition not met within %s seconds" % timeout)
                yield task.deferLater(reactor, interval, lambda: None)

        return poll()


class _Collect(ProcessProtocol):
    def __init__(self):
        self.output = []
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.output.append(data)

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(reason.value.exitCode)


def freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TwistdCommandTests(unittest.TestCase):
    """
    The operator's command, as the README gives it.
    """

    timeout = 120

    def setUp(self):
        harness.requireRealClient(self)

    def twistd(self, *args):
        process = _Collect()
        env = dict(os.environ, PYTHONPATH=ROOT)
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        transport = reactor.spawnProcess(
            process, twistd, [twistd, "-n", "--pidfile=", "spice", *args], env=env, path=ROOT)
        process.transport = transport
        return process

    def stopTwistd(self, process):
        if process.ended.called:
            return process.ended
        process.transport.signalProcess("TERM")
        return process.ended

    @defer.inlineCallbacks
    def waitForPort(self, port, process, timeout=30):
        deadline = reactor.seconds() + timeout
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            if process.ended.called or reactor.seconds() > deadline:
                self.fail("twistd spice did not listen on %d: %s"
                          % (port, b"".join(process.output).decode(errors="replace")))
            yield task.deferLater(reactor, 0.1, lambda: None)

    @defer.inlineCallbacks
    def test_twistdSpiceShowsDemo(self):
        """
        ``twistd -n spice`` serves the demo: a client links every channel and
        shows a 1024x768 picture with the demo's title bar.
        """
        port = freePort()
        process = self.twistd("--port", str(port))
        self.addCleanup(self.stopTwistd, process)
        yield self.waitForPort(port, process)
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
        code = yield self.stopTwistd(process)
        self.assertIn(code, (0, None))

    @defer.inlineCallbacks
    def test_refusesOpenAddressWithoutPassword(self):
        process = self.twistd("--addr", "0.0.0.0", "--port", str(freePort()))
        code = yield process.ended
        output = b"".join(process.output).decode()
        self.assertNotEqual(code, 0)
        self.assertEqual(len(output.strip().splitlines()), 1, output)
        self.assertIn("--password-file", output)
