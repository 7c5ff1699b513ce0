"""
The main channel (type 1): session setup, the channel list, mouse modes,
name and UUID, multimedia time, the agent channel (spoken by
L{spicesrv.agent.AgentConnection} when the server has an
L{spicesrv.interfaces.IAgent} device), and the migration messages.

Migration code drives it with verbs (L{MainChannel.beginMigration},
L{MainChannel.endMigration}, L{MainChannel.cancelMigration},
L{MainChannel.switchHost} on the source; L{MainChannel.welcomeMigrated},
L{MainChannel.answerSeamless} on the target), never with message names.  A
client migrating in is followed by its session's
L{spicesrv.migration.arrival.Arrival}, to which this channel hands the
client's MIGRATE_END and DST_DO_SEAMLESS.
"""

from spicesrv.channel import (
    MIGRATE_NEED_DATA_TRANSFER, MIGRATE_NEED_FLUSH, ChannelProtocol)
from spicesrv.agent import AGENT_STATE
from spicesrv.migration.seamless import Integer
from spicesrv.migration.source import MIGRATION_PROTOCOL_VERSION
from spicesrv.wire.constants import AGENT_TOKENS, ChannelType, MainCap
from spicesrv.wire.messages import MAIN_CLIENT, MAIN_SERVER

# spice-gtk sizes its GLZ dictionary from this; libspice reports the QXL RAM.
RAM_HINT = 64 * 1024 * 1024

# Seconds between two mouse mode requests of one client that the server acts
# on; later ones wait, and only the latest of them counts.  A mode change is
# told to every client, so a client must not be able to make it a flood.
MOUSE_MODE_REQUEST_INTERVAL = 0.5


