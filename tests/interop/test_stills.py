"""
Lossy stills with the real spice-gtk client: an C{image:} source whose
right half is a photograph and left half UI and text, over a link the
server treats as slow (C{--jpeg-wan-compression always}): the photograph
arrives as JPEG, which spice-gtk decodes close to the source, the text and
UI arrive pixel-exact, and once the link is idle the photograph is sent
again losslessly and the whole picture is exact.  The same over TLS through
a real slow link (L{tests.interop.slowlink}), where the server has to tell
by itself that the link is slow.
"""

import os

import numpy
from twisted.internet import defer, reactor

from spicesrv.display import stills
from spicesrv.server import SpiceServer
from spicesrv.sources.image import ImageSource
from spicesrv.testing import sessionChannel
from spicesrv.tls.devcerts import write_dev_certs
from spicesrv.wire.constants import ChannelType
from tests.interop import harness
from tests.interop.common import (
    PASSWORD, InteropTestCase, pixelsEqual, serveOnLoopback, tlsOnly)
from tests.interop.slowlink import SlowLink
from tests.pictures import mixedPicture, psnr, rgbImage

#: The PSNR (dB) the photograph keeps as JPEG (quality 85) in spice-gtk.
PSNR_BOUND = 35.0
SIZE = (1024, 600)


class StillsTests(InteropTestCase):
    @defer.inlineCallbacks
    def startServer(self, certs=None, **kwargs):
        """
        Serve the mixed picture on loopback; with C{certs} (an x509
        directory) on a TLS port only, where every channel must use TLS.
        Fires with the port number.
        """
        path = os.path.join(self.tmp, "mixed.png")
        rgbImage(mixedPicture(*SIZE)).save(path)
        self.source = ImageSource(path)
        self.server = SpiceServer(clock=reactor, password=PASSWORD, **kwargs)
        endpoint = None if certs is None else tlsOnly(self.server, certs)
        port = yield serveOnLoopback(self, self.server, self.source.devices(), endpoint)
        return port

    def display(self):
        return sessionChannel(self.server, ChannelType.DISPLAY)

    @defer.inlineCallbacks
    def waitForLossyPhoto(self, client, timeout=30):
        """
        Wait until the client shows the UI half exactly and the photograph
        close to the source (PSNR over L{PSNR_BOUND}); fire with the
        picture shown.
        """
        frame = self.source.framebuffer()
        half = (SIZE[0] // 2) // 64 * 64
        path = os.path.join(self.tmp, "lossy.raw")
        seen = []

        def lossyShown(pixels):
            shown = pixels.copy()
            seen[:] = [shown]
            return (shown.shape == frame.shape
                    and numpy.array_equal(shown[:, :half, :3], frame[:, :half, :3])
                    and psnr(shown[:, half:], frame[:, half:]) > PSNR_BOUND)
        yield client.waitForPixels(lossyShown, path, timeout=timeout)
        return seen[0]

    @defer.inlineCallbacks
    def test_photoAsJpegTextExactThenRefreshed(self):
        # Hold the exact refresh back until the lossy picture was seen.
        self.patch(stills, "IDLE_REFRESH", 600.0)
        port = yield self.startServer(jpeg_wan_compression="always")
        client = yield self.startClient(port)
        yield client.waitForChannelsOpened((1, 2), timeout=20)
        frame = self.source.framebuffer()
        half = (SIZE[0] // 2) // 64 * 64
        shown = yield self.waitForLossyPhoto(client)

        display = self.display()
        sent = dict(display.stills.sent)
        self.assertGreater(sent.get("jpeg", 0), 0, sent)
        self.assertGreater(sent.get("lz4", 0), 0, sent)
        # The record of what went lossy: the photograph's columns, none of
        # the text's.
        lossy = display.stills.lossy.take()
        self.assertTrue(lossy)
        for left, top, right, bottom in lossy:
            self.assertGreaterEqual(left, half)
        for rect in lossy:
            display.stills.lossy.add(rect)
        self.assertFalse(pixelsEqual(shown, frame), "the photograph did not go lossy")
        quality = psnr(shown[:, half:], frame[:, half:])

        # Let the refresh come: at once if the link is idle now, else as
        # soon as it has been idle for the real IDLE_REFRESH (a last strip
        # may still be queued on a busy machine).
        self.patch(stills, "IDLE_REFRESH", 0.5)
        display._idleCall.reset(0)
        yield self.waitForSamePicture(client, self.source, timeout=30)
        self.assertGreater(display.stills.refreshed, 0)
        self.assertFalse(display.stills.lossy)
        self.assertGreater(quality, PSNR_BOUND)

    @defer.inlineCallbacks
    def test_neverIsExact(self):
        """
        With C{--jpeg-wan-compression never} the first picture is exact.
        """
        port = yield self.startServer(jpeg_wan_compression="never")
        client = yield self.startClient(port)
        yield client.waitForChannelsOpened((1, 2), timeout=20)
        yield self.waitForSamePicture(client, self.source, timeout=30)
        self.assertEqual(self.display().stills.sent.get("jpeg", 0), 0)

    @defer.inlineCallbacks
    def test_slowLinkOverTLS(self):
        """
        Every channel over TLS, through a 4 Mbit/s link, and the default
        C{auto}: the server measures the link as slow, the photograph comes
        as JPEG and the text exact, then the whole picture exact once the
        link is idle.  (The server once looked for the kernel's send queue
        on OpenSSL's connection, found none, and took every TLS link for a
        fast one: the photograph came losslessly, seconds late.)
        """
        self.patch(stills, "IDLE_REFRESH", 600.0)
        certs = write_dev_certs(os.path.join(self.tmp, "x509"),
                                sans=("DNS:localhost", "IP:127.0.0.1"))
        port = yield self.startServer(certs=certs.directory)
        link = SlowLink(reactor, port, 4e6 / 8)
        linkPort = yield link.listen()
        self.addCleanup(link.stop)
        client = yield harness.GtkClient.start(
            reactor, "127.0.0.1", None, password=PASSWORD, tls_port=linkPort,
            ca_file=certs.ca_cert)
        self.addCleanup(client.stop)
        yield client.waitForChannelsOpened((1, 2), timeout=30)
        shown = yield self.waitForLossyPhoto(client, timeout=60)

        display = self.display()
        self.assertTrue(display.info.secure)
        self.assertLess(display.stills.probedRate, stills.WAN_RATE)
        self.assertGreater(display.stills.sent.get("jpeg", 0), 0, dict(display.stills.sent))
        self.assertFalse(pixelsEqual(shown, self.source.framebuffer()),
                         "the photograph did not go lossy")

        self.patch(stills, "IDLE_REFRESH", 0.5)
        display._idleCall.reset(0)
        yield self.waitForSamePicture(client, self.source, timeout=60)
        self.assertFalse(display.stills.lossy)
