"""
Tests for the QMP monitor (L{spicesrv.control.qmp}) and its SpiceServer
backend (L{spicesrv.control.backend}), in memory with StringTransport.
"""

import json
import socket

from twisted.internet import defer, endpoints, task
from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.trial import unittest
from zope.interface.verify import verifyObject

import spicesrv
from spicesrv.control.backend import SpiceServerBackend
from spicesrv.control.commands import COMMANDS
from spicesrv.control.jsonstream import MAX_NESTING, JSONSplitter
from spicesrv.control.qmp import QMPFactory, monitorEndpoint
from spicesrv.interfaces import IMonitorBackend
from spicesrv.link import LinkInfo
from spicesrv.server import PasswordError, SpiceServer
from spicesrv.testing import LogCapture, RecordingMonitorBackend
from spicesrv.wire.constants import MouseMode

SECRET = "Hunter2-xyzzy"


class Client:
    """
    One monitor connection over a StringTransport.
    """

    def __init__(self, factory, peer=None, transport=None):
        self.protocol = factory.buildProtocol(None)
        self.transport = transport or StringTransport(peerAddress=peer)
        self.protocol.makeConnection(self.transport)
        self.greeting = self.messages()[0]

    def raw(self):
        data = self.transport.value()
        self.transport.clear()
        return data

    def messages(self):
        data = self.raw()
        assert data == b"" or data.endswith(b"\r\n"), data
        return [json.loads(line) for line in data.split(b"\r\n") if line]

    def send(self, data):
        if not isinstance(data, bytes):
            data = json.dumps(data).encode("utf-8")
        self.protocol.dataReceived(data)
        return self.messages()

    def execute(self, command, arguments=None, **extra):
        request = {"execute": command}
        if arguments is not None:
            request["arguments"] = arguments
        request.update(extra)
        (reply,) = self.send(request)
        return reply

    def negotiate(self):
        assert self.execute("qmp_capabilities") == {"return": {}}
        return self


class MonitorTestCase(unittest.TestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1700000000.25)
        self.backend = RecordingMonitorBackend()
        self.shutdowns = []
        self.factory = QMPFactory(self.backend, self.clock,
                                  shutdown=lambda: self.shutdowns.append(True))
        self.log = LogCapture(self)

    def client(self, negotiate=True, **kwargs):
        client = Client(self.factory, **kwargs)
        return client.negotiate() if negotiate else client

    def assertError(self, reply, desc, errorClass="GenericError"):
        self.assertEqual(reply.get("error"), {"class": errorClass, "desc": desc}, reply)

    def logText(self):
        return self.log.text()


class GreetingAndNegotiationTests(MonitorTestCase):

    def test_greeting(self):
        client = self.client(negotiate=False)
        version = client.greeting["QMP"]["version"]
        self.assertEqual(sorted(version["qemu"]), ["major", "micro", "minor"])
        self.assertTrue(all(isinstance(v, int) for v in version["qemu"].values()))
        self.assertEqual(version["package"], "spicesrv %s" % spicesrv.__version__)
        self.assertEqual(client.greeting["QMP"]["capabilities"], [])

    def test_linesEndWithCRLF(self):
        client = self.client(negotiate=False)
        client.protocol.dataReceived(b'{"execute": "qmp_capabilities"}')
        self.assertEqual(client.raw(), b'{"return": {}}\r\n')

    def test_commandsBeforeNegotiation(self):
        client = self.client(negotiate=False)
        for command in ("query-spice", "no-such-command", "query-commands"):
            reply = client.execute(command, id=7)
            self.assertError(reply, "Expecting capabilities negotiation with 'qmp_capabilities'",
                             "CommandNotFound")
            self.assertEqual(reply["id"], 7)
        self.assertEqual(self.backend.calls, [])

    def test_negotiation(self):
        client = self.client(negotiate=False)
        self.assertEqual(client.execute("qmp_capabilities", {}, id="a"),
                         {"return": {}, "id": "a"})
        self.assertEqual(client.execute("query-status"),
                         {"return": {"running": True, "status": "running"}})

    def test_negotiationTwice(self):
        client = self.client()
        self.assertError(client.execute("qmp_capabilities"),
                         "Capabilities negotiation is already complete, command ignored",
                         "CommandNotFound")

    def test_oobNotOffered(self):
        client = self.client(negotiate=False)
        self.assertError(client.execute("qmp_capabilities", {"enable": ["oob"]}),
                         "Capability oob not available")
        self.assertError(client.execute("qmp_capabilities", {"enable": ["nope"]}),
                         "Parameter 'enable[0]' does not accept value 'nope'")
        self.assertError(client.execute("qmp_capabilities", {"enable": "oob"}),
                         "Invalid parameter type for 'enable', expected: array")
        self.assertFalse(client.protocol.negotiated)

    def test_unknownCommand(self):
        self.assertError(self.client().execute("no-such-command", id=1),
                         "The command no-such-command has not been found", "CommandNotFound")

    def test_queryVersionMatchesGreeting(self):
        client = self.client()
        self.assertEqual(client.execute("query-version")["return"],
                         client.greeting["QMP"]["version"])

    def test_queryCommands(self):
        names = [c["name"] for c in self.client().execute("query-commands")["return"]]
        self.assertEqual(sorted(names), sorted(COMMANDS))
        for name in ("qmp_capabilities", "query-spice", "client_migrate_info", "migrate",
                     "migrate_cancel", "query-migrate", "set_password", "expire_password",
                     "query-version", "query-status", "quit"):
            self.assertIn(name, names)

    def test_quit(self):
        client = self.client()
        other = self.client()
        self.assertEqual(client.execute("quit"), {"return": {}})
        self.assertEqual(self.shutdowns, [])
        self.clock.advance(0)
        self.assertEqual(self.shutdowns, [True])
        (event,) = other.messages()
        self.assertEqual(event["event"], "SHUTDOWN")
        self.assertEqual(event["data"], {"guest": False, "reason": "host-qmp-quit"})

    def test_quitWithoutShutdown(self):
        factory = QMPFactory(RecordingMonitorBackend(), self.clock)
        reply = Client(factory).negotiate().execute("quit")
        self.assertIn("quit is not available", reply["error"]["desc"])


