"""
The playback channel (type 5): the server's sound, played by the client.

What goes out, as libspice-server sends it (``server/sound.cpp``):

- On link: MODE (RAW, or OPUS when the client advertised
  SPICE_PLAYBACK_CAP_OPUS and the server may compress), VOLUME and MUTE when
  the source has a volume, then START if the source is playing.
- While playing: one DATA per 10 ms frame, stamped with the multimedia
  time (C{context.mmTime()}, the clock display streams are stamped with
  too) plus the session's playback delay (below), never earlier than the
  frame before.
- STOP when the source stops; VOLUME / MUTE whenever they change; LATENCY
  (clients with SPICE_PLAYBACK_CAP_LATENCY) when L{playbackLatency} asks
  the client to keep more sound buffered, and again after each START
  (spice-gtk resets its C{min-latency} to 200 ms on START).

Sound and pictures in step: display streams stamp each frame with the
multimedia time plus a delay that the client's STREAM_REPORTs steer, and
tell the session (L{spicesrv.session.ClientSession.videoDelay}), which
tells this channel (C{playbackLatency}).  The sound is stamped with the
same delay, so a frame and the sound made at the same moment carry the
same time; spice-gtk's audio backend sets the session's multimedia time
from the stamps minus what it still has to play, so the frame is shown as
that sound is heard.  LATENCY asks the client to buffer that much sound,
which is what a frame waits too.  libspice stamps frames with the capture
time and delays the client's clock instead; the two are the same once the
delay is added on both sides.

Back-pressure: the channel is its transport's push producer.  While the
socket is full, frames are dropped (and counted), never queued: a client
that does not read costs nothing and hears a gap.

Migration: no migration data (libspice sends SPICE_MSG_MIGRATE with no
flags).  On a target the channel waits until its client has arrived; after
a seamless switch, where the client kept its playback state from the
source, it restarts the stream (STOP, MODE, START) so that the mode and
codec are this server's.
"""

from zope.interface import implementer
from twisted.internet.interfaces import IPushProducer

from spicesrv.channels.sound import SoundChannel, opusPossible
from spicesrv.interfaces import IPlaybackObserver
from spicesrv.wire.constants import ChannelType
from spicesrv.wire.sound import (
    CHANNELS, PLAYBACK_CLIENT, PLAYBACK_SERVER, RATE, AudioDataMode, AudioFormat,
    PlaybackCap)


@implementer(IPlaybackObserver, IPushProducer)
class PlaybackChannel(SoundChannel):
    """
    The playback channel of one client.  The registry calls it as
    C{PlaybackChannel(session, info, source=..., compression=True)}.

    @param source: the L{spicesrv.interfaces.IPlaybackSource}.
    @param compression: whether Opus may be used (QEMU's
        C{playback-compression}).

    @ivar mode: the L{AudioDataMode} told to the client.
    @ivar sent: frames sent; @ivar dropped: frames dropped because the
        client did not take them in time.
    @ivar delay: the playback delay (ms) the sound is stamped with and
        LATENCY asks of the client: the session's video delay.
    """

    channelType = ChannelType.PLAYBACK
    serverMessages = PLAYBACK_SERVER
    clientMessages = PLAYBACK_CLIENT

    def __init__(self, session, info, source, compression=True):
        SoundChannel.__init__(self, session, info, source)
        self.source = source
        self.compression = compression
        self.mode = AudioDataMode.RAW
        self.playing = False        # START sent, STOP not yet
        self.sent = 0
        self.dropped = 0
        self.bytesSent = 0
        self._paused = False
        self.delay = session.playbackDelay
        self._lastStamp = None

    @classmethod
    def capabilities(cls, context):
        caps = {PlaybackCap.VOLUME}
        if opusPossible():
            caps.add(PlaybackCap.OPUS)
        return caps

    def chooseMode(self):
        """
        Opus when both sides can and compression is allowed, raw otherwise
        (libspice's C{snd_desired_audio_mode}).
        """
        if (self.compression and PlaybackCap.OPUS in self.info.channel_caps
                and opusPossible()):
            return AudioDataMode.OPUS
        return AudioDataMode.RAW

    # -- life cycle ---------------------------------------------------------------

    def channelUp(self):
        self.transport.registerProducer(self, True)
        self.mode = self.chooseMode()
        SoundChannel.channelUp(self)

    def beginning(self):
        self.log.info("{session} {channel}: playing {source} in {mode} mode",
                      session=self.session.id, channel=self.name,
                      source=self.source.description, mode=self.mode.name)
        self.sendMessage("MODE", time=self.stamp(), mode=self.mode, data=b"")

    def deviceActive(self):
        self.playback_started()

    def channelDown(self):
        self.stopObserving()
        if self.sent or self.dropped:
            self.log.info("{session} {channel}: {sent} frames sent ({bytes} bytes), "
                          "{dropped} dropped", session=self.session.id, channel=self.name,
                          sent=self.sent, bytes=self.bytesSent, dropped=self.dropped)

    # -- IPlaybackObserver ----------------------------------------------------------

    def playback_started(self):
        if self.playing:
            return
        self.playing = True
        self.sendMessage("START", channels=CHANNELS, format=AudioFormat.S16,
                         frequency=RATE, time=self.stamp())
        if self.delay:
            self._sendLatency()

    def playback_stopped(self):
        if not self.playing:
            return
        self.playing = False
        self.sendMessage("STOP")

    def playback_frame(self, frame):
        if not self.playing or not self.connected or self.migratedAway:
            return
        if self._paused or self.migrationStarted:
            self.dropped += 1
            return
        data = frame.opus() if self.mode == AudioDataMode.OPUS else frame.pcm
        if not data:
            return
        self.sent += 1
        self.bytesSent += len(data)
        self.sendMessage("DATA", time=self.stamp(), data=data)

    def volume_changed(self, volume):
        if PlaybackCap.VOLUME in self.info.channel_caps:
            self.sendMessage("VOLUME", volume=list(volume))

    def mute_changed(self, mute):
        if PlaybackCap.VOLUME in self.info.channel_caps:
            self.sendMessage("MUTE", mute=int(bool(mute)))

    def stamp(self):
        """
        The multimedia time for what is sent now: C{context.mmTime()} plus
        L{delay}, never earlier than the stamp before (spice-gtk warns of
        a packet older than the last, and takes a clock going back as a
        reset): when the delay shrinks, the stamps wait for the clock.
        """
        stamp = (self.context.mmTime() + self.delay) & 0xFFFFFFFF
        last = self._lastStamp
        if last is not None and 0 < (last - stamp) & 0xFFFFFFFF < 1 << 31:
            stamp = last
        self._lastStamp = stamp
        return stamp

    def playbackLatency(self, milliseconds):
        """
        The session's video frames are now stamped C{milliseconds} ahead of
        the multimedia clock (0: no stream plays): stamp the sound alike
        and ask the client to keep that much buffered (libspice's
        C{snd_set_playback_latency}, which its display streams call with
        their latency).  Only clients with SPICE_PLAYBACK_CAP_LATENCY
        understand LATENCY; 0 is not sent (the client keeps what it had, as
        with libspice when the last stream ends).
        """
        self.delay = max(0, int(milliseconds))
        if self.delay:
            self._sendLatency()

    def _sendLatency(self):
        if PlaybackCap.LATENCY in self.info.channel_caps:
            self.sendMessage("LATENCY", latency_ms=self.delay)

    # -- IPushProducer (the client's socket) ---------------------------------------

    def pauseProducing(self):
        self._paused = True

    def resumeProducing(self):
        self._paused = False

    def stopProducing(self):
        self._paused = True
