"""Group commit: concurrent associations share one database transaction (and one fsync) per batch.

Each caller hands over a unit of work and blocks until the transaction holding it has committed (or
failed), so no status is ever answered before its row is durable. Whoever holds the commit lock runs
every unit that is waiting at that moment; with one association this is a plain transaction.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session, sessionmaker

LOGGER = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class _Unit(Generic[T]):
    work: Callable[[Session], T]
    value: T | None = None
    error: BaseException | None = None
    done: bool = False


class GroupCommitter:
    """Runs units of database work in shared transactions.

    Parameters
    ----------
    factory
        The process's session factory.
    enabled
        False runs every unit in a transaction of its own (for comparison in the benchmark).
    """

    def __init__(self, factory: sessionmaker[Session], *, enabled: bool = True) -> None:
        self.factory = factory
        self.enabled = enabled
        self._pending: list[_Unit[Any]] = []
        self._pending_lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self.batches = 0
        self.units = 0

    def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work(session)`` in a transaction and return its value once that transaction committed.

        Raises
        ------
        Exception
            Whatever ``work`` or the commit raised; the unit's changes are then not committed.
        """
        unit: _Unit[T] = _Unit(work)
        if not self.enabled:
            self._commit([unit])
        else:
            with self._pending_lock:
                self._pending.append(unit)
            with self._commit_lock:
                if not unit.done:
                    with self._pending_lock:
                        batch, self._pending = self._pending, []
                    self._commit(batch)
        if unit.error is not None:
            raise unit.error
        return unit.value  # type: ignore[return-value]

    def _commit(self, batch: list[_Unit[Any]]) -> None:
        self.batches += 1
        self.units += len(batch)
        try:
            with self.factory() as session, session.begin():
                if len(batch) == 1:
                    batch[0].value = batch[0].work(session)
                else:
                    for unit in batch:
                        _run_in_savepoint(session, unit)
        except BaseException as exc:
            for unit in batch:
                unit.error = unit.error or exc
                unit.value = None
            if not isinstance(exc, Exception):
                raise
        finally:
            for unit in batch:
                unit.done = True


def _run_in_savepoint(session: Session, unit: _Unit[Any]) -> None:
    """Run one unit of a shared transaction so that its own failure does not undo the others."""
    try:
        with session.begin_nested():
            unit.value = unit.work(session)
    except Exception as exc:
        if not session.is_active:
            raise
        unit.error = exc
