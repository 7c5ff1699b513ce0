"""
A spicesrv server and spice-gtk clients on loopback, for the benchmark
workers that run the server in their own process (motion, stills, audio).

L{serve} starts a L{SpiceServer} with the given devices and options and
listens on a free loopback port: plain TCP, or with C{tls=True} a TLS port
only (development certificates made in a temporary directory), so every
channel of the client is encrypted, as with C{twistd spice --tls-port}
alone.  L{Served.startClient} starts a spice-gtk linked to it the matching
way; L{Served.stop} ends the sessions, the listening port, the server's
video encoder and key workers, and the certificates.
"""

import os
import shutil
import tempfile

from twisted.internet import defer, endpoints

#: The only interface the benchmark servers listen on.
HOST = "127.0.0.1"


class Served:
    """
    A listening server (L{serve}).

    @ivar server: the L{spicesrv.server.SpiceServer}.
    @ivar port: the listening port (L{twisted.internet.interfaces.IListeningPort}).
    @ivar tls: whether the port is a TLS port.
    @ivar caFile: the CA certificate a client trusts (TLS only).
    """

    def __init__(self, reactor, server, port, tls, certs):
        self.reactor = reactor
        self.server = server
        self.port = port
        self.tls = tls
        self._certs = certs
        self.caFile = os.path.join(certs, "ca-cert.pem") if certs else None

    @property
    def portNumber(self):
        return self.port.getHost().port

    def startClient(self, **kwargs):
        """
        Start a spice-gtk (L{tests.interop.harness.GtkClient.start}, with
        C{kwargs}) linked to this server.
        """
        from tests.interop import harness
        if self.tls:
            return harness.GtkClient.start(self.reactor, HOST, None, tls_port=self.portNumber,
                                           ca_file=self.caFile, **kwargs)
        return harness.GtkClient.start(self.reactor, HOST, self.portNumber, **kwargs)

    @defer.inlineCallbacks
    def stop(self):
        """End the sessions, stop listening and serving."""
        for session in list(self.server.sessions.values()):
            session.end()
        yield self.port.stopListening()
        self.server.videoEncoder().stop()
        self.server.stopService()
        if self._certs:
            shutil.rmtree(self._certs, ignore_errors=True)


@defer.inlineCallbacks
def serve(reactor, devices, tls=False, **options):
    """
    A L{SpiceServer}(C{clock=reactor}, C{disable_ticketing=True},
    C{**options}) with C{devices} added, started and listening on a free
    loopback port (TLS with C{tls}).  Fires with a L{Served}.
    """
    from spicesrv.server import SpiceServer
    from spicesrv.tls.context import load_server_tls
    from spicesrv.tls.devcerts import write_dev_certs
    from spicesrv.tls.endpoint import TLSServerEndpoint

    server = SpiceServer(clock=reactor, disable_ticketing=True, **options)
    server.startService()
    for device in devices:
        server.addInterface(device)
    certs = None
    if tls:
        certs = tempfile.mkdtemp(prefix="spicesrv-bench-x509-")
        write_dev_certs(certs, sans=("DNS:localhost", "IP:" + HOST))
        server.tlsAvailable = True
        endpoint = TLSServerEndpoint(reactor, 0, load_server_tls(x509_dir=certs),
                                     interface=HOST)
    else:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface=HOST)
    port = yield endpoint.listen(server.factory())
    return Served(reactor, server, port, tls, certs)
