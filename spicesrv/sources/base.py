"""
A base for display sources that keep their picture in a numpy framebuffer:
the observer bookkeeping and the cursor, so a source only draws.
"""

import numpy
from zope.interface import implementer

from spicesrv.display.arrow import arrow_cursor
from spicesrv.interfaces import IDisplaySource, ISource


@implementer(IDisplaySource, ISource)
class FramebufferSource:
    """
    A display source with a C{(height, width, 4)} BGRX framebuffer.  A
    subclass draws into L{frame} and calls L{damage}, or replaces the frame
    with L{setFrame}; one that animates overrides L{start} and L{stop}.

    @ivar frame: the framebuffer the clients are shown.
    """

    type = IDisplaySource.getTaggedValue("type")
    major_version = IDisplaySource.getTaggedValue("major_version")
    minor_version = IDisplaySource.getTaggedValue("minor_version")
    description = "display source"

    def __init__(self, width, height, cursor=None):
        self.width = width
        self.height = height
        self.frame = numpy.zeros((height, width, 4), numpy.uint8)
        self._observers = []
        self._cursor = arrow_cursor() if cursor is None else cursor
        self._position = (width // 2, height // 2)

    # -- ISource ----------------------------------------------------------------

    def devices(self):
        """
        Everything to register with the server: this source.
        """
        return [self]

    def start(self):
        """
        Nothing to start; a subclass with timers starts them here.
        """

    def stop(self):
        """
        Nothing to stop; a subclass with timers stops them here.
        """

    # -- IDisplaySource --------------------------------------------------------

    def framebuffer(self):
        return self.frame

    def cursor(self):
        return self._cursor

    def cursor_position(self):
        return self._position

    def addObserver(self, observer):
        self._observers.append(observer)

    def removeObserver(self, observer):
        self._observers.remove(observer)

    # -- for subclasses ------------------------------------------------------------

    def _notify(self, method, *args):
        """
        Call C{method} of every observer (an L{IDisplayObserver} method).
        """
        for observer in list(self._observers):
            getattr(observer, method)(*args)

    def damage(self, rects):
        """
        Tell the observers that C{rects} (C{(left, top, right, bottom)}
        each) of L{frame} changed.
        """
        self._notify("damaged", list(rects))

    def setFrame(self, frame):
        """
        Show a new framebuffer; a new size re-creates the clients' surfaces,
        the same size repaints everything.
        """
        height, width = frame.shape[:2]
        resized = (width, height) != (self.width, self.height)
        self.frame = frame
        self.width, self.height = width, height
        if resized:
            self._notify("surface_changed", width, height)
        else:
            self.damage([(0, 0, width, height)])

    def setCursor(self, cursor):
        """
        Show another cursor shape, or none (L{None}).
        """
        self._cursor = cursor
        self._notify("cursor_changed", cursor)

    def moveCursor(self, x, y):
        """
        Move the cursor (what clients show in server mouse mode).
        """
        self._position = (x, y)
        self._notify("cursor_moved", x, y)
