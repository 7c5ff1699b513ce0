"""
What the playback and record channels share (L{SoundChannel}): their
device (a sound source or sink), the wait for a client migrating in, the
restart after a seamless switch, and the device's volume, mute and start
told to the client when the channel begins.
"""

from spicesrv.channel import ChannelProtocol


def opusPossible():
    """
    Whether this server can encode and decode Opus (PyAV's libopus).
    """
    from spicesrv.sound.codec import opusAvailable
    return opusAvailable()


class SoundChannel(ChannelProtocol):
    """
    A sound channel of one client, observing its C{device}.

    On a migration target nothing happens until the client has arrived
    (L{clientArrived}); after a seamless switch, where the client kept the
    stream it had with the source, the channel sends STOP first so that it
    starts over with this server's mode.  Subclasses say what a beginning
    sends (L{beginning}) and what the device's being active means
    (L{deviceActive}).

    @ivar device: the L{spicesrv.interfaces.IPlaybackSource} or
        L{spicesrv.interfaces.IRecordSink}.
    """

    def __init__(self, session, info, device):
        ChannelProtocol.__init__(self, session, info)
        self.device = device
        self._waiting = False       # for the client to arrive (migration)
        self._restart = False       # the client kept a stream from the source
        self._observing = False

    def channelUp(self):
        self._restart = self.session.restoringSeamlessly
        if self.session.arriving:
            # A migration target: nothing until the client works here.
            self._waiting = True
            return
        self._begin()

    def clientArrived(self):
        """
        The session's client has switched to this server (the server
        broadcasts it to the session's channels).
        """
        if self._waiting and self.connected:
            self._waiting = False
            self._begin()

    def _begin(self):
        if self._restart:
            self._restart = False
            self.sendMessage("STOP")
        self.beginning()
        if self.device.volume is not None:
            self.volume_changed(self.device.volume)
            self.mute_changed(self.device.mute)
        self._observing = True
        self.device.addObserver(self)
        if self.device.active:
            self.deviceActive()

    def beginning(self):
        """
        The channel begins (linked, and its client here): send what comes
        before the device's volume.
        """

    def deviceActive(self):
        """
        The device was already playing or recording when the channel began.
        """

    def stopObserving(self):
        """
        Stop hearing from the device (the channel is going).
        """
        if self._observing:
            self._observing = False
            try:
                self.device.removeObserver(self)
            except ValueError:
                pass
