"""
Tests for L{spicesrv.unixsocket}: the one way every UNIX socket a server
listens on is made (its mode and group).
"""

from twisted.internet import endpoints
from twisted.internet.testing import MemoryReactor
from twisted.trial import unittest

from spicesrv.unixsocket import (
    DEFAULT_GROUP_MODE, DEFAULT_MODE, has_parameter, unix_server_endpoint)


class UnixSocketTests(unittest.TestCase):

    def setUp(self):
        self.reactor = MemoryReactor()

    def test_privateByDefault(self):
        self.assertEqual(DEFAULT_MODE, 0o600)
        endpoint = unix_server_endpoint(self.reactor, "unix:/tmp/a.sock")
        self.assertIsInstance(endpoint, endpoints.UNIXServerEndpoint)
        self.assertEqual(endpoint._mode, 0o600)
        endpoint.listen(None)
        path, _, _, mode, _ = self.reactor.unixServers[0]
        self.assertEqual((path, mode), ("/tmp/a.sock", 0o600))

    def test_givenMode(self):
        self.assertEqual(unix_server_endpoint(self.reactor, "unix:/tmp/a.sock", 0o640)._mode,
                         0o640)
        # The description's own mode= wins.
        self.assertEqual(unix_server_endpoint(self.reactor, "unix:/tmp/a.sock:mode=644",
                                              0o600)._mode, 0o644)

    def test_group(self):
        """
        With a group the socket is created for its owner only, then given to
        the group with the group mode.
        """
        endpoint = unix_server_endpoint(self.reactor, "unix:/tmp/a.sock", gid=1234)
        self.assertEqual((endpoint.gid, endpoint.mode), (1234, DEFAULT_GROUP_MODE))
        self.assertEqual(endpoint.endpoint._mode, DEFAULT_GROUP_MODE & 0o700)

    def test_notUnix(self):
        e = self.assertRaises(ValueError, unix_server_endpoint, self.reactor, "tcp:4444")
        self.assertIn("unix:PATH", str(e))

    def test_hasParameter(self):
        self.assertTrue(has_parameter("unix:/a:mode=600", "mode"))
        self.assertTrue(has_parameter("unix:path=/a:backlog=5", "backlog"))
        self.assertFalse(has_parameter("unix:/a\\:mode=600", "mode"))
        self.assertFalse(has_parameter("unix:/amode=600", "mode"))
