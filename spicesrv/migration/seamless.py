"""
The seamless migration data of a channel (SPICE_MSG_MIGRATE_DATA): what a
source channel packs when the client moves it, and what the target's
channel of the same type unpacks to continue.

The client relays it without looking, so between two spicesrv servers the
format is spicesrv's own (protocol.md 5.8): a magic, a version, then JSON.

On the target it is as untrusted as any other client message: any client
can send it on a C{--seamless-migration} server.  L{parseJSON} reads the
JSON with bounded depth and no non-finite numbers, and each channel declares
a L{Schema} of the fields it reads, whose L{Schema.check} turns them into
checked values or raises L{MigrationDataError}.
"""

import binascii
import json
import math
import struct

from spicesrv.wire.messages import COMMON_SERVER

MIGRATION_DATA_MAGIC = b"SPSV"
MIGRATION_DATA_VERSION = 1
MIGRATION_DATA_HEADER = struct.Struct("<4sI")
MSG_MIGRATE_DATA = COMMON_SERVER["MIGRATE_DATA"].number


class MigrationDataError(ValueError):
    """
    Seamless migration data this server cannot take.
    """


def packMigrationData(fields):
    return (MIGRATION_DATA_HEADER.pack(MIGRATION_DATA_MAGIC, MIGRATION_DATA_VERSION)
            + json.dumps(fields, sort_keys=True).encode("utf-8"))


def unpackMigrationData(data):
    if len(data) < MIGRATION_DATA_HEADER.size:
        raise MigrationDataError("%d bytes are too short for migration data" % len(data))
    magic, version = MIGRATION_DATA_HEADER.unpack_from(data)
    if magic != MIGRATION_DATA_MAGIC:
        raise MigrationDataError("migration data with magic %r, not spicesrv's %r (the "
                                 "source is not a spicesrv server)"
                                 % (magic, MIGRATION_DATA_MAGIC))
    if version > MIGRATION_DATA_VERSION:
        raise MigrationDataError("migration data version %d is newer than this server's %d"
                                 % (version, MIGRATION_DATA_VERSION))
    try:
        text = data[MIGRATION_DATA_HEADER.size:].decode("utf-8")
    except ValueError as e:
        raise MigrationDataError("unreadable migration data: %s" % (e,))
    fields = parseJSON(text)
    if not isinstance(fields, dict):
        raise MigrationDataError("migration data is not an object")
    return fields


#: The deepest nesting of arrays and objects accepted in migration data
#: (spicesrv's own is one flat object).
MAX_DEPTH = 8


def _finite(text):
    value = float(text)
    if not math.isfinite(value):
        raise MigrationDataError("the number %s is out of range" % (text[:40],))
    return value


def _constant(name):
    raise MigrationDataError("%s is not a number migration data may hold" % (name,))


def _depth(value, limit):
    """
    Raise L{MigrationDataError} if C{value} nests deeper than C{limit}.
    """
    stack = [(value, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            if depth > limit:
                raise MigrationDataError("migration data nests deeper than %d levels"
                                         % (limit,))
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict)
                                                   else value))


def parseJSON(text, maxDepth=MAX_DEPTH):
    """
    Parse C{text} (str) as JSON for migration data.

    @raise MigrationDataError: for unreadable JSON, C{NaN}, C{Infinity} or
        a number too large for a float, or nesting deeper than C{maxDepth}.
    """
    try:
        value = json.loads(text, parse_float=_finite, parse_constant=_constant)
    except MigrationDataError:
        raise
    except RecursionError:
        raise MigrationDataError("migration data nests too deeply")
    except ValueError as e:
        raise MigrationDataError("unreadable migration data: %s" % (e,))
    _depth(value, maxDepth)
    return value


class Field:
    """
    One field of migration data: its type, its range, and its default when
    it is missing (L{REQUIRED} if it must be there).
    """

    def __init__(self, default):
        self.default = default

    def check(self, name, value):
        raise NotImplementedError()


REQUIRED = object()


