"""
The driver shared by the benchmarks that measure a real client over
loopback and over links limited by tbf (C{motion}, C{stills}): each
variant runs in a worker process of its own (C{python3 -m benchmarks.NAME
--worker ...}, which prints one C{RESULT} line of JSON), inside a network
namespace whose loopback carries the link's rate.

This kernel has no netem, but tbf works on C{lo} inside a namespace; the
burst must exceed the MTU.
"""

import json
import os
import shutil
import subprocess
import sys

#: The links, by name: tbf's rate, or None for plain loopback.
LINKS = {"loopback": None, "50mbit": "50mbit", "10mbit": "10mbit"}
#: tbf's other parameters.
TBF = "burst 32kb latency 300ms"

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Namespace:
    """
    A network namespace whose loopback is limited to C{rate} by tbf.
    """

    def __init__(self, rate):
        self.rate = rate
        self.name = "spicesrv-motion-%d-%s" % (os.getpid(), rate)

    def commands(self):
        return [
            ["ip", "netns", "add", self.name],
            ["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "mtu", "1500", "up"],
            ["ip", "netns", "exec", self.name, "tc", "qdisc", "add", "dev", "lo", "root",
             "tbf", "rate", self.rate] + TBF.split(),
        ]

    def __enter__(self):
        for argv in self.commands():
            subprocess.run(argv, check=True, capture_output=True, timeout=30)
        return self

    def __exit__(self, *exc):
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)

    def prefix(self):
        return ["ip", "netns", "exec", self.name]


def choices(*options):
    """
    Each of C{options} is C{(what, text, known)}, C{text} a comma-separated
    option value: return the lists of values, one per option; raise
    L{ValueError} naming the first value not in C{known}.
    """
    lists = []
    for name, text, known in options:
        values = [v for v in text.split(",") if v]
        for v in values:
            if v not in known:
                raise ValueError("unknown %s %r; use %s" % (name, v, ", ".join(known)))
        lists.append(values)
    return lists


def usableLinks(links):
    """
    C{links} without the shaped ones when this process cannot make
    namespaces (it needs root and iproute2), saying so.
    """
    shaped = [l for l in links if LINKS[l]]
    if not shaped:
        return links
    missing = [t for t in ("ip", "tc") if shutil.which(t) is None]
    if missing or os.geteuid() != 0:
        print("shaped links need root and iproute2 (%s): skipped %s" % (
            "missing " + ", ".join(missing) if missing else "not root", ", ".join(shaped)))
        return [l for l in links if not LINKS[l]]
    print("shaped links: ip netns add NS; ip netns exec NS ip link set lo mtu 1500 up; "
          "ip netns exec NS tc qdisc add dev lo root tbf rate RATE %s" % (TBF,))
    return links


def runWorker(module, prefix, options, timeout, what):
    """
    Run C{python3 -m benchmarks.MODULE --worker OPTIONS} under C{prefix}
    (a namespace's C{ip netns exec}) and return its C{RESULT}.
    """
    argv = prefix + [sys.executable, "-m", "benchmarks." + module, "--worker"] + options
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError("worker %s failed (exit %s): %s" % (
        what, proc.returncode, (proc.stderr or proc.stdout)[-3000:]))


def runVariants(links, variants, runs, runOne, formatRow):
    """
    On each of C{links} (in its namespace when shaped), C{runs} runs of
    each of C{variants} (pairs of names): C{runOne(prefix, first, second)}
    gives a run's result, printed with C{formatRow(link, first, second,
    result)} as it comes; a failed run is printed and left out.  Returns
    C{[(link, first, second, result)]}.
    """
    results = []
    for link in links:
        namespace = Namespace(LINKS[link]) if LINKS[link] else None
        if namespace is not None:
            namespace.__enter__()
        try:
            prefix = namespace.prefix() if namespace is not None else []
            for first, second in variants:
                for _ in range(runs):
                    try:
                        r = runOne(prefix, first, second)
                    except Exception as e:
                        print("%-8s %-7s %-8s | FAILED: %s" % (link, first, second, e))
                        sys.stdout.flush()
                        continue
                    results.append((link, first, second, r))
                    print(formatRow(link, first, second, r))
                    sys.stdout.flush()
        finally:
            if namespace is not None:
                namespace.__exit__(None, None, None)
    return results
