"""
The X11 source against the real spice-gtk client and real X servers: the
client shows the X screen's pixels and size, its keys and clicks reach an
X client on that screen (through XTEST, with the X server's layout), the
lock keys follow both ways, a size change made on the X side re-creates the
client's surface and the client's window size resizes the X screen (Xvnc;
Xvfb keeps its size), the X clipboard and spice-gtk's go both ways (xclip
on the X side), and without --x11-allow-control nothing the client sends
reaches the X server.  The last tests run the operator's commands: one
twistd spice showing an X display, and two of them moving a viewer from
one to the other through their QMP monitors (qemu.qmp), as an operator
would.
"""

import io
import os

import numpy
from PIL import Image
from twisted.internet import defer, reactor, task

from spicesrv.server import SpiceServer
from spicesrv.sources.x11 import X11Source
from tests.interop import harness
from tests.interop.common import PASSWORD, InteropTestCase, pixelsEqual, serveOnLoopback
from tests.interop.processes import Twistd, freePort, qmpSteps
from tests.interop.test_operator import OperatorBase
from tests.test_sources_x11 import grab, largePng, largeText
from tests.x11client import QUARTERS
from tests.x11display import (
    XClient, pressXKey, requireX, startXServer, twoOutputs, xclipCopy, xclipPaste)

# PC/XT set-1 make codes, and spice-gtk's 0x100 for the 0xE0 prefix.
H, I, A, Y, SHIFT, CAPS, UP = 0x23, 0x17, 0x1E, 0x15, 0x2A, 0x3A, 0x148
TEXT, PNG = 1, 2    # VD_AGENT_CLIPBOARD_UTF8_TEXT, _IMAGE_PNG


class X11InteropTestCase(InteropTestCase):
    kind = "Xvfb"
    size = (1024, 768)
    allowControl = True

    @defer.inlineCallbacks
    def serve(self, clientArgs=()):
        """
        An X server with the test X client on it, a spicesrv server showing
        it, and a spice-gtk client connected to that: fires with the
        spice-gtk client.
        """
        self.x = startXServer(self, self.kind, self.size)
        self.xclient = yield XClient.start(reactor, self.x, *clientArgs)
        self.addCleanup(self.xclient.stop)
        self.source, self.server, port = yield self.exportX()
        client = yield self.startClient(port)
        yield client.waitForChannelsOpened((1, 2, 3, 4), timeout=30)
        return client

    @defer.inlineCallbacks
    def exportX(self, **serverArgs):
        """
        A spicesrv server showing C{self.x} on a loopback port: fires with
        C{(source, server, port number)}.
        """
        source = X11Source(self.x.display, allow_control=self.allowControl, reactor=reactor)
        self.addCleanup(source.stop)
        source.start()
        server = SpiceServer(clock=reactor, password=PASSWORD, **serverArgs)
        port = yield serveOnLoopback(self, server, source.devices())
        return source, server, port

    @defer.inlineCallbacks
    def waitForScreen(self, client, width, height, timeout=30):
        """
        Poll the client until its primary is the X screen as an independent
        X client sees it.
        """
        path = os.path.join(self.tmp, "poll.raw")
        state = {}

        def same(shown):
            state["shown"] = shown
            return pixelsEqual(shown, grab(self.x.display, width, height))

        try:
            reply = yield client.waitForPixels(same, path, timeout=timeout)
        except harness.HarnessTimeout:
            shown = state.get("shown")
            self.fail("the client never showed the %dx%d X screen (it shows %s)"
                      % (width, height, None if shown is None else shown.shape))
        return harness.loadPrimary(reply)

    @defer.inlineCallbacks
    def typeKeys(self, client, *codes):
        for code in codes:
            yield client.check("key_press_and_release", scancode=code)


