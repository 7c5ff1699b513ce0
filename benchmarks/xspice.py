"""
Xspice (Debian's ``xserver-xspice``): an Xorg whose video driver is QXL
and libspice-server, so a SPICE server exporting an X display, the
reference for the motion benchmark's X variants.

The packaged ``/etc/X11/spiceqxl.xorg.conf`` does not start here (Xorg
1.21 and the driver in Debian 12): without explicit buffer sizes the
driver reserves 0 KB of frame buffer and aborts, and with its default of
four heads, none of them connected, Xorg crashes in xf86InitViewport.
L{config} writes one that works: the buffer sizes of the driver's own
example, one head, depth 24, listening on loopback only; the screen is
then set to the wanted size with xrandr.
"""

import os
import shutil
import signal
import socket
import subprocess
import time

CONFIG = """\
Section "Device"
    Identifier "XSPICE"
    Driver "spiceqxl"
    Option "SpiceAddr" "127.0.0.1"
    Option "FrameBufferSize" "32"
    Option "SurfaceBufferSize" "128"
    Option "CommandBufferSize" "128"
    Option "NumHeads" "1"
EndSection
Section "InputDevice"
    Identifier "XSPICE POINTER"
    Driver "xspice pointer"
EndSection
Section "InputDevice"
    Identifier "XSPICE KEYBOARD"
    Driver "xspice keyboard"
EndSection
Section "Monitor"
    Identifier "Configured Monitor"
EndSection
Section "Screen"
    Identifier "XSPICE Screen"
    Monitor "Configured Monitor"
    Device "XSPICE"
    DefaultDepth 24
    SubSection "Display"
        Depth 24
        Virtual %(width)d %(height)d
    EndSubSection
EndSection
Section "ServerLayout"
    Identifier "XSPICE"
    Screen "XSPICE Screen"
    InputDevice "XSPICE KEYBOARD"
    InputDevice "XSPICE POINTER"
EndSection
Section "ServerFlags"
    Option "AutoAddDevices" "False"
EndSection
"""


def available():
    return shutil.which("Xspice") is not None and shutil.which("xrandr") is not None


def freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def freeDisplay(first=140):
    for n in range(first, first + 200):
        if not (os.path.exists("/tmp/.X%d-lock" % n)
                or os.path.exists("/tmp/.X11-unix/X%d" % n)):
            return n
    raise RuntimeError("no free X display number")


def processCpu(pid):
    """
    User plus system CPU seconds of process C{pid} so far.
    """
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


class Xspice:
    """
    An Xspice on a free display and port, C{width} x C{height}: C{display}
    (``:N``), C{port}, C{xorgPid}; with C{tls}, a TLS port too
    (C{tlsPort}, development certificates whose CA is C{caFile});
    L{startClient} links a spice-gtk to it, L{stop} ends it.
    """

    def __init__(self, tmp, width, height, arguments=(), tls=False):
        self.tmp = tmp
        self.display = ":%d" % (freeDisplay(),)
        self.port = freePort()
        self.tlsPort = self.caFile = None
        if tls:
            from benchmarks import connect
            self.tlsPort = freePort()
            self.caFile = connect.x509CaFile(tmp)
            arguments = (["--tls-port", str(self.tlsPort), "--x509-dir", connect.x509Dir(tmp)]
                         + list(arguments))
        path = os.path.join(tmp, "xspice.conf")
        with open(path, "w") as f:
            f.write(CONFIG % dict(width=width, height=height))
        self.log = os.path.join(tmp, "xspice.log")
        self.argv = (["Xspice", "--port", str(self.port), "--disable-ticketing"]
                     + list(arguments)
                     + ["--config", path, "-logfile", self.log, self.display])
        self.output = open(os.path.join(tmp, "xspice.out"), "w")
        self.process = subprocess.Popen(self.argv, stdout=self.output,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self.xorgPid = None
        try:
            self._waitForX()
            self._resize(width, height)
        except Exception:
            self.stop()
            raise

    def startClient(self, reactor, **kwargs):
        """
        A spice-gtk (L{tests.interop.harness.GtkClient.start}) linked to
        this Xspice: to its TLS port only when it has one.
        """
        from benchmarks import connect
        return connect.startClient(reactor, self.tlsPort or self.port, self.caFile, **kwargs)

    def environment(self):
        return dict(os.environ, DISPLAY=self.display)

    def _waitForX(self):
        import xcffib

        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError("Xspice exited (%s): see %s" % (self.process.returncode,
                                                                    self.log))
            try:
                xcffib.connect(display=self.display).disconnect()
                break
            except xcffib.ConnectionException:
                if time.monotonic() > deadline:
                    raise RuntimeError("Xspice did not start within 30 s")
                time.sleep(0.2)
        with open("/proc/%d/task/%d/children" % (self.process.pid, self.process.pid)) as f:
            children = [int(p) for p in f.read().split()]
        self.xorgPid = children[0] if children else self.process.pid

    def _resize(self, width, height):
        mode = "%dx%d" % (width, height)
        subprocess.run(["xrandr", "--output", "qxl-0", "--mode", mode], check=True,
                       env=self.environment(), capture_output=True, timeout=30)

    def cpuSeconds(self):
        return processCpu(self.xorgPid)

    def stop(self):
        if self.process.poll() is None:
            # Xorg ends on SIGTERM, and the script, which waits for it, then
            # exits (its own SIGTERM handler does not).
            try:
                os.kill(self.xorgPid or self.process.pid, signal.SIGTERM)
                self.process.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.output.close()
