"""
Moving device state from a source server to a target server, as QEMU's
``migrate`` moves a VM's state to a target started with ``-incoming``.

The source calls L{sendState} with a QEMU-style URI (``tcp:HOST:PORT``,
``unix:PATH``, or ``tls:HOST:PORT``, a spicesrv extension); the target has
called L{listenIncoming} (or L{IncomingState.listen}).  The state of every
L{IMigratableState} provider crosses in an AMP conversation
(L{twisted.protocols.amp}), always started by the source::

    Hello(version, devices=[{key, size}, ...]) -> {version, accepted, targetOnly}
    State(key, offset, data, last) -> {received}      (repeated, pipelined)
    Commit() -> {keys, bytes}

Each state is cut into L{CHUNK_SIZE} pieces, because an AMP value holds at
most 65,535 bytes.  A source keeps up to L{WINDOW} State commands
unanswered, so a transfer does not wait a round trip per chunk.

The rules:

 - B{Versioning.}  Hello carries the source's L{PROTOCOL_VERSION}; a target
   refuses a newer one with a message that says so.  Later versions may add
   optional arguments (AMP ignores arguments it does not know).
 - B{Validation first, application last.}  The target checks the Hello (every
   key known on the target, none twice, sizes within its limits) and every
   chunk (in order, within the announced size), and keeps what arrives in
   memory.  Only on Commit, with every state complete, does it call
   C{set_migration_state} on each device, in the order the source listed
   them.  A refusal is an AMP error with a one-line description, after which
   the target closes the connection.
 - B{Nothing applied unless committed.}  If the connection ends before Commit
   (the source cancelled, failed or vanished, or the target's idle timeout
   fired), the target throws away what it received and waits for another
   source.
 - B{A failed application fails the target.}  If a device raises
   L{ValueError} from C{set_migration_state}, the devices before it have
   already taken their new state: the target is then in a mixed state and
   must be considered failed, as a QEMU target whose incoming migration
   failed (QEMU exits).  The source gets an error naming the device and the
   reason; the target stops listening, refuses any further migration and
   calls its C{onFailure} callback, whose job is to shut the target down.
 - B{One migration, once.}  A target accepts one source at a time: another
   source that says Hello meanwhile gets a "busy" error and is disconnected.
   After a successful Commit the target stops listening, as QEMU's
   ``-incoming`` accepts exactly one migration; start a new target for the
   next one.
 - B{The snapshot.}  The source reads every device's state when the
   connection to the target is up, in one reactor turn, so the states are
   consistent with each other.  Changes a client makes on the source after
   that moment do not reach the target; the caller should send MIGRATE_END
   as soon as L{sendState} succeeds (QEMU stops the VM for the same reason).
 - B{After Commit is sent}, the source cannot tell whether the target applied
   the state if the connection then fails (the answer may be what was lost).
   Cancelling before Commit is sent is guaranteed to leave the target
   untouched.
 - B{Security.}  Whoever can connect to the incoming port can hand the target
   its state.  Listen on a trusted network or a UNIX socket, or use TLS with
   server options that also verify the source's certificate.
"""

import os
import re
import time

from twisted.internet import endpoints, error as ierror
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import (
    CancelledError, Deferred, fail, gatherResults, maybeDeferred, succeed)
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.protocols.policies import TimeoutMixin
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.internet.protocol import Factory, ServerFactory
from twisted.python.failure import Failure

from spicesrv.interfaces import IMigratableState

#: The version of the conversation below; Hello carries it.
PROTOCOL_VERSION = 1

#: Bytes of state per State command (an AMP value holds at most 65,535).
CHUNK_SIZE = 60 * 1024

#: State commands a source keeps unanswered at once.
WINDOW = 8

#: Target limits, unless given to L{IncomingState}.
MAX_STATE_SIZE = 256 * 1024 * 1024
MAX_TOTAL_SIZE = 1024 * 1024 * 1024
MAX_KEY_LENGTH = 200

#: Seconds a target waits for the next bytes from a source before it drops
#: the connection (and what it received).
IDLE_TIMEOUT = 60

SUPPORTED_URIS = "tcp:HOST:PORT, unix:PATH or tls:HOST:PORT"

log = Logger()


class TransferError(Exception):
    """
    A state transfer failed; C{str()} is a one-line reason.
    """


# -- URIs -------------------------------------------------------------------------------

_HOST_PORT = re.compile(r"^(\[[^\]]*\]|[^:\[\]]*):([^:]*)$")
_QEMU_TCP = re.compile(r"^(\[[^\]]*\]|[^:\[\]]*):\d+$")


