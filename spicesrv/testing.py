"""
Helpers for testing spicesrv and code built on it without sockets: the
client side of the link stage, a reader of server messages, an in-memory
server wired to a L{StringTransport}, one capture of log events, a client's
view of a display surface, and a verified fake of every interface in
L{spicesrv.interfaces} (L{FAKES}; the fakes themselves are in
L{spicesrv.fakes}, and importable from here).

    server = makeTestServer(password="pw")
    client = connectChannel(server, ChannelType.MAIN, password="pw")
    init = client.next("INIT")
"""

import struct

import numpy
from twisted.internet import defer, task
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import FailTest

from spicesrv import keys
from spicesrv.agent import AgentReader, chunks
from spicesrv.channel import FULL_HEADER, MINI_HEADER, packHeader, unpackHeader
from spicesrv.display import encoders as enc
from spicesrv.fakes import (  # noqa: F401 (re-exported for tests)
    FakeDisplaySource, MonitoredDisplaySource, RecordingObserver, RecordingKeyboard,
    RecordingMouse, RecordingTablet, RecordingMonitorBackend, RecordingMigration,
    RecordingState, FakeSourcePlugin, FakeChannelPlugin, RecordingAgent, RecordingAgentClients,
    FakeSoundSource, RecordingSink, RecordingPlaybackObserver, RecordingRecordObserver,
    FakeSoundPlugin)
from spicesrv.interfaces import (
    IAgent, IAgentClients, IChannelPlugin, IDisplayObserver, IDisplaySource, IKeyboard, IMigratableState,
    IMigration, IMonitorBackend, IMonitorLayout, IMouse, IPlaybackObserver, IPlaybackSource, IPluginOption,
    IRecordObserver, IRecordSink, ISoundPlugin, ISource, ISourcePlugin, ISpiceBase, ITablet)
from spicesrv.plugin import Option
from spicesrv.wire import caps as capwords
from spicesrv.wire.constants import (
    LINK_REPLY_SIZE, MAGIC, VERSION_MAJOR, VERSION_MINOR, AuthMechanism, ChannelType,
    CommonCap, LinkErr)
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


def waitUntil(reactor, condition, timeout=20, interval=0.02, failure=None):
    """
    Poll C{condition} every C{interval} seconds of C{reactor} (a real one:
    for tests with real peers) until it is true.  Returns a Deferred; it
    fails with L{FailTest} (C{failure}, or a message of its own) once
    C{timeout} seconds have passed.
    """
    deadline = reactor.seconds() + timeout

    @defer.inlineCallbacks
    def poll():
        while not condition():
            if reactor.seconds() > deadline:
                raise FailTest(failure or "condition not met within %s seconds" % (timeout,))
            yield task.deferLater(reactor, interval, lambda: None)
    return poll()


def sessionChannel(server, channel_type, channel_id=0):
    """
    The channel C{(channel_type, channel_id)} of C{server}'s one session
    (a test with one client); fails the test if the server has not
    exactly one session.
    """
    sessions = list(server.sessions.values())
    if len(sessions) != 1:
        raise FailTest("one session expected, the server has %d" % (len(sessions),))
    return sessions[0].channels[(channel_type, channel_id)]


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

    def start(self, tokens=0xFFFFFFFF, caps=None, attach=True):
        """
        AGENT_START, then the client's capabilities with request set, then
        (with C{attach}) ATTACH_CHANNELS, as spice-gtk does on INIT: the
        server's agent messages wait for the channel list.
        """
        if caps is None:
            caps = {AgentCap.CLIPBOARD_BY_DEMAND, AgentCap.MONITORS_CONFIG}
            if self.selections:
                caps.add(AgentCap.CLIPBOARD_SELECTION)
        self.main.send(MAIN_CLIENT["AGENT_START"], num_tokens=tokens)
        self.send("ANNOUNCE_CAPABILITIES", request=1, caps=capwords.caps_to_words(caps))
        if attach:
            self.main.send(MAIN_CLIENT["ATTACH_CHANNELS"])

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
    Decode a SPICE Image as a client would: a 32-bit BITMAP, an LZ4 or a
    JPEG image, to a C{(height, width, 4)} uint8 array.
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
    if kind == enc.IMAGE_TYPE_JPEG:
        (size,) = enc.JPEG_HEADER.unpack_from(data, enc.IMAGE_DESCRIPTOR_SIZE)
        start = enc.IMAGE_DESCRIPTOR_SIZE + enc.JPEG_HEADER.size
        import simplejpeg
        pixels = simplejpeg.decode_jpeg(bytes(data[start:start + size]), colorspace="BGRX")
        if pixels.shape[:2] != (height, width):
            raise ValueError("a %dx%d JPEG in a %dx%d image" % (
                pixels.shape[1], pixels.shape[0], width, height))
        return pixels
    raise ValueError("image type %d is not decoded here" % kind)


class ClientSurface:
    """
    What a client's primary surface shows, built from display messages.

    @ivar pixels: the surface, a C{(height, width, 4)} uint8 array (B, G,
        R, X), or L{None} before SURFACE_CREATE.
    @ivar marked: whether the server sent MARK (the surface is ready to
        show).
    @ivar imageTypes: the SPICE image type of every DRAW_COPY (0 raw
        bitmap, 105 JPEG, 109 LZ4).
    @ivar copies: every COPY_BITS applied, in order.
    @ivar streams: the video streams the server created and did not
        destroy yet: id -> the STREAM_CREATE record.
    @ivar codecTypes: the codec of every stream created, in order (frames of
        MJPEG, VP8, VP9 and H.264 are decoded, the last three with PyAV).
    @ivar frameTimes: the C{multi_media_time} of every stream frame, in
        order.  Frames are drawn as they come (a real client waits for each
        frame's time and drops late ones).
    @ivar clips: stream id -> its clip now (from STREAM_CREATE, then
        STREAM_CLIP): L{None} (type NONE: frames drawn whole) or a list of
        C{(left, top, right, bottom)}, the only places frames are drawn, as
        spice-gtk's C{put_image} does with the stream's region.
    @ivar clipEvents: C{(id, clip)} of every STREAM_CLIP, in order.
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
        self.clips = {}
        self.clipEvents = []

    @staticmethod
    def _clipRects(clip):
        if clip is None:
            return None
        return [(r.left, r.top, r.right, r.bottom) for r in clip]

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
            self.clips[record.id] = self._clipRects(record.clip)
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
            clip = self.clips.get(record.id)
            if clip is None:
                self.pixels[dest.top:dest.bottom, dest.left:dest.right, :3] = frame[..., :3]
            else:
                for left, top, right, bottom in clip:
                    left, top = max(left, dest.left), max(top, dest.top)
                    right, bottom = min(right, dest.right), min(bottom, dest.bottom)
                    if left < right and top < bottom:
                        self.pixels[top:bottom, left:right, :3] = frame[
                            top - dest.top:bottom - dest.top,
                            left - dest.left:right - dest.left, :3]
        elif name == "STREAM_CLIP":
            if record.id not in self.streams:
                raise ValueError("a clip for stream %d, which does not exist" % (record.id,))
            self.clips[record.id] = self._clipRects(record.clip)
            self.clipEvents.append((record.id, self.clips[record.id]))
        elif name == "STREAM_DESTROY":
            del self.streams[record.id]
            self.clips.pop(record.id, None)
        elif name == "STREAM_DESTROY_ALL":
            self.streams.clear()
            self.clips.clear()

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
