"""
Tests for video streams: detection, the display channel's stream messages,
multimedia time, rate control and the lossless refresh when motion stops.
Every timer runs on a task.Clock and frames are encoded in place.
"""

import numpy
from twisted.internet import defer, reactor
from twisted.trial import unittest

from spicesrv.display import ratecontrol, streams
from spicesrv.display.ratecontrol import RateControl
from spicesrv.display.streams import StreamDetector, looksGradual
from spicesrv.display.video import (
    MAX_QUALITY, MIN_QUALITY, SynchronousEncoder, ThreadedEncoder, decode_mjpeg, encode_mjpeg)
from spicesrv.sources.motion import (
    SCROLL, SCROLL_STEP, TYPING, VIDEO, MotionSource, desktopPicture, readFrameCode, videoPicture)
from spicesrv.testing import ClientSurface, TestClientChannel, makeTestServer
from spicesrv.wire.constants import ChannelType, DisplayCap, LinkErr, MM_TIME_DELTA_MS
from spicesrv.wire.messages import COMMON_CLIENT, DISPLAY_CLIENT

FRAME = 1.0 / 30
VIDEO_RECT = (64, 32, 64 + 160, 32 + 112)


def psnr(a, b):
    mse = numpy.mean((a[..., :3].astype(numpy.float64) - b[..., :3]) ** 2)
    return float("inf") if mse == 0 else 10 * numpy.log10(255.0 ** 2 / mse)


class DetectorTests(unittest.TestCase):
    def video(self):
        return videoPicture(3, 160, 112)

    def feed(self, detector, rect, count, gap=FRAME, pixels=None, start=100.0):
        results = []
        for i in range(count):
            results.append(detector.update(rect, start + i * gap,
                                           pixels or (lambda: self.video())))
        return results

    def test_videoDetectedAfterStartFrames(self):
        """
        The same rectangle replaced at 30 fps becomes a stream at the 20th
        update, with its frame rate.
        """
        results = self.feed(StreamDetector("filter"), (0, 0, 160, 112), streams.START_FRAMES)
        self.assertEqual(results[:-1], [None] * (streams.START_FRAMES - 1))
        self.assertAlmostEqual(results[-1], 30.0, places=3)

    def test_gapRestarts(self):
        detector = StreamDetector("filter")
        self.feed(detector, (0, 0, 160, 112), streams.START_FRAMES - 1)
        self.assertIsNone(detector.update((0, 0, 160, 112), 200.0, self.video))
        results = self.feed(detector, (0, 0, 160, 112), streams.START_FRAMES - 1,
                            start=200.0 + FRAME)
        self.assertIsNotNone(results[-1])

    def test_slowUpdatesNeverStream(self):
        results = self.feed(StreamDetector("all"), (0, 0, 160, 112), 60, gap=0.25)
        self.assertEqual(set(results), {None})

    def test_smallOnlyInAllMode(self):
        small = (0, 0, 50, 50)
        self.assertEqual(set(self.feed(StreamDetector("filter"), small, 40)), {None})
        self.assertIsNotNone(self.feed(StreamDetector("all"), small, 20)[-1])

    def test_textOnlyInAllMode(self):
        """
        Filter mode streams only what looks like video: text redrawn at 30
        fps stays lossless.
        """
        text = desktopPicture(400, 240)[20:140, 30:330]
        self.assertFalse(looksGradual(text))
        self.assertTrue(looksGradual(self.video()))
        rect = (0, 0, 300, 120)
        self.assertEqual(set(self.feed(StreamDetector("filter"), rect, 40,
                                       pixels=lambda: text)), {None})
        self.assertIsNotNone(self.feed(StreamDetector("all"), rect, 20,
                                       pixels=lambda: text)[-1])

    def test_wideGraduality(self):
        """
        Across a full-HD width only a sample of neighbours is compared
        (L{streams.GRADUAL_PAIRS} a row): video still looks gradual and a
        desktop with text does not.
        """
        self.assertTrue(looksGradual(videoPicture(3, 1920, 1080)))
        self.assertFalse(looksGradual(desktopPicture(1920, 1080)))
        noise = numpy.random.default_rng(7).integers(0, 256, (1080, 1920, 4), numpy.uint8)
        self.assertFalse(looksGradual(noise))

    def test_off(self):
        self.assertEqual(set(self.feed(StreamDetector("off"), (0, 0, 160, 112), 40)), {None})

    def test_scrollingIsNotVideo(self):
        """
        An area that went as COPY_BITS (a scroll) does not become a stream
        however often it changes, until SCROLL_HOLD after the last scroll.
        """
        detector = StreamDetector("filter")
        rect = (0, 0, 160, 112)
        results = []
        for i in range(streams.START_FRAMES * 2):
            now = 100.0 + i * FRAME
            results.append(detector.update(rect, now, self.video))
            detector.scrolled((0, 0, 320, 200), now)
        self.assertEqual(set(results), {None})
        later = 100.0 + streams.START_FRAMES * 2 * FRAME + streams.SCROLL_HOLD
        results = self.feed(detector, rect, streams.START_FRAMES, start=later + FRAME)
        self.assertIsNotNone(results[-1])

    def test_badMode(self):
        self.assertRaises(ValueError, StreamDetector, "sometimes")


