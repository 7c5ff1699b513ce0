#!/usr/bin/python3
"""Drive spice-gtk's client library (SpiceClientGLib 2.0) headless, as a subprocess.

Run this with Debian's own ``/usr/bin/python3`` (which has ``python3-gi`` and
``gir1.2-spiceclientglib-2.0``), not with a virtualenv's or pyenv's Python.
``tests/interop/harness.py`` spawns it and speaks to it; nothing here imports
spicesrv or Twisted.

Protocol: JSON lines.  Commands arrive on stdin, one object per line, and are
handled from the GLib main loop.  Events and replies go to stdout, one object
per line, flushed.  Every command is answered with ``{"reply": <cmd>, "ok":
true|false, ...}``; a ``"seq"`` field in the command is echoed in the reply.
``"reason"`` explains an ``"ok": false``.  Events look like ``{"event": <name>,
...}``.  Diagnostics (and spice-gtk's own debug output under ``SPICE_DEBUG=1``)
go to stderr.

Commands (fields besides ``cmd`` and ``seq``):

- ``connect``: start the session (only needed with ``--no-autoconnect``).
- ``primary`` ``[channel_id=0] [dump=PATH] [pixels=[[x, y], ...]]``: the
  client-side primary surface of display channel ``channel_id``: ``width``,
  ``height``, ``stride``, ``format`` (SpiceSurfaceFmt, 32 = xRGB, 96 = ARGB),
  ``shmid``, ``marked``, ``sha256`` (hex digest of the ``height * stride``
  bytes), ``dump`` (the path written, if asked) and ``pixels`` (for 32-bit
  formats, one ``0xAARRGGBB`` integer per requested point).  In memory a
  32-bit pixel is little-endian: bytes B, G, R, X/A.
- ``key_press`` / ``key_release`` / ``key_press_and_release`` ``scancode``:
  SpiceInputsChannel key events.  spice-gtk's scancode encoding is PC XT
  scan code set 1 (the make code, e.g. 0x1e for "A"); a key whose set-1 code
  has the 0xe0 prefix is given as ``0x100 | code`` (e.g. 0x148 for Up, 0x11d
  for right Ctrl).  spice-gtk turns it into the wire code itself: release
  ORs 0x80, and an extended key becomes the byte pair ``0xe0, code``: the
  u32 of KEY_DOWN for Up is 0x48e0 (bytes e0 48 00 00), its KEY_UP 0xc8e0.
  ``key_press_and_release`` sends one SPICE_MSGC_INPUTS_KEY_SCANCODE message
  if the server advertised SPICE_INPUTS_CAP_KEY_SCANCODE, else a KEY_DOWN then
  a KEY_UP.
- ``position`` ``x y [display=0] [buttons=0]``: absolute pointer (client mouse
  mode).  ``motion`` ``dx dy [buttons=0]``: relative pointer (server mouse
  mode).  ``button_press`` / ``button_release`` ``button [buttons=0]``:
  ``button`` is a SpiceMouseButton (1 left, 2 middle, 3 right, 4 up, 5 down),
  ``buttons`` the SpiceMouseButtonMask state (1 left, 2 middle, 4 right).
  Note that spice-gtk silently drops input while the inputs channel is not
  ready; the reply then has ``"ok": false``.
- ``request_mouse_mode`` ``mode`` (1 server, 2 client).
- ``preferred_compression`` ``value [channel_id=0]``: send
  SPICE_MSGC_DISPLAY_PREFERRED_COMPRESSION (SpiceImageCompression: 1 off,
  2 auto_glz, 3 auto_lz, 4 quic, 5 glz, 6 lz, 7 lz4); spice-gtk sends it only
  if the server advertised SPICE_DISPLAY_CAP_PREF_COMPRESSION.
- ``watch`` ``[channel_id=0] [code=[left, bottom, bits, block]]
  [invalidates=false] [dump=PATH dumps=N]``: from now on, at each ``display-invalidate`` of that
  channel, read the frame bar code of spicesrv's motion source (``bits``
  squares of ``block`` pixels, bit 0 leftmost, white for 1, bottom-left
  corner at ``left, bottom``) from the primary surface and emit ``frame``
  when the number changes; with ``invalidates`` also emit every invalidate
  at once as ``invalidate-now``.  Event times are ``g_get_monotonic_time``
  (the same clock as Python's ``time.monotonic`` on Linux).  With ``dump``
  (a path containing ``{n}``) the primary surface is also written there for
  each of the first ``dumps`` frames, at the moment it showed the new code,
  and the event names the file (``dump``) and its ``surface`` (``[width,
  height, stride]``).  ``watch`` with neither code nor
  invalidates stops watching.
- ``preferred_video_codecs`` ``codecs [channel_id=0]``: send
  SPICE_MSGC_DISPLAY_PREFERRED_VIDEO_CODEC_TYPE with these SpiceVideoCodecType
  numbers (1 MJPEG, 2 VP8, 3 H.264, 4 VP9), most wanted first
  (spice_display_channel_change_preferred_video_codec_types; the server must
  advertise SPICE_DISPLAY_CAP_PREF_VIDEO_CODEC_TYPE).
- ``port_write`` ``hex [channel_id]``: write bytes on a port channel.
- ``port_event`` ``event [channel_id]``: send a port event (SPICE_PORT_EVENT_*).
- ``agent``: ``connected`` (the main channel's agent-connected) and
  ``caps``: the agent capability numbers (VD_AGENT_CAP_*) the server's agent
  announced.
- ``clipboard_grab`` ``types [selection=0] [data={type: hex}]``: grab the
  agent's clipboard ``selection`` (0 CLIPBOARD, 1 PRIMARY) with these
  VD_AGENT_CLIPBOARD types (1 UTF-8 text, 2 PNG); ``data`` is what the
  client answers the agent's requests with (keys are type numbers as
  strings), answered automatically (see ``clipboard-request``).
- ``clipboard_release`` ``[selection=0]``.
- ``clipboard_request`` ``type [selection=0]``: ask the agent for its
  clipboard; the data arrives as a ``clipboard`` event.
- ``clipboard_notify`` ``type hex [selection=0]``: send clipboard data.
- ``update_display`` ``width height [id=0] [x=0] [y=0]``: what a resized
  window does: enable display ``id``, set its size and send the monitors
  config to the agent at once (spice_main_channel_update_display_enabled,
  _update_display, _send_monitor_config).
- ``playback`` ``[dump=PATH] [reset=false]``: what the playback channel
  received (``--audio``): ``started``/``stopped`` counts, ``format``,
  ``channels``, ``rate``, ``bytes`` and ``chunks`` of PCM (decoded by
  spice-gtk, whatever the mode), ``volume`` (a list), ``mute``,
  ``min_latency``; ``dump`` writes the PCM kept (at most 60 s); ``reset``
  forgets it afterwards.
- ``record`` : what the record channel was told (``--audio``):
  ``started``, ``stopped``, ``format``, ``channels``, ``rate``, ``volume``,
  ``mute``.
- ``record_tone`` ``hz seconds [amplitude=0.3]``: send a sine as
  microphone audio with spice_record_channel_send_data (spice-gtk frames
  and encodes it, Opus when the server offers it); ``sent`` bytes.
- ``channels``: ``channels`` = list of ``{type, id, name, state, opened,
  peer, remote_caps, remote_common_caps, read_bytes}``; ``state`` is the last
  channel-event seen, ``peer`` the socket's remote "host:port",
  ``remote_*caps`` the bit numbers the server advertised, ``read_bytes``
  the channel's ``total-read-bytes`` (bytes of SPICE messages read, after
  TLS); display channels also give ``invalidated_pixels``, the sum of
  every ``display-invalidate`` signal's area (not coalesced), for
  throughput figures.
- ``session``: session properties (host, port, tls_port, migration_state).
- ``disconnect``: spice_session_disconnect().
- ``quit``: reply, disconnect, exit 0.  End of stdin does the same.

Events:

- ``ready`` ``{pid, version}``: printed once the library is loaded.
- ``channel-new`` / ``channel-destroy`` ``{type, id, name}``.
- ``channel-event`` ``{type, id, name, what}``: ``what`` is a SpiceChannelEvent
  name: SPICE_CHANNEL_OPENED, _CLOSED, _SWITCHING, _ERROR_CONNECT,
  _ERROR_TLS, _ERROR_LINK, _ERROR_AUTH, _ERROR_IO.  Errors carry ``error``
  (spice_channel_get_error's message) when there is one.
- ``primary-create`` ``{id, format, width, height, stride, shmid}``;
  ``primary-destroy`` ``{id}``; ``display-mark`` ``{id, mark}``;
  ``display-invalidate`` ``{id, count, x, y, width, height}``: invalidations
  coalesced over at most 100 ms, with their bounding box.
- ``frame`` ``{id, n, t, x, y, width, height}``: under ``watch``, the bar
  code changed to ``n`` with the invalidate of that rectangle at ``t``
  (seconds); ``invalidate-now`` ``{id, t, x, y, width, height}``: one
  invalidate, not coalesced;
  ``display-monitors`` ``{id, max, monitors: [{id, surface_id, x, y, width,
  height}]}``: the display channel's ``monitors`` property changed.
- ``mouse-mode`` ``{mode}``; ``agent-update`` ``{connected}``;
  ``clipboard-grab`` ``{selection, types}``, ``clipboard-release``
  ``{selection}``, ``clipboard`` ``{selection, type, size, sha256, hex}``
  (the agent's data), ``clipboard-request`` ``{selection, type, answered}``
  (``answered``: data given with ``clipboard_grab`` went back);
  ``inputs-modifiers`` ``{modifiers}``.
- ``cursor-set`` ``{width, height, hot_x, hot_y}``, ``cursor-move`` ``{x, y}``,
  ``cursor-hide``, ``cursor-reset``.
- ``port-opened`` ``{id, port_name, opened}``, ``port-data`` ``{id, size,
  hex}`` (hex of the first 4096 bytes), ``port-event`` ``{id, port_event}``.
- ``playback-onset`` ``{peak}`` (with ``--onset``): a loud chunk after a
  quiet one.
- ``playback-start`` ``{format, channels, rate}``, ``playback-stop``,
  ``playback-volume`` ``{volume}``, ``playback-mute`` ``{mute}``,
  ``playback-latency`` ``{min_latency}``, ``record-start`` ``{format,
  channels, rate}``, ``record-stop``, ``record-volume``, ``record-mute``.
- ``migration-started`` (main channel signal); ``migration-state``
  ``{state, name}`` (session property notify: 0 none, 1 switching,
  2 migrating, 3 connecting).
- ``disconnected``: the session's ``disconnected`` signal.
- ``error`` ``{message, traceback}``: an exception inside a handler.

Capabilities: spice-gtk has no API to remove a capability, but it consults
the environment when it sets each one: a variable named like the capability
macro and set to "0" (e.g. ``SPICE_DISPLAY_CAP_LZ4_COMPRESSION=0``) keeps that
capability out of the link message.  ``--no-lz4`` and ``--disable-cap`` use
that.  Beware: spice-gtk decides to use the mini header from the *server's*
SPICE_COMMON_CAP_MINI_HEADER alone, so disabling the client's MINI_HEADER
against a server that advertises it makes the client misparse every message.
"""

