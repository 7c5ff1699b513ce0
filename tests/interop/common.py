"""
What the interop tests share: an in-process server on loopback, a test case
base that needs the real client, and the waits for what a user would see.
"""

import os

from twisted.internet import defer, endpoints, reactor, task
from twisted.trial import unittest

from spicesrv.server import SpiceServer
from spicesrv.sources.demo import DemoSource
from spicesrv.testing import sessionChannel, waitUntil
from tests.interop import harness
from tests.interop.harness import pixelsEqual

PASSWORD = "s3cret"

# PC/XT set-1 make codes.
SCANCODES = {"h": 0x23, "i": 0x17, "space": 0x39}


def stopServing(server, port):
    """
    End every session of C{server} and stop listening on C{port}.
    """
    for session in list(server.sessions.values()):
        session.end()
    return port.stopListening()


@defer.inlineCallbacks
def listenFor(testcase, server, endpoint=None):
    """
    Listen for C{server}'s clients on C{endpoint} (by default a free
    loopback TCP port) until the test's cleanup (L{stopServing}).  Returns
    (a Deferred of) the listening port.
    """
    if endpoint is None:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
    port = yield endpoint.listen(server.factory())
    testcase.addCleanup(stopServing, server, port)
    return port


def tlsOnly(server, certs):
    """
    Make every channel of C{server} use TLS, and return an endpoint for a
    free loopback TLS port with the certificates of the x509 directory
    C{certs}.
    """
    from spicesrv.link import SECURITY_SSL
    from spicesrv.tls.context import load_server_tls
    from spicesrv.tls.endpoint import TLSServerEndpoint
    server.tlsAvailable = True
    server.setChannelSecurity("default", SECURITY_SSL)
    return TLSServerEndpoint(reactor, 0, load_server_tls(x509_dir=certs),
                             interface="127.0.0.1")


def serveOnLoopback(testcase, server, devices=(), endpoint=None):
    """
    Start C{server}'s service with C{devices} until the test's cleanup, and
    listen for its clients on C{endpoint}, by default a free loopback port
    (L{listenFor}).  Returns (a Deferred of) the port number.
    """
    server.startService()
    testcase.addCleanup(server.stopService)
    for device in devices:
        server.addInterface(device)
    return listenFor(testcase, server, endpoint).addCallback(lambda port: port.getHost().port)


class RunningServer:
    """
    A spicesrv server listening on a free loopback port in this process,
    showing a demo screen whose clock is frozen (so pictures are exact);
    what keys change reaches the clients in the reactor's turns.
    """

    def __init__(self, testcase, **kwargs):
        self.clock = task.Clock()
        self.clock.advance(3600)
        self.source = DemoSource(clock=self.clock, scheduler=reactor)
        self.server = SpiceServer(clock=reactor, **kwargs)
        self.server.startService()
        testcase.addCleanup(self.server.stopService)
        for device in self.source.devices():
            self.server.addInterface(device)
        self.testcase = testcase

    @defer.inlineCallbacks
    def listen(self, endpoint=None):
        """
        Listen on C{endpoint} (by default a free loopback TCP port); fire
        with the port number.
        """
        self.port = yield listenFor(self.testcase, self.server, endpoint)
        return self.port.getHost().port

    def stop(self):
        """End every session and stop listening, before the test's end."""
        return stopServing(self.server, self.port)

    def channel(self, channel_type, channel_id=0):
        return sessionChannel(self.server, channel_type, channel_id)


class InteropTestCase(unittest.TestCase):
    """
    A test with the real spice-gtk client: missing, it fails under CI.
    """

    timeout = 120

    def setUp(self):
        harness.requireRealClient(self)
        self.tmp = os.path.abspath(self.mktemp())
        os.makedirs(self.tmp)

    @defer.inlineCallbacks
    def startClient(self, port, password=PASSWORD, **kwargs):
        client = yield harness.GtkClient.start(reactor, "127.0.0.1", port, password=password,
                                               **kwargs)
        self.addCleanup(client.stop)
        return client

    @defer.inlineCallbacks
    def clientPixels(self, client, name="primary"):
        path = os.path.join(self.tmp, name + ".raw")
        reply = yield client.check("primary", dump=path)
        return harness.loadPrimary(reply).copy()

    @defer.inlineCallbacks
    def waitForSamePicture(self, client, source, timeout=20):
        """
        Poll the client until its primary equals the source's frame.
        """
        path = os.path.join(self.tmp, "poll.raw")

        try:
            yield client.waitForPixels(lambda shown: pixelsEqual(shown, source.framebuffer()),
                                       path, timeout=timeout)
        except harness.HarnessTimeout:
            shown = (harness.loadPrimary(path, source.width, source.height)
                     if os.path.exists(path) else None)
            differing = (None if shown is None or shown.shape != source.framebuffer().shape
                         else int((shown[:, :, :3] != source.framebuffer()[:, :, :3])
                                  .any(axis=2).sum()))
            self.fail("the client never showed the source's picture (%s pixels differ)"
                      % (differing,))

    def waitForPixels(self, client, predicate, timeout=20):
        """
        Poll the client until C{predicate(pixels)} holds for its primary.
        """
        return client.waitForPixels(predicate, os.path.join(self.tmp, "poll.raw"),
                                    timeout=timeout)

    @defer.inlineCallbacks
    def drag(self, client, y, x0, x1):
        """
        A left-button drag along row C{y} in client mouse mode.
        """
        yield client.check("position", x=x0, y=y, display=0, buttons=0)
        yield client.check("button_press", button=1, buttons=1)
        for x in range(x0 + 20, x1, 40):
            yield client.check("position", x=x, y=y, display=0, buttons=1)
        yield client.check("button_release", button=1, buttons=0)

    @defer.inlineCallbacks
    def peers(self, client):
        """
        Where each of the client's channels is connected: (type, id) ->
        "host:port".
        """
        reply = yield client.check("channels")
        return {(c["type"], c["id"]): c["peer"] for c in reply["channels"]}

    @defer.inlineCallbacks
    def waitForPeers(self, client, port, timeout=20):
        """
        Wait until every channel of the client is connected to C{port} on
        loopback (after a migration spice-gtk swaps channels one by one, in
        idle callbacks).
        """
        expected = {"127.0.0.1:%d" % port}
        deadline = reactor.seconds() + timeout
        while True:
            peers = yield self.peers(client)
            if set(peers.values()) == expected:
                return peers
            if reactor.seconds() > deadline:
                self.fail("the client's channels are connected to %r, not %r"
                          % (peers, expected))
            yield task.deferLater(reactor, 0.05, lambda: None)

    def waitUntil(self, condition, timeout=20, interval=0.02):
        return waitUntil(reactor, condition, timeout, interval)
