"""
C{file:PATH}: play any audio file FFmpeg decodes, looped (L{FileSource});
record a client's microphone to a WAV or Ogg/Opus file (L{FileSink}).
Both through PyAV.

Decoding happens on the reactor a few frames at a time (FFmpeg decodes
compressed audio hundreds of times faster than real time), so the file is
never held in memory whole.
"""

import wave

from spicesrv.sound.device import RecordDevice
from spicesrv.sound.paced import PacedSource
from spicesrv.wire.sound import CHANNELS, RATE, SAMPLE_BYTES

SAMPLE = CHANNELS * SAMPLE_BYTES


class FileSource(PacedSource):
    """
    The audio of C{path}, converted to 48 kHz stereo S16 and looped.

    @raise ValueError: the file cannot be opened or has no audio.
    """

    def __init__(self, clock, path):
        PacedSource.__init__(self, "file %s" % (path,), clock)
        self.path = path
        self._container = None
        self._frames = None
        self._buffer = bytearray()
        self._open()
        # Decode once now so a file without a decodable sample is refused
        # at startup, not when a client listens.
        if not self._fill(SAMPLE):
            raise ValueError("file:%s: no audio could be decoded from it" % (path,))
        self.start()

    def _open(self):
        import av
        self._closeContainer()
        try:
            container = av.open(self.path)
        except (av.FFmpegError, OSError) as e:
            raise ValueError("file:%s: %s" % (self.path, e))
        if not container.streams.audio:
            container.close()
            raise ValueError("file:%s: the file has no audio stream" % (self.path,))
        self._container = container
        self._resampler = av.AudioResampler(format="s16", layout="stereo", rate=RATE)
        self._frames = container.decode(container.streams.audio[0])

    def _closeContainer(self):
        if self._container is not None:
            self._container.close()
            self._container = None

    def _fill(self, size):
        """
        Decode until C{size} bytes are buffered; at the end of the file
        start again from its beginning.  Return whether any were.
        """
        import av
        restarts = 0
        while len(self._buffer) < size:
            try:
                frame = next(self._frames)
            except StopIteration:
                if restarts:
                    break
                restarts += 1
                for converted in self._resampler.resample(None):
                    self._buffer += bytes(converted.planes[0])[:converted.samples * SAMPLE]
                self._open()
                continue
            except av.FFmpegError as e:
                self.log.warn("{device}: decoding failed ({error}); starting again",
                              device=self.description, error=e)
                if restarts:
                    break
                restarts += 1
                self._open()
                continue
            for converted in self._resampler.resample(frame):
                self._buffer += bytes(converted.planes[0])[:converted.samples * SAMPLE]
        return len(self._buffer) > 0

    def generate(self, start, count):
        size = count * SAMPLE
        self._fill(size)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data.ljust(size, b"\0")

    def close(self):
        PacedSource.close(self)
        self._closeContainer()


class FileSink(RecordDevice):
    """
    Writes what clients record to C{path}: a WAV file (48 kHz stereo S16,
    its header kept valid after every write) or, for C{.ogg} / C{.opus},
    Ogg/Opus (complete once the server stops).  The file is created at
    startup and takes every recording of the server's life.

    @raise ValueError: the file cannot be created.
    """

    def __init__(self, path):
        RecordDevice.__init__(self, "file %s" % (path,))
        self.path = path
        self.kind = "ogg" if path.lower().endswith((".ogg", ".opus", ".oga")) else "wav"
        self._wav = self._ogg = self._file = None
        try:
            if self.kind == "wav":
                self._file = open(path, "wb")
                self._wav = wave.open(self._file, "wb")
                self._wav.setnchannels(CHANNELS)
                self._wav.setsampwidth(SAMPLE_BYTES)
                self._wav.setframerate(RATE)
                self._wav.writeframes(b"")
            else:
                self._openOgg()
        except OSError as e:
            raise ValueError("file:%s: %s" % (path, e.strerror or e))
        self.start()

    def _openOgg(self):
        import av
        self._ogg = av.open(self.path, "w", format="ogg")
        stream = self._ogg.add_stream("libopus", rate=RATE)
        stream.codec_context.layout = "stereo"
        stream.codec_context.format = "s16"
        stream.codec_context.bit_rate = 96000
        self._oggStream = stream
        self._oggPts = 0
        self._av = av

    def received(self, pcm):
        if self._wav is not None:
            self._wav.writeframes(pcm)
        elif self._ogg is not None:
            samples = len(pcm) // SAMPLE
            frame = self._av.AudioFrame(format="s16", layout="stereo", samples=samples)
            frame.planes[0].update(pcm)
            frame.sample_rate = RATE
            frame.pts = self._oggPts
            self._oggPts += samples
            for packet in self._oggStream.encode(frame):
                self._ogg.mux(packet)

    def close(self):
        if self._wav is not None:
            self._wav.close()
            self._wav = None
            self._file.close()
        if self._ogg is not None:
            for packet in self._oggStream.encode(None):
                self._ogg.mux(packet)
            self._ogg.close()
            self._ogg = None
