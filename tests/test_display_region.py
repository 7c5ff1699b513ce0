"""
Tests for L{spicesrv.display.region}.
"""

import random

import numpy as np
from twisted.trial import unittest

from spicesrv.display.region import Damage, SMALL_WASTE


def coverage(width, height, rects):
    """
    How many of C{rects} cover each pixel of a C{width} x C{height} surface.
    """
    counts = np.zeros((height, width), np.int32)
    for left, top, right, bottom in rects:
        counts[top:bottom, left:right] += 1
    return counts


class DamageTests(unittest.TestCase):

    def assertCoversExactlyOnce(self, damage_mask, rects):
        """
        Every damaged pixel is covered, and no pixel is covered twice.
        """
        counts = coverage(damage_mask.shape[1], damage_mask.shape[0], rects)
        self.assertTrue((counts[damage_mask] == 1).all(),
                        "a damaged pixel is not covered")
        self.assertLessEqual(counts.max(), 1, "rectangles overlap")
        for left, top, right, bottom in rects:
            self.assertTrue(0 <= left < right <= damage_mask.shape[1])
            self.assertTrue(0 <= top < bottom <= damage_mask.shape[0])

    def test_empty(self):
        damage = Damage(100, 50)
        self.assertFalse(damage)
        self.assertEqual(damage.take(), [])

    def test_single(self):
        damage = Damage(100, 50)
        damage.add((10, 20, 30, 40))
        self.assertTrue(damage)
        self.assertEqual(damage.take(), [(10, 20, 30, 40)])
        self.assertFalse(damage)
        self.assertEqual(damage.take(), [])

    def test_bounds(self):
        damage = Damage(100, 50)
        self.assertIsNone(damage.bounds())
        damage.add((10, 20, 30, 40))
        damage.add((70, 5, 80, 8))
        self.assertEqual(damage.bounds(), (10, 5, 80, 40))
        self.assertEqual(len(damage.take()), 2)   # still there

    def test_clipped(self):
        damage = Damage(100, 50)
        damage.add((-10, -5, 20, 10))
        damage.add((90, 40, 200, 300))
        self.assertEqual(damage.take(),
                         [(0, 0, 20, 10), (90, 40, 100, 50)])

    def test_outside_or_empty_ignored(self):
        damage = Damage(100, 50)
        damage.add((100, 0, 120, 10))
        damage.add((0, -20, 10, 0))
        damage.add((5, 5, 5, 10))
        damage.add((30, 30, 20, 40))
        self.assertFalse(damage)

    def test_overlapping_merge(self):
        damage = Damage(1000, 1000)
        damage.add((0, 0, 100, 100))
        damage.add((50, 50, 150, 150))
        self.assertEqual(damage.take(), [(0, 0, 150, 150)])

    def test_adjacent_merge(self):
        """
        Side by side rectangles of the same height join without waste.
        """
        damage = Damage(1000, 1000)
        damage.add((0, 0, 100, 100))
        damage.add((100, 0, 200, 100))
        self.assertEqual(damage.take(), [(0, 0, 200, 100)])

    def test_far_apart_kept(self):
        damage = Damage(1000, 1000)
        damage.add((0, 0, 10, 10))
        damage.add((500, 500, 510, 510))
        self.assertEqual(damage.take(),
                         [(0, 0, 10, 10), (500, 500, 510, 510)])

    def test_small_waste_merged(self):
        """
        Two near rectangles whose bounding box wastes at most SMALL_WASTE
        pixels become one.
        """
        damage = Damage(1000, 1000)
        damage.add((0, 0, 10, 10))
        damage.add((20, 0, 30, 10))
        self.assertLessEqual(100, SMALL_WASTE)
        self.assertEqual(damage.take(), [(0, 0, 30, 10)])

    def test_merge_cascades(self):
        """
        A rectangle that joins two kept ones, which then overlap a third,
        leaves no overlap.
        """
        damage = Damage(1000, 1000)
        damage.add((0, 0, 10, 300))
        damage.add((200, 0, 210, 300))
        damage.add((100, 290, 110, 600))
        damage.add((0, 250, 210, 260))
        rects = damage.take()
        self.assertEqual(rects, [(0, 0, 210, 600)])

    def test_add_all(self):
        damage = Damage(64, 48)
        damage.add((1, 1, 2, 2))
        damage.add_all()
        self.assertEqual(damage.take(), [(0, 0, 64, 48)])

    def test_add_after_all(self):
        damage = Damage(64, 48)
        damage.add_all()
        damage.add((1, 1, 2, 2))
        self.assertEqual(damage.take(), [(0, 0, 64, 48)])

    def test_resize(self):
        damage = Damage(64, 48)
        damage.add((1, 1, 2, 2))
        damage.resize(32, 16)
        self.assertEqual((damage.width, damage.height), (32, 16))
        self.assertEqual(damage.take(), [(0, 0, 32, 16)])
        damage.add((20, 10, 100, 100))
        self.assertEqual(damage.take(), [(20, 10, 32, 16)])

    def test_bounded(self):
        """
        A grid of isolated pixels is kept as at most max_rects rectangles
        that cover every one of them without overlapping.
        """
        damage = Damage(1000, 1000, max_rects=16)
        mask = np.zeros((1000, 1000), bool)
        for y in range(0, 1000, 97):
            for x in range(0, 1000, 89):
                damage.add((x, y, x + 1, y + 1))
                mask[y, x] = True
        rects = damage.take()
        self.assertLessEqual(len(rects), 16)
        self.assertCoversExactlyOnce(mask, rects)

    def test_take_fewer(self):
        damage = Damage(1000, 1000)
        mask = np.zeros((1000, 1000), bool)
        for i in range(8):
            damage.add((i * 120, i * 120, i * 120 + 5, i * 120 + 5))
            mask[i * 120:i * 120 + 5, i * 120:i * 120 + 5] = True
        rects = damage.take(max_rects=3)
        self.assertLessEqual(len(rects), 3)
        self.assertCoversExactlyOnce(mask, rects)

    def test_take_one(self):
        damage = Damage(100, 100)
        damage.add((0, 0, 5, 5))
        damage.add((90, 90, 95, 95))
        self.assertEqual(damage.take(max_rects=1), [(0, 0, 95, 95)])

    def test_random_flood(self):
        """
        Many random rectangles, some overlapping and some partly outside,
        end as a few disjoint rectangles covering all of them.
        """
        rng = random.Random(4)
        width, height = 640, 480
        damage = Damage(width, height)
        mask = np.zeros((height, width), bool)
        for _ in range(2000):
            left = rng.randrange(-20, width)
            top = rng.randrange(-20, height)
            right = left + rng.randrange(1, 40)
            bottom = top + rng.randrange(1, 40)
            damage.add((left, top, right, bottom))
            mask[max(top, 0):max(bottom, 0), max(left, 0):max(right, 0)] = True
        rects = damage.take()
        self.assertLessEqual(len(rects), 16)
        self.assertCoversExactlyOnce(mask, rects)

    def test_stroke(self):
        """
        The small overlapping rectangles of a paint stroke become a few.
        """
        damage = Damage(1024, 768)
        mask = np.zeros((768, 1024), bool)
        for i in range(300):
            x, y = 100 + i * 2, 100 + i
            damage.add((x - 4, y - 4, x + 6, y + 6))
            mask[y - 4:y + 6, x - 4:x + 6] = True
        rects = damage.take()
        self.assertLessEqual(len(rects), 16)
        self.assertCoversExactlyOnce(mask, rects)

    def test_bad_limit(self):
        self.assertRaises(ValueError, Damage, 10, 10, max_rects=0)
        damage = Damage(10, 10)
        self.assertRaises(ValueError, damage.take, max_rects=0)
