"""A slow or hostile client cannot take the server down; its threads are ours to stop."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY, get_value

from gecko_otel.serving import MonitorSource, StatusServer
from support.status import fetch, run
from support.store_helpers import StoredMonitor, stored_monitor

TIMEOUT = 2.0


@pytest.fixture
def stored() -> Iterator[StoredMonitor]:
    with stored_monitor(None) as stored:
        run(stored.monitor, "pools")
        yield stored


@pytest.fixture
def server(stored: StoredMonitor) -> Iterator[StatusServer]:
    with StatusServer(
        MonitorSource(stored.monitor), port=0, request_timeout=TIMEOUT, max_connections=4
    ) as server:
        yield server


def _connect(server: StatusServer) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def test_a_client_sending_a_byte_a_second_neither_blocks_others_nor_stays(
    server: StatusServer,
) -> None:
    slow = _connect(server)
    stop = threading.Event()
    cut_off = threading.Event()

    def dribble() -> None:
        for byte in b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n":
            if stop.wait(1.0):
                return
            try:
                slow.send(bytes([byte]))
            except OSError:
                cut_off.set()
                return

    sender = threading.Thread(target=dribble, daemon=True)
    sender.start()
    try:
        time.sleep(0.5)
        for _ in range(5):  # others are answered at once meanwhile
            started = time.monotonic()
            assert fetch(server, "/healthz").status == 200
            assert time.monotonic() - started < 1.0
        # ...and the slow one is cut off at the deadline, not when it finishes
        slow.settimeout(TIMEOUT + 3)
        answer = _read_all(slow)
        assert answer.startswith(b"HTTP/1.0 408"), answer[:60]
        assert server.counts()["timed_out_requests"] == 1
    finally:
        stop.set()
        sender.join(5)
        slow.close()


def test_idle_connections_beyond_the_cap_are_refused_at_once_and_then_freed(
    server: StatusServer,
) -> None:
    idle = [_connect(server) for _ in range(4)]
    try:
        time.sleep(0.3)  # all four taken by connection threads
        started = time.monotonic()
        extra = _connect(server)
        extra.settimeout(3)
        answer = _read_all(extra)
        extra.close()
        assert answer.startswith(b"HTTP/1.0 503"), answer[:60]
        assert time.monotonic() - started < 1.0
        assert server.counts()["refused_connections"] >= 1
        # the idle ones are dropped at the deadline, and the server answers again
        deadline = time.monotonic() + TIMEOUT + 3
        while time.monotonic() < deadline:
            try:
                if fetch(server, "/healthz").status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        assert fetch(server, "/healthz").status == 200
    finally:
        for sock in idle:
            sock.close()


def test_a_huge_request_line_is_refused_with_414(server: StatusServer) -> None:
    sock = _connect(server)
    try:
        with contextlib.suppress(OSError):  # the server may close before reading it all
            sock.sendall(b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n")
        answer = _read_all(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.0 414"), answer[:60]
    assert server.counts()["oversized_requests"] == 1
    assert fetch(server, "/healthz").status == 200


def test_huge_headers_are_refused_with_431(server: StatusServer) -> None:
    sock = _connect(server)
    try:
        with contextlib.suppress(OSError):
            sock.sendall(b"GET / HTTP/1.1\r\n" + b"X-Filler: " + b"b" * 40_000 + b"\r\n\r\n")
        answer = _read_all(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.0 431"), answer[:60]


def test_garbage_is_a_400_not_a_crash(server: StatusServer) -> None:
    sock = _connect(server)
    try:
        sock.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        answer = _read_all(sock)
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.0 400"), answer[:60]
    assert fetch(server, "/healthz").status == 200


class _Recording(MonitorSource):
    """A MonitorSource that notes, on each call, its thread and the OTel suppression flag."""

    def __init__(self, monitor) -> None:
        super().__init__(monitor)
        self.calls: list[tuple[bool, bool]] = []

    def alive(self) -> bool:
        thread = threading.current_thread()
        self.calls.append((bool(get_value(_SUPPRESS_INSTRUMENTATION_KEY)), thread.daemon))
        return super().alive()


def test_server_threads_are_daemons_with_instrumentation_suppressed(
    stored: StoredMonitor,
) -> None:
    source = _Recording(stored.monitor)
    with StatusServer(source, port=0) as server:
        assert fetch(server, "/healthz").status == 200
        accepting = [t for t in threading.enumerate() if t.name == "gecko-otel-status-server"]
        assert accepting and all(t.daemon for t in accepting)
    assert source.calls == [(True, True)]


def test_close_stops_its_thread_and_frees_the_port(stored: StoredMonitor) -> None:
    server = StatusServer(MonitorSource(stored.monitor), port=0)
    port = server.port
    server.close()
    server.close()  # idempotent
    time.sleep(0.1)
    assert not [t for t in threading.enumerate() if t.name == "gecko-otel-status-server"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))  # free again