class PictureTests(X11InteropTestCase):
    @defer.inlineCallbacks
    def test_screenPixelsAndSize(self):
        """
        The client's surface has the X screen's size and, pixel for pixel,
        its picture (the X client's four quarters); the cursor channel
        carries the X cursor.
        """
        client = yield self.serve()
        created = yield client.waitForEvent({"event": "primary-create"}, timeout=30)
        self.assertEqual((created["width"], created["height"]), self.size)
        shown = yield self.waitForScreen(client, *self.size)
        self.assertEqual(tuple(shown[100, 100, 2::-1]),
                         ((QUARTERS[0] >> 16), (QUARTERS[0] >> 8) & 0xFF,
                          QUARTERS[0] & 0xFF))
        yield client.waitForEvent({"event": "cursor-set"}, timeout=30)


class KeyboardTests(X11InteropTestCase):
    @defer.inlineCallbacks
    def test_typing(self):
        """
        Keys typed in spice-gtk reach the X client as the right keysyms:
        letters, a shifted letter, an extended key (Up).
        """
        client = yield self.serve()
        yield self.typeKeys(client, H, I)
        yield client.check("key_press", scancode=SHIFT)
        yield client.check("key_press_and_release", scancode=A)
        yield client.check("key_release", scancode=SHIFT)
        yield self.typeKeys(client, UP)
        yield self.xclient.waitFor(lambda e: e["event"] == "key" and e["keysym"] == 0xFF52,
                                   timeout=30)
        self.assertEqual(self.xclient.keys(),
                         [(ord("h"), "h"), (ord("i"), "i"), (0xFFE1, ""), (ord("A"), "A"),
                          (0xFF52, "")])

    @defer.inlineCallbacks
    def test_serversLayout(self):
        """
        After ``setxkbmap de`` on the X server, the key at the US "y"
        position gives "z": the client sends keys, the X server's layout
        makes them characters.
        """
        client = yield self.serve()
        self.x.run("setxkbmap", "de")
        yield self.typeKeys(client, Y)
        yield self.xclient.waitFor(lambda e: e["event"] == "key", timeout=30)
        self.assertEqual(self.xclient.keys(), [(ord("z"), "z")])

    @defer.inlineCallbacks
    def test_capsLockBothWays(self):
        """
        Caps Lock from the client locks the X server's caps (a letter comes
        out upper case) and the client hears the new lock state.
        """
        client = yield self.serve()
        yield self.typeKeys(client, CAPS)
        yield client.waitForEvent(lambda e: e["event"] == "inputs-modifiers"
                                  and e["modifiers"] & 4, timeout=30)
        yield self.typeKeys(client, A)
        yield self.xclient.waitFor(lambda e: e["event"] == "key" and e["char"] == "A",
                                   timeout=30)
        self.assertEqual(self.source.keyboard.get_leds() & 4, 4)

    @defer.inlineCallbacks
    def test_capsLockOnTheXServer(self):
        """
        Caps Lock pressed on the X server itself (not by the client)
        reaches the client's lock state at once, and so does its release.
        """
        client = yield self.serve()
        # spice-gtk sends its own locks as the inputs channel comes up (and
        # the server takes them): a key typed and seen in X is after that.
        yield self.typeKeys(client, H)
        yield self.xclient.waitFor(lambda e: e["event"] == "key", timeout=30)
        since = len(client.events)
        pressXKey(self.x, self.source.keymap.keycode(CAPS))
        yield client.waitForEvent(lambda e: e["event"] == "inputs-modifiers"
                                  and e["modifiers"] & 4, timeout=30, since=since)
        since = len(client.events)
        pressXKey(self.x, self.source.keymap.keycode(CAPS))
        yield client.waitForEvent(lambda e: e["event"] == "inputs-modifiers"
                                  and not e["modifiers"] & 4, timeout=30, since=since)


