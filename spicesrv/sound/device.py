"""
Base classes for sound devices: L{PlaybackDevice} (an
L{spicesrv.interfaces.IPlaybackSource}) and L{RecordDevice} (an
L{spicesrv.interfaces.IRecordSink}).

A playback device is pushed sound with L{PlaybackDevice.write} (any number
of samples); it cuts it into 10 ms L{AudioFrame}s and hands each to its
observers, the playback channels, at once.  Nothing is queued here: a
channel that cannot send a frame now drops it.  Subclasses produce sound
only while someone listens: L{PlaybackDevice.listening} and
L{PlaybackDevice.notListening} are called when the first observer comes
and the last one goes.
"""

from twisted.logger import Logger
from zope.interface import implementer

from spicesrv.interfaces import IPlaybackSource, IRecordSink
from spicesrv.sound.pcm import AudioFrame
from spicesrv.wire.sound import CHANNELS, FRAME_BYTES, SAMPLE_BYTES

FULL_VOLUME = 65535


class _Device:
    """
    Observers, activity, volume and mute, shared by both directions.
    """

    major_version = 1
    minor_version = 0
    log = Logger()

    def __init__(self, description):
        self.description = description
        self.active = False
        self.volume = None
        self.mute = False
        self.observers = []

    def addObserver(self, observer):
        self.observers.append(observer)
        if len(self.observers) == 1:
            self.listening()

    def removeObserver(self, observer):
        self.observers.remove(observer)
        if not self.observers:
            self.notListening()

    def listening(self):
        """
        The first observer came: start producing (or consuming).
        """

    def notListening(self):
        """
        The last observer went.
        """

    def _tell(self, method, *args):
        for observer in list(self.observers):
            try:
                getattr(observer, method)(*args)
            except Exception:
                self.log.failure("{device}: an observer failed on {method}",
                                 device=self.description, method=method)

    def setVolume(self, volume):
        """
        Set the volume, one level (0..65535) per channel, and tell the
        clients.
        """
        volume = tuple(int(v) for v in volume)
        if not volume or len(volume) > 255 or not all(0 <= v <= FULL_VOLUME for v in volume):
            raise ValueError("a volume is 1 to 255 levels from 0 to %d, not %r"
                             % (FULL_VOLUME, volume))
        self.volume = volume
        self._tell("volume_changed", volume)

    def setMute(self, mute):
        """
        Mute or unmute, and tell the clients.
        """
        self.mute = bool(mute)
        self._tell("mute_changed", self.mute)

    def close(self):
        """
        Release what the device holds (processes, files); the server is
        stopping.
        """


@implementer(IPlaybackSource)
class PlaybackDevice(_Device):
    """
    A sound source.  Subclasses call L{start}, L{write} and L{stop}.
    """

    type = "playback"

    def __init__(self, description):
        _Device.__init__(self, description)
        self._rest = b""
        self._serial = 0
        self._encoder = None
        self.frames = 0

    def _opusEncoder(self):
        if self._encoder is None:
            from spicesrv.sound.codec import OpusEncoder
            self._encoder = OpusEncoder()
        return self._encoder

    def start(self):
        """
        Start playing: clients get START, then the frames written.
        """
        if self.active:
            return
        self.active = True
        self._rest = b""
        self._tell("playback_started")

    def stop(self):
        """
        Stop playing: clients get STOP; a partial frame is dropped.
        """
        if not self.active:
            return
        self.active = False
        self._rest = b""
        self._tell("playback_stopped")

    def write(self, pcm):
        """
        Play these 48 kHz stereo S16 LE samples: every whole 10 ms frame goes
        to the observers now, the rest waits for the next write.
        """
        if not self.active:
            return
        data = self._rest + bytes(pcm) if self._rest else bytes(pcm)
        whole = len(data) - len(data) % FRAME_BYTES
        self._rest = data[whole:]
        for offset in range(0, whole, FRAME_BYTES):
            frame = AudioFrame(data[offset:offset + FRAME_BYTES], self._serial,
                               self._opusEncoder)
            self._serial += 1
            self.frames += 1
            self._tell("playback_frame", frame)


@implementer(IRecordSink)
class RecordDevice(_Device):
    """
    A sink for a client's microphone.  Subclasses override L{received}; the
    device is active (it asks clients to record) from L{start} to L{stop}.
    """

    type = "record"
    minor_version = 1

    def __init__(self, description):
        _Device.__init__(self, description)
        self.samples = 0
        self._odd = b""
        self.recordings = 0
        self._recording = None

    def start(self):
        if self.active:
            return
        self.active = True
        self._tell("record_started")

    def stop(self):
        if not self.active:
            return
        self.active = False
        self._tell("record_stopped")

    def record_data(self, pcm):
        if not self.active:
            return
        frame = CHANNELS * SAMPLE_BYTES
        data = self._odd + bytes(pcm) if self._odd else bytes(pcm)
        whole = len(data) - len(data) % frame
        self._odd = data[whole:]
        if whole:
            self.samples += whole // frame
            self.received(data[:whole])

    def received(self, pcm):
        """
        Whole stereo samples arrived; subclasses store or play them.
        """

    def recording_started(self, session_id):
        if self._recording is not None:
            self.recording_stopped(self._recording)
        self.recordings += 1
        self._recording = self.recordings
        self.recordingBegan(self.recordings, session_id)
        return self._recording

    def recording_stopped(self, key):
        if key is None or key != self._recording:
            return
        self._recording = None
        self._odd = b""
        self.recordingEnded()

    def recordingBegan(self, number, session_id):
        """
        Recording C{number} (1, 2, ... in this device's life) of the client
        of session C{session_id} begins; subclasses may open something for
        it.
        """

    def recordingEnded(self):
        """
        The current recording ended; subclasses finish what they kept of
        it.
        """
