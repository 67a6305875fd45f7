"""Helpers for the ``sipcore-proxy`` tests: configurations, the app run
in-process on ephemeral 127.0.0.1 ports, SIP user agents built with
sipcore, and a small HTTP client for the management endpoint.

Every wait is bounded (``WAIT`` seconds, or a deadline the caller gives);
nothing sleeps to let time pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any, Self, cast

import sipcore
from aio_peers import LOOPBACK, WAIT, UdpPeer, build_request, in_dialog
from sipcore import Endpoint, Request, Response
from sipcore.app import App, AppConfig, parse_config

# The longest a whole in-process test may run.
TEST_DEADLINE = 60.0


def destinations_toml(*uris: str) -> str:
    """One ``[[dispatcher.destinations]]`` per URI; ``"uri priority"`` gives one a priority."""
    out = []
    for item in uris:
        uri, _, priority = item.partition(" ")
        out.append(f'[[dispatcher.destinations]]\nuri = "{uri}"\n')
        if priority:
            out.append(f"priority = {priority}\n")
    return "".join(out)


def app_toml(
    tmp_path: Path,
    *destinations: str,
    algorithm: int = 4,
    extra: str = "",
    dispatcher_extra: str = "",
    proxy_extra: str = "",
    sip_port: int = 0,
    grace: float = 2.0,
) -> str:
    """A configuration on 127.0.0.1 port 0 (SIP over UDP and TCP, management),
    its dialog store in ``tmp_path``; ``extra`` is appended as it is."""
    store = tmp_path / "dialogs.sqlite"
    return (
        "[proxy]\n"
        f'listen = ["udp:127.0.0.1:{sip_port}", "tcp:127.0.0.1:{sip_port}"]\n'
        f"shutdown_grace = {grace}\n"
        f"{proxy_extra}"
        "[dispatcher]\n"
        f"algorithm = {algorithm}\n"
        f"{dispatcher_extra}"
        f"{destinations_toml(*destinations)}"
        "[persistence]\n"
        f'path = "{store}"\n'
        "[management]\n"
        'listen = "127.0.0.1:0"\n'
        f"{extra}"
    )


def write_config(tmp_path: Path, text: str, name: str = "proxy.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@contextlib.asynccontextmanager
async def running(config: AppConfig | str) -> AsyncIterator[App]:
    """The app started on the running loop; shut down on exit."""
    app = App(parse_config(config) if isinstance(config, str) else config)
    await app.start()
    try:
        yield app
    finally:
        await app.shutdown()


def sip_udp(app: App) -> Endpoint:
    return next(e for e in app.sip_listen if e.transport == "UDP")


def run(coro: Coroutine[Any, Any, None], deadline: float = TEST_DEADLINE) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro, deadline)

    asyncio.run(bounded())


# -- user agents ----------------------------------------------------------------------------


class Uas(asyncio.DatagramProtocol):
    """A UDP UAS on 127.0.0.1 that answers by itself.

    An INVITE gets ``invite_code`` (200 with a Contact and its Record-Route
    copied, or a failure), unless ``hold`` is set: then the test answers it
    with :meth:`answer`. A BYE or any other request gets 200, an ACK
    nothing. Every request read is kept in ``received``.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.invite_code = 200
        self.hold = False
        self.ring = False  # with hold: a 180 first
        self.silent = False  # read everything, answer nothing (not even probes)
        self.received: list[Request] = []
        self.held: list[tuple[Request, tuple[Any, ...]]] = []
        self.arrived = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None
        self.endpoint = Endpoint(LOOPBACK, 0)

    @classmethod
    async def open(cls, name: str) -> Uas:
        loop = asyncio.get_running_loop()
        transport, uas = await loop.create_datagram_endpoint(
            lambda: cls(name), local_addr=(LOOPBACK, 0)
        )
        uas.endpoint = Endpoint(LOOPBACK, transport.get_extra_info("sockname")[1], "UDP")
        return uas

    @property
    def uri(self) -> str:
        return f"sip:{self.endpoint.hostport}"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        message = sipcore.parse_message(data)
        if not isinstance(message, Request):
            return
        self.received.append(message)
        self.arrived.set()
        if message.method == "ACK" or self.silent:
            return
        if message.method == "INVITE":
            if any(r.via[0].branch == message.via[0].branch for r, _ in self.held):
                return  # a retransmission of one we hold
            if self.hold:
                self.held.append((message, addr))
                if self.ring:
                    self._send(sipcore.make_response(message, 180, to_tag=self.name), addr)
                return
            self._send(self.response(message, self.invite_code), addr)
            return
        self._send(sipcore.make_response(message, 200, to_tag=self.name), addr)

    def response(self, invite: Request, code: int) -> Response:
        headers = [("Contact", f"<sip:{self.name}@{self.endpoint.hostport}>")] if code < 300 else []
        return sipcore.make_response(invite, code, to_tag=self.name, headers=headers)

    def answer(self, code: int = 200) -> Request:
        """Answer the oldest held INVITE; returns it."""
        invite, addr = self.held.pop(0)
        self._send(self.response(invite, code), addr)
        return invite

    def _send(self, response: Response, addr: tuple[Any, ...]) -> None:
        if self.transport is not None:
            self.transport.sendto(bytes(response), addr)

    def methods(self) -> list[str]:
        return [r.method for r in self.received]

    async def wait_for(
        self, what: str, condition: Callable[[], bool], timeout: float = WAIT
    ) -> None:
        """Until ``condition()`` holds after a request arrived (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"not within {timeout} s: {what}; got {self.methods()}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), left)

    async def another(self, timeout: float = WAIT) -> None:
        """Until one more request arrived (bounded)."""
        seen = len(self.received)
        await self.wait_for("another request", lambda: len(self.received) > seen, timeout)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Caller:
    """A UAC on its own UDP socket, calling through the proxy at ``proxy``;
    its INVITEs carry ``body`` as SDP when it is not empty."""

    body: bytes = b""

    def __init__(self, peer: UdpPeer, proxy: Endpoint, user: str = "alice") -> None:
        self.peer = peer
        self.proxy = proxy
        self.user = user

    @classmethod
    async def open(cls, proxy: Endpoint, user: str = "alice") -> Self:
        return cls(await UdpPeer.open(), proxy, user)

    def invite(
        self,
        call_id: str,
        *,
        domain: str = "example.com",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> Request:
        request = build_request(
            "INVITE",
            "sip:bob@example.com",
            self.peer.endpoint,
            call_id=call_id,
            from_tag=f"{call_id}-tag",
        )
        request.replace_header("From", f"<sip:{self.user}@{domain}>;tag={call_id}-tag")
        for name, value in headers:
            request.add_header(name, value)
        if self.body:
            request.set_body(self.body, "application/sdp")
        self.peer.send(request, self.proxy)
        return request

    async def final(self, call_id: str, timeout: float = WAIT) -> Response:
        """The next final response (1xx skipped); it must be for ``call_id``."""
        while True:
            response = await self.peer.response(timeout)
            if response.status_code >= 200:
                assert response.call_id == call_id, response
                return response

    async def call(self, call_id: str, **kwargs: Any) -> Response:
        """INVITE, then its final answer; a 2xx is ACKed."""
        self.invite(call_id, **kwargs)
        response = await self.final(call_id)
        if response.status_code < 300:
            self.ack(response)
        return response

    def in_dialog(self, method: str, answered: Response, cseq: int) -> Request:
        """A request in the dialog ``answered`` set up, with this caller's From."""
        request = in_dialog(method, answered, self.peer.endpoint, cseq=cseq)
        request.replace_header("From", str(answered.from_))
        return request

    def ack(self, answered: Response) -> None:
        self.peer.send(self.in_dialog("ACK", answered, 1), self.proxy)

    async def bye(self, answered: Response, cseq: int = 2) -> Response:
        self.peer.send(self.in_dialog("BYE", answered, cseq), self.proxy)
        response = await self.peer.response()
        assert response.cseq.method == "BYE", response
        return response

    def close(self) -> None:
        self.peer.close()


# -- the management endpoint -------------------------------------------------------------


async def http(
    address: tuple[str, int] | None,
    method: str,
    path: str,
    body: object | None = None,
    *,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    """One request to the management endpoint; its status and JSON body."""
    assert address is not None
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), WAIT)
    try:
        if raw is None:
            payload = b"" if body is None else json.dumps(body).encode()
            raw = (
                f"{method} {path} HTTP/1.1\r\nHost: {address[0]}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
            ).encode() + payload
        writer.write(raw)
        await asyncio.wait_for(writer.drain(), WAIT)
        data = await asyncio.wait_for(reader.read(), WAIT)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(writer.wait_closed(), WAIT)
    head, _, content = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(content)


# The command line, as a child process runs it.
PROXY_COMMAND = [sys.executable, "-m", "sipcore.app"]
