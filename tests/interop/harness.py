"""
Drive real SPICE clients from Twisted trial tests and benchmarks.

The real client is spice-gtk's client library (SpiceClientGLib 2.0), which
runs only under Debian's own Python (``/usr/bin/python3`` with ``python3-gi``
and ``gir1.2-spiceclientglib-2.0``).  L{GtkClient} spawns
``tests/interop/gtkclient.py`` under that interpreter and talks to it in JSON
lines; see that script's docstring for every command and event.

Typical use in a trial test::

    from tests.interop import harness

    class DisplayTests(unittest.TestCase):
        def setUp(self):
            harness.requireRealClient(self)

        @defer.inlineCallbacks
        def test_primary(self):
            port = ...  # a listening spicesrv server
            client = yield harness.GtkClient.start(reactor, "127.0.0.1", port)
            self.addCleanup(client.stop)
            yield client.waitForEvent({"event": "channel-event", "type": 2,
                                       "what": "SPICE_CHANNEL_OPENED"})
            reply = yield client.waitForPrimary(
                lambda r: r["sha256"] == expected, timeout=10)

Environment variables:

- C{SPICESRV_GTK_PYTHON}: the interpreter to use instead of
  C{/usr/bin/python3}.
- C{SPICESRV_SPICE_DEBUG=1}: run the client with C{SPICE_DEBUG=1}; its
  debug log is on the child's stderr, kept in L{GtkClient.stderrText} and,
  if C{SPICESRV_SPICE_DEBUG_LOG} names a file, appended there as well.
- C{CI=true}: a missing client fails the test instead of skipping it.
"""

import json
import os
import subprocess
import sys
import unittest

from twisted.internet import defer, error, protocol, task
from twisted.python.failure import Failure

__all__ = [
    "APT_PACKAGES", "GTKCLIENT", "GtkClient", "GtkClientError",
    "HarnessTimeout", "findGtkClient", "requireRealClient", "loadPrimary",
    "matches",
]

#: The script run under Debian's Python.
GTKCLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         "gtkclient.py")

#: What to apt-get install when the client is missing.
APT_PACKAGES = "python3-gi gir1.2-spiceclientglib-2.0"

DEFAULT_PYTHON = "/usr/bin/python3"

_PROBE = ("import gi; gi.require_version('SpiceClientGLib', '2.0'); "
          "from gi.repository import SpiceClientGLib")

_found = {}


def childEnvironment(extra=None):
    """
    A clean environment for Debian's Python: no PYTHONPATH, PYTHONHOME or
    pyenv variables from the test runner, nothing display-related.
    """
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for name in ("GI_TYPELIB_PATH", "XDG_DATA_DIRS", "TMPDIR",
                 "G_MESSAGES_DEBUG", "G_DEBUG", "SPICE_DEBUG_LEVEL"):
        if name in os.environ:
            env[name] = os.environ[name]
    if os.environ.get("SPICESRV_SPICE_DEBUG"):
        env["SPICE_DEBUG"] = "1"
    if extra:
        env.update(extra)
    return env


def findGtkClient():
    """
    The interpreter that can run spice-gtk's client library, or C{None}.

    The answer is found once, by running a tiny probe synchronously, and
    cached for the process.
    """
    python = os.environ.get("SPICESRV_GTK_PYTHON", DEFAULT_PYTHON)
    if python not in _found:
        ok = False
        if os.access(python, os.X_OK):
            try:
                proc = subprocess.run(
                    [python, "-c", _PROBE], env=childEnvironment(),
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, timeout=60)
                ok = proc.returncode == 0
            except (OSError, subprocess.SubprocessError):
                ok = False
        _found[python] = python if ok else None
    return _found[python]


