"""One helper the test modules share: run a collector once, the way user code would."""

from __future__ import annotations

import time
from typing import Any

from gecko_otel import track_collection


def run(
    collector: str,
    *,
    fail: bool = False,
    records: int = 0,
    warn: bool = False,
    sleep: float = 0.0,
    monitor: Any = None,
) -> None:
    """One run of ``collector``: optionally records, a warning, a delay, a failure."""
    try:
        with track_collection(collector, monitor=monitor) as r:
            r.add_records(records)
            if warn:
                r.warn("w")
            if sleep:
                time.sleep(sleep)
            if fail:
                raise RuntimeError("boom")
    except RuntimeError:
        pass
