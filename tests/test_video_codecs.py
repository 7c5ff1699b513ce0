"""
Tests for the video codecs of streams: the C{--video-codecs} list, the
choice among the client's caps and preferences, the FFmpeg encoders (VP8,
VP9, H.264) and streams of each on a display channel.  Timers run on a
task.Clock and frames are encoded in place.
"""

import numpy
from twisted.trial import unittest

from spicesrv.display import codecs, streams, video
from spicesrv.display.codecs import (
    VideoCodec, chooseCodec, formatVideoCodecs, parseVideoCodecs, sortByClientPreference)
from spicesrv.display.ratecontrol import RateControl
from spicesrv.display.video import AvStreamEncoder, SynchronousEncoder, decodeFrames
from spicesrv.sources.motion import readFrameCode, videoPicture
from spicesrv.wire.constants import DisplayCap, MainCap, VideoCodecType
from spicesrv.wire.messages import COMMON_CLIENT, DISPLAY_CLIENT, MAIN_CLIENT
from tests.test_display_streams import FRAME, VIDEO_RECT, StreamingSetup, psnr

MJPEG, VP8, H264, VP9 = (VideoCodecType.MJPEG, VideoCodecType.VP8, VideoCodecType.H264,
                         VideoCodecType.VP9)
ALL_CODEC_CAPS = {DisplayCap.MULTI_CODEC, DisplayCap.CODEC_MJPEG, DisplayCap.CODEC_VP8,
                  DisplayCap.CODEC_H264, DisplayCap.CODEC_VP9}


class ParseTests(unittest.TestCase):
    def test_qemuStringAccepted(self):
        """
        QEMU's (libspice's) default list parses; gstreamer entries are served
        by the built-in MJPEG and FFmpeg encoders.
        """
        parsed = parseVideoCodecs(
            "spice:mjpeg;gstreamer:mjpeg;gstreamer:h264;gstreamer:vp8;gstreamer:vp9;")
        self.assertEqual(formatVideoCodecs(parsed),
                         "spice:mjpeg;ffmpeg:h264;ffmpeg:vp8;ffmpeg:vp9")

    def test_auto(self):
        self.assertEqual(parseVideoCodecs("auto"),
                         parseVideoCodecs(codecs.DEFAULT_VIDEO_CODECS))
        self.assertEqual(parseVideoCodecs("auto")[0], VideoCodec("spice", MJPEG))

    def test_orderAndCase(self):
        self.assertEqual([c.type for c in parseVideoCodecs(" FFmpeg:VP8 ; spice:mjpeg")],
                         [VP8, MJPEG])

    def test_errors(self):
        for text, words in (("vp8", "encoder:codec"), ("x264:h264", "unknown video encoder"),
                            ("ffmpeg:av1", "unknown video codec"),
                            ("spice:vp8", "only does mjpeg"), ("ffmpeg:mjpeg", "does not do"),
                            (";;", "no video codec")):
            e = self.assertRaises(ValueError, parseVideoCodecs, text)
            self.assertIn(words, str(e))


class ChoiceTests(unittest.TestCase):
    server = parseVideoCodecs("spice:mjpeg;ffmpeg:h264;ffmpeg:vp8")

    def test_serverOrderFirst(self):
        self.assertEqual(chooseCodec(self.server, ALL_CODEC_CAPS).type, MJPEG)

    def test_clientPreferenceReorders(self):
        """
        As libspice: the client's list sorts the server's; what it does not
        name keeps the server's order after it; unknown numbers are ignored.
        """
        order = sortByClientPreference(self.server, [VP8, 99, H264])
        self.assertEqual([c.type for c in order], [VP8, H264, MJPEG])
        self.assertEqual(chooseCodec(order, ALL_CODEC_CAPS).type, VP8)

    def test_clientCapsFilter(self):
        caps = {DisplayCap.MULTI_CODEC, DisplayCap.CODEC_MJPEG, DisplayCap.CODEC_H264}
        order = sortByClientPreference(self.server, [VP8, H264])
        self.assertEqual(chooseCodec(order, caps).type, H264)

    def test_oldClientOnlyMjpeg(self):
        """
        A client without MULTI_CODEC decodes MJPEG only, whatever it lists.
        """
        vp8only = parseVideoCodecs("ffmpeg:vp8")
        self.assertEqual(chooseCodec(vp8only, {DisplayCap.CODEC_VP8}),
                         VideoCodec("spice", MJPEG))

    def test_nothingDecodable(self):
        self.assertIsNone(chooseCodec(parseVideoCodecs("ffmpeg:vp8"),
                                      {DisplayCap.MULTI_CODEC, DisplayCap.CODEC_H264}))


