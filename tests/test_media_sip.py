"""SIP glue: rtpengine_manage's choices, the ng dictionary from a message, the SDP put back."""

from __future__ import annotations

from typing import Any

import pytest

from sipcore import Endpoint, Request, Response, parse_message
from sipcore_media import (
    CallStatsReply,
    CommandError,
    CommandFailed,
    FlagDialect,
    MediaEvent,
    MessageError,
    ReplyReceived,
    Rtpengine,
    RtpengineConfig,
    SipContext,
    Transmit,
    apply_sdp,
    build_command,
    decode_message,
    encode_message,
    extract_sdp,
    manage_command,
    sip_context,
)

CID = "a84b4c76e66710@pc33.atlanta.example.com"
FT = "1928301774"
TT = "a6c85cf"
SDP_A = (
    b"v=0\r\no=alice 1 1 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\n"
    b"m=audio 30000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n"
)
SDP_B = (
    b"v=0\r\no=bob 2 2 IN IP4 127.0.0.6\r\ns=-\r\nc=IN IP4 127.0.0.6\r\nt=0 0\r\n"
    b"m=audio 31000 RTP/AVP 0\r\n"
)
NEW_SDP = (
    "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0\r\n"
)
UAC = Endpoint("127.0.0.5", 5060)
UAS = Endpoint("127.0.0.6", 5060)


def message(
    first: str,
    method: str,
    *,
    to_tag: str | None = None,
    body: bytes = b"",
    content_type: str | None = "application/sdp",
    vias: int = 1,
) -> Request | Response:
    via = "".join(
        f"Via: SIP/2.0/UDP 127.0.0.{5 + i}:5060;branch=z9hG4bK-{i}\r\n" for i in range(vias)
    )
    to = f"<sip:bob@example.com>{f';tag={to_tag}' if to_tag else ''}"
    head = (
        f"{first}\r\n{via}Max-Forwards: 70\r\nTo: {to}\r\n"
        f"From: <sip:alice@example.com>;tag={FT}\r\nCall-ID: {CID}\r\nCSeq: 1 {method}\r\n"
    )
    if body and content_type:
        head += f"Content-Type: {content_type}\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    msg = parse_message(head.encode() + body)
    assert isinstance(msg, Request | Response)
    return msg


def invite(body: bytes = SDP_A) -> Request | Response:
    return message("INVITE sip:bob@example.com SIP/2.0", "INVITE", body=body)


def reply(code: int, body: bytes = b"", method: str = "INVITE") -> Request | Response:
    return message(f"SIP/2.0 {code} Whatever", method, to_tag=TT, body=body, vias=2)


def request(method: str, body: bytes = b"") -> Request | Response:
    return message(f"{method} sip:bob@example.com SIP/2.0", method, to_tag=TT, body=body)


# -- rtpengine_manage's decision ------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "kwargs", "expected"),
    [
        (invite(), {}, "offer"),
        (invite(), {"failure_route": True}, "delete"),
        (invite(b""), {}, None),
        (reply(200, SDP_B), {}, "answer"),
        (reply(183, SDP_B), {}, "answer"),
        (reply(200, SDP_B), {"offer_in_request": True}, "answer"),
        (reply(200, SDP_B), {"offer_in_request": False}, "offer"),
        (reply(200), {}, None),
        (reply(180), {}, None),
        (reply(486), {}, "delete"),
        (reply(487, SDP_B), {}, "delete"),
        (request("ACK", SDP_B), {}, "answer"),
        (request("ACK"), {}, None),
        (request("PRACK", SDP_B), {}, "answer"),
        (request("UPDATE", SDP_A), {}, "offer"),
        (reply(200, SDP_B, method="UPDATE"), {"offer_in_request": False}, "answer"),
        (request("BYE"), {}, "delete"),
        (request("CANCEL"), {}, "delete"),
        (reply(200, method="BYE"), {}, "delete"),
        (request("OPTIONS", SDP_A), {}, None),
        (request("MESSAGE", SDP_A), {}, None),
    ],
)
def test_manage_picks_the_command_as_kamailio_does(
    msg: Request | Response, kwargs: dict[str, Any], expected: str | None
) -> None:
    assert manage_command(msg, **kwargs) == expected


# -- what is read from a message -------------------------------------------------------


