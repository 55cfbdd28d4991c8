"""Wall time of ``gecko-otel`` commands on a large SQLite store, as an operator runs them.

    python benchmarks/soak.py --runs 1000000 --collectors 10 --keep big.db
    python benchmarks/cli.py big.db [--repeat 5]

Each command runs as a fresh ``python -m gecko_otel`` process (imports
included); prints the median and the slowest of ``--repeat`` runs. The
targets on a million runs: ``status`` under a second, ``report`` of
7 days under ten. Nothing is
asserted: the figures go in the report.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
COMMANDS = (
    ("--version",),
    ("status", "{db}"),
    ("status", "{db}", "--json"),
    ("history", "{db}", "--limit", "50"),
    ("alerts", "{db}", "--all"),
    ("stats", "{db}", "--window", "1h"),
    ("stats", "{db}"),
    ("prune", "{db}", "--older-than", "3650d", "--dry-run"),
    ("thresholds", "{db}", "--json"),
    ("report", "{db}", "--window", "7d", "-o", "{out}"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database", help="a SQLite store (see benchmarks/soak.py --keep)")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = str(Path(tempfile.mkdtemp()) / "report.html")
    print(f"{'command':<52} {'median':>8} {'max':>8}")
    for command in COMMANDS:
        argv = [part.format(db=args.database, out=out) for part in command]
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "gecko_otel", *argv],
                capture_output=True,
                text=True,
                check=False,
                env=env,
            )
            times.append(time.perf_counter() - start)
            if done.returncode not in (0, 1):
                sys.exit(f"{argv}: exit {done.returncode}: {done.stderr.strip()}")
        label = "gecko-otel " + " ".join(command).replace("{db}", "DB").replace("{out}", "FILE")
        print(f"{label:<52} {statistics.median(times):>7.3f}s {max(times):>7.3f}s")

    Path(out).unlink(missing_ok=True)
    Path(out).parent.rmdir()


if __name__ == "__main__":
    main()