class Integer(Field):
    """
    An integer (not a boolean, not a float) from C{minimum} to C{maximum}.
    """

    def __init__(self, minimum, maximum, default=REQUIRED):
        Field.__init__(self, default)
        self.minimum = minimum
        self.maximum = maximum

    def check(self, name, value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise MigrationDataError("%s is %s, not an integer" % (name, type(value).__name__))
        if not self.minimum <= value <= self.maximum:
            raise MigrationDataError("%s is %d, not from %d to %d"
                                     % (name, value, self.minimum, self.maximum))
        return value


class Boolean(Field):

    def __init__(self, default=REQUIRED):
        Field.__init__(self, default)

    def check(self, name, value):
        if not isinstance(value, bool):
            raise MigrationDataError("%s is %s, not true or false"
                                     % (name, type(value).__name__))
        return value


class Choice(Field):
    """
    One of the strings in C{choices}.
    """

    def __init__(self, choices, default=REQUIRED):
        Field.__init__(self, default)
        self.choices = tuple(choices)

    def check(self, name, value):
        if not isinstance(value, str) or value not in self.choices:
            raise MigrationDataError("%s is %s, not one of %s"
                                     % (name, json.dumps(value)[:40] if isinstance(value, str)
                                        else type(value).__name__, ", ".join(self.choices)))
        return value


class Text(Field):
    """
    A string of at most C{maxLength} characters.
    """

    def __init__(self, maxLength, default=REQUIRED):
        Field.__init__(self, default)
        self.maxLength = maxLength

    def check(self, name, value):
        if not isinstance(value, str):
            raise MigrationDataError("%s is %s, not a string" % (name, type(value).__name__))
        if len(value) > self.maxLength:
            raise MigrationDataError("%s has %d characters, more than %d"
                                     % (name, len(value), self.maxLength))
        return value


class Base64(Field):
    """
    Bytes as base64 text, at most C{maxBytes} of them; checked as base64 and
    kept as the text.
    """

    def __init__(self, maxBytes, default=REQUIRED):
        Field.__init__(self, default)
        self.maxBytes = maxBytes

    def check(self, name, value):
        Text(4 * ((self.maxBytes + 2) // 3)).check(name, value)
        try:
            binascii.a2b_base64(value.encode("ascii"))
        except (ValueError, binascii.Error) as e:
            raise MigrationDataError("%s is not base64: %s" % (name, e))
        return value


class ListOf(Field):
    """
    A list of at most C{maxItems} values, each checked by C{item}.
    """

    def __init__(self, item, maxItems, default=REQUIRED):
        Field.__init__(self, default)
        self.item = item
        self.maxItems = maxItems

    def check(self, name, value):
        if not isinstance(value, list):
            raise MigrationDataError("%s is %s, not a list" % (name, type(value).__name__))
        if len(value) > self.maxItems:
            raise MigrationDataError("%s has %d items, more than %d"
                                     % (name, len(value), self.maxItems))
        return [self.item.check("%s[%d]" % (name, i), v) for i, v in enumerate(value)]


class MapOf(Field):
    """
    An object of at most C{maxItems} entries whose keys are the decimal
    integers C{key} accepts and whose values C{value} checks; it becomes a
    dict with integer keys.
    """

    def __init__(self, key, value, maxItems, default=REQUIRED):
        Field.__init__(self, default)
        self.key = key
        self.value = value
        self.maxItems = maxItems

    def check(self, name, value):
        if not isinstance(value, dict):
            raise MigrationDataError("%s is %s, not an object" % (name, type(value).__name__))
        if len(value) > self.maxItems:
            raise MigrationDataError("%s has %d entries, more than %d"
                                     % (name, len(value), self.maxItems))
        checked = {}
        for k, v in value.items():
            if not (k.isdigit() and k.isascii() and len(k) <= 10):
                raise MigrationDataError("%s has the key %s, not a number"
                                         % (name, json.dumps(k)[:40]))
            checked[self.key.check("%s key" % (name,), int(k))] = self.value.check(
                "%s[%s]" % (name, k), v)
        return checked


class Nested(Field):
    """
    An object checked by its own L{Schema}, or C{null} when C{nullable}.
    """

    def __init__(self, schema, nullable=False, default=REQUIRED):
        Field.__init__(self, default)
        self.schema = schema
        self.nullable = nullable

    def check(self, name, value):
        if value is None and self.nullable:
            return None
        if not isinstance(value, dict):
            raise MigrationDataError("%s is %s, not an object" % (name, type(value).__name__))
        try:
            return self.schema.check(value)
        except MigrationDataError as e:
            raise MigrationDataError("%s: %s" % (name, e))


class Schema:
    """
    The fields a channel reads from its migration data.  Fields the schema
    does not name are ignored (a later version may add some).
    """

    def __init__(self, **fields):
        self.fields = fields

    def extend(self, **fields):
        """
        A schema with these fields too (a subclass's).
        """
        return Schema(**dict(self.fields, **fields))

    def check(self, values):
        """
        Return C{{name: value}} for every declared field, defaults filled in.

        @raise MigrationDataError: naming the first field that is missing,
            of the wrong type or out of range.
        """
        if not isinstance(values, dict):
            raise MigrationDataError("migration data is not an object")
        checked = {}
        for name, field in self.fields.items():
            if name not in values:
                if field.default is REQUIRED:
                    raise MigrationDataError("%s is missing" % (name,))
                checked[name] = field.default
            else:
                checked[name] = field.check(name, values[name])
        return checked
