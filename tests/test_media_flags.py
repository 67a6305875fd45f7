"""Kamailio flag strings and the ng dictionaries its rtpengine module sends for them."""

from __future__ import annotations

from typing import Any

import pytest

from sipcore_media import (
    FlagDialect,
    FlagError,
    MessageError,
    SipContext,
    ViaBranch,
    build_command,
    parse_flags,
)

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\n"
CID = "a84b4c76e66710@pc33.atlanta.example.com"
FT = "1928301774"
TT = "a6c85cf"

# An initial INVITE with SDP from 127.0.0.1: no To tag yet.
INVITE = SipContext(
    CID, FT, sdp=SDP, source_address="127.0.0.1", vias=("z9hG4bK-top", "z9hG4bK-second")
)


def offer(**keys: Any) -> dict[str, Any]:
    """What Kamailio sends for an offer in INVITE, with ``keys`` added."""
    base: dict[str, Any] = {
        "supports": ["load limit"],
        "sdp": SDP,
        "received-from": ["IP4", "127.0.0.1"],
        "call-id": CID,
        "from-tag": FT,
        "command": "offer",
    }
    base.update(keys)
    return base


OFFER_TABLE: list[tuple[str, dict[str, Any]]] = [
    ("", offer()),
    # The brief's example, as a Kamailio 5.6.3 capture shows it.
    (
        "ICE=remove replace-origin RTP/AVP codec-strip=PCMA direction=external",
        offer(ICE="remove", direction=["external"], replace=["origin"],
              codec={"strip": ["PCMA"]}, **{"transport-protocol": "RTP/AVP"}),
    ),
    # Bare words go to "flags", in order, whatever they are.
    (
        "trust-address SIP-source-address asymmetric symmetric unidirectional strict-source "
        "media-handover no-redis-update force loop-protect single-codec ICE-reject "
        "port-latching record-call generate-mid inject-DTMF",
        offer(flags=["trust-address", "SIP-source-address", "asymmetric", "symmetric",
                     "unidirectional", "strict-source", "media-handover", "no-redis-update",
                     "force", "loop-protect", "single-codec", "ICE-reject", "port-latching",
                     "record-call", "generate-mid", "inject-DTMF"]),
    ),
    # Dash forms of other keys rtpengine reads from "flags" stay there.
    (
        "endpoint-learning-heuristic OSRTP-accept from-tags-x codec-accept-PCMU",
        offer(flags=["endpoint-learning-heuristic", "OSRTP-accept", "from-tags-x",
                     "codec-accept-PCMU"]),
    ),
    (
        "replace-origin replace-session-connection replace=SDP-version replace-zero-address",
        offer(replace=["origin", "session-connection", "SDP-version", "zero-address"]),
    ),
    # The dash form needs a character after the dash; the bare word and an
    # empty value fall through to the generic rule.
    ("replace- replace", offer(flags=["replace-", "replace"])),
    ("replace=", offer(replace="")),
    (
        "SDES-off SDES=unencrypted_srtp SDES-no-AES_CM_128_HMAC_SHA1_32 SDES-pad",
        offer(SDES=["off", "unencrypted_srtp", "no-AES_CM_128_HMAC_SHA1_32", "pad"]),
    ),
    ("SDES", offer(flags=["SDES"])),
    ("T38-decode T.38-force T38=stop T.38=no-ECM", offer(**{"T.38": ["decode", "force", "stop",
                                                                    "no-ECM"]})),
    (
        "rtcp-mux-demux rtcp-mux=offer rtcp-mux-reject rtcp-mux-accept rtcp-mux-require",
        offer(**{"rtcp-mux": ["demux", "offer", "reject", "accept", "require"]}),
    ),
    (
        "codec-mask=all codec-transcode=PCMU transcode-PCMA codec-offer-opus codec-except=G722 "
        "codec-set=opus/48000/2/32000 codec-strip-G729 codec-strip=PCMA",
        offer(codec={"mask": ["all"], "transcode": ["PCMU", "PCMA"], "offer": ["opus"],
                     "except": ["G722"], "set": ["opus/48000/2/32000"],
                     "strip": ["G729", "PCMA"]}),
    ),
    # 5.6 has no codec-accept / codec-consume rule.
    ("codec-accept=PCMA codec-consume=G729", offer(**{"codec-accept": "PCMA",
                                                      "codec-consume": "G729"})),
    ("internal external", offer(direction=["internal", "external"])),
    ("direction=priv direction=pub", offer(direction=["priv", "pub"])),
    ("internal=foo", offer(direction=["internal"])),
    ("TOS=184", offer(TOS=184)),
    ("TOS=-1", offer(TOS=-1)),
    ("TOS=abc", offer(TOS=0)),
    ("TOS=99999999999", offer(TOS=1215752191)),  # atoi: strtol cast to a C int
    ("TOS", offer(flags=["TOS"])),
    ("repacketize=20", offer(repacketize=20)),
    ("repacketize=20ms", offer(repacketize=20)),
    (
        "ICE=force-relay DTLS=passive address-family=IP6 media-address=192.0.2.1 label=callee "
        "record-call=yes ptime=20 metadata=a:b ICE-lite=forward DTLS-fingerprint=SHA-1 "
        "endpoint-learning=heuristic xmlrpc-callback=10.1.1.1 media-echo=blackhole "
        "transport-protocol=RTP/AVP",
        offer(ICE="force-relay", DTLS="passive", label="callee", ptime="20", metadata="a:b",
              **{"address-family": "IP6", "media-address": "192.0.2.1", "record-call": "yes",
                 "ICE-lite": "forward", "DTLS-fingerprint": "SHA-1",
                 "endpoint-learning": "heuristic", "xmlrpc-callback": "10.1.1.1",
                 "media-echo": "blackhole", "transport-protocol": "RTP/AVP"}),
    ),
    ("key=a=b", offer(key="a=b")),
    ("  ICE=remove    trust-address  ", offer(ICE="remove", flags=["trust-address"])),
    # An empty key (a token starting with '=') ends the string for Kamailio.
    ("=x ICE=remove", offer()),
    ("trust-address =x ICE=remove", offer(flags=["trust-address"])),
    # A key the module writes itself keeps the module's value.
    ("sdp=none command=delete supports=x", offer()),
    ("received-from=10.0.0.9", offer()),
    ("call-id=other@host", offer(**{"call-id": "other@host"})),
    ("from-tag=forced", offer(**{"from-tag": "forced"})),
    ("to-tag=forced", offer(**{"to-tag": "forced"})),
    ("via-branch=1", offer(**{"via-branch": "z9hG4bK-top"})),
    ("via-branch=2", offer(**{"via-branch": "z9hG4bK-second"})),
    ("via-branch=12", offer(**{"via-branch": "z9hG4bK-top"})),  # first character only
    ("via-branch=auto", offer(**{"via-branch": "z9hG4bK-top"})),
]  # fmt: skip

