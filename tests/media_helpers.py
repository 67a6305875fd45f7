"""An in-memory network of fake rtpengine nodes for the pool's tests.

Each :class:`FakeNode` answers the datagrams sent to its address the way
rtpengine would (or not at all, when dead); :class:`Net` carries the
pool's :class:`~sipcore_media.Transmit` actions to them and the answers
back, with a fake clock. Nothing sleeps and nothing touches a socket.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import attrs

from sipcore_media import (
    CommandFailed,
    MediaEvent,
    NgDict,
    ReplyReceived,
    RtpenginePool,
    Transmit,
    decode_message,
    encode_message,
)

SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\n"
    "m=audio 30000 RTP/AVP 0\r\n"
)

Answer = Callable[[NgDict], NgDict | None]


def normal(document: NgDict) -> NgDict:
    """What a healthy rtpengine answers."""
    command = document.get("command")
    if command == "ping":
        return {"result": "pong"}
    if command in ("offer", "answer"):
        return {"sdp": "v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 40000 RTP/AVP 0\r\n", "result": "ok"}
    if command == "delete":
        return {"created": 1, "tags": {}, "SSRC": {}, "totals": {"RTP": {}, "RTCP": {}},
                "result": "ok"}  # fmt: skip
    return {"result": "ok"}


@attrs.define
class FakeNode:
    """One fake daemon at ``address``; ``answer`` None plays a dead node."""

    address: tuple[str, int]
    answer: Answer | None = normal
    received: list[NgDict] = attrs.field(factory=list)
    cookies: list[str] = attrs.field(factory=list)

    def handle(self, datagram: bytes) -> bytes | None:
        message = decode_message(datagram)
        self.received.append(message.document)
        self.cookies.append(message.cookie)
        if self.answer is None:
            return None
        reply = self.answer(message.document)
        return None if reply is None else encode_message(message.cookie, reply)

    @property
    def commands(self) -> list[Any]:
        return [d.get("command") for d in self.received]


@attrs.define
class Net:
    """The pool, its fake nodes and a fake clock."""

    pool: RtpenginePool
    nodes: dict[tuple[str, int], FakeNode]
    now: float = 0.0
    events: list[MediaEvent] = attrs.field(factory=list)
    sent: list[Transmit] = attrs.field(factory=list)

    def deliver(self, events: Iterable[MediaEvent]) -> None:
        """Record events; carry each Transmit to its node and the answer back."""
        queue = list(events)
        while queue:
            event = queue.pop(0)
            self.events.append(event)
            if isinstance(event, Transmit):
                self.sent.append(event)
                node = self.nodes.get(event.destination)
                answer = node.handle(event.datagram) if node is not None else None
                if answer is not None:
                    queue.extend(self.pool.receive(answer, self.now, source=event.destination))

    def request(self, command: Any, **kwargs: Any) -> None:
        self.deliver(self.pool.request(command, self.now, **kwargs))

    def advance(self, to: float) -> None:
        """Run every timer due up to ``to``, in deadline order."""
        while True:
            deadline = self.pool.next_deadline()
            if deadline is None or deadline > to:
                break
            self.now = max(self.now, deadline)
            self.deliver(self.pool.tick(self.now))
        self.now = to

    def finished(self) -> list[ReplyReceived | CommandFailed]:
        return [e for e in self.events if isinstance(e, ReplyReceived | CommandFailed)]

    def of_type(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]
