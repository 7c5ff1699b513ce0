"""
The QMP monitor's backend for a L{spicesrv.server.SpiceServer}: what
C{query-spice}, C{client_migrate_info}, C{set_password}, C{expire_password}
and the migration commands do to the server, and the server's events for
QMP clients.

    backend = SpiceServerBackend(server, migrator=migrator, ca_file="/etc/pki/ca.pem",
                                 addresses={"host": "0.0.0.0", "port": 5900,
                                            "tls-port": 5901})
"""

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

import spicesrv
from spicesrv.control.events import EventObservers, basicInfo
from spicesrv.interfaces import IMonitorBackend
from spicesrv.wire.constants import MouseMode

__all__ = ["SpiceServerBackend"]

NO_MIGRATION = ("migration is not available: this server was started without a migrator "
                "(start the target with --incoming and the source with its migration "
                "options)")


@implementer(IMonitorBackend)
class SpiceServerBackend:
    """
    Drive a L{spicesrv.server.SpiceServer} from the QMP monitor.

    @param server: the L{spicesrv.server.SpiceServer}.
    @param migrator: an object with C{migrate(uri)}, C{migrate_cancel()}
        and C{query_migrate()} (and optionally C{addEventObserver}, for its
        C{MIGRATION} events), or L{None} when this server cannot migrate.
    @param ca_file: the CA certificate file clients verify targets with;
        with it, C{client_migrate_info} first checks the target's TLS port
        (L{spicesrv.tls.check_target_identity}); without it, no check.
    @param addresses: what C{query-spice} reports about the listeners: a
        mapping with QEMU's names C{host}, C{port} and C{tls-port}, or a
        callable returning one (read at every query, so ports chosen at
        listen time can be filled in later).  A missing or 0 port is left
        out, as QEMU does; a missing host is C{"*"}.
    @param reactor: for the target check's connection; the global reactor
        by default.
    """

    log = Logger()

    def __init__(self, server, migrator=None, ca_file=None, addresses=None, reactor=None):
        self.server = server
        self.migrator = migrator
        self.ca_file = ca_file
        self.addresses = addresses if addresses is not None else {}
        self._reactor = reactor
        self._events = EventObservers()
        for source in (server, migrator):
            subscribe = getattr(source, "addEventObserver", None)
            if subscribe is not None:
                subscribe(self._events.emit)

    @property
    def reactor(self):
        if self._reactor is None:
            from twisted.internet import reactor
            self._reactor = reactor
        return self._reactor

    # -- events ----------------------------------------------------------------------

    def addEventObserver(self, observer):
        self._events.add(observer)

    # -- query-spice -----------------------------------------------------------------

    def _addresses(self):
        addresses = self.addresses() if callable(self.addresses) else self.addresses
        return dict(addresses or {})

    def query_spice(self):
        server = self.server
        addresses = self._addresses()
        mode = getattr(server, "mouseMode", None)
        info = {
            "enabled": True,
            "migrated": bool(getattr(server, "migrated", False)),
            "host": str(addresses.get("host") or "*"),
            "auth": "none" if server.ticket.disabled else "spice",
            "compiled-version": spicesrv.__version__,
            "mouse-mode": ("client" if mode == MouseMode.CLIENT else
                           "server" if mode == MouseMode.SERVER else "unknown"),
        }
        for name in ("port", "tls-port"):
            if addresses.get(name):
                info[name] = int(addresses[name])
        info["channels"] = self._channels()
        return info

    def _channels(self):
        channels = []
        for session in list(self.server.sessions.values()):
            for channel in list(session.channels.values()):
                link = getattr(channel, "info", None)
                if link is None:
                    continue
                entry = basicInfo(getattr(link, "peer_address", None),
                                   getattr(link, "peer", ""))
                # The session's id: a main link carries 0 when it starts one.
                entry.update({"connection-id": int(session.id),
                              "channel-type": int(link.channel_type),
                              "channel-id": int(link.channel_id),
                              "tls": bool(link.secure)})
                channels.append(entry)
        channels.sort(key=lambda c: (c["connection-id"], c["channel-type"], c["channel-id"]))
        return channels

    # -- client migration ------------------------------------------------------------

    def client_migrate_info(self, hostname, port, tls_port, cert_subject):
        try:
            answered = self.server.migrate_connect(hostname, port, tls_port, cert_subject)
        except ValueError as e:
            return defer.fail(e)
        if isinstance(answered, defer.Deferred):
            # QEMU answers at once; the clients' answers are only logged.
            answered.addCallbacks(self._clientsAnswered, self._clientsFailed)
        return defer.succeed(None)

    def _clientsAnswered(self, answers):
        if isinstance(answers, dict):
            summary = ", ".join("%s: %s" % item for item in sorted(answers.items()))
        else:
            summary = repr(answers)
        self.log.info("clients answered the migration target: {answers}",
                      answers=summary or "no clients")

    def _clientsFailed(self, failure):
        self.log.failure("migrate_connect failed", failure)

    def check_target(self, hostname, tls_port, cert_subject):
        if self.ca_file is None:
            return None
        from spicesrv.tls.probe import check_target_identity
        return check_target_identity(self.reactor, hostname, tls_port, self.ca_file,
                                     cert_subject=cert_subject, hostname=hostname)

    # -- VM migration ----------------------------------------------------------------

    def migrate(self, uri):
        if self.migrator is None:
            raise ValueError(NO_MIGRATION)
        # As QEMU: answer once the migration has started; its progress is
        # query-migrate's and the MIGRATION events'.
        self.migrator.migrate(uri)

    def migrate_cancel(self):
        if self.migrator is not None:
            return self.migrator.migrate_cancel()

    def query_migrate(self):
        if self.migrator is None:
            return {}
        return self.migrator.query_migrate()

    # -- passwords -------------------------------------------------------------------

    def set_password(self, password, connected):
        self.server.set_password(password, connected)

    def expire_password(self, time):
        self.server.expire_password(time)
