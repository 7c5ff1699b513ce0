"""
The primes of the link stage's RSA keys, found with GMP (gmpy2).

This is what L{spicesrv.keys}'s worker processes run, so it imports
nothing else of spicesrv's: a worker stays small.

GMP's search (a sieve, then the Baillie-PSW test and Miller-Rabin rounds on
each candidate that passes it; no composite is known to pass Baillie-PSW)
finds a 512-bit prime two to three times faster than OpenSSL 3's RSA key
generation, which runs 64 Miller-Rabin rounds on every prime it finds.
"""

import os
import secrets
import signal
import threading
import time

import gmpy2

#: The public exponent, as libspice-server's.
PUBLIC_EXPONENT = 65537
#: The modulus' size: SPICE's link reply carries a 1024-bit key.
KEY_BITS = 1024
#: Seconds between a worker's checks that the server still runs.
PARENT_CHECK_INTERVAL = 1.0

#: p and q differ above this bit (FIPS 186-4 B.3.1: |p - q| > 2 ** (nlen / 2
#: - 100)).
PRIME_DISTANCE_BITS = KEY_BITS // 2 - 100


def random_prime(bits):
    """
    A random prime of exactly C{bits} bits with its top two bits set (two
    of them make a modulus of twice as many bits) and gcd(p - 1, e) = 1.
    """
    top = gmpy2.mpz(3) << (bits - 2)
    while True:
        prime = gmpy2.next_prime(gmpy2.mpz(secrets.randbits(bits)) | top | 1)
        if prime.bit_length() == bits and gmpy2.gcd(prime - 1, PUBLIC_EXPONENT) == 1:
            return int(prime)


def key_primes():
    """
    The two primes of a new key, C{(p, q)}, far enough apart.
    """
    half = KEY_BITS // 2
    while True:
        p, q = random_prime(half), random_prime(half)
        if abs(p - q) >> PRIME_DISTANCE_BITS:
            return p, q


def worker_started():
    """
    In a new worker process: Ctrl-C is for the server, which stops its
    workers itself; and the worker ends once the server has, even if it was
    killed (a worker waits for work on a pipe it holds both ends of, so it
    would never hear of it otherwise).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_INTERVAL)
        os._exit(0)
    threading.Thread(target=watch, name="spicesrv-parent-watch", daemon=True).start()
