"""Run a sipcore proxy (or any core of the same shape) on asyncio.

This module owns the I/O a sans-I/O core leaves to its caller: one UDP
socket per UDP listen address, one TCP server per TCP listen address and a
table of TCP connections keyed by the peer's :class:`~sipcore.Endpoint`,
one :class:`~sipcore.StreamParser` per connection, and a single
``loop.call_at`` timer re-armed from the core's ``next_deadline()`` after
every call. It feeds the core bytes (or framed stream messages) with
``loop.time()`` as ``now``, writes every :class:`~sipcore.Send` it gets
back, and reports what could not be sent with ``transport_error()``.

What it must not do: make protocol decisions. Which responses go where,
what a transport error means for a transaction, retransmissions and
timeouts are the core's; this module only moves octets and reports
failures. Usage::

    import sipcore.asyncio

    async with await sipcore.asyncio.serve(proxy) as server:
        await server.serve_forever()
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeAlias, runtime_checkable

import attrs

from ._errors import LocalProtocolError, ParseError
from ._message import Limits, Request, Response
from ._proxy import Proxy
from ._stream import NEED_DATA, KeepAlive, StreamParser
from ._transport import Endpoint, Send, is_ip_address

__all__ = ["ConnectionLimits", "Core", "CoreFactory", "Server", "serve"]

log = logging.getLogger("sipcore.asyncio")

# Sends remembered per TCP connection, reported as failed if it breaks.
_RECENT_SENDS = 32


@runtime_checkable
class Core(Protocol):
    """What the adapter drives: :class:`sipcore.Proxy` has this shape.

    ``receive`` takes a datagram's bytes, or one message framed off a
    stream; every method returns what to send now. ``take`` drains what
    the core queued outside those calls (a suspended request answered
    later); ``transport_error`` tells it that a ``Send`` failed.
    """

    def receive(
        self, data: bytes | Request | Response, source: Endpoint, now: float
    ) -> list[Send]: ...  # pragma: no cover

    def tick(self, now: float) -> list[Send]: ...  # pragma: no cover

    def next_deadline(self) -> float | None: ...  # pragma: no cover

    def take(self) -> list[Send]: ...  # pragma: no cover

    def transport_error(self, send: Send, now: float) -> list[Send]: ...  # pragma: no cover


# Makes the core once the sockets are bound: a proxy must write its real
# ports (not 0) in Via and Record-Route.
CoreFactory: TypeAlias = Callable[[tuple[Endpoint, ...]], Core]


@attrs.frozen
class ConnectionLimits:
    """Bounds on the adapter's TCP connections (Kamailio: ``tcp_connect_timeout``,
    ``tcp_max_connections``, ``tcp_conn_wq_max``, ``tcp_connection_lifetime``).

    ``max_buffered`` caps the octets waiting for one connection: unsent in
    its write buffer, or queued while it is being opened. ``stream_limits``
    bound each framed message (the parser's default when None).
    """

    connect_timeout: float = 5.0
    max_connections: int = 1024
    max_buffered: int = 1 << 20
    idle_timeout: float = 300.0
    stream_limits: Limits | None = None

    def __attrs_post_init__(self) -> None:
        if self.connect_timeout <= 0 or self.idle_timeout <= 0:
            raise LocalProtocolError("timeouts must be positive")
        if self.max_connections < 1 or self.max_buffered < 1:
            raise LocalProtocolError("max_connections and max_buffered must be at least 1")


async def serve(
    core: Core | CoreFactory,
    listen: Iterable[Endpoint | str] | None = None,
    *,
    limits: ConnectionLimits | None = None,
) -> Server:
    """Bind every ``listen`` address and start feeding ``core``.

    ``listen`` holds Endpoints or Kamailio-style strings
    (``"udp:127.0.0.1:5060"``); it defaults to a :class:`~sipcore.Proxy`'s
    ``config.listen``. ``core`` may also be a function that makes the core
    from the bound endpoints, which is how to listen on port 0: the
    returned :class:`Server`'s ``listen`` holds the ports the system chose.
    """
    if listen is None:
        if not isinstance(core, Proxy):
            raise LocalProtocolError("listen addresses are needed for a core that is not a Proxy")
        listen = core.config.listen
    wanted = tuple(e if isinstance(e, Endpoint) else Endpoint.parse(e) for e in listen)
    if not wanted:
        raise LocalProtocolError("nothing to listen on")
    for endpoint in wanted:
        if endpoint.transport not in ("UDP", "TCP"):
            raise LocalProtocolError(f"{endpoint}: only UDP and TCP are served")
    if isinstance(core, Proxy) and any(e.port == 0 for e in wanted):
        raise LocalProtocolError(
            "a Proxy made before binding would write port 0 in Via: pass a factory"
        )
    server = Server(asyncio.get_running_loop(), limits or ConnectionLimits())
    await server._start(wanted, core)
    return server


class Server:
    """A core bound to sockets on the running loop; made by :func:`serve`.

    ``listen`` are the bound endpoints, in the order asked for. Everything
    runs in the loop's thread: from another thread, use
    ``loop.call_soon_threadsafe(server.flush)``.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, limits: ConnectionLimits) -> None:
        self._loop = loop
        self.limits = limits
        self._core: Core | None = None
        self.listen: tuple[Endpoint, ...] = ()
        self._udp: list[tuple[Endpoint, asyncio.DatagramTransport]] = []
        self._tcp_servers: list[asyncio.Server] = []
        self._connections: dict[Endpoint, _Connection] = {}
        self._connecting: dict[Endpoint, _Pending] = {}
        self._connect_tasks: set[asyncio.Task[None]] = set()
        self._open: set[object] = set()  # protocols whose connection_lost is awaited
        self._queue: collections.deque[Send] = collections.deque()
        self._dispatching = False
        self._udp_sending: Send | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._closing = False
        self._all_closed = loop.create_future()

    # -- the public surface --------------------------------------------------

    @property
    def core(self) -> Core:
        if self._core is None:
            raise LocalProtocolError("the server is not started")
        return self._core

    @property
    def connections(self) -> int:
        """TCP connections open now (accepted or opened by us)."""
        return len(self._connections)

    def flush(self) -> None:
        """Send what the core queued outside a call from here (``take()``),
        e.g. after the script answered a suspended request from a task."""
        self._dispatch([])

    def close(self) -> None:
        """Stop receiving, close every socket and connection, cancel the timer.
        Transactions still open in the core are abandoned."""
        if self._closing:
            return
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for server in self._tcp_servers:
            server.close()
        for _, transport in self._udp:
            transport.close()
        for connection in list(self._connections.values()):
            connection.abort()
        for task in self._connect_tasks:
            task.cancel()
        self._connecting.clear()
        self._check_closed()

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` has released every socket."""
        for server in self._tcp_servers:
            await server.wait_closed()
        if self._connect_tasks:
            await asyncio.gather(*self._connect_tasks, return_exceptions=True)
        await asyncio.shield(self._all_closed)

    async def serve_forever(self) -> None:
        """Run until cancelled or closed; then close."""
        try:
            await asyncio.shield(self._all_closed)
        finally:
            self.close()
            await self.wait_closed()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()
        await self.wait_closed()

    # -- binding -------------------------------------------------------------------

    async def _start(self, wanted: tuple[Endpoint, ...], core: Core | CoreFactory) -> None:
        bound: list[Endpoint] = []
        try:
            for endpoint in wanted:
                if endpoint.transport == "UDP":
                    bound.append(await self._bind_udp(endpoint))
                else:
                    bound.append(await self._bind_tcp(endpoint))
            self.listen = tuple(bound)
            self._core = core if isinstance(core, Core) else core(self.listen)
        except BaseException:
            self.close()
            await self.wait_closed()
            raise
        for server in self._tcp_servers:
            await server.start_serving()
        log.info("serving on %s", ", ".join(map(str, self.listen)))
        self._dispatch([])

    async def _bind_udp(self, endpoint: Endpoint) -> Endpoint:
        transport, _ = await self._loop.create_datagram_endpoint(
            lambda: _Datagram(self), local_addr=endpoint.address
        )
        port = transport.get_extra_info("sockname")[1]
        bound = Endpoint(endpoint.host, port, "UDP")
        self._udp.append((bound, transport))
        return bound

    async def _bind_tcp(self, endpoint: Endpoint) -> Endpoint:
        server = await self._loop.create_server(
            lambda: _Connection(self, None),
            endpoint.host,
            endpoint.port,
            reuse_address=True,
            start_serving=False,
        )
        self._tcp_servers.append(server)
        port = server.sockets[0].getsockname()[1]
        return Endpoint(endpoint.host, port, "TCP")

    # -- into the core ------------------------------------------------------------------

    def _received(self, data: bytes | Request | Response, source: Endpoint) -> None:
        core = self._core
        if core is None or self._closing:
            return
        try:
            sends = core.receive(data, source, self._loop.time())
        except Exception:
            log.exception("the core raised on input from %s", source)
            sends = []
        self._dispatch(sends)

    def _transport_failed(self, send: Send, reason: str) -> None:
        log.info("could not send %r to %s: %s", send.message, send.destination, reason)
        core = self._core
        if core is None or self._closing:
            return
        try:
            sends = core.transport_error(send, self._loop.time())
        except Exception:
            log.exception("the core raised on a transport error for %s", send.destination)
            sends = []
        self._dispatch(sends)

    def _fire(self) -> None:
        deadline, self._timer, self._deadline = self._deadline, None, None
        core = self._core
        if core is None or self._closing:
            return
        # asyncio runs a handle up to one clock resolution early; the core
        # only fires timers whose deadline is not after ``now``.
        now = self._loop.time()
        if deadline is not None:
            now = max(now, deadline)
        try:
            sends = core.tick(now)
        except Exception:
            log.exception("the core raised in tick()")
            sends = []
        self._dispatch(sends)

    def _rearm(self) -> None:
        core = self._core
        if core is None or self._closing:
            return
        try:
            deadline = core.next_deadline()
        except Exception:
            log.exception("the core raised in next_deadline()")
            deadline = None
        if deadline == self._deadline and (deadline is None) == (self._timer is None):
            return  # already armed for it
        if self._timer is not None:
            self._timer.cancel()
        self._deadline = deadline
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._fire)

    # -- out of the core ------------------------------------------------------------------

    def _dispatch(self, sends: list[Send]) -> None:
        """Send ``sends`` and whatever the core queued, then re-arm the timer.

        Not re-entrant on purpose: a failure reported while sending (which
        gives more Sends) is queued behind the Sends already waiting.
        """
        self._queue.extend(sends)
        if self._dispatching:
            return
        self._dispatching = True
        try:
            while True:
                if not self._queue and self._core is not None and not self._closing:
                    try:
                        self._queue.extend(self._core.take())
                    except Exception:
                        log.exception("the core raised in take()")
                if not self._queue:
                    break
                send = self._queue.popleft()
                if self._closing:
                    continue
                try:
                    self._send(send)
                except Exception:
                    log.exception("sending to %s failed in the adapter", send.destination)
        finally:
            self._dispatching = False
        self._rearm()

    def _send(self, send: Send) -> None:
        destination = send.destination
        if not is_ip_address(destination.host):
            # A name would make the socket resolve it, blocking the loop.
            self._transport_failed(send, "not an IP address (the core resolves names)")
            return
        if destination.transport == "UDP":
            transport = self._udp_for(destination)
            if transport is None:
                self._transport_failed(send, "no UDP socket for its address family")
                return
            # A synchronous sendto() error reaches error_received() before
            # sendto() returns: it is this Send's.
            self._udp_sending = send
            try:
                transport.sendto(send.data, destination.address)
            finally:
                self._udp_sending = None
        elif destination.transport == "TCP":
            self._send_tcp(send)
        else:
            self._transport_failed(send, f"transport {destination.transport} is not served")

    def _udp_for(self, destination: Endpoint) -> asyncio.DatagramTransport | None:
        # The core writes the first listen address of a transport in Via:
        # send from that socket, so responses come back to it.
        ipv6 = ":" in destination.host
        for endpoint, transport in self._udp:
            if (":" in endpoint.host) == ipv6 and not transport.is_closing():
                return transport
        return None

    def _udp_error(self, exc: Exception) -> None:
        send = self._udp_sending
        if send is not None:
            self._udp_sending = None
            self._transport_failed(send, str(exc))
        else:
            log.info("UDP socket error: %s", exc)

    # -- TCP ------------------------------------------------------------------------------------

    def _send_tcp(self, send: Send) -> None:
        key = send.destination
        connection = self._connections.get(key)
        if connection is not None:
            connection.write(send)
            return
        pending = self._connecting.get(key)
        size = len(send.data)
        if pending is not None:
            if pending.size + size > self.limits.max_buffered:
                self._transport_failed(send, "too many octets waiting for the connection")
            else:
                pending.sends.append(send)
                pending.size += size
            return
        if len(self._connections) + len(self._connecting) >= self.limits.max_connections:
            self._transport_failed(send, "too many TCP connections")
            return
        if size > self.limits.max_buffered:
            self._transport_failed(send, "message larger than max_buffered")
            return
        self._connecting[key] = _Pending([send], size)
        task = self._loop.create_task(self._connect(key))
        self._connect_tasks.add(task)
        task.add_done_callback(self._connect_tasks.discard)

    async def _connect(self, key: Endpoint) -> None:
        try:
            await asyncio.wait_for(
                self._loop.create_connection(lambda: _Connection(self, key), key.host, key.port),
                self.limits.connect_timeout,
            )
        except OSError as exc:  # TimeoutError (from wait_for) is an OSError
            pending = self._connecting.pop(key, None)
            reason = f"connect failed: {exc!r}" if str(exc) else "connect timed out"
            for send in pending.sends if pending is not None else ():
                self._transport_failed(send, reason)
        except Exception:  # pragma: no cover - a bug here must not vanish in a task
            log.exception("connecting to %s", key)
            self._connecting.pop(key, None)

    def _connection_made(self, connection: _Connection) -> bool:
        """Register a connection; False when it must be refused."""
        key = connection.peer
        assert key is not None
        if self._closing:
            return False
        pending = self._connecting.pop(key, None)
        opened = len(self._connections) + len(self._connecting)
        if pending is None and opened >= self.limits.max_connections:
            log.warning("refusing a TCP connection from %s: connection limit reached", key)
            return False
        self._connections[key] = connection
        self._open.add(connection)
        for send in pending.sends if pending is not None else ():
            connection.write(send)
        return True

    def _connection_lost(self, connection: _Connection, reason: str | None) -> None:
        key = connection.peer
        if key is not None and self._connections.get(key) is connection:
            del self._connections[key]
        self._open.discard(connection)
        if reason is not None and not self._closing:
            # The peer may never have read these; the core ignores the ones
            # whose transaction no longer waits on this connection.
            for send in connection.recent:
                self._transport_failed(send, reason)
        self._check_closed()

    def _udp_closed(self, protocol: _Datagram) -> None:
        self._open.discard(protocol)
        self._check_closed()

    def _check_closed(self) -> None:
        if self._closing and not self._open and not self._all_closed.done():
            self._all_closed.set_result(None)


@attrs.define
class _Pending:
    """Sends waiting for a connection being opened."""

    sends: list[Send]
    size: int


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self, server: Server) -> None:
        self._server = server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._server._open.add(self)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            source = Endpoint(addr[0], addr[1], "UDP")
        except Exception:  # pragma: no cover - the kernel hands out valid addresses
            log.exception("unusable source address %r", addr)
            return
        self._server._received(data, source)

    def error_received(self, exc: Exception) -> None:
        try:
            self._server._udp_error(exc)
        except Exception:  # pragma: no cover - guard the loop against adapter bugs
            log.exception("handling a UDP error")

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._udp_closed(self)


class _Connection(asyncio.Protocol):
    """One TCP connection: its framer, its key in the table, its idle timer."""

    def __init__(self, server: Server, peer: Endpoint | None) -> None:
        self._server = server
        self.peer = peer  # None until an accepted connection learns its peer
        self.parser = StreamParser(limits=server.limits.stream_limits)
        self.transport: asyncio.Transport | None = None
        self.recent: collections.deque[Send] = collections.deque(maxlen=_RECENT_SENDS)
        self._broken: str | None = None
        self._registered = False
        self._last_activity = 0.0
        self._idle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        try:
            if self.peer is None:
                host, port = transport.get_extra_info("peername")[:2]
                self.peer = Endpoint(host, port, "TCP")
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._registered = self._server._connection_made(self)
        except Exception:  # pragma: no cover - guard the loop against adapter bugs
            log.exception("setting up a TCP connection")
        if not self._registered:
            transport.abort()
            return
        self._touch()

    def data_received(self, data: bytes) -> None:
        if not self._registered or self.transport is None:
            return
        self._touch()
        parser = self.parser
        parser.receive_data(data)
        while not self.transport.is_closing():
            try:
                event = parser.next_event()
            except ParseError as exc:
                log.info("closing TCP from %s: the stream cannot be framed: %s", self.peer, exc)
                self.transport.abort()
                return
            except Exception:  # pragma: no cover - the parser raises ParseError only
                log.exception("framing TCP from %s", self.peer)
                self.transport.abort()
                return
            if event is NEED_DATA:
                return
            if isinstance(event, KeepAlive):
                if event.ping:  # RFC 5626 section 3.5.1: a double CRLF gets a CRLF
                    self.transport.write(b"\r\n")
                continue
            assert self.peer is not None
            self._server._received(event, self.peer)

    def eof_received(self) -> bool | None:
        return False  # close our side too

    def write(self, send: Send) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            self._server._transport_failed(send, "the connection is closing")
            return
        transport.write(send.data)
        self.recent.append(send)
        self._touch()
        buffered = transport.get_write_buffer_size()
        if buffered > self._server.limits.max_buffered:
            # The peer does not read: give up on it rather than buffer without bound.
            self._broken = f"{buffered} octets unsent"
            transport.abort()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        reason = self._broken or (None if exc is None else f"connection broken: {exc!r}")
        try:
            if self._registered:
                self._server._connection_lost(self, reason)
        except Exception:  # pragma: no cover - guard the loop against adapter bugs
            log.exception("cleaning up a TCP connection")

    def _touch(self) -> None:
        loop = self._server._loop
        self._last_activity = loop.time()
        if self._idle is None:
            self._idle = loop.call_at(
                self._last_activity + self._server.limits.idle_timeout, self._idle_check
            )

    def _idle_check(self) -> None:
        self._idle = None
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        due = self._last_activity + self._server.limits.idle_timeout
        if self._server._loop.time() >= due:
            log.debug("closing idle TCP connection to %s", self.peer)
            transport.close()
        else:
            self._idle = self._server._loop.call_at(due, self._idle_check)