def parseMigrationURI(uri, incoming=False):
    """
    Parse a migration URI in QEMU's syntax.

    @param uri: C{tcp:HOST:PORT}, C{tcp:[IPV6]:PORT}, C{unix:PATH} or
        C{tls:HOST:PORT} (TLS over TCP, a spicesrv extension).
    @param incoming: whether this is the address a target listens on; then
        the host may be empty (all interfaces, as QEMU's C{tcp::4444}) and
        the port may be 0 (any free port).
    @return: C{(kind, host, port)} with C{kind} C{"tcp"} or C{"tls"}, or
        C{("unix", path, None)}.
    @raise ValueError: with a one-line message, for anything else.
    """
    if not isinstance(uri, str) or ":" not in uri:
        raise ValueError("%r is not a migration URI: expected %s" % (uri, SUPPORTED_URIS))
    kind, rest = uri.split(":", 1)
    if kind == "unix":
        if not rest:
            raise ValueError("%r names no socket: expected unix:PATH" % (uri,))
        return ("unix", rest, None)
    if kind not in ("tcp", "tls"):
        raise ValueError("unsupported migration URI scheme %r in %r: spicesrv supports %s"
                         % (kind + ":", uri, SUPPORTED_URIS))
    match = _HOST_PORT.match(rest)
    if match is None:
        raise ValueError("%r is not %s:HOST:PORT (write an IPv6 address in brackets, "
                         "as %s:[::1]:4444)" % (uri, kind, kind))
    host, port = match.groups()
    if host.startswith("["):
        host = host[1:-1]
        if not isIPv6Address(host):
            raise ValueError("%r: %r is not an IPv6 address" % (uri, host))
    if not host and not incoming:
        raise ValueError("%r names no host: expected %s:HOST:PORT" % (uri, kind))
    if not port.isdigit() or not (0 if incoming else 1) <= int(port) <= 65535:
        raise ValueError("%r: the port must be a number from %d to 65535, not %r"
                         % (uri, 0 if incoming else 1, port))
    return (kind, host, int(port))


def _tcpClientEndpoint(reactor, host, port, timeout):
    if isIPAddress(host):
        return endpoints.TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    if isIPv6Address(host):
        return endpoints.TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return endpoints.HostnameEndpoint(reactor, host, port, timeout=timeout)


def incomingEndpoint(reactor, description, tlsOptions=None):
    """
    Return C{(endpoint, useTLS)} for the address a target listens on.

    @param description: a QEMU-style URI (C{tcp:HOST:PORT}, C{tcp::PORT}
        for every interface, C{tls:HOST:PORT}, C{unix:PATH}) or any Twisted
        server endpoint string (C{tcp:4444:interface=127.0.0.1}, C{ssl:...}).
    @param tlsOptions: server TLS options (for instance a
        L{twisted.internet.ssl.CertificateOptions}); required by C{tls:}.
        With another description they wrap the connections in TLS too.
    @return: the endpoint, and whether the caller must wrap its factory in
        TLS with C{tlsOptions}.
    @raise ValueError: with a one-line message.
    """
    kind = description.split(":", 1)[0]
    if kind == "tls" or (kind == "tcp" and _QEMU_TCP.match(description[4:])):
        kind, host, port = parseMigrationURI(description, incoming=True)
        if kind == "tls" and tlsOptions is None:
            raise ValueError("%s needs TLS options (a certificate and key for the target)"
                             % (description,))
        if isIPv6Address(host):
            endpoint = endpoints.TCP6ServerEndpoint(reactor, port, interface=host)
        else:
            endpoint = endpoints.TCP4ServerEndpoint(reactor, port, interface=host)
        return endpoint, tlsOptions is not None
    try:
        endpoint = endpoints.serverFromString(reactor, description)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError("cannot listen for incoming migrations on %r: %s (give %s, or a "
                         "Twisted endpoint such as tcp:4444:interface=127.0.0.1)"
                         % (description, e, SUPPORTED_URIS))
    return endpoint, tlsOptions is not None


# -- the AMP conversation ---------------------------------------------------------------

class _Refused(Exception):
    """
    The target refuses the transfer; the message says why.
    """


class _Busy(Exception):
    """
    The target is taken by another migration, or has had its migration.
    """


class _ApplyFailed(Exception):
    """
    A device on the target rejected its state.
    """


class _Command(amp.Command):
    fatalErrors = {_Refused: b"REFUSED", _Busy: b"BUSY", _ApplyFailed: b"APPLY_FAILED"}


