"""
The zope interfaces of spicesrv.

Every interface is here and nothing else (the project's rule, as
C{twisted.internet.interfaces}), each method with its parameters
documented; that one contract in one place is why the module is longer
than the others.

They model libspice-server's instance interfaces (``spice.h``): every device
an embedder hands to :meth:`spicesrv.server.SpiceServer.addInterface`
provides :class:`ISpiceBase` plus one of the device interfaces below.  As in
libspice, the server refuses a provider whose ``major_version`` differs from
the one it implements and accepts any ``minor_version``.

Each device interface carries its libspice type name and versions as tagged
values: ``IKeyboard.getTaggedValue("type")`` is ``"keyboard"``, and
``getTaggedValue("major_version")`` is what a provider's ``major_version``
must equal.  Interface methods never declare ``self``; each says what its
parameters and result are, as ``twisted.internet.interfaces`` does.
``spicesrv.testing`` has a verified fake of every interface here.
"""

from zope.interface import Attribute, Interface, taggedValue


class ISpiceBase(Interface):
    """
    What every device provides, as libspice's ``SpiceBaseInterface``.
    """

    type = Attribute(
        "The interface type name, e.g. C{'keyboard'}: the C{type} tagged "
        "value of the device interface it provides.")
    description = Attribute("A short human-readable description.")
    major_version = Attribute(
        "The major version of the device interface this provider implements. "
        "A provider whose major version differs from the server's is refused.")
    minor_version = Attribute(
        "The minor version; any value is accepted.")


class IKeyboard(ISpiceBase):
    """
    A keyboard that receives PC/XT scancode set 1 bytes, as libspice's
    ``SpiceKbdInterface``.

    A keyboard whose lock LEDs can change by themselves (not only through
    the scancodes it receives: an X server's Caps Lock pressed on its own
    keyboard) has an attribute C{leds_changed}, L{None} at first.  When
    the keyboard is added, the server sets it to a callable taking no
    arguments; the keyboard calls it whenever its LEDs may have changed,
    and the server then reads L{get_leds} and tells clients of a change, as
    libspice's C{spice_server_kbd_leds} does.  The attribute is optional:
    without it, the LEDs are read after each key the clients send.
    """

    taggedValue("type", "keyboard")
    taggedValue("major_version", 1)
    taggedValue("minor_version", 1)

    def push_scan_freg(byte):
        """
        Receive one scancode byte.  An extended key arrives as two calls,
        C{0xE0} then the key byte; a release has bit C{0x80} set.

        @param byte: the scancode byte.
        @type byte: L{int} in 0..255
        """

    def get_leds():
        """
        The lock-key state, which the server sends to clients.

        @return: SPICE modifier flags: SCROLL_LOCK 1, NUM_LOCK 2, CAPS_LOCK 4.
        @rtype: L{int}
        """


class IMouse(ISpiceBase):
    """
    A relative pointing device (server mouse mode), as libspice's
    ``SpiceMouseInterface``.
    """

    taggedValue("type", "mouse")
    taggedValue("major_version", 1)
    taggedValue("minor_version", 1)

    def motion(dx, dy, dz, buttons_state):
        """
        The mouse moved or its wheel turned.

        @param dx: the horizontal motion in pixels, positive to the right.
        @type dx: L{int}
        @param dy: the vertical motion in pixels, positive downwards.
        @type dy: L{int}
        @param dz: the wheel: -1 up, +1 down, 0 none.
        @type dz: L{int}
        @param buttons_state: the buttons held, as the SPICE button mask
            (LEFT 1, MIDDLE 2, RIGHT 4).
        @type buttons_state: L{int}
        """

    def buttons(buttons_state):
        """
        The button mask changed without motion.

        @param buttons_state: the buttons held now (LEFT 1, MIDDLE 2,
            RIGHT 4).
        @type buttons_state: L{int}
        """


