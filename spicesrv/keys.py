"""
RSA-1024 key pairs for the link stage, one fresh pair per link as
libspice-server does, and the decryption of the client's ticket.

Generating a key takes several milliseconds of CPU, so a pool is kept filled
by worker threads (one per CPU); its size follows the arrival rate, so that
a burst of links takes ready keys and never waits for the reactor thread to
do arithmetic.
"""

import math
import os
from collections import deque

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from spicesrv.wire.constants import TICKET_CIPHERTEXT_BYTES, TICKET_PUBKEY_BYTES

_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)


def generate_key():
    """
    Make a new RSA-1024 private key with e = 65537.
    """
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


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
    C{halfLife} when links stop coming.  Keys are made by C{workers}
    threads of the pool's own (by default one per CPU): OpenSSL's key
    generation runs without the GIL, so every core helps, and the reactor
    thread never does the arithmetic.

    @param size: the fewest keys kept ready: two clients' worth (four
        channels each) by default.
    @param generate: makes one key; called in a worker thread unless
        C{inThread} is false (tests pass a fast, deterministic generator).
    @param clock: what tells the time for the arrival rate (the reactor by
        default).
    """

    log = Logger()

    #: Seconds over which arrivals are counted for the rate.
    RATE_WINDOW = 1.0

    def __init__(self, size=8, generate=generate_key, inThread=True, maxSize=1024,
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
        """Stop the worker threads (at reactor shutdown)."""
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
