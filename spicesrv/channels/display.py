"""
The display channel (type 2): the primary surface of one display source,
kept up to date with DRAW_COPY of the damaged rectangles, and with video
streams (MJPEG, VP8, VP9 or H.264) for the areas that change like video
(L{StreamManager}); what moved within the client's own picture (a scroll)
goes as COPY_BITS (L{spicesrv.display.copybits}).

Updates are pulled, not queued: damage accumulates in a L{Damage} while the
client's ACK window or the socket is full, so a slow client gets fewer,
larger updates instead of an ever-growing backlog.  Video frames are
dropped, not queued, when the link is full.
"""

from zope.interface import implementer

from spicesrv.channel import MIGRATE_NEED_DATA_TRANSFER, MIGRATE_NEED_FLUSH, ChannelProtocol
from spicesrv.display import stills
from spicesrv.display.copybits import ClientView, Copy, planCopy, worthComparing
from spicesrv.display.encoders import IMAGE_TYPE_JPEG
from spicesrv.display.ratecontrol import queuedBytes
from spicesrv.display.region import Damage
from spicesrv.display.streams import StreamManager
from spicesrv.interfaces import IDisplayObserver, IMonitorLayout
from spicesrv.wire.constants import (
    ROPD_OP_PUT, SCALE_MODE_NEAREST, SURFACE_FLAG_PRIMARY, ChannelType, DisplayCap,
    SurfaceFormat)
from spicesrv.wire.messages import DISPLAY_CLIENT, DISPLAY_SERVER
from spicesrv.migration.seamless import Boolean, Choice, Integer

# Where an encoded image (SpiceImageDescriptor: id u64, then type u8) says
# its type.
IMAGE_TYPE_AT = 8

PRIMARY_SURFACE = 0
# Seconds between looks at a full link while lossless updates wait.
LOSSLESS_RETRY = 0.01
DISPLAY_PING_INTERVAL = 15.0

# The most monitors one MONITORS_CONFIG reports (spice-gtk's MONITORS_MAX).
MAX_MONITORS = 256

# The largest raw image one DRAW_COPY of an update carries; bigger damaged
# rectangles go as horizontal strips so that every message is modest and the
# ACK window paces them.
MAX_IMAGE_BYTES = 256 * 1024
#: The client's view (for COPY_BITS) is let go after this many seconds
#: without damage worth comparing, and kept again at the next.
VIEW_KEEP = 10.0
#: The most rectangles of areas waiting to go exactly (the refresh of JPEG
#: rows a scroll left between exact ones comes as many thin bands).
EXACT_RECTS = 256
#: Rows the refresh with the link's spare room looks at a time, from the
#: bottom of the JPEG areas up.
SPARE_SCAN_ROWS = 64

# SpiceImageCompression values a client may prefer.
COMPRESSION_OFF = 1
COMPRESSION_LZ4 = 7

RAW = stills.RAW
LZ4 = stills.LZ4


def _bottom(steps):
    """The lowest row a plan's steps (rectangles and copies) reach."""
    return max((step.box[3] if isinstance(step, Copy) else step[3] for step in steps),
               default=0)


