"""
Migration as an operator runs it: two ``twistd spice`` processes, the
target started with ``--incoming``, both driven through their QMP monitors
by QEMU's own client library, and a real spice-gtk client that ends on the
target with the picture it had (the demo's drawing and text moved with the
state) and types into the target afterwards.
"""

import os
import shutil
import tempfile

import numpy
from twisted.internet import defer

from tests.interop.common import SCANCODES, InteropTestCase
from tests.interop.processes import Twistd, freePort, qmpSteps, requireQMPLibrary

PASSWORD = "mig-s3cret"
# Rows below the demo's title bar (its clock ticks on both servers).
BELOW_TITLE = slice(30, None)


class OperatorBase(InteropTestCase):
    """
    Two twistd spice processes, their monitors and a client.
    """

    timeout = 180

    def setUp(self):
        InteropTestCase.setUp(self)
        requireQMPLibrary(self)
        self.passwordFile = os.path.join(self.tmp, "password")
        with open(self.passwordFile, "w") as f:
            f.write(PASSWORD + "\n")

    @defer.inlineCallbacks
    def startPair(self, sourceArgs=(), targetArgs=(), startTarget=True, incoming="tcp"):
        self.sourcePort, self.targetPort, self.incomingPort = freePort(), freePort(), freePort()
        # UNIX socket paths must be short: keep them out of _trial_temp.
        sockets = tempfile.mkdtemp(prefix="spicesrv-")
        self.addCleanup(shutil.rmtree, sockets, True)
        self.sourceQmp = os.path.join(sockets, "source.qmp")
        self.targetQmp = os.path.join(sockets, "target.qmp")
        self.source = Twistd(self, "--port", str(self.sourcePort), "--password-file",
                             self.passwordFile, "--qmp", "unix:" + self.sourceQmp,
                             *sourceArgs)
        if startTarget:
            self.target = Twistd(self, "--port", str(self.targetPort), "--password-file",
                                 self.passwordFile, "--qmp", "unix:" + self.targetQmp,
                                 "--incoming", "%s:127.0.0.1:%d" % (incoming, self.incomingPort),
                                 *targetArgs)
            yield self.target.waitForPorts(self.targetPort, self.incomingPort)
            yield self.target.waitForPath(self.targetQmp)
        yield self.source.waitForPorts(self.sourcePort)
        yield self.source.waitForPath(self.sourceQmp)

    def migrateSteps(self, uri=None):
        """
        QMP steps on the source: client_migrate_info to the target's plain
        port, then migrate to its --incoming endpoint (or C{uri}).
        """
        return [
            {"monitor": self.sourceQmp, "execute": "client_migrate_info",
             "arguments": {"protocol": "spice", "hostname": "127.0.0.1",
                           "port": self.targetPort}},
            {"monitor": self.sourceQmp, "execute": "migrate",
             "arguments": {"uri": uri or "tcp:127.0.0.1:%d" % self.incomingPort}}]

    @defer.inlineCallbacks
    def connectClient(self):
        client = yield self.startClient(self.sourcePort, password=PASSWORD)
        yield client.waitForChannelsOpened((1, 2, 3, 4), timeout=20)
        yield client.waitForEvent({"event": "mouse-mode", "mode": 2}, timeout=20)
        yield client.waitForPrimary(lambda r: r.get("ok") and r.get("marked"), timeout=20)
        return client

    @defer.inlineCallbacks
    def draw(self, client):
        """
        Type 'h' and paint a stroke, and wait until the client shows both.
        """
        before = yield self.clientPixels(client)
        yield client.check("key_press_and_release", scancode=SCANCODES["h"])
        yield self.drag(client, 300, 200, 600)
        yield self.waitForPixels(
            client, lambda pixels: not numpy.array_equal(pixels[300, 400], before[300, 400]))


