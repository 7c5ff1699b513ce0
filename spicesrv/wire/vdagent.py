"""
The guest agent's messages (spice-protocol's ``vd_agent.h``), declared once.

Between a client and the server they travel inside the main channel's
AGENT_DATA messages: a 20-byte L{VDAgentMessage} header, then C{size}
bytes of body, the whole split into AGENT_DATA messages of at most
L{MAX_DATA_SIZE} bytes (protocol.md section 4.3).  The message numbers are
those of the header's C{type} field.

The four clipboard messages start with a selection byte and three reserved
bytes when both ends announced L{AgentCap.CLIPBOARD_SELECTION}, and without
it otherwise: they are declared in both forms, and L{agentMessages} gives
the table for a connection.  Like L{spicesrv.wire.messages}, nothing here
does I/O.
"""

from enum import IntEnum

from spicesrv.wire.schema import (
    I32, U8, U32, U64, Array, FixedBytes, Message, MessageTable, Rest, Struct, WireError)

#: VDAgentMessage.protocol
PROTOCOL = 1
#: The most bytes of agent stream one AGENT_DATA message carries.
MAX_DATA_SIZE = 2048

VDAgentMessage = Struct("VDAgentMessage", ("protocol", U32), ("type", U32),
                        ("opaque", U64), ("size", U32))
HEADER_SIZE = VDAgentMessage.size


class AgentCap(IntEnum):
    """
    VD_AGENT_CAP_*: bit numbers of VDAgentAnnounceCapabilities.caps.
    """
    MOUSE_STATE = 0
    MONITORS_CONFIG = 1
    REPLY = 2
    CLIPBOARD = 3
    DISPLAY_CONFIG = 4
    CLIPBOARD_BY_DEMAND = 5
    CLIPBOARD_SELECTION = 6
    SPARSE_MONITORS_CONFIG = 7
    GUEST_LINEEND_LF = 8
    GUEST_LINEEND_CRLF = 9
    MAX_CLIPBOARD = 10
    AUDIO_VOLUME_SYNC = 11
    MONITORS_CONFIG_POSITION = 12
    FILE_XFER_DISABLED = 13
    FILE_XFER_DETAILED_ERRORS = 14
    GRAPHICS_DEVICE_INFO = 15
    CLIPBOARD_NO_RELEASE_ON_REGRAB = 16
    CLIPBOARD_GRAB_SERIAL = 17


class ClipboardType(IntEnum):
    """
    VD_AGENT_CLIPBOARD_*: what a clipboard offer or its data is.
    """
    NONE = 0
    UTF8_TEXT = 1
    IMAGE_PNG = 2
    IMAGE_BMP = 3
    IMAGE_TIFF = 4
    IMAGE_JPG = 5
    FILE_LIST = 6


class Selection(IntEnum):
    """
    VD_AGENT_CLIPBOARD_SELECTION_*: which clipboard (X11's names).
    """
    CLIPBOARD = 0
    PRIMARY = 1
    SECONDARY = 2


class FileXferStatus(IntEnum):
    CAN_SEND_DATA = 0
    CANCELLED = 1
    ERROR = 2
    SUCCESS = 3
    NOT_ENOUGH_SPACE = 4
    SESSION_LOCKED = 5
    VDAGENT_NOT_CONNECTED = 6
    DISABLED = 7


#: VDAgentMonitorsConfig.flags
MONITORS_FLAG_USE_POS = 1
MONITORS_FLAG_PHYSICAL_SIZE = 2


class Words:
    """
    u32 values up to the end of the message (VDAgentAnnounceCapabilities'
    caps, VDAgentClipboardGrab's types): a list of ints.  Trailing bytes
    that do not make a whole word are an error.
    """

    size = None

    def write(self, value, w):
        for word in value:
            U32.write(word, w)

    def parse(self, ctx, offset):
        left = len(ctx.data) - offset
        if left % 4:
            raise WireError(ctx.what, offset, "%d bytes are not whole u32 words" % left)
        words = []
        while offset < len(ctx.data):
            word, offset = U32.parse(ctx, offset)
            words.append(word)
        return words, offset


MonConfig = Struct("VDAgentMonConfig", ("height", U32), ("width", U32), ("depth", U32),
                   ("x", I32), ("y", I32))

_SELECTION = (("selection", U8), ("reserved", FixedBytes(3)))


def _clipboard(selection):
    """
    The four clipboard messages, with or without the selection prefix.
    """
    prefix = _SELECTION if selection else ()
    return (
        Message("CLIPBOARD", 4, *prefix, ("type", U32), ("data", Rest())),
        Message("CLIPBOARD_GRAB", 7, *prefix, ("types", Words())),
        Message("CLIPBOARD_REQUEST", 8, *prefix, ("type", U32)),
        Message("CLIPBOARD_RELEASE", 9, *prefix),
    )


_COMMON = (
    Message("MOUSE_STATE", 1, ("x", U32), ("y", U32), ("buttons", U32), ("display_id", U8)),
    # The physical sizes (VDAgentMonitorMM) follow when the flags say so.
    Message("MONITORS_CONFIG", 2, ("num_of_monitors", U32), ("flags", U32),
            ("monitors", Array(MonConfig, count="num_of_monitors")), ("physical", Rest())),
    Message("REPLY", 3, ("type", U32), ("error", U32)),
    Message("DISPLAY_CONFIG", 5, ("flags", U32), ("depth", U32)),
    Message("ANNOUNCE_CAPABILITIES", 6, ("request", U32), ("caps", Words())),
    Message("FILE_XFER_START", 10, ("id", U32), ("data", Rest())),
    Message("FILE_XFER_STATUS", 11, ("id", U32), ("result", U32), ("data", Rest())),
    Message("FILE_XFER_DATA", 12, ("id", U32), ("size", U64),
            ("data", Rest())),
    Message("CLIENT_DISCONNECTED", 13),
    Message("MAX_CLIPBOARD", 14, ("max", I32)),
)

#: Every agent message, the clipboard ones without a selection byte.
AGENT_MESSAGES = MessageTable(*(_COMMON + _clipboard(selection=False)))
#: Every agent message, the clipboard ones with a selection byte.
AGENT_MESSAGES_SELECTION = MessageTable(*(_COMMON + _clipboard(selection=True)))

#: The clipboard messages, whose form depends on CLIPBOARD_SELECTION.
CLIPBOARD_MESSAGES = frozenset(["CLIPBOARD", "CLIPBOARD_GRAB", "CLIPBOARD_REQUEST",
                                "CLIPBOARD_RELEASE"])


def agentMessages(selection):
    """
    The message table of a connection on which both ends have
    L{AgentCap.CLIPBOARD_SELECTION} (C{selection} true) or not.
    """
    return AGENT_MESSAGES_SELECTION if selection else AGENT_MESSAGES

