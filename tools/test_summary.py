#!/usr/bin/env python3
"""Prints 'N passed, N failed, N skipped' from meson test logs.

Counts individual cmocka tests (their "[  PASSED  ] N test(s)." and
"[  FAILED  ] N test(s)" lines) inside each meson test; a meson test that
failed without a cmocka failure line (a crash, a timeout) counts as one
failure, and a skipped meson test (exit 77) as one skip.

usage: test_summary.py BUILD_DIR [LOGBASE ...]

LOGBASE names logs written with `meson test --logbase NAME` (default:
testlog); several are summed, so one line covers the same suites run on
several devices (.ci/run).
"""
import json
import os
import re
import sys

PASSED = re.compile(r"^\[  PASSED  \] (\d+) test", re.M)
FAILED = re.compile(r"^\[  FAILED  \] (\d+) test", re.M)
SKIPPED = re.compile(r"^\[  SKIPPED \] (\d+) test", re.M)


def main():
    bases = sys.argv[2:] or ["testlog"]
    passed = failed = skipped = 0
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
