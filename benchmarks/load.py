"""
The load benchmark (issue 8): many concurrent sessions against one
C{twistd -n spice}, and one client's link time while another floods.

For each N in C{--sessions} (default 50, 200, 800), a fresh server is
started on a free loopback port (the demo source, with a password, as an
operator would run it), and N sessions link at once, each as spice-gtk
does it: the main channel (the link header and SpiceLinkMess, the RSA-1024
public key in the reply, the ticket encrypted with RSA-OAEP-SHA1, the link
result, then main's INIT for the session id), then the display channel of
that session, its INIT, and its first picture up to MARK.  The sessions
then stay for C{--hold} seconds with the display live: each client reads
every update and acknowledges as the server's SET_ACK window asks.

Printed for each N:

- link: from the start of the TCP connect of main to the display
  channel's link result OK, p50 and p99, and the slowest;
- first frame: from the same start to the display's MARK;
- failures: sessions that did not get there (refused, closed, timed out
  after C{--timeout} seconds);
- the server's RSS (C{/proc/PID/status} VmRSS) before the sessions and
  once all are up, and the difference per session, then again at the end
  of the hold ("held": a display channel lets its copy of the client's
  picture go after 10 s without damage worth comparing, so C{--hold 12}
  shows what an idle session keeps);
- the server's CPU time (C{/proc/PID/stat} utime + stime) for linking them
  all and per second of the hold.

Then the flood (C{--flood-samples}, 0 skips it): on a fresh server, a
client links C{--flood-samples} sessions one after the other (idle link
time); then another process links main and inputs and sends MOUSE_POSITION
(or KEY_SCANCODE with C{--flood key}) messages as fast as its socket takes
them, and the same client links as many sessions again meanwhile.  Both
link time series are printed, with the flooder's message rate.

    python3 -m benchmarks.load                     # 50, 200, 800
    python3 -m benchmarks.load --sessions 5 --hold 0.5 --flood-samples 3
    python3 -m benchmarks.run load                 # the same, from the runner
"""

import argparse
import asyncio
import os
import resource
import shlex
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

NAME = "load"
DESCRIPTION = ("Concurrent sessions linking and staying with the display live (link time, "
               "failures, server RSS and CPU), and link time during an input flood.")
DEFAULT_RUNS = 1

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"
PASSWORD = "load-benchmark"
START_TIMEOUT = 60


# -- the wire, from spicesrv's own declarations ----------------------------------------

def _wire():
    from spicesrv import keys
    from spicesrv.testing import linkMessage, parseLinkReply
    from spicesrv.wire.constants import (
        LINK_REPLY_SIZE, AuthMechanism, ChannelType, CommonCap, DisplayCap, LinkErr)
    from spicesrv.wire.messages import (
        COMMON_CLIENT, DISPLAY_CLIENT, DISPLAY_SERVER, INPUTS_CLIENT, MAIN_SERVER)
    return locals()


W = _wire()
MINI = struct.Struct("<HI")
COMMON_CAPS = {W["CommonCap"].PROTOCOL_AUTH_SELECTION, W["CommonCap"].AUTH_SPICE,
               W["CommonCap"].MINI_HEADER}


class LinkFailed(Exception):
    pass


