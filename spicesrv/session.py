"""
One connected client: its session id, its main channel and the other
channels it linked.
"""

from twisted.logger import Logger

from spicesrv.wire.constants import ChannelType


class ClientSession:
    """
    A client, from its main channel link to the loss of that channel.

    Losing the main channel ends the session and closes every other channel
    of the client, as in libspice-server.
    """

    log = Logger()

    def __init__(self, server, session_id, peer, migratingIn=False):
        self.server = server
        self.id = session_id
        self.peer = peer
        self.main = None
        self.channels = {}
        self.ended = False
        self.migratingIn = migratingIn
        self.seamlessIn = False
        self.pendingBegin = False
        self.parked = []
        self._arrivalTimer = None
        if migratingIn:
            self._arrivalTimer = server.clock.callLater(server.migrationArrivalTimeout,
                                                        self._arrivalTimedOut)

    def __repr__(self):
        return "<ClientSession %d from %s>" % (self.id, self.peer)

    def add(self, channel):
        key = (channel.channelType, channel.channelId)
        old = self.channels.get(key)
        if old is not None:
            old.close("replaced by a new link of the same channel")
        self.channels[key] = channel
        if channel.channelType == ChannelType.MAIN:
            self.main = channel

    def channelLost(self, channel):
        key = (channel.channelType, channel.channelId)
        if self.channels.get(key) is channel:
            del self.channels[key]
        if channel is self.main:
            self.end()

    # -- migrating in (the target's side) -------------------------------------

    def park(self, link, entry):
        """
        Hold a channel link of a client that is migrating in: the link
        result has been sent, but the channel starts only when the client
        has switched (its MIGRATE_END).
        """
        self.parked.append((link, entry))
        link.parkedIn = self

    def unpark(self, link):
        self.parked = [(l, e) for l, e in self.parked if l is not link]

    def arrived(self):
        """
        The client switched to this server (MIGRATE_END on main): start
        every parked channel as a fresh one.
        """
        self.migratingIn = False
        self._stopArrivalTimer()
        self._startParked()

    def acceptSeamless(self):
        """
        The target accepted a seamless migration (DST_DO_SEAMLESS): parked
        channels start now, waiting for their migration data, and later
        links start at once.
        """
        self.seamlessIn = True
        self._startParked()

    def _startParked(self):
        """
        Start every parked link as a channel, dropping those whose channel
        the server no longer offers.
        """
        parked, self.parked = self.parked, []
        for link, entry in parked:
            if self.server.registry.lookup(entry.channel_type, entry.channel_id) is None:
                self.log.warn("session {session}: channel {type}:{id} is gone; dropping it",
                              session=self.id, type=entry.channel_type, id=entry.channel_id)
                link.transport.loseConnection()
                continue
            self.server.startChannel(self, link, entry)

    def _stopArrivalTimer(self):
        if self._arrivalTimer is not None and self._arrivalTimer.active():
            self._arrivalTimer.cancel()
        self._arrivalTimer = None

    def channelRestored(self, channel):
        """
        A channel got its migration data; once all have, the client is here.
        """
        waiting = [c for c in self.channels.values() if c.awaitingMigrationData]
        if not waiting and self.seamlessIn:
            self.seamlessIn = False
            self.migratingIn = False
            self._stopArrivalTimer()
            self.log.info("session {session}: client switched here seamlessly",
                          session=self.id)
            # The first message on the new main, as libspice's target sends
            # after the migration data: until something arrives there,
            # spice-gtk keeps its old main connection to the source open.
            if self.main is not None:
                self.main.sendMultiMediaTime()
            self.server.sessionArrived(self)

    def _arrivalTimedOut(self):
        self._arrivalTimer = None
        self.log.warn("session {session}: the migrating client never switched here "
                      "(no MIGRATE_END within {t} s); dropping it", session=self.id,
                      t=self.server.migrationArrivalTimeout)
        self.end()

    def end(self):
        """
        Close every channel and forget the session.
        """
        if self.ended:
            return
        self.ended = True
        self._stopArrivalTimer()
        # Abort rather than close: a channel whose socket is full has paused
        # its producer, and a polite close would wait for it forever.
        for link, _ in self.parked:
            link.transport.abortConnection()
        self.parked = []
        for channel in list(self.channels.values()):
            channel.transport.abortConnection()
        self.server.sessionEnded(self)
        self.log.info("session {session} from {peer} ended", session=self.id, peer=self.peer)

    def broadcast(self, method, *args):
        """
        Call C{method} on every channel of this session that has it.
        """
        for channel in list(self.channels.values()):
            handler = getattr(channel, method, None)
            if handler is not None:
                handler(*args)
