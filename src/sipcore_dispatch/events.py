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
    """Kamailio: ``event_route[dispatcher:dst-down]``.

    ``code`` / ``reason`` / ``replied`` are Kamailio's ``$dsv(code)`` /
    ``$dsv(reason)`` / ``$dsv(flags) & 1`` when a probe caused the change:
    the reply's status and reason phrase, and whether a reply really came
    (a 408 made by the transaction layer on timeout did not). For a change
    by ``mark`` they are the ``code`` and ``reason`` its caller passed
    (``replied`` when a code was given), else 0, "" and False.
    """

    setid: int
    uri: str
    state: DestinationState
    code: int = 0
    reason: str = ""
    replied: bool = False


@attrs.frozen
class DestinationUp:
    """Kamailio: ``event_route[dispatcher:dst-up]`` (fields as for
    :class:`DestinationDown`)."""

    setid: int
    uri: str
    state: DestinationState
    code: int = 0
    reason: str = ""
    replied: bool = False


DestinationEvent = DestinationDown | DestinationUp
