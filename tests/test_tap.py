"""
Tests for ``twistd spice``: option parsing, the safety rules, one-line
configuration errors, and the service it builds.
"""

import uuid

from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial import unittest

from spicesrv import tap
from spicesrv.wire.constants import MouseMode


def parse(*args):
    config = tap.Options()
    config.parseOptions(list(args))
    return config


class OptionsTests(unittest.TestCase):
    def test_defaults(self):
        config = parse()
        self.assertEqual(config["port"], 5900)
        self.assertEqual(config["addr"], "127.0.0.1")
        self.assertEqual(config["source"], "demo")
        self.assertEqual([label for label, _ in config.listeners(MemoryReactorClock())],
                         ["tcp:5900:interface=127.0.0.1"])

    def test_listenAndIpv6(self):
        config = parse("--addr", "::1", "--listen", "unix:/tmp/s.sock")
        self.assertEqual([label for label, _ in config.listeners(MemoryReactorClock())],
                         ["tcp6:5900:interface=\\:\\:1", "unix:/tmp/s.sock"])

    def test_passwordFile(self):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"hunter2\nignored\n")
        self.assertEqual(parse("--password-file", path)["password"], b"hunter2")

    def test_uuid(self):
        config = parse("--uuid", "12345678-1234-5678-1234-567812345678")
        self.assertEqual(config["uuid"], uuid.UUID("12345678-1234-5678-1234-567812345678"))

    def test_openAddressNeedsPassword(self):
        parse("--addr", "0.0.0.0", "--password", "x")
        parse("--addr", "0.0.0.0", "--disable-ticketing")
        parse("--listen", "tcp:5930:interface=127.0.0.2")

    def test_nonNumericPort(self):
        self.assertRaises(usage.UsageError, parse, "--port", "abc")


class ConfigErrorTests(unittest.TestCase):
    """
    Each mistake stops with one line that says what to change.
    """

    def assertOneLine(self, args, *words):
        e = self.assertRaises(SystemExit, parse, *args)
        message = str(e.code)
        self.assertTrue(message.startswith("twistd spice: "), message)
        self.assertNotIn("\n", message)
        for word in words:
            self.assertIn(word, message)

    def test_openAddressWithoutPassword(self):
        self.assertOneLine(["--addr", "0.0.0.0"], "--password-file", "--disable-ticketing")

    def test_openListenWithoutPassword(self):
        self.assertOneLine(["--listen", "tcp:5930"], "--listen tcp:5930")

    def test_badEndpoint(self):
        self.assertOneLine(["--listen", "bogus:x"], "not a Twisted server endpoint")

    def test_emptyPassword(self):
        self.assertOneLine(["--password", ""], "--password is empty", "--password-file")
        self.assertOneLine(["--addr", "0.0.0.0", "--password", ""], "--password is empty")

    def test_emptyPasswordFile(self):
        for content in (b"", b"\n", b"\r\nsecond line\n"):
            path = self.mktemp()
            with open(path, "wb") as f:
                f.write(content)
            self.assertOneLine(["--addr", "0.0.0.0", "--password-file", path],
                               "--password-file %s" % path, "empty")

    def test_passwordTooLong(self):
        self.assertOneLine(["--password", "x" * 61], "at most 60")

    def test_passwordAndDisable(self):
        self.assertOneLine(["--password", "x", "--disable-ticketing"], "drop one")

    def test_bothPasswordOptions(self):
        self.assertOneLine(["--password", "x", "--password-file", "/nope"], "not both")

    def test_missingPasswordFile(self):
        self.assertOneLine(["--password-file", "/nonexistent/pw"], "/nonexistent/pw")

    def test_badPort(self):
        self.assertOneLine(["--port", "70000"], "--port")

    def test_nothingToListenOn(self):
        self.assertOneLine(["--port", "0"], "nothing to listen on")

    def test_tlsChannelNeedsTlsPort(self):
        self.assertOneLine(["--tls-channel", "main"], "--tls-port")

    def test_x509NeedsTlsPort(self):
        self.assertOneLine(["--x509-dir", "/tmp"], "--x509-dir needs --tls-port")

    def test_tlsPortNeedsCertificates(self):
        self.assertOneLine(["--tls-port", "5901"], "--x509-dir")

    def test_unknownSource(self):
        self.assertOneLine(["--source", "nope"], "demo", "image")

    def test_badUuid(self):
        self.assertOneLine(["--uuid", "xyz"], "--uuid")

    def test_missingImage(self):
        config = parse("--source", "image:/nonexistent.png")
        e = self.assertRaises(SystemExit, tap.makeService, config, MemoryReactorClock())
        self.assertIn("/nonexistent.png", str(e.code))
        self.assertNotIn("\n", str(e.code))


