"""
A QMP-compatible monitor: QEMU's machine protocol, with the SPICE and
migration commands QEMU has, so operators and existing QMP clients (libvirt,
``qemu.qmp``, ``socat``) drive spicesrv as they drive QEMU.

    backend = SpiceServerBackend(server, addresses={"port": 5900})
    monitorEndpoint(reactor, "unix:/run/spicesrv/qmp.sock").listen(
        QMPFactory(backend, reactor, shutdown=reactor.stop))

The wire protocol is QEMU's ``docs/interop/qmp-spec.rst``: a greeting, then
only ``qmp_capabilities`` until it has been sent; requests
``{"execute": NAME, "arguments": {...}, "id": ANY}``; answers
``{"return": ...}`` or ``{"error": {"class": ..., "desc": ...}}`` carrying the
request's ``id``; events ``{"event", "data", "timestamp"}`` to every client
past negotiation.  Argument checking and error texts follow QEMU's QAPI
(``qapi/qobject-input-visitor.c``, ``qapi/qmp-dispatch.c``): a missing, mistyped
or unknown argument is reported before the command runs.  Requests are
handled one at a time per connection, in order; a command that waits (for
the backend) stops reading from that client until it has answered, as QEMU
suspends its monitor.  A client that does not read its answers is not read
from either while its transport's send buffer is full, and one that lets
more than L{MAX_OUTPUT_BACKLOG} bytes of events pile up on top is
disconnected, so no client grows the server's memory without bound.

The commands themselves are declared in L{spicesrv.control.commands}, their
arguments checked by L{spicesrv.control.schema}, and the byte stream split
into JSON values by L{spicesrv.control.jsonstream}; this module is the
connection, the factory and where the monitor listens.

The monitor has no authentication: it listens on a UNIX socket or on the
loopback interface only (L{monitorEndpoint}).
"""

import json

from twisted.internet import defer, endpoints
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

import spicesrv
from spicesrv.address import describe_peer, is_loopback
from spicesrv.control.commands import COMMAND_TABLE
from spicesrv.control.jsonstream import ERROR, MAX_NESTING, JSONSplitter
from spicesrv.control.schema import COMMAND_NOT_FOUND, GENERIC_ERROR, QMPError
from spicesrv.unixsocket import unix_server_endpoint

__all__ = [
    "QMPFactory", "QMPProtocol", "monitorEndpoint", "QEMU_VERSION",
    "MAX_REQUEST_SIZE", "MAX_OUTPUT_BACKLOG",
]

#: The QEMU release whose QMP this monitor follows; reported in the greeting
#: and by C{query-version} (the package string says it is spicesrv).
QEMU_VERSION = (9, 2, 0)

#: The most bytes held for one client: an incomplete request, plus the
#: requests sent while an earlier one is still running; a client that
#: exceeds it is disconnected.
MAX_REQUEST_SIZE = 1 << 20

#: The most bytes written to one client while its transport's send buffer
#: is full (events and the answer of a command that was running); a client
#: that lets more pile up is disconnected.
MAX_OUTPUT_BACKLOG = 1 << 20


def _secretValues(arguments):
    """
    The argument values never to log or echo: those of members whose name
    says they are passwords.
    """
    if not isinstance(arguments, dict):
        return []
    return [v for k, v in arguments.items()
            if "password" in str(k) and isinstance(v, str) and v]


def _redacted(arguments):
    return {k: ("<hidden>" if "password" in str(k) else v) for k, v in arguments.items()}


def _scrub(text, secrets):
    for secret in secrets:
        text = text.replace(secret, "<hidden>")
    return text


