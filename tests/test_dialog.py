"""Dialog tracking through real message flows: states, matching, timers,
profiles, statistics and locally generated requests."""

from __future__ import annotations

import itertools
import random

import pytest

from dialog_helpers import PROXY, UAC, UAS, UAS2, Call, Rig, as_request
from sipcore import LocalProtocolError, Request, RequestContext, make_response, parse_message
from sipcore_dialog import (
    Dialog,
    DialogConfig,
    DialogState,
    DialogStats,
    DialogTracker,
    Direction,
    MatchMode,
    Property,
    Side,
    events,
)

ALL_EVENTS = (
    events.DialogCreated,
    events.DialogSpiraled,
    events.DialogEarly,
    events.DialogConfirmedNoAck,
    events.DialogConfirmed,
    events.DialogFailed,
    events.DialogRequestWithin,
    events.DialogResponseForwarded,
    events.DialogResponseWithin,
    events.DialogTerminated,
    events.DialogTerminatedConfirmed,
    events.DialogExpired,
    events.DialogDestroyed,
    events.DialogStart,
    events.DialogEnd,
    events.DialogFailedRoute,
)


def only_dialog(rig: Rig) -> Dialog:
    dialogs = list(rig.tracker)
    assert len(dialogs) == 1, dialogs
    return dialogs[0]


# -- the life of a call -----------------------------------------------------------


def test_a_call_goes_through_states_1_to_5_with_every_callback_in_order() -> None:
    rig = Rig()
    rig.record(*ALL_EVENTS)
    call = Call(rig)
    call.start()
    dialog = only_dialog(rig)
    assert only_dialog(rig).state is DialogState.UNCONFIRMED
    assert rig.tracker.stats.processed == 1 and rig.tracker.stats.active == 0
    call.reply(180)
    assert only_dialog(rig).state is DialogState.EARLY and rig.tracker.stats.early == 1
    call.reply(200)
    assert only_dialog(rig).state is DialogState.CONFIRMED_NA
    assert rig.tracker.stats.active == 1 and rig.tracker.stats.early == 0
    assert dialog.to_tag == "bob-tag" and dialog.start_time == rig.now
    call.ack()
    assert only_dialog(rig).state is DialogState.CONFIRMED
    call.bye()
    assert only_dialog(rig).state is DialogState.DELETED
    assert rig.tracker.stats.active == 0
    assert dialog.terminated_by is Direction.DOWNSTREAM
    assert rig.names() == [
        "DialogCreated",
        "DialogResponseForwarded",
        "DialogEarly",
        "DialogResponseForwarded",
        "DialogConfirmedNoAck",
        "DialogStart",
        "DialogConfirmed",
        "DialogTerminated",
        "DialogEnd",
        "DialogResponseWithin",
        "DialogTerminatedConfirmed",
    ]
    rig.advance(rig.config.deleted_linger)
    assert len(rig.tracker) == 0 and rig.names()[-1] == "DialogDestroyed"
    assert rig.tracker.next_deadline() is None


def test_the_dialog_keeps_both_legs_as_kamailio_does() -> None:
    rig = Rig()
    call = Call(rig)
    call.established()
    d = only_dialog(rig)
    assert (d.call_id, d.from_tag, d.to_tag) == ("call-1", "alice-tag", "bob-tag")
    assert d.from_uri == "sip:alice@example.com" and d.to_uri == "sip:bob@example.com"
    assert d.req_uri == "sip:bob@example.com"
    assert d.caller_contact == f"sip:alice@{UAC.hostport}"
    assert d.callee_contact == f"sip:bob@{UAS.hostport}"
    assert (d.caller_cseq, d.callee_cseq) == ("1", "1")
    assert d.caller_address == UAC and d.callee_address == UAS
    assert d.caller_socket == PROXY
    assert d.caller_route_set == () and d.callee_route_set == ()


def test_the_did_cookie_goes_in_our_record_route_and_matches_sequential_requests() -> None:
    rig = Rig()
    call = Call(rig)
    call.start()
    d = only_dialog(rig)
    assert call.forwarded is not None
    (rr,) = as_request(call.forwarded).record_route
    assert rr.uri.params.get("did") == d.did  # type: ignore[union-attr]
    assert d.did == f"{d.h_entry:x}"[::-1] + "." + f"{d.h_id:x}"[::-1]


