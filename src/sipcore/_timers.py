"""A deadline queue for sans-I/O state machines.

This module owns :class:`TimerQueue`: timers are (deadline, payload) pairs
kept in deadline order on a ``sortedcontainers.SortedDict``, so adding,
cancelling and popping a timer costs O(log n) however many are pending.
It never reads a clock: deadlines are absolute times on the caller's clock,
and :meth:`TimerQueue.pop_due` is handed ``now``.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Generic, TypeVar

from sortedcontainers import SortedDict

__all__ = ["TimerHandle", "TimerQueue"]

_P = TypeVar("_P")

# A handle is the queue's key: (deadline, sequence number). The sequence
# number keeps timers with equal deadlines in the order they were set.
TimerHandle = tuple[float, int]


class TimerQueue(Generic[_P]):
    """Pending timers in deadline order.

    >>> q: TimerQueue[str] = TimerQueue()
    >>> h = q.add(2.0, "B")
    >>> _ = q.add(0.5, "A")
    >>> q.next_deadline()
    0.5
    >>> list(q.pop_due(1.0))
    ['A']
    >>> q.cancel(h)
    True
    >>> q.next_deadline() is None
    True
    """

    __slots__ = ("_counter", "_timers")

    def __init__(self) -> None:
        self._timers: SortedDict[TimerHandle, _P] = SortedDict()
        self._counter = itertools.count()

    def __len__(self) -> int:
        return len(self._timers)

    def add(self, deadline: float, payload: _P) -> TimerHandle:
        """Set a timer; the handle cancels it."""
        handle = (deadline, next(self._counter))
        self._timers[handle] = payload
        return handle

    def cancel(self, handle: TimerHandle) -> bool:
        """Cancel a timer; False when it already fired or was cancelled."""
        return self._timers.pop(handle, None) is not None

    def next_deadline(self) -> float | None:
        """The earliest deadline, or None when nothing is pending."""
        if not self._timers:
            return None
        deadline: float = self._timers.peekitem(0)[0][0]
        return deadline

    def pop_due(self, now: float) -> Iterator[_P]:
        """Remove and yield, earliest first, every timer due at ``now``.

        Timers set while iterating are yielded too when they are already due,
        so a zero-length timer set by a handler fires in the same pass.
        """
        timers = self._timers
        while timers:
            handle, payload = timers.peekitem(0)
            if handle[0] > now:
                return
            del timers[handle]
            yield payload
