"""``gecko-otel report``: the report of a store, written where asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cli.conftest import Filled


def test_report_writes_one_file_with_a_chart_per_collector(
    filled: Filled, cli: Any, tmp_path: Path
) -> None:
    target = tmp_path / "week.html"
    result = cli("report", filled.url, "-o", str(target), "--window", "2d")
    assert result.code == 0, result.err
    assert str(target) in result.out
    html = target.read_text(encoding="utf-8")
    for collector in ("pools", "ohlcv", "trades"):
        assert collector in html
    assert html.count("Plotly.newPlot") + html.count("geckoPlot(") >= 3


def test_report_into_a_missing_directory_is_one_line(
    filled: Filled, cli: Any, tmp_path: Path
) -> None:
    result = cli("report", filled.url, "-o", str(tmp_path / "no" / "such" / "dir.html"))
    assert result.code == 2
    assert "does not exist" in result.err
    assert "Traceback" not in result.err
