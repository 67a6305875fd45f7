"""``sipcore-proxy`` with rtpengine, end to end in-process: the app on
ephemeral 127.0.0.1 ports, a fake rtpengine on a real UDP socket
(``app_media_helpers.FakeRtpengine``), callers and UASes whose messages
carry SDP. A whole call gets offer, answer and delete with its SDP
rewritten both ways; early media, re-INVITEs and late offers too; a call
that fails, is cancelled or times out is deleted; a dead node answers
the INVITE 503 (or passes the SDP through) without holding up anything
else; the management endpoint shows and switches the nodes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

import pytest

from aio_peers import UdpPeer
from app_helpers import app_toml, http, run, running, sip_udp
from app_media_helpers import (
    CALLEE_SDP,
    CALLER_SDP,
    RELAY_HOST,
    FakeRtpengine,
    MediaCaller,
    MediaUas,
    media_of,
    media_toml,
    sdp,
    uas_response,
)
from sipcore.app.media import MEDIA_VAR, REJECT_REASON


def app_events(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, object]]:
    """The fields of each app event ``name`` logged."""
    return [
        dict(getattr(r, "sipcore_fields", {}))
        for r in caplog.records
        if getattr(r, "sipcore_event", None) == name
    ]


def config(
    tmp_path: Path,
    uas: MediaUas,
    *nodes: FakeRtpengine,
    extra: str = "",
    tout_ms: int = 100,
    dispatcher_extra: str = "",
) -> str:
    media = media_toml(*(n.url for n in nodes), tout_ms=tout_ms, extra=extra)
    return app_toml(tmp_path, uas.uri, extra=media, dispatcher_extra=dispatcher_extra)


async def no_call_left(node: FakeRtpengine) -> None:
    await node.wait_for("every call deleted", lambda: not node.calls)


def test_a_call_gets_offer_answer_and_delete_and_its_sdp_is_rewritten_both_ways(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        node, uas = await FakeRtpengine.open(), await MediaUas.open("bob")
        async with running(config(tmp_path, uas, node)) as app:
            caller = await MediaCaller.open(sip_udp(app))
            answered = await caller.call("whole")
            assert answered.status_code == 200
            # What the UAS got: rtpengine's address and port, not the caller's.
            (invite,) = uas.invites()
            offer_port = node.calls["whole"].ports["whole-tag"]
            assert media_of(invite.body) == (RELAY_HOST, offer_port)
            assert invite.content_length == len(invite.body)
            # What the caller got: the 200's SDP rewritten too.
            answer_port = node.calls["whole"].ports["bob"]
            assert media_of(answered.body) == (RELAY_HOST, answer_port) != (RELAY_HOST, offer_port)
            offer = node.last("offer", "whole")
            assert offer["sdp"] == CALLER_SDP.decode()
            assert offer["from-tag"] == "whole-tag" and "to-tag" not in offer
            assert offer["replace"] == ["origin", "session-connection"]
            assert offer["received-from"] == ["IP4", "127.0.0.1"]
            answer = node.last("answer", "whole")
            assert answer["sdp"] == CALLEE_SDP.decode()
            assert (answer["from-tag"], answer["to-tag"]) == ("whole-tag", "bob")
            (dialog,) = app.tracker
            assert dialog.vars[MEDIA_VAR] == node.url
            assert app.media is not None and app.media.calls == 1

            assert (await caller.bye(answered)).status_code == 200
            await no_call_left(node)
            assert node.commands("whole") == ["offer", "answer", "delete"]
            assert node.last("delete")["from-tag"] == "whole-tag"
            assert app.media.calls == 0
            c = app.media.counters
            assert (c.offers, c.answers, c.deletes, c.failed, c.held) == (1, 1, 1, 0, 1)
            caller.close()
        uas.close()
        node.close()

    run(main())


def test_early_media_in_a_183_is_answered_before_it_goes_upstream(tmp_path: Path) -> None:
    async def main() -> None:
        node, uas = await FakeRtpengine.open(), await MediaUas.open("bob")
        uas.early = True
        async with running(config(tmp_path, uas, node)) as app:
            caller = await MediaCaller.open(sip_udp(app))
            caller.invite("early")
            early = await caller.peer.response()
            assert early.status_code == 183
            assert media_of(early.body) == (RELAY_HOST, node.calls["early"].ports["bob"])
            answered = await caller.final("early")
            caller.ack(answered)
            assert media_of(answered.body) == media_of(early.body)
            assert node.commands("early") == ["offer", "answer", "answer"]
            assert (await caller.bye(answered)).status_code == 200
            await no_call_left(node)
            caller.close()
        uas.close()
        node.close()

    run(main())


def test_a_re_invite_is_offered_and_answered_again_and_does_not_end_the_call(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        node, uas = await FakeRtpengine.open(), await MediaUas.open("bob")
        async with running(config(tmp_path, uas, node)) as app:
            caller = await MediaCaller.open(sip_udp(app))
            answered = await caller.call("again")
            await uas.wait_for("the ACK", lambda: "ACK" in uas.methods())
            # A new offer (on hold, say) from the caller, in the dialog.
            held_sdp = sdp("127.0.0.5", 30002, version=2).replace(b"sendrecv", b"sendonly")
            caller.reinvite(answered, 2, held_sdp)
            reanswered = await caller.final("again")
            assert reanswered.status_code == 200
            caller.ack(reanswered)
            reinvite = uas.invites()[-1]
            assert reinvite.to.tag == "bob"
            assert media_of(reinvite.body) == (RELAY_HOST, node.calls["again"].ports["again-tag"])
            assert b"a=sendonly" in reinvite.body
            assert media_of(reanswered.body)[0] == RELAY_HOST
            assert node.last("offer", "again")["sdp"] == held_sdp.decode()
            assert node.commands("again") == ["offer", "answer", "offer", "answer"]
            # A re-INVITE refused keeps the call's media.
            uas.invite_code = 488
            caller.reinvite(answered, 3, CALLER_SDP)
            assert (await caller.final("again")).status_code == 488
            assert node.commands("again") == ["offer", "answer", "offer", "answer", "offer"]
            assert "again" in node.calls
            assert (await caller.bye(answered, 4)).status_code == 200
            await no_call_left(node)
            caller.close()
        uas.close()
        node.close()

    run(main())


def test_a_late_offer_in_the_200_is_offered_and_the_ack_answered(tmp_path: Path) -> None:
    async def main() -> None:
        node, uas = await FakeRtpengine.open(), await MediaUas.open("bob")
        async with running(config(tmp_path, uas, node)) as app:
            caller = await MediaCaller.open(sip_udp(app))
            caller.body = b""
            caller.invite("late")
            answered = await caller.final("late")
            assert answered.status_code == 200
            assert not uas.invites()[0].body
            # The 200 carried the offer: rtpengine got it with the tags swapped.
            offer = node.last("offer", "late")
            assert (offer["from-tag"], offer["to-tag"]) == ("bob", "late-tag")
            assert media_of(answered.body) == (RELAY_HOST, node.calls["late"].ports["bob"])
            caller.ack_with(answered, CALLER_SDP)
            await uas.wait_for("the ACK", lambda: "ACK" in uas.methods())
            (ack,) = [r for r in uas.received if r.method == "ACK"]
            assert media_of(ack.body)[0] == RELAY_HOST
            assert node.commands("late") == ["offer", "answer"]
            assert (await caller.bye(answered)).status_code == 200
            await no_call_left(node)
            caller.close()
        uas.close()
        node.close()

    run(main())


@pytest.mark.parametrize("code", [486, 603, 503])
def test_a_call_that_fails_is_deleted(tmp_path: Path, code: int) -> None:
    async def main() -> None:
        node, uas = await FakeRtpengine.open(), await MediaUas.open("bob")
        uas.invite_code = code
        text = config(tmp_path, uas, node, dispatcher_extra="attempts = 1\n")
        async with running(text) as app:
            caller = await MediaCaller.open(sip_udp(app))
            final = await caller.call(f"fail{code}")
            assert final.status_code == (500 if code == 503 else code)  # a lone 503 is 500
            await no_call_left(node)
            assert node.commands(f"fail{code}") == ["offer", "delete"]
            assert app.media is not None and app.media.calls == 0
            assert not app.tracker.stats.active
            caller.close()
        uas.close()
        node.close()

    run(main())


def test_a_failover_keeps_the_offer_and_only_the_final_failure_deletes(tmp_path: Path) -> None:
    async def main() -> None:
        node = await FakeRtpengine.open()
        busy, bob = await MediaUas.open("busy"), await MediaUas.open("bob")
        busy.invite_code = 503
        extra = media_toml(node.url)
        text = app_toml(tmp_path, f"{busy.uri} 10", f"{bob.uri} 5", algorithm=8, extra=extra)
        async with running(text) as app:
            caller = await MediaCaller.open(sip_udp(app))
            answered = await caller.call("over")
            assert answered.status_code == 200 and answered.to.tag == "bob"
            # Both destinations got rtpengine's SDP from the one offer.
            for uas in (busy, bob):
                assert media_of(uas.invites()[0].body)[0] == RELAY_HOST
            assert node.commands("over") == ["offer", "answer"]
            assert (await caller.bye(answered)).status_code == 200
            await no_call_left(node)
            caller.close()
        busy.close()
        bob.close()
        node.close()

    run(main())


def test_a_cancelled_call_is_deleted_after_its_487(tmp_path: Path) -> None:
    async def main() -> None:
        node, uas = await FakeRtpengine.open(), await MediaUas.open("bob")
        uas.hold = uas.ring = True
        async with running(config(tmp_path, uas, node)) as app:
            caller = await MediaCaller.open(sip_udp(app))
            invite = caller.invite("gone")
            assert (await caller.peer.response()).status_code == 180
            caller.cancel(invite)
            await uas.wait_for("the CANCEL", lambda: "CANCEL" in uas.methods())
            assert node.commands("gone") == ["offer"]  # ringing: the call's media stays
            uas.answer(487)
            responses = [await caller.peer.response(), await caller.peer.response()]
            assert sorted(r.status_code for r in responses) == [200, 487]
            await no_call_left(node)
            assert node.commands("gone") == ["offer", "delete"]
            assert app.media is not None and app.media.calls == 0
            caller.close()
        uas.close()
        node.close()

    run(main())


def test_a_call_cancelled_while_its_offer_is_out_is_deleted_and_never_relayed(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        node, uas = await FakeRtpengine.open(), await MediaUas.open("bob")
        async with running(config(tmp_path, uas, node)) as app:
            node.held_commands.add("offer")
            caller = await MediaCaller.open(sip_udp(app))
            invite = caller.invite("early-cancel")
            await node.wait_for("the offer", lambda: "offer" in node.commands())
            assert app.router.waiting == 1  # the INVITE, suspended
            caller.cancel(invite)
            responses = [await caller.peer.response(), await caller.peer.response()]
            assert sorted(r.status_code for r in responses) == [200, 487]
            node.release()
            await no_call_left(node)
            assert node.commands("early-cancel") == ["offer", "delete"]
            assert uas.invites() == []
            assert app.router.waiting == 0
            caller.close()
        uas.close()
        node.close()

    run(main())


def test_a_call_whose_dialog_times_out_is_deleted(tmp_path: Path) -> None:
    async def main() -> None:
        node, uas = await FakeRtpengine.open(), await MediaUas.open("bob")
        text = config(tmp_path, uas, node) + "[dialog]\ndefault_timeout = 1\n"
        async with running(text) as app:
            caller = await MediaCaller.open(sip_udp(app))
            assert (await caller.call("timeout")).status_code == 200
            await node.wait_for(
                "the delete at the dialog's timeout", lambda: "delete" in node.commands(), 4.0
            )
            assert node.commands("timeout") == ["offer", "answer", "delete"]
            assert not node.calls and not app.tracker.stats.active
            caller.close()
        uas.close()
        node.close()

    run(main())


def test_a_dead_node_gets_the_invite_a_503_and_the_next_one_a_503_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def main() -> None:
        node, uas = await FakeRtpengine.open(), await MediaUas.open("bob")
        node.silent = True
        async with running(config(tmp_path, uas, node)) as app:
            loop = asyncio.get_running_loop()
            await node.wait_for("the startup ping", lambda: len(node.received) >= 2)
            caller = await MediaCaller.open(sip_udp(app))
            started = loop.time()
            first = await caller.call("dead1")
            assert (first.status_code, first.reason) == (503, REJECT_REASON)
            # rtpengine_retr (2) sends rtpengine_tout_ms (100) apart, at most.
            assert loop.time() - started < 1.0
            started = loop.time()
            second = await caller.call("dead2")
            assert second.status_code == 503
            assert loop.time() - started < 0.1, "a disabled node is not waited for"
            assert uas.invites() == []
            assert "dead2" not in {d.get("call-id") for d in node.received}
            assert app.media is not None and app.media.counters.rejected == 2
            status, body = await http(app.management_address, "GET", "/rtpengine")
            assert status == 200
            (shown,) = body["result"]["nodes"]
            assert (shown["url"], shown["active"], shown["disabled"]) == (node.url, False, False)
            assert 0 < shown["recheck_in"] <= 60
            caller.close()
        uas.close()
        node.close()

    with caplog.at_level(logging.INFO, logger="sipcore.app"):
        run(main())
    (down,) = app_events(caplog, "rtpengine.down")
    assert str(down["url"]).startswith("udp:127.0.0.1:") and "timeout" in str(down["reason"])
    failed = app_events(caplog, "media.failed")
    assert [(f["call_id"], f["action"]) for f in failed] == [
        ("dead1", "rejected"),
        ("dead2", "rejected"),
    ]


def test_with_passthrough_a_dead_node_lets_the_call_through_with_its_own_sdp(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        node, uas = await FakeRtpengine.open(), await MediaUas.open("bob")
        node.silent = True
        text = config(tmp_path, uas, node, extra='on_failure = "passthrough"\n')
        async with running(text) as app:
            caller = await MediaCaller.open(sip_udp(app))
            answered = await caller.call("through")
            assert answered.status_code == 200
            assert uas.invites()[0].body == CALLER_SDP
            assert answered.body == CALLEE_SDP
            # No answer or delete for a call rtpengine never had.
            assert set(node.commands("through")) == {"offer"}
            assert (await caller.bye(answered)).status_code == 200
            assert set(node.commands("through")) == {"offer"}
            assert app.media is not None and app.media.counters.passed_through == 1
            caller.close()
        uas.close()
        node.close()

    run(main())


def test_a_call_waiting_for_its_offer_holds_up_no_other_call(tmp_path: Path) -> None:
    async def main() -> None:
        node, uas = await FakeRtpengine.open(), await MediaUas.open("bob")
        async with running(config(tmp_path, uas, node, tout_ms=1000)) as app:
            node.held_calls.add("slow")
            slow, fast = await MediaCaller.open(sip_udp(app)), await MediaCaller.open(sip_udp(app))
            slow.invite("slow")
            await node.wait_for("the slow offer", lambda: "offer" in node.commands("slow"))
            loop = asyncio.get_running_loop()
            started = loop.time()
            answered = await fast.call("fast")
            assert answered.status_code == 200 and loop.time() - started < 0.5
            assert [r.call_id for r in uas.invites()] == ["fast"]
            node.release()
            slow_answer = await slow.final("slow")
            assert slow_answer.status_code == 200
            assert media_of(slow_answer.body)[0] == RELAY_HOST
            slow.close()
            fast.close()
        uas.close()
        node.close()

    run(main())


def test_a_dead_node_fails_over_to_the_next_and_later_calls_skip_it(tmp_path: Path) -> None:
    async def main() -> None:
        dead, alive = await FakeRtpengine.open(), await FakeRtpengine.open()
        uas = await MediaUas.open("bob")
        dead.silent = True
        async with running(config(tmp_path, uas, dead, alive)) as app:
            caller = await MediaCaller.open(sip_udp(app))
            # Call-IDs whose hash picks the dead node first (byte sum % 2 == 0).
            ids = [c for c in (f"fo{i}" for i in range(20)) if sum(c.encode()) % 2 == 0][:2]
            answered = await caller.call(ids[0])
            assert answered.status_code == 200
            # Its offer went to the dead node first, unless the startup ping
            # had already taken that node out.
            assert set(dead.commands(ids[0])) <= {"offer"}
            assert alive.commands(ids[0]) == ["offer", "answer"]
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert (await caller.call(ids[1])).status_code == 200
            assert loop.time() - started < 0.2
            assert ids[1] not in {d.get("call-id") for d in dead.received}
            caller.close()
        uas.close()
        dead.close()
        alive.close()

    run(main())


def test_a_200_resent_while_its_answer_is_out_is_held_back_then_rewritten_from_the_answer(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        node, uas = await FakeRtpengine.open(), await UdpPeer.open()
        media = media_toml(node.url, tout_ms=1000)
        async with running(app_toml(tmp_path, f"sip:{uas.endpoint.hostport}", extra=media)) as app:
            caller = await MediaCaller.open(sip_udp(app))
            caller.invite("resent")
            invite = await uas.request("INVITE")
            node.held_commands.add("answer")
            ok = uas_response(invite, 200, "bob", CALLEE_SDP)
            uas.send(ok, sip_udp(app))
            await node.wait_for("the answer", lambda: "answer" in node.commands())
            uas.send(ok, sip_udp(app))  # the UAS resends its 200
            with pytest.raises(TimeoutError):
                await caller.peer.response(timeout=0.3)
            node.release()
            first = await caller.final("resent")
            assert media_of(first.body)[0] == RELAY_HOST
            with pytest.raises(TimeoutError):
                await caller.peer.response(timeout=0.3)  # the resend was dropped
            uas.send(ok, sip_udp(app))  # once more, after the answer came back
            again = await caller.final("resent")
            assert again.body == first.body
            assert node.commands("resent") == ["offer", "answer"]
            caller.close()
        uas.close()
        node.close()

    run(main())


def test_the_management_endpoint_shows_the_nodes_and_disables_and_enables_them(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        a, b = await FakeRtpengine.open(), await FakeRtpengine.open()
        uas = await MediaUas.open("bob")
        async with running(config(tmp_path, uas, a, b)) as app:
            mgmt = app.management_address
            status, body = await http(mgmt, "GET", "/rtpengine")
            assert status == 200
            shown = body["result"]
            assert [(n["url"], n["set"], n["weight"], n["active"]) for n in shown["nodes"]] == [
                (a.url, 0, 1, True),
                (b.url, 0, 1, True),
            ]
            assert (shown["hash_total"], shown["calls"]) == (0, 0)
            status, body = await http(mgmt, "GET", f"/rtpengine?url={a.url}")
            assert [n["url"] for n in body["result"]["nodes"]] == [a.url]

            status, body = await http(
                mgmt, "POST", "/rtpengine/enable", {"url": "all", "enabled": False}
            )
            assert status == 200
            assert {(n["active"], n["disabled"]) for n in body["result"]["nodes"]} == {
                (False, True)
            }
            caller = await MediaCaller.open(sip_udp(app))
            refused = await caller.call("off")
            assert refused.status_code == 503
            assert not a.commands("off") and not b.commands("off")

            b.silent = True
            status, body = await http(
                mgmt, "POST", "/rtpengine/enable", {"url": b.url, "enabled": 1}
            )
            assert status == 500 and b.url in body["error"]["message"]
            status, body = await http(
                mgmt, "POST", "/rtpengine/enable", {"url": a.url, "enabled": 1}
            )
            assert status == 200
            assert [n["active"] for n in body["result"]["nodes"]] == [True]
            answered = await caller.call("on")
            assert answered.status_code == 200 and a.commands("on") == ["offer", "answer"]

            status, body = await http(mgmt, "GET", "/stats")
            media = body["result"]["media"]
            assert (media["offers"], media["answers"], media["rejected"]) == (1, 1, 1)
            for bad, code in (
                ({"url": "udp:127.0.0.1:9", "enabled": True}, 404),
                ({"url": a.url, "enabled": "yes"}, 400),
                ({"enabled": True}, 400),
            ):
                status, body = await http(mgmt, "POST", "/rtpengine/enable", bad)
                assert status == code, body
            status, _ = await http(mgmt, "GET", "/rtpengine?url=udp:127.0.0.1:9")
            assert status == 404
            status, body = await http(mgmt, "GET", "/")
            assert {"GET /rtpengine", "POST /rtpengine/enable"} <= set(body["result"])
            caller.close()
        uas.close()
        a.close()
        b.close()

    run(main())


def test_without_nodes_or_with_media_off_sdp_passes_untouched(tmp_path: Path) -> None:
    async def main() -> None:
        node, uas = await FakeRtpengine.open(), await MediaUas.open("bob")
        text = config(tmp_path, uas, node, extra="enabled = false\n")
        async with running(text) as app:
            assert app.media is None
            caller = await MediaCaller.open(sip_udp(app))
            answered = await caller.call("plain")
            assert answered.body == CALLEE_SDP and uas.invites()[0].body == CALLER_SDP
            assert node.received == []
            status, body = await http(app.management_address, "GET", "/rtpengine")
            assert status == 404 and "[media]" in body["error"]["message"]
            status, body = await http(app.management_address, "GET", "/stats")
            assert "media" not in body["result"]
            caller.close()
        uas.close()
        node.close()

    run(main())


def test_a_call_from_before_a_restart_is_deleted_on_its_node_when_it_ends(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        a, b = await FakeRtpengine.open(), await FakeRtpengine.open()
        uas = await MediaUas.open("bob")
        # Weights 0 and 1: every new call goes to b; a restart with the
        # weights swapped would send a hashed delete to a.
        first = app_toml(tmp_path, uas.uri, extra=media_toml(f"{a.url}=0 {b.url}=1"))
        async with running(first) as app:
            port = sip_udp(app).port
            caller = await MediaCaller.open(sip_udp(app))
            answered = await caller.call("restart")
            await uas.wait_for("the ACK", lambda: "ACK" in uas.methods())
            assert b.commands("restart") == ["offer", "answer"]
        second = app_toml(
            tmp_path, uas.uri, extra=media_toml(f"{a.url}=1 {b.url}=0"), sip_port=port
        )
        async with running(second) as app:
            assert app.media is not None and app.media.calls == 0
            (dialog,) = app.tracker
            assert dialog.vars[MEDIA_VAR] == b.url
            assert (await caller.bye(answered)).status_code == 200
            await no_call_left(b)
            assert b.commands("restart") == ["offer", "answer", "delete"]
            assert a.commands("restart") == []
            caller.close()
        uas.close()
        a.close()
        b.close()

    run(main())


def test_a_183_still_held_when_the_call_fails_is_dropped_and_the_call_deleted(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        node, uas = await FakeRtpengine.open(), await UdpPeer.open()
        media = media_toml(node.url, tout_ms=1000)
        text = app_toml(
            tmp_path, f"sip:{uas.endpoint.hostport}", extra=media, dispatcher_extra="attempts = 1\n"
        )
        async with running(text) as app:
            caller = await MediaCaller.open(sip_udp(app))
            caller.invite("busy183")
            invite = await uas.request("INVITE")
            node.held_commands.add("answer")
            uas.send(uas_response(invite, 183, "bob", CALLEE_SDP), sip_udp(app))
            await node.wait_for("the answer", lambda: "answer" in node.commands())
            uas.send(uas_response(invite, 486, "bob"), sip_udp(app))
            assert (await caller.peer.response()).status_code == 486
            node.release()
            await no_call_left(node)
            # The 183 came back too late: it is not sent (a resent 486 may be).
            late: list[int] = []
            with contextlib.suppress(TimeoutError):
                while True:
                    late.append((await caller.peer.response(timeout=0.3)).status_code)
            assert set(late) <= {486}, late
            assert node.commands("busy183") == ["offer", "answer", "delete"]
            caller.close()
        uas.close()
        node.close()

    run(main())
