"""
Video stream frames: MJPEG with libjpeg-turbo, and VP8, VP9 and H.264
through FFmpeg (PyAV), encoded off the reactor thread.

An MJPEG stream frame (protocol.md 6.5) is one complete baseline JPEG of the
stream's rectangle, top row first.  The binding is simplejpeg: it takes the
framebuffer's BGRX rows as they are (no conversion copy), ships
libjpeg-turbo in its wheels and releases the GIL while it encodes.  Measured
here against Pillow (which converts to RGB first) on a 2-core machine, quality
70, 4:2:0: 640x360 in 1.3 ms against 3.0 ms, 1920x1080 in 12.8 ms against
25 ms, the same sizes within 1 %.

The other codecs keep state from frame to frame, so each stream has its own
encoder (L{AvStreamEncoder}) that encodes one frame at a time, in order.
What spice-gtk's GStreamer decoders take in a STREAM_DATA (checked against
its C{channel-display-gst.c} and libspice-server's C{gstreamer-encoder.c}):
VP8 and VP9 one raw compressed frame each (no IVF or WebM framing); H.264
one access unit each as an Annex B byte stream (start codes, SPS and PPS
before every IDR), without B-frames, so that every frame decodes as it
arrives.  Settings are the low-latency ones: libvpx's realtime deadline
with no lag, x264's ultrafast preset tuned for zero latency; a keyframe
starts each stream and is repeated every L{KEYFRAME_SECONDS} (a client that
lost one recovers) or on request; the bit rate follows the link.

L{ThreadedEncoder} runs the encoding in a small shared thread pool and
fires a Deferred on the reactor thread (simplejpeg and PyAV release the
GIL); L{SynchronousEncoder} does the same work at once, for tests with
C{task.Clock}.
"""

import fractions

import numpy as np
import simplejpeg
from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

#: JPEG quality bounds and the start value for a new stream.
MIN_QUALITY = 20
MAX_QUALITY = 80
START_QUALITY = 70

#: Encoding threads shared by every display channel of a process: frames of
#: one stream are encoded one at a time, so two threads keep two streams
#: (or two clients) busy without taking every core.
ENCODER_THREADS = 2


def encode_mjpeg(pixels, quality):
    """
    Return one baseline JPEG (4:2:0) of C{pixels}, a C{(height, width, 4)}
    uint8 BGRX array (it may be a non-contiguous slice).
    """
    if pixels.ndim != 3 or pixels.shape[2] != 4 or pixels.dtype != np.uint8:
        raise ValueError("expected a (height, width, 4) uint8 array, got shape %r dtype %s"
                         % (pixels.shape, pixels.dtype))
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ValueError("cannot encode an empty frame")
    quality = max(1, min(100, int(quality)))
    return simplejpeg.encode_jpeg(np.ascontiguousarray(pixels), quality=quality,
                                  colorspace="BGRX", colorsubsampling="420",
                                  fastdct=True)


def decode_mjpeg(data):
    """
    Decode a JPEG to a C{(height, width, 4)} BGRX array (for tests and the
    benchmark).
    """
    return simplejpeg.decode_jpeg(data, colorspace="BGRX")


class SynchronousEncoder:
    """
    Encodes at once, on the calling thread; the Deferred has fired when
    L{encode} returns.  For tests.
    """

    def __init__(self, encode=encode_mjpeg):
        self._encode = encode

    def encode(self, pixels, quality):
        return defer.maybeDeferred(self._encode, pixels, quality)

    def call(self, fn, *args):
        return defer.maybeDeferred(fn, *args)


class ThreadedEncoder:
    """
    Encodes in a bounded thread pool, started on first use and stopped when
    the reactor shuts down.

    @ivar reactor: the reactor whose thread gets the results.
    """

    def __init__(self, reactor=None, threads=ENCODER_THREADS, encode=encode_mjpeg):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        self._threads = threads
        self._encode = encode
        self._pool = None

    def _getPool(self):
        if self._pool is None:
            self._pool = ThreadPool(minthreads=0, maxthreads=self._threads,
                                    name="spicesrv-video")
            self._pool.start()
            self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        return self._pool

    def encode(self, pixels, quality):
        """
        Encode C{pixels} (which must not change until the result arrives:
        pass a copy) and fire with the JPEG bytes on the reactor thread.
        """
        return threads.deferToThreadPool(self.reactor, self._getPool(), self._encode,
                                         pixels, quality)

    def call(self, fn, *args):
        """
        Run C{fn(*args)} in the pool and fire with its result on the reactor
        thread.
        """
        return threads.deferToThreadPool(self.reactor, self._getPool(), fn, *args)

    def stop(self):
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()


