"""
Tests for sound: the playback and record channels' messages and behaviour
(in memory, through the real link stage), the devices, the Opus codec, the
built-in sources and sinks, and their plugins and options.
"""

import os
import socket
import struct
import wave

from twisted.internet import defer, reactor, task
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from spicesrv.channels.playback import PlaybackChannel
from spicesrv.display import streams
from spicesrv.display.ratecontrol import queuedBytes
from spicesrv.interfaces import IPlaybackSource, IRecordSink, ISoundPlugin
from spicesrv.plugin import soundPlugins
from spicesrv.server import InterfaceError
from spicesrv.sound import paced
from spicesrv.sound.click import ClickSound
from spicesrv.sound.codec import OpusDecoder, OpusEncoder, opusAvailable
from spicesrv.sound.file import FileSink, FileSource
from spicesrv.sound.pcm import AudioFrame, peakFrequency, silence, tone
from spicesrv.sound.tone import ToneSource, parseHz
from spicesrv.testing import (
    FakeSoundSource, LogCapture, RecordingPlaybackObserver, RecordingRecordObserver,
    RecordingSink, connectChannel, makeTestServer)
from spicesrv.wire.constants import ChannelType
from spicesrv.wire.messages import DISPLAY_CLIENT
from spicesrv.wire.sound import (
    FRAME_BYTES, FRAME_SAMPLES, MAX_OPUS_PACKET, PLAYBACK_SERVER, RECORD_CLIENT,
    RECORD_SERVER, AudioDataMode, AudioFormat, PlaybackCap, RecordCap)

PLAYBACK, RECORD = ChannelType.PLAYBACK, ChannelType.RECORD
SPICE_GTK_PLAYBACK_CAPS = {PlaybackCap.VOLUME, PlaybackCap.LATENCY, PlaybackCap.OPUS}
SPICE_GTK_RECORD_CAPS = {RecordCap.VOLUME, RecordCap.OPUS}
FRAME_SECONDS = 1.0 / 30


def soundServer(source=None, sink=None, **kwargs):
    server = makeTestServer(disable_ticketing=True, **kwargs)
    if source is not None:
        server.addInterface(source)
    if sink is not None:
        server.addInterface(sink)
    return server


class TestCase(unittest.TestCase):

    def assertNear(self, value, expected, within):
        self.assertLessEqual(abs(value - expected), within,
                             "%r is not within %r of %r" % (value, within, expected))


class WireTests(TestCase):

    def test_numbers(self):
        """
        spice-protocol's numbers for messages, caps, modes and formats.
        """
        self.assertEqual({m.name: m.number for m in PLAYBACK_SERVER if m.number > 100},
                         {"DATA": 101, "MODE": 102, "START": 103, "STOP": 104, "VOLUME": 105,
                          "MUTE": 106, "LATENCY": 107})
        self.assertEqual({m.name: m.number for m in RECORD_SERVER if m.number > 100},
                         {"START": 101, "STOP": 102, "VOLUME": 103, "MUTE": 104})
        self.assertEqual({m.name: m.number for m in RECORD_CLIENT if m.number > 100},
                         {"DATA": 101, "MODE": 102, "START_MARK": 103})
        self.assertEqual([int(c) for c in PlaybackCap], [0, 1, 2, 3])
        self.assertEqual([int(c) for c in RecordCap], [0, 1, 2])
        self.assertEqual((AudioDataMode.RAW, AudioDataMode.CELT_0_5_1, AudioDataMode.OPUS),
                         (1, 2, 3))
        self.assertEqual(AudioFormat.S16, 1)
        self.assertEqual((FRAME_SAMPLES, FRAME_BYTES, MAX_OPUS_PACKET), (480, 1920, 480))

    def test_layouts(self):
        """
        START is channels u32, format u16, frequency u32 (and time u32 for
        playback); MODE is time u32, mode u16, data; VOLUME nchannels u8 and
        a u16 per channel.
        """
        self.assertEqual(PLAYBACK_SERVER["START"].pack(channels=2, format=1, frequency=48000,
                                                       time=7),
                         struct.pack("<IHII", 2, 1, 48000, 7))
        self.assertEqual(RECORD_SERVER["START"].pack(channels=2, format=1, frequency=48000),
                         struct.pack("<IHI", 2, 1, 48000))
        self.assertEqual(PLAYBACK_SERVER["MODE"].pack(time=5, mode=3, data=b""),
                         struct.pack("<IH", 5, 3))
        self.assertEqual(PLAYBACK_SERVER["DATA"].pack(time=9, data=b"ab"),
                         struct.pack("<I", 9) + b"ab")
        self.assertEqual(PLAYBACK_SERVER["VOLUME"].pack(volume=[1, 65535]),
                         struct.pack("<BHH", 2, 1, 65535))
        self.assertEqual(PLAYBACK_SERVER["MUTE"].pack(mute=1), b"\1")
        self.assertEqual(PLAYBACK_SERVER["LATENCY"].pack(latency_ms=300), struct.pack("<I", 300))
        mode = RECORD_CLIENT["MODE"].unpack(struct.pack("<IH", 1, 3))
        self.assertEqual((mode.time, mode.mode, mode.data), (1, 3, b""))