class RateControlTests(unittest.TestCase):
    def test_rateMeasuredWhileBusy(self):
        """
        While the queue never empties, what drains per second is the rate.
        """
        rate = RateControl()
        written, queued = 1000000, 1000000
        for i in range(40):
            queued -= 20000  # 20 kB drain per 10 ms, nothing added
            rate.sample(i * 0.01, written, queued)
        self.assertAlmostEqual(rate.rate, 2e6, delta=1e3)
        self.assertTrue(rate.admit(60000))
        self.assertFalse(rate.admit(100000))

    def test_rateMeasuredWhenTheQueueDrains(self):
        """
        On a link faster than anything queued (loopback) the queue is empty
        whenever it is looked at; the moment the transport writes out its
        buffer still tells how long the link took for what was queued.
        """
        rate = RateControl()
        written, now = 0, 0.0
        for _ in range(20):
            written += 2000000
            rate.sample(now, written, 2000000)
            now += 0.01
            rate.sample(now, written, 0, drained=True)
            now += 0.001
        self.assertLess(abs(rate.rate - 2e8), 1e6)
        quiet = RateControl()
        for i in range(20):
            quiet.sample(i * 0.011, 2000000 * (i + 1), 2000000)
            quiet.sample(i * 0.011 + 0.01, 2000000 * (i + 1), 0)
        self.assertIsNone(quiet.rate)

    def test_newDataIsNotABusyLink(self):
        """
        A queue that is non-empty at both ends of an interval in which a
        frame was written does not tell the link's rate.
        """
        rate = RateControl()
        written = 0
        for i in range(40):
            written += 1000
            rate.sample(i * 0.01, written, 500)
        self.assertIsNone(rate.rate)

    def test_unknownRateAdmitsUpToBudget(self):
        rate = RateControl()
        rate.sample(0.0, 1000, 0)
        rate.sample(0.1, 2000, 0)
        self.assertIsNone(rate.rate)
        self.assertTrue(rate.admit(ratecontrol.UNKNOWN_RATE_BUDGET))
        self.assertFalse(rate.admit(ratecontrol.UNKNOWN_RATE_BUDGET + 1))

    def test_qualityFollowsTheLink(self):
        rate = RateControl()
        rate.rate = 1e6
        rate.inputFps = 30
        target = rate.targetFrameBytes()
        for i in range(20):
            rate.encoded(int(target * 2), i * FRAME)
        self.assertEqual(rate.quality, MIN_QUALITY)
        for i in range(30):
            rate.encoded(int(target * 0.3), i * FRAME)
        self.assertEqual(rate.quality, MAX_QUALITY)

    def test_slightOvershootKeepsTheQuality(self):
        """
        The rate is floored by the delivered throughput, so frames a little
        over their share (1.25 times: the share is 80 % of the rate) must not
        spiral the quality down.
        """
        rate = RateControl()
        rate.rate = 1e6
        rate.inputFps = 30
        before = rate.quality
        for i in range(30):
            rate.encoded(int(rate.targetFrameBytes() * 1.25), i * FRAME)
        self.assertEqual(rate.quality, before)

    def test_dropsHoldTheQuality(self):
        """
        A frame dropped for the link lowers the quality, which then does
        not rise for a second however small the frames.
        """
        rate = RateControl()
        rate.rate = 1e6
        rate.dropped(10.0)
        held = rate.quality
        self.assertLess(held, ratecontrol.START_QUALITY)
        rate.encoded(10, 10.5)
        self.assertEqual(rate.quality, held)
        rate.encoded(10, 11.1)
        self.assertGreater(rate.quality, held)

    def test_lateFramesRaiseTheDelay(self):
        rate = RateControl()
        before = rate.delayMs
        rate.report(5, 2, -30)
        self.assertGreaterEqual(rate.delayMs, before + 30)
        self.assertLessEqual(rate.delayMs, ratecontrol.MAX_DELAY_MS)

    def test_earlyFramesLowerTheDelaySlowly(self):
        rate = RateControl()
        before = rate.delayMs
        rate.report(5, 0, before - 10)
        self.assertEqual(rate.delayMs, before - 5)
        for _ in range(100):
            rate.report(5, 0, rate.delayMs - 10)
        self.assertEqual(rate.delayMs, max(ratecontrol.MIN_DELAY_MS,
                                           10 + ratecontrol.DELAY_HEADROOM_MS))