_shared = {}


def sharedEncoder(reactor):
    """
    The process's L{ThreadedEncoder} for C{reactor}.
    """
    encoder = _shared.get(id(reactor))
    if encoder is None:
        encoder = _shared[id(reactor)] = ThreadedEncoder(reactor)
    return encoder


# -- one encoder per stream ------------------------------------------------------------

class MjpegStreamEncoder:
    """
    A stream's MJPEG frames: each is independent, so two may be encoded at
    once; the quality comes from the rate control.
    """

    maxInFlight = 2
    keyframes = False

    def __init__(self, executor):
        self.executor = executor

    def encode(self, pixels, nowMs, rate):
        return self.executor.encode(pixels, rate.quality)

    def requestKeyframe(self):
        pass


#: Bits per pixel per frame a stream starts at (and never exceeds): 640x360
#: at 30 fps is 2 Mbit/s, where VP8 and H.264 reach 41-43 dB on the motion
#: source's video.
BITS_PER_PIXEL = 0.3
#: Bounds of a stream's bit rate.
MIN_BIT_RATE = 200000
MAX_BIT_RATE = 40000000
#: The bit rate changes only when the link's share moves this far from it
#: (a change re-creates the encoder, whose first frame is a keyframe).
BIT_RATE_HYSTERESIS = 1.5
#: A keyframe at least this often, so a client that lost one recovers.
KEYFRAME_SECONDS = 10.0
#: FFmpeg options for low latency, per encoder.
FFMPEG_OPTIONS = {
    "libvpx": {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
               "error-resilient": "1", "static-thresh": "0"},
    "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0",
                   "error-resilient": "1", "row-mt": "1"},
    "libx264": {"preset": "ultrafast", "tune": "zerolatency", "forced-idr": "1",
                "repeat-headers": "1"},
}
#: Pictures taller than this are converted to YUV with BT.709, smaller ones
#: with BT.601 (limited range): what GStreamer assumes of a stream that
#: does not say (VP8 cannot; H.264's VUI says it too).  Converting a
#: full-HD picture with the other matrix costs 6 dB.
BT709_ABOVE = 576
#: FFmpeg's AVCOL_SPC/PRI/TRC numbers: 1 BT.709, 6 SMPTE 170M (BT.601).
_COLOUR = {True: 1, False: 6}

#: Encoder threads per stream (its frames are encoded one at a time):
#: x264's sliced threads halve a full-HD frame's time; libvpx's threads
#: spin, costing three times the CPU for no gain here.
FFMPEG_THREADS = {"libx264": 2, "libvpx": 1, "libvpx-vp9": 1}


def ceilingBitRate(width, height, fps):
    return int(min(MAX_BIT_RATE, max(MIN_BIT_RATE, BITS_PER_PIXEL * width * height * fps)))


class AvFrameEncoder:
    """
    One FFmpeg encoder context of a fixed size and bit rate: BGRX frames in,
    one packet's bytes out per frame.  Not thread-safe: one call at a time.
    """

    def __init__(self, ffmpegName, width, height, bitRate, fps):
        import av
        self._av = av
        self.width, self.height, self.bitRate = width, height, bitRate
        context = av.CodecContext.create(ffmpegName, "w")
        context.width = width
        context.height = height
        context.pix_fmt = "yuv420p"
        context.time_base = fractions.Fraction(1, 1000)
        context.framerate = fractions.Fraction(int(round(fps)), 1)
        context.bit_rate = bitRate
        context.gop_size = max(1, int(KEYFRAME_SECONDS * fps))
        context.max_b_frames = 0
        context.thread_count = FFMPEG_THREADS.get(ffmpegName, 1)
        self.hd = height > BT709_ABOVE
        context.colorspace = context.color_primaries = context.color_trc = _COLOUR[self.hd]
        context.color_range = 1  # limited ("MPEG")
        options = dict(FFMPEG_OPTIONS.get(ffmpegName, {}))
        if ffmpegName == "libx264":
            # A VBV buffer of a few frames: frames stay near their share.
            options.update(maxrate=str(bitRate), bufsize=str(int(bitRate * 4 / fps)))
        context.options = options
        context.open()
        self.context = context
        self.frames = 0

    def encode(self, pixels, pts, keyframe=False):
        frame = self._av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="bgra")
        frame = frame.reformat(format="yuv420p",
                               dst_colorspace="ITU709" if self.hd else "ITU601",
                               dst_color_range="MPEG")
        frame.pts = pts
        if keyframe:
            frame.pict_type = self._av.video.frame.PictureType.I
        packets = self.context.encode(frame)
        self.frames += 1
        return b"".join(bytes(packet) for packet in packets)


