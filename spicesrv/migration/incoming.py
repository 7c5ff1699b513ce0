"""
The target's half of the device-state transfer (QEMU's ``-incoming``): wait
for one source, check everything it sends, apply it on Commit.  The
conversation and its rules are in L{spicesrv.migration.statewire}.
"""

import time

from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred, succeed
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.protocols.policies import TimeoutMixin
from twisted.protocols.tls import TLSMemoryBIOFactory

from spicesrv.address import describe_peer
from spicesrv.migration.statewire import (
    PROTOCOL_VERSION, ApplyFailed, Busy, Commit, Hello, Peer, Refused, State, reasonText)
from spicesrv.migration.uri import incomingEndpoint

#: Target limits, unless given to L{IncomingState}.
MAX_STATE_SIZE = 256 * 1024 * 1024
MAX_TOTAL_SIZE = 1024 * 1024 * 1024
MAX_KEY_LENGTH = 200

#: Seconds a target waits for the next bytes from a source before it drops
#: the connection (and what it received).
IDLE_TIMEOUT = 60

log = Logger()


class _IncomingProtocol(Peer, TimeoutMixin):
    """
    One source connection to a target.
    """

    def __init__(self, incoming):
        Peer.__init__(self)
        self.incoming = incoming
        self.expected = None      # {key: size} once Hello is accepted
        self.order = None         # keys in the source's order
        self.buffers = None       # {key: bytearray}
        self.complete = None      # keys whose last chunk arrived
        self.started = None
        self.closedBy = None      # why we closed, for the log

    def connectionMade(self):
        amp.AMP.connectionMade(self)
        self.peerName = describe_peer(self.transport.getPeer())
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
        Peer.protocolViolation(self, why)

    def connectionLost(self, reason):
        self.setTimeout(None)
        amp.AMP.connectionLost(self, reason)
        self.incoming._connectionLost(self, self.closedBy or reasonText(reason))

    def refusing(self, handler, *args):
        try:
            return handler(self, *args)
        except (Refused, Busy) as e:
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

    @ivar state: C{"waiting"} for a source (again, after a failed one),
        C{"receiving"} from one, C{"applying"}, or C{"done"} (the migration
        succeeded; no other is accepted).
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
            its state (or C{onComplete} failed), after the devices got their
            old state back; the target keeps waiting for another migration.
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
                raise Refused("this target has two devices with the migration key %s"
                               % (key,))
            found[key] = device
        return found

    def _hello(self, proto, version, devices):
        if self.state == "done":
            raise Busy("this target has already received a migration")
        if self._active is not None:
            if self._active is proto:
                raise Refused("Hello was already sent on this connection")
            raise Busy("another migration into this target is in progress (from %s)"
                        % (self._active.peerName,))
        if version > PROTOCOL_VERSION:
            raise Refused("the source speaks migration protocol version %d but this target "
                           "only knows version %d; upgrade the target"
                           % (version, PROTOCOL_VERSION))
        if version < 1:
            raise Refused("bad migration protocol version %d" % (version,))
        target = self._targetDevices()
        order, sizes = [], {}
        for entry in devices:
            key, size = entry["key"], entry["size"]
            if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
                raise Refused("bad device key %r" % (key[:MAX_KEY_LENGTH],))
            if key in sizes:
                raise Refused("device %s is listed twice" % (key,))
            if size < 0:
                raise Refused("device %s has a negative size" % (key,))
            if size > self.maxStateSize:
                raise Refused("the state of %s is %d bytes; this target accepts at most %d "
                               "bytes per device" % (key, size, self.maxStateSize))
            order.append(key)
            sizes[key] = size
        unknown = [key for key in order if key not in target]
        if unknown:
            raise Refused("unknown device%s %s (target has %s)"
                           % ("s" if len(unknown) > 1 else "", ", ".join(unknown),
                              ", ".join(sorted(target)) or "no migratable devices"))
        total = sum(sizes.values())
        if total > self.maxTotalSize:
            raise Refused("the state is %d bytes in all; this target accepts at most %d"
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
            raise Refused("%s before an accepted Hello" % (command,))

    def _state(self, proto, key, offset, data, last):
        self._checkActive(proto, "State")
        if key not in proto.expected:
            raise Refused("state for %s, which the Hello did not list" % (key,))
        if key in proto.complete:
            raise Refused("more state for %s after its last piece" % (key,))
        buffer = proto.buffers[key]
        if offset != len(buffer):
            raise Refused("state for %s at offset %d; expected offset %d"
                           % (key, offset, len(buffer)))
        end = offset + len(data)
        size = proto.expected[key]
        if end > size:
            raise Refused("more state for %s than the %d bytes announced" % (key, size))
        if last and end != size:
            raise Refused("the state of %s ends at %d bytes, not the %d announced"
                           % (key, end, size))
        if not last and not data:
            raise Refused("an empty piece of state for %s" % (key,))
        buffer += data
        if last:
            proto.complete.add(key)
        return {"received": end}

    def _commit(self, proto):
        self._checkActive(proto, "Commit")
        missing = [key for key in proto.order if key not in proto.complete]
        if missing:
            raise Refused("Commit before the state of %s was complete" % (", ".join(missing),))
        target = self._targetDevices()
        gone = [key for key in proto.order if key not in target]
        if gone:
            raise Refused("device %s is gone from the target" % (", ".join(gone),))
        self.state = "applying"
        proto.setTimeout(None)        # the source now waits for us
        total = sum(proto.expected.values())
        buffers, proto.buffers = proto.buffers, None
        saved, why = self._applyAll(target, proto.order, buffers)
        if why is not None:
            return self._applyFailed(proto, why, total, target, saved)
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
                                     % (f.getErrorMessage(),), total, target, saved)
        return d.addCallbacks(completed, notCompleted)

    def _applyAll(self, target, order, buffers):
        """
        Give each device in C{order} its state from C{buffers}, first reading
        the state it has, to put back if a later step fails.

        @return: C{(saved, why)}: C{[(key, old state)]} of the devices that
            took their new state, and a one-line reason if one did not
            (L{None} if all did).
        """
        saved = []
        for key in order:
            device = target[key]
            try:
                old = device.get_migration_state()
            except Exception as e:
                log.failure("device {key} cannot give its state before taking a migrated one",
                            key=key)
                return saved, ("cannot apply the state of %s: its current state cannot be "
                               "saved first (%s: %s)" % (key, type(e).__name__, e))
            try:
                device.set_migration_state(bytes(buffers.pop(key)))
            except ValueError as e:
                # A refusal: the device is as it was (IMigratableState).
                return saved, "cannot apply the state of %s: %s" % (key, e)
            except Exception as e:
                log.failure("device {key} failed to take its migrated state", key=key)
                # It may have taken part of it: give it its own back too.
                saved.append((key, old))
                return saved, ("cannot apply the state of %s: %s: %s"
                               % (key, type(e).__name__, e))
            saved.append((key, old))
        return saved, None

    def _rollBack(self, target, saved):
        """
        Put back the state each device in C{saved} had before the failed
        migration; return the keys of those that refused it.
        """
        stuck = []
        for key, old in reversed(saved):
            try:
                target[key].set_migration_state(old)
            except Exception:
                log.failure("device {key} cannot take back its own state after a failed "
                            "incoming migration", key=key)
                stuck.append(key)
        return stuck

    def _applyFailed(self, proto, why, total, target, saved):
        """
        Undo what the failed migration applied, tell the source (by raising
        L{ApplyFailed}) and wait for another migration.
        """
        stuck = self._rollBack(target, saved)
        self.state = "waiting"
        self._active = None
        if stuck:
            outcome = ("%s kept part of the refused state; the target waits for another "
                       "migration" % (", ".join(stuck),))
        else:
            outcome = "nothing was applied; the target waits for another migration"
        log.error("incoming migration from {peer} failed after receiving {bytes} bytes: "
                  "{why}; {outcome}", peer=proto.peerName, bytes=total, why=why,
                  outcome=outcome)
        if self.onFailure is not None:
            try:
                self.onFailure(why)
            except Exception:
                log.failure("the onFailure callback failed")
        raise ApplyFailed("%s; %s" % (why, outcome))

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
