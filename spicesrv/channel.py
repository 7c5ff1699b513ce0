"""
The base of every channel: data framing, serials, the ACK window, PING
latency probes, NOTIFY, and dispatch of client messages to C{msg_<NAME>}
methods.

A channel subclass declares its type, the two message tables, its
capabilities and its handlers.  It never sees link bytes: L{LinkProtocol}
hands it the connection once the link is done.
"""

import json
import struct

from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from spicesrv.wire.constants import ACK_WINDOW, Notify
from spicesrv.wire.messages import COMMON_CLIENT, COMMON_SERVER, DataHeader, MiniDataHeader
from spicesrv.wire.schema import WireError

FULL_HEADER = DataHeader.compiled()
MINI_HEADER = MiniDataHeader.compiled()

# Client messages are small (agent data is chunked at 2 KiB); anything
# bigger than this is a broken or hostile peer.
MAX_CLIENT_MESSAGE = 1 << 20

FIRST_PING_DELAY = 0.1
PING_INTERVAL = 300.0

# Flow control: the server stops sending while more than 2 * window
# messages are unacknowledged.
ACK_WINDOW_FACTOR = 2

# SPICE_MSG_MIGRATE flags.
MIGRATE_NEED_FLUSH = 1
MIGRATE_NEED_DATA_TRANSFER = 2

# Seamless migration data between two spicesrv servers: the client relays it
# without looking, so the format is spicesrv's own (protocol.md 5.8): a
# magic, a version, then JSON.
MIGRATION_DATA_MAGIC = b"SPSV"
MIGRATION_DATA_VERSION = 1
MIGRATION_DATA_HEADER = struct.Struct("<4sI")
MSG_MIGRATE_DATA = COMMON_SERVER["MIGRATE_DATA"].number


class MigrationDataError(ValueError):
    """
    Seamless migration data this server cannot take.
    """


def packMigrationData(fields):
    return (MIGRATION_DATA_HEADER.pack(MIGRATION_DATA_MAGIC, MIGRATION_DATA_VERSION)
            + json.dumps(fields, sort_keys=True).encode("utf-8"))


def _notJSON(name):
    raise MigrationDataError("unreadable migration data: %s is not JSON" % (name,))


def _finite(text):
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise MigrationDataError("unreadable migration data: %s is out of range" % (text,))
    return value


def unpackMigrationData(data):
    if len(data) < MIGRATION_DATA_HEADER.size:
        raise MigrationDataError("%d bytes are too short for migration data" % len(data))
    magic, version = MIGRATION_DATA_HEADER.unpack_from(data)
    if magic != MIGRATION_DATA_MAGIC:
        raise MigrationDataError("migration data with magic %r, not spicesrv's %r (the "
                                 "source is not a spicesrv server)"
                                 % (magic, MIGRATION_DATA_MAGIC))
    if version > MIGRATION_DATA_VERSION:
        raise MigrationDataError("migration data version %d is newer than this server's %d"
                                 % (version, MIGRATION_DATA_VERSION))
    try:
        fields = json.loads(data[MIGRATION_DATA_HEADER.size:].decode("utf-8"),
                            parse_constant=_notJSON, parse_float=_finite)
    except RecursionError:
        raise MigrationDataError("unreadable migration data: nested too deeply")
    except ValueError as e:
        raise MigrationDataError("unreadable migration data: %s" % (e,))
    if not isinstance(fields, dict):
        raise MigrationDataError("migration data is not an object")
    return fields


class ChannelProtocol(Protocol):
    """
    One channel connection of one client.

    @cvar channelType: the L{spicesrv.wire.constants.ChannelType}.
    @cvar serverMessages: the L{MessageTable} this channel sends.
    @cvar clientMessages: the L{MessageTable} it accepts.
    @cvar handlesAcks: whether the ACK window limits what is sent (display
        and cursor, as in libspice).
    @cvar pingInterval: seconds between latency probes.
    """

    channelType = None
    serverMessages = COMMON_SERVER
    clientMessages = COMMON_CLIENT
    handlesAcks = False
    pingInterval = PING_INTERVAL
    migrateFlags = 0
    maxClientMessage = MAX_CLIENT_MESSAGE

    log = Logger()

    def __init__(self, server, session, info):
        self.server = server
        self.session = session
        self.info = info
        self.clock = server.clock
        self.mini = info.mini_header
        self._buffer = bytearray()
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
        # Seamless migration: on the source, set once the client has moved
        # this channel to the target; on the target, true until the
        # channel's migration data has arrived.
        self.migratedAway = False
        self.migrationStarted = False
        self.awaitingMigrationData = (session.seamlessIn
                                      and bool(self.migrateFlags & MIGRATE_NEED_DATA_TRANSFER))

    @classmethod
    def capabilities(cls, server):
        """
        The channel capabilities the server advertises in the link reply.
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
        # Whatever a subclass's channelDown raises, the channel leaves its
        # session and SPICE_DISCONNECTED is reported.
        try:
            self.channelDown()
        finally:
            try:
                self.session.channelLost(self)
            finally:
                self.server.channelClosed(self)

    def channelDown(self):
        """
        The connection is gone; release what the channel holds.
        """

    def close(self, reason):
        """
        Log why, and close this one connection.
        """
        self.log.warn("{session} {channel}: closing: {reason}",
                      session=self.session.id, channel=self.name, reason=reason)
        self.transport.loseConnection()

    # -- receiving -----------------------------------------------------------

    def dataReceived(self, data):
        self._buffer += data
        header = MINI_HEADER if self.mini else FULL_HEADER
        while self.connected and len(self._buffer) >= header.size:
            if self.mini:
                msgType, size = header.unpack_from(self._buffer)
            else:
                _serial, msgType, size, _subList = header.unpack_from(self._buffer)
            if size > self.maxClientMessage:
                self.close("message type %d claims %d bytes, more than the %d allowed"
                           % (msgType, size, self.maxClientMessage))
                return
            end = header.size + size
            if len(self._buffer) < end:
                return
            body = bytes(self._buffer[header.size:end])
            del self._buffer[:end]
            self._dispatch(msgType, body)

    def _dispatch(self, msgType, body):
        message = self.clientMessages.byNumber.get(msgType)
        if message is None:
            self.log.info("{session} {channel}: ignoring unknown message type {type} "
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
            self.log.info("{session} {channel}: ignoring {msgname}",
                          session=self.session.id, channel=self.name, msgname=message.name)
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
        if self.mini:
            header = MINI_HEADER.pack(msgType, len(body))
        else:
            header = FULL_HEADER.pack(self._serial, msgType, len(body), 0)
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

    def notify(self, text, severity=Notify.SEVERITY_INFO, visibility=Notify.VISIBILITY_LOW,
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
            fields = unpackMigrationData(msg.data)
            self._serial = int(fields.get("serial", 0))
            self.restoreMigrationData(fields)
        except (MigrationDataError, ValueError, TypeError, KeyError, OverflowError) as e:
            self.close("bad migration data: %s" % (e,))
            return
        self.awaitingMigrationData = False
        self.session.channelRestored(self)

    def restoreMigrationData(self, fields):
        """
        The target's half: continue from the state in C{fields}.
        """

    def msg_DISCONNECTING(self, msg):
        self.log.info("{session} {channel}: client is disconnecting (reason {reason})",
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
