"""
Fuzz tests (issue 8, the proof tooling): valid streams, mutated, fed to
every place a peer's bytes reach, with the properties a user sees:

 - nothing raises out of a protocol and nothing logs a failure (a real
   reactor would print "Unhandled Error" and, for a timer or
   C{connectionLost}, leave its work half done);
 - after the bad connection has closed, the server is consistent: no dead
   channel left in a session (nor in C{query-spice}), one
   SPICE_DISCONNECTED for every SPICE_CONNECTED, and an C{--incoming}
   target still listening;
 - another client of the same server still links and gets its display.

Targets: the link stage; every channel's client messages (main, display,
inputs, cursor, port and the plugin guide's echo channel), generated from
the wire schema and mutated; seamless MIGRATE_DATA; the QMP monitor; the
AMP state transfer.

Everything runs in memory on one L{SafeClock}; a connection's transport
delivers C{connectionLost} at the next clock turn after C{loseConnection},
as a reactor does.  Hypothesis drives the data.  By default (and under CI)
each target runs a few dozen derandomized examples, the same ones every
run.  A longer run with a fresh, printed seed:

    ./dev fuzz 20000                      # examples per target
    SPICESRV_FUZZ_SEED=1234 ./dev fuzz    # repeat a run

A failure prints the smallest input found and a C{@reproduce_failure}
line to paste over the test to replay exactly that input.
"""

import functools
import importlib.util
import json
import os
import random
import struct
import sys
import traceback

from hypothesis import HealthCheck, Phase, given, seed as hypothesisSeed, settings
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.protocols import amp
from twisted.python.failure import Failure
from twisted.trial import unittest
from zope.interface import implementer
from twisted.internet.interfaces import IStreamClientEndpoint

from spicesrv.channels.port import PortChannel
from spicesrv.control.backend import SpiceServerBackend
from spicesrv.control.commands import COMMAND_TABLE, COMMANDS
from spicesrv.control.qmp import QMPFactory
from spicesrv.interfaces import IMigratableState
from spicesrv.migration.command import Migrator
from spicesrv.migration.incoming import IncomingState
from spicesrv.migration.seamless import MIGRATION_DATA_HEADER, MIGRATION_DATA_MAGIC
from spicesrv.migration.statewire import CHUNK_SIZE, Commit, Hello, State
from spicesrv.sources.demo import DemoSource
from spicesrv.testing import (
    FULL_HEADER, MINI_HEADER, ClientSurface, ServerMessages, linkMessage, makeTestServer,
    parseLinkReply, ticketBytes)
from spicesrv.wire import schema
from spicesrv.wire.constants import (
    LINK_REPLY_SIZE, ChannelType, CommonCap, DisplayCap, InputsCap, LinkErr, MainCap)
from spicesrv.wire.messages import (
    COMMON_CLIENT, DISPLAY_CLIENT, DISPLAY_SERVER, INPUTS_CLIENT, MAIN_CLIENT, MAIN_SERVER)
from spicesrv.wire.port import PORT_CLIENT, SpicevmcCap

# -- budget and reproducibility -------------------------------------------------------

#: Examples per target: SPICESRV_FUZZ_EXAMPLES (./dev fuzz), else a short,
#: fixed run for CI.
LONG_RUN = int(os.environ.get("SPICESRV_FUZZ_EXAMPLES", "0") or 0)
CI_EXAMPLES = 25
SEED = None
if LONG_RUN:
    SEED = int(os.environ.get("SPICESRV_FUZZ_SEED") or random.SystemRandom().randrange(1 << 32))
    sys.stderr.write("fuzz: %d examples per target, seed %d (repeat with "
                     "SPICESRV_FUZZ_SEED=%d ./dev fuzz %d)\n" % (LONG_RUN, SEED, SEED, LONG_RUN))


def fuzz(examples=CI_EXAMPLES, **strategies):
    """
    C{@given(**strategies)} with this module's settings: derandomized and
    C{examples} examples by default; with SPICESRV_FUZZ_EXAMPLES, that many
    from the printed seed.
    """
    def decorate(test):
        return _withNotes(_given(test))

    def _given(test):
        common = dict(deadline=None, database=None, print_blob=True,
                      report_multiple_bugs=False, suppress_health_check=list(HealthCheck))
        if LONG_RUN:
            configured = settings(max_examples=LONG_RUN, **common)(given(**strategies)(test))
            return hypothesisSeed(SEED)(configured)
        # No shrinking in the short run: it can take minutes; the failure
        # and its reproduce_failure blob are reported all the same.
        return settings(max_examples=examples, derandomize=True,
                        phases=[Phase.explicit, Phase.reuse, Phase.generate], **common)(
            given(**strategies)(test))
    return decorate


