"""
Sound against the real spice-gtk client: a spicesrv server in this process
plays a tone (L{ToneSource}) and takes the client's microphone into a file
(L{FileSink}); the client (C{--audio}) reports what its playback channel
decoded (the C{playback-data} PCM, after Opus decoding) and records
through spice_record_channel_send_data or its own GStreamer backend.

What spice-gtk does that these tests lean on: it creates audio channels
only with the session's C{enable-audio}; its playback and record channels
advertise OPUS unless C{SPICE_DISABLE_OPUS} is set; C{playback-data}
gives decoded PCM in either mode; a migration (semi-seamless) resets both
channels (playback-stop, record-stop) and the target starts them again.
"""

import os
import wave

from twisted.internet import defer, reactor, task

from spicesrv.sound.file import FileSink
from spicesrv.sound.pcm import peakFrequency
from spicesrv.sound.tone import ToneSource
from spicesrv.wire.constants import ChannelType
from spicesrv.wire.sound import AudioDataMode
from tests.interop.common import PASSWORD, InteropTestCase, RunningServer, serveOnLoopback

PLAYBACK, RECORD = ChannelType.PLAYBACK, ChannelType.RECORD
#: Accepted error of a spectral peak (Hz); one FFT bin of a 1 s window is 1 Hz.
PEAK_TOLERANCE = 5


def gstreamerPlugins():
    """
    Whether GStreamer's base and good plugins (audiotestsrc, appsink,
    audioconvert, autoaudiosrc) are installed, as spice-gtk's audio
    backend needs.
    """
    import glob
    return (bool(glob.glob("/usr/lib/*/gstreamer-1.0/libgstaudiotestsrc.so"))
            and bool(glob.glob("/usr/lib/*/gstreamer-1.0/libgstautodetect.so")))


class SoundServer:
    """
    A spicesrv server on loopback with a tone as its sound and a sink for
    the client's microphone (a WAV or Ogg file in the test's directory).
    """

    def __init__(self, testcase, hz=1000, recordTo="record.wav", **kwargs):
        self.testcase = testcase
        self.running = RunningServer(testcase, password=PASSWORD, **kwargs)
        self.server = self.running.server
        # The demo's click sound gives way to the tone, as --playback does.
        self.server.removeInterface(self.running.source.sound)
        self.tone = ToneSource(reactor, hz)
        self.server.addInterface(self.tone)
        self.recordPath = os.path.join(testcase.tmp, recordTo)
        self.sink = FileSink(self.recordPath)
        self.server.addInterface(self.sink)
        testcase.addCleanup(self.tone.close)
        testcase.addCleanup(self.sink.close)

    def listen(self):
        return self.running.listen()

    def channel(self, kind):
        for session in self.server.sessions.values():
            channel = session.channels.get((kind, 0))
            if channel is not None:
                return channel
        return None


