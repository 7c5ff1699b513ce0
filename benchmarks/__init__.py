"""
Benchmarks of spicesrv driven by a real SPICE client (spice-gtk, through
L{tests.interop.harness}), compared with QEMU's libspice-server when QEMU is
installed.

Run them all from the checkout with::

    python3 -m benchmarks.run            # every benchmark
    python3 -m benchmarks.run migration  # one of them
    python3 -m benchmarks.run --runs 5   # quicker, rougher

Each benchmark is a module of this package listed in L{BENCHMARKS}.  It
provides:

- C{NAME} and C{DESCRIPTION};
- C{addArguments(parser)}: its own command-line options (an argparse
  argument group), if any;
- C{run(reactor, args)}: a Deferred that runs it and prints its table.

See C{benchmarks/README.md} for what each measures and the latest figures.
"""

#: Module names (in this package) that C{python3 -m benchmarks.run} runs,
#: in order.
BENCHMARKS = ["connect", "migration", "burst", "bulk", "load", "motion", "stills", "x11", "audio"]


class BenchmarkError(Exception):
    """
    A benchmark could not run or its result failed verification; the
    message says why.
    """
