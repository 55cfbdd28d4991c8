"""`import gecko_otel` loads what a decorated call needs; the Monitor and its pipeline,
asyncio and the schedule code load when first used."""

from __future__ import annotations

import pytest

import gecko_otel
from support.programs import run_program

DEFERRED = (
    "asyncio",
    "gecko_otel._monitor",
    "gecko_otel._setup",
    "gecko_otel._pipeline.pipeline",
    "gecko_otel._alerts.engine",
    "gecko_otel._health.expectations",
)


def test_a_decorated_call_loads_no_monitor_asyncio_or_schedule_code() -> None:
    out = run_program(
        f"""
        import json, sys
        import gecko_otel

        @gecko_otel.collection("pools")
        def collect():
            gecko_otel.current_run().add_records(3)

        collect()
        try:
            with gecko_otel.track_collection("pools"):
                raise TimeoutError("slow API")
        except TimeoutError:
            pass
        print(json.dumps([m for m in {DEFERRED!r} if m in sys.modules]))
        """
    )
    assert out == []


def test_every_public_name_resolves() -> None:
    for name in gecko_otel.__all__:
        assert getattr(gecko_otel, name) is not None
    assert set(gecko_otel.__all__) <= set(dir(gecko_otel))
    assert gecko_otel.Monitor.__module__ == "gecko_otel._monitor"
    with pytest.raises(AttributeError, match="no attribute 'Monitr'"):
        gecko_otel.Monitr  # noqa: B018 - the lookup is the test
