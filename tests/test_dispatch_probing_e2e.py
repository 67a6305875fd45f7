"""Health probing end to end: a Proxy on the asyncio adapter, with a
Dispatcher and its ProbeService, relaying to two UASes on 127.0.0.1.

One UAS stops answering (its socket stays open and silently drops every
datagram, so each probe ends by Timer F) and later answers again. The
test shows the dispatcher's ``dispatcher:dst-down`` then ``dst-up`` for
it, and that no request is routed to it from the one to the other.

Everything runs on real sockets and the loop's clock; the library never
sleeps, only this test polls, and every wait has a deadline of seconds.
T1 is 50 ms so that a probe of the dead UAS times out in 3.2 s.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine
from typing import Any, cast

import attrs

import sipcore
import sipcore.asyncio
from aio_peers import LOOPBACK, UdpPeer, build_request
from sipcore import Endpoint, Proxy, ProxyConfig, Request, RequestContext, TimerSettings
from sipcore_dispatch import (
    DestinationDown,
    DestinationState,
    DestinationUp,
    Dispatcher,
    DispatcherConfig,
    Prober,
    ProbeService,
    ProbingMode,
)
from sipcore_dispatch.events import DestinationEvent

S = DestinationState
SETID = 1
ROUND_ROBIN = 4  # ds_select_dst(1, "4")
T1 = 0.05
TIMER_F = 64 * T1  # how long a probe of a silent UAS waits for its 408
INTERVAL = 1  # ds_ping_interval: one round of probes a second
THRESHOLD = 2  # ds_probing_threshold and ds_inactive_threshold
# How long a state change may take: a probe round to start, THRESHOLD probes
# to end (each at worst a Timer F), plus seconds of slack for a loaded host.
CHANGE_WAIT = TIMER_F + THRESHOLD * INTERVAL + 8.0
POLL = 0.02
TEST_DEADLINE = 60.0


@attrs.frozen
class Arrival:
    """A request a UAS read, and whether it was answering then."""

    method: str
    call_id: str
    uri: str
    alive: bool
    at: float


class Uas(asyncio.DatagramProtocol):
    """A UDP UAS that answers 200 to everything (its name is its To tag),
    or, while not ``alive``, drops everything; it logs every request it reads."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.alive = True
        self.arrivals: list[Arrival] = []
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
        # As in aio_peers: the selector loop's transport is not a DatagramTransport subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        message = sipcore.parse_message(data)
        if not isinstance(message, Request):
            return
        now = asyncio.get_running_loop().time()
        self.arrivals.append(
            Arrival(message.method, message.call_id, str(message.uri), self.alive, now)
        )
        if self.alive and message.method != "ACK" and self.transport is not None:
            answer = sipcore.make_response(message, 200, to_tag=self.name)
            self.transport.sendto(bytes(answer), addr)

    def received(self, method: str, *, alive: bool | None = None) -> list[Arrival]:
        return [
            a for a in self.arrivals if a.method == method and (alive is None or a.alive == alive)
        ]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@attrs.frozen
class Routed:
    """One run of the route script: the dispatcher's choice (None: 503) and
    the dying UAS's state when it was made."""

    call_id: str
    uri: str | None
    state_of_b: DestinationState
    at: float


@attrs.frozen
class Reported:
    """A ProbeService event, when the test or the script collected it."""

    event: DestinationEvent
    at: float


class Lab:
    """The dispatcher, the proxy's route script and one timeline of what
    was routed and what the prober reported.

    The script collects the prober's events before it selects, and all of
    it runs on the loop's one thread, so the timeline's order is the order
    things happened in the proxy: a selection after a DestinationDown comes
    after it here.
    """

    def __init__(self, dispatcher: Dispatcher, uri_b: str) -> None:
        self.dispatcher = dispatcher
        self.uri_b = uri_b
        self.service: ProbeService | None = None
        self.timeline: list[Routed | Reported] = []

    def make_proxy(self, bound: tuple[Endpoint, ...]) -> Proxy:
        config = ProxyConfig(listen=bound, timers=TimerSettings(t1=T1))
        proxy = Proxy(config, self.route)
        prober = Prober(self.dispatcher, now=asyncio.get_running_loop().time())
        self.service = ProbeService(prober, proxy)
        proxy.services.append(self.service)
        return proxy

    def collect(self) -> None:
        assert self.service is not None
        now = asyncio.get_running_loop().time()
        self.timeline.extend(Reported(e, now) for e in self.service.take_events())

    def route(self, ctx: RequestContext) -> None:  # Kamailio: request_route
        self.collect()
        if ctx.method != "MESSAGE":
            ctx.reply(405)
            return
        chosen = self.dispatcher.select(SETID, ROUND_ROBIN, ctx.request).current
        self.timeline.append(
            Routed(
                ctx.request.call_id,
                None if chosen is None else chosen.uri,
                self.dispatcher.state(SETID, self.uri_b),
                ctx.now,
            )
        )
        if chosen is None:
            ctx.reply(503)  # ds_select_dst failed
            return
        ctx.relay(chosen.uri)  # $du

    def reported(self) -> list[Reported]:
        self.collect()
        return [r for r in self.timeline if isinstance(r, Reported)]

    def routed(self) -> list[Routed]:
        return [r for r in self.timeline if isinstance(r, Routed)]


