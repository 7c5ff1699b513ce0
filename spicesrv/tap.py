"""
``twistd spice``: the command-line options and the service they build.

Option names follow QEMU's ``-spice`` where one exists.
"""

import grp
import re
import sys
import uuid as uuidlib

from twisted.application import service
from twisted.internet import endpoints
from twisted.python.failure import Failure
from twisted.python import usage

from twisted.logger import Logger

from spicesrv.address import is_loopback, is_tcp_port
from spicesrv.interfaces import ISource
from spicesrv.keys import KeyPool
from spicesrv.limits import Limits
from spicesrv.link import SECURITY_NONE, SECURITY_SSL
from spicesrv.migration.command import Migrator
from spicesrv.server import STREAMING_VIDEO_MODES, SpiceServer
from spicesrv.ticket import Ticket
from spicesrv import unixsocket
from spicesrv.unixsocket import has_parameter, unix_server_endpoint
from spicesrv.tls.endpoint import TLSServerEndpoint

DEFAULT_PORT = 5900
DEFAULT_ADDR = "127.0.0.1"
DEFAULT_LIMITS = Limits()
# Twisted's default of 50 made a burst of connects (spice-gtk opens several
# channels at once, many clients reconnect after a migration) wait for 1 s
# SYN retries.  The kernel caps it at net.core.somaxconn.
DEFAULT_BACKLOG = 512

#: --key-pool: the fewest RSA keys kept ready (two spice-gtk clients' worth),
#: and the most it may be set to (a key is about 1 KB of memory).
DEFAULT_KEY_POOL = 8
MAX_KEY_POOL = 65536
#: How far the pool grows by itself with the arrival rate (KeyPool's maxSize).
MAX_KEY_POOL_GROWTH = 1024


class ConfigError(Exception):
    """
    A configuration mistake; its message says what to change.
    """


def endpoint_is_local(description):
    """
    Whether a Twisted server endpoint string only accepts connections from
    this machine: a UNIX socket, or TCP bound to a loopback interface.
    """
    kind = description.split(":", 1)[0]
    if kind == "unix":
        return True
    if kind not in ("tcp", "tcp6", "ssl"):
        return False
    match = re.search(r"(?:^|:)interface=((?:\\:|[^:])+)", description)
    return match is not None and is_loopback(match.group(1).replace("\\:", ":"))


def incoming_is_local(description):
    """
    Whether an C{--incoming} address only takes connections from this
    machine: QEMU's C{tcp:HOST:PORT} with a loopback host, C{unix:PATH}, or
    a local Twisted endpoint string.
    """
    from spicesrv.migration.uri import parseMigrationURI
    try:
        kind, host, _port = parseMigrationURI(description, incoming=True)
    except ValueError:
        return endpoint_is_local(description)
    return kind == "unix" or (bool(host) and is_loopback(host))


