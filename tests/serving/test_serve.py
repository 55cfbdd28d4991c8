"""``serve()``: a store's status server in its own process, stopped by SIGTERM or Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import gecko_otel
from support.status import run
from support.store_helpers import stored_monitor

#: The children import this gecko_otel, wherever the tests run from.
ENV = {**os.environ, "PYTHONPATH": str(Path(gecko_otel.__file__).resolve().parents[1])}

SERVE = textwrap.dedent(
    """
    import sys
    from gecko_otel.serving import serve
    serve(sys.argv[1], port=0, ready=lambda server: print(server.url, flush=True))
    print("stopped", flush=True)
    """
)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_serve_answers_until_stopped_then_returns(tmp_path: Path, stop: signal.Signals) -> None:
    url = f"sqlite:///{tmp_path / 'gecko_otel.db'}"
    with stored_monitor(url) as stored:
        run(stored.monitor, "pools")
        assert stored.monitor.force_flush()
    child = subprocess.Popen(
        [sys.executable, "-c", SERVE, url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env=ENV,
    )
    try:
        assert child.stdout is not None
        base = child.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:"), child.stderr.read() if child.stderr else ""
        with urllib.request.urlopen(base + "status", timeout=10) as response:
            document = json.load(response)
        assert [c["collector_type"] for c in document["collectors"]] == ["pools"]
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(base + "metrics", timeout=10)
        assert missing.value.code == 404
        assert "gecko-otel serve reads a store" in json.load(missing.value)["error"]
        child.send_signal(stop)
        out, err = child.communicate(timeout=10)
        assert child.returncode == 0, err
        assert out.strip() == "stopped"
        assert "Traceback" not in err
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()


def test_a_memory_only_monitor_serves_without_importing_sqlalchemy(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys, urllib.request
        import gecko_otel
        from gecko_otel.testing import capture_runs
        with capture_runs() as captured:
            with gecko_otel.track_collection("pools", monitor=captured.monitor):
                pass
            server = captured.monitor.serve_http(port=0)
            for path in ("", "status", "runs", "alerts", "readyz", "healthz"):
                urllib.request.urlopen(server.url + path, timeout=10).read()
        print(sorted(n for n in sys.modules if n.split(".")[0] == "sqlalchemy"))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=ENV,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
