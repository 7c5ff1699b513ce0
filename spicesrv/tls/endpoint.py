"""
The TLS listening endpoint of SPICE ports: L{TLSServerEndpoint}, with one
TLS record per message.
"""

from zope.interface import implementer

from twisted.internet import endpoints
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol


class _OneRecordPerWrite(TLSMemoryBIOFactory):
    """
    TLS that puts each write in its own record.  Twisted's default
    transport gathers the writes of a reactor turn into one record; a SPICE
    message after the first in such a record can wait in spice-gtk's
    OpenSSL buffer until more bytes reach the socket (spice-gtk reads on
    while the socket, not the TLS layer, has data).  A reply that the
    client answers with nothing, such as agent data sent with
    CHANNELS_LIST, would then leave the client waiting.
    """

    protocol = TLSMemoryBIOProtocol


@implementer(IStreamServerEndpoint)
class TLSServerEndpoint(object):
    """
    A TLS listening endpoint for SPICE channels: like
    L{twisted.internet.endpoints.SSL4ServerEndpoint}, with one TLS record
    per message (see L{_OneRecordPerWrite}).

    @param contextFactory: a L{spicesrv.tls.context.ServerTLS} from
        L{spicesrv.tls.context.load_server_tls}.
    """

    def __init__(self, reactor, port, contextFactory, backlog=50, interface=""):
        self._tcp = endpoints.TCP4ServerEndpoint(reactor, port, backlog, interface)
        self._contextFactory = contextFactory

    def listen(self, factory):
        return self._tcp.listen(_OneRecordPerWrite(self._contextFactory, False, factory))