def test_a_failed_call_is_state_5_counted_failed_and_leaves_its_profiles() -> None:
    rig = Rig()
    rig.record(events.DialogFailed, events.DialogFailedRoute, events.DialogDestroyed)
    call = Call(rig)
    call.start()
    call.reply(180)
    assert rig.tracker.profile_size("calls") == 1
    call.reply(486)
    d = only_dialog(rig)
    assert d.state is DialogState.DELETED
    assert rig.tracker.stats.failed == 1 and rig.tracker.stats.early == 0
    assert rig.tracker.stats.active == 0
    assert rig.tracker.profile_size("calls") == 0
    assert rig.names() == ["DialogFailed", "DialogFailedRoute"]
    rig.advance(5.0)  # wait_ack: kept to absorb the ACK, then destroyed
    assert rig.names()[-1] == "DialogDestroyed" and len(rig.tracker) == 0


def test_a_cancelled_call_fails_with_the_487() -> None:
    rig = Rig()
    call = Call(rig)
    call.start()
    call.reply(180)
    cancel = (
        bytes(call.invite).replace(b"INVITE sip:", b"CANCEL sip:").replace(b"1 INVITE", b"1 CANCEL")
    )
    rig.send(cancel, UAC)
    assert only_dialog(rig).state is DialogState.EARLY
    call.reply(487)
    assert only_dialog(rig).state is DialogState.DELETED
    assert rig.tracker.stats.failed == 1


def test_a_503_absorbed_by_failover_does_not_fail_the_dialog() -> None:
    def script(rig: Rig, ctx: RequestContext) -> None:
        if ctx.loose_route():
            ctx.relay()
            return
        ctx.record_route()
        rig.tracker.manage(ctx)
        ctx.on_failure(lambda c: c.relay(UAS2))
        ctx.relay(UAS)

    rig = Rig(script=script)
    call = Call(rig)
    call.start()
    out = call.reply(503)
    assert only_dialog(rig).state is DialogState.UNCONFIRMED
    (second,) = [s for s in out if s.destination == UAS2]
    call.forwarded = second
    call.reply(200, source=UAS2)
    d = only_dialog(rig)
    assert d.state is DialogState.CONFIRMED_NA and d.callee_address == UAS2
    assert rig.tracker.stats.failed == 0


def test_a_bye_from_the_callee_ends_the_dialog_upstream() -> None:
    rig = Rig()
    rig.record(events.DialogTerminated)
    call = Call(rig)
    call.established()
    rig.send(bytes(call.from_callee("BYE")), UAS)
    (event,) = rig.events
    assert isinstance(event, events.DialogTerminated)
    assert event.direction is Direction.UPSTREAM
    assert only_dialog(rig).callee_cseq == "101"


def test_a_re_invite_is_a_request_within_and_tracks_cseq() -> None:
    rig = Rig()
    rig.record(events.DialogRequestWithin)
    call = Call(rig)
    call.established()
    rig.send(bytes(call.in_dialog("INVITE")), UAC)
    (event,) = rig.events
    assert isinstance(event, events.DialogRequestWithin)
    assert event.direction is Direction.DOWNSTREAM
    assert only_dialog(rig).caller_cseq == "2"


def test_the_ack_with_another_cseq_does_not_confirm() -> None:
    rig = Rig()
    call = Call(rig)
    call.start()
    call.reply(200)
    rig.send(bytes(call.in_dialog("ACK", cseq=7)), UAC)
    assert only_dialog(rig).state is DialogState.CONFIRMED_NA


# -- matching ------------------------------------------------------------------------


def test_did_only_refuses_a_request_without_the_cookie() -> None:
    rig = Rig()
    call = Call(rig)
    call.established()
    bye = call.in_dialog("BYE")
    bye.remove_header("Route")
    assert rig.tracker.match(bye) is None


def test_a_did_cookie_with_another_call_id_or_tag_never_matches() -> None:
    rig = Rig()
    call = Call(rig)
    call.established()
    d = only_dialog(rig)
    bye = call.in_dialog("BYE")
    assert rig.tracker.match(bye) == (d, Direction.DOWNSTREAM)
    forged = call.in_dialog("BYE")
    forged.replace_header("Call-ID", "someone-else")
    assert rig.tracker.match(forged) is None
    wrong_tag = call.in_dialog("BYE")
    wrong_tag.replace_header("To", "<sip:bob@example.com>;tag=other")
    assert rig.tracker.match(wrong_tag) is None


