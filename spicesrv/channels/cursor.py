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
    """

    channelType = ChannelType.CURSOR
    serverMessages = CURSOR_SERVER
    clientMessages = COMMON_CLIENT
    handlesAcks = True

    def __init__(self, session, info, source):
        ChannelProtocol.__init__(self, session, info)
        self.source = source
        self._pendingMove = None

    def channelUp(self):
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

    def channelDown(self):
        self.source.removeObserver(self)

    def surface_changed(self, width, height):
        pass

    def damaged(self, rects):
        pass

    def cursor_changed(self, cursor):
        if cursor is None:
            self.sendMessage("HIDE")
            return
        x, y = self.source.cursor_position()
        self.sendMessage("SET", position=dict(x=x, y=y), visible=1, cursor=cursor)

    def cursor_moved(self, x, y):
        if self.context.mouseMode != MouseMode.SERVER:
            return
        if self.canSend():
            self.sendMessage("MOVE", position=dict(x=x, y=y))
        else:
            # Only the latest position matters to a client that lags.
            self._pendingMove = (x, y)

    def windowOpened(self):
        if self._pendingMove is not None and self.canSend():
            x, y = self._pendingMove
            self._pendingMove = None
            self.sendMessage("MOVE", position=dict(x=x, y=y))
