"""
Scrolls as COPY_BITS: finding, in a damaged rectangle, the parts that are
the client's own picture moved, so that they go as one small
SPICE_MSG_DISPLAY_COPY_BITS (the client copies them within its surface, as
QXL's COPY_BITS commands make libspice-server do) and only what is new goes
as an image.

Display sources hand over framebuffers, not drawing commands, so the shift
is found by comparison: L{ClientView} keeps what the client was sent (every
lossless image and every copy applied to a copy of its surface, and which
pixels it holds lossily: stream frames, which no copy reads, and JPEG stills,
which a copy moves as they are), and L{planCopy} compares a damaged
rectangle of the new frame against it:

1. a signature per row (per column for horizontal shifts) of the rectangle,
   from a sample of its pixels, in the new frame and in the client's view;
2. every row whose signature is unique in the view votes for the offset at
   which it found itself; the most voted offset other than zero is the
   candidate, if enough rows agree;
3. the candidate is verified exactly, pixel by pixel, in tiles of
   L{TILE} pixels along the row: the tiles equal to the view's at the
   offset, whose source holds nothing lossy, are the copy (a clip list of
   rectangles under one box); what is neither copied nor already equal to
   the view is left to be drawn.

Everything stays pixel-exact: a signature only proposes an offset, the
comparison decides.  Because the comparison is against the client's view,
not the source's previous frame, damage that piled up while the client was
slow gives the whole shift since the client's last update in one copy.
"""

import numpy as np

from spicesrv.display.region import SMALL_WASTE, Damage, overlaps

#: Tile length (pixels along a row, or along a column for horizontal
#: shifts) in which the shifted picture is verified.
TILE = 32
#: Rows (or columns) sampled per signature.
SAMPLES = 64
#: A rectangle smaller than this (pixels, or rows and columns) is sent as
#: it is: a few characters typed are not worth a comparison.
MIN_AREA = 64 * 64
MIN_LINES = 16
#: How many rows (and what share of the rows with unique signatures) must
#: agree on an offset before it is verified.
MIN_VOTES = 8
MIN_VOTE_SHARE = 0.25
#: A copy must cover at least this share of the rectangle to be sent.
MIN_COPIED_SHARE = 0.25
#: The most rectangles (COPY_BITS) one copy may have; a picture that only
#: partly moved in finer pieces than that goes as images.
MAX_CLIP_RECTS = 32
#: Rectangles left to draw (bands of rows, top to bottom, so that the
#: picture completes downwards as with whole images) are merged down to at
#: most this many.
MAX_DRAW_RECTS = 8
#: Rows of the client's inexact pixels closer than this are refreshed as
#: one band (L{ClientView.inexact}): a scroll on a slow link leaves JPEG rows
#: between exact ones, and a band over both would send the exact ones again.
BAND_GAP = 2
#: The width of the columns L{ClientView.inexact} looks at separately.
INEXACT_COLUMN = 64

_rng = np.random.default_rng(0x5eed)
_MULTIPLIERS = (_rng.integers(1, 1 << 62, SAMPLES, dtype=np.int64).astype(np.uint64)
                | np.uint64(1))


def pixels32(frame):
    """
    C{frame} (C{(height, width, 4)} uint8, BGRX) seen as C{(height, width)}
    uint32, without copying.
    """
    return frame.view(np.uint32)[..., 0]