class MouseTests(X11InteropTestCase):
    @defer.inlineCallbacks
    def test_clickLands(self):
        """
        In client mouse mode a click at (300, 200) of the client's surface
        is a button press at (300, 200) in the X client; the wheel is
        buttons 4 and 5.
        """
        client = yield self.serve()
        yield client.waitForEvent({"event": "mouse-mode", "mode": 2}, timeout=30)
        yield client.check("position", x=300, y=200, display=0, buttons=0)
        yield client.check("button_press", button=1, buttons=1)
        yield client.check("button_release", button=1, buttons=0)
        yield client.check("position", x=700, y=500, display=0, buttons=0)
        yield client.check("button_press", button=3, buttons=4)
        yield client.check("button_release", button=3, buttons=0)
        yield client.check("button_press", button=5, buttons=0)
        yield client.check("button_release", button=5, buttons=0)
        yield self.xclient.waitFor(lambda e: e["event"] == "button" and e["button"] == 5
                                   and not e["press"], timeout=30)
        presses = [(e["button"], e["x"], e["y"]) for e in self.xclient.events
                   if e["event"] == "button" and e["press"]]
        self.assertEqual(presses, [(1, 300, 200), (3, 700, 500), (5, 700, 500)])


class ViewOnlyTests(X11InteropTestCase):
    allowControl = False

    @defer.inlineCallbacks
    def test_nothingReachesTheXServer(self):
        """
        Without --x11-allow-control the client sees the screen, gets server
        mouse mode only, and its keys and clicks reach no X client.
        """
        client = yield self.serve()
        yield self.waitForScreen(client, *self.size)
        main = yield client.check("channels")
        self.assertTrue(main["channels"])
        yield self.typeKeys(client, H)
        yield client.check("button_press", button=1, buttons=1)
        yield client.check("button_release", button=1, buttons=0)
        yield client.check("motion", dx=30, dy=30, buttons=0)
        yield task.deferLater(reactor, 1.0, lambda: None)
        self.assertEqual([e for e in self.xclient.events if e["event"] != "ready"], [])
        self.assertEqual(self.server.supportedMouseModes, 1)


class ResizeTests(X11InteropTestCase):
    kind = "Xvnc"

    @defer.inlineCallbacks
    def test_xrandrRecreatesSurface(self):
        """
        ``xrandr`` on the X server (Xvnc, which can resize) makes the client
        create a new surface of the new size, showing the X screen.
        """
        client = yield self.serve()
        yield self.waitForScreen(client, 1024, 768)
        before = len(client.events)
        self.x.run("xrandr", "--output", "VNC-0", "--mode", "1280x800")
        created = yield client.waitForEvent(
            lambda e: e["event"] == "primary-create", timeout=30, since=before)
        self.assertEqual((created["width"], created["height"]), (1280, 800))
        yield self.waitForScreen(client, 1280, 800)
        before = len(client.events)
        self.x.run("xrandr", "--output", "VNC-0", "--mode", "800x600")
        created = yield client.waitForEvent(
            lambda e: e["event"] == "primary-create", timeout=30, since=before)
        self.assertEqual((created["width"], created["height"]), (800, 600))
        yield self.waitForScreen(client, 800, 600)


