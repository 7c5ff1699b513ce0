"""
The source server's side of a client migration between two SPICE servers,
as libspice-server does it (protocol.md section 5.2): L{SourceMigration}
sends MIGRATE_BEGIN to the clients that can pre-connect to the target,
waits for their answers with a timeout, then sends MIGRATE_END,
MIGRATE_SWITCH_HOST or MIGRATE_CANCEL, and waits for the clients to leave.
It talks to each client through its main channel's verbs
(L{spicesrv.channels.main.MainChannel.beginMigration} and the others).

The target's side, one arriving client, is
L{spicesrv.migration.arrival.Arrival}.
"""

from dataclasses import dataclass

from twisted.internet import defer
from twisted.logger import Logger

from spicesrv.address import is_tcp_port
from spicesrv.wire.constants import MainCap

# SPICE_MIGRATION_PROTOCOL_VERSION: what MIGRATE_BEGIN_SEAMLESS announces
# and the highest a target accepts.
MIGRATION_PROTOCOL_VERSION = 1

# libspice-server's MIGRATE_TIMEOUT, for both the connect and the
# disconnect phases.
MIGRATE_TIMEOUT = 10.0

CONNECTED = "connected"
CONNECT_ERROR = "connect-error"
TIMED_OUT = "timed-out"
NO_CAPABILITY = "no-capability"


class MigrationError(ValueError):
    """
    A migration request the server refuses; the message says why.
    """


@dataclass(frozen=True)
class TargetInfo:
    """
    Where clients go: the arguments of C{client_migrate_info}.  A missing
    port is 0 on the wire (protocol.md section 12 item 8).
    """

    host: str
    port: int
    tls_port: int
    cert_subject: str

    @classmethod
    def make(cls, host, port=None, tls_port=None, cert_subject=None):
        if not host:
            raise MigrationError("a migration target needs a host name or address")
        ports = []
        for name, value in (("port", port), ("tls-port", tls_port)):
            if value is None or value == -1:
                value = 0
            if not is_tcp_port(value):
                raise MigrationError("%s %d is not a TCP port" % (name, value))
            ports.append(value)
        if not any(ports):
            raise MigrationError("a migration target needs a port or a tls-port")
        if "\0" in host or (cert_subject and "\0" in cert_subject):
            raise MigrationError("host and cert-subject cannot contain NUL")
        if cert_subject:
            from spicesrv.tls.subjects import validate_subject
            try:
                validate_subject(cert_subject)
            except ValueError as e:
                raise MigrationError("cert-subject %r: %s" % (cert_subject, e))
        return cls(host, ports[0], ports[1], cert_subject or "")

    def dstInfo(self):
        """
        The fields of SpiceMigrationDstInfo: NUL-terminated strings whose
        sizes count the NUL; an absent subject is size 0 and a NULL pointer.
        """
        subject = self.cert_subject.encode("utf-8") + b"\0" if self.cert_subject else None
        return dict(port=self.port, sport=self.tls_port,
                    host_data=self.host.encode("utf-8") + b"\0",
                    cert_subject_data=subject)