class SoundTests(InteropTestCase):

    @defer.inlineCallbacks
    def connect(self, server, env=None, extra=()):
        port = yield server.listen()
        client = yield self.startClient(port, extra_args=["--audio"] + list(extra), env=env)
        yield client.waitForChannelsOpened((1, 5, 6), timeout=20)
        return client

    @defer.inlineCallbacks
    def heard(self, client, seconds=1.0, name="playback.raw"):
        """
        Forget what the client played so far, let it play C{seconds} more,
        and return that PCM.
        """
        yield client.check("playback", reset=True)
        yield task.deferLater(reactor, seconds, lambda: None)
        path = os.path.join(self.tmp, name)
        reply = yield client.check("playback", dump=path)
        with open(path, "rb") as f:
            return reply, f.read()

    @defer.inlineCallbacks
    def test_playbackOpus(self):
        """
        spice-gtk advertises Opus and gets it: START says 2 channels of S16
        at 48 kHz, and the PCM it decodes has its peak at the tone's
        frequency, about a second of it per second.
        """
        server = SoundServer(self, hz=1000)
        client = yield self.connect(server)
        start = yield client.waitForEvent({"event": "playback-start"})
        self.assertEqual((start["format"], start["channels"], start["rate"]), (1, 2, 48000))
        channel = server.channel(PLAYBACK)
        self.assertEqual(channel.mode, AudioDataMode.OPUS)
        reply, pcm = yield self.heard(client, 1.0)
        self.assertGreater(len(pcm), 0.7 * 48000 * 4)
        self.assertLess(len(pcm), 1.5 * 48000 * 4)
        self.assertLessEqual(abs(peakFrequency(pcm) - 1000), PEAK_TOLERANCE)
        # Opus: far fewer bytes on the wire than the PCM decoded.
        self.assertLess(channel.bytesSent, channel.sent * 1920 / 4)

    @defer.inlineCallbacks
    def test_playbackRaw(self):
        """
        A client without Opus (SPICE_DISABLE_OPUS) gets raw PCM, the same
        tone.
        """
        server = SoundServer(self, hz=700)
        client = yield self.connect(server, env={"SPICE_DISABLE_OPUS": "1"})
        yield client.waitForEvent({"event": "playback-start"})
        channel = server.channel(PLAYBACK)
        self.assertEqual(channel.mode, AudioDataMode.RAW)
        reply, pcm = yield self.heard(client, 1.0)
        self.assertLessEqual(abs(peakFrequency(pcm) - 700), PEAK_TOLERANCE)
        self.assertEqual(channel.bytesSent, channel.sent * 1920)

    @defer.inlineCallbacks
    def test_stopStartVolumeMuteLatency(self):
        """
        STOP and START reach the client's signals; VOLUME and MUTE its
        properties (playback and record); LATENCY its min-latency.
        """
        server = SoundServer(self, hz=1000)
        server.tone.setVolume([30000, 40000])
        server.sink.setVolume([12345])
        client = yield self.connect(server)
        volume = yield client.waitForEvent({"event": "playback-volume"})
        self.assertEqual(volume["volume"], [30000, 40000])
        recordVolume = yield client.waitForEvent({"event": "record-volume"})
        self.assertEqual(recordVolume["volume"], [12345])
        yield client.waitForEvent({"event": "playback-start"})
        since = len(client.events)
        server.tone.setMute(True)
        yield client.waitForEvent({"event": "playback-mute", "mute": True}, since=since)
        server.sink.setMute(True)
        yield client.waitForEvent({"event": "record-mute", "mute": True}, since=since)
        server.tone.setVolume([1000, 2000])
        volume = yield client.waitForEvent({"event": "playback-volume"}, since=since)
        self.assertEqual(volume["volume"], [1000, 2000])
        server.channel(PLAYBACK).playbackLatency(321)
        latency = yield client.waitForEvent(
            lambda e: e["event"] == "playback-latency" and e["min_latency"] == 321,
            since=since)
        self.assertEqual(latency["min_latency"], 321)
        server.tone.stop()
        yield client.waitForEvent({"event": "playback-stop"}, since=since)
        server.tone.start()
        yield client.waitForEvent({"event": "playback-start"}, since=since)
        server.sink.stop()
        yield client.waitForEvent({"event": "record-stop"}, since=since)

    @defer.inlineCallbacks
    def test_recordIntoWav(self):
        """
        The client's microphone audio (sent with
        spice_record_channel_send_data, Opus-encoded by spice-gtk) ends up
        in the WAV file: a second of it, at the sine's frequency.
        """
        server = SoundServer(self)
        client = yield self.connect(server)
        yield client.waitForEvent({"event": "record-start"})
        yield client.check("record_tone", hz=600, seconds=1.0)
        yield self.waitUntil(lambda: server.sink.samples >= 48000 - 480)
        self.assertEqual(server.channel(RECORD).mode, AudioDataMode.OPUS)
        with wave.open(server.recordPath) as w:
            self.assertEqual((w.getnchannels(), w.getsampwidth(), w.getframerate()),
                             (2, 2, 48000))
            pcm = w.readframes(w.getnframes())
        self.assertGreaterEqual(len(pcm), (48000 - 480) * 4)
        self.assertLessEqual(abs(peakFrequency(pcm) - 600), PEAK_TOLERANCE)

    @defer.inlineCallbacks
    def test_recordRawIntoWav(self):
        server = SoundServer(self)
        client = yield self.connect(server, env={"SPICE_DISABLE_OPUS": "1"})
        yield client.waitForEvent({"event": "record-start"})
        yield client.check("record_tone", hz=900, seconds=0.5)
        yield self.waitUntil(lambda: server.sink.samples >= 24000 - 480)
        self.assertEqual(server.channel(RECORD).mode, AudioDataMode.RAW)
        with wave.open(server.recordPath) as w:
            pcm = w.readframes(w.getnframes())
        self.assertLessEqual(abs(peakFrequency(pcm) - 900), PEAK_TOLERANCE)

    @defer.inlineCallbacks
    def test_gstreamerBackendRecordsIntoOgg(self):
        """
        spice-gtk's own GStreamer backend captures from autoaudiosrc, here
        made to pick audiotestsrc (a 440 Hz sine) by its environment, and
        plays into a pipeline given by SPICE_GST_AUDIOSINK; the client's
        audio arrives in an Ogg/Opus file that decodes to a 440 Hz tone.
        """
        if not gstreamerPlugins():
            self.fail("GStreamer's plugins are missing: apt-get install -y "
                      "gstreamer1.0-plugins-base gstreamer1.0-plugins-good")
        server = SoundServer(self, recordTo="record.ogg")
        env = {"GST_PLUGIN_FEATURE_RANK": "audiotestsrc:MAX",
               "SPICE_GST_AUDIOSINK": "appsrc name=appsrc ! fakesink name=audiosink"}
        client = yield self.connect(server, env=env, extra=["--audio-backend"])
        yield client.waitForEvent({"event": "record-start"})
        yield self.waitUntil(lambda: server.sink.samples >= 48000, timeout=30)
        server.sink.close()
        import av
        with av.open(server.recordPath) as container:
            resampler = av.AudioResampler(format="s16", layout="stereo", rate=48000)
            pcm = b"".join(bytes(c.planes[0])[:c.samples * 4]
                           for frame in container.decode(audio=0)
                           for c in resampler.resample(frame))
        self.assertGreaterEqual(len(pcm), 48000 * 4 * 0.9)
        self.assertLessEqual(abs(peakFrequency(pcm[-48000 * 4:]) - 440), PEAK_TOLERANCE)

    @defer.inlineCallbacks
    def test_recordPerSessionOggCompleteAtStop(self):
        """
        C{file:} with C{{session}}: spice-gtk's microphone goes into a file
        named after its session, and when the sink stops (the client gets
        STOP) the Ogg file is complete, while the server still runs: every
        stream in it has its end page, and it decodes to the sine sent.
        """
        from tests.test_sound import readAudio
        server = SoundServer(self, recordTo="mic-{session}.ogg")
        client = yield self.connect(server)
        yield client.waitForEvent({"event": "record-start"})
        since = len(client.events)
        yield client.check("record_tone", hz=600, seconds=1.0)
        yield self.waitUntil(lambda: server.sink.samples >= 48000 - 480)
        (session,) = server.server.sessions
        path = os.path.join(self.tmp, "mic-%d.ogg" % session)
        self.assertEqual(server.sink.files, [path])
        server.sink.stop()
        yield client.waitForEvent({"event": "record-stop"}, since=since)
        self.assertTrue(server.channel(RECORD).connected)
        pcm = readAudio(path)
        self.assertGreaterEqual(len(pcm), (48000 - 960) * 4)
        self.assertLessEqual(abs(peakFrequency(pcm[-48000 * 4:]) - 600), PEAK_TOLERANCE)