def test_did_fallback_matches_on_call_id_and_tags_when_there_is_no_cookie() -> None:
    rig = Rig(DialogConfig(match_mode=MatchMode.DID_FALLBACK))
    call = Call(rig)
    call.established()
    bye = call.in_dialog("BYE")
    bye.remove_header("Route")
    assert rig.tracker.match(bye) == (only_dialog(rig), Direction.DOWNSTREAM)


def test_did_none_adds_no_cookie_and_matches_on_sip_elements() -> None:
    rig = Rig(DialogConfig(match_mode=MatchMode.DID_NONE))
    call = Call(rig)
    call.start()
    assert call.forwarded is not None
    (rr,) = as_request(call.forwarded).record_route
    assert "did" not in rr.uri.params  # type: ignore[union-attr]
    call.reply(200)
    call.ack()
    assert only_dialog(rig).state is DialogState.CONFIRMED


def test_a_spiral_maps_to_the_same_dialog() -> None:
    def script(rig: Rig, ctx: RequestContext) -> None:
        if ctx.loose_route():
            ctx.relay()
            return
        ctx.record_route()
        rig.tracker.manage(ctx)
        # First pass: route back to ourselves with a new Request-URI (a spiral).
        if "bob@example.com" in str(ctx.request.uri):
            ctx.relay(PROXY, uri="sip:bob@127.0.0.1:5062")
        else:
            ctx.relay(UAS)

    rig = Rig(DialogConfig(), script=script)
    rig.record(events.DialogCreated, events.DialogSpiraled)
    call = Call(rig)
    out = call.start()
    (looped,) = [s for s in out if s.destination == PROXY]
    out = rig.send(looped.data, PROXY)
    assert any(s.destination == UAS for s in out)
    assert rig.names() == ["DialogCreated", "DialogSpiraled"]
    assert len(rig.tracker) == 1 and only_dialog(rig).spirals == 1


def test_dlg_get_finds_a_dialog_either_way_and_during_setup() -> None:
    rig = Rig()
    call = Call(rig)
    call.start()
    d = only_dialog(rig)
    assert rig.tracker.get("call-1", "alice-tag", "") is d
    call.reply(200)
    assert rig.tracker.get("call-1", "alice-tag", "bob-tag") is d
    assert rig.tracker.get("call-1", "bob-tag", "alice-tag") is d
    assert rig.tracker.get("call-1", "nobody", "bob-tag") is None
    assert d is not None and rig.tracker.by_id(d.h_entry, d.h_id) is d


# -- identifiers ------------------------------------------------------------------------


def test_h_entry_is_kamailio_core_hash_of_the_call_id() -> None:
    from sipcore import core_hash

    rig = Rig(DialogConfig(hash_size=1024))
    Call(rig, "a84b4c76e66710@pc33.atlanta.com").start()
    assert only_dialog(rig).h_entry == core_hash(b"a84b4c76e66710@pc33.atlanta.com", size=1024)


def test_h_id_follows_h_id_start_plus_n_times_h_id_step() -> None:
    rig = Rig(DialogConfig(h_id_start=3, h_id_step=10))
    for i in range(5):
        Call(rig, "same-call-id", user=f"u{i}").start()
    ids = sorted(d.h_id for d in rig.tracker)
    assert all(h % 10 == 3 for h in ids)
    assert [b - a for a, b in itertools.pairwise(ids)] == [10, 10, 10, 10]


def test_config_refuses_what_kamailio_refuses() -> None:
    with pytest.raises(LocalProtocolError):
        DialogConfig(hash_size=1000)
    with pytest.raises(LocalProtocolError):
        DialogConfig(h_id_start=5, h_id_step=4)
    with pytest.raises(LocalProtocolError):
        DialogConfig(ka_interval=10)
    with pytest.raises(LocalProtocolError):
        DialogConfig(profiles_with_value=("a",), profiles_no_value=("a",))


# -- timers ------------------------------------------------------------------------------