import argparse
import ctypes
import hashlib
import json
import os
import signal
import sys
import traceback


def parseArgs(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--tls-port", type=int, default=None)
    p.add_argument("--password", default=None)
    p.add_argument("--ca-file", default=None)
    p.add_argument("--cert-subject", default=None,
                   help="verify the TLS server certificate's subject "
                   "(sets verify=SUBJECT)")
    p.add_argument("--secure-channels", default=None,
                   help="comma-separated channel names that must use TLS "
                   "(e.g. main,display or all)")
    p.add_argument("--no-lz4", action="store_true",
                   help="do not advertise SPICE_DISPLAY_CAP_LZ4_COMPRESSION")
    p.add_argument("--disable-cap", action="append", default=[],
                   metavar="NAME",
                   help="do not advertise this capability, named as in "
                   "spice-gtk's source (e.g. SPICE_DISPLAY_CAP_COMPOSITE, "
                   "SPICE_COMMON_CAP_MINI_HEADER); repeatable")
    p.add_argument("--preferred-compression", type=int, default=None,
                   help="session preferred-compression (SpiceImageCompression"
                   " number), sent after display init if the server allows")
    p.add_argument("--no-autoconnect", action="store_true",
                   help="wait for a 'connect' command")
    p.add_argument("--audio", action="store_true",
                   help="enable the playback and record channels and report "
                   "them (the session's enable-audio)")
    p.add_argument("--audio-backend", action="store_true",
                   help="with --audio, also let spice-gtk's own GStreamer "
                   "backend play and record (spice_audio_get); "
                   "SPICE_GST_AUDIOSINK and GST_PLUGIN_FEATURE_RANK in the "
                   "environment choose its elements")
    p.add_argument("--onset", type=int, default=None, metavar="LEVEL",
                   help="with --audio, emit playback-onset when a chunk of "
                   "decoded playback PCM reaches LEVEL (0..32767) after a "
                   "quiet one (for latency measurements)")
    p.add_argument("--channel-types", default=None,
                   help="comma-separated channel type numbers to open "
                   "(default: all that the server announces)")
    return p.parse_args(argv)


ARGS = parseArgs(sys.argv[1:])

# The protocol gets a private copy of stdout; fd 1 itself is pointed at
# stderr, because GLib's default log handler prints debug and info messages
# (all of SPICE_DEBUG=1) to stdout, which would corrupt the JSON stream.
sys.stdout.flush()
_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
os.dup2(2, 1)
sys.stdout = sys.stderr

# Must happen before any channel is built: spice-gtk reads these with
# g_getenv() whenever it sets a capability on a new channel.
for _cap in ARGS.disable_cap + (
        ["SPICE_DISPLAY_CAP_LZ4_COMPRESSION"] if ARGS.no_lz4 else []):
    os.environ[_cap] = "0"

import gi  # noqa: E402

gi.require_version("SpiceClientGLib", "2.0")
from gi.repository import GLib, GObject  # noqa: E402
from gi.repository import SpiceClientGLib as Spice  # noqa: E402


# -- output -----------------------------------------------------------------


def emit(obj):
    try:
        _out.write(json.dumps(obj, sort_keys=True) + "\n")
        _out.flush()
    except (BrokenPipeError, ValueError):
        # Our reader is gone: nothing left to do.
        os._exit(0)


def log(msg):
    sys.stderr.write("gtkclient: %s\n" % (msg,))
    sys.stderr.flush()


def reportError(where):
    emit({"event": "error", "message": "%s: %s" % (where, sys.exc_info()[1]),
          "traceback": traceback.format_exc()})


def guarded(fn):
    """Wrap a GLib/GObject callback: report exceptions instead of dying."""
    def wrapper(*a):
        try:
            return fn(*a)
        except Exception:
            reportError(fn.__name__)
            return None
    wrapper.__name__ = fn.__name__
    return wrapper


def gconnect(obj, name, handler):
    # spice-gtk's connect() methods shadow GObject's signal connect.
    return GObject.Object.connect(obj, name, guarded(handler))


# -- ctypes access to what introspection gets wrong -------------------------

class SpiceDisplayPrimary(ctypes.Structure):
    # channel-display.h, spice-gtk 0.42
    _fields_ = [
        ("format", ctypes.c_int),       # enum SpiceSurfaceFmt
        ("width", ctypes.c_int),
        ("height", ctypes.c_int),
        ("stride", ctypes.c_int),
        ("shmid", ctypes.c_int),
        ("data", ctypes.c_void_p),      # guint8 *
        ("marked", ctypes.c_int),       # gboolean
    ]


_lib = ctypes.CDLL("libspice-client-glib-2.0.so.8")
_lib.spice_display_channel_get_primary.restype = ctypes.c_int
_lib.spice_display_channel_get_primary.argtypes = [
    ctypes.c_void_p, ctypes.c_uint32, ctypes.POINTER(SpiceDisplayPrimary)]
_lib.spice_record_channel_send_data.restype = None
_lib.spice_record_channel_send_data.argtypes = [
    ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32]
_gobject = ctypes.CDLL("libgobject-2.0.so.0")
_gobject.g_object_get.restype = None
_lib.spice_channel_type_to_string.restype = ctypes.c_char_p
_lib.spice_channel_type_to_string.argtypes = [ctypes.c_int]

_capsuleGetPointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsuleGetPointer.restype = ctypes.c_void_p
_capsuleGetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]