def signatures(lines):
    """
    A uint64 signature of every line (row) of the 2-D uint32 array
    C{lines}, from up to L{SAMPLES} of its pixels, evenly spread (every
    so many: a slice, not a gather, which costs several times more).
    """
    count = lines.shape[1]
    if count > SAMPLES:
        lines = lines[:, ::-(-count // SAMPLES)]
    mult = _MULTIPLIERS[:lines.shape[1]]
    # Integer products and sums wrap modulo 2 ** 64, as a hash should.
    return lines.astype(np.uint64, order="C") @ mult


def findOffset(new, old):
    """
    The most likely offset C{d} (non-zero) such that line C{i} of C{new} is
    line C{i + d} of C{old} for many lines (2-D uint32 arrays of the same
    shape), or L{None}.
    """
    lines = new.shape[0]
    if lines < 2:
        return None
    newSig, oldSig = signatures(new), signatures(old)
    values, first, counts = np.unique(oldSig, return_index=True, return_counts=True)
    unique = counts == 1
    values, first = values[unique], first[unique]
    if len(values) < MIN_VOTES:
        return None
    pos = np.searchsorted(values, newSig)
    pos[pos == len(values)] = 0
    found = values[pos] == newSig
    offsets = first[pos[found]] - np.nonzero(found)[0]
    offsets = offsets[offsets != 0]
    if len(offsets) < MIN_VOTES:
        return None
    candidates, votes = np.unique(offsets, return_counts=True)
    best = int(np.argmax(votes))
    if votes[best] < max(MIN_VOTES, MIN_VOTE_SHARE * len(values)):
        return None
    return int(candidates[best])


_ONES = np.uint64(0x0101010101010101)


def _tiles(equal):
    """
    C{equal} (lines x pixels, bool) reduced to lines x tiles: whether every
    pixel of each L{TILE}-long piece of a line is true.
    """
    lines, count = equal.shape
    full = count // TILE
    parts = []
    if full:
        # Eight booleans (bytes of 0 or 1) at a time: a tile's words add up
        # to TILE / 8 in every byte, without carries, only if all are 1.
        words = np.ascontiguousarray(equal[:, :full * TILE]).view(np.uint64)
        sums = words.reshape(lines, full, TILE // 8).sum(axis=2, dtype=np.uint64)
        parts.append(sums == _ONES * np.uint64(TILE // 8))
    if count % TILE:
        parts.append(equal[:, full * TILE:].all(axis=1)[:, None])
    return np.concatenate(parts, axis=1)


def _tileAny(flags):
    lines, count = flags.shape
    full = count // TILE
    parts = []
    if full:
        parts.append(flags[:, :full * TILE].reshape(lines, full, TILE).any(axis=2))
    if count % TILE:
        parts.append(flags[:, full * TILE:].any(axis=1)[:, None])
    return np.concatenate(parts, axis=1)


def tileRects(tiles, length):
    """
    The true cells of C{tiles} (lines x tiles, bool) as rectangles C{(start,
    line0, end, line1)} in pixels along the line (the last tile ends at
    C{length}) and lines: lines with the same pattern are one band.
    """
    lines = tiles.shape[0]
    if lines == 0:
        return []
    changes = np.nonzero(np.any(tiles[1:] != tiles[:-1], axis=1))[0] + 1
    starts = np.concatenate(([0], changes))
    ends = np.concatenate((changes, [lines]))
    rects = []
    for line0, line1 in zip(starts.tolist(), ends.tolist()):
        row = tiles[line0]
        if not row.any():
            continue
        edges = np.diff(np.concatenate(([0], row.view(np.int8), [0])))
        for t0, t1 in zip(np.nonzero(edges == 1)[0].tolist(),
                          np.nonzero(edges == -1)[0].tolist()):
            rects.append((t0 * TILE, line0, min(length, t1 * TILE), line1))
    return rects


def _joinBands(rects):
    """
    Join the rectangles of one band (as L{tileRects} gives them, left to
    right) across their gaps when that at most doubles what is drawn: a
    band then changes in one image, left and right together.
    """
    joined = []
    for r in rects:
        if joined:
            last = joined[-1]
            if last[1] == r[1] and last[3] == r[3]:
                height = r[3] - r[1]
                gap = (r[0] - last[2]) * height
                drawn = (last[2] - last[0] + r[2] - r[0]) * height
                if gap <= max(SMALL_WASTE, drawn):
                    joined[-1] = (last[0], last[1], r[2], last[3])
                    continue
        joined.append(r)
    return joined


class Copy:
    """
    What moved: C{rects} (disjoint, surface coordinates) take the client's
    pixels from C{(dx, dy)} away (source = destination + offset), as if all
    were read before any is written.  They go as one COPY_BITS each, in an
    order in which no rectangle overwrites the source of a later one (away
    from where the pixels come from: top first when they come from below),
    because spice-html5 ignores a COPY_BITS clip list.
    """

    def __init__(self, dx, dy, rects):
        self.dx, self.dy = dx, dy
        if dy > 0 or dx > 0:
            key = lambda r: (r[1], r[0]) if dy else (r[0], r[1])
            rects = sorted(rects, key=key)
        else:
            key = lambda r: (-r[3], r[0]) if dy else (-r[2], r[1])
            rects = sorted(rects, key=key)
        self.rects = rects

    def __repr__(self):
        return "<Copy (%d, %d) %r>" % (self.dx, self.dy, self.rects)

    @property
    def box(self):
        return (min(r[0] for r in self.rects), min(r[1] for r in self.rects),
                max(r[2] for r in self.rects), max(r[3] for r in self.rects))

    @property
    def srcPos(self):
        left, top = self.box[:2]
        return (left + self.dx, top + self.dy)

    def sources(self):
        return [(l + self.dx, t + self.dy, r + self.dx, b + self.dy)
                for l, t, r, b in self.rects]

    @property
    def area(self):
        return sum((r[2] - r[0]) * (r[3] - r[1]) for r in self.rects)


class Plan:
    """
    How to bring one damaged rectangle up to date: draw C{before}, then
    apply C{copy} (L{None}: nothing moved), then draw C{after}, each list
    top to bottom.  The C{before} rectangles are no copy's source (drawing
    them first changes nothing the copy reads) and end above the copy's
    lowest row: the picture still completes downwards, its last rows last,
    as with whole images (a client, or a frame counter in the corner, sees
    the bottom change only when all above is done).
    """

    def __init__(self, before, copy=None, after=()):
        self.before = list(before)
        self.copy = copy
        self.after = list(after)


class ClientView:
    """
    What a client's surface shows: L{pixels} where it was sent exactly;
    L{lossy} where it holds something else (stream frames, or nothing
    known), which no copy may read; and L{approx} where it holds a JPEG of
    L{pixels}, which a copy may move: the client's copy is then as inexact
    as its source, and marked so.

    The view costs 6 bytes a pixel (4.7 MB at 1024x768, 12 MB at full HD),
    so a channel lets it go while nothing is worth comparing
    (L{release}); it is then unknown (L{pixels}, L{lossy} and L{approx}
    are L{None}) until L{activate}, which starts it as all lossy: copies
    read only what was drawn after.
    """

    def __init__(self, width=0, height=0):
        self.resize(width, height)

    def resize(self, width, height):
        self.width, self.height = width, height
        self.pixels = np.zeros((height, width, 4), np.uint8)
        self.lossy = np.ones((height, width), bool)
        self.anyLossy = True
        self.approx = np.zeros((height, width), bool)
        self.anyApprox = False

    @property
    def active(self):
        """Whether the view is kept (not released)."""
        return self.pixels is not None

    def release(self):
        """Forget the view and free its memory."""
        self.pixels = self.lossy = self.approx = None
        self.anyLossy = True
        self.anyApprox = False

    def activate(self):
        """Keep the view again, if it was released (all of it lossy)."""
        if self.pixels is None:
            self.resize(self.width, self.height)

    def drew(self, frame, rect):
        """
        The client got C{rect} of C{frame} exactly.
        """
        if self.pixels is None:
            return
        left, top, right, bottom = rect
        self.pixels[top:bottom, left:right] = frame[top:bottom, left:right]
        if self.anyApprox:
            self.approx[top:bottom, left:right] = False
        if self.anyLossy:
            self.lossy[top:bottom, left:right] = False
            if (left, top, right, bottom) == (0, 0, self.width, self.height):
                self.anyLossy = False

    def markLossy(self, rect):
        """
        The client holds something inexact (or unknown) in C{rect}.
        """
        area = self._inside(rect)
        if area is not None:
            self.lossy[area] = True
            self.anyLossy = True

    def markApprox(self, rect):
        """
        The client got C{rect} (already drawn into the view) as a JPEG.
        """
        area = self._inside(rect)
        if area is not None:
            self.approx[area] = True
            self.anyApprox = True

    def _inside(self, rect):
        """
        The part of C{rect} on the surface as an index of the masks, or
        L{None} if there is none (or the view is released: all unknown).
        """
        if self.pixels is None:
            return None
        left, top, right, bottom = rect
        left, top = max(0, left), max(0, top)
        right, bottom = min(self.width, right), min(self.height, bottom)
        if left < right and top < bottom:
            return (slice(top, bottom), slice(left, right))
        return None

    def inexact(self, rect):
        """
        Where in C{rect} the client may hold something other than the
        view's pixels (L{lossy} or L{approx}), as rectangles: the surface
        is cut in columns L{INEXACT_COLUMN} wide, each column in runs of
        rows that hold such pixels (runs less than L{BAND_GAP} rows apart
        join), and neighbouring columns with the same runs share their
        rectangles (a scroll on a slow link leaves JPEG rows between exact
        ones, and beside them a strip redrawn as JPEG every frame).  All of
        C{rect} while the view is released (nothing is known).
        """
        if self.pixels is None:
            return [rect]
        area = self._inside(rect)
        if area is None or not (self.anyLossy or self.anyApprox):
            return []
        if self.anyLossy and self.anyApprox:
            mask = self.lossy[area] | self.approx[area]
        else:
            mask = (self.lossy if self.anyLossy else self.approx)[area]
        left, top = area[1].start, area[0].start
        width = mask.shape[1]
        starts = range(0, width, INEXACT_COLUMN)
        columns = np.logical_or.reduceat(mask, list(starts), axis=1)
        rects = []
        open_ = {}                      # run -> left of the columns sharing it
        previous = ()
        for k, x in enumerate(list(starts) + [width]):
            runs = _runs(columns[:, k]) if k < len(starts) else ()
            for run in previous:
                if run not in runs:
                    y0, y1 = run
                    rects.append((left + open_.pop(run), top + y0, left + x, top + y1))
            for run in runs:
                open_.setdefault(run, x)
            previous = runs
        rects.sort(key=lambda r: (r[1], r[0]))
        return rects

    def holdsApprox(self, rect):
        """Whether any of C{rect} is held as a JPEG."""
        area = self._inside(rect) if self.anyApprox else None
        return area is not None and bool(self.approx[area].any())

    def copied(self, copy, rect=None):
        """
        The client applied C{copy}, or only its rectangle C{rect} (the
        copies of its rectangles are applied one after the other, in
        order).
        """
        if self.pixels is None:
            return
        rects = copy.rects if rect is None else [rect]
        for l, t, r, b in rects:
            sl, st, sr, sb = l + copy.dx, t + copy.dy, r + copy.dx, b + copy.dy
            # numpy copies overlapping source and destination as if the
            # source were read first, as the client's canvas does.
            self.pixels[t:b, l:r] = self.pixels[st:sb, sl:sr]
            if self.anyLossy:
                self.lossy[t:b, l:r] = self.lossy[st:sb, sl:sr]
            if self.anyApprox:
                self.approx[t:b, l:r] = self.approx[st:sb, sl:sr]


def _runs(rows):
    """
    The runs of C{True} in the bool array C{rows}, as C{(start, end)}
    pairs, runs less than L{BAND_GAP} apart joined.
    """
    where = np.flatnonzero(rows)
    if not len(where):
        return ()
    breaks = np.flatnonzero(np.diff(where) > BAND_GAP)
    starts = [where[0]] + [where[i + 1] for i in breaks]
    ends = [where[i] + 1 for i in breaks] + [where[-1] + 1]
    return tuple((int(a), int(b)) for a, b in zip(starts, ends))


def _planAxis(new, old, lossy, offset):
    """
    Verify C{offset} on lines x pixels arrays: return C{(moved, same)},
    lines x tiles bool arrays of the tiles that are the view's at the
    offset (with an exact source) and those equal to the view already.
    """
    lines = new.shape[0]
    first, last = max(0, -offset), lines - max(0, offset)
    tilesAcross = -(-new.shape[1] // TILE)
    moved = np.zeros((lines, tilesAcross), bool)
    if last > first:
        moved[first:last] = _tiles(new[first:last] == old[first + offset:last + offset])
        if lossy is not None:
            moved[first:last] &= ~_tileAny(lossy[first + offset:last + offset])
    todo = np.nonzero(~moved.all(axis=1))[0]
    same = np.zeros_like(moved)
    if len(todo):
        # Only the lines not wholly moved are compared in place.
        same[todo] = _tiles(new[todo] == old[todo])
        if lossy is not None:
            same[todo] &= ~_tileAny(lossy[todo])
    return moved, same


def worthComparing(rect):
    """
    Whether a damaged C{rect} is large enough to look for a copy in it.
    """
    width, height = rect[2] - rect[0], rect[3] - rect[1]
    return width * height >= MIN_AREA and min(width, height) >= MIN_LINES


def planCopy(frame, view, rect):
    """
    How to send C{rect} of C{frame} to a client whose surface is C{view}:
    a L{Plan}, with a copy when part of the rectangle is the client's
    picture shifted vertically or horizontally within the rectangle.
    """
    left, top, right, bottom = rect
    width, height = right - left, bottom - top
    if (not worthComparing(rect) or view.pixels is None
            or view.pixels.shape[:2] != frame.shape[:2]):
        return Plan([rect])
    new = pixels32(frame)[top:bottom, left:right]
    old = pixels32(view.pixels)[top:bottom, left:right]
    if view.anyLossy and not view.lossy.any():
        view.anyLossy = False
    lossy = view.lossy[top:bottom, left:right] if view.anyLossy else None
    for vertical in (True, False):
        if vertical:
            n, o, l = new, old, lossy
        else:
            n, o, l = new.T, old.T, (None if lossy is None else lossy.T)
        offset = findOffset(n, o)
        if offset is None:
            continue
        moved, same = _planAxis(n, o, l, offset)
        draw = ~moved & ~same
        movedRects = tileRects(moved, n.shape[1])
        if not movedRects or len(movedRects) > MAX_CLIP_RECTS:
            continue
        if vertical:
            toSurface = lambda r: (left + r[0], top + r[1], left + r[2], top + r[3])
            dx, dy = 0, offset
        else:
            toSurface = lambda r: (left + r[1], top + r[0], left + r[3], top + r[2])
            dx, dy = offset, 0
        copy = Copy(dx, dy, [toSurface(r) for r in movedRects])
        if copy.area < MIN_COPIED_SHARE * width * height:
            continue
        rest = [toSurface(r) for r in _joinBands(tileRects(draw, n.shape[1]))]
        if len(rest) > MAX_DRAW_RECTS:
            merged = Damage(frame.shape[1], frame.shape[0], max_rects=MAX_DRAW_RECTS)
            for r in rest:
                merged.add(r)
            rest = merged.take()
        sources = copy.sources()
        lowest = copy.box[3]
        before, after = [], []
        for r in sorted(rest, key=lambda r: (r[1], r[0])):
            early = r[3] < lowest and not any(overlaps(r, s) for s in sources)
            (before if early else after).append(r)
        return Plan(before, copy, after)
    return Plan([rect])
