"""
C{tone[:HZ]}: a test tone (a sine, 440 Hz by default), for checks and
demos.
"""

from spicesrv.sound.paced import PacedSource
from spicesrv.sound.pcm import tone

DEFAULT_HZ = 440.0


def parseHz(args):
    """
    The frequency of C{tone:HZ} (C{''} for the default).

    @raise ValueError: not a frequency a 48 kHz stream can carry.
    """
    if not args:
        return DEFAULT_HZ
    try:
        hz = float(args)
    except ValueError:
        raise ValueError("tone:%s: give the frequency in Hz, e.g. tone:440" % (args,))
    if not 20 <= hz <= 20000:
        raise ValueError("tone:%s: give a frequency from 20 to 20000 Hz" % (args,))
    return hz


class ToneSource(PacedSource):
    """
    A sine at C{hz}, playing from the start.
    """

    def __init__(self, clock, hz=DEFAULT_HZ, amplitude=0.25):
        PacedSource.__init__(self, "tone %g Hz" % (hz,), clock)
        self.hz = hz
        self.amplitude = amplitude
        self.start()

    def generate(self, start, count):
        return tone(self.hz, start, count, self.amplitude)