def test_a_confirmed_dialog_expires_after_default_timeout() -> None:
    rig = Rig(DialogConfig(default_timeout=100))
    rig.record(events.DialogExpired, events.DialogEnd)
    call = Call(rig)
    call.established()
    rig.advance(99.0)
    assert only_dialog(rig).state is DialogState.CONFIRMED
    rig.advance(1.0)
    assert only_dialog(rig).state is DialogState.DELETED
    assert rig.tracker.stats.expired == 1 and rig.tracker.stats.active == 0
    assert rig.names() == ["DialogExpired", "DialogEnd"]


def test_a_sequential_request_resets_the_timeout_unless_timeout_noreset() -> None:
    for noreset in (False, True):
        rig = Rig(DialogConfig(default_timeout=100))
        call = Call(rig)
        call.established()
        dialog = only_dialog(rig)
        if noreset:
            rig.tracker.set_property(dialog, "timeout-noreset")
        rig.advance(60.0)
        rig.send(bytes(call.in_dialog("INFO")), UAC)
        rig.advance(45.0)  # 105 s after the ACK, 45 s after the INFO
        expected = DialogState.DELETED if noreset else DialogState.CONFIRMED
        assert dialog.state is expected, noreset
        assert dialog.expired is noreset


def test_timeout_bye_sends_bye_both_ways_with_route_tags_and_cseq() -> None:
    def script(rig: Rig, ctx: RequestContext) -> None:
        if ctx.loose_route():
            ctx.relay()
            return
        ctx.record_route()
        dialog = rig.tracker.manage(ctx)
        assert dialog is not None
        dialog.ctx.timeout_bye = True  # $dlg_ctx(timeout_bye) = 1
        ctx.relay(UAS)

    rig = Rig(DialogConfig(default_timeout=30), script=script)
    call = Call(rig)
    call.established()
    out = rig.advance(30.0)
    byes = [s for s in out if isinstance(s.message, Request) and s.message.method == "BYE"]
    assert sorted(s.destination.port for s in byes) == [UAC.port, UAS.port]
    to_callee = as_request(next(s for s in byes if s.destination == UAS))
    assert (to_callee.from_.tag, to_callee.to.tag) == ("alice-tag", "bob-tag")
    assert to_callee.cseq.number == 2 and str(to_callee.uri) == f"sip:bob@{UAS.hostport}"
    to_caller = as_request(next(s for s in byes if s.destination == UAC))
    assert (to_caller.from_.tag, to_caller.to.tag) == ("bob-tag", "alice-tag")
    assert str(to_caller.uri) == f"sip:alice@{UAC.hostport}"
    d = only_dialog(rig)
    assert d.state is DialogState.DELETED and d.expired
    # Both BYEs answered: the dialog lingers, then goes.
    for s in byes:
        rig.send(bytes(make_response(as_request(s), 200)), s.destination)
    rig.advance(rig.config.deleted_linger)
    assert len(rig.tracker) == 0


def test_no_ack_after_noack_timeout_leaves_ten_seconds_then_expires() -> None:
    rig = Rig(DialogConfig(noack_timeout=60))
    call = Call(rig)
    call.start()
    call.reply(200)
    rig.advance(60.0)
    assert only_dialog(rig).state is DialogState.CONFIRMED_NA
    rig.advance(9.9)
    assert only_dialog(rig).state is DialogState.CONFIRMED_NA
    rig.advance(0.1)
    assert only_dialog(rig).state is DialogState.DELETED
    assert rig.tracker.stats.expired == 1


def test_an_unanswered_dialog_goes_after_early_timeout() -> None:
    rig = Rig(DialogConfig(early_timeout=50))
    call = Call(rig)
    call.start()
    call.reply(180)
    rig.advance(50.0)
    assert only_dialog(rig).state is DialogState.DELETED
    assert rig.tracker.stats.expired == 1 and rig.tracker.stats.early == 0


def test_set_timeout_and_set_timeout_by_profile() -> None:
    rig = Rig()
    calls = [Call(rig, f"c{i}", user="alice" if i < 2 else "carol") for i in range(3)]
    for call in calls:
        call.established()
    assert rig.tracker.set_timeout_by_profile("caller", 5, value="alice") == 2
    rig.advance(5.0)
    states = {d.call_id: d.state for d in rig.tracker}
    assert states == {
        "c0": DialogState.DELETED,
        "c1": DialogState.DELETED,
        "c2": DialogState.CONFIRMED,
    }
    d2 = rig.tracker.get("c2", "carol-tag", "bob-tag")
    assert d2 is not None
    rig.tracker.set_timeout(d2, 1)
    rig.advance(1.0)
    assert d2.state is DialogState.DELETED


