"""
Frames of sound as the playback channel sends them, and small PCM helpers.
"""

import numpy

from spicesrv.wire.sound import CHANNELS, FRAME_BYTES, FRAME_SAMPLES, RATE


class AudioFrame:
    """
    10 ms of 48 kHz stereo S16 LE interleaved sound, with its Opus packet
    made once (on first use) for every client that takes Opus.

    @ivar pcm: L{FRAME_BYTES} bytes.
    @ivar serial: the source's frame count, from 0.
    """

    __slots__ = ("pcm", "serial", "_encoder", "_opus")

    def __init__(self, pcm, serial=0, encoder=None):
        if len(pcm) != FRAME_BYTES:
            raise ValueError("a frame is %d bytes, not %d" % (FRAME_BYTES, len(pcm)))
        self.pcm = bytes(pcm)
        self.serial = serial
        self._encoder = encoder
        self._opus = None

    def opus(self):
        """
        The frame as one Opus packet (encoded by the source's shared
        encoder, so every Opus client gets the same stream).
        """
        if self._opus is None:
            if self._encoder is None:
                raise ValueError("this frame has no Opus encoder")
            self._opus = self._encoder().encode(self.pcm)
        return self._opus


def tone(hz, start, count, amplitude=0.25):
    """
    C{count} stereo frames of a sine at C{hz}, from sample C{start} on, as
    S16 LE bytes (the phase follows C{start}, so successive calls join).
    """
    n = numpy.arange(start, start + count, dtype=numpy.float64)
    wave = numpy.sin(2 * numpy.pi * hz * n / RATE) * (amplitude * 32767)
    samples = numpy.repeat(wave.astype("<i2")[:, None], CHANNELS, axis=1)
    return samples.tobytes()


def silence(samples):
    return bytes(samples * CHANNELS * 2)


def peakFrequency(pcm, rate=RATE, channels=CHANNELS):
    """
    The frequency (Hz) of the strongest component of S16 LE interleaved
    C{pcm}, from its first channel: what the tests and the benchmark check
    a tone by.
    """
    data = numpy.frombuffer(pcm[:len(pcm) - len(pcm) % (2 * channels)], dtype="<i2")
    mono = data.reshape(-1, channels)[:, 0].astype(numpy.float64)
    if len(mono) < 2:
        return 0.0
    spectrum = numpy.abs(numpy.fft.rfft(mono * numpy.hanning(len(mono))))
    spectrum[0] = 0
    return float(numpy.argmax(spectrum)) * rate / len(mono)


__all__ = ["AudioFrame", "tone", "silence", "peakFrequency", "FRAME_BYTES",
           "FRAME_SAMPLES", "RATE", "CHANNELS"]
