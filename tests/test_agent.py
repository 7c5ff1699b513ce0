"""
Tests of spicesrv's agent: the VDAgent declarations, reassembly and
chunking, and the agent channel of the main channel with a recording agent
device, through the real link stage.
"""

import json

from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from spicesrv.agent import (
    MAX_DATA_SIZE, REQUEST_TIMEOUT, SERVER_CAPS, AgentHub, AgentReader, AgentStreamError,
    ClipboardUnavailable, Monitor, chunks)
from spicesrv.interfaces import IAgent, IAgentClients, IMigratableState
from spicesrv.migration.seamless import packMigrationData
from spicesrv.server import InterfaceError
from spicesrv.testing import (
    FakeDisplaySource, RecordingAgent, RecordingTablet, TestAgentClient, TestClientChannel,
    makeTestServer)
from spicesrv.wire.caps import caps_to_words, words_to_caps
from spicesrv.wire.constants import AGENT_TOKENS, ChannelType, MainCap
from spicesrv.migration.source import TargetInfo
from spicesrv.wire.messages import COMMON_CLIENT, MAIN_CLIENT
from spicesrv.wire.schema import WireError
from spicesrv.wire.vdagent import (
    AGENT_MESSAGES, AGENT_MESSAGES_SELECTION, HEADER_SIZE, AgentCap, ClipboardType,
    FileXferStatus, Selection, VDAgentMessage)

CLIPBOARD, PRIMARY = Selection.CLIPBOARD, Selection.PRIMARY
TEXT, PNG = ClipboardType.UTF8_TEXT, ClipboardType.IMAGE_PNG


class WireTests(unittest.TestCase):
    def test_header(self):
        self.assertEqual(HEADER_SIZE, 20)
        self.assertEqual(VDAgentMessage.pack(protocol=1, type=7, opaque=0, size=3),
                         bytes.fromhex("01000000 07000000 0000000000000000 03000000"))

    def test_clipboardWithAndWithoutSelection(self):
        """
        With selections, clipboard messages start with the selection byte
        and three reserved bytes; without, with their own fields.
        """
        self.assertEqual(
            AGENT_MESSAGES_SELECTION["CLIPBOARD_GRAB"].pack(
                selection=1, reserved=b"", types=[1, 2]),
            bytes.fromhex("01000000 01000000 02000000"))
        self.assertEqual(AGENT_MESSAGES["CLIPBOARD_GRAB"].pack(types=[1]),
                         bytes.fromhex("01000000"))
        request = AGENT_MESSAGES_SELECTION["CLIPBOARD_REQUEST"].unpack(
            bytes.fromhex("01000000 02000000"))
        self.assertEqual((request.selection, request.type), (1, 2))
        self.assertEqual(AGENT_MESSAGES_SELECTION["CLIPBOARD_RELEASE"].pack(
            selection=0, reserved=b""), b"\0\0\0\0")
        self.assertEqual(AGENT_MESSAGES["CLIPBOARD_RELEASE"].pack(), b"")

    def test_roundTrips(self):
        samples = {
            "MONITORS_CONFIG": dict(num_of_monitors=1, flags=2, monitors=[
                dict(height=600, width=800, depth=32, x=0, y=0)], physical=b"\0" * 4),
            "ANNOUNCE_CAPABILITIES": dict(request=1, caps=[0x61]),
            "CLIPBOARD": dict(selection=0, reserved=b"\0\0\0", type=1, data=b"hi"),
            "FILE_XFER_STATUS": dict(id=3, result=7, data=b""),
            "REPLY": dict(type=2, error=1),
            "MAX_CLIPBOARD": dict(max=-1),
        }
        for name, fields in samples.items():
            message = AGENT_MESSAGES_SELECTION[name]
            record = message.unpack(message.pack(**fields))
            packed = {k: v for k, v in record._asdict().items() if k in fields}
            packed.pop("monitors", None)
            fields = dict(fields)
            fields.pop("monitors", None)
            self.assertEqual(packed, fields, name)

    def test_wordsMustBeWhole(self):
        self.assertRaises(WireError, AGENT_MESSAGES["CLIPBOARD_GRAB"].unpack, b"\1\0\0")

    def test_capsWords(self):
        words = caps_to_words(SERVER_CAPS)
        self.assertEqual(words_to_caps(words), set(SERVER_CAPS))
        self.assertIn(AgentCap.CLIPBOARD_SELECTION, SERVER_CAPS)
        self.assertNotIn(AgentCap.CLIPBOARD_GRAB_SERIAL, SERVER_CAPS)


