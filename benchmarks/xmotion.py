"""
An X client that plays the motion source's workloads (L{spicesrv.sources.motion})
into an X display, as an application would draw them, so that a server
exporting that display (Xspice, i.e. libspice-server; or spicesrv's
C{--source x11:}) can be measured with the same pictures as spicesrv's own
motion source:

- C{video}: the desktop once, then each frame's moving picture put into its
  rectangle (core PutImage);
- C{scroll}: the first picture once, then per frame one CopyArea moving the
  window's content up by the rows scrolled since the last frame (as a
  scrolling application does), and PutImage of the new rows at the bottom
  and of the frame bar codes;
- C{typing}: not played (its damage is tiny; spicesrv's own source covers
  it).

It draws into a full-screen override-redirect window.  Frame C{n} is
drawn at C{start + n / fps} (numbers are skipped when late), and every
pixel of the window is then the motion source's frame C{n}.

    python3 -m benchmarks.xmotion --workload scroll [--fps 30]

with C{DISPLAY} set.  Lines on stdin: C{go} starts playing, C{stop}
freezes the picture; end of input exits.  JSON lines on stdout: C{ready}
C{{width, height}} once the first picture is on the screen; C{frame} C{{n,
t}} after each frame reached the X server (C{t} on C{time.monotonic});
C{stopped} C{{n}}.
"""

import argparse
import json
import os
import select
import sys
import time

import xcffib
import xcffib.xproto as xp

#: Bytes of pixels per PutImage request (the core protocol allows 256 KiB
#: without BIG-REQUESTS).
MAX_PUT = 192 * 1024


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class Player:
    def __init__(self, workload, fps):
        from twisted.internet.task import Clock

        from spicesrv.sources.motion import MotionSource

        self.conn = xcffib.connect()
        screen = self.conn.get_setup().roots[self.conn.pref_screen]
        self.width, self.height = screen.width_in_pixels, screen.height_in_pixels
        self.depth = screen.root_depth
        self.source = MotionSource(width=self.width, height=self.height, workload=workload,
                                   fps=fps, clock=Clock(), autostart=False)
        self.workload = workload
        self.fps = fps
        self.window = self.conn.generate_id()
        self.conn.core.CreateWindow(
            self.depth, self.window, screen.root, 0, 0, self.width, self.height, 0,
            xp.WindowClass.InputOutput, screen.root_visual,
            xp.CW.BackPixel | xp.CW.OverrideRedirect, [0, 1])
        self.gc = self.conn.generate_id()
        self.conn.core.CreateGC(self.gc, self.window, xp.GC.GraphicsExposures, [0])
        self.conn.core.MapWindow(self.window)
        self.n = 0
        self.shown = None

    def sync(self):
        self.conn.core.GetInputFocus().reply()

    def put(self, pixels, left, top):
        """
        Put C{pixels} (BGRX rows) at C{(left, top)} of the window.
        """
        height, width = pixels.shape[:2]
        rows = max(1, MAX_PUT // (width * 4))
        for y in range(0, height, rows):
            data = pixels[y:y + rows].tobytes()
            self.conn.core.PutImage(xp.ImageFormat.ZPixmap, self.window, self.gc, width,
                                    min(rows, height - y), left, top + y, 0, self.depth,
                                    len(data), data)

    def first(self):
        self.put(self.source.frame, 0, 0)
        self.shown = self.source.frame.copy()
        self.sync()
        emit({"event": "ready", "width": self.width, "height": self.height})

    def draw(self, n):
        from spicesrv.sources.motion import CODE_BITS, CODE_BLOCK, SCROLL_STEP

        left, top, right, bottom = self.source.movingRect()
        picture = self.source.render(n)
        if self.workload == "scroll":
            step = SCROLL_STEP * (n - self.n)
            code = CODE_BITS * CODE_BLOCK
            if 0 < step < self.height - 2 * CODE_BLOCK:
                self.conn.core.CopyArea(self.window, self.window, self.gc, 0, step, 0, 0,
                                        self.width, self.height - step)
                # The codes (top, and where the bottom one was moved to)
                # and the new rows.
                self.put(picture[0:CODE_BLOCK, 0:code], 0, 0)
                y = self.height - step - CODE_BLOCK
                self.put(picture[y:y + CODE_BLOCK, 0:code], 0, y)
                self.put(picture[self.height - step:], 0, self.height - step)
            else:
                self.put(picture, 0, 0)
        else:
            self.put(picture, left, top)
        self.n = n
        self.sync()
        emit({"event": "frame", "n": n, "t": time.monotonic()})

    def run(self):
        self.first()
        playing = False
        start = None
        stdin = sys.stdin.fileno()
        while True:
            timeout = None
            if playing:
                due = start + (self.n + 1) / self.fps
                timeout = max(0.0, due - time.monotonic())
            ready, _, _ = select.select([stdin], [], [], timeout)
            if ready:
                line = os.read(stdin, 4096)
                if not line:
                    return
                for command in line.decode().split():
                    if command == "go" and not playing:
                        playing = True
                        start = time.monotonic() - self.n / self.fps
                    elif command == "stop":
                        playing = False
                        emit({"event": "stopped", "n": self.n})
                continue
            n = int((time.monotonic() - start) * self.fps + 1e-6)
            if n > self.n:
                self.draw(n)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.xmotion")
    parser.add_argument("--workload", default="scroll", choices=("video", "scroll"))
    parser.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args(argv)
    Player(args.workload, args.fps).run()


if __name__ == "__main__":
    main()
