"""Guarantee: no metadata, collector name or configuration value, however odd, breaks a run.

Hypothesis generates the inputs a hostile or unlucky user could pass:

- metadata of any shape (huge integers, NaN, lone surrogates, NUL, bytes,
  sets, nested mappings with non-string keys, objects whose ``__str__``
  raises): the collector's result comes back unchanged, every value is a
  valid OTLP attribute that encodes as UTF-8, and the run is stored;
- any text as a collector name: refused with ``ConfigError`` at the entry
  point, or accepted and then usable everywhere a store is queried;
- any text or number for any ``GECKO_OTEL_*`` variable or ``MonitorConfig``
  field: a ``ConfigError`` that names the setting, or a configuration whose
  durations fit every wait and whose intervals cannot busy-loop a CPU.

The examples are derandomized, so CI sees the same ones on every run.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import gecko_otel
from gecko_otel import ConfigError, MonitorConfig
from gecko_otel._checks import INT64_MAX, MAX_DURATION, MIN_INTERVAL
from gecko_otel._config import ENV_VARS, INTERVAL_FIELDS
from support.store_helpers import StoredMonitor, stored_monitor

SETTINGS = settings(
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Text as os.fsdecode, a broken API or a copy-paste produce it: lone surrogates,
# NUL, every plane. The awkward characters are drawn often, not left to chance.
AWKWARD = st.sampled_from(["\x00", "\udcff", "\ud800", "\ufffd", "\n", " ", "é", "😀", "'", "%"])
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40) | st.tuples(
    st.text(max_size=8), AWKWARD, st.text(max_size=8)
).map("".join)


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no str for you")

    def __repr__(self) -> str:  # Hypothesis prints examples with repr()
        return "Unprintable()"


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**62, max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | ANY_TEXT
    | st.binary(max_size=20)
    | st.builds(Unprintable)
)
HASHABLE = st.none() | st.booleans() | st.integers() | ANY_TEXT | st.binary(max_size=8)
METADATA_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=6)
        | st.tuples(inner, inner)
        | st.frozensets(HASHABLE, max_size=4)
        | st.dictionaries(HASHABLE, inner, max_size=5)
    ),
    max_leaves=30,
)
METADATA = st.dictionaries(HASHABLE, METADATA_VALUES, max_size=8)


T = TypeVar("T")


def outcome(call: Callable[[], T]) -> tuple[T | None, str | None]:
    """``call()``'s result, or the message of the ``ConfigError`` it raised."""
    try:
        return call(), None
    except ConfigError as exc:
        return None, str(exc)


def valid_attribute(value: object, max_length: int) -> bool:
    """What the OTLP exporters and both stores can take without an error."""
    if isinstance(value, tuple):
        kinds = {type(v) for v in value}
        return len(kinds) <= 1 and all(valid_attribute(v, max_length) for v in value)
    if isinstance(value, str):
        value.encode("utf-8")  # raises on a lone surrogate
        return len(value) <= max_length
    if isinstance(value, bool | float):
        return True
    if isinstance(value, int):
        return -INT64_MAX - 1 <= value <= INT64_MAX
    return False


@pytest.fixture(scope="module")
def on_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoredMonitor]:
    path: Path = tmp_path_factory.mktemp("generated") / "runs.db"
    with stored_monitor(f"sqlite:///{path}", max_attribute_length=64) as stored:
        yield stored


@settings(SETTINGS, max_examples=300)
@given(metadata=METADATA, extra=METADATA_VALUES)
# Found by random runs: a lone surrogate reached OTLP and the stores as is, and a
# stored (0, inf) came back as (0.0, "inf"), which is no attribute value.
@example(metadata={"\ud800": "\udcff"}, extra="\ud800")
@example(metadata={}, extra=(0, math.inf))
def test_any_metadata_leaves_the_run_intact_and_stored(
    on_sqlite: StoredMonitor, metadata: dict[Any, Any], extra: object
) -> None:
    monitor = on_sqlite.monitor
    before = monitor.statistics("generated")
    losses = monitor.system_health().dropped  # some counters are process-wide
    result = object()

    def collect() -> object:
        with gecko_otel.track_collection("generated", metadata=metadata, monitor=monitor) as run:
            run.set_metadata("extra", extra)
            run.set_metadata(extra, "as a key")  # type: ignore[arg-type]
            run.add_records(1)
        return result

    assert collect() is result
    assert monitor.force_flush(timeout_millis=10_000)

    [record] = monitor.history("generated", limit=1)
    for key, value in record.metadata.items():
        key.encode("utf-8")
        assert valid_attribute(value, 64), (key, value)
    after = monitor.statistics("generated")  # answered by the SQL store
    assert after.total_executions == (before.total_executions if before else 0) + 1
    assert after.total_records_collected == (before.total_records_collected if before else 0) + 1
    assert monitor.system_health().dropped == losses