def _withNotes(test):
    """
    Trial does not print an exception's notes, where Hypothesis puts the
    falsifying example and its C{@reproduce_failure} line: put them in the
    failure's message.
    """
    @functools.wraps(test)
    def run(self, *args, **kwargs):
        try:
            return test(self, *args, **kwargs)
        except Exception as e:
            notes = getattr(e, "__notes__", None)
            if not notes:
                raise
            raise self.failureException("".join(traceback.format_exception_only(e))
                                        + "".join(traceback.format_tb(e.__traceback__)[-3:])
                                        + "\n".join(notes)) from e
    return run


# -- an in-memory reactor that reports what a real one would log ---------------------

class SafeClock(Clock):
    """
    A L{Clock} whose timed calls, like a reactor's, do not stop at the first
    exception: each one is recorded in C{errors} and the next call runs.
    """

    def __init__(self):
        Clock.__init__(self)
        self.errors = []

    def advance(self, amount):
        self.rightNow += amount
        self._sortCalls()
        while self.calls and self.calls[0].getTime() <= self.seconds():
            call = self.calls.pop(0)
            call.called = 1
            try:
                call.func(*call.args, **call.kw)
            except Exception:
                self.errors.append(Failure())
            self._sortCalls()

    def settle(self):
        for _ in range(20):
            if not any(c.getTime() <= self.seconds() for c in self.calls):
                return
            self.advance(0)


HOST = IPv4Address("TCP", "127.0.0.1", 5900)


class Transport(StringTransport):
    """
    A connection's transport: C{loseConnection} and C{abortConnection} end
    it at the next clock turn with C{connectionLost}, as a reactor does.
    An exception from the protocol is recorded, as a reactor logs it.
    """

    def __init__(self, clock, protocol, port=40000):
        StringTransport.__init__(self, hostAddress=HOST,
                                 peerAddress=IPv4Address("TCP", "127.0.0.1", port))
        self.clock = clock
        self.protocol = protocol
        self.lost = False
        self._closing = False

    def connect(self):
        self.call(self.protocol.makeConnection, self)

    def call(self, method, *args):
        """
        Call a protocol method as the reactor would: an exception is logged
        (here: recorded) and the connection dropped.
        """
        try:
            method(*args)
        except Exception:
            self.clock.errors.append(Failure())
            self.connectionLost(Failure(ConnectionDone()))

    def receive(self, data):
        if not self.lost and not self._closing:
            self.call(self.protocol.dataReceived, data)

    def loseConnection(self):
        StringTransport.loseConnection(self)
        self._scheduleLost()

    def abortConnection(self):
        StringTransport.loseConnection(self)
        self._scheduleLost()

    def _scheduleLost(self):
        if not self._closing and not self.lost:
            self._closing = True
            self.clock.callLater(0, self.connectionLost)

    def connectionLost(self, reason=None):
        if self.lost:
            return
        self.lost = True
        self.disconnecting = True
        try:
            self.protocol.connectionLost(reason or Failure(ConnectionDone()))
        except Exception:
            self.clock.errors.append(Failure())

    def take(self):
        data = self.value()
        self.clear()
        return data


# -- a server with every channel -------------------------------------------------------

HERE = os.path.dirname(os.path.abspath(__file__))
ECHO_PLUGIN = os.path.join(os.path.dirname(HERE), "docs", "examples", "plugin-root",
                           "spicesrv", "plugins", "example_echo.py")