class ChunkTests(unittest.TestCase):
    def test_small(self):
        (piece,) = chunks(4, b"abc")
        self.assertEqual(len(piece), HEADER_SIZE + 3)

    def test_split(self):
        """
        A long message goes in pieces of at most 2048 bytes, the first
        holding the header (as spice-gtk sends them).
        """
        body = bytes(range(256)) * 20
        pieces = chunks(4, body)
        self.assertEqual([len(p) for p in pieces],
                         [MAX_DATA_SIZE, MAX_DATA_SIZE, HEADER_SIZE + len(body) - 2 * 2048])
        reader = AgentReader()
        out = []
        for piece in pieces:
            out += reader.feed(piece)
        ((header, got),) = out
        self.assertEqual((header.type, got), (4, body))
        self.assertFalse(reader.pending)

    def test_severalInOneAndSplitHeader(self):
        stream = b"".join(chunks(7, b"\1\0\0\0") + chunks(9, b""))
        reader = AgentReader()
        self.assertEqual(reader.feed(stream[:5]), [])
        got = reader.feed(stream[5:])
        self.assertEqual([(h.type, b) for h, b in got], [(7, b"\1\0\0\0"), (9, b"")])

    def test_oversizedSkipped(self):
        reader = AgentReader(maxSize=10)
        stream = b"".join(chunks(4, b"x" * 30) + chunks(9, b""))
        ((header, body),) = reader.feed(stream[:25])
        self.assertEqual((header.type, header.size, body), (4, 30, None))
        self.assertTrue(reader.pending)
        got = reader.feed(stream[25:])
        self.assertEqual([(h.type, b) for h, b in got], [(9, b"")])

    def test_badProtocol(self):
        stream = VDAgentMessage.pack(protocol=2, type=4, opaque=0, size=0)
        self.assertRaises(AgentStreamError, AgentReader().feed, stream)

    def test_stateRoundTrip(self):
        stream = b"".join(chunks(4, b"y" * 50))
        reader = AgentReader()
        reader.feed(stream[:30])
        other = AgentReader()
        other.restore(json.loads(json.dumps(reader.state())))
        ((header, body),) = other.feed(stream[30:])
        self.assertEqual(body, b"y" * 50)


class Setup:
    def setUp(self):
        self.device = RecordingAgent()
        self.tablet = RecordingTablet()
        self.source = FakeDisplaySource(64, 48)
        self.server = makeTestServer(disable_ticketing=True)
        for device in (self.source, self.tablet, self.device):
            self.server.addInterface(device)
        self.logged = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)
        self.main, self.agent = self.client()

    def client(self, selections=True, start=True, **kwargs):
        main = TestClientChannel(self.server, ChannelType.MAIN, **kwargs)
        agent = TestAgentClient(main, selections=selections)
        if start:
            agent.start()
        return main, agent

    def logText(self):
        return "\n".join(formatEvent(e) for e in self.logged)

    def answer(self, agent, request, data, type=None):
        agent.send("CLIPBOARD", selection=request.selection, type=type or request.type,
                   data=data)


