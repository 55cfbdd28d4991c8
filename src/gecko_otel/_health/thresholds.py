"""The thresholds in force, and changing them while collectors run.

Four layers give a collector's thresholds, the first that sets a field wins:

1. stored for this collector (``gecko-otel thresholds COLLECTOR --set``);
2. stored for every collector (``gecko-otel thresholds --set``);
3. configured for this collector (``MonitorConfig.collectors``);
4. configured for every collector (``MonitorConfig``).

Stored values are what an operator changed on a running fleet, so they win
over the code's. ``Monitor.set_thresholds`` changes layers 3 and 4 of one
process. Every change is validated exactly as `CollectorThresholds` and
`MonitorConfig` validate theirs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final

from gecko_otel._checks import check_collector_type
from gecko_otel._config import (
    INTEGER_THRESHOLDS,
    OFF_WHEN_ZERO,
    THRESHOLD_FIELDS,
    CollectorThresholds,
    MonitorConfig,
    Thresholds,
)
from gecko_otel._values.health import span_text
from gecko_otel.errors import ConfigError

#: Thresholds counted in whole runs (stored as numbers, read back as ints).
INTEGER_FIELDS: Final = INTEGER_THRESHOLDS
#: Thresholds that are durations in seconds.
DURATION_FIELDS: Final = frozenset(
    {"max_execution_time", "stale_after", "alert_cooldown", "no_data_after"}
)

#: Stored overrides: collector type (None for every collector) to field values.
Stored = Mapping[str | None, Mapping[str, float]]


def check_names(changes: Mapping[str, Any]) -> None:
    """ConfigError naming the valid thresholds when ``changes`` holds another name."""
    unknown = sorted(set(changes) - set(THRESHOLD_FIELDS))
    if unknown:
        verb = "is not a threshold" if len(unknown) == 1 else "are not thresholds"
        raise ConfigError(
            f"{', '.join(unknown)} {verb}; thresholds are {', '.join(THRESHOLD_FIELDS)}"
        )


def check_values(changes: Mapping[str, Any]) -> dict[str, float]:
    """Validated values as they are stored: numbers, durations in seconds.

    None is refused here (a stored value is removed, not set to None);
    ``0`` is kept for the rules it switches off (`OFF_WHEN_ZERO`).

    Raises:
        ConfigError: An unknown name or a value out of range.
    """
    check_names(changes)
    for name, value in changes.items():
        if value is None:
            raise ConfigError(f"{name}: give a value (to drop a stored one, unset it)")
    # Stored values come back as floats: 3.0 is the whole number 3.
    whole = {
        name: int(value) if name in INTEGER_FIELDS and _integral(value) else value
        for name, value in changes.items()
    }
    try:
        checked = CollectorThresholds(**whole)
    except ConfigError as exc:  # the field's name alone: these are not typed as Python
        raise ConfigError(str(exc).replace("CollectorThresholds.", "", 1)) from None
    return {name: float(getattr(checked, name)) for name in changes}


def _integral(value: object) -> bool:
    return isinstance(value, float) and value.is_integer()


def configure(
    config: MonitorConfig, collector_type: str | None, changes: Mapping[str, Any]
) -> MonitorConfig:
    """``config`` with ``changes`` applied to every collector or to ``collector_type``.

    For one collector, None puts a field back to inheriting the global value.

    Raises:
        ConfigError: An unknown name, an invalid collector type or value.
    """
    check_names(changes)
    if not changes:
        raise ConfigError(f"give at least one threshold to change: {', '.join(THRESHOLD_FIELDS)}")
    if collector_type is None:
        return config.replace(**changes)
    check_collector_type(collector_type)
    current = config.collectors.get(collector_type, CollectorThresholds())
    collectors = dict(config.collectors)
    changed = dataclasses.replace(current, **changes)
    if changed == CollectorThresholds():
        collectors.pop(collector_type, None)  # all inherited again
    else:
        collectors[collector_type] = changed
    return config.replace(collectors=collectors)


def in_force(config: MonitorConfig, stored: Stored, collector_type: str) -> Thresholds:
    """The thresholds ``collector_type`` runs under (see the module docs for the order)."""
    mine, every = stored.get(collector_type, {}), stored.get(None, {})
    overrides = config.collectors.get(collector_type)
    values: dict[str, Any] = {}
    for name in THRESHOLD_FIELDS:
        value: Any = mine.get(name, every.get(name))
        if value is None and overrides is not None:
            value = getattr(overrides, name)
        if value is None:
            value = getattr(config, name)
        elif name in INTEGER_FIELDS:
            value = int(value)
        values[name] = value
    for name in OFF_WHEN_ZERO:
        if values[name] == 0:
            values[name] = None
    return Thresholds(**values)


def has_throughput_rule(config: MonitorConfig, stored: Stored) -> bool:
    """Whether any collector may have a throughput rule (runs then cannot be batched)."""
    for value in (
        config.min_records_per_second,
        *(t.min_records_per_second for t in config.collectors.values()),
        *(values.get("min_records_per_second") for values in stored.values()),
    ):
        if value:
            return True
    return False


def describe(name: str, value: float | None) -> str:
    """A threshold's value as a person reads it (``300 s``, ``6.0 h``, ``3``, ``off``)."""
    if value is None or (name in OFF_WHEN_ZERO and value == 0):
        return "off"
    if name in INTEGER_FIELDS:
        return str(int(value))
    if name in DURATION_FIELDS:
        return span_text(value) if value >= 120 else f"{value:g} s"
    return f"{value:g}" + (" %" if name == "min_success_rate" else "")
