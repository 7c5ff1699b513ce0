"""
Where migration state goes: QEMU-style migration URIs (C{tcp:HOST:PORT},
C{unix:PATH}, C{tls:HOST:PORT}) and the endpoints made from them, for the
source that connects (L{spicesrv.migration.outgoing}) and the target that
listens (L{spicesrv.migration.incoming}).
"""

import re

from twisted.internet import endpoints
from twisted.internet.abstract import isIPAddress, isIPv6Address

from spicesrv.address import is_tcp_port
from spicesrv.unixsocket import unix_server_endpoint

SUPPORTED_URIS = "tcp:HOST:PORT, unix:PATH or tls:HOST:PORT"

_HOST_PORT = re.compile(r"^(\[[^\]]*\]|[^:\[\]]*):([^:]*)$")
_QEMU_TCP = re.compile(r"^(\[[^\]]*\]|[^:\[\]]*):\d+$")


def parseMigrationURI(uri, incoming=False):
    """
    Parse a migration URI in QEMU's syntax.

    @param uri: C{tcp:HOST:PORT}, C{tcp:[IPV6]:PORT}, C{unix:PATH} or
        C{tls:HOST:PORT} (TLS over TCP, a spicesrv extension).
    @param incoming: whether this is the address a target listens on; then
        the host may be empty (all interfaces, as QEMU's C{tcp::4444}) and
        the port may be 0 (any free port).
    @return: C{(kind, host, port)} with C{kind} C{"tcp"} or C{"tls"}, or
        C{("unix", path, None)}.
    @raise ValueError: with a one-line message, for anything else.
    """
    if not isinstance(uri, str) or ":" not in uri:
        raise ValueError("%r is not a migration URI: expected %s" % (uri, SUPPORTED_URIS))
    kind, rest = uri.split(":", 1)
    if kind == "unix":
        if not rest:
            raise ValueError("%r names no socket: expected unix:PATH" % (uri,))
        return ("unix", rest, None)
    if kind not in ("tcp", "tls"):
        raise ValueError("unsupported migration URI scheme %r in %r: spicesrv supports %s"
                         % (kind + ":", uri, SUPPORTED_URIS))
    match = _HOST_PORT.match(rest)
    if match is None:
        raise ValueError("%r is not %s:HOST:PORT (write an IPv6 address in brackets, "
                         "as %s:[::1]:4444)" % (uri, kind, kind))
    host, port = match.groups()
    if host.startswith("["):
        host = host[1:-1]
        if not isIPv6Address(host):
            raise ValueError("%r: %r is not an IPv6 address" % (uri, host))
    if not host and not incoming:
        raise ValueError("%r names no host: expected %s:HOST:PORT" % (uri, kind))
    if not port.isdigit() or not is_tcp_port(int(port), zero=incoming):
        raise ValueError("%r: the port must be a number from %d to 65535, not %r"
                         % (uri, 0 if incoming else 1, port))
    return (kind, host, int(port))


def tcpClientEndpoint(reactor, host, port, timeout):
    if isIPAddress(host):
        return endpoints.TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    if isIPv6Address(host):
        return endpoints.TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return endpoints.HostnameEndpoint(reactor, host, port, timeout=timeout)


def incomingEndpoint(reactor, description, tlsOptions=None):
    """
    Return C{(endpoint, useTLS)} for the address a target listens on.

    @param description: a QEMU-style URI (C{tcp:HOST:PORT}, C{tcp::PORT}
        for every interface, C{tls:HOST:PORT}, C{unix:PATH}) or any Twisted
        server endpoint string (C{tcp:4444:interface=127.0.0.1}, C{ssl:...}).
        A UNIX socket is the server's user's alone (mode 0600) unless the
        description gives a C{mode=} (L{spicesrv.unixsocket}).
    @param tlsOptions: server TLS options (for instance a
        L{twisted.internet.ssl.CertificateOptions}); required by C{tls:}.
        With another description they wrap the connections in TLS too.
    @return: the endpoint, and whether the caller must wrap its factory in
        TLS with C{tlsOptions}.
    @raise ValueError: with a one-line message.
    """
    kind = description.split(":", 1)[0]
    if kind == "tls" or (kind == "tcp" and _QEMU_TCP.match(description[4:])):
        kind, host, port = parseMigrationURI(description, incoming=True)
        if kind == "tls" and tlsOptions is None:
            raise ValueError("%s needs TLS options (a certificate and key for the target)"
                             % (description,))
        if isIPv6Address(host):
            endpoint = endpoints.TCP6ServerEndpoint(reactor, port, interface=host)
        else:
            endpoint = endpoints.TCP4ServerEndpoint(reactor, port, interface=host)
        return endpoint, tlsOptions is not None
    try:
        if kind == "unix":
            endpoint = unix_server_endpoint(reactor, description)
        else:
            endpoint = endpoints.serverFromString(reactor, description)
    except (ValueError, TypeError, KeyError) as e:
        raise ValueError("cannot listen for incoming migrations on %r: %s (give %s, or a "
                         "Twisted endpoint such as tcp:4444:interface=127.0.0.1)"
                         % (description, e, SUPPORTED_URIS))
    return endpoint, tlsOptions is not None
