"""
The source's ``migrate``: move the devices' state to a target started with
``--incoming``, and end the SPICE client migration accordingly, as QEMU
does around its RAM copy (protocol.md 5.1): C{migrate_start}, the transfer,
then C{migrate_end(True)} on success or C{migrate_end(False)} on failure or
cancellation, when the clients stay on the source with their sessions
intact.
"""

from twisted.internet import defer
from twisted.logger import Logger

from spicesrv.control.events import EventObservers
from spicesrv.migration.outgoing import sendState
from spicesrv.migration.statewire import TransferError
from spicesrv.migration.uri import parseMigrationURI

NONE = "none"
SETUP = "setup"
ACTIVE = "active"
COMPLETED = "completed"
FAILED = "failed"
CANCELLING = "cancelling"
CANCELLED = "cancelled"


class Migrator:
    """
    One source server's migrations, one at a time.

    @param server: the L{spicesrv.server.SpiceServer}.
    @param tlsOptionsFor: a callable C{(host) -> client TLS options} for
        C{tls:} URIs (checking the target's certificate), or L{None} when
        TLS transfers are not configured.
    """

    log = Logger()

    def __init__(self, server, reactor, tlsOptionsFor=None):
        self.server = server
        self.reactor = reactor
        self.tlsOptionsFor = tlsOptionsFor
        self.status = NONE
        self.error = None
        self._started = None
        self._finished = None
        self._transfer = None
        self._events = EventObservers()

    def addEventObserver(self, observer):
        """
        Call C{observer("MIGRATION", {"status": ...})} on every status change,
        as QEMU's MIGRATION event.
        """
        self._events.add(observer)

    def _setStatus(self, status):
        self.status = status
        self._events.emit("MIGRATION", {"status": status})

    def migrate(self, uri):
        """
        Start migrating to C{uri} (C{tcp:HOST:PORT}, C{unix:PATH} or
        C{tls:HOST:PORT}).  Returns at once; the returned Deferred fires with
        the final status.

        @raise ValueError: a bad URI, or a migration already running.
        """
        if self.status in (SETUP, ACTIVE, CANCELLING):
            raise ValueError("a migration is already in progress (%s)" % self.status)
        kind, host, _port = parseMigrationURI(uri)
        tlsOptions = None
        if kind == "tls":
            if self.tlsOptionsFor is None:
                raise ValueError("tls: migration needs the server's TLS certificates "
                                 "(--x509-dir) to check the target")
            tlsOptions = self.tlsOptionsFor(host)
        self.error = None
        self._started = self.reactor.seconds()
        self._finished = None
        self._setStatus(SETUP)
        self.server.migrate_start()
        self._setStatus(ACTIVE)
        self.log.info("migrating device state to {uri}", uri=uri)
        self._transfer = sendState(self.reactor, uri, lambda: self.server.migratable,
                                   tlsOptions=tlsOptions)
        return self._transfer.addCallbacks(self._transferred, self._transferFailed)

    def _transferred(self, summary):
        self._transfer = None
        self.log.info("device state moved ({bytes} bytes in {seconds:.3f} s); "
                      "switching the clients", bytes=summary["bytes"],
                      seconds=summary["seconds"])
        # Clients still pre-connecting to the target would fall back to a
        # switch-host reconnection: give them until they answer (at most
        # libspice's 10 s).  QEMU's RAM copy usually outlasts this wait.
        return self.server.sourceMigration.whenAnswered().addCallback(self._switch)

    def _switch(self, _):
        self._finished = self.reactor.seconds()
        self._setStatus(COMPLETED)
        self.server.migrate_end(True)
        return COMPLETED

    def _transferFailed(self, failure):
        self._transfer = None
        self._finished = self.reactor.seconds()
        if failure.check(defer.CancelledError):
            self.log.info("migration cancelled; the clients stay here")
            self.server.migrate_end(False)
            self._setStatus(CANCELLED)
            return CANCELLED
        if failure.check(TransferError):
            self.error = str(failure.value)
        else:
            self.log.failure("migration failed unexpectedly", failure)
            self.error = "internal error: %s" % (failure.getErrorMessage(),)
        self.log.warn("migration failed: {error}; the clients stay here", error=self.error)
        self.server.migrate_end(False)
        self._setStatus(FAILED)
        return FAILED

    def migrate_cancel(self):
        """
        Cancel a running migration (QEMU's C{migrate_cancel}); nothing
        happens when none is running.
        """
        if self._transfer is not None:
            self._setStatus(CANCELLING)
            self._transfer.cancel()

    def query_migrate(self):
        """
        QEMU's MigrationInfo for C{query-migrate}.
        """
        info = {}
        if self.status == NONE:
            return info
        info["status"] = self.status
        if self._started is not None:
            end = self._finished if self._finished is not None else self.reactor.seconds()
            info["total-time"] = int((end - self._started) * 1000)
        if self.error is not None:
            info["error-desc"] = self.error
        return info