@implementer(IPushProducer)
class QMPProtocol(Protocol):
    """
    One QMP client connection.

    It registers itself with its transport as a streaming producer, so the
    transport says when its send buffer fills (L{pauseProducing}) and has
    drained (L{resumeProducing}); in between, no request is read or run.

    @ivar negotiated: whether the client has sent C{qmp_capabilities}
        (commands and events are only for negotiated clients).
    @ivar peer: the client's address, as log lines show it.
    """

    log = Logger()

    def __init__(self, factory):
        self.factory = factory
        self.backend = factory.backend
        self.negotiated = False
        self.peer = "?"
        self._splitter = JSONSplitter(factory.maxNesting)
        self._busy = False              # a command is running
        self._outputPaused = False      # the transport's send buffer is full
        self._backlog = 0               # bytes written since it filled
        self._readingPaused = False     # what we last told the transport
        self._processing = False
        self._closed = False

    # -- the connection ------------------------------------------------------------

    def connectionMade(self):
        self.peer = describe_peer(self.transport.getPeer())
        self.factory.clients.add(self)
        register = getattr(self.transport, "registerProducer", None)
        if register is not None:
            register(self, True)
        self.log.info("QMP client connected: {peer}", peer=self.peer)
        self.send(self.factory.greeting())

    def connectionLost(self, reason):
        self._closed = True
        self.factory.clients.discard(self)
        self.log.info("QMP client {peer} disconnected", peer=self.peer)

    def dataReceived(self, data):
        if self._closed:
            return
        self._splitter.feed(data)
        self._process()
        held = len(self._splitter)
        if held > self.factory.maxRequestSize and not self._closed:
            self.log.warn("QMP client {peer} disconnected: {held} bytes without a complete "
                          "request (limit {limit})", peer=self.peer, held=held,
                          limit=self.factory.maxRequestSize)
            self._closed = True
            self.transport.loseConnection()

    def send(self, message):
        """
        Write one message, one line of ASCII JSON ended by CRLF.  While the
        transport's send buffer is full, at most C{factory.maxOutputBacklog}
        more bytes are written; past that the client is disconnected.

        @raise TypeError: or L{ValueError}, if it is not JSON-serializable.
        """
        data = json.dumps(message).encode("ascii") + b"\r\n"
        if self._closed:
            return
        if self._outputPaused:
            self._backlog += len(data)
            if self._backlog > self.factory.maxOutputBacklog:
                self.log.warn("QMP client {peer} disconnected: it does not read what the "
                              "monitor sends ({backlog} bytes waiting beyond the send "
                              "buffer, limit {limit})", peer=self.peer,
                              backlog=self._backlog, limit=self.factory.maxOutputBacklog)
                self._closed = True
                abort = getattr(self.transport, "abortConnection", None)
                (abort or self.transport.loseConnection)()
                return
        self.transport.write(data)

    def sendEvent(self, message):
        if self.negotiated:
            self.send(message)

    # -- IPushProducer: the transport's send buffer ----------------------------------

    def pauseProducing(self):
        """
        The transport's send buffer is full: stop reading and running
        requests until it has drained.
        """
        self._outputPaused = True
        self._updateReading()

    def resumeProducing(self):
        """
        The transport's send buffer has drained: read and run requests
        again.
        """
        self._outputPaused = False
        self._backlog = 0
        if not self._closed:
            self._updateReading()
            self._process()

    def stopProducing(self):
        """
        The transport is going away.
        """
        self._closed = True

    def _updateReading(self):
        """
        Pause reading from the client while a command runs or its output is
        backed up, resume it when neither is the case.
        """
        pause = self._busy or self._outputPaused
        if pause == self._readingPaused or self._closed:
            return
        self._readingPaused = pause
        action = getattr(self.transport, "pauseProducing" if pause else "resumeProducing",
                         None)
        if action is not None:
            action()

    # -- requests ------------------------------------------------------------------

    def _process(self):
        if self._processing:
            return      # a resumeProducing from within a write: the loop below goes on
        self._processing = True
        try:
            while not self._busy and not self._outputPaused and not self._closed:
                item = self._splitter.next()
                if item is None:
                    return
                kind, value = item
                if kind == ERROR:
                    self.log.info("QMP client {peer} sent bad input: {desc}",
                                  peer=self.peer, desc=value)
                    self.send({"error": {"class": GENERIC_ERROR, "desc": value}})
                else:
                    self._request(value)
        finally:
            self._processing = False

    def _request(self, request):
        respond = _Responder(self, request)
        if isinstance(request, dict):
            respond.secrets = _secretValues(request.get("arguments"))
        try:
            command, arguments = self._parseRequest(request)
        except QMPError as e:
            respond.error(e.errorClass, e.desc)
            return
        respond.command = command.name
        # Queries are what monitoring polls; only changes are worth an info line.
        log = self.log.debug if command.name.startswith("query-") else self.log.info
        log("QMP {peer}: {command} {arguments}", peer=self.peer, command=command.name,
            arguments=json.dumps(_redacted(arguments)) if arguments else "")
        d = defer.maybeDeferred(command.run, self, arguments)
        d.addCallbacks(respond.result, respond.failure)
        if not d.called:
            self._busy = True
            self._updateReading()
            d.addBoth(self._resume)

    def _resume(self, _):
        self._busy = False
        if not self._closed:
            self._updateReading()
            self._process()

    def _parseRequest(self, request):
        """
        Check the request's shape, the command and its arguments, as
        C{qmp_dispatch}.

        @return: the L{spicesrv.control.commands.Command} and its arguments.
        """
        if not isinstance(request, dict):
            raise QMPError("QMP input must be a JSON object")
        for member, value in request.items():
            if member == "execute":
                if not isinstance(value, str):
                    raise QMPError("QMP input member 'execute' must be a string")
            elif member == "arguments":
                if not isinstance(value, dict):
                    raise QMPError("QMP input member 'arguments' must be an object")
            elif member != "id":
                raise QMPError("QMP input member '%s' is unexpected" % (member,))
        if "execute" not in request:
            raise QMPError("QMP input lacks member 'execute'")
        name = request["execute"]
        arguments = request.get("arguments", {})
        command = self.factory.commands.get(name)
        if command is None or (not self.negotiated and name != "qmp_capabilities"):
            if not self.negotiated:
                raise QMPError("Expecting capabilities negotiation with 'qmp_capabilities'",
                               COMMAND_NOT_FOUND)
            raise QMPError("The command %s has not been found" % (name,), COMMAND_NOT_FOUND)
        command.check(arguments)
        return command, arguments