class SoundMigrationTests(InteropTestCase):
    """
    Playback and record continue on the target: the source plays 1000 Hz,
    the target 1500 Hz, and after the switch the client hears the target's
    tone and records into the target's file.
    """

    @defer.inlineCallbacks
    def migrate(self, **kwargs):
        source = SoundServer(self, hz=1000, recordTo="source.wav", **kwargs)
        target = SoundServer(self, hz=1500, recordTo="target.wav", **kwargs)
        sourcePort = yield source.listen()
        targetPort = yield target.listen()
        client = yield self.startClient(sourcePort, extra_args=["--audio"])
        yield client.waitForChannelsOpened((1, 2, 3, 4, 5, 6), timeout=20)
        yield client.waitForEvent({"event": "playback-start"})
        yield client.waitForEvent({"event": "record-start"})
        reply, pcm = yield self.heard(client, 0.5, "before.raw")
        self.assertLessEqual(abs(peakFrequency(pcm) - 1000), PEAK_TOLERANCE)
        (sessionId,) = source.server.sessions
        answers = yield source.server.migrate_connect("127.0.0.1", targetPort, None, None)
        self.assertEqual(answers, {sessionId: "connected"})
        # Nothing is played from the target before the client switches
        # (semi-seamless: its links are parked; seamless: the channel waits).
        early = target.channel(PLAYBACK)
        self.assertTrue(early is None or (not early.playing and early.sent == 0))
        since = len(client.events)
        switched = reactor.seconds()
        yield source.server.migrate_end(True)
        yield self.waitUntil(lambda: sessionId in target.server.sessions
                             and not target.server.sessions[sessionId].arriving
                             and target.channel(PLAYBACK) is not None
                             and target.channel(PLAYBACK).playing)
        yield self.waitForPeers(client, targetPort)
        start = yield client.waitForEvent({"event": "playback-start"}, since=since)
        self.gap = start["_time"] - switched
        reply, pcm = yield self.heard(client, 1.0, "after.raw")
        self.assertGreater(len(pcm), 0.7 * 48000 * 4)
        self.assertLessEqual(abs(peakFrequency(pcm) - 1500), PEAK_TOLERANCE)
        yield client.waitForEvent({"event": "record-start"}, since=since)
        yield client.check("record_tone", hz=800, seconds=0.5)
        yield self.waitUntil(lambda: target.sink.samples >= 24000 - 480)
        with wave.open(target.recordPath) as w:
            recorded = w.readframes(w.getnframes())
        self.assertLessEqual(abs(peakFrequency(recorded) - 800), PEAK_TOLERANCE)
        self.assertEqual(source.sink.samples, 0)
        return source, target

    heard = SoundTests.heard

    @defer.inlineCallbacks
    def test_semiSeamless(self):
        yield self.migrate()
        self.assertLess(self.gap, 2.0)

    @defer.inlineCallbacks
    def test_seamless(self):
        yield self.migrate(seamless_migration=True)
        self.assertLess(self.gap, 2.0)


