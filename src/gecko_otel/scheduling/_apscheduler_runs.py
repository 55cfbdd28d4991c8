"""APScheduler's run functions, replaced in its executor modules.

Every built-in executor calls ``run_job`` (or, for coroutine jobs,
``run_coroutine_job``) from ``apscheduler.executors.base`` in its worker;
each executor module imported them by name. We replace those names in the
executor modules (never in ``base``, whose ``run_job`` must stay importable
by name for process pools) with callables that find the job's scheduler in
`registry` and, when it is instrumented, give APScheduler's own
function a view of the job whose ``func`` runs inside a collection run, one
scheduled time at a time (in `scheduled_time`, for the run's ``faas.time``).
"""

from __future__ import annotations

import functools
import importlib
import logging
import sys
import threading
import weakref
from collections.abc import Callable
from contextvars import ContextVar
from types import ModuleType
from typing import Any, Final, Protocol

from gecko_otel._guard import is_strict, report_internal_error


class JobHooks(Protocol):
    """What a run function asks of an instrumented scheduler's hooks.

    Declared here because the hooks module imports this one.
    """

    def job_view(self, job: Any, coroutine: bool) -> Any:
        """A view of ``job`` whose ``func`` runs inside a collection run, or None
        when ``job.func`` runs its own (a ``@collection``)."""


logger = logging.getLogger("gecko_otel.scheduling.apscheduler")

#: Executor modules and the run functions they imported from
#: ``apscheduler.executors.base``. The first three are imported here; the
#: others need gevent, tornado or twisted and are patched once imported.
_RUN_FUNCTIONS: Final = (
    ("apscheduler.executors.pool", "run_job"),
    ("apscheduler.executors.asyncio", "run_job"),
    ("apscheduler.executors.asyncio", "run_coroutine_job"),
    ("apscheduler.executors.debug", "run_job"),
    ("apscheduler.executors.gevent", "run_job"),
    ("apscheduler.executors.tornado", "run_job"),
    ("apscheduler.executors.tornado", "run_coroutine_job"),
    ("apscheduler.executors.twisted", "run_job"),
)
_EAGER_MODULES: Final = (
    "apscheduler.executors.pool",
    "apscheduler.executors.asyncio",
    "apscheduler.executors.debug",
)

#: The scheduled time of the execution the run function is running, read by the
#: job's wrapper as its run begins (a context variable: each thread and task has its own).
scheduled_time: ContextVar[Any] = ContextVar("gecko_otel_scheduled_time", default=None)

#: Guards `registry`, the patches and ``BaseScheduler.start``.
lock = threading.RLock()
#: Instrumented schedulers. Read without the lock on job threads (a dict lookup).
registry: weakref.WeakKeyDictionary[Any, JobHooks] = weakref.WeakKeyDictionary()
#: (module, attribute, original, replacement) for each run function replaced.
_patched: list[tuple[ModuleType, str, Any, Any]] = []


def _view_of(job: Any, coroutine: bool) -> Any:
    """A view of an instrumented job whose ``func`` runs inside a collection run;
    None to run the job as it is."""
    try:  # hot path: a try is free, a guard object is not
        scheduler = getattr(job, "_scheduler", None)
        hooks = registry.get(scheduler) if scheduler is not None else None
        return None if hooks is None else hooks.job_view(job, coroutine)
    except Exception as exc:  # the job runs uninstrumented
        report_internal_error("APScheduler job instrumentation", exc)
        if is_strict():  # as `guarded` does: a test asked to see it
            raise
        return None


class _RunJob:
    """Replaces ``run_job`` in an executor module.

    Pickles as the function it replaces: a process pool ships APScheduler's
    own ``run_job`` to its workers, which then run the job untraced.
    """

    __slots__ = ("original",)

    def __init__(self, original: Callable[..., list[Any]]) -> None:
        self.original = original

    def __call__(
        self, job: Any, jobstore_alias: Any, run_times: list[Any], logger_name: str
    ) -> list[Any]:
        view = _view_of(job, coroutine=False)
        if view is None:
            return self.original(job, jobstore_alias, run_times, logger_name)
        events: list[Any] = []
        for run_time in run_times:  # one call each, so each run knows its scheduled time
            token = scheduled_time.set(run_time)
            try:
                events.extend(self.original(view, jobstore_alias, [run_time], logger_name))
            finally:
                scheduled_time.reset(token)
        return events

    def __reduce__(self) -> tuple[Any, ...]:
        return (functools.partial, (self.original,))


class _RunCoroutineJob:
    """Replaces ``run_coroutine_job`` in an executor module (coroutine jobs on an event loop)."""

    __slots__ = ("original",)

    def __init__(self, original: Callable[..., Any]) -> None:
        self.original = original

    async def __call__(
        self, job: Any, jobstore_alias: Any, run_times: list[Any], logger_name: str
    ) -> list[Any]:
        view = _view_of(job, coroutine=True)
        if view is None:
            return await self.original(job, jobstore_alias, run_times, logger_name)  # type: ignore[no-any-return]
        events: list[Any] = []
        for run_time in run_times:  # the job's coroutine runs in this task's context
            token = scheduled_time.set(run_time)
            try:
                events.extend(await self.original(view, jobstore_alias, [run_time], logger_name))
            finally:
                scheduled_time.reset(token)
        return events

    def __reduce__(self) -> tuple[Any, ...]:
        return (functools.partial, (self.original,))


def patch_run_functions() -> None:
    """Replace the run functions of every loaded executor module (idempotent)."""
    with lock:
        _patch()


def _patch() -> None:
    for name in _EAGER_MODULES:
        importlib.import_module(name)
    done = {(module.__name__, attribute) for module, attribute, _, _ in _patched}
    for module_name, attribute in _RUN_FUNCTIONS:
        module = sys.modules.get(module_name)
        if module is None or (module_name, attribute) in done:
            continue
        original = getattr(module, attribute, None)
        if original is None or isinstance(original, _RunJob | _RunCoroutineJob):
            continue
        replacement = (_RunCoroutineJob if attribute == "run_coroutine_job" else _RunJob)(original)
        setattr(module, attribute, replacement)
        _patched.append((module, attribute, original, replacement))


def restore_run_functions() -> None:
    """Put the original run functions back (call with `lock` held)."""
    while _patched:
        module, attribute, original, replacement = _patched.pop()
        if getattr(module, attribute, None) is replacement:
            setattr(module, attribute, original)
        else:  # wrapped again after us: leave theirs, ours passes through
            logger.warning("%s.%s was replaced after gecko-otel; left as is", module, attribute)
