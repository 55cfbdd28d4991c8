"""Real Prometheus and Alertmanager processes on loopback, for the tests that need them.

Debian's packages (``prometheus``, ``prometheus-alertmanager``) provide the
binaries; ``.ci/run`` installs them. A missing binary skips the test, or fails
it when CI sets ``GECKO_OTEL_REQUIRE_INTEGRATION=1``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.integration import skip_or_fail

READY_TIMEOUT = 30.0

#: Loopback peers are reached directly, whatever proxy the environment sets.
direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    """A loopback port nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def binary(*names: str) -> str:
    """The first of ``names`` on PATH (skip or fail the test when none is)."""
    for name in names:
        found = shutil.which(name)
        if found is not None:
            return found
    skip_or_fail(f"{' or '.join(names)} is not installed (Debian: apt-get install {names[0]})")


def get_json(url: str, timeout: float = 5.0) -> Any:
    with direct.open(url, timeout=timeout) as response:
        return json.loads(response.read())


def _ready(url: str) -> bool:
    try:
        with direct.open(url, timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _start(command: list[str], ready_url: str, log: Path) -> subprocess.Popen[bytes] | None:
    """Start ``command`` and wait until ``ready_url`` answers; None when its port was
    taken meanwhile (``free_port`` closes the port before the server binds it)."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + READY_TIMEOUT
    while not _ready(ready_url):
        if process.poll() is not None and "address already in use" in log.read_text().lower():
            return None
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            pytest.fail(f"{command[0]} did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@contextlib.contextmanager
def _serve(command: Callable[[int], list[str]], ready_path: str, log: Path) -> Iterator[str]:
    """Serve ``command(port)`` on a free loopback port; yields its base URL."""
    for _ in range(3):
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        process = _start(command(port), base + ready_path, log)
        if process is not None:
            break
    else:
        pytest.fail(f"no free port for {command(0)[0]} in 3 tries:\n{log.read_text()[-3000:]}")
    try:
        yield base
    finally:
        _stop(process)


@contextlib.contextmanager
def alertmanager(config: Path, workdir: Path) -> Iterator[str]:
    """Alertmanager with ``config``, without clustering; yields its base URL."""
    binary_path = binary("prometheus-alertmanager", "alertmanager")
    with _serve(
        lambda port: [
            binary_path,
            f"--config.file={config}",
            f"--storage.path={workdir / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        "/-/ready",
        workdir / "alertmanager.log",
    ) as base:
        yield base


@contextlib.contextmanager
def prometheus(config: Path, workdir: Path) -> Iterator[str]:
    """Prometheus with ``config`` and a fresh TSDB; yields its base URL."""
    binary_path = binary("prometheus")
    with _serve(
        lambda port: [
            binary_path,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        "/-/ready",
        workdir / "prometheus.log",
    ) as base:
        yield base
