"""
The seamless migration data of a channel (SPICE_MSG_MIGRATE_DATA): what a
source channel packs when the client moves it, and what the target's
channel of the same type unpacks to continue.

The client relays it without looking, so between two spicesrv servers the
format is spicesrv's own (protocol.md 5.8): a magic, a version, then JSON.
"""

import json
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
        fields = json.loads(data[MIGRATION_DATA_HEADER.size:].decode("utf-8"))
    except ValueError as e:
        raise MigrationDataError("unreadable migration data: %s" % (e,))
    if not isinstance(fields, dict):
        raise MigrationDataError("migration data is not an object")
    return fields