class EncoderTests(unittest.TestCase):
    def test_roundTrip(self):
        picture = videoPicture(5, 160, 112)
        data = encode_mjpeg(picture[:, 1:], 80)
        self.assertEqual(data[:2], b"\xff\xd8")
        decoded = decode_mjpeg(data)
        self.assertEqual(decoded.shape, (112, 159, 4))
        self.assertGreater(psnr(decoded, picture[:, 1:]), 38)

    def test_rejectsBadArrays(self):
        self.assertRaises(ValueError, encode_mjpeg, numpy.zeros((4, 4, 3), numpy.uint8), 50)
        self.assertRaises(ValueError, encode_mjpeg, numpy.zeros((0, 4, 4), numpy.uint8), 50)

    def test_threaded(self):
        """
        The threaded encoder answers on the reactor thread with the same
        bytes.
        """
        encoder = ThreadedEncoder(reactor, threads=1)
        self.addCleanup(encoder.stop)
        picture = videoPicture(1, 64, 48)
        d = encoder.encode(picture, 60)
        d.addCallback(self.assertEqual, encode_mjpeg(picture, 60))
        return d

    def test_synchronous(self):
        d = SynchronousEncoder().encode(videoPicture(1, 64, 48), 60)
        self.assertTrue(d.called)


class StreamingSetup:
    caps = {DisplayCap.SIZED_STREAM, DisplayCap.STREAM_REPORT}
    mode = "filter"
    videoCodecs = None
    rect = VIDEO_RECT
    workload = VIDEO
    seamless = False
    mainCaps = ()

    def setUp(self):
        self.server = makeTestServer(disable_ticketing=True, streaming_video=self.mode,
                                     video_encoder=SynchronousEncoder(),
                                     video_codecs=self.videoCodecs,
                                     seamless_migration=self.seamless)
        self.clock = self.server.clock
        self.clock.advance(1000)
        self.source = MotionSource(width=320, height=200, workload=self.workload,
                                   rect=self.rect if self.workload == VIDEO else None,
                                   clock=self.clock, autostart=False)
        self.addCleanup(self.source.stop)
        self.server.addInterface(self.source)
        main = self.main = TestClientChannel(self.server, ChannelType.MAIN,
                                             channel_caps=self.mainCaps)
        self.sessionId = main.next("INIT").session_id
        self.client = TestClientChannel(self.server, ChannelType.DISPLAY,
                                        connection_id=self.sessionId,
                                        channel_caps=self.caps)
        self.assertEqual(self.client.result, LinkErr.OK)
        self.client.send(DISPLAY_CLIENT["INIT"], pixmap_cache_id=1,
                         pixmap_cache_size=20971520, glz_dictionary_id=1,
                         glz_dictionary_window_size=1 << 22)
        first = self.client.take()
        self.surface = ClientSurface().applyAll(first)
        # Acknowledge as spice-gtk does: ACK_SYNC, then an ACK per window.
        (setAck,) = [r for n, r in first if n == "SET_ACK"]
        self.window = setAck.window
        self.client.send(COMMON_CLIENT["ACK_SYNC"], generation=setAck.generation)
        self.unacked = len(first) - 1
        self.channel = self.client.channel
        self.channel.queuedBytes = lambda: self.queued
        self.queued = 0
        self.messages = []

    def playGrown(self, frames=5):
        """
        C{frames} frames of a rectangle a little larger than the video's
        (8 pixels wider on each side, 16 taller), each damaged whole.
        """
        left, top, right, bottom = VIDEO_RECT
        grown = (left - 8, top, right + 8, bottom + 16)
        for i in range(frames):
            self.source.frame[top:bottom + 16, left - 8:right + 8, :3] = (i * 40) % 256
            self.source.damage([grown])
            self.play(FRAME)

    def play(self, seconds, step=FRAME / 2):
        """
        Let C{seconds} pass on the clock, in steps, applying what the server
        sends to the client surface.
        """
        for _ in range(max(1, int(round(seconds / step)))):
            self.clock.advance(step)
            taken = self.client.take()
            self.messages.extend(taken)
            self.surface.applyAll(taken)
            self.unacked += len(taken)
            while self.unacked >= self.window:
                self.unacked -= self.window
                self.client.send(COMMON_CLIENT["ACK"])

    def names(self):
        return [n for n, _ in self.messages]

    def streamArea(self):
        left, top, right, bottom = VIDEO_RECT
        return self.surface.pixels[top:bottom, left:right]


