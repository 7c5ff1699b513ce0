"""
Splitting a QMP byte stream into JSON values the way QEMU's JSON streamer
(C{qobject/json-streamer.c}) does: values may span lines and several may
share one; an unparsable value, a stray byte or an ASCII control character
becomes one error and the stream goes on after it.
"""

import json
import re

__all__ = ["JSONSplitter", "MAX_NESTING", "VALUE", "ERROR"]

#: The deepest nesting of objects and arrays in a request (QEMU's limit).
MAX_NESTING = 1024

# Characters QEMU's JSON lexer rejects anywhere: ASCII controls other than
# tab, CR and LF, and the bytes 0xFE and 0xFF that never occur in UTF-8.  A
# client sends one to force the parser back into a known-good state
# (qmp-spec.rst); inside a string CR and LF are errors too.
_BAD = b"\x00-\x08\x0b\x0c\x0e-\x1f\xfe\xff"
_IN_VALUE = re.compile(b'[{}\\[\\]"' + _BAD + b"]")
_IN_STRING = re.compile(b'["\\\\\x00-\x1f\xfe\xff]')
_TOP_LEVEL = re.compile(b"[^ \t\r\n]")
_SCALAR_END = re.compile(b'[ \t\r\n{}\\[\\]",:' + _BAD + b"]")
_BAD_BYTE = re.compile(b"[" + _BAD + b"]")

#: The kinds of item L{JSONSplitter.next} returns.
VALUE, ERROR = "value", "error"


def _describeByte(byte):
    char = chr(byte)
    return char if char.isprintable() and byte < 0x80 else "\\x%02x" % byte


def _parseError(message):
    return "JSON parse error, " + message[:1].lower() + message[1:]


def _rejectConstant(name):
    raise ValueError("invalid literal %s" % (name,))


class JSONSplitter:
    """
    Split a byte stream into JSON values the way QEMU's JSON streamer does:
    values may span lines and several may share one; a value ends when its
    brackets balance; an unparsable value, a stray byte or an ASCII control
    character becomes one error and the stream goes on after it.

    Bytes are only scanned when L{next} is called, so a caller may stop
    taking values while it is busy; C{len()} is the number of bytes held
    (the incomplete value and what has not been scanned yet), for the
    caller to limit.  A value being skipped is not held.

    @param maxNesting: the deepest nesting accepted; a deeper value is one
        error and is skipped.
    """

    def __init__(self, maxNesting=MAX_NESTING):
        self.maxNesting = maxNesting
        self._buffer = bytearray()
        self._pos = 0           # next byte to scan
        self._depth = 0         # open objects and arrays of the current value
        self._inString = False
        self._started = False   # the current value (at buffer start) has begun
        self._skipping = False  # discarding a value that nests too deep

    def __len__(self):
        return len(self._buffer)

    def feed(self, data):
        """
        Add bytes.
        """
        self._buffer += data

    def next(self):
        """
        The next complete item: C{("value", obj)}, C{("error", desc)}, or
        L{None} until more bytes arrive.
        """
        item = self._scan()
        if self._skipping and self._pos:
            self._consume(self._pos)   # a value being skipped is not kept
        return item

    def _scan(self):
        buf = self._buffer
        while self._pos < len(buf):
            if self._inString:
                match = _IN_STRING.search(buf, self._pos)
                if match is None:
                    self._pos = len(buf)
                    break
                i = match.start()
                c = buf[i]
                if c == 0x5C:                       # backslash: skip the escaped byte
                    if i + 1 >= len(buf):
                        self._pos = i
                        break
                    if buf[i + 1] < 0x20 or buf[i + 1] >= 0xFE:
                        return self._lexicalError(i + 1)
                    self._pos = i + 2
                elif c == 0x22:                     # closing quote
                    self._inString = False
                    self._pos = i + 1
                    if self._depth == 0:
                        return self._complete(i + 1)
                else:
                    return self._lexicalError(i)
            elif not self._started:
                match = _TOP_LEVEL.search(buf, self._pos)
                if match is None:
                    self._consume(len(buf))
                    break
                i = match.start()
                self._consume(i)
                c = buf[0]
                self._started = True
                if c in (0x7B, 0x5B):               # { [
                    self._depth = 1
                    self._pos = 1
                elif c == 0x22:
                    self._inString = True
                    self._pos = 1
                elif c in (0x7D, 0x5D, 0x2C, 0x3A) or _BAD_BYTE.match(buf, 0):
                    return self._lexicalError(0)    # } ] , : or a control byte
                else:
                    self._pos = 0                   # a bare scalar: read to its end
            elif self._depth == 0:
                match = _SCALAR_END.search(buf, self._pos)
                if match is None:
                    self._pos = len(buf)
                    break
                return self._complete(match.start())
            else:
                match = _IN_VALUE.search(buf, self._pos)
                if match is None:
                    self._pos = len(buf)
                    break
                i = match.start()
                c = buf[i]
                self._pos = i + 1
                if c in (0x7B, 0x5B):
                    self._depth += 1
                    if self._depth > self.maxNesting and not self._skipping:
                        self._skipping = True
                        return (ERROR, "JSON nesting depth limit exceeded")
                elif c in (0x7D, 0x5D):
                    self._depth -= 1
                    if self._depth == 0:
                        if self._skipping:
                            self._skipping = False
                            self._started = False
                            self._consume(i + 1)
                            continue
                        return self._complete(i + 1)
                elif c == 0x22:
                    self._inString = True
                else:
                    return self._lexicalError(i)
        return None

    def _consume(self, end):
        del self._buffer[:end]
        self._pos = max(self._pos - end, 0)

    def _reset(self):
        self._depth = 0
        self._inString = False
        self._started = False
        self._skipping = False
        self._pos = 0

    def _lexicalError(self, i):
        byte = self._buffer[i]
        skipping = self._skipping
        self._consume(i + 1)
        self._reset()
        if skipping:
            return self._scan()
        return (ERROR, "JSON parse error, stray '%s'" % (_describeByte(byte),))

    def _complete(self, end):
        text = bytes(self._buffer[:end])
        self._consume(end)
        self._reset()
        try:
            value = json.loads(text.decode("utf-8"), parse_constant=_rejectConstant)
        except UnicodeDecodeError:
            return (ERROR, "JSON parse error, invalid UTF-8 sequence")
        except json.JSONDecodeError as e:
            return (ERROR, _parseError(e.msg))
        except RecursionError:
            return (ERROR, "JSON nesting depth limit exceeded")
        except ValueError:
            return (ERROR, "JSON parse error, expecting value")
        return (VALUE, value)

