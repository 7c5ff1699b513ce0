"""
Video streams with the real spice-gtk client: an area that plays video
becomes a stream (MJPEG, or VP8, VP9 and H.264 that spice-gtk decodes through
GStreamer) whose frames the client decodes and shows close to the source's
pictures, and when the motion stops the client's picture is the source's
exactly.  A scroll goes as COPY_BITS, also through a slow link, where its new
rows go as JPEG and are refreshed exactly as the link allows.

spice-gtk advertises SPICE_DISPLAY_CAP_CODEC_VP8, _VP9 and _H264 only when
GStreamer has decoders for them (``gstreamer1.0-plugins-good`` for vp8dec and vp9dec,
``gstreamer1.0-libav`` and ``gstreamer1.0-plugins-bad`` for avdec_h264 and
h264parse; ./dev installs them): without them these tests fail.
"""

import collections
import os

import numpy
from twisted.internet import defer, reactor

from spicesrv.display import stills
from spicesrv.display.codecs import CODEC_CAPS
from spicesrv.display.region import area
from spicesrv.server import SpiceServer
from spicesrv.sources.motion import (
    CODE_BITS, CODE_BLOCK, SCROLL, SCROLL_STEP, VIDEO, MotionSource, readFrameCode)
from spicesrv.testing import sessionChannel
from spicesrv.wire.constants import ChannelType, DisplayCap, VideoCodecType
from tests.interop import harness
from tests.interop.common import PASSWORD, InteropTestCase, pixelsEqual, serveOnLoopback
from tests.interop.slowlink import SlowLink
from tests.pictures import psnr

#: The PSNR (dB) the client's stream frames must reach against the source's
#: (issue 10 asks 35 dB of the video workloads).
PSNR_BOUND = 35.0
#: The scroll tests' screen.
SCROLL_SIZE = (1024, 600)


