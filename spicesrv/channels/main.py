"""
The main channel (type 1): session setup, the channel list, mouse modes,
name and UUID, multimedia time and agent token bookkeeping.
"""

from spicesrv.channel import (
    MIGRATE_NEED_DATA_TRANSFER, MIGRATE_NEED_FLUSH, ChannelProtocol)
from spicesrv.migration import MIGRATION_PROTOCOL_VERSION
from spicesrv.wire.constants import AGENT_TOKENS, ChannelType, MainCap
from spicesrv.wire.messages import MAIN_CLIENT, MAIN_SERVER
from spicesrv.wire.migdata import Integer

# spice-gtk sizes its GLZ dictionary from this; libspice reports the QXL RAM.
RAM_HINT = 64 * 1024 * 1024

# Seconds between two mouse mode requests of one client that the server acts
# on; later ones wait, and only the latest of them counts.  A mode change is
# told to every client, so a client must not be able to make it a flood.
MOUSE_MODE_REQUEST_INTERVAL = 0.5


class MainChannel(ChannelProtocol):
    channelType = ChannelType.MAIN
    serverMessages = MAIN_SERVER
    clientMessages = MAIN_CLIENT

    def __init__(self, server, session, info):
        ChannelProtocol.__init__(self, server, session, info)
        self.channelsListSent = False
        self.agentTokens = 0
        self._modeRequested = None
        self._modeCall = None
        self._modeAnswered = None       # when the last request was acted on

    migrateFlags = MIGRATE_NEED_FLUSH | MIGRATE_NEED_DATA_TRANSFER
    migrationSchema = ChannelProtocol.migrationSchema.extend(
        agent_tokens=Integer(0, 0xFFFFFFFF, default=0),
        mouse_mode=Integer(1, 2, default=1))

    @classmethod
    def capabilities(cls, server):
        caps = {MainCap.SEMI_SEAMLESS_MIGRATE}
        if server.seamless:
            caps.add(MainCap.SEAMLESS_MIGRATE)
        return caps

    @property
    def silent(self):
        """
        A client migrating in is not reading this socket yet: nothing may be
        sent before INIT (libspice-server drops such messages too).
        """
        return self.session.migratingIn

    def sendRaw(self, msgType, body, counted=True):
        if self.silent:
            return
        ChannelProtocol.sendRaw(self, msgType, body, counted)

    def channelUp(self):
        if self.silent:
            return
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
        if self.silent:
            self.log.warn("{session} main: ATTACH_CHANNELS while migrating in; ignored",
                          session=self.session.id)
            return
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
        if not self.server.requestMouseMode(mode):
            self.mouseModeChanged(self.server.supportedMouseModes, self.server.mouseMode)

    def channelDown(self):
        if self._modeCall is not None and self._modeCall.active():
            self._modeCall.cancel()
        self._modeCall = None

    def mouseModeChanged(self, supported, current):
        self.sendMessage("MOUSE_MODE", supported_modes=supported, current_mode=current)

    def msg_AGENT_START(self, msg):
        self.agentTokens = msg.num_tokens

    def msg_AGENT_TOKEN(self, msg):
        self.agentTokens = min(0xFFFFFFFF, self.agentTokens + msg.num_tokens)

    def msg_AGENT_DATA(self, msg):
        self.log.info("{session} main: no guest agent; dropping {size} bytes of agent data",
                      session=self.session.id, size=len(msg.data))

    # -- migration -------------------------------------------------------------

    def msg_MIGRATE_CONNECTED(self, msg):
        self.server.sourceMigration.clientAnswered(self.session, True)

    def msg_MIGRATE_CONNECTED_SEAMLESS(self, msg):
        self.server.sourceMigration.clientAnswered(self.session, True, seamless=True)

    def msg_MIGRATE_CONNECT_ERROR(self, msg):
        self.server.sourceMigration.clientAnswered(self.session, False)

    def msg_MIGRATE_DST_DO_SEAMLESS(self, msg):
        """
        The client asks the target for a seamless migration (libspice's
        section 5.7 step 3): ACK and start the parked channels waiting for
        their data, or NACK and the client goes on semi-seamlessly.
        """
        why = None
        if not self.session.migratingIn or self.session.seamlessIn:
            why = "the client is not migrating in"
        elif not self.server.seamless:
            why = "seamless migration is off here (--seamless-migration)"
        elif msg.src_version > MIGRATION_PROTOCOL_VERSION:
            why = "the source speaks migration protocol %d, this server %d" % (
                msg.src_version, MIGRATION_PROTOCOL_VERSION)
        elif len([s for s in self.server.sessions.values() if s.migratingIn]) > 1:
            why = "several clients are migrating in"
        if why is not None:
            self.log.info("{session} main: seamless migration refused ({why}); the client "
                          "goes on semi-seamlessly", session=self.session.id, why=why)
            self._sendAlways("MIGRATE_DST_SEAMLESS_NACK")
            return
        self.awaitingMigrationData = True
        self.session.acceptSeamless()
        self._sendAlways("MIGRATE_DST_SEAMLESS_ACK")
        self.log.info("{session} main: seamless migration accepted", session=self.session.id)

    def _sendAlways(self, name):
        """
        Send even while silent: the seamless answer is the one message a
        client migrating in reads before it has switched.
        """
        message = self.serverMessages[name]
        ChannelProtocol.sendRaw(self, message.number, message.pack())

    def migrationData(self):
        return dict(ChannelProtocol.migrationData(self), agent_tokens=self.agentTokens,
                    mouse_mode=int(self.server.mouseMode))

    def restoreMigrationData(self, fields):
        self.agentTokens = fields["agent_tokens"]
        self.channelsListSent = True

    def msg_MIGRATE_END(self, msg):
        """
        The client switched to this server: send INIT with the session id it
        came with and start its parked channels (libspice's T4).
        """
        if not self.session.migratingIn:
            self.log.warn("{session} main: MIGRATE_END from a client that is not "
                          "migrating in; ignored", session=self.session.id)
            return
        if MainCap.SEMI_SEAMLESS_MIGRATE not in self.info.channel_caps:
            self.log.warn("{session} main: MIGRATE_END from a client without the "
                          "semi-seamless capability; ignored", session=self.session.id)
            return
        self.session.migratingIn = False
        self.sendInit()
        self.channelsListSent = True
        self.session.arrived()
        self.log.info("session {session}: client switched here from the migration source",
                      session=self.session.id)
        self.server.sessionArrived(self.session)

    def sendMultiMediaTime(self):
        self.sendMessage("MULTI_MEDIA_TIME", time=self.server.mmTime())

