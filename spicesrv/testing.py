"""
Helpers for testing spicesrv and code built on it without sockets: the
client side of the link stage, a reader of server messages, an in-memory
server wired to a L{StringTransport}, one capture of log events, and a
verified fake of every interface in L{spicesrv.interfaces} (L{FAKES}).

    server = makeTestServer(password="pw")
    client = connectChannel(server, ChannelType.MAIN, password="pw")
    init = client.next("INIT")
"""

import struct

import numpy
from twisted.internet.task import Clock
from zope.interface import implementer
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.plugin import IPlugin

from spicesrv import keys
from spicesrv.agent import AgentReader, chunks
from spicesrv.channel import FULL_HEADER, MINI_HEADER, packHeader, unpackHeader
from spicesrv.display import encoders as enc
from spicesrv.display.cursor import Cursor
from spicesrv.sources.base import FramebufferSource
from spicesrv.sound.device import PlaybackDevice, RecordDevice
from spicesrv.interfaces import (
    IAgent, IAgentClients, IChannelPlugin, IDisplayObserver, IDisplaySource, IKeyboard, IMigratableState,
    IMigration, IMonitorBackend, IMonitorLayout, IMouse, IPlaybackObserver, IPlaybackSource, IPluginOption,
    IRecordObserver, IRecordSink, ISoundPlugin, ISource, ISourcePlugin, ISpiceBase, ITablet)
from spicesrv.plugin import Option
from spicesrv.wire import caps as capwords
from spicesrv.wire.constants import (
    LINK_REPLY_SIZE, MAGIC, VERSION_MAJOR, VERSION_MINOR, AuthMechanism, ChannelType,
    CommonCap, KeyModifier, LinkErr)
from spicesrv.wire.messages import (
    CURSOR_SERVER, DISPLAY_SERVER, INPUTS_SERVER, MAIN_SERVER, LinkHeader, LinkMess, LinkReply,
    COMMON_SERVER, DISPLAY_CLIENT, MAIN_CLIENT)
from spicesrv.wire.port import PORT_SERVER
from spicesrv.wire.sound import PLAYBACK_SERVER, RECORD_SERVER
from spicesrv.wire.vdagent import CLIPBOARD_MESSAGES, AgentCap, agentMessages

#: The server message table of each built-in channel type, which
#: L{TestClientChannel} reads the server's messages with.
SERVER_TABLES = {
    ChannelType.MAIN: MAIN_SERVER,
    ChannelType.DISPLAY: DISPLAY_SERVER,
    ChannelType.INPUTS: INPUTS_SERVER,
    ChannelType.CURSOR: CURSOR_SERVER,
    ChannelType.PORT: PORT_SERVER,
    ChannelType.PLAYBACK: PLAYBACK_SERVER,
    ChannelType.RECORD: RECORD_SERVER,
}

#: The common capabilities a test client announces: auth selection, SPICE
#: auth and the mini header, as spice-gtk does.
CLIENT_COMMON_CAPS = {CommonCap.PROTOCOL_AUTH_SELECTION, CommonCap.AUTH_SPICE,
                      CommonCap.MINI_HEADER}

_testKey = None


def testKey():
    """
    One RSA key shared by all tests (generating keys is slow).
    """
    global _testKey
    if _testKey is None:
        _testKey = keys.generate_key()
    return _testKey


def testKeyPool():
    """
    A key pool that hands out the shared test key at once, in the reactor
    thread.
    """
    return keys.KeyPool(size=1, generate=testKey, inThread=False)


def linkMessage(channel_type, channel_id=0, connection_id=0,
                common_caps=CLIENT_COMMON_CAPS, channel_caps=(), major=VERSION_MAJOR):
    """
    The bytes a client sends to start linking a channel.
    """
    common = capwords.caps_to_words(common_caps)
    channel = capwords.caps_to_words(channel_caps)
    mess = LinkMess.pack(connection_id=connection_id, channel_type=channel_type,
                         channel_id=channel_id, num_common_caps=len(common),
                         num_channel_caps=len(channel), caps_offset=18)
    body = mess + capwords.pack_words(common + channel)
    return LinkHeader.pack(magic=MAGIC, major_version=major, minor_version=VERSION_MINOR,
                           size=len(body)) + body


def parseLinkReply(data):
    """
    Parse the server's link header and reply; returns
    C{(reply, common_caps, channel_caps, rest)}.
    """
    header = LinkHeader.unpack(data[:16])
    if header.size < LINK_REPLY_SIZE or len(data) < 16 + header.size:
        raise ValueError("short link reply (%d bytes)" % len(data))
    body = data[16:16 + header.size]
    reply = LinkReply.unpack(body[:LINK_REPLY_SIZE])
    words = capwords.unpack_words(body[reply.caps_offset:],
                                  reply.num_common_caps + reply.num_channel_caps)
    common = capwords.words_to_caps(words[:reply.num_common_caps])
    channel = capwords.words_to_caps(words[reply.num_common_caps:])
    return reply, common, channel, data[16 + header.size:]


