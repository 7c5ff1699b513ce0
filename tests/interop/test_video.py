"""
Video streams with the real spice-gtk client: an area that plays video
becomes a stream (MJPEG, or VP8 and H.264 that spice-gtk decodes through
GStreamer) whose frames the client decodes and shows close to the source's
pictures, and when the motion stops the client's picture is the source's
exactly.

spice-gtk advertises SPICE_DISPLAY_CAP_CODEC_VP8 and _H264 only when
GStreamer has decoders for them (``gstreamer1.0-plugins-good`` for vp8dec,
``gstreamer1.0-libav`` and ``gstreamer1.0-plugins-bad`` for avdec_h264 and
h264parse; ./dev installs them): without them these tests fail.
"""

import numpy
from twisted.internet import defer, endpoints, reactor

from spicesrv.display.codecs import CODEC_CAPS
from spicesrv.server import SpiceServer
from spicesrv.sources.motion import CODE_BITS, CODE_BLOCK, VIDEO, MotionSource, readFrameCode
from spicesrv.wire.constants import ChannelType, DisplayCap, VideoCodecType
from tests.interop.common import PASSWORD, InteropTestCase, pixelsEqual

#: The PSNR (dB) the client's stream frames must reach against the source's
#: (issue 10 asks 35 dB of the video workloads).
PSNR_BOUND = 35.0


def psnr(a, b):
    mse = numpy.mean((a[..., :3].astype(numpy.float64) - b[..., :3]) ** 2)
    return float("inf") if mse == 0 else 10 * numpy.log10(255.0 ** 2 / mse)


class VideoStreamTests(InteropTestCase):
    @defer.inlineCallbacks
    def startServer(self, streaming_video="filter", size=(1024, 600), video_codecs=None):
        self.source = MotionSource(width=size[0], height=size[1], workload=VIDEO, fps=30,
                                   clock=reactor, autostart=False)
        self.addCleanup(self.source.stop)
        self.server = SpiceServer(clock=reactor, password=PASSWORD,
                                  streaming_video=streaming_video,
                                  video_codecs=video_codecs)
        self.server.startService()
        for device in self.source.devices():
            self.server.addInterface(device)
        endpoint = endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        port = yield endpoint.listen(self.server.factory())

        def stop():
            for session in list(self.server.sessions.values()):
                session.end()
            return port.stopListening()
        self.addCleanup(stop)
        return port.getHost().port

    def display(self):
        (session,) = self.server.sessions.values()
        return session.channels[(ChannelType.DISPLAY, 0)]

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
