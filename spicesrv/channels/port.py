"""
The port channel (type 10, QEMU's "spiceport"): a named byte stream
between the client and a backend reached through a Twisted client endpoint
(TCP, UNIX, TLS, ...), as QEMU users use it for serial consoles and guest
tools.

    server.registry.register(
        ChannelType.PORT, server.registry.nextId(ChannelType.PORT), PortChannel,
        name="org.qemu.console.serial.0",
        endpoint=portBackend(reactor, "tcp:host=127.0.0.1:port=7000"))

How the reference pair behaves, and what this channel does in its place:

- In QEMU + libspice the two ends open independently.  The *client* opens
  the port by linking the channel (libspice calls the chardev's
  C{state(1)}, QEMU raises CHR_EVENT_OPENED); unlinking closes it.  The
  *guest* opens and closes its end, which libspice reports to the client
  as PORT_INIT's C{opened} and later PORT_EVENT OPENED / CLOSED.  A
  client's own PORT_EVENT reaches QEMU, which acts only on BREAK.
- spice-gtk follows that model: its API refuses to send OPENED or CLOSED
  (C{spice_port_channel_event} requires C{event > CLOSED}: "managed by the
  channel connection state"), its C{port-opened} property follows the
  server's PORT_INIT / PORT_EVENT (and any DATA), and its writes fail while
  the port is not opened.

Here the backend endpoint plays the guest.  So:

- Linking the channel is the client's open: PORT_INIT goes out with
  C{opened} 0 and the channel connects to the endpoint at once.
- Connected: PORT_EVENT OPENED.  Every connection attempt ends in either
  OPENED (later followed by exactly one CLOSED) or one CLOSED: the
  connection failed (refused, unreachable...), the backend closed it, or
  the client closed the port.  Each of those logs one line.
- A client PORT_EVENT OPENED while closed reconnects (clients other than
  spice-gtk can send it); a spice-gtk user reopens by linking the channel
  again.  PORT_EVENT CLOSED disconnects the backend (after flushing what
  the client already wrote).  BREAK has no stream-socket equivalent: it is
  logged and handed to L{PortChannel.breakReceived}.
- Unlinking the channel disconnects the backend.  Every link of the
  channel (one per client session) gets its own backend connection.
- Bytes the client writes while the connection is being made are queued
  (reading from the client pauses past L{PENDING_LIMIT}); bytes written
  while the port is closed are dropped, with one log line per closed
  period.
- Backend bytes go to the client in messages of at most C{maxMessage}
  bytes, as COMPRESSED_DATA (LZ4) when the client has spicevmc cap 0, the
  chunk is over 1000 bytes, the client is not on a UNIX socket and
  compression saves space (as libspice); otherwise as DATA.  A
  COMPRESSED_DATA that does not decompress to its announced size, or
  announces more than C{maxUncompressed} bytes, closes this channel only.
- Backpressure both ways: the channel is the streaming producer of the
  client connection (a full client socket pauses reading from the
  backend), and the backend protocol is the producer of the backend
  connection (a full backend socket pauses reading from the client).
"""

import lz4.block
from twisted.internet import defer, endpoints
from twisted.internet.address import UNIXAddress
from twisted.internet.interfaces import IPushProducer, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from spicesrv.channel import ChannelProtocol
from spicesrv.wire.constants import ChannelType
from spicesrv.wire.port import (
    PORT_CLIENT, PORT_SERVER, DataCompression, PortEvent, SpicevmcCap)

#: Largest DATA message sent to the client (libspice reads 64 KiB at a time).
MAX_MESSAGE = 64 * 1024
#: libspice compresses only chunks larger than this.
COMPRESS_THRESHOLD = 1000
#: Largest uncompressed_size accepted in a client's COMPRESSED_DATA (the
#: largest DATA the channel layer accepts is 1 MiB too).
MAX_UNCOMPRESSED = 1 << 20
#: Bytes from the client queued while the backend connection is being made
#: before reading from the client pauses.
PENDING_LIMIT = 1 << 20
#: Seconds a closing backend connection may take to flush before it is
#: aborted.
BACKEND_CLOSE_TIMEOUT = 10.0


@implementer(IStreamClientEndpoint)
class PortBackend:
    """
    A client endpoint that remembers the description it was made from, for
    log lines and C{repr}.
    """

    def __init__(self, endpoint, description):
        self.endpoint = endpoint
        self.description = description

    def connect(self, protocolFactory):
        return self.endpoint.connect(protocolFactory)

    def __str__(self):
        return self.description

    def __repr__(self):
        return "<PortBackend %s>" % (self.description,)