def ticketBytes(reply, password=""):
    """
    The auth mechanism and the encrypted ticket for a link reply.
    """
    return struct.pack("<I", AuthMechanism.SPICE) + keys.encrypt_ticket(reply.pub_key, password)


class ServerMessages:
    """
    Reads the server's messages of one channel from bytes as they arrive.

    @param table: the L{spicesrv.wire.schema.MessageTable} of the channel's
        server messages.
    @param mini: whether the channel uses the mini header (the client and
        server both announced C{MINI_HEADER}).

    @ivar messages: C{(name, record)} pairs in arrival order, C{record}
        being the parsed message (a named tuple); a message number the
        table does not know gives C{(number, body bytes)}.
    """

    def __init__(self, table, mini=True):
        self.table = table
        self.mini = mini
        self.buffer = b""
        self.messages = []

    def feed(self, data):
        """
        Add bytes from the server; every complete message is parsed and
        appended to C{messages}.
        """
        self.buffer += data
        header = (MINI_HEADER if self.mini else FULL_HEADER).size
        while len(self.buffer) >= header:
            msgType, size = unpackHeader(self.mini, self.buffer)
            if len(self.buffer) < header + size:
                break
            body = self.buffer[header:header + size]
            self.buffer = self.buffer[header + size:]
            message = self.table.byNumber.get(msgType)
            name = message.name if message else msgType
            record = message.unpack(body, exact=False) if message else body
            self.messages.append((name, record))


class TestClientChannel:
    """
    The client end of one channel linked to an in-memory server through a
    L{StringTransport}.

    @param serverMessages: the L{spicesrv.wire.schema.MessageTable} to read
        the server's messages with.  By default the table of a built-in
        channel type (L{SERVER_TABLES}), or only the common messages for
        any other type; a plugin's channel passes its own table.

    @ivar protocol: the server's L{spicesrv.link.LinkProtocol}.
    @ivar transport: the transport it writes to.
    @ivar result: the link result the server sent.
    """

    def __init__(self, server, channel_type, channel_id=0, connection_id=0,
                 password="", common_caps=CLIENT_COMMON_CAPS, channel_caps=(),
                 serverMessages=None):
        self.protocol = server.factory().buildProtocol(None)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.protocol.dataReceived(linkMessage(channel_type, channel_id, connection_id,
                                               common_caps, channel_caps))
        self.reply, self.serverCommonCaps, self.serverChannelCaps, rest = parseLinkReply(
            self.transport.value())
        self.transport.clear()
        self.result = None
        if serverMessages is None:
            serverMessages = SERVER_TABLES.get(channel_type, COMMON_SERVER)
        self.received = ServerMessages(serverMessages,
                                       mini=CommonCap.MINI_HEADER in common_caps)
        self.mini = CommonCap.MINI_HEADER in common_caps
        self._serial = 0
        if self.reply.error == LinkErr.OK:
            self.protocol.dataReceived(ticketBytes(self.reply, password))
            data = self.transport.value()
            self.transport.clear()
            (self.result,) = struct.unpack_from("<I", data)
            self.received.feed(data[4:])

    @property
    def channel(self):
        """
        The server's channel protocol of this link (a
        L{spicesrv.channel.ChannelProtocol}), once linked.
        """
        return self.protocol.channel

    def poll(self):
        """
        Read what the server wrote since the last call.
        """
        self.received.feed(self.transport.value())
        self.transport.clear()
        return self.received.messages

    def names(self):
        """
        The names of the messages received since the last L{take} or
        L{names}, which are then forgotten.
        """
        return [name for name, _ in self.take()]

    def take(self):
        """
        Return and forget every message received so far.
        """
        messages = list(self.poll())
        del self.received.messages[:]
        return messages

    def next(self, name):
        """
        The first received message called C{name}; earlier ones are dropped.
        """
        messages = self.poll()
        while messages:
            got, record = messages.pop(0)
            if got == name:
                return record
        raise AssertionError("no %s message from the server" % (name,))

    def send(self, message, **fields):
        """
        Send a client message (a L{spicesrv.wire.schema.Message}).
        """
        self.sendRaw(message.number, message.pack(**fields))

    def sendRaw(self, msgType, body):
        """
        Send a client message of type number C{msgType} with the bytes
        C{body}, for messages no table declares.
        """
        self._serial += 1
        self.protocol.dataReceived(packHeader(self.mini, self._serial, msgType, len(body))
                                   + body)


