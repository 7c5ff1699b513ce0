"""
The devices of the X11 display source (L{spicesrv.sources.x11.X11Source}),
each a thin adapter that hands the server's calls to the source: the
keyboard, mouse and tablet (XTEST input) and the agent (RandR resizing and
the clipboard bridge), registered only when the operator allows control.
"""

import xcffib
from twisted.logger import Logger
from zope.interface import implementer

from spicesrv.interfaces import IAgent, IKeyboard, IMouse, ITablet
from spicesrv.sources import x11keys

def boundingBox(monitors):
    """
    The rectangle around a client's enabled monitors (L{None} entries are
    turned off) as C{(x, y, width, height)}, or L{None} if none is on.
    """
    enabled = [m for m in monitors if m is not None]
    if not enabled:
        return None
    left, top = min(m.x for m in enabled), min(m.y for m in enabled)
    return (left, top, max(m.x + m.width for m in enabled) - left,
            max(m.y + m.height for m in enabled) - top)


def _base(interface):
    return (interface.getTaggedValue("type"), interface.getTaggedValue("major_version"),
            interface.getTaggedValue("minor_version"))


@implementer(IAgent)
class X11Agent:
    """
    The X display as the clients' agent: a client's monitors become the X
    screen's (L{X11Source.arrange} on several outputs, L{X11Source.resize}
    on one), and the clipboard is bridged to
    the X selections (L{X11Clipboard}) when the source has the bridge.
    """

    type, major_version, minor_version = _base(IAgent)
    log = Logger()

    def __init__(self, source):
        self._source = source
        self.clients = None
        self.description = "X11 agent (RandR resize%s)" % (
            ", clipboard" if source.clipboard is not None else "",)

    def agent_attached(self, clients):
        self.clients = clients
        if self._source.clipboard is not None:
            self._source.clipboard.attach(clients)

    def monitors_config(self, monitors):
        """
        A client's monitors: on an X server with several connected outputs,
        each monitor goes to an output (L{X11Source.arrange}); with one, the
        X screen takes the size of the rectangle around them all.
        """
        box = boundingBox(monitors)
        if box is None:
            return
        source = self._source
        try:
            outputs = source.outputs()
            if outputs is not None and len(outputs) > 1:
                source.arrange([None if m is None else (m.x, m.y, m.width, m.height)
                                for m in monitors])
            elif box[2:] != (source.width, source.height):
                source.resize(box[2], box[3])
        except ValueError as e:
            self.log.info("a client asked for a {width}x{height} screen; it stays "
                          "{current}: {why}", width=box[2], height=box[3],
                          current="%dx%d" % (source.width, source.height), why=e)
        except xcffib.XcffibException as e:
            self.log.warn("resizing X display {display} to {width}x{height} failed: {error!r}",
                          display=source.display, width=box[2], height=box[3], error=e)

    def clipboard_grab(self, selection, types):
        if self._source.clipboard is not None:
            self._source.clipboard.clientGrabbed(selection, types)

    def clipboard_release(self, selection):
        if self._source.clipboard is not None:
            self._source.clipboard.clientReleased(selection)

    def clipboard_request(self, selection, type):
        if self._source.clipboard is None:
            return None
        return self._source.clipboard.request(selection, type)


@implementer(IKeyboard)
class X11Keyboard:
    """
    SPICE scancodes typed on the X server through XTEST.
    """

    type, major_version, minor_version = _base(IKeyboard)
    description = "X11 keyboard (XTEST)"

    def __init__(self, source):
        self._source = source
        self._decoder = x11keys.Set1Decoder()
        #: Set by the server (see L{IKeyboard}); called when the X server's
        #: lock indicators change, whoever pressed the key.
        self.leds_changed = None

    def push_scan_freg(self, byte):
        key = self._decoder.feed(byte)
        if key is not None:
            self._source.key(*key)

    def get_leds(self):
        return self._source.leds()


@implementer(IMouse)
class X11Mouse:
    """
    Relative motion (server mouse mode) through XTEST.
    """

    type, major_version, minor_version = _base(IMouse)
    description = "X11 mouse (XTEST)"

    def __init__(self, source):
        self._source = source

    def motion(self, dx, dy, dz, buttons_state):
        if dx or dy:
            self._source.moveBy(dx, dy)
        if dz:
            self._source.wheel(dz)
        self._source.setButtons(buttons_state)

    def buttons(self, buttons_state):
        self._source.setButtons(buttons_state)


@implementer(ITablet)
class X11Tablet:
    """
    Absolute positions (client mouse mode) through XTEST.
    """

    type, major_version, minor_version = _base(ITablet)
    description = "X11 tablet (XTEST)"

    def __init__(self, source):
        self._source = source
        self._size = None

    def set_logical_size(self, width, height):
        self._size = (width, height) if width and height else None

    def position(self, x, y, buttons_state):
        if self._size is not None and self._size != (self._source.width,
                                                      self._source.height):
            x = x * self._source.width // self._size[0]
            y = y * self._source.height // self._size[1]
        self._source.moveTo(x, y)
        self._source.setButtons(buttons_state)

    def wheel(self, wheel_motion, buttons_state):
        self._source.wheel(wheel_motion)
        self._source.setButtons(buttons_state)

    def buttons(self, buttons_state):
        self._source.setButtons(buttons_state)