class LimitOptionTests(unittest.TestCase):
    """
    The options of spicesrv.limits, the listen backlog and the mode of UNIX
    sockets.
    """

    def test_limitDefaults(self):
        top = tap.makeService(parse(), MemoryReactorClock())
        limits = top.server.limits
        self.assertEqual((limits.maxConnections, limits.maxConnectionsPerAddress,
                          limits.linkTimeout, limits.messageTimeout), (256, 64, 30, 60))

    def test_limitOptions(self):
        config = parse("--max-connections", "20", "--max-connections-per-address", "7",
                       "--link-timeout", "4.5", "--message-timeout", "9")
        limits = tap.makeService(config, MemoryReactorClock()).server.limits
        self.assertEqual((limits.maxConnections, limits.maxConnectionsPerAddress,
                          limits.linkTimeout, limits.messageTimeout), (20, 7, 4.5, 9))

    def listen(self, *args):
        reactor = MemoryReactorClock()
        config = parse(*args)
        for _, endpoint in config.listeners(reactor):
            endpoint.listen(None)
        return reactor

    def test_backlog(self):
        reactor = self.listen("--listen", "tcp:5930:interface=127.0.0.1",
                              "--listen", "tcp:5931:interface=127.0.0.1:backlog=7",
                              "--listen", "unix:/tmp/spice-test.sock")
        self.assertEqual([(port, backlog) for port, _, backlog, _ in reactor.tcpServers],
                         [(5900, tap.DEFAULT_BACKLOG), (5930, tap.DEFAULT_BACKLOG),
                          (5931, 7)])
        self.assertEqual([backlog for _, _, backlog, _, _ in reactor.unixServers],
                         [tap.DEFAULT_BACKLOG])
        reactor = self.listen("--listen-backlog", "2048")
        self.assertEqual(reactor.tcpServers[0][2], 2048)
        self.assertGreater(tap.DEFAULT_BACKLOG, 50)

    def test_keyPool(self):
        config = parse("--key-pool", "1000")
        server, _ = tap.makeServer(config, MemoryReactorClock())
        self.assertEqual(server.keys.target, 1000)
        server, _ = tap.makeServer(parse(), MemoryReactorClock())
        self.assertEqual(server.keys.target, tap.DEFAULT_KEY_POOL)
        for bad in ("0", "100000"):
            self.assertRaises(SystemExit, parse, "--key-pool", bad)

    def test_unixSocketMode(self):
        reactor = self.listen("--listen", "unix:/tmp/a.sock",
                              "--listen", "unix:/tmp/b.sock:mode=640")
        self.assertEqual([(path, mode) for path, _, _, mode, _ in reactor.unixServers],
                         [("/tmp/a.sock", 0o600), ("/tmp/b.sock", 0o640)])
        reactor = self.listen("--listen", "unix:/tmp/a.sock", "--unix-socket-mode", "0660")
        self.assertEqual(reactor.unixServers[0][3], 0o660)

    def test_unixSocketReallyIsPrivate(self):
        """
        A UNIX socket that twistd spice listens on is the user's alone.
        """
        import os
        import stat
        import tempfile
        from twisted.internet import reactor
        directory = tempfile.mkdtemp(prefix="spicesrv-")
        self.addCleanup(os.rmdir, directory)
        path = os.path.join(directory, "s.sock")
        top = tap.makeService(parse("--port", "0", "--listen", "unix:" + path), reactor)
        top.privilegedStartService()
        self.addCleanup(top.stopService)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)

    def test_monitorAndIncomingSocketsArePrivate(self):
        """
        The QMP monitor's and C{--incoming}'s UNIX sockets are the user's
        alone too, as C{--listen unix:} ones.
        """
        import os
        import stat
        import tempfile
        from twisted.internet import reactor
        directory = tempfile.mkdtemp(prefix="spicesrv-")
        self.addCleanup(os.rmdir, directory)
        qmp = os.path.join(directory, "qmp.sock")
        incoming = os.path.join(directory, "incoming.sock")
        top = tap.makeService(parse("--port", "0", "--listen", "unix:" + directory + "/s.sock",
                                    "--qmp", "unix:" + qmp, "--incoming", "unix:" + incoming),
                              reactor)
        top.privilegedStartService()
        self.addCleanup(top.stopService)
        for path in (qmp, incoming):
            self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600, path)

    def test_unixSocketGroup(self):
        import os
        import stat
        import tempfile
        from twisted.internet import reactor
        directory = tempfile.mkdtemp(prefix="spicesrv-")
        self.addCleanup(os.rmdir, directory)
        path = os.path.join(directory, "s.sock")
        gid = os.getgid()
        config = parse("--port", "0", "--listen", "unix:" + path,
                       "--unix-socket-group", str(gid))
        top = tap.makeService(config, reactor)
        top.privilegedStartService()
        self.addCleanup(top.stopService)
        info = os.stat(path)
        self.assertEqual((stat.S_IMODE(info.st_mode), info.st_gid), (0o660, gid))

    def assertOneLine(self, args, *words):
        ConfigErrorTests.assertOneLine(self, args, *words)

    def test_badValues(self):
        self.assertOneLine(["--max-connections", "0"], "--max-connections 0")
        self.assertOneLine(["--max-connections-per-address", "-1"],
                           "--max-connections-per-address")
        self.assertOneLine(["--listen-backlog", "0"], "--listen-backlog")
        self.assertOneLine(["--link-timeout", "0"], "--link-timeout")
        self.assertOneLine(["--message-timeout", "-5"], "--message-timeout")
        self.assertOneLine(["--listen", "unix:/tmp/x", "--unix-socket-mode", "rw"],
                           "--unix-socket-mode rw", "octal")
        self.assertOneLine(["--listen", "unix:/tmp/x", "--unix-socket-mode", "1777"],
                           "--unix-socket-mode 1777")
        self.assertOneLine(["--listen", "unix:/tmp/x", "--unix-socket-group",
                            "no-such-group-spicesrv"], "no such group")
        self.assertOneLine(["--unix-socket-mode", "600"], "--listen unix:PATH")