def connectChannel(server, channel_type, channel_id=0, password="", main=None, **kwargs):
    """
    Link one channel of a client to an in-memory server, as a real client
    does: a main channel first (it creates the session), then the others
    with the session's id as their connection id.

    For C{ChannelType.MAIN} this returns the new main channel's client.  For
    any other type it links a main channel first, unless C{main} (a
    L{TestClientChannel} of an earlier main link) says which session to
    join, and returns the new channel's client with that main channel's
    client as its C{main} attribute.  Other keyword arguments go to
    L{TestClientChannel} (C{serverMessages} for a plugin's channel,
    C{channel_caps}, ...).

    @raise AssertionError: a link the server refused.
    """
    if channel_type == ChannelType.MAIN:
        client = TestClientChannel(server, channel_type, channel_id, password=password,
                                   **kwargs)
        _checkLinked(client, channel_type, channel_id)
        return client
    if main is None:
        main = connectChannel(server, ChannelType.MAIN, password=password)
    client = TestClientChannel(server, channel_type, channel_id,
                               connection_id=main.channel.session.id, password=password,
                               **kwargs)
    _checkLinked(client, channel_type, channel_id)
    client.main = main
    return client


def initDisplayChannel(client, cacheSize=20 * 1024 * 1024):
    """
    Send a display channel's INIT, as a client does right after linking it:
    the server waits for it before creating the surface and sending the
    first picture.

    @param client: the L{TestClientChannel} of a display channel.
    """
    client.send(DISPLAY_CLIENT["INIT"], pixmap_cache_id=1, pixmap_cache_size=cacheSize,
                glz_dictionary_id=1, glz_dictionary_window_size=1 << 22)


def _checkLinked(client, channel_type, channel_id):
    if client.reply.error != LinkErr.OK or client.result != LinkErr.OK:
        raise AssertionError("the server refused to link channel %d:%d (link reply %d, "
                             "result %s)" % (channel_type, channel_id, client.reply.error,
                                             client.result))


def makeTestServer(clock=None, **kwargs):
    """
    A L{SpiceServer} on a L{Clock} with the shared test key; its multimedia
    clock is the same L{Clock} (as monotonic as it gets).  Other keyword
    arguments go to L{SpiceServer}; give C{password} or
    C{disable_ticketing=True}, as a server with neither refuses every
    client.
    """
    from spicesrv.server import SpiceServer
    if clock is None:
        clock = Clock()
    kwargs.setdefault("keys", testKeyPool())
    kwargs.setdefault("mm_clock", clock.seconds)
    return SpiceServer(clock=clock, **kwargs)


def _base(iface, description):
    """
    The ISpiceBase attribute values for a provider of C{iface}.
    """
    return dict(type=iface.getTaggedValue("type"), description=description,
                major_version=iface.getTaggedValue("major_version"),
                minor_version=iface.getTaggedValue("minor_version"))


class FakeDisplaySource(FramebufferSource):
    """
    A display source whose framebuffer a test paints directly.

    @ivar frame: the framebuffer, a C{(height, width, 4)} uint8 array.
    @ivar observers: the registered L{spicesrv.interfaces.IDisplayObserver}s.
    @ivar position: the cursor position.
    """

    description = "fake display"

    def __init__(self, width=64, height=48, cursor=None):
        FramebufferSource.__init__(self, width, height, cursor=cursor if cursor is not None
                                   else Cursor(2, 2, 0, 0, b"\xff\xff\xff\xff" * 4))
        self.position = (0, 0)

    @property
    def observers(self):
        return self._observers

    @property
    def position(self):
        return self._position

    @position.setter
    def position(self, value):
        self._position = value

    def fill(self, rect, bgrx):
        """
        Paint C{(left, top, right, bottom)} with one B, G, R, X colour and
        report the damage.
        """
        left, top, right, bottom = rect
        self.frame[top:bottom, left:right] = bgrx
        self.damage([rect])

    def resize(self, width, height):
        """
        Change the framebuffer's size (it becomes black) and tell the
        observers.
        """
        self.setFrame(numpy.zeros((height, width, 4), dtype=numpy.uint8))


@implementer(IMonitorLayout)
class MonitoredDisplaySource(FakeDisplaySource):
    """
    A L{FakeDisplaySource} that reports monitors (L{IMonitorLayout}).

    @ivar layout: what L{monitors} returns; one monitor over the whole
        surface at first.
    """

    description = "fake display with monitors"

    def __init__(self, width=64, height=48, cursor=None):
        FakeDisplaySource.__init__(self, width, height, cursor)
        self.layout = [(0, 0, width, height)]

    def monitors(self):
        return list(self.layout)

    def setLayout(self, layout):
        """
        The monitors move: tell the observers that listen.
        """
        self.layout = list(layout)
        for observer in list(self._observers):
            changed = getattr(observer, "monitors_changed", None)
            if changed is not None:
                changed()


