"""
A declarative schema for SPICE's packed little-endian structures.

A structure is declared once as a list of named fields; packing and parsing
are derived from that declaration::

    Rect = Struct("Rect", ("top", I32), ("left", I32),
                          ("bottom", I32), ("right", I32))
    NAME = Message("NAME", 113, ("name_len", U32),
                   ("name", Bytes(size="name_len")))

    body = NAME.pack(name=b"vm\\0")           # name_len is filled in
    NAME.unpack(body).name == b"vm\\0"

Field types know how to pack a value and how to read one at an offset.
Pointers (``Ptr``) are u32 offsets from the start of the message body; the
data they point at is appended after the fixed part when packing, in field
order, as libspice does, and followed wherever it is when parsing.

Bad bytes from a peer raise L{WireError}, which names the structure, the
field and the offset.
"""

import struct
from collections import namedtuple


class WireError(ValueError):
    """
    Bytes that do not parse as the structure they should be.
    """

    def __init__(self, what, offset, reason):
        ValueError.__init__(self, "%s at offset %d: %s" % (what, offset, reason))
        self.what = what
        self.offset = offset
        self.reason = reason


class _Context:
    """
    Parsing state shared by the fields of one structure: the whole body (so
    pointers can be followed), the values read so far, and a name for errors.
    """

    def __init__(self, data, base, what):
        self.data = data
        self.base = base
        self.what = what
        self.values = {}


class Scalar:
    """
    A fixed-size integer.
    """

    def __init__(self, name, fmt):
        self.name = name
        self.struct = struct.Struct("<" + fmt)
        self.size = self.struct.size

    def write(self, value, w):
        try:
            w.buf += self.struct.pack(value)
        except struct.error as e:
            raise ValueError("%s value %r: %s" % (self.name, value, e))

    def parse(self, ctx, offset):
        end = offset + self.size
        if end > len(ctx.data):
            raise WireError(ctx.what, offset, "truncated %s" % (self.name,))
        return self.struct.unpack_from(ctx.data, offset)[0], end


U8 = Scalar("u8", "B")
U16 = Scalar("u16", "H")
U32 = Scalar("u32", "I")
U64 = Scalar("u64", "Q")
I8 = Scalar("i8", "b")
I16 = Scalar("i16", "h")
I32 = Scalar("i32", "i")
I64 = Scalar("i64", "q")


class FixedBytes:
    """
    A fixed number of raw bytes; a shorter value is zero-padded.
    """

    def __init__(self, size):
        self.size = size

    def write(self, value, w):
        if len(value) > self.size:
            raise ValueError("%d bytes do not fit in %d" % (len(value), self.size))
        w.buf += bytes(value).ljust(self.size, b"\0")

    def parse(self, ctx, offset):
        end = offset + self.size
        if end > len(ctx.data):
            raise WireError(ctx.what, offset, "truncated %d-byte field" % self.size)
        return bytes(ctx.data[offset:end]), end


class Bytes:
    """
    Raw bytes whose length is an earlier integer field (C{size}).  When
    packing, the size field is filled from the value if it was not given.
    """

    def __init__(self, size):
        self.sizeField = size
        self.size = None

    def write(self, value, w):
        w.buf += value

    def parse(self, ctx, offset):
        n = ctx.values[self.sizeField]
        end = offset + n
        if end > len(ctx.data):
            raise WireError(ctx.what, offset,
                            "%s says %d bytes, only %d left"
                            % (self.sizeField, n, len(ctx.data) - offset))
        return bytes(ctx.data[offset:end]), end

    def autofill(self, value):
        return len(value)


class Rest:
    """
    Every remaining byte of the message.
    """

    size = None

    def write(self, value, w):
        w.buf += value

    def parse(self, ctx, offset):
        return bytes(ctx.data[offset:]), len(ctx.data)


class Array:
    """
    C{count} elements of one type.  C{count} names an earlier integer field,
    filled from the value's length when packing if not given.
    """

    def __init__(self, element, count):
        self.element = element
        self.sizeField = count
        self.size = None

    def write(self, value, w):
        for v in value:
            self.element.write(v, w)

    def parse(self, ctx, offset):
        n = ctx.values[self.sizeField]
        if self.element.size is not None:
            needed = offset + n * self.element.size
            if needed > len(ctx.data):
                raise WireError(ctx.what, offset,
                                "%s says %d elements, the message is too short"
                                % (self.sizeField, n))
        items = []
        for _ in range(n):
            item, offset = self.element.parse(ctx, offset)
            items.append(item)
        return items, offset

    def autofill(self, value):
        return len(value)


