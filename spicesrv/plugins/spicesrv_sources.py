"""
The built-in display sources, declared as plugins like any other.
"""

import re

from twisted.plugin import IPlugin
from zope.interface import implementer

from spicesrv.interfaces import ISourcePlugin
from spicesrv.plugin import Option


@implementer(IPlugin, ISourcePlugin)
class DemoPlugin:
    name = "demo"
    description = "demo: an interactive screen to paint and type on (the default)"
    options = (Option("demo-size", "Size of the demo screen, WIDTHxHEIGHT.",
                      default="1024x768"),)

    def makeSource(self, args, values, reactor):
        from spicesrv.sources.demo import DemoSource
        match = re.fullmatch(r"(\d+)x(\d+)", values.get("demo-size") or "1024x768")
        if match is None:
            raise ValueError("--demo-size %r is not WIDTHxHEIGHT, e.g. 1280x800"
                             % values.get("demo-size"))
        width, height = int(match.group(1)), int(match.group(2))
        return DemoSource(width=width, height=height, clock=reactor)


@implementer(IPlugin, ISourcePlugin)
class ImagePlugin:
    name = "image"
    description = "image:PATH shows a still picture (any format Pillow reads)"
    options = ()

    def makeSource(self, args, values, reactor):
        from spicesrv.sources.image import ImageSource
        if not args:
            raise ValueError("give the picture as --source image:PATH")
        return ImageSource(args)


@implementer(IPlugin, ISourcePlugin)
class X11Plugin:
    name = "x11"
    description = ("x11:DISPLAY shows an X server's screen (x11::0; the authority "
                   "file is $XAUTHORITY's), view-only unless --x11-allow-control")
    options = (Option("x11-allow-control",
                      "Let SPICE clients type and click on the X display given with "
                      "--source x11:DISPLAY (through XTEST), resize its screen (RandR) and "
                      "share its clipboard; view-only without it.",
                      flag=True),
               Option("x11-no-clipboard",
                      "With --x11-allow-control, keep the X display's clipboard from the "
                      "SPICE clients (and theirs from it).",
                      flag=True))

    def makeSource(self, args, values, reactor):
        from spicesrv.sources.x11 import X11Source
        return X11Source(args or None, allow_control=bool(values.get("x11-allow-control")),
                         reactor=reactor, clipboard=not values.get("x11-no-clipboard"))


@implementer(IPlugin, ISourcePlugin)
class MotionPlugin:
    name = "motion"
    description = ("motion[:video|scroll|typing] plays a deterministic moving picture "
                   "(for trying and measuring video streams)")
    options = (Option("motion-size", "Size of the motion screen, WIDTHxHEIGHT.",
                      default="1920x1080"),
               Option("motion-fps", "Frames per second of the motion source.", default="30"))

    def makeSource(self, args, values, reactor):
        from spicesrv.sources.motion import VIDEO, WORKLOADS, MotionSource
        workload = args or VIDEO
        if workload not in WORKLOADS:
            raise ValueError("unknown workload %r; use one of %s"
                             % (workload, ", ".join(WORKLOADS)))
        match = re.fullmatch(r"(\d+)x(\d+)", values.get("motion-size") or "1920x1080")
        if match is None:
            raise ValueError("--motion-size %r is not WIDTHxHEIGHT, e.g. 1920x1080"
                             % values.get("motion-size"))
        try:
            fps = float(values.get("motion-fps") or 30)
        except ValueError:
            fps = 0
        if not 0 < fps <= 240:
            raise ValueError("--motion-fps %r is not a number of frames per second"
                             % values.get("motion-fps"))
        return MotionSource(width=int(match.group(1)), height=int(match.group(2)),
                            workload=workload, fps=fps, clock=reactor)


demo = DemoPlugin()
image = ImagePlugin()
x11 = X11Plugin()
motion = MotionPlugin()
