"""
The QMP commands, each declared once: its name and argument schema in the
L{command} decorator, right above the handler that runs it (as
L{twisted.protocols.amp.Command} keeps a command's arguments with it).

A handler is called as C{handler(monitor, arguments)} once the arguments
have passed their schema: C{monitor} is the L{spicesrv.control.qmp.QMPProtocol}
of the client (its C{backend}, C{factory}, C{negotiated}, C{log} and
C{peer}), C{arguments} the request's dict.  It returns the answer (L{None}
for C{{}}) or a Deferred of it, and refuses with L{QMPError} or
L{ValueError}.  Texts and checks follow QEMU 9.2's.
"""

import re

from twisted.internet import defer

from spicesrv.address import is_tcp_port
from spicesrv.control.schema import COMMAND_NOT_FOUND, Arg, QMPError, checkArguments

__all__ = ["Command", "command", "COMMAND_TABLE", "COMMANDS"]


class Command:
    """
    One QMP command.

    @ivar name: the command name, as in C{"execute"}.
    @ivar arguments: its members, a list of L{Arg}, in QEMU's order.
    @ivar branches: for a flat union, C{(discriminator, {value: [Arg]})}:
        the further members for each value of the discriminator member;
        else L{None}.
    @ivar handler: C{handler(monitor, arguments)}.
    """

    def __init__(self, name, arguments, handler, branches=None):
        self.name = name
        self.arguments = list(arguments)
        self.handler = handler
        self.branches = branches

    def check(self, arguments):
        """
        Check a request's C{arguments} dict against the schema.

        @raise QMPError: naming the first bad parameter, as QEMU does.
        """
        checkArguments(self.arguments, arguments, self.branches)

    def run(self, monitor, arguments):
        """
        Run the handler for C{monitor}'s client with checked C{arguments}.
        """
        return self.handler(monitor, arguments)


#: Every command the monitor knows, by name.
COMMAND_TABLE = {}


def command(name, *arguments, branches=None, table=COMMAND_TABLE):
    """
    Declare the decorated function as the handler of the QMP command
    C{name} with the argument members C{arguments} (L{Arg}s) and, for a
    flat union, C{branches} (see L{Command}).

    @param table: the command table to add it to.
    @return: a decorator that returns the handler unchanged.
    """
    def declare(handler):
        table[name] = Command(name, arguments, handler, branches)
        return handler
    return declare


_PROTOCOLS = ("vnc", "spice")
_VNC_BRANCH = ("protocol", {"vnc": [Arg("display", "str", optional=True)]})
_EXPIRE_TIME = re.compile(r"\A\+?[0-9]+\Z")


# -- control commands ------------------------------------------------------------------

@command("qmp_capabilities", Arg("enable", "enum-list", optional=True, values=("oob",)))
def qmp_capabilities(monitor, args):
    if monitor.negotiated:
        raise QMPError("Capabilities negotiation is already complete, command ignored",
                       COMMAND_NOT_FOUND)
    enable = args.get("enable", [])
    if enable:
        raise QMPError("Capability %s not available" % (", ".join(enable),))
    monitor.negotiated = True
    return {}


@command("query-version")
def query_version(monitor, args):
    return monitor.factory.versionInfo()


@command("query-commands")
def query_commands(monitor, args):
    return [{"name": name} for name in sorted(monitor.factory.commands)]


@command("query-status")
def query_status(monitor, args):
    return {"running": True, "status": "running"}


@command("quit")
def quit(monitor, args):
    factory = monitor.factory
    if factory.shutdown is None:
        raise QMPError("quit is not available: this monitor was started without a "
                       "shutdown handler")
    factory.reactor.callLater(0, factory.quit)
    return {}


# -- SPICE -----------------------------------------------------------------------------

@command("query-spice")
def query_spice(monitor, args):
    return monitor.backend.query_spice()


@command("client_migrate_info",
         Arg("protocol", "str"), Arg("hostname", "str"), Arg("port", "int", optional=True),
         Arg("tls-port", "int", optional=True), Arg("cert-subject", "str", optional=True))
@defer.inlineCallbacks
def client_migrate_info(monitor, args):
    if args["protocol"] != "spice":
        raise QMPError("Parameter 'protocol' expects 'spice'")
    port, tls_port = args.get("port"), args.get("tls-port")
    if port is None and tls_port is None:
        raise QMPError("Parameter 'port/tls-port' is missing")
    for name, value in (("port", port), ("tls-port", tls_port)):
        if value is not None and not is_tcp_port(value):
            raise QMPError("Parameter '%s' expects a TCP port (0 to 65535)" % (name,))
    hostname, subject = args["hostname"], args.get("cert-subject")
    if tls_port:
        checked = yield defer.maybeDeferred(monitor.backend.check_target, hostname,
                                            tls_port, subject)
        if checked is not None:
            ok, reason = checked
            if not ok:
                raise QMPError(str(reason))
            monitor.log.info("QMP {peer}: migration target {host}:{port} verified: {why}",
                             peer=monitor.peer, host=hostname, port=tls_port, why=reason)
    yield monitor.backend.client_migrate_info(hostname, port, tls_port, subject)
    return {}


@command("set_password",
         Arg("protocol", "enum", values=_PROTOCOLS), Arg("password", "str"),
         Arg("connected", "enum", optional=True, values=("keep", "fail", "disconnect")),
         branches=_VNC_BRANCH)
@defer.inlineCallbacks
def set_password(monitor, args):
    if args["protocol"] != "spice":
        raise QMPError("Could not set password: spicesrv has no VNC display")
    yield monitor.backend.set_password(args["password"], args.get("connected", "keep"))
    return {}


@command("expire_password",
         Arg("protocol", "enum", values=_PROTOCOLS), Arg("time", "str"),
         branches=_VNC_BRANCH)
@defer.inlineCallbacks
def expire_password(monitor, args):
    when = args["time"]
    if when not in ("now", "never") and not _EXPIRE_TIME.match(when):
        raise QMPError("Parameter 'time' doesn't take value '%s'" % (when,))
    if args["protocol"] != "spice":
        raise QMPError("Could not set password expire time: spicesrv has no VNC display")
    yield monitor.backend.expire_password(when)
    return {}


# -- migration -------------------------------------------------------------------------

@command("migrate",
         Arg("uri", "str", optional=True), Arg("channels", "list", optional=True),
         Arg("detach", "bool", optional=True), Arg("resume", "bool", optional=True))
@defer.inlineCallbacks
def migrate(monitor, args):
    uri, channels = args.get("uri"), args.get("channels")
    if uri is not None and channels is not None:
        raise QMPError("'uri' and 'channels' arguments are mutually exclusive; exactly "
                       "one of the two should be present in 'migrate' qmp command")
    if channels is not None:
        raise QMPError("Parameter 'channels' is not supported by spicesrv; use 'uri'")
    if uri is None:
        raise QMPError("neither 'uri' or 'channels' argument are specified in "
                       "'migrate' qmp command")
    if args.get("resume"):
        raise QMPError("Cannot resume if there is no paused migration")
    yield monitor.backend.migrate(uri)
    return {}


@command("migrate_cancel")
@defer.inlineCallbacks
def migrate_cancel(monitor, args):
    yield monitor.backend.migrate_cancel()
    return {}


@command("query-migrate")
@defer.inlineCallbacks
def query_migrate(monitor, args):
    info = dict((yield monitor.backend.query_migrate()) or {})
    if info.get("status") == "none":
        del info["status"]
    return info


#: The names of every command the monitor knows, sorted.
COMMANDS = tuple(sorted(COMMAND_TABLE))
