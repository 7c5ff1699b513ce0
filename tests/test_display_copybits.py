"""
Tests for L{spicesrv.display.copybits}: finding what moved in a damaged
rectangle against the client's view, and planning COPY_BITS for it with
images only for what is new.  Every plan is applied to a copy of the view
and must give the new frame exactly.
"""

import numpy
from twisted.trial import unittest

from spicesrv.display import copybits
from spicesrv.display.copybits import ClientView, Copy, findOffset, pixels32, planCopy
from spicesrv.sources.motion import scrollPicture

WIDTH, HEIGHT = 320, 200


def tall(width=WIDTH, height=HEIGHT * 3, seed=3):
    return scrollPicture(width, height, seed=seed)


def viewOf(frame):
    view = ClientView(frame.shape[1], frame.shape[0])
    view.drew(frame, (0, 0, frame.shape[1], frame.shape[0]))
    return view


def apply(view, frame, plan):
    """
    Apply C{plan} to C{view} as the display channel sends it (images from
    C{frame}); return the view's pixels.
    """
    for rect in plan.before:
        view.drew(frame, rect)
    if plan.copy is not None:
        view.copied(plan.copy)
    for rect in plan.after:
        view.drew(frame, rect)
    return view.pixels


def area(rects):
    return sum((r[2] - r[0]) * (r[3] - r[1]) for r in rects)


class FindOffsetTests(unittest.TestCase):
    def test_vertical(self):
        """
        Lines that moved up by 12 vote for offset 12 (the source is 12
        lines further down).
        """
        picture = pixels32(tall())
        old, new = picture[0:HEIGHT], picture[12:HEIGHT + 12]
        self.assertEqual(findOffset(new, old), 12)
        self.assertEqual(findOffset(old, new), -12)

    def test_unrelated(self):
        self.assertIsNone(findOffset(pixels32(tall(seed=1))[:HEIGHT],
                                     pixels32(tall(seed=2))[:HEIGHT]))

    def test_flat(self):
        """
        A flat picture has no line with a unique signature: no offset.
        """
        flat = numpy.full((HEIGHT, WIDTH), 0xFF336699, numpy.uint32)
        self.assertIsNone(findOffset(flat, flat.copy()))

    def test_unmoved(self):
        picture = pixels32(tall())[:HEIGHT]
        self.assertIsNone(findOffset(picture, picture.copy()))


