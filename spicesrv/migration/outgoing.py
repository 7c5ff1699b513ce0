"""
The source's half of the device-state transfer: L{sendState} connects to a
target, snapshots every L{IMigratableState} device and sends it.  The
conversation and its rules are in L{spicesrv.migration.statewire}.
"""

from twisted.internet import endpoints
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols import amp
from twisted.python.failure import Failure

from spicesrv.interfaces import IMigratableState
from spicesrv.migration.statewire import (
    CHUNK_SIZE, PROTOCOL_VERSION, ApplyFailed, Busy, Commit, Hello, Peer, Refused, State,
    TransferError, reasonText)
from spicesrv.migration.uri import parseMigrationURI, tcpClientEndpoint

#: State commands a source keeps unanswered at once.
WINDOW = 8

log = Logger()


class _SourceProtocol(Peer):

    transfer = None

    def dataReceived(self, data):
        if self.transfer is not None:
            self.transfer.heard()
        return amp.AMP.dataReceived(self, data)

    def protocolViolation(self, why):
        if self.transfer is not None:
            self.transfer.fail("the migration target at %s does not speak the spicesrv "
                               "migration protocol (%s)" % (self.transfer.uri, why))
        Peer.protocolViolation(self, why)

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
            why = reasonText(reason)
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
                  % (self.uri, reasonText(reason)))

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
        # The States follow the Hello at once, without waiting for its answer:
        # the target handles commands in order and refuses a State that no
        # accepted Hello announced (a refused Hello closes the connection),
        # so waiting would only cost a round trip per migration.
        self.targetOnly = []
        self.phase = "state"
        self.chunks = _chunks(self.states)
        self.states = None
        self.inflight = 0
        self.pump()

    def call(self, command, **kwargs):
        try:
            d = self.proto.callRemote(command, **kwargs)
        except Exception as e:
            d = fail(e)
        return d.addErrback(self.remoteFailed)

    def remoteFailed(self, reason):
        if reason.check(Refused):
            self.fail("the target refused the state: %s" % (reason.getErrorMessage(),))
        elif reason.check(Busy):
            self.fail("the migration target at %s is busy: %s"
                      % (self.uri, reason.getErrorMessage()))
        elif reason.check(ApplyFailed):
            self.fail("the target failed: %s" % (reason.getErrorMessage(),))
        elif reason.check(amp.RemoteAmpError, amp.UnknownRemoteError):
            self.fail("the migration target at %s failed: %s"
                      % (self.uri, reason.getErrorMessage()))
        elif self.proto is None:
            pass      # the connection is gone; lost() said why
        else:
            self.fail("the migration to %s failed: %s" % (self.uri, reasonText(reason)))
        return None   # stop the callback chain of this command

    def welcomed(self, answer):
        if answer is None or self.proto is None:
            return
        if answer["targetOnly"]:
            log.info("the migration target keeps its own state for {keys}",
                     keys=", ".join(answer["targetOnly"]))
        self.targetOnly = answer["targetOnly"]

    def pump(self):
        while (self.chunks is not None and self.proto is not None and self.outcome is None
               and self.inflight < WINDOW):
            chunk = next(self.chunks, None)
            if chunk is None:
                # Every State is on its way: Commit follows them at once (the
                # target takes it only after each of them was accepted).
                self.chunks = None
                self.phase = "commit"
                self.call(Commit).addCallback(self.committed)
                break
            key, offset, data, last = chunk
            self.inflight += 1
            self.call(State, key=key, offset=offset, data=data, last=last) \
                .addCallback(self.stateAnswered)

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
        endpoint = tcpClientEndpoint(reactor, host, port, timeout)
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
