"""
Verified fakes of spicesrv's interfaces, for tests of spicesrv and of code
built on it: recording devices (keyboard, mouse, tablet, observers, agent,
sound), a display source, migration callbacks and state, the QMP monitor's
backend, and plugins.  L{spicesrv.testing} re-exports every one of them, with
its table L{spicesrv.testing.FAKES} (interface -> fake) that the tests check
with C{verifyObject}.
"""

import numpy
from twisted.plugin import IPlugin
from zope.interface import implementer

from spicesrv.display.cursor import Cursor
from spicesrv.interfaces import (
    IAgent, IAgentClients, IChannelPlugin, IDisplayObserver, IKeyboard,
    IMigratableState, IMigration, IMonitorBackend, IMonitorLayout, IMouse, IPlaybackObserver,
    IRecordObserver, ISoundPlugin, ISourcePlugin, ITablet)
from spicesrv.plugin import Option
from spicesrv.sound.device import PlaybackDevice, RecordDevice
from spicesrv.sources.base import FramebufferSource
from spicesrv.wire.constants import ChannelType, KeyModifier


def _base(iface, description):
    """
    The ISpiceBase attribute values for a provider of C{iface}.
    """
    return dict(type=iface.getTaggedValue("type"), description=description,
                major_version=iface.getTaggedValue("major_version"),
                minor_version=iface.getTaggedValue("minor_version"))


class FakeDisplaySource(FramebufferSource):
    """
    A display source whose framebuffer a test paints directly.

    @ivar frame: the framebuffer, a C{(height, width, 4)} uint8 array.
    @ivar observers: the registered L{spicesrv.interfaces.IDisplayObserver}s.
    @ivar position: the cursor position.
    """

    description = "fake display"

    def __init__(self, width=64, height=48, cursor=None):
        FramebufferSource.__init__(self, width, height, cursor=cursor if cursor is not None
                                   else Cursor(2, 2, 0, 0, b"\xff\xff\xff\xff" * 4))
        self.position = (0, 0)

    @property
    def observers(self):
        return self._observers

    @property
    def position(self):
        return self._position

    @position.setter
    def position(self, value):
        self._position = value

    def fill(self, rect, bgrx):
        """
        Paint C{(left, top, right, bottom)} with one B, G, R, X colour and
        report the damage.
        """
        left, top, right, bottom = rect
        self.frame[top:bottom, left:right] = bgrx
        self.damage([rect])

    def resize(self, width, height):
        """
        Change the framebuffer's size (it becomes black) and tell the
        observers.
        """
        self.setFrame(numpy.zeros((height, width, 4), dtype=numpy.uint8))


@implementer(IMonitorLayout)
class MonitoredDisplaySource(FakeDisplaySource):
    """
    A L{FakeDisplaySource} that reports monitors (L{IMonitorLayout}).

    @ivar layout: what L{monitors} returns; one monitor over the whole
        surface at first.
    """

    description = "fake display with monitors"

    def __init__(self, width=64, height=48, cursor=None):
        FakeDisplaySource.__init__(self, width, height, cursor)
        self.layout = [(0, 0, width, height)]

    def monitors(self):
        return list(self.layout)

    def setLayout(self, layout):
        """
        The monitors move: tell the observers that listen.
        """
        self.layout = list(layout)
        for observer in list(self._observers):
            changed = getattr(observer, "monitors_changed", None)
            if changed is not None:
                changed()


@implementer(IDisplayObserver)
class RecordingObserver:
    """
    An L{IDisplayObserver} that records what a display source tells it, as
    C{(method name, arguments...)} tuples in L{events}.
    """

    def __init__(self):
        self.events = []

    def surface_changed(self, width, height):
        self.events.append(("surface_changed", width, height))

    def damaged(self, rects):
        self.events.append(("damaged", list(rects)))

    def cursor_changed(self, cursor):
        self.events.append(("cursor_changed", cursor))

    def cursor_moved(self, x, y):
        self.events.append(("cursor_moved", x, y))

    def rects(self):
        """
        Every damaged rectangle reported, in order.
        """
        return [rect for event in self.events if event[0] == "damaged"
                for rect in event[1]]

    def of(self, name):
        """
        The arguments of every call of observer method C{name}.
        """
        return [event[1:] for event in self.events if event[0] == name]


