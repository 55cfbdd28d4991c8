"""gecko-otel's own database work never becomes spans in the user's backend, even
under the SQLAlchemy instrumentation (what ``opentelemetry-instrument`` enables)."""

from __future__ import annotations

from pathlib import Path

from support.programs import run_program

PROGRAM = """
import json, sqlalchemy
from opentelemetry import trace
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
# It declares SQLAlchemy < 2.1; its engine events work on 2.1 all the same.
SQLAlchemyInstrumentor().instrument(skip_dep_check=True)

import gecko_otel

def database_spans():
    return [s.name for s in exporter.get_finished_spans()
            if s.instrumentation_scope.name != "gecko_otel"]

monitor = gecko_otel.setup(database_url={url!r})
after_setup = database_spans()

@gecko_otel.collection("pools")
def collect():
    return 3

for _ in range(5):
    collect()
monitor.shutdown()
after_shutdown = database_spans()

# The instrumentation works: the application's own query is traced.
with sqlalchemy.create_engine("sqlite://").connect() as connection:
    connection.execute(sqlalchemy.text("select 1"))
print(json.dumps({{"setup": after_setup, "shutdown": after_shutdown,
                   "own_query": len(database_spans()) - len(after_shutdown)}}))
"""


def test_migrations_restore_and_writes_make_no_spans(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'runs.db'}"
    first = run_program(PROGRAM.format(url=url))  # creates and migrates the file
    again = run_program(PROGRAM.format(url=url))  # checks it and restores its runs
    for out in (first, again):
        assert out["setup"] == []
        assert out["shutdown"] == []
        assert out["own_query"] >= 1