class FakeTests(unittest.TestCase):
    def test_verified(self):
        device = RecordingAgent()
        verifyObject(IAgent, device)
        hub = AgentHub(device)
        verifyObject(IAgentClients, hub)
        verifyObject(IMigratableState, hub)

    def test_oneAgentPerServer(self):
        server = makeTestServer(disable_ticketing=True)
        server.addInterface(RecordingAgent())
        self.assertRaises(InterfaceError, server.addInterface, RecordingAgent())


class StartTests(Setup, unittest.TestCase):
    def test_initSaysConnected(self):
        main, _ = self.client(start=False)
        init = main.next("INIT")
        self.assertEqual((init.agent_connected, init.agent_tokens), (1, AGENT_TOKENS))
        self.assertIs(self.device.clients, self.server.agent)

    def test_capabilitiesAnswered(self):
        """
        The client's ANNOUNCE_CAPABILITIES with request set gets spicesrv's,
        without request.
        """
        ((name, caps),) = self.agent.messages()
        self.assertEqual(name, "ANNOUNCE_CAPABILITIES")
        self.assertEqual((caps.request, words_to_caps(caps.caps)), (0, set(SERVER_CAPS)))
        self.assertEqual(self.main.channel.agent.clientCaps,
                         {AgentCap.CLIPBOARD_BY_DEMAND, AgentCap.MONITORS_CONFIG,
                          AgentCap.CLIPBOARD_SELECTION})

    def test_agentAddedLater(self):
        """
        A client connected before the agent device hears of it with
        AGENT_CONNECTED_TOKENS, or AGENT_CONNECTED if it is old.
        """
        server = makeTestServer(disable_ticketing=True)
        modern = TestClientChannel(server, ChannelType.MAIN,
                                   channel_caps={MainCap.AGENT_CONNECTED_TOKENS})
        old = TestClientChannel(server, ChannelType.MAIN)
        self.assertEqual(modern.next("INIT").agent_connected, 0)
        old.take()
        server.addInterface(RecordingAgent())
        self.assertEqual(modern.next("AGENT_CONNECTED_TOKENS").num_tokens, AGENT_TOKENS)
        self.assertEqual(old.names(), ["AGENT_CONNECTED"])
        agent = TestAgentClient(modern)
        agent.start()
        self.assertEqual([n for n, _ in agent.messages()], ["ANNOUNCE_CAPABILITIES"])


class TokenTests(Setup, unittest.TestCase):
    def test_answerWaitsForTheChannelList(self):
        """
        The agent answers the client's capabilities only after the channel
        list, which spice-gtk sends ATTACH_CHANNELS for just after them:
        spice-gtk opens the other channels as soon as it has the list, and
        would first spend milliseconds on the agent's capabilities.
        """
        main, agent = self.client(start=False)
        main.take()
        agent.start(attach=False)
        self.assertEqual(main.names(), [])
        main.send(MAIN_CLIENT["ATTACH_CHANNELS"])
        self.assertEqual(main.names(), ["CHANNELS_LIST", "AGENT_DATA"])

    def test_serverWaitsForTokens(self):
        """
        The server sends no more AGENT_DATA than the client gave tokens for,
        and goes on when AGENT_TOKEN gives more.
        """
        main, agent = self.client(start=False)
        main.take()
        agent.start(tokens=2)
        self.device.clipboard[(CLIPBOARD, TEXT)] = b"z" * 5000
        agent.send("CLIPBOARD_REQUEST", selection=0, type=TEXT)
        self.device.clients.clipboard_grab(CLIPBOARD, [TEXT])
        agent.send("CLIPBOARD_REQUEST", selection=0, type=TEXT)
        self.assertEqual([n for n, _ in main.poll()],
                         ["CHANNELS_LIST", "AGENT_DATA", "AGENT_DATA"])
        main.send(MAIN_CLIENT["AGENT_TOKEN"], num_tokens=100)
        names = [n for n, _ in agent.messages()]
        self.assertEqual(names, ["ANNOUNCE_CAPABILITIES", "CLIPBOARD", "CLIPBOARD_GRAB",
                                 "CLIPBOARD"])

    def test_tokensGivenBack(self):
        """
        Every five AGENT_DATA consumed, the client gets five tokens back.
        """
        self.main.take()
        for _ in range(4):
            self.agent.send("CLIPBOARD_RELEASE", selection=0)
        self.assertEqual(self.main.names(), ["AGENT_TOKEN"])  # with the capabilities' one
        for _ in range(4):
            self.agent.send("CLIPBOARD_RELEASE", selection=0)
        self.assertEqual(self.main.names(), [])
        self.agent.send("CLIPBOARD_RELEASE", selection=0)
        self.assertEqual(self.main.next("AGENT_TOKEN").num_tokens, 5)


