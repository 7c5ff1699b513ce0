"""
The burst benchmark: how many new links per second a server completes when
many clients arrive at once, and at a steady rate, spicesrv against QEMU's
libspice-server in the same run.

A link here is a main-channel link of a new client: link header and
message, the server's reply with a fresh RSA-1024 public key, the auth
mechanism and the ticket encrypted with that key, and the server's link
result.  Every link needs a key of its own, so this measures the key supply
(spicesrv: a pool of keys made ahead by worker threads, sized by the
arrival rate; libspice-server: one key made in QEMU's main thread per link)
and the handshake.  The links are made by this process with raw sockets
(spice-gtk processes are too heavy to start a thousand at once), on the same
two CPUs as the servers, and closed once linked.

Variants, each with its own server on a free loopback port:

- B{burst N}: N links started at once; links/s = N over the time from the
  first connect to the last link result.  Two bursts in a row: the first
  meets the pool at its idle size, the second finds the pool grown by the
  first (the second is what a server under repeated bursts sees).
- B{steady R/s}: links started at R per second for a few seconds;
  achieved links/s over the whole, and whether the latency stayed flat.

A failed link (connection refused or reset, a link error, no answer within
30 s) is counted, never retried.
"""

import os
import statistics
import struct
import sys
import time

from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint

from benchmarks import BenchmarkError
from benchmarks import connect
from spicesrv.testing import linkMessage, parseLinkReply, ticketBytes
from spicesrv.wire.constants import ChannelType, LinkErr

NAME = "burst"
DESCRIPTION = ("New links per second under a burst of clients and at a "
               "steady arrival rate, spicesrv vs QEMU.")
DEFAULT_RUNS = 1

HOST = connect.HOST
LINK_TIMEOUT = 30
BURSTS = (200, 1000)
STEADY = (500, 4.0)            # links/s, seconds
#: The second spicesrv's --key-pool: keys made ahead for a 1000-link burst.
PREGROWN = 1024


def addArguments(group):
    def shared(*names, **options):
        try:
            group.add_argument(*names, **options)
        except Exception:
            pass
    shared("--qemu", default=None, metavar="PATH",
           help="the QEMU binary for the reference figures")
    shared("--no-qemu", action="store_true",
           help="skip the reference (QEMU's libspice-server) figures")
    shared("--per-run", action="store_true", help="also print every run's figures")
    shared("--keep-temp", action="store_true", help="keep the temporary directory")


class _Link(protocol.Protocol):
    def __init__(self, done):
        self.done = done
        self.buffer = b""
        self.reply = None

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        self.transport.write(linkMessage(ChannelType.MAIN))

    def dataReceived(self, data):
        self.buffer += data
        if self.reply is None:
            if len(self.buffer) < 16:
                return
            (size,) = struct.unpack_from("<I", self.buffer, 12)
            if len(self.buffer) < 16 + size:
                return
            self.reply, _, _, self.buffer = parseLinkReply(self.buffer)
            if self.reply.error != LinkErr.OK:
                return self.finish("link error %d" % (self.reply.error,))
            self.transport.write(ticketBytes(self.reply))
        if len(self.buffer) >= 4:
            (result,) = struct.unpack_from("<I", self.buffer)
            self.finish(None if result == LinkErr.OK else "link result %d" % (result,))

    def finish(self, error):
        if not self.done.called:
            self.done.callback(error)
        self.transport.loseConnection()

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.callback("connection lost: %s" % (reason.getErrorMessage(),))


def oneLink(reactor, port):
    """Fire with C{(start, end, error or None)}."""
    start = time.monotonic()
    done = defer.Deferred()
    endpoint = TCP4ClientEndpoint(reactor, HOST, port, timeout=LINK_TIMEOUT)
    connecting = endpoint.connect(protocol.Factory.forProtocol(lambda: _Link(done)))

    def failed(f):
        if not done.called:
            done.callback("connect failed: %s" % (f.getErrorMessage(),))
    connecting.addErrback(failed)
    done.addTimeout(LINK_TIMEOUT, reactor,
                    onTimeoutCancel=lambda r, t: "no link result within %d s" % (t,))
    return done.addCallback(lambda error: (start, time.monotonic(), error))


@defer.inlineCallbacks
def burst(reactor, port, count):
    links = [oneLink(reactor, port) for _ in range(count)]
    results = yield defer.gatherResults(links)
    return results


@defer.inlineCallbacks
def steady(reactor, port, rate, seconds):
    links = []
    start = time.monotonic()
    count = int(rate * seconds)
    for i in range(count):
        due = start + i / rate
        wait = due - time.monotonic()
        if wait > 0.002:
            yield connect.sleep(reactor, wait)
        links.append(oneLink(reactor, port))
    results = yield defer.gatherResults(links)
    return results


def summary(results):
    starts = [r[0] for r in results]
    ends = [r[1] for r in results if r[2] is None]
    failed = [r[2] for r in results if r[2] is not None]
    latencies = sorted((r[1] - r[0]) * 1000 for r in results if r[2] is None)
    elapsed = (max(ends) - min(starts)) if ends else float("nan")
    return {"links": len(results), "ok": len(ends), "failed": len(failed),
            "errors": sorted(set(failed))[:3],
            "rate": len(ends) / elapsed if ends else 0.0, "elapsed": elapsed,
            "p50": statistics.median(latencies) if latencies else float("nan"),
            "p99": latencies[int(0.99 * (len(latencies) - 1))] if latencies else float("nan")}


