"""Writing history exports: JSON lines or CSV, the same columns from every backend."""

from __future__ import annotations

import contextlib
import csv
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import IO, Any, Final

from gecko_otel.errors import ConfigError

#: Columns of a history export, in order (CSV header, JSON keys).
EXPORT_COLUMNS: Final = (
    "execution_id",
    "collector_type",
    "status",
    "start_time",
    "end_time",
    "duration_seconds",
    "records_collected",
    "error_type",
    "error_message",
    "warnings",
    "errors",
    "dropped_messages",
    "metadata",
    "trace_id",
    "span_id",
    "service_name",
    "service_instance_id",
)

#: The formats `write_export` writes.
FORMATS: Final = ("jsonl", "csv")


def check_format(format: str) -> str:
    """``format`` if it is an export format.

    Raises:
        ConfigError: It is not ``"jsonl"`` or ``"csv"``.
    """
    if format not in FORMATS:
        raise ConfigError(f"export format must be 'jsonl' or 'csv', got {format!r}")
    return format


def write_export(out: IO[str], format: str, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write export rows to ``out`` as JSON lines or CSV (``EXPORT_COLUMNS``); how many."""
    count = 0
    if format == "jsonl":
        for row in rows:
            line = {k: row.get(k) for k in EXPORT_COLUMNS}
            out.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")))
            out.write("\n")
            count += 1
        return count
    writer = csv.DictWriter(
        out, fieldnames=EXPORT_COLUMNS, lineterminator="\n", extrasaction="ignore"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: json.dumps(row.get(k), ensure_ascii=False)
                if isinstance(row.get(k), list | dict)
                else row.get(k)
                for k in EXPORT_COLUMNS
            }
        )
        count += 1
    return count


@contextlib.contextmanager
def open_export(out: str | os.PathLike[str] | IO[str]) -> Iterator[IO[str]]:
    """``out`` as a text file to write to: a path is opened (and overwritten), a file is used."""
    if isinstance(out, str | os.PathLike):
        with open(out, "w", encoding="utf-8", newline="") as handle:
            yield handle
    else:
        yield out