def gpointer(obj):
    """The C GObject* behind a PyGObject wrapper."""
    return _capsuleGetPointer(obj.__gpointer__, None)


class GArray(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("len", ctypes.c_uint)]


class SpiceDisplayMonitorConfig(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint)
                for name in ("id", "surface_id", "x", "y", "width", "height")]


_gobject = ctypes.CDLL("libgobject-2.0.so.0")
_gobject.g_object_get.restype = None
_gobject.g_object_get.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p,
                                  ctypes.c_void_p]
_glib = ctypes.CDLL("libglib-2.0.so.0")
_glib.g_array_unref.argtypes = [ctypes.c_void_p]


def displayMonitors(ch):
    """
    A display channel's ``monitors`` property (a GArray of
    SpiceDisplayMonitorConfig, which introspection cannot read), as dicts.
    """
    array = ctypes.c_void_p()
    _gobject.g_object_get(gpointer(ch), b"monitors", ctypes.byref(array), None)
    if not array.value:
        return []
    header = GArray.from_address(array.value)
    monitors = []
    if header.len and header.data:
        for m in (SpiceDisplayMonitorConfig * header.len).from_address(header.data):
            monitors.append({name: getattr(m, name) for name, _ in m._fields_})
    _glib.g_array_unref(array)
    return monitors


