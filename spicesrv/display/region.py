"""
Damage accumulation: which parts of a surface changed since they were last
sent.

Rectangles are C{(left, top, right, bottom)} tuples, right and bottom
exclusive.  L{Damage} keeps its rectangles pairwise disjoint, because each
one becomes a separate DRAW_COPY, and keeps their number bounded by merging
the pair whose bounding box wastes the least area.
"""

#: Merge two disjoint rectangles anyway when their bounding box covers at
#: most this many undamaged pixels: a 32x32 tile costs less to send as part
#: of a bigger image than as a separate DRAW_COPY.
SMALL_WASTE = 32 * 32

#: The default bound on the number of rectangles kept.
MAX_RECTS = 16


def area(rect):
    """
    The number of pixels in C{rect}; 0 for an empty rectangle.
    """
    left, top, right, bottom = rect
    return max(0, right - left) * max(0, bottom - top)


def union(a, b):
    """
    The bounding box of rectangles C{a} and C{b}.
    """
    return (min(a[0], b[0]), min(a[1], b[1]),
            max(a[2], b[2]), max(a[3], b[3]))


def overlaps(a, b):
    """
    Whether rectangles C{a} and C{b} share at least one pixel.
    """
    return (a[0] < b[2] and b[0] < a[2] and
            a[1] < b[3] and b[1] < a[3])


def waste(a, b):
    """
    How many pixels the bounding box of two disjoint rectangles covers that
    neither of them does.
    """
    return area(union(a, b)) - area(a) - area(b)


class Damage:
    """
    The damaged parts of a C{width} x C{height} surface.

    @ivar width: the surface width.
    @ivar height: the surface height.
    @ivar max_rects: how many rectangles are kept at most.
    """

    def __init__(self, width, height, max_rects=MAX_RECTS):
        if max_rects < 1:
            raise ValueError("max_rects must be at least 1, not %r"
                             % (max_rects,))
        self.width = width
        self.height = height
        self.max_rects = max_rects
        self._rects = []

    def __bool__(self):
        return bool(self._rects)

    def __repr__(self):
        return "<Damage %dx%d %r>" % (self.width, self.height, self._rects)

    def bounds(self):
        """
        The smallest rectangle holding all the damage, or L{None} if there
        is none (the damage stays).
        """
        if not self._rects:
            return None
        rect = self._rects[0]
        for other in self._rects[1:]:
            rect = union(rect, other)
        return rect

    def add(self, rect):
        """
        Mark C{rect} damaged.  The parts outside the surface are ignored.
        """
        left, top, right, bottom = rect
        clipped = (max(0, left), max(0, top),
                   min(self.width, right), min(self.height, bottom))
        if area(clipped) == 0:
            return
        self._insert(clipped)
        self._reduce(self.max_rects)

    def add_all(self):
        """
        Mark the whole surface damaged.
        """
        self._rects = []
        if self.width > 0 and self.height > 0:
            self._rects.append((0, 0, self.width, self.height))

    def discardInside(self, rect):
        """
        Forget the kept rectangles that lie wholly inside C{rect} (something
        else, a video stream, sends that area).
        """
        left, top, right, bottom = rect
        self._rects = [r for r in self._rects
                       if not (left <= r[0] and top <= r[1] and r[2] <= right and r[3] <= bottom)]

    def resize(self, width, height):
        """
        The surface is now C{width} x C{height}: forget the old damage and
        mark everything damaged.
        """
        self.width = width
        self.height = height
        self.add_all()

    def take(self, max_rects=None):
        """
        Return the damage as a list of disjoint rectangles, at most
        C{max_rects} of them (default L{max_rects}), top to bottom, and
        forget it.
        """
        self._reduce(self.max_rects if max_rects is None else max_rects)
        rects = sorted(self._rects, key=lambda r: (r[1], r[0]))
        self._rects = []
        return rects

    def _insert(self, rect):
        """
        Add C{rect}, first swallowing every kept rectangle that overlaps it
        or is cheap to merge with it, so the kept ones stay disjoint.
        """
        merged = True
        while merged:
            merged = False
            for i, kept in enumerate(self._rects):
                if overlaps(kept, rect) or waste(kept, rect) <= SMALL_WASTE:
                    rect = union(kept, rect)
                    del self._rects[i]
                    merged = True
                    break
        self._rects.append(rect)

    def _reduce(self, limit):
        """
        Merge the pair of rectangles that wastes the least area until at
        most C{limit} remain.
        """
        if limit < 1:
            raise ValueError("max_rects must be at least 1, not %r"
                             % (limit,))
        while len(self._rects) > limit:
            rects = self._rects
            pairs = ((waste(rects[i], rects[j]), i, j)
                     for i in range(len(rects))
                     for j in range(i + 1, len(rects)))
            _, i, j = min(pairs)
            a, b = rects[i], rects[j]
            del rects[j], rects[i]
            self._insert(union(a, b))