class ClipboardTests(X11InteropTestCase):
    """
    The X selections and spice-gtk's clipboard, both ways, with xclip as
    the X client that copies and pastes.
    """

    @defer.inlineCallbacks
    def serveWithAgent(self):
        requireX(self, "xclip")
        client = yield self.serve()
        yield client.waitForEvent({"event": "agent-update", "connected": True}, timeout=30)
        yield self.waitUntil(lambda: any(c.ready for c in self.server.agent.connections))
        return client

    @defer.inlineCallbacks
    def test_xCopyReachesClient(self):
        """
        Text copied in X with xclip, on CLIPBOARD and then on PRIMARY, is
        offered to spice-gtk as UTF-8 text on that selection, and its
        request gets the text.
        """
        client = yield self.serveWithAgent()
        for selection, name, text in ((0, "clipboard", "copied in X, ünï"),
                                      (1, "primary", "selected in X")):
            since = len(client.events)
            xclipCopy(self, self.x, text.encode("utf-8"), "-selection", name)
            grab = yield client.waitForEvent({"event": "clipboard-grab"}, since=since,
                                             timeout=30)
            self.assertEqual((grab["selection"], grab["types"]), (selection, [TEXT]))
            yield client.check("clipboard_request", type=TEXT, selection=selection)
            data = yield client.waitForEvent({"event": "clipboard", "selection": selection},
                                             since=since, timeout=30)
            self.assertEqual(bytes.fromhex(data["hex"]).decode("utf-8"), text)

    @defer.inlineCallbacks
    def test_clientCopyPastedInX(self):
        """
        Text and a PNG copied in spice-gtk are what ``xclip -o`` pastes in
        X (UTF8_STRING, image/png); PRIMARY too; released, X has nothing.
        """
        client = yield self.serveWithAgent()
        text = "copied in spice-gtk, ünï"
        png = io.BytesIO()
        Image.new("RGB", (20, 10), (10, 200, 30)).save(png, "PNG")
        png = png.getvalue()
        yield client.check("clipboard_grab", types=[TEXT, PNG],
                           data={str(TEXT): text.encode("utf-8").hex(), str(PNG): png.hex()})
        yield self.waitUntil(lambda: self.source.clipboard.owned.get(0) == [TEXT, PNG])
        out, code = yield xclipPaste(reactor, self.x, "-selection", "clipboard",
                                     "-t", "UTF8_STRING")
        self.assertEqual((out.decode("utf-8"), code), (text, 0))
        out, code = yield xclipPaste(reactor, self.x, "-selection", "clipboard",
                                     "-t", "image/png")
        self.assertEqual((out, code), (png, 0))
        yield client.check("clipboard_grab", selection=1, types=[TEXT],
                           data={str(TEXT): b"primary".hex()})
        yield self.waitUntil(lambda: self.source.clipboard.owned.get(1) == [TEXT])
        out, code = yield xclipPaste(reactor, self.x, "-selection", "primary")
        self.assertEqual((out, code), (b"primary", 0))
        yield client.check("clipboard_release", selection=0)
        yield self.waitUntil(lambda: 0 not in self.source.clipboard.owned)
        out, code = yield xclipPaste(reactor, self.x, "-selection", "clipboard")
        self.assertNotEqual(code, 0)


    @defer.inlineCallbacks
    def test_largeBothWays(self):
        """
        Clipboards larger than one X request go both ways, incrementally
        (INCR) on the X side: a 3 MiB text and a 2 MiB PNG that xclip
        copies reach spice-gtk whole, and spice-gtk's 3 MiB text and 2 MiB
        PNG are what ``xclip -o`` pastes.
        """
        import hashlib
        client = yield self.serveWithAgent()
        text, png = largeText(3 << 20), largePng()
        for data, args, kind in ((text, (), TEXT), (png, ("-t", "image/png"), PNG)):
            since = len(client.events)
            xclipCopy(self, self.x, data, "-selection", "clipboard", *args)
            grab = yield client.waitForEvent({"event": "clipboard-grab"}, since=since,
                                             timeout=30)
            self.assertEqual(grab["types"], [kind])
            yield client.check("clipboard_request", type=kind)
            got = yield client.waitForEvent({"event": "clipboard"}, since=since, timeout=60)
            self.assertEqual((got["type"], got["size"], got["sha256"]),
                             (kind, len(data), hashlib.sha256(data).hexdigest()))
        yield client.check("clipboard_grab", types=[TEXT, PNG],
                           data={str(TEXT): text.hex(), str(PNG): png.hex()})
        yield self.waitUntil(lambda: self.source.clipboard.owned.get(0) == [TEXT, PNG])
        out, code = yield xclipPaste(reactor, self.x, "-selection", "clipboard",
                                     "-t", "UTF8_STRING")
        self.assertEqual((len(out), code), (len(text), 0))
        self.assertEqual(out, text)
        out, code = yield xclipPaste(reactor, self.x, "-selection", "clipboard",
                                     "-t", "image/png")
        self.assertEqual((out, code), (png, 0))