class AvEncoderTests(unittest.TestCase):
    def encodeAll(self, codecType, count=12, size=(160, 112), rate=None):
        encoder = AvStreamEncoder(SynchronousEncoder(), codecType)
        rate = rate or RateControl()
        frames = []
        for i in range(count):
            d = encoder.encode(videoPicture(i, *size), 1000.0 + i * 33.3, rate)
            frames.append(self.successResultOf(d))
        return encoder, frames

    def test_codecsAvailable(self):
        """
        PyAV's FFmpeg has the three encoders (a dependency in setup.py).
        """
        for name in codecs.FFMPEG_ENCODERS.values():
            self.assertTrue(codecs.ffmpegEncoderAvailable(name), name)

    def test_eachFrameDecodesAtOnce(self):
        """
        Every frame decodes as it arrives (no B-frames, no lag), close to
        its picture; only the first is a keyframe.
        """
        for codecType in (VP8, H264, VP9):
            encoder, frames = self.encodeAll(codecType)
            decode = decodeFrames(codecType)
            for i, data in enumerate(frames):
                picture = decode(data)
                self.assertIsNotNone(picture, (codecType, i))
                self.assertGreater(psnr(picture, videoPicture(i, 160, 112)), 35,
                                   (codecType, i))
            self.assertEqual(encoder.keyframes, 1)

    def test_h264AnnexB(self):
        """
        H.264 frames are Annex B: start codes, and SPS and PPS before the
        first (IDR) picture, as spice-gtk's h264parse takes them.
        """
        encoder, frames = self.encodeAll(H264, count=3)
        first = frames[0]
        self.assertTrue(first.startswith(b"\0\0\0\1") or first.startswith(b"\0\0\1"))
        nals = [first[i + 3] & 0x1F for i in range(len(first) - 3)
                if first[i:i + 3] == b"\0\0\1"]
        self.assertIn(7, nals)   # SPS
        self.assertIn(8, nals)   # PPS
        self.assertIn(5, nals)   # IDR slice
        later = frames[1]
        laterNals = [later[i + 3] & 0x1F for i in range(len(later) - 3)
                     if later[i:i + 3] == b"\0\0\1"]
        self.assertNotIn(5, laterNals)

    def test_keyframeOnRequest(self):
        encoder = AvStreamEncoder(SynchronousEncoder(), VP8)
        rate = RateControl()
        for i in range(3):
            self.successResultOf(encoder.encode(videoPicture(i, 64, 48), i * 33.0, rate))
        encoder.requestKeyframe()
        data = self.successResultOf(encoder.encode(videoPicture(3, 64, 48), 100.0, rate))
        # A VP8 keyframe has bit 0 of its first byte clear and a start code.
        self.assertEqual(data[0] & 1, 0)
        self.assertEqual(data[3:6], b"\x9d\x01\x2a")
        self.assertEqual(encoder.keyframes, 2)

    def test_bitRateFollowsTheLink(self):
        """
        Without a measured link a stream encodes at its size's ceiling; a
        link share well below it re-creates the encoder (a keyframe) at the
        share, and a small change does not.
        """
        rate = RateControl()
        encoder = AvStreamEncoder(SynchronousEncoder(), H264, fps=30)
        self.assertEqual(encoder.bitRateFor(640, 360, rate),
                         video.ceilingBitRate(640, 360, 30))
        self.successResultOf(encoder.encode(videoPicture(0, 320, 240), 0.0, rate))
        first = encoder._frame
        self.assertEqual(first.bitRate, video.ceilingBitRate(320, 240, 30))
        rate.rate = first.bitRate / 8 / 0.8 * 0.9     # 10 % less: kept
        rate.inputFps = 30
        self.successResultOf(encoder.encode(videoPicture(1, 320, 240), 33.0, rate))
        self.assertIs(encoder._frame, first)
        rate.rate = 40000                              # 256 kbit/s of share
        self.successResultOf(encoder.encode(videoPicture(2, 320, 240), 66.0, rate))
        self.assertIsNot(encoder._frame, first)
        self.assertEqual(encoder._frame.bitRate, 256000)
        self.assertEqual((encoder.keyframes, encoder.recreated), (2, 1))

    def test_sizeChangeIsANewKeyframe(self):
        encoder, frames = self.encodeAll(VP8, count=2)
        rate = RateControl()
        data = self.successResultOf(encoder.encode(videoPicture(5, 176, 128), 200.0, rate))
        self.assertEqual(data[0] & 1, 0)
        decoded = decodeFrames(VP8)(data)
        self.assertEqual(decoded.shape[:2], (128, 176))