@implementer(IDisplayObserver)
class RecordingObserver:
    """
    An L{IDisplayObserver} that records what a display source tells it, as
    C{(method name, arguments...)} tuples in L{events}.
    """

    def __init__(self):
        self.events = []

    def surface_changed(self, width, height):
        self.events.append(("surface_changed", width, height))

    def damaged(self, rects):
        self.events.append(("damaged", list(rects)))

    def cursor_changed(self, cursor):
        self.events.append(("cursor_changed", cursor))

    def cursor_moved(self, x, y):
        self.events.append(("cursor_moved", x, y))

    def rects(self):
        """
        Every damaged rectangle reported, in order.
        """
        return [rect for event in self.events if event[0] == "damaged"
                for rect in event[1]]

    def of(self, name):
        """
        The arguments of every call of observer method C{name}.
        """
        return [event[1:] for event in self.events if event[0] == name]


@implementer(IKeyboard)
class RecordingKeyboard:
    """
    A keyboard that records the scancode bytes it receives and toggles its
    lock LEDs like a PC keyboard.

    @ivar scancodes: every byte received, in order.
    @ivar leds: the lock LEDs, as SPICE modifier flags.
    @ivar leds_changed: what the server set (see L{IKeyboard}), called by
        L{setLeds}.
    """

    LOCKS = {0x46: KeyModifier.SCROLL_LOCK, 0x45: KeyModifier.NUM_LOCK,
             0x3A: KeyModifier.CAPS_LOCK}

    def __init__(self):
        self.__dict__.update(_base(IKeyboard, "recording keyboard"))
        self.scancodes = []
        self.leds = 0
        self.leds_changed = None
        self._extended = False

    def setLeds(self, leds):
        """
        The LEDs change by themselves (as a lock key pressed on the
        machine's own keyboard): tell the server.
        """
        self.leds = leds
        if self.leds_changed is not None:
            self.leds_changed()

    def push_scan_freg(self, byte):
        self.scancodes.append(byte)
        if byte == 0xE0:
            self._extended = True
            return
        if not self._extended and byte in self.LOCKS:
            self.leds ^= self.LOCKS[byte]
        self._extended = False

    def get_leds(self):
        return self.leds


@implementer(IMouse)
class RecordingMouse:
    """
    A mouse that records C{("motion", dx, dy, dz, buttons)} and
    C{("buttons", buttons)} events.

    @ivar events: the events, in order.
    """

    def __init__(self):
        self.__dict__.update(_base(IMouse, "recording mouse"))
        self.events = []

    def motion(self, dx, dy, dz, buttons_state):
        self.events.append(("motion", dx, dy, dz, buttons_state))

    def buttons(self, buttons_state):
        self.events.append(("buttons", buttons_state))


@implementer(ITablet)
class RecordingTablet:
    """
    A tablet that records its events like L{RecordingMouse}.
    """

    def __init__(self):
        self.__dict__.update(_base(ITablet, "recording tablet"))
        self.events = []

    def set_logical_size(self, width, height):
        self.events.append(("size", width, height))

    def position(self, x, y, buttons_state):
        self.events.append(("position", x, y, buttons_state))

    def wheel(self, wheel_motion, buttons_state):
        self.events.append(("wheel", wheel_motion, buttons_state))

    def buttons(self, buttons_state):
        self.events.append(("buttons", buttons_state))


@implementer(IMonitorBackend)
class RecordingMonitorBackend:
    """
    A QMP monitor backend that records calls, for testing the monitor
    without a server.

    @ivar calls: C{(method name, arguments...)} tuples, in order.
    @ivar results: method name -> what it returns (or, for an exception
        instance, raises).
    @ivar spice: what C{query_spice} returns.
    @ivar migration: what C{query_migrate} returns.
    @ivar observers: the event observers; L{emit} calls them.
    """

    def __init__(self):
        self.calls = []
        self.observers = []
        self.results = {}
        self.spice = {"enabled": True, "migrated": False, "host": "*", "port": 5900,
                      "auth": "spice", "compiled-version": "0.1.0", "mouse-mode": "client",
                      "channels": []}
        self.migration = {}

    def _call(self, name, *args):
        self.calls.append((name,) + args)
        result = self.results.get(name)
        if isinstance(result, BaseException):
            raise result
        return result

    def query_spice(self):
        self._call("query_spice")
        return self.spice

    def client_migrate_info(self, hostname, port, tls_port, cert_subject):
        return self._call("client_migrate_info", hostname, port, tls_port, cert_subject)

    def check_target(self, hostname, tls_port, cert_subject):
        return self._call("check_target", hostname, tls_port, cert_subject)

    def migrate(self, uri):
        return self._call("migrate", uri)

    def migrate_cancel(self):
        return self._call("migrate_cancel")

    def query_migrate(self):
        self._call("query_migrate")
        return self.migration

    def set_password(self, password, connected):
        return self._call("set_password", password, connected)

    def expire_password(self, time):
        return self._call("expire_password", time)

    def addEventObserver(self, observer):
        self.observers.append(observer)

    def emit(self, name, data=None):
        """
        Report the event C{name} with C{data} to the observers.
        """
        for observer in self.observers:
            observer(name, data)


