"""
SPICE's keyboard codes (PC/XT scancode set 1) for an X server.

A SPICE client sends the physical key, as a set-1 scancode: the key at the
US "y" position is 0x15 whatever the client's layout.  The X server has its
own idea of keys: keycodes, whose numbering depends on the server (Xorg with
evdev and Xvfb number keys Linux input code + 8; older servers used the
"xfree86" numbering; Xwayland follows the compositor), and a layout that
turns keycodes into keysyms.  What does not depend on the server is the
I{name} XKB gives each physical key (C{AE01} is the key right of the top
left corner, whatever layout or numbering): this module maps scancodes to
those names, and the X source asks the server which keycode carries each
name (XKB GetNames).  The layout stays the X server's business, as it is a
guest's with QEMU: after C{setxkbmap de}, the key at the US "y" position
types "z".

Each key also carries its Linux input code (the SPICE/QEMU keymaps map set 1
to Linux codes), the fallback on a server without XKB names: there, if the
keycodes are C{evdev} ones, the keycode is the Linux code + 8.
"""

#: An extended (0xE0-prefixed) scancode is written C{0xE000 | code}.
EXTENDED = 0xE000

#: set-1 make code -> (Linux input code, XKB key name)
SCANCODES = {}


def _row(first, linux, names):
    for i, name in enumerate(names.split()):
        SCANCODES[first + i] = (linux + i, name)


_row(0x01, 1, "ESC AE01 AE02 AE03 AE04 AE05 AE06 AE07 AE08 AE09 AE10 AE11 AE12"
              " BKSP TAB AD01 AD02 AD03 AD04 AD05 AD06 AD07 AD08 AD09 AD10 AD11"
              " AD12 RTRN LCTL AC01 AC02 AC03 AC04 AC05 AC06 AC07 AC08 AC09 AC10"
              " AC11 TLDE LFSH BKSL AB01 AB02 AB03 AB04 AB05 AB06 AB07 AB08 AB09"
              " AB10 RTSH KPMU LALT SPCE CAPS FK01 FK02 FK03 FK04 FK05 FK06 FK07"
              " FK08 FK09 FK10 NMLK SCLK KP7 KP8 KP9 KPSU KP4 KP5 KP6 KPAD KP1"
              " KP2 KP3 KP0 KPDL")
SCANCODES.update({
    0x54: (99, "PRSC"),      # Alt+SysRq
    0x56: (86, "LSGT"),      # the 102nd key, between left shift and Z
    0x57: (87, "FK11"),
    0x58: (88, "FK12"),
    0x59: (117, "KPEQ"),
    0x70: (93, "HKTG"),      # Hiragana/Katakana
    0x73: (89, "AB11"),      # Ro
    0x79: (92, "HENK"),
    0x7B: (94, "MUHE"),
    0x7D: (124, "AE13"),     # Yen
    0x7E: (121, "I129"),     # keypad comma
    EXTENDED | 0x1C: (96, "KPEN"),
    EXTENDED | 0x1D: (97, "RCTL"),
    EXTENDED | 0x20: (113, "MUTE"),
    EXTENDED | 0x2E: (114, "VOL-"),
    EXTENDED | 0x30: (115, "VOL+"),
    EXTENDED | 0x35: (98, "KPDV"),
    EXTENDED | 0x37: (99, "PRSC"),
    EXTENDED | 0x38: (100, "RALT"),
    EXTENDED | 0x46: (119, "PAUS"),  # Ctrl+Break
    EXTENDED | 0x47: (102, "HOME"),
    EXTENDED | 0x48: (103, "UP"),
    EXTENDED | 0x49: (104, "PGUP"),
    EXTENDED | 0x4B: (105, "LEFT"),
    EXTENDED | 0x4D: (106, "RGHT"),
    EXTENDED | 0x4F: (107, "END"),
    EXTENDED | 0x50: (108, "DOWN"),
    EXTENDED | 0x51: (109, "PGDN"),
    EXTENDED | 0x52: (110, "INS"),
    EXTENDED | 0x53: (111, "DELE"),
    EXTENDED | 0x5B: (125, "LWIN"),
    EXTENDED | 0x5C: (126, "RWIN"),
    EXTENDED | 0x5D: (127, "COMP"),
    EXTENDED | 0x5E: (116, "POWR"),
})

#: Pause arrives as C{E1 1D 45} (and C{E1 9D C5} for its release).
PAUSE = SCANCODES[EXTENDED | 0x46]

#: The lock keys' scancodes.
CAPS_LOCK = 0x3A
NUM_LOCK = 0x45
SCROLL_LOCK = 0x46


class Set1Decoder:
    """
    Turns the byte stream of C{push_scan_freg} into key events.
    """

    def __init__(self):
        self._prefix = []

    def feed(self, byte):
        """
        Take one byte; return C{(scancode, pressed)} when it completes a key
        (C{scancode} with L{EXTENDED} for 0xE0-prefixed keys, the Pause
        sequence as C{EXTENDED | 0x46}), else L{None}.
        """
        byte &= 0xFF
        if self._prefix and self._prefix[0] == 0xE1:
            self._prefix.append(byte)
            if len(self._prefix) < 3:
                return None
            sequence, self._prefix = self._prefix[1:], []
            if sequence == [0x1D, 0x45]:
                return (EXTENDED | 0x46, True)
            if sequence == [0x9D, 0xC5]:
                return (EXTENDED | 0x46, False)
            return None
        if byte in (0xE0, 0xE1):
            self._prefix = [byte]
            return None
        extended = EXTENDED if self._prefix == [0xE0] else 0
        self._prefix = []
        return (extended | (byte & 0x7F), not byte & 0x80)


class Keymap:
    """
    Where each scancode's key is on one X server.

    @ivar keycodes: scancode -> X keycode, for the keys the server has.
    """

    def __init__(self, keycodes):
        self.keycodes = keycodes

    @classmethod
    def fromNames(cls, first_keycode, names, aliases=()):
        """
        Build the map from the server's XKB key names.

        @param first_keycode: the keycode of C{names[0]}.
        @param names: the key names of consecutive keycodes (C{''} for none).
        @param aliases: C{(real, alias)} name pairs.
        """
        by_name = {}
        for offset, name in enumerate(names):
            if name and name not in by_name:
                by_name[name] = first_keycode + offset
        for real, alias in aliases:
            if real in by_name and alias not in by_name:
                by_name[alias] = by_name[real]
        return cls({scancode: by_name[name]
                    for scancode, (_, name) in SCANCODES.items()
                    if name in by_name})

    @classmethod
    def evdev(cls):
        """
        The map of a server with evdev keycodes (Linux input code + 8).
        """
        return cls({scancode: linux + 8
                    for scancode, (linux, _) in SCANCODES.items()})

    def keycode(self, scancode):
        """
        The X keycode of C{scancode}'s key, or L{None} if this server has
        no such key.
        """
        return self.keycodes.get(scancode)