class RequestShapeTests(MonitorTestCase):

    def test_notAnObject(self):
        client = self.client()
        for value in (b"[1, 2]\n", b"42\n", b'"query-spice"\n'):
            (reply,) = client.send(value)
            self.assertEqual(reply, {"error": {"class": "GenericError",
                                               "desc": "QMP input must be a JSON object"}})

    def test_badMembers(self):
        client = self.client()
        cases = [
            ({"execute": 1, "id": 3}, "QMP input member 'execute' must be a string"),
            ({"execute": "query-spice", "arguments": [], "id": 3},
             "QMP input member 'arguments' must be an object"),
            ({"execute": "query-spice", "extra": 1, "id": 3},
             "QMP input member 'extra' is unexpected"),
            ({"exec-oob": "query-spice", "id": 3}, "QMP input member 'exec-oob' is unexpected"),
            ({"arguments": {}, "id": 3}, "QMP input lacks member 'execute'"),
        ]
        for request, desc in cases:
            (reply,) = client.send(request)
            self.assertError(reply, desc)
            self.assertEqual(reply["id"], 3)

    def test_idOfAnyType(self):
        client = self.client()
        for value in (0, "x", None, [1, {"a": 2}], {"nested": True}, 2.5):
            reply = client.execute("query-status", id=value)
            self.assertEqual(reply["id"], value)
        self.assertNotIn("id", client.execute("query-status"))

    def test_noArgumentsForArgumentlessCommand(self):
        self.assertError(self.client().execute("query-spice", {"verbose": True}),
                         "Parameter 'verbose' is unexpected")


class StreamTests(MonitorTestCase):

    def test_badJSONKeepsConnection(self):
        client = self.client()
        (reply,) = client.send(b'{ "execute": }\n')
        self.assertEqual(reply, {"error": {"class": "GenericError",
                                           "desc": "JSON parse error, expecting value"}})
        self.assertEqual(client.execute("query-status", id=1)["id"], 1)
        self.assertFalse(client.transport.disconnecting)

    def test_objectOverSeveralLines(self):
        client = self.client()
        replies = client.send(b'{"execute":\n  "query-status",\n "id": 5\n}')
        self.assertEqual(replies, [{"return": {"running": True, "status": "running"}, "id": 5}])

    def test_severalObjectsInOneWrite(self):
        client = self.client(negotiate=False)
        replies = client.send(b'{"execute": "qmp_capabilities"}{"execute": "query-status",'
                              b' "id": 1}\r\n{"execute": "query-version", "id": 2}\n')
        self.assertEqual([r.get("id") for r in replies], [None, 1, 2])

    def test_byteAtATime(self):
        client = self.client()
        request = json.dumps({"execute": "set_password", "id": "\u00e9\\\"}",
                              "arguments": {"protocol": "spice", "password": "a{[\"b"}})
        for byte in request.encode("utf-8"):
            client.protocol.dataReceived(bytes([byte]))
        self.assertEqual(client.messages(), [{"return": {}, "id": "\u00e9\\\"}"}])
        self.assertEqual(self.backend.calls, [("set_password", "a{[\"b", "keep")])

    def test_controlCharacterResetsParser(self):
        """
        As qmp-spec.rst says, an ASCII control character (or 0xFF) gets the
        parser out of an incomplete request.
        """
        client = self.client()
        self.assertEqual(client.send(b'{"execute": "query-status", "arguments": {'), [])
        (reply,) = client.send(b'\x01')
        self.assertTrue(reply["error"]["desc"].startswith("JSON parse error"), reply)
        self.assertEqual(client.execute("query-status", id=9)["id"], 9)
        (reply,) = client.send(b'\xff')
        self.assertTrue(reply["error"]["desc"].startswith("JSON parse error"), reply)

    def test_newlineInsideStringIsAnError(self):
        client = self.client()
        replies = client.send(b'{"execute": "query-st\n{"execute": "query-status", "id": 1}\n')
        self.assertTrue(replies[0]["error"]["desc"].startswith("JSON parse error"))
        self.assertEqual(replies[-1], {"return": {"running": True, "status": "running"},
                                       "id": 1})

    def test_nonFiniteNumbersRejected(self):
        (reply,) = self.client().send(b'{"execute": "query-status", "id": NaN}\n')
        self.assertTrue(reply["error"]["desc"].startswith("JSON parse error"))

    def test_invalidUTF8(self):
        (reply,) = self.client().send(b'{"execute": "query-status", "id": "\xc3\x28"}\n')
        self.assertEqual(reply["error"]["desc"], "JSON parse error, invalid UTF-8 sequence")

    def test_nestingLimit(self):
        client = self.client()
        deep = b"[" * (MAX_NESTING + 10) + b"]" * (MAX_NESTING + 10)
        replies = client.send(deep + b'{"execute": "query-status", "id": 1}')
        self.assertEqual(replies[0]["error"]["desc"], "JSON nesting depth limit exceeded")
        self.assertEqual(replies[1:], [{"return": {"running": True, "status": "running"},
                                        "id": 1}])

    def test_oversizeRequestDisconnects(self):
        self.factory.maxRequestSize = 4096
        client = self.client()
        client.send(b'{"execute": "query-status", "id": "' + b"x" * 5000)
        self.assertTrue(client.transport.disconnecting)
        self.assertIn("without a complete request", self.logText())
        # Nothing more is read from a client being disconnected.
        client.protocol.dataReceived(b'"}{"execute": "query-status"}')
        self.assertEqual(client.messages(), [])

    def test_manySmallRequestsAreFine(self):
        """
        The limit is on what is held, not on what arrives at once.
        """
        self.factory.maxRequestSize = 4096
        client = self.client()
        request = b'{"execute": "query-status"}\n'
        replies = client.send(request * 500)
        self.assertEqual(len(replies), 500)
        self.assertFalse(client.transport.disconnecting)

    def test_pipelinedWhileBusyCountsTowardsLimit(self):
        self.factory.maxRequestSize = 4096
        self.backend.results["migrate"] = defer.Deferred()
        client = self.client()
        client.send(b'{"execute": "migrate", "arguments": {"uri": "tcp:x:1"}}')
        client.send(b'{"execute": "query-status"}\n' * 100)
        self.assertFalse(client.transport.disconnecting)
        client.send(b'{"execute": "query-status"}\n' * 100)
        self.assertTrue(client.transport.disconnecting)


