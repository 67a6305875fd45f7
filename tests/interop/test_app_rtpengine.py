"""``sipcore-proxy`` with a real rtpengine (Debian's rtpengine-daemon, userspace).

The app runs in the test's own event loop (:class:`sipcore.app.App`) on
ephemeral 127.0.0.1 ports, with ``[media]`` pointing at an rtpengine the
test starts (``rtpengine.py``: no config file, ``--table=-1``, a private
media port range, ``--delete-delay=0``) and stops by its PID. A caller and
a UAS built with sipcore exchange SDP through it: the UAS must get
rtpengine's address and a port of its range instead of the caller's, the
caller the same for the 200, and when the call ends rtpengine must have
no call left (asked with ng ``list`` and ``query`` on a client of the
test's own). Every wait is bounded; the module takes a few seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from app_helpers import app_toml, running, sip_udp
from app_media_helpers import CALLEE_SDP, CALLER_SDP, MediaCaller, MediaUas, media_of, media_toml
from sipcore.app import App
from sipcore_media import (
    CallStatsReply,
    List,
    ListReply,
    NgErrorReply,
    Query,
    RtpengineConfig,
    RtpenginePool,
)
from sipcore_media.asyncio import NgClient

from .rtpengine import RtpengineDaemon, find_rtpengine, silent_node, start_rtpengine

pytestmark = pytest.mark.interop

INSTALL_HINT = "run scripts/install-peers.sh (it installs rtpengine-daemon)"
# The flags of a typical Kamailio rtpengine_manage() call.
FLAGS = "replace-origin replace-session-connection ICE=remove"
# How long a test may wait for rtpengine to forget a deleted call.
GONE_WITHIN = 5.0


@pytest.fixture(scope="module")
def rtpengine_binary() -> str:
    path = find_rtpengine()
    if path is None:
        pytest.skip(f"rtpengine is not installed: {INSTALL_HINT}")
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


def run(coro: Coroutine[Any, Any, None]) -> None:
    """One test, bounded: none may take 20 s."""
    asyncio.run(asyncio.wait_for(coro, 20))


def call_id(tag: str) -> str:
    # Unique per run: rtpengine keeps calls by id and replies by cookie.
    return f"{tag}-{time.time_ns()}"


def media_config(tmp_path: Path, uas: MediaUas, *urls: str, tout_ms: int = 1000) -> str:
    extra = media_toml(*urls, tout_ms=tout_ms, extra=f'offer_flags = "{FLAGS}"\n')
    extra += f'answer_flags = "{FLAGS}"\n'
    return app_toml(tmp_path, uas.uri, extra=extra)


class Inspector:
    """The test's own ng client, to ask the daemon what it holds."""

    def __init__(self, client: NgClient) -> None:
        self.client = client

    @classmethod
    async def open(cls, daemon: RtpengineDaemon) -> Inspector:
        return cls(await NgClient.open(RtpenginePool(RtpengineConfig(daemon.url))))

    async def calls(self) -> tuple[str, ...]:
        done = await self.client.request(List(limit=10_000))
        assert isinstance(done.reply, ListReply)
        return done.reply.calls

    async def query(self, cid: str) -> CallStatsReply:
        done = await self.client.request(Query(call_id=cid))
        assert isinstance(done.reply, CallStatsReply)
        return done.reply

    async def gone(self, cid: str) -> None:
        """Until ``cid`` is no longer in ``list`` and ``query`` does not know it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + GONE_WITHIN
        while cid in await self.calls():
            assert loop.time() < deadline, f"rtpengine still has {cid} after {GONE_WITHIN} s"
            await asyncio.sleep(0.05)
        with pytest.raises(NgErrorReply) as unknown:
            await self.query(cid)
        assert unknown.value.error_reason.lower() == "unknown call-id"

    def close(self) -> None:
        self.client.close()


def assert_relayed(body: bytes, daemon: RtpengineDaemon, not_port: int) -> int:
    """``body`` carries rtpengine's address and a port of its range."""
    address, port = media_of(body)
    assert address == "127.0.0.1", body
    assert daemon.port_min <= port <= daemon.port_max and port != not_port, body
    assert "o=- 1545997027 1 IN IP4 127.0.0.1" in body.decode()  # replace-origin
    return port


