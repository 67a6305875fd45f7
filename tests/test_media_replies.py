"""Reply models and Kamailio's call statistics ($rtpstat, mos_* variables)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipcore_media import (
    CallStatsReply,
    DTMFEvent,
    ErrorReply,
    ListReply,
    LoadLimitReply,
    MosStats,
    MosValues,
    OkReply,
    PacketStats,
    PingReply,
    PlayMediaReply,
    SdpReply,
    StatisticsReply,
    StopMediaReply,
    StreamEndpoint,
    SubscribeReply,
    Totals,
    UnexpectedReply,
    decode_message,
    mos_stats,
    parse_dtmf_event,
    parse_reply,
    rtpstat,
)

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"


def stream(port: int, kind: str, packets: int = 0, **more: Any) -> dict[str, Any]:
    return {
        "local port": port,
        "local address": "127.0.0.1",
        "family": "IPv4",
        "endpoint": {"family": "IPv4", "address": "127.0.0.5", "port": 30000},
        "advertised endpoint": {"family": "IPv4", "address": "127.0.0.5", "port": 30000},
        "last packet": 1796169186,
        "flags": [kind, "filled"],
        "stats": {"packets": packets, "bytes": packets * 172, "errors": 0},
        **more,
    }


# The shape rtpengine 10.5 answered a query with (one party shown).
QUERY: dict[str, Any] = {
    "created": 1796169186,
    "created_us": 174328,
    "last signal": 1796169186,
    "SSRC": {},
    "tags": {
        "ft": {
            "tag": "ft",
            "created": 1796169186,
            "subscriptions": [{"tag": "tt", "type": "offer/answer"}],
            "medias": [
                {
                    "index": 1,
                    "type": "audio",
                    "protocol": "RTP/AVP",
                    "streams": [stream(40018, "RTP", 10), stream(40019, "RTCP")],
                    "flags": ["initialized", "send", "recv"],
                }
            ],
        }
    },
    "totals": {
        "RTP": {"packets": 1447, "bytes": 54846, "errors": 0},
        "RTCP": {"packets": 3, "bytes": 336, "errors": 0},
    },
    "result": "ok",
}


def test_offer_answer_publish_replies_carry_the_sdp() -> None:
    for command in ("offer", "answer", "publish"):
        reply = parse_reply(command, {"sdp": SDP, "result": "ok"})
        assert isinstance(reply, SdpReply) and reply.sdp == SDP and reply.ok
        assert reply.warning is None


def test_sdp_that_is_not_utf8_is_kept_losslessly() -> None:
    raw = b"v=0\r\ns=caf\xe9\r\n"
    document = decode_message(b"c d3:sdp" + str(len(raw)).encode() + b":" + raw + b"6:result2:oke")
    reply = parse_reply("offer", document.document)
    assert isinstance(reply, SdpReply)
    assert reply.sdp.encode("utf-8", "surrogateescape") == raw


def test_an_offer_reply_without_sdp_is_unexpected() -> None:
    with pytest.raises(UnexpectedReply, match="no 'sdp'"):
        parse_reply("offer", {"result": "ok"})


def test_query_reply_is_typed() -> None:
    reply = parse_reply("query", QUERY)
    assert isinstance(reply, CallStatsReply)
    assert (reply.created, reply.created_us, reply.last_signal) == (1796169186, 174328, 1796169186)
    assert reply.totals == Totals(PacketStats(1447, 54846, 0), PacketStats(3, 336, 0))
    tag = reply.tags["ft"]
    assert tag.tag == "ft" and tag.label is None
    [media] = tag.medias
    assert (media.index, media.type, media.protocol) == (1, "audio", "RTP/AVP")
    rtp, rtcp = media.streams
    assert (rtp.local_port, rtcp.local_port) == (40018, 40019)
    assert rtp.endpoint == StreamEndpoint("IPv4", "127.0.0.5", 30000)
    assert rtp.stats == PacketStats(10, 1720, 0) and rtp.flags == ("RTP", "filled")
    raw: Any = reply.document  # keys the model does not name are kept
    assert raw["tags"]["ft"]["subscriptions"][0]["tag"] == "tt"


def test_delete_of_an_unknown_call_is_ok_with_a_warning() -> None:
    reply = parse_reply("delete", {"warning": "Call-ID not found or tags didn't match",
                                   "result": "ok"})  # fmt: skip
    assert isinstance(reply, CallStatsReply)
    assert reply.warning == "Call-ID not found or tags didn't match"
    assert reply.tags == {} and reply.totals is None


def test_the_other_replies() -> None:
    assert isinstance(parse_reply("ping", {"result": "pong"}), PingReply)
    listed = parse_reply("list", {"calls": ["c1", "c2"], "result": "ok"})
    assert isinstance(listed, ListReply) and listed.calls == ("c1", "c2")
    played = parse_reply("play media", {"duration": 2500, "result": "ok"})
    assert isinstance(played, PlayMediaReply) and played.duration == 2500
    unknown = parse_reply("play media", {"result": "ok"})
    assert isinstance(unknown, PlayMediaReply) and unknown.duration is None
    stopped = parse_reply("stop media", {"last-frame-pos": 160, "result": "ok"})
    assert isinstance(stopped, StopMediaReply) and stopped.last_frame_pos == 160
    stats = parse_reply("statistics", {"statistics": {"currentstatistics": {"sessionsown": 0}},
                                       "result": "ok"})  # fmt: skip
    assert isinstance(stats, StatisticsReply)
    assert stats.statistics == {"currentstatistics": {"sessionsown": 0}}
    sub = parse_reply("subscribe request", {"sdp": SDP, "to-tag": "s1", "from-tag": "ft",
                                            "from-tags": ["ft"], "result": "ok"})  # fmt: skip
    assert isinstance(sub, SubscribeReply)
    assert (sub.to_tag, sub.from_tag, sub.from_tags) == ("s1", "ft", ("ft",))
    for command in ("block DTMF", "start recording", "unsubscribe", "connect"):
        assert type(parse_reply(command, {"result": "ok"})) is OkReply


def test_error_and_load_limit_replies() -> None:
    error = parse_reply("offer", {"result": "error", "error-reason": "Ran out of ports"})
    assert isinstance(error, ErrorReply) and error.error_reason == "Ran out of ports"
    assert not error.ok
    assert parse_reply("delete", {"result": "error"}) == ErrorReply(
        "error", None, {"result": "error"}, ""
    )
    full = parse_reply("offer", {"result": "load limit", "message": "too many"})
    assert isinstance(full, LoadLimitReply) and full.message == "too many"


@pytest.mark.parametrize(
    ("command", "document", "message"),
    [
        ("offer", {}, "no 'result'"),
        ("offer", {"result": 1}, "not a string"),
        ("offer", {"result": "maybe"}, "unknown result"),
        ("ping", {"result": "ok"}, "pong"),
        ("offer", {"result": "ok", "sdp": ["v=0"]}, "not a string"),
        ("query", {"result": "ok", "created": "yesterday"}, "created"),
        ("list", {"result": "ok", "calls": "c1"}, "calls"),
        ("statistics", {"result": "ok", "statistics": []}, "statistics"),
        ("play media", {"result": "ok", "duration": {}}, "duration"),
    ],
)
def test_malformed_replies_raise_unexpected_reply(
    command: str, document: dict[str, Any], message: str
) -> None:
    with pytest.raises(UnexpectedReply, match=message):
        parse_reply(command, document)


LAZY_MALFORMED = [
    ({"tags": []}, "tags"),
    ({"tags": {"a": {"medias": "x"}}}, "tags"),
    ({"tags": {"a": {"medias": [{"streams": [{"local port": "abc"}]}]}}}, "tags"),
    ({"tags": {"a": {"medias": [{"flags": "initialized"}]}}}, "tags"),
    ({"totals": {"RTP": {"packets": True}}}, "totals"),
    ({"totals": "none"}, "totals"),
    ({"SSRC": {"1": {"average MOS": {"MOS": [1]}}}}, "ssrc"),
    ({"SSRC": []}, "ssrc"),
]


@pytest.mark.parametrize(("fields", "attribute"), LAZY_MALFORMED)
def test_malformed_call_statistics_raise_unexpected_reply_when_read(
    fields: dict[str, Any], attribute: str
) -> None:
    # Like Kamailio, a delete or query is not failed by statistics nobody reads.
    reply = parse_reply("delete", {"result": "ok", **fields})
    assert isinstance(reply, CallStatsReply)
    with pytest.raises(UnexpectedReply, match=attribute if attribute != "ssrc" else "SSRC"):
        getattr(reply, attribute)
    uses = {"tags": lambda: reply.mos("caller"), "ssrc": reply.mos, "totals": reply.rtpstat}
    with pytest.raises(UnexpectedReply):
        uses[attribute]()


def test_numbers_rtpengine_writes_as_strings_are_read() -> None:
    reply = parse_reply("query", {"result": "ok", "created": "1796169186",
                                  "totals": {"RTP": {"packets": "7"}}})  # fmt: skip
    assert isinstance(reply, CallStatsReply)
    assert reply.created == 1796169186
    assert reply.totals is not None and reply.totals.rtp == PacketStats(7, -1, -1)


_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.binary(max_size=5)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=15,
)
_keys = st.sampled_from(
    [
        "result",
        "sdp",
        "tags",
        "totals",
        "SSRC",
        "calls",
        "created",
        "duration",
        "statistics",
        "warning",
        "error-reason",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(["offer", "query", "delete", "list", "ping", "play media", "statistics"]),
    st.dictionaries(_keys, _json, max_size=6),
    st.sampled_from(["ok", "error", "pong", "load limit"]),
)
def test_any_reply_dictionary_gives_a_model_or_unexpected_reply(
    command: str, document: dict[str, Any], result: str
) -> None:
    document.setdefault("result", result)
    try:
        reply = parse_reply(command, document)
        if isinstance(reply, CallStatsReply):
            reply.mos()
            reply.mos("any")
            assert isinstance(reply.tags, dict) and isinstance(reply.ssrc, dict)
    except UnexpectedReply:
        return
    assert reply.document is document


# -- $rtpstat -----------------------------------------------------------------------


def test_rtpstat_is_kamailios_line() -> None:
    reply = parse_reply("query", QUERY)
    assert isinstance(reply, CallStatsReply)
    assert rtpstat(reply) == (
        "RTP: 54846 bytes, 1447 packets, 0 errors; RTCP: 336 bytes, 3 packets, 0 errors"
    )
    assert reply.rtpstat() == rtpstat(reply)


def test_rtpstat_counts_missing_values_as_minus_one_and_needs_both_totals() -> None:
    partial = parse_reply("query", {"result": "ok",
                                    "totals": {"RTP": {"bytes": 5}, "RTCP": {}}})  # fmt: skip
    assert isinstance(partial, CallStatsReply)
    assert (
        rtpstat(partial)
        == "RTP: 5 bytes, -1 packets, -1 errors; RTCP: -1 bytes, -1 packets, -1 errors"
    )
    missing = parse_reply("query", {"result": "ok", "totals": {"RTP": {}}})
    assert isinstance(missing, CallStatsReply)
    with pytest.raises(UnexpectedReply, match="totals"):
        rtpstat(missing)


# -- mos_* --------------------------------------------------------------------------


def mos(value: int, at: int, loss: int = 0, jitter: int = 0, rtt: int = 0, leg: int = 0,
        samples: int = 1) -> dict[str, int]:  # fmt: skip
    return {"MOS": value, "reported at": at, "packet loss": loss, "jitter": jitter,
            "round-trip time": rtt, "round-trip time leg": leg, "samples": samples}  # fmt: skip


CREATED = 1000


def call_with_ssrcs(ssrcs: dict[str, Any], tags: dict[str, Any] | None = None) -> CallStatsReply:
    reply = parse_reply(
        "delete", {"result": "ok", "created": CREATED, "SSRC": ssrcs, "tags": tags or {}}
    )
    assert isinstance(reply, CallStatsReply)
    return reply


TWO_SSRCS = {
    "1111": {
        "average MOS": mos(43, 1030, loss=1, jitter=3, rtt=2000, leg=1000, samples=9),
        "highest MOS": mos(44, 1010, loss=0, jitter=2, rtt=1500, leg=700, samples=1),
        "lowest MOS": mos(40, 1075, loss=4, jitter=9, rtt=3000, leg=1400, samples=1),
    },
    "2222": {
        "average MOS": mos(38, 1030, loss=2, jitter=4, rtt=2001, leg=1001, samples=6),
        "highest MOS": mos(42, 1020, loss=1, jitter=3, rtt=1600, leg=800, samples=1),
        "lowest MOS": mos(31, 1125, loss=7, jitter=20, rtt=4000, leg=2000, samples=1),
    },
}


def test_mos_min_max_average_over_all_ssrcs() -> None:
    stats = mos_stats(call_with_ssrcs(TWO_SSRCS))
    assert stats.max == MosValues(44, 10, 0, 2, 1500, 700, 1)
    assert stats.min == MosValues(31, 125, 7, 20, 4000, 2000, 1)
    # The average: the C-truncated mean of the averages (81/2 = 40, 3/2 = 1...).
    assert stats.average == MosValues(40, None, 1, 3, 2000, 1000, 7)
    assert stats.kamailio_variables() == {
        "mos_min_pv": "3.1",
        "mos_min_at_pv": "2:05",
        "mos_min_packetloss_pv": "7",
        "mos_min_jitter_pv": "20",
        "mos_min_roundtrip_pv": "4000",
        "mos_min_roundtrip_leg_pv": "2000",
        "mos_max_pv": "4.4",
        "mos_max_at_pv": "0:10",
        "mos_max_packetloss_pv": "0",
        "mos_max_jitter_pv": "2",
        "mos_max_roundtrip_pv": "1500",
        "mos_max_roundtrip_leg_pv": "700",
        "mos_average_pv": "4.0",
        "mos_average_packetloss_pv": "1",
        "mos_average_jitter_pv": "3",
        "mos_average_roundtrip_pv": "2000",
        "mos_average_roundtrip_leg_pv": "1000",
        "mos_average_samples_pv": "7",
    }
    assert "mos_min_A_pv" in stats.kamailio_variables("A")


def test_mos_ignores_zero_and_missing_samples() -> None:
    stats = mos_stats(call_with_ssrcs({
        "1": {"average MOS": mos(0, 1000), "lowest MOS": mos(0, 1000)},
        "2": {"highest MOS": {"MOS": 30}},
    }))  # fmt: skip
    assert stats.average is None and stats.min is None
    # Keys rtpengine left out read as -1, "reported at" too.
    assert stats.max == MosValues(30, -1 - CREATED, -1, -1, -1, -1, -1)
    assert stats.max is not None and stats.max.mos == 3.0


def test_no_ssrcs_leave_every_variable_unset() -> None:
    stats = mos_stats(call_with_ssrcs({}))
    assert stats == MosStats(None, None, None) and stats.kamailio_variables() == {}


def labelled(label: str, ssrc: int | None = None, ingress: int | None = None) -> dict[str, Any]:
    rtp: dict[str, Any] = {"flags": ["RTP"]}
    if ssrc is not None:
        rtp["SSRC"] = ssrc
    if ingress is not None:
        rtp["ingress SSRCs"] = [{"SSRC": ingress}]
    return {"tag": label, "label": label, "medias": [{"streams": [rtp, {"flags": ["RTCP"]}]}]}


def test_label_selects_the_ssrcs_of_that_leg() -> None:
    tags = {"a": labelled("caller", ssrc=1111), "b": labelled("callee", ingress=2222)}
    reply = call_with_ssrcs(TWO_SSRCS, tags)
    caller = reply.mos("caller")
    assert caller.max == MosValues(44, 10, 0, 2, 1500, 700, 1)
    assert caller.average is not None and caller.average.mos_tenths == 43
    callee = reply.mos("callee")
    assert callee.min == MosValues(31, 125, 7, 20, 4000, 2000, 1)
    assert callee.average is not None and callee.average.mos_tenths == 38
    # A label nobody has, or a leg without SSRC, gives nothing at all.
    assert reply.mos("nobody") == MosStats(None, None, None)
    no_ssrc = call_with_ssrcs(TWO_SSRCS, {"a": labelled("caller")})
    assert no_ssrc.mos("caller") == MosStats(None, None, None)


def test_kamailio_text_uses_c_division_for_odd_values() -> None:
    values = MosValues(-5, -61, 0, 0, 0, 0, 0)
    text = values.kamailio_text()
    assert text["mos"] == "0.5" and text["at"] == "-1:01"


# -- rtpengine_query_v and DTMF events -------------------------------------------------


def test_to_json_is_rtpengine_query_v() -> None:
    reply = parse_reply("query", {"result": "ok", "created": 5, "blob": b"\xff", "l": [1]})
    assert reply.to_json() == '{"result": "ok", "created": 5, "blob": "\ufffd", "l": [1]}'
    assert json.loads(reply.to_json(pretty=True)) == json.loads(reply.to_json())
    assert "\n" in reply.to_json(pretty=True)


def test_a_dtmf_event_datagram_is_read() -> None:
    event = parse_dtmf_event(
        b'{"callid": "c1", "source_tag": "ft", "source_label": "caller", "timestamp": 17, '
        b'"event": 11, "duration": 120}'
    )
    assert (event.callid, event.source_tag, event.timestamp, event.event) == ("c1", "ft", 17, 11)
    assert event.document["source_label"] == "caller"
    assert parse_dtmf_event(b"{}") == DTMFEvent(None, None, None, None, {})


@pytest.mark.parametrize(
    "datagram",
    [b"", b"not json", b"[1, 2]", b'{"event": "5"}', b'{"callid": 5}', b'{"timestamp": true}',
     b"[" * 100000, b'{"a": "' + b"x" * 40000 + b'"}'],
)  # fmt: skip
def test_a_malformed_dtmf_event_is_unexpected(datagram: bytes) -> None:
    with pytest.raises(UnexpectedReply):
        parse_dtmf_event(datagram)
