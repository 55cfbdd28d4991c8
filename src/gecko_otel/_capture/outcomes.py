"""How an exception ends a run: its status (timeout, cancelled, failure) and its
``error.type``."""

from __future__ import annotations

import sys
from typing import Final

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