@implementer(IMigration)
class RecordingMigration:
    """
    Migration callbacks that record their calls.

    @ivar calls: C{"connect_complete"} and C{"end_complete"}, in the order
        the server called them.
    """

    def __init__(self):
        self.__dict__.update(_base(IMigration, "recording migration callbacks"))
        self.calls = []

    def migrate_connect_complete(self):
        self.calls.append("connect_complete")

    def migrate_end_complete(self):
        self.calls.append("end_complete")


@implementer(IMigratableState)
class RecordingState:
    """
    A device whose migratable state is a byte string.

    @ivar data: the state, which L{get_migration_state} returns.
    @ivar applied: every state restored, in order.
    @ivar reject: when not L{None}, restoring raises L{ValueError} with it.
    """

    def __init__(self, key="test.state", data=b"", reject=None):
        self.migration_key = key
        self.data = data
        self.reject = reject
        self.applied = []

    def get_migration_state(self):
        return self.data

    def set_migration_state(self, data):
        if self.reject is not None:
            raise ValueError(self.reject)
        self.applied.append(data)
        self.data = data


@implementer(IPlugin, ISourcePlugin)
class FakeSourcePlugin:
    """
    A source plugin (C{--source fake[:WIDTHxHEIGHT]}) that makes
    L{FakeDisplaySource}s and records them.

    @ivar made: the sources it made, in order.
    """

    name = "fake"
    description = "fake[:WIDTHxHEIGHT] a display a test paints (default 64x48)"

    def __init__(self, options=(Option("fake-note", "A value the test reads back."),)):
        self.options = tuple(options)
        self.made = []

    def makeSource(self, args, values, reactor):
        try:
            width, height = (int(n) for n in args.split("x")) if args else (64, 48)
        except ValueError:
            raise ValueError("give the size as WIDTHxHEIGHT, e.g. --source fake:320x200")
        source = FakeDisplaySource(width, height)
        self.made.append((source, args, values, reactor))
        return source


@implementer(IPlugin, IChannelPlugin)
class FakeChannelPlugin:
    """
    A channel plugin that records its installs, registers C{channelClass}
    (when given) for C{channel_type} on each server, and returns
    C{devices}.

    @ivar installs: C{(server, values, reactor)} for every install.
    """

    name = "fake-channel"
    description = "a channel plugin a test controls"

    def __init__(self, channel_type=ChannelType.PORT, channelClass=None, devices=(),
                 options=()):
        self.channel_type = channel_type
        self.channelClass = channelClass
        self.devices = list(devices)
        self.options = tuple(options)
        self.installs = []

    def install(self, server, values, reactor):
        self.installs.append((server, values, reactor))
        if self.channelClass is not None:
            server.registry.register(self.channel_type,
                                     server.registry.nextId(self.channel_type),
                                     self.channelClass)
        return list(self.devices)


class LogCapture:
    """
    The log events emitted during one test, from when it is made until the
    test's cleanup.

        log = LogCapture(self)
        ...
        self.assertIn("refused", log.text())

    @ivar events: the events, as L{twisted.logger} dicts.
    """

    def __init__(self, testcase):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        testcase.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def texts(self):
        """
        Every event formatted, one string each.
        """
        return [formatEvent(event) for event in self.events]

    def text(self):
        """
        Every event formatted, one line each.
        """
        return "\n".join(self.texts())

    def matching(self, text):
        """
        The formatted events that contain C{text}.
        """
        return [line for line in self.texts() if text in line]


@implementer(IAgent)
class RecordingAgent:
    """
    An agent device that records what the clients ask and gives the
    clipboard contents a test puts in L{clipboard}.

    @ivar clients: the L{spicesrv.interfaces.IAgentClients} the server gave
        it (offer the device's clipboard with C{clients.clipboard_grab}).
    @ivar events: C{("monitors_config", monitors)}, C{("clipboard_grab",
        selection, types)}, C{("clipboard_release", selection)} and
        C{("clipboard_request", selection, type)}, in order.
    @ivar clipboard: C{(selection, type)} -> the bytes a request gets
        (L{None} if missing).
    """

    def __init__(self):
        self.__dict__.update(_base(IAgent, "recording agent"))
        self.clients = None
        self.events = []
        self.clipboard = {}

    def agent_attached(self, clients):
        self.clients = clients

    def monitors_config(self, monitors):
        self.events.append(("monitors_config", monitors))

    def clipboard_grab(self, selection, types):
        self.events.append(("clipboard_grab", selection, list(types)))

    def clipboard_release(self, selection):
        self.events.append(("clipboard_release", selection))

    def clipboard_request(self, selection, type):
        self.events.append(("clipboard_request", selection, type))
        return self.clipboard.get((selection, type))