class ITablet(ISpiceBase):
    """
    An absolute pointing device (client mouse mode), as libspice's
    ``SpiceTabletInterface``.  Registering one makes client mouse mode
    available.
    """

    taggedValue("type", "tablet")
    taggedValue("major_version", 1)
    taggedValue("minor_version", 1)

    def set_logical_size(width, height):
        """
        The size of the display that positions refer to.

        @param width: its width in pixels.
        @type width: L{int}
        @param height: its height in pixels.
        @type height: L{int}
        """

    def position(x, y, buttons_state):
        """
        The pointer moved.

        @param x: its column, in surface coordinates.
        @type x: L{int}
        @param y: its row, in surface coordinates.
        @type y: L{int}
        @param buttons_state: the buttons held (LEFT 1, MIDDLE 2, RIGHT 4).
        @type buttons_state: L{int}
        """

    def wheel(wheel_motion, buttons_state):
        """
        The wheel turned.

        @param wheel_motion: -1 up, +1 down.
        @type wheel_motion: L{int}
        @param buttons_state: the buttons held (LEFT 1, MIDDLE 2, RIGHT 4).
        @type buttons_state: L{int}
        """

    def buttons(buttons_state):
        """
        The button mask changed.

        @param buttons_state: the buttons held now (LEFT 1, MIDDLE 2,
            RIGHT 4).
        @type buttons_state: L{int}
        """


class IDisplayObserver(Interface):
    """
    What a display channel registers with a display source to learn about
    changes.  A source calls these from the reactor thread.
    """

    def surface_changed(width, height):
        """
        The framebuffer has a new size; everything is damaged.

        @param width: the new width in pixels.
        @type width: L{int}
        @param height: the new height in pixels.
        @type height: L{int}
        """

    def damaged(rects):
        """
        These parts of the framebuffer changed.

        @param rects: a sequence of C{(left, top, right, bottom)} tuples,
            right and bottom exclusive.
        """

    def cursor_changed(cursor):
        """
        The cursor shape or visibility changed.

        @param cursor: the new cursor, or L{None} when it is hidden.
        @type cursor: L{spicesrv.display.cursor.Cursor} or L{None}
        """

    def cursor_moved(x, y):
        """
        The cursor moved (server mouse mode).

        @param x: its column, in surface coordinates.
        @type x: L{int}
        @param y: its row, in surface coordinates.
        @type y: L{int}
        """


class IDisplaySource(ISpiceBase):
    """
    A framebuffer that display and cursor channels show.  This is spicesrv's
    counterpart of libspice's QXL instance, at a higher level: the source
    keeps a 32-bit xRGB framebuffer and says what changed; the channels
    decide what to send and how to encode it.
    """

    taggedValue("type", "display")
    taggedValue("major_version", 1)
    taggedValue("minor_version", 0)

    width = Attribute("Width of the framebuffer in pixels.")
    height = Attribute("Height of the framebuffer in pixels.")

    def framebuffer():
        """
        The current frame.  Callers must not modify it.

        @return: a C-contiguous numpy array of shape C{(height, width, 4)}
            and dtype uint8, bytes B, G, R, X per pixel, top row first.
        @rtype: L{numpy.ndarray}
        """

    def cursor():
        """
        The current cursor shape.

        @return: the cursor, or L{None} when no cursor is shown.
        @rtype: L{spicesrv.display.cursor.Cursor} or L{None}
        """

    def cursor_position():
        """
        The cursor position.

        @return: C{(x, y)} in surface coordinates.
        @rtype: L{tuple} of two L{int}s
        """

    def addObserver(observer):
        """
        Start telling an observer about changes.

        @param observer: the observer.
        @type observer: L{IDisplayObserver}
        """

    def removeObserver(observer):
        """
        Stop telling an observer about changes.

        @param observer: an observer given to L{addObserver}.
        @type observer: L{IDisplayObserver}
        @raise ValueError: it was not added.
        """


class IMonitorLayout(Interface):
    """
    A display source whose surface shows several monitors, or one that
    does not cover it all (an X screen's RandR CRTCs): clients that take
    the display channel's MONITORS_CONFIG (C{SPICE_DISPLAY_CAP_MONITORS_CONFIG})
    are told where each monitor is after every surface creation, as a QXL
    guest's monitors configuration is (spice-gtk's C{monitors} property of
    the display channel).

    When the layout changes while the surface keeps its size, the source
    calls C{monitors_changed()} (no arguments) on those of its observers
    that have that method; the display channel does.
    """

    def monitors():
        """
        The monitors, in the order clients should number them.

        @return: a non-empty list of C{(x, y, width, height)}, each within
            the surface.
        @rtype: L{list} of L{tuple}s of four L{int}s
        """