class DisplayStreamTests(StreamingSetup, unittest.TestCase):
    def test_serverAdvertisesStreamReport(self):
        self.assertIn(DisplayCap.STREAM_REPORT, self.client.serverChannelCaps)

    def test_videoBecomesStreamAndEndsExact(self):
        """
        The moving rectangle goes losslessly until it is detected, then as
        MJPEG frames close to the source's; when it stops the stream is
        destroyed and the area refreshed exactly.
        """
        self.source.start()
        self.play(0.5)
        self.assertNotIn("STREAM_CREATE", self.names())
        self.play(0.5)
        self.assertIn("STREAM_CREATE", self.names())
        (create,) = [r for n, r in self.messages if n == "STREAM_CREATE"]
        self.assertEqual((create.dest.left, create.dest.top, create.dest.right,
                          create.dest.bottom), VIDEO_RECT)
        self.assertEqual((create.stream_width, create.stream_height, create.flags,
                          create.codec_type, create.clip), (160, 112, 1, 1, None))
        (activate,) = [r for n, r in self.messages if n == "STREAM_ACTIVATE_REPORT"]
        self.assertEqual((activate.stream_id, activate.max_window_size, activate.timeout_ms),
                         (create.id, 5, 1000))
        self.play(1.0)
        data = [r for n, r in self.messages if n == "STREAM_DATA"]
        self.assertGreater(len(data), 20)
        n = readFrameCode(self.streamArea(), 0, 112)
        self.assertGreater(psnr(self.streamArea(), self.source.render(n)), 35)
        # No lossless update of the stream's area while it streams.
        created = self.names().index("STREAM_CREATE")
        for name, record in self.messages[created + 2:]:
            self.assertNotEqual(name, "DRAW_COPY")

        self.source.stop()
        self.play(streams.STREAM_TIMEOUT + 0.2)
        self.assertEqual(self.surface.streams, {})
        destroyed = self.names().index("STREAM_DESTROY")
        self.assertIn("DRAW_COPY", self.names()[destroyed:])
        numpy.testing.assert_array_equal(self.surface.pixels, self.source.frame)

    def test_multiMediaTime(self):
        """
        Frames are stamped ahead of the client's clock (the server's mm time
        as MAIN INIT gave it) by the playback delay, never going backwards.
        """
        self.source.start()
        self.play(1.0)
        data = [(n, r) for n, r in self.messages if n == "STREAM_DATA"]
        self.assertTrue(data)
        times = self.surface.frameTimes
        self.assertEqual(times, sorted(times))
        clientClock = int(self.clock.seconds() * 1000) - MM_TIME_DELTA_MS
        self.assertEqual(self.server.mmTime(), clientClock)
        last = times[-1]
        delay = self.channel.streams.rate.delayMs
        self.assertTrue(clientClock - FRAME * 1000 + delay - 1 <= last <= clientClock + delay,
                        (last, clientClock, delay))

    def test_reportsSteerTheDelay(self):
        self.source.start()
        self.play(1.0)
        manager = self.channel.streams
        (stream,) = manager.streams.values()
        before = manager.rate.delayMs
        self.client.send(DISPLAY_CLIENT["STREAM_REPORT"], stream_id=stream.id,
                         unique_id=stream.reportId, start_frame_mm_time=1, end_frame_mm_time=2,
                         num_frames=5, num_drops=3, last_frame_delay=-40,
                         audio_delay=0xFFFFFFFF)
        self.assertGreater(manager.rate.delayMs, before)
        # A report for another stream instance is ignored.
        raised = manager.rate.delayMs
        self.client.send(DISPLAY_CLIENT["STREAM_REPORT"], stream_id=stream.id,
                         unique_id=stream.reportId ^ 1, start_frame_mm_time=1,
                         end_frame_mm_time=2, num_frames=5, num_drops=5,
                         last_frame_delay=-400, audio_delay=0)
        self.assertEqual(manager.rate.delayMs, raised)

    def test_undecodableStreamEnds(self):
        """
        "Cannot decode" (no frames, 0xFFFFFFFF drops) ends the stream and
        sends its area losslessly.
        """
        self.source.start()
        self.play(1.0)
        (stream,) = self.channel.streams.streams.values()
        self.source.stop()
        self.client.send(DISPLAY_CLIENT["STREAM_REPORT"], stream_id=stream.id,
                         unique_id=stream.reportId, start_frame_mm_time=0, end_frame_mm_time=0,
                         num_frames=0, num_drops=0xFFFFFFFF, last_frame_delay=0,
                         audio_delay=0)
        self.assertEqual(self.channel.streams.streams, {})
        self.play(0.1)
        numpy.testing.assert_array_equal(self.surface.pixels, self.source.frame)

    def test_fullLinkDropsFrames(self):
        """
        While the link holds more than its budget no frame is encoded; when
        it drains, the newest picture goes, not the ones in between.
        """
        self.source.start()
        self.play(1.0)
        self.queued = 10 * 1024 * 1024
        sent = len(self.surface.frameTimes)
        self.play(0.3)
        self.assertEqual(len(self.surface.frameTimes), sent)
        self.assertGreater(self.channel.streams.rate.framesDropped, 3)
        self.queued = 0
        self.play(FRAME)
        self.assertEqual(len(self.surface.frameTimes), sent + 1)
        n = readFrameCode(self.streamArea(), 0, 112)
        self.assertGreaterEqual(n, self.source.frameNumber - 1)

    def test_pausedTransportSendsNoFrames(self):
        self.source.start()
        self.play(1.0)
        sent = len(self.surface.frameTimes)
        self.channel.pauseProducing()
        self.play(0.2)
        self.assertEqual(len(self.surface.frameTimes), sent)
        self.channel.resumeProducing()
        self.play(FRAME)
        self.assertEqual(len(self.surface.frameTimes), sent + 1)

    def test_grownVideoGoesSized(self):
        """
        A damage that contains the stream's rectangle and is at most twice
        its area continues the stream with STREAM_DATA_SIZED frames.
        """
        self.source.start()
        self.play(1.0)
        self.source.stop()
        self.playGrown()
        sized = [r for n, r in self.messages if n == "STREAM_DATA_SIZED"]
        self.assertTrue(sized)
        self.assertEqual((sized[-1].width, sized[-1].height), (176, 128))
        self.play(streams.STREAM_TIMEOUT + 0.2)
        numpy.testing.assert_array_equal(self.surface.pixels, self.source.frame)

    def test_resizeDestroysAllStreams(self):
        self.source.start()
        self.play(1.0)
        self.source.stop()
        self.source.setFrame(numpy.zeros((100, 120, 4), numpy.uint8))
        self.play(0.1)
        names = self.names()
        self.assertLess(names.index("STREAM_DESTROY_ALL"), names.index("SURFACE_DESTROY"))
        self.assertEqual(self.channel.streams.streams, {})

    def test_closedChannelStopsTimers(self):
        self.source.start()
        self.play(1.0)
        self.client.protocol.connectionLost(None)
        self.source.stop()
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.active()
                          and getattr(c.func, "__self__", None) is self.channel.streams], [])


