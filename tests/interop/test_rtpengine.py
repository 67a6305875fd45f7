"""sipcore_media against a real rtpengine (Debian's rtpengine-daemon, userspace).

Each test drives the sans-I/O pool through ``sipcore_media.asyncio`` over
loopback UDP: a ping, a whole call (offer in the INVITE, answer in the 200,
query, delete) whose SDP must come back with rtpengine's own address and
ports, the brief's flag string, every other ng command rtpengine 10.5
knows, and a failover from a first node that never answers, timed against
``rtpengine_tout_ms`` and ``rtpengine_retr``. The daemon is started by
``rtpengine.py`` and stopped by its PID; the whole module takes seconds.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from sipcore import Endpoint, Request, Response, parse_message
from sipcore_media import (
    BlockDTMF,
    CallStatsReply,
    Command,
    ListReply,
    NgErrorReply,
    PingReply,
    Query,
    ReplyReceived,
    Rtpengine,
    RtpengineConfig,
    RtpenginePool,
    SdpReply,
    StatisticsReply,
    SubscribeReply,
    SubscribeRequest,
    UnblockDTMF,
    decode_message,
)
from sipcore_media.asyncio import NgClient

from .rtpengine import RtpengineDaemon, find_rtpengine, silent_node, start_rtpengine

pytestmark = pytest.mark.interop

INSTALL_HINT = "run scripts/install-peers.sh"
FT = "caller-tag-1"
TT = "callee-tag-1"
UAC = Endpoint("127.0.0.5", 5060)
UAS = Endpoint("127.0.0.6", 5060)


def sdp(host: str, port: int) -> bytes:
    return (
        f"v=0\r\no=- 1545997027 1 IN IP4 {host}\r\ns=-\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    ).encode()


def sip(
    first: str, method: str, call_id: str, *, to_tag: str | None, body: bytes
) -> Request | Response:
    to = f"<sip:bob@127.0.0.6>{f';tag={to_tag}' if to_tag else ''}"
    head = (
        f"{first}\r\nVia: SIP/2.0/UDP 127.0.0.5:5060;branch=z9hG4bK-{call_id}\r\n"
        f"Max-Forwards: 70\r\nTo: {to}\r\nFrom: <sip:alice@127.0.0.5>;tag={FT}\r\n"
        f"Call-ID: {call_id}\r\nCSeq: 1 {method}\r\n"
    )
    if body:
        head += "Content-Type: application/sdp\r\n"
    msg = parse_message((head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body)
    assert isinstance(msg, Request | Response)
    return msg


def call_id(tag: str) -> str:
    # Unique per run: rtpengine remembers replies by cookie and calls by id.
    return f"{tag}-{time.time_ns()}@127.0.0.5"


@pytest.fixture(scope="module")
def rtpengine_binary() -> str:
    path = find_rtpengine()
    if path is None:
        pytest.skip(f"rtpengine not installed: {INSTALL_HINT}")
    return path


@pytest.fixture(scope="module")
def daemon(
    rtpengine_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RtpengineDaemon]:
    started = start_rtpengine(rtpengine_binary, tmp_path_factory.mktemp("rtpengine"), set())
    try:
        yield started
    finally:
        started.stop()


T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one test's client, bounded: nothing here may take 20 s."""
    return asyncio.run(asyncio.wait_for(coro, 20))


def sdp_address_and_port(body: bytes) -> tuple[str, int]:
    text = body.decode()
    address = re.search(r"^c=IN IP4 (\S+)", text, re.M)
    port = re.search(r"^m=audio (\d+) ", text, re.M)
    assert address and port, text
    return address.group(1), int(port.group(1))


def test_ping_is_answered_pong(daemon: RtpengineDaemon) -> None:
    async def main() -> ReplyReceived:
        client = await NgClient.open(RtpenginePool(RtpengineConfig(daemon.url)))
        try:
            return await client.request({"command": "ping"})
        finally:
            client.close()

    done = run(main())
    assert isinstance(done.reply, PingReply) and done.node == daemon.url