@implementer(IKeyboard)
class RecordingKeyboard:
    """
    A keyboard that records the scancode bytes it receives and toggles its
    lock LEDs like a PC keyboard.

    @ivar scancodes: every byte received, in order.
    @ivar leds: the lock LEDs, as SPICE modifier flags.
    @ivar leds_changed: what the server set (see L{IKeyboard}), called by
        L{setLeds}.
    """

    LOCKS = {0x46: KeyModifier.SCROLL_LOCK, 0x45: KeyModifier.NUM_LOCK,
             0x3A: KeyModifier.CAPS_LOCK}

    def __init__(self):
        self.__dict__.update(_base(IKeyboard, "recording keyboard"))
        self.scancodes = []
        self.leds = 0
        self.leds_changed = None
        self._extended = False

    def setLeds(self, leds):
        """
        The LEDs change by themselves (as a lock key pressed on the
        machine's own keyboard): tell the server.
        """
        self.leds = leds
        if self.leds_changed is not None:
            self.leds_changed()

    def push_scan_freg(self, byte):
        self.scancodes.append(byte)
        if byte == 0xE0:
            self._extended = True
            return
        if not self._extended and byte in self.LOCKS:
            self.leds ^= self.LOCKS[byte]
        self._extended = False

    def get_leds(self):
        return self.leds


@implementer(IMouse)
class RecordingMouse:
    """
    A mouse that records C{("motion", dx, dy, dz, buttons)} and
    C{("buttons", buttons)} events.

    @ivar events: the events, in order.
    """

    def __init__(self):
        self.__dict__.update(_base(IMouse, "recording mouse"))
        self.events = []

    def motion(self, dx, dy, dz, buttons_state):
        self.events.append(("motion", dx, dy, dz, buttons_state))

    def buttons(self, buttons_state):
        self.events.append(("buttons", buttons_state))


@implementer(ITablet)
class RecordingTablet:
    """
    A tablet that records its events like L{RecordingMouse}.
    """

    def __init__(self):
        self.__dict__.update(_base(ITablet, "recording tablet"))
        self.events = []

    def set_logical_size(self, width, height):
        self.events.append(("size", width, height))

    def position(self, x, y, buttons_state):
        self.events.append(("position", x, y, buttons_state))

    def wheel(self, wheel_motion, buttons_state):
        self.events.append(("wheel", wheel_motion, buttons_state))

    def buttons(self, buttons_state):
        self.events.append(("buttons", buttons_state))


@implementer(IMonitorBackend)
class RecordingMonitorBackend:
    """
    A QMP monitor backend that records calls, for testing the monitor
    without a server.

    @ivar calls: C{(method name, arguments...)} tuples, in order.
    @ivar results: method name -> what it returns (or, for an exception
        instance, raises).
    @ivar spice: what C{query_spice} returns.
    @ivar migration: what C{query_migrate} returns.
    @ivar observers: the event observers; L{emit} calls them.
    """

    def __init__(self):
        self.calls = []
        self.observers = []
        self.results = {}
        self.spice = {"enabled": True, "migrated": False, "host": "*", "port": 5900,
                      "auth": "spice", "compiled-version": "0.1.0", "mouse-mode": "client",
                      "channels": []}
        self.migration = {}

    def _call(self, name, *args):
        self.calls.append((name,) + args)
        result = self.results.get(name)
        if isinstance(result, BaseException):
            raise result
        return result

    def query_spice(self):
        self._call("query_spice")
        return self.spice

    def client_migrate_info(self, hostname, port, tls_port, cert_subject):
        return self._call("client_migrate_info", hostname, port, tls_port, cert_subject)

    def check_target(self, hostname, tls_port, cert_subject):
        return self._call("check_target", hostname, tls_port, cert_subject)

    def migrate(self, uri):
        return self._call("migrate", uri)

    def migrate_cancel(self):
        return self._call("migrate_cancel")

    def query_migrate(self):
        self._call("query_migrate")
        return self.migration

    def set_password(self, password, connected):
        return self._call("set_password", password, connected)

    def expire_password(self, time):
        return self._call("expire_password", time)

    def addEventObserver(self, observer):
        self.observers.append(observer)

    def emit(self, name, data=None):
        """
        Report the event C{name} with C{data} to the observers.
        """
        for observer in self.observers:
            observer(name, data)


