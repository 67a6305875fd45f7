"""The ``sipcore-proxy`` routing script, end to end in-process: the app on
ephemeral 127.0.0.1 ports, callers and UASes built with sipcore on real
UDP (and TCP) sockets. Distribution, in-dialog routing, failover with
marking on a 503, a timeout and a transport error, Timer C, non-INVITE
requests, and what a shutdown does to a request in flight."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from aio_peers import TcpPeer, UdpPeer, build_request, in_dialog
from app_helpers import Caller, Uas, app_toml, run, running, sip_udp
from sipcore import Request
from sipcore_dialog import DialogState
from sipcore_dispatch import DestinationState

S = DestinationState
SERIAL = 8  # ds_select_dst(1, "8"): by priority, the failover list in order


def app_events(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "sipcore_event", None) == name]


def test_calls_alternate_over_two_destinations_and_in_dialog_requests_follow_the_route(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        a, b = await Uas.open("a"), await Uas.open("b")
        async with running(app_toml(tmp_path, a.uri, b.uri)) as app:
            caller = await Caller.open(sip_udp(app))
            answers = [await caller.call(f"c{i}") for i in range(4)]
            tags = [r.to.tag or "" for r in answers]
            assert sorted(tags) == ["a", "a", "b", "b"] and tags[0] != tags[1] != tags[2], tags
            proxy = sip_udp(app)
            for answer in answers:
                (rr,) = answer.record_route
                assert str(rr.uri).startswith(f"sip:{proxy.hostport};lr;ftag=")
                assert ";did=" in str(rr.uri)
            await a.wait_for("both ACKs", lambda: a.methods().count("ACK") == 2)
            await b.wait_for("both ACKs", lambda: b.methods().count("ACK") == 2)
            for uas in (a, b):
                assert all("Route" not in r for r in uas.received if r.method == "ACK")
            assert app.tracker.stats.active == 4
            assert {d.state for d in app.tracker} == {DialogState.CONFIRMED}
            assert app.tracker.profile_size("caller", "alice") == 4
            for cseq, answer in enumerate(answers, 2):
                assert (await caller.bye(answer, cseq)).status_code == 200
            assert app.tracker.stats.active == 0
            assert app.tracker.profile_size("caller", "alice") == 0
            assert a.methods().count("BYE") == b.methods().count("BYE") == 2
            caller.close()
        for uas in (a, b):
            uas.close()

    run(main())


def test_a_503_marks_the_destination_and_the_call_fails_over_to_the_next(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sipcore.app")
    marked: list[str] = []

    async def main() -> None:
        broken, good = await Uas.open("broken"), await Uas.open("good")
        broken.invite_code = 503
        marked.append(broken.uri)
        text = app_toml(tmp_path, f"{broken.uri} 10", f"{good.uri} 0", algorithm=SERIAL)
        async with running(text) as app:
            caller = await Caller.open(sip_udp(app))
            first = await caller.call("f1")
            assert (first.status_code, first.to.tag) == (200, "good")
            # The proxy ACKed the 503 hop by hop, and marked broken inactive + probing.
            await broken.wait_for("the ACK for the 503", lambda: "ACK" in broken.methods())
            assert app.dispatcher.state(1, broken.uri) == S.INACTIVE | S.PROBING
            second = await caller.call("f2")
            assert second.to.tag == "good"
            assert broken.methods() == ["INVITE", "ACK"]  # out of rotation: nothing more
            counters = app.router.counters
            assert (counters.failovers, counters.marked) == (1, 1)
            caller.close()
        for uas in (broken, good):
            uas.close()

    run(main())
    (down,) = app_events(caplog, "destination.down")
    assert down.levelno == logging.WARNING
    assert down.sipcore_fields["uri"] == marked[0]  # type: ignore[attr-defined]
    assert "503 from" in down.sipcore_fields["cause"]  # type: ignore[attr-defined]
    (failover,) = app_events(caplog, "failover")
    assert failover.sipcore_fields["call_id"] == "f1"  # type: ignore[attr-defined]


def test_a_destination_that_never_answers_times_out_is_marked_and_failed_over(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        silent, good = await Uas.open("silent"), await Uas.open("good")
        silent.hold = True  # reads the INVITEs, answers nothing: Timer B
        text = app_toml(
            tmp_path,
            f"{silent.uri} 10",
            f"{good.uri} 0",
            algorithm=SERIAL,
            proxy_extra="t1 = 0.02\n",  # Timer B = 64 * T1 = 1.28 s
        )
        async with running(text) as app:
            caller = await Caller.open(sip_udp(app))
            caller.invite("t1")
            answer = await caller.final("t1", timeout=15.0)
            assert (answer.status_code, answer.to.tag) == (200, "good")
            assert silent.methods().count("INVITE") > 1  # retransmitted, then given up
            assert app.dispatcher.state(1, silent.uri) == S.INACTIVE | S.PROBING
            caller.ack(answer)
            assert (await caller.bye(answer)).status_code == 200
            caller.close()
        for uas in (silent, good):
            uas.close()

    run(main())


def test_a_closed_tcp_destination_is_a_transport_error_that_fails_over_at_once(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        good = await Uas.open("good")
        # A TCP port with no listener: the connect is refused, the branch a 503.
        closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        port = closed.sockets[0].getsockname()[1]
        closed.close()
        await closed.wait_closed()
        dead = f"sip:127.0.0.1:{port};transport=tcp"
        text = app_toml(tmp_path, f"{dead} 10", f"{good.uri} 0", algorithm=SERIAL)
        async with running(text) as app:
            caller = await Caller.open(sip_udp(app))
            answer = await caller.call("x1")
            assert answer.to.tag == "good"
            assert app.dispatcher.state(1, dead) == S.INACTIVE | S.PROBING
            assert (await caller.bye(answer)).status_code == 200
            caller.close()
        good.close()

    run(main())


def test_timer_c_after_a_provisional_neither_marks_nor_fails_over(tmp_path: Path) -> None:
    async def main() -> None:
        ringing, other = await Uas.open("ringing"), await Uas.open("other")
        ringing.hold = ringing.ring = True  # 180, then nothing
        text = app_toml(
            tmp_path,
            f"{ringing.uri} 10",
            f"{other.uri} 0",
            algorithm=SERIAL,
            proxy_extra="fr_inv_timeout = 1.0\n",
        )
        async with running(text) as app:
            caller = await Caller.open(sip_udp(app))
            caller.invite("r1")
            answer = await caller.final("r1", timeout=10.0)
            assert answer.status_code == 408
            await ringing.wait_for("the CANCEL", lambda: "CANCEL" in ringing.methods())
            assert other.received == []
            assert app.dispatcher.state(1, ringing.uri) == S.ACTIVE
            assert app.router.counters.failovers == 0
            caller.close()
        for uas in (ringing, other):
            uas.close()

    run(main())


def test_with_every_destination_down_an_invite_gets_503_and_makes_no_dialog(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        a = await Uas.open("a")
        async with running(app_toml(tmp_path, a.uri)) as app:
            app.dispatcher.set_state(1, a.uri, S.DISABLED)
            caller = await Caller.open(sip_udp(app))
            answer = await caller.call("n1")
            assert (answer.status_code, answer.reason) == (503, "No destination available")
            assert len(app.tracker) == 0 and a.received == []
            assert app.router.counters.no_destination == 1
            caller.close()
        a.close()

    run(main())


def test_options_to_the_proxy_is_answered_and_other_requests_are_dispatched(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        a = await Uas.open("a")
        async with running(app_toml(tmp_path, a.uri)) as app:
            proxy = sip_udp(app)
            peer = await UdpPeer.open()
            ping = build_request("OPTIONS", f"sip:{proxy.hostport}", peer.endpoint, call_id="o1")
            peer.send(ping, proxy)
            assert (await peer.response()).status_code == 200
            assert a.received == []
            for method, call_id in (("OPTIONS", "o2"), ("MESSAGE", "m1")):
                request = build_request(
                    method, "sip:bob@example.com", peer.endpoint, call_id=call_id
                )
                request.add_header("Route", f"<sip:{proxy.hostport};lr>")  # preloaded: dropped
                peer.send(request, proxy)
                answer = await peer.response()
                assert (answer.status_code, answer.to.tag, answer.call_id) == (200, "a", call_id)
            relayed = [r for r in a.received if r.method == "MESSAGE"]
            assert len(relayed) == 1
            assert "Record-Route" not in relayed[0] and "Route" not in relayed[0]
            assert str(relayed[0].uri) == "sip:bob@example.com"  # the R-URI stays; $du is set
            assert len(app.tracker) == 0
            # In-dialog without a Route: not ours.
            stray = build_request(
                "BYE", "sip:bob@example.com", peer.endpoint, call_id="s1", to_tag="x"
            )
            peer.send(stray, proxy)
            answer = await peer.response()
            assert (answer.status_code, answer.reason) == (404, "Not here")
            counters = app.router.counters
            assert (counters.options_answered, counters.not_here) == (1, 1)
            peer.close()
        a.close()

    run(main())


def test_a_destination_given_by_name_is_resolved_at_start(tmp_path: Path) -> None:
    async def main() -> None:
        a = await Uas.open("a")
        named = f"sip:localhost:{a.endpoint.port}"
        async with running(app_toml(tmp_path, named)) as app:
            caller = await Caller.open(sip_udp(app))
            answer = await caller.call("l1")
            assert answer.to.tag == "a"
            assert (await caller.bye(answer)).status_code == 200
            caller.close()
        a.close()

    run(main())


def test_a_caller_on_tcp_reaches_a_udp_destination_and_back(tmp_path: Path) -> None:
    async def main() -> None:
        a = await Uas.open("a")
        async with running(app_toml(tmp_path, a.uri)) as app:
            tcp = next(e for e in app.sip_listen if e.transport == "TCP")
            client = await TcpPeer.connect(tcp)
            invite = build_request("INVITE", "sip:bob@example.com", client.endpoint, call_id="t1")
            await client.write(bytes(invite))
            answer = await client.response()
            assert (answer.status_code, answer.to.tag) == (200, "a")
            (rr,) = answer.record_route
            assert str(rr.uri).startswith(f"sip:{tcp.hostport};transport=tcp;lr")
            await client.write(bytes(in_dialog("ACK", answer, client.endpoint, cseq=1)))
            await a.wait_for("the ACK", lambda: "ACK" in a.methods())
            await client.close()
        a.close()

    run(main())


def test_a_shutdown_refuses_new_calls_and_waits_for_the_one_in_flight(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sipcore.app")

    async def main() -> None:
        a = await Uas.open("a")
        a.hold = True
        text = app_toml(tmp_path, a.uri, grace=20.0)
        async with running(text) as app:
            caller = await Caller.open(sip_udp(app))
            caller.invite("w1")
            await a.wait_for("the INVITE", lambda: bool(a.held))
            stopping = asyncio.create_task(app.shutdown())
            await asyncio.sleep(0)  # let it begin: new requests are refused from now on
            assert not app.router.accepting
            other = await Caller.open(sip_udp(app), user="bob")
            refused = await other.call("w2")
            assert (refused.status_code, refused.get("Retry-After")) == (503, "5")
            assert not stopping.done()
            a.answer(200)
            answer = await caller.final("w1")
            assert answer.status_code == 200
            await asyncio.wait_for(stopping, 5.0)
            assert app.router.waiting == 0
            for peer in (caller, other):
                peer.close()
        a.close()

    run(main())
    (stopped,) = app_events(caplog, "stopped")
    assert stopped.sipcore_fields == {"abandoned": 0, "dialogs": 1}  # type: ignore[attr-defined]


def test_the_request_uri_and_route_of_a_relayed_invite(tmp_path: Path) -> None:
    async def main() -> None:
        a = await Uas.open("a")
        async with running(app_toml(tmp_path, a.uri)) as app:
            caller = await Caller.open(sip_udp(app))
            answer = await caller.call("u1")
            (invite,) = [r for r in a.received if r.method == "INVITE"]
            assert isinstance(invite, Request)
            assert str(invite.uri) == "sip:bob@example.com"
            assert invite.max_forwards == 69
            assert invite.via[0].host == "127.0.0.1" and invite.via[0].port == sip_udp(app).port
            assert (await caller.bye(answer)).status_code == 200
            caller.close()
        a.close()

    run(main())


def test_probing_takes_a_silent_destination_down_and_brings_it_back_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sipcore.app")

    async def main() -> None:
        a, b = await Uas.open("a"), await Uas.open("b")
        flagged = "".join(
            f'[[dispatcher.destinations]]\nuri = "{u.uri}"\nflags = "p"\n' for u in (a, b)
        )
        text = app_toml(
            tmp_path,
            proxy_extra="t1 = 0.02\n",  # a probe of a silent UAS times out in 1.28 s
            dispatcher_extra=flagged,
            extra='[probing]\ninterval = 1\nmode = "flagged"\n',
        )
        async with running(text) as app:
            b.silent = True
            await b.wait_for("a probe", lambda: "OPTIONS" in b.methods(), timeout=10.0)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 15.0
            while not app_events(caplog, "destination.down") and loop.time() < deadline:
                await a.another()
            assert app.dispatcher.state(1, b.uri) == S.INACTIVE | S.PROBING
            caller = await Caller.open(sip_udp(app))
            answers = [await caller.call(f"q{i}") for i in range(3)]
            assert [r.to.tag for r in answers] == ["a", "a", "a"]
            b.silent = False
            deadline = loop.time() + 15.0
            while not app_events(caplog, "destination.up") and loop.time() < deadline:
                await b.another()
            assert app.dispatcher.state(1, b.uri) == S.PROBING
            for cseq, answer in enumerate(answers, 2):
                assert (await caller.bye(answer, cseq)).status_code == 200
            caller.close()
        for uas in (a, b):
            uas.close()

    run(main())
    (down,) = app_events(caplog, "destination.down")
    (up,) = app_events(caplog, "destination.up")
    assert down.sipcore_fields["cause"] == up.sipcore_fields["cause"] == "probe"  # type: ignore[attr-defined]
    assert (down.sipcore_fields["code"], up.sipcore_fields["code"]) == (408, 200)  # type: ignore[attr-defined]


def test_call_load_balancing_counts_calls_until_their_bye(tmp_path: Path) -> None:
    async def main() -> None:
        a, b = await Uas.open("a"), await Uas.open("b")
        loaded = "".join(
            f'[[dispatcher.destinations]]\nuri = "{u.uri}"\nattrs = "duid={u.name};maxload=1"\n'
            for u in (a, b)
        )
        text = app_toml(tmp_path, algorithm=10, dispatcher_extra=loaded)
        async with running(text) as app:
            caller = await Caller.open(sip_udp(app))
            first, second = await caller.call("l1"), await caller.call("l2")
            assert sorted([first.to.tag or "", second.to.tag or ""]) == ["a", "b"]
            full = await caller.call("l3")  # both at maxload
            assert (full.status_code, full.reason) == (503, "No destination available")
            assert (await caller.bye(first)).status_code == 200
            again = await caller.call("l4")
            assert again.to.tag == first.to.tag  # the load went with the BYE
            for answer in (second, again):
                assert (await caller.bye(answer)).status_code == 200
            assert all(s.load == 0 for _, s in app.dispatcher.entries())
            caller.close()
        for uas in (a, b):
            uas.close()

    run(main())
