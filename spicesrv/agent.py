"""
spicesrv's own guest agent: the main channel's agent channel.

libspice-server relays AGENT_DATA between a client and a guest's
spice-vdagent; spicesrv has no guest, so it speaks the agent's side itself
and hands what the client says to an L{spicesrv.interfaces.IAgent} device
(a display source's resize and clipboard).  Three parts:

 - L{AgentReader} puts the client's AGENT_DATA back together into agent
   messages (L{spicesrv.wire.vdagent}); L{chunks} splits ours.
 - L{AgentConnection}, one per client (its main channel owns it): the
   token windows both ways, capabilities, and the dispatch of each agent
   message to an C{agent_<NAME>} method.
 - L{AgentHub}, one per server: the device, every client's connection, and
   who owns each clipboard selection.  The device sees it as
   L{spicesrv.interfaces.IAgentClients}.

Flow control, as libspice-server: INIT gives the client
L{spicesrv.wire.constants.AGENT_TOKENS} tokens, each AGENT_DATA it sends
costs one, and the server gives them back with AGENT_TOKEN in batches of
L{TOKENS_TO_SEND} as it consumes the data.  spicesrv consumes each piece as
it arrives, so a client that keeps to its window always has one.
The other way, the client's AGENT_START and AGENT_TOKEN give the server its
tokens (spice-gtk gives 0xFFFFFFFF); chunks wait in a queue without one.

Bad agent data is the client's problem only: an unknown, malformed or
oversized agent message is logged and dropped; a stream that no longer
parses (a wrong protocol number) closes that client's main channel.
"""

import base64
import json
from collections import deque, namedtuple

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from spicesrv.interfaces import IAgentClients, IMigratableState
from spicesrv.migration.seamless import (
    Base64, Boolean, Integer, ListOf, MapOf, Nested, Schema)
from spicesrv.wire.caps import caps_to_words, words_to_caps
from spicesrv.wire.schema import WireError
from spicesrv.wire.vdagent import (
    HEADER_SIZE, MAX_DATA_SIZE, PROTOCOL, AgentCap, ClipboardType, FileXferStatus, Selection,
    VDAgentMessage, agentMessages)

#: The largest agent message taken from a client (a clipboard image);
#: bigger ones are skipped.  spice-gtk's own limit is 100 MiB.
MAX_MESSAGE_SIZE = 32 * 1024 * 1024
#: Consumed client tokens are given back once this many have gathered
#: (libspice's REDS_TOKENS_TO_SEND).
TOKENS_TO_SEND = 5
#: Seconds a client has to answer a clipboard request.
REQUEST_TIMEOUT = 30.0
#: Clipboard requests that may wait for one client's answer at once.
MAX_PENDING_REQUESTS = 16

#: What spicesrv's agent announces.  Without CLIPBOARD_GRAB_SERIAL and
#: MAX_CLIPBOARD, spice-gtk sends neither serials nor its clipboard limit;
#: FILE_XFER_DISABLED makes it refuse file copies itself.
SERVER_CAPS = frozenset([
    AgentCap.MONITORS_CONFIG, AgentCap.CLIPBOARD_BY_DEMAND, AgentCap.CLIPBOARD_SELECTION,
    AgentCap.SPARSE_MONITORS_CONFIG, AgentCap.FILE_XFER_DISABLED])

SELECTIONS = frozenset(int(s) for s in Selection)