class _Responder:
    """
    Turns one request's outcome into its answer, with the request's C{id}.
    """

    def __init__(self, protocol, request):
        self.protocol = protocol
        self.command = None
        self.secrets = []
        self.hasId = isinstance(request, dict) and "id" in request
        self.id = request["id"] if self.hasId else None

    def _send(self, message):
        if self.hasId:
            message["id"] = self.id
        self.protocol.send(message)

    def result(self, value):
        try:
            self._send({"return": {} if value is None else value})
        except (TypeError, ValueError):
            self.protocol.log.failure("QMP {peer}: {command} returned a value that is not "
                                      "JSON", peer=self.protocol.peer, command=self.command)
            self.error(GENERIC_ERROR, "%s failed: internal error (bad result)"
                       % (self.command,))

    def error(self, errorClass, desc):
        desc = _scrub(desc, self.secrets)
        self.protocol.log.info("QMP {peer}: {command} failed: {cls}: {desc}",
                               peer=self.protocol.peer, command=self.command or "request",
                               cls=errorClass, desc=desc)
        self._send({"error": {"class": errorClass, "desc": desc}})

    def failure(self, failure):
        if failure.check(QMPError):
            self.error(failure.value.errorClass, failure.value.desc)
        elif failure.check(ValueError):
            self.error(GENERIC_ERROR, str(failure.value) or "%s failed" % (self.command,))
        elif self.secrets:
            # The exception might quote an argument; say only what it was.
            self.protocol.log.error("QMP {peer}: {command} raised {error}",
                                    peer=self.protocol.peer, command=self.command,
                                    error=failure.type.__name__)
            self.error(GENERIC_ERROR, "%s failed: internal error" % (self.command,))
        else:
            self.protocol.log.failure("QMP {peer}: {command} raised", failure,
                                      peer=self.protocol.peer, command=self.command)
            self.error(GENERIC_ERROR, "%s failed: internal error (%s)"
                       % (self.command, failure.type.__name__))


