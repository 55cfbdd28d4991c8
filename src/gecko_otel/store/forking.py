"""``fork()`` never copies a store connection in the middle of a write.

SQLite keeps each process's lock state in the library itself, shared by
every connection to one file. A child forked while the writer holds the
write lock inherits a copy that says so, held by a connection (on a thread)
the child does not have: every connection the child opens to that file then
waits in ``BEGIN IMMEDIATE`` until it gives up, and the child's runs are lost.
SQLite's rules are: open new connections in the child, and never use, nor
even close, one opened in the parent (closing may clean up what the parent
is still writing).

So every write transaction (`gecko_otel.store.engine.write_transaction`) is open only between
forks: ``fork()`` waits until the open ones end (a few milliseconds; at most
`FORK_WAIT`), and new ones wait until the fork is done. In the child,
`keep_inherited` holds the pool of connections copied from the parent so
that they are never closed there (`Store.after_fork` then drops them from
the engine with ``dispose(close=False)``, the SQLAlchemy recipe for
``fork()``), and the child opens its own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Final

logger = logging.getLogger("gecko_otel.store")

#: Seconds ``fork()`` waits for the store's open write transactions to end.
FORK_WAIT: Final = 2.0


class _ForkGate:
    """Write transactions open, and a fork waiting for none to be."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._open = 0
        self._forking = False

    @contextmanager
    def transaction(self) -> Iterator[None]:
        cond = self._cond
        with cond:
            while self._forking:
                cond.wait()
            self._open += 1
        try:
            yield
        finally:
            with cond:
                self._open -= 1
                cond.notify_all()

    def before_fork(self) -> None:
        deadline = time.monotonic() + FORK_WAIT
        with self._cond:
            self._forking = True
            while self._open:
                left = deadline - time.monotonic()
                if left <= 0:
                    logger.warning(
                        "gecko_otel: fork() while a store write was still open after %.0f s; "
                        "the child may be unable to write to a SQLite store",
                        FORK_WAIT,
                    )
                    return
                self._cond.wait(left)

    def after_fork_in_parent(self) -> None:
        with self._cond:
            self._forking = False
            self._cond.notify_all()

    def after_fork_in_child(self) -> None:
        # Transactions open in the parent belong to threads the child does not have.
        self._reset()


_gate = _ForkGate()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_gate.before_fork,
        after_in_parent=_gate.after_fork_in_parent,
        after_in_child=_gate.after_fork_in_child,
    )


def no_fork_inside() -> AbstractContextManager[None]:
    """Hold off ``fork()`` while the block (a write transaction) runs (see the module docs)."""
    return _gate.transaction()


#: Connection pools inherited from a parent: never closed in this process.
_inherited: list[object] = []


def keep_inherited(pool: object) -> None:
    """Keep a pool copied by ``fork()`` alive, so its connections are never closed here."""
    _inherited.append(pool)
