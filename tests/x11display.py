"""
Real X servers and X clients for the X11 source's tests and benchmarks.

L{XServer} runs Debian's Xvfb (or TigerVNC's Xvnc, which can change its
size with xrandr, or Xorg with the dummy video driver, which has several
RandR outputs) on a display of its own, optionally with an authority
file; L{XClient} runs C{tests/x11client.py}, a small xcffib program that
covers the screen with a known picture and reports the key and button
events it receives as JSON lines.  A missing X server fails the test under
C{CI=true} and skips it elsewhere, as a missing SPICE client does.
"""

import json
import os
import random
import select
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

from twisted.internet import defer, protocol

APT_PACKAGES = {"Xvfb": "xvfb", "Xvnc": "tigervnc-standalone-server",
                "Xorg": "xserver-xorg-core xserver-xorg-video-dummy",
                "xauth": "xauth", "xrandr": "x11-xserver-utils",
                "setxkbmap": "x11-xkb-utils", "xclip": "xclip"}

X11CLIENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "x11client.py")

#: Xorg's dummy video driver: a virtual graphics card with 16 RandR outputs
#: (DUMMY0 connected, the others once given a mode), found where Debian's
#: xserver-xorg-video-dummy puts it.
DUMMY_DRIVER = "/usr/lib/xorg/modules/drivers/dummy_drv.so"
#: The configuration Xorg runs the dummy driver with: no input devices of
#: the machine's (none is added or grabbed), a 24-bit screen of up to
#: 4096x2160.
XORG_DUMMY_CONF = """\
Section "ServerFlags"
  Option "AutoAddDevices" "false"
  Option "AutoEnableDevices" "false"
  Option "DontVTSwitch" "true"
EndSection
Section "Device"
  Identifier "dummy"
  Driver "dummy"
  VideoRam 256000
EndSection
Section "Monitor"
  Identifier "monitor"
  HorizSync 5.0 - 1000.0
  VertRefresh 5.0 - 200.0
EndSection
Section "Screen"
  Identifier "screen"
  Device "dummy"
  Monitor "monitor"
  DefaultDepth 24
  SubSection "Display"
    Depth 24
    Virtual 4096 2160
  EndSubSection
EndSection
"""


def requireX(testcase, *programs):
    """
    Stop C{testcase} unless every program is installed: under C{CI=true}
    it fails, elsewhere it is skipped.
    """
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        msg = "%s not installed; apt-get install -y %s" % (
            ", ".join(missing), " ".join(APT_PACKAGES.get(p, p) for p in missing))
        if os.environ.get("CI") == "true":
            testcase.fail(msg)
        raise unittest.SkipTest(msg)


def requireXorgDummy(testcase):
    """
    Stop C{testcase} unless Xorg's dummy driver is installed and Xorg can
    run here (as root: without a console only root may start it).
    """
    problem = None
    if not os.path.exists(DUMMY_DRIVER):
        problem = ("Xorg's dummy video driver is not installed; apt-get install -y "
                   "xserver-xorg-video-dummy")
    elif os.geteuid() != 0:
        problem = "Xorg (with the dummy driver) runs only as root without a console"
    if problem is not None:
        if os.environ.get("CI") == "true":
            testcase.fail(problem)
        raise unittest.SkipTest(problem)


