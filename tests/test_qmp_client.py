"""
The QMP monitor driven by a real, existing QMP client library: QEMU's own
``qemu.qmp`` (PyPI "qemu.qmp"), run in a child process against a real
SpiceServer and the monitor listening on a UNIX socket.

``qemu.qmp`` is asyncio-based; the child runs L{SCRIPT} and prints one JSON
object with what it saw.  Without ``qemu.qmp`` the test is skipped, or fails
under C{CI=true} (the rule of L{tests.interop.harness.requireRealClient}).
"""

import json
import os
import sys

from twisted.internet import defer, reactor, utils
from twisted.trial import unittest

from spicesrv.control.backend import SpiceServerBackend
from spicesrv.control.qmp import QMPFactory, monitorEndpoint
from tests.interop.common import RunningServer
from tests.interop.processes import requireQMPLibrary

PASSWORD = "old-s3cret"
NEW_PASSWORD = "n3w-s3cret"

# Run by the child: connect with qemu.qmp's QMPClient, exercise the monitor,
# print the results as one JSON object.
SCRIPT = r'''
import asyncio, json, sys
from qemu.qmp import QMPClient, ExecuteError

async def main(path, password):
    out = {}
    qmp = QMPClient("spicesrv-test")
    await asyncio.wait_for(qmp.connect(path), 20)
    out["greeting"] = qmp.greeting._asdict()
    out["query-version"] = await qmp.execute("query-version")
    out["query-spice"] = await qmp.execute("query-spice")
    out["set_password"] = await qmp.execute(
        "set_password", {"protocol": "spice", "password": password, "connected": "keep"})
    errors = {}
    for name, command, arguments in [
            ("unknown", "no-such-command", None),
            ("missing", "set_password", {"protocol": "spice"}),
            ("type", "client_migrate_info", {"protocol": "spice", "hostname": "dst",
                                             "port": "5900"}),
            ("protocol", "client_migrate_info", {"protocol": "vnc", "hostname": "dst",
                                                 "port": 5900})]:
        try:
            await qmp.execute(command, arguments)
            errors[name] = None
        except ExecuteError as e:
            errors[name] = {"class": e.error_class, "desc": str(e)}
    out["errors"] = errors
    statuses = []
    with qmp.listener("MIGRATION") as listener:
        out["migrate"] = await qmp.execute("migrate", {"uri": "tcp:127.0.0.1:4444"})
        while not statuses or statuses[-1] not in ("completed", "failed"):
            event = await asyncio.wait_for(listener.get(), 20)
            statuses.append(event["data"]["status"])
            out["timestamp"] = event["timestamp"]
    out["migration-events"] = statuses
    out["query-migrate"] = await qmp.execute("query-migrate")
    with qmp.listener("SHUTDOWN") as listener:
        out["quit"] = await qmp.execute("quit")
        out["shutdown"] = (await asyncio.wait_for(listener.get(), 20))["data"]
    await qmp.disconnect()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], sys.argv[2]))
'''


class SteppingMigrator:
    """
    A migrator whose migrations go setup -> active -> completed on the
    reactor, announcing each status as QEMU's MIGRATION event.
    """

    def __init__(self, clock):
        self.clock = clock
        self.status = "none"
        self.uris = []
        self.observers = []
        self.calls = []

    def addEventObserver(self, observer):
        self.observers.append(observer)

    def _set(self, status):
        self.status = status
        for observer in self.observers:
            observer("MIGRATION", {"status": status})

    def migrate(self, uri):
        if self.status in ("setup", "active"):
            raise ValueError("There's a migration process in progress")
        self.uris.append(uri)
        self._set("setup")
        for delay, status in ((0.05, "active"), (0.1, "completed")):
            self.calls.append(self.clock.callLater(delay, self._set, status))

    def migrate_cancel(self):
        pass

    def query_migrate(self):
        return {} if self.status == "none" else {"status": self.status}

    def stop(self):
        for call in self.calls:
            if call.active():
                call.cancel()


class QMPClientTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        requireQMPLibrary(self)

    @defer.inlineCallbacks
    def startServer(self):
        running = RunningServer(self, password=PASSWORD)
        self.server = running.server
        yield running.listen()
        spicePort = running.port
        self.migrator = SteppingMigrator(reactor)
        self.addCleanup(self.migrator.stop)
        backend = SpiceServerBackend(
            self.server, migrator=self.migrator,
            addresses=lambda: {"host": "127.0.0.1", "port": spicePort.getHost().port})
        self.shutdowns = []
        factory = QMPFactory(backend, reactor, shutdown=lambda: self.shutdowns.append(True))
        # Relative to the test's working directory, so it stays under the
        # 108-byte limit of a UNIX socket path.
        self.socketPath = os.path.relpath(self.mktemp())
        monitor = yield monitorEndpoint(reactor, "unix:" + self.socketPath).listen(factory)
        self.addCleanup(monitor.stopListening)
        return spicePort.getHost().port

    @defer.inlineCallbacks
    def runClient(self):
        out, err, code = yield utils.getProcessOutputAndValue(
            sys.executable, ["-c", SCRIPT, self.socketPath, NEW_PASSWORD],
            env=dict(os.environ), path=os.getcwd())
        if code != 0:
            self.fail("the qemu.qmp client failed (%s):\n%s" % (code, err.decode("utf-8",
                                                                                 "replace")))
        return json.loads(out.decode("utf-8").strip().splitlines()[-1])

    @defer.inlineCallbacks
    def test_qemuQmpClient(self):
        spicePort = yield self.startServer()
        result = yield self.runClient()

        self.assertEqual(result["greeting"]["QMP"]["capabilities"], [])
        self.assertEqual(result["query-version"], result["greeting"]["QMP"]["version"])
        self.assertTrue(result["query-version"]["package"].startswith("spicesrv "))

        self.assertEqual(result["query-spice"], {
            "enabled": True, "migrated": False, "host": "127.0.0.1", "port": spicePort,
            "auth": "spice", "compiled-version": result["query-spice"]["compiled-version"],
            "mouse-mode": "client", "channels": []})

        self.assertEqual(result["set_password"], {})
        self.assertEqual(self.server.ticket.check(NEW_PASSWORD.encode() + b"\0"),
                         (True, "password accepted"))
        self.assertFalse(self.server.ticket.check(PASSWORD.encode() + b"\0")[0])

        self.assertEqual(result["errors"], {
            "unknown": {"class": "CommandNotFound",
                        "desc": "The command no-such-command has not been found"},
            "missing": {"class": "GenericError", "desc": "Parameter 'password' is missing"},
            "type": {"class": "GenericError",
                     "desc": "Invalid parameter type for 'port', expected: integer"},
            "protocol": {"class": "GenericError",
                         "desc": "Parameter 'protocol' expects 'spice'"},
        })

        self.assertEqual(result["migrate"], {})
        self.assertEqual(self.migrator.uris, ["tcp:127.0.0.1:4444"])
        self.assertEqual(result["migration-events"], ["setup", "active", "completed"])
        self.assertEqual(sorted(result["timestamp"]), ["microseconds", "seconds"])
        self.assertEqual(result["query-migrate"], {"status": "completed"})

        self.assertEqual(result["quit"], {})
        self.assertEqual(result["shutdown"], {"guest": False, "reason": "host-qmp-quit"})
        self.assertEqual(self.shutdowns, [True])