class ClientResizeTests(X11InteropTestCase):
    kind = "Xvnc"

    @defer.inlineCallbacks
    def test_clientResizesTheXScreen(self):
        """
        spice-gtk's window becomes 1280x720 (a mode Xvnc has), then
        1100x700 (one it has not, so spicesrv creates it): each time
        ``xrandr -q`` shows the X screen at that size and the client gets a
        surface of that size showing it.
        """
        client = yield self.serve()
        yield client.waitForEvent({"event": "agent-update", "connected": True}, timeout=30)
        yield self.waitForScreen(client, 1024, 768)
        for width, height in ((1280, 720), (1100, 700)):
            since = len(client.events)
            yield client.check("update_display", width=width, height=height)
            created = yield client.waitForEvent(
                lambda e: e["event"] == "primary-create", timeout=30, since=since)
            self.assertEqual((created["width"], created["height"]), (width, height))
            self.assertIn("current %d x %d" % (width, height), self.x.run("xrandr", "-q"))
            yield self.waitForScreen(client, width, height)


class MonitorsTests(X11InteropTestCase):
    kind = "Xvnc"

    @defer.inlineCallbacks
    def test_monitorsProperty(self):
        """
        spice-gtk's ``monitors`` property of the display channel is the X
        screen's RandR CRTC (MONITORS_CONFIG), not only the surface: on a
        1280x800 screen whose output shows 1024x768, then 800x600 (a change
        of the CRTC alone), the client has that monitor.
        """
        client = yield self.serve()
        yield self.waitForScreen(client, 1024, 768)
        since = len(client.events)
        self.x.run("xrandr", "--fb", "1280x800", "--output", "VNC-0", "--mode", "1024x768")
        created = yield client.waitForEvent({"event": "primary-create"}, since=since,
                                            timeout=30)
        self.assertEqual((created["width"], created["height"]), (1280, 800))

        def monitor(width, height):
            return lambda e: (e["event"] == "display-monitors"
                              and [(m["x"], m["y"], m["width"], m["height"])
                                   for m in e["monitors"]] == [(0, 0, width, height)])
        got = yield client.waitForEvent(monitor(1024, 768), since=since, timeout=30)
        self.assertEqual(got["max"], 1)
        since = len(client.events)
        self.x.run("xrandr", "--fb", "1280x800", "--output", "VNC-0", "--mode", "800x600")
        yield client.waitForEvent(monitor(800, 600), since=since, timeout=30)


class MultiMonitorTests(X11InteropTestCase):
    """
    Xorg with the dummy driver, two of its RandR outputs on side by side.
    """

    kind = "Xorg"

    @defer.inlineCallbacks
    def test_monitorsBothWays(self):
        """
        The client hears of the X side's two monitors (MONITORS_CONFIG,
        spice-gtk's ``monitors``, at most 2); its own two monitors then go
        to the two outputs at their sizes and places, and it shows the
        2280x720 screen around them pixel-exact.
        """
        self.x = startXServer(self, self.kind)
        twoOutputs(self.x)
        self.xclient = yield XClient.start(reactor, self.x)
        self.addCleanup(self.xclient.stop)
        self.source, self.server, port = yield self.exportX()
        client = yield self.startClient(port)
        yield client.waitForChannelsOpened((1, 2, 3, 4), timeout=30)

        def monitors(*heads):
            return lambda e: (e["event"] == "display-monitors"
                              and [(m["x"], m["y"], m["width"], m["height"])
                                   for m in e["monitors"]] == list(heads))
        got = yield client.waitForEvent(monitors((0, 0, 1024, 768), (1024, 0, 800, 600)),
                                        timeout=30)
        self.assertEqual(got["max"], 2)
        yield self.waitForScreen(client, 1824, 768)
        yield client.waitForEvent({"event": "agent-update", "connected": True}, timeout=30)
        since = len(client.events)
        yield client.check("update_display", id=0, width=1280, height=720)
        yield client.check("update_display", id=1, x=1280, y=0, width=1000, height=700)
        yield client.waitForEvent(lambda e: e["event"] == "primary-create"
                                  and (e["width"], e["height"]) == (2280, 720),
                                  since=since, timeout=30)
        yield client.waitForEvent(monitors((0, 0, 1280, 720), (1280, 0, 1000, 700)),
                                  since=since, timeout=30)
        query = self.x.run("xrandr", "-q")
        self.assertIn("DUMMY0 connected primary 1280x720+0+0", query)
        self.assertIn("DUMMY1 connected 1000x700+1280+0", query)
        yield self.waitForScreen(client, 2280, 720)


