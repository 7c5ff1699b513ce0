"""
The target server's side of a client migration: one client arriving from
the source server (protocol.md 5.4 and 5.7), from its main link to the
moment it works here, in one state machine, L{Arrival}.

How a client arrives, step by step:

 1. The client links its main channel here with the session id the source
    gave it (a non-zero connection id).  The server makes a session with
    that id and an L{Arrival} in state L{WAITING}; the arrival timer starts
    (libspice-server has none; a client that never switches would be held
    forever).  The main channel stays silent: no INIT, NAME or UUID, and it
    ignores ATTACH_CHANNELS (the client reads nothing here yet).
 2. The client links its other channels with the same id.  Each gets the
    link result OK and is parked (L{PARKED}): no channel protocol runs and
    nothing is read or written on it (the link closes a parked connection
    that sends more than L{spicesrv.link.MAX_PARKED_BYTES}).
 3. Semi-seamless: the source sends the client MIGRATE_END, and the client
    sends MIGRATE_END on this main channel (L{Arrival.clientSwitched}).  The
    client has arrived (L{ARRIVED}): main sends INIT with the same session
    id, and every parked link starts as a fresh channel (display waits for
    its INIT, inputs sends INPUTS_INIT, ...).
 4. Seamless instead: before its other links the client asks with
    DST_DO_SEAMLESS (L{Arrival.seamlessRequested}).  If accepted
    (L{SEAMLESS_RESTORE}), the parked links and every later one start at
    once, waiting for their channel's migration data
    (L{spicesrv.migration.seamless}); when the last one has its data
    (L{Arrival.channelRestored}) the client has arrived, and main sends
    MULTI_MEDIA_TIME (no INIT: the session simply continues).  If refused,
    the client goes on semi-seamlessly (step 3).
 5. If the source asked this server to migrate the client on meanwhile, the
    deferred MIGRATE_BEGIN goes out once it has arrived (libspice's T5; the
    server passes the news to L{spicesrv.migration.source.SourceMigration}).

It can also end badly: the timer fires first (L{TIMED_OUT}) and the session
is dropped, or the session ends before the client switched (its main
connection closed, or the source's connect phase timed out), which is
L{ABANDONED}.  Either way the parked links are aborted.

The session, the main channel, the link and the server ask the arrival
instead of keeping flags of their own: C{session.arriving} (main stays
silent, links are accepted), L{Arrival.parksLinks} (the server parks a
new link instead of starting it), L{Arrival.restoring} (a new channel
waits for its migration data).
"""

from twisted.logger import Logger

from spicesrv.migration.source import MIGRATION_PROTOCOL_VERSION
from spicesrv.wire.constants import MainCap

#: The main channel is linked; no other link is parked (yet, or any more).
WAITING = "waiting"
#: Channel links are parked until the client switches here.
PARKED = "parked"
#: Seamless migration accepted: channels run and wait for their migration
#: data.
SEAMLESS_RESTORE = "seamless-restore"
#: The client works here.
ARRIVED = "arrived"
#: The client did not switch here in time; its session was dropped.
TIMED_OUT = "timed-out"
#: The session ended before the client switched here.
ABANDONED = "abandoned"

#: States in which the client is still on its way.
IN_PROGRESS = frozenset([WAITING, PARKED, SEAMLESS_RESTORE])


