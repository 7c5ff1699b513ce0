"""
The inputs channel (type 3): keyboard scancodes, lock-key sync and the
mouse, delivered to the server's keyboard, mouse and tablet devices.
"""

from spicesrv.channel import MIGRATE_NEED_DATA_TRANSFER, MIGRATE_NEED_FLUSH, ChannelProtocol
from spicesrv.wire.constants import (
    INPUT_MOTION_ACK_BUNCH, ChannelType, InputsCap, KeyModifier, MouseButton, MouseMode)
from spicesrv.migration.seamless import Integer
from spicesrv.wire.messages import INPUTS_CLIENT, INPUTS_SERVER

# Set-1 make codes of the lock keys, used to bring the guest's locks in line
# with the client's (KEY_MODIFIERS).
LOCK_SCANCODES = {
    KeyModifier.SCROLL_LOCK: 0x46,
    KeyModifier.NUM_LOCK: 0x45,
    KeyModifier.CAPS_LOCK: 0x3A,
}

WHEEL = {MouseButton.UP: -1, MouseButton.DOWN: 1}

# The largest inputs message a client may send, as libspice-server's inputs
# channel (its receive buffer: "the largest message from client is
# key_scancode ... 2K is more than enough"); a bigger one closes the channel.
MAX_INPUTS_MESSAGE = 2048

# Scancodes handed to the keyboard per reactor turn, however many messages
# brought them: a turn's further messages wait for the next turn, and the
# rest of a long message follows in the next turns with the client's further
# messages held.  A keyboard device may take milliseconds per scancode, so a
# turn takes a few keystrokes, not a whole paste or a flood of messages.
MAX_SCANCODES_PER_TURN = 16


def code_bytes(code):
    """
    The scancode bytes of a KEY_DOWN/KEY_UP code: from the low byte up,
    stopping at the first zero byte (0xE0-prefixed keys arrive as
    C{sc << 8 | 0xE0}).
    """
    out = []
    while code & 0xFF:
        out.append(code & 0xFF)
        code >>= 8
    return out


