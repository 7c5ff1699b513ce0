"""
The built-in "demo" display source: a screen that shows every channel at
work.

From top to bottom it has a title bar with a clock (the display channel,
once a second), a one-line hint, a canvas the mouse paints on (inputs and
display; the cursor takes the brush colour, so the cursor channel changes
too), a text area that shows what is typed (the keyboard), and a status
line with the last scancode, the pointer and the lock keys.

Its agent (L{DemoAgent}) makes it follow the client's window: a resize
request re-creates the screen at the asked size.  Ctrl+C copies (the typed
text as UTF-8 and the canvas as a PNG image) and Ctrl+V pastes what a client
copied: text is typed, an image is pasted at the canvas' top left.

The frame is kept as one Pillow image per band ("panel"); after each change
only the changed rectangle is copied into the BGRX framebuffer and reported
to the observers.

The demo is one screen with a device for every channel (keyboard, mouse,
tablet, agent, sound and its migrated state), each a short class beside the
screen it drives; that is why this module is longer than most.
"""

import io
import json
import struct
import time
from bisect import bisect_right
from itertools import accumulate

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from zope.interface import implementer

from spicesrv.display.arrow import arrow_cursor
from spicesrv.interfaces import IAgent, IKeyboard, IMigratableState, IMouse, ITablet
from spicesrv.sources.base import FramebufferSource
from spicesrv.sources.picture import checkPictureSize, loadPicture
from spicesrv.wire.vdagent import ClipboardType, Selection

# The beep of each button's click (Hz): left, middle, right.
CLICK_PITCH = {1: 880.0, 2: 660.0, 4: 1320.0}

# SPICE button mask bits and lock-key flags (protocol.md section 7).
BUTTON_LEFT = 1
BUTTON_MIDDLE = 2
BUTTON_RIGHT = 4
SCROLL_LOCK = 1
NUM_LOCK = 2
CAPS_LOCK = 4

# PC/XT scancode set 1, US layout: rows of keys with consecutive codes,
# as (first code, characters, characters with shift).
_KEY_ROWS = [
    (0x02, "1234567890-=", "!@#$%^&*()_+"),
    (0x10, "qwertyuiop[]", "QWERTYUIOP{}"),
    (0x1E, "asdfghjkl;'`", "ASDFGHJKL:\"~"),
    (0x2B, "\\zxcvbnm,./", "|ZXCVBNM<>?"),
]
#: scancode -> (character, character with shift)
SCANCODE_CHARS = {
    first + i: (plain[i], shifted[i])
    for first, plain, shifted in _KEY_ROWS
    for i in range(len(plain))
}
SCANCODE_CHARS[0x39] = (" ", " ")
SCANCODE_BACKSPACE = 0x0E
SCANCODE_ENTER = 0x1C
SCANCODE_EXTENDED = 0xE0
SHIFT_KEYS = frozenset([0x2A, 0x36])
#: left Ctrl, and right Ctrl (an extended key, kept as 0x100 | code)
CTRL_KEYS = frozenset([0x1D, 0x11D])
SCANCODE_C = 0x2E
SCANCODE_V = 0x2F
#: what Ctrl+C and Ctrl+V type, as in a terminal: copy and paste
COPY = "\x03"
PASTE = "\x16"
#: lock key scancode -> the lock flag it toggles
LOCK_KEYS = {0x3A: CAPS_LOCK, 0x45: NUM_LOCK, 0x46: SCROLL_LOCK}

# Layout: bands of fixed height, the canvas takes what is left.
TITLE_HEIGHT = 24
HINT_HEIGHT = 20
TEXT_HEIGHT = 120
STATUS_HEIGHT = 20
CLOCK_WIDTH = 80
MARGIN = 6
MIN_WIDTH = 320
MIN_HEIGHT = 240
MAX_WIDTH = 4096
MAX_HEIGHT = 4096

TITLE_BACKGROUND = (36, 56, 104)
TITLE_INK = (255, 255, 255)
HINT_BACKGROUND = (226, 226, 226)
HINT_INK = (40, 40, 40)
CANVAS_BACKGROUND = (255, 255, 255)
TEXT_BACKGROUND = (250, 248, 232)
TEXT_INK = (20, 20, 20)
STATUS_BACKGROUND = (44, 44, 44)
STATUS_INK = (220, 220, 220)