def test_sip_context_reads_what_kamailio_reads() -> None:
    ctx = sip_context(reply(200, SDP_B), UAS, extra_id="x")
    assert (ctx.call_id, ctx.from_tag, ctx.to_tag, ctx.is_request) == (CID, FT, TT, False)
    assert ctx.vias == ("z9hG4bK-0", "z9hG4bK-1") and ctx.source_address == "127.0.0.6"
    assert ctx.sdp == SDP_B.decode() and ctx.extra_id == "x" and not ctx.sdp_fragment


def test_a_message_without_from_tag_is_refused() -> None:
    raw = (
        b"INVITE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:b@x>\r\n"
        b"From: <sip:a@x>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    msg = parse_message(raw)
    assert isinstance(msg, Request)
    with pytest.raises(MessageError, match="From tag"):
        sip_context(msg, "127.0.0.1")


def test_bodies_kamailio_takes_sdp_from() -> None:
    assert extract_sdp(invite()) == SDP_A
    assert extract_sdp(message("INVITE sip:b@x SIP/2.0", "INVITE", body=SDP_A,
                               content_type=None)) == SDP_A  # fmt: skip
    assert extract_sdp(message("INVITE sip:b@x SIP/2.0", "INVITE", body=b"<xml/>",
                               content_type="application/pidf+xml")) is None  # fmt: skip
    candidate = b"a=candidate:1 1 UDP 1 1.2.3.4 5 typ host\r\n"
    frag = message("INFO sip:b@x SIP/2.0", "INFO", body=candidate,
                   content_type="application/trickle-ice-sdpfrag")  # fmt: skip
    ctx = sip_context(frag, "127.0.0.1")
    assert ctx.sdp_fragment and ctx.sdp is not None


MULTIPART = (
    b"--unique\r\nContent-Type: application/sdp\r\n\r\n" + SDP_A
    + b"\r\n--unique\r\nContent-Type: application/isup; version=itu-t92+\r\n\r\n\x01\x02\x03"
    + b"\r\n--unique--\r\n"
)  # fmt: skip


def test_the_sdp_part_of_a_multipart_body_is_read_and_replaced() -> None:
    msg = message("INVITE sip:b@x SIP/2.0", "INVITE", body=MULTIPART,
                  content_type='multipart/mixed;boundary="unique"')  # fmt: skip
    assert extract_sdp(msg) == SDP_A
    apply_sdp(msg, NEW_SDP)
    assert msg.body == MULTIPART.replace(SDP_A, NEW_SDP.encode())
    assert msg.content_length == len(msg.body)
    assert extract_sdp(msg) == NEW_SDP.encode()


def test_apply_sdp_replaces_the_body_and_fixes_content_length() -> None:
    msg = invite()
    apply_sdp(msg, NEW_SDP)
    assert msg.body == NEW_SDP.encode()
    reparsed = parse_message(bytes(msg))
    assert reparsed.content_length == len(NEW_SDP) and reparsed.body == NEW_SDP.encode()
    assert reparsed.content_type == "application/sdp"
    with pytest.raises(MessageError, match="no SDP"):
        apply_sdp(request("BYE"), NEW_SDP)


# -- a call through the module functions ----------------------------------------------


class Daemon:
    """Answers each Transmit as rtpengine would and records what it got."""

    def __init__(self, engine: Rtpengine) -> None:
        self.engine = engine
        self.got: list[dict[str, Any]] = []
        self.done: list[MediaEvent] = []

    def run(self, events: list[MediaEvent], now: float = 0.0) -> None:
        for event in events:
            if isinstance(event, Transmit):
                document = decode_message(event.datagram).document
                self.got.append(document)
                answer: dict[str, Any] = {"result": "ok"}
                if document["command"] in ("offer", "answer"):
                    answer["sdp"] = NEW_SDP.replace("40000", str(40000 + len(self.got)))
                if document["command"] == "delete":
                    rtp = {"bytes": 1, "packets": 1, "errors": 0}
                    answer.update(created=1, totals={"RTP": rtp, "RTCP": rtp})
                self.run(self.engine.receive(encode_message(event.cookie, answer), now))
            else:
                self.done.append(event)


def engine() -> tuple[Rtpengine, Daemon]:
    rtp = Rtpengine(RtpengineConfig("udp:127.0.0.1:2223"), cookie_prefix="t")
    return rtp, Daemon(rtp)


def test_a_call_offer_in_invite_answer_in_200_delete_on_bye() -> None:
    rtp, daemon = engine()
    inv, ok, bye = invite(), reply(200, SDP_B), request("BYE")
    flags = "ICE=remove replace-origin replace-session-connection"
    daemon.run(rtp.rtpengine_manage(inv, 0.0, flags, source=UAC))
    daemon.run(rtp.rtpengine_manage(ok, 0.1, flags, source=UAS))
    daemon.run(rtp.rtpengine_manage(bye, 0.2, source=UAC))
    offer, answer, delete = daemon.got
    assert (offer["command"], offer["from-tag"], offer["sdp"]) == ("offer", FT, SDP_A.decode())
    assert offer["received-from"] == ["IP4", "127.0.0.5"] and "to-tag" not in offer
    assert offer["replace"] == ["origin", "session-connection"] and offer["ICE"] == "remove"
    assert (answer["command"], answer["from-tag"], answer["to-tag"]) == ("answer", FT, TT)
    assert answer["sdp"] == SDP_B.decode() and answer["received-from"] == ["IP4", "127.0.0.6"]
    assert (delete["command"], delete["from-tag"], delete["call-id"]) == ("delete", FT, CID)
    # The SDP of both messages is rtpengine's now, with the right Content-Length.
    for msg, port in ((inv, "40001"), (ok, "40002")):
        assert msg.body.decode() == NEW_SDP.replace("40000", port)
        assert parse_message(bytes(msg)).content_length == len(msg.body)
    assert bye.body == b""
    contexts = [e.context for e in daemon.done if isinstance(e, ReplyReceived)]
    assert contexts == [inv, ok, bye]
    last = daemon.done[-1]
    assert isinstance(last, ReplyReceived) and isinstance(last.reply, CallStatsReply)
    assert last.reply.rtpstat() == (
        "RTP: 1 bytes, 1 packets, 0 errors; RTCP: 1 bytes, 1 packets, 0 errors"
    )
    assert rtp.get_hash_total() == 0


def test_a_late_offer_offer_in_200_answer_in_ack() -> None:
    rtp, daemon = engine()
    ok, ack = reply(200, SDP_B), request("ACK", SDP_A)
    daemon.run(rtp.rtpengine_manage(invite(b""), 0.0))  # nothing to do
    assert daemon.got == []
    daemon.run(rtp.rtpengine_manage(ok, 0.0, "", source=UAS, offer_in_request=False))
    daemon.run(rtp.rtpengine_manage(ack, 0.1, "", source=UAC))
    offer, answer = daemon.got
    # The offerer is the callee here: its tag (the To tag) is the from-tag.
    assert (offer["command"], offer["from-tag"], offer["to-tag"]) == ("offer", TT, FT)
    assert (answer["command"], answer["from-tag"], answer["to-tag"]) == ("answer", TT, FT)
    assert ok.body.decode().startswith("v=0") and b"40001" in ok.body
    assert b"40002" in ack.body


def test_a_failed_invite_is_deleted() -> None:
    rtp, daemon = engine()
    daemon.run(rtp.rtpengine_manage(invite(), 0.0))
    daemon.run(rtp.rtpengine_manage(reply(486), 0.1))
    assert [d["command"] for d in daemon.got] == ["offer", "delete"]


def test_functions_keep_the_callers_context_and_leave_the_message_when_asked() -> None:
    rtp, daemon = engine()
    msg = invite()
    daemon.run(rtp.rtpengine_offer(msg, 0.0, context="leg-a"))
    assert [e.context for e in daemon.done if isinstance(e, ReplyReceived)] == ["leg-a"]
    info = message("INFO sip:b@x SIP/2.0", "INFO", body=b"a=candidate:1\r\n", to_tag=TT,
                   content_type="application/trickle-ice-sdpfrag")  # fmt: skip
    before = info.body
    daemon.run(rtp.rtpengine_info(info, 0.1, "trust-address"))
    assert info.body == before and daemon.got[-1]["flags"] == ["trust-address", "fragment"]


def test_answer_in_a_request_other_than_ack_or_prack_is_refused() -> None:
    rtp, _ = engine()
    with pytest.raises(CommandError, match="INVITE"):
        rtp.rtpengine_answer(invite(), 0.0)


def test_the_other_module_functions_send_their_command() -> None:
    rtp, daemon = engine()
    msg = request("INFO")
    calls = [
        (rtp.start_recording, "start recording"),
        (rtp.stop_recording, "stop recording"),
        (rtp.block_dtmf, "block DTMF"),
        (rtp.unblock_dtmf, "unblock DTMF"),
        (rtp.block_media, "block media"),
        (rtp.unblock_media, "unblock media"),
        (rtp.silence_media, "silence media"),
        (rtp.unsilence_media, "unsilence media"),
        (rtp.start_forwarding, "start forwarding"),
        (rtp.stop_forwarding, "stop forwarding"),
        (rtp.stop_media, "stop media"),
        (rtp.rtpengine_query, "query"),
        (rtp.rtpengine_delete, "delete"),
    ]
    for function, _command in calls:
        daemon.run(function(msg, 0.0))
    daemon.run(rtp.play_media(msg, 0.0, "file=/srv/a.wav"))
    daemon.run(rtp.play_dtmf(msg, 0.0, "code=5 duration=300"))
    assert [d["command"] for d in daemon.got] == [c for _, c in calls] + ["play media", "play DTMF"]
    assert daemon.got[-2]["file"] == "/srv/a.wav" and daemon.got[-1]["code"] == "5"
    assert "from-tag" not in daemon.got[2]  # block DTMF: the whole call
    assert all(isinstance(e, ReplyReceived) for e in daemon.done)


def test_a_bad_message_is_a_message_error_not_a_crash() -> None:
    rtp, _ = engine()
    with pytest.raises(MessageError):
        rtp.rtpengine_offer(invite(b""), 0.0)
    no_cseq = parse_message(
        b"BYE sip:b@x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:b@x>;tag=1\r\n"
        b"From: <sip:a@x>;tag=2\r\nCall-ID: c\r\nContent-Length: 0\r\n\r\n"
    )
    assert isinstance(no_cseq, Request)
    with pytest.raises(MessageError, match="CSeq"):
        manage_command(no_cseq)


def test_a_failure_reaches_the_caller_with_its_context() -> None:
    rtp = Rtpengine(RtpengineConfig("udp:127.0.0.1:2223", rtpengine_retr=1), cookie_prefix="t")
    msg = invite()
    rtp.rtpengine_offer(msg, 0.0)
    events = rtp.tick(1.0)
    [failed] = [e for e in events if isinstance(e, CommandFailed)]
    assert failed.context is msg and msg.body == SDP_A  # untouched
    assert [i.active for i in rtp.show()] == [False]


def test_subscribe_and_connect_functions() -> None:
    rtp, daemon = engine()
    answer_msg = reply(200, SDP_B)
    daemon.run(rtp.rtpengine_subscribe_request(request("INFO"), 0.0, "all to-tag=sub1"))
    daemon.run(rtp.rtpengine_subscribe_answer(answer_msg, 0.0, "to-tag=sub1"))
    daemon.run(rtp.rtpengine_unsubscribe(request("INFO"), 0.0, "to-tag=sub1"))
    daemon.run(rtp.rtpengine_connect(request("INFO"), 0.0, ""))
    sub, ans, unsub, connect = daemon.got
    # The subscription is the to-tag; the parties are "all" (or from-tags).
    assert (sub["command"], sub["flags"], sub["to-tag"]) == ("subscribe request", ["all"], "sub1")
    assert "from-tag" not in sub
    assert (ans["command"], ans["to-tag"], ans["sdp"]) == ("subscribe answer", "sub1",
                                                            SDP_B.decode())  # fmt: skip
    assert "from-tag" not in ans and "from-tag" not in unsub
    assert (unsub["command"], unsub["to-tag"]) == ("unsubscribe", "sub1")
    assert (connect["command"], connect["from-tag"], connect["to-tag"]) == ("connect", FT, TT)


def test_subscribe_request_names_parties_in_from_tags_in_current_kamailio() -> None:
    ctx = SipContext(CID, FT, to_tag=TT)
    current = build_command("subscribe request", "from-tags=a from-tags=b", ctx,
                            FlagDialect.KAMAILIO_5_8)  # fmt: skip
    assert current["from-tags"] == ["a", "b"] and "to-tag" not in current
    # 5.6 has no such rule: a plain key.
    assert build_command("subscribe request", "from-tags=a", ctx)["from-tags"] == "a"