class CodecStreamTests(StreamingSetup):
    """
    A stream of one of the FFmpeg codecs, from the display channel to a
    client that decodes it.
    """

    codecType = None
    caps = {DisplayCap.SIZED_STREAM, DisplayCap.STREAM_REPORT} | ALL_CODEC_CAPS

    def test_streamOfTheCodecEndsExact(self):
        """
        The server's first codec that the client has is the stream's; its
        frames decode at once, close to the source's; one frame is encoded
        at a time; when the motion stops the area turns exact.
        """
        self.source.start()
        self.play(2.0)
        (create,) = [r for n, r in self.messages if n == "STREAM_CREATE"]
        self.assertEqual(create.codec_type, self.codecType)
        (stream,) = self.channel.streams.streams.values()
        self.assertEqual(stream.encoder.maxInFlight, 1)
        data = [r for n, r in self.messages if n == "STREAM_DATA"]
        self.assertGreater(len(data), 20)
        left, top, right, bottom = VIDEO_RECT
        area = self.surface.pixels[top:bottom, left:right]
        n = readFrameCode(area, 0, bottom - top)
        self.assertGreater(psnr(area, self.source.render(n)), 35)
        self.assertEqual(stream.encoder.keyframes, 1)

        self.source.stop()
        self.play(streams.STREAM_TIMEOUT + 0.2)
        self.assertEqual(self.surface.streams, {})
        numpy.testing.assert_array_equal(self.surface.pixels, self.source.frame)


class VP8StreamTests(CodecStreamTests, unittest.TestCase):
    videoCodecs = "ffmpeg:vp8;spice:mjpeg"
    codecType = VP8


class H264StreamTests(CodecStreamTests, unittest.TestCase):
    videoCodecs = "gstreamer:h264;spice:mjpeg"
    codecType = H264


class VP9StreamTests(CodecStreamTests, unittest.TestCase):
    videoCodecs = "ffmpeg:vp9"
    codecType = VP9


class OddRectTests(StreamingSetup, unittest.TestCase):
    videoCodecs = "ffmpeg:h264"
    caps = ALL_CODEC_CAPS
    rect = (63, 31, 64 + 160, 32 + 112)    # 161x113

    def test_oddSidesGrowEven(self):
        """
        A 4:2:0 codec's stream covers an odd-sided area grown by a pixel
        each way that needs it; the area still ends exact.
        """
        self.source.start()
        self.play(1.5)
        (create,) = [r for n, r in self.messages if n == "STREAM_CREATE"]
        self.assertEqual((create.dest.left, create.dest.top, create.dest.right,
                          create.dest.bottom), (63, 31, 64 + 161, 32 + 113))
        self.assertEqual((create.stream_width, create.stream_height), (162, 114))
        self.source.stop()
        self.play(streams.STREAM_TIMEOUT + 0.2)
        numpy.testing.assert_array_equal(self.surface.pixels, self.source.frame)


