"""
The pulse: sound source and sink against a real PulseAudio server, started
for the test in a temporary directory (a null sink C{speaker} stands in for
the desktop's speakers).  Without PulseAudio (C{pulseaudio},
C{pulseaudio-utils}) the tests skip, and fail under C{CI=true}.
"""

import os
import shutil
import subprocess
import tempfile

from twisted.internet import defer, protocol, reactor, task
from twisted.trial import unittest

from spicesrv.sound.pcm import peakFrequency, tone
from spicesrv.sound.pulse import DEFAULT_SINK, PulseSink, PulseSource
from spicesrv.testing import RecordingPlaybackObserver, RecordingRecordObserver
from spicesrv.wire.sound import FRAME_BYTES

FORMAT = ["--format=s16le", "--rate=48000", "--channels=2", "--raw"]


def requirePulse(testcase):
    missing = [t for t in ("pulseaudio", "pacat", "parec", "pactl") if shutil.which(t) is None]
    if missing:
        msg = "%s missing: apt-get install -y pulseaudio pulseaudio-utils" % ", ".join(missing)
        if os.environ.get("CI") == "true":
            testcase.fail(msg)
        raise unittest.SkipTest(msg)


class PulseDaemon:
    """
    A private PulseAudio server with a null sink C{speaker}; C{address} is
    its socket, for C{--server} / C{$PULSE_SERVER}.
    """

    def __init__(self, testcase):
        self.dir = tempfile.mkdtemp(prefix="spicesrv-pulse-")
        testcase.addCleanup(shutil.rmtree, self.dir, True)
        socket = os.path.join(self.dir, "native")
        self.address = "unix:" + socket
        env = dict(os.environ, HOME=self.dir, XDG_RUNTIME_DIR=self.dir,
                   PULSE_RUNTIME_PATH=self.dir)
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.process = subprocess.Popen(
            ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disable-shm=yes",
             "--use-pid-file=no", "-L",
             "module-native-protocol-unix socket=%s auth-anonymous=1" % (socket,),
             "-L", "module-null-sink sink_name=speaker"],
            env=env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log)
        testcase.addCleanup(self.stop)

    @defer.inlineCallbacks
    def ready(self, timeout=10):
        deadline = reactor.seconds() + timeout
        while True:
            code = subprocess.call(["pactl", "--server=" + self.address, "info"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if code == 0:
                return
            if self.process.poll() is not None or reactor.seconds() > deadline:
                self.log.flush()
                with open(os.path.join(self.dir, "log")) as f:
                    raise AssertionError("PulseAudio did not start: %s" % (f.read()[-2000:],))
            yield task.deferLater(reactor, 0.1, lambda: None)

    def pactl(self, *args):
        return subprocess.check_output(["pactl", "--server=" + self.address] + list(args),
                                       text=True)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class _Collect(protocol.ProcessProtocol):
    def __init__(self, feed=b""):
        self.data = bytearray()
        self.feed = feed
        self.ended = defer.Deferred()

    def connectionMade(self):
        if self.feed:
            self.transport.write(self.feed)
        self.transport.closeStdin()

    def outReceived(self, data):
        self.data += data

    def processEnded(self, reason):
        self.ended.callback(None)


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


class PulseTests(unittest.TestCase):

    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        requirePulse(self)
        self.pulse = PulseDaemon(self)
        yield self.pulse.ready()

    def tool(self, argv, feed=b""):
        collect = _Collect(feed)
        process = reactor.spawnProcess(collect, shutil.which(argv[0]),
                                       argv[:1] + ["--server=" + self.pulse.address] + argv[1:],
                                       env=dict(os.environ))

        def stop():
            if not collect.ended.called:
                process.signalProcess("KILL")
                return collect.ended
        self.addCleanup(stop)
        return collect, process

    @defer.inlineCallbacks
    def test_sourcePlaysTheDesktop(self):
        """
        What is played into a sink reaches a PulseSource on its monitor as
        10 ms frames; it starts with the sound, and parec runs only while
        someone listens.
        """
        source = PulseSource(reactor, "speaker.monitor", self.pulse.address)
        self.addCleanup(source.close)
        observer = RecordingPlaybackObserver()
        source.addObserver(observer)
        self.tool(["pacat", "--playback", "--device=speaker"] + FORMAT,
                  feed=tone(700, 0, 48000 * 3))
        deadline = reactor.seconds() + 15
        while len(observer.frames) < 150 and reactor.seconds() < deadline:
            yield sleep(0.1)
        self.assertEqual(observer.events[0], ("started",))
        pcm = b"".join(f.pcm for f in observer.frames[-100:])
        self.assertEqual(len(pcm), 100 * FRAME_BYTES)
        self.assertLessEqual(abs(peakFrequency(pcm) - 700), 5)
        source.removeObserver(observer)
        self.assertFalse(source.active)
        self.assertIsNone(source._tool)

    @defer.inlineCallbacks
    def test_sinkIsAMicrophone(self):
        """
        PulseSink makes the null sink spicesrv-microphone when a client
        records; what the client sends comes out of its monitor source, as
        a desktop program would record it; closing unloads the sink.
        """
        sink = PulseSink(reactor, None, self.pulse.address)
        observer = RecordingRecordObserver()
        sink.addObserver(observer)
        deadline = reactor.seconds() + 10
        while sink._tool is None and reactor.seconds() < deadline:
            yield sleep(0.05)
        self.assertIn(DEFAULT_SINK, self.pulse.pactl("list", "short", "sinks"))
        collect, process = self.tool(
            ["parec", "--device=%s.monitor" % (DEFAULT_SINK,)] + FORMAT)
        yield sleep(0.3)
        pcm = tone(900, 0, 48000 * 2)
        for offset in range(0, len(pcm), FRAME_BYTES * 2):
            sink.record_data(pcm[offset:offset + FRAME_BYTES * 2])
            yield sleep(0.02)
        yield sleep(0.5)
        process.signalProcess("TERM")
        yield collect.ended
        heard = bytes(collect.data)
        # parec hears what is played once it runs: most of the 2 s.
        self.assertGreater(len(heard), 48000 * 4 * 0.5)
        self.assertLessEqual(abs(peakFrequency(heard[-48000 * 2:]) - 900), 5)
        sink.close()
        deadline = reactor.seconds() + 10
        while (DEFAULT_SINK in self.pulse.pactl("list", "short", "sinks")
               and reactor.seconds() < deadline):
            yield sleep(0.1)
        self.assertNotIn(DEFAULT_SINK, self.pulse.pactl("list", "short", "sinks"))

    @defer.inlineCallbacks
    def test_noServer(self):
        """
        Without a Pulse server the source logs, keeps trying, and never
        starts; nothing breaks.
        """
        source = PulseSource(reactor, None, "unix:" + os.path.join(self.pulse.dir, "nothing"))
        self.addCleanup(source.close)
        observer = RecordingPlaybackObserver()
        source.addObserver(observer)
        yield sleep(0.5)
        self.assertEqual(observer.frames, [])
        self.assertFalse(source.active)
