"""A child process owning an alert, for the command line's ack/resolve tests.

Top-level so ``multiprocessing``'s "spawn" context can import it: the child is
a fresh interpreter with its own Monitor on the shared database.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from gecko_otel import Alert, AlertState, MonitorConfig
from support.store_procs import CHILD_TIMEOUT, _report_error, build_monitor, one_run


def alert_owner(url: str, out: str) -> None:
    """Fire a consecutive_failures alert on ``trades``, then report what happens to it.

    Writes the alert id to ``out + ".ready"``; appends ``{"event": ...}`` lines to
    ``out``: ``state:<state>`` when this Monitor's own copy of the alert changes
    state, and ``heard:<notification>`` for each notification its handler hears.
    Stops when ``out + ".stop"`` appears.
    """
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
            for _ in range(3):
                one_run(monitor, "trades", fail=True)
            assert monitor.force_flush(30_000)
            [alert] = monitor.alerts()
            Path(out + ".ready").write_text(alert.id, encoding="utf-8")
            seen = AlertState.FIRING
            deadline = time.monotonic() + CHILD_TIMEOUT
            while not Path(out + ".stop").exists() and time.monotonic() < deadline:
                # This process's own copy, not the stored row.
                mine = monitor._pipeline.alerts(level=None, collector_type=None, active_only=False)
                state = next(a.state for a in mine if a.id == alert.id)
                if state is not seen:
                    seen = state
                    record(f"state:{state.value}")
                time.sleep(0.05)
        finally:
            monitor.shutdown()
    except BaseException:
        _report_error(path)
        raise


def silenced_owner(url: str, out: str) -> None:
    """A Monitor that fires ``trades`` when told, for the silence tests.

    Writes ``out + ".ready"`` once started; appends ``{"event": ...}`` lines to
    ``out``: ``silences:<n>`` when the number of stored silences it applies
    changes, ``fired`` once ``out + ".fire"`` appeared and three failed runs
    are processed (with ``suppressed:<bool>`` of its alert), and
    ``heard:<notification>`` for each notification its handler hears.
    Stops when ``out + ".stop"`` appears.
    """
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
            Path(out + ".ready").write_text("ready", encoding="utf-8")
            applied = 0
            fired = False
            deadline = time.monotonic() + CHILD_TIMEOUT
            while not Path(out + ".stop").exists() and time.monotonic() < deadline:
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
                time.sleep(0.05)
        finally:
            monitor.shutdown()
    except BaseException:
        _report_error(path)
        raise


def retuned_owner(url: str, out: str) -> None:
    """A Monitor with two failed ``trades`` runs (one short of an alert), for the
    thresholds tests.

    Writes ``out + ".ready"`` once the runs are stored; appends ``{"event": ...}``
    lines to ``out``: ``threshold:<n>`` when the max_consecutive_failures it
    applies to ``trades`` changes, and ``heard:<notification>`` for each
    notification its handler hears. Runs nothing more; stops when
    ``out + ".stop"`` appears.
    """
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
            for _ in range(2):
                one_run(monitor, "trades", fail=True)
            assert monitor.force_flush(30_000)
            applied = monitor.thresholds("trades").max_consecutive_failures
            record(f"threshold:{applied}")
            Path(out + ".ready").write_text("ready", encoding="utf-8")
            deadline = time.monotonic() + CHILD_TIMEOUT
            while not Path(out + ".stop").exists() and time.monotonic() < deadline:
                now = monitor.thresholds("trades").max_consecutive_failures
                if now != applied:
                    applied = now
                    record(f"threshold:{now}")
                time.sleep(0.05)
        finally:
            monitor.shutdown()
    except BaseException:
        _report_error(path)
        raise
