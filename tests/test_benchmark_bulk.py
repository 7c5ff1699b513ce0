"""
The bulk benchmark's source (C{benchmarks/bulk.py}): every pixel changes
every tick, the same way every time, so throughput figures compare.
"""

import numpy
from twisted.internet.task import Clock
from twisted.trial import unittest

from benchmarks.bulk import NoiseSource


class NoiseSourceTests(unittest.TestCase):

    def test_everyPixelChangesEachTick(self):
        clock = Clock()
        source = NoiseSource(64, 32, ticks=100, clock=clock)
        damaged = []

        class Observer:
            def damaged(self, rects):
                damaged.append(rects)

        source.addObserver(Observer())
        source.start()
        self.addCleanup(source.stop)
        before = source.framebuffer().copy()
        clock.advance(0.01)
        after = source.framebuffer()
        self.assertEqual(damaged, [[(0, 0, 64, 32)]])
        self.assertEqual(after.shape, (32, 64, 4))
        self.assertFalse(numpy.any(numpy.all(before == after, axis=-1)))

    def test_deterministic(self):
        a, b = NoiseSource(16, 8), NoiseSource(16, 8)
        for _ in range(3):
            a.step()
            b.step()
        self.assertTrue(numpy.array_equal(a.framebuffer(), b.framebuffer()))
