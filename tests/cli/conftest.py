"""A store filled by a real Monitor running real collections, and the CLI run in-process."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from gecko_otel import track_collection
from gecko_otel.cli import main
from support.runs import run
from support.store_helpers import stored_monitor


@dataclass
class Filled:
    """What the Monitor stored: its URL, run ids per collector, the alert it fired."""

    url: str
    runs: dict[str, list[str]] = field(default_factory=dict)
    alert_id: str = ""


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    """``cli("status", ...)``: runs ``main`` in-process and returns code, stdout, stderr."""
    capsys.readouterr()

    def call(*argv: str) -> Result:
        code = main(list(argv))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return call


def _one(monitor: Any, collector: str, *, fail: bool = False, records: int = 0) -> str:
    execution_id = ""
    try:
        with track_collection(collector, monitor=monitor, metadata={"network": "solana"}) as r:
            execution_id = r.execution_id
            r.add_records(records)
            if fail:
                raise RuntimeError("upstream 503")
    except RuntimeError:
        pass
    return execution_id


@pytest.fixture
def filled(store_url: str) -> Filled:
    """``pools`` healthy (4 runs with records), ``ohlcv`` partial once, ``trades``
    failing three times in a row (critical, one consecutive_failures alert)."""
    result = Filled(store_url)
    with stored_monitor(store_url) as stored:
        monitor = stored.monitor
        result.runs["pools"] = [_one(monitor, "pools", records=10 * i) for i in range(1, 5)]
        run("ohlcv", warn=True, monitor=monitor)
        result.runs["trades"] = [_one(monitor, "trades", fail=True) for _ in range(3)]
        assert monitor.force_flush()
        [alert] = monitor.alerts()
        result.alert_id = alert.id
    return result