class OperatorMigrationTests(OperatorBase):
    @defer.inlineCallbacks
    def test_migrateThroughQMP(self):
        yield self.startPair()
        client = yield self.connectClient()
        yield self.draw(client)
        drawn = yield self.clientPixels(client, "drawn")
        results = yield qmpSteps(self, [
            {"monitor": self.sourceQmp, "execute": "query-spice"},
            *self.migrateSteps(),
            {"monitor": self.sourceQmp, "event": "MIGRATION", "match": {"status": "completed"}},
            {"monitor": self.sourceQmp, "event": "SPICE_MIGRATE_COMPLETED"},
            {"monitor": self.sourceQmp, "execute": "query-migrate"},
            {"monitor": self.sourceQmp, "execute": "query-spice"},
            {"monitor": self.targetQmp, "execute": "query-spice"},
        ])
        before, _, _, completed, spiceDone, migrateInfo, sourceAfter, targetAfter = results
        self.assertEqual(len(before["channels"]), 4)
        sessionId = before["channels"][0]["connection-id"]
        self.assertNotIn("error", completed)
        self.assertNotIn("error", spiceDone)
        self.assertEqual(migrateInfo["status"], "completed")
        self.assertTrue(sourceAfter["migrated"])
        self.assertEqual(sourceAfter["channels"], [])
        self.assertEqual(sorted(c["channel-type"] for c in targetAfter["channels"]),
                         [1, 2, 3, 4])
        self.assertEqual({c["connection-id"] for c in targetAfter["channels"]}, {sessionId})
        # The client is on the target, showing the drawing made on the source.
        yield self.waitForPeers(client, self.targetPort)
        self.assertNotIn("disconnected", [e.get("event") for e in client.events])
        yield self.waitForPixels(
            client, lambda pixels: numpy.array_equal(pixels[BELOW_TITLE], drawn[BELOW_TITLE]))
        # Typing now reaches the target.
        yield client.check("key_press_and_release", scancode=SCANCODES["i"])
        yield self.waitForPixels(
            client, lambda pixels: not numpy.array_equal(pixels[BELOW_TITLE],
                                                         drawn[BELOW_TITLE]))

    @defer.inlineCallbacks
    def test_targetNotRunning(self):
        """
        No target: the pre-connect fails, migrate fails with a clear
        error-desc, and the client stays on the source and keeps working.
        """
        yield self.startPair(startTarget=False)
        client = yield self.connectClient()
        results = yield qmpSteps(self, [
            *self.migrateSteps(),
            {"monitor": self.sourceQmp, "event": "MIGRATION", "match": {"status": "failed"}},
            {"monitor": self.sourceQmp, "execute": "query-migrate"},
            {"monitor": self.sourceQmp, "execute": "query-spice"},
        ])
        info, spice = results[3], results[4]
        self.assertEqual(info["status"], "failed")
        self.assertIn("cannot connect to the migration target", info["error-desc"])
        self.assertFalse(spice["migrated"])
        self.assertEqual(len(spice["channels"]), 4)
        yield self.draw(client)

    @defer.inlineCallbacks
    def test_unreachableIncoming(self):
        """
        migrate to an address where no target waits: migrate fails, the
        pre-connected client gets MIGRATE_CANCEL and stays on the source.
        """
        yield self.startPair()
        client = yield self.connectClient()
        results = yield qmpSteps(self, [
            self.migrateSteps()[0],
            {"monitor": self.sourceQmp, "execute": "migrate",
             "arguments": {"uri": "unix:" + os.path.join(os.path.dirname(self.sourceQmp),
                                                           "nowhere")}},
            {"monitor": self.sourceQmp, "event": "MIGRATION", "match": {"status": "failed"}},
            {"monitor": self.sourceQmp, "execute": "query-spice"},
            {"monitor": self.targetQmp, "execute": "query-spice"},
        ])
        self.assertEqual(len(results[3]["channels"]), 4)
        self.assertFalse(results[3]["migrated"])
        yield self.draw(client)