#: the brush colours, in the order a right click steps through them
PALETTE = [
    ("black", (0, 0, 0)),
    ("red", (220, 30, 30)),
    ("green", (30, 160, 60)),
    ("blue", (30, 80, 220)),
    ("orange", (240, 150, 20)),
    ("purple", (150, 60, 200)),
    ("eraser", CANVAS_BACKGROUND),
]
BRUSH_SIZES = range(1, 41)
DEFAULT_BRUSH = 6
MAX_TEXT = 10000

HINT = ("Left drag: paint    Right click: next colour    Middle click: clear"
        "    Wheel: brush size    Type: text appears below    Ctrl+C / Ctrl+V: copy / paste")

_STATE_MAGIC = b"spicesrv-demo-1\n"
_STATE_LENGTH = struct.Struct("<I")
_STATE_FIELDS = {"text": str, "colour": int, "brush": int, "pointer": list,
                 "buttons": int, "last_key": list, "leds": int}


def _base_attributes(interface):
    """
    The L{ISpiceBase} attribute values of a provider of C{interface}.
    """
    return (interface.getTaggedValue("type"),
            interface.getTaggedValue("major_version"),
            interface.getTaggedValue("minor_version"))


@implementer(IKeyboard)
class DemoKeyboard:
    """
    Turns scancodes into characters and tracks the lock keys.

    @ivar leds: the lock flags (SCROLL_LOCK, NUM_LOCK, CAPS_LOCK).
    """

    type, major_version, minor_version = _base_attributes(IKeyboard)
    description = "spicesrv demo keyboard"

    def __init__(self, on_key):
        """
        @param on_key: called with C{(codes, text)} for each complete key
            event: C{codes} the scancode bytes as a tuple (two for an
            extended key), C{text} the character typed, C{"\\b"} for
            backspace, C{"\\n"} for enter, L{COPY} for Ctrl+C, L{PASTE}
            for Ctrl+V, or C{""}.
        """
        self._on_key = on_key
        self.leds = 0
        self._extended = False
        self._held = set()

    def push_scan_freg(self, byte):
        if byte == SCANCODE_EXTENDED:
            self._extended = True
            return
        if self._extended:
            self._extended = False
            if byte & 0x7F == 0x1D:
                (self._held.discard if byte & 0x80 else self._held.add)(0x11D)
            self._on_key((SCANCODE_EXTENDED, byte), "")
            return
        code = byte & 0x7F
        if byte & 0x80:
            self._held.discard(code)
            self._on_key((byte,), "")
            return
        if code in LOCK_KEYS and code not in self._held:
            self.leds ^= LOCK_KEYS[code]
        self._held.add(code)
        self._on_key((byte,), self._text(code))

    def get_leds(self):
        return self.leds

    def _text(self, code):
        """
        The text that pressing key C{code} types.
        """
        if code == SCANCODE_BACKSPACE:
            return "\b"
        if code == SCANCODE_ENTER:
            return "\n"
        if self._held & CTRL_KEYS:
            return {SCANCODE_C: COPY, SCANCODE_V: PASTE}.get(code, "")
        if code not in SCANCODE_CHARS:
            return ""
        plain, shifted = SCANCODE_CHARS[code]
        shift = bool(self._held & SHIFT_KEYS)
        if plain.isalpha() and self.leds & CAPS_LOCK:
            shift = not shift
        return shifted if shift else plain


@implementer(IMouse)
class DemoMouse:
    """
    Relative motion (server mouse mode) of the demo's pointer.
    """

    type, major_version, minor_version = _base_attributes(IMouse)
    description = "spicesrv demo mouse"

    def __init__(self, source):
        self._source = source

    def motion(self, dx, dy, dz, buttons_state):
        self._source.move_pointer_by(dx, dy, dz, buttons_state)

    def buttons(self, buttons_state):
        self._source.move_pointer_by(0, 0, 0, buttons_state)


