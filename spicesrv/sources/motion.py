"""
The "motion" display source: deterministic moving pictures for tests and
benchmarks of video streams.

Three workloads, each a pure function of the frame number, so that whoever
knows the number knows every pixel:

- C{video}: a still desktop-like screen whose middle rectangle (640x360 in
  1920x1080 by default) plays a smooth moving picture, as a video player
  would;
- C{scroll}: the whole screen shows a tall photograph-like picture that
  scrolls by L{SCROLL_STEP} rows a frame;
- C{typing}: a text area in which one character appears per frame.

In C{video} and C{scroll} the frame number is also drawn into the picture as
a bar code of L{CODE_BITS} black or white L{CODE_BLOCK}-pixel squares at the
top left and the bottom left of the moving area (L{readFrameCode} reads it
back, also from a JPEG-compressed copy): a client's picture tells which frame
it shows, and two equal codes that it shows one whole frame (lossless updates
go top to bottom).

The source draws frame C{n} at C{start + n / fps} on its clock, skipping
numbers when it runs late, and stops after C{frames} frames if asked, so the
last picture stays still.  L{frameTimes} keeps when each recent frame was
drawn (on C{time.monotonic}, for latency measurements).
"""

import time

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from twisted.internet.task import LoopingCall

from spicesrv.sources.base import FramebufferSource

VIDEO = "video"
SCROLL = "scroll"
TYPING = "typing"
WORKLOADS = (VIDEO, SCROLL, TYPING)

CODE_BITS = 16
CODE_BLOCK = 8
SCROLL_STEP = 8
#: The scrolling picture's height, in screens; it wraps around.
SCROLL_SCREENS = 3
TYPING_TEXT = ("The quick brown fox jumps over the lazy dog. 0123456789 "
               "Pack my box with five dozen liquor jugs! ")
#: How many frame times are kept in L{MotionSource.frameTimes}.
FRAME_TIMES_KEPT = 4096


def _grid(width, height):
    return (np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))


def videoPicture(n, width, height, fps=30.0):
    """
    The moving picture of frame C{n}: C{(height, width, 4)} BGRX, smooth
    colour waves drifting at different speeds and a soft disc travelling
    across.  Separable sums, so a 640x360 frame costs a few milliseconds.
    """
    t = n / fps
    x, y = _grid(width, height)
    red = (np.sin(x / 53.0 + 1.7 * t)[None, :] * np.cos(y / 41.0 - 0.9 * t)[:, None])
    green = (np.sin(x / 97.0 - 1.1 * t)[None, :] + np.sin(y / 67.0 + 1.3 * t)[:, None]) / 2
    blue = np.cos(x / 31.0 + 2.3 * t)[None, :] * np.sin(y / 89.0 + 0.7 * t)[:, None]
    cx = width * (0.5 + 0.35 * np.sin(0.8 * t))
    cy = height * (0.5 + 0.3 * np.cos(1.1 * t))
    radius = min(width, height) / 5.0
    dist2 = ((x - cx) ** 2)[None, :] + ((y - cy) ** 2)[:, None]
    disc = np.exp(-dist2 / (2 * radius * radius))
    frame = np.empty((height, width, 4), np.uint8)
    frame[..., 2] = np.clip(120 + 90 * red + 60 * disc, 0, 255)
    frame[..., 1] = np.clip(110 + 80 * green + 90 * disc, 0, 255)
    frame[..., 0] = np.clip(130 + 85 * blue - 40 * disc, 0, 255)
    frame[..., 3] = 255
    return frame