def loadEcho():
    spec = importlib.util.spec_from_file_location("fuzz_example_echo", ECHO_PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


echo = loadEcho()


@implementer(IStreamClientEndpoint)
class BackendEndpoint:
    """
    A port's backend: connects at once to an in-memory peer (or fails).
    """

    def __init__(self, clock, refuse=False):
        self.clock = clock
        self.refuse = refuse
        self.transports = []

    def connect(self, factory):
        if self.refuse:
            return defer.fail(ConnectionRefusedError("refused"))
        protocol = factory.buildProtocol(None)
        transport = Transport(self.clock, protocol, port=7000)
        self.transports.append(transport)
        transport.connect()
        return defer.succeed(protocol)


class World:
    """
    One server with a demo display, its input devices, a port, the echo
    channel, event accounting and the connections made to it.
    """

    SESSION = 0x4321

    def __init__(self, seamless=False, refusePort=False):
        self.clock = SafeClock()
        self.server = makeTestServer(clock=self.clock, disable_ticketing=True,
                                     seamless_migration=seamless)
        self.demo = DemoSource(320, 240, clock=self.clock)
        for device in self.demo.devices():
            self.server.addInterface(device)
        self.server.registry.register(ChannelType.PORT, 0, PortChannel,
                                      name="org.spicesrv.fuzz.0",
                                      endpoint=BackendEndpoint(self.clock, refusePort))
        echo.echo.install(self.server, {"echo": "0", "echo-greeting": "hi"}, self.clock)
        self.events = []
        self.server.addEventObserver(lambda name, data: self.events.append(name))
        self.connections = []
        self._port = 40000

    def connect(self):
        self._port += 1
        protocol = self.server.factory().buildProtocol(None)
        transport = Transport(self.clock, protocol, self._port)
        self.connections.append(transport)
        transport.connect()
        return transport

    def link(self, channelType, channelId=0, connectionId=0, commonCaps=None,
             channelCaps=()):
        """
        Link a channel through the real link stage; returns the transport
        and the link result (None if refused before authentication).
        """
        if commonCaps is None:
            commonCaps = {CommonCap.PROTOCOL_AUTH_SELECTION, CommonCap.AUTH_SPICE,
                          CommonCap.MINI_HEADER}
        t = self.connect()
        t.receive(linkMessage(channelType, channelId, connectionId, commonCaps, channelCaps))
        data = t.take()
        if len(data) < 16 + LINK_REPLY_SIZE:
            return t, None
        reply, _, _, _ = parseLinkReply(data)
        if reply.error != LinkErr.OK:
            return t, None
        t.receive(ticketBytes(reply, ""))
        data = t.take()
        result = struct.unpack_from("<I", data)[0] if len(data) >= 4 else None
        t.rest = data[4:]
        return t, result

    def closeAll(self):
        self.clock.settle()
        for t in self.connections:
            if not t.lost:
                t.connectionLost()
            self.clock.settle()

    def liveChannels(self):
        return [(session, channel) for session in self.server.sessions.values()
                for channel in session.channels.values()]


# -- the properties --------------------------------------------------------------------

class FuzzCase(unittest.TestCase):
    """
    Collects what a reactor would log as failures, and checks the server's
    state after each example.
    """

    def setUp(self):
        self.logged = []

        def observe(event):
            if event.get("log_failure") is not None:
                self.logged.append(event)
        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def failures(self, world):
        found = [f.getTraceback() for f in world.clock.errors]
        found += [formatEvent(e) + "\n" + e["log_failure"].getTraceback()
                  for e in self.logged]
        del world.clock.errors[:]
        del self.logged[:]
        self.flushLoggedErrors()
        return found

    def assertNoFailures(self, world):
        found = self.failures(world)
        if found:
            self.fail("%d unhandled error(s); the first:\n%s" % (len(found), found[0]))

    def assertConsistent(self, world, expectLive=0):
        """
        Everything the fuzzer opened is closed: no session or channel is
        left, and SPICE_CONNECTED and SPICE_DISCONNECTED balance.
        """
        world.closeAll()
        self.assertNoFailures(world)
        dead = ["%s %s" % (session, channel.name) for session, channel in world.liveChannels()
                if not channel.connected]
        self.assertEqual(dead, [], "dead channels left in sessions")
        self.assertEqual(world.liveChannels(), [])
        self.assertEqual(world.server.sessions, {})
        connected = world.events.count("SPICE_CONNECTED")
        disconnected = world.events.count("SPICE_DISCONNECTED")
        self.assertEqual(connected, disconnected,
                         "%d SPICE_CONNECTED but %d SPICE_DISCONNECTED"
                         % (connected, disconnected))

    def assertHealthy(self, world):
        """
        A new client still links main and display and gets the picture.
        """
        main, result = world.link(ChannelType.MAIN)
        self.assertEqual(result, LinkErr.OK, "a healthy main channel did not link")
        messages = ServerMessages(MAIN_SERVER)
        messages.feed(main.rest)
        sessionId = [r for n, r in messages.messages if n == "INIT"][0].session_id
        display, result = world.link(ChannelType.DISPLAY, connectionId=sessionId)
        self.assertEqual(result, LinkErr.OK, "a healthy display channel did not link")
        body = DISPLAY_CLIENT["INIT"].pack(pixmap_cache_id=1, pixmap_cache_size=1 << 20,
                                           glz_dictionary_id=1,
                                           glz_dictionary_window_size=1 << 22)
        display.receive(MINI_HEADER.pack(DISPLAY_CLIENT["INIT"].number, len(body)) + body)
        world.clock.settle()
        shown = ServerMessages(DISPLAY_SERVER)
        shown.feed(display.rest + display.take())
        surface = ClientSurface().applyAll(shown.messages)
        self.assertTrue(surface.marked, "the healthy display got no MARK")
        self.assertTrue((surface.pixels == world.demo.framebuffer()).all(),
                        "the healthy display does not show the picture")
        self.assertConsistent(world)


# -- byte mutations ----------------------------------------------------------------------

INTERESTING_U32 = [0, 1, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
                   0xFFFFFFFF, 0xFFFFFFFE, 16, 18, 162, 1 << 20, (1 << 20) + 1]


@st.composite
def mutated(draw, data, maxOps=4):
    """
    C{data} with up to C{maxOps} mutations: bit flips, interesting bytes
    and u32s, insertions, deletions, truncation, duplication.
    """
    data = bytearray(data)
    for _ in range(draw(st.integers(0, maxOps))):
        op = draw(st.sampled_from(["flip", "byte", "u32", "insert", "delete", "truncate",
                                   "dup"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte" and data:
            data[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFE, 0xFF]))
        elif op == "u32":
            data[at:at + 4] = struct.pack("<I", draw(st.sampled_from(INTERESTING_U32)))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[at:]
        elif op == "dup":
            data[at:at] = data[at:at + draw(st.integers(1, 32))]
    return bytes(data)


@st.composite
def chunked(draw, data):
    """
    C{data} cut into pieces at random places.
    """
    if not data:
        return [data]
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=6))))
    pieces, start = [], 0
    for cut in cuts + [len(data)]:
        pieces.append(data[start:cut])
        start = cut
    return [p for p in pieces if p] or [data]


