"""
The base of every channel: data framing, serials, the ACK window, PING
latency probes, NOTIFY, and dispatch of client messages to C{msg_<NAME>}
methods.

A channel subclass declares its type, the two message tables, its
capabilities and its handlers.  It never sees link bytes: L{LinkProtocol}
hands it the connection once the link is done.  It never sees the server
either: it has its client's session (C{self.session}) and the server's
L{spicesrv.context.ChannelContext} (C{self.context}: devices, mouse mode,
clock, ...).
"""

from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from spicesrv.limits import GracefulClose, LogLimiter
from spicesrv.migration.seamless import (
    MSG_MIGRATE_DATA, Integer, MigrationDataError, Schema, packMigrationData,
    unpackMigrationData)
from spicesrv.wire.constants import ACK_WINDOW, NotifySeverity, NotifyVisibility
from spicesrv.wire.messages import COMMON_CLIENT, COMMON_SERVER, DataHeader, MiniDataHeader
from spicesrv.wire.schema import WireError

FULL_HEADER = DataHeader.compiled()
MINI_HEADER = MiniDataHeader.compiled()


def packHeader(mini, serial, msgType, size):
    """
    The data header of one message: the mini header (type, size) on a link
    that negotiated it, else the full one (serial, type, size, no
    sub-list), for either side of a channel.
    """
    if mini:
        return MINI_HEADER.pack(msgType, size)
    return FULL_HEADER.pack(serial, msgType, size, 0)


def unpackHeader(mini, data):
    """
    C{(msgType, size)} from the data header at the start of C{data}, which
    holds at least C{(MINI_HEADER if mini else FULL_HEADER).size} bytes.
    """
    if mini:
        return MINI_HEADER.unpack_from(data)
    _serial, msgType, size, _subList = FULL_HEADER.unpack_from(data)
    return msgType, size

# Client messages are small (agent data is chunked at 2 KiB); anything
# bigger than this is a broken or hostile peer.
MAX_CLIENT_MESSAGE = 1 << 20

# The most client messages, and bytes of them, one channel handles in one
# reactor turn; the rest wait for the next turn (with the socket not read
# meanwhile), so one client's flood cannot starve the others.
MAX_MESSAGES_PER_TURN = 64
MAX_BYTES_PER_TURN = 64 * 1024

FIRST_PING_DELAY = 0.1
PING_INTERVAL = 300.0

# Flow control: the server stops sending while more than 2 * window
# messages are unacknowledged.
ACK_WINDOW_FACTOR = 2

# SPICE_MSG_MIGRATE flags.
MIGRATE_NEED_FLUSH = 1
MIGRATE_NEED_DATA_TRANSFER = 2

