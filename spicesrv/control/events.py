"""
The shapes of the data QEMU's QMP reports about SPICE clients, for the
monitor's replies (C{query-spice}) and the server's events
(C{SPICE_CONNECTED}, C{SPICE_INITIALIZED}, C{SPICE_DISCONNECTED}): plain
dictionaries built from a link's L{spicesrv.link.LinkInfo}, so the server
and the monitor agree on them and neither the link nor the server knows
QMP's field names; and L{EventObservers}, the one list of observers the
server, the migrator and the monitor's backend each tell their events to.
"""

from twisted.logger import Logger

from spicesrv.address import address_parts


def basicInfo(address=None, peer=""):
    """
    QEMU's C{SpiceBasicInfo} (host, port as a string, family) of an
    C{IAddress}, or else of a C{"host:port"} string, for QMP replies and
    events.
    """
    parts = address_parts(address) if address is not None else None
    if parts is not None:
        host, port, family = parts
        return {"host": host, "port": "" if port is None else str(port), "family": family}
    host, sep, port = (peer or "").rpartition(":")
    if not sep or not port.isdigit():
        return {"host": peer or "", "port": "", "family": "unix"}
    host = host.strip("[]")
    return {"host": host, "port": port, "family": "ipv6" if ":" in host else "ipv4"}


def channelEventData(info, auth=None, session_id=None):
    """
    The data of a SPICE_CONNECTED or SPICE_DISCONNECTED event (C{auth} and
    C{session_id} L{None}), or of a SPICE_INITIALIZED event (C{auth}
    C{"none"} or C{"spice"}, and the session's id), for the channel link
    C{info}.
    """
    server = basicInfo(info.host_address)
    client = basicInfo(info.peer_address)
    if auth is not None:
        server["auth"] = auth
        client.update({"connection-id": session_id,
                       "channel-type": info.channel_type,
                       "channel-id": info.channel_id, "tls": info.secure})
    return {"server": server, "client": client}


class EventObservers:
    """
    The observers of one source of QMP-style events, each called as
    C{observer(name, data)}.  An observer that raises is logged, and the
    others still hear the event.
    """

    log = Logger()

    def __init__(self):
        self._observers = []

    def add(self, observer):
        self._observers.append(observer)

    def remove(self, observer):
        self._observers.remove(observer)

    def emit(self, name, data=None):
        """
        Tell every observer (as they are now) about the event C{name}.
        """
        for observer in list(self._observers):
            try:
                observer(name, data)
            except Exception:
                self.log.failure("event observer failed on {name}", name=name)
