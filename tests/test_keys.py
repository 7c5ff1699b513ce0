"""
Tests for L{spicesrv.keys}: the link stage's RSA keys, the ticket's
encryption, and the pool that generates keys ahead of need.
"""

import math
import os
import subprocess
import sys
import time
import gmpy2
from twisted.internet import defer, threads
from twisted.trial import unittest

from spicesrv import keys, rsaprimes
from spicesrv.testing import LogCapture, testKey
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
        """
        A generated key is a valid RSA-1024 key with e = 65537: OpenSSL's
        full check of it passes, and a ticket encrypted with its public
        half decrypts.
        """
        key = keys.generate_key()
        self.assertEqual(key.key_size, 1024)
        self.assertEqual(key.public_key().public_numbers().e, 65537)
        key.private_numbers().private_key()         # checked by OpenSSL
        ciphertext = keys.encrypt_ticket(keys.public_key_der(key), "pw")
        self.assertEqual(keys.decrypt_ticket(key, ciphertext), b"pw\0")

    def test_inWorker(self):
        """
        The pool's default generator gets the primes from a worker process;
        workers that ended while idle (killed) are replaced by new ones.
        """
        d = threads.deferToThread(keys.generate_key_in_worker)
        killed = []

        def made(key):
            self.assertEqual(key.key_size, 1024)
            key.private_numbers().private_key()
            self.assertTrue(keys._workers._idle)
            for worker in keys._workers._idle:
                worker.process.kill()
                worker.process.wait()
                killed.append(worker.process.pid)
            return threads.deferToThread(keys._workers.primes)

        def fromANewWorker(primes):
            self.assertEqual(keys.key_from_primes(*primes).key_size, 1024)
            pids = [w.process.pid for w in keys._workers._idle]
            self.assertTrue(pids)
            self.assertFalse(set(pids) & set(killed))
            # Below the server's priority: serving comes first.
            mine = os.getpriority(os.PRIO_PROCESS, 0)
            for pid in pids:
                self.assertEqual(os.getpriority(os.PRIO_PROCESS, pid),
                                 min(19, mine + rsaprimes.WORKER_NICENESS))

        return d.addCallback(made).addCallback(fromANewWorker)

    def test_workerLost(self):
        """
        A worker that ends without answering is logged, and that key is
        made in the server's process: the link waiting for it does not
        fail.
        """
        class Lost:
            def primes(self):
                raise keys.PrimeWorkerError("a key worker (pid 1) ended (exit status -9)")
        self.patch(keys, "_workers", Lost())
        logged = LogCapture(self)
        key = keys.generate_key_in_worker()
        key.private_numbers().private_key()
        self.assertIn("a key worker (pid 1) ended (exit status -9); making the key in the "
                      "server's process", logged.text())

    def test_workersEndWithTheServer(self):
        """
        A server killed outright (SIGKILL, no shutdown) leaves no worker
        process behind: each ends when its input closes.
        """
        script = ("import sys, time\n"
                  "from spicesrv import keys\n"
                  "keys.generate_key_in_worker()\n"
                  "print(' '.join(str(w.process.pid) for w in keys._workers._idle))\n"
                  "sys.stdout.flush()\n"
                  "time.sleep(60)\n")
        server = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                  cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.addCleanup(server.stdout.close)
        self.addCleanup(server.wait)
        self.addCleanup(lambda: server.poll() is None and server.kill())
        workers = [int(pid) for pid in server.stdout.readline().split()]
        self.assertTrue(workers)
        server.kill()
        server.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(alive(pid) for pid in workers):
            time.sleep(0.05)
        self.assertEqual([pid for pid in workers if alive(pid)], [])

    def test_unusablePrimes(self):
        """
        Primes whose product is not a 1024-bit modulus make no key.
        """
        self.assertRaises(ValueError, keys.key_from_primes, 1000003, 1000033)


def alive(pid):
    """Whether process C{pid} runs (a zombie, ended but not reaped, does not)."""
    try:
        with open("/proc/%d/stat" % (pid,)) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class PrimeTests(unittest.TestCase):
    def test_keyPrimes(self):
        """
        The primes of a key: 512 bits each with the top two bits set (their
        product has 1024), prime, p - 1 and q - 1 prime to e, far apart.
        """
        for _ in range(5):
            p, q = rsaprimes.key_primes()
            for prime in (p, q):
                self.assertEqual(prime.bit_length(), 512)
                self.assertEqual(prime >> 510, 3)
                self.assertTrue(gmpy2.is_prime(prime, 50))
                self.assertEqual(math.gcd(prime - 1, 65537), 1)
            self.assertEqual((p * q).bit_length(), 1024)
            self.assertGreater(abs(p - q), 2 ** 412)

    def test_random(self):
        """
        Every call finds another prime.
        """
        self.assertEqual(len({rsaprimes.random_prime(512) for _ in range(20)}), 20)


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
