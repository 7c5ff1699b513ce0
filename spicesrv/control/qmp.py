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
suspends its monitor.

The monitor has no authentication: it listens on a UNIX socket or on the
loopback interface only (L{monitorEndpoint}).
"""

import ipaddress
import json
import re

from twisted.internet import defer, endpoints
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import Interface

import spicesrv

__all__ = [
    "IMonitorBackend", "QMPError", "QMPFactory", "QMPProtocol", "JSONSplitter",
    "monitorEndpoint", "QEMU_VERSION", "COMMANDS",
    "MAX_REQUEST_SIZE", "MAX_NESTING",
]

#: The QEMU release whose QMP this monitor follows; reported in the greeting
#: and by C{query-version} (the package string says it is spicesrv).
QEMU_VERSION = (9, 2, 0)

#: The most bytes held for one client: an incomplete request, plus the
#: requests sent while an earlier one is still running; a client that
#: exceeds it is disconnected.
MAX_REQUEST_SIZE = 1 << 20

#: The deepest nesting of objects and arrays in a request (QEMU's limit).
MAX_NESTING = 1024

GENERIC_ERROR = "GenericError"
COMMAND_NOT_FOUND = "CommandNotFound"

_INT64 = (-(1 << 63), (1 << 63) - 1)


class IMonitorBackend(Interface):
    """
    What the QMP monitor drives: one object that answers the SPICE and
    migration commands.

    Every method may return its result directly or as a Deferred.  A
    refusal is a L{ValueError} (raised or as the Deferred's failure) whose
    message becomes the command's C{GenericError} description, so it must
    be one line for an operator and never contain a password.
    """

    def query_spice():
        """
        The C{SpiceInfo} of QEMU's C{query-spice}, as a dict: C{enabled},
        C{migrated}, C{host}, C{port}, C{tls-port}, C{auth} (C{"spice"} or
        C{"none"}), C{compiled-version}, C{mouse-mode} (C{"client"},
        C{"server"} or C{"unknown"}) and C{channels}, a list of
        C{SpiceChannel} dicts (C{host}, C{port} as strings, C{family},
        C{connection-id}, C{channel-type}, C{channel-id}, C{tls}).  Members
        QEMU leaves out when unset (a port of 0) are left out.
        """

    def client_migrate_info(hostname, port, tls_port, cert_subject):
        """
        Tell connected clients where they will migrate, as
        C{spice_server_migrate_connect}: C{port} and C{tls_port} are ints
        or L{None} (at least one is given), C{cert_subject} a string or
        L{None}.  Returns (or fires) once the server has accepted the
        target, without waiting for the clients' answers, as QEMU does.
        """

    def check_target(hostname, tls_port, cert_subject):
        """
        Check, before C{client_migrate_info} is passed on, that the target's
        TLS port presents the identity clients will verify (C{cert_subject},
        or C{hostname} when it is L{None}).  Returns a Deferred firing with
        C{(ok, reason)}, or L{None} when this backend cannot check (then
        the command goes ahead unchecked).
        """

    def migrate(uri):
        """
        Start migrating to C{uri}; returns once it has started (progress is
        reported by C{query_migrate} and C{MIGRATION} events).
        """

    def migrate_cancel():
        """
        Cancel the running migration; nothing happens if none is running.
        """

    def query_migrate():
        """
        QEMU's C{MigrationInfo} as a dict: C{status} (C{"setup"},
        C{"active"}, C{"completed"}, C{"failed"}, C{"cancelled"}, ...; left
        out, or C{"none"}, before the first migration) and, on failure,
        C{error-desc}.
        """

    def set_password(password, connected):
        """
        Set the SPICE password; C{connected} is C{"keep"}, C{"disconnect"}
        or C{"fail"} (what happens to, or because of, connected clients).
        """

    def expire_password(time):
        """
        Set when the password expires: C{"now"}, C{"never"}, C{"+N"} (in N
        seconds) or C{"N"} (at UNIX time N).
        """

    def addEventObserver(observer):
        """
        Call C{observer(name, data)} for every event to report to QMP
        clients (C{SPICE_CONNECTED}, C{SPICE_INITIALIZED},
        C{SPICE_DISCONNECTED}, C{SPICE_MIGRATE_COMPLETED}, C{MIGRATION},
        ...), C{data} being the event's QEMU-shaped dict or L{None}.
        """


class QMPError(Exception):
    """
    A command's error answer: C{errorClass} (QAPI's C{GenericError} or
    C{CommandNotFound}) and C{desc}.
    """

    def __init__(self, desc, errorClass=GENERIC_ERROR):
        Exception.__init__(self, desc)
        self.desc = desc
        self.errorClass = errorClass


# -- splitting a byte stream into JSON values --------------------------------------

# Characters QEMU's JSON lexer rejects anywhere: ASCII controls other than
# tab, CR and LF, and the bytes 0xFE and 0xFF that never occur in UTF-8.  A
# client sends one to force the parser back into a known-good state
# (qmp-spec.rst); inside a string CR and LF are errors too.
_BAD = b"\x00-\x08\x0b\x0c\x0e-\x1f\xfe\xff"
_IN_VALUE = re.compile(b'[{}\\[\\]"' + _BAD + b"]")
_IN_STRING = re.compile(b'["\\\\\x00-\x1f\xfe\xff]')
_TOP_LEVEL = re.compile(b"[^ \t\r\n]")
_SCALAR_END = re.compile(b'[ \t\r\n{}\\[\\]",:' + _BAD + b"]")
_BAD_BYTE = re.compile(b"[" + _BAD + b"]")

_VALUE, _ERROR = "value", "error"


def _describeByte(byte):
    char = chr(byte)
    return char if char.isprintable() and byte < 0x80 else "\\x%02x" % byte


def _parseError(message):
    return "JSON parse error, " + message[:1].lower() + message[1:]


def _rejectConstant(name):
    raise ValueError("invalid literal %s" % (name,))


class JSONSplitter:
    """
    Split a byte stream into JSON values the way QEMU's JSON streamer does:
    values may span lines and several may share one; a value ends when its
    brackets balance; an unparsable value, a stray byte or an ASCII control
    character becomes one error and the stream goes on after it.

    Bytes are only scanned when L{next} is called, so a caller may stop
    taking values while it is busy; C{len()} is the number of bytes held
    (the incomplete value and what has not been scanned yet), for the
    caller to limit.  A value being skipped is not held.

    @param maxNesting: the deepest nesting accepted; a deeper value is one
        error and is skipped.
    """

    def __init__(self, maxNesting=MAX_NESTING):
        self.maxNesting = maxNesting
        self._buffer = bytearray()
        self._pos = 0           # next byte to scan
        self._depth = 0         # open objects and arrays of the current value
        self._inString = False
        self._started = False   # the current value (at buffer start) has begun
        self._skipping = False  # discarding a value that nests too deep

    def __len__(self):
        return len(self._buffer)

    def feed(self, data):
        """
        Add bytes.
        """
        self._buffer += data

    def next(self):
        """
        The next complete item: C{("value", obj)}, C{("error", desc)}, or
        L{None} until more bytes arrive.
        """
        item = self._scan()
        if self._skipping and self._pos:
            self._consume(self._pos)   # a value being skipped is not kept
        return item

    def _scan(self):
        buf = self._buffer
        while self._pos < len(buf):
            if self._inString:
                match = _IN_STRING.search(buf, self._pos)
                if match is None:
                    self._pos = len(buf)
                    break
                i = match.start()
                c = buf[i]
                if c == 0x5C:                       # backslash: skip the escaped byte
                    if i + 1 >= len(buf):
                        self._pos = i
                        break
                    if buf[i + 1] < 0x20 or buf[i + 1] >= 0xFE:
                        return self._lexicalError(i + 1)
                    self._pos = i + 2
                elif c == 0x22:                     # closing quote
                    self._inString = False
                    self._pos = i + 1
                    if self._depth == 0:
                        return self._complete(i + 1)
                else:
                    return self._lexicalError(i)
            elif not self._started:
                match = _TOP_LEVEL.search(buf, self._pos)
                if match is None:
                    self._consume(len(buf))
                    break
                i = match.start()
                self._consume(i)
                c = buf[0]
                self._started = True
                if c in (0x7B, 0x5B):               # { [
                    self._depth = 1
                    self._pos = 1
                elif c == 0x22:
                    self._inString = True
                    self._pos = 1
                elif c in (0x7D, 0x5D, 0x2C, 0x3A) or _BAD_BYTE.match(buf, 0):
                    return self._lexicalError(0)    # } ] , : or a control byte
                else:
                    self._pos = 0                   # a bare scalar: read to its end
            elif self._depth == 0:
                match = _SCALAR_END.search(buf, self._pos)
                if match is None:
                    self._pos = len(buf)
                    break
                return self._complete(match.start())
            else:
                match = _IN_VALUE.search(buf, self._pos)
                if match is None:
                    self._pos = len(buf)
                    break
                i = match.start()
                c = buf[i]
                self._pos = i + 1
                if c in (0x7B, 0x5B):
                    self._depth += 1
                    if self._depth > self.maxNesting and not self._skipping:
                        self._skipping = True
                        return (_ERROR, "JSON nesting depth limit exceeded")
                elif c in (0x7D, 0x5D):
                    self._depth -= 1
                    if self._depth == 0:
                        if self._skipping:
                            self._skipping = False
                            self._started = False
                            self._consume(i + 1)
                            continue
                        return self._complete(i + 1)
                elif c == 0x22:
                    self._inString = True
                else:
                    return self._lexicalError(i)
        return None

    def _consume(self, end):
        del self._buffer[:end]
        self._pos = max(self._pos - end, 0)

    def _reset(self):
        self._depth = 0
        self._inString = False
        self._started = False
        self._skipping = False
        self._pos = 0

    def _lexicalError(self, i):
        byte = self._buffer[i]
        skipping = self._skipping
        self._consume(i + 1)
        self._reset()
        if skipping:
            return self._scan()
        return (_ERROR, "JSON parse error, stray '%s'" % (_describeByte(byte),))

    def _complete(self, end):
        text = bytes(self._buffer[:end])
        self._consume(end)
        self._reset()
        try:
            value = json.loads(text.decode("utf-8"), parse_constant=_rejectConstant)
        except UnicodeDecodeError:
            return (_ERROR, "JSON parse error, invalid UTF-8 sequence")
        except json.JSONDecodeError as e:
            return (_ERROR, _parseError(e.msg))
        except RecursionError:
            return (_ERROR, "JSON nesting depth limit exceeded")
        except ValueError:
            return (_ERROR, "JSON parse error, expecting value")
        return (_VALUE, value)


# -- argument checking, as QAPI's input visitor --------------------------------------

class _Arg:
    def __init__(self, name, kind, optional=False, values=()):
        self.name = name
        self.kind = kind
        self.optional = optional
        self.values = values


def _checkValue(arg, value, name):
    if arg.kind in ("str", "enum"):
        if not isinstance(value, str):
            raise QMPError("Invalid parameter type for '%s', expected: string" % (name,))
        if arg.kind == "enum" and value not in arg.values:
            raise QMPError("Parameter '%s' does not accept value '%s'" % (name, value))
    elif arg.kind == "int":
        if (isinstance(value, bool) or not isinstance(value, int)
                or not _INT64[0] <= value <= _INT64[1]):
            raise QMPError("Invalid parameter type for '%s', expected: integer" % (name,))
    elif arg.kind == "bool":
        if not isinstance(value, bool):
            raise QMPError("Invalid parameter type for '%s', expected: boolean" % (name,))
    elif arg.kind in ("list", "enum-list"):
        if not isinstance(value, list):
            raise QMPError("Invalid parameter type for '%s', expected: array" % (name,))
        if arg.kind == "enum-list":
            element = _Arg(name, "enum", values=arg.values)
            for index, item in enumerate(value):
                _checkValue(element, item, "%s[%d]" % (name, index))


def checkArguments(schema, arguments, branches=None):
    """
    Check C{arguments} against C{schema} (a list of L{_Arg}) in QEMU's
    order: each member in schema order (missing, then type), then a flat
    union's branch members (C{branches}: discriminator name and a dict
    value -> members), then the first unexpected member.

    @raise QMPError: naming the parameter.
    """
    members = list(schema)
    checked = []
    while members:
        arg = members.pop(0)
        checked.append(arg.name)
        if arg.name not in arguments:
            if not arg.optional:
                raise QMPError("Parameter '%s' is missing" % (arg.name,))
            continue
        _checkValue(arg, arguments[arg.name], arg.name)
        if branches is not None and arg.name == branches[0]:
            members.extend(branches[1].get(arguments[arg.name], ()))
    for name in arguments:
        if name not in checked:
            raise QMPError("Parameter '%s' is unexpected" % (name,))


# -- the commands -------------------------------------------------------------------

_PROTOCOLS = ("vnc", "spice")
_VNC_BRANCH = ("protocol", {"vnc": [_Arg("display", "str", optional=True)]})

_SCHEMAS = {
    "qmp_capabilities": ([_Arg("enable", "enum-list", optional=True, values=("oob",))],
                         None),
    "query-version": ([], None),
    "query-commands": ([], None),
    "query-status": ([], None),
    "quit": ([], None),
    "query-spice": ([], None),
    "client_migrate_info": ([_Arg("protocol", "str"), _Arg("hostname", "str"),
                             _Arg("port", "int", optional=True),
                             _Arg("tls-port", "int", optional=True),
                             _Arg("cert-subject", "str", optional=True)], None),
    "migrate": ([_Arg("uri", "str", optional=True), _Arg("channels", "list", optional=True),
                 _Arg("detach", "bool", optional=True),
                 _Arg("resume", "bool", optional=True)], None),
    "migrate_cancel": ([], None),
    "query-migrate": ([], None),
    "set_password": ([_Arg("protocol", "enum", values=_PROTOCOLS),
                      _Arg("password", "str"),
                      _Arg("connected", "enum", optional=True,
                           values=("keep", "fail", "disconnect"))], _VNC_BRANCH),
    "expire_password": ([_Arg("protocol", "enum", values=_PROTOCOLS),
                         _Arg("time", "str")], _VNC_BRANCH),
}

#: Every command the monitor knows.
COMMANDS = tuple(sorted(_SCHEMAS))

_EXPIRE_TIME = re.compile(r"\A\+?[0-9]+\Z")


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


class QMPProtocol(Protocol):
    """
    One QMP client connection.

    @ivar negotiated: whether the client has sent C{qmp_capabilities}
        (commands and events are only for negotiated clients).
    """

    log = Logger()

    def __init__(self, factory):
        self.factory = factory
        self.backend = factory.backend
        self.negotiated = False
        self.peer = "?"
        self._splitter = JSONSplitter(factory.maxNesting)
        self._busy = False
        self._closed = False

    # -- the connection ------------------------------------------------------------

    def connectionMade(self):
        self.peer = _describePeer(self.transport.getPeer())
        self.factory.clients.add(self)
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
        Write one message, one line of ASCII JSON ended by CRLF.

        @raise TypeError: or L{ValueError}, if it is not JSON-serializable.
        """
        data = json.dumps(message).encode("ascii") + b"\r\n"
        if not self._closed:
            self.transport.write(data)

    def sendEvent(self, message):
        if self.negotiated:
            self.send(message)

    # -- requests ------------------------------------------------------------------

    def _process(self):
        while not self._busy and not self._closed:
            item = self._splitter.next()
            if item is None:
                return
            kind, value = item
            if kind == _ERROR:
                self.log.info("QMP client {peer} sent bad input: {desc}",
                              peer=self.peer, desc=value)
                self.send({"error": {"class": GENERIC_ERROR, "desc": value}})
            else:
                self._request(value)

    def _request(self, request):
        respond = _Responder(self, request)
        if isinstance(request, dict):
            respond.secrets = _secretValues(request.get("arguments"))
        try:
            command, arguments = self._parseRequest(request)
        except QMPError as e:
            respond.error(e.errorClass, e.desc)
            return
        respond.command = command
        # Queries are what monitoring polls; only changes are worth an info line.
        log = self.log.debug if command.startswith("query-") else self.log.info
        log("QMP {peer}: {command} {arguments}", peer=self.peer, command=command,
            arguments=json.dumps(_redacted(arguments)) if arguments else "")
        d = defer.maybeDeferred(self._run, command, arguments)
        d.addCallbacks(respond.result, respond.failure)
        if not d.called:
            self._busy = True
            self._pauseReading()
            d.addBoth(self._resume)

    def _pauseReading(self):
        pause = getattr(self.transport, "pauseProducing", None)
        if pause is not None:
            pause()

    def _resume(self, _):
        self._busy = False
        if not self._closed:
            resume = getattr(self.transport, "resumeProducing", None)
            if resume is not None:
                resume()
            self._process()

    def _parseRequest(self, request):
        """
        Check the request's shape, the command and its arguments, as
        C{qmp_dispatch}.
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
        command = request["execute"]
        arguments = request.get("arguments", {})
        if command not in _SCHEMAS or (not self.negotiated and command != "qmp_capabilities"):
            if not self.negotiated:
                raise QMPError("Expecting capabilities negotiation with 'qmp_capabilities'",
                               COMMAND_NOT_FOUND)
            raise QMPError("The command %s has not been found" % (command,), COMMAND_NOT_FOUND)
        schema, branches = _SCHEMAS[command]
        checkArguments(schema, arguments, branches)
        return command, arguments

    def _run(self, command, arguments):
        handler = getattr(self, "qmp_" + command.replace("-", "_"))
        return handler(arguments)

    # -- control commands ----------------------------------------------------------

    def qmp_qmp_capabilities(self, args):
        if self.negotiated:
            raise QMPError("Capabilities negotiation is already complete, command ignored",
                           COMMAND_NOT_FOUND)
        enable = args.get("enable", [])
        if enable:
            raise QMPError("Capability %s not available" % (", ".join(enable),))
        self.negotiated = True
        return {}

    def qmp_query_version(self, args):
        return self.factory.versionInfo()

    def qmp_query_commands(self, args):
        return [{"name": name} for name in COMMANDS]

    def qmp_query_status(self, args):
        return {"running": True, "status": "running"}

    def qmp_quit(self, args):
        if self.factory.shutdown is None:
            raise QMPError("quit is not available: this monitor was started without a "
                           "shutdown handler")
        self.factory.reactor.callLater(0, self.factory.quit)
        return {}

    # -- SPICE ---------------------------------------------------------------------

    def qmp_query_spice(self, args):
        return self.backend.query_spice()

    @defer.inlineCallbacks
    def qmp_client_migrate_info(self, args):
        if args["protocol"] != "spice":
            raise QMPError("Parameter 'protocol' expects 'spice'")
        port, tls_port = args.get("port"), args.get("tls-port")
        if port is None and tls_port is None:
            raise QMPError("Parameter 'port/tls-port' is missing")
        for name, value in (("port", port), ("tls-port", tls_port)):
            if value is not None and not 0 <= value <= 65535:
                raise QMPError("Parameter '%s' expects a TCP port (0 to 65535)" % (name,))
        hostname, subject = args["hostname"], args.get("cert-subject")
        if tls_port:
            checked = yield defer.maybeDeferred(self.backend.check_target, hostname,
                                                tls_port, subject)
            if checked is not None:
                ok, reason = checked
                if not ok:
                    raise QMPError(str(reason))
                self.log.info("QMP {peer}: migration target {host}:{port} verified: {why}",
                              peer=self.peer, host=hostname, port=tls_port, why=reason)
        yield self.backend.client_migrate_info(hostname, port, tls_port, subject)
        return {}

    @defer.inlineCallbacks
    def qmp_set_password(self, args):
        if args["protocol"] != "spice":
            raise QMPError("Could not set password: spicesrv has no VNC display")
        yield self.backend.set_password(args["password"], args.get("connected", "keep"))
        return {}

    @defer.inlineCallbacks
    def qmp_expire_password(self, args):
        when = args["time"]
        if when not in ("now", "never") and not _EXPIRE_TIME.match(when):
            raise QMPError("Parameter 'time' doesn't take value '%s'" % (when,))
        if args["protocol"] != "spice":
            raise QMPError("Could not set password expire time: spicesrv has no VNC display")
        yield self.backend.expire_password(when)
        return {}

    # -- migration -----------------------------------------------------------------

    @defer.inlineCallbacks
    def qmp_migrate(self, args):
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
        yield self.backend.migrate(uri)
        return {}

    @defer.inlineCallbacks
    def qmp_migrate_cancel(self, args):
        yield self.backend.migrate_cancel()
        return {}

    @defer.inlineCallbacks
    def qmp_query_migrate(self, args):
        info = dict((yield self.backend.query_migrate()) or {})
        if info.get("status") == "none":
            del info["status"]
        return info


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


def _describePeer(address):
    host = getattr(address, "host", None)
    if host is not None:
        return "%s:%s" % (host, address.port)
    name = getattr(address, "name", None)
    if name:
        return "unix:%s" % (name.decode("utf-8", "replace") if isinstance(name, bytes)
                            else name)
    return "unix"


class QMPFactory(Factory):
    """
    The monitor: accepts QMP clients and sends them the backend's events.

    @param backend: the L{IMonitorBackend} provider commands go to.
    @param reactor: an C{IReactorTime} provider, for event timestamps and
        for C{quit}.
    @param shutdown: called with no arguments after answering C{quit}; with
        L{None}, C{quit} is refused.
    """

    log = Logger()
    maxRequestSize = MAX_REQUEST_SIZE
    maxNesting = MAX_NESTING

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

def _isLoopback(interface):
    if interface in ("localhost", "localhost6", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(interface.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def monitorEndpoint(reactor, description):
    """
    The server endpoint for a QMP monitor: C{unix:PATH[:mode=...]} (mode
    600 unless given) or C{tcp:PORT:interface=ADDR} / C{tcp6:...} on a
    loopback address.

    @raise ValueError: with a one-line reason, for anything else, in
        particular a TCP monitor reachable from other hosts: the monitor has
        no authentication.
    """
    kind = description.split(":", 1)[0].strip().lower()
    if kind == "unix":
        if "mode=" not in description:
            description += ":mode=600"
        endpoint = endpoints.serverFromString(reactor, description)
        if not isinstance(endpoint, endpoints.UNIXServerEndpoint):
            raise ValueError("QMP monitor %r is not a UNIX socket endpoint" % (description,))
        return endpoint
    if kind not in ("tcp", "tcp6"):
        raise ValueError("QMP monitor endpoint %r: use unix:PATH or tcp:PORT:interface="
                         "127.0.0.1 (the monitor has no authentication)" % (description,))
    try:
        endpoint = endpoints.serverFromString(reactor, description)
    except (ValueError, TypeError) as e:
        raise ValueError("QMP monitor endpoint %r: %s" % (description, e))
    interface = getattr(endpoint, "_interface", "")
    if not _isLoopback(interface):
        raise ValueError(
            "refusing QMP monitor %r: it would listen on %s, reachable from other hosts, and "
            "the monitor has no authentication; use unix:PATH or interface=127.0.0.1"
            % (description, repr(interface) if interface else "every interface"))
    return endpoint