class BadDataTests(Setup, unittest.TestCase):
    def test_badProtocolClosesThatClient(self):
        self.agent.sendData(VDAgentMessage.pack(protocol=9, type=4, opaque=0, size=0))
        self.assertTrue(self.main.transport.disconnecting)
        self.assertIn("bad agent data: agent message with protocol 9", self.logText())

    def test_unknownTypeDropped(self):
        self.agent.messages()
        self.agent.sendData(b"".join(chunks(99, b"abc")))
        self.assertFalse(self.main.transport.disconnecting)
        self.assertIn("ignoring agent message type 99", self.logText())

    def test_malformedDropped(self):
        self.agent.sendData(b"".join(chunks(8, b"\0\0\0\0\1")))  # request, 1 byte short
        self.assertFalse(self.main.transport.disconnecting)
        self.assertIn("dropping malformed agent CLIPBOARD_REQUEST", self.logText())
        self.assertEqual(self.device.events, [])

    def test_unknownSelectionDropped(self):
        self.agent.send("CLIPBOARD_GRAB", selection=7, types=[1])
        self.assertIn("unknown selection 7", self.logText())
        self.assertEqual(self.device.events, [])

    def test_oversizedDroppedAndRequestFails(self):
        self.agent.send("CLIPBOARD_GRAB", selection=0, types=[TEXT])
        self.main.channel.agent._reader.maxSize = 100
        d = self.device.clients.clipboard_request(CLIPBOARD, TEXT)
        self.agent.send("CLIPBOARD", selection=0, type=TEXT, data=b"x" * 1000)
        self.failureResultOf(d, ClipboardUnavailable)
        self.assertFalse(self.main.transport.disconnecting)
        self.assertIn("dropping an agent message of type 4 and 1008 bytes", self.logText())
        self.agent.send("CLIPBOARD_RELEASE", selection=0)
        self.assertEqual(self.device.events[-1], ("clipboard_release", CLIPBOARD))

    def test_fileTransferRefused(self):
        self.agent.messages()
        self.agent.send("FILE_XFER_START", id=5, data=b"[vdagent-file-xfer]\n")
        ((name, status),) = self.agent.messages()
        self.assertEqual((name, status.id, status.result),
                         ("FILE_XFER_STATUS", 5, FileXferStatus.DISABLED))


class MonitorsTests(Setup, unittest.TestCase):
    def test_monitorsConfig(self):
        self.agent.send("MONITORS_CONFIG", num_of_monitors=2, flags=0, physical=b"", monitors=[
            dict(height=600, width=800, depth=32, x=0, y=0),
            dict(height=0, width=0, depth=32, x=0, y=0)])
        self.assertEqual(self.device.events,
                         [("monitors_config", [Monitor(800, 600, 0, 0), None])])

    def test_tabletFollowsTheFirstDisplay(self):
        self.source.resize(80, 60)
        self.assertEqual(self.tablet.events[-1], ("size", 80, 60))


