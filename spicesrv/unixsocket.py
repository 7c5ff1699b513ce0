"""
The UNIX sockets a server listens on, made one way for every listener
(C{--listen unix:}, the QMP monitor, C{--incoming unix:}): private to the
server's user (mode 0600) unless told otherwise, and optionally given to a
group whose members may then connect (as libvirt's C{unix_sock_group} and
C{unix_sock_rw_perms}).  Twisted's own default is 0666: anyone on the
machine could connect.
"""

import os
import re

from twisted.internet import endpoints
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer

__all__ = ["DEFAULT_MODE", "DEFAULT_GROUP_MODE", "has_parameter", "unix_server_endpoint"]

#: The mode of a UNIX socket: only the server's user may connect.
DEFAULT_MODE = 0o600
#: The mode of a UNIX socket given to a group: its members may connect too.
DEFAULT_GROUP_MODE = 0o660


def has_parameter(description, name):
    """
    Whether the Twisted endpoint string C{description} gives the parameter
    C{name} (C{NAME=...}, not escaped).

    @rtype: L{bool}
    """
    return re.search(r"(?:^|[^\\]):%s=" % (re.escape(name),), description) is not None


def unix_server_endpoint(reactor, description, mode=None, gid=None):
    """
    The server endpoint of a C{unix:PATH[:...]} endpoint string, whose
    socket gets C{mode} (a C{mode=} in the description wins) and, when
    C{gid} is given, that group.

    @param mode: the socket's permissions; L{DEFAULT_MODE}, or
        L{DEFAULT_GROUP_MODE} with a group, when L{None}.
    @param gid: a group id to give the socket to once it listens, or
        L{None}.
    @return: an L{IStreamServerEndpoint} (a
        L{twisted.internet.endpoints.UNIXServerEndpoint} without a group).
    @raise ValueError: if C{description} is not a UNIX endpoint.
    """
    if description.split(":", 1)[0].strip().lower() != "unix":
        raise ValueError("%r is not a UNIX socket endpoint (unix:PATH)" % (description,))
    if mode is None:
        mode = DEFAULT_MODE if gid is None else DEFAULT_GROUP_MODE
    if has_parameter(description, "mode"):
        # The description's own mode= wins.
        endpoint = endpoints.serverFromString(reactor, description)
        mode = endpoint._mode
    else:
        # With a group, the socket is the owner's alone until it has been
        # given to the group; then it gets its mode.
        first = mode if gid is None else mode & 0o700
        endpoint = endpoints.serverFromString(reactor, "%s:mode=%o" % (description, first))
    if gid is None:
        return endpoint
    return _UnixSocketGroup(endpoint, gid, mode)


@implementer(IStreamServerEndpoint)
class _UnixSocketGroup:
    """
    A UNIX server endpoint whose socket is given to a group, with a mode,
    once it listens.
    """

    def __init__(self, endpoint, gid, mode):
        self.endpoint = endpoint
        self.gid = gid
        self.mode = mode

    def listen(self, factory):
        def chown(port):
            path = port.getHost().name
            try:
                os.chown(path, -1, self.gid)
                os.chmod(path, self.mode)
            except OSError as e:
                port.stopListening()
                raise ValueError("cannot give the socket to group %d (--unix-socket-group): "
                                 "%s" % (self.gid, e.strerror))
            return port
        return self.endpoint.listen(factory).addCallback(chown)
