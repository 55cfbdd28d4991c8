"""The CollectionScheduler-style facade and Monitor.cleanup()."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest

from gecko_otel import ConfigError, MonitorConfig
from gecko_otel.compat import SchedulerMonitoring
from gecko_otel.testing import FakeClock, capture_runs
from support.runs import run


def test_every_facade_method_answers_from_the_monitor() -> None:
    clock = FakeClock()
    with capture_runs(MonitorConfig(min_runs_for_rate=1000), clock=clock, watchdog=False) as c:
        facade = SchedulerMonitoring(c.monitor)
        run("pools", records=5)
        for _ in range(3):
            run("trades", fail=True)
        status = facade.get_monitoring_status()
        assert status["system_health"]["overall_status"] == "critical"
        assert set(status["collectors"]) == {"pools", "trades"}
        [alert] = status["active_alerts"]
        metrics = facade.get_performance_metrics()
        assert metrics["overall"]["total_executions"] == 4
        assert metrics["collectors"]["pools"]["total_records_collected"] == 5
        history = facade.get_execution_history(collector_type="trades", limit=2)
        assert [h["status"] for h in history] == ["failure", "failure"]
        assert len(facade.get_execution_history(time_window=timedelta(minutes=1))) == 4
        assert facade.get_execution_history(time_window=timedelta(microseconds=1)) == []
        one = facade.get_performance_metrics("pools", time_window=timedelta(hours=1))
        assert list(one["collectors"]) == ["pools"]
        assert one["overall"]["window_seconds"] == 3600
        assert facade.get_alerts(level="critical")[0]["id"] == alert["id"]
        assert facade.acknowledge_alert(alert["id"]) is True
        assert facade.resolve_alert(alert["id"]) is True
        assert facade.resolve_alert("unknown") is False
        facade.suppress_alerts("trades")  # 60 minutes, as CollectionScheduler's
        run("trades", fail=True)
        assert facade.get_alerts()[0]["suppressed"] is True
        json.dumps(facade.export_monitoring_data())
        clock.advance(hours=24 * 31)  # the resolved alert is now 31 days old
        assert facade.cleanup_monitoring_data(days_to_keep=30) == {
            "execution_history": 0,  # runs are aged by their (real) start time
            "system_alerts": 1,
        }
        assert facade.get_alerts(unresolved_only=False)[0]["resolved"] is False
        time.sleep(1.0)  # the earlier runs are a second old, the next one a moment
        run("pools")
        assert c.monitor.cleanup(0.5)["execution_history"] == 5
        assert [r["collector_type"] for r in facade.get_execution_history()] == ["pools"]
        assert c.monitor.statistics().total_executions == 6  # running totals keep them


def test_cleanup_rejects_a_bad_age() -> None:
    with capture_runs(watchdog=False) as c, pytest.raises(ConfigError, match="older_than"):
        c.monitor.cleanup(timedelta(0))
