"""
The arrow cursor that the built-in display sources show.
"""

import numpy as np

from spicesrv.display.cursor import Cursor

# "#" outline, "." fill, " " transparent.  The hot spot is the top-left
# corner.
_ARROW = [
    "#           ",
    "##          ",
    "#.#         ",
    "#..#        ",
    "#...#       ",
    "#....#      ",
    "#.....#     ",
    "#......#    ",
    "#.......#   ",
    "#........#  ",
    "#.........# ",
    "#......#####",
    "#...#..#    ",
    "#..# #..#   ",
    "#.#  #..#   ",
    "##    #..#  ",
    "#     #..#  ",
    "       ##   ",
]

ARROW_WIDTH = len(_ARROW[0])
ARROW_HEIGHT = len(_ARROW)


def arrow_cursor(fill=(255, 255, 255), outline=(0, 0, 0)):
    """
    Return an arrow L{Cursor} with hot spot (0, 0).

    @param fill: the C{(red, green, blue)} colour inside the arrow.
    @param outline: the C{(red, green, blue)} colour of its edge.
    """
    mask = np.array([[ord(c) for c in row] for row in _ARROW], np.uint8)
    argb = np.zeros((ARROW_HEIGHT, ARROW_WIDTH, 4), np.uint8)
    for symbol, (red, green, blue) in ((".", fill), ("#", outline)):
        argb[mask == ord(symbol)] = (blue, green, red, 255)
    return Cursor(ARROW_WIDTH, ARROW_HEIGHT, 0, 0, argb.tobytes())