class BaseOptions(usage.Options):
    synopsis = "[options]"
    longdesc = ("Run a SPICE server. By default it listens on 127.0.0.1:5900 and shows "
                "the interactive demo screen; connect with "
                "'remote-viewer spice://127.0.0.1:5900'.")

    optParameters = [
        ["port", "p", None, "TCP port for plain SPICE connections (default 5900 unless "
         "--tls-port is given; 0 = none).", int],
        ["tls-port", None, None, "TCP port for TLS SPICE connections.", int],
        ["x509-dir", None, None, "Directory with ca-cert.pem, server-cert.pem and "
         "server-key.pem (QEMU's layout)."],
        ["x509-cert-file", None, None, "Server certificate (overrides --x509-dir)."],
        ["x509-key-file", None, None, "Server private key (overrides --x509-dir)."],
        ["x509-cacert-file", None, None, "CA certificate (overrides --x509-dir)."],
        ["x509-key-password", None, None, "Password of an encrypted server key."],
        ["x509-dh-key-file", None, None, "Diffie-Hellman parameters file."],
        ["tls-ciphers", None, None, "OpenSSL cipher list for TLS."],
        ["qmp", None, None, "Run a QMP-compatible monitor on this endpoint: unix:PATH or a "
         "loopback tcp:PORT:interface=127.0.0.1 (it has no authentication)."],
        ["incoming", None, None, "Be a migration target: wait for the device state on this "
         "endpoint (tcp:HOST:PORT, tcp::PORT, unix:PATH, or tls:HOST:PORT with "
         "--tls-port's certificates), as QEMU's -incoming."],
        ["addr", "a", DEFAULT_ADDR, "Address to listen on. Anything but loopback needs "
         "--password, --password-file or --disable-ticketing."],
        ["password", None, None, "The password clients must give (at most 60 bytes). "
         "Visible in the process list; prefer --password-file."],
        ["password-file", None, None, "Read the password from the first line of this file."],
        ["password-lifetime", None, 0, "Seconds until the password expires (0 = never).",
         int],
        ["name", None, None, "Name of the machine, shown by clients."],
        ["max-connections", None, DEFAULT_LIMITS.maxConnections, "Connections open at "
         "once, all clients together (a spice-gtk session opens 4 to 13).", int],
        ["max-connections-per-address", None, DEFAULT_LIMITS.maxConnectionsPerAddress,
         "Connections open at once from one IP address.", int],
        ["link-timeout", None, DEFAULT_LIMITS.linkTimeout, "Seconds a new connection has "
         "to finish the SPICE link (password included).", float],
        ["message-timeout", None, DEFAULT_LIMITS.messageTimeout, "Seconds a client may "
         "take to send the rest of a message it started; then that channel is closed.",
         float],
        ["listen-backlog", None, DEFAULT_BACKLOG, "Connections the kernel queues for "
         "each listening socket before the server accepts them.", int],
        ["key-pool", None, DEFAULT_KEY_POOL, "RSA keys kept ready at least, one per link "
         "(a burst of new links beyond them waits for keys made at about 80 per second "
         "per CPU); the pool also grows with the arrival rate.", int],
        ["unix-socket-mode", None, None, "Permissions (octal) of --listen unix: sockets: "
         "600 (only this user) by default, 660 with --unix-socket-group."],
        ["unix-socket-group", None, None, "Give --listen unix: sockets to this group (name "
         "or number), whose members may then connect."],
        ["uuid", None, None, "UUID of the machine, sent to clients."],
        ["streaming-video", None, "filter", "Send areas that change like video as video "
         "streams: filter (those that also look like video; the default), all, or off "
         "(everything lossless), as QEMU's streaming-video."],
        ["image-compression", None, "auto_glz", "Still images, as QEMU's image-compression: "
         "auto_glz (the default), auto_lz, quic, glz, lz, lz4 or off. spicesrv has raw, LZ4 "
         "and JPEG: off is raw bitmaps; the others are LZ4 (raw for clients without it), "
         "and auto_glz, auto_lz and quic also send photographs as JPEG as "
         "--jpeg-wan-compression says (text and UI stay lossless)."],
        ["jpeg-wan-compression", None, "auto", "Photographs as JPEG, as QEMU's "
         "jpeg-wan-compression: auto (for clients on links under 10 Mibit/s), never or "
         "always; an area sent as JPEG is sent again losslessly once the link is idle."],
        ["web-client-dir", None, None, "With --web-client: the spice-html5 directory (default: "
         "where Debian's spice-html5 package puts it, /usr/share/spice-html5)."],
        ["video-codecs", None, "auto", "Codecs of video streams, most preferred first, as "
         "QEMU's video-codecs: ENCODER:CODEC;... with the encoders spice (mjpeg) and ffmpeg "
         "(vp8, vp9, h264; gstreamer: is accepted for either); a client's own preference "
         "re-orders them. auto: spice:mjpeg;ffmpeg:h264;ffmpeg:vp8;ffmpeg:vp9."],
    ]
    optFlags = [
        ["disable-ticketing", None, "Accept clients without a password."],
        ["seamless-migration", None, "Offer seamless migration (each channel moves with its "
         "state), as QEMU's seamless-migration=on; semi-seamless otherwise."],
        ["web-client", None, "Serve the browser client (spice-html5) on the SPICE ports: "
         "open http://HOST:PORT/ (https:// on --tls-port)."],
    ]

    sources = {}
    channels = []
    _repeatable = []

    def __init__(self):
        usage.Options.__init__(self)
        for name in self._repeatable:
            self[name] = []
        self["listen"] = []
        self["tls-channel"] = []
        self["plaintext-channel"] = []
        self["tls"] = None
        self["unix-socket-gid"] = None
        self["web-allow-origin"] = []
        self["web"] = None

    def opt_tls_channel(self, name):
        """This channel (main, display, inputs, cursor, ... or default) must use the TLS port (repeatable)."""
        self["tls-channel"].append(name)

    def opt_plaintext_channel(self, name):
        """This channel (or default) must use the plain port (repeatable)."""
        self["plaintext-channel"].append(name)

    def opt_listen(self, description):
        """Also listen on this Twisted endpoint, e.g. unix:/run/spice.sock or tcp:5930:interface=127.0.0.1 (repeatable)."""
        self["listen"].append(description)

    def opt_web_allow_origin(self, origin):
        """Let pages from this origin (https://portal.example:8443) open SPICE WebSockets here, besides this server's own pages (repeatable)."""
        self["web-allow-origin"].append(origin)

    def pluginValues(self, plugin):
        """
        The values of a plugin's own options, by option name.
        """
        return {option.name: self[option.name] for option in plugin.options}

    def opt_version(self):
        """Print the spicesrv version and exit."""
        from spicesrv import __version__
        print("spicesrv %s" % __version__)
        sys.exit(0)

    def postOptions(self):
        try:
            self._check()
        except ConfigError as e:
            raise SystemExit("twistd spice: %s" % (e,))

    def _check(self):
        if self["password"] is not None and self["password-file"] is not None:
            raise ConfigError("give either --password or --password-file, not both")
        if self["password-file"] is not None:
            try:
                with open(self["password-file"], "rb") as f:
                    self["password"] = f.readline().rstrip(b"\r\n")
            except OSError as e:
                raise ConfigError("cannot read --password-file %s: %s"
                                  % (self["password-file"], e.strerror))
        if self["password"] is not None:
            if self["disable-ticketing"]:
                raise ConfigError("--disable-ticketing and a password contradict each other; "
                                  "drop one")
            try:
                Ticket.validate(self["password"])
            except ValueError as e:
                raise ConfigError("bad password: %s" % (e,))
            if not self["password"]:
                # An empty password would authenticate nobody (and, before
                # this check, passed the guard for listening beyond loopback).
                if self["password-file"] is not None:
                    raise ConfigError("--password-file %s: its first line is empty; write "
                                      "the password there (or use --disable-ticketing to "
                                      "accept every client)" % (self["password-file"],))
                raise ConfigError("--password is empty; give a password, preferably with "
                                  "--password-file FILE (or use --disable-ticketing to "
                                  "accept every client)")
        self._checkPorts()
        self._checkLimits()
        self._checkTls()
        self._checkMigration()
        self._checkWeb()
        if self["password-lifetime"] < 0:
            raise ConfigError("--password-lifetime must be 0 (never) or a number of seconds")
        for description in self["listen"]:
            try:
                endpoints.serverFromString(None, description)
            except (ValueError, KeyError, TypeError) as e:
                raise ConfigError("--listen %s is not a Twisted server endpoint (%s); "
                                  "write e.g. tcp:5930:interface=127.0.0.1 or "
                                  "unix:/run/spice.sock" % (description, e))
        secured = self["password"] is not None or self["disable-ticketing"]
        exposed = [] if is_loopback(self["addr"]) else ["--addr %s" % self["addr"]]
        exposed += ["--listen %s" % l for l in self["listen"] if not endpoint_is_local(l)]
        if exposed and not secured:
            raise ConfigError("%s would accept connections from other machines without a "
                              "password; add --password-file FILE (or --disable-ticketing "
                              "if you really mean it)" % exposed[0])
        if self["streaming-video"] not in STREAMING_VIDEO_MODES:
            raise ConfigError("--streaming-video %r is not one of %s"
                              % (self["streaming-video"], ", ".join(STREAMING_VIDEO_MODES)))
        from spicesrv.display import stills
        for option, values in (("image-compression", stills.IMAGE_COMPRESSIONS),
                               ("jpeg-wan-compression", stills.JPEG_WAN_MODES)):
            if self[option] not in values:
                raise ConfigError("--%s %r is not one of %s"
                                  % (option, self[option], ", ".join(values)))
        from spicesrv.display.codecs import parseVideoCodecs
        try:
            codecs = parseVideoCodecs(self["video-codecs"])
        except ValueError as e:
            raise ConfigError("--video-codecs: %s" % (e,))
        if not any(codec.available() for codec in codecs):
            raise ConfigError("--video-codecs %r: none of these codecs can be encoded here "
                              "(the ffmpeg encoder needs PyAV: pip install av)"
                              % (self["video-codecs"],))
        name, _, args = self["source"].partition(":")
        if name not in self.sources:
            raise ConfigError("unknown --source %r; use one of %s"
                              % (name, ", ".join(sorted(self.sources))))
        if self["uuid"] is not None:
            try:
                self["uuid"] = uuidlib.UUID(self["uuid"])
            except ValueError:
                raise ConfigError("--uuid %r is not a UUID (e.g. "
                                  "12345678-1234-1234-1234-123456789abc)" % self["uuid"])

    def _checkPorts(self):
        if self["port"] is None:
            self["port"] = 0 if self["tls-port"] is not None else DEFAULT_PORT
        for option in ("port", "tls-port"):
            value = self[option]
            if value is not None and not is_tcp_port(value):
                raise ConfigError("--%s %d is not a TCP port (1-65535, or 0 for none)"
                                  % (option, value))
        if self["tls-port"] == 0:
            self["tls-port"] = None
        if not self["port"] and self["tls-port"] is None and not self["listen"]:
            raise ConfigError("nothing to listen on: give --port, --tls-port or --listen")
        if self["port"] and self["port"] == self["tls-port"]:
            raise ConfigError("--port and --tls-port are both %d; use two ports" % self["port"])

    def _checkLimits(self):
        if not 1 <= self["key-pool"] <= MAX_KEY_POOL:
            raise ConfigError("--key-pool %d: give a number of keys from 1 to %d"
                              % (self["key-pool"], MAX_KEY_POOL))
        for option in ("max-connections", "max-connections-per-address", "listen-backlog"):
            if self[option] < 1:
                raise ConfigError("--%s %d: give a number of connections, at least 1"
                                  % (option, self[option]))
        for option in ("link-timeout", "message-timeout"):
            if not 0 < self[option] < float("inf"):
                raise ConfigError("--%s %s: give a number of seconds greater than 0"
                                  % (option, self[option]))
        group = self["unix-socket-group"]
        unix = [l for l in self["listen"] if l.split(":", 1)[0] == "unix"]
        for option in ("unix-socket-mode", "unix-socket-group"):
            if self[option] is not None and not unix:
                raise ConfigError("--%s is for --listen unix:PATH sockets, and none is given"
                                  % (option,))
        if group is not None:
            try:
                self["unix-socket-gid"] = (int(group) if group.isdigit()
                                           else grp.getgrnam(group).gr_gid)
            except KeyError:
                raise ConfigError("--unix-socket-group %s: no such group" % (group,))
        else:
            self["unix-socket-gid"] = None
        mode = self["unix-socket-mode"]
        if mode is None:
            self["unix-socket-mode"] = (unixsocket.DEFAULT_MODE if group is None
                                        else unixsocket.DEFAULT_GROUP_MODE)
        elif isinstance(mode, str):
            try:
                self["unix-socket-mode"] = int(mode, 8)
            except ValueError:
                self["unix-socket-mode"] = -1
            if not 0 <= self["unix-socket-mode"] <= 0o777:
                raise ConfigError("--unix-socket-mode %s is not an octal permission mode "
                                  "such as 600 or 660" % (mode,))

    def limits(self):
        """
        The L{Limits} the options ask for.
        """
        return Limits(maxConnections=self["max-connections"],
                      maxConnectionsPerAddress=self["max-connections-per-address"],
                      linkTimeout=self["link-timeout"],
                      messageTimeout=self["message-timeout"])

    def _checkTls(self):
        files = ["x509-dir", "x509-cert-file", "x509-key-file", "x509-cacert-file",
                 "x509-key-password", "x509-dh-key-file", "tls-ciphers"]
        if self["tls-port"] is None:
            for option in ("tls-channel", "plaintext-channel"):
                if self[option]:
                    raise ConfigError("--%s %s needs --tls-port" % (option, self[option][0]))
            given = [f for f in files if self[f] is not None]
            if given:
                raise ConfigError("--%s needs --tls-port" % given[0])
            return
        if self["x509-dir"] is None and (self["x509-cert-file"] is None
                                         or self["x509-key-file"] is None):
            raise ConfigError("--tls-port needs certificates: give --x509-dir DIR (make one "
                              "with 'python -m spicesrv.scripts.certs dev DIR') or "
                              "--x509-cert-file and --x509-key-file")
        from spicesrv.tls.context import TLSConfigError, load_server_tls
        try:
            self["tls"] = load_server_tls(
                x509_dir=self["x509-dir"], cert_file=self["x509-cert-file"],
                key_file=self["x509-key-file"], cacert_file=self["x509-cacert-file"],
                key_password=self["x509-key-password"], dh_file=self["x509-dh-key-file"],
                ciphers=self["tls-ciphers"])
        except TLSConfigError as e:
            raise ConfigError(str(e))
        names = self.channelNames()
        for option in ("tls-channel", "plaintext-channel"):
            for name in self[option]:
                if name != "default" and name not in names:
                    raise ConfigError("--%s %s: unknown channel; use one of %s or default"
                                      % (option, name, ", ".join(names)))

    def channelNames(self):
        """
        Channel names for --tls-channel and --plaintext-channel: SPICE's own
        and the channel plugins' names.
        """
        from spicesrv.server import CHANNEL_NAMES
        names = dict(CHANNEL_NAMES)
        for plugin in self.channels:
            names.setdefault(plugin.name, plugin.channel_type)
        return names

    def _checkWeb(self):
        from urllib.parse import urlsplit
        from spicesrv.web import WebFrontend
        from spicesrv.web.client import ClientNotFound, WebClient
        if self["web-client-dir"] is not None and not self["web-client"]:
            raise ConfigError("--web-client-dir needs --web-client")
        for origin in self["web-allow-origin"]:
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.path.strip("/"):
                raise ConfigError("--web-allow-origin %s is not an origin; write it as "
                                  "scheme://host[:port], e.g. https://portal.example:8443"
                                  % (origin,))
        client = None
        if self["web-client"]:
            try:
                client = WebClient(self["web-client-dir"])
            except ClientNotFound as e:
                raise ConfigError("--web-client: %s" % (e,))
        self["web"] = WebFrontend(client, self["web-allow-origin"])

    def _checkMigration(self):
        from spicesrv.control.qmp import monitorEndpoint
        from spicesrv.migration.uri import incomingEndpoint
        if self["qmp"] is not None:
            try:
                monitorEndpoint(None, self["qmp"])
            except ValueError as e:
                raise ConfigError("--qmp %s: %s" % (self["qmp"], e))
        if self["incoming"] is not None:
            try:
                incomingEndpoint(None, self["incoming"], tlsOptions=self["tls"])
                if self["incoming"].startswith("tls:"):
                    self["tls"].requiringClientCertificates()
            except ValueError as e:
                raise ConfigError("--incoming %s: %s" % (self["incoming"], e))
            if (not self["incoming"].startswith("tls:")
                    and not incoming_is_local(self["incoming"])):
                raise ConfigError("--incoming %s would take migration state from other "
                                  "machines unencrypted; use a loopback address, a unix: "
                                  "socket, or tls:HOST:PORT with --tls-port's certificates"
                                  % (self["incoming"],))

    def listeners(self, reactor):
        """
        The endpoints to listen on, as C{(label, endpoint)} pairs: with the
        listen backlog, and UNIX sockets with their mode (and group).
        """
        host = self["addr"]
        backlog = self["listen-backlog"]
        result = []
        if self["port"]:
            interface = host.replace(":", "\\:")
            kind = "tcp6" if ":" in host else "tcp"
            description = "%s:%d:interface=%s" % (kind, self["port"], interface)
            result.append((description, endpoints.serverFromString(
                reactor, "%s:backlog=%d" % (description, backlog))))
        if self["tls-port"] is not None:
            result.append(("tls:%s:%d" % (host, self["tls-port"]),
                           TLSServerEndpoint(reactor, self["tls-port"], self["tls"],
                                             backlog=backlog, interface=host)))
        for description in self["listen"]:
            result.append((description, self._listenEndpoint(reactor, description)))
        return result

    def _listenEndpoint(self, reactor, description):
        """
        The endpoint of one C{--listen}: the backlog and a UNIX socket's
        mode are added unless the description gives its own.
        """
        kind = description.split(":", 1)[0]
        full = description
        if kind in ("tcp", "tcp6", "ssl", "unix") and not has_parameter(full, "backlog"):
            full += ":backlog=%d" % self["listen-backlog"]
        if kind != "unix":
            return endpoints.serverFromString(reactor, full)
        return unix_server_endpoint(reactor, full, self["unix-socket-mode"],
                                    self["unix-socket-gid"])


