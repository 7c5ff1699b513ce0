"""
Capability words: capability N is bit N % 32 of word N // 32.
"""

import struct


def caps_to_words(caps):
    """
    Turn a set of capability numbers into a list of u32 words (as few as
    needed; none for an empty set).
    """
    caps = set(caps)
    if not caps:
        return []
    words = [0] * (max(caps) // 32 + 1)
    for cap in caps:
        words[cap // 32] |= 1 << (cap % 32)
    return words


def words_to_caps(words):
    """
    Turn a sequence of u32 words into the set of capability numbers.
    """
    caps = set()
    for index, word in enumerate(words):
        for bit in range(32):
            if word & (1 << bit):
                caps.add(index * 32 + bit)
    return caps


def pack_words(words):
    return struct.pack("<%dI" % len(words), *words)


def unpack_words(data, count):
    return list(struct.unpack_from("<%dI" % count, data))
