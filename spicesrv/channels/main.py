"""
The main channel (type 1): session setup, the channel list, mouse modes,
name and UUID, multimedia time and agent token bookkeeping.
"""

from spicesrv.channel import ChannelProtocol
from spicesrv.wire.constants import AGENT_TOKENS, ChannelType, MainCap
from spicesrv.wire.messages import MAIN_CLIENT, MAIN_SERVER

# spice-gtk sizes its GLZ dictionary from this; libspice reports the QXL RAM.
RAM_HINT = 64 * 1024 * 1024


class MainChannel(ChannelProtocol):
    channelType = ChannelType.MAIN
    serverMessages = MAIN_SERVER
    clientMessages = MAIN_CLIENT

    def __init__(self, server, session, info):
        ChannelProtocol.__init__(self, server, session, info)
        self.channelsListSent = False
        self.agentTokens = 0

    @classmethod
    def capabilities(cls, server):
        return set()

    def channelUp(self):
        self.sendInit()
        if MainCap.NAME_AND_UUID in self.info.channel_caps:
            if self.server.name is not None:
                self.sendMessage("NAME", name=self.server.name.encode("utf-8") + b"\0")
            if self.server.uuid is not None:
                self.sendMessage("UUID", uuid=self.server.uuid.bytes)

    def sendInit(self):
        self.sendMessage(
            "INIT", session_id=self.session.id,
            display_channels_hint=max(1, len(self.server.displays)),
            supported_mouse_modes=self.server.supportedMouseModes,
            current_mouse_mode=self.server.mouseMode,
            agent_connected=0, agent_tokens=AGENT_TOKENS,
            multi_media_time=self.server.mmTime(), ram_hint=RAM_HINT)

    # -- client messages -----------------------------------------------------

    def msg_ATTACH_CHANNELS(self, msg):
        entries = [e for e in self.server.registry.entries()
                   if e.channel_type != ChannelType.MAIN]
        self.sendMessage("CHANNELS_LIST", channels=[
            dict(type=e.channel_type, id=e.channel_id) for e in entries])
        self.channelsListSent = True

    def channelAdded(self, entry):
        """
        A channel appeared after the client attached: offer it.
        """
        if self.channelsListSent and entry.channel_type != ChannelType.MAIN:
            self.sendMessage("CHANNELS_LIST", channels=[
                dict(type=entry.channel_type, id=entry.channel_id)])

    def msg_MOUSE_MODE_REQUEST(self, msg):
        self.server.requestMouseMode(msg.mode)

    def mouseModeChanged(self, supported, current):
        self.sendMessage("MOUSE_MODE", supported_modes=supported, current_mode=current)

    def msg_AGENT_START(self, msg):
        self.agentTokens = msg.num_tokens

    def msg_AGENT_TOKEN(self, msg):
        self.agentTokens = min(0xFFFFFFFF, self.agentTokens + msg.num_tokens)

    def msg_AGENT_DATA(self, msg):
        self.log.info("{session} main: no guest agent; dropping {size} bytes of agent data",
                      session=self.session.id, size=len(msg.data))

    def sendMultiMediaTime(self):
        self.sendMessage("MULTI_MEDIA_TIME", time=self.server.mmTime())

