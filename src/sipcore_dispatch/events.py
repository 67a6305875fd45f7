"""What the dispatcher reports happened to a destination.

Returned by :meth:`Dispatcher.mark` when a state change takes a
destination out of rotation or brings it back (Kamailio's
``event_route[dispatcher:dst-down]`` / ``[dispatcher:dst-up]``).
"""

from __future__ import annotations

import attrs

from ._destination import DestinationState

__all__ = ["DestinationDown", "DestinationEvent", "DestinationUp"]


@attrs.frozen
class DestinationDown:
    """Kamailio: ``event_route[dispatcher:dst-down]``."""

    setid: int
    uri: str
    state: DestinationState


@attrs.frozen
class DestinationUp:
    """Kamailio: ``event_route[dispatcher:dst-up]``."""

    setid: int
    uri: str
    state: DestinationState


DestinationEvent = DestinationDown | DestinationUp