# -- values from the wire schema --------------------------------------------------------

_RANGES = {"B": (0, 0xFF), "H": (0, 0xFFFF), "I": (0, 0xFFFFFFFF),
           "Q": (0, 0xFFFFFFFFFFFFFFFF), "b": (-0x80, 0x7F), "h": (-0x8000, 0x7FFF),
           "i": (-0x80000000, 0x7FFFFFFF), "q": (-(1 << 63), (1 << 63) - 1)}


def valuesFor(kind):
    """
    A strategy of values that L{schema} field type C{kind} packs.
    """
    if isinstance(kind, schema.Scalar):
        low, high = _RANGES[kind.struct.format[-1]]
        return st.integers(low, high)
    if isinstance(kind, schema.FixedBytes):
        return st.binary(max_size=kind.size)
    if isinstance(kind, (schema.Bytes, schema.Rest)):
        return st.binary(max_size=64)
    if isinstance(kind, schema.Array):
        return st.lists(valuesFor(kind.element), max_size=6)
    if isinstance(kind, schema.Ptr):
        target = valuesFor(kind.target)
        return target if kind.nonnull else st.one_of(st.none(), target)
    if isinstance(kind, schema.Struct):
        return st.fixed_dictionaries({name: valuesFor(k) for name, k in kind.fields})
    inner = getattr(kind, "kind", None)        # wire.port.OnlyIf
    if inner is not None:
        return st.one_of(st.none(), valuesFor(inner))
    return st.none()


@st.composite
def messageBody(draw, message):
    """
    A body of C{message} packed from generated field values (a size or
    count field is usually filled in, sometimes a lie).
    """
    values = {}
    for name, kind in message.fields:
        if name in message.autofilled:
            values[name] = draw(st.one_of(st.none(), valuesFor(kind)))
        else:
            values[name] = draw(valuesFor(kind))
    try:
        return message.pack(**values)
    except (ValueError, TypeError, struct.error):
        return b""


@st.composite
def clientMessage(draw, table):
    """
    C{(type, body)}: a message of C{table} from the schema, maybe mutated,
    or any type with any bytes.
    """
    kind = draw(st.sampled_from(["schema", "schema", "mutated", "random"]))
    if kind == "random":
        return draw(st.integers(0, 0xFFFF)), draw(st.binary(max_size=48))
    message = draw(st.sampled_from(sorted(table, key=lambda m: m.number)))
    body = draw(messageBody(message))
    if kind == "mutated":
        body = draw(mutated(body))
    return message.number, body


@st.composite
def framed(draw, messages, mini):
    """
    The messages with their data headers; a header sometimes lies about
    the size.
    """
    out = b""
    for serial, (msgType, body) in enumerate(messages, 1):
        size = len(body)
        if draw(st.integers(0, 9)) == 0:
            size = draw(st.sampled_from([0, size + 1, size + 100, 1 << 20, (1 << 20) + 1,
                                         0xFFFFFFFF]))
        if mini:
            out += MINI_HEADER.pack(msgType, size) + body
        else:
            out += FULL_HEADER.pack(serial, msgType, size, 0) + body
    return out


# -- (a) the link stage -------------------------------------------------------------------

CHANNEL_TYPES = [int(t) for t in ChannelType] + [0, echo.ECHO_CHANNEL_TYPE, 255]


@st.composite
def linkStream(draw):
    """
    A link header and SpiceLinkMess (with caps), maybe mutated; whether to
    join the healthy session; the auth mechanism and ticket, maybe mutated;
    then a few bytes for the channel.
    """
    common = draw(st.sets(st.sampled_from(list(CommonCap)), max_size=4)) | draw(
        st.sampled_from([set(), {CommonCap.PROTOCOL_AUTH_SELECTION, CommonCap.AUTH_SPICE,
                                 CommonCap.MINI_HEADER}]))
    return dict(
        channelType=draw(st.sampled_from(CHANNEL_TYPES)),
        channelId=draw(st.sampled_from([0, 0, 0, 1, 255])),
        join=draw(st.booleans()),
        common=common,
        channelCaps=draw(st.sets(st.integers(0, 40), max_size=4)),
        mutateLink=draw(st.booleans()),
        linkOps=draw(st.integers(0, 2**32 - 1)),
        mechanism=draw(st.sampled_from([1, 1, 1, 0, 2, 0xFFFFFFFF])),
        ticketMutation=draw(st.sampled_from(["none", "none", "flip", "short", "long"])),
        after=draw(st.binary(max_size=40)),
        timeout=draw(st.booleans()),
    )


