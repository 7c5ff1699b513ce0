"""
Tests of the plugin author guide's worked examples (the echo channel and
the gradient source in C{plugin-root/spicesrv/plugins/example_echo.py}):

 - in memory, with L{spicesrv.testing}: the plugins and the source provide
   their interfaces, the echo channel links through the real link stage,
   greets and echoes, and the gradient moves on a L{Clock};
 - discovery: with C{plugin-root} on C{PYTHONPATH}, a separate process finds
   both plugins and C{twistd spice --help} lists their options, while the
   spicesrv checkout itself does not contain them;
 - served for real: C{twistd spice} runs them and a small SPICE client links
   the echo channel over TCP.

Run them with C{docs/examples} on C{PYTHONPATH}:

    PYTHONPATH=.:docs/examples python -m twisted.trial test_example_echo
"""

import importlib.util
import os
import socket
import struct
import subprocess
import sys
import time

from twisted.internet.task import Clock
from twisted.plugin import IPlugin
from twisted.trial import unittest
from zope.interface.verify import verifyObject

import spicesrv
from spicesrv.interfaces import (
    IChannelPlugin, IDisplaySource, IPluginOption, ISource, ISourcePlugin)
from spicesrv.testing import (
    ClientSurface, FakeDisplaySource, RecordingKeyboard, RecordingObserver, ServerMessages,
    connectChannel, initDisplayChannel, linkMessage, makeTestServer, parseLinkReply,
    ticketBytes)
from spicesrv.wire.constants import LINK_REPLY_SIZE, ChannelType, CommonCap, LinkErr
from spicesrv.wire.messages import INPUTS_CLIENT, MAIN_CLIENT, MAIN_SERVER

HERE = os.path.dirname(os.path.abspath(__file__))
PLUGIN_ROOT = os.path.join(HERE, "plugin-root")
PLUGIN_FILE = os.path.join(PLUGIN_ROOT, "spicesrv", "plugins", "example_echo.py")
# The checkout spicesrv is imported from (not necessarily /work/main).
SPICESRV_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(spicesrv.__file__)))


