"""The command line as operators run it: another process, another Monitor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = None  # type: ignore[assignment]

import pytest

from cli.conftest import Filled
from support.cli_procs import alert_owner, retuned_owner, silenced_owner
from support.store_procs import join_all, spawn, wait_for_file

SRC = Path(__file__).resolve().parents[2] / "src"


def _events(out: Path) -> list[str]:
    if not out.exists():
        return []
    return [json.loads(line)["event"] for line in out.read_text().splitlines()]


def _wait_for_event(out: Path, event: str, process: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while event not in _events(out):
        assert process.is_alive(), f"owner exited; events {_events(out)}"
        assert time.monotonic() < deadline, f"no {event!r} within {timeout} s: {_events(out)}"
        time.sleep(0.05)


@pytest.mark.slow
def test_ack_and_resolve_reach_the_monitor_in_another_process(
    store_url: str, cli: Any, tmp_path: Path
) -> None:
    out = tmp_path / "owner.jsonl"
    process = spawn(alert_owner, store_url, str(out))
    try:
        wait_for_file(Path(f"{out}.ready"), process, out, 60)
        alert_id = Path(f"{out}.ready").read_text()
        assert _events(out) == ["heard:firing"]

        assert cli("ack", "--database-url", store_url, alert_id).code == 0
        _wait_for_event(out, "state:acknowledged", process)

        assert cli("resolve", "--database-url", store_url, alert_id[-10:]).code == 0
        _wait_for_event(out, "heard:resolved", process)
        _wait_for_event(out, "state:resolved", process)
        # Acknowledged first, then resolved; the handler heard the resolution once.
        events = _events(out)
        assert events.index("state:acknowledged") < events.index("state:resolved")
        assert events.count("heard:resolved") == 1
    finally:
        Path(f"{out}.stop").touch()
        join_all([(process, out)])


@pytest.mark.slow
def test_a_silence_from_the_command_line_reaches_the_monitor_in_another_process(
    store_url: str, cli: Any, tmp_path: Path
) -> None:
    out = tmp_path / "owner.jsonl"
    process = spawn(silenced_owner, store_url, str(out))
    try:
        wait_for_file(Path(f"{out}.ready"), process, out, 60)
        made = cli("silence", "--database-url", store_url, "trades", "--for", "1h")
        assert made.code == 0, made.err
        _wait_for_event(out, "silences:1", process)

        Path(f"{out}.fire").touch()
        _wait_for_event(out, "fired", process)
        time.sleep(0.5)  # five syncs: none may let the firing through
        assert _events(out) == ["silences:1", "fired", "suppressed:True"]

        assert cli("unsilence", "--database-url", store_url, "--collector", "trades").code == 0
        _wait_for_event(out, "heard:firing", process)
        _wait_for_event(out, "silences:0", process)
        assert _events(out).count("heard:firing") == 1
    finally:
        Path(f"{out}.stop").touch()
        join_all([(process, out)])


@pytest.mark.slow
def test_thresholds_from_the_command_line_reach_the_monitor_in_another_process(
    store_url: str, cli: Any, tmp_path: Path
) -> None:
    out = tmp_path / "owner.jsonl"
    process = spawn(retuned_owner, store_url, str(out))
    try:
        wait_for_file(Path(f"{out}.ready"), process, out, 60)
        assert _events(out) == ["threshold:3"]  # two failures: no alert yet
        lowered = cli(
            "thresholds",
            "--database-url",
            store_url,
            "trades",
            "--set",
            "max_consecutive_failures=2",
        )
        assert lowered.code == 0, lowered.err
        # Applied on its next sync and evaluated at once: no new run needed.
        _wait_for_event(out, "heard:firing", process)
        _wait_for_event(out, "threshold:2", process)
        assert sorted(_events(out)) == ["heard:firing", "threshold:2", "threshold:3"]

        assert cli("thresholds", "--database-url", store_url, "trades", "--reset").code == 0
        _wait_for_event(out, "heard:resolved", process)
        deadline = time.monotonic() + 30
        while _events(out).count("threshold:3") < 2:
            assert time.monotonic() < deadline, _events(out)
            time.sleep(0.05)
        assert _events(out).count("heard:firing") == 1
    finally:
        Path(f"{out}.stop").touch()
        join_all([(process, out)])


def _python_m(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "PYTHONPATH": str(SRC), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gecko_otel", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=environ,
    )


def test_python_m_gecko_otel(filled: Filled, tmp_path: Path) -> None:
    if not filled.url.startswith("sqlite"):
        pytest.skip("one backend is enough for the entry point")
    path = filled.url.removeprefix("sqlite:///")
    done = _python_m("status", path, "--check")
    assert done.returncode == 1, done.stderr
    assert "trades" in done.stdout
    assert "critical" in done.stdout
    missing = _python_m("status", str(tmp_path / "nope.db"))
    assert missing.returncode == 2
    assert missing.stderr.count("\n") == 1
    assert "Traceback" not in missing.stderr
    store_module = subprocess.run(
        [sys.executable, "-m", "gecko_otel.store", "current", filled.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(SRC)},
    )
    assert store_module.stdout.strip() == "0005", store_module.stderr


@pytest.mark.skipif(tomllib is None, reason="tomllib is Python 3.11+")
def test_console_script_is_declared() -> None:
    with open(SRC.parent / "pyproject.toml", "rb") as handle:
        project = tomllib.load(handle)["project"]
    assert project["scripts"]["gecko-otel"] == "gecko_otel.cli:main"
    assert any(dep.startswith("rich") for dep in project["optional-dependencies"]["cli"])