class ClipboardFromClientTests(Setup, unittest.TestCase):
    def test_grabAndPaste(self):
        """
        A client's grab makes it the owner; the device's request reaches it
        and its answer fires the Deferred.
        """
        self.agent.messages()
        self.agent.send("CLIPBOARD_GRAB", selection=0, types=[TEXT, PNG])
        self.assertEqual(self.device.events, [("clipboard_grab", CLIPBOARD, [TEXT, PNG])])
        clients = self.device.clients
        self.assertEqual(clients.clipboard_owner(CLIPBOARD), [TEXT, PNG])
        self.assertIsNone(clients.clipboard_owner(PRIMARY))
        d = clients.clipboard_request(CLIPBOARD, TEXT)
        ((name, request),) = self.agent.messages()
        self.assertEqual((name, request.selection, request.type),
                         ("CLIPBOARD_REQUEST", 0, TEXT))
        self.assertNoResult(d)
        self.answer(self.agent, request, "héllo".encode("utf-8"))
        self.assertEqual(self.successResultOf(d), "héllo".encode("utf-8"))

    def test_bigDataInChunks(self):
        self.agent.send("CLIPBOARD_GRAB", selection=1, types=[PNG])
        d = self.device.clients.clipboard_request(PRIMARY, PNG)
        data = bytes(range(256)) * 100
        self.assertEqual(self.agent.send("CLIPBOARD", selection=1, type=PNG, data=data), 13)
        self.assertEqual(self.successResultOf(d), data)

    def test_emptyAnswerFails(self):
        self.agent.send("CLIPBOARD_GRAB", selection=0, types=[TEXT])
        d = self.device.clients.clipboard_request(CLIPBOARD, PNG)
        self.agent.send("CLIPBOARD", selection=0, type=ClipboardType.NONE, data=b"")
        self.failureResultOf(d, ClipboardUnavailable)

    def test_noOwner(self):
        self.failureResultOf(self.device.clients.clipboard_request(CLIPBOARD, TEXT),
                             ClipboardUnavailable)

    def test_requestTimesOut(self):
        self.agent.send("CLIPBOARD_GRAB", selection=0, types=[TEXT])
        d = self.device.clients.clipboard_request(CLIPBOARD, TEXT)
        self.server.clock.advance(REQUEST_TIMEOUT)
        self.failureResultOf(d, ClipboardUnavailable)
        self.agent.send("CLIPBOARD", selection=0, type=TEXT, data=b"late")
        self.assertIn("dropping clipboard data nobody asked for", self.logText())

    def test_releaseAndDisconnect(self):
        self.agent.send("CLIPBOARD_GRAB", selection=0, types=[TEXT])
        self.agent.send("CLIPBOARD_GRAB", selection=1, types=[TEXT])
        self.agent.send("CLIPBOARD_RELEASE", selection=0)
        d = self.device.clients.clipboard_request(PRIMARY, TEXT)
        self.main.protocol.connectionLost(None)
        self.failureResultOf(d, ClipboardUnavailable)
        self.assertEqual(self.device.events[-2:], [("clipboard_release", CLIPBOARD),
                                                   ("clipboard_release", PRIMARY)])
        self.assertIsNone(self.device.clients.clipboard_owner(PRIMARY))

    def test_withoutSelections(self):
        """
        A client without CLIPBOARD_SELECTION speaks of CLIPBOARD only, in
        the short form.
        """
        main, agent = self.client(selections=False)
        agent.send("CLIPBOARD_GRAB", types=[TEXT])
        self.assertEqual(self.device.events[-1], ("clipboard_grab", CLIPBOARD, [TEXT]))
        agent.messages()
        d = self.device.clients.clipboard_request(CLIPBOARD, TEXT)
        ((name, request),) = agent.messages()
        self.assertEqual((name, request.type), ("CLIPBOARD_REQUEST", TEXT))
        agent.send("CLIPBOARD", type=TEXT, data=b"plain")
        self.assertEqual(self.successResultOf(d), b"plain")
        self.device.clients.clipboard_grab(PRIMARY, [TEXT])
        self.assertEqual(agent.messages(), [])


