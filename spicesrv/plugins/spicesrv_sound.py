"""
Sound: the playback and record channels (C{--playback SOURCE},
C{--record SINK}) and the built-in sources and sinks (tone, file, pulse),
declared as plugins like any other.  Third-party sources and sinks are
L{spicesrv.interfaces.ISoundPlugin}s in a C{spicesrv/plugins/} folder.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from spicesrv.interfaces import IChannelPlugin, IPlaybackSource, IRecordSink, ISoundPlugin
from spicesrv.plugin import Option
from spicesrv.wire.constants import ChannelType


@implementer(IPlugin, ISoundPlugin)
class TonePlugin:
    name = "tone"
    description = "tone[:HZ] plays a test tone (440 Hz by default)"
    options = ()

    def makePlayback(self, args, values, reactor):
        from spicesrv.sound.tone import ToneSource, parseHz
        return ToneSource(reactor, parseHz(args))

    def makeRecord(self, args, values, reactor):
        raise ValueError("tone is a sound source; record with file:PATH or pulse")


@implementer(IPlugin, ISoundPlugin)
class FilePlugin:
    name = "file"
    description = ("file:PATH plays any audio file FFmpeg decodes, looped; records to a "
                   "WAV file (or Ogg/Opus for .ogg and .opus), one per client with "
                   "{session} in PATH or PATH a directory")
    options = ()

    def makePlayback(self, args, values, reactor):
        from spicesrv.sound.file import FileSource
        if not args:
            raise ValueError("give the file as file:PATH")
        return FileSource(reactor, args)

    def makeRecord(self, args, values, reactor):
        from spicesrv.sound.file import FileSink
        if not args:
            raise ValueError("give the file as file:PATH (.wav, .ogg or .opus; "
                             "{session} in PATH, or a directory, for a file per client)")
        return FileSink(args)


@implementer(IPlugin, ISoundPlugin)
class PulsePlugin:
    name = "pulse"
    description = ("pulse[:DEVICE] plays a PulseAudio / PipeWire source (the default "
                   "sink's monitor: the desktop's sound) and records into a sink (a null "
                   "sink spicesrv-microphone, whose monitor programs record from)")
    options = (Option("pulse-server", "The Pulse server for pulse: sound (as the tools' "
                      "--server, e.g. unix:/run/user/1000/pulse/native); $PULSE_SERVER or "
                      "the user's own by default."),)

    def makePlayback(self, args, values, reactor):
        from spicesrv.sound.pulse import PulseSource
        return PulseSource(reactor, args or None, values.get("pulse-server"))

    def makeRecord(self, args, values, reactor):
        from spicesrv.sound.pulse import PulseSink
        return PulseSink(reactor, args or None, values.get("pulse-server"))


@implementer(IPlugin, IChannelPlugin)
class SoundPlugin:
    """
    The playback and record channels, for the sources and sinks of every
    L{ISoundPlugin} (whose options it shows as its own).
    """

    name = "sound"
    description = ("the playback and record channels: --playback SOURCE, --record SINK "
                   "(tone[:HZ], file:PATH, pulse[:DEVICE], ...)")
    channel_type = ChannelType.PLAYBACK
    baseOptions = (
        Option("playback", "Sound for clients to play: tone[:HZ], file:PATH (looped) or "
               "pulse[:DEVICE] (a PulseAudio / PipeWire source, the default sink's "
               "monitor by default). The demo source beeps on clicks without it."),
        Option("record", "Where clients' microphones go: file:PATH (.wav, or Ogg/Opus for "
               ".ogg / .opus) or pulse[:SINK] (played into a Pulse sink)."),
        Option("playback-compression", "Send clients that can take it Opus (on, the "
               "default) or always raw PCM (off), as QEMU's playback-compression.",
               default="on"),
    )

    @property
    def options(self):
        from spicesrv.plugin import soundPlugins
        extra = []
        for plugin in soundPlugins().values():
            extra.extend(plugin.options)
        return self.baseOptions + tuple(extra)

    def install(self, server, values, reactor):
        from spicesrv.plugin import soundPlugins
        compression = values.get("playback-compression") or "on"
        if compression not in ("on", "off"):
            raise ValueError("--playback-compression %s: give on or off" % (compression,))
        server.playbackCompression = compression == "on"
        plugins = soundPlugins()
        devices = []
        for option, make, iface, attr in (
                ("playback", "makePlayback", IPlaybackSource, "playback"),
                ("record", "makeRecord", IRecordSink, "record")):
            spec = values.get(option)
            if not spec:
                continue
            name, _, args = spec.partition(":")
            plugin = plugins.get(name)
            if plugin is None:
                raise ValueError("--%s %s: unknown; use one of %s"
                                 % (option, spec, ", ".join(sorted(plugins))))
            try:
                device = getattr(plugin, make)(args, {o.name: values.get(o.name)
                                                      for o in plugin.options}, reactor)
            except ValueError as e:
                raise ValueError("--%s %s: %s" % (option, spec, e))
            if not iface.providedBy(device):
                raise ValueError("--%s %s: the %s plugin made %r, which does not provide %s"
                                 % (option, spec, name, device, iface.__name__))
            # The operator's choice replaces the display source's own sound
            # (the demo's clicks).
            if getattr(server, attr, None) is not None:
                server.removeInterface(getattr(server, attr))
            reactor.addSystemEventTrigger("before", "shutdown", device.close)
            devices.append(device)
        return devices


tone = TonePlugin()
file = FilePlugin()
pulse = PulsePlugin()
sound = SoundPlugin()