def loadExample():
    """
    Import the example plugin module from its file, without putting
    C{plugin-root} on C{sys.path}.
    """
    spec = importlib.util.spec_from_file_location("example_echo", PLUGIN_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = loadExample()


class PluginInterfaceTests(unittest.TestCase):
    def test_echoPlugin(self):
        self.assertTrue(verifyObject(IPlugin, example.echo))
        self.assertTrue(verifyObject(IChannelPlugin, example.echo))
        for option in example.echo.options:
            self.assertTrue(verifyObject(IPluginOption, option))

    def test_gradientPlugin(self):
        self.assertTrue(verifyObject(IPlugin, example.gradient))
        self.assertTrue(verifyObject(ISourcePlugin, example.gradient))

    def test_gradientSource(self):
        source = example.gradient.makeSource("", {}, Clock())
        self.assertTrue(verifyObject(IDisplaySource, source))
        self.assertTrue(verifyObject(ISource, source))
        self.assertEqual(source.devices(), [source])

    def test_badSpeed(self):
        self.assertRaises(ValueError, example.gradient.makeSource, "fast", {}, Clock())


class EchoChannelTests(unittest.TestCase):
    """
    The echo channel, linked through the real link stage of an in-memory
    server.
    """

    def setUp(self):
        # No password: a server without one refuses every client unless
        # ticketing is disabled, as QEMU's.
        self.server = makeTestServer(disable_ticketing=True)
        devices = example.echo.install(
            self.server, {"echo": "0", "echo-greeting": "Hi there"}, self.server.clock)
        self.assertEqual(devices, [])

    def link(self):
        return connectChannel(self.server, example.ECHO_CHANNEL_TYPE,
                              serverMessages=example.ECHO_SERVER)

    def test_greeting(self):
        client = self.link()
        self.assertEqual(client.result, LinkErr.OK)
        self.assertEqual(client.next("GREETING").text, b"Hi there")

    def test_echo(self):
        client = self.link()
        client.send(example.ECHO_CLIENT["ECHO"], data=b"ping \x00\xff")
        client.send(example.ECHO_CLIENT["ECHO"], data=b"")
        echoes = [record.data for name, record in client.take() if name == "ECHO"]
        self.assertEqual(echoes, [b"ping \x00\xff", b""])

    def test_listedByMain(self):
        """
        The main channel offers the echo channel to clients.
        """
        main = connectChannel(self.server, ChannelType.MAIN)
        main.send(MAIN_CLIENT["ATTACH_CHANNELS"])
        channels = main.next("CHANNELS_LIST").channels
        self.assertIn((example.ECHO_CHANNEL_TYPE, 0), [(c.type, c.id) for c in channels])

    def test_notInstalledWithoutOption(self):
        server = makeTestServer()
        example.echo.install(server, {"echo": None, "echo-greeting": "x"}, server.clock)
        self.assertIsNone(server.registry.lookup(example.ECHO_CHANNEL_TYPE, 0))

    def test_badChannelId(self):
        server = makeTestServer()
        for value in ("zero", "256", "-1"):
            self.assertRaises(ValueError, example.echo.install, server,
                              {"echo": value, "echo-greeting": None}, server.clock)


class GradientSourceTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.source = example.gradient.makeSource("8", {}, self.clock)
        self.observer = RecordingObserver()
        self.source.addObserver(self.observer)

    def test_frame(self):
        frame = self.source.framebuffer()
        self.assertEqual(frame.shape, (self.source.height, self.source.width, 4))
        self.assertEqual(str(frame.dtype), "uint8")
        self.assertTrue(frame.flags["C_CONTIGUOUS"])

    def test_moves(self):
        before = self.source.framebuffer().copy()
        self.source.start()
        self.clock.advance(example.FRAME_INTERVAL)
        after = self.source.framebuffer()
        self.assertFalse((before == after).all())
        # Moved 8 pixels to the left.
        self.assertTrue((after[:, :-8] == before[:, 8:]).all())
        self.assertEqual(self.observer.events,
                         [("damaged", [(0, 0, self.source.width, self.source.height)])])

    def test_stop(self):
        self.source.start()
        self.source.stop()
        self.clock.advance(1)
        self.assertEqual(self.observer.events, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cursor(self):
        self.assertIsNotNone(self.source.cursor())
        x, y = self.source.cursor_position()
        self.assertTrue(0 <= x < self.source.width and 0 <= y < self.source.height)

    def test_removeObserver(self):
        self.source.removeObserver(self.observer)
        self.source.tick()
        self.assertEqual(self.observer.events, [])


class ClientViewTests(unittest.TestCase):
    """
    What a client sees and what devices receive, through the real channels
    of an in-memory server.
    """

    def test_gradientOnTheClient(self):
        server = makeTestServer(disable_ticketing=True)
        source = example.gradient.makeSource("8", {}, server.clock)
        for device in source.devices():
            server.addInterface(device)
        source.start()
        display = connectChannel(server, ChannelType.DISPLAY)
        initDisplayChannel(display)
        surface = ClientSurface().applyAll(display.take())
        self.assertTrue((surface.pixels == source.framebuffer()).all())
        # One frame later (the channel sends damage when the reactor turns):
        server.clock.advance(example.FRAME_INTERVAL)
        server.clock.advance(0)
        surface.applyAll(display.take())
        self.assertTrue((surface.pixels == source.framebuffer()).all())
        self.assertEqual(source.offset, 8)

    def test_keysReachTheKeyboard(self):
        server = makeTestServer(disable_ticketing=True)
        keyboard = RecordingKeyboard()
        for device in (FakeDisplaySource(), keyboard):
            server.addInterface(device)
        inputs = connectChannel(server, ChannelType.INPUTS)
        inputs.send(INPUTS_CLIENT["KEY_DOWN"], code=0x1E)    # A pressed
        inputs.send(INPUTS_CLIENT["KEY_UP"], code=0x9E)      # and released
        self.assertEqual(keyboard.scancodes, [0x1E, 0x9E])

    def test_fakeSourcePixels(self):
        server = makeTestServer(disable_ticketing=True)
        source = FakeDisplaySource(64, 48)
        server.addInterface(source)
        display = connectChannel(server, ChannelType.DISPLAY)
        initDisplayChannel(display)
        surface = ClientSurface().applyAll(display.take())
        source.fill((8, 8, 24, 16), (0, 0, 255, 0))        # a red box (B, G, R, X)
        server.clock.advance(0)
        surface.applyAll(display.take())
        self.assertEqual(tuple(surface.pixels[10, 10]), (0, 0, 255, 0))
        self.assertEqual(tuple(surface.pixels[0, 0]), (0, 0, 0, 0))


def pluginEnvironment():
    """
    The environment of a process that sees the spicesrv checkout and the
    separate plugin root.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([SPICESRV_ROOT, PLUGIN_ROOT])
    return env


def twistdCommand():
    """
    The twistd of this Python (next to C{sys.executable}), or an equivalent.
    """
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.path.exists(twistd):
        return [twistd]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class DiscoveryTests(unittest.TestCase):
    """
    The plugins are found in a separate directory, as a third party's would
    be.
    """

    def run_(self, args, env):
        cwd = self.mktemp()
        os.makedirs(cwd)
        result = subprocess.run(args, env=env, cwd=cwd, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, timeout=120)
        output = result.stdout.decode("utf-8", "replace")
        self.assertEqual(result.returncode, 0, output)
        return output

    def listPlugins(self, env):
        return self.run_([sys.executable, "-c", (
            "from spicesrv.plugin import channelPlugins, sourcePlugins\n"
            "print(' '.join(p.name for p in channelPlugins()))\n"
            "print(' '.join(sorted(sourcePlugins())))\n")], env).split("\n")

    def test_discovered(self):
        channels, sources = self.listPlugins(pluginEnvironment())[:2]
        self.assertIn("echo", channels.split())
        self.assertIn("port", channels.split())
        self.assertIn("gradient", sources.split())
        self.assertIn("demo", sources.split())

    def test_twistdHelp(self):
        output = self.run_(twistdCommand() + ["spice", "--help"], pluginEnvironment())
        self.assertIn("--echo-greeting", output)
        self.assertIn("gradient", output)

    def test_notInCheckout(self):
        """
        The example is not part of spicesrv: without the plugin root nothing
        finds it.
        """
        self.assertFalse(os.path.exists(
            os.path.join(SPICESRV_ROOT, "spicesrv", "plugins", "example_echo.py")))
        for sub in ("spicesrv", os.path.join("spicesrv", "plugins")):
            self.assertFalse(os.path.exists(os.path.join(PLUGIN_ROOT, sub, "__init__.py")),
                             "%s/__init__.py would hide the real spicesrv package" % (sub,))
        env = dict(os.environ)
        env["PYTHONPATH"] = SPICESRV_ROOT
        channels, sources = self.listPlugins(env)[:2]
        self.assertNotIn("echo", channels.split())
        self.assertNotIn("gradient", sources.split())


# -- a tiny synchronous SPICE client -------------------------------------------------

def freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def recvExactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise AssertionError("the server closed the connection after %d of %d bytes"
                                 % (len(data), n))
        data += chunk
    return data


class SyncChannel:
    """
    One channel linked over a real socket, reading the server's messages
    with a L{ServerMessages}.
    """

    def __init__(self, port, channel_type, table, connection_id=0, password=""):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.sendall(linkMessage(channel_type, 0, connection_id))
        header = recvExactly(self.sock, 16)
        (size,) = struct.unpack_from("<I", header, 12)
        if size < LINK_REPLY_SIZE:
            raise AssertionError("link refused: %r" % (recvExactly(self.sock, size),))
        reply, common, _channel, _rest = parseLinkReply(header + recvExactly(self.sock, size))
        if reply.error != LinkErr.OK:
            raise AssertionError("link refused with error %d" % reply.error)
        self.sock.sendall(ticketBytes(reply, password))
        (result,) = struct.unpack("<I", recvExactly(self.sock, 4))
        if result != LinkErr.OK:
            raise AssertionError("link result %d" % result)
        self.mini = CommonCap.MINI_HEADER in common
        self.messages = ServerMessages(table, mini=self.mini)

    def next(self, name):
        while True:
            while self.messages.messages:
                got, record = self.messages.messages.pop(0)
                if got == name:
                    return record
            self.messages.feed(self.sock.recv(65536) or self._closed(name))

    def _closed(self, name):
        raise AssertionError("the server closed the connection before %s" % (name,))

    def send(self, message, **fields):
        body = message.pack(**fields)
        if self.mini:
            header = struct.pack("<HI", message.number, len(body))
        else:
            header = struct.pack("<QHII", 1, message.number, len(body), 0)
        self.sock.sendall(header + body)

    def close(self):
        self.sock.close()


class ServedTests(unittest.TestCase):
    """
    C{twistd spice} serves the example channel and source; a client links
    over TCP.
    """

    timeout = 120

    def startServer(self, *args):
        self.port = freePort()
        logPath = os.path.abspath(self.mktemp())
        self.log = open(logPath, "wb")
        self.addCleanup(self.log.close)
        process = subprocess.Popen(
            twistdCommand() + ["-n", "--pidfile=", "spice", "--port", str(self.port)]
            + list(args),
            env=pluginEnvironment(), cwd=os.path.dirname(logPath),
            stdout=self.log, stderr=subprocess.STDOUT)
        self.addCleanup(self.stopServer, process)
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                self.fail("twistd spice exited with %s:\n%s" % (process.returncode,
                                                                self.output(logPath)))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.fail("twistd spice did not listen on port %d:\n%s"
                              % (self.port, self.output(logPath)))
                time.sleep(0.1)
        return logPath

    def output(self, path):
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stopServer(self, process):
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def test_echoOverTCP(self):
        self.startServer("--source", "gradient", "--echo", "0", "--echo-greeting", "hi")
        main = SyncChannel(self.port, ChannelType.MAIN, MAIN_SERVER)
        self.addCleanup(main.close)
        sessionId = main.next("INIT").session_id
        main.send(MAIN_CLIENT["ATTACH_CHANNELS"])
        offered = [(c.type, c.id) for c in main.next("CHANNELS_LIST").channels]
        self.assertIn((ChannelType.DISPLAY, 0), offered)
        self.assertIn((example.ECHO_CHANNEL_TYPE, 0), offered)
        echo = SyncChannel(self.port, example.ECHO_CHANNEL_TYPE, example.ECHO_SERVER,
                           connection_id=sessionId)
        self.addCleanup(echo.close)
        self.assertEqual(echo.next("GREETING").text, b"hi")
        echo.send(example.ECHO_CLIENT["ECHO"], data=b"round trip")
        self.assertEqual(echo.next("ECHO").data, b"round trip")