def test_a_call_through_rtpengine_gets_its_address_and_ports(daemon: RtpengineDaemon) -> None:
    cid = call_id("call")
    invite = sip("INVITE sip:bob@127.0.0.6 SIP/2.0", "INVITE", cid, to_tag=None,
                 body=sdp("127.0.0.5", 30000))  # fmt: skip
    ok = sip("SIP/2.0 200 OK", "INVITE", cid, to_tag=TT, body=sdp("127.0.0.6", 31000))
    bye = sip("BYE sip:bob@127.0.0.6 SIP/2.0", "BYE", cid, to_tag=TT, body=b"")
    rtp = Rtpengine(RtpengineConfig(daemon.url))
    flags = "replace-origin replace-session-connection ICE=remove"

    async def main() -> tuple[
        ReplyReceived, ReplyReceived, ReplyReceived, ReplyReceived, NgErrorReply
    ]:
        client = await NgClient.open(rtp)
        try:
            offer = await client.outcome(
                rtp.rtpengine_manage(invite, client.now(), flags, source=UAC)
            )
            answer = await client.outcome(rtp.rtpengine_manage(ok, client.now(), flags, source=UAS))
            query = await client.outcome(rtp.rtpengine_query(bye, client.now(), source=UAC))
            delete = await client.outcome(rtp.rtpengine_manage(bye, client.now(), source=UAC))
            try:
                await client.outcome(rtp.rtpengine_query(bye, client.now(), source=UAC))
            except NgErrorReply as exc:
                return offer, answer, query, delete, exc
            raise AssertionError("the deleted call was still known")
        finally:
            client.close()

    offer, answer, query, delete, gone = run(main())
    assert isinstance(offer.reply, SdpReply) and isinstance(answer.reply, SdpReply)
    # Both messages now carry rtpengine's address and a port of its range.
    ports = []
    for msg in (invite, ok):
        address, port = sdp_address_and_port(msg.body)
        assert address == "127.0.0.1"
        assert daemon.port_min <= port <= daemon.port_max
        assert parse_message(bytes(msg)).content_length == len(msg.body)
        assert "o=- 1545997027 1 IN IP4 127.0.0.1" in msg.body.decode()
        ports.append(port)
    assert ports[0] != ports[1]
    assert isinstance(query.reply, CallStatsReply)
    assert set(query.reply.tags) == {FT, TT}
    local_ports = {s.local_port for t in query.reply.tags.values() for m in t.medias
                   for s in m.streams}  # fmt: skip
    assert set(ports) <= local_ports
    assert query.reply.rtpstat().startswith("RTP: 0 bytes, 0 packets, 0 errors; RTCP: ")
    assert isinstance(delete.reply, CallStatsReply) and delete.reply.warning is None
    assert set(delete.reply.tags) == {FT, TT}
    assert isinstance(gone, NgErrorReply) and gone.error_reason.lower() == "unknown call-id"
    assert rtp.get_hash_total() == 0


def test_the_briefs_flag_string_is_understood_by_rtpengine(daemon: RtpengineDaemon) -> None:
    cid = call_id("flags")
    invite = sip("INVITE sip:bob@127.0.0.6 SIP/2.0", "INVITE", cid, to_tag=None,
                 body=sdp("127.0.0.5", 30002))  # fmt: skip
    bye = sip("BYE sip:bob@127.0.0.6 SIP/2.0", "BYE", cid, to_tag=TT, body=b"")
    rtp = Rtpengine(RtpengineConfig(daemon.url))
    flags = "ICE=remove replace-origin RTP/AVP codec-strip=PCMA direction=external"

    async def main() -> None:
        client = await NgClient.open(rtp)
        try:
            await client.outcome(rtp.rtpengine_offer(invite, client.now(), flags, source=UAC))
            await client.outcome(rtp.rtpengine_delete(bye, client.now(), source=UAC))
        finally:
            client.close()

    run(main())
    text = invite.body.decode()
    media = re.search(r"^m=audio \d+ RTP/AVP ([\d ]+)", text, re.M)
    assert media and media.group(1).split() == ["0", "101"]  # PCMA (8) stripped
    assert "PCMA" not in text and "o=- 1545997027 1 IN IP4 127.0.0.1" in text


