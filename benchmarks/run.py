"""
Run the benchmarks and print their tables.

    python3 -m benchmarks.run [NAME ...] [--runs N] [--warmup N] [options]

With no NAME every module listed in L{BENCHMARKS} runs, in order.
Run it from the checkout (the directory holding C{spicesrv/} and
C{tests/}) with the Python that has spicesrv's dependencies.
"""

import argparse
import copy
import importlib
import os
import platform
import shlex
import signal
import sys
import time
import traceback

from twisted.internet import defer, task
from twisted.internet.error import ReactorNotRunning

import benchmarks
from benchmarks import BenchmarkError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Every benchmark, in the order they run by default.
BENCHMARKS = list(benchmarks.BENCHMARKS)

#: Measured runs per variant when --runs is not given and the module has no
#: DEFAULT_RUNS of its own.
DEFAULT_RUNS = 15


def loadModules(names):
    return [importlib.import_module("benchmarks." + name) for name in names]


def buildParser(modules):
    parser = argparse.ArgumentParser(
        prog="python3 -m benchmarks.run",
        description="Run spicesrv's benchmarks (with a real SPICE client) "
        "and print their tables.")
    parser.add_argument(
        "names", nargs="*", metavar="NAME",
        help="benchmarks to run (default: all: %s)"
        % (", ".join(BENCHMARKS),))
    parser.add_argument(
        "--runs", type=int, default=None, metavar="N",
        help="measured runs per variant (default: %s); each run is a fresh "
        "client process" % (", ".join(
            "%d for %s" % (getattr(m, "DEFAULT_RUNS", DEFAULT_RUNS), m.NAME)
            for m in modules),))
    parser.add_argument(
        "--seconds", type=float, default=None, metavar="S",
        help="measured seconds per variant, for the benchmarks that watch for a "
        "while (default: %s)" % (", ".join(
            "%g for %s" % (m.DEFAULT_SECONDS, m.NAME)
            for m in modules if hasattr(m, "DEFAULT_SECONDS")),))
    parser.add_argument(
        "--warmup", type=int, default=1, metavar="N",
        help="runs per variant done first and not counted (default: 1)")
    for module in modules:
        add = getattr(module, "addArguments", None)
        if add is not None:
            add(parser.add_argument_group(
                "%s benchmark" % (module.NAME,), module.DESCRIPTION))
    return parser


def commandLine(argv):
    """The command that reproduces this invocation, to print with figures."""
    return "cd %s && python3 -m benchmarks.run%s" % (
        shlex.quote(REPO), "".join(" " + shlex.quote(a) for a in argv))


def describeMachine():
    cpus = os.cpu_count()
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %s CPU%s%s, Python %s" % (
        platform.platform(terse=True), cpus, "" if cpus == 1 else "s",
        " (%s)" % (model,) if model else "", platform.python_version())


def catchInterrupt(reactor, interrupted):
    """
    On Ctrl-C (SIGINT) or SIGTERM, note it in C{interrupted} and stop the
    reactor, whose shutdown stops every process the benchmarks started.
    The client processes get the same SIGINT from the terminal: noting it
    first keeps their deaths from being reported as failures.  A second
    signal raises KeyboardInterrupt as usual.

    Call it once the reactor runs: it replaces the handlers C{reactor.run}
    installs.
    """
    def stopReactor():
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass

    def onSignal(signum, frame):
        if interrupted:
            raise KeyboardInterrupt()
        interrupted.append(signum)
        reactor.callFromThread(stopReactor)
    signal.signal(signal.SIGINT, onSignal)
    signal.signal(signal.SIGTERM, onSignal)


@defer.inlineCallbacks
def _main(reactor, modules, args, argv, interrupted):
    print("spicesrv benchmarks, %s" % (time.strftime("%Y-%m-%d %H:%M:%S %Z"),))
    print("machine: %s" % (describeMachine(),))
    print("command: %s" % (commandLine(argv),))
    print()
    sys.stdout.flush()
    # Once the reactor runs, its signal handlers are in place: replace them.
    yield task.deferLater(reactor, 0, lambda: None)
    catchInterrupt(reactor, interrupted)
    failed = []
    for module in modules:
        started = time.monotonic()
        try:
            yield module.run(reactor, moduleArgs(module, args))
        except Exception as e:
            if interrupted:
                print("\ninterrupted: every server and client is stopped",
                      file=sys.stderr)
                raise SystemExit(130)
            failed.append(module.NAME)
            if isinstance(e, BenchmarkError):
                print("\n%s benchmark FAILED: %s" % (module.NAME, e),
                      file=sys.stderr)
            else:
                print("\n%s benchmark FAILED:" % (module.NAME,),
                      file=sys.stderr)
                traceback.print_exc()
        print("(%s benchmark: %.0f s)" % (module.NAME,
                                          time.monotonic() - started))
        print()
    if failed:
        raise SystemExit("failed: %s" % (", ".join(failed),))
    print("figures produced by: %s" % (commandLine(argv),))


def moduleArgs(module, args):
    """The options for one module: --runs defaults to the module's own."""
    if args.runs is not None:
        return args
    args = copy.copy(args)
    args.runs = getattr(module, "DEFAULT_RUNS", DEFAULT_RUNS)
    return args


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    # Parse once loosely to know which modules contribute options.
    names = [a for a in argv if not a.startswith("-")
             and a in BENCHMARKS] or list(BENCHMARKS)
    modules = loadModules(names)
    args = buildParser(modules).parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit("unknown benchmark %s; choose from %s" % (
            ", ".join(unknown), ", ".join(BENCHMARKS)))
    if args.runs is not None and args.runs < 1:
        raise SystemExit("--runs must be at least 1")
    if args.warmup < 0:
        raise SystemExit("--warmup cannot be negative")
    interrupted = []
    try:
        task.react(_main, [modules, args, argv, interrupted])
    except SystemExit as e:
        if interrupted and not e.code:
            print("\ninterrupted: every server and client is stopped",
                  file=sys.stderr)
            raise SystemExit(130)
        raise


if __name__ == "__main__":
    main()
