"""Per instrumented APScheduler scheduler: job plans, event records, expectations.

One `SchedulerHooks` per scheduler holds what
``gecko_otel.scheduling.apscheduler`` works out about its jobs: the
collector type and span attributes of each job (its *plan*), the listener
that records missed and skipped runs, and the expectations declared from
the jobs' triggers.
"""

from __future__ import annotations

import functools
import logging
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from apscheduler.events import (
    EVENT_ALL_JOBS_REMOVED,
    EVENT_EXECUTOR_ADDED,
    EVENT_JOB_ADDED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_MODIFIED,
    EVENT_JOB_REMOVED,
    EVENT_SCHEDULER_STARTED,
)
from apscheduler.executors.pool import ProcessPoolExecutor

from gecko_otel import semconv
from gecko_otel._capture.decorators import usable_collector_type
from gecko_otel._capture.wrappers import Target, wrap_coroutine, wrap_function
from gecko_otel._guard import guarded, report_internal_error
from gecko_otel._setup import installed
from gecko_otel.errors import ConfigError
from gecko_otel.scheduling import _apscheduler_runs as runs
from gecko_otel.scheduling._apscheduler_triggers import Schedule, crontab_of, schedule_of

if TYPE_CHECKING:
    from gecko_otel._monitor import Monitor

logger = logging.getLogger("gecko_otel.scheduling.apscheduler")

#: A job id -> collector type mapping, or a callable from the Job to its collector type.
CollectorTypeOption: TypeAlias = "Mapping[str, str] | Callable[[Any], str] | None"

# Span attribute names (faas.* are the OpenTelemetry semantic conventions).
FAAS_TRIGGER: Final = semconv.FAAS_TRIGGER
FAAS_TIME: Final = semconv.FAAS_TIME
FAAS_CRON: Final = semconv.FAAS_CRON
SCHEDULE_TRIGGER: Final = semconv.SCHEDULE_TRIGGER
SCHEDULE_JOB_ID: Final = semconv.SCHEDULE_JOB_ID
CODE_FUNCTION_NAME: Final = semconv.CODE_FUNCTION_NAME

#: The scheduler events the listener asks for.
EVENTS: Final = (
    EVENT_JOB_MISSED
    | EVENT_JOB_MAX_INSTANCES
    | EVENT_JOB_ADDED
    | EVENT_JOB_MODIFIED
    | EVENT_JOB_REMOVED
    | EVENT_ALL_JOBS_REMOVED
    | EVENT_EXECUTOR_ADDED
    | EVENT_SCHEDULER_STARTED
)

#: Plans cached per scheduler (one per job id), at most.
_MAX_PLANS: Final = 4096


#: What the user's collector_type callable "returned" when it raised.
_RAISED: Final = object()


@dataclass(frozen=True, slots=True)
class Plan:
    """How one job runs, worked out once per job (and again when it changes)."""

    func: Any
    trigger: Any
    collector_type: str
    decorated: bool
    attributes: dict[str, Any]
    #: What each execution runs as: its span attributes and metric attribute
    #: sets are prepared once (per Monitor), not per execution. None when decorated.
    target: Target | None = None
    #: ``func`` in a run of ``target``, for a thread and for an event loop: made
    #: once per plan; each run reads its scheduled time from `runs.scheduled_time`.
    wrapped: Callable[..., Any] | None = None
    wrapped_coroutine: Callable[..., Any] | None = None
    #: The last view of the job handed out, for a thread (False) and an event
    #: loop (True): reused while the job object and what it runs are the same.
    views: dict[bool, JobView] = field(default_factory=dict)


