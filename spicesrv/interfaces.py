"""
The zope interfaces of spicesrv.

They model libspice-server's instance interfaces (``spice.h``): every device
an embedder hands to :meth:`spicesrv.server.SpiceServer.addInterface`
provides :class:`ISpiceBase` plus one of the device interfaces below.  As in
libspice, the server refuses a provider whose ``major_version`` differs from
the one it implements and accepts any ``minor_version``.

Each device interface carries its libspice type name and versions as tagged
values: ``IKeyboard.getTaggedValue("type")`` is ``"keyboard"``, and
``getTaggedValue("major_version")`` is what a provider's ``major_version``
must equal.  Interface methods never declare ``self``.
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
    """

    taggedValue("type", "keyboard")
    taggedValue("major_version", 1)
    taggedValue("minor_version", 1)

    def push_scan_freg(byte):
        """
        Receive one scancode byte.  An extended key arrives as two calls,
        C{0xE0} then the key byte; a release has bit C{0x80} set.

        @type byte: L{int} in 0..255
        """

    def get_leds():
        """
        Return the lock-key state as SPICE modifier flags: SCROLL_LOCK 1,
        NUM_LOCK 2, CAPS_LOCK 4.
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
        Move by (C{dx}, C{dy}); C{dz} is the wheel (-1 up, +1 down).
        C{buttons_state} is the SPICE button mask (LEFT 1, MIDDLE 2, RIGHT 4).
        """

    def buttons(buttons_state):
        """
        The button mask changed without motion.
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
        """

    def position(x, y, buttons_state):
        """
        The pointer is at (C{x}, C{y}) in surface coordinates.
        """

    def wheel(wheel_motion, buttons_state):
        """
        The wheel turned: -1 up, +1 down.
        """

    def buttons(buttons_state):
        """
        The button mask changed.
        """


class IDisplayObserver(Interface):
    """
    What a display channel registers with a display source to learn about
    changes.  A source calls these from the reactor thread.
    """

    def surface_changed(width, height):
        """
        The framebuffer has a new size; everything is damaged.
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

        @type cursor: L{spicesrv.display.cursor.Cursor} or L{None} for hidden
        """

    def cursor_moved(x, y):
        """
        The cursor moved to (C{x}, C{y}) (server mouse mode).
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
        Return the current frame as a C-contiguous numpy array of shape
        C{(height, width, 4)} and dtype uint8, bytes B, G, R, X per pixel,
        top row first.  Callers must not modify it.
        """

    def cursor():
        """
        Return the current L{spicesrv.display.cursor.Cursor}, or L{None} when
        no cursor is shown.
        """

    def cursor_position():
        """
        Return the cursor position C{(x, y)}.
        """

    def addObserver(observer):
        """
        Start telling an L{IDisplayObserver} about changes.
        """

    def removeObserver(observer):
        """
        Stop telling an L{IDisplayObserver} about changes.
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
        Return this device's state as bytes.
        """

    def set_migration_state(data):
        """
        Restore state previously returned by L{get_migration_state}.
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
        Every client has answered MIGRATE_BEGIN, or timed out.
        """

    def migrate_end_complete():
        """
        The clients have left the source after a completed migration, or the
        wait for them timed out.
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
        C{server.registry.register}) as C{values} (option name -> value)
        ask.  Return the devices it created that the server should know,
        such as L{IMigratableState} providers whose state moves with a
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
        Return a display source for C{--source NAME:ARGS} (C{args} is the
        text after the colon, or C{''}).  The source provides
        L{IDisplaySource}, and its C{devices()} method returns everything to
        register with the server (itself, and input devices if it has any).
        If it has C{start()} and C{stop()} methods they are called with the
        service.

        @raise ValueError: the arguments are wrong; the message is one line
            saying what to change.
        """