def buildOptions(sources=None, channels=None):
    """
    Make the C{Options} class of ``twistd spice`` with an option for every
    option of every plugin found (as C{twisted/words/tap.py} does), and the
    list of sources in its help.
    """
    from spicesrv.plugin import channelPlugins, sourcePlugins
    sources = sourcePlugins() if sources is None else sources
    channels = channelPlugins() if channels is None else channels
    namespace = {"sources": sources, "channels": channels, "optParameters": [],
                 "optFlags": []}
    repeatable = []
    for plugin in list(sources.values()) + list(channels):
        for option in plugin.options:
            if option.repeatable:
                repeatable.append(option.name)
                namespace["opt_" + option.name.replace("-", "_")] = _appender(option)
            elif getattr(option, "flag", False):
                namespace["optFlags"].append([option.name, None, option.help])
            else:
                namespace["optParameters"].append(
                    [option.name, None, option.default, option.help])
    namespace["_repeatable"] = repeatable
    namespace["optParameters"].append(
        ["source", "s", "demo", "Display source NAME[:ARGS], one of: "
         + "; ".join(sources[name].description for name in sorted(sources)) + "."])
    namespace["longdesc"] = BaseOptions.longdesc + (
        " Channel plugins: " + "; ".join(
            "%s (SPICE channel type %d): %s" % (p.name, p.channel_type, p.description)
            for p in channels) + "." if channels else "")
    return type("Options", (BaseOptions,), namespace)