class ISource(Interface):
    """
    What C{--source} makes (L{ISourcePlugin.makeSource}): a display source
    with the devices that come with it, started and stopped with the
    server's service.  L{spicesrv.sources.base.FramebufferSource} provides
    it, with a C{start} and C{stop} that do nothing.
    """

    def devices():
        """
        Everything to register with the server.

        @return: the device providers to hand to
            L{spicesrv.server.SpiceServer.addInterface}: the
            L{IDisplaySource} (often this object) and the input devices
            (L{IKeyboard}, L{IMouse}, L{ITablet}) it has, if any.
        @rtype: a sequence
        """

    def start():
        """
        The server's service starts: start timers, open files or sockets.
        No parameters, no result.
        """

    def stop():
        """
        The server's service stops: stop what L{start} started.  No
        parameters, no result.
        """


class IAgent(ISpiceBase):
    """
    What spicesrv, speaking the guest agent's protocol itself (the main
    channel's agent channel), asks a device for: the client's monitor
    configuration and the clipboard, as libspice-server relays them to a
    guest's spice-vdagent.  Registering one tells clients that an agent is
    connected.

    Clipboards are named by L{spicesrv.wire.vdagent.Selection}
    (C{CLIPBOARD} 0, C{PRIMARY} 1, C{SECONDARY} 2) and their contents by
    L{spicesrv.wire.vdagent.ClipboardType} (C{UTF8_TEXT} 1, C{IMAGE_PNG} 2,
    ...).  Data is always C{bytes}: UTF-8 text, or the image file's bytes.
    """

    taggedValue("type", "agent")
    taggedValue("major_version", 1)
    taggedValue("minor_version", 0)

    def agent_attached(clients):
        """
        The server registered this device: C{clients} is the
        L{IAgentClients} through which it offers its own clipboard and asks
        for the clients'.  Called once, from C{addInterface}.
        """

    def monitors_config(monitors):
        """
        A client's window changed size (or went full screen): the sizes it
        would like, one entry per display channel in channel id order.

        @param monitors: a list of L{spicesrv.agent.Monitor} (C{width},
            C{height}, C{x}, C{y}), or L{None} for a display the client
            turned off.
        """

    def clipboard_grab(selection, types):
        """
        A client copied something: from now on it owns C{selection} and
        offers its contents in these types (a list of ints, unknown ones
        included).  Whatever this device offered on C{selection} is gone.
        """

    def clipboard_release(selection):
        """
        The client that owned C{selection} offers nothing any more.
        """

    def clipboard_request(selection, type):
        """
        A client pastes from C{selection}, which this device owns (see
        L{IAgentClients.clipboard_grab}), in C{type}.

        @return: the data as C{bytes}, a L{Deferred} firing with it, or
            L{None} (also from the Deferred) if it cannot be given in that
            type; the client then gets an empty answer.
        """


class IAgentClients(Interface):
    """
    The clients, as an L{IAgent} device sees them: given to it by
    L{IAgent.agent_attached}.
    """

    def clipboard_grab(selection, types):
        """
        The device copied something: it owns C{selection} and offers it in
        C{types} (a sequence of L{spicesrv.wire.vdagent.ClipboardType}).
        Every client with a running agent hears it now; clients that start
        their agent later hear it then.  The data is asked for when a client
        pastes (L{IAgent.clipboard_request}).
        """

    def clipboard_release(selection):
        """
        The device no longer offers anything on C{selection}.
        """

    def clipboard_owner(selection):
        """
        The types a client offers on C{selection} (a list of ints), or
        L{None} if no client owns it.
        """

    def clipboard_request(selection, type):
        """
        Ask the client that owns C{selection} for its contents in C{type}.

        @return: a L{Deferred} firing with the C{bytes}, or failing with
            L{spicesrv.agent.ClipboardUnavailable} if no client owns the
            selection, the client has nothing in that type, it went away,
            or it did not answer in time.
        """


class IMigratableState(Interface):
    """
    A device whose state moves to the target server when a client migrates.
    """

    migration_key = Attribute(
        "A stable name for this device's state, the same on source and "
        "target, e.g. C{'display.demo'}.")

    def get_migration_state():
        """
        This device's state, to restore on the target.

        @rtype: L{bytes}
        """

    def set_migration_state(data):
        """
        Restore the state another server's device of the same
        C{migration_key} returned.

        @param data: what L{get_migration_state} returned.
        @type data: L{bytes}
        @raise ValueError: for state this device refuses (damaged, foreign,
            beyond its limits), leaving the device as it was.  The target
            then gives the devices that already took their state their own
            back (from L{get_migration_state}) and waits for another
            migration.
        """