@implementer(ITablet)
class DemoTablet:
    """
    Absolute positions (client mouse mode) of the demo's pointer.
    """

    type, major_version, minor_version = _base_attributes(ITablet)
    description = "spicesrv demo tablet"

    def __init__(self, source):
        self._source = source
        self._logical_size = None

    def set_logical_size(self, width, height):
        self._logical_size = (width, height) if width and height else None

    def position(self, x, y, buttons_state):
        if self._logical_size is not None:
            width, height = self._logical_size
            x = x * self._source.width // width
            y = y * self._source.height // height
        self._source.move_pointer_to(x, y, 0, buttons_state)

    def wheel(self, wheel_motion, buttons_state):
        x, y = self._source.cursor_position()
        self._source.move_pointer_to(x, y, wheel_motion, buttons_state)

    def buttons(self, buttons_state):
        x, y = self._source.cursor_position()
        self._source.move_pointer_to(x, y, 0, buttons_state)


@implementer(IAgent)
class DemoAgent:
    """
    The demo's agent: a client's window size becomes the screen's, and the
    clipboard is the demo's text and canvas.

    @ivar clients: the L{spicesrv.interfaces.IAgentClients}, once the
        server has it.
    """

    type, major_version, minor_version = _base_attributes(IAgent)
    description = "spicesrv demo agent (resize and clipboard)"

    def __init__(self, source):
        self._source = source
        self.clients = None

    def agent_attached(self, clients):
        self.clients = clients
        if self._source.offering:
            self.offer()

    def offer(self):
        """
        Offer the demo's clipboard to the clients, if the server has them.
        """
        if self.clients is not None:
            self.clients.clipboard_grab(Selection.CLIPBOARD,
                                        [ClipboardType.UTF8_TEXT, ClipboardType.IMAGE_PNG])

    def monitors_config(self, monitors):
        if monitors and monitors[0] is not None:
            self._source.resize_to_fit(monitors[0].width, monitors[0].height)

    def clipboard_grab(self, selection, types):
        if selection == Selection.CLIPBOARD:
            self._source.offering = False

    def clipboard_release(self, selection):
        pass

    def clipboard_request(self, selection, type):
        if selection != Selection.CLIPBOARD or not self._source.offering:
            return None
        return self._source.clipboard_data(type)