class SchedulerHooks:
    """The listener and per-job state of one instrumented scheduler.

    Threading: ``plan``/``job_view`` run on executor threads and event
    loops, ``on_event`` on whichever thread dispatches the event; the caches
    are guarded by one lock held for dict operations only.
    """

    def __init__(
        self, scheduler: Any, monitor: Monitor | None, collector_type: CollectorTypeOption
    ) -> None:
        # Weak: this object is a value in a WeakKeyDictionary keyed by the scheduler.
        self._scheduler = weakref.ref(scheduler)
        self.monitor = monitor
        self.collector_type = collector_type
        self._lock = threading.Lock()
        self._plans: dict[str, Plan] = {}
        self._declared: dict[str, Schedule] = {}
        #: job id -> the collector type whose expectation the job declared
        self._declared_jobs: dict[str, str] = {}
        self._warned: weakref.WeakSet[Any] = weakref.WeakSet()

    # -- runs --

    def plan(self, job: Any) -> Plan:
        plan = self._plans.get(job.id)  # GIL-atomic: the lock guards changes only
        if plan is not None and plan.func is job.func and plan.trigger is job.trigger:
            return plan
        plan = self._make_plan(job)
        with self._lock:
            if len(self._plans) >= _MAX_PLANS and job.id not in self._plans:
                del self._plans[next(iter(self._plans))]
            self._plans[job.id] = plan
        return plan

    def _make_plan(self, job: Any) -> Plan:
        func = job.func
        decorated = _decorated_collector_type(func)
        if decorated is not None:
            return Plan(func, job.trigger, decorated, True, {})
        attributes: dict[str, Any] = {
            FAAS_TRIGGER: "timer",
            SCHEDULE_TRIGGER: str(job.trigger),
            SCHEDULE_JOB_ID: job.id,
        }
        cron = crontab_of(job.trigger)
        if cron is not None:
            attributes[FAAS_CRON] = cron
        name = _function_name(func)
        if name:
            attributes[CODE_FUNCTION_NAME] = name
        collector_type = self._collector_type_of(job)
        target = Target(collector_type, None, None, self.monitor, attributes)
        return Plan(
            func,
            job.trigger,
            collector_type,
            False,
            attributes,
            target,
            wrap_function(func, target, _scheduled_attributes),
            wrap_coroutine(func, target, _scheduled_attributes),
        )

    def _collector_type_of(self, job: Any) -> str:
        # Job ids and names chosen elsewhere may hold anything: made usable
        # (NUL replaced, long ones cut with a hash) rather than refused.
        job_id = usable_collector_type(str(job.id)) or "job"
        option = self.collector_type
        if option is None:
            return job_id
        if isinstance(option, Mapping):
            chosen = option.get(job.id)
            if isinstance(chosen, str) and chosen.strip():
                return usable_collector_type(chosen)
            return job_id
        name: object = _RAISED
        with guarded(f"collector_type callable for job {job.id!r}"):
            name = option(job)
        if name is _RAISED:  # the user's callable raised (reported): use the id
            return job_id
        if not isinstance(name, str) or not name.strip():
            report_internal_error(
                f"collector_type callable for job {job.id!r}",
                ConfigError(f"it returned {name!r}; it must return a non-empty string"),
            )
            return job_id
        return usable_collector_type(name)

    def job_view(self, job: Any, coroutine: bool) -> JobView | None:
        """``job`` with its function wrapped in a run; None when ``job.func`` is
        a ``@collection`` already (it runs its own).

        The run is the decorator's: the plan's prepared target and wrapper,
        plus the one attribute that changes per execution, ``faas.time``, read
        from `runs.scheduled_time` as the run begins. A view is read-only, so
        executions running at once share it.
        """
        plan = self.plan(job)
        wrapped = plan.wrapped_coroutine if coroutine else plan.wrapped
        if wrapped is None:
            return None
        view = plan.views.get(coroutine)
        if (
            view is None
            or view.job is not job
            or view.args is not job.args
            or view.kwargs is not job.kwargs
            or view.misfire_grace_time != job.misfire_grace_time
        ):
            view = plan.views[coroutine] = JobView(job, wrapped)
        return view

    # -- events --

    def on_event(self, event: Any) -> None:
        """APScheduler listener. Never raises."""
        with guarded("APScheduler event listener"):  # never raise into the scheduler
            code = event.code
            if code == EVENT_JOB_MISSED:
                self._not_started(
                    event,
                    "missed",
                    (event.scheduled_run_time,),
                    "misfire: the run did not start within the job's misfire_grace_time",
                )
            elif code == EVENT_JOB_MAX_INSTANCES:
                self._not_started(
                    event,
                    "skipped",
                    event.scheduled_run_times,
                    "max_instances: the previous run was still going",
                )
            elif code in (EVENT_JOB_ADDED, EVENT_JOB_MODIFIED):
                scheduler = self._scheduler()
                job = scheduler.get_job(event.job_id, event.jobstore) if scheduler else None
                if job is not None:
                    self.declare(job)
            elif code == EVENT_JOB_REMOVED:
                self.withdraw(event.job_id)
            elif code == EVENT_ALL_JOBS_REMOVED:
                self.withdraw_all()
            elif code == EVENT_SCHEDULER_STARTED:
                scheduler = self._scheduler()
                if scheduler is not None:  # jobs loaded from persistent stores
                    self.adopt_existing(scheduler)
            elif code == EVENT_EXECUTOR_ADDED:
                runs.patch_run_functions()  # gevent/tornado/twisted may be imported by now
                self._warn_process_pools()

    def _not_started(self, event: Any, status: str, run_times: Any, reason: str) -> None:
        monitor = self.monitor if self.monitor is not None else installed()
        if monitor is None:
            return
        collector_type = self._collector_type_for_event(event)
        for run_time in run_times:
            monitor.record_not_started(
                collector_type, status, scheduled_time=run_time, reason=reason
            )

    def _collector_type_for_event(self, event: Any) -> str:
        with self._lock:
            plan = self._plans.get(event.job_id)
        if plan is not None:
            return plan.collector_type
        scheduler = self._scheduler()
        job = scheduler.get_job(event.job_id, event.jobstore) if scheduler else None
        if job is not None:
            return self.plan(job).collector_type
        option = self.collector_type
        chosen = option.get(event.job_id) if isinstance(option, Mapping) else None
        if isinstance(chosen, str) and chosen.strip():
            return usable_collector_type(chosen)
        return usable_collector_type(str(event.job_id)) or "job"

    # -- expectations --

    def declare(self, job: Any) -> None:
        """Declare the job's expectation on the Monitor if it is new or changed."""
        if getattr(job, "_jobstore_alias", None) is None:
            return  # pending: declared when the scheduler starts and adds it
        if getattr(job, "next_run_time", None) is None:
            # Paused. Added paused, it is not expected to run until resumed;
            # paused later, the expectation already declared stays, so the
            # watchdog reports the runs it misses.
            return
        if not self._runs_here(job):
            return
        schedule = schedule_of(job)
        if schedule is None:
            return
        monitor = self.monitor if self.monitor is not None else installed()
        if monitor is None:
            return
        collector_type = self.plan(job).collector_type
        with self._lock:
            self._declared_jobs[job.id] = collector_type
            if self._declared.get(collector_type) == schedule:
                return
            self._declared[collector_type] = schedule
        current = monitor.expectation(collector_type)
        monitor.expect(
            collector_type,
            every=schedule.every,
            cron=schedule.cron,
            grace=schedule.grace,
            # The trigger says when runs start; how long they may take is the
            # user's to say (@collection(max_runtime=...) or Monitor.expect).
            max_runtime=current.max_runtime if current is not None else None,
            timezone=schedule.timezone,
            first_due=job.next_run_time,
        )

    def withdraw(self, job_id: str) -> None:
        """The job is gone: withdraw the expectation it declared. Never raises."""
        with self._lock:
            collector_type = self._declared_jobs.pop(job_id, None)
            if collector_type is None or collector_type in self._declared_jobs.values():
                return  # unknown, or other jobs still run as this collector
            self._declared.pop(collector_type, None)
        monitor = self.monitor if self.monitor is not None else installed()
        if monitor is not None:
            monitor.unexpect(collector_type)

    def withdraw_all(self) -> None:
        """Withdraw every expectation this scheduler declared (on uninstrument)."""
        with self._lock:
            job_ids = list(self._declared_jobs)
        for job_id in job_ids:
            self.withdraw(job_id)

    def adopt_existing(self, scheduler: Any) -> None:
        """Expectations for the jobs a running scheduler already has. Never raises."""
        # Instrumenting must not break the scheduler.
        with guarded("APScheduler instrumentation of existing jobs"):
            self._warn_process_pools()
            for job in scheduler.get_jobs():
                self.declare(job)

    def _runs_here(self, job: Any) -> bool:
        scheduler = self._scheduler()
        executors = getattr(scheduler, "_executors", None) or {}
        return not isinstance(executors.get(job.executor), ProcessPoolExecutor)

    def _warn_process_pools(self) -> None:
        scheduler = self._scheduler()
        for alias, executor in list((getattr(scheduler, "_executors", None) or {}).items()):
            if isinstance(executor, ProcessPoolExecutor) and executor not in self._warned:
                self._warned.add(executor)
                logger.warning(
                    "gecko-otel does not trace jobs on the process pool executor %r: they run "
                    "in other processes. Their missed and skipped runs are still recorded.",
                    alias,
                )