class IMigration(ISpiceBase):
    """
    The embedder's migration callbacks, as libspice's
    ``SpiceMigrateInterface`` (``spice-migration.h``).
    """

    taggedValue("type", "migration")
    taggedValue("major_version", 1)
    taggedValue("minor_version", 1)

    def migrate_connect_complete():
        """
        Every client has answered MIGRATE_BEGIN, or timed out.  No
        parameters, no result.
        """

    def migrate_end_complete():
        """
        The clients have left the source after a completed migration, or the
        wait for them timed out.  No parameters, no result.
        """


class IPlaybackObserver(Interface):
    """
    What a playback channel registers with an L{IPlaybackSource} to hear its
    sound.  A source calls these from the reactor thread.
    """

    def playback_started():
        """
        The source starts playing (libspice's C{spice_server_playback_start}):
        frames follow.
        """

    def playback_stopped():
        """
        The source stopped playing (C{spice_server_playback_stop}).
        """

    def playback_frame(frame):
        """
        The next 10 ms of sound.

        @param frame: a L{spicesrv.sound.pcm.AudioFrame}: C{pcm} holds
            L{spicesrv.wire.sound.FRAME_SAMPLES} samples per channel of
            48 kHz stereo S16 LE interleaved audio, C{opus()} the same
            encoded once for every client that takes Opus.
        """

    def volume_changed(volume):
        """
        The source's volume changed (C{spice_server_playback_set_volume}).

        @param volume: one level per channel, 0 (silent) to 65535 (full).
        @type volume: L{tuple} of L{int}
        """

    def mute_changed(mute):
        """
        The source was muted or unmuted.

        @type mute: L{bool}
        """


class IPlaybackSource(ISpiceBase):
    """
    Sound for the clients to play, as libspice's ``SpicePlaybackInterface``:
    registering one offers the playback channel (type 5).  The source pushes
    10 ms frames of 48 kHz stereo S16 audio to its observers; what a client
    cannot take in time is dropped, never queued.
    L{spicesrv.sound.device.PlaybackDevice} provides it.
    """

    taggedValue("type", "playback")
    taggedValue("major_version", 1)
    taggedValue("minor_version", 0)

    active = Attribute("Whether the source is playing now (frames are coming).")
    volume = Attribute(
        "The volume as one level per channel (0..65535), or L{None} if the "
        "source has none to tell.")
    mute = Attribute("Whether the source is muted (a L{bool}).")

    def addObserver(observer):
        """
        Start telling an L{IPlaybackObserver} about the sound.  A source may
        produce frames only while it has observers.
        """

    def removeObserver(observer):
        """
        Stop telling an observer given to L{addObserver}.

        @raise ValueError: it was not added.
        """


class IRecordObserver(Interface):
    """
    What a record channel registers with an L{IRecordSink}.
    """

    def record_started():
        """
        The sink wants sound (C{spice_server_record_start}): the channel asks
        its client to record.
        """

    def record_stopped():
        """
        The sink wants no more sound (C{spice_server_record_stop}).
        """

    def volume_changed(volume):
        """
        The sink's volume changed; C{volume} has one level (0..65535) per
        channel.
        """

    def mute_changed(mute):
        """
        The sink was muted or unmuted (a L{bool}).
        """


class IRecordSink(ISpiceBase):
    """
    Where a client's microphone goes, as libspice's ``SpiceRecordInterface``:
    registering one offers the record channel (type 6).
    L{spicesrv.sound.device.RecordDevice} provides it.
    """

    taggedValue("type", "record")
    taggedValue("major_version", 1)
    taggedValue("minor_version", 1)

    active = Attribute("Whether the sink wants sound now.")
    volume = Attribute("One level per channel (0..65535), or L{None}.")
    mute = Attribute("Whether the sink is muted (a L{bool}).")

    def addObserver(observer):
        """
        Start telling an L{IRecordObserver} when sound is wanted.
        """

    def removeObserver(observer):
        """
        Stop telling an observer given to L{addObserver}.

        @raise ValueError: it was not added.
        """

    def record_data(pcm):
        """
        Sound from a client: 48 kHz stereo S16 LE interleaved samples (a
        whole number of them), already decoded.  Must not block.

        @type pcm: L{bytes}
        """

    def recording_started(session_id):
        """
        A client's recording begins: the record channel of session
        C{session_id} is about to give its first L{record_data} since it
        was asked to record.  A sink may keep each recording apart (the
        C{file} sink writes one file per client with C{{session}}).
        Minor version 1; the record channel calls it only when the sink has
        it.

        @return: a key for L{recording_stopped}.
        """

    def recording_stopped(key):
        """
        The recording C{key} (from L{recording_started}) ended: the sink
        stopped wanting sound, or the client's record channel closed or was
        replaced.  What the sink keeps of it is complete now.  A key that
        is not the current recording's is ignored.
        """