@implementer(IAgentClients)
class RecordingAgentClients:
    """
    The clients as an L{IAgent} device sees them, for testing a device
    without a server: it records what the device offers and answers its
    requests from L{clipboards}.

    @ivar events: C{("clipboard_grab", selection, types)} and
        C{("clipboard_release", selection)}, in order.
    @ivar owners: selection -> the types a client offers (what
        L{clipboard_owner} returns).
    @ivar clipboards: C{(selection, type)} -> the bytes a request gets; a
        missing entry fails the request with
        L{spicesrv.agent.ClipboardUnavailable}.
    """

    def __init__(self):
        self.events = []
        self.owners = {}
        self.clipboards = {}

    def clipboard_grab(self, selection, types):
        self.events.append(("clipboard_grab", selection, list(types)))

    def clipboard_release(self, selection):
        self.events.append(("clipboard_release", selection))

    def clipboard_owner(self, selection):
        return self.owners.get(selection)

    def clipboard_request(self, selection, type):
        from twisted.internet import defer
        from spicesrv.agent import ClipboardUnavailable
        data = self.clipboards.get((selection, type))
        if data is None:
            return defer.fail(ClipboardUnavailable("no client offers %s in type %s"
                                                   % (selection, type)))
        return defer.succeed(data)


class TestAgentClient:
    """
    The agent of a client, on a main channel's L{TestClientChannel}: it
    starts the agent (AGENT_START, ANNOUNCE_CAPABILITIES) as spice-gtk does,
    sends agent messages in AGENT_DATA chunks, and reads the server's.

        agent = TestAgentClient(connectChannel(server, ChannelType.MAIN))
        agent.start()
        agent.send("CLIPBOARD_GRAB", selection=0, types=[1])

    @param selections: whether the client announces CLIPBOARD_SELECTION
        (spice-gtk does).
    """

    def __init__(self, main, selections=True):
        self.main = main
        self.selections = selections
        self._reader = AgentReader()
        self.received = []

    def start(self, tokens=0xFFFFFFFF, caps=None):
        """
        AGENT_START, then the client's capabilities with request set.
        """
        if caps is None:
            caps = {AgentCap.CLIPBOARD_BY_DEMAND, AgentCap.MONITORS_CONFIG}
            if self.selections:
                caps.add(AgentCap.CLIPBOARD_SELECTION)
        self.main.send(MAIN_CLIENT["AGENT_START"], num_tokens=tokens)
        self.send("ANNOUNCE_CAPABILITIES", request=1, caps=capwords.caps_to_words(caps))

    def send(self, _name, **fields):
        """
        Send one agent message (clipboard ones need C{selection} when
        selections are on); returns the number of AGENT_DATA messages used.
        """
        if self.selections and _name in CLIPBOARD_MESSAGES:
            fields.setdefault("reserved", b"")
        message = agentMessages(self.selections)[_name]
        pieces = chunks(message.number, message.pack(**fields))
        self.sendData(b"".join(pieces))
        return len(pieces)

    def sendData(self, stream, size=2048):
        """
        Send raw agent stream bytes in AGENT_DATA messages of C{size}.
        """
        for i in range(0, len(stream), size):
            self.main.send(MAIN_CLIENT["AGENT_DATA"], data=stream[i:i + size])

    def messages(self):
        """
        The agent messages the server sent since the last call, as
        C{(name, record)}; the main channel's other messages are dropped.
        """
        table = agentMessages(self.selections)
        for name, record in self.main.take():
            if name != "AGENT_DATA":
                continue
            for header, body in self._reader.feed(record.data):
                message = table.byNumber[header.type]
                self.received.append((message.name, message.unpack(body)))
        received, self.received = self.received, []
        return received


