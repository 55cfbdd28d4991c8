"""Shared fixtures. Every test fails if gecko-otel reported an internal error."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from sqlalchemy import Engine

from gecko_otel import _guard, _state
from gecko_otel.store.engine import create_store_engine
from gecko_otel.testing import CapturedRuns, FakeClock, capture_runs, isolated_state
from support.integration import NO_POSTGRES, skip_or_fail
from support.postgres import PostgresServer, find_binaries

pytest_plugins = ["pytester"]


def pytest_configure(config: pytest.Config) -> None:
    # A shell starts background jobs with SIGINT ignored, and children inherit
    # that: the tests that stop a child with Ctrl-C would wait for it forever.
    # A handler (unlike SIG_IGN) is reset to the default in every child.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


class InternalErrors:
    def __init__(self) -> None:
        self.seen: list[tuple[str, BaseException]] = []
        self.expected = False

    def __call__(self, where: str, exc: BaseException) -> None:
        self.seen.append((where, exc))


@pytest.fixture(autouse=True)
def _fail_on_internal_errors() -> Iterator[InternalErrors]:
    """Our hooks swallow their own errors in production; here each one fails the test,
    and the guard re-raises it where it happened (strict mode)."""
    errors = InternalErrors()
    _guard.add_internal_error_listener(errors)
    strict = _guard.set_strict(True)
    try:
        yield errors
    finally:
        _guard.set_strict(strict)
        _guard.remove_internal_error_listener(errors)
    if errors.seen and not errors.expected:
        where, exc = errors.seen[0]
        pytest.fail(f"gecko-otel internal error in {where}: {exc!r}", pytrace=False)


@pytest.fixture
def internal_errors(_fail_on_internal_errors: InternalErrors) -> list[tuple[str, BaseException]]:
    """For tests that provoke internal errors on purpose: the errors, not a failure
    (and the guard swallows them, as in production)."""
    _fail_on_internal_errors.expected = True
    _guard.set_strict(False)
    return _fail_on_internal_errors.seen


@pytest.fixture(autouse=True)
def _no_global_monitor_leaks() -> Iterator[None]:
    before = _state.monitor()
    with isolated_state():  # expectations declared by decorators in a test are forgotten
        yield
        leaked = _state.monitor()
    assert leaked is before, "a test left a global Monitor installed"


@pytest.fixture
def captured() -> Iterator[CapturedRuns]:
    with capture_runs() as runs:
        yield runs


@pytest.fixture
def clock() -> FakeClock:
    """A clock that moves only when the test advances it; starts at the real time."""
    return FakeClock()


# --------------------------------------------------------------------------- PostgreSQL


def _postgres_binaries() -> Path:
    bin_dir = find_binaries()
    if bin_dir is None:
        skip_or_fail(NO_POSTGRES)
        raise AssertionError("unreachable")  # skip_or_fail raises
    return bin_dir


def _fresh_database(server: PostgresServer) -> Iterator[str]:
    """A new, empty database on ``server`` for one test; dropped (WITH (FORCE)) afterwards."""
    name = f"t_{uuid4().hex[:12]}"
    url = server.create_database(name)
    try:
        yield url
    finally:
        server.drop_database(name)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole session, started on first use.

    Tests must not stop it; those that do want ``private_postgres``.
    """
    bin_dir = _postgres_binaries()
    with PostgresServer(tmp_path_factory.mktemp("postgres"), bin_dir=bin_dir) as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A SQLAlchemy URL of a fresh database on the shared server, dropped after the test."""
    yield from _fresh_database(postgres_server)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)],
)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLAlchemy URL of an empty store: a SQLite file, then a fresh PostgreSQL database.

    The PostgreSQL server is requested lazily, so ``-k sqlite`` runs never start it.
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'gecko_otel.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    yield from _fresh_database(server)


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    """A started PostgreSQL server of the test's own, free to stop and restart; closed after."""
    bin_dir = _postgres_binaries()
    with PostgresServer(tmp_path / "postgres", bin_dir=bin_dir) as server:
        yield server


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """Our own engine on the test's database, to read (and plant) rows directly."""
    own = create_store_engine(store_url)
    try:
        yield own
    finally:
        own.dispose()
