"""
The record channel (type 6): the client's microphone, into the server's
sink.

As libspice-server (``server/sound.cpp``): on link VOLUME and MUTE when the
sink has a volume, then START (2 channels, S16, 48 kHz) if the sink wants
sound; STOP when it no longer does.  The client answers START with MODE
(RAW, or OPUS when the server advertised SPICE_RECORD_CAP_OPUS), a
START_MARK, then DATA: raw S16 frames or one Opus packet each, which the
channel decodes and hands to the sink.

A sink takes one client at a time, as in libspice: a record channel
linked later replaces the one before (which is closed).  Client audio is
never queued here: it goes to the sink as it arrives.  A client's
recording runs from its first DATA after START to STOP, or to the
channel's end: the sink hears both (C{recording_started(session_id)},
C{recording_stopped(key)}), so that it can keep each recording apart and
finish it at once (the C{file} sink's per-client files).  Migration carries
no data; on a target the channel waits until its client has arrived, and
after a seamless switch sends STOP first, so that the client, which kept
recording as it did for the source, starts over with its MODE here.
"""

from zope.interface import implementer

from spicesrv.channels.sound import SoundChannel, opusPossible
from spicesrv.interfaces import IRecordObserver
from spicesrv.wire.constants import ChannelType
from spicesrv.wire.sound import (
    CHANNELS, RATE, RECORD_CLIENT, RECORD_SERVER, SAMPLE_BYTES, AudioDataMode,
    AudioFormat, RecordCap)


@implementer(IRecordObserver)
class RecordChannel(SoundChannel):
    """
    The record channel of one client.  The registry calls it as
    C{RecordChannel(session, info, sink=...)}.

    @ivar mode: the client's L{AudioDataMode} (from its MODE message).
    @ivar received: DATA messages taken; @ivar undecodable: those that
        did not decode.
    """

    channelType = ChannelType.RECORD
    serverMessages = RECORD_SERVER
    clientMessages = RECORD_CLIENT

    def __init__(self, session, info, sink):
        SoundChannel.__init__(self, session, info, sink)
        self.sink = sink
        self.mode = AudioDataMode.RAW
        self.recording = False
        self.received = 0
        self.undecodable = 0
        self.startMark = None
        self._decoder = None
        self._recording = False     # the client's recording reached the sink
        self._recordingKey = None   # the sink's key for it

    @classmethod
    def capabilities(cls, context):
        caps = {RecordCap.VOLUME}
        if opusPossible():
            caps.add(RecordCap.OPUS)
        return caps

    # -- life cycle ---------------------------------------------------------------

    def beginning(self):
        # After a seamless switch spice-gtk still records as it did for the
        # source and would not send its MODE here: the STOP the base sends
        # makes it start over (MODE, START_MARK) at the next START.
        for other in list(self.sink.observers):
            if isinstance(other, RecordChannel) and other is not self:
                other.close("a newer record channel (session %d) took the %s"
                            % (self.session.id, self.sink.description))

    def deviceActive(self):
        self.record_started()

    def channelDown(self):
        self._endRecording()
        self.stopObserving()
        if self.received:
            self.log.info("{session} {channel}: {count} frames received ({bad} undecodable)",
                          session=self.session.id, channel=self.name, count=self.received,
                          bad=self.undecodable)

    # -- IRecordObserver ------------------------------------------------------------

    def record_started(self):
        if self.recording:
            return
        self.recording = True
        self.sendMessage("START", channels=CHANNELS, format=AudioFormat.S16, frequency=RATE)

    def record_stopped(self):
        if not self.recording:
            return
        self.recording = False
        self._endRecording()
        self.sendMessage("STOP")

    def _beginRecording(self):
        # recording_started is IRecordSink's minor version 1: a sink of
        # version 1.0 has none.
        self._recording = True
        started = getattr(self.sink, "recording_started", None)
        if started is not None:
            self._recordingKey = started(self.session.id)

    def _endRecording(self):
        if not self._recording:
            return
        self._recording = False
        key, self._recordingKey = self._recordingKey, None
        stopped = getattr(self.sink, "recording_stopped", None)
        if stopped is not None:
            stopped(key)

    def volume_changed(self, volume):
        if RecordCap.VOLUME in self.info.channel_caps:
            self.sendMessage("VOLUME", volume=list(volume))

    def mute_changed(self, mute):
        if RecordCap.VOLUME in self.info.channel_caps:
            self.sendMessage("MUTE", mute=int(bool(mute)))

    # -- client messages ------------------------------------------------------------

    def msg_MODE(self, msg):
        try:
            mode = AudioDataMode(msg.mode)
        except ValueError:
            mode = None
        if mode == AudioDataMode.OPUS and opusPossible():
            from spicesrv.sound.codec import OpusDecoder
            self._decoder = OpusDecoder()
        elif mode != AudioDataMode.RAW:
            self.peerLog.info("record mode", "{session} {channel}: unsupported record mode "
                              "{mode}; its data is dropped", session=self.session.id,
                              channel=self.name, mode=msg.mode)
            self.mode = None
            return
        self.mode = mode
        self.log.info("{session} {channel}: the client records in {mode} mode",
                      session=self.session.id, channel=self.name, mode=mode.name)

    def msg_START_MARK(self, msg):
        self.startMark = msg.time

    def msg_DATA(self, msg):
        if not self.recording or self.mode is None:
            return
        if self.mode == AudioDataMode.OPUS:
            from spicesrv.sound.codec import CodecError
            try:
                pcm = self._decoder.decode(msg.data)
            except CodecError as e:
                self.undecodable += 1
                self.peerLog.info("undecodable record data",
                                  "{session} {channel}: {error}", session=self.session.id,
                                  channel=self.name, error=e)
                return
        else:
            whole = len(msg.data) - len(msg.data) % (CHANNELS * SAMPLE_BYTES)
            pcm = msg.data[:whole]
        self.received += 1
        if not self._recording:
            self._beginRecording()
        self.sink.record_data(pcm)