class ServiceTests(unittest.TestCase):
    def test_makeService(self):
        reactor = MemoryReactorClock()
        config = parse("--port", "5999", "--name", "vm", "--password", "pw",
                       "--password-lifetime", "60")
        top = tap.makeService(config, reactor)
        top.privilegedStartService()
        top.startService()
        self.addCleanup(top.stopService)
        self.assertEqual([(port, interface) for port, _, _, interface in reactor.tcpServers],
                         [(5999, "127.0.0.1")])
        server = top.server
        self.assertEqual(server.name, "vm")
        self.assertEqual(len(server.displays), 1)
        self.assertIsNotNone(server.keyboard)
        self.assertEqual(server.supportedMouseModes, MouseMode.SERVER | MouseMode.CLIENT)
        self.assertEqual(server.ticket.check(b"pw\0"), (True, "password accepted"))
        reactor.advance(61)
        self.assertFalse(server.ticket.check(b"pw\0")[0])

    def test_loopbackWithoutPasswordAcceptsAnyone(self):
        top = tap.makeService(parse(), MemoryReactorClock())
        self.assertTrue(top.server.ticket.check(b"\0")[0])

    def test_portInUseIsOneLine(self):
        reactor = MemoryReactorClock()

        def refuse(*args, **kwargs):
            from twisted.internet.error import CannotListenError
            raise CannotListenError("127.0.0.1", 5900, OSError(98, "Address already in use"))

        reactor.listenTCP = refuse
        top = tap.makeService(parse(), reactor)
        e = self.assertRaises(SystemExit, top.privilegedStartService)
        self.assertIn("Address already in use", str(e.code))
        self.assertNotIn("\n", str(e.code))

    def test_incomingPortInUseIsOneLine(self):
        reactor = MemoryReactorClock()
        listenTCP = reactor.listenTCP

        def refuse(port, *args, **kwargs):
            from twisted.internet.error import CannotListenError
            if port == 4444:
                raise CannotListenError("127.0.0.1", 4444,
                                        OSError(98, "Address already in use"))
            return listenTCP(port, *args, **kwargs)

        reactor.listenTCP = refuse
        top = tap.makeService(parse("--incoming", "tcp:127.0.0.1:4444"), reactor)
        e = self.assertRaises(SystemExit, top.privilegedStartService)
        self.assertIn("--incoming tcp:127.0.0.1:4444: Address already in use", str(e.code))
        self.assertNotIn("\n", str(e.code))

    def test_plugin(self):
        from twisted.plugins import spice_plugin
        self.assertEqual(spice_plugin.spice.tapname, "spice")
        self.assertIs(spice_plugin.spice.options, tap.Options)


