"""`StatusServer`: the status page and probe endpoints over HTTP, on threads of its own.

The standard library's ``ThreadingHTTPServer``, hardened so that a slow or
hostile client cannot take it down (a dependency such as waitress would do
the same for five small GET routes, at the cost of a runtime dependency for
every user):

- one connection, one request (HTTP/1.0, ``Connection: close``); a thread
  per connection, at most ``max_connections`` at once: one more is answered
  503 at once by the accepting thread and closed;
- the request line and headers must arrive within ``request_timeout``
  seconds *in total* (a client sending a byte a second is cut off, not just
  one that goes silent), the request line within 8 KiB (414) and the headers
  within 16 KiB (431); the answer is sent within ``request_timeout`` too;
- GET and HEAD only (others 405): no endpoint changes anything.

The accepting loop is a `gecko_otel._worker.Worker`; connection threads are
daemon threads. All run with OpenTelemetry instrumentation suppressed, so a
poll of the page never becomes a trace.
"""

from __future__ import annotations

import contextlib
import io
import logging
import signal
import socket
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from gecko_otel._guard import report_internal_error
from gecko_otel._worker import AGAIN, Worker, untraced
from gecko_otel.errors import ConfigError
from gecko_otel.serving.metrics import Exposition
from gecko_otel.serving.page import Page
from gecko_otel.serving.routes import Response, Router, error
from gecko_otel.serving.sources import StatusSource

logger = logging.getLogger("gecko_otel.serving")

#: The longest request line accepted (as nginx's default buffer).
MAX_REQUEST_LINE: Final = 8 * 1024
#: The longest request head (request line and headers) accepted.
MAX_HEAD: Final = 16 * 1024
#: How long the accepting thread waits for a connection before checking for close().
_ACCEPT_POLL: Final = 0.2
_ALLOW: Final = ("Allow", "GET, HEAD")
#: Why ``gecko-otel serve`` has no /metrics: the live metrics are in the monitored processes.
STORE_HAS_NO_METRICS: Final = (
    "gecko-otel serve reads a store and has no live metrics; each monitored process "
    "serves them (Monitor.serve_http with the prometheus extra), or exports them over OTLP"
)


