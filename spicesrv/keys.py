"""
RSA-1024 key pairs for the link stage, one fresh pair per link as
libspice-server does, and the decryption of the client's ticket.

Generating a key takes milliseconds of CPU, so a pool is kept filled ahead
of need; its size follows the arrival rate, so that a burst of links takes
ready keys and never waits for the reactor thread to do arithmetic.  The
primes are found in worker processes, one per CPU
(L{spicesrv.rsaprimes}, with GMP, which holds the GIL: threads would not
share the work out); the key is put together from them and used by
L{cryptography} as any other.
"""

import math
import os
import subprocess
import sys
import threading
from collections import deque

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from spicesrv import rsaprimes
from spicesrv.rsaprimes import KEY_BITS, PUBLIC_EXPONENT, key_primes
from spicesrv.wire.constants import TICKET_CIPHERTEXT_BYTES, TICKET_PUBKEY_BYTES

_log = Logger()
_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


def key_from_primes(p, q):
    """
    The RSA private key with primes C{p} and C{q} and e = 65537.
    """
    n = p * q
    d = pow(PUBLIC_EXPONENT, -1, math.lcm(p - 1, q - 1))
    if n.bit_length() != KEY_BITS or d.bit_length() <= KEY_BITS // 2:
        raise ValueError("these primes make no usable %d-bit key" % (KEY_BITS,))
    numbers = rsa.RSAPrivateNumbers(
        p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
        rsa.RSAPublicNumbers(PUBLIC_EXPONENT, n))
    # Made here from primes just tested: OpenSSL's check of the key would
    # test them again, at the cost of a key generation.
    return numbers.private_key(unsafe_skip_rsa_key_validation=True)


def generate_key():
    """
    Make a new RSA-1024 private key with e = 65537, in this process.
    """
    return key_from_primes(*key_primes())


class PrimeWorkerError(Exception):
    """
    A worker process could not be started, or ended without answering.
    """


