"""
Video streams on a display channel: which areas change like video, and
each stream's life from STREAM_CREATE to the lossless refresh after
STREAM_DESTROY.

Detection follows libspice-server's (``server/video-stream.cpp``): an area
is video when the source replaces the same rectangle again and again, each
time within L{DETECTION_MAX_GAP} of the last, L{START_FRAMES} times in a
row; in the C{filter} mode (the default, as libspice's) the rectangle must
also cover at least L{MIN_AREA} pixels and at least a fifth of those
updates must look like photographs rather than text or flat drawings
(L{looksGradual}).  C{all} streams any such rectangle; C{off} never streams.
An area the display channel has just brought up to date with COPY_BITS (a
scroll, L{spicesrv.display.copybits}) is not video: no stream starts over
it until L{SCROLL_HOLD} after its last copy.

A stream then takes every damage inside its rectangle: instead of lossless
DRAW_COPYs the area goes to the client as frames of a video codec
(L{spicesrv.display.codecs} chooses MJPEG, VP8, VP9 or H.264 from the
server's list, the client's caps and its preference), at most
L{MAX_IN_FLIGHT} MJPEG frames or one frame of the other codecs being
encoded at a time (off the reactor thread; they go out in order) and none
while the link is full (L{RateControl}), each stamped with the multimedia
time it is to be shown at.  VP8, VP9 and H.264 frames have even sizes
(4:2:0): a rectangle with an odd side grows by a pixel.  A damage rectangle
that contains the stream's and is at most twice as big is the same video
grown: the frame goes as STREAM_DATA_SIZED to clients that can take it.
When the rectangle sees no damage for L{STREAM_TIMEOUT} the stream ends:
STREAM_DESTROY (the client drops the frames it still holds), then the area
is refreshed losslessly, so a still picture always ends pixel-exact.

The source's framebuffer is already composited, so a window drawn over a
stream is part of its frames.  Each captured frame is compared with the one
before (L{StillAreas}): when parts of the stream's rectangle stay still for
L{CLIP_STILL_FRAMES} frames while the rest moves, and form rectangles of at
least L{CLIP_MIN_SIDE} pixels a side that do not look like a photograph,
they are taken for windows drawn over the video: the stream is clipped to
the rest with STREAM_CLIP (a clip of type RECTS lists where the client
shows the stream's frames; spice-gtk draws frames only inside it) and the
still rectangles go losslessly, exact.  When they change again (the window
went away or was redrawn) the clip shrinks or goes (type NONE) and the
frames paint them again.  At most L{MAX_STILL_RECTS} still rectangles and
L{MAX_CLIP_RECTS} clip rectangles.
"""

import random

import numpy as np
from twisted.logger import Logger

from spicesrv.display import ratecontrol
from spicesrv.display.codecs import SPICE, VideoCodec, chooseCodec, sortByClientPreference
from spicesrv.display.region import area, overlaps
from spicesrv.display.video import MjpegStreamEncoder, newStreamEncoder
from spicesrv.wire.constants import (
    MAX_STREAMS, STREAM_FLAG_TOP_DOWN, DisplayCap, VideoCodecType)

OFF = "off"
ALL = "all"
FILTER = "filter"
MODES = (OFF, ALL, FILTER)

#: Detection (libspice's RED_STREAM_* values).
DETECTION_MAX_GAP = 0.2
START_FRAMES = 20
GRADUAL_SHARE = 0.2
MIN_AREA = 96 * 96
#: The sample L{looksGradual} takes: rows, and pairs of neighbours a row.
GRADUAL_ROWS = 32
GRADUAL_PAIRS = 256
#: Rectangles followed at once while detecting.
MAX_TRACES = 64
#: An area that scrolled (went as COPY_BITS) is not video for this long.
SCROLL_HOLD = 1.0

