"""
Tests for L{spicesrv.display.stills}: the JPEG image, the classifier (text
and UI lossless, photographs lossy), the rule for when JPEG pays, and the
display channel sending photographs as JPEG and refreshing them exactly
once the link is idle.
"""

import struct

import numpy
import simplejpeg
from twisted.trial import unittest

from spicesrv.channels.display import MAX_IMAGE_BYTES, SPARE_SCAN_ROWS
from spicesrv.display import encoders, stills
from spicesrv.sources.demo import DemoSource
from spicesrv.sources.motion import desktopPicture, scrollPicture, videoPicture
from spicesrv.testing import (
    ClientSurface, FakeDisplaySource, TestClientChannel, makeTestServer)
from spicesrv.wire.constants import ChannelType, DisplayCap
from spicesrv.wire.messages import DISPLAY_CLIENT
from tests.pictures import textPicture, uiPicture
from tests.test_channels import Setup, displayInit

#: The least PSNR (dB) a photograph sent as JPEG (quality 85) keeps.
PSNR_BOUND = 35.0


def psnr(a, b):
    mse = numpy.mean((a[..., :3].astype(numpy.float64) - b[..., :3]) ** 2)
    return float("inf") if mse == 0 else 10 * numpy.log10(255.0 ** 2 / mse)


class JpegImageTests(unittest.TestCase):
    def test_layout(self):
        """
        Descriptor type 105 with the JPEG's own size, then data_size u32 and
        one JPEG (protocol.md 6.4).
        """
        pixels = scrollPicture(96, 40)
        image = encoders.encode_jpeg(pixels, 77)
        image_id, kind, flags, width, height = struct.unpack("<QBBII", image[:18])
        self.assertEqual((image_id, kind, flags, width, height), (77, 105, 0, 96, 40))
        (size,) = struct.unpack("<I", image[18:22])
        self.assertEqual(size, len(image) - 22)
        self.assertEqual(simplejpeg.decode_jpeg_header(image[22:])[:2], (40, 96))
        decoded = simplejpeg.decode_jpeg(image[22:], colorspace="BGRX")
        self.assertGreater(psnr(decoded, pixels), PSNR_BOUND)

    def test_slice(self):
        """
        A slice of a framebuffer (not contiguous) is fine.
        """
        frame = scrollPicture(200, 100)
        image = encoders.encode_jpeg(frame[10:60, 30:150], 1)
        self.assertEqual(struct.unpack("<II", image[10:18]), (120, 50))

    def test_empty(self):
        self.assertRaises(ValueError, encoders.encode_jpeg,
                          numpy.zeros((0, 5, 4), numpy.uint8), 1)


class ClassifierTests(unittest.TestCase):
    """
    Photographs (many colours, few flat neighbours, few hard edges) are
    photographic; text and UI are not.
    """

    def test_photographs(self):
        for name, pixels in (("photo", scrollPicture(1024, 128)),
                             ("video frame", videoPicture(5, 640, 64))):
            self.assertTrue(stills.looksPhotographic(pixels), name)
            self.assertEqual(stills.photoSpans(pixels), [(0, pixels.shape[1])], name)

    def test_textAndUi(self):
        pictures = {
            "text on white": textPicture(),
            "text on a tinted background": textPicture(background=(200, 220, 240)),
            "UI": uiPicture(),
            "desktop": desktopPicture(1024, 256),
            "demo": DemoSource().framebuffer(),
        }
        for name, pixels in pictures.items():
            for top in range(0, pixels.shape[0] - 64, 64):
                band = pixels[top:top + 64]
                self.assertEqual(stills.photoSpans(band), [], "%s at row %d" % (name, top))
            self.assertFalse(stills.looksPhotographic(pixels), name)

    def test_flatAndNoise(self):
        """
        One colour is not a photograph, and neither is random noise (hard
        edges everywhere).
        """
        flat = numpy.full((64, 512, 4), 77, numpy.uint8)
        noise = numpy.random.default_rng(1).integers(0, 256, (64, 512, 4), numpy.uint8)
        self.assertEqual(stills.photoSpans(flat), [])
        self.assertEqual(stills.photoSpans(noise), [])

    def test_photoBesideText(self):
        """
        A photograph in a window beside text: only the photograph's columns
        (whole tiles inside it) are photographic.
        """
        band = numpy.concatenate([textPicture(320, 64), scrollPicture(512, 64),
                                  uiPicture(256, 64)], axis=1)
        (span,) = stills.photoSpans(band)
        self.assertGreaterEqual(span[0], 320 - stills.TILE)
        self.assertLessEqual(span[0], 320 + stills.TILE)
        self.assertGreaterEqual(span[1], 832 - stills.TILE)
        self.assertLessEqual(span[1], 832)

    def test_small(self):
        """
        Narrow or low strips never go lossy.
        """
        self.assertEqual(stills.photoSpans(scrollPicture(stills.MIN_SPAN - 1, 64)), [])
        self.assertEqual(stills.photoSpans(scrollPicture(512, stills.MIN_ROWS - 1)), [])

    def test_oddWidth(self):
        pixels = scrollPicture(1000, 64)
        self.assertEqual(stills.photoSpans(pixels), [(0, 1000)])