class Arrival:
    """
    One client migrating in to this server.

    @param session: the L{spicesrv.session.ClientSession} it arrives in.
    @param server: the L{spicesrv.server.SpiceServer}: its clock, registry,
        C{seamless}, C{sessions}, C{newChannel()} and C{sessionArrived()}.
    @param timeout: seconds the client has to switch here.

    @ivar state: one of L{WAITING}, L{PARKED}, L{SEAMLESS_RESTORE},
        L{ARRIVED}, L{TIMED_OUT}, L{ABANDONED}.
    @ivar parked: C{[(link, entry)]}, the parked links and their
        L{spicesrv.registry.ChannelEntry}.
    """

    log = Logger()

    def __init__(self, session, server, timeout):
        self.session = session
        self._server = server
        self.timeout = timeout
        self.state = WAITING
        self.parked = []
        self._timer = server.clock.callLater(timeout, self._timedOut)

    def __repr__(self):
        return "<Arrival of session %d: %s>" % (self.session.id, self.state)

    @property
    def inProgress(self):
        """
        Whether the client is still on its way (the main channel stays
        silent).
        """
        return self.state in IN_PROGRESS

    @property
    def parksLinks(self):
        """
        Whether a new channel link of this client is parked rather than
        started.
        """
        return self.state in (WAITING, PARKED)

    @property
    def restoring(self):
        """
        Whether a new channel of this client waits for its migration data.
        """
        return self.state == SEAMLESS_RESTORE

    # -- links ---------------------------------------------------------------

    def park(self, link, entry):
        """
        Hold a channel link, whose link result OK has been sent, until the
        client switches here (step 2).
        """
        self.parked.append((link, entry))
        self.state = PARKED
        info = link.info
        self.log.info("session {session}: {channel} channel {id} linked from {peer}; "
                      "parked until the client switches here", session=self.session.id,
                      channel=info.channel_name, id=info.channel_id, peer=info.peer)

    def unpark(self, link):
        """
        A parked link closed.
        """
        self.parked = [(l, e) for l, e in self.parked if l is not link]
        if not self.parked and self.state == PARKED:
            self.state = WAITING

    def _startParked(self):
        """
        Start every parked link as a channel, dropping those whose channel
        the server no longer offers.
        """
        parked, self.parked = self.parked, []
        for link, entry in parked:
            if self._server.registry.lookup(entry.channel_type, entry.channel_id) is None:
                self.log.warn("session {session}: channel {type}:{id} is gone; dropping it",
                              session=self.session.id, type=entry.channel_type,
                              id=entry.channel_id)
                link.transport.loseConnection()
                continue
            link.runChannel(self._server.newChannel(self.session, link.info, entry))

    # -- semi-seamless: the client's MIGRATE_END ---------------------------------

    def clientSwitched(self, main):
        """
        The client sent MIGRATE_END on C{main} (step 3): accepted only while
        it is migrating in semi-seamlessly, and from a client with the
        semi-seamless capability; otherwise logged and ignored.
        """
        if not self.parksLinks:
            self.log.warn("{session} main: MIGRATE_END from a client that is not "
                          "migrating in; ignored", session=self.session.id)
            return
        if MainCap.SEMI_SEAMLESS_MIGRATE not in main.info.channel_caps:
            self.log.warn("{session} main: MIGRATE_END from a client without the "
                          "semi-seamless capability; ignored", session=self.session.id)
            return
        self._arrived()
        main.welcomeMigrated()
        self._startParked()
        self.log.info("session {session}: client switched here from the migration source",
                      session=self.session.id)
        self._server.sessionArrived(self.session)

    # -- seamless: DST_DO_SEAMLESS, then each channel's data ---------------------

    def seamlessRequested(self, main, srcVersion):
        """
        The client asked for a seamless migration on C{main} (step 4): ACK
        and start the parked channels waiting for their data, or NACK and the
        client goes on semi-seamlessly.
        """
        why = self.seamlessRefusal(srcVersion)
        if why is not None:
            self.log.info("{session} main: seamless migration refused ({why}); the client "
                          "goes on semi-seamlessly", session=self.session.id, why=why)
            main.answerSeamless(False)
            return
        self.state = SEAMLESS_RESTORE
        main.awaitMigrationData()
        self._startParked()
        main.answerSeamless(True)
        self.log.info("{session} main: seamless migration accepted", session=self.session.id)

    def seamlessRefusal(self, srcVersion):
        """
        Why a seamless migration cannot be accepted now (libspice's rules),
        or L{None}.
        """
        if not self.parksLinks:
            return "the client is not migrating in"
        if not self._server.seamless:
            return "seamless migration is off here (--seamless-migration)"
        if srcVersion > MIGRATION_PROTOCOL_VERSION:
            return "the source speaks migration protocol %d, this server %d" % (
                srcVersion, MIGRATION_PROTOCOL_VERSION)
        if len([s for s in self._server.sessions.values() if s.arriving]) > 1:
            return "several clients are migrating in"
        return None

    def channelRestored(self):
        """
        A channel of this client got its migration data; once none is
        waiting any more, the client has arrived.
        """
        if self.state != SEAMLESS_RESTORE:
            return
        if any(c.awaitingMigrationData for c in self.session.channels.values()):
            return
        self._arrived()
        self.log.info("session {session}: client switched here seamlessly",
                      session=self.session.id)
        # The first message on the new main, as libspice's target sends
        # after the migration data: until something arrives there, spice-gtk
        # keeps its old main connection to the source open.
        if self.session.main is not None:
            self.session.main.sendMultiMediaTime()
        self._server.sessionArrived(self.session)

    # -- endings -------------------------------------------------------------

    def _arrived(self):
        self.state = ARRIVED
        self._stopTimer()

    def _timedOut(self):
        self._timer = None
        if not self.inProgress:
            return
        self.state = TIMED_OUT
        self.log.warn("session {session}: the migrating client never switched here "
                      "(no MIGRATE_END within {t} s); dropping it", session=self.session.id,
                      t=self.timeout)
        self.session.end()

    def abandon(self):
        """
        The session is ending: stop the timer and abort the parked links.
        Abort rather than close: nothing will ever be read from them.
        """
        self._stopTimer()
        if self.inProgress:
            self.state = ABANDONED
        parked, self.parked = self.parked, []
        for link, _ in parked:
            link.transport.abortConnection()

    def _stopTimer(self):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
