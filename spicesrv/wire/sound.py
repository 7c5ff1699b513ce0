"""
The playback (5) and record (6) channels' messages and constants, declared
once (spice-common ``spice.proto``: ``PlaybackChannel``, ``RecordChannel``,
``AudioVolume``, ``AudioMute``; numbers from spice-protocol ``enums.h``).

    PLAYBACK_SERVER["START"].pack(channels=2, format=AudioFormat.S16,
                                  frequency=48000, time=mm_time)

Audio bytes (DATA, MODE's data) run to the end of the message
(``@as_ptr(data_size)`` in spice.proto).  RAW data is S16 LE interleaved;
OPUS data is one Opus packet of L{FRAME_SAMPLES} samples per channel
(spice-common ``snd_codec.h``: a client decodes into a buffer of exactly one
such frame and encodes into at most L{MAX_OPUS_PACKET} bytes).
"""

from enum import IntEnum

from spicesrv.wire.messages import COMMON_CLIENT, COMMON_SERVER
from spicesrv.wire.schema import U8, U16, U32, Array, Message, Rest

#: The rate, channels and sample format every SPICE client takes
#: (SND_CODEC_OPUS_PLAYBACK_FREQ, SND_CODEC_PLAYBACK_CHAN, S16).
RATE = 48000
CHANNELS = 2
SAMPLE_BYTES = 2
#: One frame: 10 ms at 48 kHz (SND_CODEC_OPUS_FRAME_SIZE), what libspice
#: sends per DATA message in either mode.
FRAME_SAMPLES = 480
FRAME_BYTES = FRAME_SAMPLES * CHANNELS * SAMPLE_BYTES
#: The largest Opus packet a client's encoder buffer holds
#: (SND_CODEC_MAX_COMPRESSED_BYTES).
MAX_OPUS_PACKET = 480


class PlaybackCap(IntEnum):
    """
    SPICE_PLAYBACK_CAP_*.
    """

    CELT_0_5_1 = 0
    VOLUME = 1
    LATENCY = 2
    OPUS = 3


class RecordCap(IntEnum):
    """
    SPICE_RECORD_CAP_*.
    """

    CELT_0_5_1 = 0
    VOLUME = 1
    OPUS = 2


class AudioDataMode(IntEnum):
    """
    SPICE_AUDIO_DATA_MODE_*: how DATA's bytes are encoded.
    """

    INVALID = 0
    RAW = 1
    CELT_0_5_1 = 2      # deprecated; no client or server speaks it any more
    OPUS = 3


class AudioFormat(IntEnum):
    """
    SPICE_AUDIO_FMT_*: the sample format of START.
    """

    INVALID = 0
    S16 = 1


# -- shared ---------------------------------------------------------------------

def _volume(number):
    # AudioVolume: a u16 per channel (0..65535, 65535 = full volume).
    return Message("VOLUME", number, ("nchannels", U8),
                   ("volume", Array(U16, count="nchannels")))


def _mute(number):
    return Message("MUTE", number, ("mute", U8))


# -- playback (5) ---------------------------------------------------------------

PLAYBACK_SERVER = COMMON_SERVER.extend(
    Message("DATA", 101, ("time", U32), ("data", Rest())),
    Message("MODE", 102, ("time", U32), ("mode", U16), ("data", Rest())),
    Message("START", 103, ("channels", U32), ("format", U16), ("frequency", U32),
            ("time", U32)),
    Message("STOP", 104),
    _volume(105),
    _mute(106),
    Message("LATENCY", 107, ("latency_ms", U32)),
)

PLAYBACK_CLIENT = COMMON_CLIENT


# -- record (6) -----------------------------------------------------------------

RECORD_SERVER = COMMON_SERVER.extend(
    Message("START", 101, ("channels", U32), ("format", U16), ("frequency", U32)),
    Message("STOP", 102),
    _volume(103),
    _mute(104),
)

RECORD_CLIENT = COMMON_CLIENT.extend(
    Message("DATA", 101, ("time", U32), ("data", Rest())),
    Message("MODE", 102, ("time", U32), ("mode", U16), ("data", Rest())),
    Message("START_MARK", 103, ("time", U32)),
)
