"""
Tests for L{spicesrv.sources.x11keys}: the scancode table against the XKB
data X servers use, the byte decoder and the keymaps.
"""

import os
import re

from twisted.trial import unittest

from spicesrv.sources import x11keys
from spicesrv.sources.x11keys import EXTENDED, SCANCODES, Keymap, Set1Decoder

EVDEV_KEYCODES = "/usr/share/X11/xkb/keycodes/evdev"


def readKeycodes(path):
    """
    The key names of an XKB keycodes file: name -> keycode, aliases
    resolved.
    """
    with open(path) as f:
        text = f.read()
    names = {name: int(code) for name, code in
             re.findall(r"^\s*<([A-Z0-9+-]+)>\s*=\s*(\d+)\s*;", text, re.M)}
    for alias, real in re.findall(r"^\s*alias\s*<([A-Z0-9+-]+)>\s*=\s*<([A-Z0-9+-]+)>",
                                  text, re.M):
        if real in names:
            names.setdefault(alias, names[real])
    return names


class TableTests(unittest.TestCase):
    def test_againstXkbEvdev(self):
        """
        Every key's XKB name sits, in XKB's own evdev keycodes, at its
        Linux input code + 8: the two columns of the table agree with the
        data X servers are built from.
        """
        if not os.path.exists(EVDEV_KEYCODES):
            msg = "%s missing; apt-get install -y xkb-data" % EVDEV_KEYCODES
            if os.environ.get("CI") == "true":
                self.fail(msg)
            raise unittest.SkipTest(msg)
        names = readKeycodes(EVDEV_KEYCODES)
        wrong = {hex(code): (linux, name, names.get(name))
                 for code, (linux, name) in SCANCODES.items()
                 if names.get(name) != linux + 8}
        self.assertEqual(wrong, {})

    def test_wellKnownKeys(self):
        """
        Spot checks from the PC/XT set-1 table: A, Y (US position), the
        arrows and right Ctrl, the 102nd key.
        """
        self.assertEqual(SCANCODES[0x1E], (30, "AC01"))
        self.assertEqual(SCANCODES[0x15], (21, "AD06"))
        self.assertEqual(SCANCODES[EXTENDED | 0x48], (103, "UP"))
        self.assertEqual(SCANCODES[EXTENDED | 0x1D], (97, "RCTL"))
        self.assertEqual(SCANCODES[0x56], (86, "LSGT"))
        # Every ordinary set-1 key up to F12 is there.
        for code in list(range(0x01, 0x54)) + [0x56, 0x57, 0x58]:
            self.assertIn(code, SCANCODES)


class DecoderTests(unittest.TestCase):
    def feed(self, *data):
        decoder = Set1Decoder()
        return [k for k in map(decoder.feed, data) if k is not None]

    def test_plain(self):
        self.assertEqual(self.feed(0x1E, 0x9E), [(0x1E, True), (0x1E, False)])

    def test_extended(self):
        self.assertEqual(self.feed(0xE0, 0x48, 0xE0, 0xC8),
                         [(EXTENDED | 0x48, True), (EXTENDED | 0x48, False)])

    def test_pause(self):
        self.assertEqual(self.feed(0xE1, 0x1D, 0x45, 0xE1, 0x9D, 0xC5),
                         [(EXTENDED | 0x46, True), (EXTENDED | 0x46, False)])
        self.assertEqual(x11keys.PAUSE, SCANCODES[EXTENDED | 0x46])


class KeymapTests(unittest.TestCase):
    def test_evdev(self):
        keymap = Keymap.evdev()
        self.assertEqual(keymap.keycode(0x1E), 38)
        self.assertEqual(keymap.keycode(EXTENDED | 0x48), 111)

    def test_fromNames(self):
        """
        The server's numbering, whatever it is, comes from its key names;
        aliases count; keys the server lacks map to nothing.
        """
        keymap = Keymap.fromNames(10, ["AC01", "", "AE01", "MENU"], [("MENU", "COMP")])
        self.assertEqual(keymap.keycode(0x1E), 10)
        self.assertEqual(keymap.keycode(0x02), 12)
        self.assertEqual(keymap.keycode(EXTENDED | 0x5D), 13)
        self.assertIsNone(keymap.keycode(0x03))