#: A dialog drawn over the video: its edges fall inside the 16-pixel blocks
#: (the stream's rectangle starts at (64, 32)).
WINDOW = (100, 60, 180, 110)


def inside(rect, outer):
    return (outer[0] <= rect[0] and outer[1] <= rect[1]
            and rect[2] <= outer[2] and rect[3] <= outer[3])


class StreamClipTests(StreamingSetup, unittest.TestCase):
    def startStream(self):
        self.source.start()
        self.play(1.0)
        (stream,) = self.channel.streams.streams.values()
        return stream

    def clipped(self, stream):
        return [clip for i, clip in self.surface.clipEvents if i == stream.id]

    def expected(self, n):
        """
        The stream's area in frame C{n}, with the window if it is there.
        """
        picture = self.source.render(n).copy()
        if self.source.overlay is not None:
            x0, y0, x1, y1 = self.source.overlay
            left, top = VIDEO_RECT[:2]
            picture[y0 - top:y1 - top, x0 - left:x1 - left] = \
                self.source.frame[y0:y1, x0:x1]
        return picture

    def test_videoAloneIsNotClipped(self):
        stream = self.startStream()
        self.play(1.0)
        self.assertEqual(self.clipped(stream), [])
        self.assertIsNone(self.surface.clips[stream.id])

    def test_windowOverStreamIsClippedAndExact(self):
        """
        A still window drawn over a playing video: once it has stayed still
        for a few frames the stream is clipped to the rest of its rectangle
        (STREAM_CLIP, type RECTS: where frames are shown), the window goes
        losslessly and is exact on the client, and the video around it keeps
        streaming.  When the window goes, the clip goes (type NONE) and the
        frames paint its place again.
        """
        stream = self.startStream()
        self.source.setOverlay(WINDOW)
        self.play(1.0)
        clips = self.clipped(stream)
        self.assertEqual(len(clips), 1, clips)
        clip = clips[0]
        self.assertLessEqual(len(clip), streams.MAX_CLIP_RECTS)
        (still,) = self.channel.streams.streams[stream.id].still.rects
        # The still rectangle is the window, to the pixel (its edges are not
        # on blocks), and the clip is the stream's rectangle without it.
        self.assertEqual(still, WINDOW)
        for rect in clip:
            self.assertTrue(inside(rect, VIDEO_RECT), rect)
            self.assertFalse(streams.overlaps(rect, WINDOW), rect)
        self.assertEqual(sum(streams.area(r) for r in clip) + streams.area(WINDOW),
                         streams.area(VIDEO_RECT))
        x0, y0, x1, y1 = WINDOW
        numpy.testing.assert_array_equal(self.surface.pixels[y0:y1, x0:x1],
                                         self.source.frame[y0:y1, x0:x1])
        # Lossless updates since the clip are the window's only.
        clipAt = self.names().index("STREAM_CLIP")
        copies = [r.base.box for n, r in self.messages[clipAt:] if n == "DRAW_COPY"]
        self.assertTrue(copies)
        for box in copies:
            self.assertTrue(inside((box.left, box.top, box.right, box.bottom), WINDOW), box)

        # The video goes on around the window, which stays exact.
        sent = len(self.surface.frameTimes)
        self.play(0.5)
        self.assertGreater(len(self.surface.frameTimes), sent + 10)
        numpy.testing.assert_array_equal(self.surface.pixels[y0:y1, x0:x1],
                                         self.source.frame[y0:y1, x0:x1])
        n = readFrameCode(self.streamArea(), 0, 112)
        self.assertGreater(n, self.source.frameNumber - 3)
        self.assertGreater(psnr(self.streamArea(), self.expected(n)), 35)
        self.assertEqual(len(self.clipped(stream)), 1)

        # The window goes: the clip goes, and the frames show the video there.
        self.source.setOverlay(None)
        self.play(0.3)
        self.assertEqual(self.clipped(stream)[-1], None)
        self.assertIsNone(self.surface.clips[stream.id])
        self.assertEqual(list(self.channel.streams.streams), [stream.id])
        n = readFrameCode(self.streamArea(), 0, 112)
        self.assertGreater(psnr(self.streamArea(), self.expected(n)), 35)

        self.source.stop()
        self.play(streams.STREAM_TIMEOUT + 0.2)
        numpy.testing.assert_array_equal(self.surface.pixels, self.source.frame)

    def test_smallWindowIsNotClipped(self):
        """
        A still area smaller than L{streams.CLIP_MIN_SIDE} a side (a tooltip)
        stays part of the stream.
        """
        stream = self.startStream()
        self.source.setOverlay((100, 60, 180, 80))
        self.play(1.0)
        self.assertEqual(self.clipped(stream), [])

    def test_sizedStreamDropsTheClip(self):
        """
        When the stream's frames grow (STREAM_DATA_SIZED) the still areas
        are looked for afresh: the clip goes first.
        """
        stream = self.startStream()
        self.source.setOverlay(WINDOW)
        self.play(1.0)
        self.assertTrue(self.surface.clips[stream.id])
        self.source.stop()
        self.playGrown()
        self.assertIn("STREAM_DATA_SIZED", self.names())
        self.assertIsNone(self.surface.clips[stream.id])
        self.play(streams.STREAM_TIMEOUT + 0.2)
        numpy.testing.assert_array_equal(self.surface.pixels, self.source.frame)