class Hello(_Command):
    """
    The source's protocol version and the states it will send, with sizes.
    The answer gives the target's version, the keys it accepted, and its
    devices that the source does not send (they keep their own state).
    """
    commandName = b"Hello"
    arguments = [(b"version", amp.Integer()),
                 (b"devices", amp.AmpList([(b"key", amp.Unicode()),
                                           (b"size", amp.Integer())]))]
    response = [(b"version", amp.Integer()),
                (b"accepted", amp.ListOf(amp.Unicode())),
                (b"targetOnly", amp.ListOf(amp.Unicode()))]


class State(_Command):
    """
    One piece of one device's state, in order; C{last} marks its end.
    """
    commandName = b"State"
    arguments = [(b"key", amp.Unicode()),
                 (b"offset", amp.Integer()),
                 (b"data", amp.String()),
                 (b"last", amp.Boolean())]
    response = [(b"received", amp.Integer())]


class Commit(_Command):
    """
    Everything was sent: apply it.  Answered once every device has its state.
    """
    commandName = b"Commit"
    arguments = []
    response = [(b"keys", amp.ListOf(amp.Unicode())),
                (b"bytes", amp.Integer())]


_COMMANDS = {command.commandName: command for command in (Hello, State, Commit)}


class _Peer(amp.AMP):
    """
    AMP that answers only our commands and turns a peer's protocol
    violations into one logged line and a closed connection.
    """

    def locateResponder(self, name):
        if name not in _COMMANDS:
            return None
        return amp.AMP.locateResponder(self, name)

    def ampBoxReceived(self, box):
        try:
            amp.AMP.ampBoxReceived(self, box)
        except (amp.NoEmptyBoxes, KeyError, TypeError, AttributeError):
            self.protocolViolation("it sent a message that is not a spicesrv migration command")

    def dispatchCommand(self, box):
        command = _COMMANDS.get(box.get(amp.COMMAND))
        if command is not None:
            try:
                command.parseArguments(box, self)
            except Exception as e:
                return fail(amp.RemoteAmpError(
                    b"REFUSED", "malformed %s command (%s: %s)"
                    % (command.__name__, type(e).__name__, e), fatal=True))
        return amp.AMP.dispatchCommand(self, box)

    def protocolViolation(self, why):
        if self.transport is not None:
            self.transport.abortConnection()

    def unhandledError(self, failure):
        # A command refused or malformed that the peer sent without _ask:
        # nobody waits for the refusal, which is no reason for a traceback.
        if failure.check(amp.RemoteAmpError):
            self.protocolViolation("a command it sent without asking for the answer was "
                                   "refused: %s" % (failure.getErrorMessage(),))
            return
        amp.AMP.unhandledError(self, failure)


def _reasonText(reason):
    """
    A short text for why a connection ended or could not be made.
    """
    from OpenSSL import SSL
    value = reason.value
    if isinstance(value, amp.TooLong) or reason.check(amp.NoEmptyBoxes):
        return "it does not speak the spicesrv migration protocol (AMP)"
    if isinstance(value, SSL.Error):
        details = [entry[-1] for entry in value.args[0] if isinstance(entry, tuple)] \
            if value.args and isinstance(value.args[0], list) else []
        return "TLS failed: %s" % ("; ".join(details) or value)
    if type(value).__name__ == "VerificationError":        # from service_identity
        names = []
        for mismatch in getattr(value, "errors", ()):
            wanted = getattr(mismatch, "mismatched_id", None)
            name = getattr(wanted, "hostname", None) or getattr(wanted, "ip", None)
            if isinstance(name, bytes):
                name = name.decode("ascii", "replace")
            if name is not None:
                names.append(str(name))
        return "TLS failed: its certificate is not valid for %s" \
            % (", ".join(names) or "the name the TLS options check",)
    if isinstance(value, ierror.ConnectionDone):
        return "it closed the connection"
    if isinstance(value, ierror.ConnectionLost):
        return "the connection was lost"
    if isinstance(value, (ierror.TimeoutError, ierror.ConnectingCancelledError)):
        return "timed out"
    if isinstance(value, ierror.DNSLookupError):
        return "its name does not resolve"
    if isinstance(value, ierror.ConnectError):
        if isinstance(value.osError, int):
            return os.strerror(value.osError)
        if value.args:
            return str(value.args[0])
    return str(value) or type(value).__name__


# -- the target ---------------------------------------------------------------------------

