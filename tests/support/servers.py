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
from collections.abc import Iterator
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


@contextlib.contextmanager
def _serve(command: list[str], ready_url: str, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not _ready(ready_url):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"{command[0]} did not become ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@contextlib.contextmanager
def alertmanager(config: Path, workdir: Path) -> Iterator[str]:
    """Alertmanager with ``config``, without clustering; yields its base URL."""
    command = binary("prometheus-alertmanager", "alertmanager")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with _serve(
        [
            command,
            f"--config.file={config}",
            f"--storage.path={workdir / 'alertmanager-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        f"{base}/-/ready",
        workdir / "alertmanager.log",
    ):
        yield base


@contextlib.contextmanager
def prometheus(config: Path, workdir: Path) -> Iterator[str]:
    """Prometheus with ``config`` and a fresh TSDB; yields its base URL."""
    command = binary("prometheus")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with _serve(
        [
            command,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        f"{base}/-/ready",
        workdir / "prometheus.log",
    ):
        yield base