def decodeImage(data):
    """
    Decode a SPICE Image as a client would: a 32-bit BITMAP or an LZ4
    image, to a C{(height, width, 4)} uint8 array.
    """
    _id, kind, _flags, width, height = enc.DESCRIPTOR.unpack_from(data)
    if kind == enc.IMAGE_TYPE_BITMAP:
        fmt, bflags, x, y, stride, palette = enc.BITMAP_HEADER.unpack_from(
            data, enc.IMAGE_DESCRIPTOR_SIZE)
        if (fmt, x, y, palette) != (enc.BITMAP_FMT_32BIT, width, height, 0):
            raise ValueError("unexpected bitmap header %r" % ((fmt, x, y, palette),))
        rows = numpy.frombuffer(data, numpy.uint8, stride * y,
                                enc.BITMAP_IMAGE_HEADER_SIZE).reshape(y, stride)
        pixels = rows[:, :x * 4].reshape(y, x, 4)
        return pixels if bflags & enc.BITMAP_FLAG_TOP_DOWN else pixels[::-1]
    if kind == enc.IMAGE_TYPE_LZ4:
        size, top_down, fmt = enc.LZ4_HEADER.unpack_from(data, enc.IMAGE_DESCRIPTOR_SIZE)
        # data_size counts from the end of its own u32.
        offset = enc.LZ4_IMAGE_HEADER_SIZE
        end, out = enc.IMAGE_DESCRIPTOR_SIZE + 4 + size, b""
        length = enc.LZ4_BLOCK_LENGTH
        while offset < end:
            (n,) = length.unpack_from(data, offset)
            out += data[offset + length.size:offset + length.size + n]
            offset += length.size + n
        import lz4.block
        raw = lz4.block.decompress(out, uncompressed_size=width * height * 4)
        pixels = numpy.frombuffer(raw, numpy.uint8).reshape(height, width, 4)
        return pixels if top_down else pixels[::-1]
    raise ValueError("image type %d is not decoded here" % kind)


class ClientSurface:
    """
    What a client's primary surface shows, built from display messages.

    @ivar pixels: the surface, a C{(height, width, 4)} uint8 array (B, G,
        R, X), or L{None} before SURFACE_CREATE.
    @ivar marked: whether the server sent MARK (the surface is ready to
        show).
    @ivar imageTypes: the SPICE image type of every DRAW_COPY (0 raw
        bitmap, 109 LZ4).
    @ivar copies: every COPY_BITS applied, in order.
    @ivar streams: the video streams the server created and did not
        destroy yet: id -> the STREAM_CREATE record.
    @ivar codecTypes: the codec of every stream created, in order (frames of
        MJPEG, VP8, VP9 and H.264 are decoded, the last three with PyAV).
    @ivar frameTimes: the C{multi_media_time} of every stream frame, in
        order.  Frames are drawn as they come (a real client waits for each
        frame's time and drops late ones).
    """

    def __init__(self):
        self.pixels = None
        self.marked = False
        self.imageTypes = []
        self.copies = []
        self.streams = {}
        self._decoders = {}
        self.codecTypes = []
        self.frameTimes = []

    def apply(self, name, record):
        """
        Apply one display message, as named and parsed by
        L{TestClientChannel}.
        """
        if name == "SURFACE_CREATE":
            self.pixels = numpy.zeros((record.height, record.width, 4), numpy.uint8)
        elif name == "SURFACE_DESTROY":
            self.pixels = None
        elif name == "MARK":
            self.marked = True
        elif name == "DRAW_COPY":
            box = record.base.box
            self.imageTypes.append(record.src_bitmap[8])
            image = decodeImage(record.src_bitmap)
            area = record.src_area
            self.pixels[box.top:box.bottom, box.left:box.right] = \
                image[area.top:area.bottom, area.left:area.right]
        elif name == "COPY_BITS":
            self.copyBits(record)
        elif name == "STREAM_CREATE":
            if record.id in self.streams:
                raise ValueError("stream %d created twice" % (record.id,))
            self.streams[record.id] = record
            from spicesrv.display.video import decodeFrames
            self._decoders[record.id] = decodeFrames(record.codec_type)
            self.codecTypes.append(record.codec_type)
        elif name in ("STREAM_DATA", "STREAM_DATA_SIZED"):
            create = self.streams[record.id]
            dest = record.dest if name == "STREAM_DATA_SIZED" else create.dest
            frame = self._decoders[record.id](record.data)
            if frame is None:
                raise ValueError("stream %d: frame %d did not decode at once"
                                 % (record.id, len(self.frameTimes)))
            if frame.shape[:2] != (dest.bottom - dest.top, dest.right - dest.left):
                raise ValueError("a %dx%d frame for a %dx%d destination"
                                 % (frame.shape[1], frame.shape[0],
                                    dest.right - dest.left, dest.bottom - dest.top))
            self.frameTimes.append(record.multi_media_time)
            self.pixels[dest.top:dest.bottom, dest.left:dest.right, :3] = frame[..., :3]
        elif name == "STREAM_DESTROY":
            del self.streams[record.id]
        elif name == "STREAM_DESTROY_ALL":
            self.streams.clear()

    def copyBits(self, record):
        """
        COPY_BITS: the box, clipped by the clip rectangles, takes the pixels
        that are as far from it as C{src_pos} is from the box's corner;
        every source pixel is read before any is written.
        """
        box = record.base.box
        dx, dy = record.src_pos.x - box.left, record.src_pos.y - box.top
        height, width = self.pixels.shape[:2]
        dest = numpy.zeros((height, width), bool)
        dest[max(0, box.top):box.bottom, max(0, box.left):box.right] = True
        if record.base.clip is not None:
            clip = numpy.zeros_like(dest)
            for r in record.base.clip:
                clip[max(0, r.top):r.bottom, max(0, r.left):r.right] = True
            dest &= clip
        ys, xs = numpy.nonzero(dest)
        sy, sx = ys + dy, xs + dx
        inside = (sy >= 0) & (sy < height) & (sx >= 0) & (sx < width)
        self.pixels[ys[inside], xs[inside]] = self.pixels[sy[inside], sx[inside]]
        self.copies.append(record)

    def applyAll(self, messages):
        """
        Apply C{(name, record)} pairs in order (what
        L{TestClientChannel.take} returns); returns this surface.
        """
        for name, record in messages:
            self.apply(name, record)
        return self