class LinkFuzzTests(FuzzCase):
    @fuzz(case=linkStream(), data=st.data())
    def test_link(self, case, data):
        """
        Mutated link streams in random chunks: the connection is refused or
        linked, never a traceback; the server stays consistent.
        """
        world = World()
        healthy, result = world.link(ChannelType.MAIN)
        self.assertEqual(result, LinkErr.OK)
        sessionId = next(iter(world.server.sessions))
        stream = linkMessage(case["channelType"], case["channelId"],
                             sessionId if case["join"] else 0, case["common"],
                             case["channelCaps"])
        if case["mutateLink"]:
            stream = data.draw(mutated(stream))
        t = world.connect()
        for piece in data.draw(chunked(stream)):
            t.receive(piece)
        world.clock.settle()
        reply = t.take()
        if len(reply) >= 16 + LINK_REPLY_SIZE and not t.lost:
            parsed, _, _, _ = parseLinkReply(reply)
            if parsed.error == LinkErr.OK:
                ticket = ticketBytes(parsed, "")
                if CommonCap.PROTOCOL_AUTH_SELECTION in case["common"]:
                    ticket = struct.pack("<I", case["mechanism"]) + ticket[4:]
                else:
                    ticket = ticket[4:]
                if case["ticketMutation"] == "flip":
                    ticket = ticket[:-1] + bytes([ticket[-1] ^ 1])
                elif case["ticketMutation"] == "short":
                    ticket = ticket[:-7]
                elif case["ticketMutation"] == "long":
                    ticket += b"\0" * 7
                for piece in data.draw(chunked(ticket + case["after"])):
                    t.receive(piece)
        world.clock.settle()
        if case["timeout"]:
            world.clock.advance(world.server.limits.linkTimeout + 1)
        self.assertNoFailures(world)
        healthy.connectionLost()
        self.assertConsistent(world)
        self.assertHealthy(world)


# -- (b) every channel's client messages ------------------------------------------------------

CHANNELS = {
    "main": (ChannelType.MAIN, MAIN_CLIENT, list(MainCap)),
    "display": (ChannelType.DISPLAY, DISPLAY_CLIENT, list(DisplayCap)),
    "inputs": (ChannelType.INPUTS, INPUTS_CLIENT, list(InputsCap)),
    "cursor": (ChannelType.CURSOR, COMMON_CLIENT, []),
    "port": (ChannelType.PORT, PORT_CLIENT, list(SpicevmcCap)),
    "echo": (echo.ECHO_CHANNEL_TYPE, echo.ECHO_CLIENT, []),
}


@st.composite
def channelSession(draw, name):
    channelType, table, caps = CHANNELS[name]
    mini = draw(st.booleans())
    messages = draw(st.lists(clientMessage(table), max_size=12))
    if name == "display" and draw(st.booleans()):
        messages.insert(0, (DISPLAY_CLIENT["INIT"].number,
                            draw(messageBody(DISPLAY_CLIENT["INIT"]))))
    stream = draw(framed(messages, mini))
    return dict(mini=mini, caps=draw(st.sets(st.sampled_from(caps), max_size=4))
                if caps else set(),
                pieces=draw(chunked(stream)), refusePort=draw(st.booleans()),
                advance=draw(st.sampled_from([0, 0.2, 20, 400])),
                closeMainFirst=draw(st.booleans()))


class ChannelFuzzTests(FuzzCase):
    def fuzzChannel(self, name, case):
        world = World(refusePort=case["refusePort"])
        common = {CommonCap.PROTOCOL_AUTH_SELECTION, CommonCap.AUTH_SPICE}
        if case["mini"]:
            common.add(CommonCap.MINI_HEADER)
        channelType = CHANNELS[name][0]
        if channelType == ChannelType.MAIN:
            main, result = world.link(ChannelType.MAIN, commonCaps=common,
                                      channelCaps=case["caps"])
            target = main
        else:
            main, result = world.link(ChannelType.MAIN)
            self.assertEqual(result, LinkErr.OK)
            sessionId = next(iter(world.server.sessions))
            target, result = world.link(channelType, connectionId=sessionId,
                                        commonCaps=common, channelCaps=case["caps"])
        self.assertEqual(result, LinkErr.OK)
        for piece in case["pieces"]:
            target.receive(piece)
            world.clock.advance(0)
        world.clock.advance(case["advance"])
        self.assertNoFailures(world)
        first, second = (main, target) if case["closeMainFirst"] else (target, main)
        first.connectionLost()
        world.clock.settle()
        second.connectionLost()
        self.assertConsistent(world)
        self.assertHealthy(world)

    @fuzz(case=channelSession("main"))
    def test_main(self, case):
        self.fuzzChannel("main", case)

    @fuzz(case=channelSession("display"))
    def test_display(self, case):
        self.fuzzChannel("display", case)

    @fuzz(case=channelSession("inputs"))
    def test_inputs(self, case):
        self.fuzzChannel("inputs", case)

    @fuzz(case=channelSession("cursor"), examples=15)
    def test_cursor(self, case):
        self.fuzzChannel("cursor", case)

    @fuzz(case=channelSession("port"))
    def test_port(self, case):
        self.fuzzChannel("port", case)

    @fuzz(case=channelSession("echo"), examples=15)
    def test_echo(self, case):
        self.fuzzChannel("echo", case)


