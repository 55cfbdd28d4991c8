"""The pipeline's clock: unix seconds that advance with the monotonic clock.

Health and alerts measure time since something this process saw (the last
success, a run's start, a schedule's due time, an alert's last repeat). The
wall clock is the wrong ruler for that: NTP or an operator may step it by
hours, and a forward step would make a collector that succeeded a second ago
look hours stale. So the pipeline reads the wall clock once, when it starts,
and from then on adds the monotonic clock's progress: its readings are unix
seconds (they compare with the wall times a store kept from before a
restart) whose differences are monotonic elapsed time.

The price: after a wall-clock step, the dates health and alerts show
(``evaluated_at``, ``last_success``, an alert's times) stay on the clock as
it read at start, until the process restarts. Where a real date is needed,
``wall`` reads the wall clock and `SteadyClock.shift` converts between the two:
schedules compute their next cron time in wall time, and a store's wall times
are moved onto this clock when they are restored.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SteadyClock:
    """Unix seconds from the wall clock at start plus monotonic time since.

    Args:
        clock: The wall clock (unix seconds), ``time.time`` when None. When
            it has a ``monotonic()`` method (as `gecko_otel.testing.FakeClock`
            has), elapsed time is read from that; a clock without one is used
            as it is (its readings are taken to be both).
    """

    __slots__ = ("base", "monotonic", "wall")

    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        #: The wall clock.
        self.wall: Callable[[], float] = time.time if clock is None else clock
        #: The monotonic clock.
        self.monotonic: Callable[[], float] = (
            time.monotonic if clock is None else getattr(clock, "monotonic", clock)
        )
        #: Added to a monotonic reading to make this clock's reading.
        self.base = 0.0 if self.monotonic is self.wall else self.wall() - self.monotonic()

    def __call__(self) -> float:
        """The current reading."""
        return self.base + self.monotonic()

    def shift(self) -> float:
        """What to add to a wall time to put it on this clock (0 until the wall clock steps)."""
        if self.monotonic is self.wall:
            return 0.0  # one clock for both: they cannot drift apart
        return self() - self.wall()

    def from_wall(self, *walls: float | None) -> tuple[float | None, ...]:
        """Wall times (None kept) put on this clock, as they are now apart from the wall clock."""
        shift = self.shift()
        return tuple(None if wall is None else wall + shift for wall in walls)