def scrollPicture(width, height, seed=7):
    """
    A tall photograph-like picture (smooth hills of colour, soft blobs and
    fine texture) for the C{scroll} workload.
    """
    rng = np.random.default_rng(seed)
    x, y = _grid(width, height)
    picture = np.zeros((height, width, 3), np.float32)
    for channel in range(3):
        layer = np.zeros((height, width), np.float32)
        for _ in range(4):
            fx, fy = rng.uniform(20, 300, 2)
            px, py = rng.uniform(0, 2 * np.pi, 2)
            layer += (np.sin(x / fx + px)[None, :] * np.cos(y / fy + py)[:, None])
        picture[..., channel] = 128 + 30 * layer
    for _ in range(height * width // 40000):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(20, 90)
        colour = rng.uniform(-80, 80, 3).astype(np.float32)
        x0, x1 = int(max(0, cx - 3 * radius)), int(min(width, cx + 3 * radius))
        y0, y1 = int(max(0, cy - 3 * radius)), int(min(height, cy + 3 * radius))
        d2 = ((x[x0:x1] - cx) ** 2)[None, :] + ((y[y0:y1] - cy) ** 2)[:, None]
        picture[y0:y1, x0:x1] += np.exp(-d2 / (2 * radius * radius))[..., None] * colour
    picture += rng.normal(0, 3, (height, width, 1)).astype(np.float32)
    frame = np.empty((height, width, 4), np.uint8)
    frame[..., :3] = np.clip(picture[..., ::-1], 0, 255)
    frame[..., 3] = 255
    return frame


def desktopPicture(width, height):
    """
    The still screen behind the C{video} workload: a gradient, a few
    windows and some text.
    """
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[..., 0] = 40 + 60 * y + 0 * x
    rgb[..., 1] = 70 + 50 * x + 0 * y
    rgb[..., 2] = 120 + 60 * y * x
    image = Image.fromarray(rgb, "RGB")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    for i, (left, top) in enumerate(((40, 40), (width - 460, 60), (80, height - 260))):
        draw.rectangle((left, top, left + 400, top + 200), fill=(236, 236, 236),
                       outline=(30, 30, 30))
        draw.rectangle((left, top, left + 400, top + 22), fill=(50, 80, 150))
        draw.text((left + 8, top + 5), "window %d" % (i + 1,), fill=(255, 255, 255), font=font)
        for line in range(8):
            draw.text((left + 10, top + 32 + 20 * line), TYPING_TEXT[line * 7:line * 7 + 50],
                      fill=(20, 20, 20), font=font)
    frame = np.empty((height, width, 4), np.uint8)
    frame[..., :3] = np.asarray(image)[..., ::-1]
    frame[..., 3] = 255
    return frame


def windowPicture(width, height):
    """
    A still dialog box, C{(height, width, 4)} BGRX: a grey body with a
    dark border, a blue title bar and a few dark lines of "text".
    """
    picture = np.empty((height, width, 4), np.uint8)
    picture[...] = (236, 236, 236, 255)
    picture[:min(height, 18), :, :3] = (150, 80, 50)
    for y in range(26, height - 6, 10):
        picture[y:y + 3, 8:max(8, width - 8 - (y * 7) % 40), :3] = 40
    picture[[0, -1], :, :3] = 20
    picture[:, [0, -1], :3] = 20
    return picture


def drawFrameCode(frame, n, left, bottom):
    """
    Draw C{n} as a bar code whose bottom-left corner is at C{(left,
    bottom)} of C{frame} (bit 0 first, white for 1).
    """
    top = bottom - CODE_BLOCK
    for bit in range(CODE_BITS):
        x = left + bit * CODE_BLOCK
        frame[top:bottom, x:x + CODE_BLOCK, :3] = 255 if (n >> bit) & 1 else 0


def readFrameCode(frame, left, bottom):
    """
    The number L{drawFrameCode} drew at C{(left, bottom)} of C{frame}, read
    from the middle of each square (so JPEG's blur does not matter).
    """
    y = bottom - CODE_BLOCK // 2
    n = 0
    for bit in range(CODE_BITS):
        x = left + bit * CODE_BLOCK + CODE_BLOCK // 2
        if int(frame[y, x, :3].astype(np.int32).sum()) > 3 * 128:
            n |= 1 << bit
    return n


class MotionSource(FramebufferSource):
    """
    A display source whose picture moves (see the module docstring).

    @param workload: L{VIDEO}, L{SCROLL} or L{TYPING}.
    @param fps: frames per second.
    @param rect: the moving rectangle C{(left, top, right, bottom)} of
        L{VIDEO} (default: 640x360 in the middle) or the text area of
        L{TYPING}.
    @param frames: stop after this many frames (L{None}: run until
        L{stop}).
    @param autostart: start moving at once.
    """

    description = "motion: deterministic moving pictures"

    def __init__(self, width=1920, height=1080, workload=VIDEO, fps=30.0, rect=None,
                 frames=None, clock=None, autostart=True):
        FramebufferSource.__init__(self, width, height)
        if workload not in WORKLOADS:
            raise ValueError("workload %r is not one of %s" % (workload, ", ".join(WORKLOADS)))
        if clock is None:
            from twisted.internet import reactor as clock
        self.clock = clock
        self.workload = workload
        self.fps = float(fps)
        self.frames = frames
        if rect is None:
            if workload == VIDEO:
                w, h = min(640, width), min(360, height)
            elif workload == TYPING:
                w, h = min(800, width), min(200, height)
            else:
                w, h = width, height
            left, top = (width - w) // 2, (height - h) // 2
            rect = (left, top, left + w, top + h)
        self.rect = tuple(rect)
        #: A still window drawn over the moving picture, or L{None}.
        self.overlay = None
        self.frameNumber = -1
        self.frameTimes = {}
        #: CPU seconds the drawing took (on the drawing thread).
        self.drawSeconds = 0.0
        self._loop = None
        self._start = None
        self._font = ImageFont.load_default()
        self._cell = None
        if workload == SCROLL:
            self._tall = scrollPicture(width, height * SCROLL_SCREENS)
        if workload == VIDEO:
            self.frame[...] = desktopPicture(width, height)
        elif workload == TYPING:
            self.frame[...] = 250
            left, top, right, bottom = self.rect
            self.frame[top:bottom, left:right, :3] = (232, 248, 250)
        self._draw(0)
        if autostart:
            self.start()

    # -- the code's place -----------------------------------------------------------

    def codePosition(self):
        """
        C{(left, bottom)} of the frame bar code on the screen, or L{None}
        (L{TYPING} has none).
        """
        if self.workload == VIDEO:
            return (self.rect[0], self.rect[3])
        if self.workload == SCROLL:
            return (0, self.height)
        return None

    def movingRect(self):
        """
        The rectangle that changes from frame to frame.
        """
        if self.workload == SCROLL:
            return (0, 0, self.width, self.height)
        return self.rect

    # -- frames ----------------------------------------------------------------------

    def render(self, n):
        """
        The content of L{movingRect} in frame C{n} (for L{TYPING}, the
        whole text area with C{n + 1} characters typed).
        """
        left, top, right, bottom = self.movingRect()
        if self.workload == VIDEO:
            picture = videoPicture(n, right - left, bottom - top, self.fps)
            drawFrameCode(picture, n, 0, CODE_BLOCK)
            drawFrameCode(picture, n, 0, bottom - top)
            return picture
        if self.workload == SCROLL:
            offset = (n * SCROLL_STEP) % self._tall.shape[0]
            rows = np.arange(offset, offset + self.height) % self._tall.shape[0]
            picture = self._tall[rows]
            drawFrameCode(picture, n, 0, CODE_BLOCK)
            drawFrameCode(picture, n, 0, self.height)
            return picture
        picture = np.array(self.frame[top:bottom, left:right])
        for i in range(n + 1):
            self._typeInto(picture, i)
        return picture

    def _cellSize(self):
        if self._cell is None:
            box = self._font.getbbox("M")
            self._cell = (box[2] + 2, box[3] + 6)
        return self._cell

    def charRect(self, i):
        """
        Where character C{i} of L{TYPING} goes, relative to L{rect}.
        """
        cw, ch = self._cellSize()
        left, top, right, bottom = self.rect
        perLine = max(1, (right - left - 16) // cw)
        lines = max(1, (bottom - top - 16) // ch)
        row, col = (i // perLine) % lines, i % perLine
        x, y = 8 + col * cw, 8 + row * ch
        return (x, y, x + cw, y + ch)

    def _typeInto(self, picture, i):
        x0, y0, x1, y1 = self.charRect(i)
        if i % self._charsPerScreen() == 0:
            picture[:, :, :3] = (232, 248, 250)
        cell = Image.new("RGB", (x1 - x0, y1 - y0), (250, 248, 232))
        ImageDraw.Draw(cell).text((1, 2), TYPING_TEXT[i % len(TYPING_TEXT)], fill=(20, 20, 20),
                                  font=self._font)
        picture[y0:y1, x0:x1, :3] = np.asarray(cell)[..., ::-1]

    def _charsPerScreen(self):
        cw, ch = self._cellSize()
        left, top, right, bottom = self.rect
        return max(1, (right - left - 16) // cw) * max(1, (bottom - top - 16) // ch)

    def _draw(self, n):
        started = time.thread_time()
        try:
            return self._drawFrame(n)
        finally:
            self.drawSeconds += time.thread_time() - started

    def _drawFrame(self, n):
        left, top, right, bottom = self.movingRect()
        if self.workload == TYPING:
            area = self.frame[top:bottom, left:right]
            if n % self._charsPerScreen() == 0:
                area[:, :, :3] = (232, 248, 250)
                damaged = [self.rect]
            else:
                x0, y0, x1, y1 = self.charRect(n)
                damaged = [(left + x0, top + y0, left + x1, top + y1)]
            self._typeInto(area, n)
        else:
            self.frame[top:bottom, left:right] = self.render(n)
            damaged = [(left, top, right, bottom)]
            if self.overlay is not None:
                x0, y0, x1, y1 = self.overlay
                self.frame[y0:y1, x0:x1] = windowPicture(x1 - x0, y1 - y0)
                damaged.append(self.overlay)
        self.frameNumber = n
        self.frameTimes[n] = time.monotonic()
        self.frameTimes.pop(n - FRAME_TIMES_KEPT, None)
        return damaged

    def setOverlay(self, rect):
        """
        Draw a still window (L{windowPicture}) at C{rect} over every frame
        from the next one on, as a dialog opened over a video player; with
        L{None}, the window goes.
        """
        self.overlay = None if rect is None else tuple(rect)

    # -- running ---------------------------------------------------------------------

    def start(self):
        """
        Start (or go on) moving.
        """
        if self._loop is not None:
            return
        self._start = self.clock.seconds() - self.frameNumber / self.fps
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.clock
        self._loop.start(1.0 / self.fps, now=False)

    def stop(self):
        """
        Stop moving; the picture stays as it is.
        """
        loop, self._loop = self._loop, None
        if loop is not None and loop.running:
            loop.stop()

    @property
    def running(self):
        return self._loop is not None

    def _tick(self):
        n = int((self.clock.seconds() - self._start) * self.fps + 1e-6)
        if self.frames is not None:
            n = min(n, self.frames - 1)
        if n <= self.frameNumber:
            if self.frames is not None and self.frameNumber >= self.frames - 1:
                self.stop()
            return
        if self.workload == TYPING:
            # Every character in between is typed, each its own change.
            damaged = []
            for i in range(self.frameNumber + 1, n + 1):
                damaged.extend(self._draw(i))
        else:
            damaged = self._draw(n)
        self.damage(damaged)
        if self.frames is not None and n >= self.frames - 1:
            self.stop()