def test_a_call_through_the_proxy_carries_rtpengines_address_both_ways_and_is_deleted_at_bye(
    daemon: RtpengineDaemon, tmp_path: Path
) -> None:
    cid = call_id("app-call")

    async def main() -> None:
        uas = await MediaUas.open("bob")
        inspector = await Inspector.open(daemon)
        app: App
        async with running(media_config(tmp_path, uas, daemon.url)) as app:
            caller = await MediaCaller.open(sip_udp(app))
            answered = await caller.call(cid)
            assert answered.status_code == 200
            (invite,) = uas.invites()
            assert invite.body != CALLER_SDP and answered.body != CALLEE_SDP
            offered = assert_relayed(invite.body, daemon, not_port=30000)
            answered_port = assert_relayed(answered.body, daemon, not_port=31000)
            assert offered != answered_port
            assert invite.content_length == len(invite.body)
            assert answered.content_length == len(answered.body)

            # rtpengine has the call, with both parties on those ports.
            assert cid in await inspector.calls()
            stats = await inspector.query(cid)
            assert set(stats.tags) == {f"{cid}-tag", "bob"}
            local = {s.local_port for t in stats.tags.values() for m in t.medias for s in m.streams}
            assert {offered, answered_port} <= local

            await uas.wait_for("the ACK", lambda: "ACK" in uas.methods())
            assert (await caller.bye(answered)).status_code == 200
            await inspector.gone(cid)
            assert app.media is not None
            c = app.media.counters
            assert (c.offers, c.answers, c.deletes, c.failed) == (1, 1, 1, 0)
            caller.close()
        inspector.close()
        uas.close()

    run(main())


def test_a_re_invite_keeps_its_ports_and_a_refused_call_leaves_nothing_on_rtpengine(
    daemon: RtpengineDaemon, tmp_path: Path
) -> None:
    kept, refused = call_id("app-reinvite"), call_id("app-refused")

    async def main() -> None:
        uas = await MediaUas.open("bob")
        inspector = await Inspector.open(daemon)
        async with running(media_config(tmp_path, uas, daemon.url)) as app:
            caller = await MediaCaller.open(sip_udp(app))
            answered = await caller.call(kept)
            first_port = media_of(uas.invites()[0].body)[1]
            caller.reinvite(answered, 2, CALLER_SDP.replace(b" 1 IN IP4", b" 2 IN IP4"))
            again = await caller.final(kept)
            assert again.status_code == 200
            caller.ack(again)
            # A re-offer of the same call and tag gets the same port back.
            assert media_of(uas.invites()[1].body) == ("127.0.0.1", first_port)
            assert media_of(again.body) == media_of(answered.body)
            assert (await caller.bye(answered, 3)).status_code == 200
            await inspector.gone(kept)

            uas.invite_code = 486
            assert (await caller.call(refused)).status_code == 486
            await inspector.gone(refused)
            assert app.media is not None and app.media.counters.deletes == 2
            caller.close()
        inspector.close()
        uas.close()

    run(main())


def test_a_silent_first_node_is_failed_over_and_the_call_still_goes_through_rtpengine(
    daemon: RtpengineDaemon, tmp_path: Path
) -> None:
    silent = silent_node()
    # A Call-ID whose byte sum picks the first of two nodes of weight 1.
    cid = next(c for c in (call_id(f"app-fo{i}") for i in range(50)) if sum(c.encode()) % 2 == 0)

    async def main() -> None:
        uas = await MediaUas.open("bob")
        inspector = await Inspector.open(daemon)
        config = media_config(tmp_path, uas, silent.url, daemon.url, tout_ms=150)
        async with running(config) as app:
            caller = await MediaCaller.open(sip_udp(app))
            loop = asyncio.get_running_loop()
            started = loop.time()
            answered = await caller.call(cid)
            assert answered.status_code == 200
            # At most rtpengine_retr (2) sends 150 ms apart on the silent node.
            assert loop.time() - started < 2.0
            assert_relayed(uas.invites()[0].body, daemon, not_port=30000)
            assert_relayed(answered.body, daemon, not_port=31000)
            assert (await caller.bye(answered)).status_code == 200
            await inspector.gone(cid)
            caller.close()
        inspector.close()
        uas.close()

    try:
        run(main())
    finally:
        silent.close()
