"""
The demo's sound: a short beep on each click, as a guest's sound card
that opens when there is something to play and closes when quiet.
"""

import numpy

from spicesrv.sound.paced import PacedSource
from spicesrv.wire.sound import CHANNELS, RATE

#: The beep: seconds, and its loudness (of full scale).
BEEP_SECONDS = 0.06
BEEP_AMPLITUDE = 0.3
#: Seconds of quiet after the last beep before the sound stops.
IDLE_SECONDS = 0.5


class ClickSound(PacedSource):
    """
    Silent (stopped) until L{click}; then a beep, and STOP once quiet.
    """

    def __init__(self, clock):
        PacedSource.__init__(self, "demo clicks", clock)
        self._beeps = []            # (first sample, hz)
        self._until = 0             # the sample after which it is quiet

    def click(self, hz=880.0):
        """
        Beep at C{hz} now.
        """
        if not self.observers:
            return
        if not self.active:
            self.position = 0
            self._beeps = []
            self.start()
        begin = self.position
        self._beeps.append((begin, hz))
        self._until = begin + int((BEEP_SECONDS + IDLE_SECONDS) * RATE)

    def generate(self, start, count):
        out = numpy.zeros(count, dtype=numpy.float64)
        n = numpy.arange(start, start + count, dtype=numpy.float64)
        length = int(BEEP_SECONDS * RATE)
        for begin, hz in self._beeps:
            inside = (n >= begin) & (n < begin + length)
            if inside.any():
                t = (n[inside] - begin) / RATE
                envelope = numpy.exp(-t * 60.0) * BEEP_AMPLITUDE * 32767
                out[inside] += numpy.sin(2 * numpy.pi * hz * t) * envelope
        self._beeps = [(b, hz) for b, hz in self._beeps if b + length > start + count]
        samples = numpy.clip(out, -32768, 32767).astype("<i2")
        if start + count >= self._until:
            self.clock.callLater(0, self._quiet)
        return numpy.repeat(samples[:, None], CHANNELS, axis=1).tobytes()

    def _quiet(self):
        if self.active and self.position >= self._until:
            self.stop()