def test_a_timeout_route_runs_on_expiry() -> None:
    ran: list[str] = []
    rig = Rig(DialogConfig(default_timeout=10))
    rig.tracker.timeout_routes["DLGTIMEOUT"] = lambda d: ran.append(d.call_id)
    call = Call(rig)
    call.established()
    only_dialog(rig).ctx.timeout_route = "DLGTIMEOUT"
    rig.advance(10.0)
    assert ran == ["call-1"]


# -- profiles --------------------------------------------------------------------------------


def test_profiles_count_members_by_value_and_lose_them_when_the_dialog_ends() -> None:
    rig = Rig()
    alice1, alice2, carol = Call(rig, "a1"), Call(rig, "a2"), Call(rig, "c1", user="carol")
    for call in (alice1, alice2, carol):
        call.established()
    t = rig.tracker
    assert t.profile_size("calls") == 3
    assert t.profile_size("caller") == 3
    assert t.profile_size("caller", "alice") == 2 and t.profile_size("caller", "carol") == 1
    d = t.get("a1", "alice-tag", "bob-tag")
    assert d is not None
    assert t.is_in_profile(d, "caller", "alice") and not t.is_in_profile(d, "caller", "carol")
    assert t.is_in_profile(d, "calls")
    assert {x.call_id for x in t.profiles["caller"].dialogs("alice")} == {"a1", "a2"}
    alice1.bye()
    assert t.profile_size("caller", "alice") == 1 and t.profile_size("calls") == 2


def test_adding_a_dialog_twice_counts_twice_and_unset_removes_one() -> None:
    rig = Rig()
    call = Call(rig)
    call.established()
    d = only_dialog(rig)
    rig.tracker.set_profile(d, "calls")
    assert rig.tracker.profile_size("calls") == 2
    assert rig.tracker.unset_profile(d, "calls")
    assert rig.tracker.profile_size("calls") == 1
    assert rig.tracker.unset_profile(d, "caller", "alice")
    assert not rig.tracker.unset_profile(d, "caller", "alice")
    assert rig.tracker.profile_size("caller") == 0


def test_a_value_for_a_profile_without_values_is_dropped() -> None:
    rig = Rig()
    call = Call(rig)
    call.established()
    d = only_dialog(rig)
    rig.tracker.set_profile(d, "calls", "ignored")
    assert rig.tracker.profile_size("calls", "anything") == 2
    with pytest.raises(LocalProtocolError):
        rig.tracker.profile_size("no-such-profile")


def test_remote_profile_items_count_until_they_expire_or_are_removed() -> None:
    rig = Rig()
    t = rig.tracker
    t.remote_profile("add", "caller", "alice", "uid-1", expires=100.0)
    t.remote_profile("add", "caller", "alice", "uid-2", expires=50.0)
    t.remote_profile("add", "calls", "", "uid-3", expires=100.0)
    assert t.profile_size("caller", "alice") == 2 and t.profile_size("calls") == 1
    assert t.remote_profile("rm", "caller", "alice", "uid-1", 0.0)
    assert t.profile_size("caller", "alice") == 1
    rig.advance(50.0)
    assert t.profile_size("caller") == 0 and t.profile_size("calls") == 1
    with pytest.raises(LocalProtocolError):
        t.remote_profile("move", "calls", "", "x", 0.0)


# -- flags, properties, variables, statistics ----------------------------------------------


def test_flags_and_variables() -> None:
    rig = Rig()
    call = Call(rig)
    call.established()
    d = only_dialog(rig)
    d.set_flag(3)
    assert d.is_flag_set(3) and not d.is_flag_set(4) and d.sflags == 8
    d.reset_flag(3)
    assert not d.is_flag_set(3)
    with pytest.raises(LocalProtocolError):
        d.set_flag(32)
    d.vars["billing"] = "gold"
    assert rig.tracker.get("call-1", "alice-tag", "bob-tag").vars == {"billing": "gold"}  # type: ignore[union-attr]
    rig.tracker.set_property(d, "ka-src")
    assert d.iflags == Property.KA_SRC
    rig.tracker.reset_property(d, Property.KA_SRC)
    assert d.iflags == Property(0)
    with pytest.raises(LocalProtocolError):
        rig.tracker.set_property(d, "ka-everywhere")