class AvStreamEncoder:
    """
    A stream's VP8, VP9 or H.264 frames through FFmpeg: one encoder context
    (re-created, with a keyframe, when the frame size changes or the link's
    share moves past L{BIT_RATE_HYSTERESIS}), one frame at a time.

    @ivar keyframes: frames sent as keyframes.
    """

    maxInFlight = 1

    def __init__(self, executor, codecType, fps=30.0):
        from spicesrv.display.codecs import FFMPEG_ENCODERS
        self.executor = executor
        self.ffmpegName = FFMPEG_ENCODERS[codecType]
        self.fps = max(1.0, min(60.0, fps))
        self._frame = None
        self._wantKeyframe = True
        self._lastPts = None
        self._startMs = None
        self.keyframes = 0
        self.recreated = 0

    def requestKeyframe(self):
        """
        Make the next frame a keyframe.
        """
        self._wantKeyframe = True

    def bitRateFor(self, width, height, rate):
        """
        The bit rate a frame of this size should be encoded at, given the
        L{spicesrv.display.ratecontrol.RateControl}.
        """
        ceiling = ceilingBitRate(width, height, self.fps)
        target = rate.targetFrameBytes()
        if target is None:
            return ceiling
        share = int(target * 8 * max(1.0, rate.inputFps))
        return max(MIN_BIT_RATE, min(ceiling, share))

    def encode(self, pixels, nowMs, rate):
        height, width = pixels.shape[:2]
        wanted = self.bitRateFor(width, height, rate)
        current = self._frame
        if (current is None or (current.width, current.height) != (width, height)
                or not (current.bitRate / BIT_RATE_HYSTERESIS <= wanted
                        <= current.bitRate * BIT_RATE_HYSTERESIS)):
            if current is not None:
                self.recreated += 1
            current = None
            self._frame = None
        if self._startMs is None:
            self._startMs = nowMs
        pts = int(nowMs - self._startMs)
        if self._lastPts is not None and pts <= self._lastPts:
            pts = self._lastPts + 1
        self._lastPts = pts
        keyframe = self._wantKeyframe or current is None
        self._wantKeyframe = False
        if keyframe:
            self.keyframes += 1
        return self.executor.call(self._encodeNow, pixels, pts, keyframe,
                                  (width, height, wanted))

    def _encodeNow(self, pixels, pts, keyframe, geometry):
        # In the pool: one call at a time per stream (maxInFlight is 1).
        if self._frame is None:
            width, height, bitRate = geometry
            self._frame = AvFrameEncoder(self.ffmpegName, width, height, bitRate, self.fps)
        return self._frame.encode(pixels, pts, keyframe)


def newStreamEncoder(codec, executor, fps=30.0):
    """
    The per-stream encoder of a L{spicesrv.display.codecs.VideoCodec}.
    """
    from spicesrv.display.codecs import SPICE
    if codec.encoder == SPICE:
        return MjpegStreamEncoder(executor)
    return AvStreamEncoder(executor, codec.type, fps)


def decodeFrames(codecType):
    """
    A decoder for a stream of C{codecType} frames (for tests and the
    benchmark): a callable from a frame's bytes to a BGRX array (or L{None}
    while the decoder holds it back).
    """
    from spicesrv.wire.constants import VideoCodecType
    if codecType == VideoCodecType.MJPEG:
        return decode_mjpeg
    import av
    name = {VideoCodecType.VP8: "vp8", VideoCodecType.VP9: "vp9",
            VideoCodecType.H264: "h264"}[VideoCodecType(codecType)]
    context = av.CodecContext.create(name, "r")

    def decode(data):
        frames = context.decode(av.Packet(data))
        if not frames:
            return None
        return frames[-1].to_ndarray(format="bgra")
    return decode
