"""
The built-in channel plugins.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from spicesrv.interfaces import IChannelPlugin
from spicesrv.plugin import Option
from spicesrv.wire.constants import ChannelType


@implementer(IPlugin, IChannelPlugin)
class PortPlugin:
    name = "port"
    description = ("named ports (spiceport) bridged to TCP or UNIX endpoints, as QEMU's "
                   "-chardev spiceport")
    channel_type = ChannelType.PORT
    options = (Option("spiceport", "Expose a named port whose bytes go to a Twisted client "
                      "endpoint: NAME=ENDPOINT, e.g. org.qemu.console.serial.0="
                      "tcp:host=127.0.0.1:port=7000 or com.example.agent=unix:path=/run/a.sock",
                      repeatable=True, default=()),)

    def install(self, server, values, reactor):
        from spicesrv.channels.port import PortChannel, parseSpiceport
        seen = set()
        for value in values.get("spiceport") or ():
            try:
                name, endpoint = parseSpiceport(reactor, value)
            except ValueError as e:
                raise ValueError("--spiceport %s: %s" % (value, e))
            if name in seen:
                raise ValueError("--spiceport %s: the port name %s is given twice"
                                 % (value, name))
            seen.add(name)
            server.registry.register(ChannelType.PORT,
                                     server.registry.nextId(ChannelType.PORT),
                                     PortChannel, name=name, endpoint=endpoint)
        return []


port = PortPlugin()
