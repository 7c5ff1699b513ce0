"""
A cursor shape as the cursor channel sends it.
"""

import itertools
from dataclasses import dataclass, field

_unique = itertools.count(1)


@dataclass(frozen=True)
class Cursor:
    """
    A cursor image in SPICE's ALPHA format.

    @ivar argb: C{width * height * 4} bytes, each pixel a little-endian
        32-bit ARGB value (bytes B, G, R, A), top row first.
    @ivar unique: an id the client may cache the shape under; a new shape
        gets a new id.
    """

    width: int
    height: int
    hot_x: int
    hot_y: int
    argb: bytes
    unique: int = field(default_factory=lambda: next(_unique))

    def __post_init__(self):
        if len(self.argb) != self.width * self.height * 4:
            raise ValueError(
                "cursor data is %d bytes, expected %d for %dx%d"
                % (len(self.argb), self.width * self.height * 4,
                   self.width, self.height))