class VideoStreamTests(InteropTestCase):
    @defer.inlineCallbacks
    def startServer(self, streaming_video="filter", size=(1024, 600), video_codecs=None):
        self.source = MotionSource(width=size[0], height=size[1], workload=VIDEO, fps=30,
                                   clock=reactor, autostart=False)
        self.addCleanup(self.source.stop)
        self.server = SpiceServer(clock=reactor, password=PASSWORD,
                                  streaming_video=streaming_video,
                                  video_codecs=video_codecs)
        port = yield serveOnLoopback(self, self.server, self.source.devices())
        return port

    def display(self):
        return sessionChannel(self.server, ChannelType.DISPLAY)

    @defer.inlineCallbacks
    def test_videoIsStreamedAndEndsExact(self):
        """
        The moving rectangle becomes a stream; the client shows new frames,
        each close to the source's frame of that number, and reports on them;
        once the source stops, the client's picture is the source's
        exactly and the stream is gone.
        """
        port = yield self.startServer()
        client = yield self.startClient(port)
        yield client.waitForChannelsOpened((1, 2), timeout=20)
        yield self.checkStreamed(client, VideoCodecType.MJPEG)

    @defer.inlineCallbacks
    def test_vp8(self):
        """
        With VP8 first in the server's list, spice-gtk (vp8dec) decodes a
        VP8 stream: frames advance in order, close to the source's, and the
        picture ends exact.
        """
        port = yield self.startServer(video_codecs="ffmpeg:vp8;spice:mjpeg")
        client = yield self.startClient(port)
        yield client.waitForChannelsOpened((1, 2), timeout=20)
        yield self.checkStreamed(client, VideoCodecType.VP8)

    @defer.inlineCallbacks
    def test_vp9(self):
        """
        The same with VP9 (spice-gtk's vp9dec, from the same GStreamer
        plugins as vp8dec).
        """
        port = yield self.startServer(video_codecs="ffmpeg:vp9;spice:mjpeg")
        client = yield self.startClient(port)
        yield client.waitForChannelsOpened((1, 2), timeout=20)
        yield self.checkStreamed(client, VideoCodecType.VP9)

    @defer.inlineCallbacks
    def test_h264(self):
        """
        The same with H.264 (QEMU's name for it, gstreamer:h264): spice-gtk's
        h264parse ! avdec_h264 decodes the Annex B stream.
        """
        port = yield self.startServer(video_codecs="gstreamer:h264;spice:mjpeg")
        client = yield self.startClient(port)
        yield client.waitForChannelsOpened((1, 2), timeout=20)
        yield self.checkStreamed(client, VideoCodecType.H264)

    @defer.inlineCallbacks
    def test_clientPreference(self):
        """
        With the default list (MJPEG first) the client's own
        PREFERRED_VIDEO_CODEC_TYPE (VP8, then MJPEG) makes the stream VP8.
        """
        port = yield self.startServer()
        client = yield self.startClient(port)
        yield client.waitForChannelsOpened((1, 2), timeout=20)
        reply = yield client.check("preferred_video_codecs",
                                   codecs=[int(VideoCodecType.VP8), int(VideoCodecType.MJPEG)])
        self.assertTrue(reply["changed"])
        yield self.waitUntil(lambda: self.display().streams.clientPreference is not None,
                             timeout=20)
        yield self.checkStreamed(client, VideoCodecType.VP8)

    @defer.inlineCallbacks
    def checkStreamed(self, client, codecType):
        caps = self.display().clientCaps
        self.assertIn(DisplayCap.CODEC_MJPEG, caps)
        if codecType != VideoCodecType.MJPEG:
            self.assertIn(DisplayCap.MULTI_CODEC, caps)
            self.assertIn(CODEC_CAPS[codecType], caps,
                          "spice-gtk does not decode %s: GStreamer's plugins are missing "
                          "(apt-get install gstreamer1.0-plugins-good gstreamer1.0-libav "
                          "gstreamer1.0-plugins-bad)" % (codecType.name,))
        yield self.waitForSamePicture(client, self.source)
        left, top, right, bottom = self.source.rect
        yield client.check("watch", code=[left, bottom, CODE_BITS, CODE_BLOCK])
        self.source.start()
        yield self.waitUntil(lambda: self.display().streams.streams, timeout=20)
        streamed = self.display().streams
        self.assertEqual(streamed.created, 1)
        (stream,) = streamed.streams.values()
        self.assertEqual(stream.rect, self.source.rect)
        self.assertEqual(stream.codec.type, codecType)

        # Frames decoded by the client: its bar code advances.
        first = len(client.events)
        yield self.waitUntil(lambda: sum(1 for e in client.events[first:]
                                         if e["event"] == "frame") >= 15, timeout=20)
        frames = [e for e in client.events[first:] if e["event"] == "frame"]
        self.assertEqual(sorted(e["n"] for e in frames), [e["n"] for e in frames])

        # A shown frame is close to the source's frame of the same number.
        shown = yield self.clientPixels(client, "playing")
        area = shown[top:bottom, left:right]
        n = readFrameCode(area, 0, bottom - top)
        quality = psnr(area, self.source.render(n))
        self.assertGreater(quality, PSNR_BOUND, "%s frame %d shown at %.1f dB"
                           % (codecType.name, n, quality))
        self.assertGreater(streamed.rate.framesSent, 10)
        # The client answered STREAM_ACTIVATE_REPORT with reports.
        yield self.waitUntil(lambda: streamed.rate.reportedFrames >= 5, timeout=20)

        # Motion stops: the stream ends and the picture turns exact.
        self.source.stop()
        yield self.waitUntil(lambda: not self.display().streams.streams, timeout=20)
        yield self.waitForSamePicture(client, self.source)
        final = yield self.clientPixels(client, "still")
        self.assertTrue(pixelsEqual(final, self.source.framebuffer()))

    @defer.inlineCallbacks
    def test_windowOverVideoIsClipped(self):
        """
        A still dialog drawn over the playing video: the server clips it out
        of the stream (STREAM_CLIP) and sends it losslessly; spice-gtk shows
        it pixel-exact while the video around it keeps playing close to the
        source's frames.  When the dialog goes, the clip goes and the
        frames show the video there again.
        """
        port = yield self.startServer()
        client = yield self.startClient(port)
        yield client.waitForChannelsOpened((1, 2), timeout=20)
        yield self.waitForSamePicture(client, self.source)
        left, top, right, bottom = self.source.rect
        yield client.check("watch", code=[left, bottom, CODE_BITS, CODE_BLOCK])
        self.source.start()
        yield self.waitUntil(lambda: self.display().streams.streams, timeout=20)
        (stream,) = self.display().streams.streams.values()
        window = (left + 101, top + 77, left + 333, top + 231)
        self.source.setOverlay(window)
        yield self.waitUntil(lambda: stream.still.rects == [window], timeout=20)
        first = len(client.events)
        yield self.waitUntil(lambda: sum(1 for e in client.events[first:]
                                         if e["event"] == "frame") >= 15, timeout=20)
        self.assertIs(self.display().streams.streams.get(stream.id), stream)

        shown = yield self.clientPixels(client, "clipped")
        x0, y0, x1, y1 = window
        self.assertTrue(pixelsEqual(shown[y0:y1, x0:x1], self.source.frame[y0:y1, x0:x1]))
        area = shown[top:bottom, left:right]
        n = readFrameCode(area, 0, bottom - top)
        expected = self.source.render(n)
        expected[y0 - top:y1 - top, x0 - left:x1 - left] = self.source.frame[y0:y1, x0:x1]
        quality = psnr(area, expected)
        self.assertGreater(quality, PSNR_BOUND, "frame %d shown at %.1f dB" % (n, quality))

        self.source.setOverlay(None)
        yield self.waitUntil(lambda: stream.still.rects == [], timeout=20)
        first = len(client.events)
        yield self.waitUntil(lambda: sum(1 for e in client.events[first:]
                                         if e["event"] == "frame") >= 10, timeout=20)
        shown = yield self.clientPixels(client, "unclipped")
        area = shown[top:bottom, left:right]
        n = readFrameCode(area, 0, bottom - top)
        quality = psnr(area, self.source.render(n))
        self.assertGreater(quality, PSNR_BOUND, "frame %d shown at %.1f dB" % (n, quality))

        self.source.stop()
        yield self.waitUntil(lambda: not self.display().streams.streams, timeout=20)
        yield self.waitForSamePicture(client, self.source)

    @defer.inlineCallbacks
    def startScroll(self, frames, slowLink=None):
        """
        The scroll workload (L{SCROLL_SIZE}, C{frames} frames, not started)
        and a client showing its first picture, through a L{SlowLink} of
        C{slowLink} bytes a second if given.
        """
        self.source = MotionSource(width=SCROLL_SIZE[0], height=SCROLL_SIZE[1],
                                   workload=SCROLL, fps=30, clock=reactor, autostart=False,
                                   frames=frames)
        self.addCleanup(self.source.stop)
        self.server = SpiceServer(clock=reactor, password=PASSWORD)
        port = yield serveOnLoopback(self, self.server, self.source.devices())
        if slowLink is not None:
            link = SlowLink(reactor, port, slowLink)
            port = yield link.listen()
            self.addCleanup(link.stop)
        client = yield self.startClient(port)
        yield client.waitForChannelsOpened((1, 2), timeout=20)
        yield self.waitForSamePicture(client, self.source, timeout=60)
        return client

    @defer.inlineCallbacks
    def playScroll(self, client):
        """
        Play the scroll with the client dumping every frame it shows (the
        moment its bar code changes); once it ended and the client shows
        the last picture exactly, fire with the C{frame} events of the
        frames shown after the first.
        """
        dump = os.path.join(self.tmp, "frame{n}.raw")
        yield client.check("watch", code=[0, SCROLL_SIZE[1], CODE_BITS, CODE_BLOCK],
                           dump=dump, dumps=200)
        first = len(client.events)
        self.source.start()
        yield self.waitUntil(lambda: not self.source.running, timeout=30)
        yield self.waitForSamePicture(client, self.source, timeout=60)
        return [e for e in client.events[first:] if e["event"] == "frame" and e["n"] > 0]

    @defer.inlineCallbacks
    def test_scrollAsCopyBits(self):
        """
        The scroll workload (the whole screen moves up SCROLL_STEP rows a
        frame) reaches spice-gtk as COPY_BITS, which its canvas applies:
        every frame the client shows (dumped the moment its bar code
        changed) is the source's frame of that number exactly; the
        display channel sent one COPY_BITS a frame with images of the new
        rows only, and no stream.
        """
        width, height = SCROLL_SIZE
        client = yield self.startScroll(frames=90)

        display = self.display()
        sent = collections.Counter()
        send = display.sendMessage

        def counting(name, **fields):
            sent[name] += 1
            if name == "DRAW_COPY":
                box = fields["base"]["box"]
                sent["drawn pixels"] += ((box["right"] - box["left"])
                                         * (box["bottom"] - box["top"]))
            return send(name, **fields)
        display.sendMessage = counting
        bytes0 = display.bytesWritten
        shown = yield self.playScroll(client)
        # spice-gtk showed most frames, each exactly as drawn.
        self.assertGreater(len(shown), 45, [e["n"] for e in shown])
        for e in shown:
            w, h, stride = e["surface"]
            picture = harness.loadPrimary(e["dump"], w, h, stride)
            differ = (picture[..., :3] != self.source.render(e["n"])[..., :3]).any(axis=2)
            rows = numpy.nonzero(differ.any(axis=1))[0]
            self.assertFalse(differ.any(), "frame %d: %d pixels differ, rows %s to %s"
                             % (e["n"], differ.sum(), rows[:1], rows[-1:]))
        self.assertEqual(sent["STREAM_CREATE"], 0)
        self.assertEqual(display.streams.created, 0)
        # One COPY_BITS per update, each moving the picture by the steps
        # since the last; images only beside them.
        self.assertGreaterEqual(sent["COPY_BITS"], len(shown))
        self.assertGreater(display.copiedPixels, 0.85 * width * height * len(shown))
        self.assertGreater(display.copiedPixels, 9 * sent["drawn pixels"], sent)
        perFrame = (display.bytesWritten - bytes0) / len(shown)
        self.assertLess(perFrame, 0.1 * width * height * 4)

    @defer.inlineCallbacks
    def test_scrollOnASlowLink(self):
        """
        The scroll through a 4 Mbit/s link (L{SlowLink}), where the new rows
        of the photograph go as JPEG: the client shows the frames close to
        the source's; while it scrolls, the link's spare room refreshes
        JPEG rows, which then move exact, so when it stops the exact refresh
        has less than the JPEG'd area to send; then the picture is exact.
        """
        width = SCROLL_SIZE[0]
        client = yield self.startScroll(frames=60, slowLink=4e6 / 8)

        display = self.display()
        self.assertLess(display.stills.probedRate, stills.WAN_RATE)
        refreshed = []
        drawCopy = display._drawCopy

        def drawing(frame, rect, exact=False):
            if exact:
                refreshed.append((self.source.running, rect))
            return drawCopy(frame, rect, exact)
        display._drawCopy = drawing
        shown = yield self.playScroll(client)
        self.assertGreater(len(shown), 30, [e["n"] for e in shown])
        for e in shown[::5]:
            w, h, stride = e["surface"]
            picture = harness.loadPrimary(e["dump"], w, h, stride)
            self.assertGreater(psnr(picture, self.source.render(e["n"])), PSNR_BOUND)
        self.assertGreater(display.stills.sent["jpeg"], 0)
        during = sum(area(r) for running, r in refreshed if running)
        after = sum(area(r) for running, r in refreshed if not running)
        # What the scroll brought in (60 frames of SCROLL_STEP rows) went as
        # JPEG: some was refreshed while it scrolled, and after the stop only
        # the rest (not the whole screen, where the copies took JPEG rows:
        # 125 % of it).  (How much goes while it scrolls depends on how many
        # updates the machine makes: not asserted.)
        jpeg = 60 * SCROLL_STEP * width
        self.assertGreater(during, 0)
        self.assertLess(during + after, 1.1 * jpeg, (during, after))

    @defer.inlineCallbacks
    def test_streamingOff(self):
        """
        With streaming video off the same motion goes losslessly: no stream,
        and every picture the client shows is exact when it stops.
        """
        port = yield self.startServer(streaming_video="off")
        client = yield self.startClient(port)
        yield client.waitForChannelsOpened((1, 2), timeout=20)
        yield self.waitForSamePicture(client, self.source)
        self.source.frames = self.source.frameNumber + 40
        self.source.start()
        yield self.waitUntil(lambda: not self.source.running, timeout=20)
        yield self.waitForSamePicture(client, self.source)
        self.assertEqual(self.display().streams.created, 0)


