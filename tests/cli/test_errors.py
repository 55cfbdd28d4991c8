"""Expected errors: exit 2 and one line saying what to change, never a traceback."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from cli.conftest import Filled
from gecko_otel.store.engine import create_store_engine, migrate


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_missing_database_file(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    for argv in (("status", str(path)), ("history", str(path)), ("db", "current", str(path))):
        result = cli(*argv)
        assert result.code == 2
        assert "no database file at" in _one_line(result.err)
    assert not path.exists()  # reading never creates the file


def test_bad_url(cli: Any) -> None:
    result = cli("status", "--database-url", "mysql://db/x")
    assert result.code == 2
    assert "use SQLite" in _one_line(result.err)


def test_unreachable_database(cli: Any) -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/x?connect_timeout=2"
    result = cli("alerts", "--database-url", url)
    assert result.code == 2
    assert "cannot read the database" in _one_line(result.err)


def test_no_database_given(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GECKO_OTEL_DATABASE_URL", raising=False)
    result = cli("status")
    assert result.code == 2
    assert "GECKO_OTEL_DATABASE_URL" in _one_line(result.err)


def test_database_from_the_environment(
    filled: Filled, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GECKO_OTEL_DATABASE_URL", filled.url)
    assert cli("status", "--json").json()["collectors"]


def test_unknown_ids(filled: Filled, cli: Any) -> None:
    for argv in (
        ("show", "0123456789abcdef"),
        ("ack", "0123456789abcdef"),
        ("resolve", "0123456789abcdef"),
    ):
        result = cli(*argv, "--database-url", filled.url)
        assert result.code == 2
        assert "no " in _one_line(result.err)
        assert "0123456789abcdef" in result.err


def test_usage_errors_exit_2(cli: Any, tmp_path: Path) -> None:
    assert cli("history", str(tmp_path / "x.db"), "--since", "2 fortnights").code == 2
    assert "not a duration" in cli("prune", "x.db", "--older-than", "0s").err
    assert cli("nonsense").code == 2
    assert cli().code == 2
    assert cli("--help").code == 0


def test_unmigrated_database_is_refused_then_upgraded(cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    sqlite3.connect(path).close()
    result = cli("status", str(path))
    assert result.code == 2
    assert "gecko-otel db upgrade" in _one_line(result.err)
    assert cli("db", "current", str(path)).out.strip() == "empty (no gecko-otel schema)"
    assert not _tables(path)  # nothing was migrated by reading

    older = tmp_path / "older.db"
    engine = create_store_engine(f"sqlite:///{older}")
    try:
        migrate(engine, "0001")
    finally:
        engine.dispose()
    result = cli("history", str(older))
    assert result.code == 2
    assert "older" in result.err
    assert "gecko-otel db upgrade" in _one_line(result.err)

    upgraded = cli("db", "upgrade", str(older))
    assert upgraded.code == 0, upgraded.err
    assert cli("status", str(older)).code == 0
    assert cli("db", "current", str(older), "--json").json()["revision"] == "0005"


def test_newer_database_is_refused(cli: Any, filled: Filled) -> None:
    if not filled.url.startswith("sqlite"):
        pytest.skip("one backend is enough for the version check")
    path = filled.url.removeprefix("sqlite:///")
    with closing(sqlite3.connect(path)) as conn, conn:  # closed: no ResourceWarning later
        conn.execute("UPDATE gecko_otel_schema_version SET version_num = '0099'")
    result = cli("status", path)
    assert result.code == 2
    assert "newer gecko-otel" in _one_line(result.err)


def test_tables_need_rich_json_does_not(
    filled: Filled, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    real_import = builtins.__import__

    def no_rich(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "rich" or name.startswith("rich."):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_rich)
    table = cli("status", "--database-url", filled.url)
    assert table.code == 2
    assert "pip install 'gecko-otel[cli]'" in _one_line(table.err)
    assert cli("status", "--database-url", filled.url, "--json").code == 0


def _tables(path: Path) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
