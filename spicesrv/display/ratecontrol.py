"""
Rate control for video streams: how much the link to one client carries,
whether a frame may go now, at which JPEG quality, and how far ahead of the
client's multimedia clock to stamp it.

The link is measured, not configured: the channel reports the bytes it has
written and the bytes still queued (Twisted's buffer plus the kernel's
unacknowledged send queue); while the queue stays non-empty the link is
busy, and what drained in that time is its rate.  A frame is admitted only
while the queue holds less than about L{QUEUE_SECONDS} of data at that rate,
so frames that the link cannot carry are dropped before they are encoded,
never queued: the client always gets the newest picture the link allows.
The quality follows from the rate: each frame should take at most
L{CAPACITY} of the link's share per input frame.

The client's clock (protocol.md 6.5) shows a frame when it reaches the
frame's mm_time and drops frames already late on arrival; the client's
STREAM_REPORTs say by how much each frame was early (``last_frame_delay``),
and the playback delay follows them: up at once when frames come late,
down slowly while they come early.
"""

import collections
import fcntl
import struct
import termios

from spicesrv.display.video import MAX_QUALITY, MIN_QUALITY, START_QUALITY
from spicesrv.limits import socketOf, transportBuffered, transportLayers

#: Share of the measured link rate video may use (libspice: 0.8).
CAPACITY = 0.8
#: How much queued data, in seconds at the link's rate, admits no new frame.
QUEUE_SECONDS = 0.04
#: Queued bytes that admit no new frame while the link's rate is unknown.
UNKNOWN_RATE_BUDGET = 512 * 1024
#: Lossless updates wait while more than this many seconds of data at the
#: link's rate are queued (at least L{LOSSLESS_MIN_BUDGET} bytes; while the
#: rate is unknown, L{LOSSLESS_UNKNOWN_BUDGET}), so that a stream's frames
#: and newer updates do not queue behind megabytes of old ones.
LOSSLESS_QUEUE_SECONDS = 0.1
LOSSLESS_MIN_BUDGET = 256 * 1024
LOSSLESS_UNKNOWN_BUDGET = 2 * 1024 * 1024
#: Busy time accumulated before the rate estimate is updated.
RATE_WINDOW = 0.1
#: Weight of a new rate sample.
RATE_WEIGHT = 0.3
#: What was delivered over this many seconds is a floor for the rate.
THROUGHPUT_WINDOW = 1.0
#: The queue budget never drops below this, nor below 1.5 frames.
MIN_BUDGET = 64 * 1024

#: Playback delay (ms) for a new stream, its bounds, and the headroom kept
#: above the latest frames' transit time.
START_DELAY_MS = 100
MIN_DELAY_MS = 20
MAX_DELAY_MS = 400
DELAY_HEADROOM_MS = 40

#: STREAM_ACTIVATE_REPORT: frames per report and its timeout (libspice's).
REPORT_WINDOW = 5
REPORT_TIMEOUT_MS = 1000

QUALITY_STEP = 5
#: A frame this many times its share of the link lowers the quality.
OVERSHOOT = 1.5
#: No quality increase for this long after a frame was dropped for the link.
DROP_MEMORY = 1.0


def queuedBytes(transport):
    """
    Bytes written to C{transport} that the peer has not acknowledged yet,
    through any layers over the socket (TLS, WebSocket): what a TLS layer
    has not handed to TCP yet, what Twisted still buffers and, for a socket
    on Linux, the kernel's send queue (SIOCOUTQ).  Unknown parts count as
    0.
    """
    pending = 0
    for layer in transportLayers(transport):
        # A TLS layer may hold bytes waiting for encryption, or records
        # waiting for the reactor thread (spicesrv.tls.endpoint).
        pending += getattr(layer, "bufferedBytes", 0) or 0
    # The lowest layer, Twisted's FileDescriptor, keeps what the kernel did
    # not take yet.
    pending += transportBuffered(layer)
    socket = socketOf(layer, tcpOnly=False)
    if socket is not None:
        try:
            pending += struct.unpack("i", fcntl.ioctl(socket.fileno(), termios.TIOCOUTQ,
                                                      b"\0\0\0\0"))[0]
        except (OSError, ValueError):
            pass
    return pending


