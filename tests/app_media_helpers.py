"""Helpers for the ``sipcore-proxy`` media tests: a fake rtpengine on a real
127.0.0.1 UDP socket, a UAS and a caller whose messages carry SDP, and the
``[media]`` table that points the app at the fake.

:class:`FakeRtpengine` answers ng the way rtpengine 10.5 does, as far as
these tests need: ``ping``, ``offer`` / ``answer`` (the SDP comes back
with its ``c=`` and ``o=`` on 127.0.0.1 and a port of its own per call and
tag), ``delete``, ``query`` and ``list``, replies cached by cookie (a
resend gets the same bytes). It can be silent (a dead node) and can hold
back its replies to chosen commands or calls until the test lets them go
(a slow node). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from typing import Any, cast

import attrs

import sipcore
from aio_peers import LOOPBACK, WAIT, in_dialog
from app_helpers import Caller, Uas
from sipcore import Request, Response
from sipcore_media import NgDict, decode_message, encode_message

#: What the fake writes in the SDP it gives back.
RELAY_HOST = "127.0.0.1"
CALLER_HOST, CALLEE_HOST = "127.0.0.5", "127.0.0.6"
CALLER_PORT, CALLEE_PORT = 30000, 31000


def sdp(host: str, port: int, version: int = 1) -> bytes:
    return (
        f"v=0\r\no=- 1545997027 {version} IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=sendrecv\r\n"
    ).encode()


CALLER_SDP = sdp(CALLER_HOST, CALLER_PORT)
CALLEE_SDP = sdp(CALLEE_HOST, CALLEE_PORT)


def media_of(body: bytes) -> tuple[str, int]:
    """The ``c=`` address and the audio port of an SDP body."""
    text = body.decode()
    address = re.search(r"^c=IN IP4 (\S+)", text, re.M)
    port = re.search(r"^m=audio (\d+) ", text, re.M)
    assert address and port, text
    return address.group(1), int(port.group(1))


def media_toml(*urls: str, tout_ms: int = 100, retr: int = 2, extra: str = "") -> str:
    """A ``[media]`` table for the nodes ``urls``, with short timers: by
    default a node that does not answer is given up on after 2 × 100 ms."""
    return (
        "[media]\n"
        f'rtpengine_sock = "{" ".join(urls)}"\n'
        f"rtpengine_tout_ms = {tout_ms}\n"
        f"rtpengine_retr = {retr}\n"
        f"{extra}"
    )


@attrs.define
class _Call:
    ports: dict[str, int] = attrs.field(factory=dict)  # tag -> port given
    tags: list[str] = attrs.field(factory=list)


class FakeRtpengine(asyncio.DatagramProtocol):
    """A fake rtpengine node on 127.0.0.1 (see the module docstring)."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.received: list[NgDict] = []
        self.calls: dict[str, _Call] = {}
        self.silent = False
        self.held_commands: set[str] = set()
        self.held_calls: set[str] = set()
        self.parked: list[tuple[bytes, tuple[Any, ...]]] = []
        self.arrived = asyncio.Event()
        self._cache: dict[str, bytes] = {}
        self._next_port = 40000

    @classmethod
    async def open(cls) -> FakeRtpengine:
        loop = asyncio.get_running_loop()
        transport, node = await loop.create_datagram_endpoint(cls, local_addr=(LOOPBACK, 0))
        node.port = transport.get_extra_info("sockname")[1]
        return node

    @property
    def url(self) -> str:
        return f"udp:{LOOPBACK}:{self.port}"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    # -- what it was asked -------------------------------------------------------------

    def commands(self, call_id: str | None = None, *, pings: bool = False) -> list[str]:
        """The commands received (resends included), for one call or all;
        pings left out unless asked for."""
        return [
            str(d.get("command"))
            for d in self.received
            if (pings or d.get("command") != "ping")
            and (call_id is None or d.get("call-id") == call_id)
        ]

    def last(self, command: str, call_id: str | None = None) -> NgDict:
        for document in reversed(self.received):
            if document.get("command") == command and (
                call_id is None or document.get("call-id") == call_id
            ):
                return document
        raise AssertionError(f"no {command} received; got {self.commands()}")

    async def wait_for(
        self, what: str, condition: Callable[[], bool], timeout: float = WAIT
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not condition():
            left = deadline - loop.time()
            if left <= 0:
                raise AssertionError(f"not within {timeout} s: {what}; got {self.commands()}")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), left)

    # -- holding replies back ---------------------------------------------------------

    def release(self) -> None:
        """Send the replies held back, and hold no more."""
        self.held_commands.clear()
        self.held_calls.clear()
        parked, self.parked = self.parked, []
        for data, addr in parked:
            self._send(data, addr)

    # -- answering ---------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        message = decode_message(data)
        document = message.document
        self.received.append(document)
        self.arrived.set()
        if self.silent:
            return
        reply = self._cache.get(message.cookie)
        if reply is None:
            reply = encode_message(message.cookie, self._answer(document))
            self._cache[message.cookie] = reply
        command, call_id = document.get("command"), document.get("call-id")
        if command in self.held_commands or call_id in self.held_calls:
            self.parked.append((reply, addr))
            return
        self._send(reply, addr)

    def _send(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if self.transport is not None:
            self.transport.sendto(data, addr)

    def _answer(self, document: NgDict) -> NgDict:
        command = document.get("command")
        call_id = str(document.get("call-id", ""))
        if command == "ping":
            return {"result": "pong"}
        if command == "list":
            return {"calls": list(self.calls), "result": "ok"}
        if command in ("offer", "answer"):
            sdp_text = document.get("sdp")
            if not isinstance(sdp_text, str):
                return {"result": "error", "error-reason": "No SDP body in message"}
            if command == "answer" and call_id not in self.calls:
                return {"result": "error", "error-reason": "Unknown call-id"}
            call = self.calls.setdefault(call_id, _Call())
            # The side whose SDP this is: from-tag in an offer, to-tag in an answer.
            tag = str(document.get("from-tag" if command == "offer" else "to-tag", ""))
            if tag not in call.ports:
                call.ports[tag] = self._next_port
                call.tags.append(tag)
                self._next_port += 2
            return {"sdp": self._rewrite(sdp_text, call.ports[tag]), "result": "ok"}
        if command in ("delete", "query"):
            if call_id not in self.calls:
                if command == "delete":
                    return {"warning": "Call-ID not found", "result": "ok"}
                return {"result": "error", "error-reason": "Unknown call-id"}
            if command == "delete":
                del self.calls[call_id]
            return {"created": 1, "tags": {}, "totals": {"RTP": {}, "RTCP": {}}, "result": "ok"}
        return {"result": "ok"}

    @staticmethod
    def _rewrite(text: str, port: int) -> str:
        text = re.sub(r"^c=IN IP4 \S+", f"c=IN IP4 {RELAY_HOST}", text, flags=re.M)
        text = re.sub(r"^(o=.* IN IP4 )\S+", rf"\g<1>{RELAY_HOST}", text, flags=re.M)
        text = re.sub(r"^m=audio \d+", f"m=audio {port}", text, flags=re.M)
        return text + f"a=rtcp:{port + 1}\r\n"

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# -- user agents with SDP ------------------------------------------------------------------------


class MediaUas(Uas):
    """A :class:`Uas` whose 2xx carries the callee's SDP (``body``: its
    answer, or its offer when the INVITE had none); with ``early`` a 183
    with SDP goes first."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.early = False
        self.body = CALLEE_SDP

    @classmethod
    async def open(cls, name: str) -> MediaUas:
        uas = await super().open(name)
        assert isinstance(uas, MediaUas)
        return uas

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        message = sipcore.parse_message(data)
        if (
            self.early
            and isinstance(message, Request)
            and message.method == "INVITE"
            and not any(r.via[0].branch == message.via[0].branch for r in self.received)
        ):
            self._send(self._with_sdp(sipcore.make_response(message, 183, to_tag=self.name)), addr)
        super().datagram_received(data, addr)

    def response(self, invite: Request, code: int) -> Response:
        response = super().response(invite, code)
        if 200 <= code < 300 and invite.method == "INVITE":
            self._with_sdp(response)
        return response

    def _with_sdp(self, response: Response) -> Response:
        response.set_body(self.body, "application/sdp")
        return response

    def invites(self) -> list[Request]:
        return [r for r in self.received if r.method == "INVITE"]


class MediaCaller(Caller):
    """A :class:`Caller` whose INVITE carries the caller's SDP (``body``;
    empty for a late offer)."""

    body: bytes = CALLER_SDP

    def cancel(self, invite: Request) -> None:
        cancel = sipcore.make_request(
            "CANCEL",
            invite.uri,
            from_=str(invite.from_),
            to=str(invite.to),
            via=str(invite.via[0]),
            call_id=invite.call_id,
            cseq=invite.cseq.number,
        )
        self.peer.send(cancel, self.proxy)

    def reinvite(self, answered: Response, cseq: int, body: bytes) -> Request:
        request = self.in_dialog("INVITE", answered, cseq)
        request.set_body(body, "application/sdp")
        self.peer.send(request, self.proxy)
        return request

    def ack_with(self, answered: Response, body: bytes, cseq: int = 1) -> None:
        ack = self.in_dialog("ACK", answered, cseq)
        ack.set_body(body, "application/sdp")
        self.peer.send(ack, self.proxy)


def uas_response(invite: Request, code: int, tag: str, body: bytes = b"") -> Response:
    """What a UAS peer driven by hand answers (with its Contact, and SDP)."""
    headers = [("Contact", f"<sip:{tag}@{invite.via[0].host}>")] if code < 300 else []
    response = sipcore.make_response(invite, code, to_tag=tag, headers=headers)
    if body:
        response.set_body(body, "application/sdp")
    return response


__all__ = [
    "CALLEE_SDP",
    "CALLER_SDP",
    "RELAY_HOST",
    "FakeRtpengine",
    "MediaCaller",
    "MediaUas",
    "in_dialog",
    "media_of",
    "media_toml",
    "sdp",
    "uas_response",
]