class OperatorTLSMigrationTests(OperatorBase):
    """
    The same over TLS: both servers serve only TLS with certificates from
    one CA; the source checks the target's certificate against the
    cert-subject before telling any client.
    """

    def setUp(self):
        OperatorBase.setUp(self)
        from spicesrv.tls.devcerts import write_dev_certs
        self.certs = os.path.join(self.tmp, "certs")
        self.subject = write_dev_certs(
            self.certs, subject="C=XX,O=spicesrv,CN=localhost",
            sans=("DNS:localhost", "IP:127.0.0.1")).subject
        self.ca = os.path.join(self.certs, "ca-cert.pem")

    @defer.inlineCallbacks
    def startTlsPair(self, targetCerts=None, incoming="tcp"):
        self.sourceTls, self.targetTls = freePort(), freePort()
        yield self.startPair(incoming=incoming,
            sourceArgs=["--tls-port", str(self.sourceTls), "--x509-dir", self.certs,
                        "--tls-channel", "default"],
            targetArgs=["--tls-port", str(self.targetTls), "--x509-dir",
                        targetCerts or self.certs, "--tls-channel", "default"])

    @defer.inlineCallbacks
    def connectTlsClient(self):
        client = yield self.startClient(None, password=PASSWORD, tls_port=self.sourceTls,
                                        ca_file=self.ca, cert_subject=self.subject)
        yield client.waitForChannelsOpened((1, 2, 3, 4), timeout=20)
        yield client.waitForPrimary(lambda r: r.get("ok") and r.get("marked"), timeout=20)
        return client

    @defer.inlineCallbacks
    def test_migrateThroughQMP(self):
        """
        Everything encrypted: the clients' channels, and the state transfer
        (a tls: --incoming, the source checking the target's certificate).
        """
        yield self.startTlsPair(incoming="tls")
        client = yield self.connectTlsClient()
        results = yield qmpSteps(self, [
            {"monitor": self.sourceQmp, "execute": "client_migrate_info",
             "arguments": {"protocol": "spice", "hostname": "127.0.0.1",
                           "tls-port": self.targetTls, "cert-subject": self.subject}},
            {"monitor": self.sourceQmp, "execute": "migrate",
             "arguments": {"uri": "tls:127.0.0.1:%d" % self.incomingPort}},
            {"monitor": self.sourceQmp, "event": "SPICE_MIGRATE_COMPLETED"},
            {"monitor": self.targetQmp, "execute": "query-spice"},
            {"monitor": self.sourceQmp, "execute": "query-migrate"},
        ])
        self.assertEqual(results[0], {})
        self.assertNotIn("error", results[2], (results[4], self.source.text()[-2000:],
                                               self.target.text()[-2000:]))
        channels = results[3]["channels"]
        self.assertEqual(sorted(c["channel-type"] for c in channels), [1, 2, 3, 4])
        self.assertEqual({c["tls"] for c in channels}, {True})
        yield self.waitForPeers(client, self.targetTls)

    @defer.inlineCallbacks
    def test_wrongCertificateRefused(self):
        """
        A target whose certificate is not from the clients' CA: the source
        refuses client_migrate_info with a clear QMP error, and the client
        never hears of the migration.
        """
        from spicesrv.tls.devcerts import write_dev_certs
        otherCerts = os.path.join(self.tmp, "other")
        write_dev_certs(otherCerts, subject="C=XX,O=spicesrv,CN=localhost",
                        sans=("DNS:localhost", "IP:127.0.0.1"))
        yield self.startTlsPair(targetCerts=otherCerts)
        client = yield self.connectTlsClient()
        results = yield qmpSteps(self, [
            {"monitor": self.sourceQmp, "execute": "client_migrate_info",
             "arguments": {"protocol": "spice", "hostname": "127.0.0.1",
                           "tls-port": self.targetTls, "cert-subject": self.subject}},
            {"monitor": self.sourceQmp, "execute": "client_migrate_info",
             "arguments": {"protocol": "spice", "hostname": "127.0.0.1",
                           "tls-port": self.targetTls, "cert-subject": "C=XX,CN=other"}},
            {"monitor": self.sourceQmp, "execute": "query-spice"},
        ])
        self.assertEqual(results[0]["error"]["class"], "GenericError")
        self.assertIn("not signed by the CA", results[0]["error"]["desc"])
        self.assertIn("error", results[1])
        self.assertFalse(results[2]["migrated"])
        self.assertNotIn("migration-started", [e.get("event") for e in client.events])