def _appender(option):
    def handler(self, value):
        self[option.name].append(value)
    handler.__doc__ = option.help + " (repeatable)"
    return handler


class _ServerService(service.Service):
    """
    Starts the server's key pool and the source (an L{ISource}) with the
    service, and stops the source with it.
    """

    def __init__(self, server, source):
        self.server = server
        self.source = source

    def startService(self):
        service.Service.startService(self)
        self.server.startService()
        self.source.start()

    def stopService(self):
        service.Service.stopService(self)
        self.server.stopService()
        self.source.stop()


def listenAtOnce(listening, description):
    """
    The port of a listen that has already happened (TCP and UNIX endpoints
    listen at once); a failure stops twistd with one line instead of a
    traceback.
    """
    outcome = []
    listening.addBoth(outcome.append)
    if not outcome:
        raise SystemExit("twistd spice: %s did not start listening at once" % (description,))
    if isinstance(outcome[0], Failure):
        error = outcome[0].value
        reason = getattr(error, "socketError", None) or error
        raise SystemExit("twistd spice: cannot listen on %s: %s; choose another "
                         "address or stop what uses it"
                         % (description, getattr(reason, "strerror", None) or reason))
    return outcome[0]


class _ListenService(service.Service):
    """
    Listens on one endpoint before the reactor starts, so that a port in use
    or a bad endpoint stops twistd with one line instead of a traceback.
    """

    def __init__(self, description, endpoint, factory):
        self.description = description
        self.endpoint = endpoint
        self.factory = factory
        self.port = None

    def privilegedStartService(self):
        service.Service.privilegedStartService(self)
        self.port = listenAtOnce(self.endpoint.listen(self.factory), self.description)

    def stopService(self):
        service.Service.stopService(self)
        if self.port is not None:
            return self.port.stopListening()


