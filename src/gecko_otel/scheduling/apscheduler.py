"""APScheduler 3.x: every job execution a collection run, with no change to job code.

::

    from gecko_otel.scheduling.apscheduler import instrument_scheduler

    scheduler = AsyncIOScheduler()
    instrument_scheduler(scheduler)      # or: opentelemetry-instrument python app.py

What it does, per instrumented scheduler:

* Each execution of a job runs inside `gecko_otel.track_collection`
  (``async with`` for coroutine jobs), so status, result reading, metrics and
  history are those of ``@collection``; the span is current while the job
  runs, so spans the job starts are its children. Collector type: the job
  id, unless ``collector_type`` maps or computes another. Extra span
  attributes: ``faas.trigger="timer"``, ``faas.time`` (the scheduled run
  time), ``faas.cron`` (cron triggers that have a crontab form),
  ``gecko.schedule.trigger`` and ``gecko.schedule.job_id``.
* ``EVENT_JOB_MISSED`` is recorded as a ``missed`` run and
  ``EVENT_JOB_MAX_INSTANCES`` as ``skipped`` (the ``overlap`` rule), each
  with its scheduled time.
* Each job's trigger becomes a schedule expectation (``Monitor.expect``), so
  the watchdog reports runs that never start, even if the scheduler dies.

How runs are wrapped, and why: the executor modules' ``run_job`` and
``run_coroutine_job`` (the functions every built-in executor calls in its
worker) are replaced, in the executor modules only, by callables that look
the job's scheduler up and, when it is instrumented, hand APScheduler's own
function a view of the job whose ``func`` is wrapped, one scheduled time at
a time. So APScheduler keeps doing the misfire check, the events, the
logging and the exception capture exactly as before (a job's exception is
the same object in ``EVENT_JOB_ERROR``); jobs, job stores and triggers are
never modified, so persistent job stores keep pickling the user's function,
and jobs added at any time are covered. Wrapping ``job.func`` in the job
store instead would store our wrapper in the user's job, break
``func_ref`` for persistent stores and show up in ``get_jobs()``.

Process pools are not traced: their jobs run in other processes, whose spans
cannot reach this process's Monitor. The replacement pickles as
APScheduler's own ``run_job``, so such jobs run exactly as before (the
worker never imports gecko-otel); their missed and skipped runs are still
recorded, and no expectation is declared for them. A warning says so once
per executor.

Threading: job wrappers run on the executor's worker thread or event loop;
event listeners on whichever thread APScheduler dispatches the event from.
Nothing here blocks, and nothing raises into jobs or the scheduler: errors
of gecko-otel itself are reported with ``report_internal_error`` and the job
runs as if uninstrumented.
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Collection
from typing import TYPE_CHECKING, Any, cast

from apscheduler.schedulers.base import BaseScheduler

# The module starts with "# type: ignore", so mypy sees no BaseInstrumentor in it.
from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from gecko_otel import _state
from gecko_otel._guard import guarded
from gecko_otel.errors import ConfigError
from gecko_otel.scheduling import _apscheduler_runs as runs
from gecko_otel.scheduling._apscheduler_hooks import (
    EVENTS,
    CollectorTypeOption,
    SchedulerHooks,
    check_collector_type_option,
    logger,
)

if TYPE_CHECKING:
    from gecko_otel._monitor import Monitor

__all__ = [
    "APSchedulerInstrumentor",
    "CollectorTypeOption",
    "instrument_scheduler",
    "is_instrumented",
    "uninstrument_scheduler",
]


# -- public API -----------------------------------------------------------------


def instrument_scheduler(
    scheduler: Any,
    *,
    monitor: Monitor | None = None,
    collector_type: CollectorTypeOption = None,
) -> None:
    """Make every execution of the scheduler's jobs a collection run.

    Call it before or after ``scheduler.start()``, before or after adding
    jobs: jobs added later are covered too. Calling it again with the same
    options does nothing.

    Args:
        scheduler: An APScheduler 3.x scheduler (any ``BaseScheduler``).
        monitor: The Monitor for runs, missed/skipped records and
            expectations. By default the global one (``gecko_otel.setup()``),
            which is created from the environment if it does not exist yet:
            call ``setup()`` first to configure it yourself.
        collector_type: The collector type of each job: a mapping
            ``{job_id: name}`` (other jobs keep their id) or a callable taking
            the ``Job`` and returning the name. The job id by default. A job
            whose function is decorated with ``@gecko_otel.collection`` is
            not wrapped again and keeps the decorator's name.

    Raises:
        ConfigError: ``scheduler`` is not an APScheduler 3.x scheduler,
            ``collector_type`` is neither a mapping of names nor a callable,
            or the scheduler is already instrumented with other options
            (call `uninstrument_scheduler` first).

    Threading: call it from any thread; it takes a module lock briefly.
    """
    if not isinstance(scheduler, BaseScheduler):
        raise ConfigError(
            f"instrument_scheduler() takes an APScheduler 3.x scheduler, got {scheduler!r}"
        )
    check_collector_type_option(collector_type)
    with runs.lock:
        existing = cast("SchedulerHooks | None", runs.registry.get(scheduler))
        if existing is not None:
            if existing.monitor is monitor and existing.collector_type == collector_type:
                return
            raise ConfigError(
                "this scheduler is already instrumented with other options; "
                "call uninstrument_scheduler(scheduler) first"
            )
        if monitor is None and _state.monitor() is None:
            # Expectations and not-started runs need a Monitor to go to.
            from gecko_otel._setup import setup  # noqa: PLC0415 - import cycle

            setup()
        hooks = SchedulerHooks(scheduler, monitor, collector_type)
        runs.registry[scheduler] = hooks
        runs.patch_run_functions()
    scheduler.add_listener(hooks.on_event, EVENTS)
    hooks.adopt_existing(scheduler)


def uninstrument_scheduler(scheduler: Any) -> bool:
    """Undo `instrument_scheduler`; False if the scheduler was not instrumented.

    Removes the listener, withdraws the expectations its jobs declared, and
    puts APScheduler's run functions back once no scheduler is instrumented.
    Runs in progress finish as runs.

    Threading: call it from any thread; it takes a module lock briefly.
    """
    with runs.lock:
        hooks = cast("SchedulerHooks | None", runs.registry.pop(scheduler, None))
        if hooks is None:
            return False
        if not runs.registry:
            runs.restore_run_functions()
    scheduler.remove_listener(hooks.on_event)
    hooks.withdraw_all()
    return True


def is_instrumented(scheduler: Any) -> bool:
    """Whether ``scheduler`` is instrumented (by either entry point)."""
    try:
        return scheduler in runs.registry
    except TypeError:  # not weak-referenceable, so not a scheduler we know
        return False


class APSchedulerInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """The OpenTelemetry instrumentor: every APScheduler scheduler, no code changes.

    Registered under the ``opentelemetry_instrumentor`` entry point as
    ``apscheduler``, so ``opentelemetry-instrument python app.py`` calls
    `instrument` at start-up (and
    ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=apscheduler`` prevents it). From
    then on every scheduler is instrumented when it starts, as by
    `instrument_scheduler`, with the global Monitor (created by
    ``gecko_otel.setup()`` from the ``OTEL_*`` and ``GECKO_OTEL_*`` variables
    if the program has not called ``setup()`` by then). Schedulers already
    running when `instrument` is called are not touched.

    ``instrument(monitor=..., collector_type=...)`` takes the options of
    `instrument_scheduler`. Idempotent (a singleton, as every
    ``BaseInstrumentor``); `uninstrument` restores ``BaseScheduler.start``
    and uninstruments the schedulers it instrumented.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        """The APScheduler versions this instrumentor supports."""
        return ("apscheduler >= 3.6, < 4",)

    def _instrument(self, **kwargs: Any) -> None:
        monitor = kwargs.get("monitor")
        collector_type = kwargs.get("collector_type")
        check_collector_type_option(collector_type)
        schedulers: weakref.WeakSet[Any] = weakref.WeakSet()
        original = BaseScheduler.start

        @functools.wraps(original)
        def start(scheduler: Any, *args: Any, **kw: Any) -> Any:
            with guarded("APScheduler auto-instrumentation"):  # the scheduler starts regardless
                if not is_instrumented(scheduler):
                    instrument_scheduler(scheduler, monitor=monitor, collector_type=collector_type)
                    schedulers.add(scheduler)
            return original(scheduler, *args, **kw)

        with runs.lock:
            BaseScheduler.start = start
            self._gecko_otel_state = (original, start, schedulers)

    def _uninstrument(self, **kwargs: Any) -> None:
        original, start, schedulers = self._gecko_otel_state
        with runs.lock:
            if BaseScheduler.start is start:
                BaseScheduler.start = original
            else:  # someone wrapped it after us; theirs calls ours, which passes through
                logger.warning("BaseScheduler.start was wrapped again after gecko-otel; left as is")
        for scheduler in list(schedulers):
            uninstrument_scheduler(scheduler)