class FakeSoundSource(PlaybackDevice):
    """
    A playback source a test drives: C{start()}, C{write(pcm)}, C{stop()},
    C{setVolume(levels)}, C{setMute(flag)} (those of
    L{spicesrv.sound.device.PlaybackDevice}).
    """

    def __init__(self, description="fake sound"):
        PlaybackDevice.__init__(self, description)


class RecordingSink(RecordDevice):
    """
    A record sink that keeps what clients send (C{pcm}, all of it as one
    L{bytes}); active from the start unless C{active=False}.
    """

    def __init__(self, description="recording sink", active=True):
        RecordDevice.__init__(self, description)
        self.pcm = b""
        if active:
            self.start()

    def received(self, pcm):
        self.pcm += pcm


@implementer(IPlaybackObserver)
class RecordingPlaybackObserver:
    """
    Records what a playback source tells it: C{events} (names and
    arguments) and C{frames}.
    """

    def __init__(self):
        self.events = []
        self.frames = []

    def playback_started(self):
        self.events.append(("started",))

    def playback_stopped(self):
        self.events.append(("stopped",))

    def playback_frame(self, frame):
        self.frames.append(frame)

    def volume_changed(self, volume):
        self.events.append(("volume", tuple(volume)))

    def mute_changed(self, mute):
        self.events.append(("mute", mute))


@implementer(IRecordObserver)
class RecordingRecordObserver:
    """
    Records what a record sink tells it, in C{events}.
    """

    def __init__(self):
        self.events = []

    def record_started(self):
        self.events.append(("started",))

    def record_stopped(self):
        self.events.append(("stopped",))

    def volume_changed(self, volume):
        self.events.append(("volume", tuple(volume)))

    def mute_changed(self, mute):
        self.events.append(("mute", mute))


@implementer(IPlugin, ISoundPlugin)
class FakeSoundPlugin:
    """
    A sound plugin (C{--playback fake-sound}, C{--record fake-sound}) that
    makes L{FakeSoundSource}s and L{RecordingSink}s and records them in
    C{made}.
    """

    name = "fake-sound"
    description = "fake-sound a source and a sink a test drives"

    def __init__(self, options=()):
        self.options = tuple(options)
        self.made = []

    def makePlayback(self, args, values, reactor):
        device = FakeSoundSource()
        self.made.append(device)
        return device

    def makeRecord(self, args, values, reactor):
        device = RecordingSink()
        self.made.append(device)
        return device


#: Every interface of L{spicesrv.interfaces} -> a callable that makes a
#: fake provider of it with no arguments (for L{IPluginOption}, the real
#: L{spicesrv.plugin.Option}, which is only data).  The tests check each
#: with C{verifyObject}.
FAKES = {
    ISpiceBase: RecordingKeyboard, IKeyboard: RecordingKeyboard, IMouse: RecordingMouse,
    ITablet: RecordingTablet, IDisplayObserver: RecordingObserver,
    IDisplaySource: FakeDisplaySource, ISource: FakeDisplaySource,
    IMigratableState: RecordingState, IMigration: RecordingMigration,
    IPluginOption: lambda: Option("fake-option", "An option a test gives."),
    IChannelPlugin: FakeChannelPlugin, ISourcePlugin: FakeSourcePlugin,
    IMonitorBackend: RecordingMonitorBackend, IAgent: RecordingAgent,
    IAgentClients: RecordingAgentClients, IMonitorLayout: MonitoredDisplaySource,
    IPlaybackSource: FakeSoundSource, IPlaybackObserver: RecordingPlaybackObserver,
    IRecordSink: RecordingSink, IRecordObserver: RecordingRecordObserver,
    ISoundPlugin: FakeSoundPlugin,
}
