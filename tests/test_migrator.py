"""
Tests for the source's migrate: status, events and the SPICE migration's
end on success, failure and cancellation.
"""

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from spicesrv.migration import command as migratormodule
from spicesrv.migration.command import Migrator
from spicesrv.migration.statewire import TransferError


class FakeSourceMigration:
    def __init__(self):
        self.pending = None

    def whenAnswered(self):
        return self.pending or defer.succeed(None)


class FakeServer:
    def __init__(self):
        self.calls = []
        self.migratable = []
        self.sourceMigration = FakeSourceMigration()

    def migrate_start(self):
        self.calls.append("start")

    def migrate_end(self, completed):
        self.calls.append(("end", completed))
        return defer.succeed(None)


class MigratorTests(unittest.TestCase):
    def setUp(self):
        self.server = FakeServer()
        self.clock = Clock()
        self.transfers = []

        def sendState(reactor, uri, devices, tlsOptions=None):
            d = defer.Deferred()
            self.transfers.append((uri, tlsOptions, d))
            return d

        self.patch(migratormodule, "sendState", sendState)
        self.migrator = Migrator(self.server, self.clock)
        self.events = []
        self.migrator.addEventObserver(lambda name, data: self.events.append(data["status"]))

    def test_success(self):
        self.assertEqual(self.migrator.query_migrate(), {})
        d = self.migrator.migrate("tcp:127.0.0.1:4444")
        self.assertEqual(self.migrator.query_migrate()["status"], "active")
        self.clock.advance(1.5)
        self.transfers[0][2].callback({"bytes": 10, "seconds": 1.5, "keys": []})
        self.assertEqual(self.successResultOf(d), "completed")
        self.assertEqual(self.server.calls, ["start", ("end", True)])
        self.assertEqual(self.events, ["setup", "active", "completed"])
        self.assertEqual(self.migrator.query_migrate(), {"status": "completed", "total-time": 1500})

    def test_failingObserver(self):
        """
        An event observer that raises is logged; the migration and the
        other observers go on.
        """
        def broken(name, data):
            raise RuntimeError("observer bug")
        later = []
        self.migrator.addEventObserver(broken)
        self.migrator.addEventObserver(lambda name, data: later.append(data["status"]))
        d = self.migrator.migrate("tcp:127.0.0.1:4444")
        self.transfers[0][2].callback({"bytes": 10, "seconds": 0.1, "keys": []})
        self.assertEqual(self.successResultOf(d), "completed")
        self.assertEqual(later, ["setup", "active", "completed"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 3)

    def test_waitsForClientAnswers(self):
        self.server.sourceMigration.pending = defer.Deferred()
        d = self.migrator.migrate("tcp:127.0.0.1:4444")
        self.transfers[0][2].callback({"bytes": 10, "seconds": 0.1, "keys": []})
        self.assertNoResult(d)
        self.assertEqual(self.server.calls, ["start"])
        self.server.sourceMigration.pending.callback(None)
        self.assertEqual(self.successResultOf(d), "completed")
        self.assertEqual(self.server.calls, ["start", ("end", True)])

    def test_failure(self):
        d = self.migrator.migrate("tcp:127.0.0.1:4444")
        self.transfers[0][2].errback(TransferError("cannot connect to the migration target"))
        self.assertEqual(self.successResultOf(d), "failed")
        self.assertEqual(self.server.calls, ["start", ("end", False)])
        self.assertEqual(self.migrator.query_migrate()["error-desc"],
                         "cannot connect to the migration target")

    def test_cancel(self):
        d = self.migrator.migrate("unix:/tmp/x")
        self.migrator.migrate_cancel()
        self.assertEqual(self.successResultOf(d), "cancelled")
        self.assertEqual(self.server.calls, ["start", ("end", False)])
        self.assertEqual(self.events, ["setup", "active", "cancelling", "cancelled"])

    def test_oneAtATime(self):
        self.migrator.migrate("tcp:127.0.0.1:4444")
        e = self.assertRaises(ValueError, self.migrator.migrate, "tcp:127.0.0.1:4445")
        self.assertIn("already in progress", str(e))

    def test_badUri(self):
        self.assertRaises(ValueError, self.migrator.migrate, "exec:cat")
        self.assertEqual(self.server.calls, [])

    def test_tlsNeedsCertificates(self):
        e = self.assertRaises(ValueError, self.migrator.migrate, "tls:127.0.0.1:4444")
        self.assertIn("--x509-dir", str(e))
        migrator = Migrator(self.server, self.clock, tlsOptionsFor=lambda host: ("opts", host))
        migrator.migrate("tls:dst:4444")
        self.assertEqual(self.transfers[-1][1], ("opts", "dst"))