class Channel:
    """
    One linked channel over asyncio streams, mini headers.
    """

    def __init__(self, reader, writer):
        self.reader = reader
        self.writer = writer

    @classmethod
    async def link(cls, channelType, connectionId=0, channelCaps=()):
        reader, writer = await asyncio.open_connection(HOST, PORT[0])
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.write(W["linkMessage"](channelType, 0, connectionId, COMMON_CAPS, channelCaps))
        header = await reader.readexactly(16)
        (size,) = struct.unpack_from("<I", header, 12)
        body = await reader.readexactly(size)
        if size < W["LINK_REPLY_SIZE"]:
            raise LinkFailed("link refused before authentication")
        reply, _, _, _ = W["parseLinkReply"](header + body)
        if reply.error != W["LinkErr"].OK:
            raise LinkFailed("link error %d" % reply.error)
        writer.write(struct.pack("<I", W["AuthMechanism"].SPICE)
                     + W["keys"].encrypt_ticket(reply.pub_key, PASSWORD))
        (result,) = struct.unpack("<I", await reader.readexactly(4))
        if result != W["LinkErr"].OK:
            raise LinkFailed("link result %d" % result)
        return cls(reader, writer)

    async def message(self):
        msgType, size = MINI.unpack(await self.reader.readexactly(MINI.size))
        return msgType, await self.reader.readexactly(size)

    def send(self, message, **fields):
        body = message.pack(**fields)
        self.writer.write(MINI.pack(message.number, len(body)) + body)

    def close(self):
        self.writer.close()


PORT = [0]

MSG = {name: W[table][name].number for table, name in [
    ("MAIN_SERVER", "INIT"), ("DISPLAY_SERVER", "MARK"), ("DISPLAY_SERVER", "SET_ACK")]}


class Session:
    """
    One client: main and display linked, the display drained and ACKed.
    """

    def __init__(self):
        self.linked = None
        self.frame = None
        self.error = None
        self.channels = []
        self.updates = 0

    async def run(self, timeout, ready):
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(self._link(t0), timeout)
        except Exception as e:
            self.error = "%s: %s" % (type(e).__name__, e) if str(e) else type(e).__name__
            ready.set_result(None) if not ready.done() else None
            return
        ready.set_result(None)
        try:
            await self._drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass

    async def _link(self, t0):
        main = await Channel.link(W["ChannelType"].MAIN)
        self.channels.append(main)
        while True:
            msgType, body = await main.message()
            if msgType == MSG["INIT"]:
                sessionId = W["MAIN_SERVER"]["INIT"].unpack(body, exact=False).session_id
                break
        display = await Channel.link(W["ChannelType"].DISPLAY, sessionId,
                                     {W["DisplayCap"].LZ4_COMPRESSION})
        self.channels.append(display)
        self.display = display
        self.linked = time.monotonic() - t0
        display.send(W["DISPLAY_CLIENT"]["INIT"], pixmap_cache_id=1,
                     pixmap_cache_size=20 << 20, glz_dictionary_id=1,
                     glz_dictionary_window_size=1 << 22)
        self._window = None
        self._count = 0
        while True:
            msgType, body = await display.message()
            self._acknowledge(msgType, body)
            if msgType == MSG["MARK"]:
                break
        self.frame = time.monotonic() - t0
        self._mainReader = asyncio.ensure_future(self._discard(main))

    def _acknowledge(self, msgType, body):
        if msgType == MSG["SET_ACK"]:
            ack = W["DISPLAY_SERVER"]["SET_ACK"].unpack(body)
            self._window = ack.window
            self._count = 0
            self.display.send(W["COMMON_CLIENT"]["ACK_SYNC"], generation=ack.generation)
            return
        if self._window:
            self._count += 1
            if self._count >= self._window:
                self._count = 0
                self.display.send(W["COMMON_CLIENT"]["ACK"])

    async def _drain(self):
        while True:
            msgType, body = await self.display.message()
            self.updates += 1
            self._acknowledge(msgType, body)

    async def _discard(self, channel):
        try:
            while True:
                await channel.message()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass

    def close(self):
        for channel in self.channels:
            channel.close()


# -- the server ----------------------------------------------------------------------------

def twistd():
    path = os.path.join(os.path.dirname(sys.executable), "twistd")
    return [path] if os.path.exists(path) else [sys.executable, "-m", "twisted", "twistd"]


