"""A throwaway PostgreSQL server for the tests: a real postmaster on 127.0.0.1, no docker.

The binaries come from the ``pgserver`` wheel (the dev group) or, failing that, from a system
PostgreSQL. ``pgserver`` is located, never imported: importing it emits a ``RuntimeDirWarning``
and the suite runs with ``filterwarnings = error``.

PostgreSQL refuses to run as root, and CI runs the suite as root. Then initdb, pg_ctl and the
postmaster run as the ``postgres`` system user (created as ``gecko-otel-pg`` when there is none),
the data dir lives where that user can reach it, and the binaries are made readable to it.

Every started server is stopped at interpreter exit (``atexit``), so no postmaster outlives the
pytest process even when a test or a fixture fails half-way.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from psycopg import sql

HOST = "127.0.0.1"
SUPERUSER = "postgres"  # the database role, not the system user
FALLBACK_SYSTEM_USER = "gecko-otel-pg"
_REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres")
_DB_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_START_TIMEOUT = 30  # seconds, for pg_ctl -t
_STOP_TIMEOUT = 30
_LOG_TAIL_LINES = 40

_SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "unix_socket_directories": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


class PostgresServerError(RuntimeError):
    """A server could not be set up, started or stopped; the message carries the log tail."""


@dataclass(frozen=True)
class _RunAs:
    """The system user that runs the PostgreSQL processes when we are root."""

    name: str
    uid: int
    gid: int
    groups: frozenset[int]


# --------------------------------------------------------------------------- binaries


def _has_server_binaries(bin_dir: Path) -> bool:
    return all(os.access(bin_dir / name, os.X_OK) for name in _REQUIRED_BINARIES)


def _pgserver_bin_dir() -> Path | None:
    try:
        spec = importlib.util.find_spec("pgserver")  # locates without importing
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "pginstall" / "bin"
        if _has_server_binaries(candidate):
            return candidate
    return None


def _pg_config_bin_dir() -> Path | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        result = subprocess.run(
            [pg_config, "--bindir"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    candidate = Path(result.stdout.strip())
    return candidate if _has_server_binaries(candidate) else None


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/<version>/bin
    return tuple(int(part) for part in re.findall(r"\d+", path.parent.name)) or (0,)


def _debian_bin_dir() -> Path | None:
    candidates = [
        path for path in Path("/usr/lib/postgresql").glob("*/bin") if _has_server_binaries(path)
    ]
    return max(candidates, key=_version_key) if candidates else None


def find_binaries() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres, or None when there is no PostgreSQL.

    Prefers the build inside the ``pgserver`` wheel, then ``pg_config --bindir``, then the newest
    ``/usr/lib/postgresql/*/bin``.
    """
    for finder in (_pgserver_bin_dir, _pg_config_bin_dir, _debian_bin_dir):
        found = finder()
        if found is not None:
            return found
    return None


# --------------------------------------------------------------------------- users, permissions


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _system_user() -> _RunAs:
    """The non-root user to run PostgreSQL as: ``postgres`` if it exists, else our own."""
    import pwd

    for name in (SUPERUSER, FALLBACK_SYSTEM_USER):
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        break
    else:
        try:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", FALLBACK_SYSTEM_USER],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            )
        except (OSError, subprocess.CalledProcessError) as exc:
            detail = getattr(exc, "stderr", "") or ""
            raise PostgresServerError(
                f"running as root and could not create system user {FALLBACK_SYSTEM_USER!r} "
                f"for PostgreSQL: {exc} {detail}".strip()
            ) from exc
        entry = pwd.getpwnam(FALLBACK_SYSTEM_USER)
    groups = frozenset(os.getgrouplist(entry.pw_name, entry.pw_gid)) | {entry.pw_gid}
    return _RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


def _allowed(st: os.stat_result, user: _RunAs, want: int) -> bool:
    """Whether ``user`` has the rwx bits ``want`` (0-7) on a file, by its mode bits."""
    if st.st_uid == user.uid:
        bits = (st.st_mode >> 6) & 7
    elif st.st_gid in user.groups:
        bits = (st.st_mode >> 3) & 7
    else:
        bits = st.st_mode & 7
    return bits & want == want