def makeServer(config, reactor):
    """
    Build the L{SpiceServer} and its devices described by C{config}.

    @return: the server and the L{ISource} that C{--source} made.
    """
    # Without a password the options only allow loopback, where any local
    # client is accepted.
    keys = KeyPool(size=config["key-pool"], maxSize=max(MAX_KEY_POOL_GROWTH, config["key-pool"]))
    server = SpiceServer(clock=reactor, password=config["password"], keys=keys,
                         disable_ticketing=config["password"] is None,
                         name=config["name"], uuid=config["uuid"],
                         seamless_migration=config["seamless-migration"],
                         streaming_video=config["streaming-video"],
                         video_codecs=config["video-codecs"],
                         image_compression=config["image-compression"],
                         jpeg_wan_compression=config["jpeg-wan-compression"])
    server.limits = config.limits()
    server.web = config["web"]
    if config["password"] is not None and config["password-lifetime"]:
        server.ticket.expire_in(config["password-lifetime"])
    if config["tls"] is not None:
        server.tlsAvailable = True
        names = config.channelNames()
        for option, flags in (("tls-channel", SECURITY_SSL), ("plaintext-channel", SECURITY_NONE)):
            for name in config[option]:
                server.setChannelSecurity("default" if name == "default" else int(names[name]),
                                          flags)
    name, _, args = config["source"].partition(":")
    plugin = config.sources[name]
    try:
        source = plugin.makeSource(args, config.pluginValues(plugin), reactor)
    except ValueError as e:
        raise SystemExit("twistd spice: --source %s: %s" % (config["source"], e))
    if not ISource.providedBy(source):
        raise SystemExit("twistd spice: --source %s: the %s plugin made %r, which does not "
                         "provide spicesrv.interfaces.ISource (devices, start, stop); "
                         "derive it from spicesrv.sources.base.FramebufferSource or "
                         "declare ISource" % (config["source"], name, source))
    for device in source.devices():
        server.addInterface(device)
    for channelPlugin in config.channels:
        try:
            extra = channelPlugin.install(server, config.pluginValues(channelPlugin), reactor)
        except ValueError as e:
            raise SystemExit("twistd spice: %s" % (e,))
        for device in extra or ():
            server.addInterface(device)
    return server, source


