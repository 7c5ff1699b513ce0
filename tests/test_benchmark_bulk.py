"""
The bulk benchmark's source (C{benchmarks/bulk.py}): every pixel changes
every tick, the same way every time, so throughput figures compare.
"""

import numpy
from twisted.internet.task import Clock
from twisted.trial import unittest

from benchmarks.bulk import NoiseSource
from spicesrv.display.copybits import ClientView, planCopy


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

    def test_nothingToCopy(self):
        """
        No picture is an earlier one moved straight (what the display
        channel sends as COPY_BITS), even when the client is many ticks
        behind: the benchmark measures pictures sent, not copies.
        """
        source = NoiseSource(256, 128)
        for behind in range(1, 10):
            view = ClientView(256, 128)
            view.drew(source._view(0), (0, 0, 256, 128))
            plan = planCopy(source._view(behind), view, (0, 0, 256, 128))
            self.assertIsNone(plan.copy, "a copy %d ticks behind" % (behind,))
