"""
Lossy stills where they pay: which parts of a DRAW_COPY go as JPEG, and
when the client gets them back exactly.

Three questions, each answered here once:

- B{What the operator allows} (L{StillPolicy}), with QEMU's options:
  C{image-compression} and C{jpeg-wan-compression}.  libspice-server uses
  JPEG only in place of its QUIC codec, which its C{auto_glz} and
  C{auto_lz} modes pick for photographic bitmaps and C{quic} picks for
  every bitmap; C{glz}, C{lz}, C{lz4} and C{off} never go lossy.  Then
  C{jpeg-wan-compression} says when: C{auto} only for a client on a
  low-bandwidth link (libspice: under 10 Mibit/s), C{always}, or C{never}.
  spicesrv implements raw bitmaps, LZ4, and JPEG for photographs: C{off}
  sends raw bitmaps; every other value sends LZ4 (raw to a client without
  LZ4); C{auto_glz}, C{auto_lz} and C{quic} may send photographic areas
  as JPEG (C{quic} as the C{auto} modes: text never goes lossy here).  A
  client's PREFERRED_COMPRESSION replaces the server's value for that
  client, as in libspice.
- B{Which pixels are photographic} (L{photoSpans}): per 64-pixel-wide tile
  of a strip, on a sample of its rows, the number of distinct colours, the
  share of flat neighbours (equal pixels) and of hard edges (a jump of
  more than L{HARD_EDGE} in a channel).  Photographs have many colours,
  few equal neighbours and few hard edges; text and UI have few colours,
  wide flat areas and hard edges, and stay lossless.
- B{Whether it pays} (L{StillPolicy.jpegAllowed}): with C{auto}, when the
  display channel's measured link rate
  (L{spicesrv.display.ratecontrol.RateControl}) is under L{WAN_RATE}; while
  the rate is unknown the link counts as fast, as libspice's does before
  its bandwidth test ends.
- B{How fast the link is before anything was measured} (L{WanProbe}): the
  rate control measures a link only once it has been busy for a while,
  too late for a client's first picture.  libspice measures every client
  at its main channel's start with 250 KB of PINGs; spicesrv measures with
  the picture itself, and only when it matters (C{auto}, and photographs
  on screen): the first L{PROBE_BYTES} go losslessly, and if the link has
  not delivered them within the time a L{WAN_RATE} link would take, it is
  slow and the rest of the picture's photographs go as JPEG.

A strip is encoded on the reactor thread, as LZ4 strips are: measured on
the 2-core machine here, a 1920x64 strip of a photograph takes 0.47 ms as
JPEG and 0.43 ms as LZ4, a whole full-HD photograph 7.8 ms as JPEG and
10.1 ms as LZ4 (which hardly shrinks it: 8.3 MB against 244 KB); so the
display channel's updates keep their order without a thread pool.

And afterwards (L{Stills.lossy}): a still sent as JPEG ends pixel-exact,
as a stream's area does.  libspice-server never refreshes a lossy still;
spicesrv sends every area that went as JPEG again losslessly once the link
has been idle for L{IDLE_REFRESH} seconds (nothing queued, nothing
damaged, no stream running).  The whole JPEG rectangle is refreshed even
if lossless updates covered parts of it since: spice-html5 decodes JPEG
asynchronously, so a later update may have been drawn under it.
"""

import collections

import numpy as np

from spicesrv.display.encoders import (
    IMAGE_TYPE_BITMAP, IMAGE_TYPE_JPEG, IMAGE_TYPE_LZ4, encode_bitmap, encode_jpeg,
    encode_lz4, new_image_id)
from spicesrv.display.region import Damage

#: QEMU's C{image-compression} values, and what spicesrv does with each.
IMAGE_COMPRESSIONS = ("auto_glz", "auto_lz", "quic", "glz", "lz", "lz4", "off")
#: The values whose photographic areas may go as JPEG.
LOSSY_COMPRESSIONS = ("auto_glz", "auto_lz", "quic")
DEFAULT_IMAGE_COMPRESSION = "auto_glz"
#: QEMU's C{jpeg-wan-compression} values.
JPEG_WAN_MODES = ("auto", "never", "always")
DEFAULT_JPEG_WAN = "auto"

#: SpiceImageCompression numbers of PREFERRED_COMPRESSION (protocol.md 6.1).
COMPRESSION_BY_NUMBER = {1: "off", 2: "auto_glz", 3: "auto_lz", 4: "quic", 5: "glz",
                         6: "lz", 7: "lz4"}

#: Below this link rate (bytes per second) a client is on a "wan" link:
#: libspice-server's 10 Mibit/s.
WAN_RATE = 10 * 1024 * 1024 / 8

#: The classifier's tile width, and the narrowest run of photographic tiles
#: and the lowest strip that go as JPEG (smaller ones are not worth a
#: separate, lossy image).
TILE = 64
MIN_SPAN = 128
MIN_ROWS = 8
#: A rectangle that may go as JPEG is classified in bands of this many rows
#: (a multiple of JPEG's 16-row blocks).
BAND_ROWS = 64
#: Rows of a band the classifier looks at, at most.
SAMPLE_ROWS = 16
#: A neighbour differing by more than this in a channel is a hard edge.
HARD_EDGE = 48
#: A photographic tile: at least this share of its sampled pixels are
#: distinct colours, at most this share of neighbours are equal, at most
#: this share are hard edges.
PHOTO_MIN_COLOURS = 0.25
PHOTO_MAX_FLAT = 0.4
PHOTO_MAX_HARD = 0.08