class MigratingStreamTests(InteropTestCase):
    """
    A client watching a stream moves to another server, semi-seamlessly
    and seamlessly; the motion source plays on both ends (the target's
    from its own first frame, as a VM would go on).
    """

    @defer.inlineCallbacks
    def startServer(self, video_codecs, seamless):
        source = MotionSource(width=1024, height=600, workload=VIDEO, fps=30,
                              clock=reactor, autostart=False)
        self.addCleanup(source.stop)
        server = SpiceServer(clock=reactor, password=PASSWORD, video_codecs=video_codecs,
                             seamless_migration=seamless)
        port = yield serveOnLoopback(self, server, source.devices())
        return server, source, port

    def display(self, server):
        return sessionChannel(server, ChannelType.DISPLAY)

    @defer.inlineCallbacks
    def framesShown(self, client, count):
        first = len(client.events)
        yield self.waitUntil(lambda: sum(1 for e in client.events[first:]
                                         if e["event"] == "frame") >= count, timeout=30)

    @defer.inlineCallbacks
    def migrateWhileStreaming(self, seamless):
        server, source, port = yield self.startServer("ffmpeg:vp8", seamless)
        target, targetSource, targetPort = yield self.startServer("ffmpeg:h264", seamless)
        client = yield self.startClient(port)
        yield client.waitForChannelsOpened((1, 2), timeout=20)
        yield self.waitForSamePicture(client, source)
        left, top, right, bottom = source.rect
        yield client.check("watch", code=[left, bottom, CODE_BITS, CODE_BLOCK])
        source.start()
        yield self.waitUntil(lambda: self.display(server).streams.streams, timeout=20)
        yield self.framesShown(client, 10)
        (sessionId,) = server.sessions
        sourceStreams = self.display(server).streams
        answers = yield server.migrate_connect("127.0.0.1", targetPort, None, None)
        self.assertEqual(answers, {sessionId: "connected"})
        targetSource.start()
        yield server.migrate_end(True)
        self.assertEqual(server.sourceMigration.forcedDisconnects, 0)
        yield self.waitUntil(lambda: sessionId in target.sessions
                             and not target.sessions[sessionId].arriving
                             and (ChannelType.DISPLAY, 0) in target.sessions[sessionId].channels,
                             timeout=30)
        yield self.waitForPeers(client, targetPort)
        # The target detects the video itself and streams it in its own codec.
        yield self.waitUntil(lambda: self.display(target).streams.streams, timeout=30)
        (stream,) = self.display(target).streams.streams.values()
        self.assertEqual(stream.codec.type, VideoCodecType.H264)
        since = len(client.events)
        yield self.framesShown(client, 10)
        frames = [e["n"] for e in client.events[since:] if e["event"] == "frame"]
        self.assertEqual(frames, sorted(frames))
        self.assertTrue(all(n <= targetSource.frameNumber for n in frames))
        shown = yield self.clientPixels(client, "target")
        area = shown[top:bottom, left:right]
        n = readFrameCode(area, 0, bottom - top)
        quality = psnr(area, targetSource.render(n))
        self.assertGreater(quality, PSNR_BOUND, "frame %d after migration at %.1f dB"
                           % (n, quality))
        targetSource.stop()
        yield self.waitUntil(lambda: not self.display(target).streams.streams, timeout=20)
        yield self.waitForSamePicture(client, targetSource)
        return sourceStreams, client, since

    @defer.inlineCallbacks
    def test_semiSeamless(self):
        """
        Semi-seamless: spice-gtk resets its channels (and drops the source's
        stream) at the switch; the target's fresh display channel starts a
        stream of its own, whose frames the client shows, and the picture
        ends exact.
        """
        yield self.migrateWhileStreaming(seamless=False)

    @defer.inlineCallbacks
    def test_seamless(self):
        """
        Seamless: the source ends its stream and sends the area losslessly
        before MIGRATE; the client keeps its surface; the target clears any
        stream the client might hold and starts its own.
        """
        sourceStreams, client, since = yield self.migrateWhileStreaming(seamless=True)
        self.assertEqual((sourceStreams.created, sourceStreams.ended), (1, 1))
        self.assertNotIn("primary-destroy", [e.get("event") for e in client.events[since:]])