class PreferenceTests(StreamingSetup, unittest.TestCase):
    caps = {DisplayCap.STREAM_REPORT} | ALL_CODEC_CAPS

    def test_serverAdvertisesPreference(self):
        self.assertIn(DisplayCap.PREF_VIDEO_CODEC_TYPE, self.client.serverChannelCaps)

    def test_clientPreferenceEndsStreamsAndPicksTheNext(self):
        """
        By default streams are MJPEG; PREFERRED_VIDEO_CODEC_TYPE ends the
        running stream (its area refreshed losslessly) and the next stream
        uses the client's first choice.
        """
        self.source.start()
        self.play(1.0)
        self.assertEqual(self.surface.codecTypes, [MJPEG])
        self.client.send(DISPLAY_CLIENT["PREFERRED_VIDEO_CODEC_TYPE"], num_of_codecs=2,
                         codecs=[H264, VP8])
        self.play(FRAME)
        self.assertEqual(self.channel.streams.streams, {})
        self.assertIn("STREAM_DESTROY", self.names())
        self.play(1.5)
        self.assertEqual(self.surface.codecTypes, [MJPEG, H264])
        self.source.stop()
        self.play(streams.STREAM_TIMEOUT + 0.2)
        numpy.testing.assert_array_equal(self.surface.pixels, self.source.frame)

    def test_clientWithoutTheCodec(self):
        """
        A preferred codec the client did not advertise is passed over.
        """
        self.channel.info.channel_caps = self.caps - {DisplayCap.CODEC_H264}
        self.client.send(DISPLAY_CLIENT["PREFERRED_VIDEO_CODEC_TYPE"], num_of_codecs=2,
                         codecs=[H264, VP9])
        self.source.start()
        self.play(1.0)
        self.assertEqual(self.surface.codecTypes, [VP9])


class SeamlessSourceStreamTests(StreamingSetup, unittest.TestCase):
    """
    A client with an active stream migrating seamlessly away.
    """

    seamless = True
    videoCodecs = "ffmpeg:vp8"
    caps = {DisplayCap.STREAM_REPORT} | ALL_CODEC_CAPS
    mainCaps = {MainCap.SEMI_SEAMLESS_MIGRATE, MainCap.SEAMLESS_MIGRATE,
                MainCap.AGENT_CONNECTED_TOKENS}

    def test_streamsEndLosslesslyBeforeMigrate(self):
        """
        As libspice: before MIGRATE the source destroys its streams and
        sends their areas losslessly, so the client's picture is exact and
        holds no stream when it moves; nothing but the data follows.
        """
        self.source.start()
        self.play(1.0)
        self.assertTrue(self.channel.streams.streams)
        self.main.take()
        d = self.server.migrate_connect("dst", 5930)
        self.main.send(MAIN_CLIENT["MIGRATE_CONNECTED_SEAMLESS"])
        self.successResultOf(d)
        self.source.stop()
        self.messages = []
        self.server.migrate_end(True)
        self.play(FRAME)
        names = self.names()
        self.assertEqual(names[-1], "MIGRATE")
        self.assertIn("STREAM_DESTROY", names)
        self.assertLess(names.index("STREAM_DESTROY"), names.index("DRAW_COPY"))
        self.assertEqual(self.surface.streams, {})
        numpy.testing.assert_array_equal(self.surface.pixels, self.source.frame)
        self.assertEqual(self.channel.streams.streams, {})
        # More motion: no stream, no update until the data is asked for.
        self.source.start()
        self.play(1.0)
        self.assertEqual(self.names()[-1], "MIGRATE")
        self.assertEqual([c for c in self.server.clock.getDelayedCalls() if c.active()
                          and getattr(c.func, "__self__", None) is self.channel.streams], [])
        self.client.send(COMMON_CLIENT["MIGRATE_FLUSH_MARK"])
        self.assertEqual([n for n, _ in self.client.take()], ["MIGRATE_DATA"])
        self.source.stop()