def _can_reach(path: Path, user: _RunAs, want: int = 0) -> bool:
    """Whether ``user`` can traverse every ancestor of ``path`` and has ``want`` on it."""
    path = path.resolve()
    try:
        if any(not _allowed(parent.stat(), user, 1) for parent in path.parents):
            return False
        return _allowed(path.stat(), user, want) if want else True
    except OSError:
        return False


def _open_ancestors(path: Path, user: _RunAs) -> None:
    """Add o+x (traverse, not list) to the ancestors of ``path`` that ``user`` cannot traverse."""
    for parent in reversed(path.resolve().parents):
        st = parent.stat()
        if not _allowed(st, user, 1):
            parent.chmod(stat.S_IMODE(st.st_mode) | stat.S_IXOTH)


def _open_tree(root: Path, executables: Iterable[Path]) -> None:
    """Make a binary tree world-readable: dirs and executables o+rx, other files o+r."""
    rx = stat.S_IROTH | stat.S_IXOTH
    exe = {path.resolve() for path in executables}

    def ensure(path: Path, bits: int) -> None:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            return
        if st.st_mode & bits != bits:
            path.chmod(stat.S_IMODE(st.st_mode) | bits)

    ensure(root, rx)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            ensure(Path(dirpath, name), rx)
        for name in filenames:
            path = Path(dirpath, name)
            is_exe = path.resolve() in exe or path.stat().st_mode & stat.S_IXUSR
            ensure(path, rx if is_exe else stat.S_IROTH)


def _tree_readable(root: Path, user: _RunAs) -> bool:
    if not _can_reach(root, user, 5):
        return False
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            if not _allowed(Path(dirpath, name).stat(), user, 5):
                return False
        for name in filenames:
            path = Path(dirpath, name)
            if path.is_symlink():
                continue
            st = path.stat()
            if not _allowed(st, user, 5 if st.st_mode & stat.S_IXUSR else 4):
                return False
    return True


def _make_binaries_usable(bin_dir: Path, user: _RunAs) -> None:
    """Ensure ``user`` can run the binaries and read their ``lib/`` and ``share/`` trees."""
    install = bin_dir.parent
    is_pgserver = install.name == "pginstall"
    dirs = [bin_dir] + [install / sub for sub in ("lib", "share") if (install / sub).is_dir()]
    if not all(_can_reach(d, user, 5) for d in dirs):
        _open_ancestors(bin_dir, user)
    # pgserver's copy inside the venv: open the whole tree if anything in it is closed.
    if is_pgserver and not all(_tree_readable(d, user) for d in dirs):
        _open_tree(install, (bin_dir / name for name in _REQUIRED_BINARIES))
    for name in _REQUIRED_BINARIES:
        if not _can_reach(bin_dir / name, user, 5):
            raise PostgresServerError(
                f"system user {user.name!r} cannot run {bin_dir / name}; fix its permissions"
            )


# --------------------------------------------------------------------------- processes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None without procfs/process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as file:
            content = file.read()
    except OSError:
        return None
    return content.rsplit(")", 1)[1].split()


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if not Path("/proc/self").exists():
        return True
    fields = _proc_stat(pid)
    return fields is not None and fields[0] not in {"Z", "X"}


