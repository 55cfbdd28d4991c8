"""``python -m gecko_otel.store``: migrations applied and inspected by hand."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gecko_otel.store.__main__ import main
from gecko_otel.store.schema import HEAD_REVISION


def test_migrate_then_current(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    if store_url.startswith("sqlite"):
        # No file yet: `current` says so and does not create one.
        assert main(["current", store_url]) == 2
        assert "no database file" in capsys.readouterr().err
        assert not Path(store_url.removeprefix("sqlite:///")).exists()
    else:
        assert main(["current", store_url]) == 0
        assert capsys.readouterr().out.strip() == "empty (no gecko-otel schema)"
    assert main(["migrate", store_url]) == 0
    assert f"revision {HEAD_REVISION}" in capsys.readouterr().out
    assert main(["current", store_url]) == 0
    assert capsys.readouterr().out.strip() == HEAD_REVISION


def test_url_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GECKO_OTEL_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert main(["migrate"]) == 0
    assert (tmp_path / "env.db").exists()
    assert HEAD_REVISION in capsys.readouterr().out


def test_bad_url_says_what_to_use(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "mysql://db/x"]) == 2
    assert "use SQLite" in capsys.readouterr().err


def test_unreachable_database_fails_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/x?connect_timeout=2"
    assert main(["migrate", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gecko-otel: ")
    assert len(err.strip().splitlines()) == 1


def test_runs_as_a_module(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'module.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "gecko_otel.store", "migrate", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert HEAD_REVISION in done.stdout


def test_store_current_does_not_create_a_missing_sqlite_file(tmp_path: Path) -> None:
    """``python -m gecko_otel.store current`` only inspects: a mistyped path must not
    leave a new (empty, WAL-mode) database file behind, nor claim it is an empty store."""
    path = tmp_path / "typo.db"
    done = subprocess.run(
        [sys.executable, "-m", "gecko_otel.store", "current", f"sqlite:///{path}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert not path.exists(), (done.returncode, done.stdout, done.stderr)
    assert done.returncode != 0
