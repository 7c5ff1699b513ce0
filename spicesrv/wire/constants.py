"""
SPICE protocol constants (spice-protocol's ``enums.h`` and ``protocol.h``).
"""

from enum import IntEnum, IntFlag

MAGIC = b"REDQ"
VERSION_MAJOR = 2
VERSION_MINOR = 2

TICKET_PUBKEY_BYTES = 162
TICKET_CIPHERTEXT_BYTES = 128
MAX_PASSWORD_LENGTH = 60

LINK_MESS_SIZE = 18
LINK_REPLY_SIZE = 178
LINK_MAX_SIZE = 4096
MAX_CAPS_WORDS = 1024


class ChannelType(IntEnum):
    MAIN = 1
    DISPLAY = 2
    INPUTS = 3
    CURSOR = 4
    PLAYBACK = 5
    RECORD = 6
    TUNNEL = 7
    SMARTCARD = 8
    USBREDIR = 9
    PORT = 10
    WEBDAV = 11


class LinkErr(IntEnum):
    OK = 0
    ERROR = 1
    INVALID_MAGIC = 2
    INVALID_DATA = 3
    VERSION_MISMATCH = 4
    NEED_SECURED = 5
    NEED_UNSECURED = 6
    PERMISSION_DENIED = 7
    BAD_CONNECTION_ID = 8
    CHANNEL_NOT_AVAILABLE = 9


class CommonCap(IntEnum):
    PROTOCOL_AUTH_SELECTION = 0
    AUTH_SPICE = 1
    AUTH_SASL = 2
    MINI_HEADER = 3


class MainCap(IntEnum):
    SEMI_SEAMLESS_MIGRATE = 0
    NAME_AND_UUID = 1
    AGENT_CONNECTED_TOKENS = 2
    SEAMLESS_MIGRATE = 3


class DisplayCap(IntEnum):
    SIZED_STREAM = 0
    MONITORS_CONFIG = 1
    COMPOSITE = 2
    A8_SURFACE = 3
    STREAM_REPORT = 4
    LZ4_COMPRESSION = 5
    PREF_COMPRESSION = 6
    GL_SCANOUT = 7
    MULTI_CODEC = 8
    CODEC_MJPEG = 9
    CODEC_VP8 = 10
    CODEC_H264 = 11
    PREF_VIDEO_CODEC_TYPE = 12
    CODEC_VP9 = 13
    CODEC_H265 = 14


class VideoCodecType(IntEnum):
    """
    SpiceVideoCodecType: a stream's codec_type, and the values of
    PREFERRED_VIDEO_CODEC_TYPE.
    """
    MJPEG = 1
    VP8 = 2
    H264 = 3
    VP9 = 4
    H265 = 5


#: SpiceStreamFlags: the frames' first row is the top one.
STREAM_FLAG_TOP_DOWN = 1

#: The most streams a display channel has at once (SPICE_MAX_NUM_STREAMS
#: ids, 0..63, as spice-gtk allows).
MAX_STREAMS = 64


class InputsCap(IntEnum):
    KEY_SCANCODE = 0


class AuthMechanism(IntEnum):
    SPICE = 1
    SASL = 2


class MouseMode(IntFlag):
    SERVER = 1
    CLIENT = 2


class KeyModifier(IntFlag):
    SCROLL_LOCK = 1
    NUM_LOCK = 2
    CAPS_LOCK = 4


class MouseButton(IntEnum):
    LEFT = 1
    MIDDLE = 2
    RIGHT = 3
    UP = 4
    DOWN = 5
    SIDE = 6
    EXTRA = 7


class NotifySeverity(IntEnum):
    """The severity of a NOTIFY (SPICE_NOTIFY_SEVERITY_*)."""
    INFO = 0
    WARN = 1
    ERROR = 2


class NotifyVisibility(IntEnum):
    """How visibly a client shows a NOTIFY (SPICE_NOTIFY_VISIBILITY_*)."""
    LOW = 0
    MEDIUM = 1
    HIGH = 2


class SurfaceFormat(IntEnum):
    FMT_1_A = 1
    FMT_8_A = 8
    FMT_16_555 = 16
    FMT_32_xRGB = 32
    FMT_16_565 = 80
    FMT_32_ARGB = 96


SURFACE_FLAG_PRIMARY = 1
ROPD_OP_PUT = 8
SCALE_MODE_NEAREST = 1
CURSOR_FLAG_NONE = 1
CURSOR_TYPE_ALPHA = 0

# Flow control and timing (libspice-server's values).
ACK_WINDOW = 20
INPUT_MOTION_ACK_BUNCH = 4
AGENT_TOKENS = 10
MM_TIME_DELTA_MS = 400