def test_stats_active_scans_the_dialogs_by_state() -> None:
    rig = Rig()
    Call(rig, "s").start()
    ringing = Call(rig, "r")
    ringing.start()
    ringing.reply(180)
    answering = Call(rig, "a")
    answering.start()
    answering.reply(200)
    Call(rig, "o").established()
    assert rig.tracker.stats_active() == {
        "starting": 1,
        "connecting": 1,
        "answering": 1,
        "ongoing": 1,
        "all": 4,
    }
    assert rig.tracker.stats.active == 2 and rig.tracker.stats.early == 1


def test_set_state_changes_the_state_without_ending_events() -> None:
    rig = Rig()
    rig.record(events.DialogEnd, events.DialogTerminated)
    call = Call(rig)
    call.established()
    rig.tracker.set_state(only_dialog(rig), DialogState.DELETED)
    assert rig.events == [] and rig.tracker.stats.active == 0
    assert rig.tracker.profile_size("calls") == 0
    rig.advance(5.0)
    assert len(rig.tracker) == 0


# -- locally generated requests ----------------------------------------------------------------


def test_dlg_bye_on_a_confirmed_dialog_sends_bye_to_both() -> None:
    rig = Rig()
    call = Call(rig)
    call.established()
    rig.tracker.bye(only_dialog(rig), Side.ALL, now=rig.now)
    out = rig.proxy.take()
    assert sorted((s.destination.port, as_request(s).method) for s in out) == [
        (UAC.port, "BYE"),
        (UAS.port, "BYE"),
    ]
    assert only_dialog(rig).state is DialogState.DELETED


def test_dlg_bye_on_an_early_dialog_cancels_the_callee_and_answers_the_caller() -> None:
    rig = Rig()
    call = Call(rig)
    call.start()
    call.reply(180)
    rig.tracker.bye(only_dialog(rig), Side.ALL, now=rig.now)
    out = rig.proxy.take()
    kinds = sorted(
        (s.destination.port, getattr(s.message, "method", None) or s.message.status_code)  # type: ignore[attr-defined]
        for s in out
    )
    assert kinds == [(UAC.port, 480), (UAS.port, "CANCEL")]
    assert only_dialog(rig).state is DialogState.DELETED
    assert rig.tracker.stats.failed == 1


def test_request_within_sends_to_the_callee_with_the_next_cseq_and_reports_the_answer() -> None:
    rig = Rig()
    call = Call(rig)
    call.established()
    answers: list[tuple[Side, int]] = []
    (_req,) = rig.tracker.request_within(
        only_dialog(rig),
        Side.CALLEE,
        "INFO",
        now=rig.now,
        headers=[("X-Info", "credit low")],
        body=b"hello",
        content_type="text/plain",
        on_response=lambda side, r: answers.append((side, r.status_code)),
    )
    (send,) = rig.proxy.take()
    sent = as_request(send)
    assert send.destination == UAS and sent.method == "INFO" and sent.cseq.number == 2
    assert sent.get("X-Info") == "credit low" and sent.body == b"hello"
    rig.send(bytes(make_response(sent, 200)), UAS)
    assert answers == [(Side.CALLEE, 200)]


def test_keepalives_to_the_callee_and_a_481_ends_the_dialog() -> None:
    rig = Rig(DialogConfig(ka_interval=30))
    rig.record(events.KeepaliveFailed)
    call = Call(rig)
    call.established()
    d = only_dialog(rig)
    rig.tracker.set_property(d, "ka-dst")
    out = rig.advance(30.0)
    (ka,) = [s for s in out if isinstance(s.message, Request) and s.message.method == "OPTIONS"]
    options = as_request(ka)
    # Kamailio's dlg_send_ka: the CSeq below the caller's last, the count kept.
    assert ka.destination == UAS and options.cseq.number == 0
    assert d.caller_cseq == "1"
    rig.send(bytes(make_response(options, 200)), UAS)
    out = rig.advance(30.0)
    (ka,) = [s for s in out if isinstance(s.message, Request)]
    rig.send(bytes(make_response(as_request(ka), 481)), UAS)
    assert [e.status_code for e in rig.events] == [481]  # type: ignore[attr-defined]
    rig.advance(10.0)
    assert d.state is DialogState.DELETED and d.expired