class SplitterTests(unittest.TestCase):

    def items(self, splitter):
        items = []
        while True:
            item = splitter.next()
            if item is None:
                return items
            items.append(item)

    def test_values(self):
        splitter = JSONSplitter()
        splitter.feed(b' {"a": "}]\\"{"} [1, [2]]\n"s" 12 true ')
        self.assertEqual(self.items(splitter), [
            ("value", {"a": '}]"{'}), ("value", [1, [2]]), ("value", "s"), ("value", 12),
            ("value", True)])
        self.assertEqual(len(splitter), 0)

    def test_strayClosers(self):
        splitter = JSONSplitter()
        splitter.feed(b'} ] {"a": 1}')
        kinds = [kind for kind, _ in self.items(splitter)]
        self.assertEqual(kinds, ["error", "error", "value"])

    def test_mismatchedBrackets(self):
        splitter = JSONSplitter()
        splitter.feed(b'{"a": [1}] {"b": 2}')
        self.assertEqual(self.items(splitter),
                         [("error", "JSON parse error, expecting ',' delimiter"),
                          ("value", {"b": 2})])

    def test_heldBytes(self):
        splitter = JSONSplitter()
        splitter.feed(b'{"a": 1} {"b": ')
        self.assertEqual(len(splitter), 15)
        self.assertEqual(self.items(splitter), [("value", {"a": 1})])
        self.assertEqual(len(splitter), 6)

    def test_skippedValueIsNotKept(self):
        splitter = JSONSplitter(maxNesting=4)
        items = []
        for _ in range(100):
            splitter.feed(b"[[[[[[[[[[")
            items += self.items(splitter)
        self.assertEqual(items, [("error", "JSON nesting depth limit exceeded")])
        self.assertLess(len(splitter), 20)
        splitter.feed(b"]" * 1000 + b"[1]")
        self.assertEqual(self.items(splitter), [("value", [1])])


class FillingTransport(StringTransport):
    """
    A transport whose send buffer holds C{size} bytes: past that it pauses
    its producer, as a TCP transport does when the peer does not read;
    L{drain} empties it and resumes the producer.
    """

    def __init__(self, size, **kwargs):
        StringTransport.__init__(self, **kwargs)
        self.size = size
        self.full = False

    def write(self, data):
        StringTransport.write(self, data)
        if not self.full and len(self.io.getvalue()) > self.size and self.producer:
            self.full = True
            self.producer.pauseProducing()

    def drain(self):
        data = self.value()
        self.clear()
        if self.full:
            self.full = False
            self.producer.resumeProducing()
        return data


class FlowControlTests(MonitorTestCase):
    """
    A client that does not read its answers is not read from while the
    transport's send buffer is full (issue 8: a QMP client sending requests
    and never reading grew the server by 747 MB in 15 s).
    """

    def test_registersAsStreamingProducer(self):
        client = self.client()
        self.assertIs(client.transport.producer, client.protocol)
        self.assertTrue(client.transport.streaming)

    def test_fullSendBufferStopsReading(self):
        client = self.client()
        client.protocol.pauseProducing()            # as the transport does
        self.assertEqual(client.transport.producerState, "paused")
        self.assertEqual(client.send(b'{"execute": "query-status", "id": 1}'
                                     b'{"execute": "query-status", "id": 2}'), [])
        client.protocol.resumeProducing()
        self.assertEqual(client.transport.producerState, "producing")
        self.assertEqual([r["id"] for r in client.messages()], [1, 2])

    def test_fillingMidBatch(self):
        """
        Requests that arrived together are run only until the send buffer
        fills; the rest wait, unanswered, until it drains.
        """
        transport = FillingTransport(1000)
        client = Client(self.factory, transport=transport).negotiate()
        request = b'{"execute": "query-commands"}\n'
        client.protocol.dataReceived(request * 200)
        answered = transport.value().count(b"\r\n")
        self.assertLess(answered, 10)
        self.assertEqual(transport.producerState, "paused")
        self.assertLessEqual(len(client.protocol._splitter), len(request) * 200)
        total = 0
        for _ in range(200):
            total += transport.drain().count(b"\r\n")
            if total >= 200:
                break
        self.assertEqual(total, 200)
        self.assertEqual(transport.producerState, "producing")

    def test_busyCommandAndFullBuffer(self):
        """
        A command that finishes while the buffer is full still answers,
        and reading resumes only once the buffer has drained too.
        """
        running = self.backend.results["migrate"] = defer.Deferred()
        client = self.client()
        client.send({"execute": "migrate", "arguments": {"uri": "tcp:x:1"}, "id": 1})
        self.assertEqual(client.transport.producerState, "paused")
        client.protocol.pauseProducing()
        running.callback(None)
        self.assertEqual(client.messages(), [{"return": {}, "id": 1}])
        self.assertEqual(client.transport.producerState, "paused")
        client.protocol.resumeProducing()
        self.assertEqual(client.transport.producerState, "producing")

    def test_backlogLimit(self):
        """
        Events keep coming while the buffer is full; past the backlog limit
        the client is disconnected instead of buffered without end.
        """
        self.factory.maxOutputBacklog = 1000
        client = self.client()
        other = self.client()
        client.protocol.pauseProducing()
        for _ in range(20):
            self.backend.emit("MIGRATION", {"status": "active"})
        self.assertTrue(client.transport.disconnecting)
        self.assertTrue(client.transport.disconnected)      # aborted
        self.assertLess(len(client.raw()), 1000 + 200)
        self.assertIn("does not read", self.logText())
        self.assertEqual(len(other.messages()), 20)
        self.assertFalse(other.transport.disconnecting)

    def test_backlogResetsWhenDrained(self):
        self.factory.maxOutputBacklog = 1000
        client = self.client()
        for _ in range(5):
            client.protocol.pauseProducing()
            for _ in range(8):
                self.backend.emit("MIGRATION", {"status": "active"})
            client.protocol.resumeProducing()
        self.assertFalse(client.transport.disconnecting)
        self.assertEqual(len(client.messages()), 40)

    def test_stopProducing(self):
        client = self.client()
        client.protocol.stopProducing()
        self.assertEqual(client.send({"execute": "query-status"}), [])


