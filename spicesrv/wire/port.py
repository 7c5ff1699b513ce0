"""
The spicevmc message set (USBREDIR 9, PORT 10, WEBDAV 11) and the PORT
extras, declared once (spice-common ``spice.proto``: ``SpicevmcChannel``,
``PortChannel``; numbers from spice-protocol ``enums.h``).

    PORT_SERVER["PORT_INIT"].pack(name=b"org.qemu.console.serial.0\\0", opened=0)

COMPRESSED_DATA carries a switch: C{type} u8, then C{uncompressed_size} u32
only when the type is not NONE, then the (compressed) bytes to the end of
the message.  L{OnlyIf} declares the conditional field.
"""

from enum import IntEnum

from spicesrv.wire.messages import COMMON_CLIENT, COMMON_SERVER
from spicesrv.wire.schema import U8, U32, Bytes, Message, Ptr, Rest


class SpicevmcCap(IntEnum):
    """
    Channel capabilities of the spicevmc channels.
    """

    DATA_COMPRESS_LZ4 = 0


class DataCompression(IntEnum):
    """
    C{data_compression_type} of COMPRESSED_DATA.
    """

    NONE = 0
    LZ4 = 1


class PortEvent(IntEnum):
    """
    C{SPICE_PORT_EVENT_*}: the PORT_EVENT values in both directions.
    """

    OPENED = 0
    CLOSED = 1
    BREAK = 2


class OnlyIf:
    """
    A field present on the wire only when C{test(value of an earlier
    field)} is true; absent, it reads as (and packs from) L{None}.
    """

    size = None

    def __init__(self, field, test, kind):
        self.field = field
        self.test = test
        self.kind = kind

    def write(self, value, w):
        # Packing sees the record's other values only through the caller, so
        # presence follows the value: None means absent.
        if value is not None:
            self.kind.write(value, w)

    def parse(self, ctx, offset):
        if not self.test(ctx.values[self.field]):
            return None, offset
        return self.kind.parse(ctx, offset)


def _compressed(type_):
    return type_ != DataCompression.NONE


CompressedData = (("type", U8),
                  ("uncompressed_size", OnlyIf("type", _compressed, U32)),
                  ("compressed_data", Rest()))


# -- spicevmc (9, 10, 11) ----------------------------------------------------

SPICEVMC_SERVER = COMMON_SERVER.extend(
    Message("DATA", 101, ("data", Rest())),
    Message("COMPRESSED_DATA", 102, *CompressedData),
)

SPICEVMC_CLIENT = COMMON_CLIENT.extend(
    Message("DATA", 101, ("data", Rest())),
    Message("COMPRESSED_DATA", 102, *CompressedData),
)


# -- port (10) ---------------------------------------------------------------

PORT_SERVER = SPICEVMC_SERVER.extend(
    # name_size counts the terminating NUL, which the sender includes.
    Message("PORT_INIT", 201, ("name_size", U32),
            ("name", Ptr(Bytes(size="name_size"), nonnull=True)), ("opened", U8)),
    Message("PORT_EVENT", 202, ("event", U8)),
)

PORT_CLIENT = SPICEVMC_CLIENT.extend(
    Message("PORT_EVENT", 201, ("event", U8)),
)