class ChannelProtocol(Protocol):
    """
    One channel connection of one client.

    @cvar channelType: the L{spicesrv.wire.constants.ChannelType}.
    @cvar serverMessages: the L{MessageTable} this channel sends.
    @cvar clientMessages: the L{MessageTable} it accepts.
    @cvar handlesAcks: whether the ACK window limits what is sent (display
        and cursor, as in libspice).
    @cvar pingInterval: seconds between latency probes.

    @param session: the client's L{spicesrv.session.ClientSession}.
    @param info: the L{spicesrv.link.LinkInfo} of this link.
    """

    channelType = None
    serverMessages = COMMON_SERVER
    clientMessages = COMMON_CLIENT
    handlesAcks = False
    pingInterval = PING_INTERVAL
    migrateFlags = 0
    #: The fields of this channel's seamless migration data, checked before
    #: L{restoreMigrationData} sees them; subclasses extend it.
    migrationSchema = Schema(serial=Integer(0, 2 ** 64 - 1, default=0))
    maxClientMessage = MAX_CLIENT_MESSAGE

    log = Logger()

    def __init__(self, session, info):
        self.session = session
        self.context = session.context
        self.info = info
        self.clock = self.context.clock
        self.mini = info.mini_header
        self._buffer = bytearray()
        self._turnMessages = 0
        self._turnBytes = 0
        self._readingHeld = False
        self._continueCall = None
        self._serial = 0
        self._ackGeneration = 0
        self._clientGeneration = 0
        self.ackWindow = ACK_WINDOW
        self.unacked = 0
        self._pingId = 0
        self._pingsOut = {}
        self._pingCall = None
        self.latency = None
        self.connected = False
        self.closing = False
        self._graceful = GracefulClose(self.clock)
        self._partialCall = None
        # What the peer makes us log, at a bounded rate per connection.
        self.peerLog = LogLimiter(self.clock, self.context.limits, self.log,
                                  "{session} {channel}: ", session=session.id,
                                  channel=self.name)
        # Seamless migration: on the source, set once the client has moved
        # this channel to the target; on the target, true until the
        # channel's migration data has arrived.
        self.migratedAway = False
        self.migrationStarted = False
        self.awaitingMigrationData = False
        if session.restoringSeamlessly:
            self.awaitMigrationData()

    @classmethod
    def capabilities(cls, context):
        """
        The channel capabilities the server advertises in the link reply;
        C{context} is the server's L{spicesrv.context.ChannelContext}.
        """
        return set()

    @property
    def channelId(self):
        return self.info.channel_id

    @property
    def name(self):
        return "%s:%d" % (self.info.channel_name, self.info.channel_id)

    # -- connection ----------------------------------------------------------

    def connectionMade(self):
        self.connected = True
        self._pingCall = self.clock.callLater(FIRST_PING_DELAY, self._probe)
        self.channelUp()

    def channelUp(self):
        """
        The channel is linked; send the initial messages.  Subclasses
        override.
        """

    def connectionLost(self, reason):
        self.connected = False
        if self._pingCall is not None and self._pingCall.active():
            self._pingCall.cancel()
        self._pingCall = None
        self._stopPartialTimer()
        self._graceful.connectionLost()
        self.peerLog.flush()
        if self._continueCall is not None and self._continueCall.active():
            self._continueCall.cancel()
        self._continueCall = None
        # The session and the server must hear of the loss whatever the
        # channel's own teardown does, or a dead channel stays listed (in
        # query-spice too) and SPICE_DISCONNECTED is never sent.
        try:
            self.channelDown()
        except Exception:
            self.log.failure("{session} {channel}: releasing the channel failed",
                             session=self.session.id, channel=self.name)
        finally:
            self.session.channelLost(self)

    def channelDown(self):
        """
        The connection is gone; release what the channel holds.
        """

    def close(self, reason):
        """
        Log why, and close this one connection: what was already written
        may still go out, but a client that does not take it within
        C{server.limits.closeGrace} seconds has its connection aborted.
        """
        if self.closing:
            return
        self.closing = True
        self.log.warn("{session} {channel}: closing: {reason}",
                      session=self.session.id, channel=self.name, reason=reason)
        self._stopPartialTimer()
        self._graceful.close(self.transport, self.context.limits.closeGrace, self._aborting)

    def _aborting(self):
        self.log.warn("{session} {channel}: the client did not take the last bytes within "
                      "{grace} s of the close; aborting", session=self.session.id,
                      channel=self.name, grace=self.context.limits.closeGrace)

    # -- receiving -----------------------------------------------------------

    def dataReceived(self, data):
        if self.closing:
            return
        self._buffer += data
        header = MINI_HEADER if self.mini else FULL_HEADER
        while self.connected and not self.closing and len(self._buffer) >= header.size:
            if self._turnSpent():
                return
            msgType, size = unpackHeader(self.mini, self._buffer)
            if size > self.maxClientMessage:
                self.close("message type %d claims %d bytes, more than the %d allowed"
                           % (msgType, size, self.maxClientMessage))
                return
            end = header.size + size
            if len(self._buffer) < end:
                break
            body = bytes(self._buffer[header.size:end])
            del self._buffer[:end]
            # A message is complete: a partial one after it has its own time.
            self._stopPartialTimer()
            self._turnMessages += 1
            self._turnBytes += end
            self._dispatch(msgType, body)
        if self._buffer and self.connected and not self.closing:
            if self._partialCall is None:
                self._partialCall = self.clock.callLater(
                    self.context.limits.messageTimeout, self._partialExpired)
        else:
            self._stopPartialTimer()

    def _partialExpired(self):
        self._partialCall = None
        self.close("a partial message (%d bytes so far) did not complete within %g seconds"
                   % (len(self._buffer), self.context.limits.messageTimeout))

    def _stopPartialTimer(self):
        if self._partialCall is not None and self._partialCall.active():
            self._partialCall.cancel()
        self._partialCall = None

    # -- the reactor's share ---------------------------------------------------------

    def _turnSpent(self):
        """
        Whether to stop handling client messages for now: this reactor
        turn's share (L{MAX_MESSAGES_PER_TURN}, L{MAX_BYTES_PER_TURN}, and
        the subclass's own L{turnShareSpent}) is used up, or the channel
        holds its input (L{holdReading}).  The socket is then not read until
        the rest has been handled.
        """
        if self._readingHeld:
            self.transport.pauseProducing()
            return True
        if (self._turnMessages < MAX_MESSAGES_PER_TURN
                and self._turnBytes < MAX_BYTES_PER_TURN
                and not self.turnShareSpent()):
            return False
        self.transport.pauseProducing()
        if self._continueCall is None:
            self._continueCall = self.clock.callLater(0, self._continueReading)
        return True

    def _continueReading(self):
        """
        A new reactor turn: handle what is buffered, then read the socket
        again.
        """
        self._continueCall = None
        self._turnMessages = self._turnBytes = 0
        self.turnStarted()
        if not self.connected or self.closing or self._readingHeld:
            return
        self.dataReceived(b"")
        if (self.connected and not self.closing and self._continueCall is None
                and not self._readingHeld):
            self.transport.resumeProducing()

    def turnShareSpent(self):
        """
        Whether the work this channel's messages caused uses up its share of
        the reactor turn by a measure of its own (the inputs channel: the
        scancodes given to the keyboard).  Counted from the last
        L{turnStarted}; the base channel has no such measure.
        """
        return False

    def turnStarted(self):
        """
        The channel reads again in a new reactor turn: a subclass with a
        L{turnShareSpent} of its own starts counting afresh.
        """

    def holdReading(self):
        """
        Handle no more client messages (and read no more from the socket)
        until L{releaseReading}: for a channel whose last message left work
        it does over several reactor turns.
        """
        self._readingHeld = True

    def releaseReading(self):
        """
        Go on with the client messages after L{holdReading}, from the next
        reactor turn.
        """
        self._readingHeld = False
        if self.connected and self._continueCall is None:
            self._continueCall = self.clock.callLater(0, self._continueReading)

    def _dispatch(self, msgType, body):
        message = self.clientMessages.byNumber.get(msgType)
        if message is None:
            self.peerLog.info("unknown message types",
                              "{session} {channel}: ignoring unknown message type {type} "
                              "({size} bytes)", session=self.session.id, channel=self.name,
                              type=msgType, size=len(body))
            return
        try:
            record = message.unpack(body, exact=False)
        except WireError as e:
            self.close("malformed %s: %s" % (message.name, e))
            return
        handler = getattr(self, "msg_" + message.name, None)
        if handler is None:
            self.peerLog.info("ignored " + message.name,
                              "{session} {channel}: ignoring {msgname}",
                              session=self.session.id, channel=self.name,
                              msgname=message.name)
            return
        handler(record)

    # -- sending -------------------------------------------------------------

    def sendMessage(self, _name, **fields):
        """
        Pack and send one message from this channel's server table.
        """
        message = self.serverMessages[_name]
        self.sendRaw(message.number, message.pack(**fields), counted=_name != "SET_ACK")

    def sendRaw(self, msgType, body, counted=True):
        if not self.connected or self.migratedAway:
            return
        if self.migrationStarted and msgType != MSG_MIGRATE_DATA:
            # After SPICE_MSG_MIGRATE the client reads exactly one more
            # message here, and it must be the migration data.
            return
        self._serial += 1
        header = packHeader(self.mini, self._serial, msgType, len(body))
        self.transport.writeSequence([header, body])
        if counted and self.handlesAcks:
            self.unacked += 1

    def canSend(self):
        """
        Whether the ACK window allows another message now.
        """
        return not self.handlesAcks or self.unacked <= ACK_WINDOW_FACTOR * self.ackWindow

    def windowOpened(self):
        """
        An ACK made room in the window; subclasses send what waited.
        """

    def sendSetAck(self, window=None):
        if window is not None:
            self.ackWindow = window
        self._ackGeneration += 1
        self.unacked = 0
        self.sendMessage("SET_ACK", generation=self._ackGeneration, window=self.ackWindow)

    def notify(self, text, severity=NotifySeverity.INFO, visibility=NotifyVisibility.LOW,
               what=0):
        """
        Send a NOTIFY with C{text}; the text is sent with a terminating NUL,
        as libspice-server does.
        """
        message = text.encode("utf-8") + b"\0"
        self.sendMessage("NOTIFY", time_stamp=int(self.clock.seconds() * 1e6),
                         severity=severity, visibility=visibility, what=what,
                         message=message)

    # -- common client messages ----------------------------------------------

    def msg_ACK_SYNC(self, msg):
        self._clientGeneration = msg.generation

    def msg_ACK(self, msg):
        if self._clientGeneration != self._ackGeneration:
            return
        self.unacked = max(0, self.unacked - self.ackWindow)
        if self.handlesAcks:
            self.windowOpened()

    def msg_PONG(self, msg):
        sent = self._pingsOut.pop(msg.id, None)
        if sent is None:
            return
        self.latency = self.clock.seconds() - sent

    # -- seamless migration ----------------------------------------------------

    def startMigration(self):
        """
        The source's half: tell the client to move this channel to the
        target (SPICE_MSG_MIGRATE).  Without data to transfer the channel is
        gone at once; otherwise the client's FLUSH_MARK asks for the data.
        """
        self.sendMessage("MIGRATE", flags=self.migrateFlags)
        self.migrationStarted = True
        if not self.migrateFlags & MIGRATE_NEED_DATA_TRANSFER:
            self.migratedAway = True

    def msg_MIGRATE_FLUSH_MARK(self, msg):
        if self.migrateFlags & MIGRATE_NEED_DATA_TRANSFER:
            self.sendMessage("MIGRATE_DATA", data=packMigrationData(self.migrationData()))
        self.migratedAway = True

    def migrationData(self):
        """
        The state of this channel the target needs, as a JSON-able dict.
        """
        return {"serial": self._serial}

    def msg_MIGRATE_DATA(self, msg):
        if not self.awaitingMigrationData:
            self.close("unexpected migration data")
            return
        try:
            fields = self.migrationSchema.check(unpackMigrationData(msg.data))
        except MigrationDataError as e:
            self.close("bad migration data: %s" % (e,))
            return
        self._serial = fields["serial"]
        try:
            self.restoreMigrationData(fields)
        except Exception as e:
            self.log.failure("{session} {channel}: cannot continue from the migration data",
                             session=self.session.id, channel=self.name)
            self.close("cannot continue from the migration data: %s: %s"
                       % (type(e).__name__, e))
            return
        self.awaitingMigrationData = False
        self.session.channelRestored(self)

    def awaitMigrationData(self):
        """
        The target's half: this channel continues a seamless migration and
        waits for its MIGRATE_DATA, if its type carries any.
        """
        self.awaitingMigrationData = bool(self.migrateFlags & MIGRATE_NEED_DATA_TRANSFER)

    def restoreMigrationData(self, fields):
        """
        The target's half: continue from the state in C{fields}, the
        migration data checked against L{migrationSchema} (every field
        declared there, defaults filled in, nothing else).
        """

    def msg_DISCONNECTING(self, msg):
        self.peerLog.info("DISCONNECTING",
                          "{session} {channel}: client is disconnecting (reason {reason})",
                          session=self.session.id, channel=self.name, reason=msg.reason)

    # -- latency -------------------------------------------------------------

    def _probe(self):
        """
        Send a PING pair (warm-up and measurement) and schedule the next.
        """
        self._pingCall = None
        if not self.connected:
            return
        for _ in range(2):
            self._pingId += 1
            now = self.clock.seconds()
            self._pingsOut[self._pingId] = now
            self.sendMessage("PING", id=self._pingId, timestamp=int(now * 1e9), padding=b"")
        # Forget probes never answered, so a silent client costs no memory.
        for stale in [k for k in self._pingsOut if k < self._pingId - 1]:
            del self._pingsOut[stale]
        self._pingCall = self.clock.callLater(self.pingInterval, self._probe)
