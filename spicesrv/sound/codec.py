"""
Opus for the playback and record channels, through PyAV's libopus (the
wheel ships its own libopus and FFmpeg, which the C{file:} sources and sinks
use too).  Chosen by measurement (C{benchmarks/audio.py}): against
C{opuslib} (ctypes on the system's libopus) it costs about the same, 0.3 ms
per 10 ms stereo frame, and it is maintained.

SPICE's Opus is what spice-common's C{snd_codec.c} makes: 48 kHz stereo,
one packet per 480-sample frame, C{OPUS_APPLICATION_AUDIO}; a client's
encoder writes at most 480 bytes per packet.
"""

from spicesrv.wire.sound import CHANNELS, FRAME_BYTES, FRAME_SAMPLES, RATE

#: The bit rate asked of the encoder: libopus's own choice for 10 ms stereo
#: frames at 48 kHz (60 * 48000 / 480 + 48000 * 2 bits per second) is about
#: this; packets stay far below the 480 bytes a SPICE client allows.
BITRATE = 96000


class CodecError(Exception):
    """
    A packet that does not decode, or Opus is not available.
    """


def opusAvailable():
    """
    Whether PyAV with libopus can be loaded here.
    """
    try:
        import av
    except ImportError:
        return False
    return "libopus" in av.codecs_available


class OpusEncoder:
    """
    Encodes 10 ms frames of 48 kHz stereo S16 into Opus packets, one for
    one.
    """

    def __init__(self, bitrate=BITRATE):
        import av
        ctx = av.CodecContext.create("libopus", "w")
        ctx.sample_rate = RATE
        ctx.layout = "stereo"
        ctx.format = "s16"
        ctx.bit_rate = bitrate
        ctx.options = {"frame_duration": "10", "application": "audio"}
        ctx.open()
        self._av = av
        self._ctx = ctx
        self._pts = 0

    def encode(self, pcm):
        """
        One frame (L{FRAME_BYTES} bytes) in, its Opus packet out (C{b""}
        while the encoder is still filling its look-ahead).
        """
        if len(pcm) != FRAME_BYTES:
            raise CodecError("an Opus frame is %d bytes, not %d" % (FRAME_BYTES, len(pcm)))
        frame = self._av.AudioFrame(format="s16", layout="stereo", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.sample_rate = RATE
        frame.pts = self._pts
        self._pts += FRAME_SAMPLES
        return b"".join(bytes(p) for p in self._ctx.encode(frame))


class OpusDecoder:
    """
    Decodes a client's Opus packets into 48 kHz stereo S16 LE.
    """

    def __init__(self):
        import av
        ctx = av.CodecContext.create("libopus", "r")
        ctx.sample_rate = RATE
        ctx.layout = "stereo"
        ctx.open()
        self._av = av
        self._ctx = ctx
        self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=RATE)

    def decode(self, packet):
        """
        @return: the samples as bytes (S16 LE interleaved stereo).
        @raise CodecError: the packet does not decode.
        """
        try:
            frames = self._ctx.decode(self._av.Packet(packet))
            out = []
            for frame in frames:
                for converted in self._resampler.resample(frame):
                    out.append(bytes(converted.planes[0])[:converted.samples * CHANNELS * 2])
        except self._av.FFmpegError as e:
            raise CodecError("bad Opus packet: %s" % (e,))
        return b"".join(out)
