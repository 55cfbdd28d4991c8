"""The HTML report: one self-contained file with a store's health and charts.

``write_report("sqlite:///gecko_otel.db", "report.html")`` reads the runs,
alerts and collector health a store holds for a window (7 days by default)
and writes one HTML file that opens with no network: plotly.js is inlined
once and every chart is drawn from data in the page. It needs the
``report`` extra (``pip install 'gecko-otel[report]'``: plotly).

The report only reads: it opens the store without migrating it, and takes
a URL, an SQLAlchemy ``Engine`` or a `gecko_otel.store.Store` (an engine or
store it is given is left open). See ``docs/report.md`` for what each chart
shows and how the data is aggregated.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Final

from gecko_otel._config import MonitorConfig
from gecko_otel.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from gecko_otel.store.store import Store

__all__ = ["DEFAULT_WINDOW", "render_report", "write_report"]

#: The window a report covers unless told otherwise.
DEFAULT_WINDOW: Final = timedelta(days=7)


def render_report(
    database: str | Engine | Store,
    *,
    window: timedelta = DEFAULT_WINDOW,
    now: datetime | None = None,
    config: MonitorConfig | None = None,
) -> str:
    """The report's HTML for the runs that started in the ``window`` before ``now``.

    Args:
        database: A store URL (``sqlite:///path.db``,
            ``postgresql+psycopg://...``), an ``Engine`` on one, or a ``Store``.
        window: How far back the report looks (positive).
        now: The end of the window (aware); the current time by default.
        config: Where the thresholds drawn on the charts come from
            (``max_execution_time``, ``min_success_rate``, per-collector
            overrides); `MonitorConfig.from_env` by default. A threshold
            the store records (the one a ``slow_execution`` alert was
            raised against) wins, and the report says which it used.

    Returns:
        A complete HTML document.

    Raises:
        ConfigError: plotly is not installed, an argument is invalid, or the
            database is not a gecko-otel store this version reads.
        sqlalchemy.exc.OperationalError: The database cannot be reached.

    Blocking: runs a few queries over the window (streamed, grouped in SQL)
    and builds the page in memory; about 2 s for a million runs on SQLite.
    """
    from gecko_otel.reporting._charts import plotly_js  # noqa: PLC0415 - plotly is optional

    script = plotly_js()  # before touching the store: a missing extra fails fast
    if not isinstance(window, timedelta) or window <= timedelta(0):
        raise ConfigError(f"report window must be a positive timedelta, got {window!r}")
    until = datetime.now(timezone.utc) if now is None else now
    if until.tzinfo is None:
        raise ConfigError(f"report 'now' must be timezone-aware, got {now!r}")
    until = until.astimezone(timezone.utc)
    from gecko_otel.reporting._data import read_report_data  # noqa: PLC0415 - SQLAlchemy
    from gecko_otel.reporting._page import render_page  # noqa: PLC0415

    with _reading(database) as store:
        data = read_report_data(
            store,
            since=until - window,
            until=until,
            config=config if config is not None else MonitorConfig.from_env(),
        )
    return render_page(data, script, datetime.now(timezone.utc))


def write_report(
    database: str | Engine | Store,
    path: str | os.PathLike[str],
    *,
    window: timedelta = DEFAULT_WINDOW,
    now: datetime | None = None,
    config: MonitorConfig | None = None,
) -> Path:
    """Write the report (see `render_report`) to ``path``; its resolved path.

    The file is written beside its final name and moved into place, so a
    reader never sees half a report.

    Raises:
        ConfigError: As `render_report`, or the directory does not exist.
        sqlalchemy.exc.OperationalError: The database cannot be reached.
    """
    target = Path(path).expanduser().resolve()
    if not target.parent.is_dir():
        raise ConfigError(f"report: directory {str(target.parent)!r} does not exist")
    text = render_report(database, window=window, now=now, config=config)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o644)  # mkstemp makes it private; a report is meant to be shared
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


@contextmanager
def _reading(database: str | Engine | Store) -> Iterator[Store]:
    """A Store on ``database`` checked to be a current gecko-otel store, never migrated."""
    from sqlalchemy import Engine  # noqa: PLC0415

    from gecko_otel.store.engine import create_store_engine, current_revision  # noqa: PLC0415
    from gecko_otel.store.schema import HEAD_REVISION  # noqa: PLC0415
    from gecko_otel.store.store import Store  # noqa: PLC0415

    if isinstance(database, Store):
        yield database  # the caller's: checked and closed by them
        return
    if isinstance(database, Engine):
        store = Store(database, owns_engine=False)
    else:
        url = str(database)
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            file = url.removeprefix("sqlite:///").split("?", 1)[0]
            if not file.startswith("file:") and not os.path.exists(file):
                raise ConfigError(f"report: no SQLite store at {file!r}")
        store = Store(create_store_engine(url))
    try:
        with store.engine.connect() as conn:
            revision = current_revision(conn)
        if revision != HEAD_REVISION:
            found = "no gecko-otel schema" if revision is None else f"schema {revision}"
            raise ConfigError(
                f"report: {store.describe()} has {found}; this gecko-otel reads "
                f"{HEAD_REVISION} (a Monitor of this version migrates it on start)"
            )
        yield store
    finally:
        store.close()