class EventTests(MonitorTestCase):

    def test_eventsGoToNegotiatedClients(self):
        negotiated = self.client()
        waiting = self.client(negotiate=False)
        data = {"server": {"host": "127.0.0.1", "port": "5900", "family": "ipv4"},
                "client": {"host": "127.0.0.1", "port": "40000", "family": "ipv4"}}
        self.backend.emit("SPICE_CONNECTED", data)
        (event,) = negotiated.messages()
        self.assertEqual(event, {"event": "SPICE_CONNECTED", "data": data,
                                 "timestamp": {"seconds": 1700000000, "microseconds": 250000}})
        self.assertEqual(waiting.messages(), [])
        waiting.negotiate()
        self.backend.emit("MIGRATION", {"status": "active"})
        self.assertEqual(waiting.messages()[0]["data"], {"status": "active"})

    def test_eventWithoutData(self):
        client = self.client()
        self.backend.emit("SPICE_MIGRATE_COMPLETED", {})
        self.backend.emit("SPICE_MIGRATE_COMPLETED", None)
        for event in client.messages():
            self.assertEqual(sorted(event), ["event", "timestamp"])

    def test_disconnectedClientsGetNothing(self):
        client = self.client()
        client.protocol.connectionLost(None)
        self.backend.emit("MIGRATION", {"status": "setup"})
        self.assertEqual(client.messages(), [])
        self.assertEqual(self.factory.clients, set())

    def test_everyEventName(self):
        client = self.client()
        names = ["SPICE_CONNECTED", "SPICE_INITIALIZED", "SPICE_DISCONNECTED",
                 "SPICE_MIGRATE_COMPLETED", "MIGRATION"]
        for name in names:
            self.backend.emit(name, {"status": "completed"} if name == "MIGRATION" else None)
        self.assertEqual([e["event"] for e in client.messages()], names)