class _IncomingProtocol(_Peer, TimeoutMixin):
    """
    One source connection to a target.
    """

    def __init__(self, incoming):
        _Peer.__init__(self)
        self.incoming = incoming
        self.expected = None      # {key: size} once Hello is accepted
        self.order = None         # keys in the source's order
        self.buffers = None       # {key: bytearray}
        self.complete = None      # keys whose last chunk arrived
        self.started = None
        self.closedBy = None      # why we closed, for the log

    @property
    def peer(self):
        try:
            address = self.transport.getPeer()
        except Exception:
            return "an unknown peer"
        if isinstance(address, (IPv4Address, IPv6Address)):
            return "%s:%s" % (address.host, address.port)
        if isinstance(address, UNIXAddress):
            return "a local process (UNIX socket)"
        return str(address)

    def connectionMade(self):
        amp.AMP.connectionMade(self)
        self.peerName = self.peer
        self.callLater = self.incoming.clock.callLater
        self.setTimeout(self.incoming.idleTimeout)
        self.incoming._connections.add(self)

    def dataReceived(self, data):
        self.resetTimeout()
        return amp.AMP.dataReceived(self, data)

    def timeoutConnection(self):
        self.closedBy = ("no data from the source for %s seconds"
                         % (self.incoming.idleTimeout,))
        self.transport.abortConnection()

    def protocolViolation(self, why):
        self.closedBy = why
        _Peer.protocolViolation(self, why)

    def connectionLost(self, reason):
        self.setTimeout(None)
        amp.AMP.connectionLost(self, reason)
        self.incoming._connectionLost(self, self.closedBy or _reasonText(reason))

    def refusing(self, handler, *args):
        try:
            return handler(self, *args)
        except (_Refused, _Busy) as e:
            self.closedBy = "refused: %s" % (e,)
            if self.incoming._active is not self:     # else the abandonment is logged
                log.warn("refused an incoming migration from {peer}: {why}",
                         peer=self.peerName, why=str(e))
            raise

    @Hello.responder
    def respondHello(self, version, devices):
        return self.refusing(self.incoming._hello, version, devices)

    @State.responder
    def respondState(self, key, offset, data, last):
        return self.refusing(self.incoming._state, key, offset, data, last)

    @Commit.responder
    def respondCommit(self):
        return self.refusing(self.incoming._commit)


