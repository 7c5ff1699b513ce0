"""
C{pulse[:DEVICE]}: the desktop's sound from a PulseAudio server (or
PipeWire's Pulse server), and a client's microphone into it, through
PulseAudio's own tools (C{parec}, C{pacat}, C{pactl} from
pulseaudio-utils) run as child processes: nothing blocks the reactor, and
a Pulse server that goes away costs a log line, not the SPICE server.

- L{PulseSource} records C{DEVICE} (by default C{@DEFAULT_MONITOR@}, the
  monitor of the default sink: what the desktop plays) while at least one
  client listens; sound starts (START) with the first samples and stops
  (STOP) if C{parec} ends, which is retried every L{RETRY} seconds.
- L{PulseSink} plays what clients record into the sink C{DEVICE}.  Without
  one it loads a null sink named L{DEFAULT_SINK} (C{pactl load-module
  module-null-sink}) and unloads it when the server stops: desktop
  programs then record the client's microphone from its monitor source,
  C{spicesrv-microphone.monitor}.  While C{pacat} does not keep up, client
  audio is dropped, never queued.

C{--pulse-server} (or C{$PULSE_SERVER}) names the Pulse server, as the
tools' C{--server}.
"""

import os

from twisted.internet import protocol
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from zope.interface import implementer

from spicesrv.sound.device import PlaybackDevice, RecordDevice
from spicesrv.wire.sound import CHANNELS, RATE

DEFAULT_MONITOR = "@DEFAULT_MONITOR@"
DEFAULT_SINK = "spicesrv-microphone"
#: Seconds before a C{parec} or C{pacat} that ended is started again.
RETRY = 2.0
#: What the tools are asked for (C{--latency-msec}): small, for sound that
#: keeps in step with the pictures.
LATENCY_MS = 20


def _format():
    return ["--format=s16le", "--rate=%d" % RATE, "--channels=%d" % CHANNELS, "--raw",
            "--latency-msec=%d" % LATENCY_MS]


class _Tool(protocol.ProcessProtocol):
    """
    One C{parec}, C{pacat} or C{pactl}, reporting to its owner.
    """

    def __init__(self, owner):
        self.owner = owner
        self.output = bytearray()
        self.errors = bytearray()
        self.ended = False

    def connectionMade(self):
        self.owner._toolStarted(self)

    def outReceived(self, data):
        self.owner._toolOutput(self, data)

    def errReceived(self, data):
        self.errors += data[:4096 - len(self.errors)]

    def processEnded(self, reason):
        self.ended = True
        self.owner._toolEnded(self, reason)


class _PulseTools:
    """
    Running the tools: their path, the Pulse server, the environment.
    """

    log = Logger()

    def _setupTools(self, reactor, server):
        self.reactor = reactor
        self.pulseServer = server
        self._retry = None

    def _spawn(self, argv, owner=None):
        tool = _Tool(owner or self)
        env = dict(os.environ)
        if self.pulseServer:
            argv = argv[:1] + ["--server=" + self.pulseServer] + argv[1:]
        try:
            self.reactor.spawnProcess(tool, argv[0], argv, env=env)
        except OSError as e:
            self.log.warn("{device}: cannot run {tool}: {error} (install pulseaudio-utils)",
                          device=self.description, tool=argv[0], error=e)
            return None
        return tool

    def _later(self, f):
        if self._retry is None or not self._retry.active():
            self._retry = self.reactor.callLater(RETRY, f)

    def _cancelRetry(self):
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None


def _which(name):
    for folder in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep):
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    return name


