"""
L{PacedSource}: a playback device that makes its sound itself, in real
time, from a timer: the tone, the file player and the demo's clicks.
"""

from spicesrv.sound.device import PlaybackDevice
from spicesrv.wire.sound import FRAME_SAMPLES, RATE

#: Seconds between two timer calls; each makes the frames due by then.
TICK = 0.02
#: The most sound made in one call after the reactor was late (a stall
#: is skipped, not made up for in a burst).
MAX_CATCH_UP = 0.1


class PacedSource(PlaybackDevice):
    """
    Calls L{generate} from a timer while it is playing and someone listens,
    with as many whole frames as the clock says are due.

    @param clock: an C{IReactorTime}.
    """

    def __init__(self, description, clock):
        PlaybackDevice.__init__(self, description)
        self.clock = clock
        self._call = None
        self._t0 = None
        self._made = 0
        self.position = 0           # samples generated since the start

    def generate(self, start, count):
        """
        Return C{count} stereo samples (S16 LE bytes) from sample C{start}
        of this source's sound.
        """
        raise NotImplementedError()

    def listening(self):
        self._schedule()

    def notListening(self):
        self._cancel()

    def start(self):
        PlaybackDevice.start(self)
        self._schedule()

    def stop(self):
        PlaybackDevice.stop(self)
        self._cancel()

    def close(self):
        self._cancel()

    def _schedule(self):
        if self._call is None and self.active and self.observers:
            self._t0 = self.clock.seconds()
            self._made = 0
            self._call = self.clock.callLater(0, self._tick)

    def _cancel(self):
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _tick(self):
        self._call = None
        if not (self.active and self.observers):
            return
        elapsed = self.clock.seconds() - self._t0
        due = int(elapsed * RATE) // FRAME_SAMPLES * FRAME_SAMPLES + FRAME_SAMPLES
        if due - self._made > MAX_CATCH_UP * RATE:
            # The reactor was busy: skip what is too late to play.
            self._made = due - FRAME_SAMPLES
        count = due - self._made
        if count > 0:
            self._made = due
            pcm = self.generate(self.position, count)
            self.position += count
            self.write(pcm)
        if self.active and self.observers and self._call is None:
            self._call = self.clock.callLater(TICK, self._tick)