# -- (c) seamless migration data ------------------------------------------------------------

MIGRATION_KEYS = ["serial", "agent_tokens", "mouse_mode", "motions", "initialized", "width",
                  "height", "encoding"]

#: JSON texts Python's json module reads into values that are not what they
#: look like, or not at all.
SPECIAL_JSON = ["1e400", "-1e400", "Infinity", "-Infinity", "NaN", "1e-400", "-0",
                "123456789012345678901234567890", "4294967296", "-1", "0.5", "true",
                "null", '"raw"', '"lz4"', '"\\ud800"', "[]", "{}", "1" * 5000,
                "[" * 2000 + "]" * 2000, '{"a":' * 2000 + "1" + "}" * 2000]


def specialJSON():
    """
    One of L{SPECIAL_JSON}, drawn by index (the long ones would make
    Hypothesis's reports huge).
    """
    return st.integers(0, len(SPECIAL_JSON) - 1).map(SPECIAL_JSON.__getitem__)


def jsonText():
    leaves = st.one_of(specialJSON(),
                       st.integers(-(1 << 70), 1 << 70).map(str),
                       st.floats(allow_nan=True).map(lambda f: json.dumps(f)),
                       st.text(max_size=8).map(json.dumps), st.booleans().map(json.dumps))
    return st.recursive(leaves, lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.dictionaries(st.sampled_from(MIGRATION_KEYS) | st.text(max_size=4), children,
                        max_size=3).map(lambda d: "{" + ",".join(
                            "%s:%s" % (json.dumps(k), v) for k, v in d.items()) + "}")),
        max_leaves=8)


#: Migration data as a spicesrv source sends it (the union of every
#: channel's fields), as JSON texts.
VALID_MIGRATION_FIELDS = {"serial": "3", "agent_tokens": "10", "mouse_mode": "1",
                          "motions": "2", "initialized": "true", "width": "320",
                          "height": "240", "encoding": '"raw"'}


@st.composite
def migrationData(draw):
    """
    SPSV migration data: a source's valid fields with some replaced by odd
    JSON or left out, or any JSON at all; sometimes with bytes mutated.
    """
    fields = dict(VALID_MIGRATION_FIELDS)
    for key in draw(st.lists(st.sampled_from(MIGRATION_KEYS), max_size=3)):
        if draw(st.booleans()):
            fields[key] = draw(jsonText())
        else:
            fields.pop(key, None)
    if draw(st.integers(0, 5)) == 0:
        text = draw(jsonText())
    else:
        text = "{" + ",".join("%s:%s" % (json.dumps(k), v) for k, v in fields.items()) + "}"
    header = MIGRATION_DATA_HEADER.pack(MIGRATION_DATA_MAGIC,
                                        draw(st.sampled_from([1, 1, 1, 0, 2, 0xFFFFFFFF])))
    data = header + text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 4)) == 0:
        data = draw(mutated(data))
    return data


SEAMLESS_CAPS = {MainCap.SEMI_SEAMLESS_MIGRATE, MainCap.SEAMLESS_MIGRATE,
                 MainCap.AGENT_CONNECTED_TOKENS}
MIGRATING = ["main", "display", "inputs", "cursor"]


class MigrationDataFuzzTests(FuzzCase):
    @fuzz(sends=st.lists(st.tuples(st.sampled_from(MIGRATING), migrationData()),
                         min_size=1, max_size=5),
          mini=st.booleans(), closeMainFirst=st.booleans())
    def test_seamlessMigrationData(self, sends, mini, closeMainFirst):
        """
        A client migrating in seamlessly hands each channel random JSON as
        its migration data: each channel takes it or closes, nothing raises,
        and every channel's end is reported.
        """
        world = World(seamless=True)
        common = {CommonCap.PROTOCOL_AUTH_SELECTION, CommonCap.AUTH_SPICE}
        if mini:
            common.add(CommonCap.MINI_HEADER)
        links = {}
        links["main"], result = world.link(ChannelType.MAIN, connectionId=World.SESSION,
                                           commonCaps=common, channelCaps=SEAMLESS_CAPS)
        self.assertEqual(result, LinkErr.OK)
        for name in MIGRATING[1:]:
            links[name], result = world.link(CHANNELS[name][0], connectionId=World.SESSION,
                                             commonCaps=common)
            self.assertEqual(result, LinkErr.OK)

        def send(name, message, body):
            if mini:
                header = MINI_HEADER.pack(message.number, len(body))
            else:
                header = FULL_HEADER.pack(1, message.number, len(body), 0)
            links[name].receive(header + body)
            world.clock.advance(0)
        send("main", MAIN_CLIENT["MIGRATE_DST_DO_SEAMLESS"], struct.pack("<I", 1))
        for name, payload in sends:
            send(name, COMMON_CLIENT["MIGRATE_DATA"], payload)
        self.assertNoFailures(world)
        order = (["main"] + MIGRATING[1:]) if closeMainFirst else (MIGRATING[1:] + ["main"])
        for name in order:
            links[name].connectionLost()
            world.clock.settle()
        self.assertConsistent(world)
        self.assertHealthy(world)


