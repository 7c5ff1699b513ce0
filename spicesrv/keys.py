"""
RSA-1024 key pairs for the link stage, one fresh pair per link as
libspice-server does, and the decryption of the client's ticket.

Generating a key takes tens of milliseconds, so a small pool is kept filled
in a worker thread: a burst of links takes ready keys and never waits for
the reactor thread to do arithmetic.
"""

from collections import deque

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from twisted.internet import defer, threads
from twisted.logger import Logger

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
    A few RSA keys generated ahead of need.

    @param size: how many keys to keep ready: two clients' worth (four
        channels each) by default.
    @param generate: makes one key; called in a worker thread unless
        C{inThread} is false (tests pass a fast, deterministic generator).
    """

    log = Logger()

    def __init__(self, size=8, generate=generate_key, inThread=True):
        self._size = size
        self._generate = generate
        self._inThread = inThread
        self._ready = deque()
        self._waiting = deque()
        self._making = 0

    def start(self):
        self._refill()

    def _refill(self):
        while len(self._ready) + self._making < self._size + len(self._waiting):
            self._making += 1
            if self._inThread:
                d = threads.deferToThread(self._generate)
            else:
                d = defer.maybeDeferred(self._generate)
            d.addCallbacks(self._made, self._failed)

    def _made(self, key):
        self._making -= 1
        if self._waiting:
            self._waiting.popleft().callback(key)
        else:
            self._ready.append(key)

    def _failed(self, failure):
        self._making -= 1
        self.log.failure("RSA key generation failed", failure)
        if self._waiting:
            self._waiting.popleft().errback(failure)

    def take(self):
        """
        Return a Deferred that fires with a private key no one else gets.
        """
        if self._ready:
            d = defer.succeed(self._ready.popleft())
        else:
            d = defer.Deferred(lambda d: self._waiting.remove(d))
            self._waiting.append(d)
        self._refill()
        return d