class PlanTests(unittest.TestCase):
    def test_scrollUp(self):
        """
        A page scrolled up by 8 rows: one copy (source 8 rows down) of all
        but the bottom 8 rows, and an image of the exposed strip only.
        """
        picture = tall()
        old, new = picture[0:HEIGHT].copy(), picture[8:HEIGHT + 8].copy()
        view = viewOf(old)
        plan = planCopy(new, view, (0, 0, WIDTH, HEIGHT))
        self.assertEqual((plan.copy.dx, plan.copy.dy), (0, 8))
        self.assertEqual(plan.copy.rects, [(0, 0, WIDTH, HEIGHT - 8)])
        self.assertEqual(plan.before, [])
        self.assertEqual(plan.after, [(0, HEIGHT - 8, WIDTH, HEIGHT)])
        numpy.testing.assert_array_equal(apply(view, new, plan), new)

    def test_scrollDown(self):
        """
        Scrolled down: the copy's source is above; the exposed strip at the
        top is drawn after the copy, which reads the old rows there.
        """
        picture = tall()
        old, new = picture[20:HEIGHT + 20].copy(), picture[0:HEIGHT].copy()
        view = viewOf(old)
        plan = planCopy(new, view, (0, 0, WIDTH, HEIGHT))
        self.assertEqual((plan.copy.dx, plan.copy.dy), (0, -20))
        self.assertEqual(plan.copy.rects, [(0, 20, WIDTH, HEIGHT)])
        self.assertEqual(plan.copy.srcPos, (0, 0))
        self.assertEqual(plan.before, [])
        self.assertEqual(plan.after, [(0, 0, WIDTH, 20)])
        numpy.testing.assert_array_equal(apply(view, new, plan), new)

    def test_horizontal(self):
        """
        A picture moved 40 pixels to the left inside a rectangle: the copy
        takes its pixels from 40 to the right; the new 40 columns at the
        right are drawn; the rest of the screen is not touched.
        """
        picture = scrollPicture(WIDTH * 2, HEIGHT)
        screen = numpy.zeros((HEIGHT, WIDTH, 4), numpy.uint8)
        screen[..., 3] = 255
        rect = (32, 16, 288, 176)
        old = screen.copy()
        old[16:176, 32:288] = picture[0:160, 0:256]
        new = screen.copy()
        new[16:176, 32:288] = picture[0:160, 40:296]
        view = viewOf(old)
        plan = planCopy(new, view, rect)
        self.assertEqual((plan.copy.dx, plan.copy.dy), (40, 0))
        self.assertEqual(plan.copy.rects, [(32, 16, 248, 176)])
        self.assertEqual(plan.before + plan.after, [(248, 16, 288, 176)])
        numpy.testing.assert_array_equal(apply(view, new, plan), new)

    def test_partlyCovered(self):
        """
        Something drawn over the scrolled page (a frame counter at the top
        left): the copy's clip leaves its tiles out, and they are drawn;
        tiles that did not change are neither copied nor drawn.
        """
        picture = tall()
        old, new = picture[0:HEIGHT].copy(), picture[8:HEIGHT + 8].copy()
        old[0:8, 0:64, :3] = 0
        new[0:8, 0:64, :3] = 0
        new[0:8, 0:20, :3] = 255
        view = viewOf(old)
        plan = planCopy(new, view, (0, 0, WIDTH, HEIGHT))
        self.assertEqual(plan.copy.dy, 8)
        self.assertIn((64, 0, WIDTH, 8), plan.copy.rects)
        drawn = plan.before + plan.after
        self.assertIn((0, 0, 32, 8), drawn)
        # The unchanged black tile (32..64) is neither sent nor copied.
        self.assertFalse(any(r[0] <= 32 < r[2] and r[1] < 8 for r in
                             drawn + plan.copy.rects))
        numpy.testing.assert_array_equal(apply(view, new, plan), new)

    def test_accumulated(self):
        """
        Damage that piled up over five scroll steps while the client was
        slow: the shift is measured against what the client has, so one
        copy moves it by all five steps.
        """
        picture = tall()
        view = viewOf(picture[0:HEIGHT].copy())
        new = picture[40:HEIGHT + 40].copy()
        plan = planCopy(new, view, (0, 0, WIDTH, HEIGHT))
        self.assertEqual(plan.copy.dy, 40)
        self.assertEqual(area(plan.before + plan.after), WIDTH * 40)
        numpy.testing.assert_array_equal(apply(view, new, plan), new)

    def test_composesWithPartialUpdates(self):
        """
        The client got a copy but not yet the exposed strip (the link was
        full); the page scrolls on: the next plan copies from what the
        client has and draws what it still lacks, ending exact.
        """
        picture = tall()
        view = viewOf(picture[0:HEIGHT].copy())
        first = picture[8:HEIGHT + 8].copy()
        plan = planCopy(first, view, (0, 0, WIDTH, HEIGHT))
        view.copied(plan.copy)  # the strip is still to come
        second = picture[16:HEIGHT + 16].copy()
        plan = planCopy(second, view, (0, 0, WIDTH, HEIGHT))
        self.assertEqual(plan.copy.dy, 8)
        # The rows the client lacks (8 from before, 8 new) are drawn.
        self.assertEqual(area(plan.before + plan.after), WIDTH * 16)
        numpy.testing.assert_array_equal(apply(view, second, plan), second)

    def test_lossySourcesNotCopied(self):
        """
        Where the client holds stream frames (lossy), its pixels are not
        copied, even when the view's copy would match: they are drawn.
        """
        picture = tall()
        old, new = picture[0:HEIGHT].copy(), picture[8:HEIGHT + 8].copy()
        view = viewOf(old)
        view.markLossy((0, 100, WIDTH, 140))
        plan = planCopy(new, view, (0, 0, WIDTH, HEIGHT))
        self.assertEqual(plan.copy.dy, 8)
        for source in plan.copy.sources():
            self.assertFalse(source[1] < 140 and 100 < source[3], plan.copy)
        numpy.testing.assert_array_equal(apply(view, new, plan), new)
        self.assertFalse(view.lossy[92:132].any())

    def test_smallOrUnrelatedAsIs(self):
        picture = tall()
        view = viewOf(picture[0:HEIGHT].copy())
        self.assertEqual(planCopy(picture[8:HEIGHT + 8], view, (0, 0, 40, 40)).before,
                         [(0, 0, 40, 40)])
        other = tall(seed=11)[0:HEIGHT]
        plan = planCopy(other, view, (0, 0, WIDTH, HEIGHT))
        self.assertIsNone(plan.copy)
        self.assertEqual(plan.before, [(0, 0, WIDTH, HEIGHT)])

    def test_unknownViewNotCopied(self):
        """
        Before the client got a whole picture, its view is all unknown.
        """
        picture = tall()
        view = ClientView(WIDTH, HEIGHT)
        plan = planCopy(picture[8:HEIGHT + 8], view, (0, 0, WIDTH, HEIGHT))
        self.assertIsNone(plan.copy)


class ReleasedViewTests(unittest.TestCase):
    """
    A released view is unknown: nothing is copied until it is kept again,
    and then only from what was drawn after.
    """

    def test_releasedViewFindsNoCopy(self):
        picture = tall()
        old, new = picture[0:HEIGHT].copy(), picture[8:HEIGHT + 8].copy()
        view = viewOf(old)
        view.release()
        self.assertFalse(view.active)
        self.assertIsNone(view.pixels)
        view.drew(old, (0, 0, WIDTH, HEIGHT))      # no effect while released
        view.markLossy((0, 0, 10, 10))
        plan = planCopy(new, view, (0, 0, WIDTH, HEIGHT))
        self.assertIsNone(plan.copy)
        self.assertEqual(plan.before, [(0, 0, WIDTH, HEIGHT)])

    def test_keptAgainStartsLossy(self):
        picture = tall()
        old, new = picture[0:HEIGHT].copy(), picture[8:HEIGHT + 8].copy()
        view = viewOf(old)
        view.release()
        view.activate()
        self.assertTrue(view.lossy.all())
        self.assertIsNone(planCopy(new, view, (0, 0, WIDTH, HEIGHT)).copy)
        view.drew(old, (0, 0, WIDTH, HEIGHT))
        plan = planCopy(new, view, (0, 0, WIDTH, HEIGHT))
        self.assertEqual((plan.copy.dx, plan.copy.dy), (0, 8))
        numpy.testing.assert_array_equal(apply(view, new, plan), new)


