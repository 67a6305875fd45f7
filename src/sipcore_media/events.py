"""What the rtpengine node pool hands back: data to send and what happened.

Every :class:`~sipcore_media.RtpenginePool` method returns a list of these,
in the order they happened: :class:`Transmit` (a datagram for a node, new
or retransmitted), :class:`ReplyReceived` and :class:`CommandFailed` (how
a command ended) and :class:`NodeDisabled` / :class:`NodeEnabled` (a node
left or rejoined the selection, Kamailio's ``rn_disabled``).
"""

from __future__ import annotations

import attrs

from ._errors import MediaError
from ._replies import Reply
from ._sock import NodeAddress

__all__ = [
    "CommandFailed",
    "MediaEvent",
    "NodeDisabled",
    "NodeEnabled",
    "ReplyReceived",
    "Transmit",
]


@attrs.frozen
class Transmit:
    """Send ``datagram`` to ``node`` (for a UDP node: to ``destination``).

    ``attempt`` counts the sends of this cookie to this node: 1 is the
    first, 2 and up retransmissions of the same bytes.
    """

    datagram: bytes = attrs.field(repr=False)
    node: NodeAddress
    cookie: str
    command_id: int
    command: str
    attempt: int

    @property
    def destination(self) -> tuple[str, int]:
        """``(host, port)`` of a UDP node."""
        return self.node.destination


@attrs.frozen
class ReplyReceived:
    """Command ``command_id`` got its answer from the node at ``node`` (a
    URL, Kamailio's ``rtp_inst_pvar``). ``context`` is what the caller
    passed with the request."""

    command_id: int
    command: str
    reply: Reply
    node: str
    context: object = None


@attrs.frozen
class CommandFailed:
    """Command ``command_id`` ended without an answer to use: rtpengine
    said ``error``, the reply was malformed, or no node could be reached.
    ``tried`` are the nodes asked, in order."""

    command_id: int
    command: str
    error: MediaError
    tried: tuple[str, ...]
    context: object = None


@attrs.frozen
class NodeDisabled:
    """A node leaves the selection: it did not answer, or was disabled by
    hand. ``until`` is when it is probed again (None: disabled for good
    until enabled, Kamailio's "disabled(permanent)")."""

    url: str
    setid: int
    until: float | None
    reason: str


@attrs.frozen
class NodeEnabled:
    """A node answered a ping and is selectable again."""

    url: str
    setid: int


MediaEvent = Transmit | ReplyReceived | CommandFailed | NodeDisabled | NodeEnabled