class PolicyTests(unittest.TestCase):
    """
    QEMU's image-compression and jpeg-wan-compression, mapped to raw, LZ4
    and JPEG, and the link rate that makes JPEG pay.
    """

    slow = 5e6 / 8     # 5 Mbit/s
    fast = 50e6 / 8    # 50 Mbit/s

    def test_auto(self):
        policy = stills.StillPolicy()
        self.assertEqual((policy.imageCompression, policy.jpegWan), ("auto_glz", "auto"))
        self.assertTrue(policy.jpegAllowed(self.slow))
        self.assertFalse(policy.jpegAllowed(self.fast))
        self.assertFalse(policy.jpegAllowed(None))  # not measured yet: fast
        self.assertTrue(policy.jpegAllowed(stills.WAN_RATE * 0.99))
        self.assertFalse(policy.jpegAllowed(stills.WAN_RATE))

    def test_alwaysAndNever(self):
        for rate in (None, self.slow, self.fast):
            self.assertTrue(stills.StillPolicy(jpegWan="always").jpegAllowed(rate))
            self.assertFalse(stills.StillPolicy(jpegWan="never").jpegAllowed(rate))

    def test_compressions(self):
        """
        JPEG only replaces libspice's QUIC: auto_glz, auto_lz and quic may
        go lossy; glz, lz, lz4 and off never; off is raw bitmaps, the others
        LZ4 for clients that have it.
        """
        for value in stills.IMAGE_COMPRESSIONS:
            policy = stills.StillPolicy(value, "always")
            self.assertEqual(policy.jpegAllowed(self.slow), value in ("auto_glz", "auto_lz", "quic"),
                             value)
            self.assertEqual(policy.lossless(True), "raw" if value == "off" else "lz4", value)
            self.assertEqual(policy.lossless(False), "raw", value)

    def test_badValues(self):
        self.assertRaises(ValueError, stills.StillPolicy, "zlib")
        self.assertRaises(ValueError, stills.StillPolicy, "auto_glz", "sometimes")


class StillsTests(unittest.TestCase):
    def test_images(self):
        """
        With JPEG allowed, a band's photographic span goes as JPEG and is
        remembered as lossy; the rest is lossless; C{exact} never goes
        lossy.
        """
        band = numpy.concatenate([uiPicture(256, 64), scrollPicture(512, 64)], axis=1)
        still = stills.Stills(stills.StillPolicy(jpegWan="always"), 768, 64)
        images = list(still.images(band, (0, 0, 768, 64), "lz4"))
        kinds = [(rect, image[8]) for rect, image in images]
        self.assertEqual(kinds, [((0, 0, 256, 64), 109), ((256, 0, 768, 64), 105)])
        self.assertEqual(dict(still.sent), {"lz4": 1, "jpeg": 1})
        self.assertEqual(still.takeLossy(), [(256, 0, 768, 64)])
        self.assertFalse(still.lossy)
        exact = list(still.images(band, (0, 0, 768, 64), "raw", exact=True))
        self.assertEqual([(rect, image[8]) for rect, image in exact], [((0, 0, 768, 64), 0)])

    def test_notAllowed(self):
        """
        Without JPEG the rectangle is one lossless image, as before.
        """
        still = stills.Stills(stills.StillPolicy(), 512, 200)
        pixels = scrollPicture(512, 200)
        images = list(still.images(pixels, (0, 0, 512, 200), "lz4", rate=None))
        self.assertEqual([(rect, image[8]) for rect, image in images],
                         [((0, 0, 512, 200), 109)])

    def test_bands(self):
        """
        A tall rectangle is classified in bands of whole JPEG blocks.
        """
        still = stills.Stills(stills.StillPolicy(jpegWan="always"), 512, 196)
        pixels = scrollPicture(512, 196)
        rects = [rect for rect, _ in still.images(pixels, (0, 0, 512, 196), "lz4")]
        self.assertEqual(rects, [(0, 0, 512, 64), (0, 64, 512, 128), (0, 128, 512, 192),
                                 (0, 192, 512, 196)])
        self.assertEqual(dict(still.sent), {"jpeg": 3, "lz4": 1})  # 4 rows: too low