class ISoundPlugin(Interface):
    """
    A plugin that provides sound sources for ``--playback NAME[:ARGS]``
    and sinks for ``--record NAME[:ARGS]``, found like L{ISourcePlugin}.
    """

    name = Attribute("The name used with C{--playback} / C{--record}, e.g. C{'tone'}.")
    description = Attribute("One line of help, including the form of ARGS.")
    options = Attribute("A sequence of L{IPluginOption} providers.")

    def makePlayback(args, values, reactor):
        """
        Make the sound source for C{--playback NAME:ARGS}.

        @param args: the text after the colon, or C{''}.
        @param values: option name -> value, for this plugin's options.
        @param reactor: the reactor the server runs on.
        @return: an L{IPlaybackSource} provider.
        @raise ValueError: the arguments are wrong, or this plugin has no
            playback; the message is one line saying what to change.
        """

    def makeRecord(args, values, reactor):
        """
        Make the sink for C{--record NAME:ARGS}, as L{makePlayback}.

        @return: an L{IRecordSink} provider.
        """


class IPluginOption(Interface):
    """
    A command-line option a plugin adds to ``twistd spice``.
    """

    name = Attribute("The long option name, without dashes, e.g. C{'spiceport'}.")
    help = Attribute("One line of help text.")
    repeatable = Attribute(
        "Whether the option may be given more than once; its value is then a "
        "list of strings, otherwise a string or C{default}.")
    default = Attribute("The value when the option is not given.")
    flag = Attribute(
        "Optional (false when absent): the option takes no value; its value "
        "is C{True} when given, C{False} otherwise.")


class IChannelPlugin(Interface):
    """
    A plugin that adds channels to a server, found with
    L{twisted.plugin.getPlugins} in the C{spicesrv.plugins} package (which
    other distributions extend: drop a module into a C{spicesrv/plugins/}
    folder of your own on C{sys.path}).  Like every Twisted plugin, the
    object also provides L{twisted.plugin.IPlugin}.
    """

    name = Attribute("A short name, e.g. C{'port'}.")
    description = Attribute("One line saying what the channel is for.")
    channel_type = Attribute("The SPICE channel type number it serves.")
    options = Attribute("A sequence of L{IPluginOption} providers.")

    def install(server, values, reactor):
        """
        Register this plugin's channels on C{server} (through
        C{server.registry.register}) as the option values ask.

        @param server: the server being built.
        @type server: L{spicesrv.server.SpiceServer}
        @param values: option name -> value, for this plugin's options.
        @type values: L{dict}
        @param reactor: the reactor the server runs on.
        @return: the devices it created that the server should know, such as
            L{IMigratableState} providers whose state moves with a
            migration; an empty list if none.
        @raise ValueError: an option value is wrong; the message is one line
            saying what to change.
        """


class ISourcePlugin(Interface):
    """
    A plugin that provides display sources for ``--source NAME[:ARGS]``,
    found like L{IChannelPlugin}.
    """

    name = Attribute("The name used with C{--source}, e.g. C{'image'}.")
    description = Attribute("One line of help, including the form of ARGS.")
    options = Attribute("A sequence of L{IPluginOption} providers.")

    def makeSource(args, values, reactor):
        """
        Make the display source for C{--source NAME:ARGS}.

        @param args: the text after the colon, or C{''}.
        @type args: L{str}
        @param values: option name -> value, for this plugin's options.
        @type values: L{dict}
        @param reactor: the reactor the server runs on (for timers).
        @return: an L{ISource} provider (which usually is the
            L{IDisplaySource} itself).
        @raise ValueError: the arguments are wrong; the message is one line
            saying what to change.
        """


