"""
One connected client: its session id, its main channel and the other
channels it linked.
"""

from twisted.logger import Logger

from spicesrv.wire.constants import ChannelType


class ClientSession:
    """
    A client, from its main channel link to the loss of that channel.

    Losing the main channel ends the session and closes every other channel
    of the client, as in libspice-server.
    """

    log = Logger()

    def __init__(self, server, session_id, peer):
        self.server = server
        self.id = session_id
        self.peer = peer
        self.main = None
        self.channels = {}
        self.ended = False

    def __repr__(self):
        return "<ClientSession %d from %s>" % (self.id, self.peer)

    def add(self, channel):
        key = (channel.channelType, channel.channelId)
        old = self.channels.get(key)
        if old is not None:
            old.close("replaced by a new link of the same channel")
        self.channels[key] = channel
        if channel.channelType == ChannelType.MAIN:
            self.main = channel

    def channelLost(self, channel):
        key = (channel.channelType, channel.channelId)
        if self.channels.get(key) is channel:
            del self.channels[key]
        if channel is self.main:
            self.end()

    def end(self):
        """
        Close every channel and forget the session.
        """
        if self.ended:
            return
        self.ended = True
        for channel in list(self.channels.values()):
            channel.transport.loseConnection()
        self.server.sessionEnded(self)
        self.log.info("session {session} from {peer} ended", session=self.id, peer=self.peer)

    def broadcast(self, method, *args):
        """
        Call C{method} on every channel of this session that has it.
        """
        for channel in list(self.channels.values()):
            handler = getattr(channel, method, None)
            if handler is not None:
                handler(*args)
