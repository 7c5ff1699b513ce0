"""
A display source that shows a still picture from a file.
"""

import io
import struct

import lz4.block
import numpy as np
from zope.interface import implementer

from spicesrv.interfaces import IMigratableState
from spicesrv.sources.base import FramebufferSource
from spicesrv.sources.picture import checkPictureSize, loadPicture


def _bgrx(picture):
    """
    Return an RGB Pillow image as a (height, width, 4) BGRX numpy array.
    """
    rgb = np.asarray(picture)
    frame = np.empty(rgb.shape[:2] + (4,), np.uint8)
    frame[..., :3] = rgb[..., ::-1]
    frame[..., 3] = 255
    return frame


#: The migrated state (version 2): this magic, the width and height (u32
#: little-endian each), then the BGRX frame, each row's bytes replaced by
#: their difference to the pixel on their left (PNG's Sub filter, modulo
#: 256), compressed as one LZ4 block.  The filter makes gradients and flat
#: areas runs LZ4 compresses well (a 1024x768 test picture: 3 MiB in
#: about 90 KiB); making and applying it take a few milliseconds, where PNG
#: took tens.  Version 1 states (a PNG file) are still accepted.
STATE_MAGIC = b"SPIMGv2\0"
_STATE_HEADER = struct.Struct("<8sII")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def encode_state(frame):
    """
    The migrated state of a C{(height, width, 4)} uint8 BGRX frame.
    """
    height, width = frame.shape[:2]
    rows = frame.copy()
    rows[:, 1:] -= frame[:, :-1]
    return (_STATE_HEADER.pack(STATE_MAGIC, width, height)
            + lz4.block.compress(memoryview(rows).cast("B"), store_size=False))


def decode_state(data):
    """
    The BGRX frame of a state from L{encode_state}; L{ValueError} if it is
    not one.
    """
    if len(data) < _STATE_HEADER.size:
        raise ValueError("the migrated picture is truncated (%d bytes)" % (len(data),))
    magic, width, height = _STATE_HEADER.unpack_from(data)
    if magic != STATE_MAGIC:
        raise ValueError("the migrated picture is not in a format this server reads")
    if not width or not height:
        raise ValueError("the migrated picture is %dx%d pixels" % (width, height))
    checkPictureSize(width, height, "the migrated picture")
    size = width * height * 4
    try:
        raw = lz4.block.decompress(memoryview(data)[_STATE_HEADER.size:],
                                   uncompressed_size=size)
    except lz4.block.LZ4BlockError as e:
        raise ValueError("the migrated picture does not decompress (%s)" % (e,))
    if len(raw) != size:
        raise ValueError("the migrated picture holds %d bytes, not %d" % (len(raw), size))
    rows = np.frombuffer(raw, np.uint8).reshape(height, width, 4)
    return np.cumsum(rows, axis=1, dtype=np.uint8)


@implementer(IMigratableState)
class ImageSource(FramebufferSource):
    """
    Shows the picture in the file at C{path}, which any format Pillow
    opens may hold.  A missing or unreadable file, or a picture beyond
    L{spicesrv.sources.picture.MAX_PICTURE_SIDE} or
    L{spicesrv.sources.picture.MAX_PICTURE_PIXELS}, raises L{ValueError}
    (so does such a picture in migrated state).
    """

    migration_key = "display.image"

    def __init__(self, path):
        picture = loadPicture(path, path)
        FramebufferSource.__init__(self, *picture.size)
        self.description = "picture %s" % (path,)
        self._show(picture)

    def _show(self, picture):
        self._showFrame(_bgrx(picture))

    def _showFrame(self, frame, state=None):
        # A still picture: its state is made once, with the picture, so that
        # a migration does not wait for it: neither the source's snapshot nor
        # the target's copy of its own state (kept in case it must be put
        # back) is on the critical path of ``migrate``.  A few milliseconds
        # at start-up, about 100 KB kept.
        self._state = encode_state(frame) if state is None else state
        self.setFrame(frame)

    # IMigratableState

    def get_migration_state(self):
        return self._state

    def set_migration_state(self, data):
        if bytes(data[:len(_PNG_SIGNATURE)]) == _PNG_SIGNATURE:
            self._show(loadPicture(io.BytesIO(data), "the migrated picture"))
        else:
            # The state received is this picture's state: keep it as is.
            self._showFrame(decode_state(data), bytes(data))