class FixedSizeTests(X11InteropTestCase):
    @defer.inlineCallbacks
    def test_xvfbKeepsItsSize(self):
        """
        On Xvfb, which cannot grow, a larger client window changes nothing:
        the client keeps the X screen's size and picture.
        """
        client = yield self.serve()
        yield client.waitForEvent({"event": "agent-update", "connected": True}, timeout=30)
        yield self.waitForScreen(client, *self.size)
        since = len(client.events)
        yield client.check("update_display", width=1280, height=1024)
        yield task.deferLater(reactor, 2.0, lambda: None)
        self.assertEqual([e for e in client.events[since:] if e["event"] == "primary-create"],
                         [])
        self.assertEqual((self.source.width, self.source.height), self.size)
        yield self.waitForScreen(client, *self.size)


class MigrationTests(X11InteropTestCase):
    """
    A viewer of an X display moves between two spicesrv servers that export
    the same display (a front-end moved for maintenance): afterwards it
    shows the X screen, types into it, and what it had copied is still the
    X clipboard, now served by the target.
    """

    @defer.inlineCallbacks
    def migrate(self, seamless):
        requireX(self, "xclip")
        self.x = startXServer(self, self.kind, self.size)
        self.xclient = yield XClient.start(reactor, self.x)
        self.addCleanup(self.xclient.stop)
        source, sourceServer, sourcePort = yield self.exportX(seamless_migration=seamless)
        target, targetServer, targetPort = yield self.exportX(seamless_migration=seamless)
        client = yield self.startClient(sourcePort)
        yield client.waitForChannelsOpened((1, 2, 3, 4), timeout=30)
        yield client.waitForEvent({"event": "agent-update", "connected": True}, timeout=30)
        yield self.waitUntil(lambda: any(c.ready for c in sourceServer.agent.connections))
        copied = "copied before the move"
        yield client.check("clipboard_grab", types=[TEXT],
                           data={str(TEXT): copied.encode("utf-8").hex()})
        yield self.waitUntil(lambda: source.clipboard.owned.get(0) == [TEXT])
        out, _ = yield xclipPaste(reactor, self.x, "-selection", "clipboard")
        self.assertEqual(out.decode("utf-8"), copied)

        (sessionId,) = sourceServer.sessions
        before = len(client.events)
        answers = yield sourceServer.migrate_connect("127.0.0.1", targetPort, None, None)
        self.assertEqual(answers, {sessionId: "connected"})
        # The device state, as the migrate command carries it.
        for device in sourceServer.migratable:
            (other,) = [d for d in targetServer.migratable
                        if d.migration_key == device.migration_key]
            other.set_migration_state(device.get_migration_state())
        yield sourceServer.migrate_end(True)
        yield self.waitUntil(lambda: sessionId in targetServer.sessions
                             and len(targetServer.sessions[sessionId].channels) == 4
                             and not targetServer.sessions[sessionId].arriving, timeout=30)
        yield self.waitForPeers(client, targetPort)

        # The grab is known on the target, which owns the X selection for it.
        self.assertEqual(targetServer.agent.clipboard_owner(0), [TEXT])
        yield self.waitUntil(lambda: target.clipboard.owned.get(0) == [TEXT])
        out, code = yield xclipPaste(reactor, self.x, "-selection", "clipboard")
        self.assertEqual((out.decode("utf-8"), code), (copied, 0))
        # The X screen, and typing into it, through the target.
        yield self.waitForScreen(client, *self.size)
        yield self.typeKeys(client, H)
        yield self.xclient.waitFor(lambda e: e["event"] == "key", timeout=30)
        self.assertEqual(self.xclient.keys(), [(ord("h"), "h")])
        # The target taking the X selection for the client is no news to
        # the client (the source does not offer it the target's window).
        since = len(client.events)
        self.assertEqual([e for e in client.events[before:since]
                          if e["event"] in ("clipboard-grab", "clipboard-release")], [])
        # Text copied in X afterwards reaches the client through the target.
        xclipCopy(self, self.x, b"after the move", "-selection", "clipboard")
        grab = yield client.waitForEvent({"event": "clipboard-grab"}, since=since, timeout=30)
        self.assertEqual(grab["types"], [TEXT])
        yield client.check("clipboard_request", type=TEXT)
        data = yield client.waitForEvent({"event": "clipboard"}, since=since, timeout=30)
        self.assertEqual(bytes.fromhex(data["hex"]), b"after the move")

    def test_semiSeamless(self):
        return self.migrate(seamless=False)

    def test_seamless(self):
        return self.migrate(seamless=True)


