"""
Tests for the wire layer: every declared message round-trips, layouts
match protocol.md, and bad bytes raise WireError naming the place.
"""

import struct

from twisted.trial import unittest

from spicesrv.display.cursor import Cursor as CursorShape
from spicesrv.wire import caps, messages
from spicesrv.wire.messages import Clip, Cursor
from spicesrv.wire.schema import (
    Array, Bytes, FixedBytes, Ptr, Rest, Scalar, Struct, WireError)

TABLES = {name: getattr(messages, name) for name in dir(messages)
          if name.endswith(("_SERVER", "_CLIENT"))}


def sample(kind, salt=1):
    """
    A value of each field type, different per salt.
    """
    if isinstance(kind, Scalar):
        return (salt * 7) % (1 << (kind.size * 8 - 1))
    if isinstance(kind, FixedBytes):
        return bytes((salt + i) % 256 for i in range(kind.size))
    if isinstance(kind, Bytes):
        return b"host%d\0" % salt
    if isinstance(kind, Rest):
        return b"rest-of-body-%d" % salt
    if isinstance(kind, Array):
        return [sample(kind.element, salt + i) for i in range(3)]
    if isinstance(kind, Ptr):
        return sample(kind.target, salt)
    if isinstance(kind, Struct):
        return {name: sample(k, salt + i) for i, (name, k) in enumerate(kind.fields)}
    if kind is Clip:
        return [sample(messages.Rect, salt)]
    if kind is Cursor:
        return CursorShape(2, 2, 1, 1, bytes(range(16)))
    raise AssertionError("no sample for %r" % (kind,))


def plain(value):
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class RoundTripTests(unittest.TestCase):
    def test_everyMessage(self):
        """
        Every message of every table packs and parses back to the same
        values, size fields included.
        """
        count = 0
        for tableName, table in TABLES.items():
            for message in table:
                values = {name: sample(kind, i + 1)
                          for i, (name, kind) in enumerate(message.fields)
                          if not any(getattr(k, "sizeField", None) == name
                                     for _, k in message.fields)}
                body = message.pack(**values)
                parsed = plain(message.unpack(body))
                for name, value in values.items():
                    if message.fields[[f[0] for f in message.fields].index(name)][1] is Cursor:
                        header, data = parsed[name]
                        self.assertEqual((header[2], data), (2, value.argb))
                        continue
                    self.assertEqual(parsed[name], plain(value), (tableName, message.name, name))
                count += 1
        self.assertGreater(count, 60)

    def test_messageNumbersUniquePerTable(self):
        for table in TABLES.values():
            numbers = [m.number for m in table]
            self.assertEqual(len(numbers), len(set(numbers)))


class LayoutTests(unittest.TestCase):
    def test_linkSizes(self):
        self.assertEqual(len(messages.LinkHeader.pack(magic=b"REDQ", major_version=2,
                                                      minor_version=2, size=0)), 16)
        self.assertEqual(messages.LinkMess.size, 18)
        self.assertEqual(messages.LinkReply.size, 178)
        self.assertEqual(messages.DataHeader.size, 18)
        self.assertEqual(messages.MiniDataHeader.size, 6)

    def test_mainInit(self):
        body = messages.MAIN_SERVER["INIT"].pack(
            session_id=1, display_channels_hint=2, supported_mouse_modes=3,
            current_mouse_mode=2, agent_connected=0, agent_tokens=10,
            multi_media_time=7, ram_hint=8)
        self.assertEqual(body, struct.pack("<8I", 1, 2, 3, 2, 0, 10, 7, 8))

    def test_dstInfo(self):
        """
        MIGRATE_BEGIN: fixed part of 20 bytes, the host right after it, then
        the subject; sizes count the NUL; absent subject is size 0 ptr 0.
        """
        begin = messages.MAIN_SERVER["MIGRATE_BEGIN"]
        body = begin.pack(port=5900, sport=5901, host_data=b"dst\0",
                          cert_subject_data=b"CN=x\0")
        self.assertEqual(body[:20], struct.pack("<HHIIII", 5900, 5901, 4, 20, 5, 24))
        self.assertEqual(body[20:], b"dst\0CN=x\0")
        body = begin.pack(port=0, sport=5901, host_data=b"h\0", cert_subject_data=None)
        self.assertEqual(body, struct.pack("<HHIIII", 0, 5901, 2, 20, 0, 0) + b"h\0")

    def test_drawCopy(self):
        """
        DRAW_COPY with clip NONE has a 57-byte fixed part and the image at
        offset 57, as protocol.md 6.3 lays it out.
        """
        body = messages.DISPLAY_SERVER["DRAW_COPY"].pack(
            base=dict(surface_id=0, box=dict(top=1, left=2, bottom=3, right=4), clip=None),
            src_bitmap=b"IMAGE", src_area=dict(top=0, left=0, bottom=2, right=2),
            rop_descriptor=8, scale_mode=1, mask=dict(flags=0, pos=dict(x=0, y=0),
                                                      bitmap=0))
        self.assertEqual(len(body), 57 + 5)
        self.assertEqual(body[:21], struct.pack("<I4iB", 0, 1, 2, 3, 4, 0))
        self.assertEqual(struct.unpack_from("<I", body, 21)[0], 57)
        self.assertEqual(struct.unpack_from("<H", body, 41)[0], 8)
        self.assertEqual(body[57:], b"IMAGE")

    def test_cursorAlpha(self):
        shape = CursorShape(1, 1, 0, 0, b"\1\2\3\4", unique=9)
        body = messages.CURSOR_SERVER["SET"].pack(position=dict(x=3, y=4), visible=1,
                                                  cursor=shape)
        self.assertEqual(body, struct.pack("<hhBH", 3, 4, 1, 0)
                         + struct.pack("<QBHHHH", 9, 0, 1, 1, 0, 0) + b"\1\2\3\4")
        none = messages.CURSOR_SERVER["SET"].pack(position=dict(x=0, y=0), visible=0,
                                                  cursor=None)
        self.assertEqual(none[5:], struct.pack("<H", 1))

    def test_notifyCountsNul(self):
        body = messages.COMMON_SERVER["NOTIFY"].pack(time_stamp=1, severity=0, visibility=0,
                                                     what=0, message=b"hi\0")
        self.assertEqual(struct.unpack_from("<I", body, 20)[0], 3)


