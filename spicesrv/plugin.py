"""
Finding and describing plugins: the helpers plugin modules use to declare
themselves, and the discovery ``twistd spice`` does.
"""

from dataclasses import dataclass

from twisted.plugin import getPlugins
from zope.interface import implementer

from spicesrv.interfaces import IChannelPlugin, IPluginOption, ISourcePlugin


@implementer(IPluginOption)
@dataclass(frozen=True)
class Option:
    """
    An option a plugin adds to ``twistd spice``.  A C{flag} takes no value:
    its value is C{True} when given, C{False} otherwise.
    """

    name: str
    help: str
    repeatable: bool = False
    default: object = None
    flag: bool = False


def channelPlugins():
    """
    Every L{IChannelPlugin}, sorted by name.
    """
    import spicesrv.plugins
    return sorted(getPlugins(IChannelPlugin, spicesrv.plugins), key=lambda p: p.name)


def sourcePlugins():
    """
    Every L{ISourcePlugin}, by name.
    """
    import spicesrv.plugins
    return {p.name: p for p in getPlugins(ISourcePlugin, spicesrv.plugins)}


def soundPlugins():
    """
    Every L{ISoundPlugin} (sources for C{--playback}, sinks for
    C{--record}), by name.
    """
    import spicesrv.plugins
    from spicesrv.interfaces import ISoundPlugin
    return {p.name: p for p in getPlugins(ISoundPlugin, spicesrv.plugins)}
