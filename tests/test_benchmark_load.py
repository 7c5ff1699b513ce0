"""
A smoke test of C{benchmarks/load.py}, so that it cannot rot: five sessions
against a real C{twistd spice}, a short hold, three flood samples.  It
checks that the figures are printed and that no session failed, never the
timings.  The flood samples may fail (a flooding client starves others
today), so only their line is checked.
"""

import os
import re
import subprocess
import sys

from twisted.trial import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class LoadBenchmarkSmokeTests(unittest.TestCase):
    timeout = 300

    def test_fiveSessions(self):
        result = subprocess.run(
            [sys.executable, "-m", "benchmarks.load", "--sessions", "5", "--hold", "0.5",
             "--flood-samples", "1", "--flood-timeout", "3"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=280)
        output = result.stdout.decode("utf-8", "replace")
        self.assertRegex(output, r"(?m)^sessions +ok +failures +link p50 +link p99")
        row = re.search(r"(?m)^ +5 +(\d+) +(\d+) +(\d+) ms +(\d+) ms .* kB ", output)
        self.assertIsNotNone(row, output)
        self.assertEqual((row.group(1), row.group(2)), ("5", "0"), output)
        self.assertIn("\nfailures: 0\n", output)
        self.assertRegex(output, r"link while another client floods \(mouse\): idle p50 \d+ ms")
        self.assertIn("server: ", output)