class QMPFactory(Factory):
    """
    The monitor: accepts QMP clients and sends them the backend's events.

    @param backend: the L{spicesrv.interfaces.IMonitorBackend} provider
        commands go to.
    @param reactor: an C{IReactorTime} provider, for event timestamps and
        for C{quit}.
    @param shutdown: called with no arguments after answering C{quit}; with
        L{None}, C{quit} is refused.
    """

    log = Logger()
    maxRequestSize = MAX_REQUEST_SIZE
    maxOutputBacklog = MAX_OUTPUT_BACKLOG
    maxNesting = MAX_NESTING
    #: The commands clients may run, by name
    #: (L{spicesrv.control.commands.Command}s).
    commands = COMMAND_TABLE

    def __init__(self, backend, reactor, shutdown=None):
        self.backend = backend
        self.reactor = reactor
        self.shutdown = shutdown
        self.clients = set()
        backend.addEventObserver(self.emit)

    def buildProtocol(self, addr):
        return QMPProtocol(self)

    def versionInfo(self):
        major, minor, micro = QEMU_VERSION
        return {"qemu": {"major": major, "minor": minor, "micro": micro},
                "package": "spicesrv %s" % (spicesrv.__version__,)}

    def greeting(self):
        return {"QMP": {"version": self.versionInfo(), "capabilities": []}}

    def emit(self, name, data=None):
        """
        Send the event C{name} to every negotiated client, with C{data}
        (left out when L{None} or empty, as QEMU leaves it out for events
        without members) and the time now.
        """
        seconds, microseconds = divmod(int(round(self.reactor.seconds() * 1e6)), 1000000)
        message = {"event": name,
                   "timestamp": {"seconds": seconds, "microseconds": microseconds}}
        if data:
            message["data"] = data
        self.log.info("QMP event {event}", event=name)
        for client in list(self.clients):
            client.sendEvent(message)

    def quit(self):
        self.emit("SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"})
        self.log.info("quit requested over QMP")
        self.shutdown()


# -- where the monitor listens -------------------------------------------------------

def monitorEndpoint(reactor, description):
    """
    The server endpoint for a QMP monitor: C{unix:PATH[:mode=...]} (mode
    600 unless given, as every UNIX socket of L{spicesrv.unixsocket}) or C{tcp:PORT:interface=ADDR} / C{tcp6:...} on a
    loopback address.

    @raise ValueError: with a one-line reason, for anything else, in
        particular a TCP monitor reachable from other hosts: the monitor has
        no authentication.
    """
    kind = description.split(":", 1)[0].strip().lower()
    if kind == "unix":
        return unix_server_endpoint(reactor, description)
    if kind not in ("tcp", "tcp6"):
        raise ValueError("QMP monitor endpoint %r: use unix:PATH or tcp:PORT:interface="
                         "127.0.0.1 (the monitor has no authentication)" % (description,))
    try:
        endpoint = endpoints.serverFromString(reactor, description)
    except (ValueError, TypeError) as e:
        raise ValueError("QMP monitor endpoint %r: %s" % (description, e))
    interface = getattr(endpoint, "_interface", "")
    if not is_loopback(interface):
        raise ValueError(
            "refusing QMP monitor %r: it would listen on %s, reachable from other hosts, and "
            "the monitor has no authentication; use unix:PATH or interface=127.0.0.1"
            % (description, repr(interface) if interface else "every interface"))
    return endpoint
