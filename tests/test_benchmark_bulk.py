"""
The bulk benchmark's source (C{benchmarks/bulk.py}): every pixel changes
every tick, the same way every time, so throughput figures compare; and its
reference, stunnel in front of a plain server.
"""

import os

import numpy
from twisted.internet.task import Clock
from twisted.trial import unittest

from benchmarks import bulk, connect
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


class StunnelReferenceTests(unittest.TestCase):

    def test_variantsPairEachPlainWithItsTLS(self):
        """
        Each plain variant has spicesrv's TLS and stunnel's beside it, with
        the same client options; without stunnel only spicesrv's.
        """
        every = bulk.variants()
        for plain in [v for v in every if not v.secure]:
            secure = [v for v in every if v.secure and v.clientArgs == plain.clientArgs]
            self.assertEqual(sorted(v.stunnel for v in secure), [False, True])
        self.assertEqual([v.label for v in bulk.variants(stunnel=False)],
                         [v.label for v in every if not v.stunnel])

    def test_configuration(self):
        """
        stunnel accepts TLS 1.2 or newer on the variant's port with the
        development certificate and forwards to the plain server's port.
        """
        tmpdir = self.mktemp()
        os.makedirs(tmpdir)
        path = bulk.stunnelConfig(tmpdir, "stunnel-raw-ref", 5911, 5912)
        with open(path) as f:
            lines = [line.strip() for line in f]
        x509 = connect.x509Dir(tmpdir)
        for line in ["accept = 127.0.0.1:5911", "connect = 127.0.0.1:5912",
                     "cert = " + os.path.join(x509, "server-cert.pem"),
                     "key = " + os.path.join(x509, "server-key.pem"),
                     "sslVersionMin = TLSv1.2", "foreground = yes",
                     # the TLS 1.3 suites in spicesrv's order: both
                     # terminators encrypt with the same cipher
                     "ciphersuites = TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                     "TLS_CHACHA20_POLY1305_SHA256"]:
            self.assertIn(line, lines)
        self.assertTrue(os.path.exists(os.path.join(x509, "server-cert.pem")))
