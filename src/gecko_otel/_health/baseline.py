"""Each collector's usual records per run and run time, learned from its own runs.

A collector that "succeeds" while collecting 3 records instead of 500, or
runs 8 times slower yet under every fixed threshold, looks healthy to fixed
rules. The baseline compares each run with the collector's own history.

**The estimator.** Records (as ``log(1 + records)``) and run time (as
``log(seconds)``) are each tracked by a robust exponentially weighted
centre and spread:

* during warm-up, the exact median and MAD of the runs so far (at most
  `EXACT_RUNS` values are kept, then dropped);
* afterwards, O(1) per run: the residual ``x - centre`` is clipped to
  `CLIP` spreads (a Huber step, so one wild run barely moves it), the centre
  moves by ``ALPHA`` times the clipped residual, and the spread is the
  weighted mean of the clipped residuals' size (scaled to a standard
  deviation). ``ALPHA`` weighs about the last `WINDOW` runs.

Logs make the noise of a collector multiplicative, as it is (a 50 % swing
of a 500-record collector and of a 5-record one look alike), and a median
with a MAD-like spread is not dragged by the outliers it must catch. A
t-digest would give exact quantiles at 10-100 times the memory and cost;
this gives the centre and band the rules need in a few floats, which are
also what is stored and shared between processes.

The rules on top of it, `anomalies` (``records_anomaly``,
``duration_anomaly``, ``no_data``), are checked with the others by
`gecko_otel._health.rules`.

**What a run is judged against** (after ``anomaly_warmup_runs``):

* records are low under ``median x max(records_anomaly_factor, min(0.5,
  low band / median))``, where the low band is ``centre - BAND spreads``:
  a steady collector is held to its band (down to half its median), a
  noisy one to the factor. (Compared on the ``log(1 + records)`` scale,
  where that is ``centre + log(share)``: exact for medians well above 1.)
  Zero records are low when the collector usually collects some (median of
  at least 1, and fewer than 5 % of its runs empty).
* run time is high over ``median x min(duration_anomaly_factor, max(2,
  high band / median))``, and at least `MIN_SLOWDOWN` seconds over the median.

An anomalous run still teaches the baseline, at a tenth of the weight: a
lasting change becomes the new normal over some hundreds of runs, not three.

Threading: guarded by the collector's state lock, like `CollectorState`.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Final

from gecko_otel._values.health import (
    RULE_DURATION_ANOMALY,
    RULE_NO_DATA,
    RULE_RECORDS_ANOMALY,
    AlertLevel,
    BaselineState,
    Condition,
    Usual,
    span_text,
)

if TYPE_CHECKING:
    from gecko_otel._config import Thresholds

#: Runs the weighted estimates mostly remember (the weight of a run is 2/(WINDOW+1)).
WINDOW: Final = 50
ALPHA: Final = 2.0 / (WINDOW + 1)
#: An anomalous run teaches the baseline with this share of a normal run's weight.
ANOMALOUS_WEIGHT: Final = 0.1
#: Residuals beyond this many spreads are clipped before they move the estimates.
CLIP: Final = 2.5
#: The usual range: the centre plus or minus this many spreads (log scale).
BAND: Final = 2.0
#: The smallest spread (log scale): a perfectly steady collector still has a
#: band of about +-16 %.
MIN_SPREAD: Final = 0.05
#: Runs whose exact values are kept to start the estimates (median and MAD).
EXACT_RUNS: Final = 32
#: Processes sharing a baseline exchange it until their centres are this
#: close (log scale: 1 %).
SHARED_TOLERANCE: Final = 0.01
#: Records of a usual run at least, for an empty run to be anomalous.
MIN_USUAL_RECORDS: Final = 1.0
#: Share of empty runs under which an empty run is anomalous.
MAX_ZERO_SHARE: Final = 0.05
#: Seconds a run must be slower than its median by, to be anomalous at all.
MIN_SLOWDOWN: Final = 1.0
#: How far the band may tighten the factors: records at least half the
#: median, run time at most twice the median, are never anomalous.
RECORDS_BAND_CAP: Final = 0.5
DURATION_BAND_CAP: Final = 2.0
_LOG_MIN_USUAL: Final = math.log1p(MIN_USUAL_RECORDS)
_LOG_RECORDS_CAP: Final = math.log(RECORDS_BAND_CAP)
_LOG_DURATION_CAP: Final = math.log(DURATION_BAND_CAP)
#: MAD (and mean clipped absolute residual) to a normal standard deviation.
_MAD_TO_SIGMA: Final = 1.4826
_MEAN_ABS_TO_SIGMA: Final = 1.3


class Estimate:
    """A robust weighted centre and spread of one quantity (log scale)."""

    __slots__ = ("center", "count", "exact", "spread")

    def __init__(self) -> None:
        self.center = 0.0
        self.spread = MIN_SPREAD
        self.count = 0
        self.exact: list[float] | None = []

    def learn(self, x: float, weight: float = ALPHA) -> None:
        """Take one value (``weight``: its share, `ALPHA` for a normal run)."""
        self.count += 1
        if self.exact is None:  # the common case first: a few float operations
            residual = x - self.center
            limit = CLIP * self.spread
            residual = -limit if residual < -limit else limit if residual > limit else residual
            self.center += weight * residual
            spread = self.spread
            spread += weight * (_MEAN_ABS_TO_SIGMA * abs(residual) - spread)
            self.spread = spread if spread > MIN_SPREAD else MIN_SPREAD
            return
        exact = self.exact
        exact.append(x)
        ordered = sorted(exact)
        middle = _median(ordered)
        self.center = middle
        deviation = _median(sorted(abs(v - middle) for v in ordered))
        self.spread = max(MIN_SPREAD, _MAD_TO_SIGMA * deviation)
        if len(exact) >= EXACT_RUNS:
            self.exact = None

    def restore(self, center: float, spread: float, count: int) -> None:
        """Take stored values (the exact warm-up values are not kept: weighted from now)."""
        self.center, self.spread, self.count = center, max(MIN_SPREAD, spread), count
        self.exact = None if count else []

    def blend(self, center: float, spread: float, count: int) -> None:
        """Meet another process's estimate, each weighted by the runs it learned from
        (at most `WINDOW`: older runs weigh little in either)."""
        if not self.count:
            self.restore(center, spread, count)
            return
        if not count:
            return
        share = _share(count, self.count)
        self.center += share * (center - self.center)
        self.spread = max(MIN_SPREAD, self.spread + share * (spread - self.spread))
        self.count = max(self.count, count)
        self.exact = None


class Baseline:
    """One collector's baseline and anomaly streaks.

    The bars a run is judged against are computed once after each run
    (`set_bars`), so judging the next one is two comparisons; the pipeline
    reads the same bars to tell which runs may wait in a batch.
    """

    __slots__ = (
        "_usual",
        "duration",
        "last_duration",
        "last_records",
        "last_records_at",
        "low_bar",
        "low_streak",
        "ready",
        "records",
        "slow_bar",
        "slow_floor",
        "slow_streak",
        "zero_low",
        "zero_share",
    )

    def __init__(self) -> None:
        self.records = Estimate()
        self.duration = Estimate()
        self.zero_share = 0.0
        self.low_streak = 0
        self.slow_streak = 0
        self.last_records = 0
        self.last_duration: float | None = None
        #: When a run last collected records (unix seconds), for ``no_data``.
        self.last_records_at: float | None = None
        #: The next run is anomalous with ``log(1 + records)`` under ``low_bar``
        #: (an empty one only with ``zero_low``), or ``log(seconds)`` over
        #: ``slow_bar`` and seconds over ``slow_floor``. Never while warming up.
        self.low_bar = -math.inf
        self.zero_low = False
        #: Whether the warm-up is over (runs are judged).
        self.ready = False
        self.slow_bar = math.inf
        self.slow_floor = math.inf
        #: The usual values and the estimates they come from (centres, spreads,
        #: whether each has a run): health() asks far more often than runs change them.
        self._usual: tuple[tuple[float | bool, ...], Usual | None, Usual | None] = ((), None, None)

    def usual(self) -> tuple[Usual | None, Usual | None]:
        """The usual records per run and run time in seconds (None before a run)."""
        r, d = self.records, self.duration
        key = (r.center, r.spread, r.count > 0, d.center, d.spread, d.count > 0)
        cached = self._usual
        if cached[0] != key:
            cached = (
                key,
                usual_records(r.center, r.spread) if r.count else None,
                usual_duration(d.center, d.spread) if d.count else None,
            )
            self._usual = cached
        return cached[1], cached[2]

    def usual_records(self) -> Usual | None:
        """The usual records per run, or None before a run."""
        return self.usual()[0]

    def usual_duration(self) -> Usual | None:
        """The usual run time in seconds, or None before a timed run."""
        return self.usual()[1]

    def observe(self, records: int, duration: float | None, now: float, t: Thresholds) -> None:
        """Judge one successful or partial run ending at ``now`` against the
        bars, update the streaks, learn from it, and set the next bars."""
        x = math.log1p(records)
        low = (x < self.low_bar and records > 0) or (records == 0 and self.zero_low)
        y = math.log(duration) if duration is not None and duration > 0 else None
        slow = y is not None and y > self.slow_bar and duration > self.slow_floor  # type: ignore[operator]
        self.low_streak = self.low_streak + 1 if low else 0
        self.slow_streak = self.slow_streak + 1 if slow else 0
        self.last_records, self.last_duration = records, duration
        estimate = self.records
        estimate.learn(x, ALPHA * ANOMALOUS_WEIGHT if low else ALPHA)
        if y is not None:
            self.duration.learn(y, ALPHA * ANOMALOUS_WEIGHT if slow else ALPHA)
        if records > 0:
            self.last_records_at = now
            if self.zero_share:
                self.zero_share -= max(ALPHA, 1.0 / estimate.count) * self.zero_share
        elif not low:  # an empty run judged anomalous must not make empty runs usual
            # A plain average over the first runs, then weighted like the estimates.
            weight = max(ALPHA, 1.0 / estimate.count)
            self.zero_share += weight * (1.0 - self.zero_share)
        self.set_bars(t)

    def set_bars(self, t: Thresholds) -> None:
        """Compute what the next run is judged against (see the module docs).

        The bars are on the estimates' log scales, so judging and setting
        them costs no exponential: records are low under ``log(1 + median x
        share)``, approximated as ``centre + log(share)``. Computed first,
        then assigned (``ready`` last): `may_be_anomalous` reads them unlocked.
        """
        low_bar, zero_low, slow_bar, slow_floor = -math.inf, False, math.inf, math.inf
        ready = self.records.count >= t.anomaly_warmup_runs
        if ready:
            factor = t.records_anomaly_factor
            estimate = self.records
            if factor is not None and estimate.center >= _LOG_MIN_USUAL:
                # log(max(factor, min(cap, low / median))) on the log scale
                share = max(_log(factor), min(_LOG_RECORDS_CAP, -BAND * estimate.spread))
                low_bar = estimate.center + share
                zero_low = self.zero_share < MAX_ZERO_SHARE  # empty runs are rare
            factor = t.duration_anomaly_factor
            estimate = self.duration
            if factor is not None and estimate.count:
                ratio = min(_log(factor), max(_LOG_DURATION_CAP, BAND * estimate.spread))
                slow_bar = estimate.center + ratio
                slow_floor = math.exp(estimate.center) + MIN_SLOWDOWN
        self.low_bar, self.zero_low, self.slow_bar, self.slow_floor = (
            low_bar,
            zero_low,
            slow_bar,
            slow_floor,
        )
        self.ready = ready

    def state(self) -> BaselineState:
        """What is stored and shared."""
        r, d = self.records, self.duration
        return BaselineState(
            runs=r.count,
            records_center=r.center,
            records_spread=r.spread,
            zero_share=self.zero_share,
            duration_runs=d.count,
            duration_center=d.center,
            duration_spread=d.spread,
            last_records_at=self.last_records_at,
        )

    def adopt(self, other: BaselineState, t: Thresholds, *, blend: bool) -> bool:
        """Take a stored baseline (``blend``: meet another process's halfway).

        Without ``blend`` only a baseline that has learned nothing yet takes
        it (a restart); runs learned here are never overwritten. Returns
        whether a centre moved by more than `SHARED_TOLERANCE`: the other
        processes should then hear of it, until they agree.
        """
        r, d = self.records, self.duration
        before = (r.center, d.center)
        if blend:
            share = _share(other.runs, r.count)
            r.blend(other.records_center, other.records_spread, other.runs)
            d.blend(other.duration_center, other.duration_spread, other.duration_runs)
            self.zero_share += share * (other.zero_share - self.zero_share)
        elif not r.count:
            r.restore(other.records_center, other.records_spread, other.runs)
            d.restore(other.duration_center, other.duration_spread, other.duration_runs)
            self.zero_share = other.zero_share
        else:
            return False
        if other.last_records_at is not None and (
            self.last_records_at is None or other.last_records_at > self.last_records_at
        ):
            self.last_records_at = other.last_records_at
        self.set_bars(t)
        return max(abs(r.center - before[0]), abs(d.center - before[1])) > SHARED_TOLERANCE

    def may_be_anomalous(self, records: int, duration: float | None) -> bool:
        """Whether a run might be judged anomalous (so it must not wait in a batch).

        While warming up, every run: the bars must come from every run so far,
        not from those a batch has not yet processed.
        """
        if not self.ready:
            return True
        if records == 0:
            return self.zero_low
        if math.log1p(records) < self.low_bar:
            return True
        return duration is not None and duration > self.slow_floor


def no_data(b: Baseline, last_success: float | None, t: Thresholds, now: float) -> bool:
    """Runs succeed, yet none has collected records for ``no_data_after``."""
    since = b.last_records_at
    return (
        t.no_data_after is not None
        and since is not None
        and last_success is not None
        and last_success > since
        and now - since >= t.no_data_after
    )


def anomalies(
    b: Baseline, last_success: float | None, t: Thresholds, now: float
) -> list[Condition]:
    """The baseline's rules that hold: records_anomaly, duration_anomaly, no_data."""
    out = []
    records = b.usual_records()
    if b.low_streak >= t.anomaly_runs and records is not None:
        out.append(
            Condition(
                rule=RULE_RECORDS_ANOMALY,
                level=AlertLevel.CRITICAL
                if b.low_streak >= 2 * t.anomaly_runs
                else AlertLevel.WARNING,
                message=f"collected {b.last_records} records; its usual is {records.text()} "
                f"({b.low_streak} runs in a row)",
                figures={
                    "records": b.last_records,
                    "usual_records": round(records.median, 1),
                    "usual_low": round(records.low, 1),
                    "usual_high": round(records.high, 1),
                    "runs_in_a_row": b.low_streak,
                    "threshold": t.records_anomaly_factor,
                },
            )
        )
    duration = b.usual_duration()
    if b.slow_streak >= t.anomaly_runs and duration is not None and b.last_duration is not None:
        out.append(
            Condition(
                rule=RULE_DURATION_ANOMALY,
                level=AlertLevel.WARNING,
                message=f"ran {span_text(b.last_duration)}; its usual is {duration.text('s')} "
                f"({b.slow_streak} runs in a row)",
                figures={
                    "duration": round(b.last_duration, 3),
                    "usual_duration": round(duration.median, 3),
                    "usual_low": round(duration.low, 3),
                    "usual_high": round(duration.high, 3),
                    "runs_in_a_row": b.slow_streak,
                    "threshold": t.duration_anomaly_factor,
                },
            )
        )
    if t.no_data_after is not None and no_data(b, last_success, t, now):
        since = now - (b.last_records_at or now)
        out.append(
            Condition(
                rule=RULE_NO_DATA,
                level=AlertLevel.WARNING,
                message=f"runs succeed but none has collected records in {span_text(since)} "
                f"(threshold {span_text(t.no_data_after)})",
                figures={"seconds_since_records": round(since, 1), "threshold": t.no_data_after},
            )
        )
    return out


def usual_records(center: float, spread: float) -> Usual:
    """Usual records per run from an estimate on the ``log(1 + records)`` scale."""
    return Usual(
        math.expm1(center),
        max(0.0, math.expm1(center - BAND * spread)),
        math.expm1(center + BAND * spread),
    )


def usual_duration(center: float, spread: float) -> Usual:
    """Usual run time in seconds from an estimate on the ``log(seconds)`` scale."""
    return Usual(
        math.exp(center), math.exp(center - BAND * spread), math.exp(center + BAND * spread)
    )


def usual_of(state: BaselineState) -> tuple[Usual | None, Usual | None]:
    """The usual records and run time a stored baseline describes."""
    return (
        usual_records(state.records_center, state.records_spread) if state.runs else None,
        usual_duration(state.duration_center, state.duration_spread)
        if state.duration_runs
        else None,
    )


def _share(theirs: int, ours: int) -> float:
    """The other side's weight when two baselines meet (by runs, each at most `WINDOW`)."""
    theirs, ours = min(theirs, WINDOW), min(ours, WINDOW)
    return theirs / (theirs + ours) if theirs + ours else 0.0


@functools.lru_cache(maxsize=64)
def _log(factor: float) -> float:
    """``log(factor)``, for the few factors a Monitor has (each run sets its bars)."""
    return math.log(factor)


def _median(ordered: list[float]) -> float:
    n = len(ordered)
    middle = n // 2
    return ordered[middle] if n % 2 else (ordered[middle - 1] + ordered[middle]) / 2
