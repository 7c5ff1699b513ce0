"""
Helpers for testing spicesrv and code built on it without sockets: the
client side of the link stage, a reader of server messages, and an
in-memory server wired to a L{StringTransport}.

    server = makeTestServer(password="pw")
    client = connectChannel(server, ChannelType.MAIN, password="pw")
    init = client.next("INIT")
"""

import struct

import numpy
from twisted.internet.task import Clock
from zope.interface import implementer
from twisted.internet.testing import StringTransport

from spicesrv import keys
from spicesrv.channel import FULL_HEADER, MINI_HEADER
from spicesrv.display.cursor import Cursor
from spicesrv.sources.base import FramebufferSource
from spicesrv.interfaces import IDisplayObserver, IKeyboard, IMouse, ITablet
from spicesrv.wire import caps as capwords
from spicesrv.wire.constants import (
    LINK_REPLY_SIZE, MAGIC, VERSION_MAJOR, VERSION_MINOR, AuthMechanism, ChannelType,
    CommonCap, KeyModifier, LinkErr)
from spicesrv.wire.messages import (
    CURSOR_SERVER, DISPLAY_SERVER, INPUTS_SERVER, MAIN_SERVER, LinkHeader, LinkMess, LinkReply,
    COMMON_SERVER, DISPLAY_CLIENT)
from spicesrv.wire.port import PORT_SERVER

#: The server message table of each built-in channel type, which
#: L{TestClientChannel} reads the server's messages with.
SERVER_TABLES = {
    ChannelType.MAIN: MAIN_SERVER,
    ChannelType.DISPLAY: DISPLAY_SERVER,
    ChannelType.INPUTS: INPUTS_SERVER,
    ChannelType.CURSOR: CURSOR_SERVER,
    ChannelType.PORT: PORT_SERVER,
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
            if self.mini:
                msgType, size = MINI_HEADER.unpack_from(self.buffer)
            else:
                _, msgType, size, _ = FULL_HEADER.unpack_from(self.buffer)
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
        if self.mini:
            header = MINI_HEADER.pack(msgType, len(body))
        else:
            header = FULL_HEADER.pack(self._serial, msgType, len(body), 0)
        self.protocol.dataReceived(header + body)


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
    A L{SpiceServer} on a L{Clock} with the shared test key.  Other keyword
    arguments go to L{SpiceServer}; give C{password} or
    C{disable_ticketing=True}, as a server with neither refuses every
    client.
    """
    from spicesrv.server import SpiceServer
    if clock is None:
        clock = Clock()
    kwargs.setdefault("keys", testKeyPool())
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
    """

    LOCKS = {0x46: KeyModifier.SCROLL_LOCK, 0x45: KeyModifier.NUM_LOCK,
             0x3A: KeyModifier.CAPS_LOCK}

    def __init__(self):
        self.__dict__.update(_base(IKeyboard, "recording keyboard"))
        self.scancodes = []
        self.leds = 0
        self._extended = False

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


def decodeImage(data):
    """
    Decode a SPICE Image as a client would: a 32-bit BITMAP or an LZ4
    image, to a C{(height, width, 4)} uint8 array.
    """
    _id, kind, _flags, width, height = struct.unpack_from("<QBBII", data)
    if kind == 0:
        fmt, bflags, x, y, stride, palette = struct.unpack_from("<BBIIII", data, 18)
        if (fmt, x, y, palette) != (8, width, height, 0):
            raise ValueError("unexpected bitmap header %r" % ((fmt, x, y, palette),))
        rows = numpy.frombuffer(data, numpy.uint8, stride * y, 36).reshape(y, stride)
        pixels = rows[:, :x * 4].reshape(y, x, 4)
        return pixels if bflags & 4 else pixels[::-1]
    if kind == 109:
        size, top_down, fmt = struct.unpack_from("<IBB", data, 18)
        offset, end, out = 24, 22 + size, b""
        while offset < end:
            (n,) = struct.unpack_from(">I", data, offset)
            out += data[offset + 4:offset + 4 + n]
            offset += 4 + n
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
    @ivar streams: the video streams the server created and did not
        destroy yet: id -> the STREAM_CREATE record.
    @ivar frameTimes: the C{multi_media_time} of every stream frame, in
        order.  Frames are drawn as they come (a real client waits for each
        frame's time and drops late ones).
    """

    def __init__(self):
        self.pixels = None
        self.marked = False
        self.imageTypes = []
        self.streams = {}
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
        elif name == "STREAM_CREATE":
            if record.id in self.streams:
                raise ValueError("stream %d created twice" % (record.id,))
            self.streams[record.id] = record
        elif name in ("STREAM_DATA", "STREAM_DATA_SIZED"):
            from spicesrv.display.video import decode_mjpeg
            create = self.streams[record.id]
            dest = record.dest if name == "STREAM_DATA_SIZED" else create.dest
            frame = decode_mjpeg(record.data)
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

    def applyAll(self, messages):
        """
        Apply C{(name, record)} pairs in order (what
        L{TestClientChannel.take} returns); returns this surface.
        """
        for name, record in messages:
            self.apply(name, record)
        return self
