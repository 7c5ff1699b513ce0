"""
One connected client: its session id, its main channel and the other
channels it linked, and, for a client migrating in, its
L{spicesrv.migration.arrival.Arrival}.
"""

from twisted.logger import Logger

from spicesrv.migration.arrival import Arrival
from spicesrv.wire.constants import ChannelType


class ClientSession:
    """
    A client, from its main channel link to the loss of that channel.

    Losing the main channel ends the session and closes every other channel
    of the client, as in libspice-server.

    Channels see their session and, through it, the server's
    L{spicesrv.context.ChannelContext} (C{session.context}); the session
    itself talks to the server only to report channels and its end.

    @param server: the L{spicesrv.server.SpiceServer}.
    @param migratingIn: the client arrives from another server; its
        L{arrival} follows it until it has switched here.
    @ivar arrival: the L{Arrival} of a client that migrated in (kept once it
        has arrived), or L{None}.
    @ivar playbackDelay: how far ahead of the multimedia clock (ms) this
        client's video frames are stamped: the largest of its display
        streams' delays, 0 while none plays (see L{videoDelay}).
    """

    log = Logger()

    def __init__(self, server, session_id, peer, migratingIn=False):
        self._server = server
        self.context = server.context
        self.id = session_id
        self.peer = peer
        self.main = None
        self.channels = {}
        self.ended = False
        self.arrival = None
        self.playbackDelay = 0
        self._videoDelays = {}
        if migratingIn:
            self.arrival = Arrival(self, server, server.migrationArrivalTimeout)

    def __repr__(self):
        return "<ClientSession %d from %s>" % (self.id, self.peer)

    @property
    def arriving(self):
        """
        Whether the client is migrating in and has not switched here yet: the
        main channel stays silent until it has.
        """
        return self.arrival is not None and self.arrival.inProgress

    @property
    def restoringSeamlessly(self):
        """
        Whether a channel starting now waits for its seamless migration data
        (and skips the messages the client kept from the source).
        """
        return self.arrival is not None and self.arrival.restoring

    def videoDelay(self, who, milliseconds):
        """
        C{who} (a display channel's stream manager) now stamps its video
        frames C{milliseconds} ahead of the multimedia clock, 0 once it has
        no stream.  When the session's L{playbackDelay}, the largest of
        these, changes, its channels hear it as C{playbackLatency(ms)}: the
        playback channel stamps its sound with the same delay and asks the
        client to keep that much buffered (LATENCY), so that a picture and
        the sound made with it are due at the same moment (libspice's
        C{reds_set_client_mm_time_latency}).
        """
        milliseconds = max(0, int(milliseconds))
        if milliseconds:
            self._videoDelays[who] = milliseconds
        else:
            self._videoDelays.pop(who, None)
        delay = max(self._videoDelays.values(), default=0)
        if delay != self.playbackDelay:
            self.playbackDelay = delay
            self.broadcast("playbackLatency", delay)

    def add(self, channel):
        key = (channel.channelType, channel.channelId)
        old = self.channels.get(key)
        if old is not None:
            old.close("replaced by a new link of the same channel")
        self.channels[key] = channel
        if channel.channelType == ChannelType.MAIN:
            self.main = channel

    def channelLost(self, channel):
        """
        A channel's connection closed; losing main ends the session.
        """
        key = (channel.channelType, channel.channelId)
        if self.channels.get(key) is channel:
            del self.channels[key]
        if channel is self.main:
            self.end()
        self._server.channelClosed(channel)

    def channelRestored(self, channel):
        """
        A channel got its seamless migration data.
        """
        if self.arrival is not None:
            self.arrival.channelRestored()

    def end(self):
        """
        Close every channel and forget the session.
        """
        if self.ended:
            return
        self.ended = True
        if self.arrival is not None:
            self.arrival.abandon()
        # Abort rather than close: a channel whose socket is full has paused
        # its producer, and a polite close would wait for it forever.
        for channel in list(self.channels.values()):
            channel.transport.abortConnection()
        self._server.sessionEnded(self)
        self.log.info("session {session} from {peer} ended", session=self.id, peer=self.peer)

    def broadcast(self, method, *args):
        """
        Call C{method} on every channel of this session that has it.
        """
        for channel in list(self.channels.values()):
            handler = getattr(channel, method, None)
            if handler is not None:
                handler(*args)