@implementer(IMigratableState)
class DemoSource(FramebufferSource):
    """
    The demo screen, with its keyboard, mouse and tablet.  Its cursor and
    cursor position follow the chosen colour and the pointer.

    @ivar keyboard: the L{DemoKeyboard}.
    @ivar mouse: the L{DemoMouse}.
    @ivar tablet: the L{DemoTablet}.
    @ivar agent: the L{DemoAgent}.
    @ivar offering: whether the demo's clipboard is on offer (after Ctrl+C,
        until a client copies something).
    """

    description = "spicesrv demo screen"
    log = Logger()
    migration_key = "display.demo"

    def __init__(self, width=1024, height=768, clock=None, scheduler=None):
        """
        @param clock: the L{twisted.internet.interfaces.IReactorTime} that
            runs and shows the clock; the global reactor by default.
        @param scheduler: the L{twisted.internet.interfaces.IReactorTime}
            whose next turn tells the observers what the keys changed;
            C{clock} by default (a frozen test clock for exact pictures
            needs the reactor here).
        """
        if clock is None:
            from twisted.internet import reactor as clock
        _check_size(width, height)
        FramebufferSource.__init__(self, width, height)
        self._clock = clock
        self._scheduler = clock if scheduler is None else scheduler
        self._keysCall = None
        self._ticker = LoopingCall(self._tick)
        self._ticker.clock = clock
        self._font = ImageFont.load_default()
        self._line_height = self._font.getbbox("Hgjy_|")[3] + 3
        self._char_widths = {}
        self._cursors = [arrow_cursor(fill=rgb, outline=_outline_for(rgb))
                         for _, rgb in PALETTE]
        self._colour = 0
        self._brush = DEFAULT_BRUSH
        self._text = ""
        self._last_key = ()
        self._x = width // 2
        self._y = height // 2
        self._buttons = 0
        self.keyboard = DemoKeyboard(self._key)
        self.mouse = DemoMouse(self)
        self.tablet = DemoTablet(self)
        self.agent = DemoAgent(self)
        from spicesrv.sound.click import ClickSound
        self.sound = ClickSound(clock)
        self.offering = False
        self._build(None)

    def devices(self):
        """
        Return everything to register with the server: this source, its
        keyboard, mouse, tablet, agent and sound (a beep on each click).
        """
        return [self, self.keyboard, self.mouse, self.tablet, self.agent, self.sound]

    def start(self):
        """
        Start the clock.
        """
        if not self._ticker.running:
            self._ticker.start(1.0, now=True)

    def stop(self):
        """
        Stop the clock, and tell the observers now what the last keys
        changed.
        """
        if self._ticker.running:
            self._ticker.stop()
        if self._keysCall is not None and self._keysCall.active():
            self._keysCall.cancel()
            self._reportKeys()

    @property
    def text(self):
        """
        The text typed so far, as the screen shows it.
        """
        return self._text

    # IDisplaySource

    def cursor(self):
        return self._cursors[self._colour]

    def cursor_position(self):
        return (self._x, self._y)

    def resize(self, width, height):
        """
        Change the screen size, keeping the top-left part of the canvas.
        """
        _check_size(width, height)
        if (width, height) == (self.width, self.height):
            return
        self.width = width
        self.height = height
        self._x = min(self._x, width - 1)
        self._y = min(self._y, height - 1)
        self._build(self._canvas)
        self._notify("surface_changed", width, height)

    def resize_to_fit(self, width, height):
        """
        Resize to what a client asked for, within the sizes the demo
        supports.
        """
        self.resize(min(max(width, MIN_WIDTH), MAX_WIDTH),
                    min(max(height, MIN_HEIGHT), MAX_HEIGHT))

    # The clipboard

    def copy(self):
        """
        Ctrl+C: offer the typed text and the canvas to the clients.
        """
        self.offering = True
        self.agent.offer()

    def clipboard_data(self, type):
        """
        The demo's clipboard in C{type}: the text as UTF-8, the canvas as a
        PNG image, or L{None}.
        """
        if type == ClipboardType.UTF8_TEXT:
            return self._text.encode("utf-8")
        if type == ClipboardType.IMAGE_PNG:
            png = io.BytesIO()
            self._canvas.save(png, "PNG")
            return png.getvalue()
        return None

    def paste(self):
        """
        Ctrl+V: ask the client that copied last for its clipboard, text if
        it has some, else an image.  Returns a Deferred firing when it has
        been typed or drawn (with L{None}; failures are logged).
        """
        clients = self.agent.clients
        types = clients.clipboard_owner(Selection.CLIPBOARD) if clients else None
        if not types:
            self.log.info("demo: nothing to paste (no client owns the clipboard)")
            return None
        for kind, use in ((ClipboardType.UTF8_TEXT, self.type_text),
                          (ClipboardType.IMAGE_PNG, self.paste_image)):
            if kind in types:
                break
        else:
            self.log.info("demo: the client's clipboard has neither text nor a PNG image")
            return None
        d = clients.clipboard_request(Selection.CLIPBOARD, kind)
        d.addCallback(use)
        d.addErrback(lambda f: self.log.failure("demo: paste failed", f))
        return d

    def type_text(self, data):
        """
        Type pasted UTF-8 text; control characters other than line breaks
        and tabs are dropped.
        """
        text = data.decode("utf-8", "replace").replace("\r\n", "\n").replace("\t", " ")
        text = "".join(c for c in text if c == "\n" or c.isprintable())
        self._text = (self._text + text)[-MAX_TEXT:]
        self._textChanged = True
        self._damaged([self._draw_text()])

    def paste_image(self, data):
        """
        Draw a pasted image at the top left of the canvas.
        """
        try:
            image = Image.open(io.BytesIO(data))
            image = image.convert("RGB")
        except (OSError, ValueError) as e:
            self.log.warn("demo: the pasted image is unreadable: {error}", error=e)
            return
        self._canvas.paste(image, (0, 0))
        width = min(image.width, self._canvas.width)
        height = min(image.height, self._canvas.height)
        self._damaged([self._blit(self._canvas, self._canvas_top, (0, 0, width, height))])

    # IMigratableState

    def get_migration_state(self):
        fields = {
            "text": self._text,
            "colour": self._colour,
            "brush": self._brush,
            "pointer": [self._x, self._y],
            "buttons": self._buttons,
            "last_key": list(self._last_key),
            "leds": self.keyboard.leds,
            "offering": self.offering,
        }
        header = json.dumps(fields).encode("utf-8")
        canvas = io.BytesIO()
        self._canvas.save(canvas, "PNG")
        return b"".join([_STATE_MAGIC, _STATE_LENGTH.pack(len(header)),
                         header, canvas.getvalue()])

    def set_migration_state(self, data):
        fields, canvas = _parse_state(data)
        old_cursor = self.cursor()
        self._text = fields["text"]
        self._colour = fields["colour"]
        self._brush = min(max(fields["brush"], BRUSH_SIZES[0]),
                          BRUSH_SIZES[-1])
        self._x = min(max(fields["pointer"][0], 0), self.width - 1)
        self._y = min(max(fields["pointer"][1], 0), self.height - 1)
        self._buttons = fields["buttons"]
        self._last_key = tuple(fields["last_key"])
        self.keyboard.leds = fields["leds"]
        self.offering = False
        if fields.get("offering") is True:
            self.copy()
        self._build(canvas)
        self._damaged([(0, 0, self.width, self.height)])
        if self.cursor() is not old_cursor:
            self._notify("cursor_changed", self.cursor())
        self._notify("cursor_moved", self._x, self._y)

    # Input, from the devices

    def move_pointer_by(self, dx, dy, dz, buttons_state):
        """
        Relative motion: move the pointer by (C{dx}, C{dy}), turn the wheel
        by C{dz}, and tell observers where the cursor is now.
        """
        old_position = self.cursor_position()
        self.move_pointer_to(self._x + dx, self._y + dy, dz, buttons_state)
        if self.cursor_position() != old_position:
            self._notify("cursor_moved", self._x, self._y)

    def move_pointer_to(self, x, y, dz, buttons_state):
        """
        Move the pointer to (C{x}, C{y}), clamped to the screen, turn the
        wheel by C{dz}, and paint as the buttons say.
        """
        old_x, old_y, old_buttons = self._x, self._y, self._buttons
        self._x = min(max(x, 0), self.width - 1)
        self._y = min(max(y, 0), self.height - 1)
        self._buttons = buttons_state
        pressed = buttons_state & ~old_buttons
        damage = []
        if pressed:
            self.sound.click(CLICK_PITCH.get(pressed & -pressed, 880.0))
        if pressed & BUTTON_RIGHT:
            self._colour = (self._colour + 1) % len(PALETTE)
            self._notify("cursor_changed", self.cursor())
        if pressed & BUTTON_MIDDLE:
            self._canvas_draw.rectangle(
                (0, 0) + self._canvas.size, fill=CANVAS_BACKGROUND)
            damage.append(self._blit(self._canvas, self._canvas_top))
        if dz:
            self._brush = min(max(self._brush - dz, BRUSH_SIZES[0]),
                              BRUSH_SIZES[-1])
        if buttons_state & BUTTON_LEFT:
            start = (old_x, old_y) if old_buttons & BUTTON_LEFT else None
            damage.append(self._stroke(start, (self._x, self._y)))
        damage.append(self._draw_status())
        self._damaged(damage)

    def _key(self, codes, text):
        """
        The keyboard reports a key: note its codes and type its text.  Only
        bookkeeping here, whatever the length of the text: the screen is
        drawn when next read (L{framebuffer}), and the observers hear of
        the change once per reactor turn (L{_reportKeys}), however many keys
        came in it, so that a client flooding keys costs the others little.
        """
        self._last_key = codes
        self._statusPending = True
        if text == COPY:
            self.copy()
        elif text == PASTE:
            self.paste()
        elif text:
            if text == "\b":
                self._text = self._text[:-1]
            else:
                self._text = (self._text + text)[-MAX_TEXT:]
            self._textChanged = True
        if self._keysCall is None:
            self._keysCall = self._scheduler.callLater(0, self._reportKeys)

    def _reportKeys(self):
        """
        Tell the observers what the keys of the last turn changed: the
        status line, and the text rows that now read differently.
        """
        self._keysCall = None
        self._damaged([self._status_rect(), self._draw_text()])

    def _tick(self):
        self._damaged([self._draw_clock()])

    # Drawing

    @property
    def _canvas_top(self):
        return TITLE_HEIGHT + HINT_HEIGHT

    @property
    def _text_top(self):
        return self.height - STATUS_HEIGHT - TEXT_HEIGHT

    @property
    def _status_top(self):
        return self.height - STATUS_HEIGHT

    def _build(self, canvas):
        """
        Make the panels and the framebuffer for the current size and draw
        everything.  C{canvas} (an image or L{None}) is pasted at the top
        left of the new canvas.
        """
        width = self.width
        self.frame = np.zeros((self.height, width, 4), np.uint8)
        self.frame[..., 3] = 255
        self._title = Image.new("RGB", (width, TITLE_HEIGHT), TITLE_BACKGROUND)
        self._hint = Image.new("RGB", (width, HINT_HEIGHT), HINT_BACKGROUND)
        self._canvas = Image.new(
            "RGB", (width, self._text_top - self._canvas_top),
            CANVAS_BACKGROUND)
        if canvas is not None:
            self._canvas.paste(canvas, (0, 0))
        self._canvas_draw = ImageDraw.Draw(self._canvas)
        self._text_panel = Image.new(
            "RGB", (width, TEXT_HEIGHT), TEXT_BACKGROUND)
        self._shown_lines = []
        self._textChanged = True
        self._textRowsPending = set()        # to draw into the framebuffer
        self._textRowsUnreported = set()     # drawn or not, not yet reported
        self._statusPending = False
        self._status = Image.new(
            "RGB", (width, STATUS_HEIGHT), STATUS_BACKGROUND)
        ImageDraw.Draw(self._title).text(
            (MARGIN, 6), "spicesrv demo  %dx%d" % (width, self.height),
            fill=TITLE_INK, font=self._font)
        self._blit(self._title, 0)
        self._draw_clock()
        ImageDraw.Draw(self._hint).text(
            (MARGIN, 4), HINT, fill=HINT_INK, font=self._font)
        self._blit(self._hint, TITLE_HEIGHT)
        self._blit(self._canvas, self._canvas_top)
        self._blit(self._text_panel, self._text_top)
        self._draw_text()
        self._draw_status()

    def _blit(self, panel, top, box=None):
        """
        Copy C{box} of C{panel} (all of it by default), a panel whose top is
        at row C{top} of the frame, into the framebuffer.  Return the
        rectangle of the frame it covers, or L{None} if C{box} is empty.
        """
        left, upper, right, lower = box or (0, 0) + panel.size
        if right <= left or lower <= upper:
            return None
        rgb = np.asarray(panel.crop((left, upper, right, lower)))
        self.frame[top + upper:top + lower, left:right, :3] = rgb[..., ::-1]
        return (left, top + upper, right, top + lower)

    def _draw_clock(self):
        box = (self.width - CLOCK_WIDTH, 0, self.width, TITLE_HEIGHT)
        now = time.strftime("%H:%M:%S",
                            time.localtime(self._clock.seconds()))
        draw = ImageDraw.Draw(self._title)
        draw.rectangle((box[0], box[1], box[2] - 1, box[3] - 1),
                       fill=TITLE_BACKGROUND)
        draw.text((box[0] + MARGIN, 6), now, fill=TITLE_INK, font=self._font)
        return self._blit(self._title, 0, box)

    def _stroke(self, start, end):
        """
        Paint from frame point C{start} (or a dot, if L{None}) to C{end}
        with the current brush.
        """
        top = self._canvas_top
        x1, y1 = end[0], end[1] - top
        x0, y0 = (start[0], start[1] - top) if start else (x1, y1)
        colour = PALETTE[self._colour][1]
        radius = self._brush // 2
        if (x0, y0) != (x1, y1):
            self._canvas_draw.line(
                [(x0, y0), (x1, y1)], fill=colour, width=self._brush)
        for x, y in ((x0, y0), (x1, y1)):
            self._canvas_draw.ellipse(
                (x - radius, y - radius, x + radius, y + radius), fill=colour)
        width, height = self._canvas.size
        box = (max(min(x0, x1) - radius - 1, 0),
               max(min(y0, y1) - radius - 1, 0),
               min(max(x0, x1) + radius + 2, width),
               min(max(y0, y1) + radius + 2, height))
        return self._blit(self._canvas, top, box)

    def _draw_text(self):
        """
        Lay out the text if it changed (L{_layout_text}) and return the
        rectangle of the text rows changed since the last call, or L{None}.
        """
        self._layout_text()
        rows = self._textRowsUnreported
        if not rows:
            return None
        self._textRowsUnreported = set()
        upper = MARGIN + min(rows) * self._line_height
        lower = MARGIN + (max(rows) + 1) * self._line_height
        return (0, self._text_top + upper, self.width, self._text_top + lower)

    def _layout_text(self):
        """
        If the text changed since the last layout, wrap its last lines and
        mark the rows that read differently for drawing (L{_render_text})
        and for reporting (L{_draw_text}).
        """
        if not self._textChanged:
            return
        self._textChanged = False
        rows = (TEXT_HEIGHT - 2 * MARGIN) // self._line_height
        lines = self._visible_lines(rows)
        lines += [""] * (rows - len(lines))
        changed = [row for row in range(rows)
                   if self._shown_lines[row:row + 1] != lines[row:row + 1]]
        if not changed:
            return
        self._shown_lines = lines
        span = range(changed[0], changed[-1] + 1)
        self._textRowsPending.update(span)
        self._textRowsUnreported.update(span)

    def _render_text(self):
        """
        Draw the text rows marked by L{_layout_text} into the framebuffer.
        """
        rows = sorted(self._textRowsPending)
        self._textRowsPending.clear()
        draw = ImageDraw.Draw(self._text_panel)
        for row in range(rows[0], rows[-1] + 1):
            y = MARGIN + row * self._line_height
            draw.rectangle((0, y, self.width, y + self._line_height - 1),
                           fill=TEXT_BACKGROUND)
            line = self._shown_lines[row] if row < len(self._shown_lines) else ""
            draw.text((MARGIN, y), line, fill=TEXT_INK, font=self._font)
        upper = MARGIN + rows[0] * self._line_height
        lower = MARGIN + (rows[-1] + 1) * self._line_height
        self._blit(self._text_panel, self._text_top, (0, upper, self.width, lower))

    def framebuffer(self):
        """
        The framebuffer, with the text and status line brought up to date:
        they are laid out and drawn here, once for every event since the
        last read, rather than once per key or pointer event (a client
        flooding input costs a few bookkeeping steps per event, not a text
        rendering).
        """
        self._layout_text()
        if self._statusPending:
            self._statusPending = False
            self._render_status()
        if self._textRowsPending:
            self._render_text()
        return self.frame

    def _visible_lines(self, rows):
        """
        The last C{rows} lines of the typed text and its caret, wrapped to
        the width of the text area.
        """
        lines = []
        for paragraph in reversed((self._text + "_").split("\n")):
            lines[:0] = self._wrap(paragraph, self.width - 2 * MARGIN)
            if len(lines) >= rows:
                break
        return lines[-rows:]

    def _wrap(self, paragraph, limit):
        """
        Break C{paragraph} into lines greedily: each line takes characters
        while their widths add up to at most C{limit} pixels, and at least
        one.  The widths are summed once for the paragraph and each line's
        end is found by bisection, so a long paragraph (the typed text may
        be one of 10,000 characters) costs a few steps per line, not per
        character.
        """
        widths = self._char_widths
        for char in set(paragraph).difference(widths):
            widths[char] = self._font.getlength(char)
        # ends[i]: the width of paragraph[:i]
        ends = list(accumulate(map(widths.__getitem__, paragraph), initial=0))
        lines, start = [], 0
        while start < len(paragraph):
            end = max(start + 1, bisect_right(ends, ends[start] + limit, start + 1) - 1)
            lines.append(paragraph[start:end])
            start = end
        return lines or [""]

    def _draw_status(self):
        """
        Mark the status line for redrawing; it is drawn when the framebuffer
        is next read (L{framebuffer}), however many events changed it
        meanwhile.  Return the rectangle it covers.
        """
        self._statusPending = True
        return self._status_rect()

    def _status_rect(self):
        top = self._status_top
        return (0, top, self.width, top + STATUS_HEIGHT)

    def _render_status(self):
        draw = ImageDraw.Draw(self._status)
        draw.rectangle((0, 0) + self._status.size, fill=STATUS_BACKGROUND)
        buttons = "".join(name if self._buttons & bit else "-"
                          for name, bit in (("L", BUTTON_LEFT),
                                            ("M", BUTTON_MIDDLE),
                                            ("R", BUTTON_RIGHT)))
        locks = " ".join(name for name, flag in (("caps", CAPS_LOCK),
                                                  ("num", NUM_LOCK),
                                                  ("scroll", SCROLL_LOCK))
                         if self.keyboard.leds & flag)
        line = ("key %s    pointer %d,%d    buttons %s    brush %dpx %s"
                "    locks %s" % (
                    " ".join("%02X" % c for c in self._last_key) or "-",
                    self._x, self._y, buttons, self._brush,
                    PALETTE[self._colour][0], locks or "-"))
        draw.text((MARGIN, 4), line, fill=STATUS_INK, font=self._font)
        swatch_left = self.width - STATUS_HEIGHT - MARGIN
        draw.rectangle((swatch_left, 3, swatch_left + STATUS_HEIGHT - 7,
                        STATUS_HEIGHT - 4),
                       fill=PALETTE[self._colour][1], outline=STATUS_INK)
        return self._blit(self._status, self._status_top)

    def _damaged(self, rects):
        rects = [rect for rect in rects if rect is not None]
        if rects:
            self.damage(rects)