class PluginOptionTests(unittest.TestCase):
    def test_spiceport(self):
        from spicesrv.channels.port import PortChannel
        from spicesrv.wire.constants import ChannelType
        config = parse("--spiceport", "org.qemu.console.serial.0=tcp:host=127.0.0.1:port=7000",
                       "--spiceport", "com.example.b=unix:path=/tmp/b.sock")
        top = tap.makeService(config, MemoryReactorClock())
        registry = top.server.registry
        first = registry.lookup(ChannelType.PORT, 0)
        self.assertIs(first.factory, PortChannel)
        self.assertEqual(first.kwargs["name"], "org.qemu.console.serial.0")
        self.assertEqual(registry.lookup(ChannelType.PORT, 1).kwargs["name"], "com.example.b")

    def test_badSpiceport(self):
        config = parse("--spiceport", "noequals")
        e = self.assertRaises(SystemExit, tap.makeService, config, MemoryReactorClock())
        self.assertIn("--spiceport noequals", str(e.code))
        self.assertNotIn("\n", str(e.code))

    def test_demoSize(self):
        top = tap.makeService(parse("--demo-size", "640x480"), MemoryReactorClock())
        self.assertEqual((top.server.displays[0].width, top.server.displays[0].height),
                         (640, 480))
        e = self.assertRaises(SystemExit, tap.makeService, parse("--demo-size", "big"),
                              MemoryReactorClock())
        self.assertIn("WIDTHxHEIGHT", str(e.code))

    def test_pluginsFound(self):
        config = tap.Options()
        self.assertEqual(sorted(config.sources), ["demo", "image", "motion", "x11"])
        self.assertIn("port", [p.name for p in config.channels])

    def test_flagOption(self):
        """
        A plugin's flag option takes no value: false unless given.
        """
        self.assertFalse(parse()["x11-allow-control"])
        config = parse("--source", "x11::0", "--x11-allow-control")
        self.assertTrue(config["x11-allow-control"])
        self.assertEqual(config.pluginValues(config.sources["x11"]),
                         {"x11-allow-control": True, "x11-no-clipboard": False})

    def test_x11DisplayMissingIsOneLine(self):
        e = self.assertRaises(SystemExit, tap.makeService,
                              parse("--source", "x11::999999"), MemoryReactorClock())
        self.assertIn("--source x11::999999", str(e.code))
        self.assertNotIn("\n", str(e.code))

    def test_motionSource(self):
        top = tap.makeService(parse("--source", "motion:typing", "--motion-size", "640x480",
                                    "--motion-fps", "10"), MemoryReactorClock())
        (source,) = top.server.displays
        self.assertEqual((source.workload, source.width, source.height, source.fps),
                         ("typing", 640, 480, 10.0))
        source.stop()

    def test_badMotionWorkload(self):
        e = self.assertRaises(SystemExit, tap.makeService, parse("--source", "motion:dance"),
                              MemoryReactorClock())
        self.assertIn("dance", str(e.code))