class RateControl:
    """
    The video budget of one display channel.

    @ivar rate: the link's measured rate in bytes per second, or L{None}
        while it was never busy long enough to tell.
    @ivar quality: the JPEG quality for the next frame.
    @ivar delayMs: how far ahead of the client's clock frames are stamped.
    """

    def __init__(self):
        self.rate = None
        self.quality = START_QUALITY
        self.delayMs = START_DELAY_MS
        self.inputFps = 30.0
        self.framesSent = 0
        self.framesDropped = 0
        self.bytesSent = 0
        self._last = None          # (now, written, queued)
        self._busyBytes = 0
        self._busyTime = 0.0
        self._lateReports = 0
        self._history = collections.deque()
        self._lastDrop = None
        self.lastFrameBytes = 0
        self.reportedFrames = 0
        self.reportedDrops = 0

    # -- the link --------------------------------------------------------------

    def sample(self, now, written, queued, drained=False):
        """
        The channel has written C{written} bytes in all and C{queued} of them
        are not delivered yet.  C{drained}: the transport has just written
        out its buffer (it resumed its producer), so the link was busy until
        now even if nothing is queued any more.  On a fast link (loopback)
        the kernel takes everything at once and the queue is empty whenever
        it is looked at: without that moment, the rate would never be known.
        """
        last, self._last = self._last, (now, written, queued)
        self._history.append((now, written - queued))
        while self._history and now - self._history[0][0] > THROUGHPUT_WINDOW:
            self._history.popleft()
        if last is None:
            return
        then, wasWritten, wasQueued = last
        elapsed = now - then
        if elapsed <= 0:
            return
        delivered = (written - queued) - (wasWritten - wasQueued)
        if (written == wasWritten and wasQueued > 0 and (queued > 0 or drained)
                and delivered >= 0):
            # Nothing was added and the queue never emptied (or emptied just
            # now): the link was busy the whole interval, and what drained is
            # what it carries.
            self._busyBytes += delivered
            self._busyTime += elapsed
            if self._busyTime >= RATE_WINDOW:
                measured = self._busyBytes / self._busyTime
                self._busyBytes = 0
                self._busyTime = 0.0
                if measured > 0:
                    # (Nothing drained at all is a stalled peer, not a rate.)
                    self.rate = (measured if self.rate is None
                                 else (1 - RATE_WEIGHT) * self.rate + RATE_WEIGHT * measured)
        if self.rate is not None and len(self._history) > 1:
            (first, sent), (last_, sentNow) = self._history[0], self._history[-1]
            if last_ - first >= THROUGHPUT_WINDOW / 2:
                # The link carried at least what it delivered lately.
                self.rate = max(self.rate, (sentNow - sent) / (last_ - first))

    def budget(self):
        """
        Queued bytes above which no new frame is admitted.
        """
        if self.rate is None:
            return UNKNOWN_RATE_BUDGET
        return max(MIN_BUDGET, 1.5 * self.lastFrameBytes, self.rate * QUEUE_SECONDS)

    def losslessBudget(self):
        """
        Queued bytes above which lossless updates wait.
        """
        if self.rate is None:
            return LOSSLESS_UNKNOWN_BUDGET
        return max(LOSSLESS_MIN_BUDGET, self.rate * LOSSLESS_QUEUE_SECONDS)

    def admit(self, queued):
        """
        Whether a new frame may be encoded now, with C{queued} bytes not yet
        delivered.
        """
        return queued <= self.budget()

    def dropped(self, now):
        """
        A source frame was skipped because the link was full.
        """
        self.framesDropped += 1
        self._lastDrop = now
        self.quality = max(MIN_QUALITY, self.quality - 2)

    # -- frames ------------------------------------------------------------------

    def targetFrameBytes(self):
        if self.rate is None:
            return None
        return CAPACITY * self.rate / max(1.0, self.inputFps)

    def encoded(self, size, now):
        """
        A frame of C{size} bytes was encoded at L{quality}: steer the quality
        towards the link's share per frame, and up only while no frame was
        dropped lately (whatever the bytes say, the link or the client did
        not keep up).
        """
        self.framesSent += 1
        self.bytesSent += size
        self.lastFrameBytes = size
        target = self.targetFrameBytes()
        calm = self._lastDrop is None or now - self._lastDrop >= DROP_MEMORY
        # Only a gross overshoot lowers the quality by itself: the rate is
        # floored by what was delivered, so a frame a little over its share
        # is no evidence of a full link (drops are).
        if target is not None and size > OVERSHOOT * target:
            self.quality = max(MIN_QUALITY, self.quality - QUALITY_STEP)
        elif calm and target is None:
            self.quality = min(MAX_QUALITY, self.quality + 1)
        elif calm and size < 0.7 * target:
            self.quality = min(MAX_QUALITY, self.quality + QUALITY_STEP)

    # -- the client's reports -------------------------------------------------------

    def report(self, numFrames, numDrops, marginMs):
        """
        A STREAM_REPORT: of C{numFrames} frames C{numDrops} came too late, and
        the last one arrived C{marginMs} before its time (negative: after).
        """
        transit = self.delayMs - marginMs
        self.reportedFrames += numFrames
        self.reportedDrops += numDrops
        if numDrops or marginMs < MIN_DELAY_MS // 2:
            self._lateReports += 1
            self.delayMs = min(MAX_DELAY_MS, max(self.delayMs + DELAY_HEADROOM_MS,
                                                 transit + 2 * DELAY_HEADROOM_MS))
        else:
            wanted = max(MIN_DELAY_MS, transit + DELAY_HEADROOM_MS)
            if wanted < self.delayMs:
                # Come down slowly: frames stamped earlier than the ones
                # before would reset the client's queue.
                self.delayMs = max(wanted, self.delayMs - 5)