class StatusServer:
    """The status page, probes and JSON endpoints of a `StatusSource`, served over HTTP.

    Listening starts in the constructor and goes on, on the server's own
    threads, until `close`. See the status page guide for the routes and
    their JSON.

    Args:
        source: Where the data comes from (`MonitorSource`, `StoreSource`);
            never closed here.
        host: The address to listen on; loopback by default. ``"0.0.0.0"``
            (or ``"::"``) listens on every interface: set a ``token`` then.
        port: The TCP port; 0 picks a free one (see `port`, `url`).
        token: When set, every path but the probes needs the header
            ``Authorization: Bearer <token>`` (compared in constant time);
            ``/healthz`` and ``/readyz`` answer without it, ``/readyz``
            then without its reason.
        refresh_seconds: How often the page fetches ``/status``.
        request_timeout: Seconds a client has to send its request head, and
            the server to send its answer.
        max_connections: Connections served at once; more are answered 503.
        metrics: Renders ``/metrics`` (see `gecko_otel.serving.metrics`);
            None answers 404 with ``no_metrics``.
        no_metrics: Why there is no ``/metrics``, for that 404.

    Raises:
        ConfigError: An empty or malformed token, a non-positive limit, or an
            address that cannot be listened on (in use, not local).

    Threading: `close` and the properties are safe from any thread. The
    server calls ``source`` on its connection threads only, never on a
    collector's.
    """

    def __init__(
        self,
        source: StatusSource,
        *,
        host: str = "127.0.0.1",
        port: int = 9465,
        token: str | None = None,
        refresh_seconds: float = 5.0,
        request_timeout: float = 10.0,
        max_connections: int = 32,
        metrics: Exposition | None = None,
        no_metrics: str = "no /metrics on this server",
    ) -> None:
        _check(token, refresh_seconds, request_timeout, max_connections)
        self._connections = _Connections(
            source,
            token=token,
            page=Page.build(refresh_seconds),
            request_timeout=request_timeout,
            max_connections=max_connections,
            metrics=metrics,
            no_metrics=no_metrics,
        )
        self._lock = threading.Lock()
        try:
            self._httpd = _HTTPServer(host, port, self._connections)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host!r} port {port}: {exc.strerror or exc}; "
                "choose another port (0 picks a free one) or host"
            ) from None
        self._closed = False
        # A server dropped without close() still releases its port.
        weakref.finalize(self, self._httpd.server_close)
        self._worker = Worker(self, "_accept", name="gecko-otel-status-server")
        self._worker.ensure_running()
        logger.info("gecko_otel: status page at %s", self.url)

    @property
    def host(self) -> str:
        """The address listened on."""
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        """The port listened on (the one picked, when 0 was asked for)."""
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://host:port/``, the status page."""
        host = self.host
        return f"http://[{host}]:{self.port}/" if ":" in host else f"http://{host}:{self.port}/"

    def counts(self) -> dict[str, int]:
        """Connections refused at the limit, requests cut off by the timeout or too large."""
        return self._connections.counts()

    def close(self, timeout: float = 5.0) -> None:
        """Stop accepting and release the port; idempotent. Requests being answered
        finish on their daemon threads within ``request_timeout``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._worker.stop(timeout)
        self._httpd.server_close()

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self._closed

    def __enter__(self) -> StatusServer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the server's threads --------------------------------------------------------

    def _accept(self, _timed_out: bool) -> bool:
        self._httpd.handle_request()  # waits at most _ACCEPT_POLL for a connection
        return AGAIN


class _Connections:
    """What the connection threads share: the router, the limits, the counters."""

    def __init__(
        self,
        source: StatusSource,
        *,
        token: str | None,
        page: Page,
        request_timeout: float,
        max_connections: int,
        metrics: Exposition | None,
        no_metrics: str,
    ) -> None:
        self.router = Router(
            source,
            token=token,
            page=page,
            server_counts=self.counts,
            metrics=metrics,
            no_metrics=no_metrics,
        )
        self.request_timeout = request_timeout
        self.slots = threading.BoundedSemaphore(max_connections)
        self._lock = threading.Lock()
        self._counts = {"refused_connections": 0, "timed_out_requests": 0, "oversized_requests": 0}

    def count(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def respond(self, target: str, authorization: str | None) -> Response:
        try:
            return self.router.route(target, authorization)
        except Exception as exc:  # noqa: BLE001 - a bug answers 500 and is reported, never kills the server
            report_internal_error("status server", exc)
            return error(500, "internal error (logged by the server)")


def _check(
    token: str | None, refresh_seconds: float, request_timeout: float, max_connections: int
) -> None:
    if token is not None and (
        not token or not token.isascii() or not token.isprintable() or " " in token
    ):
        raise ConfigError(
            "token: give a non-empty string of printable ASCII without spaces "
            "(e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    for name, value in (("refresh_seconds", refresh_seconds), ("request_timeout", request_timeout)):
        if not value > 0:
            raise ConfigError(f"{name} must be a positive number of seconds, not {value!r}")
    if max_connections < 1:
        raise ConfigError(f"max_connections must be at least 1, not {max_connections!r}")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    timeout = _ACCEPT_POLL

    def __init__(self, host: str, port: int, connections: _Connections) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.connections = connections
        super().__init__((host, port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.connections.slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)  # starts the thread
        except BaseException:
            self.connections.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            with untraced():
                super().process_request_thread(request, client_address)
        finally:
            self.connections.slots.release()

    def _refuse(self, request: socket.socket) -> None:
        """Answer 503 without waiting (this is the accepting thread) and close."""
        self.connections.count("refused_connections")
        body = b'{"schema_version": 1, "error": "too many connections"}'
        head = (
            "HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
        )
        # Best effort: a client whose buffer is full just sees the connection close.
        with contextlib.suppress(OSError):
            request.setblocking(False)
            request.send(head.encode("ascii") + body)
        self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that goes away mid-answer is routine; anything else was
        # already reported by StatusServer._respond.
        logger.debug("gecko_otel: status server: connection from %s failed", client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    server_version = "gecko-otel"
    sys_version = ""
    protocol_version = "HTTP/1.0"  # one request per connection
    default_request_version = "HTTP/1.0"  # never HTTP/0.9's bare body, even to garbage

    def handle(self) -> None:
        connections = self.server.connections
        self.close_connection = True
        self.request_version = "HTTP/1.0"
        self.command = ""
        self.requestline = ""
        timeout = connections.request_timeout
        head = _read_head(self.connection, timeout)
        if isinstance(head, int):
            connections.count("timed_out_requests" if head == 408 else "oversized_requests")
            self._send(
                error(
                    head,
                    {408: "request too slow", 414: "request line too long"}.get(
                        head, "request headers too large"
                    ),
                )
            )
            return
        if head is None:
            return  # closed before a whole request head came
        self.rfile = io.BytesIO(head)
        self.connection.settimeout(timeout)  # sendall: the whole answer within it
        self.handle_one_request()

    def do_GET(self) -> None:
        connections = self.server.connections
        self._send(connections.respond(self.path, self.headers.get("Authorization")))

    def do_HEAD(self) -> None:
        self.do_GET()

    def _not_allowed(self) -> None:
        self._send(error(405, "only GET and HEAD: this server changes nothing", _ALLOW))

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _not_allowed

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's malformed-request answers (400, 501...), as JSON."""
        self.request_version = "HTTP/1.0"  # parse_request may have set 0.9: headers go out
        self._send(error(code, message or self.responses.get(code, ("error",))[0]))

    def _send(self, response: Response) -> None:
        try:
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(response.body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Connection", "close")
            for name, value in response.headers:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(response.body)
        except OSError as exc:  # the client left or stopped reading
            logger.debug("gecko_otel: status server: answer not sent (%s)", exc)

    def log_message(self, format: str, *args: Any) -> None:
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("gecko_otel: status server: %s %s", self.address_string(), format % args)


def _read_head(sock: socket.socket, timeout: float) -> bytes | int | None:
    """The request line and headers, read within ``timeout`` seconds in all.

    An error status when the client is too slow (408) or the request line
    (414) or head (431) too long; None when it closed first.
    """
    deadline = time.monotonic() + timeout
    data = bytearray()
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            end = data.find(b"\n\n")
            end = end + 2 if end >= 0 else -1
        else:
            end += 4
        if end >= 0:
            return bytes(data[:end])
        line_end = data.find(b"\n")
        if (line_end < 0 and len(data) > MAX_REQUEST_LINE) or line_end > MAX_REQUEST_LINE:
            return 414
        if len(data) > MAX_HEAD:
            return 431
        left = deadline - time.monotonic()
        if left <= 0:
            return 408
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            return 408
        except OSError:
            return None
        if not chunk:
            return None
        data += chunk


def serve(
    database_url: str,
    host: str = "127.0.0.1",
    port: int = 9465,
    token: str | None = None,
    *,
    ready: Callable[[StatusServer], object] | None = None,
) -> None:
    """Serve the status page of a store until interrupted (what ``gecko-otel serve`` runs).

    Blocks until Ctrl-C (``KeyboardInterrupt``) or, when called on the main
    thread, SIGTERM; then closes the server and the store's connections and
    returns. Nothing is written to the store.

    Args:
        database_url: The store the monitors write to (``sqlite:///path.db``,
            ``postgresql+psycopg://...``).
        host: The address to listen on; loopback by default.
        port: The TCP port (0 picks a free one).
        token: The bearer token every path but the probes (``/healthz``,
            ``/readyz``) needs, or None.
        ready: Called with the server once it listens (to print its URL).

    Raises:
        ConfigError: The URL is unusable, the SQLite file does not exist, or
            the address cannot be listened on. An unreachable database is not
            an error: ``/readyz`` answers 503 until it answers.
    """
    from gecko_otel.serving.store_source import StoreSource  # noqa: PLC0415 - SQLAlchemy only here

    source = StoreSource(database_url)
    try:
        with StatusServer(
            source, host=host, port=port, token=token, no_metrics=STORE_HAS_NO_METRICS
        ) as server:
            stop = threading.Event()
            with _stopped_by_sigterm(stop):
                if ready is not None:
                    ready(server)
                with contextlib.suppress(KeyboardInterrupt):
                    stop.wait()
    finally:
        source.close()


@contextlib.contextmanager
def _stopped_by_sigterm(stop: threading.Event) -> Iterator[None]:
    """SIGTERM sets ``stop`` while in the block (main thread only), then the old handler is back."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