def requireRealClient(testcase):
    """
    Return the interpreter for the real client, or stop C{testcase}: under
    C{CI=true} it fails, elsewhere it is skipped.
    """
    python = findGtkClient()
    if python is None:
        msg = ("spice-gtk's client library is not usable from %s; install it "
               "with: apt-get install -y %s"
               % (os.environ.get("SPICESRV_GTK_PYTHON", DEFAULT_PYTHON),
                  APT_PACKAGES))
        if os.environ.get("CI") == "true":
            testcase.fail(msg)
        raise unittest.SkipTest(msg)
    return python


def matches(predicate, obj):
    """
    C{predicate} is a callable taking the dict, or a dict whose items must
    all be equal in C{obj}.
    """
    if callable(predicate):
        return bool(predicate(obj))
    return all(k in obj and obj[k] == v for k, v in predicate.items())


class GtkClientError(Exception):
    """The client process failed or answered a command with ok false."""


class HarnessTimeout(Exception):
    """Something awaited from the client did not come in time."""


class _ClientProtocol(protocol.ProcessProtocol):
    MAX_LINE = 16 * 1024 * 1024

    def __init__(self, client):
        self.client = client
        self.buffer = b""

    def connectionMade(self):
        self.client._connectionMade()

    def outReceived(self, data):
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        for line in lines:
            line = line.strip()
            if line:
                self.client._lineReceived(line)
        if len(self.buffer) > self.MAX_LINE:
            self.client._lineReceived(self.buffer)
            self.buffer = b""

    def errReceived(self, data):
        self.client._stderrReceived(data)

    def processEnded(self, reason):
        self.client._processEnded(reason)