def _is_postgres(pid: int) -> bool:
    """Guard against pid reuse before we kill anything."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            cmdline = file.read()
    except FileNotFoundError:
        return not Path("/proc/self").exists()
    except OSError:
        return False
    return b"postgres" in cmdline


def _children(pid: int) -> list[int]:
    found: list[int] = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if entry.name.isdigit():
            fields = _proc_stat(int(entry.name))
            if fields is not None and len(fields) > 1 and fields[1] == str(pid):
                found.append(int(entry.name))
    return found


def _wait_gone(pids: Iterable[int], timeout: float) -> bool:
    pending = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        pending = [pid for pid in pending if _pid_alive(pid)]
        if not pending:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


# --------------------------------------------------------------------------- the server


class PostgresServer:
    """A throwaway PostgreSQL cluster listening on 127.0.0.1 on a port fixed at construction.

    ``start()`` runs initdb the first time; ``stop()`` and ``start()`` keep the data and the
    port, so URLs stay valid across restarts; ``close()`` stops the server and deletes the data.
    """

    def __init__(self, base_dir: Path, *, bin_dir: Path | None = None) -> None:
        found = bin_dir if bin_dir is not None else find_binaries()
        if found is None:
            raise PostgresServerError(
                "no PostgreSQL binaries found: install the dev group (pgserver) or a system "
                "PostgreSQL server"
            )
        self.bin_dir: Path = found
        self.base_dir = Path(base_dir)
        self.port: int = _free_port()
        self.host = HOST
        self._run_as: _RunAs | None = _system_user() if _is_root() else None
        self._owned_root: Path | None = None  # a mkdtemp() dir that close() removes entirely
        self._root: Path | None = None
        self._closed = False

    # ------------------------------------------------------------------ public API

    @property
    def system_user(self) -> str | None:
        """The system user running PostgreSQL when we are root; None means the current user."""
        return self._run_as.name if self._run_as else None

    @property
    def data_dir(self) -> Path:
        return self._layout() / "data"

    @property
    def log_path(self) -> Path:
        return self._layout() / "postgres.log"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid from ``postmaster.pid``, if the file is there."""
        if self._root is None:
            return None
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first.strip())
        except (OSError, ValueError):
            return None

    @property
    def is_running(self) -> bool:
        return self._alive()

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL for ``database`` on this server (psycopg 3 driver)."""
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        """A libpq connection string, for ``psycopg.connect``."""
        return f"host={self.host} port={self.port} user={SUPERUSER} dbname={database}"

    def start(self) -> PostgresServer:
        """Start the server (initdb first if needed); a no-op if it is already running."""
        if self._closed:
            raise PostgresServerError("this PostgresServer is closed")
        if self._alive():
            return self
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        _LIVE.add(self)
        code, output = self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "start",
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                str(_START_TIMEOUT),
            ],
            timeout=_START_TIMEOUT + 15,
        )
        if code != 0 or not self._alive():
            self._stop_quietly()
            raise PostgresServerError(
                f"PostgreSQL did not start on {self.host}:{self.port} (pg_ctl exit {code})"
                + self._diagnostics(output)
            )
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (pg_ctl stop -w); kill the postmaster if pg_ctl cannot."""
        pid = self.pid
        if pid is None or not _pid_alive(pid):
            return
        code, output = self._run(
            [
                str(self.bin_dir / "pg_ctl"),
                "stop",
                "-D",
                str(self.data_dir),
                "-m",
                mode,
                "-w",
                "-t",
                str(_STOP_TIMEOUT),
            ],
            timeout=_STOP_TIMEOUT + 15,
        )
        if code == 0 and _wait_gone([pid], 5):
            return
        self._kill(pid)
        if _pid_alive(pid):
            raise PostgresServerError(
                f"could not stop the postmaster (pid {pid}, pg_ctl exit {code})"
                + self._diagnostics(output)
            )

    def restart(self, mode: str = "fast") -> PostgresServer:
        self.stop(mode)
        return self.start()

    def create_database(self, name: str) -> str:
        """CREATE DATABASE ``name`` and return its SQLAlchemy URL."""
        from psycopg import sql

        self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self._check(name))))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """DROP DATABASE ``name``, disconnecting whoever is still connected to it."""
        from psycopg import sql

        self._execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(self._check(name))
            )
        )

    def close(self) -> None:
        """Stop the server (by force if need be) and delete its data dir; idempotent."""
        if self._closed:
            return
        try:
            self._stop_quietly()
        finally:
            self._closed = True
            _LIVE.discard(self)
            if self._root is not None:
                if self._owned_root is not None:
                    shutil.rmtree(self._owned_root, ignore_errors=True)
                else:
                    shutil.rmtree(self._root / "data", ignore_errors=True)
                    with contextlib.suppress(FileNotFoundError):
                        (self._root / "postgres.log").unlink()

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> PostgresServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running" if self.is_running else "stopped"
        return f"<PostgresServer {self.host}:{self.port} {state} bin={self.bin_dir}>"

    # ------------------------------------------------------------------ internals

    def _layout(self) -> Path:
        """The dir holding ``data/`` and ``postgres.log``; chosen once, reachable by the user."""
        if self._root is not None:
            return self._root
        self.base_dir.mkdir(parents=True, exist_ok=True)
        root = self.base_dir
        user = self._run_as
        if user is not None:
            _make_binaries_usable(self.bin_dir, user)
            if not _can_reach(root, user, 1):
                # e.g. pytest's tmp_path under /tmp/pytest-of-root (0700): use a fresh dir.
                root = Path(tempfile.mkdtemp(prefix="gecko-otel-pg-"))
                root.chmod(0o755)
                self._owned_root = root
                if not _can_reach(root, user, 1):
                    shutil.rmtree(root, ignore_errors=True)
                    raise PostgresServerError(
                        f"system user {user.name!r} can reach neither {self.base_dir} nor "
                        f"{root}; set TMPDIR to a directory it can traverse"
                    )
        self._root = root
        return root

    def _initdb(self) -> None:
        data, log = self.data_dir, self.log_path
        if data.exists():
            shutil.rmtree(data)  # a half-made cluster from an aborted initdb
        data.mkdir(mode=0o700)
        log.touch()
        if self._run_as is not None:
            os.chown(data, self._run_as.uid, self._run_as.gid)
            os.chown(log, self._run_as.uid, self._run_as.gid)
        code, output = self._run(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(data),
                "--auth=trust",
                "-U",
                SUPERUSER,
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
                "--no-instructions",
            ],
            timeout=120,
        )
        if code != 0:
            raise PostgresServerError(f"initdb failed (exit {code})" + self._diagnostics(output))
        settings = "".join(f"{key} = {value}\n" for key, value in _SETTINGS.items())
        settings += f"port = {self.port}\n"
        with (data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# gecko-otel test server\n" + settings)

    def _run(self, args: list[str], *, timeout: float) -> tuple[int, str]:
        """Run a PostgreSQL command as the right user; return (exit code, stdout+stderr)."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env["LC_ALL"] = "C"
        user = self._run_as
        # Temporary files, not pipes: pg_ctl's postmaster may inherit the descriptors, and a
        # pipe would then never reach EOF.
        with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as out:
            try:
                as_user: dict[str, Any] = (
                    {"user": user.uid, "group": user.gid, "extra_groups": sorted(user.groups)}
                    if user is not None
                    else {}
                )
                completed = subprocess.run(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self._layout(),
                    env=env,
                    timeout=timeout,
                    check=False,
                    **as_user,
                )
                code = completed.returncode
            except subprocess.TimeoutExpired:
                code = -1
                out.write(f"\n[timed out after {timeout} s]\n")
            except OSError as exc:
                code = -1
                out.write(f"\n[could not run {args[0]}: {exc}]\n")
            out.seek(0)
            return code, out.read()

    def _alive(self) -> bool:
        pid = self.pid
        return pid is not None and _pid_alive(pid)

    def _diagnostics(self, output: str) -> str:
        parts = [f"\ncommand output:\n{output.strip() or '(none)'}"]
        tail = self.log_tail()
        parts.append(f"\nserver log ({self.log_path}), last lines:\n{tail or '(empty)'}")
        return "".join(parts)

    def _kill(self, pid: int) -> None:
        """Immediate shutdown (SIGQUIT), then SIGKILL for the postmaster and its children."""
        if not _is_postgres(pid):
            return
        _signal(pid, signal.SIGQUIT)
        if _wait_gone([pid], 5):
            return
        children = _children(pid)
        for target in [pid, *children]:
            _signal(target, signal.SIGKILL)
        _wait_gone([pid, *children], 5)

    def _stop_quietly(self) -> None:
        pid = self.pid
        try:
            self.stop("fast")
        except Exception:  # cleanup path: force below
            if pid is not None:
                self._kill(pid)

    @staticmethod
    def _check(name: str) -> str:
        if not _DB_NAME.match(name):
            raise ValueError(f"not a plain database name: {name!r}")
        return name

    def _execute(self, statement: sql.Composed) -> None:
        import psycopg

        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=10) as conn:
            conn.execute(statement)


_LIVE: set[PostgresServer] = set()


@atexit.register
def _close_all() -> None:
    """Stop every server still running when the interpreter exits."""
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()