class StreamSyncTests(InteropTestCase):
    """
    Sound and video together: while a video stream plays, spice-gtk's
    playback channel is told the stream's playback delay (LATENCY, its
    C{min-latency} property), and told again as the client's stream reports
    move it.
    """

    @defer.inlineCallbacks
    def test_minLatencyFollowsTheStreamDelay(self):
        from spicesrv.server import SpiceServer
        from spicesrv.sources.motion import VIDEO, MotionSource
        source = MotionSource(width=640, height=400, workload=VIDEO, fps=30, clock=reactor,
                              autostart=False)
        self.addCleanup(source.stop)
        server = SpiceServer(clock=reactor, password=PASSWORD, streaming_video="filter")
        tone = ToneSource(reactor, 1000)
        self.addCleanup(tone.close)
        port = yield serveOnLoopback(self, server, list(source.devices()) + [tone])
        client = yield self.startClient(port, extra_args=["--audio"])
        yield client.waitForChannelsOpened((1, 2, 5), timeout=20)
        yield client.waitForEvent({"event": "playback-start"})
        (session,) = server.sessions.values()
        self.assertEqual(session.playbackDelay, 0)
        since = len(client.events)
        source.start()
        yield self.waitUntil(lambda: session.playbackDelay > 0, timeout=20)

        def told():
            latencies = [e["min_latency"] for e in client.events[since:]
                         if e["event"] == "playback-latency"]
            return latencies and latencies[-1] == session.playbackDelay
        yield self.waitUntil(told, timeout=20)
        display = session.channels[(ChannelType.DISPLAY, 0)]
        self.assertTrue(display.streams.streams)
        self.assertEqual(session.playbackDelay, int(display.streams.rate.delayMs))
        self.assertEqual(server.sessions[session.id].channels[(PLAYBACK, 0)].delay,
                         session.playbackDelay)
