"""
The embedding API: a SPICE server that a Twisted program creates, gives
devices to, and listens with.

    server = SpiceServer(password="secret")
    for device in DemoSource().devices():
        server.addInterface(device)
    endpoints.serverFromString(reactor, "tcp:5900:interface=127.0.0.1").listen(
        server.factory())
"""

import os
import struct
import time as walltime

from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer
from zope.interface.verify import verifyObject
from zope.interface.exceptions import Invalid

from spicesrv.agent import AgentHub
from spicesrv.channels.cursor import CursorChannel
from spicesrv.channels.display import DisplayChannel
from spicesrv.channels.inputs import InputsChannel
from spicesrv.channels.main import MainChannel
from spicesrv.context import ChannelContext
from spicesrv.display import stills
from spicesrv.control.events import EventObservers, channelEventData
from spicesrv.interfaces import (
    IAgent, IDisplayObserver, IDisplaySource, IKeyboard, IMigratableState, IMigration, IMouse,
    IPlaybackSource, IRecordSink, ITablet)
from spicesrv.keys import KeyPool
from spicesrv.limits import ConnectionCounter, Limits
from spicesrv.link import LinkProtocol, Park, Refuse, SECURITY_NONE, SECURITY_SSL, Start
from spicesrv.migration.source import SourceMigration, TargetInfo
from spicesrv.registry import ChannelRegistry
from spicesrv.session import ClientSession
from spicesrv.ticket import Ticket
from spicesrv.wire.constants import (
    MM_TIME_DELTA_MS, ChannelType, LinkErr, MouseMode)

#: --streaming-video, as QEMU's -spice streaming-video: never stream, stream
#: every area updated like video, or only those that look like video.
STREAMING_VIDEO_MODES = ("off", "all", "filter")

# How long a client migrating in may take to switch here (its MIGRATE_END)
# before it is dropped.  libspice-server waits forever; the VM's RAM copy
# happens in between, so this is generous.
MIGRATION_ARRIVAL_TIMEOUT = 300.0

# The device interfaces addInterface knows, most specific first.
DEVICE_INTERFACES = (IDisplaySource, IKeyboard, IMouse, ITablet, IMigration, IAgent,
                     IPlaybackSource, IRecordSink)

#: Channel names as QEMU's tls-channel and plaintext-channel options spell
#: them ("main", "display", ...), to their types.
CHANNEL_NAMES = {channel.name.lower(): channel for channel in ChannelType}


@implementer(IDisplayObserver)
class _PrimarySize:
    """
    Keeps the tablet's logical size that of the first display, as libspice
    does when the primary surface is re-created.
    """

    def __init__(self, server):
        self._server = server

    def surface_changed(self, width, height):
        if self._server.tablet is not None:
            self._server.tablet.set_logical_size(width, height)

    def damaged(self, rects):
        pass

    def cursor_changed(self, cursor):
        pass

    def cursor_moved(self, x, y):
        pass


class InterfaceError(ValueError):
    """
    A device handed to L{SpiceServer.addInterface} cannot be used.
    """


class PasswordError(ValueError):
    """
    A password change the server refuses; the message says why.
    """


