"""The dlg.* RPC commands, dlg_bridge and dlg_refer, on real message flows."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from dialog_helpers import UAC, UAS, Call, Rig, as_request
from sipcore import Endpoint, Request, Response, make_response, parse_message
from sipcore_dialog import (
    HOLD_SDP,
    DialogManagement,
    DialogState,
    ManagementError,
    Side,
    bridge,
    refer,
)


def rig_with_calls() -> tuple[Rig, DialogManagement, list[Call]]:
    rig = Rig()
    calls = [
        Call(rig, "call-a", user="alice"),
        Call(rig, "call-b", user="alice"),
        Call(rig, "call-c", user="carol"),
    ]
    for call in calls:
        call.established()
    rig.now = 10.0
    return rig, DialogManagement(rig.tracker, to_unix=lambda t: 1_700_000_000 + t), calls


def test_list_describes_dialogs_with_kamailio_field_names() -> None:
    _rig, mgmt, _ = rig_with_calls()
    rows = mgmt.list()
    assert len(rows) == 3
    row = next(r for r in rows if r["call-id"] == "call-a")
    assert row["state"] == 4 and row["start_ts"] == 1_700_000_000
    assert row["caller"]["tag"] == "alice-tag" and row["callee"]["tag"] == "bob-tag"
    assert row["caller"]["contact"] == f"sip:alice@{UAC.hostport}"
    assert row["caller"]["socket"] == "udp:127.0.0.1:5060"
    assert {"caller": "alice"} in row["profiles"] and {"calls": ""} in row["profiles"]
    assert "context" not in row
    assert set(mgmt.list(context=True)[0]["context"]) == {
        "timeout_route",
        "timeout_bye",
        "flags",
        "spirals",
    }
    json.dumps(rows)  # JSON-ready


def test_dlg_list_by_call_id_and_from_tag() -> None:
    _, mgmt, _ = rig_with_calls()
    assert [r["call-id"] for r in mgmt.dlg_list("call-b")] == ["call-b"]
    assert mgmt.dlg_list("call-b", "alice-tag")[0]["h_id"] > 0
    assert mgmt.dlg_list("call-b", "wrong-tag") == []


@pytest.mark.parametrize(
    ("key", "op", "value", "limit", "expected"),
    [
        ("furi", "eq", "sip:alice@example.com", None, {"call-a", "call-b"}),
        ("furi", "eq", "sip:alice@example.com", 1, 1),
        ("furi", "sw", "sip:car", None, {"call-c"}),
        ("callid", "re", "^call-[ab]$", None, {"call-a", "call-b"}),
        ("turi", "eq", "sip:bob@example.com", None, {"call-a", "call-b", "call-c"}),
        ("ruri", "sw", "sip:bob@", None, {"call-a", "call-b", "call-c"}),
        ("start_ts", "gt", "s:1699999999", None, {"call-a", "call-b", "call-c"}),
        ("start_ts", "lt", "1700000000", None, set()),
    ],
)
def test_list_match_with_every_operator(
    key: str, op: str, value: str, limit: int | None, expected: set[str] | int
) -> None:
    _, mgmt, _ = rig_with_calls()
    rows = mgmt.list_match(key, op, value, limit)
    if isinstance(expected, int):
        assert len(rows) == expected
    else:
        assert {r["call-id"] for r in rows} == expected


def test_list_match_refuses_bad_parameters() -> None:
    _, mgmt, _ = rig_with_calls()
    for args in [
        ("nope", "eq", "x"),
        ("furi", "zz", "x"),
        ("furi", "gt", "1"),
        ("callid", "re", "("),
        ("start_ts", "gt", "soon"),
    ]:
        with pytest.raises(ManagementError) as exc:
            mgmt.list_match(*args)
        assert exc.value.status_hint == 400


def test_dump_file_writes_every_dialog_as_json(tmp_path: Path) -> None:
    _, mgmt, _ = rig_with_calls()
    path = tmp_path / "dlg.json"
    assert mgmt.dump_file(path) == 3
    assert {d["call-id"] for d in json.loads(path.read_text())} == {"call-a", "call-b", "call-c"}
    stream = io.StringIO()
    assert mgmt.dump_file(stream) == 3
    assert json.loads(stream.getvalue())[0]["context"]["timeout_bye"] == 0


def test_terminate_dlg_sends_bye_both_ways_only_for_confirmed_dialogs() -> None:
    rig, mgmt, _ = rig_with_calls()
    mgmt.terminate_dlg("call-a", "alice-tag", "bob-tag", now=rig.now)
    methods = sorted((s.destination.port, as_request(s).method) for s in rig.proxy.take())
    assert methods == [(UAC.port, "BYE"), (UAS.port, "BYE")]
    with pytest.raises(ManagementError):
        mgmt.terminate_dlg("call-a", "alice-tag", "bob-tag", now=rig.now)  # now state 5
    with pytest.raises(ManagementError) as exc:
        mgmt.terminate_dlg("nope", "x", "y", now=rig.now)
    assert exc.value.status_hint == 404


def test_end_dlg_by_h_entry_and_h_id_with_extra_headers() -> None:
    rig, mgmt, _ = rig_with_calls()
    d = rig.tracker.get("call-c", "carol-tag", "bob-tag")
    assert d is not None
    mgmt.end_dlg(d.h_entry, d.h_id, now=rig.now, extra_headers=[("Reason", "Q.850;cause=16")])
    sent = [as_request(s) for s in rig.proxy.take()]
    assert len(sent) == 2 and all(r.get("Reason") == "Q.850;cause=16" for r in sent)
    with pytest.raises(ManagementError):
        mgmt.end_dlg(d.h_entry, d.h_id + 1, now=rig.now)


def test_set_state_profile_size_list_is_alive() -> None:
    _rig, mgmt, _ = rig_with_calls()
    assert mgmt.profile_get_size("caller") == 3
    assert mgmt.profile_get_size("caller", "alice") == 2
    assert {r["call-id"] for r in mgmt.profile_list("caller", "alice")} == {"call-a", "call-b"}
    assert len(mgmt.profile_list("calls")) == 3
    with pytest.raises(ManagementError):
        mgmt.profile_get_size("unknown")
    assert mgmt.is_alive("call-a", "alice-tag", "bob-tag")
    mgmt.set_state("call-a", "alice-tag", "bob-tag", 5)
    assert mgmt.profile_get_size("caller", "alice") == 1
    with pytest.raises(ManagementError):
        mgmt.is_alive("call-a", "alice-tag", "bob-tag")
    with pytest.raises(ManagementError):
        mgmt.set_state("call-b", "alice-tag", "bob-tag", 9)


def test_stats_active_and_briefing() -> None:
    _, mgmt, _ = rig_with_calls()
    assert mgmt.stats_active() == {
        "starting": 0,
        "connecting": 0,
        "answering": 0,
        "ongoing": 3,
        "all": 3,
    }
    assert mgmt.stats_active(local_only=True)["all"] == 3
    brief = mgmt.briefing()
    assert set(brief[0]) == {
        "h_entry",
        "h_id",
        "from_uri",
        "to_uri",
        "call-id",
        "from_tag",
        "to_tag",
    }
    (one,) = [b for b in mgmt.briefing("csIS") if b["call-id"] == "call-a"]
    assert (
        one["state"] == 4 and one["init_ts"] == 1_700_000_000 and one["start_ts"] == 1_700_000_000
    )
    with pytest.raises(ManagementError):
        mgmt.briefing("fz")


# -- dlg_bridge and dlg_refer -------------------------------------------------------


def test_bridge_invites_from_the_controller_then_refers_then_hangs_up() -> None:
    rig = Rig()
    invite = bridge(
        rig.tracker,
        "sip:alice@127.0.0.1:5061",
        "sip:announcement@example.com",
        now=0.0,
    )
    (send,) = rig.proxy.take()
    sent = as_request(send)
    assert send.destination == UAC and sent.method == "INVITE"
    assert str(sent.from_.uri) == rig.config.bridge_controller
    assert str(sent.to.uri) == "sip:alice@127.0.0.1:5061" and sent.body == HOLD_SDP
    assert sent.get("Contact") == f"<{rig.config.bridge_contact}>"
    assert invite.method == "INVITE"
    ok = make_response(
        sent, 200, to_tag="alice-t", headers=[("Contact", "<sip:alice@127.0.0.1:5061>")]
    )
    out = rig.send(bytes(ok), UAC)
    ack, refer_send = (as_request(s) for s in out)
    assert ack.method == "ACK" and ack.cseq.number == sent.cseq.number
    assert refer_send.method == "REFER" and refer_send.cseq.number == sent.cseq.number + 1
    assert refer_send.get("Refer-To") == "sip:announcement@example.com"
    assert refer_send.get("Referred-By") == rig.config.bridge_controller
    assert refer_send.to.tag == "alice-t"
    out = rig.send(bytes(make_response(refer_send, 202)), UAC)
    (bye,) = (as_request(s) for s in out)
    assert bye.method == "BYE" and bye.cseq.number == sent.cseq.number + 2


def test_bridge_through_an_outbound_proxy_and_a_refused_call_does_nothing_more() -> None:
    rig = Rig()
    bridge(
        rig.tracker,
        "sip:alice@example.com",
        "sip:x@example.com",
        outbound_proxy="sip:127.0.0.1:5062",
        body=b"",
        now=0.0,
    )
    (send,) = rig.proxy.take()
    sent = as_request(send)
    assert send.destination == UAS and sent.body == b"" and "Content-Type" not in sent
    out = rig.send(bytes(make_response(sent, 486)), UAS)
    # Only the transaction's own ACK for the 486: no REFER, no BYE.
    assert [as_request(s).method for s in out] == ["ACK"]


def test_refer_sends_refer_then_bye_to_the_same_party() -> None:
    rig = Rig()
    call = Call(rig)
    call.established()
    dialog = next(iter(rig.tracker))
    refer(rig.tracker, dialog, Side.CALLEE, "sip:voicemail@example.com", now=rig.now)
    (send,) = rig.proxy.take()
    sent = as_request(send)
    assert send.destination == UAS and sent.method == "REFER"
    assert sent.get("Refer-To") == "sip:voicemail@example.com"
    out = rig.send(bytes(make_response(sent, 202)), UAS)
    (bye,) = (as_request(s) for s in out)
    assert bye.method == "BYE" and bye.cseq.number == sent.cseq.number + 1
    with pytest.raises(Exception, match="caller or the callee"):
        refer(rig.tracker, dialog, Side.ALL, "sip:x@y", now=rig.now)


def test_bridge_dlg_rpc_takes_kamailio_placeholders() -> None:
    rig = Rig()
    mgmt = DialogManagement(rig.tracker)
    mgmt.bridge_dlg("sip:alice@127.0.0.1:5061", "sip:b@example.com", ".", "_", now=0.0)
    (send,) = rig.proxy.take()
    assert as_request(send).body == b""
    assert isinstance(parse_message(send.data), Request)
    assert not isinstance(parse_message(send.data), Response)
    assert send.destination == Endpoint("127.0.0.1", 5061)
    assert all(d.state is not DialogState.DELETED for d in rig.tracker)