class Ptr:
    """
    A u32 offset, from the start of the body, of data of another type; 0 is
    NULL (L{None}) unless C{nonnull}.  The data is appended after the fixed
    part when packing.
    """

    size = 4

    def __init__(self, target, nonnull=False):
        self.target = target
        self.nonnull = nonnull
        self.sizeField = getattr(target, "sizeField", None)

    def write(self, value, w):
        if value is None:
            if self.nonnull:
                raise ValueError("a non-null pointer needs a value")
            w.buf += b"\0\0\0\0"
            return
        target = _Writer()
        self.target.write(value, target)
        w.pointers.append((len(w.buf), target.finish()))
        w.buf += b"\0\0\0\0"

    def parse(self, ctx, offset):
        where, end = U32.parse(ctx, offset)
        if where == 0:
            if self.nonnull:
                raise WireError(ctx.what, offset, "NULL pointer where one is required")
            return None, end
        if where < ctx.base or where > len(ctx.data):
            raise WireError(ctx.what, offset, "pointer %d is outside the message" % where)
        value, _ = self.target.parse(ctx, where)
        return value, end

    def autofill(self, value):
        return self.target.autofill(value)


class _Writer:
    """
    Packing state: the fixed part written so far, and the pointers whose
    data goes after it.
    """

    def __init__(self):
        self.buf = bytearray()
        self.pointers = []

    def finish(self):
        """
        Append the pointed-at data after the fixed part, in pointer order,
        and patch each pointer with its offset.
        """
        for position, data in self.pointers:
            struct.pack_into("<I", self.buf, position, len(self.buf))
            self.buf += data
        self.pointers = []
        return self.buf


class Struct:
    """
    A packed structure of named fields.  Parsing gives a namedtuple; packing
    takes keyword arguments (or a namedtuple / mapping when nested).
    """

    def __init__(self, name, *fields):
        self.name = name
        self.fields = fields
        self.record = namedtuple(name, [f[0] for f in fields])
        self.autofilled = {}
        for fieldName, kind in fields:
            sizeField = getattr(kind, "sizeField", None)
            if sizeField is not None:
                self.autofilled[sizeField] = (fieldName, kind)
        sizes = [kind.size for _, kind in fields]
        self.size = None if None in sizes else sum(sizes)

    def compiled(self):
        """
        A L{struct.Struct} for a structure made only of integers, for hot
        paths (the data headers) that unpack without building records.
        """
        formats = []
        for name, kind in self.fields:
            if not isinstance(kind, Scalar):
                raise TypeError("%s.%s is not an integer field" % (self.name, name))
            formats.append(kind.struct.format[1:])
        return struct.Struct("<" + "".join(formats))

    def _complete(self, values):
        """
        Fill in size and count fields from the values they describe.
        """
        for sizeName, (fieldName, kind) in self.autofilled.items():
            if values.get(sizeName) is None and fieldName in values:
                fieldValue = values[fieldName]
                values[sizeName] = (0 if fieldValue is None
                                    else kind.autofill(fieldValue))
        return values

    def write(self, value, w):
        """
        Write as a nested field; C{value} is a record or a mapping.
        """
        if isinstance(value, tuple) and hasattr(value, "_asdict"):
            values = value._asdict()
        else:
            values = dict(value)
        self._write(self._complete(values), w)

    def _write(self, values, w):
        for fieldName, kind in self.fields:
            try:
                value = values[fieldName]
            except KeyError:
                raise TypeError("%s needs a value for %r" % (self.name, fieldName))
            kind.write(value, w)

    def pack(self, **values):
        """
        Pack a top-level structure from keyword arguments.
        """
        unknown = set(values) - set(self.record._fields)
        if unknown:
            raise TypeError("%s has no field %s" % (self.name, ", ".join(sorted(unknown))))
        w = _Writer()
        self._write(self._complete(values), w)
        return bytes(w.finish())

    def parse(self, ctx, offset):
        sub = _Context(ctx.data, ctx.base, ctx.what + "." + self.name)
        items = []
        for fieldName, kind in self.fields:
            value, offset = kind.parse(sub, offset)
            sub.values[fieldName] = value
            items.append(value)
        return self.record(*items), offset

    def unpack(self, data, exact=True):
        """
        Parse C{data} as this structure.  With C{exact}, trailing bytes are an
        error unless the structure ends with a variable part.
        """
        ctx = _Context(memoryview(data).tobytes() if not isinstance(data, bytes) else data,
                       0, self.name)
        record, end = self.parse(ctx, 0)
        if exact and end < len(data) and not self._followsPointers():
            raise WireError(self.name, end, "%d unexpected trailing bytes" % (len(data) - end))
        return record

    def _followsPointers(self):
        return any(isinstance(kind, Ptr)
                   or (isinstance(kind, Struct) and kind._followsPointers())
                   for _, kind in self.fields)


class Message(Struct):
    """
    A message body: a structure with a message type number.
    """

    def __init__(self, name, number, *fields):
        Struct.__init__(self, name, *fields)
        self.number = number

    def __repr__(self):
        return "<Message %s (%d)>" % (self.name, self.number)


class MessageTable:
    """
    The messages one side of a channel may send, by name and by number.
    """

    def __init__(self, *messages, base=None):
        self.byName = dict(base.byName) if base else {}
        self.byNumber = dict(base.byNumber) if base else {}
        for m in messages:
            if m.number in self.byNumber:
                raise ValueError("message number %d declared twice" % m.number)
            self.byName[m.name] = m
            self.byNumber[m.number] = m

    def extend(self, *messages):
        return MessageTable(*messages, base=self)

    def __getitem__(self, name):
        return self.byName[name]

    def __iter__(self):
        return iter(self.byNumber.values())
