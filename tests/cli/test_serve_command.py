"""``gecko-otel serve``: the status page of a store, from the command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

import gecko_otel
from support.status import run
from support.store_helpers import stored_monitor

ENV = {**os.environ, "PYTHONPATH": str(Path(gecko_otel.__file__).resolve().parents[1])}


def test_serve_a_sqlite_file_with_a_token_from_the_environment(tmp_path: Path) -> None:
    db = tmp_path / "gecko_otel.db"
    with stored_monitor(f"sqlite:///{db}") as stored:
        run(stored.monitor, "pools")
        assert stored.monitor.force_flush()
    child = subprocess.Popen(
        [sys.executable, "-m", "gecko_otel", "serve", str(db), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**ENV, "GECKO_OTEL_SERVE_TOKEN": "s3cret"},
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert "bearer token required" in line, child.stderr.read() if child.stderr else ""
        base = line.split(" at ", 1)[1].split(" ", 1)[0].rstrip(";")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "status", timeout=10)
        refused.value.close()
        assert refused.value.code == 401
        request = urllib.request.Request(
            base + "status", headers={"Authorization": "Bearer s3cret"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            document: Any = json.load(response)
        assert [c["collector_type"] for c in document["collectors"]] == ["pools"]
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=10)
        assert child.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_serve_a_missing_file_is_one_line(cli: Any, tmp_path: Path) -> None:
    result = cli("serve", str(tmp_path / "nothing.db"), "--port", "0")
    assert result.code == 2
    assert "Traceback" not in result.err
    assert result.err.count("\n") == 1
    assert not (tmp_path / "nothing.db").exists()