class ClipboardToClientTests(Setup, unittest.TestCase):
    def test_grabReachesReadyClients(self):
        """
        The device's grab goes to every client whose agent runs, and to a
        client that starts its agent later.
        """
        self.agent.messages()
        self.device.clients.clipboard_grab(CLIPBOARD, [TEXT, PNG])
        ((name, grab),) = self.agent.messages()
        self.assertEqual((name, grab.selection, grab.types), ("CLIPBOARD_GRAB", 0, [1, 2]))
        main, late = self.client(start=False)
        late.start()
        self.assertEqual([(n, getattr(r, "types", None)) for n, r in late.messages()],
                         [("ANNOUNCE_CAPABILITIES", None), ("CLIPBOARD_GRAB", [1, 2])])

    def test_clientPastes(self):
        self.device.clipboard[(PRIMARY, TEXT)] = b"from the device"
        self.device.clients.clipboard_grab(PRIMARY, [TEXT])
        self.agent.messages()
        self.agent.send("CLIPBOARD_REQUEST", selection=1, type=TEXT)
        ((name, data),) = self.agent.messages()
        self.assertEqual((name, data.selection, data.type, data.data),
                         ("CLIPBOARD", 1, TEXT, b"from the device"))
        self.assertEqual(self.device.events[-1], ("clipboard_request", PRIMARY, TEXT))

    def test_nothingToGive(self):
        """
        A request for a type the device has no data in, or for a selection
        it does not own, gets an empty answer.
        """
        self.device.clients.clipboard_grab(CLIPBOARD, [TEXT])
        self.agent.messages()
        self.agent.send("CLIPBOARD_REQUEST", selection=0, type=PNG)
        self.agent.send("CLIPBOARD_REQUEST", selection=1, type=TEXT)
        got = [(r.selection, r.type, r.data) for _, r in self.agent.messages()]
        self.assertEqual(got, [(0, ClipboardType.NONE, b""), (1, ClipboardType.NONE, b"")])

    def test_deviceFailureLogged(self):
        def broken(selection, type):
            raise RuntimeError("no clipboard today")
        self.device.clipboard_request = broken
        self.device.clients.clipboard_grab(CLIPBOARD, [TEXT])
        self.agent.messages()
        self.agent.send("CLIPBOARD_REQUEST", selection=0, type=TEXT)
        ((_, data),) = self.agent.messages()
        self.assertEqual(data.type, ClipboardType.NONE)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_deviceGrabTakesOverAndRelease(self):
        self.agent.send("CLIPBOARD_GRAB", selection=0, types=[TEXT])
        self.device.clients.clipboard_grab(CLIPBOARD, [PNG])
        self.assertIsNone(self.device.clients.clipboard_owner(CLIPBOARD))
        self.agent.messages()
        self.device.clients.clipboard_release(CLIPBOARD)
        self.device.clients.clipboard_release(CLIPBOARD)
        ((name, release),) = self.agent.messages()
        self.assertEqual((name, release.selection), ("CLIPBOARD_RELEASE", 0))


class MigratingAwayTests(Setup, unittest.TestCase):
    """
    A client being migrated away hears no clipboard news from the source
    (the target tells it what it offers); if it stays, it hears what it
    missed.
    """

    def test_heldThenCaughtUp(self):
        self.device.clients.clipboard_grab(PRIMARY, [TEXT])
        self.agent.messages()
        connection = self.server.agent.connections[0]
        connection.channel.beginMigration(TargetInfo.make("127.0.0.1", 5901))
        self.device.clients.clipboard_grab(CLIPBOARD, [TEXT])
        self.device.clients.clipboard_release(PRIMARY)
        self.assertEqual(self.agent.messages(), [])
        connection.channel.cancelMigration()
        got = [(n, r.selection, getattr(r, "types", None)) for n, r in self.agent.messages()]
        self.assertEqual(got, [("CLIPBOARD_GRAB", 0, [TEXT]), ("CLIPBOARD_RELEASE", 1, None)])

    def test_connectErrorCatchesUp(self):
        """
        A client that could not reach the target stays: it hears what it
        missed as it answers.
        """
        self.agent.messages()
        connection = self.server.agent.connections[0]
        connection.channel.beginMigration(TargetInfo.make("127.0.0.1", 5901))
        self.device.clients.clipboard_grab(CLIPBOARD, [PNG])
        self.assertEqual([n for n, _ in self.agent.messages()], [])
        self.main.send(MAIN_CLIENT["MIGRATE_CONNECT_ERROR"])
        self.assertEqual([n for n, _ in self.agent.messages()], ["CLIPBOARD_GRAB"])


