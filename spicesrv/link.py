"""
The link handshake: the first bytes of every SPICE connection.

L{LinkProtocol} owns the transport.  It reads the client's link header and
SpiceLinkMess, answers with a SpiceLinkReply carrying a fresh RSA public key,
reads the auth mechanism and the encrypted ticket, then asks the server
what to do with the link (L{Start} a channel, L{Park} it for a client
migrating in, or L{Refuse} it), does it, and forwards every later byte to
the channel.

Every listener also takes browsers: when a connection's first four bytes
are an HTTP method instead of the magic "REDQ", the link hands the
connection to the server's web front (L{spicesrv.web}), which serves HTTP
and, after a WebSocket upgrade, runs another L{LinkProtocol} inside the
WebSocket.  Native links are decided on those four bytes, which they send
anyway: detection adds no wait.

The order of checks and the error sent for each follow libspice-server
(``reds.cpp``): errors before authentication are a full link header plus
reply with only C{error} set; errors after it are a bare u32.
"""

import struct
from dataclasses import dataclass, field

from twisted.internet import defer
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.tls import BufferingTLSTransport

from spicesrv import keys
from spicesrv.address import describe_peer
from spicesrv.limits import GracefulClose, setKeepalive
from spicesrv.wire import caps as capwords
from spicesrv.wire.constants import (
    LINK_MAX_SIZE, LINK_MESS_SIZE, LINK_REPLY_SIZE, MAGIC, MAX_CAPS_WORDS,
    TICKET_CIPHERTEXT_BYTES, VERSION_MAJOR, VERSION_MINOR, AuthMechanism,
    ChannelType, CommonCap, LinkErr)
from spicesrv.wire.messages import LinkHeader, LinkMess, LinkReply

SECURITY_NONE = 1
SECURITY_SSL = 2

SERVER_COMMON_CAPS = frozenset([CommonCap.PROTOCOL_AUTH_SELECTION,
                                CommonCap.AUTH_SPICE, CommonCap.MINI_HEADER])

# A parked link (a channel of a client migrating in) carries nothing until
# the client switches; this much is already suspicious.
MAX_PARKED_BYTES = 64 * 1024


@dataclass(frozen=True)
class Start:
    """
    The server's decision: send the link result OK and run C{channel} (a
    L{spicesrv.channel.ChannelProtocol}, made and added to its session) on
    this connection.
    """

    channel: object


@dataclass(frozen=True)
class Park:
    """
    The server's decision for a channel of a client migrating in: send the
    link result OK, then hand the link to C{arrival} (a
    L{spicesrv.migration.arrival.Arrival}), which runs a channel on it once
    the client has switched here (L{LinkProtocol.runChannel}).
    """

    arrival: object
    entry: object


@dataclass(frozen=True)
class Refuse:
    """
    The server's decision: send C{error} (a L{LinkErr}) as the link result
    and close; C{reason} is logged.
    """

    error: int
    reason: str


@dataclass
class LinkInfo:
    """
    What a client asked for when it linked a channel.
    """

    connection_id: int
    channel_type: int
    channel_id: int
    common_caps: frozenset
    channel_caps: frozenset
    secure: bool
    peer: str = ""
    server_channel_caps: frozenset = field(default_factory=frozenset)
    peer_address: object = None
    host_address: object = None

    @property
    def mini_header(self):
        return CommonCap.MINI_HEADER in self.common_caps

    @property
    def channel_name(self):
        try:
            return ChannelType(self.channel_type).name.lower()
        except ValueError:
            return "type%d" % self.channel_type


#: How HTTP requests begin (RFC 9110 methods, with their separator).
HTTP_STARTS = frozenset([b"GET ", b"HEAD", b"POST", b"PUT ", b"DELE", b"OPTI", b"PATC",
                         b"CONN", b"TRAC"])


def looks_like_http(first):
    """
    Whether the first four bytes of a connection open an HTTP request.
    """
    return first in HTTP_STARTS


def error_reply(error):
    """
    The bytes of a link header plus a SpiceLinkReply with only C{error}
    set, as the reference server sends for errors before authentication.
    """
    return (LinkHeader.pack(magic=MAGIC, major_version=VERSION_MAJOR,
                            minor_version=VERSION_MINOR, size=LINK_REPLY_SIZE)
            + LinkReply.pack(error=error, pub_key=b"", num_common_caps=0,
                             num_channel_caps=0, caps_offset=0))