@implementer(IMigration)
class RecordingMigration:
    """
    Migration callbacks that record their calls.

    @ivar calls: C{"connect_complete"} and C{"end_complete"}, in the order
        the server called them.
    """

    def __init__(self):
        self.__dict__.update(_base(IMigration, "recording migration callbacks"))
        self.calls = []

    def migrate_connect_complete(self):
        self.calls.append("connect_complete")

    def migrate_end_complete(self):
        self.calls.append("end_complete")


@implementer(IMigratableState)
class RecordingState:
    """
    A device whose migratable state is a byte string.

    @ivar data: the state, which L{get_migration_state} returns.
    @ivar applied: every state restored, in order.
    @ivar reject: when not L{None}, restoring raises L{ValueError} with it.
    """

    def __init__(self, key="test.state", data=b"", reject=None):
        self.migration_key = key
        self.data = data
        self.reject = reject
        self.applied = []

    def get_migration_state(self):
        return self.data

    def set_migration_state(self, data):
        if self.reject is not None:
            raise ValueError(self.reject)
        self.applied.append(data)
        self.data = data


@implementer(IPlugin, ISourcePlugin)
class FakeSourcePlugin:
    """
    A source plugin (C{--source fake[:WIDTHxHEIGHT]}) that makes
    L{FakeDisplaySource}s and records them.

    @ivar made: the sources it made, in order.
    """

    name = "fake"
    description = "fake[:WIDTHxHEIGHT] a display a test paints (default 64x48)"

    def __init__(self, options=(Option("fake-note", "A value the test reads back."),)):
        self.options = tuple(options)
        self.made = []

    def makeSource(self, args, values, reactor):
        try:
            width, height = (int(n) for n in args.split("x")) if args else (64, 48)
        except ValueError:
            raise ValueError("give the size as WIDTHxHEIGHT, e.g. --source fake:320x200")
        source = FakeDisplaySource(width, height)
        self.made.append((source, args, values, reactor))
        return source


@implementer(IPlugin, IChannelPlugin)
class FakeChannelPlugin:
    """
    A channel plugin that records its installs, registers C{channelClass}
    (when given) for C{channel_type} on each server, and returns
    C{devices}.

    @ivar installs: C{(server, values, reactor)} for every install.
    """

    name = "fake-channel"
    description = "a channel plugin a test controls"

    def __init__(self, channel_type=ChannelType.PORT, channelClass=None, devices=(),
                 options=()):
        self.channel_type = channel_type
        self.channelClass = channelClass
        self.devices = list(devices)
        self.options = tuple(options)
        self.installs = []

    def install(self, server, values, reactor):
        self.installs.append((server, values, reactor))
        if self.channelClass is not None:
            server.registry.register(self.channel_type,
                                     server.registry.nextId(self.channel_type),
                                     self.channelClass)
        return list(self.devices)


@implementer(IAgent)
class RecordingAgent:
    """
    An agent device that records what the clients ask and gives the
    clipboard contents a test puts in L{clipboard}.

    @ivar clients: the L{spicesrv.interfaces.IAgentClients} the server gave
        it (offer the device's clipboard with C{clients.clipboard_grab}).
    @ivar events: C{("monitors_config", monitors)}, C{("clipboard_grab",
        selection, types)}, C{("clipboard_release", selection)} and
        C{("clipboard_request", selection, type)}, in order.
    @ivar clipboard: C{(selection, type)} -> the bytes a request gets
        (L{None} if missing).
    """

    def __init__(self):
        self.__dict__.update(_base(IAgent, "recording agent"))
        self.clients = None
        self.events = []
        self.clipboard = {}

    def agent_attached(self, clients):
        self.clients = clients

    def monitors_config(self, monitors):
        self.events.append(("monitors_config", monitors))

    def clipboard_grab(self, selection, types):
        self.events.append(("clipboard_grab", selection, list(types)))

    def clipboard_release(self, selection):
        self.events.append(("clipboard_release", selection))

    def clipboard_request(self, selection, type):
        self.events.append(("clipboard_request", selection, type))
        return self.clipboard.get((selection, type))


