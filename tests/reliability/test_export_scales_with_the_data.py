"""Guarantee: ``export()`` costs a few queries, not a few per collector.

With a store, ``export()`` used to run a statistics and a history query (and
a writer flush) per collector: 8 s for 5,000 collectors, 37 s for 20,000. It
reads every collector's statistics and newest runs in grouped queries now;
the figures are the ones the per-collector queries give.
"""

from __future__ import annotations

import gecko_otel
from support.store_helpers import StatementLog, stored_monitor


def collect(monitor: gecko_otel.Monitor, collectors: int) -> None:
    for i in range(collectors):
        for records in (1, 2):
            with gecko_otel.track_collection(f"c{i:04d}", monitor=monitor) as run:
                run.add_records(records)


def test_export_queries_do_not_grow_with_collectors(store_url: str) -> None:
    counts = []
    for collectors in (5, 60):
        with stored_monitor(store_url, service_name=f"svc-{collectors}") as sm:
            collect(sm.monitor, collectors)
            assert sm.monitor.force_flush()
            with StatementLog(sm.monitor._store.store.engine) as log:  # type: ignore[attr-defined]
                exported = sm.monitor.export()
            assert len(exported["collectors"]) >= collectors
            counts.append(len([s for s in log.statements if s.upper().startswith("SELECT")]))
    assert counts[1] == counts[0], counts  # the same few queries for 12 times the collectors


def test_the_grouped_figures_equal_the_per_collector_ones(store_url: str) -> None:
    with stored_monitor(store_url) as sm:
        m = sm.monitor
        collect(m, 7)
        assert m.force_flush()
        exported = m.export()["collectors"]
        for name, section in exported.items():
            assert section["statistics"] == m.statistics(name).to_dict()
            assert section["history"] == [r.to_dict() for r in m.history(name, limit=1000)]