class TwistdX11Tests(InteropTestCase):
    @defer.inlineCallbacks
    def test_twistdSpiceX11(self):
        """
        ``twistd -n spice --source x11:DISPLAY --x11-allow-control`` with
        the display's XAUTHORITY: the client shows the X screen and types
        on it.
        """
        x = startXServer(self, auth=True)
        xclient = yield XClient.start(reactor, x)
        self.addCleanup(xclient.stop)
        port = freePort()
        saved = dict(os.environ)
        os.environ["XAUTHORITY"] = x.auth
        try:
            process = Twistd(self, "--port", str(port), "--disable-ticketing",
                             "--source", "x11:" + x.display, "--x11-allow-control")
        finally:
            os.environ.clear()
            os.environ.update(saved)
        yield process.waitForPorts(port)
        client = yield harness.GtkClient.start(reactor, "127.0.0.1", port)
        self.addCleanup(client.stop)
        yield client.waitForChannelsOpened((1, 2, 3, 4), timeout=30)
        created = yield client.waitForEvent({"event": "primary-create"}, timeout=30)
        self.assertEqual((created["width"], created["height"]), (1024, 768))
        path = os.path.join(self.tmp, "x.raw")
        os.environ["XAUTHORITY"] = x.auth
        try:
            screen = grab(x.display, 1024, 768)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        yield client.waitForPixels(lambda shown: pixelsEqual(shown, screen), path, timeout=30)
        yield client.check("key_press_and_release", scancode=H)
        yield xclient.waitFor(lambda e: e["event"] == "key", timeout=30)
        self.assertEqual(xclient.keys(), [(ord("h"), "h")])
        yield process.stop()
        self.assertTrue(numpy.any(screen))


