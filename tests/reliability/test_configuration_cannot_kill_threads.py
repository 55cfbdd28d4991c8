"""Guarantee: no configuration value can kill a background thread or busy-loop a CPU.

Every duration is checked when the configuration is built: at most
``MAX_DURATION`` (100 years, under ``threading.TIMEOUT_MAX``), and the
intervals that pace a thread at least ``MIN_INTERVAL``. A value out of range
is a ``ConfigError`` that names the setting, never an ``OverflowError`` or a
thread that dies later (``GECKO_OTEL_STORE_FLUSH_INTERVAL=1e300`` used to
kill the writer: 0 of 10 runs were stored).
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta

import pytest

from gecko_otel import CollectorThresholds, ConfigError, MonitorConfig
from gecko_otel._checks import MAX_DURATION, MIN_INTERVAL
from gecko_otel._config import ENV_VARS, INTERVAL_FIELDS
from gecko_otel.testing import capture_runs

DURATIONS = [f.name for f in dataclasses.fields(MonitorConfig) if "Duration" in str(f.type)]
TOO_LONG = [1e300, 1e10, float("inf"), timedelta.max, MAX_DURATION * 1.01]
TOO_SHORT = [1e-300, 1e-9, MIN_INTERVAL / 2]


def test_the_longest_duration_fits_every_wait() -> None:
    assert MAX_DURATION < threading.TIMEOUT_MAX
    assert len(DURATIONS) == 15  # a new duration field must be added to the checks


@pytest.mark.parametrize("field", DURATIONS)
@pytest.mark.parametrize("value", TOO_LONG, ids=repr)
def test_a_huge_duration_is_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(ConfigError, match=f"MonitorConfig.{field}"):
        MonitorConfig(**{field: value})


@pytest.mark.parametrize("field", INTERVAL_FIELDS)
@pytest.mark.parametrize("value", TOO_SHORT, ids=repr)
def test_a_tiny_interval_is_refused(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"MonitorConfig.{field} must be at least"):
        MonitorConfig(**{field: value})


@pytest.mark.parametrize(
    "field", ["max_execution_time", "stale_after", "alert_cooldown", "no_data_after"]
)
def test_per_collector_durations_are_bounded_too(field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        CollectorThresholds(**{field: 1e300})


@pytest.mark.parametrize(
    "variable", ["GECKO_OTEL_STORE_FLUSH_INTERVAL", "GECKO_OTEL_WATCHDOG_INTERVAL"]
)
@pytest.mark.parametrize("raw", ["1e300", "1e10", "1e-300", "inf", "nan"])
def test_environment_values_out_of_range_are_config_errors(variable: str, raw: str) -> None:
    with pytest.raises(ConfigError, match="GECKO_OTEL_"):
        MonitorConfig.from_env({variable: raw})


def test_every_duration_variable_is_checked() -> None:
    for field in DURATIONS:
        variable, _ = ENV_VARS[field]
        with pytest.raises(ConfigError):
            MonitorConfig.from_env({variable: "1e300"})


def test_a_huge_suppression_is_a_config_error() -> None:
    with capture_runs(watchdog=False) as captured, pytest.raises(ConfigError, match="duration"):
        captured.monitor.suppress("pools", duration=1e300)


def test_the_largest_accepted_values_keep_the_threads_alive() -> None:
    config = MonitorConfig(**dict.fromkeys(INTERVAL_FIELDS, MAX_DURATION))
    with capture_runs(config=config) as captured:
        assert captured.monitor.health() == {}  # the watchdog started and waits
        watchdogs = [t for t in threading.enumerate() if t.name == "gecko-otel-watchdog"]
        assert watchdogs
        assert all(t.is_alive() for t in watchdogs)