class IncomingState(ServerFactory):
    """
    The target side: a factory of source connections that receives the state
    of one migration and applies it.

    @ivar state: C{"waiting"} for a source, C{"receiving"} from one,
        C{"applying"}, C{"done"} (the migration succeeded; no other is
        accepted) or C{"failed"} (a device rejected its state; the target
        holds part of the state and must be shut down).
    @ivar port: the listening port, once L{listen} succeeded; L{None} again
        after the migration ended the listening.
    @ivar stopped: a L{Deferred} that fires once the port stops listening
        after a completed or failed migration (L{None} before).
    """

    def __init__(self, devices, onComplete=None, onFailure=None, clock=None,
                 maxStateSize=MAX_STATE_SIZE, maxTotalSize=MAX_TOTAL_SIZE,
                 idleTimeout=IDLE_TIMEOUT):
        """
        @param devices: a callable returning the current list of
            L{IMigratableState} providers, e.g. C{lambda: server.migratable}.
        @param onComplete: called with no arguments once every state is
            applied, before the source gets its answer; may return a
            L{Deferred}.  If it fails, the source is told the target failed.
        @param onFailure: called with a one-line reason when a device rejected
            its state (or C{onComplete} failed): the target must then be shut
            down, as a QEMU target whose incoming migration failed.
        @param clock: the L{IReactorTime} for the idle timeout.
        @param maxStateSize: the largest state accepted for one device.
        @param maxTotalSize: the largest sum of all states.
        @param idleTimeout: seconds of silence from a source after which its
            connection is dropped (with what it sent).
        """
        if clock is None:
            from twisted.internet import reactor as clock
        self.devices = devices
        self.onComplete = onComplete
        self.onFailure = onFailure
        self.clock = clock
        self.maxStateSize = maxStateSize
        self.maxTotalSize = maxTotalSize
        self.idleTimeout = idleTimeout
        self.state = "waiting"
        self.port = None
        self.stopped = None
        self._active = None
        self._connections = set()
        self._closeWaiters = []

    def buildProtocol(self, addr):
        return _IncomingProtocol(self)

    def listen(self, reactor, description, tlsOptions=None):
        """
        Start listening; see L{incomingEndpoint} for C{description} and
        C{tlsOptions}.

        @return: a L{Deferred} firing with the listening port.
        """
        try:
            endpoint, useTLS = incomingEndpoint(reactor, description, tlsOptions)
        except ValueError as e:
            return fail(e)
        factory = TLSMemoryBIOFactory(tlsOptions, False, self) if useTLS else self
        d = endpoint.listen(factory)

        def listening(port):
            self.port = port
            log.info("waiting for an incoming migration on {address} ({host})",
                     address=description, host=port.getHost())
            return port
        return d.addCallback(listening)

    def stop(self):
        """
        Stop listening and drop every source connection (what they sent is
        discarded unless already applied).

        @return: a L{Deferred} that fires when the port and the connections
            are closed.
        """
        waits = []
        if self.port is not None:
            waits.append(maybeDeferred(self.port.stopListening))
            self.port = None
        if self.stopped is not None:
            waits.append(self.stopped)
        if self._connections:
            for proto in list(self._connections):
                proto.closedBy = proto.closedBy or "the target is stopping"
                proto.transport.abortConnection()
            closed = Deferred()
            self._closeWaiters.append(closed)
            waits.append(closed)
        return gatherResults(waits).addCallback(lambda _: None)

    # -- the responders' logic -----------------------------------------------------------

    def _targetDevices(self):
        """
        Return C{{key: device}}, or refuse if two devices share a key.
        """
        found = {}
        for device in self.devices():
            key = device.migration_key
            if key in found:
                raise _Refused("this target has two devices with the migration key %s"
                               % (key,))
            found[key] = device
        return found

    def _hello(self, proto, version, devices):
        if self.state == "done":
            raise _Busy("this target has already received a migration")
        if self.state == "failed":
            raise _Busy("this target failed an earlier migration and must be restarted")
        if self._active is not None:
            if self._active is proto:
                raise _Refused("Hello was already sent on this connection")
            raise _Busy("another migration into this target is in progress (from %s)"
                        % (self._active.peerName,))
        if version > PROTOCOL_VERSION:
            raise _Refused("the source speaks migration protocol version %d but this target "
                           "only knows version %d; upgrade the target"
                           % (version, PROTOCOL_VERSION))
        if version < 1:
            raise _Refused("bad migration protocol version %d" % (version,))
        target = self._targetDevices()
        order, sizes = [], {}
        for entry in devices:
            key, size = entry["key"], entry["size"]
            if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
                raise _Refused("bad device key %r" % (key[:MAX_KEY_LENGTH],))
            if key in sizes:
                raise _Refused("device %s is listed twice" % (key,))
            if size < 0:
                raise _Refused("device %s has a negative size" % (key,))
            if size > self.maxStateSize:
                raise _Refused("the state of %s is %d bytes; this target accepts at most %d "
                               "bytes per device" % (key, size, self.maxStateSize))
            order.append(key)
            sizes[key] = size
        unknown = [key for key in order if key not in target]
        if unknown:
            raise _Refused("unknown device%s %s (target has %s)"
                           % ("s" if len(unknown) > 1 else "", ", ".join(unknown),
                              ", ".join(sorted(target)) or "no migratable devices"))
        total = sum(sizes.values())
        if total > self.maxTotalSize:
            raise _Refused("the state is %d bytes in all; this target accepts at most %d"
                           % (total, self.maxTotalSize))
        self._active = proto
        self.state = "receiving"
        proto.expected = sizes
        proto.order = order
        proto.buffers = {key: bytearray() for key in order}
        proto.complete = set()
        proto.started = time.monotonic()
        targetOnly = sorted(set(target) - set(order))
        return {"version": PROTOCOL_VERSION, "accepted": order, "targetOnly": targetOnly}

    def _checkActive(self, proto, command):
        if self._active is not proto:
            raise _Refused("%s before an accepted Hello" % (command,))

    def _state(self, proto, key, offset, data, last):
        self._checkActive(proto, "State")
        if key not in proto.expected:
            raise _Refused("state for %s, which the Hello did not list" % (key,))
        if key in proto.complete:
            raise _Refused("more state for %s after its last piece" % (key,))
        buffer = proto.buffers[key]
        if offset != len(buffer):
            raise _Refused("state for %s at offset %d; expected offset %d"
                           % (key, offset, len(buffer)))
        end = offset + len(data)
        size = proto.expected[key]
        if end > size:
            raise _Refused("more state for %s than the %d bytes announced" % (key, size))
        if last and end != size:
            raise _Refused("the state of %s ends at %d bytes, not the %d announced"
                           % (key, end, size))
        if not last and not data:
            raise _Refused("an empty piece of state for %s" % (key,))
        buffer += data
        if last:
            proto.complete.add(key)
        return {"received": end}

    def _commit(self, proto):
        self._checkActive(proto, "Commit")
        missing = [key for key in proto.order if key not in proto.complete]
        if missing:
            raise _Refused("Commit before the state of %s was complete" % (", ".join(missing),))
        target = self._targetDevices()
        gone = [key for key in proto.order if key not in target]
        if gone:
            raise _Refused("device %s is gone from the target" % (", ".join(gone),))
        self.state = "applying"
        proto.setTimeout(None)        # the source now waits for us
        total = sum(proto.expected.values())
        buffers, proto.buffers = proto.buffers, None
        for key in proto.order:
            try:
                target[key].set_migration_state(bytes(buffers.pop(key)))
            except ValueError as e:
                why = "cannot apply the state of %s: %s" % (key, e)
            except Exception as e:
                log.failure("device {key} failed to take its migrated state", key=key)
                why = "cannot apply the state of %s: %s: %s" % (key, type(e).__name__, e)
            else:
                continue
            return self._applyFailed(proto, why, total)
        d = maybeDeferred(self.onComplete) if self.onComplete is not None else succeed(None)

        def completed(_):
            self.state = "done"
            self._active = None
            seconds = time.monotonic() - proto.started
            log.info("incoming migration from {peer}: {count} devices, {bytes} bytes in "
                     "{seconds:.3f} s ({keys})", peer=proto.peerName, count=len(proto.order),
                     bytes=total, seconds=seconds, keys=", ".join(proto.order) or "none")
            self._stopListening()
            return {"keys": proto.order, "bytes": total}

        def notCompleted(f):
            return self._applyFailed(proto, "the target failed after applying the state: %s"
                                % (f.getErrorMessage(),), total)
        return d.addCallbacks(completed, notCompleted)

    def _applyFailed(self, proto, why, total):
        self.state = "failed"
        self._active = None
        log.error("incoming migration from {peer} failed after receiving {bytes} bytes: "
                  "{why}; this target holds part of the state and must be shut down",
                  peer=proto.peerName, bytes=total, why=why)
        self._stopListening()
        if self.onFailure is not None:
            try:
                self.onFailure(why)
            except Exception:
                log.failure("the onFailure callback failed")
        raise _ApplyFailed(why + "; the target holds part of the state and must be "
                           "discarded")

    def _stopListening(self):
        if self.port is not None:
            self.stopped = maybeDeferred(self.port.stopListening)
            self.port = None

    def _connectionLost(self, proto, why):
        self._connections.discard(proto)
        if self._active is proto and self.state == "applying":
            log.warn("lost the connection from {peer} while completing its migration ({why}); "
                     "the state is applied", peer=proto.peerName, why=why)
        elif self._active is proto:
            received = sum(len(b) for b in proto.buffers.values())
            log.warn("incoming migration from {peer} abandoned after {received} of {total} "
                     "bytes ({why}); nothing was applied", peer=proto.peerName,
                     received=received, total=sum(proto.expected.values()), why=why)
            self._active = None
            proto.buffers = None
            self.state = "waiting"
        elif proto.expected is None and proto.closedBy is not None:
            log.info("dropped a connection from {peer} to the incoming migration port: {why}",
                     peer=proto.peerName, why=why)
        if not self._connections:
            waiters, self._closeWaiters = self._closeWaiters, []
            for waiter in waiters:
                waiter.callback(None)