class IMonitorBackend(Interface):
    """
    What the QMP monitor drives: one object that answers the SPICE and
    migration commands.

    Every method may return its result directly or as a Deferred.  A
    refusal is a L{ValueError} (raised or as the Deferred's failure) whose
    message becomes the command's C{GenericError} description, so it must
    be one line for an operator and never contain a password.
    """

    def query_spice():
        """
        The C{SpiceInfo} of QEMU's C{query-spice}, as a dict: C{enabled},
        C{migrated}, C{host}, C{port}, C{tls-port}, C{auth} (C{"spice"} or
        C{"none"}), C{compiled-version}, C{mouse-mode} (C{"client"},
        C{"server"} or C{"unknown"}) and C{channels}, a list of
        C{SpiceChannel} dicts (C{host}, C{port} as strings, C{family},
        C{connection-id}, C{channel-type}, C{channel-id}, C{tls}).  Members
        QEMU leaves out when unset (a port of 0) are left out.

        @rtype: L{dict}, or a Deferred of one
        """

    def client_migrate_info(hostname, port, tls_port, cert_subject):
        """
        Tell connected clients where they will migrate, as
        C{spice_server_migrate_connect}.  Returns (or fires) once the server
        has accepted the target, without waiting for the clients' answers,
        as QEMU does.

        @param hostname: the target's host name or address.
        @type hostname: L{str}
        @param port: its plain SPICE port, or L{None}.
        @type port: L{int} or L{None}
        @param tls_port: its TLS port, or L{None} (one of the two is given).
        @type tls_port: L{int} or L{None}
        @param cert_subject: the subject its certificate must have, or
            L{None} to check the host name.
        @type cert_subject: L{str} or L{None}
        @raise ValueError: the server refuses the target.
        """

    def check_target(hostname, tls_port, cert_subject):
        """
        Check, before C{client_migrate_info} is passed on, that the target's
        TLS port presents the identity clients will verify.

        @param hostname: the target's host name or address.
        @type hostname: L{str}
        @param tls_port: its TLS port.
        @type tls_port: L{int}
        @param cert_subject: the subject clients will expect, or L{None}
            (then they check C{hostname}).
        @type cert_subject: L{str} or L{None}
        @return: a Deferred firing with C{(ok, reason)}, C{reason} a
            sentence; or L{None} when this backend cannot check (then the
            command goes ahead unchecked).
        """

    def migrate(uri):
        """
        Start migrating; returns once it has started (progress is reported
        by C{query_migrate} and C{MIGRATION} events).

        @param uri: QEMU's migration URI (C{tcp:HOST:PORT}, C{unix:PATH},
            C{tls:HOST:PORT}).
        @type uri: L{str}
        @raise ValueError: a bad URI, or a migration is running already.
        """

    def migrate_cancel():
        """
        Cancel the running migration; nothing happens if none is running.
        No parameters; the result is ignored.
        """

    def query_migrate():
        """
        QEMU's C{MigrationInfo} as a dict: C{status} (C{"setup"},
        C{"active"}, C{"completed"}, C{"failed"}, C{"cancelled"}, ...; left
        out, or C{"none"}, before the first migration) and, on failure,
        C{error-desc}.

        @rtype: L{dict}, or a Deferred of one
        """

    def set_password(password, connected):
        """
        Set the SPICE password.

        @param password: the new password.
        @type password: L{str}
        @param connected: what happens to, or because of, connected clients:
            C{"keep"}, C{"disconnect"} or C{"fail"}.
        @type connected: L{str}
        @raise ValueError: the password cannot be set (too long, or
            C{"fail"} with clients connected).
        """

    def expire_password(time):
        """
        Set when the password expires.

        @param time: C{"now"}, C{"never"}, C{"+N"} (in N seconds) or C{"N"}
            (at UNIX time N).
        @type time: L{str}
        @raise ValueError: a time in another form.
        """

    def addEventObserver(observer):
        """
        Report events to QMP clients from now on.

        @param observer: called as C{observer(name, data)} for every event
            (C{SPICE_CONNECTED}, C{SPICE_INITIALIZED}, C{SPICE_DISCONNECTED},
            C{SPICE_MIGRATE_COMPLETED}, C{MIGRATION}, ...), C{data} being
            the event's QEMU-shaped dict or L{None}.
        """
