"""
Which codec a video stream uses: the server's list (C{--video-codecs}, in
QEMU's C{encoder:codec;encoder:codec} format), the client's capabilities
and the client's own order of preference.

spicesrv's encoders:

- C{spice}: the built-in MJPEG encoder (libjpeg-turbo through simplejpeg);
  codec C{mjpeg};
- C{ffmpeg}: FFmpeg through PyAV (the C{av} package, whose wheels bundle
  FFmpeg with libvpx and libx264); codecs C{vp8}, C{vp9} and C{h264}.

libspice-server's C{gstreamer} encoder name is accepted, so that QEMU's
C{video-codecs} strings work unchanged: C{gstreamer:mjpeg} is the built-in
MJPEG encoder and C{gstreamer:vp8}, C{gstreamer:vp9} and C{gstreamer:h264}
are FFmpeg's.

The choice follows libspice-server's (C{dcc_create_video_encoder}): the
server's list in its order, re-sorted by the client's
PREFERRED_VIDEO_CODEC_TYPE if it sent one; the first codec the client
advertises (a client without SPICE_DISPLAY_CAP_MULTI_CODEC takes only MJPEG)
wins, and MJPEG is the last resort of a client that can show it.
"""

from spicesrv.wire.constants import DisplayCap, VideoCodecType

SPICE = "spice"
FFMPEG = "ffmpeg"
GSTREAMER = "gstreamer"
ENCODERS = (SPICE, FFMPEG, GSTREAMER)

#: Codec names (as QEMU's and libspice's) -> SpiceVideoCodecType.
CODEC_TYPES = {
    "mjpeg": VideoCodecType.MJPEG,
    "vp8": VideoCodecType.VP8,
    "h264": VideoCodecType.H264,
    "vp9": VideoCodecType.VP9,
}
#: The display capability a client advertises for each codec.
CODEC_CAPS = {
    VideoCodecType.MJPEG: DisplayCap.CODEC_MJPEG,
    VideoCodecType.VP8: DisplayCap.CODEC_VP8,
    VideoCodecType.H264: DisplayCap.CODEC_H264,
    VideoCodecType.VP9: DisplayCap.CODEC_VP9,
}
#: FFmpeg's encoder for each codec it provides here.
FFMPEG_ENCODERS = {
    VideoCodecType.VP8: "libvpx",
    VideoCodecType.VP9: "libvpx-vp9",
    VideoCodecType.H264: "libx264",
}

#: The default list: MJPEG first (as libspice-server's default), the
#: others for clients that ask for them.
DEFAULT_VIDEO_CODECS = "spice:mjpeg;ffmpeg:h264;ffmpeg:vp8;ffmpeg:vp9"


class VideoCodec:
    """
    One entry of the server's list: an encoder and a codec.

    @ivar encoder: C{"spice"} or C{"ffmpeg"} (a C{gstreamer} entry is
        stored as the encoder that serves it).
    @ivar type: the L{VideoCodecType}.
    """

    def __init__(self, encoder, codecType):
        self.encoder = encoder
        self.type = VideoCodecType(codecType)

    @property
    def codecName(self):
        return self.type.name.lower()

    @property
    def name(self):
        return "%s:%s" % (self.encoder, self.codecName)

    @property
    def cap(self):
        return CODEC_CAPS[self.type]

    def __eq__(self, other):
        return (isinstance(other, VideoCodec)
                and (self.encoder, self.type) == (other.encoder, other.type))

    def __hash__(self):
        return hash((self.encoder, self.type))

    def __repr__(self):
        return "<VideoCodec %s>" % (self.name,)

    def available(self):
        """
        Whether this process can encode it (PyAV and the FFmpeg encoder are
        there).
        """
        if self.encoder == SPICE:
            return True
        return ffmpegEncoderAvailable(FFMPEG_ENCODERS[self.type])


_available = {}


def ffmpegEncoderAvailable(name):
    """
    Whether PyAV imports and its FFmpeg has the encoder C{name}.
    """
    if name not in _available:
        try:
            import av
            av.Codec(name, "w")
        except Exception:
            _available[name] = False
        else:
            _available[name] = True
    return _available[name]


def parseVideoCodecs(text):
    """
    Parse a QEMU-style list, C{"spice:mjpeg;ffmpeg:vp8"} (or C{"auto"}, the
    default), into L{VideoCodec}s in order, without duplicates.

    @raise ValueError: for an entry that is not C{encoder:codec} with a known
        encoder and a codec that encoder provides, or an empty list.
    """
    if text.strip() == "auto":
        text = DEFAULT_VIDEO_CODECS
    codecs = []
    for entry in text.split(";"):
        entry = entry.strip()
        if not entry:
            continue
        encoder, colon, codecName = entry.partition(":")
        encoder, codecName = encoder.strip().lower(), codecName.strip().lower()
        if not colon or not encoder or not codecName:
            raise ValueError("video codec %r is not encoder:codec (for example spice:mjpeg)"
                             % (entry,))
        if encoder not in ENCODERS:
            raise ValueError("unknown video encoder %r in %r; use %s"
                             % (encoder, entry, ", ".join(ENCODERS)))
        if codecName not in CODEC_TYPES:
            raise ValueError("unknown video codec %r in %r; use %s"
                             % (codecName, entry, ", ".join(CODEC_TYPES)))
        codecType = CODEC_TYPES[codecName]
        if encoder == GSTREAMER:
            encoder = SPICE if codecType == VideoCodecType.MJPEG else FFMPEG
        if encoder == SPICE and codecType != VideoCodecType.MJPEG:
            raise ValueError("the spice encoder only does mjpeg (%r); use ffmpeg:%s"
                             % (entry, codecName))
        if encoder == FFMPEG and codecType not in FFMPEG_ENCODERS:
            raise ValueError("the ffmpeg encoder does not do %s (%r); use spice:mjpeg"
                             % (codecName, entry))
        codec = VideoCodec(encoder, codecType)
        if codec not in codecs:
            codecs.append(codec)
    if not codecs:
        raise ValueError("no video codec in %r" % (text,))
    return codecs


def formatVideoCodecs(codecs):
    return ";".join(codec.name for codec in codecs)


def sortByClientPreference(codecs, preferred):
    """
    The server's C{codecs} re-sorted by the client's C{preferred} codec
    types (its PREFERRED_VIDEO_CODEC_TYPE list, most wanted first); codecs
    the client did not name keep the server's order, after the named ones.
    """
    rank = {}
    for codecType in preferred:
        try:
            codecType = VideoCodecType(codecType)
        except ValueError:
            continue  # unknown to this server, as libspice ignores it
        rank.setdefault(codecType, len(rank))
    return sorted(codecs, key=lambda codec: rank.get(codec.type, len(rank)))


def chooseCodec(codecs, clientCaps):
    """
    The first of C{codecs} the client with display capabilities
    C{clientCaps} decodes, else the built-in MJPEG if it can show that,
    else L{None}.
    """
    multi = DisplayCap.MULTI_CODEC in clientCaps
    for codec in codecs:
        if not multi and codec.type != VideoCodecType.MJPEG:
            continue
        if multi and codec.cap not in clientCaps:
            continue
        return codec
    if not multi or DisplayCap.CODEC_MJPEG in clientCaps:
        return VideoCodec(SPICE, VideoCodecType.MJPEG)
    return None