def listenIncoming(reactor, description, devices, onComplete=None, tlsOptions=None,
                   **kwargs):
    """
    Wait for one incoming migration, as QEMU's ``-incoming``.

    @param description: where to listen: see L{incomingEndpoint}.
    @param devices: a callable returning the current list of
        L{IMigratableState} providers.
    @param onComplete: called with no arguments once the state is applied.
    @param tlsOptions: server TLS options; required by C{tls:HOST:PORT}.
    @param kwargs: more L{IncomingState} arguments (C{onFailure},
        C{maxStateSize}, C{maxTotalSize}, C{idleTimeout}).
    @return: a L{Deferred} firing with the listening port (its C{factory},
        or its C{factory.wrappedFactory} with TLS, is the L{IncomingState}).
    """
    incoming = IncomingState(devices, onComplete=onComplete, clock=reactor, **kwargs)
    return incoming.listen(reactor, description, tlsOptions)


# -- the source ---------------------------------------------------------------------------

class _SourceProtocol(_Peer):

    transfer = None

    def dataReceived(self, data):
        if self.transfer is not None:
            self.transfer.heard()
        return amp.AMP.dataReceived(self, data)

    def protocolViolation(self, why):
        if self.transfer is not None:
            self.transfer.fail("the migration target at %s does not speak the spicesrv "
                               "migration protocol (%s)" % (self.transfer.uri, why))
        _Peer.protocolViolation(self, why)

    def connectionLost(self, reason):
        # Report why first: the outstanding commands fail next, with less to say.
        if self._keyLengthLimitExceeded:
            reason = Failure(amp.TooLong(True, False, None, None))
        if self.transfer is not None:
            self.transfer.lost(reason)
        amp.AMP.connectionLost(self, reason)


