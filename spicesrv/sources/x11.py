"""
The X11 display source (``--source x11:DISPLAY``): shows an X server's
screen to SPICE clients, as x11spice does, on xcffib (the XCB bindings).

- The X connection is a file descriptor the reactor watches
  (L{XEventReader}): DAMAGE, XFIXES, RandR and XKB events arrive as they
  happen, nothing polls for them.
- Capture is lazy: DAMAGE reports what changed (the observers hear of it at
  once), and the pixels are fetched only when a display channel asks for
  the framebuffer, that is when a client can take an update.  Only the rows
  damaged since the last capture are fetched, with MIT-SHM straight into
  the framebuffer (which I{is} the shared memory segment), or with the core
  GetImage request where MIT-SHM cannot work (a remote X server).
- The cursor follows XFIXES: shape changes are events; the position (for
  server mouse mode) is asked for while clients watch.
- Input goes in through XTEST, and only when the operator allows it
  (C{allow_control}; view-only by default): the client's PC scancodes are
  mapped to the X server's keycodes by XKB key name (L{x11keys}), buttons,
  the wheel, relative motion (server mouse mode) and absolute positions
  (client mouse mode).
- A screen size change (RandR) re-creates the clients' surface.
- With control allowed, the source is the clients' agent too
  (L{spicesrv.sources.x11devices.X11Agent}): a client's window size becomes the X screen's, through
  RandR (a mode is created when none has that size), where the X server
  can change its size; a client's several monitors go to as many RandR
  outputs (L{X11Source.arrange}), or, on an X server with one output, its
  screen takes the rectangle around them; and, unless C{clipboard=False},
  the X server's
  CLIPBOARD and PRIMARY selections are bridged to the clients' clipboards
  both ways (L{spicesrv.sources.x11clipboard}).

L{X11Source} is one X connection and everything it follows (capture,
cursor, input, RandR), which is why this module is longer than most; its
devices (L{spicesrv.sources.x11devices}), scancode table
(L{spicesrv.sources.x11keys}) and clipboard bridge
(L{spicesrv.sources.x11clipboard}) are modules of their own.

Which X server is reached, and with which credentials, is libxcb's
business: the display name (or C{$DISPLAY}) and the authority file
C{$XAUTHORITY} (or C{~/.Xauthority}), as for any X client.
"""

import ctypes
import ctypes.util
import os

import numpy
import xcffib
import xcffib.damage
import xcffib.randr
import xcffib.shm
import xcffib.xfixes
import xcffib.xkb
import xcffib.xproto
import xcffib.xtest
from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from spicesrv.display.cursor import Cursor
from spicesrv.interfaces import IMonitorLayout
from spicesrv.sources import x11keys
from spicesrv.sources.x11clipboard import X11Clipboard
from spicesrv.sources.x11devices import X11Agent, X11Keyboard, X11Mouse, X11Tablet
from spicesrv.sources.base import FramebufferSource

# X protocol numbers.
Z_PIXMAP = 2
LSB_FIRST = 0
KEY_PRESS, KEY_RELEASE, BUTTON_PRESS, BUTTON_RELEASE, MOTION_NOTIFY = 2, 3, 4, 5, 6
ALL_PLANES = 0xFFFFFFFF
STRUCTURE_NOTIFY = 1 << 17
#: The xkbType of XKB's IndicatorStateNotify event.
XKB_INDICATOR_STATE_NOTIFY = 4

# SPICE button mask bits -> X buttons.
SPICE_BUTTONS = {1: 1, 2: 2, 4: 3, 8: 8, 16: 9}
WHEEL_UP, WHEEL_DOWN = 4, 5
# SPICE lock flags and the XKB indicator names that show them.
LED_NAMES = {1: "Scroll Lock", 2: "Num Lock", 4: "Caps Lock"}

#: How often the pointer position is asked for while clients watch.
POINTER_INTERVAL = 1.0 / 30

EXTENSIONS = ("MIT-SHM", "DAMAGE", "XFIXES", "RANDR", "XTEST", "XKEYBOARD")


class X11SourceError(ValueError):
    """
    The X display cannot be shown; the message says why in one line.
    """