class XServer:
    """
    An X server on a display of its own.

    @ivar display: its name, e.g. C{':417'}.
    @ivar env: the environment an X client of it needs (C{DISPLAY} and,
        with C{auth}, C{XAUTHORITY}).
    """

    def __init__(self, kind="Xvfb", size=(1024, 768), auth=None):
        """
        @param auth: the path of an authority file to create and make the
            server require, or L{None} for none (Xvfb then accepts local
            clients).
        """
        self.kind = kind
        self.size = size
        self.auth = auth
        self.process = None
        self.display = None
        self.env = {}

    def start(self, timeout=30):
        for _ in range(20):
            number = random.randrange(200, 900)
            if os.path.exists("/tmp/.X%d-lock" % number):
                continue
            if self._start(number, timeout):
                return self
        raise RuntimeError("could not start %s on a free display" % (self.kind,))

    def _start(self, number, timeout):
        display = ":%d" % number
        width, height = self.size
        args = [self.kind, display]
        if self.auth is not None:
            cookie = os.urandom(16).hex()
            subprocess.run(["xauth", "-f", self.auth, "add", display, ".", cookie],
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            args += ["-auth", self.auth]
        if self.kind == "Xorg":
            # Root only (no console here); no VT taken, a log of its own.
            directory = tempfile.mkdtemp(prefix="spicesrv-xorg-")
            self._tmp = directory
            conf = os.path.join(directory, "xorg.conf")
            with open(conf, "w") as f:
                f.write(XORG_DUMMY_CONF)
            args += ["-config", conf, "-logfile", os.path.join(directory, "Xorg.log"),
                     "-noreset", "-nolisten", "tcp", "-novtswitch", "-sharevts", "-keeptty"]
        elif self.kind == "Xvnc":
            # -rfbport -1: no VNC port at all, only the X display.
            args += ["-geometry", "%dx%d" % (width, height), "-depth", "24",
                     "-SecurityTypes", "None", "-rfbport", "-1",
                     "-nolisten", "tcp"]
        else:
            args += ["-screen", "0", "%dx%dx24" % (width, height), "-nolisten", "tcp",
                     "-noreset"]
        read, write = os.pipe()
        args += ["-displayfd", str(write)]
        self.process = subprocess.Popen(args, pass_fds=[write], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write)
        # The server writes the number, then a newline: read both, or the
        # second write fails and the server gives up.
        got = b""
        deadline = time.monotonic() + timeout
        try:
            while not got.endswith(b"\n"):
                ready, _, _ = select.select([read], [], [],
                                            max(0, deadline - time.monotonic()))
                chunk = os.read(read, 64) if ready else b""
                if not chunk:
                    break
                got += chunk
        finally:
            os.close(read)
        if got.strip() == str(number).encode():
            self.display = display
            self.env = {"DISPLAY": display}
            if self.auth is not None:
                self.env["XAUTHORITY"] = self.auth
            return True
        self.stop()
        return False

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if getattr(self, "_tmp", None):
            shutil.rmtree(self._tmp, True)
            self._tmp = None

    def clientEnv(self):
        """
        The environment of an X client of this server.
        """
        env = dict(os.environ, **self.env)
        if self.auth is None:
            env.pop("XAUTHORITY", None)
        return env

    def run(self, *argv):
        """
        Run an X utility (C{xrandr}, C{setxkbmap}) against this server and
        return its output.
        """
        return subprocess.run(argv, env=self.clientEnv(), check=True, capture_output=True,
                              text=True, timeout=30).stdout


def startXServer(testcase, kind="Xvfb", size=(1024, 768), auth=False):
    """
    Start an X server for C{testcase} (stopped at cleanup), after
    L{requireX}.
    """
    requireX(testcase, kind, "xauth")
    if kind == "Xorg":
        requireXorgDummy(testcase)
    path = None
    if auth:
        directory = testcase.mktemp()
        os.makedirs(directory)
        path = os.path.abspath(os.path.join(directory, "Xauthority"))
    server = XServer(kind, size, auth=path).start()
    testcase.addCleanup(server.stop)
    return server


class _LineProtocol(protocol.ProcessProtocol):
    def __init__(self, client):
        self.client = client
        self.buffer = b""

    def outReceived(self, data):
        lines = (self.buffer + data).split(b"\n")
        self.buffer = lines.pop()
        for line in lines:
            if line.strip():
                self.client._received(json.loads(line))

    def errReceived(self, data):
        self.client.stderr += data

    def processEnded(self, reason):
        self.client._ended(reason)


class XClient:
    """
    C{tests/x11client.py} on an X server, as a child process.

    @ivar events: every event it reported (dicts), in order.
    """

    def __init__(self, reactor):
        self.reactor = reactor
        self.events = []
        self.stderr = b""
        self._waiters = []
        self._done = defer.Deferred()
        self.ended = False

    @classmethod
    def start(cls, reactor, server, *args, timeout=30):
        """
        Start it on L{XServer} C{server}; fires with the client once its
        window is on the screen.
        """
        self = cls(reactor)
        env = dict(os.environ, **server.env)
        if server.auth is None:
            env.pop("XAUTHORITY", None)
        self.transport = reactor.spawnProcess(
            _LineProtocol(self), sys.executable,
            [sys.executable, "-u", X11CLIENT] + [str(a) for a in args], env=env)
        d = self.waitFor(lambda e: e["event"] == "ready", timeout)
        return d.addCallback(lambda _: self)

    def _received(self, event):
        self.events.append(event)
        for waiter in list(self._waiters):
            predicate, d = waiter
            if predicate(event):
                self._waiters.remove(waiter)
                d.callback(event)

    def _ended(self, reason):
        self.ended = True
        for predicate, d in self._waiters:
            d.errback(RuntimeError("x11client ended: %s\n%s"
                                   % (reason.getErrorMessage(),
                                      self.stderr.decode(errors="replace"))))
        self._waiters = []
        self._done.callback(None)

    def waitFor(self, predicate, timeout=20):
        """
        Fire with the first event (past or future) C{predicate} accepts.
        """
        for event in self.events:
            if predicate(event):
                return defer.succeed(event)
        if self.ended:
            return defer.fail(RuntimeError("x11client ended:\n"
                                           + self.stderr.decode(errors="replace")))
        d = defer.Deferred()
        self._waiters.append((predicate, d))

        def timedOut(result, t):
            self._waiters[:] = [w for w in self._waiters if w[1] is not d]
            raise AssertionError("x11client did not report it within %ss; it reported %r"
                                 % (t, self.events[-20:]))
        d.addTimeout(timeout, self.reactor, onTimeoutCancel=timedOut)
        return d

    def keys(self):
        """
        The key presses reported so far, as C{(keysym, char)}.
        """
        return [(e["keysym"], e["char"]) for e in self.events
                if e["event"] == "key" and e["press"]]

    def stop(self):
        if not self.ended:
            self.transport.signalProcess("TERM")
        return self._done


def xclipCopy(testcase, server, data, *args):
    """
    xclip owning a selection of L{XServer} C{server} with C{data} (bytes)
    until the test ends; C{args} as C{"-selection", "primary"} or
    C{"-t", "image/png"}.  Returns the process.
    """
    requireX(testcase, "xclip")
    process = subprocess.Popen(["xclip", "-quiet", "-i"] + list(args),
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=server.clientEnv())
    process.stdin.write(data)
    process.stdin.close()

    def stop():
        if process.poll() is None:
            process.terminate()
        process.wait()
    testcase.addCleanup(stop)
    return process


def xclipPaste(reactor, server, *args):
    """
    C{xclip -o ARGS} on L{XServer} C{server}, without blocking the reactor
    (the selection's owner may be in this process): fires with its output
    and exit code.
    """
    from twisted.internet import utils
    d = utils.getProcessOutputAndValue("xclip", ["-o"] + list(args),
                                       env=server.clientEnv(), reactor=reactor)
    return d.addCallback(lambda result: (result[0], result[2]))


def pressXKey(server, keycode):
    """
    Press and release X keycode C{keycode} on L{XServer} C{server} from a
    connection of its own (XTEST), as someone at the X server's own
    keyboard would.
    """
    import xcffib
    import xcffib.xtest
    conn = xcffib.connect(display=server.display)
    try:
        xtest = conn(xcffib.xtest.key)
        xtest.FakeInput(2, keycode, 0, 0, 0, 0, 0)
        xtest.FakeInput(3, keycode, 0, 0, 0, 0, 0)
        conn.core.GetInputFocus().reply()
    finally:
        conn.disconnect()


def convertSelection(server, selection, target, pairs=None, timeout=10):
    """
    Ask the owner of X selection C{selection} of L{XServer} C{server} for
    C{target}, as a pasting X client does, from a connection of its own;
    blocking (run it in a thread when the owner is in this process).  With
    C{pairs} (a list of target names), C{target} is C{MULTIPLE} and each
    pair's property is read.

    @return: C{(type name, format, bytes)} of the answer, or L{None} if
        refused; with C{pairs}, a list of those (or L{None}) per pair.
    """
    import struct

    import xcffib
    import xcffib.xproto as xp
    conn = xcffib.connect(display=server.display)
    try:
        core = conn.core

        def atom(name):
            return core.InternAtom(False, len(name), name).reply().atom

        def name(value):
            return core.GetAtomName(value).reply().name.to_string() if value else None

        root = conn.get_setup().roots[conn.pref_screen].root
        window = conn.generate_id()
        core.CreateWindow(0, window, root, 0, 0, 1, 1, 0, xp.WindowClass.InputOnly, 0, 0, [])
        prop = atom("SPICESRV_TEST_PASTE")
        if pairs is not None:
            pairProps = [atom("SPICESRV_TEST_PAIR_%d" % i) for i in range(len(pairs))]
            listed = [v for t, p in zip(pairs, pairProps) for v in (atom(t), p)]
            core.ChangeProperty(xp.PropMode.Replace, window, prop, atom("ATOM_PAIR"), 32,
                                len(listed), struct.pack("=%dI" % len(listed), *listed))
        core.ConvertSelection(window, atom(selection), atom(target), prop, xp.Time.CurrentTime)
        conn.flush()
        deadline = time.monotonic() + timeout
        while True:
            event = conn.poll_for_event()
            if event is None:
                if time.monotonic() > deadline:
                    raise AssertionError("no SelectionNotify within %s s" % timeout)
                time.sleep(0.01)
                continue
            if isinstance(event, xp.SelectionNotifyEvent):
                break

        def read(p):
            reply = core.GetProperty(True, window, p, 0, 0, 1 << 24).reply()
            return name(reply.type), reply.format, bytes(reply.value.buf())
        if not event.property:
            return None
        if pairs is None:
            return read(event.property)
        _, _, value = read(event.property)
        answered = struct.unpack("=%dI" % (len(value) // 4), value)
        return [read(p) if p else None for p in answered[1::2]]
    finally:
        conn.disconnect()


def twoOutputs(server, first=(1024, 768), second=(800, 600)):
    """
    Give the Xorg dummy L{XServer} C{server} two monitors side by side, as
    a machine with two screens has: DUMMY0 at C{first}'s size, DUMMY1 (a
    mode added to it) at C{second}'s, to its right.
    """
    server.run("xrandr", "--output", "DUMMY0", "--mode", "%dx%d" % first, "--pos", "0x0",
               "--fb", "%dx%d" % first)
    server.run("xrandr", "--addmode", "DUMMY1", "%dx%d" % second)
    server.run("xrandr", "--fb", "%dx%d" % (first[0] + second[0], max(first[1], second[1])),
               "--output", "DUMMY1", "--mode", "%dx%d" % second,
               "--pos", "%dx0" % first[0])