def freePort():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, tmpdir, extra=()):
        self.port = freePort()
        self.log = os.path.join(tmpdir, "twistd-%d.log" % self.port)
        self.command = twistd() + ["-n", "--pidfile=", "--logfile", self.log, "spice",
                                   "--port", str(self.port), "--addr", HOST,
                                   "--password", PASSWORD,
                                   # Every session comes from 127.0.0.1: lift the
                                   # per-address and total caps above what it opens.
                                   "--max-connections", "8192",
                                   "--max-connections-per-address", "8192"] + list(extra)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([REPO] + [p for p in [env.get("PYTHONPATH")] if p])
        self.process = subprocess.Popen(self.command, cwd=tmpdir, env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise SystemExit("twistd spice exited with %s; see %s"
                                 % (self.process.returncode, self.log))
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit("twistd spice did not listen within %d s" % START_TIMEOUT)
                time.sleep(0.1)

    def rss(self):
        with open("/proc/%d/status" % self.process.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def cpu(self):
        with open("/proc/%d/stat" % self.process.pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, force=False):
        if self.process.poll() is None and force:
            self.process.kill()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# -- measurements ----------------------------------------------------------------------------

def percentile(values, p):
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100.0 * (len(ordered) - 1))))]


def ms(seconds):
    return "%.0f ms" % (seconds * 1000) if seconds == seconds else "-"


async def settleIdle(server, seconds=1.0):
    await asyncio.sleep(seconds)


async def concurrent(server, n, args):
    """
    N sessions at once; returns the figures.
    """
    # One session first (lazy imports, the first picture encoded), then the
    # key pool fills and the process settles.
    await linkSeries(1, args.timeout)
    await asyncio.sleep(1.0)
    rssBefore, cpuBefore = server.rss(), server.cpu()
    loop = asyncio.get_running_loop()
    sessions = [Session() for _ in range(n)]
    ready = [loop.create_future() for _ in sessions]
    started = time.monotonic()
    tasks = [asyncio.ensure_future(s.run(args.timeout, r)) for s, r in zip(sessions, ready)]
    await asyncio.gather(*ready)
    allUp = time.monotonic() - started
    cpuLinked = server.cpu()
    await asyncio.sleep(0.5)
    rssAfter = server.rss()
    updatesBefore = sum(s.updates for s in sessions)
    cpuHold0 = server.cpu()
    await asyncio.sleep(args.hold)
    cpuHold = server.cpu() - cpuHold0
    rssHeld = server.rss()
    updates = sum(s.updates for s in sessions) - updatesBefore
    alive = server.process.poll() is None
    for s in sessions:
        s.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    ok = [s for s in sessions if s.frame is not None]
    errors = {}
    for s in sessions:
        if s.frame is None:
            errors[s.error or "no first frame"] = errors.get(s.error or "no first frame", 0) + 1
    return dict(n=n, ok=len(ok), failures=n - len(ok), errors=errors, allUp=allUp,
                links=[s.linked for s in ok], frames=[s.frame for s in ok],
                rssBefore=rssBefore, rssAfter=rssAfter, rssHeld=rssHeld,
                cpuLink=cpuLinked - cpuBefore,
                cpuHold=cpuHold / args.hold if args.hold else 0.0, updates=updates,
                alive=alive)


async def linkSeries(count, timeout):
    times, failures = [], 0
    for _ in range(count):
        s = Session()
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        task = asyncio.ensure_future(s.run(timeout, ready))
        await ready
        if s.linked is None:
            failures += 1
        else:
            times.append(s.linked)
        s.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return times, failures


