"""
The device-state transfer between two servers, as QEMU's ``migrate``
moves a VM's state to a target started with ``-incoming``: the AMP
conversation both sides speak, and its rules.  The source's half is
L{spicesrv.migration.outgoing}, the target's L{spicesrv.migration.incoming},
the URIs L{spicesrv.migration.uri}.

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
unanswered, so a transfer does not wait a round trip per chunk; the States
follow the Hello without waiting for its answer, and Commit follows the last
State as soon as it is sent: a small state crosses in one round trip.  The
target handles the commands in order, so this changes nothing it checks.

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
 - B{A failed application is undone.}  Before a device takes its new
   state the target reads its current one; if a device raises from
   C{set_migration_state} (or C{onComplete} fails), the devices that already
   took theirs get their old state back, so the target is as it was.  The
   source gets an APPLY_FAILED error naming the device and the reason, the
   target logs it, calls its C{onFailure} callback and goes on waiting for a
   correct migration: whoever reaches the incoming port can make a migration
   fail, but cannot stop the target or leave it in a mixed state.
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

from twisted.internet import error as ierror
from twisted.internet.defer import fail
from twisted.protocols import amp

from spicesrv.tls.context import ssl_error_text

#: The version of the conversation below; Hello carries it.
PROTOCOL_VERSION = 1

#: Bytes of state per State command (an AMP value holds at most 65,535).
CHUNK_SIZE = 60 * 1024


class TransferError(Exception):
    """
    A state transfer failed; C{str()} is a one-line reason.
    """


class Refused(Exception):
    """
    The target refuses the transfer; the message says why.
    """


class Busy(Exception):
    """
    The target is taken by another migration, or has had its migration.
    """


class ApplyFailed(Exception):
    """
    A device on the target rejected its state.
    """


class _Command(amp.Command):
    fatalErrors = {Refused: b"REFUSED", Busy: b"BUSY", ApplyFailed: b"APPLY_FAILED"}


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


COMMANDS = {command.commandName: command for command in (Hello, State, Commit)}


class Peer(amp.AMP):
    """
    AMP that answers only our commands and turns a peer's protocol
    violations into one logged line and a closed connection.
    """

    def locateResponder(self, name):
        if name not in COMMANDS:
            return None
        return amp.AMP.locateResponder(self, name)

    def ampBoxReceived(self, box):
        try:
            amp.AMP.ampBoxReceived(self, box)
        except (amp.NoEmptyBoxes, KeyError, TypeError, AttributeError):
            self.protocolViolation("it sent a message that is not a spicesrv migration command")

    def dispatchCommand(self, box):
        command = COMMANDS.get(box.get(amp.COMMAND))
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


def reasonText(reason):
    """
    A short text for why a connection ended or could not be made.
    """
    from OpenSSL import SSL
    value = reason.value
    if isinstance(value, amp.TooLong) or reason.check(amp.NoEmptyBoxes):
        return "it does not speak the spicesrv migration protocol (AMP)"
    if isinstance(value, SSL.Error):
        return "TLS failed: %s" % (ssl_error_text(value),)
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