class LinkProtocol(Protocol):
    """
    One client connection: the link stage, then a pass-through to the
    channel protocol the server attaches.

    The connection counts against the server's connection caps from its
    first moment to its last, and the whole handshake has one deadline
    (C{server.limits.linkTimeout}) that bytes arriving do not restart.

    @ivar server: the L{spicesrv.server.SpiceServer}.
    """

    log = Logger()

    # Whether the warning about a buffering TLS transport was logged.
    _warnedBuffering = False

    def __init__(self, server, carried=False, deadline=None):
        """
        @param carried: this link runs inside another connection (a
            WebSocket) that is already counted against the connection caps
            and has taken HTTP's place: it is not counted again, and HTTP is
            not looked for.
        @param deadline: when the handshake must be done, on C{server.clock}
            (a carried link keeps the deadline of the connection carrying
            it); L{None}: C{server.limits.linkTimeout} from now.
        """
        self.server = server
        self.clock = server.clock
        self.channel = None
        self.web = None
        self._carried = carried
        self._deadlineAt = deadline
        self._first = b""
        self._buffer = b""
        self._state = "magic"
        self._need = 4
        self._key = None
        self.info = None
        self.parkedIn = None
        self._closed = False
        self._keyRequest = None
        self._deadline = None
        self._deadlineLeft = None
        self._admitted = None
        self._closing = GracefulClose(self.clock)

    # -- transport events ----------------------------------------------------

    def connectionMade(self):
        peer = self.transport.getPeer()
        self.peer = describe_peer(peer)
        self.secure = ISSLTransport.providedBy(self.transport)
        limits = self.server.limits
        self._linkTimeout = limits.linkTimeout
        if self._carried:
            delay = (limits.linkTimeout if self._deadlineAt is None
                     else max(0, self._deadlineAt - self.clock.seconds()))
            self._deadline = self.clock.callLater(delay, self._linkExpired)
            return
        refused = self.server.connections.admit(peer)
        if refused is not None:
            self.log.warn("connection from {peer} refused: {reason}", peer=self.peer,
                          reason=refused)
            self._close()
            return
        self._admitted = peer
        # As libspice-server: no Nagle delay.  A large update's last small
        # segment would otherwise wait for the client's delayed ACK (about
        # 40 ms on Linux).
        try:
            self.transport.setTcpNoDelay(True)
        except (AttributeError, NotImplementedError, OSError):
            pass  # not TCP (a UNIX socket, a test transport)
        if isinstance(self.transport, BufferingTLSTransport) and not LinkProtocol._warnedBuffering:
            LinkProtocol._warnedBuffering = True
            self.log.warn(
                "TLS link from {peer} through Twisted's buffering TLS transport "
                "(SSL4ServerEndpoint, listenSSL or an ssl: endpoint string): it puts "
                "several messages in one TLS record and spice-gtk reads the later ones "
                "late; listen with spicesrv.tls.endpoint.TLSServerEndpoint", peer=self.peer)
        # As libspice-server: keepalive on every link, so a peer that
        # vanished (power off, a dropped NAT entry) is noticed and its
        # connection freed.
        setKeepalive(self.transport, limits.keepaliveIdle)
        self._deadline = self.clock.callLater(limits.linkTimeout, self._linkExpired)

    def dataReceived(self, data):
        if self.channel is not None:
            self.channel.dataReceived(data)
            return
        if self.web is not None:
            self.web.dataReceived(data)
            return
        if self._closed:
            return
        self._buffer += data
        if self.parkedIn is not None and len(self._buffer) > MAX_PARKED_BYTES:
            self._fail("the client sent %d bytes on a channel parked for migration"
                       % len(self._buffer))
            return
        while not self._closed and self.channel is None and len(self._buffer) >= self._need:
            chunk, self._buffer = self._buffer[:self._need], self._buffer[self._need:]
            getattr(self, "_got_" + self._state)(chunk)

    def runChannel(self, channel):
        """
        Hand this connection to C{channel}, with the bytes that arrived
        before it existed.
        """
        self.parkedIn = None
        self.channel = channel
        channel.makeConnection(self.transport)
        if self._buffer and self.channel is channel:
            rest, self._buffer = self._buffer, b""
            channel.dataReceived(rest)

    def connectionLost(self, reason):
        self._stopDeadline()
        self._closing.connectionLost()
        self._closed = True
        if self._admitted is not None:
            self.server.connections.release(self._admitted)
            self._admitted = None
        if self.parkedIn is not None:
            self.parkedIn.unpark(self)
            self.parkedIn = None
        if self._keyRequest is not None:
            self._keyRequest.cancel()
        if self.channel is not None:
            self.channel.connectionLost(reason)
        if self.web is not None:
            self.web.connectionLost(reason)

    def _linkExpired(self):
        self._deadline = None
        if self.web is not None and self.web.idle():
            # A browser's kept-alive page connection: closing it is routine.
            self._close()
            return
        self._fail("the client did not finish the link within %g seconds"
                   % (self._linkTimeout,))

    def _stopDeadline(self):
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _pauseDeadline(self):
        """
        Stop the deadline's clock, keeping the time left in
        C{_deadlineLeft}, until L{_resumeDeadline}.
        """
        if self._deadline is not None and self._deadline.active():
            self._deadlineLeft = max(0, self._deadline.getTime() - self.clock.seconds())
            self._stopDeadline()

    def _resumeDeadline(self):
        left, self._deadlineLeft = self._deadlineLeft, None
        if left is not None and not self._closed:
            self._deadline = self.clock.callLater(left, self._linkExpired)

    # -- the web front -------------------------------------------------------

    def _becomeWeb(self, first):
        """
        Hand this connection to the server's web front: it speaks HTTP from
        here on.  The connection stays counted, and the link deadline runs
        on until the web front carries a link (L{carryLink}).
        """
        from spicesrv.web import frontendOf
        self._state, self._need = "web", float("inf")
        rest, self._buffer = first + self._buffer, b""
        self.web = frontendOf(self.server).connect(self)
        self.web.dataReceived(rest)

    def carryLink(self):
        """
        A L{LinkProtocol} for a SPICE link carried inside this connection (a
        WebSocket): not counted again, with this connection's link deadline,
        which this connection stops keeping.
        """
        deadline = None
        if self._deadline is not None and self._deadline.active():
            deadline = self._deadline.getTime()
        self._stopDeadline()
        return LinkProtocol(self.server, carried=True, deadline=deadline)

    def closeWeb(self):
        """
        Close the connection politely (the web front has logged why), with
        the same grace time as a link.
        """
        self._close()

    # -- states ----------------------------------------------------------------

    def _got_magic(self, data):
        if data != MAGIC and not self._carried and looks_like_http(data):
            self._becomeWeb(data)
            return
        self._first = data
        self._state, self._need = "header", 12

    def _got_header(self, data):
        header = LinkHeader.unpack(self._first + data)
        if header.magic != MAGIC:
            self._refuse(LinkErr.INVALID_MAGIC, "bad magic %r" % (header.magic,))
            return
        if header.major_version == 0:
            self._fail("link header with major version 0")
            return
        if header.major_version != VERSION_MAJOR:
            self._refuse(LinkErr.VERSION_MISMATCH,
                         "protocol version %d.%d, only %d is supported"
                         % (header.major_version, header.minor_version, VERSION_MAJOR))
            return
        if not LINK_MESS_SIZE <= header.size <= LINK_MAX_SIZE:
            self._refuse(LinkErr.INVALID_DATA,
                         "link message size %d outside %d..%d"
                         % (header.size, LINK_MESS_SIZE, LINK_MAX_SIZE))
            return
        self._state, self._need = "mess", header.size

    def _got_mess(self, data):
        mess = LinkMess.unpack(data[:LINK_MESS_SIZE])
        ncommon, nchannel = mess.num_common_caps, mess.num_channel_caps
        if ncommon > MAX_CAPS_WORDS or nchannel > MAX_CAPS_WORDS:
            self._refuse(LinkErr.INVALID_DATA, "too many capability words (%d, %d)"
                         % (ncommon, nchannel))
            return
        words = ncommon + nchannel
        if words and (mess.caps_offset < LINK_MESS_SIZE
                      or mess.caps_offset + 4 * words > len(data)):
            self._refuse(LinkErr.INVALID_DATA, "capability words (offset %d, %d words) "
                         "do not fit in the %d-byte link message"
                         % (mess.caps_offset, words, len(data)))
            return
        allwords = capwords.unpack_words(data[mess.caps_offset:], words) if words else []
        self.info = LinkInfo(
            connection_id=mess.connection_id, channel_type=mess.channel_type,
            channel_id=mess.channel_id,
            common_caps=frozenset(capwords.words_to_caps(allwords[:ncommon])),
            channel_caps=frozenset(capwords.words_to_caps(allwords[ncommon:])),
            secure=self.secure, peer=self.peer, peer_address=self.transport.getPeer(),
            host_address=self.transport.getHost())
        channelClass = self.server.channelClass(mess.channel_type, mess.channel_id)
        if channelClass is None:
            self._refuse(LinkErr.CHANNEL_NOT_AVAILABLE, "no %s channel with id %d"
                         % (self.info.channel_name, mess.channel_id))
            return
        policy = self.server.channelSecurity(mess.channel_type)
        if self.secure and not policy & SECURITY_SSL:
            self._refuse(LinkErr.NEED_UNSECURED, "the %s channel must not use TLS"
                         % self.info.channel_name)
            return
        if not self.secure and not policy & SECURITY_NONE:
            self._refuse(LinkErr.NEED_SECURED, "the %s channel must use TLS"
                         % self.info.channel_name)
            return
        self.info.server_channel_caps = frozenset(
            channelClass.capabilities(self.server.context))
        self._state, self._need = "key", float("inf")
        # Waiting for the server's own RSA key is no time the client spends:
        # the deadline, which bounds what a peer may hold, stands still
        # meanwhile (a burst of links queues for keys).
        self._pauseDeadline()
        request = self._keyRequest = self.server.keys.take()
        request.addCallback(self._sendReply)
        request.addErrback(lambda f: f.trap(defer.CancelledError))

    def _sendReply(self, key):
        self._keyRequest = None
        self._resumeDeadline()
        self._key = key
        common = capwords.caps_to_words(SERVER_COMMON_CAPS)
        channel = capwords.caps_to_words(self.info.server_channel_caps)
        self.transport.write(
            LinkHeader.pack(magic=MAGIC, major_version=VERSION_MAJOR,
                            minor_version=VERSION_MINOR,
                            size=LINK_REPLY_SIZE + 4 * (len(common) + len(channel)))
            + LinkReply.pack(error=LinkErr.OK, pub_key=keys.public_key_der(key),
                             num_common_caps=len(common), num_channel_caps=len(channel),
                             caps_offset=LINK_REPLY_SIZE)
            + capwords.pack_words(common + channel))
        if CommonCap.PROTOCOL_AUTH_SELECTION in self.info.common_caps:
            self._state, self._need = "mechanism", 4
        else:
            self._state, self._need = "ticket", TICKET_CIPHERTEXT_BYTES
        self.dataReceived(b"")

    def _got_mechanism(self, data):
        (mechanism,) = struct.unpack("<I", data)
        if mechanism != AuthMechanism.SPICE:
            self._refuse(LinkErr.INVALID_DATA, "unsupported auth mechanism %d" % mechanism)
            return
        self._state, self._need = "ticket", TICKET_CIPHERTEXT_BYTES

    def _got_ticket(self, data):
        self._stopDeadline()
        key, self._key = self._key, None
        plaintext = self._decryptTicket(key, data)
        if plaintext is None:
            self._result(LinkErr.PERMISSION_DENIED, "the ticket did not decrypt")
            return
        ok, why = self.server.ticket.check(plaintext)
        if not ok:
            self._result(LinkErr.PERMISSION_DENIED, why)
            return
        self._state, self._need = "linked", float("inf")
        decision = self.server.attach(self.info)
        if isinstance(decision, Refuse):
            self._result(decision.error, decision.reason)
            return
        self.sendLinkResult(LinkErr.OK)
        if isinstance(decision, Park):
            self.parkedIn = decision.arrival
            decision.arrival.park(self, decision.entry)
        else:
            self.runChannel(decision.channel)

    def _decryptTicket(self, key, data):
        """
        The ticket's plaintext, or L{None}.

        spice-html5 (0.3.0) drops the leading zero bytes of its ciphertext
        (a big integer printed in hex) and pads the 128 bytes with zeros at
        the end instead, so about one link in 256 would be refused; for
        links carried in a WebSocket, a ciphertext that does not decrypt
        and ends in zeros is tried again with those zeros moved to the
        front.  Each key serves one ticket, so the retry gives a peer
        nothing to learn.
        """
        try:
            return keys.decrypt_ticket(key, data)
        except ValueError:
            pass
        if not self._carried:
            return None
        trailing = len(data) - len(data.rstrip(b"\0"))
        for shift in range(1, min(trailing, 4) + 1):
            try:
                return keys.decrypt_ticket(key, b"\0" * shift + data[:-shift])
            except ValueError:
                continue
        return None

    # -- endings -------------------------------------------------------------

    def sendLinkResult(self, error):
        """
        Send the bare u32 link result (OK once the channel is attached).
        """
        self.transport.write(struct.pack("<I", error))

    def _refuse(self, error, reason):
        self.log.warn("link from {peer} refused ({error}): {reason}",
                      peer=self.peer, error=LinkErr(error).name, reason=reason)
        self.transport.write(error_reply(error))
        self._close()

    def _result(self, error, reason):
        self.log.warn("link from {peer} for {channel} refused ({error}): {reason}",
                      peer=self.peer, channel=self.info.channel_name,
                      error=LinkErr(error).name, reason=reason)
        self.sendLinkResult(error)
        self._close()

    def _fail(self, reason):
        self.log.warn("link from {peer} closed: {reason}", peer=self.peer, reason=reason)
        self._close()

    def _close(self):
        self._closed = True
        self._stopDeadline()
        self._closing.close(self.transport, self.server.limits.closeGrace, self._aborting)

    def _aborting(self):
        self.log.warn("link from {peer}: the client did not take the last bytes within "
                      "{grace} s of the close; aborting", peer=self.peer,
                      grace=self.server.limits.closeGrace)
