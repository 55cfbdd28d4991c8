"""What ``import gecko_otel`` costs, against importing the OpenTelemetry SDK it builds on.

Each figure is the median over fresh interpreters (``--runs``, 9 by default),
alternating the two, of the wall time of the import statement alone, timed
inside the interpreter. The SDK case imports ``opentelemetry.sdk.trace``,
``opentelemetry.sdk.metrics`` and ``opentelemetry.sdk.resources``. Target:
gecko-otel within 30 ms of the SDK. It also lists what gecko-otel loads on top
(``python -X importtime``), heaviest first.

Run: ``python benchmarks/import_time.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

CASES = {
    "OpenTelemetry SDK": "import opentelemetry.sdk.trace, opentelemetry.sdk.metrics, "
    "opentelemetry.sdk.resources",
    "gecko_otel": "import gecko_otel",
}
TIMED = "import time; t = time.perf_counter(); {0}; print(time.perf_counter() - t)"


def once(statement: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", TIMED.format(statement)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout) * 1000


def modules(statement: str) -> dict[str, int]:
    """Module -> self import time in microseconds, from -X importtime."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        check=True,
    )
    out = {}
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            own, _, name = line.removeprefix("import time:").split("|")
            out[name.strip()] = int(own)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    samples: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.runs):
        for name, statement in CASES.items():
            samples[name].append(once(statement))
    sdk = statistics.median(samples["OpenTelemetry SDK"])
    ours = statistics.median(samples["gecko_otel"])
    print(f"import time (median of {args.runs} fresh interpreters):")
    print(f"  OpenTelemetry SDK (trace, metrics, resources)  {sdk:6.1f} ms")
    print(f"  gecko_otel                                     {ours:6.1f} ms")
    print(f"difference: {ours - sdk:+.1f} ms (target <= +30 ms)")
    extra = modules(CASES["gecko_otel"])
    for name in modules(CASES["OpenTelemetry SDK"]):
        extra.pop(name, None)
    heaviest = sorted(extra.items(), key=lambda item: -item[1])[:8]
    print(
        f"loaded on top of the SDK: {len(extra)} modules; heaviest (self, -X importtime): "
        + ", ".join(f"{name} {us / 1000:.1f} ms" for name, us in heaviest)
    )


if __name__ == "__main__":
    main()