async def flood(server, args):
    idle, idleFailures = await linkSeries(args.flood_samples, args.timeout)
    flooder = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.load", "--flooder", str(PORT[0]),
         "--flood", args.flood], cwd=REPO, stdout=subprocess.PIPE, text=True)
    line = await asyncio.get_running_loop().run_in_executor(None, flooder.stdout.readline)
    if not line.startswith("flooding"):
        flooder.kill()
        raise SystemExit("the flooder did not start: %r" % (line,))
    cpu0, t0 = server.cpu(), time.monotonic()
    await asyncio.sleep(0.5)
    busy, busyFailures = await linkSeries(args.flood_samples, args.flood_timeout)
    cpuFlood = (server.cpu() - cpu0) / (time.monotonic() - t0)
    flooder.send_signal(signal.SIGINT)
    try:
        out = await asyncio.get_running_loop().run_in_executor(
            None, lambda: flooder.communicate(timeout=5))
    except subprocess.TimeoutExpired:
        flooder.kill()
        out = flooder.communicate()
    rate = out[0].strip().splitlines()[-1] if out[0].strip() else "?"
    return dict(idle=idle, idleFailures=idleFailures, busy=busy, busyFailures=busyFailures,
                rate=rate, cpuFlood=cpuFlood, alive=server.process.poll() is None)


# -- the flooder (a separate process, so it does not slow the measuring client) -----------

async def flooderMain(port, kind):
    PORT[0] = port
    main = await Channel.link(W["ChannelType"].MAIN)
    while True:
        msgType, body = await main.message()
        if msgType == MSG["INIT"]:
            sessionId = W["MAIN_SERVER"]["INIT"].unpack(body, exact=False).session_id
            break
    inputs = await Channel.link(W["ChannelType"].INPUTS, sessionId)
    asyncio.ensure_future(Session._discard(None, main))
    asyncio.ensure_future(Session._discard(None, inputs))
    if kind == "key":
        message = W["INPUTS_CLIENT"]["KEY_SCANCODE"]
        bodies = [message.pack(codes=bytes([0x1E])), message.pack(codes=bytes([0x9E]))]
    else:
        message = W["INPUTS_CLIENT"]["MOUSE_POSITION"]
        bodies = [message.pack(x=x, y=x // 2, buttons_state=0, display_id=0)
                  for x in range(0, 600, 7)]
    batch = b"".join(MINI.pack(message.number, len(b)) + b for b in bodies)
    perBatch = len(bodies)
    sent, t0 = 0, time.monotonic()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.set)
    print("flooding", flush=True)
    while not stop.is_set():
        inputs.writer.write(batch)
        sent += perBatch
        try:
            # Bounded, so that the stop signal is seen while the server lags.
            await asyncio.wait_for(inputs.writer.drain(), 0.2)
        except asyncio.TimeoutError:
            pass
        await asyncio.sleep(0)      # let the readers and the stop signal in
    seconds = time.monotonic() - t0
    print("%s: %d messages in %.1f s, %.0f/s" % (message.name, sent, seconds, sent / seconds),
          flush=True)


# -- running and printing ---------------------------------------------------------------------

def addArguments(group):
    group.add_argument("--sessions", default="50,200,800", metavar="N,N,...",
                       help="concurrent session counts, one fresh server each "
                       "(default: 50,200,800)")
    group.add_argument("--hold", type=float, default=3.0, metavar="SECONDS",
                       help="how long the sessions stay with the display live (default: 3)")
    group.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                       help="a session not showing its first frame by then fails "
                       "(default: 120)")
    group.add_argument("--flood-samples", type=int, default=10, metavar="N",
                       help="sessions linked one by one, idle and during the flood "
                       "(default: 10; 0 skips the flood)")
    group.add_argument("--flood-timeout", type=float, default=20.0, metavar="SECONDS",
                       help="a session linking during the flood fails after this long "
                       "(default: 20)")
    group.add_argument("--flood", choices=("mouse", "key"), default="mouse",
                       help="what the flooder sends: MOUSE_POSITION or KEY_SCANCODE")
    group.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                       help="an extra twistd spice option (repeatable), e.g. "
                       "--server-arg=--demo-size=640x480")


