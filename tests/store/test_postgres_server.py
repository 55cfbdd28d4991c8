"""The PostgreSQL test server itself: real postmasters, started, stopped, killed and cleaned up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from support.integration import NO_POSTGRES, skip_or_fail
from support.postgres import PostgresServer, PostgresServerError, find_binaries

# Real postmasters started, stopped and killed, some per test.
pytestmark = pytest.mark.slow

TESTS_DIR = Path(__file__).parents[1]
REPO = TESTS_DIR.parent

_seen_store_urls: dict[str, str] = {}


def _gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for init to reap it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return not Path("/proc/self").exists()
    return state in {"Z", "X"}


def _wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not _gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def _scalar(url: str, query: str) -> object:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query)).scalar_one()
    finally:
        engine.dispose()


def _write_rows(url: str, *values: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE IF NOT EXISTS probe (value text NOT NULL)"))
            for value in values:
                conn.execute(sa.text("INSERT INTO probe (value) VALUES (:v)"), {"v": value})
    finally:
        engine.dispose()


def _read_rows(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(conn.execute(sa.text("SELECT value FROM probe ORDER BY value")).scalars())
    finally:
        engine.dispose()


# --------------------------------------------------------------------------- discovery


def test_binaries_are_found_without_importing_pgserver() -> None:
    bin_dir = find_binaries()
    if bin_dir is None:
        skip_or_fail(NO_POSTGRES)
    assert (bin_dir / "pg_ctl").is_file()
    assert (bin_dir / "postgres").is_file()
    assert "pgserver" not in sys.modules


# --------------------------------------------------------------------------- shared server


@pytest.mark.integration
def test_shared_server_answers(postgres_server: PostgresServer) -> None:
    assert postgres_server.is_running
    assert postgres_server.url().startswith("postgresql+psycopg://postgres@127.0.0.1:")
    with psycopg.connect(postgres_server.dsn()) as conn:
        row = conn.execute("SELECT version()").fetchone()
    assert row is not None
    assert str(row[0]).startswith("PostgreSQL ")
    assert str(_scalar(postgres_server.url(), "SELECT version()")).startswith("PostgreSQL ")


@pytest.mark.integration
def test_shared_server_is_tuned_for_tests(postgres_server: PostgresServer) -> None:
    with psycopg.connect(postgres_server.dsn()) as conn:
        settings = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in (
                "fsync",
                "synchronous_commit",
                "full_page_writes",
                "max_connections",
                "listen_addresses",
                "unix_socket_directories",
                "server_encoding",
            )
        }
    assert settings == {
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "200",
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "",
        "server_encoding": "UTF8",
    }


@pytest.mark.integration
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="root only")
def test_as_root_postgres_runs_as_another_user(postgres_server: PostgresServer) -> None:
    pid = postgres_server.pid
    assert pid is not None
    assert postgres_server.system_user is not None
    uid = _uid_of(pid)
    assert uid != 0
    assert postgres_server.data_dir.stat().st_uid == uid


@pytest.mark.integration
def test_postgres_url_is_a_fresh_database(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    name = postgres_url.rsplit("/", 1)[1]
    assert name.startswith("t_")
    assert postgres_url == postgres_server.url(name)
    assert _scalar(postgres_url, "SELECT current_database()") == name
    assert _scalar(postgres_url, "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'") == 0
    _write_rows(postgres_url, "a")
    assert _read_rows(postgres_url) == ["a"]


@pytest.mark.integration
def test_databases_are_dropped_even_with_open_connections(
    postgres_server: PostgresServer,
) -> None:
    url = postgres_server.create_database("t_drop_me")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            postgres_server.drop_database("t_drop_me")  # WITH (FORCE) ends our session
    except sa.exc.OperationalError:
        pass  # the forced disconnect can surface when the connection is returned
    finally:
        engine.dispose()
    exists = _scalar(
        postgres_server.url(), "SELECT count(*) FROM pg_database WHERE datname = 't_drop_me'"
    )
    assert exists == 0


# --------------------------------------------------------------------------- store_url


def test_store_url_round_trip(store_url: str, request: pytest.FixtureRequest) -> None:
    param = request.node.callspec.params["store_url"]
    assert param in {"sqlite", "postgresql"}
    if param == "sqlite":
        assert store_url.startswith("sqlite:///")
        assert not Path(store_url.removeprefix("sqlite:///")).exists()
        # lazy: a SQLite run never asks for (and so never starts) the PostgreSQL server
        assert "postgres_server" not in request.fixturenames
    else:
        assert store_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    _write_rows(store_url, "b", "a")
    assert _read_rows(store_url) == ["a", "b"]
    if param == "sqlite":
        assert Path(store_url.removeprefix("sqlite:///")).is_file()
    # each parameter gets its own store, never one another test already used
    assert store_url not in _seen_store_urls.values()
    _seen_store_urls[param] = store_url


def test_store_url_has_sqlite_and_postgresql_params(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "--collect-only",
        "-q",
        "-p",
        "no:cacheprovider",
        "--rootdir",
        str(REPO),
        "-c",
        str(REPO / "pyproject.toml"),
        f"{Path(__file__)}::test_store_url_round_trip",
    )
    result.assert_outcomes()
    collected = {line.strip() for line in result.outlines if "::" in line}
    assert {item.rsplit("[", 1)[1] for item in collected} == {"sqlite]", "postgresql]"}


# --------------------------------------------------------------------------- private server


@pytest.mark.integration
def test_private_server_stop_and_start_keep_url_and_data(
    private_postgres: PostgresServer,
) -> None:
    url = private_postgres.url()
    port = private_postgres.port
    _write_rows(url, "before stop")

    private_postgres.stop()
    assert not private_postgres.is_running
    engine = sa.create_engine(url)
    try:
        with pytest.raises(sa.exc.OperationalError), engine.connect():
            pass
    finally:
        engine.dispose()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(private_postgres.dsn(), connect_timeout=5).close()

    private_postgres.start()
    assert private_postgres.is_running
    assert private_postgres.port == port
    assert private_postgres.url() == url
    assert _read_rows(url) == ["before stop"]

    _write_rows(url, "before restart")
    private_postgres.restart()
    assert private_postgres.url() == url
    assert _read_rows(url) == ["before restart", "before stop"]


@pytest.mark.integration
def test_stop_kills_the_postmaster_when_pg_ctl_fails(
    private_postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid = private_postgres.pid
    assert pid is not None
    real_run = private_postgres._run

    def failing_pg_ctl_stop(args: list[str], *, timeout: float) -> tuple[int, str]:
        if "stop" in args:
            return 1, "pg_ctl: simulated failure"
        return real_run(args, timeout=timeout)

    monkeypatch.setattr(private_postgres, "_run", failing_pg_ctl_stop)
    private_postgres.stop()
    assert _gone(pid)
    assert not private_postgres.is_running

    monkeypatch.undo()
    private_postgres.start()  # crash recovery after the immediate shutdown
    assert _scalar(private_postgres.url(), "SELECT 1") == 1


@pytest.mark.integration
def test_close_leaves_no_postmaster(tmp_path: Path) -> None:
    if find_binaries() is None:
        skip_or_fail(NO_POSTGRES)
    server = PostgresServer(tmp_path / "pg")
    with server:
        pid = server.pid
        assert pid is not None
        assert not _gone(pid)
        data_dir = server.data_dir
        assert (data_dir / "PG_VERSION").is_file()
    assert _gone(pid)
    assert not server.is_running
    assert not data_dir.exists()
    server.close()  # idempotent
    with pytest.raises(PostgresServerError, match="closed"):
        server.start()


@pytest.mark.integration
def test_failed_start_reports_the_server_log(
    private_postgres: PostgresServer, tmp_path: Path
) -> None:
    clash = PostgresServer(tmp_path / "clash", bin_dir=private_postgres.bin_dir)
    clash.port = private_postgres.port  # already taken: the postmaster cannot bind
    try:
        with pytest.raises(PostgresServerError) as caught:
            clash.start()
    finally:
        clash.close()
    message = str(caught.value)
    assert "did not start" in message
    assert "server log" in message
    assert "could not bind" in message or "already in use" in message


@pytest.mark.integration
def test_no_postmaster_outlives_its_python_process(tmp_path: Path) -> None:
    if find_binaries() is None:
        skip_or_fail(NO_POSTGRES)
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path

        sys.path.insert(0, sys.argv[1])
        from support.postgres import PostgresServer

        server = PostgresServer(Path(sys.argv[2]))
        server.start()
        print(server.pid, flush=True)
        raise SystemExit("exiting without close(), as a crashed test session would")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(TESTS_DIR), str(tmp_path / "pg")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    pid = int(result.stdout.strip())
    try:
        assert _wait_gone(pid), f"postmaster {pid} outlived the process that started it"
    finally:
        if not _gone(pid):
            os.kill(pid, signal.SIGQUIT)  # do not leak it into the rest of the session
            _wait_gone(pid)
