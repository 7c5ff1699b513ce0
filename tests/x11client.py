"""
A small X client for the X11 source's tests, on xcffib: a window over the
whole screen showing four coloured quarters, which reports the key and
button events it gets as JSON lines on stdout.

    python x11client.py [--animate FPS] [--keybox]

Events: C{ready} C{{window, width, height}} once the window is mapped and
has the focus; C{key} C{{press, keycode, state, keysym, char}} (the keysym
the server's current keyboard mapping gives, C{char} its Latin-1 character
or C{''}); C{button} C{{press, button, x, y}}; C{frame} C{{n, time}} every
30th animation frame; C{box} C{{n, time}} when C{--keybox} repaints its box
after a key press.

C{--animate FPS} redraws the whole window FPS times a second (horizontal
stripes whose colours move: every pixel row changes), drawing off screen
and showing each frame with one copy; C{--keybox} toggles
the colour of a 64x64 box at the top left on every key press (for the
keypress-to-pixels latency).
"""

import argparse
import json
import select
import sys
import time

import xcffib
import xcffib.xproto as xp

#: the quarters' colours, as 0xRRGGBB, clockwise from the top left
QUARTERS = (0xD03020, 0x20A040, 0x808080, 0x2040C0)
BOX_COLOURS = (0xFFFF00, 0x00FFFF)


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Client:
    def __init__(self, args):
        self.args = args
        self.conn = xcffib.connect()
        setup = self.conn.get_setup()
        self.screen = screen = setup.roots[self.conn.pref_screen]
        self.width, self.height = screen.width_in_pixels, screen.height_in_pixels
        self.window = self.conn.generate_id()
        mask = (xp.EventMask.KeyPress | xp.EventMask.KeyRelease | xp.EventMask.ButtonPress
                | xp.EventMask.ButtonRelease | xp.EventMask.Exposure
                | xp.EventMask.StructureNotify)
        self.conn.core.CreateWindow(
            screen.root_depth, self.window, screen.root, 0, 0, self.width, self.height, 0,
            xp.WindowClass.InputOutput, screen.root_visual,
            xp.CW.BackPixel | xp.CW.OverrideRedirect | xp.CW.EventMask,
            [0, 1, mask])
        self.gc = self.conn.generate_id()
        self.conn.core.CreateGC(self.gc, self.window, xp.GC.Foreground, [0])
        self.box = 0
        self.frames = 0
        self.loadMapping()
        self.conn.core.MapWindow(self.window)
        self.conn.flush()

    def loadMapping(self):
        setup = self.conn.get_setup()
        first, count = setup.min_keycode, setup.max_keycode - setup.min_keycode + 1
        reply = self.conn.core.GetKeyboardMapping(first, count).reply()
        self.first = first
        self.per = reply.keysyms_per_keycode
        self.keysyms = list(reply.keysyms)

    def keysym(self, keycode, state):
        row = self.keysyms[(keycode - self.first) * self.per:
                           (keycode - self.first + 1) * self.per]
        group = (state >> 13) & 3
        shift = 1 if state & xp.KeyButMask.Shift else 0
        index = group * 2 + shift
        sym = row[index] if index < len(row) else 0
        if not sym and index % 2:
            sym = row[index - 1]
        if state & xp.KeyButMask.Lock and 0x61 <= sym <= 0x7A:
            sym -= 0x20
        return sym

    def fill(self, colour, x, y, width, height, drawable=None):
        self.conn.core.ChangeGC(self.gc, xp.GC.Foreground, [colour])
        self.conn.core.PolyFillRectangle(drawable or self.window, self.gc, 1,
                                         [xp.RECTANGLE.synthetic(x, y, width, height)])

    def paint(self):
        w, h = self.width // 2, self.height // 2
        self.fill(QUARTERS[0], 0, 0, w, h)
        self.fill(QUARTERS[1], w, 0, self.width - w, h)
        self.fill(QUARTERS[2], w, h, self.width - w, self.height - h)
        self.fill(QUARTERS[3], 0, h, w, self.height - h)
        if self.args.keybox:
            self.fill(BOX_COLOURS[self.box], 0, 0, 64, 64)

    def animate(self):
        """
        Draw the next frame off screen, then show it with one copy, as a
        double-buffered application does.
        """
        if not hasattr(self, "pixmap"):
            self.pixmap = self.conn.generate_id()
            self.conn.core.CreatePixmap(self.screen.root_depth, self.pixmap, self.window,
                                        self.width, self.height)
        self.frames += 1
        stripe = 16
        for i, y in enumerate(range(0, self.height, stripe)):
            shade = (i * 8 + self.frames * 4) & 0xFF
            self.fill((shade << 16) | ((255 - shade) << 8) | (shade ^ 0x5A), 0, y,
                      self.width, stripe, self.pixmap)
        if self.args.keybox:
            self.fill(BOX_COLOURS[self.box], 0, 0, 64, 64, self.pixmap)
        self.conn.core.CopyArea(self.pixmap, self.window, self.gc, 0, 0, 0, 0,
                                self.width, self.height)
        self.conn.flush()
        if self.frames % 30 == 0:
            emit({"event": "frame", "n": self.frames, "time": time.time()})

    def handle(self, event):
        if isinstance(event, xp.MapNotifyEvent) and event.window == self.window:
            self.conn.core.SetInputFocus(xp.InputFocus.PointerRoot, self.window,
                                         xp.Time.CurrentTime)
            self.paint()
            self.conn.core.GetInputFocus().reply()
            emit({"event": "ready", "window": self.window, "width": self.width,
                  "height": self.height})
        elif isinstance(event, xp.ExposeEvent):
            if event.count == 0 and not self.args.animate:
                self.paint()
        elif isinstance(event, (xp.KeyPressEvent, xp.KeyReleaseEvent)):
            press = isinstance(event, xp.KeyPressEvent)
            sym = self.keysym(event.detail, event.state)
            emit({"event": "key", "press": press, "keycode": event.detail,
                  "state": event.state, "keysym": sym,
                  "char": chr(sym) if 0x20 <= sym <= 0xFF else ""})
            if press and self.args.keybox:
                self.box ^= 1
                self.fill(BOX_COLOURS[self.box], 0, 0, 64, 64)
                self.conn.core.GetInputFocus().reply()
                emit({"event": "box", "n": self.box, "time": time.time()})
        elif isinstance(event, (xp.ButtonPressEvent, xp.ButtonReleaseEvent)):
            emit({"event": "button", "press": isinstance(event, xp.ButtonPressEvent),
                  "button": event.detail, "x": event.event_x, "y": event.event_y})
        elif isinstance(event, xp.MappingNotifyEvent):
            self.loadMapping()
        elif isinstance(event, xp.ConfigureNotifyEvent) and event.window == self.window:
            self.width, self.height = event.width, event.height

    def run(self):
        fd = self.conn.get_file_descriptor()
        period = 1.0 / self.args.animate if self.args.animate else None
        due = time.monotonic()
        while True:
            while True:
                event = self.conn.poll_for_event()
                if event is None:
                    break
                self.handle(event)
            self.conn.flush()
            timeout = None
            if period is not None:
                now = time.monotonic()
                if now >= due:
                    self.animate()
                    due = max(due + period, now)
                timeout = max(0.0, due - time.monotonic())
            select.select([fd], [], [], timeout)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--animate", type=float, default=0)
    parser.add_argument("--keybox", action="store_true")
    Client(parser.parse_args()).run()


if __name__ == "__main__":
    main()