class _IncomingService(service.Service):
    """
    The migration target's wait for the device state (C{--incoming}).  A
    migration that fails to apply is undone and reported to its source; the
    target goes on waiting for a correct one.
    """

    log = Logger()

    def __init__(self, reactor, description, server, tlsOptions):
        self.reactor = reactor
        self.description = description
        self.server = server
        self.tlsOptions = tlsOptions
        self.incoming = None

    def privilegedStartService(self):
        service.Service.privilegedStartService(self)
        from spicesrv.migration.incoming import IncomingState
        self.incoming = IncomingState(lambda: self.server.migratable,
                                      onComplete=self._complete, onFailure=self._failed,
                                      clock=self.reactor)
        listenAtOnce(self.incoming.listen(self.reactor, self.description,
                                          tlsOptions=self.tlsOptions),
                     "--incoming %s" % (self.description,))

    def _complete(self):
        self.log.info("migration state received; clients switch here as the source "
                      "tells them")

    def _failed(self, reason):
        self.log.warn("incoming migration failed: {reason}; still waiting on --incoming "
                      "{address}", reason=reason, address=self.description)

    def stopService(self):
        service.Service.stopService(self)
        if self.incoming is not None:
            return self.incoming.stop()


def _tlsOptionsFor(config):
    """
    Client TLS options for migrating to a tls: target: the target's
    certificate must chain to our CA and name the target host, and we show
    ours so the target knows its source.
    """
    if config["tls"] is None or config["tls"].cacert_file is None:
        return None
    return config["tls"].clientOptions