#: A stream with no damage for this long ends (libspice: 1 s; shorter here,
#: so that a paused video turns exact sooner).
STREAM_TIMEOUT = 0.5
#: The most frames per second a stream sends (libspice's MAX_FPS).
MAX_FPS = 30
#: MJPEG frames of one stream being encoded at once (they are sent in order).
MAX_IN_FLIGHT = MjpegStreamEncoder.maxInFlight
#: How often a stream that waits for the link looks again, in seconds.
RETRY_INTERVAL = 0.005

#: Clips for windows drawn over a stream: the size of the blocks compared
#: from frame to frame, how many captured frames a block must stay the same
#: to be still, the shortest side (pixels) of a still rectangle, and the
#: most still rectangles and clip rectangles a stream has.
CLIP_BLOCK = 16
CLIP_STILL_FRAMES = 8
CLIP_MIN_SIDE = 2 * CLIP_BLOCK
MAX_STILL_RECTS = 4
MAX_CLIP_RECTS = 16


def looksGradual(pixels):
    """
    Whether C{pixels} (BGRX) look like a photograph or video rather than
    text or flat drawing: most neighbouring pixels differ a little, not
    either not at all or a lot.  A cheap sample (at most L{GRADUAL_ROWS}
    rows of L{GRADUAL_PAIRS} pairs of neighbours, evenly spread), in the
    spirit of libspice's bitmap graduality: a source may damage its whole
    screen hundreds of times a second, and each damage is looked at.
    """
    height, width = pixels.shape[:2]
    rows = pixels[::max(1, height // GRADUAL_ROWS), :, :3]
    if width > 2 * GRADUAL_PAIRS:
        step = (width - 1) // GRADUAL_PAIRS
        left = rows[:, 0:width - 1:step][:, :GRADUAL_PAIRS]
        right = rows[:, 1:width:step][:, :GRADUAL_PAIRS]
        channels = np.abs(left.astype(np.int16) - right)
    else:
        channels = np.abs(np.diff(rows.astype(np.int16), axis=1))
    # The largest of the three channels' differences (a reduction over an
    # axis of three costs more than the two maximums).
    diff = np.maximum(np.maximum(channels[..., 0], channels[..., 1]), channels[..., 2])
    changed = np.count_nonzero(diff)
    if changed == 0:
        return False
    small = np.count_nonzero((diff > 0) & (diff <= 24))
    return small >= 0.5 * changed and changed >= 0.2 * diff.size


def contains(outer, inner):
    return (outer[0] <= inner[0] and outer[1] <= inner[1]
            and outer[2] >= inner[2] and outer[3] >= inner[3])


def subtract(rects, hole):
    """
    The rectangles C{rects} (disjoint) without C{hole}, still disjoint.
    """
    out = []
    for rect in rects:
        if not overlaps(rect, hole):
            out.append(rect)
            continue
        left, top, right, bottom = rect
        if hole[1] > top:
            out.append((left, top, right, hole[1]))
        if hole[3] < bottom:
            out.append((left, hole[3], right, bottom))
        middleTop, middleBottom = max(top, hole[1]), min(bottom, hole[3])
        if hole[0] > left:
            out.append((left, middleTop, hole[0], middleBottom))
        if hole[2] < right:
            out.append((hole[2], middleTop, right, middleBottom))
    return out


def largestRectangle(mask):
    """
    The largest all-true rectangle of the 2-D boolean C{mask}, as C{(area,
    (left, top, right, bottom))} in its cells, or L{None} if none is.
    """
    rows, cols = mask.shape
    heights = np.zeros(cols, np.int32)
    best = None
    for y in range(rows):
        heights = np.where(mask[y], heights + 1, 0)
        stack = []
        for x in range(cols + 1):
            h = int(heights[x]) if x < cols else 0
            start = x
            while stack and stack[-1][1] >= h:
                start, sh = stack.pop()
                if sh and (best is None or sh * (x - start) > best[0]):
                    best = (sh * (x - start), (start, y + 1 - sh, x, y + 1))
            stack.append((start, h))
    return best


class StillAreas:
    """
    Which parts of a stream's frames stay still while the rest moves: the
    rectangles taken for windows drawn over the video.

    @ivar rect: the frame rectangle (surface coordinates) it follows.
    @ivar rects: the still rectangles now clipped out, in surface
        coordinates.
    """

    def __init__(self, rect):
        self.rect = rect
        self.rects = []
        self._previous = None
        self._count = None
        self._padded = None
        self._blocks = None

    def update(self, pixels):
        """
        The next captured frame (a contiguous C{(height, width, 4)} copy of
        L{rect}): return the new list of still rectangles if it changed,
        else L{None}.
        """
        current = pixels.view(np.uint32)[..., 0]
        height, width = current.shape
        if self._previous is None or self._previous.shape != current.shape:
            self._previous = current
            # Padded to whole blocks with counts that stay at the top.
            rows, cols = -(-height // CLIP_BLOCK), -(-width // CLIP_BLOCK)
            self._padded = np.full((rows * CLIP_BLOCK, cols * CLIP_BLOCK), 255, np.uint8)
            self._count = self._padded[:height, :width]
            self._count[...] = 0
            return None
        same = current == self._previous
        self._previous = current
        # In place (a 1080p frame costs a few milliseconds): one more still
        # frame, up to 255, and back to 0 where the pixel changed.
        count = self._count
        np.add(count, count < 255, out=count, casting="unsafe")
        count *= same
        padded = self._padded
        rows, cols = padded.shape[0] // CLIP_BLOCK, padded.shape[1] // CLIP_BLOCK
        blocks = padded.reshape(rows, CLIP_BLOCK, -1).min(axis=1).reshape(
            rows, cols, CLIP_BLOCK).min(axis=2) >= CLIP_STILL_FRAMES
        if blocks.all():
            return None  # nothing moves: keep the clip as it is
        left, top = self.rect[:2]
        keep = all(count[r[1] - top:r[3] - top, r[0] - left:r[2] - left].min()
                   >= CLIP_STILL_FRAMES for r in self.rects)
        if keep and self._blocks is not None and np.array_equal(blocks, self._blocks):
            return None
        self._blocks = blocks
        still = count >= CLIP_STILL_FRAMES
        rects = [(l + left, t + top, r + left, b + top)
                 for l, t, r, b in self._find(blocks, still, pixels)]
        if rects == self.rects:
            return None
        self.rects = rects
        return rects

    def _find(self, blocks, still, pixels):
        height, width = still.shape
        blocks = blocks.copy()
        minBlocks = -(-CLIP_MIN_SIDE // CLIP_BLOCK)
        found = []
        for _ in range(4 * MAX_STILL_RECTS):
            if len(found) >= MAX_STILL_RECTS or not blocks.any():
                break
            best = largestRectangle(blocks)
            if best is None or best[0] < minBlocks * minBlocks:
                break
            bl, bt, br, bb = best[1]
            blocks[bt:bb, bl:br] = False
            if br - bl < minBlocks or bb - bt < minBlocks:
                continue  # a thin strip
            rect = [bl * CLIP_BLOCK, bt * CLIP_BLOCK,
                    min(width, br * CLIP_BLOCK), min(height, bb * CLIP_BLOCK)]
            self._grow(rect, still)
            x0, y0, x1, y1 = rect
            if x1 - x0 < CLIP_MIN_SIDE or y1 - y0 < CLIP_MIN_SIDE:
                continue
            if looksGradual(pixels[y0:y1, x0:x1]):
                continue  # a still part of the video itself
            found.append(tuple(rect))
        return sorted(found)

    def _grow(self, rect, still):
        """
        Move C{rect}'s edges out pixel by pixel (less than a block) while
        what they take in is still: a window's edges seldom fall on blocks.
        """
        height, width = still.shape
        for _ in range(CLIP_BLOCK - 1):
            x0, y0, x1, y1 = rect
            if x0 > 0 and still[y0:y1, x0 - 1].all():
                rect[0] -= 1
            if x1 < width and still[y0:y1, x1].all():
                rect[2] += 1
            if y0 > 0 and still[y0 - 1, x0:x1].all():
                rect[1] -= 1
            if y1 < height and still[y1, x0:x1].all():
                rect[3] += 1
            if rect == [x0, y0, x1, y1]:
                break


class _Trace:
    __slots__ = ("first", "last", "count", "gradual")

    def __init__(self, now):
        self.first = self.last = now
        self.count = 0
        self.gradual = 0


class StreamDetector:
    """
    Follows damage rectangles and says when one has become video.
    """

    def __init__(self, mode=FILTER):
        if mode not in MODES:
            raise ValueError("streaming video mode %r is not one of %s"
                             % (mode, ", ".join(MODES)))
        self.mode = mode
        self._traces = {}
        self._scrolls = {}

    def update(self, rect, now, pixels=None):
        """
        The source replaced C{rect} at C{now}; C{pixels} returns its content
        (called only when needed).  Return the frames per second it has
        changed at if it is now to be streamed, else L{None}.
        """
        if self.mode == OFF:
            return None
        if self.mode == FILTER and area(rect) < MIN_AREA:
            return None
        if self._scrolling(rect, now):
            self._traces.pop(rect, None)
            return None
        trace = self._traces.get(rect)
        if trace is None or now - trace.last > DETECTION_MAX_GAP:
            if len(self._traces) >= MAX_TRACES:
                self._prune(now)
            trace = self._traces[rect] = _Trace(now)
        trace.count += 1
        trace.last = now
        if self.mode == FILTER and pixels is not None and looksGradual(pixels()):
            trace.gradual += 1
        if trace.count < START_FRAMES:
            return None
        if self.mode == FILTER and trace.gradual < GRADUAL_SHARE * trace.count:
            return None
        del self._traces[rect]
        elapsed = trace.last - trace.first
        return (trace.count - 1) / elapsed if elapsed > 0 else float(MAX_FPS)

    def forget(self, rect):
        self._traces.pop(rect, None)

    def scrolled(self, rect, now):
        """
        C{rect} was brought up to date by moving the client's own pixels
        (COPY_BITS): what changes there now is a scroll, not video, until
        L{SCROLL_HOLD} after the last such news.
        """
        self._scrolls[tuple(rect)] = now
        for kept, when in list(self._scrolls.items()):
            if now - when > SCROLL_HOLD:
                del self._scrolls[kept]

    def _scrolling(self, rect, now):
        return any(now - when <= SCROLL_HOLD and overlaps(rect, kept)
                   for kept, when in self._scrolls.items())

    def _prune(self, now):
        for rect, trace in list(self._traces.items()):
            if now - trace.last > DETECTION_MAX_GAP:
                del self._traces[rect]
        while len(self._traces) >= MAX_TRACES:
            oldest = min(self._traces, key=lambda r: self._traces[r].last)
            del self._traces[oldest]


class VideoStream:
    """
    One stream: its id, the rectangle it was created for and the one its
    frames now cover, and what is waiting to be sent.
    """

    def __init__(self, streamId, rect, now, fps, codec=None, encoder=None):
        self.id = streamId
        self.codec = codec
        self.encoder = encoder
        self.rect = rect
        self.frameRect = rect
        self.lastDamage = now
        self.lastCapture = None
        self.inputFps = fps
        self._inputCount = 0
        self._inputStart = now
        self.dirty = True
        self.blocked = False
        self.inFlight = 0
        self.frames = 0
        self._nextSeq = 0
        self._sendSeq = 0
        self._done = {}
        self.reportId = random.getrandbits(32)
        self.still = StillAreas(rect)

    @property
    def sized(self):
        return self.frameRect != self.rect

    def damaged(self, now):
        """
        New content; return whether it replaces content that never went out
        because the link was full (a dropped frame).
        """
        dropped = self.dirty and self.blocked
        self.lastDamage = now
        self.dirty = True
        self._inputCount += 1
        elapsed = now - self._inputStart
        if elapsed >= 2.0:
            self.inputFps = self._inputCount / elapsed
            self._inputCount = 0
            self._inputStart = now
        return dropped


class StreamManager:
    """
    The streams of one display channel.

    @param channel: what the streams need from their display channel:
        C{sendMessage(name, **fields)}, C{refresh(rect)} (send C{rect}
        losslessly), C{streamStarted(rect)} (forget pending lossless
        updates inside C{rect}), C{queuedBytes()}, C{bytesWritten}, C{mmTime()} (the
        client's multimedia clock, ms), C{canSendVideo()} (the channel is
        neither paused nor over its ACK window), C{clientCaps} (the
        display channel caps of the client) and C{session} (whose
        C{videoDelay(manager, ms)} hears the playback delay, so that the
        client's sound is stamped and buffered alike).
    @param source: the display source (its C{framebuffer()}).
    @param clock: an C{IReactorTime}.
    @param encoder: a L{spicesrv.display.video.ThreadedEncoder} or
        L{spicesrv.display.video.SynchronousEncoder}: where frames are
        encoded.
    @param codecs: the server's L{spicesrv.display.codecs.VideoCodec}s, most
        preferred first (the built-in MJPEG alone by default).
    """

    log = Logger()

    def __init__(self, channel, source, clock, encoder, mode=FILTER, surfaceId=0,
                 codecs=None):
        self.channel = channel
        self.codecs = list(codecs) if codecs else [VideoCodec(SPICE, VideoCodecType.MJPEG)]
        self.clientPreference = None
        self.source = source
        self.clock = clock
        self.encoder = encoder
        self.detector = StreamDetector(mode)
        self.surfaceId = surfaceId
        self.rate = ratecontrol.RateControl()
        self.streams = {}
        self._lastStamp = None
        self._pumpCall = None
        self._timeoutCall = None
        self._sampleCall = None
        self._toldDelay = 0
        self.created = 0
        self.ended = 0

    @property
    def mode(self):
        return self.detector.mode

    def _caps(self):
        return self.channel.clientCaps

    # -- codecs ------------------------------------------------------------------

    def codecOrder(self):
        """
        The server's codecs in the order this client gets them.
        """
        if self.clientPreference is None:
            return list(self.codecs)
        return sortByClientPreference(self.codecs, self.clientPreference)

    def setClientPreference(self, codecTypes):
        """
        The client's PREFERRED_VIDEO_CODEC_TYPE: its codecs, most wanted
        first.  Running streams end (their areas refreshed losslessly), as
        libspice-server's do; the next ones use the new order.
        """
        self.clientPreference = list(codecTypes)
        for stream in list(self.streams.values()):
            self.end(stream)

    def _fit(self, rect, codec):
        """
        C{rect} as a stream of C{codec} covers it: even sides for the 4:2:0
        codecs (grown by a pixel inside the surface), or L{None} if it
        cannot be.
        """
        if codec.encoder == SPICE:
            return rect
        left, top, right, bottom = rect
        bounds = (self.source.width, self.source.height)
        edges = [left, top, right, bottom]
        for low, high, limit in ((0, 2, bounds[0]), (1, 3, bounds[1])):
            if (edges[high] - edges[low]) % 2:
                if edges[high] < limit:
                    edges[high] += 1
                elif edges[low] > 0:
                    edges[low] -= 1
                else:
                    return None
        return tuple(edges)

    # -- damage ------------------------------------------------------------------

    def filterDamage(self, rects):
        """
        Take the damage that streams show and return the rest, to be sent
        losslessly.
        """
        if self.mode == OFF:
            return list(rects)
        now = self.clock.seconds()
        lossless = []
        for rect in rects:
            rect = tuple(rect)
            if self._absorb(rect, now):
                continue
            fps = self.detector.update(rect, now, lambda r=rect: self._pixels(r))
            if fps is not None and self._create(rect, now, fps):
                continue
            lossless.append(rect)
        if self.streams:
            self._schedulePump()
        return lossless

    def scrolled(self, rect):
        """
        The display channel sent C{rect} as COPY_BITS of the client's own
        picture: no stream for it while it scrolls.
        """
        self.detector.scrolled(rect, self.clock.seconds())

    def _pixels(self, rect):
        left, top, right, bottom = rect
        return self.source.framebuffer()[top:bottom, left:right]

    def _absorb(self, rect, now):
        """
        Whether C{rect} is (part of) a stream's next frame.
        """
        for stream in self.streams.values():
            if contains(stream.frameRect, rect):
                self._damaged(stream, now)
                return True
            if (contains(rect, stream.frameRect)
                    and area(rect) <= 2 * area(stream.frameRect)
                    and DisplayCap.SIZED_STREAM in self._caps()
                    and self._fit(rect, stream.codec) is not None):
                stream.frameRect = self._fit(rect, stream.codec)
                self._damaged(stream, now)
                return True
        for stream in list(self.streams.values()):
            if overlaps(rect, stream.frameRect):
                # Drawn across the stream's edge: the stream goes on, and
                # the rectangle goes losslessly.
                self._damaged(stream, now)
        return False

    def _damaged(self, stream, now):
        if stream.damaged(now):
            self.rate.dropped(now)

    # -- life cycle ---------------------------------------------------------------

    def _create(self, rect, now, fps):
        free = [i for i in range(MAX_STREAMS) if i not in self.streams]
        if not free:
            return False
        codec = chooseCodec(self.codecOrder(), self._caps())
        if codec is not None and self._fit(rect, codec) is None:
            codec = chooseCodec([], self._caps())
        if codec is None:
            return False  # the client decodes none of our codecs
        rect = self._fit(rect, codec)
        encoder = newStreamEncoder(codec, self.encoder, min(MAX_FPS, max(1.0, fps)))
        stream = VideoStream(free[0], rect, now, fps, codec, encoder)
        self.streams[stream.id] = stream
        self.created += 1
        self.channel.streamStarted(rect)
        left, top, right, bottom = rect
        width, height = right - left, bottom - top
        self.channel.sendMessage(
            "STREAM_CREATE", surface_id=self.surfaceId, id=stream.id,
            flags=STREAM_FLAG_TOP_DOWN, codec_type=codec.type, stamp=0,
            stream_width=width, stream_height=height, src_width=width, src_height=height,
            dest=dict(top=top, left=left, bottom=bottom, right=right), clip=None)
        if DisplayCap.STREAM_REPORT in self._caps():
            self.channel.sendMessage(
                "STREAM_ACTIVATE_REPORT", stream_id=stream.id, unique_id=stream.reportId,
                max_window_size=ratecontrol.REPORT_WINDOW,
                timeout_ms=ratecontrol.REPORT_TIMEOUT_MS)
        self.log.debug("stream {id}: {codec}, {width}x{height} at ({left}, {top}), {fps:.1f} fps",
                       id=stream.id, codec=codec.name, width=width, height=height, left=left,
                       top=top, fps=fps)
        self._scheduleTimeout()
        self._scheduleSample()
        self._tellDelay()
        return True

    def end(self, stream, refresh=True):
        """
        Destroy C{stream} on the client and, with C{refresh}, send its area
        losslessly.
        """
        if self.streams.pop(stream.id, None) is None:
            return
        self.ended += 1
        self.channel.sendMessage("STREAM_DESTROY", id=stream.id)
        self._tellDelay()
        if refresh:
            self.channel.refresh(stream.frameRect)
            if stream.sized:
                self.channel.refresh(stream.rect)

    def endAll(self):
        """
        Forget every stream without refreshing (the surface is going away),
        telling the client with one STREAM_DESTROY_ALL.
        """
        if self.streams:
            self.streams.clear()
            self.channel.sendMessage("STREAM_DESTROY_ALL")
            self._tellDelay()

    def stop(self):
        """
        The channel is gone: cancel every timer.
        """
        self.streams.clear()
        self._tellDelay()
        for name in ("_pumpCall", "_timeoutCall", "_sampleCall"):
            call = getattr(self, name)
            if call is not None and call.active():
                call.cancel()
            setattr(self, name, None)

    def _scheduleTimeout(self):
        if self._timeoutCall is None and self.streams:
            self._timeoutCall = self.clock.callLater(STREAM_TIMEOUT / 4, self._checkTimeouts)

    def _checkTimeouts(self):
        self._timeoutCall = None
        now = self.clock.seconds()
        for stream in list(self.streams.values()):
            if now - stream.lastDamage >= STREAM_TIMEOUT and not stream.inFlight:
                self.log.debug("stream {id}: still for {timeout} s, refreshing losslessly",
                               id=stream.id, timeout=STREAM_TIMEOUT)
                self.end(stream)
        self._scheduleTimeout()

    # -- the link ------------------------------------------------------------------

    def sampleLink(self, drained=False):
        """
        Note how much the link has taken (for L{RateControl}'s estimate);
        C{drained}: the transport has just written out its buffer.
        """
        self._sample(drained)

    def _sample(self, drained=False):
        self.rate.sample(self.clock.seconds(), self.channel.bytesWritten,
                         self.channel.queuedBytes(), drained)

    def _scheduleSample(self):
        if self._sampleCall is None and self.streams:
            self._sampleCall = self.clock.callLater(0.01, self._periodicSample)

    def _periodicSample(self):
        self._sampleCall = None
        self._sample()
        self._scheduleSample()

    # -- frames --------------------------------------------------------------------

    def resume(self):
        """
        The channel can send again.
        """
        if self.streams:
            self._schedulePump()

    def _schedulePump(self, delay=0):
        if self._pumpCall is None:
            self._pumpCall = self.clock.callLater(delay, self._pump)

    def _pump(self):
        self._pumpCall = None
        now = self.clock.seconds()
        retry = None
        for stream in list(self.streams.values()):
            if not stream.dirty or stream.inFlight >= stream.encoder.maxInFlight:
                continue
            if stream.lastCapture is not None:
                wait = stream.lastCapture + 0.9 / MAX_FPS - now
                if wait > 0:
                    retry = wait if retry is None else min(retry, wait)
                    continue
            self._sample()
            if not self.channel.canSendVideo() or not self.rate.admit(self.channel.queuedBytes()):
                # Wait for the link with the newest content; what the source
                # draws meanwhile replaces it (a dropped frame).
                stream.blocked = True
                retry = RETRY_INTERVAL
                continue
            stream.blocked = False
            self._capture(stream, now)
        if retry is not None:
            self._schedulePump(retry)

    def _capture(self, stream, now):
        stream.dirty = False
        stream.inFlight += 1
        seq = stream._nextSeq
        stream._nextSeq += 1
        stream.lastCapture = now
        left, top, right, bottom = stream.frameRect
        pixels = self.source.framebuffer()[top:bottom, left:right].copy()
        # Before the frame (a synchronous encoder sends it at once): the
        # client shows it, and the ones it still holds, inside the new clip.
        self._updateClip(stream, pixels)
        stamp = (self.channel.mmTime() + int(self.rate.delayMs)) & 0xFFFFFFFF
        if self._lastStamp is not None and 0 < (self._lastStamp - stamp) & 0xFFFFFFFF < 1 << 31:
            stamp = self._lastStamp  # never earlier than the frame before
        self._lastStamp = stamp
        self.rate.inputFps = min(MAX_FPS, max(1.0, stream.inputFps))
        frameRect = stream.frameRect
        d = stream.encoder.encode(pixels, now * 1000.0, self.rate)
        d.addCallback(self._encoded, stream, seq, frameRect, stamp)
        d.addErrback(self._failed, stream, seq)

    def _updateClip(self, stream, pixels):
        """
        Follow the still parts of C{stream}'s frames; when they change, send
        the new clip and the newly still rectangles losslessly.
        """
        if stream.still.rect != stream.frameRect:
            # A sized stream: its frames cover another rectangle now.
            if stream.still.rects:
                self.channel.sendMessage("STREAM_CLIP", id=stream.id, clip=None)
            stream.still = StillAreas(stream.frameRect)
        before = stream.still.rects
        rects = stream.still.update(pixels)
        if rects is None:
            return
        visible = [stream.frameRect]
        while True:
            visible = [stream.frameRect]
            for rect in rects:
                visible = subtract(visible, rect)
            if len(visible) <= MAX_CLIP_RECTS or not rects:
                break
            rects = sorted(rects, key=area)[1:]
            stream.still.rects = rects
        if not rects:
            self.log.debug("stream {id}: unclipped", id=stream.id)
            self.channel.sendMessage("STREAM_CLIP", id=stream.id, clip=None)
            return
        self.log.debug("stream {id}: clipped, still {rects}", id=stream.id, rects=rects)
        self.channel.sendMessage(
            "STREAM_CLIP", id=stream.id,
            clip=[dict(left=l, top=t, right=r, bottom=b) for l, t, r, b in visible])
        for rect in rects:
            if rect not in before:
                self.channel.refresh(rect)

    def _encoded(self, data, stream, seq, frameRect, stamp):
        stream.inFlight -= 1
        stream._done[seq] = (data, frameRect, stamp)
        # Frames encoded side by side go out in the order they were taken.
        while stream._sendSeq in stream._done:
            done = stream._done.pop(stream._sendSeq)
            stream._sendSeq += 1
            if done is not None and self.streams.get(stream.id) is stream:
                self._send(stream, *done)
        if stream.dirty and self.streams.get(stream.id) is stream:
            self._schedulePump()

    def _send(self, stream, data, frameRect, stamp):
        self.rate.encoded(len(data), self.clock.seconds())
        stream.frames += 1
        if frameRect == stream.rect:
            self.channel.sendMessage("STREAM_DATA", id=stream.id, multi_media_time=stamp,
                                     data=data)
        else:
            left, top, right, bottom = frameRect
            self.channel.sendMessage(
                "STREAM_DATA_SIZED", id=stream.id, multi_media_time=stamp,
                width=right - left, height=bottom - top,
                dest=dict(top=top, left=left, bottom=bottom, right=right), data=data)

    def _failed(self, failure, stream, seq):
        stream.inFlight -= 1
        stream._done[seq] = None
        self.log.failure("stream {id}: encoding failed; ending the stream", failure,
                         id=stream.id)
        self.end(stream)

    # -- the client's reports -------------------------------------------------------

    def report(self, msg):
        """
        A STREAM_REPORT from the client.
        """
        stream = self.streams.get(msg.stream_id)
        if stream is None or msg.unique_id != stream.reportId:
            return
        if msg.num_frames == 0 and msg.num_drops == 0xFFFFFFFF:
            self.log.warn("stream {id}: the client cannot decode it; ending it", id=stream.id)
            self.end(stream)
            return
        self.rate.report(msg.num_frames, msg.num_drops, msg.last_frame_delay)
        self._tellDelay()

    def _tellDelay(self):
        """
        Tell the session how far ahead frames are stamped now (0 without a
        stream), when that changed: its playback channel follows it.
        """
        delay = int(self.rate.delayMs) if self.streams else 0
        if delay != self._toldDelay:
            self._toldDelay = delay
            self.channel.session.videoDelay(self, delay)