def portBackend(reactor, description):
    """
    The endpoint for a port's backend, from a Twisted client endpoint
    description such as C{"tcp:host=127.0.0.1:port=7000"} or
    C{"unix:path=/run/console.sock"}.

    @raise ValueError: the description is not a usable endpoint.
    """
    try:
        endpoint = endpoints.clientFromString(reactor, description)
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError("bad port endpoint %r: %s" % (description, e))
    return PortBackend(endpoint, description)


def parseSpiceport(reactor, value):
    """
    Split a C{NAME=ENDPOINT} option value (port names hold no C{=}, endpoint
    descriptions may) into the port name and its L{PortBackend}.

    @raise ValueError: with a one-line reason.
    """
    name, sep, description = value.partition("=")
    if not sep or not name or not description:
        raise ValueError("expected NAME=ENDPOINT, got %r" % (value,))
    if "\0" in name:
        raise ValueError("a port name cannot contain NUL")
    return name, portBackend(reactor, description)


@implementer(IPushProducer)
class _Backend(Protocol):
    """
    One connection to the backend, made for one connection attempt of one
    channel.  It is the producer of its transport: when the backend socket
    is full, the channel stops reading from the client.

    @ivar attached: whether the channel still uses this connection.
    """

    def __init__(self, channel, attempt):
        self.channel = channel
        self.attempt = attempt
        self.attached = False
        self.closing = None
        self.lost = False
        self._registered = False

    def connectionMade(self):
        self.transport.registerProducer(self, True)
        self._registered = True
        self.channel._backendConnected(self)

    def dataReceived(self, data):
        if self.attached:
            self.channel._backendData(data)

    def connectionLost(self, reason):
        self.lost = True
        self._registered = False
        if self.closing is not None and self.closing.active():
            self.closing.cancel()
        self.closing = None
        if self.attached:
            self.channel._backendLost(self, reason)

    def shutdown(self, clock):
        """
        Close, flushing what was written; abort if that takes too long.
        """
        self.attached = False
        if self._registered:
            # A paused producer would keep the connection open forever.
            self._registered = False
            self.transport.unregisterProducer()
        self.transport.loseConnection()
        if not self.lost:
            self.closing = clock.callLater(BACKEND_CLOSE_TIMEOUT, self._abort)

    def _abort(self):
        self.closing = None
        if not self.lost:
            self.transport.abortConnection()

    # -- IPushProducer (the backend's socket) ------------------------------------

    def pauseProducing(self):
        if self.attached:
            self.channel._pauseReading(self)

    def resumeProducing(self):
        self.channel._resumeReading(self)

    def stopProducing(self):
        pass


class _BackendFactory(Factory):
    """
    Makes the L{_Backend} of one connection attempt of a port channel.
    """

    def __init__(self, channel, attempt):
        self.channel = channel
        self.attempt = attempt

    def buildProtocol(self, addr):
        return _Backend(self.channel, self.attempt)