class SpiceServer:
    """
    A SPICE server: devices, the channels that serve them, tickets, and the
    connected clients.

    @param clock: an C{IReactorTime} provider (the reactor by default); every
        timer of the server and its channels uses it.
    @param password: the ticket clients must present, or L{None}.
    @param disable_ticketing: accept clients without checking their ticket,
        as QEMU's C{disable-ticketing=on}.
    @param name: the VM name sent to clients that support it.
    @param uuid: a L{uuid.UUID} sent to clients that support it.
    @param keys: a L{KeyPool}; one is made by default.
    @param seamless_migration: offer seamless migration, as QEMU's
        C{seamless-migration=on}; semi-seamless otherwise.
    @param streaming_video: C{"filter"} (the default, as libspice-server's)
        sends areas that change like video, and look like it, as video
        streams; C{"all"} streams every area updated like video; C{"off"}
        sends everything losslessly (QEMU's C{streaming-video}).
    @param video_encoder: what encodes stream frames (see
        L{spicesrv.display.video}); a shared thread pool by default.
    @param video_codecs: the video codecs streams may use, most preferred
        first, as QEMU's C{video-codecs}: C{"spice:mjpeg;ffmpeg:vp8"} (see
        L{spicesrv.display.codecs}), C{"auto"} or L{None} for the default.
        Codecs this process cannot encode (PyAV or an FFmpeg encoder
        missing) are left out with a log line, as libspice-server does.
    @param image_compression: QEMU's C{image-compression}: C{"auto_glz"}
        (the default), C{"auto_lz"}, C{"quic"}, C{"glz"}, C{"lz"},
        C{"lz4"} or C{"off"}; spicesrv sends raw bitmaps for C{"off"},
        LZ4 (raw to clients without it) for the others, and only the first
        three may send photographs as JPEG (L{spicesrv.display.stills}).
    @param jpeg_wan_compression: QEMU's C{jpeg-wan-compression}:
        C{"auto"} (JPEG for photographs on links under 10 Mibit/s),
        C{"never"} or C{"always"}.
    @param mm_clock: the multimedia clock's source, a callable returning
        seconds that never steps (C{time.monotonic} by default): every video
        frame and audio packet is stamped on it, so a step of the wall clock
        (which the reactor's C{seconds} follows) must not move it.
    """

    log = Logger()

    def __init__(self, clock=None, password=None, disable_ticketing=False, name=None,
                 uuid=None, keys=None, seamless_migration=False, streaming_video="filter",
                 video_encoder=None, video_codecs=None, mm_clock=None,
                 image_compression=stills.DEFAULT_IMAGE_COMPRESSION,
                 jpeg_wan_compression=stills.DEFAULT_JPEG_WAN):
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self._mmClock = mm_clock if mm_clock is not None else walltime.monotonic
        self.context = ChannelContext(self)
        self.ticket = Ticket(clock, password=password, disabled=disable_ticketing)
        self.name = name
        self.uuid = uuid
        self.keys = keys if keys is not None else KeyPool()
        # Deadlines, caps and log rate limits (spicesrv.limits); change them
        # before listening.
        self.limits = Limits()
        self.connections = ConnectionCounter(lambda: self.limits)
        self.registry = ChannelRegistry()
        self.registry.observe(self._channelAdded)
        self.sessions = {}
        self.displays = []
        self.keyboard = None
        self.mouse = None
        self.tablet = None
        self.migration = None
        self.agent = None
        # Sound (addInterface): one playback source, one record sink; whether
        # playback may use Opus (QEMU's playback-compression).
        self.playback = None
        self.record = None
        self.playbackCompression = True
        self.migratable = []
        self.mouseMode = MouseMode.SERVER
        self.tlsAvailable = False
        self._security = {}
        self._defaultSecurity = SECURITY_NONE | SECURITY_SSL
        self._leds = 0
        self._events = EventObservers()
        self.sourceMigration = SourceMigration(self)
        self.migrationArrivalTimeout = MIGRATION_ARRIVAL_TIMEOUT
        self.seamless = seamless_migration
        if streaming_video not in STREAMING_VIDEO_MODES:
            raise ValueError("streaming_video %r is not one of %s"
                             % (streaming_video, ", ".join(STREAMING_VIDEO_MODES)))
        self.streamingVideo = streaming_video
        # Raises ValueError for values QEMU does not know.
        stills.StillPolicy(image_compression, jpeg_wan_compression)
        self.imageCompression = image_compression
        self.jpegWanCompression = jpeg_wan_compression
        self._videoEncoder = video_encoder
        self.videoCodecs = self._usableVideoCodecs(video_codecs)
        self.registry.register(ChannelType.MAIN, 0, MainChannel)
        self.registry.register(ChannelType.INPUTS, 0, InputsChannel)

    def startService(self):
        """
        Start generating link keys ahead of need; call it once the reactor
        may run threads (``twistd spice`` does it with its service).
        """
        self.keys.start()

    def stopService(self):
        """
        Stop generating keys (the pool's worker threads end).
        """
        stop = getattr(self.keys, "stop", None)
        if stop is not None:
            stop()

    def factory(self):
        """
        A protocol factory for listening endpoints.
        """
        return Factory.forProtocol(lambda: LinkProtocol(self))

    # -- devices -----------------------------------------------------------------

    def addInterface(self, instance):
        """
        Register a device, as libspice's C{spice_server_add_interface}: a
        display source gets a display and a cursor channel, a keyboard,
        mouse or tablet receives the inputs channel's events (a tablet makes
        client mouse mode available), a migration interface gets the
        migration callbacks, an agent (L{IAgent}) gets the clients' resize
        requests and clipboards.

        @raise InterfaceError: the instance provides no device interface, or
            its major version is not the one this server implements.
        """
        for iface in DEVICE_INTERFACES:
            if iface.providedBy(instance):
                break
        else:
            raise InterfaceError("%r provides none of %s" % (
                instance, ", ".join(i.getTaggedValue("type") for i in DEVICE_INTERFACES)))
        try:
            verifyObject(iface, instance)
        except Invalid as e:
            raise InterfaceError("%r does not implement %s: %s" % (instance, iface.__name__, e))
        expected = iface.getTaggedValue("major_version")
        if instance.major_version != expected:
            raise InterfaceError(
                "%s interface %r has major version %s; this server implements %d"
                % (iface.getTaggedValue("type"), instance.description,
                   instance.major_version, expected))
        if IDisplaySource.providedBy(instance):
            channel_id = len(self.displays)
            self.displays.append(instance)
            if channel_id == 0:
                instance.addObserver(_PrimarySize(self))
            self.registry.register(ChannelType.DISPLAY, channel_id, DisplayChannel,
                                   source=instance)
            self.registry.register(ChannelType.CURSOR, channel_id, CursorChannel,
                                   source=instance)
        elif IKeyboard.providedBy(instance):
            self.keyboard = instance
            self._leds = instance.get_leds()
            if hasattr(instance, "leds_changed"):
                instance.leds_changed = self.keyboardLedsMayHaveChanged
        elif IMouse.providedBy(instance):
            self.mouse = instance
        elif ITablet.providedBy(instance):
            self.tablet = instance
            if self.displays:
                self.tablet.set_logical_size(self.displays[0].width, self.displays[0].height)
            self._setMouseMode(MouseMode.CLIENT)
        elif IMigration.providedBy(instance):
            self.migration = instance
        elif IAgent.providedBy(instance):
            if self.agent is not None:
                raise InterfaceError("this server already has an agent: %s"
                                     % (self.agent.device.description,))
            self.agent = AgentHub(instance)
            self.migratable.append(self.agent)
            instance.agent_attached(self.agent)
            self.broadcast("agentConnected")
        elif IPlaybackSource.providedBy(instance) or IRecordSink.providedBy(instance):
            self._addSound(instance)
        if IMigratableState.providedBy(instance):
            self.migratable.append(instance)
        self.log.info("added {type} interface: {description}",
                      type=instance.type, description=instance.description)

    def _addSound(self, instance):
        """
        A playback source or record sink: it gets channel 0 of its type, as
        libspice's one playback and one record instance.
        """
        from spicesrv.channels.playback import PlaybackChannel
        from spicesrv.channels.record import RecordChannel
        if IPlaybackSource.providedBy(instance):
            attr, kind, factory, kwargs = ("playback", ChannelType.PLAYBACK, PlaybackChannel,
                                           dict(source=instance,
                                                compression=self.playbackCompression))
        else:
            attr, kind, factory, kwargs = ("record", ChannelType.RECORD, RecordChannel,
                                           dict(sink=instance))
        if getattr(self, attr) is not None:
            raise InterfaceError("this server already has a %s device: %s; remove it first"
                                 % (attr, getattr(self, attr).description))
        setattr(self, attr, instance)
        self.registry.register(kind, 0, factory, **kwargs)

    def removeInterface(self, instance):
        """
        Unregister a playback source or record sink, as libspice's
        C{spice_server_remove_interface}: its channel is no longer offered
        and the clients' channels of it close.

        @raise InterfaceError: C{instance} is not this server's playback or
            record device.
        """
        for attr, kind in (("playback", ChannelType.PLAYBACK), ("record", ChannelType.RECORD)):
            if getattr(self, attr) is instance and instance is not None:
                setattr(self, attr, None)
                self.registry.unregister(kind, 0)
                self.log.info("removed {type} interface: {description}", type=attr,
                              description=instance.description)
                for session in list(self.sessions.values()):
                    channel = session.channels.get((kind, 0))
                    if channel is not None:
                        channel.close("its %s device was removed" % (attr,))
                return
        raise InterfaceError("%r is not a device this server can remove" % (instance,))

    # -- channels and sessions ---------------------------------------------------

    def channelClass(self, channel_type, channel_id):
        """
        The channel protocol class serving C{(channel_type, channel_id)}, or
        L{None} if the server does not offer that channel.
        """
        entry = self.registry.lookup(channel_type, channel_id)
        return entry.factory if entry is not None else None

    def channelSecurity(self, channel_type):
        """
        Which ports a channel type may link on: SECURITY_NONE, SECURITY_SSL
        or both.
        """
        return self._security.get(channel_type, self._defaultSecurity)

    def setChannelSecurity(self, name, flags):
        """
        Set which ports a channel type may link on, as
        C{spice_server_set_channel_security}: C{name} is a channel name (or
        a channel type number, for channels plugins add), or L{None} for the
        default; C{flags} combines SECURITY_NONE and SECURITY_SSL.
        """
        if name is None or name == "default":
            self._defaultSecurity = flags
            return
        if isinstance(name, int):
            self._security[name] = flags
            return
        try:
            self._security[CHANNEL_NAMES[name]] = flags
        except KeyError:
            raise ValueError("unknown channel %r; use one of %s or default"
                             % (name, ", ".join(CHANNEL_NAMES)))

    def attach(self, info):
        """
        Called by the link protocol once the ticket is accepted: decide what
        becomes of the link, which the link then does.

        @return: L{Start} with the new channel (in its session, not yet
            connected), L{Park} for a channel of a client that is migrating
            in (it waits for the client to switch here), or L{Refuse} with
            the link error to send.
        """
        entry = self.registry.lookup(info.channel_type, info.channel_id)
        if info.channel_type == ChannelType.MAIN:
            session = self._newSession(info)
            if isinstance(session, Refuse):
                return session
        else:
            session = self.sessions.get(info.connection_id)
            if session is None:
                return Refuse(LinkErr.BAD_CONNECTION_ID, "no session %d" % info.connection_id)
            if entry is None:
                return Refuse(LinkErr.CHANNEL_NOT_AVAILABLE, "no %s channel %d"
                              % (info.channel_name, info.channel_id))
            if session.arrival is not None and session.arrival.parksLinks:
                return Park(session.arrival, entry)
        return Start(self.newChannel(session, info, entry))

    def newChannel(self, session, info, entry):
        """
        Make the channel protocol for a linked connection and add it to its
        session; the link runs it.
        """
        channel = entry.factory(session, info, **entry.kwargs)
        session.add(channel)
        self.log.info("session {session}: {channel} channel {id} linked from {peer}"
                      "{tls}", session=session.id, channel=info.channel_name,
                      id=info.channel_id, peer=info.peer,
                      tls=" over TLS" if info.secure else "")
        self.emit("SPICE_CONNECTED", channelEventData(info))
        self.emit("SPICE_INITIALIZED", channelEventData(
            info, auth="none" if self.ticket.disabled else "spice", session_id=session.id))
        return channel

    def _newSession(self, info):
        if info.connection_id:
            # A non-zero id on a main link is a client migrating in from
            # another server; it keeps its session id (libspice's T1).
            if info.connection_id in self.sessions:
                return Refuse(LinkErr.BAD_CONNECTION_ID, "session %d already exists "
                              "here" % info.connection_id)
            session = ClientSession(self, info.connection_id, info.peer, migratingIn=True)
            self.sessions[session.id] = session
            self.log.info("session {session}: client migrating in from {peer}",
                          session=session.id, peer=info.peer)
            return session
        session_id = 0
        while session_id == 0 or session_id in self.sessions:
            session_id = struct.unpack("<I", os.urandom(4))[0]
        session = ClientSession(self, session_id, info.peer)
        self.sessions[session_id] = session
        return session

    def sessionEnded(self, session):
        """
        A client's session is over (its main channel closed).
        """
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
        self.sourceMigration.sessionGone(session)

    def channelClosed(self, channel):
        """
        A channel connection closed.
        """
        self.emit("SPICE_DISCONNECTED", channelEventData(channel.info))

    # -- events, as QEMU's QMP reports them ------------------------------------

    def addEventObserver(self, observer):
        """
        Call C{observer(name, data)} for SPICE_CONNECTED, SPICE_INITIALIZED,
        SPICE_DISCONNECTED and SPICE_MIGRATE_COMPLETED, with QEMU's data.
        """
        self._events.add(observer)

    def removeEventObserver(self, observer):
        self._events.remove(observer)

    def emit(self, name, data):
        self._events.emit(name, data)

    def _channelAdded(self, entry):
        for session in list(self.sessions.values()):
            if session.main is not None:
                session.main.channelAdded(entry)

    def broadcast(self, method, *args):
        """
        Call C{method(*args)} on every channel of every session that has it.
        """
        for session in list(self.sessions.values()):
            session.broadcast(method, *args)

    # -- migration (the source's side) --------------------------------------------

    def migrate_connect(self, host, port=None, tls_port=None, cert_subject=None):
        """
        Start a client migration to another server, as libspice's
        C{spice_server_migrate_connect}: clients with the semi-seamless
        capability get MIGRATE_BEGIN and pre-connect to the target.  A second
        call cancels the first.

        Returns a Deferred firing with a dict session id -> answer
        (C{"connected"}, C{"connect-error"}, C{"timed-out"},
        C{"no-capability"}) once every client has answered or timed out,
        when the migration interface's C{migrate_connect_complete} is called.

        @raise MigrationError: no host, or neither port.
        """
        return self.sourceMigration.connect(
            TargetInfo.make(host, port, tls_port, cert_subject))

    def migrate_start(self):
        """
        The VM migration starts; nothing goes on the wire.
        """
        if self.sourceMigration.target is None:
            self.log.info("migrate_start without a migration target")

    def migrate_end(self, completed):
        """
        The VM migration ended.  On success clients that pre-connected get
        MIGRATE_END and the others MIGRATE_SWITCH_HOST; on failure the
        pre-connected ones get MIGRATE_CANCEL and stay.  Returns a Deferred
        that fires when it is all over: after success, once the clients
        have left (or after a timeout), when C{migrate_end_complete} is
        called.
        """
        return self.sourceMigration.end(completed)

    def migrate_info(self, host, port=None, tls_port=None, cert_subject=None):
        """
        Remember a target for L{migrate_switch} (the legacy switch-host
        migration).
        """
        self.sourceMigration.info(TargetInfo.make(host, port, tls_port, cert_subject))

    def migrate_switch(self):
        """
        Send every client MIGRATE_SWITCH_HOST to the target given to
        L{migrate_info}; they reconnect there as new clients.
        """
        self.sourceMigration.switch()

    def sessionArrived(self, session):
        """
        A client that migrated in has switched here; its channels that
        waited for it (sound) start.
        """
        session.broadcast("clientArrived")
        self.sourceMigration.sessionArrived(session)

    @property
    def migrated(self):
        """
        Whether the clients have left for a migration target (C{query-spice}'s
        C{migrated}): true from the end of a migration until the next
        L{migrate_connect}.
        """
        return self.sourceMigration.completed

    def migrationEnded(self):
        if self.migration is not None:
            self.migration.migrate_end_complete()
        self.emit("SPICE_MIGRATE_COMPLETED", {})

    # -- passwords ---------------------------------------------------------------

    def set_password(self, password, connected="keep"):
        """
        Set a new password, as QEMU's C{set_password} for SPICE: clients
        already connected are kept (C{"keep"}), disconnected
        (C{"disconnect"}), or the change is refused while any is connected
        (C{"fail"}).  The expiry is reset to never, as QEMU does.  An empty
        password is taken, as libspice-server takes it, and locks every new
        client out until a real password is set; it never authenticates.

        @raise PasswordError: C{"fail"} with clients connected, or a bad
            password or C{connected} value.
        """
        if connected not in ("keep", "disconnect", "fail"):
            raise PasswordError("connected must be keep, disconnect or fail, not %r"
                                % (connected,))
        try:
            Ticket.validate(password)
        except ValueError as e:
            raise PasswordError(str(e))
        if connected == "fail" and self.sessions:
            raise PasswordError("%d client(s) connected; use connected=keep or disconnect"
                                % len(self.sessions))
        self.ticket.disabled = False
        self.ticket.set(password)
        if self.ticket.has_password:
            self.log.info("password changed (connected clients: {connected})",
                          connected=connected)
        else:
            self.log.warn("password set to empty: no client can link until a password is "
                          "set (connected clients: {connected})", connected=connected)
        if connected == "disconnect":
            for session in list(self.sessions.values()):
                session.end()

    def expire_password(self, time):
        """
        Set when the password expires, as QEMU's C{expire_password}:
        C{"now"}, C{"never"}, C{"+N"} (N seconds from now) or C{"N"} (N
        seconds since the epoch).

        @raise PasswordError: an unreadable time.
        """
        time = str(time).strip()
        if time == "now":
            self.ticket.expire_in(-1)
        elif time == "never":
            self.ticket.expire_at(None)
        else:
            try:
                value = int(time[1:] if time.startswith("+") else time)
            except ValueError:
                raise PasswordError("expire time %r is not now, never, +SECONDS or a UNIX "
                                    "time" % (time,))
            if time.startswith("+"):
                self.ticket.expire_in(max(value, 0) or -1)
            else:
                self.ticket.expire_in(value - int(walltime.time()) or -1)
        self.log.info("password expiry set to {when}", when=time)

    # -- mouse, keyboard and time ------------------------------------------------

    @property
    def supportedMouseModes(self):
        return MouseMode.SERVER | (MouseMode.CLIENT if self.tablet is not None else 0)

    def requestMouseMode(self, mode):
        """
        A client asked for a mouse mode; switch if it is supported and not
        already current (only a change is told to every client, as
        libspice-server does).

        @return: whether the mode is supported.
        """
        if mode not in (MouseMode.SERVER, MouseMode.CLIENT) or not mode & self.supportedMouseModes:
            self.log.info("mouse mode {mode} requested but not supported", mode=mode)
            return False
        if mode != self.mouseMode:
            self._setMouseMode(MouseMode(mode))
        return True

    def _setMouseMode(self, mode):
        self.mouseMode = mode
        self.broadcast("mouseModeChanged", self.supportedMouseModes, self.mouseMode)

    def keyboardLedsMayHaveChanged(self):
        """
        Tell clients about lock LEDs the keyboard changed, as
        C{spice_server_kbd_leds}: after each key a client sends, and when
        the keyboard calls its C{leds_changed} (see L{IKeyboard}).
        """
        leds = self.keyboard.get_leds() if self.keyboard is not None else 0
        if leds != self._leds:
            self._leds = leds
            self.broadcast("ledsChanged")

    def videoEncoder(self):
        """
        What encodes video stream frames: the given one, else a thread pool
        on a real reactor, else (a test clock) encoding in place.
        """
        if self._videoEncoder is None:
            from twisted.internet.interfaces import IReactorThreads

            from spicesrv.display.video import SynchronousEncoder, sharedEncoder
            self._videoEncoder = (sharedEncoder(self.clock) if IReactorThreads.providedBy(self.clock)
                                  else SynchronousEncoder())
        return self._videoEncoder

    def _usableVideoCodecs(self, text):
        from spicesrv.display.codecs import parseVideoCodecs
        codecs = parseVideoCodecs("auto" if text is None else text)
        usable = []
        for codec in codecs:
            if codec.available():
                usable.append(codec)
            else:
                self.log.warn("video codec {codec} left out: this process cannot encode it "
                              "(PyAV with FFmpeg's encoder is needed)", codec=codec.name)
        if not usable:
            raise ValueError("none of the video codecs %r can be encoded here" % (text,))
        return usable

    def mmTime(self):
        """
        The multimedia clock in milliseconds, minus libspice's 400 ms
        delta, as a u32: monotonic (C{mm_clock}), whatever the wall clock
        does.
        """
        return (int(self._mmClock() * 1000) - MM_TIME_DELTA_MS) & 0xFFFFFFFF