NAMES = ANY_TEXT | st.text(max_size=300) | st.integers() | st.none() | st.binary(max_size=10)


@SETTINGS
@given(name=NAMES)
def test_any_name_is_refused_or_usable_everywhere(on_sqlite: StoredMonitor, name: Any) -> None:
    monitor = on_sqlite.monitor

    def collect() -> None:
        with gecko_otel.track_collection(name, monitor=monitor) as run:
            run.add_records(2)

    _, refused = outcome(collect)
    if refused is not None:
        assert "collector_type" in refused
        return
    assert isinstance(name, str)
    assert monitor.force_flush(timeout_millis=10_000)
    [record] = monitor.history(name, limit=1)
    assert record.collector_type == name
    assert monitor.statistics(name).total_records_collected >= 2
    assert name in monitor.health()
    # What leaves the process (exports, alerts, OTLP) must be valid UTF-8.
    json.dumps(monitor.export(), ensure_ascii=False, default=str).encode("utf-8")


# Numbers at and around every bound a setting has, and across all magnitudes.
SMALL = [0, -0.0, 5e-324, 1e-300, 1e-3, MIN_INTERVAL * 0.99, MIN_INTERVAL, 1, 2**31]
LARGE = [2**63, 2**64, MAX_DURATION, MAX_DURATION * 1.0001, 1e10, 1e300, math.inf, -math.inf]
EDGES = st.sampled_from([*SMALL, *LARGE, math.nan])
MAGNITUDES = st.tuples(st.floats(1, 10), st.integers(-320, 300)).map(
    lambda m: m[0] * 10.0 ** m[1] if m[1] > -300 else m[0] * 1e-300 * 10.0 ** (m[1] + 300)
)
NUMBERS = (
    EDGES
    | MAGNITUDES
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(-(2**70), 2**70)
)


def _raw_values() -> st.SearchStrategy[str]:
    numbers = NUMBERS
    return (
        numbers.map(str)
        | numbers.map(lambda n: f"{n:e}" if isinstance(n, float) else str(n))
        | ANY_TEXT
        | st.sampled_from(["0", "-1", "1e-300", "1e300", "none", "off", "true", " 5 ", "1_000"])
    )


def assert_safe(config: MonitorConfig) -> None:
    """Every duration fits a wait, every interval paces a thread without spinning."""
    for field in dataclasses.fields(MonitorConfig):
        value = getattr(config, field.name)
        if "Duration" in str(field.type) and value is not None:
            assert isinstance(value, float)
            assert 0 < value <= MAX_DURATION
            assert math.isfinite(value)
    for name in INTERVAL_FIELDS:
        assert getattr(config, name) >= MIN_INTERVAL


@settings(SETTINGS, max_examples=300)
@given(
    variables=st.dictionaries(
        st.sampled_from(sorted(ENV_VARS)), _raw_values(), min_size=1, max_size=3
    )
)
def test_any_environment_is_a_config_error_or_a_safe_config(variables: dict[str, str]) -> None:
    environ = {ENV_VARS[field][0]: raw for field, raw in variables.items()}
    config, refused = outcome(lambda: MonitorConfig.from_env(environ))
    if refused is not None:
        assert "GECKO_OTEL_" in refused
        return
    assert config is not None
    assert_safe(config)


FIELD_VALUES = NUMBERS | st.booleans() | st.none() | ANY_TEXT | st.timedeltas()


@settings(SETTINGS, max_examples=300)
@given(
    field=st.sampled_from([f.name for f in dataclasses.fields(MonitorConfig)]), value=FIELD_VALUES
)
def test_any_field_value_is_a_config_error_or_a_safe_config(field: str, value: object) -> None:
    config, refused = outcome(lambda: MonitorConfig(**{field: value}))
    if refused is not None:
        assert field in refused or "MonitorConfig" in refused
        return
    assert config is not None
    assert_safe(config)