class StillAreasTests(unittest.TestCase):
    def test_largestRectangle(self):
        mask = numpy.zeros((7, 10), bool)
        mask[2:5, 3:8] = True
        mask[0, :] = True
        self.assertEqual(streams.largestRectangle(mask), (15, (3, 2, 8, 5)))
        self.assertIsNone(streams.largestRectangle(numpy.zeros((3, 3), bool)))

    def test_subtract(self):
        pieces = streams.subtract([(0, 0, 100, 100)], (20, 30, 50, 60))
        self.assertEqual(sum(streams.area(p) for p in pieces), 100 * 100 - 30 * 30)
        for p in pieces:
            self.assertFalse(streams.overlaps(p, (20, 30, 50, 60)))
        self.assertEqual(streams.subtract([(0, 0, 10, 10)], (20, 20, 30, 30)),
                         [(0, 0, 10, 10)])

    def test_boundedStillRects(self):
        """
        Many still windows: at most L{streams.MAX_STILL_RECTS} are clipped.
        """
        tracker = streams.StillAreas((0, 0, 320, 240))
        for n in range(streams.CLIP_STILL_FRAMES + 2):
            picture = videoPicture(n, 320, 240)
            for i in range(3):
                for j in range(3):
                    picture[10 + 80 * i:70 + 80 * i, 10 + 100 * j:90 + 100 * j, :3] = 200
            tracker.update(picture)
        self.assertEqual(len(tracker.rects), streams.MAX_STILL_RECTS)


class NoSizedStreamTests(StreamingSetup, unittest.TestCase):
    caps = set()

    def test_grownVideoWithoutSizedCapGoesLossless(self):
        self.source.start()
        self.play(1.0)
        self.assertNotIn("STREAM_ACTIVATE_REPORT", self.names())
        self.source.stop()
        left, top, right, bottom = VIDEO_RECT
        for i in range(3):
            self.source.frame[top:bottom + 16, left:right, :3] = i * 50
            self.source.damage([(left, top, right, bottom + 16)])
            self.play(FRAME)
        self.assertNotIn("STREAM_DATA_SIZED", self.names())
        self.play(streams.STREAM_TIMEOUT + 0.2)
        numpy.testing.assert_array_equal(self.surface.pixels, self.source.frame)


class StreamingOffTests(StreamingSetup, unittest.TestCase):
    mode = "off"

    def test_neverStreams(self):
        self.source.start()
        self.play(1.5)
        self.source.stop()
        self.play(0.1)
        self.assertNotIn("STREAM_CREATE", self.names())
        numpy.testing.assert_array_equal(self.surface.pixels, self.source.frame)