class GtkClient(object):
    """
    One spice-gtk client process.  Build it with L{GtkClient.start}.

    @ivar events: every event received, in order (dicts).
    @ivar replies: every reply received, in order (dicts).
    @ivar exitStatus: the process's exit code (or C{None} while it runs, or
        if it was killed by a signal; see C{exitReason}).
    """

    #: How much of the child's stderr to keep.
    STDERR_KEEP = 256 * 1024
    #: How many recent events a timeout message shows.
    RECENT = 25

    def __init__(self, reactor):
        self.reactor = reactor
        self.events = []
        self.replies = []
        self.exitStatus = None
        self.exitReason = None
        self.ended = False
        self._stderr = bytearray()
        self._stderrLog = None
        self._seq = 0
        self._pending = {}          # seq -> (Deferred, cmd)
        self._waiters = []          # [(predicate, Deferred)]
        self._ready = defer.Deferred()
        self._endedDeferreds = []
        self._hardKill = None
        self.transport = None
        self.pid = None
        self.argv = None

    # -- starting -------------------------------------------------------

    @classmethod
    def start(cls, reactor, host, port, password=None, tls_port=None,
              ca_file=None, cert_subject=None, extra_args=(), env=None,
              python=None, timeout=60):
        """
        Spawn the client and connect it to C{host}:C{port}.

        @param port: the plain port, or C{None} for a TLS-only session.
        @param extra_args: further command-line arguments for gtkclient.py,
            e.g. C{["--no-lz4"]}, C{["--no-autoconnect"]},
            C{["--disable-cap", "SPICE_DISPLAY_CAP_COMPOSITE"]},
            C{["--secure-channels", "all"]}.
        @param env: extra environment variables for the child.
        @return: a Deferred firing with the L{GtkClient} once it printed
            C{ready}, failing with L{GtkClientError} if it exits first or
            L{HarnessTimeout} after C{timeout} seconds.
        """
        self = cls(reactor)
        if python is None:
            python = findGtkClient()
            if python is None:
                return defer.fail(GtkClientError(
                    "no Python with SpiceClientGLib; apt-get install -y %s"
                    % (APT_PACKAGES,)))
        argv = [python, "-u", GTKCLIENT, "--host", host]
        if port is not None:
            argv += ["--port", str(port)]
        if tls_port is not None:
            argv += ["--tls-port", str(tls_port)]
        if password is not None:
            argv += ["--password", password]
        if ca_file is not None:
            argv += ["--ca-file", ca_file]
        if cert_subject is not None:
            argv += ["--cert-subject", cert_subject]
        argv += [str(a) for a in extra_args]
        self.argv = argv
        logPath = os.environ.get("SPICESRV_SPICE_DEBUG_LOG")
        if logPath:
            self._stderrLog = open(logPath, "ab")
        self.transport = reactor.spawnProcess(
            _ClientProtocol(self), python, argv, env=childEnvironment(env),
            childFDs={0: "w", 1: "r", 2: "r"})
        self.pid = self.transport.pid
        d = self._ready
        d.addTimeout(timeout, reactor, onTimeoutCancel=lambda r, t: Failure(
            HarnessTimeout(self._describe(
                "client did not print ready within %s s" % (t,)))))

        def failed(f):
            # Don't leave a half-started child behind.
            if not self.ended:
                self._kill()
            return f
        d.addErrback(failed)
        return d

    # -- process events ---------------------------------------------------

    def _connectionMade(self):
        pass

    def _lineReceived(self, line):
        try:
            obj = json.loads(line)
        except ValueError:
            self._stderrReceived(b"[stdout, not JSON] " + line + b"\n")
            return
        if not isinstance(obj, dict):
            return
        if "reply" in obj:
            self.replies.append(obj)
            pending = self._pending.pop(obj.get("seq"), None)
            if pending is not None:
                d, cmd = pending
                d.callback(obj)
            return
        if "event" not in obj:
            return
        obj["_time"] = self.reactor.seconds()
        self.events.append(obj)
        if obj["event"] == "ready" and not self._ready.called:
            self._ready.callback(self)
        for waiter in list(self._waiters):
            predicate, d = waiter
            try:
                hit = matches(predicate, obj)
            except Exception:
                self._waiters.remove(waiter)
                d.errback()
                continue
            if hit:
                self._waiters.remove(waiter)
                d.callback(obj)

    def _stderrReceived(self, data):
        self._stderr += data
        if len(self._stderr) > self.STDERR_KEEP:
            del self._stderr[:len(self._stderr) - self.STDERR_KEEP]
        if self._stderrLog is not None:
            self._stderrLog.write(data)
            self._stderrLog.flush()

    def _processEnded(self, reason):
        self.ended = True
        self.exitReason = reason
        if self._hardKill is not None and self._hardKill.active():
            self._hardKill.cancel()
        self._hardKill = None
        if reason.check(error.ProcessDone, error.ProcessTerminated):
            self.exitStatus = reason.value.exitCode
        if self._stderrLog is not None:
            self._stderrLog.close()
            self._stderrLog = None
        why = self._describe("client process ended (%s)"
                             % (reason.getErrorMessage(),))
        if not self._ready.called:
            self._ready.errback(GtkClientError(why))
        pending, self._pending = self._pending, {}
        for d, cmd in pending.values():
            d.errback(GtkClientError("%s while waiting for reply to %r"
                                     % (why, cmd)))
        waiters, self._waiters = self._waiters, []
        for predicate, d in waiters:
            d.errback(GtkClientError("%s while waiting for event %r"
                                     % (why, predicate)))
        ended, self._endedDeferreds = self._endedDeferreds, []
        for d in ended:
            d.callback(self)

    # -- diagnostics ----------------------------------------------------------

    def stderrText(self):
        """The tail of the child's stderr, decoded."""
        return bytes(self._stderr).decode("utf-8", "replace")

    def _describe(self, what, extra=None):
        lines = [what]
        if extra:
            lines.append(extra)
        recent = self.events[-self.RECENT:]
        lines.append("recent events (%d of %d):" % (len(recent),
                                                    len(self.events)))
        for ev in recent:
            ev = dict(ev)
            ev.pop("_time", None)
            lines.append("  " + json.dumps(ev, sort_keys=True))
        err = self.stderrText()
        if err:
            lines.append("stderr (tail):")
            lines.append(err[-4000:])
        if self.ended:
            lines.append("process ended: %s" % (
                self.exitReason.getErrorMessage(),))
        return "\n".join(lines)

    # -- commands ---------------------------------------------------------------

    def command(self, cmd, timeout=30, **args):
        """
        Send a command and return a Deferred firing with the reply dict
        (whatever its C{ok}; see L{check}).
        """
        if self.ended:
            return defer.fail(GtkClientError(self._describe(
                "client process has ended; cannot send %r" % (cmd,))))
        self._seq += 1
        seq = self._seq
        msg = dict(args)
        msg["cmd"] = cmd
        msg["seq"] = seq

        def cancel(d):
            self._pending.pop(seq, None)
        d = defer.Deferred(cancel)
        self._pending[seq] = (d, cmd)
        self.transport.write(json.dumps(msg).encode("utf-8") + b"\n")
        d.addTimeout(timeout, self.reactor, onTimeoutCancel=lambda r, t:
                     Failure(HarnessTimeout(self._describe(
                         "no reply to %r within %s s" % (msg, t)))))
        return d

    def check(self, cmd, timeout=30, **args):
        """Like L{command}, but fail with L{GtkClientError} if ok is false."""
        def checked(reply):
            if not reply.get("ok"):
                raise GtkClientError("%s failed: %s" % (
                    cmd, reply.get("reason")))
            return reply
        return self.command(cmd, timeout=timeout, **args).addCallback(checked)

    def waitForEvent(self, predicate, timeout=30, since=0):
        """
        Fire with the first event, past or future, that matches.

        @param predicate: a callable taking the event dict, or a dict whose
            items must all be in the event (see L{matches}).
        @param since: only consider logged events from this index on (e.g.
            C{len(client.events)} taken before an action).
        """
        for ev in self.events[since:]:
            try:
                if matches(predicate, ev):
                    return defer.succeed(ev)
            except Exception:
                return defer.fail()
        if self.ended:
            return defer.fail(GtkClientError(self._describe(
                "client process has ended; no event %r" % (predicate,))))

        def cancel(d):
            self._waiters[:] = [w for w in self._waiters if w[1] is not d]
        d = defer.Deferred(cancel)
        self._waiters.append((predicate, d))
        d.addTimeout(timeout, self.reactor, onTimeoutCancel=lambda r, t:
                     Failure(HarnessTimeout(self._describe(
                         "no event matching %r within %s s" % (
                             _show(predicate), t)))))
        return d

    @defer.inlineCallbacks
    def waitForPrimary(self, predicate=None, timeout=30, interval=0.05,
                       **args):
        """
        Poll C{primary} every C{interval} seconds until C{predicate(reply)}
        is true and fire with that reply.

        @param predicate: a callable on the reply, a dict of items the reply
            must have (see L{matches}), a sha256 hex string, or C{None} for
            any successful reply.  Replies with ok false never match.
        @param args: passed to the command (C{channel_id}, C{dump},
            C{pixels}).
        """
        if predicate is None:
            test = lambda r: True  # noqa: E731
        elif isinstance(predicate, str):
            test = lambda r: r.get("sha256") == predicate  # noqa: E731
        else:
            test = lambda r: matches(predicate, r)  # noqa: E731
        deadline = self.reactor.seconds() + timeout
        last = None
        while True:
            last = yield self.command("primary", timeout=timeout, **args)
            if last.get("ok") and test(last):
                return last
            if self.reactor.seconds() >= deadline:
                raise HarnessTimeout(self._describe(
                    "primary did not match %r within %s s" % (
                        _show(predicate), timeout),
                    "last reply: %s" % (json.dumps(last, sort_keys=True),)))
            yield task.deferLater(self.reactor, interval, lambda: None)

    def waitForPixels(self, predicate, dump, timeout=30):
        """
        Poll C{primary}, dumped to the file C{dump}, until
        C{predicate(pixels)} is true of its pixels (as L{loadPrimary} gives
        them) and fire with that reply.
        """
        return self.waitForPrimary(lambda reply: predicate(loadPrimary(reply)),
                                   timeout=timeout, dump=dump)

    @defer.inlineCallbacks
    def waitForChannelsOpened(self, types=(1, 2, 3, 4), timeout=30,
                              since=0):
        """
        Fire with the OPENED events when a channel of each type in C{types}
        (1 main, 2 display, 3 inputs, 4 cursor, 10 port, ...) has opened.
        """
        deadline = self.reactor.seconds() + timeout
        events = []
        for t in types:
            ev = yield self.waitForEvent(
                {"event": "channel-event", "type": t,
                 "what": "SPICE_CHANNEL_OPENED"},
                timeout=max(0.001, deadline - self.reactor.seconds()),
                since=since)
            events.append(ev)
        return events

    # -- stopping ---------------------------------------------------------------

    def whenEnded(self):
        """A Deferred firing with this client when the process has exited."""
        if self.ended:
            return defer.succeed(self)
        d = defer.Deferred()
        self._endedDeferreds.append(d)
        return d

    def stop(self, timeout=10):
        """
        Ask the client to quit (quit command, then end of stdin); kill it if
        it has not exited after C{timeout} seconds.  Fires when the process
        has exited.
        """
        if self.ended:
            return defer.succeed(self)
        d = self.whenEnded()
        try:
            self.transport.write(b'{"cmd": "quit"}\n')
            self.transport.closeStdin()
        except Exception:
            pass
        killer = self.reactor.callLater(timeout, self._kill)

        def done(result):
            if killer.active():
                killer.cancel()
            return result
        d.addBoth(done)
        return d

    def _kill(self):
        """SIGTERM now, SIGKILL two seconds later if still running."""
        try:
            self.transport.signalProcess("TERM")
        except (error.ProcessExitedAlready, OSError):
            return
        if self._hardKill is None:
            self._hardKill = self.reactor.callLater(2, self._killHard)

    def _killHard(self):
        self._hardKill = None
        if not self.ended:
            try:
                self.transport.signalProcess("KILL")
            except (error.ProcessExitedAlready, OSError):
                pass


