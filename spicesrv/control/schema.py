"""
QMP errors and argument checking, as QEMU's QAPI does it
(C{qapi/qobject-input-visitor.c}, C{qapi/qmp-dispatch.c}): a missing,
mistyped or unknown argument is reported, with QEMU's words, before the
command runs.
"""

__all__ = ["QMPError", "Arg", "checkArguments", "GENERIC_ERROR", "COMMAND_NOT_FOUND"]

#: QAPI's error classes: most errors, and an unknown (or not yet allowed)
#: command.
GENERIC_ERROR = "GenericError"
COMMAND_NOT_FOUND = "CommandNotFound"

_INT64 = (-(1 << 63), (1 << 63) - 1)


class QMPError(Exception):
    """
    A command's error answer: C{errorClass} (QAPI's C{GenericError} or
    C{CommandNotFound}) and C{desc}.
    """

    def __init__(self, desc, errorClass=GENERIC_ERROR):
        Exception.__init__(self, desc)
        self.desc = desc
        self.errorClass = errorClass


class Arg:
    """
    One member of a command's arguments.

    @param name: the member name, as on the wire (C{"tls-port"}).
    @param kind: its QAPI type: C{"str"}, C{"int"} (64-bit signed),
        C{"bool"}, C{"enum"} (a string among C{values}), C{"list"} (any
        array) or C{"enum-list"} (an array of strings among C{values}).
    @param optional: whether the member may be left out.
    @param values: the accepted strings of an enum or enum-list.
    @raise ValueError: an unknown C{kind}.
    """

    KINDS = ("str", "int", "bool", "enum", "list", "enum-list")

    def __init__(self, name, kind, optional=False, values=()):
        if kind not in self.KINDS:
            raise ValueError("argument %r: unknown kind %r" % (name, kind))
        self.name = name
        self.kind = kind
        self.optional = optional
        self.values = values

    def __repr__(self):
        return "Arg(%r, %r%s)" % (self.name, self.kind, ", optional=True" if self.optional else "")


def _checkValue(arg, value, name):
    if arg.kind in ("str", "enum"):
        if not isinstance(value, str):
            raise QMPError("Invalid parameter type for '%s', expected: string" % (name,))
        if arg.kind == "enum" and value not in arg.values:
            raise QMPError("Parameter '%s' does not accept value '%s'" % (name, value))
    elif arg.kind == "int":
        if (isinstance(value, bool) or not isinstance(value, int)
                or not _INT64[0] <= value <= _INT64[1]):
            raise QMPError("Invalid parameter type for '%s', expected: integer" % (name,))
    elif arg.kind == "bool":
        if not isinstance(value, bool):
            raise QMPError("Invalid parameter type for '%s', expected: boolean" % (name,))
    elif arg.kind in ("list", "enum-list"):
        if not isinstance(value, list):
            raise QMPError("Invalid parameter type for '%s', expected: array" % (name,))
        if arg.kind == "enum-list":
            element = Arg(name, "enum", values=arg.values)
            for index, item in enumerate(value):
                _checkValue(element, item, "%s[%d]" % (name, index))


def checkArguments(schema, arguments, branches=None):
    """
    Check C{arguments} against C{schema} (a list of L{Arg}) in QEMU's
    order: each member in schema order (missing, then type), then a flat
    union's branch members (C{branches}: discriminator name and a dict
    value -> members), then the first unexpected member.

    @raise QMPError: naming the parameter.
    """
    members = list(schema)
    checked = []
    while members:
        arg = members.pop(0)
        checked.append(arg.name)
        if arg.name not in arguments:
            if not arg.optional:
                raise QMPError("Parameter '%s' is missing" % (arg.name,))
            continue
        _checkValue(arg, arguments[arg.name], arg.name)
        if branches is not None and arg.name == branches[0]:
            members.extend(branches[1].get(arguments[arg.name], ()))
    for name in arguments:
        if name not in checked:
            raise QMPError("Parameter '%s' is unexpected" % (name,))

