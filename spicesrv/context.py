"""
What a channel may know of the server: L{ChannelContext}.

A channel protocol sees two objects: its client's
L{spicesrv.session.ClientSession} (the session id, the main channel, the
migration state of that one client) and the server's L{ChannelContext},
which offers the rest: the clock, the devices, the mouse mode, the channels
on offer, the machine's name and the multimedia time.  Neither hands out the
L{spicesrv.server.SpiceServer}: a channel cannot reach the embedding API,
the other clients or the monitor, so what channels depend on is listed here
and nowhere else.
"""


class ChannelContext:
    """
    The server, as its channels see it.  One per server; every session
    refers to it as C{session.context} and every channel as C{self.context}.

    @ivar clock: the C{IReactorTime} every channel timer uses.
    """

    def __init__(self, server):
        self._server = server
        self.clock = server.clock

    @property
    def limits(self):
        """
        The server's L{spicesrv.limits.Limits}: deadlines, grace times and
        log rates that bound what one client costs.
        """
        return self._server.limits

    # -- the machine ---------------------------------------------------------

    @property
    def name(self):
        """
        The VM name sent to clients that support it, or L{None}.
        """
        return self._server.name

    @property
    def uuid(self):
        """
        The VM's L{uuid.UUID}, or L{None}.
        """
        return self._server.uuid

    def mmTime(self):
        """
        The multimedia clock in milliseconds (a u32), as sent in INIT and
        MULTI_MEDIA_TIME.
        """
        return self._server.mmTime()

    @property
    def streamingVideo(self):
        """
        Which areas become video streams: C{"off"}, C{"all"} or C{"filter"}
        (C{--streaming-video}, as QEMU's C{streaming-video}).
        """
        return self._server.streamingVideo

    @property
    def imageCompression(self):
        """
        QEMU's C{image-compression} value the server was given (see
        L{spicesrv.display.stills}).
        """
        return self._server.imageCompression

    @property
    def jpegWanCompression(self):
        """
        QEMU's C{jpeg-wan-compression}: C{"auto"}, C{"never"} or
        C{"always"}.
        """
        return self._server.jpegWanCompression

    @property
    def videoCodecs(self):
        """
        The server's video codecs (L{spicesrv.display.codecs.VideoCodec}s
        this process can encode), most preferred first
        (C{--video-codecs}, as QEMU's C{video-codecs}).
        """
        return self._server.videoCodecs

    def videoEncoder(self):
        """
        The encoder of video stream frames (shared by every display
        channel; see L{spicesrv.display.video}).
        """
        return self._server.videoEncoder()

    @property
    def tlsAvailable(self):
        """
        Whether clients could have linked over TLS (the inputs channel warns
        a client that sends keys in the clear).
        """
        return self._server.tlsAvailable

    @property
    def seamless(self):
        """
        Whether this server offers seamless migration.
        """
        return self._server.seamless

    def channelEntries(self):
        """
        Every channel the server offers (L{spicesrv.registry.ChannelEntry}),
        by type and id, for CHANNELS_LIST.
        """
        return self._server.registry.entries()

    # -- devices -------------------------------------------------------------

    @property
    def displays(self):
        """
        The display sources, in channel id order.
        """
        return self._server.displays

    @property
    def keyboard(self):
        """
        The L{spicesrv.interfaces.IKeyboard}, or L{None}.
        """
        return self._server.keyboard

    @property
    def mouse(self):
        """
        The L{spicesrv.interfaces.IMouse}, or L{None}.
        """
        return self._server.mouse

    @property
    def tablet(self):
        """
        The L{spicesrv.interfaces.ITablet}, or L{None}.
        """
        return self._server.tablet

    @property
    def agent(self):
        """
        The server's L{spicesrv.agent.AgentHub}, or L{None} without an
        L{spicesrv.interfaces.IAgent} device.
        """
        return self._server.agent

    def keyboardLedsMayHaveChanged(self):
        """
        Keys went to the keyboard: tell every client whose lock LEDs
        changed.
        """
        self._server.keyboardLedsMayHaveChanged()

    # -- the mouse mode ------------------------------------------------------

    @property
    def mouseMode(self):
        """
        The current L{spicesrv.wire.constants.MouseMode}.
        """
        return self._server.mouseMode

    @property
    def supportedMouseModes(self):
        """
        The mouse modes the devices allow, as a bit mask.
        """
        return self._server.supportedMouseModes

    def requestMouseMode(self, mode):
        """
        A client asked for C{mode}: a supported change is told to every
        client.

        @return: whether the mode is supported.
        """
        return self._server.requestMouseMode(mode)

    # -- migration (the source's side) -----------------------------------------

    def migrationAnswered(self, session, ok, seamless=False):
        """
        A client answered MIGRATE_BEGIN on its main channel: it connected
        to the target (C{ok}, C{seamless} for MIGRATE_CONNECTED_SEAMLESS) or
        could not.
        """
        self._server.sourceMigration.clientAnswered(session, ok, seamless=seamless)