class _PrimeWorker:
    """
    One worker process (C{python -m spicesrv.rsaprimes}): each line it
    reads asks for a key's primes, which it writes back as a line.  It ends
    when its input closes, so it never outlives this process, however that
    ends.
    """

    def __init__(self):
        env = dict(os.environ)
        # Where this spicesrv is, whatever this process did to sys.path.
        here = os.path.dirname(os.path.dirname(os.path.abspath(rsaprimes.__file__)))
        env["PYTHONPATH"] = os.pathsep.join([here] + [p for p in [env.get("PYTHONPATH")] if p])
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "spicesrv.rsaprimes"], stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, env=env)
        except OSError as e:
            raise PrimeWorkerError("cannot start a key worker (%s -m spicesrv.rsaprimes): %s"
                                   % (sys.executable, e))

    def primes(self):
        try:
            self.process.stdin.write(b"\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
            p, q = (int(number, 16) for number in line.split())
        except (OSError, ValueError):
            raise PrimeWorkerError("a key worker (pid %d) ended (exit status %r)"
                                   % (self.process.pid, self.process.poll()))
        return p, q

    def close(self):
        try:
            self.process.stdin.close()
        except OSError:
            pass
        self.process.stdout.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class _PrimeWorkers:
    """
    The worker processes that find keys' primes, at most one per CPU,
    shared by the L{KeyPool}s of this process and started when first
    needed.  They are new interpreters running L{spicesrv.rsaprimes} (not
    forks of this process with its threads, and not importing this
    program's main module as C{multiprocessing} would); one that ends is
    replaced.
    """

    def __init__(self, size=None):
        self._size = size or os.cpu_count() or 1
        self._ready = threading.Condition()
        self._idle = []
        self._running = 0

    def primes(self):
        """
        Block until a worker has found a key's primes; return C{(p, q)}.
        """
        with self._ready:
            while True:
                # An idle worker that ended meanwhile (killed) is replaced.
                gone = [w for w in self._idle if w.process.poll() is not None]
                for w in gone:
                    self._idle.remove(w)
                    w.close()
                self._running -= len(gone)
                if self._idle or self._running < self._size:
                    break
                self._ready.wait()
            worker = self._idle.pop() if self._idle else None
            if worker is None:
                self._running += 1
        try:
            if worker is None:
                worker = _PrimeWorker()
            result = worker.primes()
        except PrimeWorkerError:
            with self._ready:
                self._running -= 1
                self._ready.notify()
            if worker is not None:
                worker.close()
            raise
        with self._ready:
            self._idle.append(worker)
            self._ready.notify()
        return result


_workers = _PrimeWorkers()


def generate_key_in_worker():
    """
    Make a new RSA-1024 private key, its primes found by a worker process
    (blocks: call it in a thread).  If no worker can answer, the key is
    made here.
    """
    try:
        primes = _workers.primes()
    except PrimeWorkerError as e:
        _log.warn("{why}; making the key in the server's process", why=str(e))
        primes = key_primes()
    return key_from_primes(*primes)


def public_key_der(private_key):
    """
    The public half as the 162-byte DER SubjectPublicKeyInfo that goes into
    SpiceLinkReply.pub_key.
    """
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert len(der) == TICKET_PUBKEY_BYTES, len(der)
    return der


def encrypt_ticket(public_der, password):
    """
    Encrypt a password the way a SPICE client does: the password bytes plus
    a NUL, RSA-OAEP with SHA-1.  (Used by tests and tools that act as a
    client.)
    """
    key = serialization.load_der_public_key(public_der)
    if isinstance(password, str):
        password = password.encode("utf-8")
    return key.encrypt(password + b"\0", _OAEP)


def decrypt_ticket(private_key, ciphertext):
    """
    Decrypt a client's 128-byte ticket; raises L{ValueError} if it does not
    decrypt.
    """
    if len(ciphertext) != TICKET_CIPHERTEXT_BYTES:
        raise ValueError("a ticket is %d bytes, not %d"
                         % (TICKET_CIPHERTEXT_BYTES, len(ciphertext)))
    return private_key.decrypt(ciphertext, _OAEP)


class KeyPool:
    """
    RSA keys generated ahead of need, one per link and never reused.

    The number kept ready adapts to how fast links arrive: it starts at
    C{size} and grows to cover C{horizon} seconds of the highest recent
    arrival rate (at most C{maxSize}), so that a second burst like the last
    one finds its keys ready; it falls back towards C{size} with a
    C{halfLife} when links stop coming.  Up to C{workers} keys (by
    default one per CPU) are made at once, each by a thread of the pool's
    own that waits for a worker process's primes: every core helps, and the
    reactor thread never does the arithmetic.

    @param size: the fewest keys kept ready: two clients' worth (four
        channels each) by default.
    @param generate: makes one key; called in a thread of the pool's
        unless C{inThread} is false (tests pass a fast, deterministic
        generator).
    @param clock: what tells the time for the arrival rate (the reactor by
        default).
    """

    log = Logger()

    #: Seconds over which arrivals are counted for the rate.
    RATE_WINDOW = 1.0

    def __init__(self, size=8, generate=generate_key_in_worker, inThread=True, maxSize=1024,
                 workers=None, horizon=2.0, halfLife=60.0, clock=None):
        self._minSize = size
        self._maxSize = max(size, maxSize)
        self._target = float(size)
        self._generate = generate
        self._inThread = inThread
        self._workers = workers or os.cpu_count() or 1
        self._horizon = horizon
        self._halfLife = halfLife
        self._clock = clock
        self._ready = deque()
        self._waiting = deque()
        self._making = 0
        self._arrivals = deque()
        self._lastDecay = None
        self._threads = None
        self._refilling = False
        self._stopped = False

    @property
    def target(self):
        """How many keys the pool now tries to keep ready."""
        return int(math.ceil(self._target))

    @property
    def ready(self):
        """How many keys are ready now."""
        return len(self._ready)

    def start(self):
        if self._clock is None:
            from twisted.internet import reactor
            self._clock = reactor
        if self._inThread and self._threads is None:
            self._threads = ThreadPool(0, self._workers, name="spicesrv-rsa-keys")
            self._threads.start()
            trigger = getattr(self._clock, "addSystemEventTrigger", None)
            if trigger is not None:
                trigger("during", "shutdown", self.stop)
        self._refill()

    def stop(self):
        """Stop the threads (at reactor shutdown)."""
        self._stopped = True
        if self._threads is not None:
            self._threads.stop()
            self._threads = None

    def _now(self):
        if self._clock is None:
            return None
        return self._clock.seconds()

    def _noteArrival(self):
        now = self._now()
        if now is None:
            return
        arrivals = self._arrivals
        arrivals.append(now)
        while arrivals and arrivals[0] <= now - self.RATE_WINDOW:
            arrivals.popleft()
        if self._lastDecay is not None and self._halfLife:
            decay = 0.5 ** ((now - self._lastDecay) / self._halfLife)
            self._target = self._minSize + (self._target - self._minSize) * decay
        self._lastDecay = now
        rate = len(arrivals) / self.RATE_WINDOW
        self._target = min(self._maxSize, max(self._target, rate * self._horizon))

    def _refill(self):
        if self._refilling or self._stopped:
            return
        self._refilling = True
        try:
            while (self._making < self._workers
                   and len(self._ready) + self._making < self.target + len(self._waiting)):
                self._making += 1
                if self._inThread:
                    d = threads.deferToThreadPool(self._clock, self._threads, self._generate)
                else:
                    d = defer.maybeDeferred(self._generate)
                d.addCallbacks(self._made, self._failed)
        finally:
            self._refilling = False

    def _made(self, key):
        self._making -= 1
        if self._waiting:
            self._waiting.popleft().callback(key)
        else:
            self._ready.append(key)
        self._refill()

    def _failed(self, failure):
        self._making -= 1
        self.log.failure("RSA key generation failed", failure)
        if self._waiting:
            self._waiting.popleft().errback(failure)

    def take(self):
        """
        Return a Deferred that fires with a private key no one else gets.
        """
        self._noteArrival()
        if self._ready:
            d = defer.succeed(self._ready.popleft())
        else:
            d = defer.Deferred(lambda d: self._waiting.remove(d))
            self._waiting.append(d)
        self._refill()
        return d