class StreamingVideoOptionTests(unittest.TestCase):
    def test_default(self):
        top = tap.makeService(parse(), MemoryReactorClock())
        self.assertEqual(top.server.streamingVideo, "filter")

    def test_modes(self):
        for mode in ("off", "all", "filter"):
            top = tap.makeService(parse("--streaming-video", mode), MemoryReactorClock())
            self.assertEqual(top.server.streamingVideo, mode)

    def test_badMode(self):
        e = self.assertRaises(SystemExit, parse, "--streaming-video", "sometimes")
        self.assertIn("--streaming-video", str(e.code))
        self.assertIn("filter", str(e.code))


class VideoCodecsOptionTests(unittest.TestCase):
    def test_default(self):
        top = tap.makeService(parse(), MemoryReactorClock())
        self.assertEqual([c.name for c in top.server.videoCodecs],
                         ["spice:mjpeg", "ffmpeg:h264", "ffmpeg:vp8", "ffmpeg:vp9"])

    def test_qemuFormat(self):
        """
        QEMU's video-codecs string is taken as it is.
        """
        top = tap.makeService(parse("--video-codecs", "gstreamer:vp8;spice:mjpeg;"),
                              MemoryReactorClock())
        self.assertEqual([c.name for c in top.server.videoCodecs],
                         ["ffmpeg:vp8", "spice:mjpeg"])

    def test_bad(self):
        e = self.assertRaises(SystemExit, parse, "--video-codecs", "spice:theora")
        self.assertIn("--video-codecs", str(e.code))
        self.assertIn("theora", str(e.code))

    def test_unavailableLeftOut(self):
        """
        A codec this process cannot encode is left out (as libspice
        does); a list of nothing else is refused at start-up.
        """
        from spicesrv.display import codecs
        self.patch(codecs, "_available", {"libvpx": False})
        top = tap.makeService(parse("--video-codecs", "ffmpeg:vp8;spice:mjpeg"),
                              MemoryReactorClock())
        self.assertEqual([c.name for c in top.server.videoCodecs], ["spice:mjpeg"])
        e = self.assertRaises(SystemExit, parse, "--video-codecs", "ffmpeg:vp8")
        self.assertIn("can be encoded here", str(e.code))


