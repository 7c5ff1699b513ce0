"""
The worked examples of spicesrv's plugin author guide: a small channel of
its own and a display source, in one plugin module.

This file lives in C{docs/examples/plugin-root/spicesrv/plugins/}, a tree
with no C{__init__.py} in C{spicesrv/} or C{spicesrv/plugins/}: put
C{plugin-root} on C{sys.path} (or install a distribution that ships
C{spicesrv/plugins/example_echo.py} the same way) and C{twistd spice} finds
both plugins:

    PYTHONPATH=docs/examples/plugin-root twistd -n spice \\
        --source gradient:8 --echo 0 --echo-greeting "hello"

The echo channel: a client links channel type L{ECHO_CHANNEL_TYPE}, gets a
GREETING with the text of C{--echo-greeting}, and every ECHO it sends comes
back unchanged.  The gradient source: a colour gradient that moves
C{SPEED} pixels ten times a second.
"""

import numpy
from twisted.internet.task import LoopingCall
from twisted.plugin import IPlugin
from zope.interface import implementer

from spicesrv.channel import ChannelProtocol
from spicesrv.interfaces import IChannelPlugin, ISourcePlugin
from spicesrv.plugin import Option
from spicesrv.sources.base import FramebufferSource
from spicesrv.wire.messages import COMMON_CLIENT, COMMON_SERVER
from spicesrv.wire.schema import U32, Bytes, Message, Rest


# -- the echo channel ----------------------------------------------------------

#: The SPICE channel type of the echo channel.  spice-protocol numbers its
#: channels from 1 (main) to 11 (webdav) and may add more after them; real
#: clients skip types they do not know when the server lists its channels.
ECHO_CHANNEL_TYPE = 100

#: What the server sends: the messages every channel has, plus ours.
#: Channel-specific message numbers start at 101 in SPICE.
ECHO_SERVER = COMMON_SERVER.extend(
    Message("ECHO", 101, ("data", Rest())),
    Message("GREETING", 102, ("text_size", U32), ("text", Bytes(size="text_size"))),
)

#: What the client sends.
ECHO_CLIENT = COMMON_CLIENT.extend(
    Message("ECHO", 101, ("data", Rest())),
)

DEFAULT_GREETING = "Hello from the echo channel."


class EchoChannel(ChannelProtocol):
    """
    Greets the client once linked and sends back every ECHO unchanged.  The
    registry calls it as C{EchoChannel(session, info, greeting=...)}.
    """

    channelType = ECHO_CHANNEL_TYPE
    serverMessages = ECHO_SERVER
    clientMessages = ECHO_CLIENT

    def __init__(self, session, info, greeting=DEFAULT_GREETING):
        ChannelProtocol.__init__(self, session, info)
        self.greeting = greeting

    def channelUp(self):
        self.sendMessage("GREETING", text=self.greeting.encode("utf-8"))

    def msg_ECHO(self, msg):
        self.sendMessage("ECHO", data=msg.data)


@implementer(IPlugin, IChannelPlugin)
class EchoPlugin:
    name = "echo"
    description = "an example channel that greets the client and echoes what it sends"
    channel_type = ECHO_CHANNEL_TYPE
    options = (
        Option("echo", "Serve the example echo channel with this channel id, e.g. 0."),
        Option("echo-greeting", "The text the echo channel greets clients with.",
               default=DEFAULT_GREETING),
    )

    def install(self, server, values, reactor):
        value = values.get("echo")
        if value is None:
            return []
        try:
            channel_id = int(value)
        except ValueError:
            channel_id = -1
        if not 0 <= channel_id <= 255:
            raise ValueError("--echo %s: give a channel id from 0 to 255, e.g. --echo 0"
                             % (value,))
        greeting = values.get("echo-greeting") or DEFAULT_GREETING
        server.registry.register(ECHO_CHANNEL_TYPE, channel_id, EchoChannel,
                                 greeting=greeting)
        return []


# -- the gradient display source -----------------------------------------------

WIDTH, HEIGHT = 320, 240
#: Seconds between frames.
FRAME_INTERVAL = 0.1


class GradientSource(FramebufferSource):
    """
    A colour gradient that moves C{speed} pixels to the left every
    L{FRAME_INTERVAL} seconds while started.  L{FramebufferSource} keeps the
    observers and the cursor; this class only draws.

    @param clock: the C{IReactorTime} whose timers move the gradient.
    """

    description = "moving gradient"

    def __init__(self, clock, speed=4, width=WIDTH, height=HEIGHT):
        FramebufferSource.__init__(self, width, height)
        self.speed = speed
        self.offset = 0
        self._ticker = LoopingCall(self.tick)
        self._ticker.clock = clock
        self.frame = self._draw()

    def start(self):
        if not self._ticker.running:
            self._ticker.start(FRAME_INTERVAL, now=False)

    def stop(self):
        if self._ticker.running:
            self._ticker.stop()

    def tick(self):
        """
        Move the gradient and tell the observers the whole frame changed.
        """
        self.offset = (self.offset + self.speed) % self.width
        self.frame = self._draw()
        self.damage([(0, 0, self.width, self.height)])

    def _draw(self):
        x = (numpy.arange(self.width) + self.offset) % self.width
        y = numpy.arange(self.height)
        frame = numpy.empty((self.height, self.width, 4), numpy.uint8)
        frame[..., 2] = (x * 255 // max(self.width - 1, 1))[numpy.newaxis, :]   # red
        frame[..., 1] = (y * 255 // max(self.height - 1, 1))[:, numpy.newaxis]  # green
        frame[..., 0] = 255 - frame[..., 2]                                     # blue
        frame[..., 3] = 255
        return frame


@implementer(IPlugin, ISourcePlugin)
class GradientPlugin:
    name = "gradient"
    description = "gradient[:SPEED] a moving colour gradient (SPEED pixels a frame, default 4)"
    options = ()

    def makeSource(self, args, values, reactor):
        try:
            speed = int(args) if args else 4
        except ValueError:
            speed = -1
        if not 0 <= speed <= WIDTH:
            raise ValueError("SPEED must be a whole number of pixels from 0 to %d, e.g. "
                             "--source gradient:8" % (WIDTH,))
        return GradientSource(reactor, speed=speed)


# Twisted's plugin discovery picks up module-level objects that provide
# IPlugin.
echo = EchoPlugin()
gradient = GradientPlugin()