@defer.inlineCallbacks
def untilIdle(reactor, server, timeout=180, quiet=0.05):
    """
    Wait until C{server} uses less than C{quiet} CPU seconds per half
    second (a spicesrv's key pool is full); fire with the seconds waited.
    """
    start = time.monotonic()
    before = server.cpuSeconds()
    while time.monotonic() - start < timeout:
        yield connect.sleep(reactor, 0.5)
        now = server.cpuSeconds()
        if now is None or before is None or now - before < quiet:
            break
        before = now
    return time.monotonic() - start


def run(reactor, args):
    return connect.startBenchmark(reactor, args, NAME, "spicesrv-bench-burst-", _run)


@defer.inlineCallbacks
def _run(reactor, args, qemu, qemuSkipped, tmpdir, children):
    servers = []
    # Every link comes from 127.0.0.1: the per-address and total connection
    # caps (64 and 256 by default) would refuse most of a burst.
    caps = ["--max-connections", "8192", "--max-connections-per-address", "8192",
            "--listen-backlog", "4096"]
    for name, pool in (("spicesrv", []), ("spicesrv pool", ["--key-pool", str(PREGROWN)])):
        port = connect.freePort()
        servers.append(connect.ServerProcess(
            name, [connect.twistdPath(), "-n", "--pidfile=", "spice", "--port", str(port),
                   "--addr", HOST, "--disable-ticketing"] + caps + pool,
            port, os.path.join(tmpdir, name.replace(" ", "-") + ".log"),
            env={"PYTHONPATH": connect.REPO}))
    if qemu is not None:
        port = connect.freePort()
        servers.append(connect.ServerProcess(
            "QEMU %s" % (connect.qemuVersion(qemu),),
            [qemu, "-nodefaults", "-vga", "std", "-display", "none",
             "-spice", "port=%d,addr=%s,disable-ticketing=on" % (port, HOST)],
            port, os.path.join(tmpdir, "qemu.log")))
    for server in servers:
        children.servers.add(server)
        server.start()
        yield server.waitListening(reactor)
    yield connect.sleep(reactor, 1.0)       # let the key pool fill
    for server in servers:
        if server.name.startswith("spicesrv"):
            filled = yield untilIdle(reactor, server)
            print("  %s: idle %.1f s after start (its key pool filled)" % (server.name, filled))
    plan = []
    for count in BURSTS:
        plan += [("burst %d, first" % count, burst, (count,)),
                 ("burst %d, again" % count, burst, (count,))]
    rate, seconds = STEADY
    plan.append(("steady %d/s for %.0f s" % (rate, seconds), steady, (rate, seconds)))
    rows = []
    for label, how, extra in plan:
        # Alternate the servers, each starting from a quiet machine.
        for server in servers:
            if server.name == "spicesrv pool":
                # measured with its pool full again (--key-pool)
                yield untilIdle(reactor, server, timeout=60)
            # The clients' CPU: this process's.
            cpu0, clients0 = server.cpuSeconds(), connect.processCPU(os.getpid())
            results = yield how(reactor, server.port, *extra)
            cpu1, clients1 = server.cpuSeconds(), connect.processCPU(os.getpid())
            s = summary(results)
            s["cpu"] = ((cpu1 - cpu0) * 1000 / s["links"]) if cpu0 is not None else None
            s["clientCPU"] = (clients1 - clients0) * 1000 / s["links"]
            rows.append((server.name, label, s))
            sys.stdout.write(".")
            sys.stdout.flush()
            if not server.alive():
                raise BenchmarkError("%s exited; log:\n%s" % (server.name, server.logTail()))
            yield connect.sleep(reactor, 2.0)
    print()
    print("%-14s %-22s | %6s %6s %9s | %8s %8s | %s | %s" % (
        "server", "arrivals", "links", "failed", "links/s", "p50 ms", "p99 ms",
        "server CPU ms/link", "clients' CPU ms/link"))
    for name, label, s in rows:
        print("%-14s %-22s | %6d %6d %9.0f | %8.1f %8.1f | %18s | %20.1f%s" % (
            name, label, s["links"], s["failed"], s["rate"], s["p50"], s["p99"],
            "n/a" if s["cpu"] is None else "%.1f" % s["cpu"], s["clientCPU"],
            ("   errors: " + "; ".join(s["errors"])) if s["errors"] else ""))
    if qemuSkipped:
        print("reference: %s" % (qemuSkipped,))
    print("load average at the end (1, 5, 15 min): %.2f %.2f %.2f" % os.getloadavg())
    print("links: main-channel links of new clients from raw sockets in the benchmark "
          "process (same CPUs); each link a fresh RSA-1024 key.")
    for server in servers:
        print("  " + server.commandLine())


if __name__ == "__main__":
    from benchmarks import run as runner
    runner.main([NAME] + sys.argv[1:])