#: What L{AgentConnection.migrationState} holds, checked before the target
#: uses it (the client relays it; it is as untrusted as any client message).
AGENT_STATE = Nested(Schema(
    partial=Base64(HEADER_SIZE + MAX_MESSAGE_SIZE, default=""),
    skip=Integer(0, 0xFFFFFFFF + HEADER_SIZE, default=0),
    started=Boolean(), send_tokens=Integer(0, 0xFFFFFFFF), freed=Integer(0, 0xFFFFFFFF),
    client_caps=ListOf(Integer(0, 1023), 1024), caps_received=Boolean(),
    announced=Boolean(),
    offers=MapOf(Integer(min(SELECTIONS), max(SELECTIONS)), ListOf(Integer(0, 0xFFFFFFFF), 32),
                 len(SELECTIONS)),
    queued=ListOf(Base64(HEADER_SIZE + MAX_DATA_SIZE),
                  (HEADER_SIZE + MAX_MESSAGE_SIZE) // MAX_DATA_SIZE + 1, default=[])),
    nullable=True, default=None)


class Monitor(namedtuple("Monitor", "width height x y")):
    """
    One display as a client would like it: its size and where it is.
    """


class AgentStreamError(ValueError):
    """
    A client's agent stream no longer parses.
    """


class ClipboardUnavailable(Exception):
    """
    Clipboard data that cannot be had: nobody owns the selection, the owner
    has nothing in that type, went away or did not answer.
    """


def chunks(msgType, body):
    """
    An agent message as the AGENT_DATA bodies that carry it: the header and
    the body, cut into pieces of at most L{MAX_DATA_SIZE} bytes.
    """
    stream = VDAgentMessage.pack(protocol=PROTOCOL, type=msgType, opaque=0,
                                 size=len(body)) + body
    return [stream[i:i + MAX_DATA_SIZE] for i in range(0, len(stream), MAX_DATA_SIZE)]


class AgentReader:
    """
    Puts a client's agent stream back together.  L{feed} takes each
    AGENT_DATA body and returns the agent messages completed by it.

    A message larger than C{maxSize} is not kept: it is reported with a body
    of L{None} as soon as its header arrives, and its bytes are skipped.
    """

    def __init__(self, maxSize=MAX_MESSAGE_SIZE):
        self.maxSize = maxSize
        self._buffer = bytearray()
        self._skip = 0

    def feed(self, data):
        """
        @return: a list of C{(header, body)}: the L{VDAgentMessage} record
            and the body's bytes (L{None} for an oversized message).
        @raise AgentStreamError: a header with another protocol number.
        """
        self._buffer += data
        messages = []
        while True:
            if self._skip:
                skipped = min(self._skip, len(self._buffer))
                del self._buffer[:skipped]
                self._skip -= skipped
                if self._skip:
                    break
            if len(self._buffer) < HEADER_SIZE:
                break
            header = VDAgentMessage.unpack(bytes(self._buffer[:HEADER_SIZE]))
            if header.protocol != PROTOCOL:
                raise AgentStreamError("agent message with protocol %d, not %d"
                                       % (header.protocol, PROTOCOL))
            if header.size > self.maxSize:
                del self._buffer[:HEADER_SIZE]
                self._skip = header.size
                messages.append((header, None))
                continue
            end = HEADER_SIZE + header.size
            if len(self._buffer) < end:
                break
            messages.append((header, bytes(self._buffer[HEADER_SIZE:end])))
            del self._buffer[:end]
        return messages

    @property
    def pending(self):
        """
        Whether part of a message has arrived (or is being skipped).
        """
        return bool(self._buffer or self._skip)

    def state(self):
        return {"partial": base64.b64encode(bytes(self._buffer)).decode("ascii"),
                "skip": self._skip}

    def restore(self, fields):
        self._buffer = bytearray(base64.b64decode(fields.get("partial", "")))
        self._skip = int(fields.get("skip", 0))


class AgentConnection:
    """
    The agent channel of one client, on its main channel.

    @param hub: the server's L{AgentHub}.
    @param channel: the L{spicesrv.channels.main.MainChannel}; its
        C{sendMessage}, C{close}, C{connected}, C{channelsListSent},
        C{clock} and C{session} are used.

    Agent messages wait until the client has its channel list: spice-gtk
    reads its main channel's messages in order and takes several
    milliseconds over the agent's capabilities (it sets up its audio), so an
    answer that went first would hold back the opening of every other
    channel.

    @ivar started: the client sent AGENT_START.
    @ivar sendTokens: AGENT_DATA messages the server may still send.
    @ivar clientCaps: the L{AgentCap} numbers the client announced.
    @ivar offers: selection -> types this client owns.
    @ivar held: the client is being migrated away: the device's clipboard
        news waits (the selections in C{missed}); the target tells the
        client what it offers once the client arrives there, and a
        cancelled migration brings this server's news up to date.
    """

    log = Logger()

    def __init__(self, hub, channel):
        self.hub = hub
        self.channel = channel
        self.started = False
        self.sendTokens = 0
        self._freed = 0
        self.clientCaps = set()
        self.capsReceived = False
        self._announced = False
        self.offers = {}
        self.held = False
        self.missed = set()
        self._reader = AgentReader()
        self._queue = deque()
        self._requests = []

    def __repr__(self):
        return "<AgentConnection of session %d>" % (self.channel.session.id,)

    @property
    def sessionId(self):
        return self.channel.session.id

    @property
    def selections(self):
        """
        Whether clipboard messages carry a selection byte (both ends
        announced CLIPBOARD_SELECTION; spicesrv always does).
        """
        return AgentCap.CLIPBOARD_SELECTION in self.clientCaps

    @property
    def ready(self):
        """
        Whether the client runs its agent and knows this one's capabilities,
        so that clipboard messages may go to it.
        """
        return self.started and self.capsReceived and self._announced

    # -- from the main channel -------------------------------------------------

    def start(self, tokens):
        """
        AGENT_START: the client runs its agent and gives C{tokens}.
        """
        self.started = True
        self.sendTokens = tokens
        self._flush()

    def addTokens(self, tokens):
        """
        AGENT_TOKEN: the client gives more tokens.
        """
        self.sendTokens = min(0xFFFFFFFF, self.sendTokens + tokens)
        self._flush()

    def dataReceived(self, data):
        """
        AGENT_DATA: a piece of the client's agent stream.
        """
        try:
            messages = self._reader.feed(data)
        except AgentStreamError as e:
            self.channel.close("bad agent data: %s" % (e,))
            return
        for header, body in messages:
            if not self.channel.connected:
                return
            self._dispatch(header, body)
        self._freed += 1
        if self._freed >= TOKENS_TO_SEND:
            self.channel.sendMessage("AGENT_TOKEN", num_tokens=self._freed)
            self._freed = 0

    def close(self):
        """
        The main channel is gone.
        """
        self.hub.detach(self)
        requests, self._requests = self._requests, []
        for _, _, d in requests:
            d.errback(ClipboardUnavailable("the client went away"))
        self._queue.clear()

    # -- migration -------------------------------------------------------------

    def holdClipboardNews(self):
        """
        The client starts migrating away (MIGRATE_BEGIN): the device's
        clipboard grabs and releases no longer go to it.  Otherwise a
        target exporting the same clipboard (an X display), taking it over
        for this very client, would look like new clipboard data to it.
        """
        self.held = True

    def releaseClipboardNews(self):
        """
        The client stays (the migration was cancelled, or it could not
        reach the target): tell it what it missed.
        """
        self.held = False
        missed, self.missed = self.missed, set()
        if self.ready:
            for selection in sorted(missed):
                types = self.hub.deviceOffers.get(selection)
                if types is not None:
                    self.sendClipboard("CLIPBOARD_GRAB", selection, types=types)
                else:
                    self.sendClipboard("CLIPBOARD_RELEASE", selection)

    def deviceNews(self, _name, selection, **fields):
        """
        Tell the client of the device's grab or release of C{selection},
        unless the news is held.
        """
        if not self.ready:
            return
        if self.held:
            self.missed.add(selection)
            return
        self.sendClipboard(_name, selection, **fields)

    def migrationState(self):
        """
        This connection's state, as JSON-able data, for the main channel's
        seamless migration data.
        """
        return dict(
            self._reader.state(), started=self.started, send_tokens=self.sendTokens,
            freed=self._freed,
            client_caps=sorted(self.clientCaps), caps_received=self.capsReceived,
            announced=self._announced,
            offers={str(s): list(types) for s, types in self.offers.items()},
            queued=[base64.b64encode(c).decode("ascii") for c in self._queue])

    def restore(self, fields):
        """
        Continue from L{migrationState} of the source's connection: the
        client kept its side of the agent across a seamless migration.
        """
        self._reader.restore(fields)
        self.started = bool(fields["started"])
        self.sendTokens = int(fields["send_tokens"])
        self._freed = int(fields["freed"])
        self.clientCaps = {int(c) for c in fields["client_caps"]}
        self.capsReceived = bool(fields["caps_received"])
        self._announced = bool(fields["announced"])
        self._queue = deque(base64.b64decode(c) for c in fields.get("queued", []))
        self.hub.adopt(self, {int(s): [int(t) for t in types]
                              for s, types in fields["offers"].items()})
        if self.ready:
            self.hub.connectionReady(self)
        self._flush()

    # -- sending ---------------------------------------------------------------

    def send(self, _name, **fields):
        """
        Queue one agent message; it goes out as tokens allow.
        """
        message = agentMessages(self.selections)[_name]
        self._queue.extend(chunks(message.number, message.pack(**fields)))
        self._flush()

    def sendClipboard(self, _name, selection, **fields):
        """
        Queue a clipboard message about C{selection}.  A client without
        selections hears only about CLIPBOARD; returns whether it was sent.
        """
        if self.selections:
            fields.update(selection=selection, reserved=b"")
        elif selection != Selection.CLIPBOARD:
            return False
        self.send(_name, **fields)
        return True

    def announce(self):
        self._announced = True
        self.send("ANNOUNCE_CAPABILITIES", request=0 if self.capsReceived else 1,
                  caps=caps_to_words(SERVER_CAPS))

    def channelsListed(self):
        """
        The client has its channel list (or came back by migration, with
        its channels): what waited may go.
        """
        self._flush()

    def _flush(self):
        if not self.channel.channelsListSent:
            return
        while self._queue and self.sendTokens > 0 and self.channel.connected:
            self.sendTokens -= 1
            self.channel.sendMessage("AGENT_DATA", data=self._queue.popleft())

    def request(self, selection, type):
        """
        Ask this client for its C{selection} in C{type}: a Deferred firing
        with the bytes, or failing with L{ClipboardUnavailable}.
        """
        if not self.ready:
            return defer.fail(ClipboardUnavailable("the client's agent is not running"))
        if len(self._requests) >= MAX_PENDING_REQUESTS:
            return defer.fail(ClipboardUnavailable(
                "%d clipboard requests already wait for this client" % len(self._requests)))
        if not self.sendClipboard("CLIPBOARD_REQUEST", selection, type=type):
            return defer.fail(ClipboardUnavailable(
                "the client has no selection %d" % (selection,)))
        d = defer.Deferred()
        entry = (selection, type, d)
        self._requests.append(entry)

        def timedOut(result, timeout):
            if entry in self._requests:
                self._requests.remove(entry)
            return defer.fail(ClipboardUnavailable(
                "the client did not answer a clipboard request within %s s" % (timeout,)))
        d.addTimeout(REQUEST_TIMEOUT, self.channel.clock, onTimeoutCancel=timedOut)
        return d

    # -- receiving -------------------------------------------------------------

    def _dispatch(self, header, body):
        if body is None:
            self.channel.peerLog.warn(
                "oversized agent messages", "{session} main: dropping an agent message of "
                "type {type} and {size} bytes (more than {limit})", session=self.sessionId,
                type=header.type, size=header.size, limit=self._reader.maxSize)
            if header.type == agentMessages(False)["CLIPBOARD"].number and self._requests:
                _, _, d = self._requests.pop(0)
                d.errback(ClipboardUnavailable("the client's clipboard data is too big"))
            return
        message = agentMessages(self.selections).byNumber.get(header.type)
        if message is None:
            self.channel.peerLog.info(
                "unknown agent messages", "{session} main: ignoring agent message type {type} "
                "({size} bytes)", session=self.sessionId, type=header.type, size=len(body))
            return
        try:
            record = message.unpack(body)
        except WireError as e:
            self.channel.peerLog.warn(
                "malformed agent " + message.name, "{session} main: dropping malformed agent "
                "{name}: {error}", session=self.sessionId, name=message.name, error=e)
            return
        handler = getattr(self, "agent_" + message.name, None)
        if handler is None:
            self.channel.peerLog.info(
                "ignored agent " + message.name, "{session} main: ignoring agent {name}",
                session=self.sessionId, name=message.name)
            return
        handler(record)

    def _selection(self, record, what):
        """
        The selection a clipboard message is about, or L{None} (logged) if
        unknown.
        """
        selection = getattr(record, "selection", Selection.CLIPBOARD)
        if selection not in SELECTIONS:
            self.channel.peerLog.warn(
                "agent messages for unknown selections", "{session} main: dropping agent "
                "{what} for unknown selection {selection}", session=self.sessionId, what=what,
                selection=selection)
            return None
        return Selection(selection)

    def agent_ANNOUNCE_CAPABILITIES(self, msg):
        self.clientCaps = words_to_caps(msg.caps)
        first = not self.capsReceived
        self.capsReceived = True
        if msg.request or not self._announced:
            self.announce()
        if first and self.started:
            self.hub.connectionReady(self)

    def agent_MONITORS_CONFIG(self, msg):
        monitors = [Monitor(m.width, m.height, m.x, m.y) if m.width and m.height else None
                    for m in msg.monitors]
        self.hub.monitorsConfig(self, monitors)

    def agent_CLIPBOARD_GRAB(self, msg):
        selection = self._selection(msg, "CLIPBOARD_GRAB")
        if selection is not None:
            self.offers[selection] = list(msg.types)
            self.hub.clientGrabbed(self, selection, list(msg.types))

    def agent_CLIPBOARD_RELEASE(self, msg):
        selection = self._selection(msg, "CLIPBOARD_RELEASE")
        if selection is not None and self.offers.pop(selection, None) is not None:
            self.hub.clientReleased(self, selection)

    def agent_CLIPBOARD_REQUEST(self, msg):
        selection = self._selection(msg, "CLIPBOARD_REQUEST")
        if selection is None:
            return

        def answer(data):
            if data is None:
                self.sendClipboard("CLIPBOARD", selection, type=ClipboardType.NONE, data=b"")
            else:
                self.sendClipboard("CLIPBOARD", selection, type=msg.type, data=bytes(data))

        def failed(failure):
            self.log.failure("{session} main: the agent device failed to give its "
                             "clipboard", failure, session=self.sessionId)
            answer(None)
        self.hub.clientRequested(self, selection, msg.type).addCallbacks(answer, failed)

    def agent_CLIPBOARD(self, msg):
        selection = self._selection(msg, "CLIPBOARD")
        if selection is None:
            return
        for entry in self._requests:
            if entry[0] == selection:
                break
        else:
            self.channel.peerLog.info(
                "unasked clipboard data", "{session} main: dropping clipboard data nobody "
                "asked for", session=self.sessionId)
            return
        self._requests.remove(entry)
        _, wanted, d = entry
        if msg.type != wanted:
            d.errback(ClipboardUnavailable(
                "the client answered with type %d instead of %d" % (msg.type, wanted)))
        else:
            d.callback(msg.data)

    def agent_FILE_XFER_START(self, msg):
        self.send("FILE_XFER_STATUS", id=msg.id, result=FileXferStatus.DISABLED, data=b"")


@implementer(IAgentClients, IMigratableState)
class AgentHub:
    """
    The server's agent: its L{spicesrv.interfaces.IAgent} device, the
    clients' L{AgentConnection}s, and who owns each clipboard selection
    (the device, a client, or nobody).

    Its migration state (key C{agent.clipboard}) is what clients own, by
    session id: a client that migrates here semi-seamlessly keeps the
    selections it owned on the source.
    """

    migration_key = "agent.clipboard"
    log = Logger()

    def __init__(self, device):
        self.device = device
        self.connections = []
        self.deviceOffers = {}
        self.owners = {}
        self._arriving = {}

    # -- connections -----------------------------------------------------------

    def connect(self, channel):
        """
        A new L{AgentConnection} for a client's main channel.
        """
        connection = AgentConnection(self, channel)
        self.connections.append(connection)
        offers = self._arriving.pop(connection.sessionId, None)
        if offers:
            self.adopt(connection, offers)
        return connection

    def detach(self, connection):
        if connection in self.connections:
            self.connections.remove(connection)
        for selection in [s for s, c in self.owners.items() if c is connection]:
            del self.owners[selection]
            self._tell("clipboard_release", selection)

    def adopt(self, connection, offers):
        """
        C{connection}'s client owns C{offers} (selection -> types), as it
        did on the server it migrated from.
        """
        for selection, types in offers.items():
            if selection in SELECTIONS:
                connection.offers[Selection(selection)] = types
                self.clientGrabbed(connection, Selection(selection), types)

    def connectionReady(self, connection):
        """
        A client's agent runs: it hears what the device offers.
        """
        for selection, types in self.deviceOffers.items():
            connection.deviceNews("CLIPBOARD_GRAB", selection, types=types)

    # -- from the clients ---------------------------------------------------------

    def monitorsConfig(self, connection, monitors):
        self._tell("monitors_config", monitors)

    def clientGrabbed(self, connection, selection, types):
        self.deviceOffers.pop(selection, None)
        self.owners[selection] = connection
        self._tell("clipboard_grab", selection, types)

    def clientReleased(self, connection, selection):
        if self.owners.get(selection) is connection:
            del self.owners[selection]
            self._tell("clipboard_release", selection)

    def clientRequested(self, connection, selection, type):
        """
        A client pastes C{selection}: a Deferred firing with the device's
        bytes, or L{None} when it has nothing to give.
        """
        if selection not in self.deviceOffers:
            return defer.succeed(None)
        return defer.maybeDeferred(self.device.clipboard_request, selection, type)

    def _tell(self, method, *args):
        try:
            getattr(self.device, method)(*args)
        except Exception:
            self.log.failure("the agent device failed in {method}", method=method)

    # -- IAgentClients -------------------------------------------------------------

    def clipboard_grab(self, selection, types):
        selection = Selection(selection)
        types = [int(t) for t in types]
        self.deviceOffers[selection] = types
        owner = self.owners.pop(selection, None)
        if owner is not None:
            owner.offers.pop(selection, None)
        for connection in self.connections:
            connection.deviceNews("CLIPBOARD_GRAB", selection, types=types)

    def clipboard_release(self, selection):
        selection = Selection(selection)
        if self.deviceOffers.pop(selection, None) is None:
            return
        for connection in self.connections:
            connection.deviceNews("CLIPBOARD_RELEASE", selection)

    def clipboard_owner(self, selection):
        owner = self.owners.get(selection)
        return None if owner is None else list(owner.offers.get(selection, []))

    def clipboard_request(self, selection, type):
        owner = self.owners.get(selection)
        if owner is None:
            return defer.fail(ClipboardUnavailable("no client owns selection %d" % (selection,)))
        return owner.request(selection, type)

    # -- IMigratableState ----------------------------------------------------------

    def get_migration_state(self):
        owned = {}
        for selection, connection in self.owners.items():
            owned.setdefault(str(connection.sessionId), {})[str(int(selection))] = \
                connection.offers.get(selection, [])
        return json.dumps(owned, sort_keys=True).encode("utf-8")

    def set_migration_state(self, data):
        try:
            owned = json.loads(bytes(data).decode("utf-8"))
            offers = {int(session): {int(s): [int(t) for t in types]
                                     for s, types in selections.items()}
                      for session, selections in owned.items()}
        except (ValueError, TypeError, AttributeError) as e:
            raise ValueError("damaged agent clipboard state: %s" % (e,))
        for connection in list(self.connections):
            if connection.sessionId in offers:
                self.adopt(connection, offers.pop(connection.sessionId))
        self._arriving = offers
