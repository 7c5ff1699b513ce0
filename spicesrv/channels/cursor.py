"""
The cursor channel (type 4): the pointer shape, its visibility and, in
server mouse mode, its position.
"""

from zope.interface import implementer

from spicesrv.channel import ChannelProtocol
from spicesrv.interfaces import IDisplayObserver
from spicesrv.wire.constants import ChannelType, MouseMode
from spicesrv.wire.messages import COMMON_CLIENT, CURSOR_SERVER


@implementer(IDisplayObserver)
class CursorChannel(ChannelProtocol):
    """
    The pointer of one display source: its shape and visibility, and its
    position in server mouse mode.  It observes the source as an
    L{IDisplayObserver}.

    On link: INIT with the current shape, visibility and position, then
    the shape once more as SET (HIDE when there is none), which every
    client reads (spice-html5 ignores INIT's shape).

    Cursor news is pulled, not queued, as the display channel's damage: a
    shape change or a move only marks what changed, and the latest shape and
    position go out when the client's ACK window and the socket allow (the
    channel is the transport's producer).  A client that does not read
    costs a bounded amount of memory however often the cursor changes.
    """

    channelType = ChannelType.CURSOR
    serverMessages = CURSOR_SERVER
    clientMessages = COMMON_CLIENT
    handlesAcks = True

    def __init__(self, session, info, source):
        ChannelProtocol.__init__(self, session, info)
        self.source = source
        self._shapeChanged = False
        self._pendingMove = None
        self._paused = False

    def channelUp(self):
        self.transport.registerProducer(self, True)
        self.sendSetAck()
        self.source.addObserver(self)
        if self.session.restoringSeamlessly:
            # The client keeps its cursor across a seamless migration and
            # refuses a second CURSOR_INIT (libspice does not send one).
            return
        cursor = self.source.cursor()
        x, y = self.source.cursor_position()
        self.sendMessage("INIT", position=dict(x=x, y=y), trail_length=0,
                         trail_frequency=0, visible=int(cursor is not None), cursor=cursor)
        # The same state again as an ordinary change (SET, or HIDE): that
        # is all spice-html5 reads (its INIT handler takes the position
        # only, upstream's too), and a client that took INIT's shape takes
        # the same one again.  libspice-server sends INIT alone, so there
        # a browser shows its own pointer until the guest's next shape.
        self._shapeChanged = True
        self._sendPending()

    def channelDown(self):
        self.source.removeObserver(self)

    def surface_changed(self, width, height):
        pass

    def damaged(self, rects):
        pass

    def cursor_changed(self, cursor):
        self._shapeChanged = True
        self._sendPending()

    def cursor_moved(self, x, y):
        if self.context.mouseMode != MouseMode.SERVER:
            return
        # Only the latest position matters to a client that lags.
        self._pendingMove = (x, y)
        self._sendPending()

    # -- flow control ------------------------------------------------------------

    def windowOpened(self):
        self._sendPending()

    def pauseProducing(self):
        self._paused = True

    def resumeProducing(self):
        self._paused = False
        self._sendPending()

    def stopProducing(self):
        self._paused = True

    def _sendPending(self):
        """
        Send the source's current shape (with its position) if it changed,
        else the latest move, if the window and the socket take it.
        """
        if self._paused or not self.connected or not self.canSend():
            return
        if self._shapeChanged:
            self._shapeChanged = False
            self._pendingMove = None
            cursor = self.source.cursor()
            if cursor is None:
                self.sendMessage("HIDE")
                return
            x, y = self.source.cursor_position()
            self.sendMessage("SET", position=dict(x=x, y=y), visible=1, cursor=cursor)
        elif self._pendingMove is not None:
            x, y = self._pendingMove
            self._pendingMove = None
            self.sendMessage("MOVE", position=dict(x=x, y=y))
