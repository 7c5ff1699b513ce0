"""
SPICE ticket authentication: the server's password, its expiry, and the
check of a client's decrypted ticket.

The semantics are libspice-server's ``spice_server_set_ticket`` and
``spice_server_set_noauth``: a password with a lifetime (0 = never expires),
no password at all, or an empty one, locking everyone out while ticketing
is on (libspice's ``reds_handle_ticket`` refuses every ticket while the
password is empty), and ticketing disabled accepting any ticket.
"""

import hmac

from spicesrv.wire.constants import MAX_PASSWORD_LENGTH


class Ticket:
    """
    The password clients must present.

    @param clock: an C{IReactorTime} provider; expiry is measured with its
        C{seconds()}.
    """

    def __init__(self, clock, password=None, disabled=False):
        self._clock = clock
        self.disabled = disabled
        self._password = None
        self._expires = None
        if password is not None:
            self.set(password)

    def __repr__(self):
        # Never show the password, not even in a traceback.
        return "<Ticket %s>" % ("disabled" if self.disabled else
                                "set" if self._password is not None else "empty")

    @staticmethod
    def validate(password):
        """
        Raise L{ValueError} unless C{password} is usable as a SPICE ticket.
        """
        encoded = password.encode("utf-8") if isinstance(password, str) else password
        if len(encoded) > MAX_PASSWORD_LENGTH:
            raise ValueError("the password is %d bytes long; SPICE allows at most %d"
                             % (len(encoded), MAX_PASSWORD_LENGTH))
        if b"\0" in encoded:
            raise ValueError("the password contains a NUL byte")
        return encoded

    def set(self, password, lifetime=0):
        """
        Set a new password that expires C{lifetime} seconds from now (0 =
        never).  C{None} or an empty password clears it, which denies every
        client while ticketing is enabled: an empty password never
        authenticates anyone.
        """
        if password is None:
            self._password = None
            self._expires = None
            return
        self._password = self.validate(password) or None
        self.expire_in(lifetime)

    def expire_in(self, seconds):
        """
        Make the current password expire C{seconds} from now; 0 means never,
        a negative number means it has already expired.
        """
        self._expires = None if seconds == 0 else self._clock.seconds() + seconds

    def expire_at(self, when):
        """
        Make the current password expire at C{when} (clock seconds), or never
        if C{when} is L{None}.
        """
        self._expires = when

    @property
    def expired(self):
        return self._expires is not None and self._clock.seconds() >= self._expires

    @property
    def has_password(self):
        return bool(self._password)

    def check(self, plaintext):
        """
        Check a decrypted ticket (the password bytes, NUL-terminated as
        clients send it).  Returns C{(ok, reason)}; the reason never contains
        the password.
        """
        if self.disabled:
            return True, "ticketing disabled"
        if not self._password:
            return False, "ticketing is enabled but no password is set"
        if self.expired:
            return False, "the password has expired"
        offered = plaintext.split(b"\0", 1)[0]
        if hmac.compare_digest(offered, self._password):
            return True, "password accepted"
        return False, "wrong password"
