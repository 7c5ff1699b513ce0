"""
Tests for L{spicesrv.display.encoders}.

The images are decoded here with C{struct} and C{lz4} straight from the
layout in protocol.md 6.4, not with the encoders' own structs.
"""

import struct

import lz4.block
import numpy as np
from twisted.trial import unittest

from spicesrv.display import encoders


def frame(width, height):
    """
    A BGRX test frame whose every pixel differs from its neighbours.
    """
    values = np.arange(width * height * 4, dtype=np.uint32) * 7919
    return (values % 251).astype(np.uint8).reshape(height, width, 4)


def parse_descriptor(image):
    """
    Return (id, type, flags, width, height) of an ImageDescriptor.
    """
    return struct.unpack("<QBBII", image[:18])


class ImageIdTests(unittest.TestCase):

    def test_unique(self):
        ids = [encoders.new_image_id() for _ in range(100)]
        self.assertEqual(len(set(ids)), 100)
        for image_id in ids:
            self.assertTrue(0 < image_id < 2 ** 64)


class BitmapTests(unittest.TestCase):

    def test_layout(self):
        pixels = frame(5, 3)
        image = encoders.encode_bitmap(pixels, 0x1122334455667788)
        self.assertEqual(parse_descriptor(image),
                         (0x1122334455667788, 0, 0, 5, 3))
        fmt, flags, x, y, stride, palette = struct.unpack(
            "<BBIIII", image[18:36])
        self.assertEqual((fmt, flags, x, y, stride, palette),
                         (8, 4, 5, 3, 20, 0))
        self.assertEqual(len(image), 36 + 20 * 3)
        self.assertEqual(encoders.BITMAP_IMAGE_HEADER_SIZE, 36)
        self.assertEqual(image[36:], pixels.tobytes())

    def test_protocol_worked_example(self):
        """
        Placed at offset 57 of a DRAW_COPY, the fields fall where
        protocol.md's worked example says.
        """
        body = bytes(57) + encoders.encode_bitmap(frame(4, 2), 9)
        self.assertEqual(body[65], 0)
        self.assertEqual(body[75], 8)
        self.assertEqual(body[76], 4)
        self.assertEqual(struct.unpack_from("<III", body, 77), (4, 2, 16))
        self.assertEqual(struct.unpack_from("<I", body, 89), (0,))
        self.assertEqual(len(body), 93 + 16 * 2)

    def test_sub_rectangle(self):
        """
        A non-contiguous slice of a frame is encoded as its own pixels.
        """
        whole = frame(40, 30)
        part = whole[5:12, 7:20]
        self.assertFalse(part.flags["C_CONTIGUOUS"])
        image = encoders.encode_bitmap(part, 1)
        self.assertEqual(parse_descriptor(image)[3:], (13, 7))
        decoded = np.frombuffer(image[36:], np.uint8).reshape(7, 13, 4)
        np.testing.assert_array_equal(decoded, whole[5:12, 7:20])

    def test_bad_pixels(self):
        self.assertRaises(ValueError, encoders.encode_bitmap,
                          np.zeros((4, 4, 3), np.uint8), 1)
        self.assertRaises(ValueError, encoders.encode_bitmap,
                          np.zeros((4, 4, 4), np.uint16), 1)
        self.assertRaises(ValueError, encoders.encode_bitmap,
                          np.zeros((0, 4, 4), np.uint8), 1)


class LZ4Tests(unittest.TestCase):

    def decode(self, image):
        """
        Decode an LZ4 image as spice-gtk does; return the descriptor and the
        pixels.
        """
        descriptor = parse_descriptor(image)
        width, height = descriptor[3:]
        (data_size,) = struct.unpack_from("<I", image, 18)
        data = image[22:]
        self.assertEqual(len(data), data_size)
        top_down, bitmap_format = data[0], data[1]
        self.assertEqual((top_down, bitmap_format), (1, 8))
        rows = b""
        offset = 2
        while offset < len(data):
            (length,) = struct.unpack_from(">I", data, offset)
            offset += 4
            rows += lz4.block.decompress(
                data[offset:offset + length],
                uncompressed_size=width * height * 4)
            offset += length
        self.assertEqual(offset, len(data))
        pixels = np.frombuffer(rows, np.uint8).reshape(height, width, 4)
        return descriptor, pixels

    def test_layout(self):
        pixels = frame(17, 9)
        image = encoders.encode_lz4(pixels, 77)
        descriptor, decoded = self.decode(image)
        self.assertEqual(descriptor, (77, 109, 0, 17, 9))
        np.testing.assert_array_equal(decoded, pixels)

    def test_one_block(self):
        pixels = frame(8, 8)
        image = encoders.encode_lz4(pixels, 1)
        (length,) = struct.unpack_from(">I", image, 24)
        self.assertEqual(len(image), 28 + length)
        self.assertEqual(encoders.LZ4_IMAGE_HEADER_SIZE, 24)

    def test_sub_rectangle(self):
        whole = frame(64, 48)
        whole[10:20, 10:30] = 200
        part = whole[8:22, 5:33]
        descriptor, decoded = self.decode(encoders.encode_lz4(part, 3))
        self.assertEqual(descriptor[3:], (28, 14))
        np.testing.assert_array_equal(decoded, part)

    def test_compresses(self):
        """
        A flat area compresses to much less than its raw size.
        """
        pixels = np.full((100, 100, 4), 128, np.uint8)
        image = encoders.encode_lz4(pixels, 1)
        self.assertLess(len(image), 100 * 100 * 4 // 10)
        np.testing.assert_array_equal(self.decode(image)[1], pixels)

    def test_bad_pixels(self):
        self.assertRaises(ValueError, encoders.encode_lz4,
                          np.zeros((4, 0, 4), np.uint8), 1)
