"""sipcore_media.asyncio: the pool on real loopback UDP, against an in-process fake daemon."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from sipcore import Request, parse_message
from sipcore_media import (
    MediaError,
    MediaEvent,
    NgErrorReply,
    PingReply,
    Query,
    ReplyReceived,
    Rtpengine,
    RtpengineConfig,
    RtpenginePool,
    SdpReply,
    decode_message,
    encode_message,
)
from sipcore_media.asyncio import NgClient


class FakeDaemon(asyncio.DatagramProtocol):
    """Answers pings with pong, queries with an error, the rest with ok."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.commands: list[Any] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        message = decode_message(data)
        command = message.document["command"]
        self.commands.append(command)
        reply: dict[str, Any] = {"result": "ok"}
        if command == "ping":
            reply = {"result": "pong"}
        elif command == "query":
            reply = {"result": "error", "error-reason": "Unknown call-id"}
        elif command == "offer":
            reply["sdp"] = "v=0\r\nc=IN IP4 127.0.0.1\r\n"
        assert self.transport is not None
        self.transport.sendto(encode_message(message.cookie, reply), addr)


async def daemon() -> tuple[FakeDaemon, int]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        FakeDaemon, local_addr=("127.0.0.1", 0)
    )
    port: int = transport.get_extra_info("sockname")[1]
    return protocol, port


def test_a_request_resolves_with_the_reply() -> None:
    async def main() -> tuple[ReplyReceived, list[Any]]:
        fake, port = await daemon()
        client = await NgClient.open(RtpenginePool(RtpengineConfig(f"udp:127.0.0.1:{port}")))
        try:
            return await client.request({"command": "ping"}), fake.commands
        finally:
            client.close()

    done, commands = asyncio.run(asyncio.wait_for(main(), 10))
    assert isinstance(done.reply, PingReply) and commands == ["ping"]


def test_an_error_reply_is_raised_typed() -> None:
    async def main() -> None:
        _, port = await daemon()
        client = await NgClient.open(RtpenginePool(RtpengineConfig(f"udp:127.0.0.1:{port}")))
        try:
            await client.request(Query(call_id="gone"))
        finally:
            client.close()

    with pytest.raises(NgErrorReply, match="Unknown call-id"):
        asyncio.run(asyncio.wait_for(main(), 10))


def test_module_functions_run_through_outcome_and_events_reach_on_event() -> None:
    raw = (
        b"INVITE sip:b@127.0.0.6 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.5;branch=z9hG4bK1\r\n"
        b"To: <sip:b@x>\r\nFrom: <sip:a@x>;tag=1\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
        b"Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"
    )
    msg = parse_message(raw)
    assert isinstance(msg, Request)

    async def main() -> tuple[ReplyReceived, list[MediaEvent]]:
        _, port = await daemon()
        rtp = Rtpengine(RtpengineConfig(f"udp:127.0.0.1:{port}"))
        client = await NgClient.open(rtp)
        seen: list[MediaEvent] = []
        client.on_event = seen.append
        try:
            done = await client.outcome(rtp.rtpengine_offer(msg, client.now(), "", source="::1"))
            return done, seen
        finally:
            client.close()

    done, seen = asyncio.run(asyncio.wait_for(main(), 10))
    assert isinstance(done.reply, SdpReply) and msg.body == b"v=0\r\nc=IN IP4 127.0.0.1\r\n"
    assert seen == [done]


def test_outcome_needs_events_that_start_a_command() -> None:
    async def main() -> None:
        client = await NgClient.open(RtpenginePool(RtpengineConfig("udp:127.0.0.1:9")))
        try:
            await client.outcome([])
        finally:
            client.close()

    with pytest.raises(MediaError, match="no command"):
        asyncio.run(main())