class QuerySpiceTests(MonitorTestCase):

    def test_querySpice(self):
        reply = self.client().execute("query-spice", id=1)
        self.assertEqual(reply, {"return": self.backend.spice, "id": 1})

    def test_backendFailure(self):
        self.backend.spice = None
        self.backend.results["query_spice"] = RuntimeError("boom")
        reply = self.client().execute("query-spice")
        self.assertEqual(reply["error"]["class"], "GenericError")
        self.assertIn("internal error", reply["error"]["desc"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ClientMigrateInfoTests(MonitorTestCase):

    def test_plainPort(self):
        reply = self.client().execute("client_migrate_info", {
            "protocol": "spice", "hostname": "dst.example", "port": 5900}, id=1)
        self.assertEqual(reply, {"return": {}, "id": 1})
        self.assertEqual(self.backend.calls,
                         [("client_migrate_info", "dst.example", 5900, None, None)])

    def test_tlsPortIsCheckedFirst(self):
        self.backend.results["check_target"] = defer.succeed((True, "subject matches"))
        reply = self.client().execute("client_migrate_info", {
            "protocol": "spice", "hostname": "dst", "port": 5900, "tls-port": 5901,
            "cert-subject": "C=XX,O=Org,CN=dst"})
        self.assertEqual(reply, {"return": {}})
        self.assertEqual(self.backend.calls, [
            ("check_target", "dst", 5901, "C=XX,O=Org,CN=dst"),
            ("client_migrate_info", "dst", 5900, 5901, "C=XX,O=Org,CN=dst")])

    def test_targetMismatch(self):
        self.backend.results["check_target"] = defer.succeed(
            (False, "the target presents CN=other, not CN=dst"))
        reply = self.client().execute("client_migrate_info", {
            "protocol": "spice", "hostname": "dst", "tls-port": 5901,
            "cert-subject": "CN=dst"})
        self.assertError(reply, "the target presents CN=other, not CN=dst")
        self.assertEqual([c[0] for c in self.backend.calls], ["check_target"])

    def test_uncheckableTarget(self):
        self.backend.results["check_target"] = None
        reply = self.client().execute("client_migrate_info", {
            "protocol": "spice", "hostname": "dst", "tls-port": 5901})
        self.assertEqual(reply, {"return": {}})
        self.assertEqual(self.backend.calls[-1], ("client_migrate_info", "dst", None, 5901, None))

    def test_pendingCheckHoldsLaterRequests(self):
        """
        Requests are answered in order: while the target check runs, the
        next request waits and the client is not read from.
        """
        check = defer.Deferred()
        self.backend.results["check_target"] = check
        client = self.client()
        replies = client.send(
            b'{"execute": "client_migrate_info", "id": 1, "arguments": {"protocol": "spice",'
            b' "hostname": "dst", "tls-port": 5901}}{"execute": "query-status", "id": 2}')
        self.assertEqual(replies, [])
        self.assertEqual(client.transport.producerState, "paused")
        check.callback((True, "ok"))
        self.assertEqual([r["id"] for r in client.messages()], [1, 2])
        self.assertEqual(client.transport.producerState, "producing")

    def test_backendRefuses(self):
        self.backend.results["client_migrate_info"] = defer.fail(
            ValueError("tls-port 70000 is not a TCP port"))
        reply = self.client().execute("client_migrate_info", {
            "protocol": "spice", "hostname": "dst", "port": 1})
        self.assertError(reply, "tls-port 70000 is not a TCP port")

    def test_argumentErrors(self):
        client = self.client()
        base = {"protocol": "spice", "hostname": "dst", "port": 5900}
        cases = [
            ({"protocol": "vnc", "hostname": "dst", "port": 1},
             "Parameter 'protocol' expects 'spice'"),
            ({"protocol": "spice", "hostname": "dst"}, "Parameter 'port/tls-port' is missing"),
            ({"protocol": "spice", "port": 1}, "Parameter 'hostname' is missing"),
            ({"hostname": "dst", "port": 1}, "Parameter 'protocol' is missing"),
            (dict(base, port="5900"), "Invalid parameter type for 'port', expected: integer"),
            (dict(base, port=True), "Invalid parameter type for 'port', expected: integer"),
            (dict(base, port=5900.5), "Invalid parameter type for 'port', expected: integer"),
            (dict(base, port=1 << 64), "Invalid parameter type for 'port', expected: integer"),
            (dict(base, hostname=["dst"]),
             "Invalid parameter type for 'hostname', expected: string"),
            (dict(base, **{"tls-port": "x"}),
             "Invalid parameter type for 'tls-port', expected: integer"),
            (dict(base, **{"cert-subject": 1}),
             "Invalid parameter type for 'cert-subject', expected: string"),
            (dict(base, foo=1), "Parameter 'foo' is unexpected"),
            (dict(base, port=70000), "Parameter 'port' expects a TCP port (0 to 65535)"),
        ]
        for arguments, desc in cases:
            self.assertError(client.execute("client_migrate_info", arguments), desc)
        self.assertEqual(self.backend.calls, [])


class MigrateTests(MonitorTestCase):

    def test_migrate(self):
        client = self.client()
        self.assertEqual(client.execute("migrate", {"uri": "tcp:dst:4444"}), {"return": {}})
        self.assertEqual(client.execute("migrate", {"uri": "tcp:dst:4444", "detach": True}),
                         {"return": {}})
        self.assertEqual(self.backend.calls, [("migrate", "tcp:dst:4444")] * 2)

    def test_migrateErrors(self):
        client = self.client()
        cases = [
            ({}, "neither 'uri' or 'channels' argument are specified in 'migrate' qmp command"),
            ({"uri": "tcp:x:1", "channels": []},
             "'uri' and 'channels' arguments are mutually exclusive; exactly one of the two "
             "should be present in 'migrate' qmp command"),
            ({"channels": [{"channel-type": "main"}]},
             "Parameter 'channels' is not supported by spicesrv; use 'uri'"),
            ({"uri": "tcp:x:1", "resume": True}, "Cannot resume if there is no paused migration"),
            ({"uri": 1}, "Invalid parameter type for 'uri', expected: string"),
            ({"uri": "tcp:x:1", "blk": True}, "Parameter 'blk' is unexpected"),
        ]
        for arguments, desc in cases:
            self.assertError(client.execute("migrate", arguments), desc)
        self.assertEqual(self.backend.calls, [])

    def test_migrateRefused(self):
        self.backend.results["migrate"] = ValueError("There's a migration process in progress")
        self.assertError(self.client().execute("migrate", {"uri": "tcp:x:1"}),
                         "There's a migration process in progress")

    def test_cancel(self):
        self.assertEqual(self.client().execute("migrate_cancel"), {"return": {}})
        self.assertEqual(self.backend.calls, [("migrate_cancel",)])

    def test_queryMigrate(self):
        client = self.client()
        self.assertEqual(client.execute("query-migrate"), {"return": {}})
        self.backend.migration = {"status": "none"}
        self.assertEqual(client.execute("query-migrate"), {"return": {}})
        self.backend.migration = {"status": "failed", "error-desc": "target refused"}
        self.assertEqual(client.execute("query-migrate"),
                         {"return": {"status": "failed", "error-desc": "target refused"}})


class PasswordTests(MonitorTestCase):

    def test_setPassword(self):
        client = self.client()
        self.assertEqual(client.execute("set_password", {"protocol": "spice",
                                                         "password": SECRET}), {"return": {}})
        self.assertEqual(client.execute("set_password", {
            "protocol": "spice", "password": SECRET, "connected": "disconnect"}),
            {"return": {}})
        self.assertEqual(self.backend.calls, [("set_password", SECRET, "keep"),
                                              ("set_password", SECRET, "disconnect")])

    def test_setPasswordErrors(self):
        client = self.client()
        cases = [
            ({"protocol": "spice"}, "Parameter 'password' is missing"),
            ({"password": SECRET}, "Parameter 'protocol' is missing"),
            ({"protocol": "rdp", "password": SECRET},
             "Parameter 'protocol' does not accept value 'rdp'"),
            ({"protocol": "spice", "password": SECRET, "connected": "maybe"},
             "Parameter 'connected' does not accept value 'maybe'"),
            ({"protocol": "spice", "password": 1234},
             "Invalid parameter type for 'password', expected: string"),
            ({"protocol": "spice", "password": SECRET, "display": "0"},
             "Parameter 'display' is unexpected"),
            ({"protocol": "vnc", "password": SECRET, "display": "0"},
             "Could not set password: spicesrv has no VNC display"),
        ]
        for arguments, desc in cases:
            self.assertError(client.execute("set_password", arguments), desc)
        self.assertEqual(self.backend.calls, [])

    def test_setPasswordRefused(self):
        self.backend.results["set_password"] = PasswordError(
            "1 client(s) connected; use connected=keep or disconnect")
        reply = self.client().execute("set_password", {
            "protocol": "spice", "password": SECRET, "connected": "fail"})
        self.assertError(reply, "1 client(s) connected; use connected=keep or disconnect")

    def test_expirePassword(self):
        client = self.client()
        for when in ("now", "never", "+60", "1700000000"):
            self.assertEqual(client.execute("expire_password", {"protocol": "spice",
                                                                "time": when}), {"return": {}})
        self.assertEqual([c[1] for c in self.backend.calls],
                         ["now", "never", "+60", "1700000000"])

    def test_expirePasswordErrors(self):
        client = self.client()
        cases = [
            ({"protocol": "spice", "time": "soon"}, "Parameter 'time' doesn't take value 'soon'"),
            ({"protocol": "spice", "time": "-5"}, "Parameter 'time' doesn't take value '-5'"),
            ({"protocol": "spice", "time": 60},
             "Invalid parameter type for 'time', expected: string"),
            ({"protocol": "spice"}, "Parameter 'time' is missing"),
            ({"protocol": "vnc", "time": "now"},
             "Could not set password expire time: spicesrv has no VNC display"),
        ]
        for arguments, desc in cases:
            self.assertError(client.execute("expire_password", arguments), desc)
        self.assertEqual(self.backend.calls, [])

    def test_passwordNeverLogged(self):
        """
        The password appears in no log event, whatever happens to the
        command, and never in an error description.
        """
        client = self.client()
        client.execute("set_password", {"protocol": "spice", "password": SECRET})
        client.execute("set_password", {"protocol": "spice", "password": SECRET, "x": 1})
        client.execute("set_password", {"protocol": "vnc", "password": SECRET})
        client.send(b'{"execute": "set_password", "arguments": {"password": "' +
                    SECRET.encode() + b'", }}\n')
        client.send(b'{"execute": "set_password", "arguments": {"password": "' +
                    SECRET.encode() + b'\n')
        self.backend.results["set_password"] = ValueError("bad password %r" % SECRET)
        reply = client.execute("set_password", {"protocol": "spice", "password": SECRET})
        self.assertNotIn(SECRET, reply["error"]["desc"])
        self.backend.results["set_password"] = RuntimeError("crashed on %s" % SECRET)
        reply = client.execute("set_password", {"protocol": "spice", "password": SECRET})
        self.assertNotIn(SECRET, reply["error"]["desc"])
        self.assertTrue(self.log.events)
        for event, line in zip(self.log.events, self.log.texts()):
            self.assertNotIn(SECRET, line)
            self.assertNotIn(SECRET, repr(event))
        self.assertIn("set_password", self.logText())


class BackendInterfaceTests(unittest.TestCase):

    def test_fakeBackend(self):
        self.assertTrue(verifyObject(IMonitorBackend, RecordingMonitorBackend()))

    def test_spiceServerBackend(self):
        server = SpiceServer(clock=task.Clock())
        self.assertTrue(verifyObject(IMonitorBackend, SpiceServerBackend(server)))


class FakeSession:
    def __init__(self, id, channels):
        self.id = id
        self.channels = {(c.info.channel_type, c.info.channel_id): c for c in channels}


class FakeChannel:
    def __init__(self, **kwargs):
        fields = dict(connection_id=1804289383, channel_type=1, channel_id=0,
                      common_caps=frozenset(), channel_caps=frozenset(), secure=False,
                      peer="127.0.0.1:54924")
        fields.update(kwargs)
        self.info = LinkInfo(**fields)


class FakeMigrator:
    def __init__(self):
        self.calls = []
        self.observers = []

    def migrate(self, uri):
        self.calls.append(("migrate", uri))

    def migrate_cancel(self):
        self.calls.append(("migrate_cancel",))

    def query_migrate(self):
        return {"status": "active"}

    def addEventObserver(self, observer):
        self.observers.append(observer)


class SpiceServerBackendTests(unittest.TestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.clock.advance(1000)
        self.server = SpiceServer(clock=self.clock, password="old")

    def test_querySpiceNoClients(self):
        backend = SpiceServerBackend(self.server, addresses={"host": "0.0.0.0", "port": 5920,
                                                             "tls-port": 5921})
        self.assertEqual(backend.query_spice(), {
            "enabled": True, "migrated": False, "host": "0.0.0.0", "port": 5920,
            "tls-port": 5921, "auth": "spice", "compiled-version": spicesrv.__version__,
            "mouse-mode": "server", "channels": []})

    def test_querySpiceDefaults(self):
        """
        Without addresses the host is QEMU's C{"*"} and the ports are left
        out; a port of 0 is left out too; addresses may be a callable.
        """
        info = SpiceServerBackend(self.server).query_spice()
        self.assertEqual(info["host"], "*")
        self.assertNotIn("port", info)
        self.assertNotIn("tls-port", info)
        info = SpiceServerBackend(self.server, addresses=lambda: {"port": 0, "tls-port": 5901}
                                  ).query_spice()
        self.assertNotIn("port", info)
        self.assertEqual(info["tls-port"], 5901)

    def test_authAndMouseMode(self):
        server = SpiceServer(clock=self.clock, disable_ticketing=True)
        server.mouseMode = MouseMode.CLIENT
        info = SpiceServerBackend(server).query_spice()
        self.assertEqual((info["auth"], info["mouse-mode"]), ("none", "client"))

    def test_channels(self):
        self.server.sessions[7] = FakeSession(7, [
            FakeChannel(connection_id=7, channel_type=2, secure=True, peer="10.0.0.2:4001"),
            FakeChannel(connection_id=0, channel_type=1, peer="10.0.0.2:4000",
                        peer_address=IPv4Address("TCP", "10.0.0.2", 4000)),
        ])
        self.server.sessions[3] = FakeSession(3, [
            FakeChannel(connection_id=3, channel_type=1, peer="::1:4100"),
            FakeChannel(connection_id=3, channel_type=4, peer="",
                        peer_address=UNIXAddress(b"/run/spice.sock")),
        ])
        channels = SpiceServerBackend(self.server).query_spice()["channels"]
        self.assertEqual(channels, [
            {"host": "::1", "port": "4100", "family": "ipv6", "connection-id": 3,
             "channel-type": 1, "channel-id": 0, "tls": False},
            {"host": "/run/spice.sock", "port": "", "family": "unix", "connection-id": 3,
             "channel-type": 4, "channel-id": 0, "tls": False},
            {"host": "10.0.0.2", "port": "4000", "family": "ipv4", "connection-id": 7,
             "channel-type": 1, "channel-id": 0, "tls": False},
            {"host": "10.0.0.2", "port": "4001", "family": "ipv4", "connection-id": 7,
             "channel-type": 2, "channel-id": 0, "tls": True},
        ])

    def test_passwords(self):
        backend = SpiceServerBackend(self.server)
        backend.set_password("new", "keep")
        self.assertEqual(self.server.ticket.check(b"new\0")[0], True)
        backend.expire_password("now")
        self.assertEqual(self.server.ticket.check(b"new\0"),
                         (False, "the password has expired"))
        self.assertRaises(PasswordError, backend.expire_password, "soon")
        self.assertRaises(ValueError, backend.set_password, "x" * 100, "keep")

    def test_passwordThroughMonitor(self):
        factory = QMPFactory(SpiceServerBackend(self.server), self.clock)
        client = Client(factory).negotiate()
        self.assertEqual(client.execute("set_password", {"protocol": "spice",
                                                         "password": "s3cret"}),
                         {"return": {}})
        self.assertTrue(self.server.ticket.check(b"s3cret\0")[0])
        reply = client.execute("set_password", {"protocol": "spice", "password": "x" * 100})
        self.assertEqual(reply["error"]["class"], "GenericError")
        self.assertIn("SPICE allows at most", reply["error"]["desc"])
        self.assertEqual(client.execute("expire_password", {"protocol": "spice",
                                                            "time": "+60"}), {"return": {}})
        self.clock.advance(61)
        self.assertEqual(self.server.ticket.check(b"s3cret\0")[0], False)

    def test_emptyPasswordThroughMonitorRefusesClients(self):
        """
        QMP C{set_password} with C{""} succeeds, as on QEMU, and then an
        in-memory client is refused whatever it offers, until a real
        password is set.
        """
        from spicesrv.testing import TestClientChannel, testKeyPool
        from spicesrv.wire.constants import ChannelType, LinkErr
        self.server.keys = testKeyPool()
        factory = QMPFactory(SpiceServerBackend(self.server), self.clock)
        client = Client(factory).negotiate()
        self.assertEqual(client.execute("set_password", {"protocol": "spice",
                                                         "password": ""}),
                         {"return": {}})
        for offered in ("", "old"):
            link = TestClientChannel(self.server, ChannelType.MAIN, password=offered)
            self.assertEqual(link.result, LinkErr.PERMISSION_DENIED)
            self.assertTrue(link.transport.disconnecting)
        self.assertEqual(self.server.sessions, {})
        client.execute("set_password", {"protocol": "spice", "password": "n3w"})
        self.assertEqual(TestClientChannel(self.server, ChannelType.MAIN,
                                           password="n3w").result, LinkErr.OK)

    def test_clientMigrateInfo(self):
        calls = []
        answers = defer.Deferred()

        class Server:
            def migrate_connect(self, host, port=None, tls_port=None, cert_subject=None):
                calls.append((host, port, tls_port, cert_subject))
                if not host:
                    raise ValueError("a migration target needs a host name or address")
                return answers

        backend = SpiceServerBackend(Server())
        d = backend.client_migrate_info("dst", 5900, None, "CN=dst")
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(calls, [("dst", 5900, None, "CN=dst")])
        answers.callback({1: "connected"})
        failure = self.failureResultOf(backend.client_migrate_info("", 1, None, None),
                                       ValueError)
        self.assertIn("needs a host", str(failure.value))

    def test_clientMigrateInfoRealServer(self):
        if not hasattr(self.server, "migrate_connect"):
            raise unittest.SkipTest("SpiceServer.migrate_connect does not exist yet")
        backend = SpiceServerBackend(self.server)
        self.assertIsNone(self.successResultOf(
            backend.client_migrate_info("dst.example", 5900, None, None)))
        self.failureResultOf(backend.client_migrate_info("dst.example", None, None, None),
                             ValueError)

    def test_checkTarget(self):
        self.assertIsNone(SpiceServerBackend(self.server).check_target("dst", 5901, None))
        calls = []

        def check_target_identity(reactor, host, port, ca_file, cert_subject=None,
                                  hostname=None):
            calls.append((reactor, host, port, ca_file, cert_subject, hostname))
            return defer.succeed((False, "wrong subject"))

        from spicesrv.tls import probe
        self.patch(probe, "check_target_identity", check_target_identity)
        reactor = object()
        backend = SpiceServerBackend(self.server, ca_file="/ca.pem", reactor=reactor)
        result = self.successResultOf(backend.check_target("dst", 5901, "CN=dst"))
        self.assertEqual(result, (False, "wrong subject"))
        self.assertEqual(calls, [(reactor, "dst", 5901, "/ca.pem", "CN=dst", "dst")])

    def test_migrationWithoutMigrator(self):
        backend = SpiceServerBackend(self.server)
        e = self.assertRaises(ValueError, backend.migrate, "tcp:dst:4444")
        self.assertIn("migration is not available", str(e))
        self.assertIsNone(backend.migrate_cancel())
        self.assertEqual(backend.query_migrate(), {})

    def test_migrator(self):
        migrator = FakeMigrator()
        backend = SpiceServerBackend(self.server, migrator=migrator)
        backend.migrate("tcp:dst:4444")
        backend.migrate_cancel()
        self.assertEqual(migrator.calls, [("migrate", "tcp:dst:4444"), ("migrate_cancel",)])
        self.assertEqual(backend.query_migrate(), {"status": "active"})
        events = []
        backend.addEventObserver(lambda name, data: events.append((name, data)))
        (observer,) = migrator.observers
        observer("MIGRATION", {"status": "completed"})
        self.assertEqual(events, [("MIGRATION", {"status": "completed"})])

    def test_serverEvents(self):
        if not hasattr(self.server, "addEventObserver"):
            raise unittest.SkipTest("SpiceServer.addEventObserver does not exist yet")
        backend = SpiceServerBackend(self.server)
        factory = QMPFactory(backend, self.clock)
        client = Client(factory).negotiate()
        self.server.emit("SPICE_MIGRATE_COMPLETED", {})
        (event,) = client.messages()
        self.assertEqual(event["event"], "SPICE_MIGRATE_COMPLETED")

    def test_serverWithoutEvents(self):
        """
        A server object without C{addEventObserver} is fine: there are
        just no SPICE events.
        """
        class Server:
            pass
        backend = SpiceServerBackend(Server())
        backend.addEventObserver(lambda *a: None)


class EndpointTests(unittest.TestCase):

    def setUp(self):
        from twisted.internet.testing import MemoryReactor
        self.reactor = MemoryReactor()

    def test_unix(self):
        endpoint = monitorEndpoint(self.reactor, "unix:/run/spicesrv/qmp.sock")
        self.assertIsInstance(endpoint, endpoints.UNIXServerEndpoint)
        self.assertEqual(endpoint._mode, 0o600)
        endpoint = monitorEndpoint(self.reactor, "unix:/tmp/q.sock:mode=660")
        self.assertEqual(endpoint._mode, 0o660)

    def test_loopbackTCP(self):
        for description in ("tcp:4444:interface=127.0.0.1", "tcp:port=4444:interface=\\:\\:1",
                            "tcp6:4444:interface=\\:\\:1", "tcp:4444:interface=localhost",
                            "tcp:4444:interface=127.0.0.2"):
            monitorEndpoint(self.reactor, description)

    def test_refused(self):
        for description in ("tcp:4444", "tcp:4444:interface=0.0.0.0",
                            "tcp:4444:interface=192.168.1.10", "tcp6:4444",
                            "tcp6:4444:interface=\\:\\:", "ssl:4444:interface=127.0.0.1",
                            "stdio:", "systemd:domain=INET:index=0"):
            e = self.assertRaises(ValueError, monitorEndpoint, self.reactor, description)
            self.assertNotIn("\n", str(e))
        e = self.assertRaises(ValueError, monitorEndpoint, self.reactor, "tcp:4444")
        self.assertIn("no authentication", str(e))


class _LineCounter(Protocol):
    """
    A raw QMP client over a real socket: counts the CRLF-ended lines it
    reads and keeps the last few.
    """

    def __init__(self):
        self.lines = 0
        self.last = []
        self.partial = b""

    def dataReceived(self, data):
        *whole, self.partial = (self.partial + data).split(b"\r\n")
        self.lines += len(whole)
        self.last = (self.last + whole)[-5:]


class NonReadingClientTests(unittest.TestCase):
    """
    Issue 8 at the user level: a client on a real loopback socket sends
    many requests and never reads.  The monitor stops reading from it once
    its send buffer is full, what it holds for that client stays bounded,
    another client is still answered, and the first gets every answer
    once it reads.
    """

    timeout = 120
    REQUESTS = 5000         # 1.6 MB of answers: more than the (small) kernel buffers

    def setUp(self):
        from twisted.internet import reactor
        self.reactor = reactor
        self.factory = QMPFactory(RecordingMonitorBackend(), reactor)
        self.protocols = []
        build = self.factory.buildProtocol
        self.factory.buildProtocol = lambda addr: self._keep(build(addr))

    def _keep(self, protocol):
        self.protocols.append(protocol)
        return protocol

    @defer.inlineCallbacks
    def connect(self, address):
        from twisted.internet.protocol import Factory
        client = yield endpoints.TCP4ClientEndpoint(
            self.reactor, address.host, address.port).connect(
                Factory.forProtocol(_LineCounter))
        self.addCleanup(client.transport.abortConnection)
        return client

    @defer.inlineCallbacks
    def waitFor(self, condition, seconds=30):
        for _ in range(int(seconds / 0.02)):
            if condition():
                return
            yield task.deferLater(self.reactor, 0.02, lambda: None)
        self.fail("timed out waiting")

    @defer.inlineCallbacks
    def test_nonReadingClientIsBounded(self):
        port = yield monitorEndpoint(self.reactor, "tcp:0:interface=127.0.0.1").listen(
            self.factory)
        self.addCleanup(port.stopListening)
        flooder = yield self.connect(port.getHost())
        flooder.transport.pauseProducing()          # it never reads
        # Small kernel buffers on both ends (Linux lets the server's grow to
        # 4 MB), so that a few thousand answers fill them.
        yield self.waitFor(lambda: self.protocols)
        for handle, option in ((self.protocols[0].transport.getHandle(), socket.SO_SNDBUF),
                               (flooder.transport.getHandle(), socket.SO_RCVBUF)):
            handle.setsockopt(socket.SOL_SOCKET, option, 32768)
        flooder.transport.write(b'{"execute": "qmp_capabilities"}'
                                + b'{"execute": "query-commands"}' * self.REQUESTS)
        yield self.waitFor(lambda: self.protocols[0]._outputPaused)
        monitor = self.protocols[0]
        # A while later it is still paused, no longer reading, and holds
        # little: the transport's send buffer (64 KiB, then it pauses us)
        # and at most one read of requests.
        yield task.deferLater(self.reactor, 0.5, lambda: None)
        self.assertTrue(monitor._outputPaused)
        transport = monitor.transport
        unsent = len(transport.dataBuffer) + transport._tempDataLen
        self.assertLess(unsent, transport.bufferSize + 4096)
        self.assertLess(len(monitor._splitter), 256 * 1024)
        self.assertFalse(transport.disconnecting)

        other = yield self.connect(port.getHost())
        other.transport.write(b'{"execute": "qmp_capabilities"}'
                              b'{"execute": "query-status", "id": "other"}')
        yield self.waitFor(lambda: other.lines >= 3, 10)
        self.assertEqual(json.loads(other.last[-1]),
                         {"return": {"running": True, "status": "running"}, "id": "other"})

        flooder.transport.resumeProducing()
        yield self.waitFor(lambda: flooder.lines >= self.REQUESTS + 2, 60)
        self.assertEqual(flooder.lines, self.REQUESTS + 2)
        self.assertEqual(len(json.loads(flooder.last[-1])["return"]), len(COMMANDS))