def _show(predicate):
    if callable(predicate):
        return getattr(predicate, "__name__", repr(predicate))
    return predicate


def pixelsEqual(shown, frame):
    """
    Whether a client's primary (B, G, R, X, as L{loadPrimary} gives it)
    shows C{frame}; the unused X byte is not compared.
    """
    import numpy

    return shown.shape == frame.shape and numpy.array_equal(shown[:, :, :3], frame[:, :, :3])


def loadPrimary(source, width=None, height=None, stride=None):
    """
    Load a dumped primary surface as a numpy array of shape (height, width,
    4), dtype uint8, channels in memory order B, G, R, X/A (spice-gtk's
    32-bit surfaces are little-endian xRGB/ARGB).  Use C{a[..., 2::-1]} for
    RGB.

    @param source: a C{primary} reply that had a C{dump} path (its width,
        height and stride are used), or a path, or the raw bytes.
    """
    import numpy

    if isinstance(source, dict):
        width = source["width"] if width is None else width
        height = source["height"] if height is None else height
        stride = source["stride"] if stride is None else stride
        fmt = source.get("format")
        if fmt not in (None, 32, 96):
            raise ValueError("surface format %r is not 32-bit" % (fmt,))
        source = source["dump"]
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            raw = f.read()
    else:
        raw = bytes(source)
    if stride is None:
        stride = width * 4
    if len(raw) < height * stride:
        raise ValueError("%d bytes, expected %d x %d = %d" % (
            len(raw), height, stride, height * stride))
    rows = numpy.frombuffer(raw, dtype=numpy.uint8,
                            count=height * stride).reshape(height, stride)
    return rows[:, :width * 4].reshape(height, width, 4)


if __name__ == "__main__":
    # Quick check from a shell: python3 -m tests.interop.harness
    print(findGtkClient() or "missing: apt-get install -y " + APT_PACKAGES)
    sys.exit(0 if findGtkClient() else 1)