async def until(what: str, condition: Callable[[], bool], timeout: float) -> None:
    """Poll ``condition`` until it holds, for at most ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout:.1f} s: {what}")
        await asyncio.sleep(POLL)


def run(coro: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(coro, TEST_DEADLINE)

    asyncio.run(bounded())


def test_probing_takes_a_silent_uas_down_routes_around_it_and_brings_it_back_up() -> None:
    async def main() -> None:
        a, b = await Uas.open("a"), await Uas.open("b")
        uac = await UdpPeer.open()
        try:
            await scenario(a, b, uac)
        finally:
            for peer in (uac, a, b):
                peer.close()

    async def scenario(a: Uas, b: Uas, uac: UdpPeer) -> None:
        loop = asyncio.get_running_loop()
        dispatcher = Dispatcher(
            DispatcherConfig(
                ds_ping_interval=INTERVAL,
                ds_probing_mode=ProbingMode.ONLY_FLAGGED,
                ds_probing_threshold=THRESHOLD,
                ds_inactive_threshold=THRESHOLD,
                ds_ping_latency_stats=True,
            )
        )
        # Flag 8: probing (mode ONLY_FLAGGED pings only those).
        assert dispatcher.load_list(f"{SETID} {a.uri} 8\n{SETID} {b.uri} 8\n") == []
        lab = Lab(dispatcher, b.uri)
        serial = itertools.count(1)

        async def send_messages(count: int) -> list[str]:
            """``count`` MESSAGEs through the proxy, one after the other;
            the To tag of each final answer (the UAS's name)."""
            tags: list[str] = []
            for _ in range(count):
                n = next(serial)
                request = build_request(
                    "MESSAGE", "sip:service@example.com", uac.endpoint, call_id=f"m{n}", cseq=n
                )
                uac.send(request, proxy)
                answer = await uac.response(timeout=5.0)
                assert answer.call_id == request.call_id
                assert answer.status_code == 200, answer
                tags.append(answer.to.tag or "")
            return tags

        def latency_count(uas: Uas) -> int:
            return dispatcher.status(SETID, uas.uri).latency_count

        server = await sipcore.asyncio.serve(lab.make_proxy, listen=[Endpoint(LOOPBACK, 0)])
        async with server:
            proxy = server.listen[0]

            # -- 1: both answer; the first round of probes measures both.
            await until(
                "a probe of each UAS answered",
                lambda: latency_count(a) > 0 and latency_count(b) > 0,
                INTERVAL + 8.0,
            )
            probe = b.received("OPTIONS")[0]
            assert probe.uri == b.uri and probe.call_id
            tags = await send_messages(6)
            assert sorted(tags) == ["a"] * 3 + ["b"] * 3
            assert all(x != y for x, y in itertools.pairwise(tags)), tags  # round robin
            assert lab.reported() == []
            assert dispatcher.state(SETID, b.uri) == S.PROBING

            # -- 2: b goes silent: two probes time out and it goes down.
            b.alive = False
            silent_at = loop.time()
            await until("b reported down", lambda: len(lab.reported()) >= 1, CHANGE_WAIT)
            down = lab.reported()[0]
            assert down.event == DestinationDown(
                SETID, b.uri, S.INACTIVE | S.PROBING, 408, "Request Timeout", False
            )
            # Not before THRESHOLD probes could time out (a loose lower bound:
            # the second probe left a round after the first).
            assert down.at - silent_at >= TIMER_F, down.at - silent_at
            assert not dispatcher.is_active(SETID, b.uri)
            assert dispatcher.status(SETID, b.uri).timeouts >= THRESHOLD

            assert await send_messages(4) == ["a"] * 4
            # An inactive destination with the probing flag is still probed.
            await until(
                "b probed again while down",
                lambda: any(x.at > down.at for x in b.received("OPTIONS", alive=False)),
                INTERVAL + 8.0,
            )

            # -- 3: b answers again: THRESHOLD answered probes bring it back.
            b.alive = True
            revived_at = loop.time()
            await send_messages(2)  # most likely before it is up again
            await until("b reported up", lambda: len(lab.reported()) >= 2, CHANGE_WAIT)
            up = lab.reported()[1]
            assert up.event == DestinationUp(SETID, b.uri, S.PROBING, 200, "OK", True)
            assert up.at >= revived_at
            tags = await send_messages(4)
            assert sorted(tags) == ["a", "a", "b", "b"], tags
            lab.collect()

        # Down then up, for b only, and nothing else.
        assert [r.event for r in lab.reported()] == [down.event, up.event]
        timeline = lab.timeline
        down_index, up_index = timeline.index(down), timeline.index(up)
        between = [r for r in timeline[down_index:up_index] if isinstance(r, Routed)]
        assert len(between) >= 4
        assert all(r.uri == a.uri for r in between), between
        # b was never chosen while out of rotation.
        for r in lab.routed():
            assert r.uri is not None
            if r.uri == b.uri:
                assert not r.state_of_b.skipped, r
        # What each UAS read matches what was routed to it (a retransmission
        # of a MESSAGE may arrive twice, hence sets), and b read no MESSAGE
        # while silent.
        for uas in (a, b):
            routed_to = {r.call_id for r in lab.routed() if r.uri == uas.uri}
            assert {x.call_id for x in uas.received("MESSAGE")} == routed_to
        assert b.received("MESSAGE", alive=False) == []
        assert {r.call_id for r in between}.isdisjoint(x.call_id for x in b.received("MESSAGE"))
        # Latency statistics: a's every probe, and b's from before and after.
        assert latency_count(a) > 0 and latency_count(b) > 0

    run(main())