class MainChannel(ChannelProtocol):
    """
    A session's first channel, one per client: INIT, the channel list, mouse
    mode requests, agent token bookkeeping, and the client's side of a
    migration (MIGRATE_BEGIN on the source, MIGRATE_END on the target).
    """

    channelType = ChannelType.MAIN
    serverMessages = MAIN_SERVER
    clientMessages = MAIN_CLIENT

    def __init__(self, session, info):
        ChannelProtocol.__init__(self, session, info)
        self.channelsListSent = False
        self.agent = None
        self._modeRequested = None
        self._modeCall = None
        self._modeAnswered = None       # when the last request was acted on

    migrateFlags = MIGRATE_NEED_FLUSH | MIGRATE_NEED_DATA_TRANSFER
    migrationSchema = ChannelProtocol.migrationSchema.extend(
        agent=AGENT_STATE,
        mouse_mode=Integer(1, 2, default=1))

    @classmethod
    def capabilities(cls, context):
        caps = {MainCap.SEMI_SEAMLESS_MIGRATE}
        if context.seamless:
            caps.add(MainCap.SEAMLESS_MIGRATE)
        return caps

    @property
    def silent(self):
        """
        A client migrating in is not reading this socket yet: nothing may be
        sent before INIT (libspice-server drops such messages too).
        """
        return self.session.arriving

    def sendRaw(self, msgType, body, counted=True):
        if self.silent:
            return
        ChannelProtocol.sendRaw(self, msgType, body, counted)

    def channelUp(self):
        if self.context.agent is not None:
            self.agent = self.context.agent.connect(self)
        if self.silent:
            return
        self.sendInit()
        if MainCap.NAME_AND_UUID in self.info.channel_caps:
            if self.context.name is not None:
                self.sendMessage("NAME", name=self.context.name.encode("utf-8") + b"\0")
            if self.context.uuid is not None:
                self.sendMessage("UUID", uuid=self.context.uuid.bytes)

    def sendInit(self):
        self.sendMessage(
            "INIT", session_id=self.session.id,
            display_channels_hint=max(1, len(self.context.displays)),
            supported_mouse_modes=self.context.supportedMouseModes,
            current_mouse_mode=self.context.mouseMode,
            agent_connected=int(self.agent is not None), agent_tokens=AGENT_TOKENS,
            multi_media_time=self.context.mmTime(), ram_hint=RAM_HINT)

    # -- client messages -----------------------------------------------------

    def msg_ATTACH_CHANNELS(self, msg):
        if self.silent:
            self.peerLog.warn("ATTACH_CHANNELS while migrating in",
                              "{session} main: ATTACH_CHANNELS while migrating in; ignored",
                              session=self.session.id)
            return
        entries = [e for e in self.context.channelEntries()
                   if e.channel_type != ChannelType.MAIN]
        self.sendMessage("CHANNELS_LIST", channels=[
            dict(type=e.channel_type, id=e.channel_id) for e in entries])
        self._channelsListed()

    def _channelsListed(self):
        """
        The client knows the channels: the agent's messages, which waited
        so as not to come before the list, may go.
        """
        self.channelsListSent = True
        if self.agent is not None:
            self.agent.channelsListed()

    def channelAdded(self, entry):
        """
        A channel appeared after the client attached: offer it.
        """
        if self.channelsListSent and entry.channel_type != ChannelType.MAIN:
            self.sendMessage("CHANNELS_LIST", channels=[
                dict(type=entry.channel_type, id=entry.channel_id)])

    def msg_MOUSE_MODE_REQUEST(self, msg):
        self._modeRequested = msg.mode
        if self._modeCall is not None:
            return
        now = self.clock.seconds()
        wait = (0 if self._modeAnswered is None
                else self._modeAnswered + MOUSE_MODE_REQUEST_INTERVAL - now)
        if wait > 0:
            self._modeCall = self.clock.callLater(wait, self._actOnModeRequest)
        else:
            self._actOnModeRequest()

    def _actOnModeRequest(self):
        """
        Act on the latest mouse mode request: a supported change goes to
        every client; an unsupported mode is answered to this client only.
        """
        self._modeCall = None
        mode, self._modeRequested = self._modeRequested, None
        self._modeAnswered = self.clock.seconds()
        if not self.connected or mode is None:
            return
        if not self.context.requestMouseMode(mode):
            self.mouseModeChanged(self.context.supportedMouseModes, self.context.mouseMode)

    def mouseModeChanged(self, supported, current):
        self.sendMessage("MOUSE_MODE", supported_modes=supported, current_mode=current)

    def msg_AGENT_START(self, msg):
        if self.agent is not None:
            self.agent.start(msg.num_tokens)

    def msg_AGENT_TOKEN(self, msg):
        if self.agent is not None:
            self.agent.addTokens(msg.num_tokens)

    def msg_AGENT_DATA(self, msg):
        if self.agent is None:
            self.peerLog.info("AGENT_DATA", "{session} main: no agent; dropping {size} bytes "
                              "of agent data", session=self.session.id, size=len(msg.data))
            return
        self.agent.dataReceived(msg.data)

    def agentConnected(self):
        """
        An agent device was added after this client connected: tell it
        (AGENT_CONNECTED_TOKENS, or AGENT_CONNECTED for an old client).
        """
        if self.agent is not None or self.context.agent is None:
            return
        self.agent = self.context.agent.connect(self)
        if MainCap.AGENT_CONNECTED_TOKENS in self.info.channel_caps:
            self.sendMessage("AGENT_CONNECTED_TOKENS", num_tokens=AGENT_TOKENS)
        else:
            self.sendMessage("AGENT_CONNECTED")

    def channelDown(self):
        if self._modeCall is not None and self._modeCall.active():
            self._modeCall.cancel()
        self._modeCall = None
        if self.agent is not None:
            self.agent.close()

    def sendMultiMediaTime(self):
        self.sendMessage("MULTI_MEDIA_TIME", time=self.context.mmTime())

    # -- migration, the source's side -------------------------------------------

    def beginMigration(self, target, seamless=False):
        """
        Tell the client to pre-connect to C{target} (a
        L{spicesrv.migration.source.TargetInfo}): MIGRATE_BEGIN, or
        MIGRATE_BEGIN_SEAMLESS when C{seamless}.
        """
        if self.agent is not None:
            self.agent.holdClipboardNews()
        if seamless:
            self.sendMessage("MIGRATE_BEGIN_SEAMLESS",
                             src_mig_version=MIGRATION_PROTOCOL_VERSION, **target.dstInfo())
        else:
            self.sendMessage("MIGRATE_BEGIN", **target.dstInfo())

    def endMigration(self):
        """
        The VM moved: the pre-connected client switches to the target
        (MIGRATE_END).
        """
        self.sendMessage("MIGRATE_END")

    def cancelMigration(self):
        """
        The client stays here and drops its connections to the target
        (MIGRATE_CANCEL).
        """
        self.sendMessage("MIGRATE_CANCEL")
        if self.agent is not None:
            self.agent.releaseClipboardNews()

    def switchHost(self, target):
        """
        The client reconnects to C{target} as a new client
        (MIGRATE_SWITCH_HOST).
        """
        self.sendMessage("MIGRATE_SWITCH_HOST", **target.dstInfo())

    def msg_MIGRATE_CONNECTED(self, msg):
        self.context.migrationAnswered(self.session, True)

    def msg_MIGRATE_CONNECTED_SEAMLESS(self, msg):
        self.context.migrationAnswered(self.session, True, seamless=True)

    def msg_MIGRATE_CONNECT_ERROR(self, msg):
        if self.agent is not None:
            self.agent.releaseClipboardNews()
        self.context.migrationAnswered(self.session, False)

    def migrationData(self):
        return dict(ChannelProtocol.migrationData(self),
                    agent=None if self.agent is None else self.agent.migrationState(),
                    mouse_mode=int(self.context.mouseMode))

    # -- migration, the target's side -------------------------------------------

    def msg_MIGRATE_END(self, msg):
        """
        The client switched to this server (libspice's T4); its arrival
        decides.
        """
        if self.session.arrival is None:
            self.peerLog.warn("MIGRATE_END while not migrating in",
                              "{session} main: MIGRATE_END from a client that is not "
                              "migrating in; ignored", session=self.session.id)
            return
        self.session.arrival.clientSwitched(self)

    def welcomeMigrated(self):
        """
        The client has switched here: INIT with the session id it came
        with.  It sends no ATTACH_CHANNELS; its channels come back by
        themselves.
        """
        self.sendInit()
        self._channelsListed()

    def msg_MIGRATE_DST_DO_SEAMLESS(self, msg):
        """
        The client asks the target for a seamless migration (section 5.7
        step 3); its arrival decides.
        """
        if self.session.arrival is None:
            self.peerLog.info("MIGRATE_DST_DO_SEAMLESS while not migrating in",
                              "{session} main: seamless migration refused (the client is "
                              "not migrating in); the client goes on semi-seamlessly",
                              session=self.session.id)
            self.answerSeamless(False)
            return
        self.session.arrival.seamlessRequested(self, msg.src_version)

    def answerSeamless(self, accepted):
        """
        MIGRATE_DST_SEAMLESS_ACK or _NACK, sent even while silent: the
        seamless answer is the one message a client migrating in reads
        before it has switched.
        """
        message = self.serverMessages[
            "MIGRATE_DST_SEAMLESS_ACK" if accepted else "MIGRATE_DST_SEAMLESS_NACK"]
        ChannelProtocol.sendRaw(self, message.number, message.pack())

    def restoreMigrationData(self, fields):
        """
        The client kept its agent state across a seamless migration: the
        agent continues where the source's left off.
        """
        self._channelsListed()
        if self.agent is not None and fields.get("agent"):
            self.agent.restore(fields["agent"])