TRANSPORTS = [
    ("RTP/AVP", "RTP/AVP"),
    ("RTP/SAVP", "RTP/SAVP"),
    ("RTP/AVPF", "RTP/AVPF"),
    ("RTP/SAVPF", "RTP/SAVPF"),
    ("UDP/TLS/RTP/SAVP", "UDP/TLS/RTP/SAVP"),
    ("UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/SAVPF"),
    ("RTP", "RTP/AVP"),
    ("AVP", "RTP/AVP"),
    ("SRTP", "RTP/SAVP"),
    ("AVPF", "RTP/AVPF"),
    ("DTLS", "UDP/TLS/RTP/SAVP"),
    ("RTP SRTP", "RTP/SAVP"),
    ("SRTP AVPF", "RTP/SAVPF"),
    ("DTLS AVPF", "UDP/TLS/RTP/SAVPF"),
    ("RTP/SAVPF RTP", "RTP/AVPF"),
    ("RTP/SAVPF AVP", "RTP/SAVP"),
    ("SRTP RTP", "RTP/AVP"),
    ("RTP/AVPF SRTP", "RTP/SAVPF"),
]


@pytest.mark.parametrize(
    ("flags", "expected"), OFFER_TABLE, ids=[f or "<empty>" for f, _ in OFFER_TABLE]
)
def test_offer_flag_string_gives_kamailios_dictionary(flags: str, expected: dict[str, Any]) -> None:
    assert build_command("offer", flags, INVITE) == expected