class JobView:
    """A job as APScheduler's run functions see it, with ``func`` replaced.

    What ``run_job`` reads of every job is copied; anything else is looked up
    on the job. The job is held weakly: a view is kept for the job's next
    execution, and the job holds its scheduler, which must stay collectable
    (the registry of instrumented schedulers is keyed by it, weakly).
    """

    __slots__ = ("_job", "args", "func", "id", "kwargs", "misfire_grace_time")

    def __init__(self, job: Any, func: Callable[..., Any]) -> None:
        self._job = weakref.ref(job)
        self.func = func
        self.id = job.id
        self.args = job.args
        self.kwargs = job.kwargs
        self.misfire_grace_time = job.misfire_grace_time

    @property
    def job(self) -> Any:
        """The job (None once it is gone: a view is made again for a live one)."""
        return self._job()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._job(), name)

    def __str__(self) -> str:
        return str(self._job())

    def __repr__(self) -> str:
        return repr(self._job())


def check_collector_type_option(option: object) -> None:
    if option is None or callable(option):
        return
    if isinstance(option, Mapping):
        for job_id, name in option.items():
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(
                    f"collector_type[{job_id!r}] must be a non-empty string, got {name!r}"
                )
        return
    raise ConfigError(
        "collector_type must be a mapping {job_id: collector_type} or a callable "
        f"taking the Job, got {option!r}"
    )


def _decorated_collector_type(func: Any) -> str | None:
    """The ``@collection`` name of ``func`` (through ``functools.partial``), or None."""
    while isinstance(func, functools.partial):
        func = func.func
    name = getattr(func, "__gecko_otel_collector_type__", None)
    return name if isinstance(name, str) else None


def _function_name(func: Any) -> str | None:
    while isinstance(func, functools.partial):
        func = func.func
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    module = getattr(func, "__module__", None)
    if not isinstance(qualname, str):
        return None
    return f"{module}.{qualname}" if isinstance(module, str) else qualname


def _scheduled_attributes() -> dict[str, str] | None:
    """The span attributes of the scheduled run beginning here: its ``faas.time``."""
    moment = runs.scheduled_time.get()
    return None if moment is None else {FAAS_TIME: _iso(moment)}


def _iso(moment: datetime) -> str:
    """ISO 8601 in UTC, as ``faas.time`` wants it: ``2024-01-02T03:04:05.000006Z``."""
    return (
        moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")
        + "Z"
    )