class InputsChannel(ChannelProtocol):
    """
    The client's keyboard and mouse: key codes become scancode bytes for
    the server's L{spicesrv.interfaces.IKeyboard}, motion and buttons go to
    its L{spicesrv.interfaces.IMouse} or L{spicesrv.interfaces.ITablet} as
    the mouse mode says, and lock-key LEDs go back to the client.
    """

    channelType = ChannelType.INPUTS
    serverMessages = INPUTS_SERVER
    clientMessages = INPUTS_CLIENT
    migrateFlags = MIGRATE_NEED_FLUSH | MIGRATE_NEED_DATA_TRANSFER
    maxClientMessage = MAX_INPUTS_MESSAGE
    migrationSchema = ChannelProtocol.migrationSchema.extend(
        motions=Integer(0, INPUT_MOTION_ACK_BUNCH - 1, default=0))

    def __init__(self, session, info):
        ChannelProtocol.__init__(self, session, info)
        self._motions = 0
        self._modifiers = None
        self._scancodes = bytearray()      # waiting for the keyboard
        self._turnScancodes = 0            # given to it in this turn
        self._keysCall = None
        self._motion = None                # (kind, x or dx, y or dy, buttons)
        self._motionCall = None

    @classmethod
    def capabilities(cls, context):
        return {InputsCap.KEY_SCANCODE}

    def channelUp(self):
        self._modifiers = self._leds()
        if self.awaitingMigrationData:
            return
        self.sendMessage("INIT", keyboard_modifiers=self._modifiers)
        if not self.info.secure and self.context.tlsAvailable and self.session.main:
            self.session.main.notify("keyboard channel is insecure")

    def migrationData(self):
        return dict(ChannelProtocol.migrationData(self),
                    motions=self._motions % INPUT_MOTION_ACK_BUNCH)

    def restoreMigrationData(self, fields):
        self._motions = fields["motions"]
        self.sendMessage("KEY_MODIFIERS", modifiers=self._modifiers)

    def channelDown(self):
        for call in (self._keysCall, self._motionCall):
            if call is not None and call.active():
                call.cancel()
        self._keysCall = self._motionCall = None

    def _leds(self):
        keyboard = self.context.keyboard
        return int(keyboard.get_leds()) if keyboard is not None else 0

    def ledsChanged(self):
        """
        Tell the client if the keyboard's lock LEDs changed.
        """
        leds = self._leds()
        if leds != self._modifiers:
            self._modifiers = leds
            self.sendMessage("KEY_MODIFIERS", modifiers=leds)

    # -- keyboard --------------------------------------------------------------

    def _push(self, scancodes):
        """
        Hand C{scancodes} to the keyboard within this reactor turn's share
        (L{MAX_SCANCODES_PER_TURN}, counted over all the turn's messages);
        the client's next messages wait for the rest.
        """
        self._flushMotion()
        if self.context.keyboard is None or not scancodes:
            return
        self._scancodes += bytes(scancodes)
        self._feedKeyboard()

    def _feedKeyboard(self):
        """
        Give the keyboard what is left of this turn's share of the waiting
        scancodes; hold the client's messages while some still wait.
        """
        keyboard = self.context.keyboard
        if keyboard is None or not self.connected:
            del self._scancodes[:]
            return
        room = max(0, MAX_SCANCODES_PER_TURN - self._turnScancodes)
        now = bytes(self._scancodes[:room])
        del self._scancodes[:room]
        self._turnScancodes += len(now)
        for byte in now:
            keyboard.push_scan_freg(byte)
        if now:
            self.context.keyboardLedsMayHaveChanged()
        if self._scancodes:
            self.holdReading()
            if self._keysCall is None:
                self._keysCall = self.clock.callLater(0, self._nextKeysTurn)

    def _nextKeysTurn(self):
        """
        A new reactor turn for the scancodes that did not fit in the last:
        its share goes to them, and once they are all given the client's
        messages go on (from the turn after).
        """
        self._keysCall = None
        self._turnScancodes = 0
        self._feedKeyboard()
        if not self._scancodes:
            self.releaseReading()

    def turnShareSpent(self):
        return self._turnScancodes >= MAX_SCANCODES_PER_TURN

    def turnStarted(self):
        self._turnScancodes = 0

    def msg_KEY_DOWN(self, msg):
        self._push(code_bytes(msg.code))

    def msg_KEY_UP(self, msg):
        self._push(code_bytes(msg.code))

    def msg_KEY_SCANCODE(self, msg):
        self._push(msg.codes)

    def msg_KEY_MODIFIERS(self, msg):
        """
        The client's lock keys differ from ours: press and release each
        lock key that differs, as libspice-server does.
        """
        current = self._leds()
        codes = []
        for flag, scancode in LOCK_SCANCODES.items():
            if (msg.modifiers ^ current) & flag:
                codes += [scancode, scancode | 0x80]
        self._push(codes)

    # -- mouse -----------------------------------------------------------------

    def _motionReceived(self):
        self._motions += 1
        if self._motions % INPUT_MOTION_ACK_BUNCH == 0:
            self.sendMessage("MOUSE_MOTION_ACK")

    def msg_MOUSE_MOTION(self, msg):
        self._motionReceived()
        if self.context.mouseMode == MouseMode.SERVER and self.context.mouse is not None:
            self._coalesceMotion("motion", msg.dx, msg.dy, msg.buttons_state)

    def msg_MOUSE_POSITION(self, msg):
        self._motionReceived()
        if self.context.mouseMode == MouseMode.CLIENT and self.context.tablet is not None:
            self._coalesceMotion("position", msg.x, msg.y, msg.buttons_state)

    def _coalesceMotion(self, kind, x, y, buttons):
        """
        Movement is given to the device once per reactor turn, however many
        messages brought it: the latest position, or the sum of the relative
        motions.  A change of buttons (a drag starting or ending) is never
        merged away.
        """
        pending = self._motion
        if pending is not None and (pending[0] != kind or pending[3] != buttons):
            self._flushMotion()
            pending = None
        if pending is not None and kind == "motion":
            x, y = pending[1] + x, pending[2] + y
        self._motion = (kind, x, y, buttons)
        if self._motionCall is None:
            self._motionCall = self.clock.callLater(0, self._flushMotion)

    def _flushMotion(self):
        """
        Give the device the movement waiting since the last flush.
        """
        if self._motionCall is not None and self._motionCall.active():
            self._motionCall.cancel()
        self._motionCall = None
        pending, self._motion = self._motion, None
        if pending is None or not self.connected:
            return
        kind, x, y, buttons = pending
        if kind == "motion" and self.context.mouse is not None:
            self.context.mouse.motion(x, y, 0, buttons)
        elif kind == "position" and self.context.tablet is not None:
            self.context.tablet.position(x, y, buttons)

    def _button(self, msg):
        self._flushMotion()
        dz = WHEEL.get(msg.button, 0)
        if self.context.mouseMode == MouseMode.CLIENT and self.context.tablet is not None:
            if dz:
                self.context.tablet.wheel(dz, msg.buttons_state)
            else:
                self.context.tablet.buttons(msg.buttons_state)
        elif self.context.mouse is not None:
            if dz:
                self.context.mouse.motion(0, 0, dz, msg.buttons_state)
            else:
                self.context.mouse.buttons(msg.buttons_state)

    def msg_MOUSE_PRESS(self, msg):
        self._button(msg)

    def msg_MOUSE_RELEASE(self, msg):
        # The wheel's release carries no movement.
        if msg.button not in WHEEL:
            self._button(msg)