@pytest.mark.parametrize(("tokens", "protocol"), TRANSPORTS)
def test_transport_tokens_give_kamailios_protocol(tokens: str, protocol: str) -> None:
    assert build_command("offer", tokens, INVITE) == offer(**{"transport-protocol": protocol})


def test_transport_with_a_value_is_a_plain_key() -> None:
    assert build_command("offer", "RTP/AVP=x DTLS=off", INVITE) == offer(
        DTLS="off", **{"RTP/AVP": "x"}
    )


@pytest.mark.parametrize("tokens", ["SRTP DTLS", "DTLS SRTP AVPF", "UDP/TLS/RTP/SAVP SRTP"])
def test_srtp_with_dtls_sends_no_transport_protocol(tokens: str) -> None:
    # Kamailio 5.6.3 sends the offer, without "transport-protocol" (its
    # table has holes at SRTP|DTLS and SRTP|DTLS|AVPF).
    assert parse_flags(tokens, "offer").transport_protocol is None
    assert build_command("offer", tokens, INVITE) == offer()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ("call-id", "missing value"),
        ("from-tag", "missing value"),
        ("direction", "missing value"),
        ("via-branch", "missing value"),
        ("via-branch=bogus", "invalid value"),
        ("repacketize", "missing value"),
        ("repacketize=abc", "invalid value"),
        ("repacketize=0", "invalid value"),
        ("via-branch=extra", "extra_id"),
        ("via-branch=next", "next_branch"),
    ],
)
def test_flags_kamailio_rejects_raise_flag_error(flags: str, message: str) -> None:
    with pytest.raises(FlagError, match=message):
        build_command("offer", flags, INVITE)


def test_via_branch_modes_take_the_extra_id_and_next_branch() -> None:
    vias = ("top", "second")
    ctx = SipContext(CID, FT, sdp=SDP, vias=vias, extra_id="xid", next_branch="z9hG4bKnext")
    reply = SipContext(CID, FT, to_tag=TT, is_request=False, sdp=SDP, vias=vias, extra_id="xid")
    assert build_command("offer", "via-branch=extra", ctx)["via-branch"] == "xid"
    assert build_command("offer", "via-branch=next", ctx)["via-branch"] == "z9hG4bKnext"
    assert build_command("offer", "via-branch=auto-next", ctx)["via-branch"] == "z9hG4bKnext"
    assert build_command("offer", "via-branch=next-auto", ctx)["via-branch"] == "z9hG4bKnext"
    assert build_command("offer", "via-branch=auto-extra", ctx)["via-branch"] == "xid"
    assert build_command("offer", "via-branch=extra-auto", ctx)["via-branch"] == "xid"
    # In a reply "auto" is the second Via, auto-next and auto-extra the first.
    assert build_command("answer", "via-branch=auto", reply)["via-branch"] == "second"
    assert build_command("answer", "via-branch=auto-next", reply)["via-branch"] == "top"
    assert build_command("answer", "via-branch=auto-extra", reply)["via-branch"] == "top"


def test_via_branch_of_a_missing_via_is_a_message_error() -> None:
    ctx = SipContext(CID, FT, sdp=SDP, vias=("only",))
    with pytest.raises(MessageError, match="Via 2"):
        build_command("offer", "via-branch=2", ctx)


def test_parse_flags_reports_via_modes() -> None:
    assert parse_flags("via-branch=auto-next", "offer").via is ViaBranch.AUTO_NEXT
    assert parse_flags("via-branch=2", "delete").via is ViaBranch.SECOND


