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

import shutil
import tempfile

from twisted.internet import defer, endpoints

from benchmarks import connect


class Served:
    """
    A listening server (L{serve}).

    @ivar server: the L{spicesrv.server.SpiceServer}.
    @ivar port: the listening port (L{twisted.internet.interfaces.IListeningPort}).
    @ivar caFile: the CA certificate a client trusts, if the port is a TLS
        port.
    """

    def __init__(self, reactor, server, port, certs):
        self.reactor = reactor
        self.server = server
        self.port = port
        self._certs = certs
        self.caFile = connect.x509CaFile(certs) if certs else None

    @property
    def portNumber(self):
        return self.port.getHost().port

    def startClient(self, **kwargs):
        """
        Start a spice-gtk (L{tests.interop.harness.GtkClient.start}, with
        C{kwargs}) linked to this server.
        """
        return connect.startClient(self.reactor, self.portNumber, self.caFile, **kwargs)

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
    from spicesrv.tls.endpoint import TLSServerEndpoint

    server = SpiceServer(clock=reactor, disable_ticketing=True, **options)
    server.startService()
    for device in devices:
        server.addInterface(device)
    certs = None
    if tls:
        certs = tempfile.mkdtemp(prefix="spicesrv-bench-x509-")
        server.tlsAvailable = True
        endpoint = TLSServerEndpoint(reactor, 0,
                                     load_server_tls(x509_dir=connect.x509Dir(certs)),
                                     interface=connect.HOST)
    else:
        endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface=connect.HOST)
    port = yield endpoint.listen(server.factory())
    return Served(reactor, server, port, certs)