class StillsSetup(Setup):
    def linkPicture(self, picture, jpegWan="always", caps=(DisplayCap.LZ4_COMPRESSION,), **kw):
        self.server = makeTestServer(disable_ticketing=True, jpeg_wan_compression=jpegWan, **kw)
        source = FakeDisplaySource(picture.shape[1], picture.shape[0])
        source.frame[...] = picture
        self.server.addInterface(source)
        self.source = source
        self.main = TestClientChannel(self.server, ChannelType.MAIN)
        self.session_id = self.main.next("INIT").session_id
        display = self.link(ChannelType.DISPLAY, channel_caps=set(caps))
        return display


class DisplayStillsTests(StillsSetup, unittest.TestCase):
    """
    The display channel sends a photograph as JPEG where the policy says,
    text losslessly, and every JPEG area exactly once the link is idle.
    """

    def test_photoAsJpegThenExact(self):
        picture = numpy.concatenate([textPicture(512, 256), scrollPicture(512, 256)], axis=1)
        display = self.linkPicture(picture)
        displayInit(display)
        surface = ClientSurface().applyAll(display.take())
        self.assertIn(105, surface.imageTypes)
        self.assertIn(109, surface.imageTypes)
        # The text is exact, the photograph close.
        numpy.testing.assert_array_equal(surface.pixels[:, :448], picture[:, :448])
        self.assertGreater(psnr(surface.pixels[:, 512:], picture[:, 512:]), PSNR_BOUND)
        channel = display.channel
        self.assertEqual(channel.stills.sent["jpeg"], surface.imageTypes.count(105))
        self.assertTrue(channel.stills.lossy)
        # Idle: the JPEG areas come again, losslessly.
        self.server.clock.advance(stills.IDLE_REFRESH)
        self.server.clock.advance(0)
        messages = display.take()
        self.assertTrue(messages)
        types = [record.src_bitmap[8] for name, record in messages if name == "DRAW_COPY"]
        self.assertEqual(set(types), {109})
        surface.applyAll(messages)
        numpy.testing.assert_array_equal(surface.pixels, picture)
        self.assertFalse(channel.stills.lossy)
        self.server.clock.advance(10)
        self.assertEqual(display.take(), [])

    def jpegPhoto(self):
        """A photograph linked and sent (as JPEG): the picture, the client, its surface."""
        picture = scrollPicture(512, 256)
        display = self.linkPicture(picture)
        displayInit(display)
        return picture, display, ClientSurface().applyAll(display.take())

    def scrollBy16(self, picture, display):
        """
        The source's picture scrolled up by 16 rows: the new picture and
        the messages sent for it (a COPY_BITS among them).
        """
        moved = numpy.concatenate([picture[16:], picture[:16]])
        self.source.frame[...] = moved
        self.source.damage([(0, 0, 512, 256)])
        self.server.clock.advance(0)
        messages = display.take()
        self.assertIn("COPY_BITS", [name for name, _ in messages])
        return moved, messages

    def test_jpegAreaCopiedThenRefreshed(self):
        """
        A photograph sent as JPEG that then scrolls: COPY_BITS moves the
        client's JPEG as it is (re-sending it would cost the link again
        every frame), the client's picture stays close, and the idle
        refresh makes it exact where it moved too.
        """
        picture, display, surface = self.jpegPhoto()
        self.assertIn(105, surface.imageTypes)
        moved, messages = self.scrollBy16(picture, display)
        drawn = sum((r.base.box.right - r.base.box.left) * (r.base.box.bottom - r.base.box.top)
                    for n, r in messages if n == "DRAW_COPY")
        self.assertLess(drawn, 512 * 64)        # the new rows, not the page again
        surface.applyAll(messages)
        self.assertGreater(psnr(surface.pixels, moved), PSNR_BOUND)
        self.server.clock.advance(stills.IDLE_REFRESH)
        self.server.clock.advance(0)
        surface.applyAll(display.take())
        numpy.testing.assert_array_equal(surface.pixels, moved)

    def test_exactOverJpegIsExact(self):
        """
        Where an exact image replaced a JPEG, a copy from there moves exact
        pixels: the refresh after it leaves the whole picture exact.
        """
        picture, display, surface = self.jpegPhoto()
        self.server.clock.advance(stills.IDLE_REFRESH)
        self.server.clock.advance(0)
        surface.applyAll(display.take())
        numpy.testing.assert_array_equal(surface.pixels, picture)
        self.assertFalse(display.channel.view.anyApprox and
                         display.channel.view.approx.any())
        moved, messages = self.scrollBy16(picture, display)
        surface.applyAll(messages)
        self.server.clock.advance(stills.IDLE_REFRESH)
        self.server.clock.advance(0)
        surface.applyAll(display.take())
        numpy.testing.assert_array_equal(surface.pixels, moved)

    def test_refreshWaitsForIdle(self):
        """
        While the source keeps drawing, the refresh waits.
        """
        display = self.linkPicture(scrollPicture(256, 128))
        displayInit(display)
        display.take()
        for i in range(5):
            self.server.clock.advance(stills.IDLE_REFRESH * 0.6)
            self.source.fill((0, 0, 4, 4), (i, i, i, 255))
        self.server.clock.advance(0)
        boxes = [(r.base.box.right - r.base.box.left, r.base.box.bottom - r.base.box.top)
                 for n, r in display.take() if n == "DRAW_COPY"]
        self.assertEqual(boxes, [(4, 4)] * 5)  # only the small updates
        self.assertTrue(display.channel.stills.lossy)
        self.server.clock.advance(stills.IDLE_REFRESH)
        self.server.clock.advance(0)
        types = [r.src_bitmap[8] for n, r in display.take() if n == "DRAW_COPY"]
        self.assertEqual(set(types), {109})
        self.assertFalse(display.channel.stills.lossy)

    def test_autoOnFastOrUnknownLink(self):
        """
        With C{auto} and no measured slow link, everything is lossless.
        """
        display = self.linkPicture(scrollPicture(256, 128), jpegWan="auto")
        displayInit(display)
        surface = ClientSurface().applyAll(display.take())
        self.assertEqual(surface.imageTypes, [109])

    def test_autoOnSlowLink(self):
        picture = scrollPicture(256, 128)
        display = self.linkPicture(picture, jpegWan="auto")
        displayInit(display)
        display.take()
        display.channel.streams.rate.rate = 4e6 / 8
        self.source.setFrame(scrollPicture(256, 128, seed=3))
        self.server.clock.advance(0)
        draws = [r for n, r in display.take() if n == "DRAW_COPY"]
        # The picture as JPEG; the link had room for a few exact rows after.
        jpeg = [r for r in draws if r.src_bitmap[8] == 105]
        self.assertEqual(jpeg, draws[:len(jpeg)])
        self.assertEqual(sum(r.base.box.bottom - r.base.box.top for r in jpeg), 128)

    def test_spareRefreshOfTheLowestRows(self):
        """
        On a slow link whose queue has room, an update that went whole is
        followed by the exact refresh of the lowest JPEG rows, as many as
        fit in L{stills.SPARE_QUEUE_SECONDS} of the link; the rest waits.
        With the queue over that, none.
        """
        picture = scrollPicture(256, 128)
        display = self.linkPicture(picture, jpegWan="auto")
        displayInit(display)
        display.take()
        rate = 4e6 / 8
        display.channel.streams.rate.rate = rate
        room = rate * stills.SPARE_QUEUE_SECONDS
        queued = [room]
        display.channel.queuedBytes = lambda: queued[0]
        self.source.setFrame(scrollPicture(256, 128, seed=3))
        self.server.clock.advance(0)
        self.assertEqual({r.src_bitmap[8] for n, r in display.take() if n == "DRAW_COPY"},
                         {105})
        self.assertTrue(display.channel.stills.lossy)

        queued[0] = room / 2
        self.source.damage([(0, 0, 1, 1)])
        self.server.clock.advance(0)
        draws = [r for n, r in display.take() if n == "DRAW_COPY"]
        refresh = draws[-1]
        rows = int(room / 2 // (256 * 4))
        self.assertEqual(refresh.src_bitmap[8], 109)
        self.assertEqual((refresh.base.box.left, refresh.base.box.top, refresh.base.box.right,
                          refresh.base.box.bottom), (0, 128 - rows, 256, 128))
        # The rest of the JPEG rows still wait, and only they go when the
        # link is idle.
        self.assertEqual(display.channel.view.inexact((0, 0, 256, 128)),
                         [(0, 0, 256, 128 - rows)])
        queued[0] = 0
        self.server.clock.advance(stills.IDLE_REFRESH)
        self.server.clock.advance(0)
        boxes = [(r.base.box.left, r.base.box.top, r.base.box.right, r.base.box.bottom)
                 for n, r in display.take() if n == "DRAW_COPY"]
        self.assertEqual((min(b[1] for b in boxes), max(b[3] for b in boxes)),
                         (0, 128 - rows))
        self.assertFalse(display.channel.stills.lossy)

    def test_spareRefreshInStrips(self):
        """
        On a link fast enough for all of it (JPEG forced), the spare refresh
        goes in images of at most MAX_IMAGE_BYTES, as every other update.
        """
        display = self.linkPicture(scrollPicture(1024, 600), jpegWan="always")
        displayInit(display)
        display.take()
        display.channel.streams.rate.rate = 500e6
        display.channel.queuedBytes = lambda: 0
        self.source.setFrame(scrollPicture(1024, 600, seed=3))
        self.server.clock.advance(0)
        draws = [r for n, r in display.take() if n == "DRAW_COPY"]
        refreshes = [r for r in draws if r.src_bitmap[8] == 109]
        self.assertTrue(refreshes)
        for r in draws:
            box = r.base.box
            self.assertLessEqual((box.right - box.left) * (box.bottom - box.top) * 4,
                                 MAX_IMAGE_BYTES)
        # The lowest rows, as many as the scan looks at a time.
        self.assertEqual(display.channel.view.inexact((0, 0, 1024, 600)),
                         [(0, 0, 1024, 600 - SPARE_SCAN_ROWS)])

    def test_spareRefreshForgetsWhatIsExact(self):
        """
        JPEG areas the client holds exactly again (drawn over exactly) are
        forgotten by the next update with room, without a refresh.
        """
        display = self.linkPicture(scrollPicture(256, 128), jpegWan="auto")
        displayInit(display)
        display.take()
        display.channel.streams.rate.rate = 4e6 / 8
        # (Room for the update, none to spare.)
        display.channel.queuedBytes = lambda: 4e6 / 8 * stills.SPARE_QUEUE_SECONDS
        self.source.setFrame(scrollPicture(256, 128, seed=3))
        self.server.clock.advance(0)
        display.take()
        self.assertTrue(display.channel.stills.lossy)
        display.channel.view.drew(self.source.framebuffer(), (0, 0, 256, 128))
        display.channel.queuedBytes = lambda: 0
        self.source.damage([(0, 0, 1, 1)])
        self.server.clock.advance(0)
        self.assertEqual(len([n for n, r in display.take() if n == "DRAW_COPY"]), 1)
        self.assertFalse(display.channel.stills.lossy)

    def test_never(self):
        display = self.linkPicture(scrollPicture(256, 128), jpegWan="never")
        displayInit(display)
        self.assertEqual(ClientSurface().applyAll(display.take()).imageTypes, [109])

    def test_imageCompressionOff(self):
        """
        C{off}: raw bitmaps, never JPEG, even with C{always}.
        """
        display = self.linkPicture(scrollPicture(256, 128), image_compression="off")
        displayInit(display)
        self.assertEqual(ClientSurface().applyAll(display.take()).imageTypes, [0])

    def test_clientPreference(self):
        """
        A client preferring LZ4 gets no JPEG (libspice's JPEG replaces QUIC
        only); one preferring auto_lz gets it.
        """
        display = self.linkPicture(scrollPicture(256, 128))
        display.send(DISPLAY_CLIENT["PREFERRED_COMPRESSION"], image_compression=7)
        displayInit(display)
        self.assertEqual(ClientSurface().applyAll(display.take()).imageTypes, [109])
        display.send(DISPLAY_CLIENT["PREFERRED_COMPRESSION"], image_compression=3)
        self.source.setFrame(scrollPicture(256, 128, seed=3))
        self.server.clock.advance(0)
        types = [r.src_bitmap[8] for n, r in display.take() if n == "DRAW_COPY"]
        self.assertEqual(set(types), {105})

    def test_rawClient(self):
        """
        A client without LZ4 (spice-html5) gets JPEG for photographs and raw
        bitmaps for the rest and for the refresh.
        """
        picture = numpy.concatenate([uiPicture(256, 128), scrollPicture(512, 128)], axis=1)
        display = self.linkPicture(picture, caps=())
        displayInit(display)
        surface = ClientSurface().applyAll(display.take())
        self.assertEqual(set(surface.imageTypes), {0, 105})
        self.server.clock.advance(stills.IDLE_REFRESH)
        self.server.clock.advance(0)
        surface.applyAll(display.take())
        numpy.testing.assert_array_equal(surface.pixels, picture)

    def test_streamRefreshIsExact(self):
        """
        A stream's area after it ends goes losslessly, even where JPEG is
        allowed.
        """
        display = self.linkPicture(scrollPicture(256, 128))
        displayInit(display)
        display.take()
        display.channel.refresh((0, 0, 256, 128))
        self.server.clock.advance(0)
        types = [r.src_bitmap[8] for n, r in display.take() if n == "DRAW_COPY"]
        self.assertEqual(set(types), {109})


class WanProbeTests(unittest.TestCase):
    def test_fast(self):
        probe = stills.WanProbe(10.0, 256 * 1024)
        self.assertIsNone(probe.check(10.01, 100 * 1024))
        self.assertGreaterEqual(probe.check(10.02, 0), stills.WAN_RATE)

    def test_slow(self):
        probe = stills.WanProbe(10.0, 256 * 1024)
        deadline = 256 * 1024 / stills.WAN_RATE
        self.assertIsNone(probe.check(10.0 + deadline * 0.9, 10 * 1024))
        rate = probe.check(10.0 + deadline * 2, 128 * 1024)
        self.assertAlmostEqual(rate, 128 * 1024 / (deadline * 2))
        self.assertLess(rate, stills.WAN_RATE)


class DisplayProbeTests(StillsSetup, unittest.TestCase):
    """
    With C{auto}, a first picture with photographs tests the link with its
    first strips; the rest goes as JPEG on a slow link, losslessly on a fast
    one.  A first picture without photographs goes whole, as before.
    """

    def firstPicture(self, picture, queued):
        display = self.linkPicture(picture, jpegWan="auto")
        backlog = [queued]
        display.channel.queuedBytes = lambda: backlog[0]
        displayInit(display)
        first = display.take()
        names = [n for n, _ in first]
        self.assertEqual(names[-1], "MARK")
        sent = sum(len(r.src_bitmap) for n, r in first if n == "DRAW_COPY")
        return display, first, sent, backlog

    def test_slowLink(self):
        picture = scrollPicture(1024, 600)
        display, first, sent, backlog = self.firstPicture(picture, 300 * 1024)
        self.assertGreaterEqual(sent, stills.PROBE_BYTES)
        self.assertLess(sent, stills.PROBE_BYTES + 300 * 1024)
        self.server.clock.advance(0)
        self.assertEqual(display.take(), [])   # waiting for the verdict
        for _ in range(100):
            self.server.clock.advance(stills.PROBE_POLL)
            backlog[0] = max(1, backlog[0] - 2000)  # 200 KB/s
        backlog[0] = 0
        self.server.clock.advance(0)
        self.assertLess(display.channel.stills.probedRate, stills.WAN_RATE)
        rest = display.take()
        types = {r.src_bitmap[8] for n, r in rest if n == "DRAW_COPY"}
        self.assertEqual(types, {105})
        surface = ClientSurface().applyAll(first + rest)
        self.assertGreater(psnr(surface.pixels, picture), PSNR_BOUND)

    def test_fastLink(self):
        picture = scrollPicture(1024, 600)
        display, first, sent, backlog = self.firstPicture(picture, 300 * 1024)
        backlog[0] = 0
        self.server.clock.advance(stills.PROBE_POLL)
        self.server.clock.advance(0)
        self.assertGreaterEqual(display.channel.stills.probedRate, stills.WAN_RATE)
        surface = ClientSurface().applyAll(first + display.take())
        self.assertEqual(set(surface.imageTypes), {109})
        numpy.testing.assert_array_equal(surface.pixels, picture)

    def test_noPhotographs(self):
        display, first, sent, backlog = self.firstPicture(uiPicture(1024, 600), 300 * 1024)
        self.assertEqual(ClientSurface().applyAll(first).imageTypes, [109])
        self.assertIsNone(display.channel._wanProbe)
