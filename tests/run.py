"""
Run the test suite with trial and end with one summary line,
``tests: N passed, N failed, N skipped``.

    python -m tests.run [trial test names]     (default: the whole suite)
"""

import re
import subprocess
import sys


def summarize(output):
    counts = {}
    for line in reversed(output.splitlines()):
        match = re.match(r"^(PASSED|FAILED) \((.*)\)\s*$", line)
        if match:
            for part in match.group(2).split(","):
                name, _, value = part.strip().partition("=")
                counts[name] = int(value)
            break
    passed = counts.get("successes", 0)
    failed = (counts.get("failures", 0) + counts.get("errors", 0)
              + counts.get("unexpectedSuccesses", 0))
    return passed, failed, counts.get("skips", 0)


def main(argv):
    names = argv or ["tests"]
    process = subprocess.Popen([sys.executable, "-m", "twisted.trial", *names],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        output.append(line)
    code = process.wait()
    passed, failed, skipped = summarize("".join(output))
    if code != 0 and failed == 0:
        failed = 1
    print("tests: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 0 if code == 0 and failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