# -- (d) the QMP monitor ------------------------------------------------------------------------

def jsonValues():
    return st.recursive(
        st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70),
                  st.floats(allow_nan=True), st.text(max_size=12),
                  st.sampled_from(["spice", "vnc", "keep", "fail", "disconnect", "now",
                                   "never", "+5", "127.0.0.1", "tcp:127.0.0.1:4444",
                                   "unix:/nonexistent", "oob"])),
        lambda children: st.one_of(st.lists(children, max_size=3),
                                   st.dictionaries(st.text(max_size=6), children, max_size=3)),
        max_leaves=6)


@st.composite
def qmpRequest(draw):
    kind = draw(st.sampled_from(["command", "command", "command", "special", "mutated"]))
    if kind == "special":
        text = draw(st.one_of(specialJSON(), st.sampled_from(
            ['{"execute": 1e400}', '{"id": NaN}', '{"execute": "quit", "id": Infinity}',
             "\x00", "}", '"', "\xff"])))
        return text.encode("utf-8", "surrogatepass")
    command = draw(st.sampled_from(COMMANDS + ("no-such-command",)))
    names = [arg.name for arg in (COMMAND_TABLE[command].arguments if command in COMMAND_TABLE
                                  else [])]
    request = {"execute": command}
    if draw(st.booleans()):
        request["arguments"] = draw(st.dictionaries(
            st.sampled_from(names + ["extra"]) if names else st.just("extra"),
            jsonValues(), max_size=4))
    if draw(st.booleans()):
        request["id"] = draw(jsonValues())
    text = json.dumps(request).encode("utf-8")
    if kind == "mutated":
        text = draw(mutated(text))
    return text


class QMPFuzzTests(FuzzCase):
    @fuzz(requests=st.lists(qmpRequest(), max_size=8), negotiate=st.booleans(), data=st.data())
    def test_monitor(self, requests, negotiate, data):
        """
        Random and mutated QMP requests: every one is answered or refused,
        nothing raises, and afterwards another monitor client and a SPICE
        client still work.
        """
        world = World()
        reactor = MemoryReactorClock()
        migrator = Migrator(world.server, reactor)
        backend = SpiceServerBackend(world.server, migrator=migrator, reactor=reactor)
        shutdowns = []
        factory = QMPFactory(backend, world.clock, shutdown=lambda: shutdowns.append(1))
        bystander, result = world.link(ChannelType.MAIN)
        self.assertEqual(result, LinkErr.OK)

        def client():
            protocol = factory.buildProtocol(None)
            t = Transport(world.clock, protocol, port=50000)
            t.connect()
            return t
        t = client()
        stream = b'{"execute": "qmp_capabilities"}\n' if negotiate else b""
        stream += b"\n".join(requests)
        for piece in data.draw(chunked(stream)):
            t.receive(piece)
            world.clock.advance(0)
        world.clock.advance(1)
        reactor.advance(1)
        self.assertNoFailures(world)
        t.connectionLost()
        world.clock.settle()
        self.assertNoFailures(world)
        # Another monitor client negotiates and queries.
        other = client()
        other.take()
        other.receive(b'{"execute": "qmp_capabilities"}{"execute": "query-spice", "id": 7}')
        answers = [json.loads(line) for line in other.take().split(b"\r\n") if line]
        answers = [a for a in answers if "event" not in a]
        self.assertEqual(answers[0], {"return": {}})
        self.assertEqual(answers[1]["id"], 7)
        self.assertIn("return", answers[1])
        other.connectionLost()
        bystander.connectionLost()
        self.assertConsistent(world)
        if not shutdowns:
            self.assertHealthy(world)


# -- (e) the AMP state transfer -------------------------------------------------------------------

def ampBox(command, proto, **arguments):
    box = command.makeArguments(arguments, proto)
    box[amp.COMMAND] = command.commandName
    box[amp.ASK] = b"1"
    return box


@implementer(IMigratableState)
class Sink:
    """
    A device that takes any state: the protocol is fuzzed, not the device.
    """

    migration_key = DemoSource.migration_key

    def __init__(self):
        self.applied = []

    def get_migration_state(self):
        return b""

    def set_migration_state(self, data):
        self.applied.append(data)


