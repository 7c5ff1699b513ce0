"""
The channel registry: which (channel type, channel id) pairs a server
offers, and what serves each.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ChannelEntry:
    """
    One channel the server offers.

    @ivar factory: the L{spicesrv.channel.ChannelProtocol} subclass.
    @ivar kwargs: extra keyword arguments for the factory (the device the
        channel serves, for example).
    """

    channel_type: int
    channel_id: int
    factory: type
    kwargs: dict = field(default_factory=dict, compare=False, hash=False)


class ChannelRegistry:
    """
    (channel_type, channel_id) -> L{ChannelEntry}, with observers told when
    channels appear so connected clients can be offered them.
    """

    def __init__(self):
        self._entries = {}
        self._observers = []

    def register(self, channel_type, channel_id, factory, **kwargs):
        """
        Offer channel C{(channel_type, channel_id)}, served by
        C{factory(session, info, **kwargs)}; connected clients are
        told about it.

        @raise ValueError: the channel is already registered.
        """
        key = (int(channel_type), channel_id)
        if key in self._entries:
            raise ValueError("channel %d:%d is already registered" % key)
        entry = ChannelEntry(int(channel_type), channel_id, factory, kwargs)
        self._entries[key] = entry
        for observer in list(self._observers):
            observer(entry)
        return entry

    def unregister(self, channel_type, channel_id):
        """
        Stop offering a channel; links already made are not affected.
        """
        del self._entries[(int(channel_type), channel_id)]

    def lookup(self, channel_type, channel_id):
        """
        The L{ChannelEntry} of a channel, or L{None}.
        """
        return self._entries.get((channel_type, channel_id))

    def nextId(self, channel_type):
        """
        The lowest unused id above every registered one of C{channel_type}.
        """
        ids = [cid for (ctype, cid) in self._entries if ctype == channel_type]
        return max(ids) + 1 if ids else 0

    def entries(self):
        """
        Every registered channel, by type and id.
        """
        return sorted(self._entries.values(), key=lambda e: (e.channel_type, e.channel_id))

    def observe(self, callback):
        """
        Call C{callback(entry)} for each channel registered from now on.
        """
        self._observers.append(callback)
