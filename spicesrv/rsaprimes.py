"""
The primes of the link stage's RSA keys, found with GMP (gmpy2).

This is what L{spicesrv.keys}'s worker processes run (L{main}), so it
imports nothing else of spicesrv's: a worker stays small.

GMP's search (a sieve, then the Baillie-PSW test and Miller-Rabin rounds on
each candidate that passes it; no composite is known to pass Baillie-PSW)
finds a 512-bit prime two to three times faster than OpenSSL 3's RSA key
generation, which runs 64 Miller-Rabin rounds on every prime it finds.
"""

import os
import secrets
import signal
import sys

import gmpy2

#: The public exponent, as libspice-server's.
PUBLIC_EXPONENT = 65537
#: The modulus' size: SPICE's link reply carries a 1024-bit key.
KEY_BITS = 1024

#: p and q differ above this bit (FIPS 186-4 B.3.1: |p - q| > 2 ** (nlen / 2
#: - 100)).
PRIME_DISTANCE_BITS = KEY_BITS // 2 - 100

#: How much lower than the server's a worker's scheduling priority is (as
#: C{nice}): keys are made ahead with the CPU that serving leaves, and a
#: storm of links never slows the sessions already open.
WORKER_NICENESS = 10


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


def main():
    """
    A key worker (C{python -m spicesrv.rsaprimes}, started by
    L{spicesrv.keys}): for each line read, a key's primes written as one
    line, C{p} and C{q} in hexadecimal; ends when its input does (the
    server ended, however it did).  Ctrl-C is for the server.  It runs
    L{WORKER_NICENESS} below the server's priority.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        os.nice(WORKER_NICENESS)
    except OSError:
        pass            # (nothing lower allowed: as it is)
    for _ in sys.stdin.buffer:
        p, q = key_primes()
        sys.stdout.write("%x %x\n" % (p, q))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