def test_the_other_commands_get_typed_answers(daemon: RtpengineDaemon) -> None:
    cid = call_id("cmds")
    invite = sip("INVITE sip:bob@127.0.0.6 SIP/2.0", "INVITE", cid, to_tag=None,
                 body=sdp("127.0.0.5", 30004))  # fmt: skip
    ok = sip("SIP/2.0 200 OK", "INVITE", cid, to_tag=TT, body=sdp("127.0.0.6", 31004))
    pool_rtp = Rtpengine(RtpengineConfig(daemon.url))
    commands: list[Command] = [
        BlockDTMF(call_id=cid, from_tag=FT),
        UnblockDTMF(call_id=cid, flags="all"),
        Query(call_id=cid, from_tag=FT),
        SubscribeRequest(call_id=cid, flags="all", to_tag="sub-1"),
    ]
    names = ["block media", "unblock media", "silence media", "unsilence media",
             "start forwarding", "stop forwarding", "stop media"]  # fmt: skip

    async def main() -> list[ReplyReceived | NgErrorReply]:
        client = await NgClient.open(pool_rtp)
        pool = pool_rtp.pool

        async def ask(command: Command | dict[str, object]) -> ReplyReceived | NgErrorReply:
            try:
                return await client.outcome(pool.request(command, client.now()))
            except NgErrorReply as exc:
                return exc

        try:
            await client.outcome(pool_rtp.rtpengine_offer(invite, client.now(), "", source=UAC))
            await client.outcome(pool_rtp.rtpengine_answer(ok, client.now(), "", source=UAS))
            out = [await ask({"command": "list", "limit": 1000})]
            out.append(await ask({"command": "statistics"}))
            out += [await ask(command) for command in commands]
            out += [await ask({"command": name, "call-id": cid}) for name in names]
            out.append(await ask({"command": "delete", "call-id": cid}))
        finally:
            client.close()
        return out

    listed, statistics, block, unblock, query, subscribe, *simple, stop, delete = run(main())
    assert isinstance(listed, ReplyReceived) and isinstance(listed.reply, ListReply)
    assert cid in listed.reply.calls
    assert isinstance(statistics, ReplyReceived)
    assert isinstance(statistics.reply, StatisticsReply)
    assert "currentstatistics" in statistics.reply.statistics
    for done in (block, unblock, *simple):
        assert isinstance(done, ReplyReceived) and done.reply.result == "ok", done
    assert len(simple) == 6
    assert isinstance(query, ReplyReceived) and isinstance(query.reply, CallStatsReply)
    assert isinstance(subscribe, ReplyReceived) and isinstance(subscribe.reply, SubscribeReply)
    assert subscribe.reply.to_tag == "sub-1" and subscribe.reply.sdp.startswith("v=0")
    # stop media with nothing playing and no party named: rtpengine's own error.
    assert isinstance(stop, NgErrorReply) and "participant" in stop.error_reason
    assert isinstance(delete, ReplyReceived) and isinstance(delete.reply, CallStatsReply)


def test_commands_fail_over_from_a_node_that_never_answers(daemon: RtpengineDaemon) -> None:
    silent = silent_node()
    tout_ms, retr = 200, 2
    config = RtpengineConfig(
        f"{silent.url} {daemon.url}", rtpengine_tout_ms=tout_ms, rtpengine_retr=retr
    )
    # Call-IDs that Kamailio's hash puts on the first node of two.
    ids = [c for c in (call_id(f"fo{i}") for i in range(200)) if sum(c.encode()) % 256 % 2 == 0]
    first, second = ids[0], ids[1]
    rtp = Rtpengine(config)
    invite1 = sip("INVITE sip:bob@127.0.0.6 SIP/2.0", "INVITE", first, to_tag=None,
                  body=sdp("127.0.0.5", 30006))  # fmt: skip
    ok1 = sip("SIP/2.0 200 OK", "INVITE", first, to_tag=TT, body=sdp("127.0.0.6", 31006))
    invite2 = sip("INVITE sip:bob@127.0.0.6 SIP/2.0", "INVITE", second, to_tag=None,
                  body=sdp("127.0.0.5", 30008))  # fmt: skip
    byes = [
        sip("BYE sip:bob@127.0.0.6 SIP/2.0", "BYE", c, to_tag=TT, body=b"") for c in (first, second)
    ]

    async def main() -> list[float]:
        client = await NgClient.open(rtp)
        times: list[float] = []
        try:
            steps = [(invite1, UAC), (ok1, UAS), (invite2, UAC), (byes[0], UAC), (byes[1], UAC)]
            for msg, source in steps:
                start = time.monotonic()
                done = await client.outcome(
                    rtp.rtpengine_manage(msg, client.now(), "", source=source)
                )
                times.append(time.monotonic() - start)
                assert done.node == daemon.url
        finally:
            client.close()
        return times

    try:
        times = run(main())
        got = silent.drain()
    finally:
        silent.close()
    budget = retr * tout_ms / 1000
    # The first offer waited out the silent node: retr sends, tout_ms apart ...
    assert budget <= times[0] < budget + 1.0, times
    assert len(got) == retr and len(set(got)) == 1  # the same bytes, the same cookie
    assert decode_message(got[0]).document["command"] == "offer"
    # ... and everything after went straight to the live node.
    assert all(t < tout_ms / 1000 for t in times[1:]), times
    assert [i.active for i in rtp.show()] == [False, True]
