"""
Every SPICE message spicesrv sends or receives, declared once.

Each channel has two L{MessageTable}s: what the server sends
(C{*_SERVER}) and what the client sends (C{*_CLIENT}).  Both start from the
messages common to every channel.
"""

from spicesrv.wire.schema import (
    U8, U16, U32, U64, I32, I64, I16, Array, Bytes, FixedBytes, Message,
    MessageTable, Ptr, Rest, Struct, WireError)
from spicesrv.wire.constants import CURSOR_FLAG_NONE, CURSOR_TYPE_ALPHA


# -- shared structures -------------------------------------------------------

Rect = Struct("Rect", ("top", I32), ("left", I32), ("bottom", I32), ("right", I32))
Point = Struct("Point", ("x", I32), ("y", I32))
Point16 = Struct("Point16", ("x", I16), ("y", I16))
ChannelId = Struct("ChannelId", ("type", U8), ("id", U8))
WaitForChannel = Struct("WaitForChannel", ("channel_type", U8), ("channel_id", U8),
                        ("message_serial", U64))
Head = Struct("Head", ("monitor_id", U32), ("surface_id", U32), ("width", U32),
              ("height", U32), ("x", U32), ("y", U32), ("flags", U32))


class ClipType:
    """
    A Clip: L{None} for type NONE, or a list of Rect values for type RECTS.
    """

    size = None

    def write(self, value, w):
        if value is None:
            U8.write(0, w)
            return
        U8.write(1, w)
        U32.write(len(value), w)
        for r in value:
            Rect.write(r, w)

    def parse(self, ctx, offset):
        kind, offset = U8.parse(ctx, offset)
        if kind == 0:
            return None, offset
        if kind != 1:
            raise WireError(ctx.what, offset - 1, "unknown clip type %d" % kind)
        count, offset = U32.parse(ctx, offset)
        rects = []
        for _ in range(count):
            r, offset = Rect.parse(ctx, offset)
            rects.append(r)
        return rects, offset


Clip = ClipType()


class CursorType:
    """
    A Cursor: L{None} for "no shape" (flag NONE), or a
    L{spicesrv.display.cursor.Cursor} sent in the ALPHA format.
    """

    size = None
    header = Struct("CursorHeader", ("unique", U64), ("type", U8), ("width", U16),
                    ("height", U16), ("hot_spot_x", U16), ("hot_spot_y", U16))

    def write(self, value, w):
        if value is None:
            U16.write(CURSOR_FLAG_NONE, w)
            return
        U16.write(0, w)
        self.header.write(dict(
            unique=value.unique, type=CURSOR_TYPE_ALPHA, width=value.width,
            height=value.height, hot_spot_x=value.hot_x, hot_spot_y=value.hot_y), w)
        w.buf += value.argb

    def parse(self, ctx, offset):
        flags, offset = U16.parse(ctx, offset)
        if flags & CURSOR_FLAG_NONE:
            return None, offset
        header, offset = self.header.parse(ctx, offset)
        return (header, bytes(ctx.data[offset:])), len(ctx.data)


Cursor = CursorType()

DisplayBase = Struct("DisplayBase", ("surface_id", U32), ("box", Rect), ("clip", Clip))
# The mask bitmap is a pointer to an Image; spicesrv never sends masks, so
# it is declared as the raw offset (0 = no mask).
QMask = Struct("QMask", ("flags", U8), ("pos", Point), ("bitmap", U32))

DstInfo = (("port", U16), ("sport", U16),
           ("host_size", U32), ("host_data", Ptr(Bytes(size="host_size"), nonnull=True)),
           ("cert_subject_size", U32),
           ("cert_subject_data", Ptr(Bytes(size="cert_subject_size"))))


# -- common to every channel -------------------------------------------------

COMMON_SERVER = MessageTable(
    Message("MIGRATE", 1, ("flags", U32)),
    Message("MIGRATE_DATA", 2, ("data", Rest())),
    Message("SET_ACK", 3, ("generation", U32), ("window", U32)),
    Message("PING", 4, ("id", U32), ("timestamp", U64), ("padding", Rest())),
    Message("WAIT_FOR_CHANNELS", 5, ("wait_count", U8),
            ("wait_list", Array(WaitForChannel, count="wait_count"))),
    Message("DISCONNECTING", 6, ("time_stamp", U64), ("reason", U32)),
    Message("NOTIFY", 7, ("time_stamp", U64), ("severity", U32), ("visibility", U32),
            ("what", U32), ("message_len", U32),
            ("message", Bytes(size="message_len"))),
    Message("LIST", 8, ("data", Rest())),
)

