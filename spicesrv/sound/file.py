"""
C{file:PATH}: play any audio file FFmpeg decodes, looped (L{FileSource});
record clients' microphones to WAV or Ogg/Opus files, one for all or one
per client (L{FileSink}).
Both through PyAV.

Decoding happens on the reactor a few frames at a time (FFmpeg decodes
compressed audio hundreds of times faster than real time), so the file is
never held in memory whole.
"""

import os
import wave

from spicesrv.sound.device import RecordDevice
from spicesrv.sound.paced import PacedSource
from spicesrv.wire.sound import CHANNELS, RATE, SAMPLE_BYTES

SAMPLE = CHANNELS * SAMPLE_BYTES
#: File names that are written as Ogg/Opus.
OGG = (".ogg", ".opus", ".oga")


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
    Writes what clients record to files: WAV (48 kHz stereo S16) or, for
    C{.ogg}, C{.opus} and C{.oga}, Ogg/Opus.

    C{path} is one of:

    - a file name: one file, created at startup, takes every recording of
      the server's life.  A WAV file's header is kept valid after every
      write; an Ogg file gets each recording as a chained Ogg/Opus stream,
      complete when the recording ends (players and FFmpeg read the chain
      as one sound).
    - a pattern (a name with braces) with C{{session}} (the client's
      session id) and C{{n}} (the recording's number, 1, 2, ... in the
      server's life): each recording gets its own file, complete when it
      ends.  A brace meant literally is doubled (C{{{}}, C{}}}).
    - a directory (one that exists, or a name ending in C{/}, which must
      exist): as the pattern C{DIR/session-{session}.wav}.

    A recording runs from the client's first sound after START to STOP,
    or to the end of its record channel.  Per-recording files never
    overwrite: when the name exists, C{-2}, C{-3}, ... is added before its
    extension.

    @ivar files: the files written, in order (the one file in single-file
        mode).
    @raise ValueError: the file or directory cannot be written, or the
        pattern is not one.
    """

    def __init__(self, path):
        RecordDevice.__init__(self, "file %s" % (path,))
        self.path = path
        self.pattern = None
        self.files = []
        if os.path.isdir(path) or path.endswith(os.sep):
            if not os.path.isdir(path):
                raise ValueError("file:%s: no such directory" % (path,))
            self.pattern = os.path.join(path, "session-{session}.wav")
        elif "{" in path or "}" in path:
            self.pattern = path
        self.kind = "ogg" if (self.pattern or path).lower().endswith(OGG) else "wav"
        self._wav = self._ogg = self._file = None
        self._oggPts = 0
        if self.pattern is not None:
            try:
                self._name(1, 0)
            except (KeyError, IndexError, ValueError) as e:
                raise ValueError("file:%s: a pattern takes {session} and {n}, and "
                                 "doubles other braces (%s)" % (path, e))
            folder = os.path.dirname(self.pattern) or "."
            if not os.access(folder, os.W_OK | os.X_OK):
                raise ValueError("file:%s: cannot write into %s" % (path, folder))
        else:
            try:
                if self.kind == "wav":
                    self._openWav(path)
                else:
                    # Created (emptied) now; each recording appends its stream.
                    open(path, "wb").close()
            except OSError as e:
                raise ValueError("file:%s: %s" % (path, e.strerror or e))
            self.files.append(path)
        self.start()

    def _name(self, number, session):
        return self.pattern.format(session=session, n=number)

    def _freeName(self, name):
        base, ext = os.path.splitext(name)
        candidate, count = name, 1
        while os.path.exists(candidate):
            count += 1
            candidate = "%s-%d%s" % (base, count, ext)
        return candidate

    def _openWav(self, path, mode="wb"):
        self._file = open(path, mode)
        self._wav = wave.open(self._file, "wb")
        self._wav.setnchannels(CHANNELS)
        self._wav.setsampwidth(SAMPLE_BYTES)
        self._wav.setframerate(RATE)
        self._wav.writeframes(b"")

    def _openOgg(self, path, mode):
        import av
        self._file = open(path, mode)
        self._ogg = av.open(self._file, "w", format="ogg")
        stream = self._ogg.add_stream("libopus", rate=RATE)
        stream.codec_context.layout = "stereo"
        stream.codec_context.format = "s16"
        stream.codec_context.bit_rate = 96000
        self._oggStream = stream
        self._oggPts = 0
        self._av = av

    def recordingBegan(self, number, session_id):
        if self.pattern is None:
            if self.kind == "ogg":
                self._open(self.path, "ab")
            return
        path = self._freeName(self._name(number, session_id))
        self._open(path, "xb")
        self.files.append(path)
        self.log.info("{device}: recording {number} (session {session}) into {path}",
                      device=self.description, number=number, session=session_id, path=path)

    def _open(self, path, mode):
        try:
            if self.kind == "wav":
                self._openWav(path, mode)
            else:
                self._openOgg(path, mode)
        except OSError as e:
            self._wav = self._ogg = self._file = None
            self.log.error("{device}: cannot write {path}: {error}; this recording is lost",
                           device=self.description, path=path, error=e.strerror or e)

    def recordingEnded(self):
        if self.pattern is not None or self.kind == "ogg":
            self._finish()

    def received(self, pcm):
        if self._wav is None and self._ogg is None and self._recording is None:
            # Sound given without recording_started (a sink used directly):
            # it makes a recording of its own.
            self.recording_started(0)
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

    def _finish(self):
        """
        Complete the file (or Ogg stream) being written.
        """
        if self._wav is not None:
            self._wav.close()
            self._wav = None
        if self._ogg is not None:
            for packet in self._oggStream.encode(None):
                self._ogg.mux(packet)
            self._ogg.close()
            self._ogg = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def close(self):
        self.recording_stopped(self._recording)
        self._finish()