class MigrationOptionTests(unittest.TestCase):
    def test_qmpAndIncoming(self):
        socket = self.mktemp()
        config = parse("--qmp", "unix:" + socket, "--incoming", "tcp:127.0.0.1:4444",
                       "--seamless-migration")
        reactor = MemoryReactorClock()
        top = tap.makeService(config, reactor)
        top.privilegedStartService()
        self.addCleanup(top.stopService)
        self.assertEqual([u[0] for u in reactor.unixServers], [socket])
        self.assertIn(4444, [t[0] for t in reactor.tcpServers])
        self.assertTrue(top.server.seamless)

    def test_publicMonitorRefused(self):
        e = self.assertRaises(SystemExit, parse, "--qmp", "tcp:4444")
        self.assertIn("--qmp", str(e.code))
        self.assertNotIn("\n", str(e.code))

    def test_badIncoming(self):
        e = self.assertRaises(SystemExit, parse, "--incoming", "exec:cat")
        self.assertIn("--incoming exec:cat", str(e.code))

    def test_openIncomingRefused(self):
        for description in ("tcp::4444", "tcp:0.0.0.0:4444", "tcp:4444"):
            e = self.assertRaises(SystemExit, parse, "--incoming", description)
            self.assertIn("unencrypted", str(e.code))
        parse("--incoming", "tcp:[::1]:4444")
        parse("--incoming", "unix:/tmp/incoming.sock")
        parse("--incoming", "tcp:4444:interface=127.0.0.1")

    def test_tlsIncomingNeedsCertificates(self):
        e = self.assertRaises(SystemExit, parse, "--incoming", "tls:127.0.0.1:4444")
        self.assertIn("--incoming", str(e.code))


class PluginProviderTests(unittest.TestCase):
    def test_builtinPluginsVerified(self):
        from zope.interface.verify import verifyObject
        from spicesrv.interfaces import IChannelPlugin, IPluginOption, ISourcePlugin
        config = tap.Options()
        for plugin in config.sources.values():
            verifyObject(ISourcePlugin, plugin)
            for option in plugin.options:
                verifyObject(IPluginOption, option)
        for plugin in config.channels:
            verifyObject(IChannelPlugin, plugin)
            for option in plugin.options:
                verifyObject(IPluginOption, option)



class SourceContractTests(unittest.TestCase):
    """
    What --source makes must provide ISource; the service starts and stops
    it.
    """

    def withSource(self, plugin, args=""):
        config = parse()
        config.sources[plugin.name] = plugin
        config["source"] = plugin.name + (":" + args if args else "")
        return config

    def test_sourceStartedAndStopped(self):
        from spicesrv.testing import FakeSourcePlugin
        plugin = FakeSourcePlugin(options=())
        top = tap.makeService(self.withSource(plugin, "32x16"), MemoryReactorClock())
        (source, args, values, _reactor), = plugin.made
        self.assertEqual((args, values), ("32x16", {}))
        self.assertEqual(top.server.displays, [source])
        calls = []
        source.start = lambda: calls.append("start")
        source.stop = lambda: calls.append("stop")
        top.privilegedStartService()
        top.startService()
        top.stopService()
        self.assertEqual(calls, ["start", "stop"])

    def test_notASource(self):
        from spicesrv.testing import FakeSourcePlugin

        class Plugin(FakeSourcePlugin):
            def makeSource(self, args, values, reactor):
                return object()
        e = self.assertRaises(SystemExit, tap.makeService, self.withSource(Plugin(options=())),
                              MemoryReactorClock())
        self.assertIn("does not provide spicesrv.interfaces.ISource", str(e.code))