class BadBytesTests(unittest.TestCase):
    def test_truncated(self):
        e = self.assertRaises(WireError, messages.MAIN_CLIENT["MOUSE_MODE_REQUEST"].unpack, b"\1")
        self.assertIn("MOUSE_MODE_REQUEST", str(e))
        self.assertEqual(e.offset, 0)

    def test_trailing(self):
        self.assertRaises(WireError, messages.INPUTS_CLIENT["KEY_DOWN"].unpack, b"\0" * 5)
        self.assertEqual(
            messages.INPUTS_CLIENT["KEY_DOWN"].unpack(b"\1\0\0\0\0", exact=False).code, 1)

    def test_sizeBeyondEnd(self):
        body = struct.pack("<I", 100) + b"abc"
        e = self.assertRaises(WireError, messages.MAIN_SERVER["NAME"].unpack, body)
        self.assertEqual(e.offset, 4)

    def test_nullNonNullPointer(self):
        body = struct.pack("<HHIIII", 1, 0, 2, 0, 0, 0)
        e = self.assertRaises(WireError, messages.MAIN_SERVER["MIGRATE_BEGIN"].unpack, body)
        self.assertIn("NULL", str(e))

    def test_pointerOutside(self):
        body = struct.pack("<HHIIII", 1, 0, 2, 999, 0, 0)
        self.assertRaises(WireError, messages.MAIN_SERVER["MIGRATE_BEGIN"].unpack, body)

    def test_arrayTooLong(self):
        body = struct.pack("<I", 1000) + b"\1\0"
        self.assertRaises(WireError, messages.MAIN_SERVER["CHANNELS_LIST"].unpack, body)

    def test_badClip(self):
        body = struct.pack("<I4iB", 0, 0, 0, 1, 1, 7)
        self.assertRaises(WireError, messages.DisplayBase.unpack, body)

    def test_packRejectsUnknownField(self):
        self.assertRaises(TypeError, messages.MAIN_SERVER["UUID"].pack, uuid=b"", extra=1)

    def test_packRejectsOutOfRange(self):
        self.assertRaises(ValueError, messages.MAIN_CLIENT["MOUSE_MODE_REQUEST"].pack,
                          mode=70000)


class CapsTests(unittest.TestCase):
    def test_roundTrip(self):
        self.assertEqual(caps.caps_to_words({0, 1, 3}), [0x0B])
        self.assertEqual(caps.caps_to_words(set()), [])
        self.assertEqual(caps.caps_to_words({33}), [0, 2])
        self.assertEqual(caps.words_to_caps([0x0B, 2]), {0, 1, 3, 33})


class ConstantsTests(unittest.TestCase):

    def test_notifyNames(self):
        """
        Severity and visibility are separate enums, so a value's name is its
        own (not the alias's of the same number).
        """
        from spicesrv.wire.constants import NotifySeverity, NotifyVisibility
        self.assertEqual([(v.name, int(v)) for v in NotifySeverity],
                         [("INFO", 0), ("WARN", 1), ("ERROR", 2)])
        self.assertEqual([(v.name, int(v)) for v in NotifyVisibility],
                         [("LOW", 0), ("MEDIUM", 1), ("HIGH", 2)])
        self.assertEqual(NotifyVisibility.LOW.name, "LOW")

    def test_channelNames(self):
        from spicesrv.server import CHANNEL_NAMES
        from spicesrv.wire.constants import ChannelType
        self.assertEqual(CHANNEL_NAMES["usbredir"], ChannelType.USBREDIR)
        self.assertEqual(sorted(CHANNEL_NAMES.values()), sorted(ChannelType))
        self.assertEqual(list(CHANNEL_NAMES)[:4], ["main", "display", "inputs", "cursor"])