def test_force_answer_turns_an_offer_into_an_answer() -> None:
    reinvite = SipContext(CID, FT, to_tag=TT, sdp=SDP, source_address="127.0.0.1")
    # An answer in a request: the tags swap, rtpengine wants the offerer's as from-tag.
    assert build_command("offer", "force-answer", reinvite) == offer(
        command="answer", **{"from-tag": TT, "to-tag": FT}
    )
    with pytest.raises(FlagError, match="not an offer"):
        build_command("delete", "force-answer", reinvite)


def test_delete_delay_gives_the_integer_and_the_token_again() -> None:
    bye = SipContext(CID, FT, to_tag=TT, source_address="127.0.0.1")
    assert build_command("delete", "delete-delay=5", bye) == {
        "supports": ["load limit"],
        "delete delay": 5,
        "delete-delay": "5",
        "received-from": ["IP4", "127.0.0.1"],
        "call-id": CID,
        "from-tag": FT,
        "command": "delete",
    }
    assert build_command("delete", "delete-delay", bye)["flags"] == ["delete-delay"]


def test_commands_without_sdp_drop_the_sdp_lists_but_keep_flags() -> None:
    bye = SipContext(CID, FT, to_tag=TT, source_address="10.0.0.7")
    assert build_command(
        "delete",
        "replace-origin internal direction=pub codec-strip=PCMA SDES-off T38-decode "
        "rtcp-mux-demux trust-address fatal ICE=remove RTP/AVP",
        bye,
    ) == {
        "supports": ["load limit"],
        "ICE": "remove",
        "flags": ["trust-address", "fatal"],
        "transport-protocol": "RTP/AVP",
        "received-from": ["IP4", "10.0.0.7"],
        "call-id": CID,
        "from-tag": FT,
        "command": "delete",
    }


def test_delete_sends_the_to_tag_only_with_the_to_tag_token() -> None:
    bye = SipContext(CID, FT, to_tag=TT, source_address="127.0.0.1")
    assert "to-tag" not in build_command("delete", "", bye)
    assert build_command("delete", "to-tag", bye)["to-tag"] == TT
    assert build_command("delete", "to-tag=other", bye)["to-tag"] == "other"


def test_tags_follow_kamailios_swapping_rules() -> None:
    ok_200 = SipContext(CID, FT, to_tag=TT, is_request=False, sdp=SDP, source_address="::1")
    ack = SipContext(CID, FT, to_tag=TT, is_request=True, sdp=SDP, source_address="::1")
    # 200 OK with the answer: tags as they are.
    answer = build_command("answer", "", ok_200)
    assert (answer["from-tag"], answer["to-tag"]) == (FT, TT)
    assert answer["received-from"] == ["IP6", "::1"]
    # ACK with the answer (late offer): swapped.
    answer = build_command("answer", "", ack)
    assert (answer["from-tag"], answer["to-tag"]) == (TT, FT)
    # 200 OK carrying an offer (the INVITE had none): swapped.
    late = build_command("offer", "", ok_200)
    assert (late["from-tag"], late["to-tag"]) == (TT, FT)
    # A query from a reply: swapped; a delete from a reply: not.
    query = build_command("query", "", SipContext(CID, FT, to_tag=TT, is_request=False))
    assert (query["from-tag"], query["to-tag"]) == (TT, FT)
    delete = build_command("delete", "", SipContext(CID, FT, to_tag=TT, is_request=False))
    assert delete["from-tag"] == FT and "to-tag" not in delete


def test_an_answer_in_a_request_without_to_tag_is_a_message_error() -> None:
    with pytest.raises(MessageError, match="No to-tag"):
        build_command("answer", "", SipContext(CID, FT, sdp=SDP))


def test_directional_commands_send_tags_only_when_asked() -> None:
    ctx = SipContext(CID, FT, to_tag=TT)
    current = FlagDialect.KAMAILIO_5_8
    for command in ("block DTMF", "unblock media", "silence media", "start forwarding"):
        assert "from-tag" not in build_command(command, None, ctx)
        assert "from-tag" not in build_command(command, "all", ctx)
        directional = build_command(command, "directional", ctx, current)
        assert (directional["from-tag"], directional["to-tag"]) == (FT, TT)
        other = build_command(command, "from-tag=x", ctx, current)
        assert other["from-tag"] == "x"
    # play media is not directional: the current From tag is used.
    assert build_command("play media", "file=/a.wav", ctx)["from-tag"] == FT