class TLSOptionTests(unittest.TestCase):
    def test_missingDirectoryIsOneLine(self):
        e = self.assertRaises(SystemExit, parse, "--tls-port", "5901", "--x509-dir",
                              "/nonexistent/certs")
        self.assertIn("/nonexistent/certs", str(e.code))
        self.assertNotIn("\n", str(e.code))

    def test_tlsListener(self):
        from twisted.protocols.tls import TLSMemoryBIOFactory
        from spicesrv.tls.endpoint import MessageRecordsTLSProtocol
        from spicesrv import tls
        directory = self.mktemp()
        tls.write_dev_certs(directory)
        config = parse("--tls-port", "5901", "--x509-dir", directory, "--tls-channel", "main",
                       "--plaintext-channel", "display")
        self.assertEqual(config["port"], 0)
        reactor = MemoryReactorClock()
        top = tap.makeService(config, reactor)
        top.privilegedStartService()
        self.addCleanup(top.stopService)
        # A TCP port whose factory wraps the server's in TLS, one record per
        # message (spicesrv.tls.TLSServerEndpoint).
        ((port, factory, _, interface),) = reactor.tcpServers
        self.assertEqual((port, interface), (5901, "127.0.0.1"))
        self.assertIsInstance(factory, TLSMemoryBIOFactory)
        self.assertIs(factory.protocol, MessageRecordsTLSProtocol)
        self.assertEqual(reactor.sslServers, [])
        from spicesrv.link import SECURITY_NONE, SECURITY_SSL
        from spicesrv.wire.constants import ChannelType
        self.assertEqual(top.server.channelSecurity(ChannelType.MAIN), SECURITY_SSL)
        self.assertEqual(top.server.channelSecurity(ChannelType.DISPLAY), SECURITY_NONE)
        self.assertTrue(top.server.tlsAvailable)

    def test_pluginChannelName(self):
        from spicesrv import tls
        from spicesrv.link import SECURITY_SSL
        directory = self.mktemp()
        tls.write_dev_certs(directory)
        config = parse("--tls-port", "5901", "--x509-dir", directory, "--tls-channel", "port")
        top = tap.makeService(config, MemoryReactorClock())
        self.assertEqual(top.server.channelSecurity(10), SECURITY_SSL)

    def test_unknownTlsChannel(self):
        from spicesrv import tls
        directory = self.mktemp()
        tls.write_dev_certs(directory)
        e = self.assertRaises(SystemExit, parse, "--tls-port", "5901", "--x509-dir", directory,
                              "--tls-channel", "bogus")
        self.assertIn("bogus", str(e.code))


class InstalledCommandTests(unittest.TestCase):
    """
    The README's command: the twistd installed beside this Python finds the
    spice plugin with no PYTHONPATH and from any directory.
    """

    def test_twistdFindsPlugin(self):
        import os
        import subprocess
        import sys
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        installed = subprocess.run([sys.executable, "-c", "import spicesrv"], cwd="/",
                                   env=env, capture_output=True).returncode == 0
        if not installed:
            message = "spicesrv is not installed in %s (./dev installs it)" % sys.executable
            if os.environ.get("CI") == "true":
                self.fail(message)
            raise unittest.SkipTest(message)
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        result = subprocess.run([twistd, "spice", "--help"], cwd="/", env=env,
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("--tls-port", result.stdout)


class StillsOptionTests(unittest.TestCase):
    """
    --image-compression and --jpeg-wan-compression take QEMU's values.
    """

    def test_defaults(self):
        top = tap.makeService(parse(), MemoryReactorClock())
        self.assertEqual((top.server.imageCompression, top.server.jpegWanCompression),
                         ("auto_glz", "auto"))

    def test_values(self):
        for value in ("auto_glz", "auto_lz", "quic", "glz", "lz", "lz4", "off"):
            top = tap.makeService(parse("--image-compression", value), MemoryReactorClock())
            self.assertEqual(top.server.imageCompression, value)
        for value in ("auto", "never", "always"):
            top = tap.makeService(parse("--jpeg-wan-compression", value), MemoryReactorClock())
            self.assertEqual(top.server.jpegWanCompression, value)

    def test_badValues(self):
        e = self.assertRaises(SystemExit, parse, "--image-compression", "zlib")
        self.assertIn("--image-compression", str(e.code))
        self.assertIn("auto_glz", str(e.code))
        e = self.assertRaises(SystemExit, parse, "--jpeg-wan-compression", "on")
        self.assertIn("--jpeg-wan-compression", str(e.code))
        self.assertIn("always", str(e.code))

    def test_help(self):
        """
        The help says how QEMU's values map onto what spicesrv implements.
        """
        text = str(tap.Options())
        self.assertIn("image-compression", text)
        self.assertIn("raw, LZ4", text)
        self.assertIn("jpeg-wan-compression", text)