class _SharedMemory:
    """
    A System V shared memory segment attached to the X server with MIT-SHM.
    """

    IPC_PRIVATE, IPC_CREAT, IPC_RMID = 0, 0o1000, 0

    def __init__(self, conn, size):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.shmat.restype = ctypes.c_void_p
        libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        libc.shmdt.argtypes = [ctypes.c_void_p]
        self._libc = libc
        self._conn = conn
        self.size = size
        self.shmid = libc.shmget(self.IPC_PRIVATE, size, self.IPC_CREAT | 0o600)
        if self.shmid < 0:
            raise OSError(ctypes.get_errno(), "shmget: " + os.strerror(ctypes.get_errno()))
        self.address = libc.shmat(self.shmid, None, 0)
        if self.address in (None, ctypes.c_void_p(-1).value):
            errno = ctypes.get_errno()
            libc.shmctl(self.shmid, self.IPC_RMID, None)
            raise OSError(errno, "shmat: " + os.strerror(errno))
        self.seg = conn.generate_id()
        try:
            conn(xcffib.shm.key).AttachChecked(self.seg, self.shmid, False).check()
        except xcffib.XcffibException:
            self.seg = None
            self.close()
            raise
        finally:
            # Gone once both sides detach, even if we die.
            libc.shmctl(self.shmid, self.IPC_RMID, None)

    def array(self, height, width):
        """
        The segment as a C{(height, width, 4)} uint8 array.
        """
        buffer = (ctypes.c_uint8 * self.size).from_address(self.address)
        return numpy.frombuffer(buffer, numpy.uint8,
                                height * width * 4).reshape(height, width, 4)

    def close(self):
        if self.seg is not None:
            try:
                self._conn(xcffib.shm.key).Detach(self.seg)
                self._conn.flush()
            except xcffib.XcffibException:
                pass
            self.seg = None
        if self.address is not None:
            self._libc.shmdt(ctypes.c_void_p(self.address))
            self.address = None


@implementer(IReadDescriptor)
class XEventReader:
    """
    Lets the reactor tell the source when the X connection has something.
    """

    def __init__(self, source):
        self._source = source

    def fileno(self):
        return self._source.fileno()

    def doRead(self):
        self._source.readEvents()

    def connectionLost(self, reason):
        self._source.xConnectionLost(reason)

    def logPrefix(self):
        return "x11"


def _name(values):
    return b"".join(values).rstrip(b"\0").decode("latin-1")


