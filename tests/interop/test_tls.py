"""
TLS with the real spice-gtk client: every channel over TLS with the right
CA and certificate subject, TLS errors for a wrong subject or an untrusted
CA, per-channel policy with the client switching a channel to the TLS port
on NEED_SECURED, and migration to a TLS target with a cert subject.
"""

import os

from OpenSSL import SSL
from twisted.internet import defer, reactor

from spicesrv.tls.context import load_server_tls
from spicesrv.tls.devcerts import write_dev_certs
from spicesrv.tls.endpoint import TLSServerEndpoint
from spicesrv.tls.probe import check_target_identity
from spicesrv.tls.subjects import format_subject
from spicesrv.limits import transportLayers
from spicesrv.link import SECURITY_SSL
from tests.interop import harness
from tests.interop.common import PASSWORD, InteropTestCase, RunningServer, listenFor

SUBJECT = "C=XX,L=City,O=spicesrv tests\\, inc.,OU=one,OU=two,CN=localhost"


class TLSServer(RunningServer):
    """
    A RunningServer that also listens with TLS.
    """

    def __init__(self, testcase, certs, plain=True, **kwargs):
        RunningServer.__init__(self, testcase, **kwargs)
        self.server.tlsAvailable = True
        self.certs = certs
        self.plain = plain

    @defer.inlineCallbacks
    def listen(self):
        context = load_server_tls(x509_dir=self.certs)
        tls = yield listenFor(self.testcase, self.server, TLSServerEndpoint(
            reactor, 0, context, interface="127.0.0.1"))
        self.tlsPort = tls.getHost().port
        if self.plain:
            port = yield RunningServer.listen(self)
            return port
        return None


def negotiated(channel):
    """
    The TLS version and suite of the server's end of C{channel}'s
    connection.
    """
    for layer in transportLayers(channel.transport):
        handle = layer.getHandle()
        if isinstance(handle, SSL.Connection):
            return handle.get_protocol_version_name(), handle.get_cipher_name()
    raise AssertionError("%r has no TLS layer" % (channel,))


def makeCerts(testcase, subject=SUBJECT, name="certs"):
    directory = os.path.abspath(testcase.mktemp())
    written = write_dev_certs(directory, subject=subject,
                              sans=("DNS:localhost", "IP:127.0.0.1"))
    return directory, written