@implementer(IPushProducer)
class PortChannel(ChannelProtocol):
    """
    A port channel bridged to a backend endpoint.  The registry calls it as
    C{PortChannel(session, info, name=..., endpoint=...)}.

    @param name: the port name sent in PORT_INIT (a L{str}, e.g.
        C{"org.qemu.console.serial.0"}).
    @param endpoint: an C{IStreamClientEndpoint} (see L{portBackend}); one
        connection is made per link of the channel.
    @param maxMessage: the largest data message sent to the client.

    @ivar opened: whether the backend is connected (what the client was last
        told).
    """

    channelType = ChannelType.PORT
    serverMessages = PORT_SERVER
    clientMessages = PORT_CLIENT
    maxUncompressed = MAX_UNCOMPRESSED
    # spice-gtk sends each write as one DATA message, however large.
    maxClientMessage = 16 * 1024 * 1024

    def __init__(self, session, info, name, endpoint, maxMessage=MAX_MESSAGE):
        if maxMessage < 1:
            raise ValueError("maxMessage must be at least 1, not %r" % (maxMessage,))
        ChannelProtocol.__init__(self, session, info)
        if isinstance(name, bytes):
            name = name.decode("utf-8")
        self.portName = name
        self.endpoint = endpoint
        self.maxMessage = maxMessage
        self.compress = False
        self._backend = None
        self._attempt = None
        self._connecting = None
        self._pending = []
        self._pendingSize = 0
        self._dropped = 0
        self._clientFull = False
        self._readPausers = set()
        self._producing = False

    @classmethod
    def capabilities(cls, context):
        return {SpicevmcCap.DATA_COMPRESS_LZ4}

    @property
    def opened(self):
        return self._backend is not None

    @property
    def backendTransport(self):
        """
        The transport of the backend connection, or L{None} while closed.
        """
        return self._backend.transport if self._backend is not None else None

    def _log(self, level, kind, text, **kwargs):
        # Each line follows from what the client did (linking, PORT_EVENT,
        # DATA, BREAK), so it goes through the channel's rate limit; C{kind}
        # names it in the summary of suppressed lines.
        getattr(self.peerLog, level)(kind, "{session} {channel}: port {port}: " + text,
                                     session=self.session.id, channel=self.name,
                                     port=self.portName, endpoint=str(self.endpoint),
                                     **kwargs)

    # -- life cycle ----------------------------------------------------------------

    def channelUp(self):
        self.compress = (SpicevmcCap.DATA_COMPRESS_LZ4 in self.info.channel_caps
                         and not isinstance(self.transport.getHost(), UNIXAddress))
        self.transport.registerProducer(self, True)
        self._producing = True
        self.sendMessage("PORT_INIT", name=self.portName.encode("utf-8") + b"\0",
                         opened=int(self.opened))
        self._open()

    def channelDown(self):
        self._producing = False
        self._close()

    def close(self, reason):
        # Unregister first: with a paused producer registered, the transport
        # would wait for it forever instead of closing.
        if self._producing and self.connected:
            self._producing = False
            self.transport.unregisterProducer()
        ChannelProtocol.close(self, reason)

    # -- the backend connection ------------------------------------------------------

    def _open(self):
        """
        Start connecting to the backend, unless connected or connecting.
        """
        if self._backend is not None or self._connecting is not None:
            return
        attempt = self._attempt = object()
        self._dropped = 0
        try:
            d = self.endpoint.connect(_BackendFactory(self, attempt))
        except Exception:
            d = defer.fail()
        self._connecting = d
        d.addCallbacks(self._connectDone, self._connectFailed,
                       callbackArgs=(attempt,), errbackArgs=(attempt,))

    def _connectDone(self, protocol, attempt):
        # Endpoints fire after the protocol's connectionMade, which attached
        # it; an attempt still pending here never got a connection.
        if attempt is self._attempt:
            self._connectFailed(Failure(RuntimeError(
                "the endpoint reported a connection that was never made")), attempt)

    def _connectFailed(self, failure, attempt):
        if attempt is not self._attempt:
            return None    # cancelled or superseded: already reported
        self._attempt = None
        self._connecting = None
        dropped = self._dropPending()
        self._log("warn", "failed backend connections",
                  "cannot connect to {endpoint}: {why}{lost}", why=failure.getErrorMessage(),
                  lost=" (%d bytes from the client dropped)" % dropped if dropped else "")
        self._sendEvent(PortEvent.CLOSED)
        return None

    def _backendConnected(self, backend):
        if backend.attempt is not self._attempt or not self.connected:
            backend.shutdown(self.clock)
            return
        self._attempt = None
        self._connecting = None
        backend.attached = True
        self._backend = backend
        if self._clientFull:
            backend.transport.pauseProducing()
        self._log("info", "backend connections", "connected to {endpoint}")
        self._sendEvent(PortEvent.OPENED)
        pending, self._pending, self._pendingSize = self._pending, [], 0
        if pending:
            backend.transport.writeSequence(pending)
        self._resumeReading("pending")

    def _backendLost(self, backend, reason):
        self._detach(backend)
        self._log("warn", "backend closes", "{endpoint} closed the connection: {why}",
                  why=reason.getErrorMessage())
        self._sendEvent(PortEvent.CLOSED)

    def _detach(self, backend):
        backend.attached = False
        self._backend = None
        self._resumeReading(backend)

    def _dropPending(self):
        dropped = self._pendingSize
        self._pending, self._pendingSize = [], 0
        self._resumeReading("pending")
        return dropped

    def _close(self):
        """
        Give up the backend connection or the attempt to make one.
        """
        if self._connecting is not None:
            d, self._connecting, self._attempt = self._connecting, None, None
            d.cancel()
        self._attempt = None
        self._dropPending()
        backend = self._backend
        if backend is not None:
            self._detach(backend)
            backend.shutdown(self.clock)

    def _sendEvent(self, event):
        self.sendMessage("PORT_EVENT", event=event)

    # -- backend -> client -------------------------------------------------------------

    def _backendData(self, data):
        size = self.maxMessage
        for start in range(0, len(data), size):
            self._sendData(data[start:start + size])

    def _sendData(self, chunk):
        if self.compress and len(chunk) > COMPRESS_THRESHOLD:
            packed = lz4.block.compress(chunk, store_size=False)
            if len(packed) < len(chunk):
                self.sendMessage("COMPRESSED_DATA", type=DataCompression.LZ4,
                                 uncompressed_size=len(chunk), compressed_data=packed)
                return
        self.sendMessage("DATA", data=chunk)

    # -- client -> backend -------------------------------------------------------------

    def msg_DATA(self, msg):
        self._toBackend(msg.data)

    def msg_COMPRESSED_DATA(self, msg):
        if msg.type == DataCompression.NONE:
            data = msg.compressed_data
        elif msg.type == DataCompression.LZ4:
            size = msg.uncompressed_size
            if size > self.maxUncompressed:
                self.close("malformed COMPRESSED_DATA: uncompressed_size %d is over the %d "
                           "allowed" % (size, self.maxUncompressed))
                return
            try:
                data = lz4.block.decompress(msg.compressed_data, uncompressed_size=size)
            except (lz4.block.LZ4BlockError, ValueError) as e:
                self.close("malformed COMPRESSED_DATA: %d LZ4 bytes do not decompress to "
                           "%d bytes (%s)" % (len(msg.compressed_data), size, e))
                return
            if len(data) != size:
                self.close("malformed COMPRESSED_DATA: LZ4 data decompressed to %d bytes, "
                           "uncompressed_size says %d" % (len(data), size))
                return
        else:
            self.close("malformed COMPRESSED_DATA: unknown compression type %d" % msg.type)
            return
        self._toBackend(data)

    def _toBackend(self, data):
        if not data:
            return
        if self._backend is not None:
            self._backend.transport.write(data)
        elif self._connecting is not None:
            self._pending.append(data)
            self._pendingSize += len(data)
            if self._pendingSize > PENDING_LIMIT:
                self._pauseReading("pending")
        else:
            if not self._dropped:
                self._log("info", "DATA while closed",
                          "the port is closed; dropping what the client writes")
            self._dropped += len(data)

    def msg_PORT_EVENT(self, msg):
        if msg.event == PortEvent.OPENED:
            if self._backend is None and self._connecting is None:
                self._log("info", "PORT_EVENT", "the client reopened the port")
                self._open()
        elif msg.event == PortEvent.CLOSED:
            if self._backend is not None or self._connecting is not None:
                self._log("info", "PORT_EVENT", "the client closed the port")
                self._close()
                self._sendEvent(PortEvent.CLOSED)
        elif msg.event == PortEvent.BREAK:
            self.breakReceived()
        else:
            self._log("info", "PORT_EVENT", "ignoring port event {event}", event=msg.event)

    def breakReceived(self):
        """
        The client sent a BREAK (QEMU passes it to the guest as
        CHR_EVENT_BREAK).  A stream socket has no break; subclasses may
        translate it for their backend.
        """
        self._log("info", "BREAK", "BREAK from the client (a stream socket has no break)")

    # -- flow control ------------------------------------------------------------------

    def _pauseReading(self, why):
        """
        Stop reading from the client while C{why} holds (a full backend
        socket, or too much queued while connecting).
        """
        if not self._readPausers and self._canSteer():
            self.transport.pauseProducing()
        self._readPausers.add(why)

    def _resumeReading(self, why):
        if why not in self._readPausers:
            return
        self._readPausers.discard(why)
        if not self._readPausers and self._canSteer():
            self.transport.resumeProducing()

    def _canSteer(self):
        return self.connected and not getattr(self.transport, "disconnecting", False)

    @property
    def readingPaused(self):
        """
        Whether reading from the client is paused (the backend socket is
        full, or too much is queued while connecting).
        """
        return bool(self._readPausers)

    @property
    def clientFull(self):
        """
        Whether the client connection paused this channel (its socket is
        full), so reading from the backend is paused.
        """
        return self._clientFull

    # IPushProducer, for the client connection: a full client socket stops
    # reading from the backend.

    def pauseProducing(self):
        self._clientFull = True
        if self._backend is not None:
            self._backend.transport.pauseProducing()

    def resumeProducing(self):
        self._clientFull = False
        if self._backend is not None:
            self._backend.transport.resumeProducing()

    def stopProducing(self):
        self._clientFull = True