#: Seconds the link must be idle before JPEG areas are refreshed exactly.
IDLE_REFRESH = 0.5
#: While the picture keeps changing (a page scrolling on a slow link), some
#: JPEG rows are refreshed exactly with each update that leaves the link's
#: queue under this many seconds of it, so that less waits for the idle
#: refresh.
SPARE_QUEUE_SECONDS = 0.04

#: The link test before a first picture with photographs: this many bytes
#: of it go losslessly first (libspice's bandwidth test sends 250 KB), and
#: the queue is looked at every L{PROBE_POLL} seconds.
PROBE_BYTES = 256 * 1024
PROBE_POLL = 0.01

RAW = "raw"
LZ4 = "lz4"
JPEG = "jpeg"
KIND_BY_TYPE = {IMAGE_TYPE_BITMAP: RAW, IMAGE_TYPE_LZ4: LZ4, IMAGE_TYPE_JPEG: JPEG}


def _tileStats(pixels):
    """
    Per L{TILE}-wide column tile of C{pixels} (BGRX): the shares of
    distinct colours, flat neighbours and hard edges in a row sample.
    """
    height, width = pixels.shape[:2]
    rows = pixels[::max(1, -(-height // SAMPLE_ROWS))]
    n = rows.shape[0]
    tiles = -(-width // TILE)
    padded = tiles * TILE
    packed = np.ascontiguousarray(rows).view(np.uint32)[..., 0] & 0xFFFFFF
    if padded != width:
        # Repeating the last column adds no colour and only flat pairs,
        # which are not counted (below).
        packed = np.pad(packed, ((0, 0), (0, padded - width)), mode="edge")
    byTile = packed.reshape(n, tiles, TILE).transpose(1, 0, 2).reshape(tiles, n * TILE)
    ordered = np.sort(byTile, axis=1)
    distinct = 1 + (ordered[:, 1:] != ordered[:, :-1]).sum(axis=1)
    # Neighbours in a row (a tile's last pixel pairs with the next one's
    # first): equal colours, or a channel jumping by more than HARD_EDGE.
    a, b = rows[:, 1:], rows[:, :-1]
    jumps = np.ascontiguousarray((np.maximum(a, b) - np.minimum(a, b)) > HARD_EDGE)
    edges = np.zeros((n, padded), np.uint8)
    flats = np.zeros((n, padded), np.uint8)
    edges[:, :width - 1] = (jumps.view(np.uint32)[..., 0] & 0x010101) != 0
    flats[:, :width - 1] = packed[:, 1:width] == packed[:, :width - 1]
    flat = flats.reshape(n, tiles, TILE).sum(axis=(0, 2))
    hard = edges.reshape(n, tiles, TILE).sum(axis=(0, 2))
    columns = np.minimum(TILE, width - TILE * np.arange(tiles))
    samples = columns * n
    pairs = np.maximum(1, (columns - (np.arange(tiles) == tiles - 1)) * n)
    return distinct / samples, flat / pairs, hard / pairs


def photoTiles(pixels):
    """
    A boolean per L{TILE}-wide tile of C{pixels}: whether it looks like a
    photograph (many colours, few flat neighbours, few hard edges).
    """
    colours, flat, hard = _tileStats(pixels)
    return ((colours >= PHOTO_MIN_COLOURS) & (flat <= PHOTO_MAX_FLAT)
            & (hard <= PHOTO_MAX_HARD))


def photoSpans(pixels):
    """
    The column ranges C{(x0, x1)} of C{pixels} (BGRX, a strip of a
    framebuffer) that are photographic and wide enough for JPEG.
    """
    height, width = pixels.shape[:2]
    if height < MIN_ROWS or width < MIN_SPAN:
        return []
    spans = []
    start = None
    tiles = photoTiles(pixels)
    for i, photo in enumerate(list(tiles) + [False]):
        if photo and start is None:
            start = i
        elif not photo and start is not None:
            x0, x1 = start * TILE, min(width, i * TILE)
            if x1 - x0 >= MIN_SPAN:
                spans.append((x0, x1))
            start = None
    return spans


def looksPhotographic(pixels):
    """
    Whether most of C{pixels} (BGRX) is photographic.
    """
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        return False
    covered = sum(x1 - x0 for x0, x1 in photoSpans(pixels))
    return covered >= 0.5 * pixels.shape[1]


class WanProbe:
    """
    Whether the link is under L{WAN_RATE}, from C{queued} bytes not yet
    delivered at C{start}: if the queue empties within the time a
    L{WAN_RATE} link takes to carry them, the link is fast; if not, it is
    slow, and what it delivered meanwhile is its rate.
    """

    def __init__(self, start, queued):
        self.start = start
        self.queued = max(1, queued)

    def check(self, now, queued):
        """
        The link's rate (bytes per second; a lower bound when fast), or
        L{None} while it cannot be told yet.
        """
        elapsed = max(1e-6, now - self.start)
        if queued <= 0:
            return max(WAN_RATE, self.queued / elapsed)
        if elapsed >= self.queued / WAN_RATE:
            return max(0.0, self.queued - queued) / elapsed
        return None


def anyPhotographs(frame):
    """
    Whether some band of C{frame} has a photographic span (a band in four
    is looked at).
    """
    for top in range(0, frame.shape[0], 4 * BAND_ROWS):
        if photoSpans(frame[top:top + BAND_ROWS]):
            return True
    return False


class StillPolicy:
    """
    What the operator allows (C{--image-compression},
    C{--jpeg-wan-compression}) and what a client prefers: which lossless
    encoding goes, and whether photographic areas may go as JPEG at a
    given link rate.
    """

    def __init__(self, imageCompression=DEFAULT_IMAGE_COMPRESSION, jpegWan=DEFAULT_JPEG_WAN):
        if imageCompression not in IMAGE_COMPRESSIONS:
            raise ValueError("image compression %r is not one of %s"
                             % (imageCompression, ", ".join(IMAGE_COMPRESSIONS)))
        if jpegWan not in JPEG_WAN_MODES:
            raise ValueError("jpeg-wan-compression %r is not one of %s"
                             % (jpegWan, ", ".join(JPEG_WAN_MODES)))
        self.imageCompression = imageCompression
        self.jpegWan = jpegWan

    def lossless(self, clientHasLz4):
        """
        C{"raw"} or C{"lz4"}: how exact images go.
        """
        if self.imageCompression == "off" or not clientHasLz4:
            return RAW
        return LZ4

    def jpegAllowed(self, rate):
        """
        Whether photographic areas go as JPEG now, the link carrying
        C{rate} bytes per second (L{None}: not measured yet).
        """
        if self.imageCompression not in LOSSY_COMPRESSIONS or self.jpegWan == "never":
            return False
        if self.jpegWan == "always":
            return True
        return rate is not None and rate < WAN_RATE


class Stills:
    """
    The stills of one display channel: each DRAW_COPY's images, and the
    areas sent as JPEG that still wait for their exact refresh.

    @ivar policy: the L{StillPolicy} (the client's preference may replace
        it).
    @ivar lossy: a L{Damage} of the areas the client holds as JPEG.
    @ivar sent: how many images of each kind (C{"raw"}, C{"lz4"},
        C{"jpeg"}) went, and C{bytesSent} their bytes.
    """

    def __init__(self, policy, width, height):
        self.policy = policy
        self.lossy = Damage(width, height)
        self.sent = collections.Counter()
        self.bytesSent = collections.Counter()
        self.refreshed = 0
        self.probedRate = None

    def wantsProbe(self, frame, rate):
        """
        Whether the first picture, C{frame}, should test the link
        (L{WanProbe}): JPEG depends on the rate, which is not known, and
        the picture has photographs.
        """
        policy = self.policy
        return (rate is None and self.probedRate is None and policy.jpegWan == "auto"
                and policy.imageCompression in LOSSY_COMPRESSIONS and anyPhotographs(frame))

    def resize(self, width, height):
        self.lossy = Damage(width, height)

    def images(self, pixels, rect, lossless, rate=None, exact=False):
        """
        The images of the strip C{pixels} at C{rect}
        (C{(left, top, right, bottom)}), as C{(rect, image)} pairs: its
        photographic spans as JPEG when the policy allows it at C{rate}
        (never with C{exact}), the rest with C{lossless} (C{"raw"} or
        C{"lz4"}).
        """
        if rate is None:
            rate = self.probedRate
        if exact or not self.policy.jpegAllowed(rate):
            yield self._image(pixels, rect, lossless)
            return
        left, top, right, bottom = rect
        for y in range(0, bottom - top, BAND_ROWS):
            band = (left, top + y, right, min(bottom, top + y + BAND_ROWS))
            for image in self._band(pixels[y:y + BAND_ROWS], band, lossless):
                yield image

    def _band(self, pixels, rect, lossless):
        left, top, right, bottom = rect
        spans = photoSpans(pixels)
        x = 0
        width = right - left
        for x0, x1 in spans + [(width, width)]:
            if x0 > x:
                yield self._image(pixels[:, x:x0], (left + x, top, left + x0, bottom),
                                  lossless)
            if x1 > x0:
                sub = (left + x0, top, left + x1, bottom)
                self.lossy.add(sub)
                yield self._image(pixels[:, x0:x1], sub, JPEG)
            x = x1

    def _image(self, pixels, rect, kind):
        encode = {RAW: encode_bitmap, LZ4: encode_lz4, JPEG: encode_jpeg}[kind]
        image = encode(pixels, new_image_id())
        self.sent[kind] += 1
        self.bytesSent[kind] += len(image)
        return rect, image

    def takeLossy(self):
        """
        The areas held as JPEG, to be sent exactly now; forgotten here.
        """
        rects = self.lossy.take()
        self.refreshed += len(rects)
        return rects