def cArray(value, count, ctype):
    """
    A signal's C array argument: PyGObject gives a sequence, or the bare
    address when the signal has no introspection data.
    """
    if isinstance(value, int):
        return (ctype * count).from_address(value) if value and count else []
    if isinstance(value, (bytes, bytearray)):
        return value[:count]
    return list(value or [])[:count]


def channelTypeName(t):
    name = _lib.spice_channel_type_to_string(t)
    return name.decode() if name else str(t)


# -- the client ---------------------------------------------------------------

class Client(object):
    def __init__(self, args, loop):
        self.args = args
        self.loop = loop
        self.channels = {}       # (type, id) -> record dict
        self.invalidate = {}     # display id -> [count, x0, y0, x1, y1]
        self.watching = {}       # display id -> watch settings
        self.invalidateTimer = None
        self.invalidatedPixels = {}   # display id -> sum of w * h, uncoalesced
        self.connected = False
        self.quitting = False
        self.openTypes = None
        self.offers = {}         # selection -> {type: bytes} we answer with
        if args.channel_types:
            self.openTypes = set(int(t) for t in args.channel_types.split(","))
        self.session = s = Spice.Session()
        s.set_property("host", args.host)
        if args.port is not None:
            s.set_property("port", str(args.port))
        if args.tls_port is not None:
            s.set_property("tls-port", str(args.tls_port))
        if args.password is not None:
            s.set_property("password", args.password)
        if args.ca_file is not None:
            s.set_property("ca-file", args.ca_file)
        if args.cert_subject is not None:
            s.set_property("cert-subject", args.cert_subject)
            s.set_property("verify", Spice.SessionVerify.SUBJECT)
        if args.secure_channels:
            s.set_property("secure-channels",
                           args.secure_channels.split(","))
        if args.preferred_compression is not None:
            s.set_property("preferred-compression", args.preferred_compression)
        # Headless test client: no USB, no smartcard; audio on request.
        s.set_property("enable-audio", bool(args.audio))
        self.playback = {"started": 0, "stopped": 0, "bytes": 0, "chunks": 0,
                         "pcm": bytearray()}
        self.record = {"started": 0, "stopped": 0}
        self.audio = None
        s.set_property("enable-usbredir", False)
        s.set_property("enable-smartcard", False)
        gconnect(s, "channel-new", self.onChannelNew)
        gconnect(s, "channel-destroy", self.onChannelDestroy)
        gconnect(s, "disconnected", self.onDisconnected)
        gconnect(s, "notify::migration-state", self.onMigrationState)
        if args.audio and args.audio_backend:
            self.audio = Spice.Audio.get(s, None)
            if self.audio is None:
                emit({"event": "error", "message": "spice_audio_get() gave nothing"})

    # session / channel signals

    def key(self, ch):
        return (ch.get_property("channel-type"), ch.get_property("channel-id"))

    def chInfo(self, ch):
        t, i = self.key(ch)
        return {"type": t, "id": i, "name": channelTypeName(t)}

    def onChannelNew(self, session, ch):
        t, i = self.key(ch)
        self.channels[(t, i)] = {"obj": ch, "state": None, "opened": False}
        ev = {"event": "channel-new"}
        ev.update(self.chInfo(ch))
        emit(ev)
        gconnect(ch, "channel-event", self.onChannelEvent)
        if isinstance(ch, Spice.MainChannel):
            gconnect(ch, "notify::mouse-mode", self.onMouseMode)
            gconnect(ch, "main-agent-update", self.onAgentUpdate)
            gconnect(ch, "main-clipboard-selection-grab", self.onClipboardGrab)
            gconnect(ch, "main-clipboard-selection-request", self.onClipboardRequest)
            gconnect(ch, "main-clipboard-selection-release", self.onClipboardRelease)
            gconnect(ch, "main-clipboard-selection", self.onClipboard)
            gconnect(ch, "migration-started", self.onMigrationStarted)
        elif isinstance(ch, Spice.DisplayChannel):
            gconnect(ch, "display-primary-create", self.onPrimaryCreate)
            gconnect(ch, "display-primary-destroy", self.onPrimaryDestroy)
            gconnect(ch, "display-mark", self.onMark)
            gconnect(ch, "display-invalidate", self.onInvalidate)
            gconnect(ch, "notify::monitors", self.onMonitors)
        elif isinstance(ch, Spice.InputsChannel):
            gconnect(ch, "inputs-modifiers", self.onModifiers)
        elif isinstance(ch, Spice.CursorChannel):
            gconnect(ch, "cursor-set", self.onCursorSet)
            gconnect(ch, "cursor-move", self.onCursorMove)
            gconnect(ch, "cursor-hide", self.onCursorHide)
            gconnect(ch, "cursor-reset", self.onCursorReset)
        elif isinstance(ch, Spice.PlaybackChannel):
            gconnect(ch, "playback-start", self.onPlaybackStart)
            gconnect(ch, "playback-data", self.onPlaybackData)
            gconnect(ch, "playback-stop", self.onPlaybackStop)
            gconnect(ch, "notify::volume", self.onPlaybackVolume)
            gconnect(ch, "notify::mute", self.onPlaybackMute)
            gconnect(ch, "notify::min-latency", self.onPlaybackLatency)
        elif isinstance(ch, Spice.RecordChannel):
            gconnect(ch, "record-start", self.onRecordStart)
            gconnect(ch, "record-stop", self.onRecordStop)
            gconnect(ch, "notify::volume", self.onRecordVolume)
            gconnect(ch, "notify::mute", self.onRecordMute)
        elif isinstance(ch, Spice.PortChannel):
            gconnect(ch, "notify::port-opened", self.onPortOpened)
            gconnect(ch, "port-data", self.onPortData)
            gconnect(ch, "port-event", self.onPortEvent)
        # The library opens the main channel itself; a SpiceAudio backend
        # opens the audio channels (only those still unconnected after this
        # handler); every other one is ours.
        audioByBackend = self.audio is not None and isinstance(
            ch, (Spice.PlaybackChannel, Spice.RecordChannel))
        if not isinstance(ch, Spice.MainChannel) and not audioByBackend:
            if self.openTypes is None or t in self.openTypes:
                ch.connect()

    def onChannelDestroy(self, session, ch):
        k = self.key(ch)
        rec = self.channels.get(k)
        if rec is not None and rec["obj"] is ch:
            del self.channels[k]
        ev = {"event": "channel-destroy"}
        ev.update(self.chInfo(ch))
        emit(ev)

    def onChannelEvent(self, ch, what):
        name = what.value_name
        rec = self.channels.get(self.key(ch))
        if rec is not None:
            rec["state"] = name
            if what == Spice.ChannelEvent.OPENED:
                rec["opened"] = True
            elif what != Spice.ChannelEvent.SWITCHING:
                rec["opened"] = False
        ev = {"event": "channel-event", "what": name}
        ev.update(self.chInfo(ch))
        if what not in (Spice.ChannelEvent.OPENED, Spice.ChannelEvent.CLOSED,
                        Spice.ChannelEvent.SWITCHING,
                        Spice.ChannelEvent.NONE):
            err = ch.get_error()
            if err is not None:
                ev["error"] = err.message
        emit(ev)

    def onDisconnected(self, session):
        emit({"event": "disconnected"})

    def onMigrationState(self, session, pspec):
        st = session.get_property("migration-state")
        emit({"event": "migration-state", "state": int(st),
              "name": st.value_name})

    def onMigrationStarted(self, ch, session):
        emit({"event": "migration-started"})

    def onMouseMode(self, ch, pspec):
        emit({"event": "mouse-mode", "mode": ch.get_property("mouse-mode")})

    def onAgentUpdate(self, ch):
        emit({"event": "agent-update",
              "connected": ch.get_property("agent-connected")})

    def onClipboardGrab(self, ch, selection, types, ntypes):
        emit({"event": "clipboard-grab", "selection": selection,
              "types": [int(t) for t in cArray(types, ntypes, ctypes.c_uint32)]})
        return True

    def onClipboardRelease(self, ch, selection):
        emit({"event": "clipboard-release", "selection": selection})

    def onClipboard(self, ch, selection, type, data, size):
        raw = bytes(cArray(data, size, ctypes.c_uint8))
        emit({"event": "clipboard", "selection": selection, "type": type,
              "size": size, "sha256": hashlib.sha256(raw).hexdigest(),
              "hex": raw.hex()})

    def onClipboardRequest(self, ch, selection, type):
        data = self.offers.get(selection, {}).get(type)
        if data is not None:
            ch.clipboard_selection_notify(selection, type, data)
        emit({"event": "clipboard-request", "selection": selection,
              "type": type, "answered": data is not None})
        return data is not None

    def onModifiers(self, ch):
        emit({"event": "inputs-modifiers",
              "modifiers": ch.get_property("key-modifiers")})

    def onPrimaryCreate(self, ch, fmt, width, height, stride, shmid, imgdata):
        self.flushInvalidate()
        emit({"event": "primary-create", "id": self.key(ch)[1],
              "format": fmt, "width": width, "height": height,
              "stride": stride, "shmid": shmid})

    def onMonitors(self, ch, pspec):
        emit({"event": "display-monitors", "id": self.key(ch)[1],
              "max": ch.get_property("monitors-max"), "monitors": displayMonitors(ch)})

    def onPrimaryDestroy(self, ch):
        self.flushInvalidate()
        emit({"event": "primary-destroy", "id": self.key(ch)[1]})

    def onMark(self, ch, mark):
        self.flushInvalidate()
        emit({"event": "display-mark", "id": self.key(ch)[1], "mark": mark})

    def onInvalidate(self, ch, x, y, w, h):
        i = self.key(ch)[1]
        if i in self.watching:
            self.watchInvalidate(ch, i, x, y, w, h)
        self.invalidatedPixels[i] = self.invalidatedPixels.get(i, 0) + w * h
        acc = self.invalidate.get(i)
        if acc is None:
            self.invalidate[i] = [1, x, y, x + w, y + h]
        else:
            acc[0] += 1
            acc[1] = min(acc[1], x)
            acc[2] = min(acc[2], y)
            acc[3] = max(acc[3], x + w)
            acc[4] = max(acc[4], y + h)
        if self.invalidateTimer is None:
            self.invalidateTimer = GLib.timeout_add(100, self.onInvalidateTimer)

    def onInvalidateTimer(self):
        self.invalidateTimer = None
        self.flushInvalidate()
        return False

    def flushInvalidate(self):
        for i, (count, x0, y0, x1, y1) in sorted(self.invalidate.items()):
            emit({"event": "display-invalidate", "id": i, "count": count,
                  "x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0})
        self.invalidate.clear()

    def onCursorSet(self, ch, width, height, hot_x, hot_y, rgba):
        emit({"event": "cursor-set", "width": width, "height": height,
              "hot_x": hot_x, "hot_y": hot_y})

    def onCursorMove(self, ch, x, y):
        emit({"event": "cursor-move", "x": x, "y": y})

    def onCursorHide(self, ch):
        emit({"event": "cursor-hide"})

    def onCursorReset(self, ch):
        emit({"event": "cursor-reset"})

    def onPortOpened(self, ch, pspec):
        emit({"event": "port-opened", "id": self.key(ch)[1],
              "port_name": ch.get_property("port-name"),
              "opened": ch.get_property("port-opened")})

    def onPortData(self, ch, data, size):
        raw = ctypes.string_at(data, min(size, 4096)) if data else b""
        emit({"event": "port-data", "id": self.key(ch)[1], "size": size,
              "hex": raw.hex()})

    def onPortEvent(self, ch, event):
        emit({"event": "port-event", "id": self.key(ch)[1],
              "port_event": event})

    # audio

    PCM_KEEP = 48000 * 4 * 60

    def onPlaybackStart(self, ch, fmt, channels, rate):
        self.playback.update(started=self.playback["started"] + 1, format=fmt,
                             channels=channels, rate=rate)
        emit({"event": "playback-start", "format": fmt, "channels": channels,
              "rate": rate})

    def onPlaybackData(self, ch, data, size):
        pb = self.playback
        pb["bytes"] += size
        pb["chunks"] += 1
        if not data:
            return
        raw = ctypes.string_at(data, size)
        if len(pb["pcm"]) < self.PCM_KEEP:
            pb["pcm"] += raw
        if self.args.onset is not None:
            import array
            samples = array.array("h")
            samples.frombytes(raw[:len(raw) - len(raw) % 2])
            peak = max(max(samples, default=0), -min(samples, default=0))
            if peak >= self.args.onset and pb.get("quiet", True):
                emit({"event": "playback-onset", "peak": peak})
            pb["quiet"] = peak < self.args.onset // 4

    def onPlaybackStop(self, ch):
        self.playback["stopped"] += 1
        emit({"event": "playback-stop"})

    def volumeOf(self, ch):
        n = ch.get_property("nchannels")
        pointer = ctypes.c_void_p()
        _gobject.g_object_get(ctypes.c_void_p(gpointer(ch)), b"volume",
                              ctypes.byref(pointer), None)
        if not pointer.value or not n:
            return []
        return list((ctypes.c_uint16 * n).from_address(pointer.value))

    def onPlaybackVolume(self, ch, pspec):
        self.playback["volume"] = self.volumeOf(ch)
        emit({"event": "playback-volume", "volume": self.playback["volume"]})

    def onPlaybackMute(self, ch, pspec):
        self.playback["mute"] = ch.get_property("mute")
        emit({"event": "playback-mute", "mute": self.playback["mute"]})

    def onPlaybackLatency(self, ch, pspec):
        self.playback["min_latency"] = ch.get_property("min-latency")
        emit({"event": "playback-latency",
              "min_latency": self.playback["min_latency"]})

    def onRecordStart(self, ch, fmt, channels, rate):
        self.record.update(started=self.record["started"] + 1, format=fmt,
                           channels=channels, rate=rate)
        emit({"event": "record-start", "format": fmt, "channels": channels,
              "rate": rate})

    def onRecordStop(self, ch):
        self.record["stopped"] += 1
        emit({"event": "record-stop"})

    def onRecordVolume(self, ch, pspec):
        self.record["volume"] = self.volumeOf(ch)
        emit({"event": "record-volume", "volume": self.record["volume"]})

    def onRecordMute(self, ch, pspec):
        self.record["mute"] = ch.get_property("mute")
        emit({"event": "record-mute", "mute": self.record["mute"]})

    def cmd_playback(self, c):
        pb = self.playback
        r = {k: v for k, v in pb.items() if k != "pcm"}
        if c.get("dump"):
            with open(c["dump"], "wb") as f:
                f.write(bytes(pb["pcm"]))
            r["dump"] = c["dump"]
            r["kept"] = len(pb["pcm"])
        if c.get("reset"):
            pb["pcm"] = bytearray()
            pb["bytes"] = pb["chunks"] = 0
        return r

    def cmd_record(self, c):
        return dict(self.record)

    def cmd_record_tone(self, c):
        import array
        import math
        ch = self.needOpen(Spice.RecordChannel, what="record")
        hz, seconds = float(c["hz"]), float(c["seconds"])
        amplitude = float(c.get("amplitude", 0.3)) * 32767
        samples = array.array("h")
        for n in range(int(seconds * 48000)):
            v = int(amplitude * math.sin(2 * math.pi * hz * n / 48000))
            samples.append(v)
            samples.append(v)
        if sys.byteorder != "little":
            samples.byteswap()
        raw = samples.tobytes()
        buf = ctypes.create_string_buffer(raw, len(raw))
        _lib.spice_record_channel_send_data(gpointer(ch), buf, len(raw), 0)
        return {"sent": len(raw)}

    # commands

    def findChannel(self, cls, channel_id=None):
        best = None
        for (t, i), rec in sorted(self.channels.items()):
            if isinstance(rec["obj"], cls) and (
                    channel_id is None or i == channel_id):
                if best is None or (rec["opened"] and not best["opened"]):
                    best = rec
        return best

    def needOpen(self, cls, channel_id=None, what="channel"):
        rec = self.findChannel(cls, channel_id)
        if rec is None:
            raise CommandFailed("no %s channel" % (what,))
        if not rec["opened"]:
            raise CommandFailed("%s channel not opened (state %s)"
                                % (what, rec["state"]))
        return rec["obj"]

    def cmd_connect(self, c):
        if self.connected:
            raise CommandFailed("already connected")
        self.connected = True
        if not self.session.connect():
            raise CommandFailed("spice_session_connect() failed")
        return {}

    def cmd_primary(self, c):
        cid = int(c.get("channel_id", 0))
        rec = self.findChannel(Spice.DisplayChannel, cid)
        if rec is None:
            raise CommandFailed("no display channel %d" % (cid,))
        prim = SpiceDisplayPrimary()
        ok = _lib.spice_display_channel_get_primary(
            gpointer(rec["obj"]), int(c.get("surface_id", 0)),
            ctypes.byref(prim))
        if not ok or not prim.data:
            raise CommandFailed("no primary surface")
        size = prim.height * prim.stride
        raw = ctypes.string_at(prim.data, size)
        r = {"width": prim.width, "height": prim.height,
             "stride": prim.stride, "format": prim.format,
             "shmid": prim.shmid, "marked": bool(prim.marked),
             "sha256": hashlib.sha256(raw).hexdigest()}
        if c.get("dump"):
            with open(c["dump"], "wb") as f:
                f.write(raw)
            r["dump"] = c["dump"]
        if c.get("pixels") is not None:
            if prim.format not in (32, 96):
                raise CommandFailed("pixels: format %d is not 32-bit"
                                    % (prim.format,))
            vals = []
            for x, y in c["pixels"]:
                if not (0 <= x < prim.width and 0 <= y < prim.height):
                    vals.append(None)
                    continue
                off = y * prim.stride + x * 4
                vals.append(int.from_bytes(raw[off:off + 4], "little"))
            r["pixels"] = vals
        return r

    def _key(self, c, fn):
        ch = self.needOpen(Spice.InputsChannel, what="inputs")
        getattr(ch, fn)(int(c["scancode"]))
        return {}

    def cmd_key_press(self, c):
        return self._key(c, "key_press")

    def cmd_key_release(self, c):
        return self._key(c, "key_release")

    def cmd_key_press_and_release(self, c):
        return self._key(c, "key_press_and_release")

    def cmd_position(self, c):
        ch = self.needOpen(Spice.InputsChannel, what="inputs")
        ch.position(int(c["x"]), int(c["y"]), int(c.get("display", 0)),
                    int(c.get("buttons", 0)))
        return {}

    def cmd_motion(self, c):
        ch = self.needOpen(Spice.InputsChannel, what="inputs")
        ch.motion(int(c["dx"]), int(c["dy"]), int(c.get("buttons", 0)))
        return {}

    def cmd_button_press(self, c):
        ch = self.needOpen(Spice.InputsChannel, what="inputs")
        ch.button_press(int(c["button"]), int(c.get("buttons", 0)))
        return {}

    def cmd_button_release(self, c):
        ch = self.needOpen(Spice.InputsChannel, what="inputs")
        ch.button_release(int(c["button"]), int(c.get("buttons", 0)))
        return {}

    def cmd_request_mouse_mode(self, c):
        ch = self.needOpen(Spice.MainChannel, what="main")
        ch.request_mouse_mode(int(c["mode"]))
        return {}

    def watchInvalidate(self, ch, i, x, y, w, h):
        watch = self.watching[i]
        now = GLib.get_monotonic_time() / 1e6
        if watch["invalidates"]:
            emit({"event": "invalidate-now", "id": i, "t": now, "x": x, "y": y,
                  "width": w, "height": h})
        code = watch["code"]
        if code is None:
            return
        left, bottom, bits, block = code
        if not (x < left + bits * block and left < x + w
                and y < bottom and bottom - block < y + h):
            return
        prim = SpiceDisplayPrimary()
        if not _lib.spice_display_channel_get_primary(gpointer(ch), 0, ctypes.byref(prim)) \
                or not prim.data or prim.format not in (32, 96):
            return
        row = bottom - block // 2
        if not (0 <= row < prim.height and left + bits * block <= prim.width):
            return
        raw = ctypes.string_at(prim.data + row * prim.stride, prim.stride)
        n = 0
        for bit in range(bits):
            off = (left + bit * block + block // 2) * 4
            if raw[off] + raw[off + 1] + raw[off + 2] > 3 * 128:
                n |= 1 << bit
        if n != watch["last"]:
            watch["last"] = n
            event = {"event": "frame", "id": i, "n": n, "t": now, "x": x, "y": y,
                     "width": w, "height": h}
            if watch["dump"] and watch["dumps"] > 0:
                watch["dumps"] -= 1
                path = watch["dump"].replace("{n}", str(n))
                with open(path, "wb") as f:
                    f.write(ctypes.string_at(prim.data, prim.height * prim.stride))
                event.update(dump=path, surface=[prim.width, prim.height, prim.stride])
            emit(event)

    def cmd_watch(self, c):
        cid = int(c.get("channel_id", 0))
        code = c.get("code")
        invalidates = bool(c.get("invalidates", False))
        if code is None and not invalidates:
            self.watching.pop(cid, None)
            return {}
        self.watching[cid] = {"code": [int(v) for v in code] if code else None,
                              "invalidates": invalidates, "last": None,
                              "dump": c.get("dump"), "dumps": int(c.get("dumps", 0))}
        return {}

    def cmd_preferred_compression(self, c):
        ch = self.needOpen(Spice.DisplayChannel, int(c.get("channel_id", 0)),
                           what="display")
        ch.display_channel_change_preferred_compression(int(c["value"]))
        return {}

    def cmd_preferred_video_codecs(self, c):
        ch = self.needOpen(Spice.DisplayChannel, int(c.get("channel_id", 0)),
                           what="display")
        codecs = [int(v) for v in c["codecs"]]
        return {"changed": bool(ch.display_channel_change_preferred_video_codec_types(codecs))}

    def cmd_agent(self, c):
        ch = self.needOpen(Spice.MainChannel, what="main")
        return {"connected": ch.get_property("agent-connected"),
                "caps": [b for b in range(32)
                         if ch.agent_test_capability(b)]}

    def cmd_clipboard_grab(self, c):
        ch = self.needOpen(Spice.MainChannel, what="main")
        selection = int(c.get("selection", 0))
        types = [int(t) for t in c["types"]]
        self.offers[selection] = {
            int(t): bytes.fromhex(h) for t, h in c.get("data", {}).items()}
        ch.clipboard_selection_grab(selection, types)
        return {}

    def cmd_clipboard_release(self, c):
        ch = self.needOpen(Spice.MainChannel, what="main")
        selection = int(c.get("selection", 0))
        self.offers.pop(selection, None)
        ch.clipboard_selection_release(selection)
        return {}

    def cmd_clipboard_request(self, c):
        ch = self.needOpen(Spice.MainChannel, what="main")
        ch.clipboard_selection_request(int(c.get("selection", 0)),
                                       int(c["type"]))
        return {}

    def cmd_clipboard_notify(self, c):
        ch = self.needOpen(Spice.MainChannel, what="main")
        ch.clipboard_selection_notify(int(c.get("selection", 0)),
                                      int(c["type"]), bytes.fromhex(c["hex"]))
        return {}

    def cmd_update_display(self, c):
        ch = self.needOpen(Spice.MainChannel, what="main")
        i = int(c.get("id", 0))
        ch.update_display_enabled(i, True, False)
        ch.update_display(i, int(c.get("x", 0)), int(c.get("y", 0)),
                          int(c["width"]), int(c["height"]), False)
        if not ch.send_monitor_config():
            raise CommandFailed("spice_main_channel_send_monitor_config() "
                                "failed (is the agent connected?)")
        return {}

    def cmd_port_write(self, c):
        ch = self.needOpen(Spice.PortChannel, c.get("channel_id"),
                           what="port")
        data = bytes.fromhex(c["hex"])
        seq = c.get("seq")

        # spice-gtk keeps only a pointer to the buffer until the message
        # goes out later: the callback holds the bytes alive until then.
        def done(obj, result, _, keep=data):
            try:
                n = obj.write_finish(result)
                emit({"event": "port-written", "seq": seq, "size": n})
            except Exception:
                reportError("port_write")
        ch.write_async(data, None, done, None)
        return {"size": len(data)}

    def cmd_port_event(self, c):
        ch = self.needOpen(Spice.PortChannel, c.get("channel_id"),
                           what="port")
        ch.event(int(c["event"]))
        return {}

    def cmd_channels(self, c):
        out = []
        for (t, i), rec in sorted(self.channels.items()):
            ch = rec["obj"]
            d = {"type": t, "id": i, "name": channelTypeName(t),
                 "state": rec["state"], "opened": rec["opened"],
                 "peer": None, "remote_caps": [], "remote_common_caps": [],
                 "read_bytes": ch.get_property("total-read-bytes")}
            if isinstance(ch, Spice.DisplayChannel):
                d["invalidated_pixels"] = self.invalidatedPixels.get(i, 0)
            sock = ch.get_property("socket")
            if sock is not None:
                try:
                    a = sock.get_remote_address()
                    d["peer"] = "%s:%d" % (a.get_address().to_string(),
                                           a.get_port())
                except Exception:
                    pass
            if rec["opened"]:
                d["remote_caps"] = [b for b in range(64)
                                    if ch.test_capability(b)]
                d["remote_common_caps"] = [
                    b for b in range(64) if ch.test_common_capability(b)]
            out.append(d)
        return {"channels": out}

    def cmd_session(self, c):
        s = self.session
        st = s.get_property("migration-state")
        return {"host": s.get_property("host"),
                "port": s.get_property("port"),
                "tls_port": s.get_property("tls-port"),
                "migration_state": int(st),
                "migration_state_name": st.value_name}

    def cmd_disconnect(self, c):
        self.session.disconnect()
        return {}

    def cmd_quit(self, c):
        GLib.idle_add(self.quit)
        return {}

    def quit(self):
        if not self.quitting:
            self.quitting = True
            self.flushInvalidate()
            try:
                self.session.disconnect()
            except Exception:
                reportError("quit")
            self.loop.quit()
        return False

    def handle(self, line):
        try:
            c = json.loads(line)
        except ValueError as e:
            emit({"event": "error", "message": "bad command line %r: %s"
                  % (line[:200], e)})
            return
        if not isinstance(c, dict):
            emit({"event": "error", "message": "command is not an object"})
            return
        name = c.get("cmd")
        r = {"reply": name}
        if "seq" in c:
            r["seq"] = c["seq"]
        fn = getattr(self, "cmd_%s" % (name,), None) if isinstance(
            name, str) else None
        if fn is None:
            r.update(ok=False, reason="unknown command %r" % (name,))
        else:
            try:
                r.update(fn(c))
                r["ok"] = True
            except CommandFailed as e:
                r.update(ok=False, reason=str(e))
            except Exception as e:
                r.update(ok=False, reason="%s: %s" % (type(e).__name__, e),
                         traceback=traceback.format_exc())
        emit(r)


class CommandFailed(Exception):
    pass


class StdinReader(object):
    def __init__(self, client):
        self.client = client
        self.buf = b""
        self.fd = sys.stdin.fileno()
        GLib.io_add_watch(self.fd, GLib.PRIORITY_DEFAULT,
                          GLib.IO_IN | GLib.IO_HUP | GLib.IO_ERR,
                          self.onReadable)

    def onReadable(self, fd, cond):
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data:
            if self.buf.strip():
                self.client.handle(self.buf.decode("utf-8", "replace"))
            self.buf = b""
            self.client.quit()
            return False
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if line.strip():
                try:
                    self.client.handle(line.decode("utf-8", "replace"))
                except Exception:
                    reportError("handle")
        return True


def main():
    loop = GLib.MainLoop()
    client = Client(ARGS, loop)
    StdinReader(client)
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, sig, client.quit)
    emit({"event": "ready", "pid": os.getpid(),
          "version": Spice.util_get_version_string()})
    if not ARGS.no_autoconnect:
        if ARGS.port is None and ARGS.tls_port is None:
            emit({"event": "error", "message": "no --port or --tls-port"})
        else:
            client.connected = True
            if not client.session.connect():
                emit({"event": "error",
                      "message": "spice_session_connect() failed"})
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