class _Transfer:
    """
    One run of L{sendState}: connect, Hello, the States, Commit, close.
    """

    def __init__(self, reactor, uri, endpoint, devices, timeout):
        self.reactor = reactor
        self.uri = uri
        self.endpoint = endpoint
        self.devices = devices
        self.timeout = timeout
        self.result = Deferred(self.cancel)
        self.proto = None
        self.connecting = None
        self.timer = None
        self.outcome = None       # the result or Failure to deliver after closing
        self.phase = "connect"
        self.started = reactor.seconds()

    def start(self):
        self.heard()
        self.connecting = self.endpoint.connect(Factory.forProtocol(_SourceProtocol))
        self.connecting.addCallbacks(self.connected, self.connectFailed)
        return self.result

    # timers and endings

    def heard(self):
        if self.timer is not None and self.timer.active():
            self.timer.reset(self.timeout)
        else:
            self.timer = self.reactor.callLater(self.timeout, self.timedOut)

    def timedOut(self):
        self.timer = None
        if self.phase == "connect":
            self.fail("cannot connect to the migration target at %s: timed out after %s "
                      "seconds" % (self.uri, self.timeout))
        else:
            self.fail("the migration target at %s did not answer for %s seconds"
                      % (self.uri, self.timeout))

    def fail(self, why):
        self.finish(Failure(TransferError(why)))

    def finish(self, outcome):
        """
        Close the connection, then deliver C{outcome} (once).
        """
        if self.outcome is not None or self.result.called:
            return
        self.outcome = outcome
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None
        if self.connecting is not None:
            connecting, self.connecting = self.connecting, None
            connecting.cancel()
        if self.proto is not None and self.proto.transport is not None:
            if isinstance(outcome, Failure):
                self.proto.transport.abortConnection()
            else:
                self.proto.transport.loseConnection()
        else:
            self.deliver()

    def deliver(self):
        if not self.result.called:
            outcome, self.outcome = self.outcome, None
            if isinstance(outcome, Failure):
                self.result.errback(outcome)
            else:
                self.result.callback(outcome)

    def lost(self, reason):
        self.proto.transfer = None
        self.proto = None
        if self.outcome is None and not self.result.called:
            why = _reasonText(reason)
            if why.startswith("TLS failed: "):
                self.fail("TLS with the migration target at %s failed: %s"
                          % (self.uri, why[len("TLS failed: "):]))
            else:
                self.fail("the migration target at %s ended the transfer: %s"
                          % (self.uri, why))
        else:
            self.deliver()

    def cancel(self, result):
        """
        The canceller: abort the connection; L{result} fails with
        L{CancelledError} at once.
        """
        self.outcome = Failure(CancelledError())
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if self.connecting is not None:
            connecting, self.connecting = self.connecting, None
            connecting.cancel()
        if self.proto is not None:
            self.proto.transfer = None
            if self.proto.transport is not None:
                self.proto.transport.abortConnection()
        log.info("migration to {uri} cancelled", uri=self.uri)

    # the conversation

    def connectFailed(self, reason):
        if self.connecting is None:
            return None       # we cancelled it
        self.connecting = None
        self.fail("cannot connect to the migration target at %s: %s"
                  % (self.uri, _reasonText(reason)))

    def connected(self, proto):
        self.connecting = None
        if self.outcome is not None or self.result.called:
            proto.transport.abortConnection()
            return
        self.proto = proto
        proto.transfer = self
        self.phase = "hello"
        self.heard()
        try:
            self.states = _snapshot(self.devices)
        except TransferError as e:
            return self.fail(str(e))
        devices = [{"key": key, "size": len(data)} for key, data in self.states]
        listed = dict(Hello.arguments)[b"devices"].toStringProto(devices, proto)
        if len(listed) > amp.MAX_VALUE_LENGTH:
            return self.fail("too many devices (%d) for one Hello: their keys take %d bytes, "
                             "more than the %d AMP allows" % (len(devices), len(listed),
                                                             amp.MAX_VALUE_LENGTH))
        self.call(Hello, version=PROTOCOL_VERSION, devices=devices).addCallback(self.welcomed)

    def call(self, command, **kwargs):
        try:
            d = self.proto.callRemote(command, **kwargs)
        except Exception as e:
            d = fail(e)
        return d.addErrback(self.remoteFailed)

    def remoteFailed(self, reason):
        if reason.check(_Refused):
            self.fail("the target refused the state: %s" % (reason.getErrorMessage(),))
        elif reason.check(_Busy):
            self.fail("the migration target at %s is busy: %s"
                      % (self.uri, reason.getErrorMessage()))
        elif reason.check(_ApplyFailed):
            self.fail("the target failed: %s" % (reason.getErrorMessage(),))
        elif reason.check(amp.RemoteAmpError, amp.UnknownRemoteError):
            self.fail("the migration target at %s failed: %s"
                      % (self.uri, reason.getErrorMessage()))
        elif self.proto is None:
            pass      # the connection is gone; lost() said why
        else:
            self.fail("the migration to %s failed: %s" % (self.uri, _reasonText(reason)))
        return None   # stop the callback chain of this command

    def welcomed(self, answer):
        if answer is None or self.proto is None:
            return
        if answer["targetOnly"]:
            log.info("the migration target keeps its own state for {keys}",
                     keys=", ".join(answer["targetOnly"]))
        self.targetOnly = answer["targetOnly"]
        self.phase = "state"
        self.chunks = _chunks(self.states)
        self.states = None
        self.inflight = 0
        self.pump()

    def pump(self):
        while self.proto is not None and self.outcome is None and self.inflight < WINDOW:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            key, offset, data, last = chunk
            self.inflight += 1
            self.call(State, key=key, offset=offset, data=data, last=last) \
                .addCallback(self.stateAnswered)
        if self.inflight == 0 and self.proto is not None and self.outcome is None:
            self.phase = "commit"
            self.call(Commit).addCallback(self.committed)

    def stateAnswered(self, answer):
        if answer is None:
            return
        self.inflight -= 1
        self.pump()

    def committed(self, answer):
        if answer is None:
            return
        seconds = self.reactor.seconds() - self.started
        summary = {"keys": list(answer["keys"]), "bytes": answer["bytes"],
                   "seconds": seconds, "targetOnly": list(self.targetOnly)}
        log.info("migration state sent to {uri}: {count} devices, {bytes} bytes in "
                 "{seconds:.3f} s", uri=self.uri, count=len(summary["keys"]),
                 bytes=summary["bytes"], seconds=seconds)
        self.finish(summary)


