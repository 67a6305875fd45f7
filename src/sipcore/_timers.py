"""A deadline queue for sans-I/O state machines.

This module owns :class:`TimerQueue`: timers are (deadline, payload) pairs
kept in deadline order on a ``sortedcontainers.SortedDict``, so adding,
cancelling and popping a timer costs O(log n) however many are pending.
It never reads a clock: deadlines are absolute times on the caller's clock,
and :meth:`TimerQueue.pop_due` is handed ``now``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

from sortedcontainers import SortedDict

__all__ = ["SecondTimers", "TimerHandle", "TimerQueue"]

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


_H = TypeVar("_H", bound=Hashable)


class SecondTimers(Generic[_H]):
    """Timers of whole-second resolution for very many items (dialogs).

    A deadline is rounded up to the next whole second and the item joins
    that second's set: one sorted entry per second in use, however many
    items share it, and an item costs one set slot. Adding and cancelling
    are O(1) plus O(log seconds); :meth:`pop_due` is O(expired). Kamailio's
    dialog timer also ticks in whole seconds, so nothing fires earlier than
    asked and at most a second later.

    >>> q: SecondTimers[str] = SecondTimers()
    >>> key = q.add(2.3, "dialog")
    >>> key, q.next_deadline()
    (3, 3.0)
    >>> list(q.pop_due(2.9)), list(q.pop_due(3.0))
    ([], ['dialog'])
    """

    __slots__ = ("_buckets", "_count")

    def __init__(self) -> None:
        self._buckets: SortedDict[int, set[_H]] = SortedDict()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, deadline: float, item: _H) -> int:
        """Arm ``item``; the returned second is what :meth:`cancel` needs."""
        second = math.ceil(deadline)
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = set()
        if item not in bucket:
            bucket.add(item)
            self._count += 1
        return second

    def cancel(self, second: int, item: _H) -> bool:
        bucket = self._buckets.get(second)
        if bucket is None or item not in bucket:
            return False
        bucket.discard(item)
        self._count -= 1
        if not bucket:
            del self._buckets[second]
        return True

    def next_deadline(self) -> float | None:
        if not self._buckets:
            return None
        return float(self._buckets.peekitem(0)[0])

    def pop_due(self, now: float) -> Iterator[_H]:
        """Remove and yield every item whose second has come, earliest first.
        Items armed while iterating for a second already due come out too."""
        buckets = self._buckets
        while buckets:
            second, bucket = buckets.peekitem(0)
            if second > now:
                return
            if not bucket:
                del buckets[second]
                continue
            item = bucket.pop()
            self._count -= 1
            yield item
