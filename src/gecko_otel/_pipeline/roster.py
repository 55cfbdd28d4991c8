"""Which collectors are tracked in memory: at most ``max_collectors``.

Every collector with in-memory state (history, statistics, health window,
alerts, per-collector gauges) is on the roster, in the order it was last
seen. When a new collector arrives at the limit, one is evicted and forgotten
everywhere, so a collector that starts failing is always evaluated:

1. the least recently seen one whose last run succeeded and that has no
   active alert;
2. else the least recently seen one whose last run did not succeed;
3. else (every collector has an active alert) the least recently seen one;
   its alerts are resolved.

Three ordered dicts, one per tier, make each run O(1) (a ``move_to_end``)
and each eviction amortised O(1): a collector whose alert fired since its
last run (``stale``, ``missed_run``) is moved to the alerting tier when it
comes up for eviction, at most once per run.

Threading: called under the run pipeline's lock.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, Protocol

logger = logging.getLogger("gecko_otel.monitor")


class _Alerts(Protocol):
    def has_active(self, collector_type: str) -> bool: ...
    def resolve_collector(self, collector_type: str, now: float) -> None: ...


class Roster:
    """The tracked collectors, least recently seen first, per tier.

    Args:
        limit: ``max_collectors``.
        alerts: The alert engine: which collectors have active alerts, and
            resolving an evicted one's.
        clock: Unix time, for resolving alerts.
        forget: Each removes an evicted collector from one structure
            (history, health state).
        caches: Other per-collector dicts an evicted collector leaves.
    """

    def __init__(
        self,
        limit: int,
        alerts: _Alerts,
        clock: Callable[[], float],
        *,
        forget: Iterable[Callable[[str], None]],
        caches: Iterable[MutableMapping[str, Any]],
    ) -> None:
        self.limit = limit
        self._alerts = alerts
        self._has_active = alerts.has_active
        self._clock = clock
        self._forget = tuple(forget)
        self._caches = tuple(caches)
        self._healthy: OrderedDict[str, None] = OrderedDict()
        self._failing: OrderedDict[str, None] = OrderedDict()
        self._alerting: OrderedDict[str, None] = OrderedDict()
        self._tier: dict[str, OrderedDict[str, None]] = {}
        #: Collectors evicted so far, and those of them that had an active alert.
        self.evicted = 0
        self.evicted_alerting = 0

    def __contains__(self, collector_type: str) -> bool:
        return collector_type in self._tier

    def __len__(self) -> int:
        return len(self._tier)

    @property
    def full(self) -> bool:
        return len(self._tier) >= self.limit

    def seen(self, collector_type: str, succeeded: bool) -> None:
        """The collector just ran (or was restored); it becomes the most recent. O(1)."""
        if self._has_active(collector_type):
            tier = self._alerting
        else:
            tier = self._healthy if succeeded else self._failing
        current = self._tier.get(collector_type)
        if current is tier:
            tier.move_to_end(collector_type)
            return
        if current is not None:
            del current[collector_type]
        tier[collector_type] = None
        self._tier[collector_type] = tier

    def make_room(self) -> None:
        """Evict one collector if the roster is full (before a new one is tracked)."""
        if len(self._tier) < self.limit:
            return
        victim, alerting = self._victim()
        del self._tier[victim]
        self.evicted += 1
        if self.evicted == 1:
            logger.warning(
                "gecko_otel: max_collectors=%d reached: the least recently seen collectors "
                "are evicted from memory to make room (healthy ones first); raise "
                "max_collectors (GECKO_OTEL_MAX_COLLECTORS) to keep them all (logged once)",
                self.limit,
            )
        if alerting:
            self.evicted_alerting += 1
            if self.evicted_alerting == 1:
                logger.warning(
                    "gecko_otel: every one of the %d tracked collectors has an active alert: "
                    "%r was evicted and its alerts resolved (logged once)",
                    self.limit,
                    victim,
                )
        for forget in self._forget:
            forget(victim)
        for cache in self._caches:
            cache.pop(victim, None)
        if alerting:
            self._alerts.resolve_collector(victim, self._clock())

    def counts(self) -> dict[str, int]:
        """For ``system_health().dropped`` and the ``gecko.monitor.dropped`` metric."""
        return {"evicted_collectors": self.evicted}

    def limits(self) -> dict[str, int]:
        """For ``system_health().limits``."""
        return {
            "max_collectors": self.limit,
            "tracked_collectors": len(self._tier),
            "evicted_collectors": self.evicted,
        }

    def _victim(self) -> tuple[str, bool]:
        alerting = self._alerting
        for tier in (self._healthy, self._failing):
            while tier:
                name = next(iter(tier))
                del tier[name]
                if not self._has_active(name):
                    return name, False
                # It alerted since its last run (stale, missed_run): keep it.
                alerting[name] = None
                alerting.move_to_end(name, last=False)
                self._tier[name] = alerting
        name, _ = alerting.popitem(last=False)
        return name, self._has_active(name)