COMMON_CLIENT = MessageTable(
    Message("ACK_SYNC", 1, ("generation", U32)),
    Message("ACK", 2),
    Message("PONG", 3, ("id", U32), ("timestamp", U64)),
    Message("MIGRATE_FLUSH_MARK", 4),
    Message("MIGRATE_DATA", 5, ("data", Rest())),
    Message("DISCONNECTING", 6, ("time_stamp", U64), ("reason", U32)),
)


# -- main (1) ----------------------------------------------------------------

MAIN_SERVER = COMMON_SERVER.extend(
    Message("MIGRATE_BEGIN", 101, *DstInfo),
    Message("MIGRATE_CANCEL", 102),
    Message("INIT", 103, ("session_id", U32), ("display_channels_hint", U32),
            ("supported_mouse_modes", U32), ("current_mouse_mode", U32),
            ("agent_connected", U32), ("agent_tokens", U32),
            ("multi_media_time", U32), ("ram_hint", U32)),
    Message("CHANNELS_LIST", 104, ("num_of_channels", U32),
            ("channels", Array(ChannelId, count="num_of_channels"))),
    Message("MOUSE_MODE", 105, ("supported_modes", U16), ("current_mode", U16)),
    Message("MULTI_MEDIA_TIME", 106, ("time", U32)),
    Message("AGENT_CONNECTED", 107),
    Message("AGENT_DISCONNECTED", 108, ("error_code", U32)),
    Message("AGENT_DATA", 109, ("data", Rest())),
    Message("AGENT_TOKEN", 110, ("num_tokens", U32)),
    Message("MIGRATE_SWITCH_HOST", 111, *DstInfo),
    Message("MIGRATE_END", 112),
    Message("NAME", 113, ("name_len", U32), ("name", Bytes(size="name_len"))),
    Message("UUID", 114, ("uuid", FixedBytes(16))),
    Message("AGENT_CONNECTED_TOKENS", 115, ("num_tokens", U32)),
    Message("MIGRATE_BEGIN_SEAMLESS", 116, *DstInfo, ("src_mig_version", U32)),
    Message("MIGRATE_DST_SEAMLESS_ACK", 117),
    Message("MIGRATE_DST_SEAMLESS_NACK", 118),
)

MAIN_CLIENT = COMMON_CLIENT.extend(
    Message("CLIENT_INFO", 101, ("cache_size", U64)),
    Message("MIGRATE_CONNECTED", 102),
    Message("MIGRATE_CONNECT_ERROR", 103),
    Message("ATTACH_CHANNELS", 104),
    Message("MOUSE_MODE_REQUEST", 105, ("mode", U16)),
    Message("AGENT_START", 106, ("num_tokens", U32)),
    Message("AGENT_DATA", 107, ("data", Rest())),
    Message("AGENT_TOKEN", 108, ("num_tokens", U32)),
    Message("MIGRATE_END", 109),
    Message("MIGRATE_DST_DO_SEAMLESS", 110, ("src_version", U32)),
    Message("MIGRATE_CONNECTED_SEAMLESS", 111),
    Message("QUALITY_INDICATOR", 112, ("data", Rest())),
)


# -- display (2) -------------------------------------------------------------

DISPLAY_SERVER = COMMON_SERVER.extend(
    Message("MODE", 101, ("x_res", U32), ("y_res", U32), ("bits", U32)),
    Message("MARK", 102),
    Message("RESET", 103),
    # The client copies its own pixels: base.box (clipped by base.clip) takes
    # those at src_pos and on (spice.proto's copy_bits).
    Message("COPY_BITS", 104, ("base", DisplayBase), ("src_pos", Point)),
    Message("INVAL_ALL_PALETTES", 108),
    # Video streams (protocol.md 6.5): a rectangle of the surface shown as a
    # sequence of frames of a lossy codec, each played at its mm_time.
    Message("STREAM_CREATE", 122, ("surface_id", U32), ("id", U32), ("flags", U8),
            ("codec_type", U8), ("stamp", U64), ("stream_width", U32),
            ("stream_height", U32), ("src_width", U32), ("src_height", U32),
            ("dest", Rect), ("clip", Clip)),
    Message("STREAM_DATA", 123, ("id", U32), ("multi_media_time", U32),
            ("data_size", U32), ("data", Bytes(size="data_size"))),
    Message("STREAM_CLIP", 124, ("id", U32), ("clip", Clip)),
    Message("STREAM_DESTROY", 125, ("id", U32)),
    Message("STREAM_DESTROY_ALL", 126),
    Message("DRAW_FILL", 302, ("base", DisplayBase), ("brush_type", U8),
            ("color", U32), ("rop_descriptor", U16), ("mask", QMask)),
    Message("DRAW_COPY", 304, ("base", DisplayBase), ("src_bitmap", Ptr(Rest(), nonnull=True)),
            ("src_area", Rect), ("rop_descriptor", U16), ("scale_mode", U8),
            ("mask", QMask)),
    Message("SURFACE_CREATE", 314, ("surface_id", U32), ("width", U32), ("height", U32),
            ("format", U32), ("flags", U32)),
    Message("SURFACE_DESTROY", 315, ("surface_id", U32)),
    Message("STREAM_DATA_SIZED", 316, ("id", U32), ("multi_media_time", U32),
            ("width", U32), ("height", U32), ("dest", Rect),
            ("data_size", U32), ("data", Bytes(size="data_size"))),
    Message("MONITORS_CONFIG", 317, ("count", U16), ("max_allowed", U16),
            ("heads", Array(Head, count="count"))),
    Message("STREAM_ACTIVATE_REPORT", 319, ("stream_id", U32), ("unique_id", U32),
            ("max_window_size", U32), ("timeout_ms", U32)),
)