@pytest.mark.parametrize("flags", ["directional", "directional to-tag", "directional to-tag=y"])
def test_directional_commands_in_5_6_name_the_party_by_its_from_tag_alone(flags: str) -> None:
    # Kamailio 5.6.3 sends no to-tag for them, although the INFO has one.
    ctx = SipContext(CID, FT, to_tag=TT, source_address="127.0.0.1")
    assert build_command("block DTMF", flags, ctx) == {
        "supports": ["load limit"],
        "received-from": ["IP4", "127.0.0.1"],
        "call-id": CID,
        "from-tag": FT,
        "command": "block DTMF",
    }
    assert build_command("stop forwarding", "from-tag=x", ctx)["from-tag"] == "x"
    assert "to-tag" not in build_command("stop forwarding", "from-tag=x", ctx)


def test_offer_needs_the_body() -> None:
    with pytest.raises(MessageError, match="body"):
        build_command("offer", "", SipContext(CID, FT))


def test_without_a_flag_string_only_the_sip_values_go_out() -> None:
    assert build_command("offer", None, INVITE) == offer()
    current = build_command("offer", None, INVITE, FlagDialect.KAMAILIO_5_8)
    assert "received-from" not in current
    assert current["sip-message-type"] == "sip_request"


def test_a_trickle_ice_fragment_is_flagged_in_offers_and_answers() -> None:
    # As Kamailio 5.6.3 sends it: "fragment" after the bare flags, also
    # when there are none or no flag string at all; not in commands that
    # do not send the body.
    ctx = SipContext(CID, FT, sdp="a=candidate:1\r\n", sdp_fragment=True, source_address="::1")
    assert build_command("offer", "trust-address", ctx)["flags"] == ["trust-address", "fragment"]
    assert build_command("offer", "ICE=remove", ctx)["flags"] == ["fragment"]
    assert build_command("offer", "", ctx)["flags"] == ["fragment"]
    assert build_command("offer", None, ctx)["flags"] == ["fragment"]
    for command in ("delete", "query", "block DTMF"):
        assert build_command(command, "trust-address", ctx)["flags"] == ["trust-address"]
        assert "flags" not in build_command(command, "", ctx)


def test_current_kamailio_flags_a_fragment_only_with_other_flags() -> None:
    ctx = SipContext(CID, FT, sdp="a=candidate:1\r\n", sdp_fragment=True, source_address="::1")
    current = FlagDialect.KAMAILIO_5_8
    assert build_command("offer", "trust-address", ctx, current)["flags"] == [
        "trust-address",
        "fragment",
    ]
    assert "flags" not in build_command("offer", "ICE=remove", ctx, current)
    assert "flags" not in build_command("offer", None, ctx, current)


def test_current_kamailio_has_codec_accept_consume_and_received_from() -> None:
    d = build_command(
        "offer",
        "codec-accept=PCMA codec-accept-opus codec-consume=G729 received-from=10.0.0.9 "
        "received-from=2001:db8::1",
        INVITE,
        FlagDialect.KAMAILIO_5_8,
    )
    assert d["codec"] == {"accept": ["PCMA", "opus"], "consume": ["G729"]}
    assert d["received-from"] == ["IP4", "10.0.0.9", "IP6", "2001:db8::1"]
    assert d["sip-message-type"] == "sip_request"
    # An address that is not an IP is dropped; the SIP source is used.
    d = build_command("offer", "received-from=host.example", INVITE, FlagDialect.KAMAILIO_5_8)
    assert d["received-from"] == ["IP4", "127.0.0.1"]


def test_parsed_flags_keep_token_order() -> None:
    parsed = parse_flags("b=2 x a=1 y", "offer")
    assert list(parsed.entries) == ["b", "a"] and parsed.flags == ["x", "y"]
