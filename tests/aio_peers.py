"""In-test SIP peers on real 127.0.0.1 sockets, for the asyncio adapter's tests.

A :class:`UdpPeer` is a UAC or UAS the test drives by hand: it queues every
datagram it receives, parsed, and every wait on it is bounded. A
:class:`TcpPeer` is the same over one TCP connection, framed with
sipcore's :class:`~sipcore.StreamParser` so the test sees whole messages.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, cast

import sipcore
from sipcore import Endpoint, Message, Request, Response

LOOPBACK = "127.0.0.1"
# The longest any single wait in these tests may take.
WAIT = 3.0


def build_request(
    method: str,
    uri: str,
    me: Endpoint,
    *,
    call_id: str,
    cseq: int = 1,
    to_tag: str | None = None,
    route: tuple[str, ...] = (),
    from_tag: str = "uac-tag",
) -> Request:
    """A request from ``me`` with a fresh branch; ``to_tag`` makes it in-dialog."""
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    return sipcore.make_request(
        method,
        uri,
        from_=f"<sip:alice@{me.hostport}>",
        to=to,
        via=f"SIP/2.0/{me.transport} {me.hostport};branch={sipcore.new_branch()}",
        call_id=call_id,
        cseq=cseq,
        from_tag=from_tag,
        contact=f"<sip:alice@{me.hostport};transport={me.transport.lower()}>",
        route=route,
    )


def in_dialog(method: str, answered: Response, me: Endpoint, *, cseq: int) -> Request:
    """A request inside the dialog ``answered`` (a 2xx) set up: to its
    Contact, along its Record-Route (a UAC's route set, RFC 3261 12.1.2)."""
    return build_request(
        method,
        str(answered.contact[0].uri),
        me,
        call_id=answered.call_id,
        cseq=cseq,
        to_tag=answered.to.tag,
        route=tuple(f"<{rr.uri}>" for rr in answered.record_route),
    )


class UdpPeer(asyncio.DatagramProtocol):
    """One UDP socket on 127.0.0.1 that the test reads and writes."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[tuple[Message, Endpoint, float]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.endpoint = Endpoint(LOOPBACK, 0)

    @classmethod
    async def open(cls) -> UdpPeer:
        loop = asyncio.get_running_loop()
        transport, peer = await loop.create_datagram_endpoint(cls, local_addr=(LOOPBACK, 0))
        peer.endpoint = Endpoint(LOOPBACK, transport.get_extra_info("sockname")[1], "UDP")
        return peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass
        # DatagramTransport (CPython 3.11), so no isinstance check here.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        now = asyncio.get_running_loop().time()
        self.inbox.put_nowait((sipcore.parse_message(data), Endpoint(addr[0], addr[1]), now))

    def send(self, message: Message | bytes, to: Endpoint) -> None:
        assert self.transport is not None
        self.transport.sendto(message if isinstance(message, bytes) else bytes(message), to.address)

    async def receive(self, timeout: float = WAIT) -> tuple[Message, Endpoint, float]:
        """The next datagram, who sent it and when (loop time)."""
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def request(self, method: str, timeout: float = WAIT) -> Request:
        message, _, _ = await self.receive(timeout)
        assert isinstance(message, Request), f"expected a {method}, got {message!r}"
        assert message.method == method, f"expected a {method}, got {message!r}"
        return message

    async def response(self, timeout: float = WAIT, *, skip_100: bool = True) -> Response:
        while True:
            message, _, _ = await self.receive(timeout)
            assert isinstance(message, Response), f"expected a response, got {message!r}"
            if not (skip_100 and message.status_code == 100):
                return message

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class TcpPeer:
    """One TCP connection to the server under test, framed by sipcore."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.parser = sipcore.StreamParser()
        host, port = writer.get_extra_info("sockname")[:2]
        self.endpoint = Endpoint(host, port, "TCP")

    @classmethod
    async def connect(cls, to: Endpoint) -> TcpPeer:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(*to.address), WAIT)
        return cls(reader, writer)

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), WAIT)

    async def event(self, timeout: float = WAIT) -> Message | sipcore.KeepAlive:
        """The next message or keepalive off the stream."""

        async def read() -> Message | sipcore.KeepAlive:
            while True:
                event = self.parser.next_event()
                if event is not sipcore.NEED_DATA:
                    assert not isinstance(event, sipcore.NeedData)
                    return event
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError("the server closed the connection")
                self.parser.receive_data(data)

        return await asyncio.wait_for(read(), timeout)

    async def response(self, timeout: float = WAIT) -> Response:
        while True:
            event = await self.event(timeout)
            assert isinstance(event, Response), f"expected a response, got {event!r}"
            if event.status_code != 100:
                return event

    async def closed_by_peer(self, timeout: float = WAIT) -> bool:
        """True when the server ends the connection (EOF or reset) in time."""
        try:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
        except ConnectionError:
            return True
        return data == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), WAIT)