DISPLAY_CLIENT = COMMON_CLIENT.extend(
    Message("INIT", 101, ("pixmap_cache_id", U8), ("pixmap_cache_size", I64),
            ("glz_dictionary_id", U8), ("glz_dictionary_window_size", I32)),
    Message("STREAM_REPORT", 102, ("stream_id", U32), ("unique_id", U32),
            ("start_frame_mm_time", U32), ("end_frame_mm_time", U32),
            ("num_frames", U32), ("num_drops", U32), ("last_frame_delay", I32),
            ("audio_delay", U32)),
    Message("PREFERRED_COMPRESSION", 103, ("image_compression", U8)),
    Message("GL_DRAW_DONE", 104),
    Message("PREFERRED_VIDEO_CODEC_TYPE", 105, ("num_of_codecs", U8),
            ("codecs", Array(U8, count="num_of_codecs"))),
)


# -- inputs (3) --------------------------------------------------------------

INPUTS_SERVER = COMMON_SERVER.extend(
    Message("INIT", 101, ("keyboard_modifiers", U16)),
    Message("KEY_MODIFIERS", 102, ("modifiers", U16)),
    Message("MOUSE_MOTION_ACK", 111),
)

INPUTS_CLIENT = COMMON_CLIENT.extend(
    Message("KEY_DOWN", 101, ("code", U32)),
    Message("KEY_UP", 102, ("code", U32)),
    Message("KEY_MODIFIERS", 103, ("modifiers", U16)),
    Message("KEY_SCANCODE", 104, ("codes", Rest())),
    Message("MOUSE_MOTION", 111, ("dx", I32), ("dy", I32), ("buttons_state", U16)),
    Message("MOUSE_POSITION", 112, ("x", U32), ("y", U32), ("buttons_state", U16),
            ("display_id", U8)),
    Message("MOUSE_PRESS", 113, ("button", U8), ("buttons_state", U16)),
    Message("MOUSE_RELEASE", 114, ("button", U8), ("buttons_state", U16)),
)


# -- cursor (4) --------------------------------------------------------------

CURSOR_SERVER = COMMON_SERVER.extend(
    Message("INIT", 101, ("position", Point16), ("trail_length", U16),
            ("trail_frequency", U16), ("visible", U8), ("cursor", Cursor)),
    Message("RESET", 102),
    Message("SET", 103, ("position", Point16), ("visible", U8), ("cursor", Cursor)),
    Message("MOVE", 104, ("position", Point16)),
    Message("HIDE", 105),
    Message("TRAIL", 106, ("length", U16), ("frequency", U16)),
    Message("INVAL_ONE", 107, ("id", U64)),
    Message("INVAL_ALL", 108),
)

CURSOR_CLIENT = COMMON_CLIENT


# -- link stage --------------------------------------------------------------

LinkHeader = Struct("LinkHeader", ("magic", FixedBytes(4)), ("major_version", U32),
                    ("minor_version", U32), ("size", U32))
LinkMess = Struct("LinkMess", ("connection_id", U32), ("channel_type", U8),
                  ("channel_id", U8), ("num_common_caps", U32),
                  ("num_channel_caps", U32), ("caps_offset", U32))
LinkReply = Struct("LinkReply", ("error", U32), ("pub_key", FixedBytes(162)),
                   ("num_common_caps", U32), ("num_channel_caps", U32),
                   ("caps_offset", U32))

DataHeader = Struct("DataHeader", ("serial", U64), ("type", U16), ("size", U32),
                    ("sub_list", U32))
MiniDataHeader = Struct("MiniDataHeader", ("type", U16), ("size", U32))