class InexactTests(unittest.TestCase):
    """
    Where the client may not hold the view's pixels exactly: JPEG'd
    (approx) or unknown (lossy) pixels, as row bands, each as wide as its
    inexact pixels.
    """

    def test_bands(self):
        frame = tall(height=HEIGHT)
        view = viewOf(frame)
        self.assertEqual(view.inexact((0, 0, WIDTH, HEIGHT)), [])
        view.markApprox((5, 10, 50, 20))
        view.markApprox((60, 30, 70, 31))
        view.markLossy((0, 100, 3, 102))
        # In columns of INEXACT_COLUMN pixels; rows more than BAND_GAP apart
        # stay apart.
        self.assertEqual(copybits.INEXACT_COLUMN, 64)
        self.assertEqual(view.inexact((0, 0, WIDTH, HEIGHT)),
                         [(0, 10, 64, 20), (0, 30, 128, 31), (0, 100, 64, 102)])
        # Clipped to the rectangle asked about, and to the surface.
        self.assertEqual(view.inexact((20, 0, 40, 15)), [(20, 10, 40, 15)])
        self.assertEqual(view.inexact((-10, 95, 400, 400)), [(0, 100, 64, 102)])
        # Drawn exactly again: gone.
        view.drew(frame, (0, 0, WIDTH, 50))
        self.assertEqual(view.inexact((0, 0, WIDTH, HEIGHT)), [(0, 100, 64, 102)])

    def test_comb(self):
        """
        What a scroll on a slow link leaves: JPEG rows between exact ones,
        and a strip at the left redrawn as JPEG every frame.  The strip is
        one rectangle, the rows one each, the exact rows in none.
        """
        frame = tall(height=HEIGHT)
        view = viewOf(frame)
        view.markApprox((0, 0, 64, HEIGHT))
        for y in range(0, HEIGHT, 8):
            view.markApprox((0, y, WIDTH, y + 4))
        rects = view.inexact((0, 0, WIDTH, HEIGHT))
        self.assertIn((0, 0, 64, HEIGHT), rects)
        rows = sorted(r for r in rects if r != (0, 0, 64, HEIGHT))
        self.assertEqual(rows, [(64, y, WIDTH, y + 4) for y in range(0, HEIGHT, 8)])
        covered = numpy.zeros((HEIGHT, WIDTH), bool)
        for left, top, right, bottom in rects:
            covered[top:bottom, left:right] = True
        numpy.testing.assert_array_equal(covered, view.approx)

    def test_movedByCopies(self):
        frame = tall(height=HEIGHT)
        view = viewOf(frame)
        view.markApprox((0, 50, WIDTH, 60))
        view.copied(Copy(0, 8, [(0, 0, WIDTH, HEIGHT - 8)]))
        self.assertEqual(view.inexact((0, 0, WIDTH, HEIGHT)), [(0, 42, WIDTH, 52)])

    def test_releasedIsAllInexact(self):
        view = viewOf(tall(height=HEIGHT))
        view.release()
        self.assertEqual(view.inexact((1, 2, 3, 4)), [(1, 2, 3, 4)])


class CopyTests(unittest.TestCase):
    def test_boxAndSource(self):
        copy = Copy(0, 8, [(64, 0, 320, 8), (0, 8, 320, 192)])
        self.assertEqual(copy.box, (0, 0, 320, 192))
        self.assertEqual(copy.srcPos, (0, 8))
        self.assertEqual(copy.sources(), [(64, 8, 320, 16), (0, 16, 320, 200)])
        self.assertEqual(copy.area, 256 * 8 + 320 * 184)

    def test_copiedReadsBeforeWriting(self):
        """
        Overlapping source and destination: every source pixel is read
        before any is written (as the client's canvas copies).
        """
        frame = tall()[0:HEIGHT].copy()
        view = viewOf(frame)
        view.copied(Copy(0, -10, [(0, 10, WIDTH, 100), (0, 100, WIDTH, 190)]))
        numpy.testing.assert_array_equal(view.pixels[10:190], frame[0:180])
        numpy.testing.assert_array_equal(view.pixels[0:10], frame[0:10])

    def test_tileRects(self):
        tiles = numpy.array([[1, 1, 0], [1, 1, 0], [0, 1, 1]], bool)
        self.assertEqual(copybits.tileRects(tiles, 70),
                         [(0, 0, 64, 2), (32, 2, 70, 3)])
