"""Run an rtpengine node pool on asyncio UDP sockets.

This module owns the I/O the sans-I/O pool leaves to its caller, and only
that: a UDP socket per address family the nodes use, a single
``loop.call_at`` timer re-armed from ``next_deadline()`` after every call,
``loop.time()`` as ``now``, and futures that resolve when a command's
:class:`~sipcore_media.ReplyReceived` or :class:`~sipcore_media.CommandFailed`
comes out. Retransmission, failover and timeouts stay the pool's. Node
hosts must be IP addresses (nothing here resolves names); ``ws://`` and
``wss://`` nodes are not spoken (their sends are dropped and time out).
Usage::

    client = await NgClient.open(RtpenginePool(config))
    done = await client.request(Ping())      # a ReplyReceived
    client.close()
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from ._commands import Command
from ._errors import MediaError
from ._pool import RtpenginePool
from .events import CommandFailed, MediaEvent, ReplyReceived, Transmit

__all__ = ["Core", "NgClient"]

log = logging.getLogger("sipcore_media.asyncio")


class Core(Protocol):
    """What the client drives: :class:`~sipcore_media.RtpenginePool` and
    :class:`~sipcore_media.Rtpengine` have this shape."""

    def receive(
        self, datagram: bytes, now: float, *, source: tuple[str, int] | None = None
    ) -> list[MediaEvent]: ...  # pragma: no cover

    def tick(self, now: float) -> list[MediaEvent]: ...  # pragma: no cover

    def next_deadline(self) -> float | None: ...  # pragma: no cover


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, client: NgClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host, port = addr[0], addr[1]
        if isinstance(host, str) and isinstance(port, int):
            self.client.feed(data, (host, port))

    def error_received(self, exc: Exception) -> None:
        # ICMP "port unreachable" from a dead node: the pool's timers decide.
        log.debug("ng socket error: %s", exc)


class NgClient:
    """A core (pool or module) on asyncio. Build it with :meth:`open`."""

    def __init__(self, core: Core, loop: asyncio.AbstractEventLoop) -> None:
        self.core = core
        self.loop = loop
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._waiting: dict[int, asyncio.Future[ReplyReceived]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        #: Called with every event that is not a Transmit (node events too).
        self.on_event: Callable[[MediaEvent], None] | None = None

    @classmethod
    async def open(
        cls, core: Core, *, local: Mapping[int, tuple[str, int]] | None = None
    ) -> NgClient:
        """Bind one UDP socket for IPv4 and one for IPv6 (``local`` maps
        ``socket.AF_INET`` / ``AF_INET6`` to the address to bind; by default
        an ephemeral port on the loopback address)."""
        loop = asyncio.get_running_loop()
        client = cls(core, loop)
        default: dict[int, tuple[str, int]] = {socket.AF_INET: ("127.0.0.1", 0)}
        binds = dict(local) if local else default
        for family, address in binds.items():
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Socket(client), local_addr=address, family=family
            )
            client._transports[family] = transport
        return client

    def now(self) -> float:
        return self.loop.time()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for transport in self._transports.values():
            transport.close()
        for future in self._waiting.values():
            if not future.done():
                future.cancel()

    # -- feeding the core --------------------------------------------------------------

    def feed(self, data: bytes, source: tuple[str, int]) -> None:
        self.handle(self.core.receive(data, self.now(), source=source))

    def _on_timer(self) -> None:
        self._timer = None
        self._deadline = None
        self.handle(self.core.tick(self.now()))

    def handle(self, events: Iterable[MediaEvent]) -> None:
        """Send the Transmits, settle the futures, re-arm the timer."""
        for event in events:
            if isinstance(event, Transmit):
                self._send(event)
                continue
            if isinstance(event, ReplyReceived | CommandFailed):
                future = self._waiting.pop(event.command_id, None)
                if future is not None and not future.done():
                    if isinstance(event, ReplyReceived):
                        future.set_result(event)
                    else:
                        future.set_exception(event.error)
            if self.on_event is not None:
                self.on_event(event)
        self._rearm()

    def _send(self, event: Transmit) -> None:
        node = event.node
        if node.host is None or node.port is None:
            log.warning("%s: only UDP nodes are spoken here; the send is dropped", node.url)
            return
        family = socket.AF_INET6 if ":" in node.host else socket.AF_INET
        transport = self._transports.get(family)
        if transport is None:
            log.warning("%s: no socket for its address family; the send is dropped", node.url)
            return
        transport.sendto(event.datagram, (node.host, node.port))

    def _rearm(self) -> None:
        deadline = self.core.next_deadline()
        if deadline == self._deadline:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadline = deadline
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._on_timer)

    # -- waiting for outcomes -----------------------------------------------------------

    async def outcome(self, events: list[MediaEvent]) -> ReplyReceived:
        """Handle ``events`` from a core call (``rtpengine_offer(...)``,
        ``request(...)``) and wait for the outcome of the command that call
        started: its ReplyReceived, or its error raised."""
        if not events or not hasattr(events[0], "command_id"):
            raise MediaError("these events start no command")
        first = events[0]
        assert isinstance(first, Transmit | ReplyReceived | CommandFailed)
        future: asyncio.Future[ReplyReceived] = self.loop.create_future()
        self._waiting[first.command_id] = future
        self.handle(events)
        return await future

    async def request(
        self,
        command: Command | Mapping[str, object],
        *,
        setid: int | None = None,
        node: str | None = None,
        context: object = None,
    ) -> ReplyReceived:
        """``pool.request(...)`` and its outcome (the core must be an
        :class:`~sipcore_media.RtpenginePool`)."""
        core = self.core
        if not isinstance(core, RtpenginePool):
            raise MediaError("request() needs an RtpenginePool core")
        events = core.request(command, self.now(), setid=setid, node=node, context=context)
        return await self.outcome(events)
