"""
Tests for L{spicesrv.registry}: which channels a server offers.
"""

from twisted.trial import unittest

from spicesrv.registry import ChannelEntry, ChannelRegistry
from spicesrv.wire.constants import ChannelType


class Served:
    pass


class RegistryTests(unittest.TestCase):
    def setUp(self):
        self.registry = ChannelRegistry()

    def test_registerAndLookup(self):
        entry = self.registry.register(ChannelType.DISPLAY, 0, Served, source="screen")
        self.assertEqual(entry, ChannelEntry(2, 0, Served))
        self.assertIsInstance(entry.channel_type, int)
        self.assertEqual(entry.kwargs, {"source": "screen"})
        self.assertIs(self.registry.lookup(2, 0), entry)
        self.assertIsNone(self.registry.lookup(2, 1))

    def test_twiceRefused(self):
        self.registry.register(ChannelType.PORT, 0, Served)
        self.assertRaises(ValueError, self.registry.register, ChannelType.PORT, 0, Served)

    def test_unregister(self):
        self.registry.register(ChannelType.PORT, 0, Served)
        self.registry.unregister(ChannelType.PORT, 0)
        self.assertIsNone(self.registry.lookup(ChannelType.PORT, 0))
        self.assertRaises(KeyError, self.registry.unregister, ChannelType.PORT, 0)

    def test_nextId(self):
        self.assertEqual(self.registry.nextId(ChannelType.PORT), 0)
        self.registry.register(ChannelType.PORT, 0, Served)
        self.registry.register(ChannelType.PORT, 3, Served)
        self.registry.register(ChannelType.DISPLAY, 7, Served)
        self.assertEqual(self.registry.nextId(ChannelType.PORT), 4)

    def test_entriesSorted(self):
        self.registry.register(ChannelType.PORT, 1, Served)
        self.registry.register(ChannelType.MAIN, 0, Served)
        self.registry.register(ChannelType.PORT, 0, Served)
        self.assertEqual([(e.channel_type, e.channel_id) for e in self.registry.entries()],
                         [(1, 0), (10, 0), (10, 1)])

    def test_observers(self):
        seen = []
        self.registry.register(ChannelType.MAIN, 0, Served)
        self.registry.observe(seen.append)
        entry = self.registry.register(ChannelType.PORT, 0, Served)
        self.assertEqual(seen, [entry])

    def test_entriesEqualWhateverTheirArguments(self):
        self.assertEqual(ChannelEntry(1, 0, Served, {"a": 1}), ChannelEntry(1, 0, Served, {}))
        self.assertEqual(hash(ChannelEntry(1, 0, Served, {"a": 1})),
                         hash(ChannelEntry(1, 0, Served)))