class ScrollTests(StreamingSetup, unittest.TestCase):
    """
    The motion source's scroll workload (the whole screen moves up by
    SCROLL_STEP rows a frame, with a frame bar code drawn at the top and
    bottom left) goes as COPY_BITS plus small images, exact at every step.
    """

    workload = SCROLL

    def drawnPixels(self, since=0):
        return sum((r.base.box.right - r.base.box.left) * (r.base.box.bottom - r.base.box.top)
                   for n, r in self.messages[since:] if n == "DRAW_COPY")

    def test_scrollGoesAsCopyBits(self):
        """
        Every frame is one copy (source SCROLL_STEP rows down; a COPY_BITS
        for each band of rows it moves) and images of the new rows and the
        bar codes only; the client's
        picture equals the source's after every frame, and the scrolling
        screen, though it changes 30 times a second, never becomes a
        stream.
        """
        self.source.start()
        for _ in range(60):
            self.play(FRAME)
            numpy.testing.assert_array_equal(self.surface.pixels, self.source.frame)
        frames = self.source.frameNumber
        self.assertGreaterEqual(frames, 59)
        self.assertNotIn("STREAM_CREATE", self.names())
        copies = [r for n, r in self.messages if n == "COPY_BITS"]
        self.assertEqual(self.channel.copiesSent, frames)
        # Three bands: beside the top bar code, the rows between, beside
        # where the bottom bar code moved to.
        self.assertEqual(len(copies), 3 * frames)
        for record in copies:
            box = record.base.box
            self.assertEqual((record.src_pos.x - box.left, record.src_pos.y - box.top),
                             (0, SCROLL_STEP))
        # Images: the exposed rows and the bar codes, about a tenth of the
        # screen a frame here (8 + 16 rows of 200, less at full HD).
        self.assertLess(self.drawnPixels(), 0.12 * 320 * 200 * frames)
        self.assertGreater(self.channel.copiedPixels, 0.85 * 320 * 200 * frames)

    def test_slowClientGetsTheWholeShift(self):
        """
        While the link is full the scroll goes on; once it drains, one
        copy moves the client's picture by every step it missed, and the
        picture is exact.
        """
        self.source.start()
        self.play(FRAME * 3)
        shown = self.source.frameNumber
        self.queued = 10 * 1024 * 1024
        self.play(FRAME * 5)
        missed = self.source.frameNumber - shown
        self.assertGreaterEqual(missed, 4)
        self.source.stop()
        since = len(self.messages)
        self.queued = 0
        self.play(FRAME)
        copies = [r for n, r in self.messages[since:] if n == "COPY_BITS"]
        self.assertEqual(len(copies), 3)
        for copy in copies:
            box = copy.base.box
            self.assertEqual((copy.src_pos.x - box.left, copy.src_pos.y - box.top),
                             (0, SCROLL_STEP * missed))
        numpy.testing.assert_array_equal(self.surface.pixels, self.source.frame)
        self.assertLess(self.drawnPixels(since), 320 * (SCROLL_STEP * missed + 24))

    def test_scrollCompletesOnAFullLink(self):
        """
        A scroll that begins while the link has room goes whole, its new
        rows included, even when they fill the link past the lossless
        budget: cut, the bottom rows would be drawn again and again from
        the top and never reach the client.  The next update waits for room.
        """
        self.source.start()
        self.play(FRAME * 3)
        self.queued = 10 * 1024 * 1024
        self.play(FRAME * 5)
        budget = self.channel.streams.rate.losslessBudget()
        start = self.channel.bytesWritten
        self.channel.queuedBytes = lambda: budget - 1 + (self.channel.bytesWritten - start)
        self.source.stop()
        copies = self.channel.copiesSent
        self.play(FRAME)
        self.assertEqual(self.channel.copiesSent, copies + 1)
        numpy.testing.assert_array_equal(self.surface.pixels, self.source.frame)
        self.assertFalse(self.channel.damage)

    def test_drainedTransportSendsAtOnce(self):
        """
        An update that waits for room goes as soon as the transport has
        written out its buffer (it resumes its producer), not at the next
        poll: polling capped a fast TLS link at a few MB a poll.
        """
        self.source.start()
        self.play(FRAME * 3)
        self.queued = 10 * 1024 * 1024
        self.play(FRAME * 2)
        self.source.stop()
        self.assertTrue(self.channel.damage)
        copies = self.channel.copiesSent
        self.queued = 0
        self.channel.resumeProducing()
        self.clock.advance(0)
        self.surface.applyAll(self.client.take())
        self.assertEqual(self.channel.copiesSent, copies + 1)
        numpy.testing.assert_array_equal(self.surface.pixels, self.source.frame)

    def test_viewLetGoWhenIdleAndKeptAgain(self):
        """
        After VIEW_KEEP seconds without damage worth comparing the channel
        lets its copy of the client's picture go (5 bytes a pixel); the next
        scroll keeps it again: its first frame goes as images, the next ones
        as copies, exact throughout.
        """
        from spicesrv.channels import display
        self.source.start()
        self.play(FRAME * 3)
        self.source.stop()
        self.play(display.VIEW_KEEP + 1)
        self.assertFalse(self.channel.view.active)
        copies = self.channel.copiesSent
        self.source.start()
        for _ in range(5):
            self.play(FRAME)
            numpy.testing.assert_array_equal(self.surface.pixels, self.source.frame)
        self.assertTrue(self.channel.view.active)
        self.assertGreaterEqual(self.channel.copiesSent, copies + 3)

    def test_streamingOffScrollsToo(self):
        self.channel.streams.detector.mode = "off"
        self.source.start()
        self.play(FRAME * 10)
        self.assertIn("COPY_BITS", self.names())
        numpy.testing.assert_array_equal(self.surface.pixels, self.source.frame)


