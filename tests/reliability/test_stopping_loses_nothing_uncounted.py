"""Guarantee: stopping the process stores what was queued, within one deadline.

- SIGTERM (systemd, ``docker stop``, Kubernetes) used to kill the process with
  the store's queue and the span queue unwritten and uncounted: now the
  Monitor shuts down first (bounded by ``shutdown_timeout``), and the process
  ends exactly as it would have: killed by SIGTERM, or through the
  application's own handler. ``handle_sigterm=False`` turns it off.
- Ctrl-C (SIGINT) and a program that simply ends store their queue too,
  through interpreter exit, within the same deadline; after ``kill -9``
  a restart rebuilds health and alerts from what was stored
  (``tests/store/test_fleet.py``).
- ``shutdown()`` has one overall deadline: an unreachable OTLP endpoint used
  to make it take 50-80 s.

Each case runs a real child process that collects into a SQLite file.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from contextlib import closing
from pathlib import Path

import pytest

RUNS = 3000

CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    import gecko_otel

    mode, db, ready = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode == "app-handler":
        def on_term(signum, frame):
            open(ready + ".app", "w").write("app handler ran")
            sys.exit(3)
        signal.signal(signal.SIGTERM, on_term)
    config = gecko_otel.MonitorConfig(
        store_flush_interval=3600,  # nothing is written before the end...
        store_batch_size=100_000,   # ...unless the shutdown writes it
        handle_sigterm=(mode != "opt-out"),
    )
    if mode == "again":  # a Monitor set up and shut down first: SIGTERM is for the next one
        gecko_otel.setup("sigterm-test", database_url=f"sqlite:///{db}", config=config).shutdown()
    monitor = gecko_otel.setup("sigterm-test", database_url=f"sqlite:///{db}", config=config)
    for i in range(RUNS):
        with gecko_otel.track_collection("pools") as run:
            run.add_records(1)
    open(ready, "w").write("ready")
    while mode != "exit":  # "exit": the program ends by itself
        time.sleep(0.1)
    """
).replace("RUNS", str(RUNS))


def stored_runs(db: Path) -> int:
    if not db.exists():
        return 0
    with closing(sqlite3.connect(db)) as connection:  # the context manager alone only commits
        try:
            return int(connection.execute("SELECT count(*) FROM execution_history").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def run_child(
    tmp_path: Path,
    mode: str,
    env: dict[str, str] | None = None,
    stop: signal.Signals | None = signal.SIGTERM,
) -> tuple[int, Path]:
    db, ready = tmp_path / "runs.db", tmp_path / "ready"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child_env = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", **(env or {})}
    import os

    log = tmp_path / "child.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, str(script), mode, str(db), str(ready)],
            env={**os.environ, **child_env},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert process.poll() is None or stop is None, log.read_text()
            assert time.monotonic() < deadline, "the child never got ready"
            time.sleep(0.02)
        if stop is not None:
            process.send_signal(stop)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return code, db


def test_sigterm_stores_every_queued_run_and_dies_by_the_signal(tmp_path: Path) -> None:
    code, db = run_child(tmp_path, "default")
    assert code == -signal.SIGTERM  # the same end as without gecko-otel
    assert stored_runs(db) == RUNS


def test_ctrl_c_stores_every_queued_run_and_ends_as_python_does(tmp_path: Path) -> None:
    code, db = run_child(tmp_path, "default", stop=signal.SIGINT)
    # An uncaught KeyboardInterrupt ends CPython by SIGINT; interpreter exit flushed first.
    assert code == -signal.SIGINT
    assert stored_runs(db) == RUNS


def test_a_program_that_ends_stores_every_queued_run(tmp_path: Path) -> None:
    code, db = run_child(tmp_path, "exit", stop=None)
    assert code == 0
    assert stored_runs(db) == RUNS


def test_sigterm_shuts_down_the_monitor_set_up_last(tmp_path: Path) -> None:
    code, db = run_child(tmp_path, "again")
    assert code == -signal.SIGTERM
    assert stored_runs(db) == RUNS


def test_sigterm_runs_the_applications_own_handler_after_the_flush(tmp_path: Path) -> None:
    code, db = run_child(tmp_path, "app-handler")
    assert code == 3  # the application's handler decided the exit
    assert (tmp_path / "ready.app").read_text() == "app handler ran"
    assert stored_runs(db) == RUNS


def test_sigterm_handling_can_be_turned_off(tmp_path: Path) -> None:
    code, db = run_child(tmp_path, "opt-out")
    assert code == -signal.SIGTERM
    assert stored_runs(db) == 0  # as documented: the queue dies with the process


@pytest.fixture
def blackhole() -> object:
    """A TCP port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield server
    server.close()


def test_shutdown_keeps_one_deadline_with_an_unreachable_exporter(
    tmp_path: Path, blackhole: socket.socket
) -> None:
    port = blackhole.getsockname()[1]
    script = tmp_path / "exit.py"
    script.write_text(
        textwrap.dedent(
            """
            import time, gecko_otel
            config = gecko_otel.MonitorConfig(shutdown_timeout=2.0)
            monitor = gecko_otel.setup("deadline-test", config=config)
            for _ in range(50):
                with gecko_otel.track_collection("pools"):
                    pass
            started = time.monotonic()
            monitor.shutdown()
            print(f"{time.monotonic() - started:.2f}")
            """
        )
    )
    import os

    env = {
        **os.environ,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "30",
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(script)],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    shutdown_took = float(result.stdout.strip().splitlines()[-1])
    assert shutdown_took < 2.0 + 3.0  # the deadline, give or take a loaded machine
    assert time.monotonic() - started < 30  # and the interpreter's exit does not wait on it


LOCKED = """
import os, signal, sys, time
import gecko_otel

monitor = gecko_otel.setup(
    database_url=f"sqlite:///{sys.argv[1]}", config=gecko_otel.MonitorConfig(shutdown_timeout=2)
)

@gecko_otel.collection("pools")
def collect():
    return 1

collect()
monitor.force_flush()
if sys.argv[2] == "state":
    # SIGTERM lands while this thread holds the collector's state lock, as it can
    # in the middle of a run's bookkeeping; the shutdown needs that lock.
    lock = monitor._pipeline.evaluator._states["pools"].lock
else:
    # ...or inside Thread.start() (an executor growing its pool), holding the lock
    # that starting any thread needs.
    import threading
    lock = threading._active_limbo_lock
with lock:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(60)
"""


@pytest.mark.parametrize("held", ["state", "thread-start"])
def test_sigterm_ends_within_the_deadline_even_while_a_lock_is_held(
    tmp_path: Path, held: str
) -> None:
    import os

    script = tmp_path / "locked.py"
    script.write_text(LOCKED)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "runs.db"), held],
        env={**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == -signal.SIGTERM, done.stderr
    assert time.monotonic() - started < 15  # the 2 s deadline, plus start-up
    assert "the SIGTERM shutdown did not finish within 3.0 s" in done.stderr  # not silent