class CodecTests(TestCase):

    def setUp(self):
        if not opusAvailable():
            self.fail("PyAV with libopus is a dependency of spicesrv (pip install av)")

    def test_roundTrip(self):
        """
        A second of a tone survives Opus: one packet per 10 ms frame, each
        within what a SPICE client accepts, and the same peak.
        """
        encoder, decoder = OpusEncoder(), OpusDecoder()
        pcm = tone(1000, 0, 48000)
        out = []
        for offset in range(0, len(pcm), FRAME_BYTES):
            packet = encoder.encode(pcm[offset:offset + FRAME_BYTES])
            self.assertTrue(0 < len(packet) <= MAX_OPUS_PACKET)
            out.append(decoder.decode(packet))
        self.assertEqual(sum(map(len, out)), len(pcm))
        self.assertNear(peakFrequency(b"".join(out)), 1000, 5)

    def test_badPacket(self):
        from spicesrv.sound.codec import CodecError
        self.assertRaises(CodecError, OpusDecoder().decode, b"\xff" * 3)

    def test_frameSize(self):
        from spicesrv.sound.codec import CodecError
        self.assertRaises(CodecError, OpusEncoder().encode, b"\0" * 100)


class DeviceTests(TestCase):

    def test_verified(self):
        self.assertTrue(verifyObject(IPlaybackSource, FakeSoundSource()))
        self.assertTrue(verifyObject(IRecordSink, RecordingSink()))

    def test_framing(self):
        """
        Written samples go out in whole 10 ms frames; the rest waits.
        """
        source, observer = FakeSoundSource(), RecordingPlaybackObserver()
        source.addObserver(observer)
        source.write(b"\1" * 1000)
        self.assertEqual(observer.frames, [])
        source.start()
        source.write(b"\1" * 1000)
        source.write(b"\2" * 3000)
        self.assertEqual([len(f.pcm) for f in observer.frames], [1920, 1920])
        self.assertEqual([f.serial for f in observer.frames], [0, 1])
        source.stop()
        self.assertEqual(observer.events, [("started",), ("stopped",)])

    def test_volumeChecked(self):
        source = FakeSoundSource()
        self.assertRaises(ValueError, source.setVolume, [])
        self.assertRaises(ValueError, source.setVolume, [70000])
        source.setVolume([1, 2])
        self.assertEqual(source.volume, (1, 2))

    def test_sinkWholeSamples(self):
        """
        A sink gets whole stereo samples; a split one waits for its rest.
        """
        sink = RecordingSink()
        sink.record_data(b"\1\2\3")
        sink.record_data(b"\4\5")
        self.assertEqual((sink.pcm, sink.samples), (b"\1\2\3\4", 1))

    def test_inactiveSinkIgnores(self):
        sink = RecordingSink(active=False)
        sink.record_data(b"\0" * 8)
        self.assertEqual(sink.pcm, b"")

    def test_observerFailureContained(self):
        source = FakeSoundSource()

        class Broken(RecordingPlaybackObserver):
            def playback_started(self):
                raise RuntimeError("boom")
        good = RecordingPlaybackObserver()
        source.addObserver(Broken())
        source.addObserver(good)
        logs = LogCapture(self)
        source.start()
        self.assertEqual(good.events, [("started",)])
        self.assertTrue(logs.matching("observer failed"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ToneTests(TestCase):

    def test_pacedByTheClock(self):
        """
        A second of the clock is a second of sound, in 10 ms frames, at the
        tone's frequency, made only while someone listens.
        """
        clock = Clock()
        source = ToneSource(clock, 1000)
        clock.advance(1)
        observer = RecordingPlaybackObserver()
        source.addObserver(observer)
        for _ in range(100):
            clock.advance(0.01)
        self.assertTrue(99 <= len(observer.frames) <= 102, len(observer.frames))
        pcm = b"".join(f.pcm for f in observer.frames)
        self.assertNear(peakFrequency(pcm), 1000, 3)
        source.removeObserver(observer)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_stallSkipped(self):
        """
        After a stall of the reactor the source does not burst out the
        sound it missed.
        """
        clock = Clock()
        source = ToneSource(clock, 440)
        observer = RecordingPlaybackObserver()
        source.addObserver(observer)
        clock.advance(0)
        del observer.frames[:]
        clock.advance(5)
        self.assertLessEqual(len(observer.frames) * 0.01, paced.MAX_CATCH_UP + 0.02)

    def test_parseHz(self):
        self.assertEqual(parseHz(""), 440)
        self.assertEqual(parseHz("1000"), 1000)
        self.assertRaises(ValueError, parseHz, "loud")
        self.assertRaises(ValueError, parseHz, "5")
        self.assertRaises(ValueError, parseHz, "30000")


class ClickTests(TestCase):

    def test_beepThenStop(self):
        """
        A click starts the sound with a beep at its pitch; once quiet, it
        stops.  Without a listener a click costs nothing.
        """
        clock = Clock()
        sound = ClickSound(clock)
        sound.click()
        self.assertFalse(sound.active)
        observer = RecordingPlaybackObserver()
        sound.addObserver(observer)
        sound.click(1320.0)
        for _ in range(100):
            clock.advance(0.01)
        self.assertEqual(observer.events, [("started",), ("stopped",)])
        beep = b"".join(f.pcm for f in observer.frames[:6])
        self.assertNear(peakFrequency(beep), 1320, 20)

    def test_demoClicks(self):
        from spicesrv.sources.demo import DemoSource
        clock = Clock()
        demo = DemoSource(width=320, height=240, clock=clock)
        self.assertIn(demo.sound, demo.devices())
        observer = RecordingPlaybackObserver()
        demo.sound.addObserver(observer)
        demo.mouse.buttons(1)
        self.assertTrue(demo.sound.active)


class FileTests(TestCase):

    def roundTrip(self, name):
        path = self.mktemp() + name
        sink = FileSink(path)
        self.assertTrue(sink.active)
        sink.record_data(tone(750, 0, 48000))
        sink.close()
        clock = Clock()
        source = FileSource(clock, path)
        observer = RecordingPlaybackObserver()
        source.addObserver(observer)
        for _ in range(250):
            clock.advance(0.01)
        pcm = b"".join(f.pcm for f in observer.frames)
        # Looped: 2.5 s of sound from a 1 s file.
        self.assertGreater(len(observer.frames), 240)
        self.assertNear(peakFrequency(pcm), 750, 3)
        source.close()
        return path

    def test_wav(self):
        path = self.roundTrip(".wav")
        with wave.open(path) as w:
            self.assertEqual((w.getnchannels(), w.getsampwidth(), w.getframerate(),
                              w.getnframes()), (2, 2, 48000, 48000))

    def test_wavHeaderValidWhileRecording(self):
        path = self.mktemp() + ".wav"
        sink = FileSink(path)
        sink.record_data(silence(4800))
        with wave.open(path) as w:
            self.assertEqual(w.getnframes(), 4800)
        sink.close()

    def test_oggOpus(self):
        path = self.roundTrip(".ogg")
        with open(path, "rb") as f:
            head = f.read(64)
        self.assertTrue(head.startswith(b"OggS"))
        self.assertIn(b"OpusHead", head)

    def test_missingFile(self):
        self.assertRaises(ValueError, FileSource, Clock(), self.mktemp())

    def test_notAudio(self):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"not audio at all" * 10)
        self.assertRaises(ValueError, FileSource, Clock(), path)

    def test_unwritable(self):
        self.assertRaises(ValueError, FileSink, os.path.join(self.mktemp(), "no", "x.wav"))


class PlaybackChannelTests(TestCase):

    def link(self, caps=frozenset(SPICE_GTK_PLAYBACK_CAPS), **kwargs):
        self.source = kwargs.pop("source", None) or FakeSoundSource()
        self.server = soundServer(self.source, **kwargs)
        return connectChannel(self.server, PLAYBACK, channel_caps=caps)

    def test_advertised(self):
        client = self.link()
        self.assertEqual(client.serverChannelCaps, {PlaybackCap.VOLUME, PlaybackCap.OPUS})

    def test_rawForAClientWithoutOpus(self):
        """
        MODE RAW first; then START once the source plays; each frame is one
        DATA of raw PCM stamped with the multimedia time.
        """
        client = self.link(caps={PlaybackCap.VOLUME})
        mode = client.next("MODE")
        self.assertEqual(mode.mode, AudioDataMode.RAW)
        self.assertEqual(client.names(), [])
        self.source.start()
        start = client.next("START")
        self.assertEqual((start.channels, start.format, start.frequency), (2, 1, 48000))
        self.assertEqual(start.time, self.server.context.mmTime())
        pcm = tone(440, 0, FRAME_SAMPLES)
        self.source.write(pcm)
        data = client.next("DATA")
        self.assertEqual((data.time, data.data), (self.server.context.mmTime(), pcm))
        self.source.stop()
        self.assertEqual(client.names(), ["STOP"])

    def test_opusNegotiated(self):
        """
        spice-gtk's caps get Opus: each frame is one packet that decodes to
        the tone.
        """
        client = self.link()
        self.assertEqual(client.next("MODE").mode, AudioDataMode.OPUS)
        self.assertIsInstance(client.channel.channel if hasattr(client.channel, "channel")
                              else client.channel, PlaybackChannel)
        self.source.start()
        decoder = OpusDecoder()
        pcm = tone(1000, 0, 48000)
        self.source.write(pcm)
        packets = [record.data for name, record in client.take() if name == "DATA"]
        self.assertEqual(len(packets), 100)
        self.assertLess(sum(map(len, packets)), len(pcm) / 5)
        decoded = b"".join(decoder.decode(p) for p in packets)
        self.assertNear(peakFrequency(decoded), 1000, 5)

    def test_compressionOff(self):
        server = makeTestServer(disable_ticketing=True)
        server.playbackCompression = False
        server.addInterface(FakeSoundSource())
        client = connectChannel(server, PLAYBACK, channel_caps=SPICE_GTK_PLAYBACK_CAPS)
        self.assertEqual(client.next("MODE").mode, AudioDataMode.RAW)

    def test_startsPlayingSource(self):
        """
        A client that links while the source plays gets MODE then START.
        """
        source = FakeSoundSource()
        source.start()
        client = self.link(source=source)
        self.assertEqual(client.names(), ["MODE", "START"])

    def test_volumeAndMute(self):
        """
        A source with a volume tells it (and its mute) on link and on every
        change, to clients with SPICE_PLAYBACK_CAP_VOLUME.
        """
        source = FakeSoundSource()
        source.setVolume([1000, 2000])
        client = self.link(source=source)
        messages = client.take()
        self.assertEqual([n for n, _ in messages], ["MODE", "VOLUME", "MUTE"])
        self.assertEqual(messages[1][1].volume, [1000, 2000])
        self.assertEqual(messages[2][1].mute, 0)
        self.source.setMute(True)
        self.source.setVolume([5])
        messages = client.take()
        self.assertEqual([(n, r) for n, r in messages][0][1].mute, 1)
        self.assertEqual(messages[1][1].volume, [5])

    def test_noVolumeWithoutCap(self):
        client = self.link(caps=set())
        self.source.setVolume([1])
        self.source.setMute(True)
        self.assertEqual(client.names(), ["MODE"])

    def test_latency(self):
        """
        LATENCY goes only to clients with SPICE_PLAYBACK_CAP_LATENCY; a
        session broadcast reaches the channel.
        """
        client = self.link()
        client.take()
        client.channel.session.broadcast("playbackLatency", 250)
        self.assertEqual(client.next("LATENCY").latency_ms, 250)
        other = connectChannel(self.server, PLAYBACK, channel_caps={PlaybackCap.VOLUME})
        other.take()
        other.channel.session.broadcast("playbackLatency", 250)
        self.assertEqual(other.names(), [])

    def test_backPressureDrops(self):
        """
        While the client's socket is full the frames are dropped, not
        queued; sound goes on once it drains.
        """
        client = self.link(caps=set())
        self.source.start()
        client.take()
        channel = client.channel
        channel.pauseProducing()
        self.source.write(silence(FRAME_SAMPLES * 50))
        self.assertEqual(client.names(), [])
        self.assertEqual((channel.sent, channel.dropped), (0, 50))
        channel.resumeProducing()
        self.source.write(silence(FRAME_SAMPLES))
        self.assertEqual(client.names(), ["DATA"])

    def test_severalClients(self):
        """
        Every client hears the source; Opus is encoded once per frame for
        all of them.
        """
        first = self.link()
        second = connectChannel(self.server, PLAYBACK, channel_caps=SPICE_GTK_PLAYBACK_CAPS)
        self.source.start()
        self.source.write(tone(440, 0, FRAME_SAMPLES))
        a, b = first.next("DATA"), second.next("DATA")
        self.assertEqual(a.data, b.data)

    def test_unlinkStopsObserving(self):
        client = self.link()
        self.assertEqual(len(self.source.observers), 1)
        client.channel.transport.loseConnection()
        client.protocol.connectionLost(None)
        self.assertEqual(self.source.observers, [])

    def test_waitsForMigratingClient(self):
        """
        On a migration target the channel says nothing until its client has
        arrived; after a seamless switch it restarts the stream the client
        kept from the source.
        """
        client = self.link()
        session = client.channel.session

        class Arriving:
            inProgress = True
            restoring = True
            parksLinks = False

            def abandon(self):
                pass
        session.arrival = Arriving()
        channel = PlaybackChannel(session, client.channel.info, self.source)
        from twisted.internet.testing import StringTransport
        transport = StringTransport()
        channel.makeConnection(transport)
        self.source.start()
        self.source.write(silence(FRAME_SAMPLES))
        self.assertEqual(transport.value(), b"")
        session.arrival.inProgress = False
        session.arrival.restoring = False
        channel.clientArrived()
        from spicesrv.testing import ServerMessages
        received = ServerMessages(PLAYBACK_SERVER, mini=True)
        received.feed(transport.value())
        names = [n for n, _ in received.messages]
        self.assertEqual(names[:3], ["STOP", "MODE", "START"])


class RecordChannelTests(TestCase):

    def link(self, caps=frozenset(SPICE_GTK_RECORD_CAPS), sink=None, server=None):
        if server is None:
            self.sink = sink if sink is not None else RecordingSink()
            self.server = server = soundServer(sink=self.sink)
        return connectChannel(server, RECORD, channel_caps=caps)

    def test_advertised(self):
        client = self.link()
        self.assertEqual(client.serverChannelCaps, {RecordCap.VOLUME, RecordCap.OPUS})

    def test_raw(self):
        """
        START (2 channels, S16, 48 kHz); the client's MODE RAW, START_MARK
        and DATA reach the sink as they are.
        """
        client = self.link()
        start = client.next("START")
        self.assertEqual((start.channels, start.format, start.frequency), (2, 1, 48000))
        client.send(RECORD_CLIENT["MODE"], time=1, mode=AudioDataMode.RAW, data=b"")
        client.send(RECORD_CLIENT["START_MARK"], time=1)
        pcm = tone(440, 0, FRAME_SAMPLES)
        client.send(RECORD_CLIENT["DATA"], time=2, data=pcm + b"\1")
        self.assertEqual(self.sink.pcm, pcm)
        self.assertEqual(client.channel.startMark, 1)

    def test_opus(self):
        client = self.link()
        client.send(RECORD_CLIENT["MODE"], time=1, mode=AudioDataMode.OPUS, data=b"")
        encoder = OpusEncoder()
        pcm = tone(600, 0, 48000)
        for offset in range(0, len(pcm), FRAME_BYTES):
            client.send(RECORD_CLIENT["DATA"], time=3,
                        data=encoder.encode(pcm[offset:offset + FRAME_BYTES]))
            # A channel handles at most 64 messages per reactor turn.
            self.server.clock.advance(0)
        self.assertEqual(len(self.sink.pcm), len(pcm))
        self.assertNear(peakFrequency(self.sink.pcm), 600, 5)

    def test_undecodableDropped(self):
        client = self.link()
        client.send(RECORD_CLIENT["MODE"], time=1, mode=AudioDataMode.OPUS, data=b"")
        client.send(RECORD_CLIENT["DATA"], time=3, data=b"\xff\xff\xff")
        self.assertEqual(self.sink.pcm, b"")
        self.assertEqual(client.channel.undecodable, 1)
        self.assertTrue(client.channel.connected)

    def test_unsupportedModeDropped(self):
        client = self.link()
        client.send(RECORD_CLIENT["MODE"], time=1, mode=AudioDataMode.CELT_0_5_1, data=b"")
        client.send(RECORD_CLIENT["DATA"], time=3, data=b"\0" * 40)
        self.assertEqual(self.sink.pcm, b"")

    def test_startStop(self):
        sink = RecordingSink(active=False)
        client = self.link(sink=sink)
        self.assertEqual(client.names(), [])
        sink.start()
        sink.stop()
        self.assertEqual(client.names(), ["START", "STOP"])
        client.send(RECORD_CLIENT["DATA"], time=3, data=b"\0" * 40)
        self.assertEqual(sink.pcm, b"")

    def test_volume(self):
        sink = RecordingSink()
        sink.setVolume([300])
        client = self.link(sink=sink)
        self.assertEqual(client.names(), ["VOLUME", "MUTE", "START"])
        observer = RecordingRecordObserver()
        sink.addObserver(observer)
        sink.setMute(True)
        self.assertEqual(observer.events, [("mute", True)])
        self.assertEqual(client.names(), ["MUTE"])

    def test_newerClientReplaces(self):
        """
        One client records at a time, as with libspice: a newer record
        channel closes the older one.
        """
        first = self.link()
        second = self.link(server=self.server)
        self.assertTrue(first.channel.closing)
        self.assertFalse(second.channel.closing)


class ServerTests(TestCase):

    def test_channelsOffered(self):
        server = soundServer(FakeSoundSource(), RecordingSink())
        kinds = [(e.channel_type, e.channel_id) for e in server.registry.entries()]
        self.assertIn((PLAYBACK, 0), kinds)
        self.assertIn((RECORD, 0), kinds)

    def test_oneEach(self):
        server = soundServer(FakeSoundSource())
        self.assertRaises(InterfaceError, server.addInterface, FakeSoundSource())

    def test_removeInterface(self):
        source = FakeSoundSource()
        server = soundServer(source)
        client = connectChannel(server, PLAYBACK)
        server.removeInterface(source)
        self.assertIsNone(server.registry.lookup(PLAYBACK, 0))
        self.assertTrue(client.channel.closing)
        server.addInterface(FakeSoundSource())
        self.assertRaises(InterfaceError, server.removeInterface, source)


class PluginTests(TestCase):

    def test_found(self):
        plugins = soundPlugins()
        for name in ("tone", "file", "pulse"):
            self.assertTrue(verifyObject(ISoundPlugin, plugins[name]))

    def options(self, *argv):
        from spicesrv.tap import buildOptions
        options = buildOptions()()
        options.parseOptions(list(argv))
        return options

    def test_options(self):
        path = self.mktemp() + ".wav"
        from spicesrv.tap import makeServer
        from twisted.internet.testing import MemoryReactorClock
        reactor = MemoryReactorClock()
        server, _ = makeServer(self.options("--playback", "tone:1000", "--record",
                                            "file:" + path), reactor)
        self.assertIsInstance(server.playback, ToneSource)
        self.assertEqual(server.playback.hz, 1000)
        self.assertIsInstance(server.record, FileSink)
        self.addCleanup(server.record.close)
        self.assertTrue(server.playbackCompression)
        self.assertEqual(len(reactor.triggers["before"]["shutdown"]), 2)

    def test_demoBeepsWithoutPlayback(self):
        from spicesrv.tap import makeServer
        from twisted.internet.testing import MemoryReactorClock
        server, source = makeServer(self.options(), MemoryReactorClock())
        self.assertIs(server.playback, source.sound)
        self.assertIsNone(server.record)

    def test_compressionOff(self):
        from spicesrv.tap import makeServer
        from twisted.internet.testing import MemoryReactorClock
        server, _ = makeServer(self.options("--playback", "tone", "--playback-compression",
                                            "off"), MemoryReactorClock())
        self.assertFalse(server.playbackCompression)

    def test_errors(self):
        from spicesrv.tap import makeServer
        from twisted.internet.testing import MemoryReactorClock
        for argv, text in ((("--playback", "nothing"), "unknown"),
                           (("--playback", "tone:loud"), "frequency"),
                           (("--record", "tone"), "sound source"),
                           (("--playback", "file"), "file:PATH"),
                           (("--playback-compression", "maybe"), "on or off")):
            with self.assertRaises(SystemExit) as e:
                makeServer(self.options(*argv), MemoryReactorClock())
            self.assertIn(text, str(e.exception))


class FrameTests(TestCase):

    def test_frameSize(self):
        self.assertRaises(ValueError, AudioFrame, b"\0" * 10)
        self.assertRaises(ValueError, AudioFrame(b"\0" * FRAME_BYTES).opus)


class SyncTests(TestCase):
    """
    Sound and video streams in step: the display streams' playback delay
    reaches the playback channel as LATENCY, and the sound is stamped on
    the frames' clock (the multimedia time plus that delay).
    """

    CAPS = {PlaybackCap.VOLUME, PlaybackCap.LATENCY}

    def setUp(self):
        from tests.test_display_streams import StreamingSetup

        class Streaming(StreamingSetup):
            pass
        self.video = Streaming()
        self.video.assertEqual = self.assertEqual
        self.video.addCleanup = self.addCleanup
        self.video.setUp()
        self.server = self.video.server
        self.clock = self.video.clock
        self.tone = ToneSource(self.clock, 1000)
        self.server.addInterface(self.tone)
        self.session = self.server.sessions[self.video.sessionId]
        self.audio = []

    def linkPlayback(self, caps=CAPS):
        from spicesrv.testing import TestClientChannel
        client = TestClientChannel(self.server, PLAYBACK, connection_id=self.video.sessionId,
                                   channel_caps=caps)
        self.playback = client
        return client

    def play(self, seconds):
        self.video.play(seconds)
        self.audio.extend(self.playback.take())

    def latencies(self):
        return [r.latency_ms for n, r in self.audio if n == "LATENCY"]

    def lastData(self):
        return [r for n, r in self.audio if n == "DATA"][-1].time

    def assertStamped(self, delay):
        """
        The newest sound frame carries the multimedia time plus C{delay}
        (it was made within the tone's last 20 ms tick).
        """
        now = self.server.mmTime()
        self.assertTrue(now + delay - 1000 * paced.TICK <= self.lastData() <= now + delay,
                        (self.lastData(), now, delay))

    def test_latencyFollowsTheStreamDelay(self):
        """
        No LATENCY before a stream; when one starts, LATENCY says its delay
        and the sound is stamped that far ahead, as the frames are; a late
        STREAM_REPORT raises both; when the stream ends no LATENCY 0 goes
        out and the stamps come back to the clock without going backwards.
        """
        self.linkPlayback()
        self.play(0.3)
        self.assertEqual(self.latencies(), [])
        self.assertStamped(0)

        self.video.source.start()
        self.play(1.0)
        manager = self.video.channel.streams
        (stream,) = manager.streams.values()
        delay = int(manager.rate.delayMs)
        self.assertEqual(self.latencies(), [delay])
        self.assertEqual(self.session.playbackDelay, delay)
        self.assertStamped(delay)
        frameTime = self.video.surface.frameTimes[-1]
        self.assertNear(frameTime, self.lastData(), 1000 * (FRAME_SECONDS + paced.TICK))

        self.video.client.send(DISPLAY_CLIENT["STREAM_REPORT"], stream_id=stream.id,
                               unique_id=stream.reportId, start_frame_mm_time=1,
                               end_frame_mm_time=2, num_frames=5, num_drops=3,
                               last_frame_delay=-40, audio_delay=0xFFFFFFFF)
        raised = int(manager.rate.delayMs)
        self.assertGreater(raised, delay)
        self.play(0.2)
        self.assertEqual(self.latencies(), [delay, raised])
        self.assertStamped(raised)

        self.video.source.stop()
        self.play(streams.STREAM_TIMEOUT + 0.5)
        self.assertEqual(manager.streams, {})
        self.assertEqual(self.session.playbackDelay, 0)
        self.assertEqual(self.latencies(), [delay, raised])
        self.play(1.0)
        self.assertStamped(0)
        times = [r.time for n, r in self.audio if n in ("START", "DATA")]
        self.assertEqual(times, sorted(times))

    def test_linkedDuringAStream(self):
        """
        A playback channel linked while a stream plays gets LATENCY right
        after START (spice-gtk resets its min-latency on START), and its
        sound is stamped with the delay from the first packet; a client
        without SPICE_PLAYBACK_CAP_LATENCY gets the same stamps, no LATENCY.
        """
        self.video.source.start()
        self.video.play(1.0)
        delay = self.session.playbackDelay
        self.assertGreater(delay, 0)
        self.linkPlayback()
        self.play(0.1)
        self.assertEqual([n for n, _ in self.audio][:3], ["MODE", "START", "LATENCY"])
        self.assertEqual(self.latencies(), [delay])
        start = [r for n, r in self.audio if n == "START"][0]
        self.assertEqual(start.time, (self.server.mmTime() - 100 + delay))
        self.assertStamped(delay)
        self.audio = []
        self.linkPlayback(caps={PlaybackCap.VOLUME})
        self.play(0.1)
        self.assertEqual(self.latencies(), [])
        self.assertStamped(delay)

    def test_largestDelayOfTheSession(self):
        """
        The session's playback delay is the largest of its stream managers'
        delays; LATENCY follows it up and down, but never to 0.
        """
        self.linkPlayback()
        self.playback.take()
        first, second = object(), object()
        self.session.videoDelay(first, 100)
        self.session.videoDelay(second, 250)
        self.session.videoDelay(first, 120)
        self.session.videoDelay(second, 0)
        self.session.videoDelay(first, 0)
        self.assertEqual(self.session.playbackDelay, 0)
        self.assertEqual([r.latency_ms for n, r in self.playback.take() if n == "LATENCY"],
                         [100, 250, 120])

    def test_stampsNeverGoBack(self):
        """
        When the delay shrinks the sound's stamps wait for the clock instead
        of going back (spice-gtk warns of an older packet and resets its
        clock).
        """
        self.linkPlayback()
        self.play(0.1)
        self.session.broadcast("playbackLatency", 300)
        self.play(0.1)
        high = self.lastData()
        self.session.broadcast("playbackLatency", 0)
        self.play(0.2)
        self.assertEqual(self.lastData(), high)
        self.play(0.2)
        self.assertStamped(0)
        times = [r.time for n, r in self.audio if n == "DATA"]
        self.assertEqual(times, sorted(times))


class RealSocketTests(TestCase):
    """
    Back-pressure on real loopback sockets, run by the real reactor: the
    tone plays on a clock the test fast-forwards (ten seconds of sound in
    far less), the server's sockets are real.
    """

    timeout = 120

    @defer.inlineCallbacks
    def test_clientThatDoesNotReadGetsDrops(self):
        """
        One client links main and playback, then stops reading while ten
        seconds of raw PCM (about 1.9 MB) play: what the server holds for
        it (Twisted's buffer plus the kernel's send queue) stays within the
        transport's buffer size and the socket's send buffer, the frames it
        could not take are counted as dropped, and every frame made for it
        is either sent or dropped.  Meanwhile a second client's playback
        gets every frame.  Once the first client reads again, its sound
        goes on.
        """
        from tests.test_fairness import LoopbackServer
        toneClock = Clock()
        tone = ToneSource(toneClock, 440)
        loopback = LoopbackServer(self, tone)

        _, stalledId = yield loopback.client()
        stalled = yield loopback.connect(PLAYBACK, stalledId, read=False)
        _, flowingId = yield loopback.client()
        flowing = yield loopback.connect(PLAYBACK, flowingId)
        stalledChannel = loopback.server.sessions[stalledId].channels[(PLAYBACK, 0)]
        flowingChannel = loopback.server.sessions[flowingId].channels[(PLAYBACK, 0)]
        self.assertEqual((stalledChannel.mode, flowingChannel.mode),
                         (AudioDataMode.RAW, AudioDataMode.RAW))
        transport = stalledChannel.transport
        # Without this the kernel's send buffer grows (autotuning) to
        # megabytes first; set, it bounds the kernel's part.
        transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
        sendBuffer = transport.getHandle().getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)

        def held():
            return len(transport.dataBuffer) - transport.offset + transport._tempDataLen

        message = 6 + 4 + FRAME_BYTES          # mini header, time, one frame
        mostHeld = transport.bufferSize + 2 * message
        made = tone.frames
        largest = 0
        for _ in range(500):                   # 10 s of sound, 20 ms a step
            toneClock.advance(paced.TICK)
            yield task.deferLater(reactor, 0, lambda: None)
            largest = max(largest, held())
            self.assertLessEqual(queuedBytes(transport), mostHeld + sendBuffer)
        made = tone.frames - made
        self.assertEqual(made, 1000)
        self.assertLessEqual(largest, mostHeld)
        self.assertGreater(stalledChannel.dropped, 0)
        self.assertEqual(stalledChannel.sent + stalledChannel.dropped, made)
        self.assertTrue(stalledChannel.connected)
        self.assertLess(stalledChannel.sent * message, made * message - transport.bufferSize)

        # The other client heard all of it meanwhile.
        self.assertEqual((flowingChannel.sent, flowingChannel.dropped), (made, 0))
        for _ in range(1000):
            if len([n for n, _ in flowing.messages.messages if n == "DATA"]) == made:
                break
            yield task.deferLater(reactor, 0.01, lambda: None)
        self.assertEqual(len([n for n, _ in flowing.messages.messages if n == "DATA"]), made)

        # Reading again, the first client gets sound again.
        sent = stalledChannel.sent
        stalled.transport.resumeProducing()
        for _ in range(1000):
            toneClock.advance(paced.TICK)
            yield task.deferLater(reactor, 0.001, lambda: None)
            if stalledChannel.sent > sent + 10:
                break
        self.assertGreater(stalledChannel.sent, sent + 10)


