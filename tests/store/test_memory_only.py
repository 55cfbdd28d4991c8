"""A Monitor without a database never imports SQLAlchemy (collections, queries, exports)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SCRIPT = textwrap.dedent(
    """
    import sys, tempfile, os
    import gecko_otel
    from gecko_otel.testing import capture_runs

    with capture_runs() as captured:
        m = captured.monitor

        @gecko_otel.collection("pools", metadata={"network": "solana"})
        def collect() -> int:
            gecko_otel.current_run().add_records(3)
            return 3

        for _ in range(3):
            collect()
        try:
            with gecko_otel.track_collection("trades"):
                raise RuntimeError("down")
        except RuntimeError:
            pass
        m.history(); m.statistics(); m.statistics("pools", window=60)
        m.health(); m.system_health(); m.alerts(); m.collector_types()
        m.export(); m.cleanup(3600)
        with tempfile.TemporaryDirectory() as d:
            assert m.export_history(os.path.join(d, "runs.csv"), format="csv") == 4
        import gecko_otel.store  # the package: its SQL names load lazily
        assert gecko_otel.store.MemoryStore is not None
    loaded = sorted(name for name in sys.modules if name.split(".")[0] == "sqlalchemy")
    print(loaded)
    """
)


def test_no_sqlalchemy_import_without_a_database(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_the_check_sees_sqlalchemy_when_a_sql_name_is_used(tmp_path: Path) -> None:
    """The check above can fail: asking gecko_otel.store for a SQL name loads SQLAlchemy."""
    script = SCRIPT.replace(
        "assert gecko_otel.store.MemoryStore is not None",
        "assert gecko_otel.store.Store is not None",
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "'sqlalchemy'" in result.stdout
