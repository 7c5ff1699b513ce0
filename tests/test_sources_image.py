"""
Tests for L{spicesrv.sources.image}.
"""

import io
import os
import resource
import struct
import zlib

import numpy as np
from PIL import Image
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from spicesrv.display.cursor import Cursor
from spicesrv.interfaces import IDisplaySource, IMigratableState, ISource
from spicesrv.sources.image import STATE_MAGIC, ImageSource, decode_state, encode_state
from spicesrv.sources.picture import MAX_PICTURE_PIXELS, MAX_PICTURE_SIDE
from spicesrv.testing import RecordingObserver


def picture(width, height):
    """
    An RGB picture with a distinct colour in each corner.
    """
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[0, -1] = (0, 255, 0)
    rgb[-1, 0] = (0, 0, 255)
    rgb[-1, -1] = (10, 20, 30)
    return Image.fromarray(rgb)


def pngBomb(width, height):
    """
    A real, decodable PNG of C{width} x C{height} black pixels, one bit
    each, compressed: a few kilobytes that decode to C{width * height * 3}
    bytes of RGB.
    """
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    row = b"\0" * (1 + (width + 7) // 8)
    packer = zlib.compressobj(9)
    rows = 256
    pieces = [packer.compress(row * rows) for _ in range(height // rows)]
    pieces += [packer.compress(row * (height % rows)), packer.flush()]
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", b"".join(pieces)) + chunk(b"IEND", b""))


def peakMemory():
    """
    This process's peak resident memory, in bytes.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class ImageSourceTests(unittest.TestCase):

    def write(self, image, name="picture.png"):
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, name)
        image.save(path)
        return path

    def test_interfaces(self):
        source = ImageSource(self.write(picture(4, 3)))
        self.assertTrue(verifyObject(IDisplaySource, source))
        self.assertTrue(verifyObject(IMigratableState, source))
        self.assertTrue(verifyObject(ISource, source))
        self.assertEqual(source.type, "display")
        self.assertEqual(source.major_version,
                         IDisplaySource.getTaggedValue("major_version"))
        self.assertEqual(source.minor_version,
                         IDisplaySource.getTaggedValue("minor_version"))
        self.assertEqual(source.migration_key, "display.image")
        self.assertEqual(source.devices(), [source])

    def test_pixels(self):
        source = ImageSource(self.write(picture(5, 3)))
        self.assertEqual((source.width, source.height), (5, 3))
        frame = source.framebuffer()
        self.assertEqual(frame.shape, (3, 5, 4))
        self.assertEqual(frame.dtype, np.uint8)
        self.assertTrue(frame.flags["C_CONTIGUOUS"])
        self.assertEqual(tuple(frame[0, 0, :3]), (0, 0, 255))
        self.assertEqual(tuple(frame[0, 4, :3]), (0, 255, 0))
        self.assertEqual(tuple(frame[2, 0, :3]), (255, 0, 0))
        self.assertEqual(tuple(frame[2, 4, :3]), (30, 20, 10))

    def test_other_formats(self):
        """
        A palette GIF and a PNG with alpha are shown too.
        """
        gif = self.write(picture(6, 4).convert("P"), "picture.gif")
        self.assertEqual(ImageSource(gif).framebuffer().shape, (4, 6, 4))
        rgba = self.write(picture(6, 4).convert("RGBA"), "alpha.png")
        self.assertEqual(ImageSource(rgba).framebuffer().shape, (4, 6, 4))

    def test_cursor(self):
        source = ImageSource(self.write(picture(40, 30)))
        self.assertIsInstance(source.cursor(), Cursor)
        self.assertEqual(source.cursor_position(), (20, 15))

    def test_missing_file(self):
        path = os.path.join(self.mktemp(), "nothing.png")
        error = self.assertRaises(ValueError, ImageSource, path)
        self.assertIn(path, str(error))
        self.assertNotIn("\n", str(error))

    def test_not_an_image(self):
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "notes.png")
        with open(path, "w") as f:
            f.write("not a picture\n")
        error = self.assertRaises(ValueError, ImageSource, path)
        self.assertIn(path, str(error))
        self.assertNotIn("\n", str(error))

    def test_directory(self):
        directory = self.mktemp()
        os.makedirs(directory)
        error = self.assertRaises(ValueError, ImageSource, directory)
        self.assertIn(directory, str(error))

    def test_migration_round_trip(self):
        source = ImageSource(self.write(picture(8, 6)))
        state = source.get_migration_state()
        self.assertTrue(state.startswith(STATE_MAGIC))
        self.assertIs(source.get_migration_state(), state, "made once, then reused")

        target = ImageSource(self.write(Image.new("RGB", (8, 6), "white")))
        observer = RecordingObserver()
        target.addObserver(observer)
        target.set_migration_state(state)
        np.testing.assert_array_equal(target.framebuffer(),
                                      source.framebuffer())
        self.assertEqual(observer.events, [("damaged", [(0, 0, 8, 6)])])

    def test_migration_other_size(self):
        source = ImageSource(self.write(picture(8, 6)))
        target = ImageSource(self.write(picture(3, 3)))
        observer = RecordingObserver()
        target.addObserver(observer)
        target.set_migration_state(source.get_migration_state())
        self.assertEqual((target.width, target.height), (8, 6))
        self.assertEqual(observer.events, [("surface_changed", 8, 6)])
        np.testing.assert_array_equal(target.framebuffer(),
                                      source.framebuffer())

    def test_huge_picture_refused(self):
        """
        A small file that claims a huge picture is refused from its header,
        with the limits in the message, before anything is decoded: the
        process's memory does not grow by the gigabyte decoding would take.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        for width, height in [(13000, 13000),     # 0.5 GB as RGB; Pillow only warns
                              (20000, 20000),     # Pillow refuses it too
                              (MAX_PICTURE_SIDE + 1, 8),
                              (MAX_PICTURE_SIDE, MAX_PICTURE_PIXELS // MAX_PICTURE_SIDE + 1)]:
            path = os.path.join(directory, "%dx%d.png" % (width, height))
            with open(path, "wb") as f:
                f.write(pngBomb(width, height))
            self.assertLess(os.path.getsize(path), 64 * 1024)
            before = peakMemory()
            error = self.assertRaises(ValueError, ImageSource, path)
            self.assertLess(peakMemory() - before, 100 * 1024 * 1024)
            self.assertIn(path, str(error))
            self.assertIn("at most %d pixels wide or tall and %d pixels in all"
                          % (MAX_PICTURE_SIDE, MAX_PICTURE_PIXELS), str(error))
            self.assertNotIn("\n", str(error))

    def test_huge_migrated_picture_refused(self):
        source = ImageSource(self.write(picture(8, 6)))
        before = peakMemory()
        error = self.assertRaises(ValueError, source.set_migration_state,
                                  pngBomb(13000, 13000))
        self.assertLess(peakMemory() - before, 100 * 1024 * 1024)
        self.assertIn("the migrated picture", str(error))
        self.assertIn("at most %d pixels wide" % (MAX_PICTURE_SIDE,), str(error))
        self.assertEqual(source.framebuffer().shape, (6, 8, 4))

    def test_largest_picture_accepted(self):
        path = os.path.join(self.mktemp())
        with open(path, "wb") as f:
            f.write(pngBomb(MAX_PICTURE_SIDE, 16))
        self.assertEqual(ImageSource(path).framebuffer().shape, (16, MAX_PICTURE_SIDE, 4))

    def test_bad_migration_state(self):
        source = ImageSource(self.write(picture(8, 6)))
        good = ImageSource(self.write(picture(5, 4))).get_migration_state()
        header = good[:16]
        for junk in [b"junk", good[:10], b"XXXXXXXX" + good[8:], good[:-3],
                     header + b"\xff" * 40,
                     STATE_MAGIC + b"\0\0\0\0\4\0\0\0" + good[16:],
                     STATE_MAGIC + b"\xff\xff\0\0\xff\xff\0\0" + good[16:]]:
            self.assertRaises(ValueError, source.set_migration_state, junk)
        self.assertEqual(source.framebuffer().shape, (6, 8, 4))

    def test_state_exact_for_any_pixels(self):
        """
        The state format is lossless for any pixels, wrapping differences
        included, and small for smooth pictures.
        """
        noise = np.random.RandomState(3).randint(0, 256, (37, 53, 4)).astype(np.uint8)
        np.testing.assert_array_equal(decode_state(encode_state(noise)), noise)
        y, x = np.mgrid[0:300, 0:400]
        smooth = np.empty((300, 400, 4), np.uint8)
        smooth[..., 0], smooth[..., 1], smooth[..., 2], smooth[..., 3] = x, y, x + y, 255
        state = encode_state(smooth)
        np.testing.assert_array_equal(decode_state(state), smooth)
        self.assertLess(len(state), smooth.nbytes // 50)

    def test_legacy_png_state(self):
        """
        A source of an earlier spicesrv sends a PNG file; it is still shown.
        """
        png = io.BytesIO()
        picture(8, 6).save(png, "PNG")
        target = ImageSource(self.write(picture(3, 3)))
        target.set_migration_state(png.getvalue())
        np.testing.assert_array_equal(
            target.framebuffer(), ImageSource(self.write(picture(8, 6))).framebuffer())