def strips(rect, bytes_per_pixel=4):
    """
    Split C{(left, top, right, bottom)} into horizontal strips of at most
    L{MAX_IMAGE_BYTES} of pixels each.
    """
    left, top, right, bottom = rect
    rows = max(1, MAX_IMAGE_BYTES // max(1, (right - left) * bytes_per_pixel))
    if rows > 16:
        rows -= rows % 16  # whole JPEG blocks (16 rows in 4:2:0)
    for y in range(top, bottom, rows):
        yield (left, y, right, min(bottom, y + rows))


@implementer(IDisplayObserver)
class DisplayChannel(ChannelProtocol):
    """
    The client's view of one display source: the primary surface, then
    DRAW_COPY of what the source damaged, encoded raw or LZ4 (photographic
    areas as JPEG where it pays: L{spicesrv.display.stills}), as the ACK
    window and the socket allow.  It observes the source as an
    L{IDisplayObserver}.

    @ivar exact: what must go losslessly (a stream's area after it ended,
        JPEG areas refreshed once the link is idle), sent after L{damage}.
    """

    channelType = ChannelType.DISPLAY
    serverMessages = DISPLAY_SERVER
    clientMessages = DISPLAY_CLIENT
    handlesAcks = True
    pingInterval = DISPLAY_PING_INTERVAL
    migrateFlags = MIGRATE_NEED_FLUSH | MIGRATE_NEED_DATA_TRANSFER
    migrationSchema = ChannelProtocol.migrationSchema.extend(
        initialized=Boolean(), width=Integer(0, 65535, default=0),
        height=Integer(0, 65535, default=0), encoding=Choice((RAW, LZ4), default=RAW))

    def __init__(self, session, info, source):
        ChannelProtocol.__init__(self, session, info)
        self.source = source
        self.damage = Damage(source.width, source.height)
        self.exact = Damage(source.width, source.height, EXACT_RECTS)
        self.stills = stills.Stills(
            stills.StillPolicy(self.context.imageCompression, self.context.jpegWanCompression),
            source.width, source.height)
        self.initialized = False
        self.encoding = self.stills.policy.lossless(self.clientHasLz4)
        self._flushCall = None
        self._idleCall = None
        self._viewCall = None
        self._wanProbe = self._wanProbeCall = None
        self._paused = False
        #: The row at which the last update stopped for want of room.
        self._stoppedAt = None
        self.bytesWritten = 0
        #: What the client's surface shows (for COPY_BITS).
        self.view = ClientView(source.width, source.height)
        #: COPY_BITS sent, and the pixels they moved.
        self.copiesSent = 0
        self.copiedPixels = 0
        self.streams = StreamManager(self, source, self.clock, self.context.videoEncoder(),
                                     mode=self.context.streamingVideo,
                                     surfaceId=PRIMARY_SURFACE,
                                     codecs=self.context.videoCodecs)

    @classmethod
    def capabilities(cls, context):
        return {DisplayCap.PREF_COMPRESSION, DisplayCap.STREAM_REPORT,
                DisplayCap.PREF_VIDEO_CODEC_TYPE}

    @property
    def clientCaps(self):
        return self.info.channel_caps

    @property
    def clientHasLz4(self):
        return DisplayCap.LZ4_COMPRESSION in self.info.channel_caps

    # -- life cycle ------------------------------------------------------------

    def channelUp(self):
        self.transport.registerProducer(self, True)

    def msg_INIT(self, msg):
        if self.initialized:
            return
        self.initialized = True
        self.sendSetAck()
        self.sendMessage("INVAL_ALL_PALETTES")
        self._createSurface()
        self.source.addObserver(self)
        if self.stills.wantsProbe(self.source.framebuffer(), self.streams.rate.rate):
            self._testLink()
        else:
            self._sendWholeSurface()
        self.sendMessage("MARK")

    def _testLink(self):
        """
        The first picture has photographs, which go as JPEG only on a slow
        link, and the link was never measured: its first strips go
        losslessly, the rest once the link's speed is known
        (L{stills.WanProbe}).
        """
        self.damage.take()
        self.exact.take()
        frame = self.source.framebuffer()
        width, height = self.source.width, self.source.height
        start = self.bytesWritten
        for strip in strips((0, 0, width, height)):
            if self.bytesWritten - start >= stills.PROBE_BYTES:
                self.damage.add((0, strip[1], width, height))
                break
            self._drawCopy(frame, strip)
        if self.damage:
            self._wanProbe = stills.WanProbe(self.clock.seconds(), self.queuedBytes())
            self._wanProbeCall = self.clock.callLater(stills.PROBE_POLL, self._checkLinkTest)

    def _checkLinkTest(self):
        self._wanProbeCall = None
        rate = self._wanProbe.check(self.clock.seconds(), self.queuedBytes())
        if rate is None:
            self._wanProbeCall = self.clock.callLater(stills.PROBE_POLL, self._checkLinkTest)
            return
        self._wanProbe = None
        self.stills.probedRate = rate
        slow = self.stills.policy.jpegAllowed(rate)
        self.peerLog.info("STILLS", "{session} {channel}: the link carries {how} {mbit:.1f} "
                          "Mbit/s; photographs go {what}", session=self.session.id,
                          channel=self.name, how="about" if slow else "at least",
                          mbit=rate * 8 / 1e6, what="as JPEG" if slow else "losslessly")
        self._scheduleFlush()

    def migrationData(self):
        return dict(ChannelProtocol.migrationData(self), initialized=self.initialized,
                    width=self.damage.width, height=self.damage.height,
                    encoding=self.encoding)

    def restoreMigrationData(self, fields):
        """
        The client kept its surface across a seamless migration: refresh it
        with this server's picture, re-creating it only if the size differs.
        """
        if not fields["initialized"]:
            return
        if fields["encoding"] == RAW or self.clientHasLz4:
            self.encoding = fields["encoding"]
        self.initialized = True
        self.sendSetAck()
        # Streams are not part of the migration: the source ended its own
        # before MIGRATE; should the client still hold any, they go, and
        # this server detects and starts its own.
        self.sendMessage("STREAM_DESTROY_ALL")
        if (fields["width"], fields["height"]) != (self.source.width, self.source.height):
            self.sendMessage("SURFACE_DESTROY", surface_id=PRIMARY_SURFACE)
            self._createSurface()
        else:
            self.damage.resize(self.source.width, self.source.height)
            self._sendMonitors()
        self.source.addObserver(self)
        self._sendWholeSurface()

    def startMigration(self):
        """
        Before SPICE_MSG_MIGRATE (after which only the migration data may
        follow), end every stream and send its area losslessly, as
        libspice-server does: the client then holds no lossy area this
        server stops tracking, and no stream the target does not know.
        """
        if self.streams.streams:
            for stream in list(self.streams.streams.values()):
                self.streams.end(stream)
            self._sendDamage(respectWindow=False)
        self.streams.stop()
        ChannelProtocol.startMigration(self)

    def channelDown(self):
        self.streams.stop()
        if self.initialized:
            self.source.removeObserver(self)
        for call in (self._flushCall, self._idleCall, self._wanProbeCall, self._viewCall):
            if call is not None and call.active():
                call.cancel()
        self._flushCall = self._idleCall = self._wanProbeCall = self._viewCall = None

    def _createSurface(self):
        width, height = self.source.width, self.source.height
        self.damage.resize(width, height)
        self.exact = Damage(width, height, EXACT_RECTS)
        self.stills.resize(width, height)
        self.view.resize(width, height)
        self.sendMessage("SURFACE_CREATE", surface_id=PRIMARY_SURFACE, width=width,
                         height=height, format=SurfaceFormat.FMT_32_xRGB,
                         flags=SURFACE_FLAG_PRIMARY)
        self._sendMonitors()

    def _sendMonitors(self):
        """
        Where the source's monitors are on the surface, for a client that
        takes MONITORS_CONFIG and a source that knows (L{IMonitorLayout}).

        The server does not announce SPICE_DISPLAY_CAP_MONITORS_CONFIG: a
        client then takes the whole surface as one monitor (spice-gtk does
        so at SURFACE_CREATE) until this message says otherwise, so sources
        without a layout need not send one.
        """
        if (DisplayCap.MONITORS_CONFIG not in self.info.channel_caps
                or not IMonitorLayout.providedBy(self.source)):
            return
        heads = [dict(monitor_id=i, surface_id=PRIMARY_SURFACE, x=x, y=y, width=width,
                      height=height, flags=0)
                 for i, (x, y, width, height)
                 in enumerate(self.source.monitors()[:MAX_MONITORS])]
        if heads:
            self.sendMessage("MONITORS_CONFIG", count=len(heads), max_allowed=len(heads),
                             heads=heads)

    def monitors_changed(self):
        """
        The source's monitors moved on a surface of the same size (see
        L{IMonitorLayout}).
        """
        if self.initialized:
            self._sendMonitors()

    def msg_PREFERRED_COMPRESSION(self, msg):
        preferred = stills.COMPRESSION_BY_NUMBER.get(msg.image_compression)
        if preferred is not None:
            # The client's choice replaces the server's, as in libspice.
            self.stills.policy = stills.StillPolicy(preferred, self.stills.policy.jpegWan)
        if msg.image_compression == COMPRESSION_OFF:
            self.encoding = RAW
        elif msg.image_compression == COMPRESSION_LZ4 and not self.clientHasLz4:
            self.peerLog.info("PREFERRED_COMPRESSION",
                              "{session} {channel}: LZ4 preferred but not supported by the "
                              "client; sending raw bitmaps", session=self.session.id,
                              channel=self.name)
            self.encoding = RAW
        else:
            self.encoding = LZ4 if self.clientHasLz4 else RAW
        self.peerLog.info("PREFERRED_COMPRESSION",
                          "{session} {channel}: client prefers compression {pref}: "
                          "sending {encoding}", session=self.session.id, channel=self.name,
                          pref=msg.image_compression, encoding=self.encoding)

    # -- the source's news -----------------------------------------------------

    def surface_changed(self, width, height):
        if not self.initialized:
            return
        self.streams.endAll()
        self.sendMessage("SURFACE_DESTROY", surface_id=PRIMARY_SURFACE)
        self._createSurface()
        self._sendWholeSurface()

    def damaged(self, rects):
        if self.migrationStarted:
            return  # only the migration data goes to the client now
        for rect in self.streams.filterDamage(rects):
            self.damage.add(rect)
        self._scheduleFlush()

    def cursor_changed(self, cursor):
        pass

    def cursor_moved(self, x, y):
        pass

    # -- flow control ------------------------------------------------------------

    def windowOpened(self):
        self._roomMade()
        self.streams.resume()

    def pauseProducing(self):
        self._paused = True

    def resumeProducing(self):
        self._paused = False
        self.streams.sampleLink(drained=True)
        self._roomMade()
        self.streams.resume()

    def stopProducing(self):
        self._paused = True

    def _scheduleFlush(self, delay=0):
        if self._flushCall is None and self.initialized and self.connected:
            self._flushCall = self.clock.callLater(delay, self._flush)

    def _roomMade(self):
        """
        The link may take more now (the transport wrote out its buffer, an
        ACK came): an update that waits for room looks now, not when its
        retry comes.  Polling alone capped a fast link at what the budget
        holds per L{LOSSLESS_RETRY} (about 200 MB/s over TLS on loopback,
        where the queue drained long before the retry came).
        """
        call = self._flushCall
        if call is not None and call.getTime() > self.clock.seconds():
            call.reset(0)
        else:
            self._scheduleFlush()

    def _flush(self):
        self._flushCall = None
        if self._paused or not self.connected:
            return
        self._sendDamage(respectWindow=True)

    # -- video streams ---------------------------------------------------------

    def msg_STREAM_REPORT(self, msg):
        self.streams.report(msg)

    def msg_PREFERRED_VIDEO_CODEC_TYPE(self, msg):
        codecs = list(msg.codecs)
        if not codecs:
            return
        self.streams.setClientPreference(codecs)
        self.peerLog.info("PREFERRED_VIDEO_CODEC_TYPE",
                          "{session} {channel}: client prefers video codecs {codecs}: "
                          "streams use {order}", session=self.session.id, channel=self.name,
                          codecs=codecs,
                          order=" ".join(c.name for c in self.streams.codecOrder()))

    def streamStarted(self, rect):
        """
        A stream now shows C{rect}: pending lossless updates inside it are
        moot.
        """
        self.damage.discardInside(rect)
        self.exact.discardInside(rect)
        self.view.markLossy(rect)

    def refresh(self, rect):
        """
        Send C{rect} losslessly with the next update.
        """
        self.exact.add(rect)
        self.view.markLossy(rect)
        self._scheduleFlush()

    def canSendVideo(self):
        return self.initialized and self.connected and not self._paused and self.canSend()

    def queuedBytes(self):
        return queuedBytes(self.transport)

    def mmTime(self):
        return self.context.mmTime()

    def sendRaw(self, msgType, body, counted=True):
        self.bytesWritten += len(body)
        ChannelProtocol.sendRaw(self, msgType, body, counted)

    # -- drawing ---------------------------------------------------------------

    def _sendWholeSurface(self):
        """
        Send the whole surface as one image, as libspice-server does after
        creating a surface: a client that looks at the first update it gets
        sees the complete picture.
        """
        self.damage.take()
        self.exact.take()
        if (self.view.width, self.view.height) != (self.source.width, self.source.height):
            self.view.resize(self.source.width, self.source.height)
        self._keepView()
        self._drawCopy(self.source.framebuffer(),
                       (0, 0, self.source.width, self.source.height))
        self._scheduleIdleRefresh()

    def _sendDamage(self, respectWindow):
        if respectWindow and (not self.canSend() or self._wanProbe is not None):
            return
        if not (self.damage or self.exact):
            self._scheduleIdleRefresh()
            return
        if respectWindow and not self._losslessRoom():
            # Look (capture, compare) only once the link can take it: the
            # update then reflects everything that changed meanwhile.
            self._scheduleFlush(LOSSLESS_RETRY)
            return
        frame = self.source.framebuffer()
        plans = self._plan(frame, self.damage.take())
        stoppedAt, self._stoppedAt = self._stoppedAt, None
        if stoppedAt is not None:
            # What the last update left out has waited longest: it goes
            # first (else a picture changing faster than the link carries
            # would only ever be updated at its top).
            plans.sort(key=lambda steps: _bottom(steps) <= stoppedAt)
        for p, steps in enumerate(plans):
            scroll = any(isinstance(step, Copy) for step in steps)
            if scroll and p and respectWindow and not self._losslessRoom():
                self._defer([s for later in plans[p:] for s in later])
                return
            for i, step in enumerate(steps):
                if isinstance(step, Copy):
                    self._copyBits(step)
                    continue
                todo = list(strips(step))
                if stoppedAt is not None and not scroll:
                    todo.sort(key=lambda strip: strip[1] < stoppedAt)
                for k, strip in enumerate(todo):
                    # A scroll goes whole once begun (its images are what
                    # appeared since the last update: cutting them, the
                    # bottom rows would never catch up); other images wait
                    # when the link is full, and merge with whatever changes
                    # meanwhile.
                    if respectWindow and not scroll and not self._losslessRoom():
                        self._stoppedAt = strip[1]
                        for rest in todo[k:]:
                            self.damage.add(rest)
                        self._defer(steps[i + 1:] + [s for later in plans[p + 1:]
                                                     for s in later])
                        return
                    self._drawCopy(frame, strip)
        # Areas that must go losslessly (a stream's end, the refresh of
        # JPEG stills) follow, once the damage has gone.
        rects = self.exact.take()
        for i, rect in enumerate(rects):
            for strip in strips(rect):
                if respectWindow and not self._losslessRoom():
                    for r in [(rect[0], strip[1], rect[2], rect[3])] + rects[i + 1:]:
                        self.exact.add(r)
                    self._scheduleFlush(LOSSLESS_RETRY)
                    return
                self._drawCopy(frame, strip, exact=True)
        if respectWindow:
            self._refreshSpare(frame)
        self._scheduleIdleRefresh()

    def _refreshSpare(self, frame):
        """
        The update went whole and the link has room: refresh the newest of
        the client's JPEG rows (the lowest: a page scrolling down brings its
        new rows in at the bottom, where they stay longest) with what fits
        under L{stills.SPARE_QUEUE_SECONDS} of the link.  What the client
        holds exactly then moves with the copies, exact, and less is left
        for the idle refresh when the motion stops.  (The areas that went
        as JPEG stay marked: the idle refresh looks at the view again.)
        """
        rate = self.streams.rate.rate or self.stills.probedRate
        if not (self.stills.lossy and rate and self.view.active) or self.streams.streams:
            return
        room = rate * stills.SPARE_QUEUE_SECONDS - self.queuedBytes()
        if room <= 0:
            return
        # Upwards from the lowest JPEG area, a few rows at a time: looking at
        # the whole view every update would cost more than the refresh.
        left, top, right, bottom = self.stills.lossy.bounds()
        for y in range(bottom, top, -SPARE_SCAN_ROWS):
            parts = self.view.inexact((left, max(top, y - SPARE_SCAN_ROWS), right, y))
            if parts:
                break
        else:
            # All of it is exact on the client already.
            self.stills.lossy.take()
            return
        left, top, right, bottom = max(parts, key=lambda p: (p[3], p[2] - p[0]))
        rows = max(1, int(room // ((right - left) * 4)))
        for strip in strips((left, max(top, bottom - rows), right, bottom)):
            if not self._losslessRoom():
                break
            self._drawCopy(frame, strip, exact=True)

    def _inexactLossy(self):
        """
        The areas that went as JPEG (taken from L{stills.Stills.lossy}),
        cut to where the client's view says its pixels may still be
        inexact: copies from JPEG areas mark their whole destination, and a
        refresh or a later exact image may have replaced much of it.
        """
        return [part for rect in self.stills.takeLossy() for part in self.view.inexact(rect)]

    def _defer(self, steps):
        for step in steps:
            for rect in (step.rects if isinstance(step, Copy) else [step]):
                self.damage.add(rect)
        self._scheduleFlush(LOSSLESS_RETRY)

    def _plan(self, frame, rects):
        """
        The damaged C{rects} as a list of steps for each: rectangles to draw
        and L{Copy}s of what moved within the client's picture.  A rectangle
        brought up to date by a copy is scrolling, not video: the streams
        hear of it.
        """
        for stream in self.streams.streams.values():
            self.view.markLossy(stream.frameRect)
        plans = []
        for rect in rects:
            if worthComparing(rect):
                self._keepView()
            plan = planCopy(frame, self.view, rect)
            steps = list(plan.before)
            if plan.copy is not None:
                steps.append(plan.copy)
                self.streams.scrolled(rect)
            steps.extend(plan.after)
            plans.append(steps)
        return plans

    def _keepView(self):
        """
        Damage worth comparing came: keep the client's view (again), for
        L{VIEW_KEEP} more seconds.
        """
        self.view.activate()
        if self._viewCall is not None and self._viewCall.active():
            self._viewCall.reset(VIEW_KEEP)
        else:
            self._viewCall = self.clock.callLater(VIEW_KEEP, self._releaseView)

    def _releaseView(self):
        self._viewCall = None
        self.view.release()

    def _copyBits(self, copy):
        for rect in copy.rects:
            left, top, right, bottom = rect
            if self.view.holdsApprox((left + copy.dx, top + copy.dy,
                                      right + copy.dx, bottom + copy.dy)):
                # A JPEG moved: where it lands waits for the exact refresh.
                self.stills.lossy.add(rect)
            self.sendMessage(
                "COPY_BITS",
                base=dict(surface_id=PRIMARY_SURFACE,
                          box=dict(top=top, left=left, bottom=bottom, right=right), clip=None),
                src_pos=dict(x=left + copy.dx, y=top + copy.dy))
            self.view.copied(copy, rect)
        self.copiesSent += 1
        self.copiedPixels += copy.area

    def _scheduleIdleRefresh(self):
        """
        Areas went as JPEG: refresh them exactly once the link has been
        idle for L{stills.IDLE_REFRESH}.
        """
        if self.stills.lossy and self.connected:
            if self._idleCall is not None and self._idleCall.active():
                self._idleCall.cancel()
            self._idleCall = self.clock.callLater(stills.IDLE_REFRESH, self._idleRefresh)

    def _idleRefresh(self):
        self._idleCall = None
        if not self.connected or self.migrationStarted:
            return
        if (self.damage or self.exact or self.streams.streams or self._paused
                or self.queuedBytes() > 0):
            self._scheduleIdleRefresh()
            return
        for rect in self._inexactLossy():
            self.exact.add(rect)
        self._scheduleFlush()

    def _losslessRoom(self):
        self.streams.sampleLink()
        return self.queuedBytes() <= self.streams.rate.losslessBudget()

    def _drawCopy(self, frame, rect, exact=False):
        left, top, right, bottom = rect
        pixels = frame[top:bottom, left:right]
        lossy = []
        for (left, top, right, bottom), image in self.stills.images(
                pixels, rect, self.encoding, self.streams.rate.rate, exact):
            if image[IMAGE_TYPE_AT] == IMAGE_TYPE_JPEG:
                lossy.append((left, top, right, bottom))
            self.sendMessage(
                "DRAW_COPY",
                base=dict(surface_id=PRIMARY_SURFACE,
                          box=dict(top=top, left=left, bottom=bottom, right=right), clip=None),
                src_bitmap=image,
                src_area=dict(top=0, left=0, bottom=bottom - top, right=right - left),
                rop_descriptor=ROPD_OP_PUT, scale_mode=SCALE_MODE_NEAREST,
                mask=dict(flags=0, pos=dict(x=0, y=0), bitmap=0))
        self.view.drew(frame, rect)
        # What went as JPEG is inexact on the client until refreshed
        # (copies may move it, inexact as it is).
        for box in lossy:
            self.view.markApprox(box)