class MigrationTests(Setup, unittest.TestCase):
    def test_seamlessDataCarriesTheAgent(self):
        """
        The main channel's migration data has the agent's tokens, the
        client's capabilities, its clipboard and a half-received message;
        a target's main channel continues from it.
        """
        self.agent.send("CLIPBOARD_GRAB", selection=1, types=[TEXT])
        stream = b"".join(chunks(9, b"\1\0\0\0"))
        self.agent.sendData(stream[:7])
        fields = json.loads(json.dumps(self.main.channel.migrationData()))
        target = makeTestServer(disable_ticketing=True)
        device = RecordingAgent()
        target.addInterface(device)
        main, agent = TestClientChannel(target, ChannelType.MAIN), None
        channel = main.channel
        channel.restoreMigrationData(fields)
        self.assertEqual(channel.agent._freed, self.main.channel.agent._freed)
        self.assertEqual(channel.agent.sendTokens, 0xFFFFFFFF - 1)
        self.assertTrue(channel.agent.ready)
        self.assertEqual(device.events, [("clipboard_grab", PRIMARY, [TEXT])])
        main.take()
        agent = TestAgentClient(main)
        agent.sendData(stream[7:])
        self.assertEqual(device.events[-1], ("clipboard_release", PRIMARY))
        self.assertEqual(agent.messages(), [])

    def test_hubStateForSemiSeamless(self):
        """
        What clients own moves by session id with the device state, for a
        client that arrives (or already linked its main channel) here.
        """
        self.agent.send("CLIPBOARD_GRAB", selection=0, types=[TEXT, PNG])
        state = self.server.agent.get_migration_state()
        session = self.main.channel.session.id
        self.assertEqual(json.loads(state), {str(session): {"0": [1, 2]}})
        target = makeTestServer(disable_ticketing=True)
        device = RecordingAgent()
        target.addInterface(device)
        target.agent.set_migration_state(state)
        arriving = TestClientChannel(target, ChannelType.MAIN, connection_id=session)
        self.assertEqual(device.events, [("clipboard_grab", CLIPBOARD, [1, 2])])
        self.assertIs(target.agent.owners[CLIPBOARD], arriving.channel.agent)
        self.assertRaises(ValueError, target.agent.set_migration_state, b"{")

    def test_seamlessTarget(self):
        """
        Through the real seamless path: the main channel's MIGRATE_DATA
        restores the agent.
        """
        target = makeTestServer(disable_ticketing=True, seamless_migration=True)
        target.addInterface(FakeDisplaySource())
        device = RecordingAgent()
        target.addInterface(device)
        main = TestClientChannel(target, ChannelType.MAIN, connection_id=77,
                                 channel_caps={MainCap.SEMI_SEAMLESS_MIGRATE,
                                               MainCap.SEAMLESS_MIGRATE})
        main.send(MAIN_CLIENT["MIGRATE_DST_DO_SEAMLESS"], src_version=1)
        self.agent.send("CLIPBOARD_GRAB", selection=0, types=[TEXT])
        data = packMigrationData(self.main.channel.migrationData())
        main.send(COMMON_CLIENT["MIGRATE_DATA"], data=data)
        self.assertEqual(device.events, [("clipboard_grab", CLIPBOARD, [TEXT])])
        self.assertTrue(main.channel.agent.ready)
