"""How a run's end is read: an exception's status (timeout, cancelled, failure)
and ``error.type``, and what a returned result object says."""

from __future__ import annotations

import sys
from typing import Final, NamedTuple

from gecko_otel._values.records import ExecutionStatus

#: Exceptions that end a run as cancelled, besides asyncio's own.
_CANCELLATIONS: Final = (KeyboardInterrupt, SystemExit)


def error_type_of(exc: BaseException) -> str:
    """The ``error.type`` of an exception: its qualified class name."""
    cls = type(exc)
    module = cls.__module__
    # As the SDK's exception.type: only builtins go without their module.
    if module == "builtins":
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def classify_exception(exc: BaseException) -> ExecutionStatus:
    """Status of a run that raised ``exc``: timeout, cancelled or failure.

    asyncio's and concurrent.futures' exceptions are looked up only if those
    modules are loaded (an exception of theirs implies they are), so
    ``import gecko_otel`` does not pay for importing asyncio.
    """
    if isinstance(exc, TimeoutError):  # asyncio's and concurrent's too, from 3.11
        return ExecutionStatus.TIMEOUT
    if isinstance(exc, _CANCELLATIONS):
        return ExecutionStatus.CANCELLED
    # getattr: another thread may be importing the module, its names not yet set.
    asyncio = sys.modules.get("asyncio")
    cancelled = getattr(asyncio, "CancelledError", None)
    if cancelled is not None and isinstance(exc, cancelled):
        return ExecutionStatus.CANCELLED
    for module in (asyncio, sys.modules.get("concurrent.futures")):
        timeout = getattr(module, "TimeoutError", None)  # classes of their own on 3.10
        if timeout is not None and isinstance(exc, timeout):
            return ExecutionStatus.TIMEOUT
    return ExecutionStatus.FAILURE


#: Results that are values, not result objects: not read (a tuple: a union is slower).
PLAIN_RESULTS: Final = (str, bytes, int, float, list, tuple, dict, set)


class ResultReport(NamedTuple):
    """What a returned result object says about its run."""

    #: Its ``records_collected``, when a non-negative int.
    records: int | None
    #: Whether its ``success`` is False.
    failed: bool
    errors: list[object]
    warnings: list[object]


def read_result(result: object) -> ResultReport:
    """Read ``records_collected``, ``success``, ``errors`` and ``warnings`` where the
    result has them (as the GeckoTerminal collector's ``CollectionResult`` does).

    Raises:
        Exception: One of them is a property that raised (the caller logs it).
    """
    records = getattr(result, "records_collected", None)
    success = getattr(result, "success", None)
    errors = getattr(result, "errors", None)
    warnings = getattr(result, "warnings", None)
    if not isinstance(records, int) or isinstance(records, bool) or records < 0:
        records = None
    return ResultReport(records, success is False, _messages(errors), _messages(warnings))


def _messages(value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, list | tuple):  # a str or bytes is one message, as anything else
        return list(value)
    return [value]