class PulseSource(PlaybackDevice, _PulseTools):
    """
    The sound of a Pulse source (a sink's monitor by default), while
    someone listens.
    """

    def __init__(self, reactor, device=None, server=None):
        self.device = device or DEFAULT_MONITOR
        PlaybackDevice.__init__(self, "pulse %s" % (self.device,))
        self._setupTools(reactor, server)
        self._tool = None

    def listening(self):
        self._startTool()

    def notListening(self):
        self._cancelRetry()
        self._stopTool()

    def _startTool(self):
        if self._tool is not None or not self.observers:
            return
        self._tool = self._spawn([_which("parec"), "--device=" + self.device] + _format())

    def _stopTool(self):
        tool, self._tool = self._tool, None
        if tool is not None and not tool.ended:
            tool.transport.signalProcess("TERM")
        self.stop()

    def _toolStarted(self, tool):
        tool.transport.closeStdin()

    def _toolOutput(self, tool, data):
        if tool is not self._tool:
            return
        if not self.active:
            self.start()
        self.write(data)

    def _toolEnded(self, tool, reason):
        if tool is not self._tool:
            return
        self._tool = None
        self.stop()
        self.log.warn("{device}: parec ended ({why}) {errors}; trying again in {retry} s",
                      device=self.description, why=reason.value,
                      errors=bytes(tool.errors).decode("utf-8", "replace").strip(),
                      retry=RETRY)
        self._later(self._startTool)

    def close(self):
        self._cancelRetry()
        self.observers[:] = []
        self._stopTool()


@implementer(IPushProducer)
class PulseSink(RecordDevice, _PulseTools):
    """
    Plays clients' microphones into a Pulse sink (a null sink it makes,
    L{DEFAULT_SINK}, by default).
    """

    def __init__(self, reactor, device=None, server=None):
        self.device = device or DEFAULT_SINK
        RecordDevice.__init__(self, "pulse %s" % (self.device,))
        self._setupTools(reactor, server)
        self._makeSink = device is None
        self._module = None
        self._loader = None
        self._tool = None
        self._full = False
        self._closed = False
        self.droppedBytes = 0
        self.start()

    def listening(self):
        if self._makeSink and self._module is None:
            self._loadSink()
        else:
            self._startTool()

    def _loadSink(self):
        if self._loader is not None:
            return
        self._loader = self._spawn([
            _which("pactl"), "load-module", "module-null-sink",
            "sink_name=" + self.device,
            "sink_properties=device.description=" + self.device])

    def _startTool(self):
        if self._tool is not None or self._closed:
            return
        self._full = False
        self._tool = self._spawn([_which("pacat"), "--playback", "--device=" + self.device]
                                 + _format())

    def _toolStarted(self, tool):
        if tool is self._tool:
            tool.transport.registerProducer(self, True)
        elif tool is self._loader:
            tool.transport.closeStdin()

    def _toolOutput(self, tool, data):
        tool.output += data

    def _toolEnded(self, tool, reason):
        if tool is self._loader:
            self._loader = None
            text = bytes(tool.output).strip()
            if text.isdigit():
                self._module = int(text)
                self.log.info("{device}: made the null sink {sink} (module {module}); "
                              "programs record the client's microphone from {sink}.monitor",
                              device=self.description, sink=self.device, module=self._module)
            else:
                self.log.warn("{device}: pactl could not make the sink ({errors}); "
                              "playing into it anyway", device=self.description,
                              errors=bytes(tool.errors).decode("utf-8", "replace").strip())
                self._module = -1
            self._startTool()
        elif tool is self._tool and not self._closed:
            self._tool = None
            self.log.warn("{device}: pacat ended ({why}) {errors}; trying again in {retry} s",
                          device=self.description, why=reason.value,
                          errors=bytes(tool.errors).decode("utf-8", "replace").strip(),
                          retry=RETRY)
            self._later(self._startTool)

    def received(self, pcm):
        if self._tool is None or self._full:
            self.droppedBytes += len(pcm)
            return
        self._tool.transport.write(pcm)

    # -- IPushProducer: pacat's stdin ---------------------------------------------

    def pauseProducing(self):
        self._full = True

    def resumeProducing(self):
        self._full = False

    def stopProducing(self):
        self._full = True

    def close(self):
        self._closed = True
        self._cancelRetry()
        tool, self._tool = self._tool, None
        if tool is not None and not tool.ended:
            tool.transport.closeStdin()
            tool.transport.signalProcess("TERM")
        if self._module is not None and self._module >= 0:
            self._spawn([_which("pactl"), "unload-module", str(self._module)],
                        owner=_Ignore())
            self._module = None


class _Ignore:
    def _toolStarted(self, tool):
        tool.transport.closeStdin()

    def _toolOutput(self, tool, data):
        pass

    def _toolEnded(self, tool, reason):
        pass