class OperatorX11MigrationTests(OperatorBase):
    """
    Two ``twistd -n spice --source x11:DISPLAY --x11-allow-control``
    processes exporting the same Xvfb (the target with ``--incoming``), a
    spice-gtk viewer on the source, and the move made through the source's
    QMP monitor with qemu.qmp (client_migrate_info, then migrate), as an
    operator would to take the source down for maintenance.
    """

    @defer.inlineCallbacks
    def migrate(self, seamless):
        requireX(self, "xclip")
        x = startXServer(self)
        xclient = yield XClient.start(reactor, x)
        self.addCleanup(xclient.stop)
        args = ["--source", "x11:" + x.display, "--x11-allow-control"]
        if seamless:
            args.append("--seamless-migration")
        yield self.startPair(sourceArgs=args, targetArgs=args)
        client = yield self.connectClient()
        yield client.waitForEvent({"event": "agent-update", "connected": True}, timeout=30)

        # The viewer copies a text; X programs paste it from the source.
        copied = "copied before the move, ünï"
        yield self.copyInClient(client, x, copied)
        ownerBefore = selectionOwner(x, "CLIPBOARD")

        before = len(client.events)
        results = yield qmpSteps(self, [
            *self.migrateSteps(),
            {"monitor": self.sourceQmp, "event": "MIGRATION", "match": {"status": "completed"},
             "timeout": 60},
            {"monitor": self.sourceQmp, "event": "SPICE_MIGRATE_COMPLETED", "timeout": 60},
            {"monitor": self.sourceQmp, "execute": "query-spice"},
            {"monitor": self.targetQmp, "execute": "query-spice"},
        ])
        self.assertEqual(results[0], {})
        self.assertNotIn("error", results[2], (self.source.text()[-3000:],
                                               self.target.text()[-3000:]))
        self.assertNotIn("error", results[3])
        self.assertEqual(results[4]["channels"], [])
        self.assertEqual(sorted(c["channel-type"] for c in results[5]["channels"]),
                         [1, 2, 3, 4])

        # The viewer is on the target's port, showing the X screen exactly.
        yield self.waitForPeers(client, self.targetPort, timeout=30)
        self.assertNotIn("disconnected", [e.get("event") for e in client.events])
        yield self.waitForPixels(
            client, lambda shown: pixelsEqual(shown, grab(x.display, 1024, 768)), timeout=30)
        # What it had copied is still the X clipboard, now owned by the
        # target's window: it stays pasteable with the source gone.
        yield self.waitUntil(lambda: selectionOwner(x, "CLIPBOARD") not in (0, ownerBefore),
                             timeout=30)
        yield self.source.stop()
        out, code = yield xclipPaste(reactor, x, "-selection", "clipboard")
        self.assertEqual((out.decode("utf-8"), code), (copied, 0))
        # Its keys reach the X client through the target (the only server left).
        yield client.check("key_press_and_release", scancode=H)
        yield xclient.waitFor(lambda e: e["event"] == "key", timeout=30)
        self.assertEqual(xclient.keys(), [(ord("h"), "h")])
        # The move was no clipboard news to the viewer.
        self.assertEqual([e for e in client.events[before:]
                          if e["event"] in ("clipboard-grab", "clipboard-release")], [])

    @defer.inlineCallbacks
    def copyInClient(self, client, x, text, timeout=30):
        """
        Copy C{text} in spice-gtk until ``xclip -o`` pastes it in X (the
        grab is sent again while the agents are still shaking hands).
        """
        deadline = reactor.seconds() + timeout
        while True:
            yield client.check("clipboard_grab", types=[TEXT],
                               data={str(TEXT): text.encode("utf-8").hex()})
            for _ in range(10):
                out, code = yield xclipPaste(reactor, x, "-selection", "clipboard")
                if code == 0 and out.decode("utf-8", "replace") == text:
                    return
                yield task.deferLater(reactor, 0.2, lambda: None)
            if reactor.seconds() > deadline:
                self.fail("xclip never pasted the client's copy")

    def test_semiSeamless(self):
        return self.migrate(seamless=False)

    def test_seamless(self):
        return self.migrate(seamless=True)


def selectionOwner(x, name):
    """
    The window that owns the X selection C{name} on L{XServer} C{x}, or 0.
    """
    import xcffib
    conn = xcffib.connect(display=x.display)
    try:
        atom = conn.core.InternAtom(False, len(name), name).reply().atom
        return conn.core.GetSelectionOwner(atom).reply().owner
    finally:
        conn.disconnect()