class MotionSourceTests(unittest.TestCase):
    def test_framesAreAFunctionOfTheirNumber(self):
        from twisted.internet.task import Clock
        clock = Clock()
        source = MotionSource(width=320, height=200, rect=VIDEO_RECT, clock=clock)
        for _ in range(7):
            clock.advance(FRAME)
        self.assertEqual(source.frameNumber, 7)
        left, top, right, bottom = VIDEO_RECT
        numpy.testing.assert_array_equal(source.frame[top:bottom, left:right],
                                         source.render(7))
        self.assertEqual(readFrameCode(source.frame, left, bottom), 7)
        source.stop()

    def test_framesLimitStops(self):
        from twisted.internet.task import Clock
        clock = Clock()
        source = MotionSource(width=320, height=200, rect=VIDEO_RECT, clock=clock, frames=5)
        for _ in range(10):
            clock.advance(FRAME)
        self.assertEqual(source.frameNumber, 4)
        self.assertFalse(source.running)

    def test_scrollCodeAndTypingRects(self):
        from twisted.internet.task import Clock
        clock = Clock()
        scroll = MotionSource(width=256, height=96, workload=SCROLL, clock=clock)
        clock.advance(FRAME * 3)
        self.assertEqual(readFrameCode(scroll.frame, 0, 96), 3)
        scroll.stop()
        typing = MotionSource(width=320, height=200, workload=TYPING, clock=clock)
        seen = []
        typing.addObserver(type("O", (), {"damaged": lambda self, r: seen.extend(r)})())
        clock.advance(FRAME * 2)
        self.assertTrue(seen)
        self.assertTrue(all((r[2] - r[0]) * (r[3] - r[1]) < 400 for r in seen), seen)
        typing.stop()


class LosslessPacingTests(StreamingSetup, unittest.TestCase):
    mode = "off"

    def test_fullLinkHoldsLosslessUpdates(self):
        """
        While more than the lossless budget is queued, damage waits (and
        merges) instead of going to the socket; it goes once the link
        drains.
        """
        self.queued = 10 * 1024 * 1024
        self.source.start()
        self.play(0.3)
        self.assertNotIn("DRAW_COPY", self.names())
        self.assertTrue(self.channel.damage)
        self.source.stop()
        self.queued = 0
        self.play(0.05)
        self.assertIn("DRAW_COPY", self.names())
        numpy.testing.assert_array_equal(self.surface.pixels, self.source.frame)


class StreamStartTests(StreamingSetup, unittest.TestCase):
    def test_pendingLosslessInsideStreamDropped(self):
        """
        When a stream starts, lossless damage that waits inside its
        rectangle is dropped: the stream's frames paint it.
        """
        self.source.start()
        self.play(0.3)
        self.queued = 10 * 1024 * 1024  # the link is full: damage waits
        self.play(0.2)
        self.assertFalse(self.channel.streams.streams)
        self.assertTrue(self.channel.damage)
        self.play(0.5)
        self.assertTrue(self.channel.streams.streams)
        self.assertFalse(self.channel.damage)


class ManualEncoder:
    """
    Encodes when the test says so, in any order.
    """

    def __init__(self):
        self.waiting = []

    def encode(self, pixels, quality):
        d = defer.Deferred()
        self.waiting.append((d, pixels))
        return d

    def finish(self, index):
        d, pixels = self.waiting.pop(index)
        d.callback(encode_mjpeg(pixels, 80))


class InFlightTests(StreamingSetup, unittest.TestCase):
    def setUp(self):
        StreamingSetup.setUp(self)
        self.encoder = ManualEncoder()
        self.channel.streams.encoder = self.encoder

    def test_twoInFlightSentInOrder(self):
        """
        Two frames of a stream may be encoding at once; they go out in the
        order they were taken, whichever finishes first, and no third is
        taken meanwhile.
        """
        self.source.start()
        for _ in range(60):
            self.play(FRAME)
            if self.channel.streams.streams:
                break
        self.play(FRAME * 4)
        self.assertEqual(len(self.encoder.waiting), streams.MAX_IN_FLIGHT)
        self.encoder.finish(1)
        self.play(0)
        self.assertNotIn("STREAM_DATA", self.names())
        self.encoder.finish(0)
        self.play(FRAME)
        times = [r.multi_media_time for n, r in self.messages if n == "STREAM_DATA"]
        self.assertEqual(len(times), 2)
        self.assertLessEqual(times[0], times[1])
        codes = []
        for n, r in self.messages:
            if n == "STREAM_DATA":
                codes.append(readFrameCode(decode_mjpeg(r.data), 0, 112))
        self.assertLess(codes[0], codes[1])
