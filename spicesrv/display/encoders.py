"""
Encoders that turn a rectangle of a framebuffer into a SPICE C{Image}
(protocol.md 6.4): the 18-byte ImageDescriptor followed by the variant part.

The pixels are a numpy array of shape C{(height, width, 4)}, dtype uint8,
bytes B, G, R, X, as L{spicesrv.interfaces.IDisplaySource.framebuffer}
returns; a slice of it (which need not be contiguous) is fine.
"""

import itertools
import struct

import lz4.block
import numpy as np
import simplejpeg

IMAGE_TYPE_BITMAP = 0
IMAGE_TYPE_JPEG = 105
IMAGE_TYPE_LZ4 = 109

#: The JPEG quality of stills (libspice-server's jpeg_quality).
JPEG_QUALITY = 85

BITMAP_FMT_32BIT = 8
BITMAP_FLAG_TOP_DOWN = 4

#: ImageDescriptor: id u64, type u8, flags u8, width u32, height u32.
DESCRIPTOR = struct.Struct("<QBBII")

#: BITMAP variant: format u8, flags u8, x u32, y u32, stride u32,
#: palette ptr32 (0: none).  The pixels follow.
BITMAP_HEADER = struct.Struct("<BBIIII")

#: LZ4 variant: data_size u32, then the data, which starts with
#: top_down u8 and bitmap_format u8.
LZ4_HEADER = struct.Struct("<IBB")

#: JPEG variant: data_size u32, then one baseline JPEG of the image's size.
JPEG_HEADER = struct.Struct("<I")

#: The length prefix of each LZ4 block, big-endian.
LZ4_BLOCK_LENGTH = struct.Struct(">I")

IMAGE_DESCRIPTOR_SIZE = DESCRIPTOR.size
#: Bytes before the pixels of an image from L{encode_bitmap}.
BITMAP_IMAGE_HEADER_SIZE = DESCRIPTOR.size + BITMAP_HEADER.size
#: Bytes before the first block length of an image from L{encode_lz4}.
LZ4_IMAGE_HEADER_SIZE = DESCRIPTOR.size + LZ4_HEADER.size

_image_ids = itertools.count(1)


def new_image_id():
    """
    Return an image id (u64) not returned before in this process.
    """
    return next(_image_ids)


def _size(pixels):
    """
    Check that C{pixels} is a non-empty BGRX array and return its width and
    height.
    """
    if pixels.ndim != 3 or pixels.shape[2] != 4 or pixels.dtype != np.uint8:
        raise ValueError(
            "expected a (height, width, 4) uint8 array, got shape %r dtype %s"
            % (pixels.shape, pixels.dtype))
    height, width = pixels.shape[:2]
    if width == 0 or height == 0:
        raise ValueError("cannot encode an empty %dx%d image"
                         % (width, height))
    return width, height


def _rows(pixels):
    """
    Check C{pixels} as L{_size} does and return its size and its rows
    tightly packed.
    """
    width, height = _size(pixels)
    return width, height, np.ascontiguousarray(pixels).tobytes()


def encode_bitmap(pixels, image_id):
    """
    Return the bytes of an uncompressed 32-bit top-down BITMAP image of
    C{pixels}, with id C{image_id}.
    """
    width, height, rows = _rows(pixels)
    return b"".join([
        DESCRIPTOR.pack(image_id, IMAGE_TYPE_BITMAP, 0, width, height),
        BITMAP_HEADER.pack(BITMAP_FMT_32BIT, BITMAP_FLAG_TOP_DOWN,
                           width, height, width * 4, 0),
        rows,
    ])


def encode_lz4(pixels, image_id):
    """
    Return the bytes of an LZ4 image of C{pixels} (32-bit, top-down, one
    block), with id C{image_id}.  Only for clients with the display
    capability LZ4_COMPRESSION.
    """
    width, height, rows = _rows(pixels)
    block = lz4.block.compress(rows, store_size=False)
    data_size = 2 + LZ4_BLOCK_LENGTH.size + len(block)
    return b"".join([
        DESCRIPTOR.pack(image_id, IMAGE_TYPE_LZ4, 0, width, height),
        LZ4_HEADER.pack(data_size, 1, BITMAP_FMT_32BIT),
        LZ4_BLOCK_LENGTH.pack(len(block)),
        block,
    ])


def encode_jpeg(pixels, image_id, quality=JPEG_QUALITY):
    """
    Return the bytes of a JPEG image (type 105) of C{pixels}: one baseline
    4:2:0 JPEG, top row first, whose size is the descriptor's (spice-gtk
    rejects any other).  Lossy: only for photographic pixels.  The xRGB
    surfaces need no alpha, so JPEG_ALPHA (108) is never used.
    """
    width, height = _size(pixels)
    data = simplejpeg.encode_jpeg(np.ascontiguousarray(pixels), quality=quality,
                                  colorspace="BGRX", colorsubsampling="420",
                                  fastdct=True)
    return b"".join([
        DESCRIPTOR.pack(image_id, IMAGE_TYPE_JPEG, 0, width, height),
        JPEG_HEADER.pack(len(data)),
        data,
    ])