class TLSTests(InteropTestCase):
    def setUp(self):
        InteropTestCase.setUp(self)
        self.certs, self.written = makeCerts(self)
        self.ca = os.path.join(self.certs, "ca-cert.pem")

    @defer.inlineCallbacks
    def start(self, running, port, **kwargs):
        client = yield harness.GtkClient.start(reactor, "127.0.0.1", port,
                                               password=PASSWORD, tls_port=running.tlsPort,
                                               ca_file=self.ca, **kwargs)
        self.addCleanup(client.stop)
        return client

    @defer.inlineCallbacks
    def test_everythingEncrypted(self):
        """
        Only a TLS port and tls-channel=default: with the right CA and the
        certificate's formatted subject, every channel links over TLS and
        the picture arrives.
        """
        running = TLSServer(self, self.certs, plain=False, password=PASSWORD)
        running.server.setChannelSecurity("default", SECURITY_SSL)
        yield running.listen()
        subject = format_subject(load_server_tls(x509_dir=self.certs).certificate)
        self.assertEqual(subject, SUBJECT)
        client = yield self.start(running, None, cert_subject=subject)
        yield client.waitForChannelsOpened((1, 2, 3, 4), timeout=20)
        yield self.waitForSamePicture(client, running.source)
        (session,) = running.server.sessions.values()
        self.assertEqual({c.info.secure for c in session.channels.values()}, {True})
        # spice-gtk speaks TLS 1.3 and, offered the server's preference,
        # takes AES-128-GCM on every channel.
        self.assertEqual({negotiated(c) for c in session.channels.values()},
                         {("TLSv1.3", "TLS_AES_128_GCM_SHA256")})

    @defer.inlineCallbacks
    def test_awkwardSubject(self):
        """
        A backslash, an emailAddress and non-ASCII text: the formatted
        subject still links with the real client.
        """
        certs, written = makeCerts(
            self, subject="C=XX,O=back\\\\slash,OU=Zürich,CN=localhost,"
                          "emailAddress=ops@example.com", name="awkward")
        ca = os.path.join(certs, "ca-cert.pem")
        running = TLSServer(self, certs, plain=False, password=PASSWORD)
        yield running.listen()
        subject = format_subject(load_server_tls(x509_dir=certs).certificate)
        self.assertEqual(subject, written.subject)
        self.assertIn("\\\\", subject)
        client = yield harness.GtkClient.start(reactor, "127.0.0.1", None, password=PASSWORD,
                                               tls_port=running.tlsPort, ca_file=ca,
                                               cert_subject=subject)
        self.addCleanup(client.stop)
        yield client.waitForChannelsOpened((1, 2), timeout=20)

    @defer.inlineCallbacks
    def test_wrongSubject(self):
        running = TLSServer(self, self.certs, plain=False, password=PASSWORD)
        yield running.listen()
        client = yield self.start(running, None, cert_subject="C=XX,CN=someone else")
        event = yield client.waitForEvent({"event": "channel-event", "type": 1}, timeout=20)
        self.assertEqual(event["what"], "SPICE_CHANNEL_ERROR_TLS")
        self.assertEqual(running.server.sessions, {})

    @defer.inlineCallbacks
    def test_untrustedCA(self):
        otherCerts, _ = makeCerts(self, name="other")
        running = TLSServer(self, otherCerts, plain=False, password=PASSWORD)
        yield running.listen()
        client = yield self.start(running, None, cert_subject=SUBJECT)
        event = yield client.waitForEvent({"event": "channel-event", "type": 1}, timeout=20)
        self.assertEqual(event["what"], "SPICE_CHANNEL_ERROR_TLS")

    @defer.inlineCallbacks
    def test_mainOnTlsOthersPlain(self):
        """
        tls-channel=main with a plain port: the client tries main on the
        plain port, gets NEED_SECURED, switches it to TLS by itself; the
        other channels stay plain.
        """
        running = TLSServer(self, self.certs, password=PASSWORD)
        running.server.setChannelSecurity("main", SECURITY_SSL)
        port = yield running.listen()
        client = yield self.start(running, port, cert_subject=SUBJECT)
        yield client.waitForChannelsOpened((1, 2, 3, 4), timeout=20)
        yield self.waitForSamePicture(client, running.source)
        (session,) = running.server.sessions.values()
        secure = {key: c.info.secure for key, c in session.channels.items()}
        self.assertEqual(secure, {(1, 0): True, (2, 0): False, (3, 0): False, (4, 0): False})
        peers = yield self.peers(client)
        self.assertEqual(peers[(1, 0)], "127.0.0.1:%d" % running.tlsPort)
        self.assertEqual(peers[(2, 0)], "127.0.0.1:%d" % port)

    @defer.inlineCallbacks
    def test_migrateToTlsTargetWithSubject(self):
        """
        A client migrates to a target that only speaks TLS, told the
        target's subject; it ends there with every channel encrypted.
        """
        source = RunningServer(self, password=PASSWORD)
        sourcePort = yield source.listen()
        targetCerts, written = makeCerts(self, subject="C=XX,O=target,CN=localhost",
                                         name="target")
        # The client trusts one CA: the target's certificate must chain to it.
        target = TLSServer(self, self.certs, plain=False, password=PASSWORD)
        target.server.setChannelSecurity("default", SECURITY_SSL)
        yield target.listen()
        client = yield self.startClient(sourcePort, ca_file=self.ca)
        yield client.waitForChannelsOpened((1, 2, 3, 4), timeout=20)
        (sessionId,) = source.server.sessions
        ok, reason = yield check_target_identity(reactor, "127.0.0.1", target.tlsPort,
                                                 self.ca, cert_subject=SUBJECT)
        self.assertTrue(ok, reason)
        answers = yield source.server.migrate_connect("127.0.0.1", None, target.tlsPort,
                                                      SUBJECT)
        self.assertEqual(answers, {sessionId: "connected"})
        yield source.server.migrate_end(True)
        yield self.waitUntil(lambda: sessionId in target.server.sessions
                           and len(target.server.sessions[sessionId].channels) == 4
                           and not target.server.sessions[sessionId].arriving)
        session = target.server.sessions[sessionId]
        self.assertEqual({c.info.secure for c in session.channels.values()}, {True})
        yield self.waitForSamePicture(client, target.source)

    @defer.inlineCallbacks
    def test_migrateWrongSubjectFailsToConnect(self):
        """
        With a subject the target's certificate does not have, the client
        cannot pre-connect: it answers CONNECT_ERROR and stays on the source.
        """
        source = RunningServer(self, password=PASSWORD)
        sourcePort = yield source.listen()
        target = TLSServer(self, self.certs, plain=False, password=PASSWORD)
        yield target.listen()
        client = yield self.startClient(sourcePort, ca_file=self.ca)
        yield client.waitForChannelsOpened((1, 2, 3, 4), timeout=20)
        (sessionId,) = source.server.sessions
        ok, reason = yield check_target_identity(reactor, "127.0.0.1", target.tlsPort,
                                                 self.ca, cert_subject="C=XX,CN=wrong")
        self.assertFalse(ok)
        self.assertIn("CN=wrong", reason)
        answers = yield source.server.migrate_connect("127.0.0.1", None, target.tlsPort,
                                                      "C=XX,CN=wrong")
        self.assertEqual(answers, {sessionId: "connect-error"})
        yield source.server.migrate_end(False)
        self.assertEqual(list(source.server.sessions), [sessionId])


class AgentOverTLSTests(InteropTestCase):
    """
    The agent over TLS, where the server's replies share a turn with other
    messages (its capabilities with CHANNELS_LIST, a clipboard in many
    AGENT_DATA pieces): each message is its own TLS record, so spice-gtk
    reads them all.
    """

    @defer.inlineCallbacks
    def test_clipboardBothWays(self):
        certs, _ = makeCerts(self)
        running = TLSServer(self, certs, plain=False, password=PASSWORD)
        running.server.setChannelSecurity("default", SECURITY_SSL)
        yield running.listen()
        client = yield harness.GtkClient.start(
            reactor, "127.0.0.1", None, password=PASSWORD, tls_port=running.tlsPort,
            ca_file=os.path.join(certs, "ca-cert.pem"))
        self.addCleanup(client.stop)
        yield client.waitForChannelsOpened((1, 2, 3), timeout=20)
        yield client.waitForEvent({"event": "agent-update", "connected": True})
        hub = running.server.agent
        text = ("0123456789abcdef" * 1000).encode("ascii")
        yield client.check("clipboard_grab", types=[1], data={"1": text.hex()})
        yield self.waitUntil(lambda: hub.clipboard_owner(0) == [1])
        data = yield hub.clipboard_request(0, 1)
        self.assertEqual(data, text)
        running.source.copy()
        yield client.waitForEvent({"event": "clipboard-grab", "types": [1, 2]})
        yield client.check("clipboard_request", type=2)
        png = yield client.waitForEvent({"event": "clipboard", "type": 2})
        self.assertEqual(bytes.fromhex(png["hex"]), running.source.clipboard_data(2))
        self.assertGreater(png["size"], 2048)