class SourceMigration:
    """
    The source server's migration of its clients to one target.

    @ivar target: the L{TargetInfo} of the pending migration, or L{None}.
    @ivar answers: session id -> L{CONNECTED}, L{CONNECT_ERROR},
        L{TIMED_OUT} or L{NO_CAPABILITY}, for the current migrate_connect.
    @ivar completed: whether the clients have left for the target (from the
        end of a migration until the next L{connect}).
    """

    log = Logger()

    def __init__(self, server):
        self.server = server
        self.target = None
        self.answers = {}
        self._waiting = set()
        self._seamless = set()
        self._connectTimer = None
        self._connected = None
        self._connectCalled = False
        self._leaving = set()
        self._endTimer = None
        self._ended = None
        # Sessions still arriving here when the migration onwards began:
        # they hear of it once they have arrived (libspice's T5).
        self._deferredBegin = set()
        self.completed = False
        # Clients that had to be disconnected because they did not leave
        # after the migration (for operators and tests).
        self.forcedDisconnects = 0

    # -- migrate_connect -----------------------------------------------------

    def connect(self, target):
        """
        Tell the clients about C{target} (a L{TargetInfo}) so they
        pre-connect.  Returns a Deferred that fires with L{answers} once
        every client has answered or timed out.
        """
        self.completed = False
        if self.target is not None:
            self.log.info("a new migrate_connect cancels the pending one")
            self._cancelClients()
            self._finishConnect()
            self._stopTimer("_connectTimer")
        self.target = target
        self.answers = {}
        self._waiting = set()
        self._seamless = set()
        self._connectCalled = True
        self._connected = defer.Deferred()
        result = self._connected
        for session in list(self.server.sessions.values()):
            self._begin(session)
        self.log.info("migrating {n} client(s) to {host} port {port} tls-port {tls}: "
                      "{waiting} pre-connecting", n=len(self.server.sessions),
                      host=target.host, port=target.port, tls=target.tls_port,
                      waiting=len(self._waiting))
        if self._waiting:
            self._connectTimer = self.server.clock.callLater(MIGRATE_TIMEOUT,
                                                             self._connectTimedOut)
        else:
            self._finishConnect()
        return result

    def _begin(self, session):
        main = session.main
        if main is None:
            return
        if MainCap.SEMI_SEAMLESS_MIGRATE not in main.info.channel_caps:
            self.answers[session.id] = NO_CAPABILITY
            return
        self._waiting.add(session.id)
        if session.arriving:
            # It is still arriving here; it hears of the next move once it
            # has (libspice's T5).
            self._deferredBegin.add(session.id)
            return
        self._sendBegin(session)

    def _trySeamless(self, session):
        """
        Seamless needs it switched on, a single client, and a client with
        both SEAMLESS_MIGRATE and AGENT_CONNECTED_TOKENS (libspice's rule).
        """
        caps = session.main.info.channel_caps
        return (self.server.seamless and len(self.server.sessions) == 1
                and MainCap.SEAMLESS_MIGRATE in caps
                and MainCap.AGENT_CONNECTED_TOKENS in caps)

    def _sendBegin(self, session):
        session.main.beginMigration(self.target, seamless=self._trySeamless(session))

    def whenAnswered(self):
        """
        A Deferred that fires once the clients have answered the pending
        MIGRATE_BEGIN (or timed out); at once if nothing is pending.
        """
        if self._connected is None:
            return defer.succeed(None)
        d = defer.Deferred()

        def answered(result):
            d.callback(None)
            return result

        self._connected.addBoth(answered)
        return d

    def sessionArrived(self, session):
        """
        A client that migrated in has switched here: if a migration onwards
        began meanwhile, send it the deferred MIGRATE_BEGIN.
        """
        if session.id not in self._deferredBegin:
            return
        self._deferredBegin.discard(session.id)
        if self.target is not None and session.id in self._waiting:
            self._sendBegin(session)

    def clientAnswered(self, session, ok, seamless=False):
        """
        The client sent MIGRATE_CONNECTED (C{ok}), MIGRATE_CONNECTED_SEAMLESS
        (C{ok} and C{seamless}) or MIGRATE_CONNECT_ERROR.
        """
        if session.id not in self._waiting:
            if ok:
                # Too late (after the timeout, or with nothing pending): make
                # the client drop its connections to the target.
                self.log.info("session {session}: late MIGRATE_CONNECTED; cancelling it",
                              session=session.id)
                session.main.cancelMigration()
            return
        self._waiting.discard(session.id)
        self.answers[session.id] = CONNECTED if ok else CONNECT_ERROR
        if ok and seamless:
            self._seamless.add(session.id)
        self.log.info("session {session}: {answer} to the migration target",
                      session=session.id, answer=("connected seamlessly" if ok and seamless
                                                  else "connected" if ok
                                                  else "could not connect"))
        if not self._waiting:
            self._stopTimer("_connectTimer")
            self._finishConnect()

    def _connectTimedOut(self):
        self._connectTimer = None
        for session_id in list(self._waiting):
            self.answers[session_id] = TIMED_OUT
            session = self.server.sessions.get(session_id)
            self.log.warn("session {session}: no answer to MIGRATE_BEGIN within {t} s",
                          session=session_id, t=MIGRATE_TIMEOUT)
            if session is not None and session.arriving:
                session.end()
        self._waiting = set()
        self._finishConnect()

    def _finishConnect(self):
        if self._connected is None:
            return
        d, self._connected = self._connected, None
        if self.server.migration is not None:
            self.server.migration.migrate_connect_complete()
        d.callback(dict(self.answers))

    def sessionGone(self, session):
        """
        A client left: stop waiting for it.
        """
        if session.id in self._waiting:
            self._waiting.discard(session.id)
            self.answers[session.id] = CONNECT_ERROR
            if not self._waiting:
                self._stopTimer("_connectTimer")
                self._finishConnect()
        if session in self._leaving:
            self._leaving.discard(session)
            if not self._leaving:
                self._stopTimer("_endTimer")
                self._finishEnd()

    # -- migrate_end -----------------------------------------------------------

    def end(self, completed):
        """
        The VM migration finished (C{completed}) or failed.  Returns a
        Deferred that fires once the clients have left (or were made to),
        after C{migrate_end_complete}, when C{completed}; at once otherwise.
        """
        self._stopTimer("_connectTimer")
        if not completed:
            self._cancelClients()
            self._finishConnect()
            self._reset()
            return defer.succeed(None)
        for session_id in self._waiting:
            self.answers[session_id] = TIMED_OUT
        self._waiting = set()
        sessions = [s for s in self.server.sessions.values() if s.main is not None]
        self._ended = defer.Deferred()
        result = self._ended
        if not self._connectCalled and sessions:
            self.log.warn("migration completed without client_migrate_info: "
                          "disconnecting {n} client(s)", n=len(sessions))
            for session in sessions:
                session.end()
            self._finishConnect()
            self._reset()
            self._finishEnd()
            return result
        self._finishConnect()
        for session in sessions:
            answer = self.answers.get(session.id, NO_CAPABILITY)
            if answer == CONNECTED and session.id in self._seamless:
                # Each channel moves on its own, carrying its state.
                for channel in list(session.channels.values()):
                    channel.startMigration()
            elif answer == CONNECTED:
                session.main.endMigration()
            elif self.target is not None:
                session.main.switchHost(self.target)
            self._leaving.add(session)
        self._reset()
        if self._leaving:
            self._endTimer = self.server.clock.callLater(MIGRATE_TIMEOUT, self._endTimedOut)
        else:
            self._finishEnd()
        return result

    def _cancelClients(self):
        for session in list(self.server.sessions.values()):
            answered = self.answers.get(session.id)
            if session.main is not None and (answered == CONNECTED
                                             or session.id in self._waiting):
                session.main.cancelMigration()
        self._deferredBegin = set()

    def _endTimedOut(self):
        self._endTimer = None
        leaving, self._leaving = self._leaving, set()
        self.log.warn("{n} client(s) did not leave within {t} s after the migration; "
                      "disconnecting them", n=len(leaving), t=MIGRATE_TIMEOUT)
        self.forcedDisconnects += len(leaving)
        for session in leaving:
            session.end()
        self._finishEnd()

    def _finishEnd(self):
        if self._ended is None:
            return
        d, self._ended = self._ended, None
        self.completed = True
        self.server.migrationEnded()
        d.callback(None)

    def _reset(self):
        self.target = None
        self._connectCalled = False
        self._waiting = set()
        self._seamless = set()

    def _stopTimer(self, name):
        timer = getattr(self, name)
        if timer is not None and timer.active():
            timer.cancel()
        setattr(self, name, None)

    # -- the legacy switch-host pair -------------------------------------------

    def info(self, target):
        """
        Remember a target for L{switch}, without telling the clients.
        """
        self.target = target

    def switch(self):
        """
        Send every client MIGRATE_SWITCH_HOST now: they reconnect to the
        target as new clients.
        """
        if self.target is None:
            raise MigrationError("no migration target: call migrate_info first")
        for session in list(self.server.sessions.values()):
            if session.main is not None:
                session.main.switchHost(self.target)
        self.target = None