def test_a_tracker_without_a_proxy_follows_messages_it_is_given() -> None:
    tracker = DialogTracker(rng=random.Random(1))
    call = Call(Rig())  # only to build messages
    dialog = tracker.create(call.invite, 0.0, UAC)
    ok = make_response(call.invite, 200, to_tag="t")
    tracker.on_response(dialog, ok, 1.0)
    assert dialog.state is DialogState.CONFIRMED_NA and dialog.to_tag == "t"
    # Without a proxy the requests come back for the application to send.
    (info,) = tracker.request_within(dialog, Side.CALLER, "INFO", now=1.0)
    assert info.method == "INFO" and "Via" not in info
    assert (info.from_.tag, info.to.tag) == ("t", "alice-tag")
    assert [(d, side, r) for d, side, r in tracker.take_requests()] == [(dialog, Side.CALLER, info)]
    # No ACK ever: at the noack timeout it gets 10 more seconds, then expires.
    assert tracker.tick(61.0) == []
    assert tracker.tick(71.0) == [dialog]
    assert tracker.take_requests() == []  # no send_bye, no timeout_bye
    in_dialog = parse_message(
        bytes(call.invite).replace(b"<sip:bob@example.com>\r\n", b"<sip:bob@example.com>;tag=x\r\n")
    )
    assert isinstance(in_dialog, Request) and in_dialog.to.tag == "x"
    with pytest.raises(LocalProtocolError):
        tracker.create(in_dialog, 0.0)


# -- regressions ------------------------------------------------------------------------


def test_a_reply_is_timed_when_it_comes_not_with_its_request() -> None:
    rig = Rig()
    call = Call(rig)
    call.start()  # INVITE at 0
    rig.now = 1.0
    call.reply(180)
    rig.now = 30.0
    call.reply(200)
    d = only_dialog(rig)
    assert d.start_time == 30.0
    assert d.deadline == 30.0 + rig.config.noack_timeout


def test_unset_profile_without_a_value_drops_the_same_membership_on_both_sides() -> None:
    rig = Rig()
    x, y = Call(rig, "x", user="xavier"), Call(rig, "y", user="yves")
    x.established()
    y.established()
    dy = rig.tracker.get("y", "yves-tag", "bob-tag")
    assert dy is not None
    rig.tracker.set_profile(dy, "caller", "xavier")
    assert rig.tracker.unset_profile(dy, "caller")  # its first link: "yves"
    assert not rig.tracker.is_in_profile(dy, "caller", "yves")
    assert rig.tracker.is_in_profile(dy, "caller", "xavier")
    assert [link.value for link in dy.profiles if link.profile == "caller"] == ["xavier"]
    assert rig.tracker.profile_size("caller", "xavier") == 2


def test_an_early_timeout_runs_dialog_failed_and_no_timeout_route() -> None:
    ran: list[str] = []
    rig = Rig(DialogConfig(early_timeout=20))
    rig.tracker.timeout_routes["T"] = lambda d: ran.append(d.call_id)
    rig.record(events.DialogExpired, events.DialogEnd, events.DialogFailedRoute)
    call = Call(rig)
    call.start()
    call.reply(180)
    only_dialog(rig).ctx.timeout_route = "T"
    rig.advance(20.0)
    assert rig.names() == ["DialogExpired", "DialogFailedRoute"]
    assert ran == []


def test_did_fallback_falls_back_when_the_cookie_names_no_dialog() -> None:
    for mode, expected in ((MatchMode.DID_FALLBACK, True), (MatchMode.DID_ONLY, False)):
        rig = Rig(DialogConfig(match_mode=mode))
        call = Call(rig)
        call.established()
        bye = call.in_dialog("BYE")
        bye.replace_header("Route", f"<sip:{PROXY.hostport};lr;did=0.0>")
        assert (rig.tracker.match(bye) is not None) is expected, mode


def test_the_callee_socket_is_set_and_keep_proxy_rr_2_keeps_our_route_to_the_caller() -> None:
    rig = Rig(DialogConfig(keep_proxy_rr=3))
    call = Call(rig)
    call.established()
    d = only_dialog(rig)
    assert d.callee_socket == PROXY
    (ours,) = d.caller_route_set
    assert f"did={d.did}" in ours
    assert d.callee_route_set == (ours,)