def raiseFileLimit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def printFigures(results, flooded, args):
    print("sessions  ok  failures  link p50  link p99  link max  frame p50  frame p99  "
          "all up    RSS before  RSS/session  (held)  CPU link  CPU/s held  updates/s")
    for r in results:
        perSession = (r["rssAfter"] - r["rssBefore"]) / max(1, r["ok"])
        held = (r["rssHeld"] - r["rssBefore"]) / max(1, r["ok"])
        print("%8d %3d %9d %9s %9s %9s %10s %10s %7.2f s %8.1f MB %9.1f kB %7.1f %7.2f s "
              "%10.2f %10.0f"
              % (r["n"], r["ok"], r["failures"], ms(percentile(r["links"], 50)),
                 ms(percentile(r["links"], 99)), ms(max(r["links"] or [float("nan")])),
                 ms(percentile(r["frames"], 50)), ms(percentile(r["frames"], 99)),
                 r["allUp"], r["rssBefore"] / 1e6, perSession / 1e3, held / 1e3,
                 r["cpuLink"], r["cpuHold"], r["updates"] / args.hold if args.hold else 0))
        for error, count in sorted(r["errors"].items()):
            print("    %d x %s" % (count, error))
        if not r["alive"]:
            print("    the server process DIED")
    print("failures: %d" % sum(r["failures"] for r in results))
    if flooded is not None:
        f = flooded
        print("link while another client floods (%s): idle p50 %s p99 %s (%d failures); "
              "during the flood p50 %s p99 %s (%d failures); server CPU during the flood "
              "%.2f s/s; flooder sent %s"
              % (args.flood, ms(percentile(f["idle"], 50)), ms(percentile(f["idle"], 99)),
                 f["idleFailures"], ms(percentile(f["busy"], 50)),
                 ms(percentile(f["busy"], 99)), f["busyFailures"], f["cpuFlood"], f["rate"]))
        print("flood failures: %d" % (f["idleFailures"] + f["busyFailures"]))


async def measureAll(args, tmpdir):
    results = []
    for n in [int(x) for x in args.sessions.split(",") if x]:
        server = Server(tmpdir, args.server_arg)
        PORT[0] = server.port
        try:
            results.append(await concurrent(server, n, args))
        finally:
            server.stop()
        print("  %d sessions: %d ok" % (n, results[-1]["ok"]), file=sys.stderr)
    flooded = None
    if args.flood_samples:
        server = Server(tmpdir, args.server_arg)
        PORT[0] = server.port
        try:
            flooded = await flood(server, args)
        finally:
            # Killed: a clean stop would first work through the flood's backlog.
            server.stop(force=True)
    return results, flooded, server.command


def runSync(args):
    limit = raiseFileLimit()
    biggest = max(int(x) for x in args.sessions.split(",") if x)
    if limit < 2 * biggest + 100:
        raise SystemExit("%d sessions need about %d file descriptors; the limit is %d"
                         % (biggest, 2 * biggest + 100, limit))
    with tempfile.TemporaryDirectory(prefix="spicesrv-load-") as tmpdir:
        results, flooded, command = asyncio.run(measureAll(args, tmpdir))
    print("load: concurrent sessions (main + display, first frame, display live for %.1f s)"
          % (args.hold,))
    printFigures(results, flooded, args)
    print("server: %s" % (" ".join(shlex.quote(c) for c in command),))
    return results, flooded


def run(reactor, args):
    """
    For C{benchmarks.run}: the asyncio clients run in a thread.
    """
    from twisted.internet import threads
    return threads.deferToThreadPool(reactor, reactor.getThreadPool(), runSync, args)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m benchmarks.load", description=DESCRIPTION)
    addArguments(parser)
    parser.add_argument("--flooder", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.flooder:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        asyncio.run(flooderMain(args.flooder, args.flood))
        return
    print("command: cd %s && python3 -m benchmarks.load%s" % (
        shlex.quote(REPO), "".join(" " + shlex.quote(a) for a in (
            argv if argv is not None else sys.argv[1:]))))
    results, flooded = runSync(args)
    failed = sum(r["failures"] for r in results) + (
        flooded["idleFailures"] + flooded["busyFailures"] if flooded else 0)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