def _check_size(width, height):
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        raise ValueError(
            "the demo screen needs at least %dx%d pixels, not %dx%d"
            % (MIN_WIDTH, MIN_HEIGHT, width, height))
    checkPictureSize(width, height, "the demo screen")


def _outline_for(rgb):
    """
    A cursor outline colour that stands out against fill C{rgb}.
    """
    red, green, blue = rgb
    dark = red * 299 + green * 587 + blue * 114 < 128 * 1000
    return (255, 255, 255) if dark else (0, 0, 0)


def _parse_state(data):
    """
    Return the fields and the canvas image of demo migration state, or
    raise L{ValueError}.
    """
    if not data.startswith(_STATE_MAGIC):
        raise ValueError("not demo display state (starts with %r)"
                         % (bytes(data[:16]),))
    offset = len(_STATE_MAGIC)
    try:
        (length,) = _STATE_LENGTH.unpack_from(data, offset)
        offset += _STATE_LENGTH.size
        fields = json.loads(data[offset:offset + length].decode("utf-8"))
        canvas = loadPicture(io.BytesIO(data[offset + length:]), "the migrated canvas")
    except (struct.error, ValueError, OSError) as e:
        raise ValueError("damaged demo display state: %s" % (e,))
    for name, kind in _STATE_FIELDS.items():
        if not isinstance(fields.get(name), kind):
            raise ValueError("damaged demo display state: bad %r" % (name,))
    checks = {
        "colour": 0 <= fields["colour"] < len(PALETTE),
        "pointer": (len(fields["pointer"]) == 2 and
                    all(isinstance(v, int) for v in fields["pointer"])),
        "last_key": all(isinstance(v, int) and 0 <= v < 256
                        for v in fields["last_key"]),
    }
    for name, good in checks.items():
        if not good:
            raise ValueError("damaged demo display state: bad %r" % (name,))
    return fields, canvas
