"""The ordered result of a selection and its failover walk.

This module owns :class:`Selection` (Kamailio's failover xavp list: the
chosen destination first, the rest in the order ``ds_next_dst`` tries
them). It is a value; walking it does not touch the dispatcher.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from sipcore._uri import slot_setters

from ._destination import Destination

__all__ = ["Selection"]


@attrs.frozen
class Selection:
    """Destinations to try, in order; ``index`` is the one in use.

    Empty when the selection failed (Kamailio: ``ds_select_dst`` returns
    false).
    """

    setid: int
    alg: int
    destinations: tuple[Destination, ...] = ()
    index: int = 0

    def __bool__(self) -> bool:
        return self.index < len(self.destinations)

    def __len__(self) -> int:
        return len(self.destinations)

    def __iter__(self) -> Iterator[Destination]:
        return iter(self.destinations)

    @property
    def current(self) -> Destination | None:
        """The destination to relay to now (Kamailio: ``$du``)."""
        return self.destinations[self.index] if self else None

    @property
    def uris(self) -> tuple[str, ...]:
        return tuple(d.uri for d in self.destinations)

    def next(self) -> Selection | None:
        """Kamailio: ``ds_next_dst()``: the selection moved to the next
        destination, or None when the list is exhausted."""
        if self.index + 1 >= len(self.destinations):
            return None
        return attrs.evolve(self, index=self.index + 1)


_set_setid, _set_alg, _set_destinations, _set_index = slot_setters(
    Selection, "setid", "alg", "destinations", "index"
)


def built_selection(setid: int, alg: int, destinations: tuple[Destination, ...]) -> Selection:
    """``Selection(setid, alg, destinations)`` for the selection hot path:
    the slots set directly, without attrs' ``__init__`` (which costs as
    much again)."""
    selection: Selection = object.__new__(Selection)
    _set_setid(selection, setid)
    _set_alg(selection, alg)
    _set_destinations(selection, destinations)
    _set_index(selection, 0)
    return selection