@implementer(IAgentClients)
class RecordingAgentClients:
    """
    The clients as an L{IAgent} device sees them, for testing a device
    without a server: it records what the device offers and answers its
    requests from L{clipboards}.

    @ivar events: C{("clipboard_grab", selection, types)} and
        C{("clipboard_release", selection)}, in order.
    @ivar owners: selection -> the types a client offers (what
        L{clipboard_owner} returns).
    @ivar clipboards: C{(selection, type)} -> the bytes a request gets; a
        missing entry fails the request with
        L{spicesrv.agent.ClipboardUnavailable}.
    """

    def __init__(self):
        self.events = []
        self.owners = {}
        self.clipboards = {}

    def clipboard_grab(self, selection, types):
        self.events.append(("clipboard_grab", selection, list(types)))

    def clipboard_release(self, selection):
        self.events.append(("clipboard_release", selection))

    def clipboard_owner(self, selection):
        return self.owners.get(selection)

    def clipboard_request(self, selection, type):
        from twisted.internet import defer
        from spicesrv.agent import ClipboardUnavailable
        data = self.clipboards.get((selection, type))
        if data is None:
            return defer.fail(ClipboardUnavailable("no client offers %s in type %s"
                                                   % (selection, type)))
        return defer.succeed(data)


class FakeSoundSource(PlaybackDevice):
    """
    A playback source a test drives: C{start()}, C{write(pcm)}, C{stop()},
    C{setVolume(levels)}, C{setMute(flag)} (those of
    L{spicesrv.sound.device.PlaybackDevice}).
    """

    def __init__(self, description="fake sound"):
        PlaybackDevice.__init__(self, description)


class RecordingSink(RecordDevice):
    """
    A record sink that keeps what clients send (C{pcm}, all of it as one
    L{bytes}); active from the start unless C{active=False}.
    """

    def __init__(self, description="recording sink", active=True):
        RecordDevice.__init__(self, description)
        self.pcm = b""
        if active:
            self.start()

    def received(self, pcm):
        self.pcm += pcm


@implementer(IPlaybackObserver)
class RecordingPlaybackObserver:
    """
    Records what a playback source tells it: C{events} (names and
    arguments) and C{frames}.
    """

    def __init__(self):
        self.events = []
        self.frames = []

    def playback_started(self):
        self.events.append(("started",))

    def playback_stopped(self):
        self.events.append(("stopped",))

    def playback_frame(self, frame):
        self.frames.append(frame)

    def volume_changed(self, volume):
        self.events.append(("volume", tuple(volume)))

    def mute_changed(self, mute):
        self.events.append(("mute", mute))


@implementer(IRecordObserver)
class RecordingRecordObserver:
    """
    Records what a record sink tells it, in C{events}.
    """

    def __init__(self):
        self.events = []

    def record_started(self):
        self.events.append(("started",))

    def record_stopped(self):
        self.events.append(("stopped",))

    def volume_changed(self, volume):
        self.events.append(("volume", tuple(volume)))

    def mute_changed(self, mute):
        self.events.append(("mute", mute))


@implementer(IPlugin, ISoundPlugin)
class FakeSoundPlugin:
    """
    A sound plugin (C{--playback fake-sound}, C{--record fake-sound}) that
    makes L{FakeSoundSource}s and L{RecordingSink}s and records them in
    C{made}.
    """

    name = "fake-sound"
    description = "fake-sound a source and a sink a test drives"

    def __init__(self, options=()):
        self.options = tuple(options)
        self.made = []

    def makePlayback(self, args, values, reactor):
        device = FakeSoundSource()
        self.made.append(device)
        return device

    def makeRecord(self, args, values, reactor):
        device = RecordingSink()
        self.made.append(device)
        return device