def test_enable_stats_off_counts_nothing() -> None:
    rig = Rig(DialogConfig(enable_stats=False))
    Call(rig).established()
    assert rig.tracker.stats == DialogStats()
    assert rig.tracker.stats_active()["ongoing"] == 1


def test_initial_callbacks_post_script_run_when_the_branch_leaves() -> None:
    seen: list[str] = []

    def script(rig: Rig, ctx: RequestContext) -> None:
        ctx.record_route()
        rig.tracker.manage(ctx)
        seen.append("script")
        ctx.relay(UAS)
        seen.append("relayed")

    rig = Rig(DialogConfig(initial_cbs_inscript=False), script=script)
    rig.tracker.subscribe(events.DialogCreated, lambda e: seen.append("created"))
    Call(rig).start()
    assert seen == ["script", "created", "relayed"]


def test_filter_mode_1_sends_no_timeout_bye_for_a_dialog_without_a_local_socket() -> None:
    tracker = DialogTracker(DialogConfig(filter_mode=1, send_bye=True, default_timeout=10))
    call = Call(Rig())
    dialog = tracker.create(call.invite, 0.0, UAC)
    tracker.on_response(dialog, make_response(call.invite, 200, to_tag="t"), 0.0)
    assert tracker.tick(100.0) == []  # no ACK: the noack timeout leaves 10 s more
    assert tracker.tick(110.0) == [dialog]
    assert tracker.take_requests() == []  # not local: no BYE


def test_lifetime_of_a_dialog_ended_at_time_zero() -> None:
    rig = Rig()
    call = Call(rig)
    call.established()
    call.bye()
    assert only_dialog(rig).lifetime(100.0) == 0.0


def test_packed_fields_keep_every_value_even_with_separators_in_them() -> None:
    d = Dialog(
        1, 2, "c", "sip:a@b", "ft", "sip:c@d", "sip:r@e", "1", "sip:a@x", 0.0,
        caller_route_set=("<sip:p1;lr>", "<sip:p2;lr>"),
    )  # fmt: skip
    assert isinstance(d._cold, str)  # two route entries still pack
    assert d.caller_route_set == ("<sip:p1;lr>", "<sip:p2;lr>")
    odd = ("<sip:q\x01;lr>", "<sip:\x00>")
    d.update(callee_route_set=odd, callee_cseq="5", callee_contact="sip:b\x00@h")
    assert not isinstance(d._cold, str)  # a separator inside: kept unpacked
    assert (d.callee_route_set, d.callee_cseq, d.callee_contact) == (odd, "5", "sip:b\x00@h")
    assert d.caller_route_set == ("<sip:p1;lr>", "<sip:p2;lr>") and d.from_uri == "sip:a@b"
    d.update(callee_route_set=(), callee_contact="sip:b@h")
    assert isinstance(d._cold, str) and d.callee_route_set == () and d.callee_cseq == "5"


def test_properties_have_kamailios_iflags_bit_values() -> None:
    # dlg_hash.h: DLG_IFLAG_TIMEOUTBYE 1<<0, KA_SRC 1<<1, KA_DST 1<<2, TIMER_NORESET 1<<3;
    # the iflags column holds these bits, so a row Kamailio wrote reads the same here.
    assert (Property.KA_SRC, Property.KA_DST, Property.TIMEOUT_NORESET) == (2, 4, 8)


def test_the_dlg_flag_equivalent_tracks_the_invite_when_it_is_relayed() -> None:
    def script(rig: Rig, ctx: RequestContext) -> None:
        if ctx.loose_route():
            ctx.relay()
            return
        rig.tracker.mark(ctx)  # setflag(DLG_FLAG)
        assert len(rig.tracker) == 0  # nothing yet: only when relayed
        ctx.record_route()
        ctx.relay(UAS)

    rig = Rig(script=script)
    call = Call(rig)
    call.start()
    d = only_dialog(rig)
    assert call.forwarded is not None
    (rr,) = as_request(call.forwarded).record_route
    assert rr.uri.params.get("did") == d.did  # type: ignore[union-attr]
    call.reply(200)
    call.ack()
    assert d.state is DialogState.CONFIRMED


def test_a_marked_request_answered_locally_makes_no_dialog() -> None:
    def script(rig: Rig, ctx: RequestContext) -> None:
        rig.tracker.mark(ctx)
        ctx.reply(486)

    rig = Rig(script=script)
    Call(rig).start()
    assert len(rig.tracker) == 0
