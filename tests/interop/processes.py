"""
Real ``twistd spice`` processes and other helpers for tests that run the
operator's commands.
"""

import json
import os
import socket
import sys

from twisted.internet import defer, reactor, task, utils
from twisted.internet.protocol import ProcessProtocol

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QMPSTEPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "qmpsteps.py")


def freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Twistd(ProcessProtocol):
    """
    One ``twistd -n spice`` process run from this checkout.
    """

    def __init__(self, testcase, *args):
        self.testcase = testcase
        self.output = []
        self.ended = defer.Deferred()
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        env = dict(os.environ, PYTHONPATH=ROOT)
        self.transport = reactor.spawnProcess(
            self, twistd, [twistd, "-n", "--pidfile=", "spice", *args], env=env, path=ROOT)
        testcase.addCleanup(self.stop)

    def outReceived(self, data):
        self.output.append(data)

    errReceived = outReceived

    def processEnded(self, reason):
        self.ended.callback(reason.value.exitCode)

    def text(self):
        return b"".join(self.output).decode(errors="replace")

    def stop(self):
        if not self.ended.called:
            self.transport.signalProcess("TERM")
        return self.ended

    @defer.inlineCallbacks
    def waitForPorts(self, *ports, timeout=30):
        deadline = reactor.seconds() + timeout
        while not all(listening(p) for p in ports):
            if self.ended.called or reactor.seconds() > deadline:
                self.testcase.fail("twistd spice did not listen on %s:\n%s"
                                   % (ports, self.text()))
            yield task.deferLater(reactor, 0.1, lambda: None)

    @defer.inlineCallbacks
    def waitForPath(self, path, timeout=30):
        deadline = reactor.seconds() + timeout
        while not os.path.exists(path):
            if self.ended.called or reactor.seconds() > deadline:
                self.testcase.fail("twistd spice did not create %s:\n%s" % (path, self.text()))
            yield task.deferLater(reactor, 0.1, lambda: None)


@defer.inlineCallbacks
def qmpSteps(testcase, steps):
    """
    Run L{tests.interop.qmpsteps} steps with the real qemu.qmp library.
    """
    out, err, code = yield utils.getProcessOutputAndValue(
        sys.executable, [QMPSTEPS, json.dumps(steps)], env=dict(os.environ))
    if code != 0:
        testcase.fail("qmpsteps failed (%s): %s" % (code, err.decode(errors="replace")))
    return json.loads(out)


def requireQMPLibrary(testcase):
    """
    qemu.qmp is a test dependency: missing, it fails under C{CI=true} and
    skips otherwise.
    """
    import importlib.util
    import unittest
    try:
        found = importlib.util.find_spec("qemu.qmp") is not None
    except ImportError:
        found = False
    if found:
        return
    message = ("the QMP client library qemu.qmp is not installed; install it with: "
               "%s -m pip install 'qemu.qmp>=0.0.3'" % (sys.executable,))
    if os.environ.get("CI") == "true":
        testcase.fail(message)
    raise unittest.SkipTest(message)
