"""
Tests for L{spicesrv.keys}: the link stage's RSA keys, the ticket's
encryption, and the pool that generates keys ahead of need.
"""

from twisted.internet import defer
from twisted.trial import unittest

from spicesrv import keys
from spicesrv.testing import testKey
from spicesrv.wire.constants import TICKET_CIPHERTEXT_BYTES, TICKET_PUBKEY_BYTES


class TicketTests(unittest.TestCase):
    def test_publicKeyDER(self):
        der = keys.public_key_der(testKey())
        self.assertEqual(len(der), TICKET_PUBKEY_BYTES)

    def test_roundTrip(self):
        key = testKey()
        ciphertext = keys.encrypt_ticket(keys.public_key_der(key), "sécret")
        self.assertEqual(len(ciphertext), TICKET_CIPHERTEXT_BYTES)
        self.assertEqual(keys.decrypt_ticket(key, ciphertext), "sécret".encode("utf-8") + b"\0")

    def test_wrongLength(self):
        self.assertRaises(ValueError, keys.decrypt_ticket, testKey(), b"x" * 127)

    def test_garbage(self):
        self.assertRaises(ValueError, keys.decrypt_ticket, testKey(),
                          b"\x01" * TICKET_CIPHERTEXT_BYTES)

    def test_generate(self):
        key = keys.generate_key()
        self.assertEqual(key.key_size, 1024)
        self.assertEqual(key.public_key().public_numbers().e, 65537)


class KeyPoolTests(unittest.TestCase):
    def setUp(self):
        self.made = []
        self.pending = []

    def slowGenerate(self):
        d = defer.Deferred()
        self.pending.append(d)
        return d

    def pool(self, size=2, generate=None):
        def counting():
            self.made.append(object())
            return self.made[-1]
        return keys.KeyPool(size=size, generate=generate or counting, inThread=False)

    def test_startFills(self):
        pool = self.pool(size=3)
        pool.start()
        self.assertEqual(len(self.made), 3)
        first = self.successResultOf(pool.take())
        self.assertIs(first, self.made[0])
        self.assertEqual(len(self.made), 4)          # refilled

    def test_everyKeyOnce(self):
        pool = self.pool(size=2)
        pool.start()
        taken = [self.successResultOf(pool.take()) for _ in range(5)]
        self.assertEqual(len(set(map(id, taken))), 5)

    def test_waitersServedInOrder(self):
        pool = self.pool(size=1, generate=self.slowGenerate)
        first, second = pool.take(), pool.take()
        self.assertNoResult(first)
        self.pending.pop(0).callback("k1")
        self.assertEqual(self.successResultOf(first), "k1")
        self.assertNoResult(second)
        self.pending.pop(0).callback("k2")
        self.assertEqual(self.successResultOf(second), "k2")

    def test_cancelledWaiterForgotten(self):
        pool = self.pool(size=1, generate=self.slowGenerate)
        first = pool.take()
        first.cancel()
        self.failureResultOf(first, defer.CancelledError)
        second = pool.take()
        for d in list(self.pending):
            d.callback("k")
        self.assertEqual(self.successResultOf(second), "k")

    def test_failureReachesWaiter(self):
        pool = self.pool(size=1, generate=self.slowGenerate)
        waiting = pool.take()
        self.pending.pop(0).errback(RuntimeError("no entropy"))
        self.failureResultOf(waiting, RuntimeError)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