def readAudio(path):
    """
    Decode an audio file (WAV or Ogg, chained streams included) to 48 kHz
    stereo S16; check that an Ogg file's every stream is complete (ends
    with an end-of-stream page).
    """
    import av
    with open(path, "rb") as f:
        data = f.read()
    if data.startswith(b"OggS"):
        begun, ended, at = set(), set(), 0
        while True:
            at = data.find(b"OggS", at)
            if at < 0:
                break
            flags, serial = data[at + 5], struct.unpack_from("<I", data, at + 14)[0]
            if flags & 2:
                begun.add(serial)
            if flags & 4:
                ended.add(serial)
            at += 4
        if not begun or begun != ended:
            raise AssertionError("%s: Ogg streams %r begun, %r ended" % (path, begun, ended))
    with av.open(path) as container:
        resampler = av.AudioResampler(format="s16", layout="stereo", rate=48000)
        return b"".join(bytes(c.planes[0])[:c.samples * 4]
                        for frame in container.decode(audio=0)
                        for c in resampler.resample(frame))


class RecordFileTests(TestCase):
    """
    C{file:} recording per client: C{{session}} / C{{n}} patterns and
    directories, and files complete when a recording ends, while the
    server runs.
    """

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def sink(self, path):
        sink = FileSink(path)
        self.addCleanup(sink.close)
        self.server = soundServer(sink=sink)
        return sink

    def record(self, hz, seconds=0.5, client=None):
        """
        Link a record channel (a new client unless C{client}) and send
        C{seconds} of a sine as raw DATA.
        """
        if client is None:
            client = connectChannel(self.server, RECORD, channel_caps={RecordCap.VOLUME})
        client.send(RECORD_CLIENT["MODE"], time=1, mode=AudioDataMode.RAW, data=b"")
        client.send(RECORD_CLIENT["START_MARK"], time=1)
        pcm = tone(hz, 0, int(48000 * seconds))
        for offset in range(0, len(pcm), FRAME_BYTES):
            client.send(RECORD_CLIENT["DATA"], time=2, data=pcm[offset:offset + FRAME_BYTES])
            self.server.clock.advance(0)
        return client

    def assertTone(self, path, hz, seconds=0.5):
        pcm = readAudio(path)
        self.assertNear(len(pcm) / 4 / 48000, seconds, 0.03)
        self.assertNear(peakFrequency(pcm), hz, 5)

    def test_sessionPattern(self):
        """
        With C{{session}} each client records into its own Ogg file; the
        first client's file is complete as soon as a newer client takes the
        sink over, the second's once the sink stops (STOP), both while the
        server still runs.
        """
        sink = self.sink(os.path.join(self.dir, "mic-{session}.ogg"))
        self.assertEqual(os.listdir(self.dir), [])
        first = self.record(500)
        firstPath = os.path.join(self.dir, "mic-%d.ogg" % first.channel.session.id)
        self.assertEqual(sink.files, [firstPath])
        second = self.record(900)
        self.assertTrue(first.channel.closing)
        self.assertTone(firstPath, 500)
        secondPath = os.path.join(self.dir, "mic-%d.ogg" % second.channel.session.id)
        self.assertEqual(sink.files, [firstPath, secondPath])
        second.take()
        sink.stop()
        self.assertEqual(second.names(), ["STOP"])
        self.assertTone(secondPath, 900)
        self.assertTrue(second.channel.connected)

    def test_directoryAndRecordingNumbers(self):
        """
        A directory gets C{session-ID.wav}; the same client recording again
        (after STOP, START) gets a new file beside it, never overwriting;
        a client whose record channel closes has its file complete.
        """
        sink = self.sink(self.dir)
        client = self.record(600)
        session = client.channel.session.id
        sink.stop()
        sink.start()
        self.record(700, client=client)
        client.channel.transport.loseConnection()
        client.protocol.connectionLost(None)
        names = ["session-%d.wav" % session, "session-%d-2.wav" % session]
        self.assertEqual(sorted(os.listdir(self.dir)), sorted(names))
        self.assertTone(os.path.join(self.dir, names[0]), 600)
        self.assertTone(os.path.join(self.dir, names[1]), 700)

    def test_numberPattern(self):
        sink = self.sink(os.path.join(self.dir, "take-{n}-{session}.wav"))
        client = self.record(600, seconds=0.1)
        sink.stop()
        sink.start()
        self.record(600, seconds=0.1, client=client)
        session = client.channel.session.id
        self.assertEqual(sorted(os.listdir(self.dir)),
                         ["take-1-%d.wav" % session, "take-2-%d.wav" % session])

    def test_oneOggFileChainsRecordings(self):
        """
        Without a pattern one Ogg file takes every recording, each a
        chained stream complete when it ends: after the first recording's
        STOP the file is whole, and after the second it holds both.
        """
        path = os.path.join(self.dir, "all.ogg")
        sink = self.sink(path)
        client = self.record(500)
        sink.stop()
        self.assertTone(path, 500)
        sink.start()
        self.record(900, client=client)
        sink.stop()
        pcm = readAudio(path)
        self.assertNear(len(pcm) / 4 / 48000, 1.0, 0.05)
        self.assertNear(peakFrequency(pcm[:24000 * 4]), 500, 5)
        self.assertNear(peakFrequency(pcm[-24000 * 4:]), 900, 5)
        self.assertEqual(sink.files, [path])

    def test_oneWavFileKeepsEverything(self):
        path = os.path.join(self.dir, "all.wav")
        sink = self.sink(path)
        client = self.record(500, seconds=0.2)
        sink.stop()
        sink.start()
        self.record(500, seconds=0.2, client=client)
        with wave.open(path) as w:
            self.assertEqual(w.getnframes(), 2 * 9600)

    def test_badPaths(self):
        for path, text in ((os.path.join(self.dir, "x-{who}.wav"), "pattern"),
                           (os.path.join(self.dir, "x-{session.wav"), "pattern"),
                           (os.path.join(self.dir, "missing") + os.sep, "no such directory"),
                           (os.path.join(self.dir, "missing", "{session}.wav"), "cannot write")):
            with self.assertRaises(ValueError) as e:
                FileSink(path)
            self.assertIn(text, str(e.exception))