class IncomingFuzzTests(FuzzCase):
    def target(self, world, devices=None):
        reactor = MemoryReactorClock()
        failures = []
        if devices is None:
            devices = lambda: world.server.migratable
        incoming = IncomingState(devices, clock=world.clock, onFailure=failures.append)
        port = self.successResultOf(incoming.listen(reactor, "tcp:127.0.0.1:4444"))
        return incoming, port, failures

    def source(self, world, incoming):
        protocol = incoming.buildProtocol(None)
        t = Transport(world.clock, protocol, port=60000)
        t.connect()
        return t

    def validBoxes(self, state, ask=1):
        """
        The AMP boxes of a valid transfer of C{state} to the demo display.
        """
        proto = amp.AMP()
        key = DemoSource.migration_key
        boxes = [ampBox(Hello, proto, version=1, devices=[{"key": key, "size": len(state)}])]
        for offset in range(0, len(state), CHUNK_SIZE):
            piece = state[offset:offset + CHUNK_SIZE]
            boxes.append(ampBox(State, proto, key=key, offset=offset, data=piece,
                                last=offset + len(piece) == len(state)))
        boxes.append(ampBox(Commit, proto))
        for number, box in enumerate(boxes, ask):
            box[amp.ASK] = str(number).encode()
        return boxes

    @fuzz(mutations=st.lists(st.tuples(st.sampled_from(
        ["drop", "dup", "swap", "dropKey", "setValue", "command", "bytes"]),
        st.integers(0, 1 << 16), st.binary(max_size=12)), max_size=4),
        data=st.data())
    def test_protocol(self, mutations, data):
        """
        Mutated AMP conversations (boxes dropped, repeated, reordered,
        arguments missing or wrong, bytes damaged) whose state content, if
        it arrives whole, is the demo's own, to a device that takes any
        state: the target refuses or applies, never raises, and keeps
        listening unless the migration is done.
        """
        world = World()
        sink = Sink()
        incoming, port, failures = self.target(world, lambda: [sink])
        state = world.demo.get_migration_state()
        boxes = self.validBoxes(state)
        for op, n, blob in mutations:
            i = n % len(boxes)
            if op == "drop" and len(boxes) > 1:
                del boxes[i]
            elif op == "dup":
                boxes.insert(i, amp.Box(boxes[i]))
            elif op == "swap":
                j = (n // 7) % len(boxes)
                boxes[i], boxes[j] = boxes[j], boxes[i]
            elif op in ("dropKey", "setValue") and not boxes[i]:
                continue
            elif op == "dropKey":
                keys = sorted(boxes[i])
                box = amp.Box(boxes[i])
                del box[keys[n % len(keys)]]
                boxes[i] = box
            elif op == "setValue":
                keys = sorted(boxes[i])
                box = amp.Box(boxes[i])
                box[keys[(n // 3) % len(keys)]] = blob
                boxes[i] = box
            elif op == "command":
                box = amp.Box(boxes[i])
                box[amp.COMMAND] = blob or b"StartTLS"
                boxes[i] = box
        stream = b"".join(box.serialize() for box in boxes)
        if any(op == "bytes" for op, _, _ in mutations):
            stream = data.draw(mutated(stream))
        t = self.source(world, incoming)
        for piece in data.draw(chunked(stream)):
            t.receive(piece)
            world.clock.advance(0)
        t.connectionLost()
        world.clock.settle()
        self.assertNoFailures(world)
        self.assertIn(incoming.state, ("waiting", "done"))
        if incoming.state == "waiting":
            self.assertIs(incoming.port, port, "the --incoming endpoint stopped listening")
            self.assertEqual(sink.applied, [])
        self.assertEqual(failures, [])
        self.assertConsistent(world)
        self.assertHealthy(world)

    @fuzz(examples=10, mutation=st.binary(min_size=1, max_size=64), where=st.integers(0, 1 << 20),
          mode=st.sampled_from(["replace", "bogus"]))
    def test_bogusState(self, mutation, where, mode):
        """
        A complete, well-formed transfer whose demo state is garbage (issue
        8 item 3): the source must get its answer (APPLY_FAILED) before the
        target does anything drastic, and a target that applied nothing
        must go on listening rather than stop the process.
        """
        world = World()
        incoming, port, failures = self.target(world)
        before = state = world.demo.get_migration_state()
        if mode == "bogus":
            state = mutation.ljust(16, b"\0")
        else:
            at = where % len(state)
            state = state[:at] + mutation + state[at + len(mutation):]
        t = self.source(world, incoming)
        for box in self.validBoxes(state):
            t.receive(box.serialize())
            world.clock.advance(0)
        world.clock.settle()
        answers = t.take()
        self.assertNoFailures(world)
        if incoming.state == "done":
            return          # the mutation left valid state
        self.assertTrue(b"APPLY_FAILED" in answers or b"REFUSED" in answers,
                        "the source got no answer to its Commit: %r" % (answers[-200:],))
        # onFailure only reports: the target took nothing and waits for a
        # correct migration.
        self.assertEqual(incoming.state, "waiting")
        self.assertEqual(world.demo.get_migration_state(), before,
                         "the refused state was partly applied")
        self.assertIs(incoming.port, port, "the --incoming endpoint stopped listening")
