"""
Tests for the ticket: libspice-server's set_ticket semantics.
"""

from twisted.internet.task import Clock
from twisted.trial import unittest

from spicesrv.ticket import Ticket


class TicketTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()

    def test_password(self):
        ticket = Ticket(self.clock, password="pw")
        self.assertEqual(ticket.check(b"pw\0"), (True, "password accepted"))
        self.assertEqual(ticket.check(b"pW\0"), (False, "wrong password"))
        self.assertEqual(ticket.check(b"pw"), (True, "password accepted"))
        self.assertEqual(ticket.check(b"pwx\0"), (False, "wrong password"))

    def test_noPasswordLocksOut(self):
        ticket = Ticket(self.clock)
        self.assertFalse(ticket.check(b"\0")[0])
        ticket.set("pw")
        ticket.set(None)
        self.assertFalse(ticket.check(b"pw\0")[0])

    def test_emptyPasswordLocksOut(self):
        """
        An empty password authenticates nobody, not even an empty ticket,
        as libspice-server refuses every client while its password is
        empty.
        """
        for password in ("", b""):
            ticket = Ticket(self.clock, password=password)
            self.assertEqual(ticket.check(b"\0"),
                             (False, "ticketing is enabled but no password is set"))
            self.assertEqual(ticket.check(b""),
                             (False, "ticketing is enabled but no password is set"))
            self.assertFalse(ticket.has_password)
        ticket = Ticket(self.clock, password="pw")
        ticket.set("")
        self.assertFalse(ticket.check(b"\0")[0])
        self.assertFalse(ticket.check(b"pw\0")[0])

    def test_lifetime(self):
        ticket = Ticket(self.clock)
        ticket.set("pw", lifetime=5)
        self.clock.advance(4.9)
        self.assertTrue(ticket.check(b"pw\0")[0])
        self.clock.advance(0.1)
        self.assertEqual(ticket.check(b"pw\0"), (False, "the password has expired"))
        ticket.set("pw", lifetime=0)
        self.clock.advance(1e6)
        self.assertTrue(ticket.check(b"pw\0")[0])

    def test_expireAt(self):
        ticket = Ticket(self.clock, password="pw")
        ticket.expire_at(10)
        self.assertTrue(ticket.check(b"pw\0")[0])
        self.clock.advance(10)
        self.assertFalse(ticket.check(b"pw\0")[0])
        ticket.expire_at(None)
        self.assertTrue(ticket.check(b"pw\0")[0])

    def test_disabled(self):
        ticket = Ticket(self.clock, disabled=True)
        self.assertTrue(ticket.check(b"\0")[0])
        self.assertTrue(ticket.check(b"anything\0")[0])

    def test_validate(self):
        self.assertRaises(ValueError, Ticket.validate, "x" * 61)
        self.assertEqual(Ticket.validate("x" * 60), b"x" * 60)
        self.assertRaises(ValueError, Ticket.validate, "a\0b")

    def test_reprHidesPassword(self):
        self.assertNotIn("secret", repr(Ticket(self.clock, password="secret")))
