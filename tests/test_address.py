"""
Tests for L{spicesrv.address}: the one loopback check, port check and peer
description that the options, the link and the monitor share, and the
one decoding of an address that log lines and QMP's data shapes share.
"""

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.trial import unittest

from spicesrv.address import address_parts, describe_peer, is_loopback, is_tcp_port
from spicesrv.control.events import basicInfo


class LoopbackTests(unittest.TestCase):

    def test_loopback(self):
        for host in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "::1%lo", "::ffff:127.0.0.1",
                     "localhost", "LocalHost", "localhost.", "localhost.localdomain",
                     "localhost6", "ip6-localhost", "ip6-loopback"]:
            self.assertTrue(is_loopback(host), host)

    def test_notLoopback(self):
        for host in ["0.0.0.0", "::", "", "10.0.0.1", "::ffff:10.0.0.1", "example.com",
                     "localhost.example.com", "[127.0.0.1", "fe80::1%lo"]:
            self.assertFalse(is_loopback(host), host)


class PortTests(unittest.TestCase):

    def test_ports(self):
        self.assertTrue(is_tcp_port(0))
        self.assertTrue(is_tcp_port(65535))
        self.assertFalse(is_tcp_port(0, zero=False))
        self.assertTrue(is_tcp_port(1, zero=False))
        for value in [-1, 65536, True, "5900", 5900.0, None]:
            self.assertFalse(is_tcp_port(value), value)


class PeerTests(unittest.TestCase):

    def test_describe(self):
        self.assertEqual(describe_peer(IPv4Address("TCP", "10.0.0.2", 4000)), "10.0.0.2:4000")
        self.assertEqual(describe_peer(IPv6Address("TCP", "::1", 4000)), "[::1]:4000")
        self.assertEqual(describe_peer(UNIXAddress(b"/run/qmp.sock")), "unix:/run/qmp.sock")
        self.assertEqual(describe_peer(UNIXAddress(None)), "unix")
        self.assertEqual(describe_peer("something"), "something")

    def test_parts(self):
        self.assertEqual(address_parts(IPv4Address("TCP", "10.0.0.2", 4000)),
                         ("10.0.0.2", 4000, "ipv4"))
        self.assertEqual(address_parts(IPv6Address("TCP", "::1", 4000)), ("::1", 4000, "ipv6"))
        self.assertEqual(address_parts(UNIXAddress(b"/run/qmp.sock")),
                         ("/run/qmp.sock", None, "unix"))
        self.assertEqual(address_parts(UNIXAddress(None)), ("", None, "unix"))
        self.assertIsNone(address_parts("something"))

    def test_logAndQMPAgree(self):
        """
        A log line and QMP's C{SpiceBasicInfo} show the same host and port
        of an address.
        """
        for address in [IPv4Address("TCP", "10.0.0.2", 4000), IPv6Address("TCP", "::1", 4000),
                        UNIXAddress(b"/run/spice.sock")]:
            info = basicInfo(address)
            host, port, family = address_parts(address)
            self.assertEqual((info["host"], info["family"]), (host, family))
            self.assertEqual(info["port"], "" if port is None else str(port))
            self.assertIn(host, describe_peer(address))
