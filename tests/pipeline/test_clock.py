"""The pipeline's clock: wall time at start, then monotonic time; and the test clock."""

from __future__ import annotations

import time

import pytest

from gecko_otel._pipeline.clock import SteadyClock
from gecko_otel.testing import FakeClock


def test_fake_clock_steps_the_wall_clock_alone() -> None:
    clock = FakeClock(1_000.0)
    clock.advance(minutes=1)
    assert (clock(), clock.now, clock.monotonic()) == (1_060.0, 1_060.0, 1_060.0)
    clock.step(hours=-1)
    assert (clock(), clock.monotonic()) == (-2_540.0, 1_060.0)
    clock.advance(10)
    assert (clock(), clock.monotonic()) == (-2_530.0, 1_070.0)
    clock.now = 5_000.0  # setting the time moves both readings, as it always did
    assert clock.monotonic() == 8_600.0


def test_the_steady_clock_follows_the_monotonic_clock_through_a_step() -> None:
    clock = FakeClock(1_000.0)
    steady = SteadyClock(clock)
    assert (steady(), steady.shift()) == (1_000.0, 0.0)
    clock.step(hours=3)
    clock.advance(5)
    assert steady() == 1_005.0
    assert steady.shift() == -3 * 3600
    assert steady.from_wall(clock(), None) == (1_005.0, None)


def test_a_clock_without_a_monotonic_reading_is_used_as_it_is() -> None:
    readings = iter([10.0, 20.0, 30.0])
    steady = SteadyClock(lambda: next(readings))
    assert (steady(), steady(), steady.shift()) == (10.0, 20.0, 0.0)


def test_the_default_steady_clock_starts_at_the_wall_time() -> None:
    assert SteadyClock()() == pytest.approx(time.time(), abs=1.0)
