"""The batch in flight: written in one transaction, and stored or counted, never both.

`Batch` is the batch the writer thread is writing. ``shutdown()`` may give
up on a writer stuck inside a write (a database that stalls, a SQLite file
locked by another process); the batch is then counted as lost at once, for
the process may end right after. The writer may still finish that write
later, so each commit first claims the batch (`Batch.may_commit`, asked just
before COMMIT) and the shutdown claims what is left (`Batch.abandon`):
whichever comes first wins, the other does nothing, and every item is stored
or counted, never both, never neither. A commit already under way when
shutdown gives up decides alone (its items are stored, or counted by the
writer when it fails).

`write_batch` writes a batch in one transaction; when the database refuses
it, row by row, so one bad row costs only itself.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from gecko_otel.store.engine import is_transient
from gecko_otel.store.losses import ALERT, HEALTH, METRIC, RUN, BatchAbandoned, Losses

if TYPE_CHECKING:
    from gecko_otel.store.store import Store


class Batch:
    """The items being written, and who owns their fate: the writer's commit or the shutdown.

    Threading: every method is safe from any thread.
    """

    __slots__ = ("_committing", "_lock", "abandoned", "items")

    def __init__(self, items: list[tuple[str, Any]]) -> None:
        self.items = items
        self.abandoned = False
        self._committing = False
        self._lock = threading.Lock()

    def may_commit(self) -> bool:
        """Just before COMMIT: claim the batch's fate (False: shutdown counted it, roll back)."""
        with self._lock:
            if self.abandoned:
                return False
            self._committing = True
            return True

    def settle(self, stored: int) -> None:
        """After a commit (``stored`` items, from the front) or a failed attempt (0)."""
        with self._lock:
            self._committing = False
            del self.items[:stored]

    def take(self, n: int | None = None) -> list[tuple[str, Any]]:
        """Remove the first ``n`` items (all by default) for the writer to count or requeue;
        none once shutdown counted them."""
        with self._lock:
            if self.abandoned:
                return []
            end = len(self.items) if n is None else n
            taken = self.items[:end]
            del self.items[:end]
            return taken

    def abandon(self) -> list[tuple[str, Any]] | None:
        """For shutdown: the items to count as lost now; None while a commit is under way."""
        with self._lock:
            if self._committing:
                return None
            self.abandoned = True
            left = self.items[:]
            self.items.clear()
            return left


def write_batch(store: Store, batch: Batch, written: dict[str, int], losses: Losses) -> None:
    """Write the batch (counting what is written, and rows refused).

    Raises:
        BatchAbandoned: Shutdown counted the rest of the batch as lost.
        Exception: A transient error: what is left of the batch is to be retried.
    """
    try:
        _commit(store, batch, list(batch.items), written)
    except Exception as exc:
        if is_transient(exc) or isinstance(exc, BatchAbandoned) or len(batch.items) < 2:
            raise
        # One by one, consuming the batch, so a retry after a transient error
        # repeats none of the rows already written or refused.
        while batch.items:
            try:
                _commit(store, batch, batch.items[:1], written)
            except Exception as single:
                if is_transient(single) or isinstance(single, BatchAbandoned):
                    raise
                refused = batch.take(1)
                if refused:
                    losses.reject(refused[0][0], 1, single)


def _commit(
    store: Store, batch: Batch, items: list[tuple[str, Any]], written: dict[str, int]
) -> None:
    """Write the first ``items`` of the batch in one transaction, unless shutdown
    counted the batch as lost before it commits."""
    runs = [item for kind, item in items if kind == RUN]
    alerts = [item for kind, item in items if kind == ALERT]
    metrics = [item for kind, item in items if kind == METRIC]
    health: dict[str, tuple[str, float | None]] = {}
    for kind, item in items:
        if kind == HEALTH:
            health.update(item)
    try:
        store.write(runs, alerts, metrics, health, before_commit=batch.may_commit)
    except BaseException:
        batch.settle(0)
        raise
    batch.settle(len(items))
    snapshots = len(items) - len(runs) - len(alerts) - len(metrics)
    for kind, n in ((RUN, len(runs)), (ALERT, len(alerts)), (METRIC, len(metrics))):
        written[kind] += n
    written[HEALTH] += snapshots