def _snapshot(devices):
    """
    Read every device's state now: C{[(key, bytes)]}.
    """
    states, seen = [], set()
    for device in devices:
        key = getattr(device, "migration_key", None)
        if not isinstance(key, str) or not key:
            raise TransferError("device %r has no migration_key" % (device,))
        if key in seen:
            raise TransferError("two devices share the migration key %s" % (key,))
        seen.add(key)
        try:
            data = device.get_migration_state()
        except Exception as e:
            raise TransferError("cannot read the state of %s: %s: %s"
                                % (key, type(e).__name__, e))
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TransferError("the state of %s is %s, not bytes"
                                % (key, type(data).__name__))
        states.append((key, bytes(data)))
    return states


def _chunks(states):
    for key, data in states:
        if not data:
            yield key, 0, b"", True
        for offset in range(0, len(data), CHUNK_SIZE):
            piece = data[offset:offset + CHUNK_SIZE]
            yield key, offset, piece, offset + len(piece) == len(data)


def sendState(reactor, uri, devices, tlsOptions=None, timeout=60):
    """
    Send the state of C{devices} to the target listening at C{uri}.

    @param reactor: the reactor (connections and timers).
    @param uri: C{tcp:HOST:PORT}, C{unix:PATH} or C{tls:HOST:PORT}.
    @param devices: the L{IMigratableState} providers, or a callable that
        returns them.  Their state is read once the connection is up.
    @param tlsOptions: for C{tls:} only: client TLS options that check the
        target's identity (e.g. from
        L{twisted.internet.ssl.optionsForClientTLS}).  Ignored otherwise.
    @param timeout: seconds to wait for the connection, and for each answer
        of the target.
    @return: a L{Deferred} firing with C{{"keys": [...], "bytes": N,
        "seconds": S, "targetOnly": [...]}} once the target applied every
        state and the connection is closed, or failing with
        L{TransferError}.  Cancelling it aborts the connection (it then fails
        with L{CancelledError}); the target discards what it received unless
        Commit was already sent.
    """
    try:
        kind, host, port = parseMigrationURI(uri)
    except ValueError as e:
        return fail(TransferError(str(e)))
    if kind == "unix":
        endpoint = endpoints.UNIXClientEndpoint(reactor, host, timeout=timeout)
    else:
        endpoint = _tcpClientEndpoint(reactor, host, port, timeout)
        if kind == "tls":
            if tlsOptions is None:
                return fail(TransferError(
                    "%s needs TLS options that check the target's certificate" % (uri,)))
            endpoint = endpoints.wrapClientTLS(tlsOptions, endpoint)
    if callable(devices):
        devices = devices()
    devices = list(devices)
    for device in devices:
        if not IMigratableState.providedBy(device):
            return fail(TransferError("%r does not provide IMigratableState" % (device,)))
    return _Transfer(reactor, uri, endpoint, devices, timeout).start()