def makeService(config, reactor=None):
    if reactor is None:
        from twisted.internet import reactor
    server, source = makeServer(config, reactor)
    top = service.MultiService()
    _ServerService(server, source).setServiceParent(top)
    for description, endpoint in config.listeners(reactor):
        _ListenService(description, endpoint, server.factory()).setServiceParent(top)
    migrator = Migrator(server, reactor, tlsOptionsFor=_tlsOptionsFor(config))
    if config["qmp"] is not None:
        from spicesrv.control.backend import SpiceServerBackend
        from spicesrv.control.qmp import QMPFactory, monitorEndpoint
        backend = SpiceServerBackend(
            server, migrator, ca_file=config["tls"].cacert_file if config["tls"] else None,
            addresses={"host": config["addr"], "port": config["port"] or 0,
                       "tls-port": config["tls-port"] or 0}, reactor=reactor)
        factory = QMPFactory(backend, reactor, shutdown=reactor.stop)
        _ListenService("--qmp %s" % config["qmp"], monitorEndpoint(reactor, config["qmp"]),
                       factory).setServiceParent(top)
    if config["incoming"] is not None:
        # Only a tls: URI encrypts the state transfer (and then the source
        # must show a certificate of our CA); plain tcp: and unix: stay plain
        # even when the SPICE server has certificates.
        tlsOptions = (config["tls"].requiringClientCertificates()
                      if config["incoming"].startswith("tls:") else None)
        _IncomingService(reactor, config["incoming"], server,
                         tlsOptions).setServiceParent(top)
    top.server = server
    top.migrator = migrator
    return top


Options = buildOptions()
