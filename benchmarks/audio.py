"""
The audio benchmark: what the playback channel costs and how late its sound
is, with the real client (spice-gtk, its playback channel decoding), for raw
PCM and for Opus.

Per variant one fresh client (C{gtkclient.py --audio --onset}) listens to an
in-process spicesrv server for C{--seconds}; the source (L{ImpulseSource})
is silence with a 20 ms burst of a 1 kHz tone every half second.  It
reports:

- bytes per second on the wire: the DATA bodies the playback channel sent,
  plus their 6-byte mini headers, per second of sound;
- server CPU: this process's user+system CPU over the listening time, as a
  share of one core (the server, its sound source, its encoder; the client
  is another process);
- latency: from the moment the source produces a burst (its frame is
  written to the channel in the same reactor turn) to the client's
  C{playback-onset} event, which its C{playback-data} handler emits when
  the decoded PCM of that frame arrives.  Both ends are stamped with this
  process's reactor clock; the JSON pipe adds about 0.15 ms.
"""

import os
import statistics

from twisted.internet import defer, task

from benchmarks import BenchmarkError, loopback

NAME = "audio"
DESCRIPTION = "playback: bytes per second and server CPU, raw against Opus; source-to-client latency"

#: The burst: its level (of 32767) and length; the client's onset level.
BURST_AMPLITUDE = 0.5
BURST_SECONDS = 0.02
ONSET_LEVEL = 8000
BURST_INTERVAL = 0.5


#: Seconds each variant listens (C{--seconds}).
DEFAULT_SECONDS = 10.0


def run(reactor, args):
    return _run(reactor, args)


def makeSource(reactor):
    from spicesrv.sound.paced import PacedSource
    from spicesrv.sound.pcm import silence, tone
    from spicesrv.wire.sound import RATE

    class ImpulseSource(PacedSource):
        """
        Silence with a short burst every L{BURST_INTERVAL} seconds; the
        reactor time each burst was produced is kept in C{bursts}.
        """

        def __init__(self):
            PacedSource.__init__(self, "impulses", reactor)
            self.bursts = []
            self.next = None
            self.start()

        def generate(self, start, count):
            now = reactor.seconds()
            if self.next is None:
                self.next = now + BURST_INTERVAL
            if now < self.next:
                return silence(count)
            self.next = now + BURST_INTERVAL
            self.bursts.append(now)
            loud = min(count, int(BURST_SECONDS * RATE))
            return tone(1000, 0, loud, BURST_AMPLITUDE) + silence(count - loud)

    return ImpulseSource()


def cpuSeconds():
    t = os.times()
    return t.user + t.system


@defer.inlineCallbacks
def measure(reactor, variant, env, seconds):
    from spicesrv.testing import sessionChannel
    from spicesrv.wire.constants import ChannelType

    source = makeSource(reactor)
    served = yield loopback.serve(reactor, [source])
    server = served.server
    client = None
    try:
        client = yield served.startClient(
            extra_args=["--audio", "--onset", str(ONSET_LEVEL)], env=env)
        yield client.waitForEvent({"event": "playback-start"}, timeout=20)
        channel = sessionChannel(server, ChannelType.PLAYBACK)
        yield task.deferLater(reactor, 1.0, lambda: None)
        since = len(client.events)
        bursts0 = len(source.bursts)
        sent0, bytes0 = channel.sent, channel.bytesSent
        cpu0, t0 = cpuSeconds(), reactor.seconds()
        yield task.deferLater(reactor, seconds, lambda: None)
        cpu1, t1 = cpuSeconds(), reactor.seconds()
        sent, wire = channel.sent - sent0, channel.bytesSent - bytes0 + 6 * (channel.sent - sent0)
        # Let the last burst arrive.
        yield task.deferLater(reactor, 0.2, lambda: None)
        onsets = [e["_time"] for e in client.events[since:] if e["event"] == "playback-onset"]
        produced = source.bursts[bursts0:]
        latencies = []
        for when in produced:
            after = [o for o in onsets if when <= o < when + BURST_INTERVAL]
            if after:
                latencies.append((after[0] - when) * 1000)
        if len(latencies) < 0.8 * len(produced):
            raise BenchmarkError("%s: the client heard %d of %d bursts"
                                 % (variant, len(latencies), len(produced)))
        return dict(variant=variant, mode=channel.mode.name, seconds=t1 - t0,
                    frames=sent, dropped=channel.dropped,
                    bytesPerSecond=wire / (t1 - t0), cpu=(cpu1 - cpu0) / (t1 - t0),
                    latencies=latencies)
    finally:
        if client is not None:
            yield client.stop()
        yield served.stop()
        source.close()


@defer.inlineCallbacks
def _run(reactor, args):
    from tests.interop import harness
    if harness.findGtkClient() is None:
        raise BenchmarkError("spice-gtk's client library is missing: apt-get install -y %s"
                             % (harness.APT_PACKAGES,))
    seconds = DEFAULT_SECONDS if getattr(args, "seconds", None) is None else args.seconds
    results = []
    for variant, env in (("raw", {"SPICE_DISABLE_OPUS": "1"}), ("opus", None)):
        results.append((yield measure(reactor, variant, env, seconds)))
    print("audio: playback of 48 kHz stereo S16 to spice-gtk, %g s per variant, a %g ms "
          "burst every %g s" % (seconds, BURST_SECONDS * 1000, BURST_INTERVAL))
    print()
    print("%-6s %-5s %8s %12s %9s %12s %12s %12s %8s" % (
        "client", "mode", "frames", "bytes/s", "kbit/s", "server CPU", "latency p50",
        "latency max", "dropped"))
    for r in results:
        lat = r["latencies"]
        print("%-6s %-5s %8d %12.0f %9.1f %11.1f%% %10.1f ms %10.1f ms %8d" % (
            r["variant"], r["mode"], r["frames"], r["bytesPerSecond"],
            r["bytesPerSecond"] * 8 / 1000, r["cpu"] * 100, statistics.median(lat),
            max(lat), r["dropped"]))
    print()
    print("latency: source produces a burst -> the client's playback-data has it decoded "
          "(%d bursts per variant)" % (min(len(r["latencies"]) for r in results),))
    return results
