"""Child processes owning Monitors, for the command line's cross-process tests.

Top-level so ``multiprocessing``'s "spawn" context can import them: each child
is a fresh interpreter with its own Monitor on the shared database. Each
appends ``{"event": ...}`` lines to ``out`` (``heard:<notification>`` for each
notification its handler hears, and its own events), and stops when
``out + ".stop"`` appears.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from gecko_otel import Alert, AlertState, Monitor, MonitorConfig
from support.store_procs import CHILD_TIMEOUT, _report_error, build_monitor, one_run


@contextmanager
def _owner(url: str, out: str) -> Iterator[tuple[Monitor, Callable[[str], None]]]:
    """A Monitor on ``url`` that syncs with the store every 0.1 s, and ``record(event)``."""
    path = Path(out)

    def record(event: str) -> None:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"event": event}) + "\n")

    def handler(alert: Alert) -> None:
        if alert.notification is not None:
            record(f"heard:{alert.notification.value}")

    try:
        config = MonitorConfig(
            watchdog_interval=0.1, store_flush_interval=0.05, min_runs_for_rate=10**9
        )
        monitor = build_monitor(url, "owner", config=config, handlers=[handler])
        try:
            yield monitor, record
        finally:
            monitor.shutdown()
    except BaseException:
        _report_error(path)
        raise


def _until_stopped(out: str) -> Iterator[None]:
    """Every 0.05 s until ``out + ".stop"`` appears (or the child's time is up)."""
    deadline = time.monotonic() + CHILD_TIMEOUT
    while not Path(out + ".stop").exists() and time.monotonic() < deadline:
        yield
        time.sleep(0.05)


def alert_owner(url: str, out: str) -> None:
    """Fire a consecutive_failures alert on ``trades``, then report what happens to it.

    Writes the alert id to ``out + ".ready"``; records ``state:<state>`` when this
    Monitor's own copy of the alert changes state.
    """
    with _owner(url, out) as (monitor, record):
        for _ in range(3):
            one_run(monitor, "trades", fail=True)
        assert monitor.force_flush(30_000)
        [alert] = monitor.alerts()
        Path(out + ".ready").write_text(alert.id, encoding="utf-8")
        seen = AlertState.FIRING
        for _ in _until_stopped(out):
            # This process's own copy, not the stored row.
            mine = monitor._pipeline.alerts(level=None, collector_type=None, active_only=False)
            state = next(a.state for a in mine if a.id == alert.id)
            if state is not seen:
                seen = state
                record(f"state:{state.value}")


def silenced_owner(url: str, out: str) -> None:
    """A Monitor that fires ``trades`` when told, for the silence tests.

    Writes ``out + ".ready"`` once started; records ``silences:<n>`` when the
    number of stored silences it applies changes, and ``fired`` once
    ``out + ".fire"`` appeared and three failed runs are processed (with
    ``suppressed:<bool>`` of its alert).
    """
    with _owner(url, out) as (monitor, record):
        Path(out + ".ready").write_text("ready", encoding="utf-8")
        applied = 0
        fired = False
        for _ in _until_stopped(out):
            now = len(monitor._pipeline.engine._stored)
            if now != applied:
                applied = now
                record(f"silences:{now}")
            if not fired and Path(out + ".fire").exists():
                fired = True
                for _ in range(3):
                    one_run(monitor, "trades", fail=True)
                assert monitor.force_flush(30_000)
                [alert] = monitor.alerts()
                record("fired")
                record(f"suppressed:{alert.suppressed}")


def retuned_owner(url: str, out: str) -> None:
    """A Monitor with two failed ``trades`` runs (one short of an alert), for the
    thresholds tests.

    Writes ``out + ".ready"`` once the runs are stored; records ``threshold:<n>``
    when the max_consecutive_failures it applies to ``trades`` changes. Runs
    nothing more.
    """
    with _owner(url, out) as (monitor, record):
        for _ in range(2):
            one_run(monitor, "trades", fail=True)
        assert monitor.force_flush(30_000)
        applied = monitor.thresholds("trades").max_consecutive_failures
        record(f"threshold:{applied}")
        Path(out + ".ready").write_text("ready", encoding="utf-8")
        for _ in _until_stopped(out):
            now = monitor.thresholds("trades").max_consecutive_failures
            if now != applied:
                applied = now
                record(f"threshold:{now}")
