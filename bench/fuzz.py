"""The longer fuzz run: the REST (schemathesis) and Socket.IO (hypothesis) fuzz
tests with a larger budget than the test command's, against the same real stack
the tests start.  Prints the budget, the time each took and the outcome.

    .venv/bin/python bench/fuzz.py --examples 200
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = {
    "rest (schemathesis, per operation and role)": "tests/integration/test_fuzz_rest.py",
    "socket.io (hypothesis, per event)": "tests/integration/test_fuzz_signaling.py",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=200, help="examples per operation/event")
    args = parser.parse_args()
    env = {**os.environ, "FUZZ_EXAMPLES": str(args.examples)}
    failed = 0
    print(f"fuzz budget: {args.examples} examples")
    for name, path in TESTS.items():
        started = time.monotonic()
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.monotonic() - started
        outcome = "passed" if run.returncode == 0 else f"FAILED (exit {run.returncode})"
        print(f"{name:48s} {elapsed:7.1f} s  {outcome}")
        if run.returncode != 0:
            failed += 1
            print(run.stdout[-6000:])
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
