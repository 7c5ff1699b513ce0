"""
Network addresses, described and judged once for every module: whether a
host is this machine (L{is_loopback}), whether a number is a TCP port
(L{is_tcp_port}), an address's host, port and family (L{address_parts}),
and a peer address as a log line shows it (L{describe_peer}).
"""

import ipaddress

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

__all__ = ["is_loopback", "is_tcp_port", "address_parts", "describe_peer", "LOOPBACK_NAMES"]

#: Host names that mean this machine: RFC 6761's C{localhost} and the
#: loopback names Debian's and Red Hat's C{/etc/hosts} give.
LOOPBACK_NAMES = frozenset([
    "localhost", "localhost.localdomain", "localhost6", "localhost6.localdomain6",
    "ip6-localhost", "ip6-loopback"])


def is_loopback(host):
    """
    Whether C{host} only reaches this machine: one of L{LOOPBACK_NAMES}
    (in any case), or a loopback IPv4 or IPv6 address, also in brackets
    (C{[::1]}), with a zone (C{::1%lo}) or IPv4-mapped (C{::ffff:127.0.0.1}).

    @param host: a host name or address.
    @type host: L{str}
    @rtype: L{bool}
    """
    host = host.strip()
    if host.lower().rstrip(".") in LOOPBACK_NAMES:
        return True
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def is_tcp_port(value, zero=True):
    """
    Whether C{value} is a TCP port number: an L{int} from 1 to 65535, or 0
    when C{zero} is true (0 meaning "none" or "any", as the caller says).

    @rtype: L{bool}
    """
    return (isinstance(value, int) and not isinstance(value, bool)
            and (0 if zero else 1) <= value <= 65535)


def address_parts(address):
    """
    What an address is made of, decoded once for every way of showing it:
    C{(host, port, "ipv4")} or C{(host, port, "ipv6")} for a TCP address,
    C{(path, None, "unix")} for a UNIX socket (the path C{""} for an
    unnamed one), L{None} for anything else.

    @param address: an L{twisted.internet.interfaces.IAddress} provider.
    @rtype: L{tuple} or L{None}
    """
    if isinstance(address, IPv6Address):
        return address.host, address.port, "ipv6"
    if isinstance(address, IPv4Address):
        return address.host, address.port, "ipv4"
    if isinstance(address, UNIXAddress):
        name = address.name
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        return name or "", None, "unix"
    return None


def describe_peer(address):
    """
    A peer address as log lines show it: C{host:port} for IPv4,
    C{[host]:port} for IPv6, C{unix:PATH} (or C{unix} for an unnamed
    socket) for a UNIX socket, anything else as its C{str}.

    @param address: an L{twisted.internet.interfaces.IAddress} provider.
    @rtype: L{str}
    """
    parts = address_parts(address)
    if parts is None:
        return str(address)
    host, port, family = parts
    if family == "ipv6":
        return "[%s]:%s" % (host, port)
    if family == "ipv4":
        return "%s:%s" % (host, port)
    return "unix:%s" % (host,) if host else "unix"