@implementer(IMonitorLayout)
class X11Source(FramebufferSource):
    """
    The screen of an X server, with XTEST input devices when
    C{allow_control}.

    @ivar display: the display name connected to (C{':0'}).
    @ivar shm: whether MIT-SHM captures.
    @ivar keymap: the L{x11keys.Keymap} of the server (with control only).
    @ivar keyboard: the L{X11Keyboard}, or L{None} when view-only (so too
        C{mouse}, C{tablet} and C{agent}).
    @ivar agent: the L{X11Agent} (resize and clipboard).
    @ivar clipboard: the L{X11Clipboard} bridge, or L{None} (view-only, or
        C{clipboard=False}).
    """

    log = Logger()

    def __init__(self, display=None, allow_control=False, reactor=None, use_shm=True,
                 clipboard=True):
        if reactor is None:
            from twisted.internet import reactor
        self._reactor = reactor
        self.display = display or os.environ.get("DISPLAY", "")
        if not self.display:
            raise X11SourceError("no X display: give it as x11:DISPLAY, e.g. x11::0")
        try:
            self._conn = xcffib.connect(display=self.display)
        except xcffib.XcffibException as e:
            raise X11SourceError(
                "cannot open X display %r (%s); is it running, and does "
                "XAUTHORITY name its authority file?" % (self.display, e))
        self._reader = None
        self._pointerPoll = None
        self._reading = False
        try:
            self._setUp(allow_control, use_shm, clipboard)
        except Exception:
            self._conn.disconnect()
            raise

    def _setUp(self, allow_control, use_shm, clipboard):
        conn = self._conn
        missing = [name for name in EXTENSIONS if not self._hasExtension(name)]
        required = {"DAMAGE", "XFIXES"} | ({"XTEST"} if allow_control else set())
        if required & set(missing):
            raise X11SourceError(
                "X display %r lacks the %s extension(s) this source needs"
                % (self.display, ", ".join(sorted(required & set(missing)))))
        setup = conn.get_setup()
        screen = setup.roots[conn.pref_screen]
        self._root = screen.root
        depth = screen.root_depth
        bpp = {f.depth: f.bits_per_pixel for f in setup.pixmap_formats}.get(depth)
        if depth not in (24, 32) or bpp != 32 or setup.image_byte_order != LSB_FIRST:
            raise X11SourceError(
                "X display %r has depth %d (%s bits per pixel); only 24-bit "
                "true colour screens are shown: start it with depth 24"
                % (self.display, depth, bpp))
        FramebufferSource.__init__(self, screen.width_in_pixels, screen.height_in_pixels,
                                   cursor=None)
        self.description = "X display %s" % (self.display,)
        self._useShm = use_shm and "MIT-SHM" not in missing
        self._segment = None
        self._pending = []
        self._cursorSerial = None

        self._damage = conn(xcffib.damage.key)
        self._damage.QueryVersion(1, 1).reply()
        self._damage.Create(conn.generate_id(), self._root,
                            xcffib.damage.ReportLevel.RawRectangles)
        self._xfixes = conn(xcffib.xfixes.key)
        self._xfixes.QueryVersion(4, 0).reply()
        self._xfixes.SelectCursorInput(self._root,
                                       xcffib.xfixes.CursorNotifyMask.DisplayCursor)
        self._randr = None
        if "RANDR" not in missing:
            self._randr = conn(xcffib.randr.key)
            self._randr.QueryVersion(1, 5).reply()
            self._randr.SelectInput(self._root, xcffib.randr.NotifyMask.ScreenChange
                                    | xcffib.randr.NotifyMask.CrtcChange)
        else:
            conn.core.ChangeWindowAttributes(self._root, xcffib.xproto.CW.EventMask,
                                             [STRUCTURE_NOTIFY])
        self._monitors = self._lastMonitors = None
        self._monitorCheck = None
        self._shownOn = set()
        self._xkb = None
        self._leds = {}
        if "XKEYBOARD" not in missing:
            self._xkb = conn(xcffib.xkb.key)
            self._xkb.UseExtension(1, 0).reply()
        self._makeFrame(self.width, self.height)
        self._updateCursor()

        self.keyboard = self.mouse = self.tablet = self.agent = self.clipboard = None
        self.keymap = None
        if allow_control:
            self._xtest = conn(xcffib.xtest.key)
            self._xtest.GetVersion(2, 2).reply()
            self.keymap, self._leds = self._readKeyboard()
            if self._xkb is not None:
                # Lock keys pressed on the X server's own keyboards.
                indicators = xcffib.xkb.EventType.IndicatorStateNotify
                self._xkb.SelectEvents(xcffib.xkb.ID.UseCoreKbd, indicators, 0, indicators,
                                       0, 0, [])
            self.keyboard = X11Keyboard(self)
            self.mouse = X11Mouse(self)
            self.tablet = X11Tablet(self)
            self._buttons = 0
            if clipboard:
                self.clipboard = X11Clipboard(conn, self._root, self._reactor, self.display,
                                              self._afterRoundTrip)
            self.agent = X11Agent(self)
        conn.flush()

    def _hasExtension(self, name):
        reply = self._conn.core.QueryExtension(len(name), name).reply()
        return bool(reply.present)

    def _readKeyboard(self):
        """
        Where each scancode's key is, and which indicators show the locks.
        """
        if self._xkb is None:
            self.log.warn("X display {display} has no XKB: assuming evdev keycodes",
                          display=self.display)
            return x11keys.Keymap.evdev(), {}
        detail = xcffib.xkb.NameDetail
        names = self._xkb.GetNames(
            xcffib.xkb.ID.UseCoreKbd,
            detail.Keycodes | detail.KeyNames | detail.KeyAliases
            | detail.IndicatorNames).reply()
        keymap = x11keys.Keymap.fromNames(
            names.firstKey, [_name(k.name) for k in names.keyNames],
            [(_name(a.real), _name(a.alias)) for a in names.keyAliases])
        keycodes = self._atomName(names.keycodesName)
        if not keymap.keycodes and keycodes.startswith("evdev"):
            keymap = x11keys.Keymap.evdev()
        indices = [bit for bit in range(32) if names.indicators & (1 << bit)]
        leds = {}
        for bit, atom in zip(indices, names.indicatorNames):
            for flag, name in LED_NAMES.items():
                if self._atomName(atom) == name:
                    leds[flag] = bit
        self.log.info("X display {display}: keycodes {keycodes}, {count} keys mapped",
                      display=self.display, keycodes=keycodes, count=len(keymap.keycodes))
        return keymap, leds

    def _atomName(self, atom):
        if not atom:
            return ""
        return self._conn.core.GetAtomName(atom).reply().name.to_string()

    def devices(self):
        """
        Everything to register with the server: this source and, when
        control is allowed, its keyboard, mouse, tablet and agent.
        """
        if self.keyboard is None:
            return [self]
        return [self, self.keyboard, self.mouse, self.tablet, self.agent]

    # -- life cycle --------------------------------------------------------------

    def start(self):
        """
        Start reading the X server's events.
        """
        if self._reader is None and self._conn is not None:
            self._reader = XEventReader(self)
            self._reactor.addReader(self._reader)
            self.readEvents()

    def stop(self):
        """
        Stop reading events and let go of the X server.
        """
        if self._reader is not None:
            self._reactor.removeReader(self._reader)
            self._reader = None
        self._stopPointerPoll()
        if self._monitorCheck is not None and self._monitorCheck.active():
            self._monitorCheck.cancel()
        if self.clipboard is not None:
            self.clipboard.close()
        if self._segment is not None:
            self._segment.close()
            self._segment = None
        if self._conn is not None:
            self._conn.disconnect()
            self._conn = None

    def fileno(self):
        return self._conn.get_file_descriptor() if self._conn is not None else -1

    def xConnectionLost(self, reason=None):
        """
        The X server went away: keep showing the last picture.
        """
        self.log.error("lost the connection to X display {display}", display=self.display)
        if self._reader is not None:
            self._reactor.removeReader(self._reader)
            self._reader = None
        self._stopPointerPoll()
        if self.clipboard is not None:
            self.clipboard.close()
        self._segment = None
        self._conn = None

    # -- observers ---------------------------------------------------------------

    def addObserver(self, observer):
        FramebufferSource.addObserver(self, observer)
        if self._pointerPoll is None and self._conn is not None:
            self._pointerPoll = LoopingCall(self._pollPointer)
            self._pointerPoll.clock = self._reactor
            self._pointerPoll.start(POINTER_INTERVAL, now=True)

    def removeObserver(self, observer):
        FramebufferSource.removeObserver(self, observer)
        if not self._observers:
            self._stopPointerPoll()

    def _stopPointerPoll(self):
        if self._pointerPoll is not None:
            if self._pointerPoll.running:
                self._pointerPoll.stop()
            self._pointerPoll = None

    # -- events ------------------------------------------------------------------

    def readEvents(self):
        """
        Handle every event the X connection has ready.
        """
        if self._conn is None or self._reading:
            return
        self._reading = True
        rects = []
        try:
            while self._conn is not None:
                try:
                    event = self._conn.poll_for_event()
                except xcffib.ConnectionException:
                    self.xConnectionLost()
                    break
                except xcffib.XcffibException as e:
                    self.log.warn("X error from {display}: {error!r}",
                                  display=self.display, error=e)
                    continue
                if event is None:
                    break
                self._dispatch(event, rects)
        finally:
            self._reading = False
        if rects:
            self._pending.extend((top, bottom) for _, top, _, bottom in rects)
            self.damage(rects)

    def _dispatch(self, event, rects):
        if self.clipboard is not None and self.clipboard.handle(event):
            return
        if isinstance(event, xcffib.damage.NotifyEvent):
            area = event.area
            rect = (max(area.x, 0), max(area.y, 0),
                    min(area.x + area.width, self.width),
                    min(area.y + area.height, self.height))
            if rect[0] < rect[2] and rect[1] < rect[3]:
                rects.append(rect)
        elif isinstance(event, xcffib.xfixes.CursorNotifyEvent):
            self._updateCursor()
        elif isinstance(event, xcffib.randr.ScreenChangeNotifyEvent):
            self._screenSize(event.width, event.height)
        elif isinstance(event, xcffib.randr.NotifyEvent):
            if event.subCode == xcffib.randr.Notify.CrtcChange:
                self._crtcChanged()
        elif isinstance(event, xcffib.xproto.ConfigureNotifyEvent):
            if event.window == self._root:
                self._screenSize(event.width, event.height)
        elif isinstance(event, xcffib.xkb.NewKeyboardNotifyEvent):
            # XKB's events share one event code; xcffib parses them all as
            # the first kind, the xkbType byte says which it is.
            if event.xkbType == XKB_INDICATOR_STATE_NOTIFY:
                self._ledsChanged()

    def _ledsChanged(self):
        if self.keyboard is not None and self.keyboard.leds_changed is not None:
            self.keyboard.leds_changed()

    def _afterRoundTrip(self):
        """
        Waiting for a reply may have queued events inside xcb, where the
        file descriptor no longer shows them: read them soon.
        """
        if self._reader is not None:
            self._reactor.callLater(0, self.readEvents)

    # -- the picture -------------------------------------------------------------

    def _makeFrame(self, width, height):
        if self._segment is not None:
            self._segment.close()
            self._segment = None
        if self._useShm:
            try:
                self._segment = _SharedMemory(self._conn, width * height * 4)
            except (OSError, xcffib.XcffibException) as e:
                self.log.info("MIT-SHM unusable on {display} ({error}); capturing "
                              "with GetImage", display=self.display, error=e)
                self._useShm = False
        if self._segment is not None:
            self.frame = self._segment.array(height, width)
            self.frame[...] = 0
        else:
            self.frame = numpy.zeros((height, width, 4), numpy.uint8)
        self.width, self.height = width, height
        self._pending = [(0, height)]

    @property
    def shm(self):
        return self._segment is not None

    def framebuffer(self):
        """
        The frame, after fetching the rows damaged since the last call.
        """
        if self._pending and self._conn is not None:
            self._capture()
        return self.frame

    def _bands(self):
        """
        The pending row ranges, sorted and merged.
        """
        bands = []
        for top, bottom in sorted(self._pending):
            top, bottom = max(top, 0), min(bottom, self.height)
            if top >= bottom:
                continue
            if bands and top <= bands[-1][1]:
                bands[-1][1] = max(bands[-1][1], bottom)
            else:
                bands.append([top, bottom])
        self._pending = []
        return bands

    def _capture(self):
        bands = self._bands()
        width = self.width
        try:
            if self._segment is not None:
                shm = self._conn(xcffib.shm.key)
                cookies = [shm.GetImage(self._root, 0, top, width, bottom - top,
                                        ALL_PLANES, Z_PIXMAP, self._segment.seg,
                                        top * width * 4)
                           for top, bottom in bands]
                for cookie in cookies:
                    cookie.reply()
            else:
                for top, bottom in bands:
                    self._getImage(top, bottom)
        except xcffib.ConnectionException:
            self.xConnectionLost()
        except xcffib.XcffibException as e:
            # Most likely the screen shrank and we have not heard yet.
            self.log.info("capture failed on {display} ({error!r}); checking its size",
                          display=self.display, error=e)
            self._checkSize()
        self._afterRoundTrip()

    def _getImage(self, top, bottom):
        """
        Fetch rows C{top} to C{bottom} with the core GetImage request, in
        pieces of at most 4 MiB, reading the reply's bytes directly.
        """
        width = self.width
        rows = max(1, (4 << 20) // (width * 4))
        for y in range(top, bottom, rows):
            count = min(rows, bottom - y)
            cookie = self._conn.core.GetImage(Z_PIXMAP, self._root, 0, y, width, count,
                                              ALL_PLANES)
            reply = self._conn.wait_for_reply(cookie.sequence)
            data = numpy.frombuffer(reply.buf, numpy.uint8, count * width * 4, 32)
            self.frame[y:y + count] = data.reshape(count, width, 4)

    def _checkSize(self):
        if self._conn is None:
            return
        geometry = self._conn.core.GetGeometry(self._root).reply()
        self._screenSize(geometry.width, geometry.height)

    def _screenSize(self, width, height):
        if (width, height) == (self.width, self.height) or not width or not height:
            return
        self.log.info("X display {display} is now {width}x{height}",
                      display=self.display, width=width, height=height)
        self._makeFrame(width, height)
        if self.tablet is not None:
            self.tablet.set_logical_size(0, 0)
        self._monitors = None
        self._notify("surface_changed", width, height)

    # -- monitors (IMonitorLayout) -------------------------------------------------

    def monitors(self):
        """
        The active RandR CRTCs as C{(x, y, width, height)} within the
        screen, left to right and top to bottom (clones once); the whole
        screen when RandR has none.
        """
        if self._monitors is None:
            self._monitors = self._readMonitors()
        self._lastMonitors = self._monitors
        return list(self._monitors)

    def _readMonitors(self):
        whole = [(0, 0, self.width, self.height)]
        if self._randr is None or self._conn is None:
            return whole
        try:
            resources = self._randr.GetScreenResourcesCurrent(self._root).reply()
            cookies = [self._randr.GetCrtcInfo(crtc, resources.config_timestamp)
                       for crtc in resources.crtcs]
            infos = [cookie.reply() for cookie in cookies]
        except xcffib.XcffibException:
            return whole
        finally:
            self._afterRoundTrip()
        heads = set()
        for info in infos:
            if not info.mode:
                continue
            x, y = max(info.x, 0), max(info.y, 0)
            width, height = min(info.width, self.width - x), min(info.height, self.height - y)
            if width > 0 and height > 0:
                heads.add((x, y, width, height))
        return sorted(heads, key=lambda head: (head[1], head[0])) or whole

    def _crtcChanged(self):
        """
        A CRTC changed: once the events of this change are read, tell the
        observers if the monitors moved (a new screen size tells them
        anyway, with the new surface).
        """
        self._monitors = None
        if self._monitorCheck is None or not self._monitorCheck.active():
            self._monitorCheck = self._reactor.callLater(0, self._checkMonitors)

    def _checkMonitors(self):
        self._monitorCheck = None
        if self._conn is None:
            return
        before = self._lastMonitors
        self._monitors = None
        if before is not None and self.monitors() != before:
            for observer in list(self._observers):
                changed = getattr(observer, "monitors_changed", None)
                if changed is not None:
                    changed()

    def _checkScreenSize(self, width, height):
        """
        @raise ValueError: the X screen cannot be C{width}x{height} (RandR's
            screen size range).
        """
        limits = self._randr.GetScreenSizeRange(self._root).reply()
        if not (limits.min_width <= width <= limits.max_width
                and limits.min_height <= height <= limits.max_height):
            raise ValueError("X display %s cannot be %dx%d: its screen is from %dx%d to %dx%d"
                             % (self.display, width, height, limits.min_width,
                                limits.min_height, limits.max_width, limits.max_height))

    def resize(self, width, height):
        """
        Ask the X server for a screen of C{width} x C{height} with RandR,
        as a client's monitor configuration would: the single active CRTC
        takes a mode of that size, created (as C{xrandr --newmode} and
        C{--addmode} do) when its output has none.  The clients' surfaces
        follow when the X server reports the change, as for any size change.

        @raise ValueError: the X server has no RandR, its screen cannot have
            that size, it has more than one active CRTC, or it refuses the
            mode (Xvfb's single output takes no new modes).
        """
        if self._randr is None or self._conn is None:
            raise ValueError("X display %s cannot be resized (no RandR)" % (self.display,))
        randr = self._randr
        self._checkScreenSize(width, height)
        resources = randr.GetScreenResourcesCurrent(self._root).reply()
        active = []
        for crtc in resources.crtcs:
            info = randr.GetCrtcInfo(crtc, resources.config_timestamp).reply()
            if info.mode:
                active.append((crtc, info))
        if len(active) != 1:
            raise ValueError("X display %s has %d active CRTCs; only a single one is "
                             "resized" % (self.display, len(active)))
        crtc, info = active[0]
        mode = self._modeFor(resources, list(info.outputs), width, height)

        def screen(width, height):
            # millimetres at 96 dpi
            randr.SetScreenSize(self._root, width, height, width * 254 // 960,
                                height * 254 // 960)

        def setCrtc(mode, outputs):
            return randr.SetCrtcConfig(crtc, 0, resources.config_timestamp, 0, 0, mode,
                                       info.rotation, len(outputs), outputs).reply().status

        # The screen must hold the CRTC at every step, and clients should see
        # one size change: grow the screen first, or shrink it last, or
        # (wider but lower, or the reverse) switch the CRTC off meanwhile.
        old = (self.width, self.height)
        outputs = list(info.outputs)
        if width >= old[0] and height >= old[1]:
            screen(width, height)
            status = setCrtc(mode, outputs)
        elif width <= old[0] and height <= old[1]:
            status = setCrtc(mode, outputs)
            if not status:
                screen(width, height)
        else:
            status = setCrtc(0, [])
            if not status:
                screen(width, height)
                status = setCrtc(mode, outputs)
        if status:
            setCrtc(info.mode, outputs)
            screen(*old)
            self._conn.flush()
            self._afterRoundTrip()
            raise ValueError("X display %s refused the %dx%d mode (RandR status %d)"
                             % (self.display, width, height, status))
        self._conn.flush()
        self._afterRoundTrip()

    def _modeFor(self, resources, outputs, width, height):
        """
        A mode of C{width} x C{height} that all C{outputs} have: one of
        theirs, or a known one added to them, or a new one.
        """
        randr = self._randr
        sized = [m.id for m in resources.modes if (m.width, m.height) == (width, height)]
        have = None
        for output in outputs:
            modes = set(randr.GetOutputInfo(output, resources.config_timestamp).reply().modes)
            have = modes if have is None else have & modes
        for mode in sized:
            if mode in (have or ()):
                return mode
        created = None
        if sized:
            mode = sized[0]
        else:
            # Timings for a 60 Hz refresh; a virtual X server only uses the size.
            htotal, vtotal = width + 160, height + 30
            info = xcffib.randr.ModeInfo.synthetic(
                0, width, height, htotal * vtotal * 60, width + 48, width + 80, htotal, 0,
                height + 3, height + 8, vtotal, 0, 0)
            name = b"%dx%d" % (width, height)
            try:
                mode = created = randr.CreateMode(self._root, info, len(name),
                                                  name).reply().mode
            except xcffib.XcffibException:
                name += b"_spicesrv"
                mode = created = randr.CreateMode(self._root, info, len(name),
                                                  name).reply().mode
            self.log.info("X display {display}: created the RandR mode {name}",
                          display=self.display, name=name.decode("ascii"))
        try:
            for output in outputs:
                randr.AddOutputModeChecked(output, mode).check()
        except xcffib.XcffibException as e:
            if created is not None:
                randr.DestroyMode(created)
                self._conn.flush()
            raise ValueError("X display %s has no %dx%d mode and takes no new one (%s)"
                             % (self.display, width, height, type(e).__name__))
        return mode

    def outputs(self):
        """
        The X server's RandR outputs that can show a picture, in its order:
        those it reports connected, or that show one now or did since this
        source started (a virtual X server's may say disconnected without a
        probe, which spicesrv does not make: it can take seconds on real
        hardware).  C{(output, info)} pairs; L{None} without RandR.
        """
        if self._randr is None or self._conn is None:
            return None
        randr = self._randr
        resources = randr.GetScreenResourcesCurrent(self._root).reply()
        cookies = [(output, randr.GetOutputInfo(output, resources.config_timestamp))
                   for output in resources.outputs]
        found = [(output, cookie.reply()) for output, cookie in cookies]
        self._afterRoundTrip()
        usable = [(output, info) for output, info in found
                  if info.num_crtcs and (info.crtc or output in self._shownOn or info.connection
                                         == xcffib.randr.Connection.Connected)]
        self._shownOn.update(output for output, info in usable if info.crtc)
        return usable

    def arrange(self, heads):
        """
        Show C{heads} on the X server's connected outputs, as a client's
        monitors configuration asks (spice-vdagent's way): the client's
        monitor I{i} on the I{i}th output, at its size and place (the
        layout moved to start at 0, 0), outputs without a monitor turned
        off, and the screen the rectangle around them all.

        @param heads: per client monitor, C{(x, y, width, height)}, or
            L{None} for one turned off.
        @raise ValueError: no RandR, no monitor left on, a screen size out
            of the X server's range, or a mode refused.
        """
        if self._randr is None or self._conn is None:
            raise ValueError("X display %s cannot be resized (no RandR)" % (self.display,))
        randr = self._randr
        outputs = self.outputs()
        heads = (list(heads) + [None] * len(outputs))[:len(outputs)]
        enabled = [head for head in heads if head is not None]
        if not enabled:
            raise ValueError("X display %s would have no monitor on" % (self.display,))
        left, top = min(h[0] for h in enabled), min(h[1] for h in enabled)
        width = max(h[0] + h[2] for h in enabled) - left
        height = max(h[1] + h[3] for h in enabled) - top
        self._checkScreenSize(width, height)
        wanted = sorted((x - left, y - top, w, h) for x, y, w, h in enabled)
        if (width, height) == (self.width, self.height) and wanted == sorted(self.monitors()):
            return
        resources = randr.GetScreenResourcesCurrent(self._root).reply()
        crtcs = {crtc: randr.GetCrtcInfo(crtc, resources.config_timestamp).reply()
                 for crtc in resources.crtcs}
        plan, used = [], set()
        for (output, info), head in zip(outputs, heads):
            if head is None:
                continue
            crtc = info.crtc if info.crtc and info.crtc not in used else next(
                (c for c in info.crtcs if c not in used and not crtcs[c].mode), None)
            if crtc is None:
                raise ValueError("X display %s has no CRTC free for output %d"
                                 % (self.display, output))
            used.add(crtc)
            x, y, w, h = head
            mode = self._modeFor(randr.GetScreenResourcesCurrent(self._root).reply(),
                                 [output], w, h)
            rotation = crtcs[crtc].rotation if crtcs[crtc].mode else \
                xcffib.randr.Rotation.Rotate_0
            plan.append((crtc, x - left, y - top, mode, rotation, output))

        def setCrtc(crtc, x, y, mode, rotation, outputs):
            return randr.SetCrtcConfig(crtc, 0, resources.config_timestamp, x, y, mode,
                                       rotation, len(outputs), outputs).reply().status

        # Every CRTC off, the screen its new size, then each monitor on: the
        # screen holds the CRTCs at every step, whatever moves where.
        for crtc, info in crtcs.items():
            if info.mode:
                setCrtc(crtc, 0, 0, 0, info.rotation, [])
        randr.SetScreenSize(self._root, width, height, width * 254 // 960,
                            height * 254 // 960)
        refused = [output for crtc, x, y, mode, rotation, output in plan
                   if setCrtc(crtc, x, y, mode, rotation, [output])]
        self._conn.flush()
        self._afterRoundTrip()
        self.log.info("X display {display}: {count} monitor(s) on a {width}x{height} screen",
                      display=self.display, count=len(plan) - len(refused), width=width,
                      height=height)
        if refused:
            raise ValueError("X display %s refused the mode of output(s) %s"
                             % (self.display, ", ".join(map(str, refused))))

    # -- the cursor --------------------------------------------------------------

    def _updateCursor(self):
        image = self._xfixes.GetCursorImage().reply()
        self._afterRoundTrip()
        if image.cursor_serial == self._cursorSerial:
            return
        self._cursorSerial = image.cursor_serial
        if not image.width or not image.height:
            cursor = None
        else:
            cursor = Cursor(image.width, image.height, image.xhot, image.yhot,
                            image.cursor_image.buf())
        if self._observers:
            self.setCursor(cursor)
        else:
            self._cursor = cursor
        if (image.x, image.y) != self._position:
            if self._observers:
                self.moveCursor(image.x, image.y)
            else:
                self._position = (image.x, image.y)

    def _pollPointer(self):
        if self._conn is None:
            return
        try:
            reply = self._conn.core.QueryPointer(self._root).reply()
        except xcffib.XcffibException:
            return
        self._afterRoundTrip()
        if (reply.root_x, reply.root_y) != self._position:
            self.moveCursor(reply.root_x, reply.root_y)

    # -- input (XTEST) -----------------------------------------------------------

    def fakeInput(self, kind, detail, x=0, y=0, root=0):
        if self._conn is None:
            return
        self._xtest.FakeInput(kind, detail, 0, root, x, y, 0)
        self._conn.flush()

    def key(self, scancode, pressed):
        keycode = self.keymap.keycode(scancode)
        if keycode is None:
            self.log.debug("no X key for scancode {code:#x}", code=scancode)
            return
        self.fakeInput(KEY_PRESS if pressed else KEY_RELEASE, keycode)

    def leds(self):
        """
        The X server's lock indicators as SPICE lock flags.
        """
        if self._xkb is None or self._conn is None:
            return 0
        try:
            state = self._xkb.GetIndicatorState(xcffib.xkb.ID.UseCoreKbd).reply().state
        except xcffib.XcffibException:
            return 0
        self._afterRoundTrip()
        return sum(flag for flag, bit in self._leds.items() if state & (1 << bit))

    def setButtons(self, buttons_state):
        changed = buttons_state ^ self._buttons
        self._buttons = buttons_state
        for bit, button in SPICE_BUTTONS.items():
            if changed & bit:
                self.fakeInput(BUTTON_PRESS if buttons_state & bit else BUTTON_RELEASE,
                               button)

    def wheel(self, dz):
        button = WHEEL_UP if dz < 0 else WHEEL_DOWN
        for _ in range(abs(dz)):
            self.fakeInput(BUTTON_PRESS, button)
            self.fakeInput(BUTTON_RELEASE, button)

    def moveTo(self, x, y):
        self.fakeInput(MOTION_NOTIFY, 0, x, y, root=self._root)

    def moveBy(self, dx, dy):
        self.fakeInput(MOTION_NOTIFY, 1, dx, dy)
