#!/usr/bin/env python3
"""Prints 'N passed, N failed, N skipped' from meson test logs.

Counts individual cmocka tests (their "[  PASSED  ] N test(s)." and
"[  FAILED  ] N test(s)" lines) and pytest tests (its closing "N passed,
N failed, ... in T s" line) inside each meson test; a meson test that
failed without a cmocka failure line (a crash, a timeout) counts as one
failure, and a skipped meson test (exit 77) as one skip.

usage: test_summary.py BUILD_DIR [LOGBASE ...] [--pytest LOG ...]

LOGBASE names logs written with `meson test --logbase NAME` (default:
testlog, unless only --pytest logs are given); several are summed, so one
line covers the same suites run on several devices (.ci/run). Each --pytest
LOG adds the counts of a pytest run's output saved in LOG (.ci/run's venv
check of the Python package); a missing log, or one without pytest's
closing line, counts as one failure.
"""
import json
import os
import re
import sys

PASSED = re.compile(r"^\[  PASSED  \] (\d+) test", re.M)
FAILED = re.compile(r"^\[  FAILED  \] (\d+) test", re.M)
SKIPPED = re.compile(r"^\[  SKIPPED \] (\d+) test", re.M)
PYTEST = re.compile(r"^=*\s*(\d+ [a-z]+(?:, \d+ [a-z]+)*) in [\d.]+s", re.M)


def pytest_counts(out):
    """(passed, failed, skipped) from pytest's closing lines in @out, or None."""
    lines = PYTEST.findall(out)
    if not lines:
        return None
    total = {"passed": 0, "failed": 0, "skipped": 0}
    for line in lines:
        for count, word in (part.split(" ") for part in line.split(", ")):
            key = {"error": "failed", "errors": "failed"}.get(word, word)
            if key in total:
                total[key] += int(count)
    return total["passed"], total["failed"], total["skipped"]


def main():
    args = sys.argv[2:]
    pytest_logs = [args[i + 1] for i, a in enumerate(args) if a == "--pytest"]
    bases = [a for i, a in enumerate(args) if a != "--pytest" and
             (i == 0 or args[i - 1] != "--pytest")] or ([] if pytest_logs else ["testlog"])
    passed = failed = skipped = 0
    for log in pytest_logs:
        try:
            with open(log, errors="replace") as f:
                counts = pytest_counts(f.read())
        except OSError:
            counts = None
        p, fl, sk = counts or (0, 1, 0)  # no log or no closing line: the run broke
        passed, failed, skipped = passed + p, failed + fl, skipped + sk
    lines = []
    for base in bases:
        with open(os.path.join(sys.argv[1], "meson-logs", base + ".json")) as f:
            lines.extend(f)
    for line in lines:
        if not line.strip():
            continue
        t = json.loads(line)
        out = (t.get("stdout") or "") + "\n" + (t.get("stderr") or "")
        p = sum(int(n) for n in PASSED.findall(out))
        fl = sum(int(n) for n in FAILED.findall(out))
        sk = sum(int(n) for n in SKIPPED.findall(out))
        py = pytest_counts(out)
        if py:
            p, fl, sk = p + py[0], fl + py[1], sk + py[2]
        result = t.get("result", "")
        if result == "SKIP":
            skipped += max(1, sk)
            continue
        passed += p
        failed += fl
        skipped += sk
        if result != "OK" and fl == 0:
            failed += 1
        elif result == "OK" and p == 0 and fl == 0:
            passed += 1  # a non-cmocka test
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
