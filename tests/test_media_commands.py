"""Every ng command builder gives rtpengine's dictionary, and refuses bad values."""

from __future__ import annotations

from typing import Any

import pytest

from sipcore import LocalProtocolError
from sipcore_media import (
    COMMANDS,
    Answer,
    BlockDTMF,
    BlockMedia,
    Codec,
    Command,
    CommandError,
    Connect,
    Delete,
    List,
    Offer,
    PauseRecording,
    Ping,
    PlayDTMF,
    PlayMedia,
    Publish,
    Query,
    SilenceMedia,
    StartForwarding,
    StartRecording,
    Statistics,
    StopForwarding,
    StopMedia,
    StopRecording,
    SubscribeAnswer,
    SubscribeRequest,
    UnblockDTMF,
    UnblockMedia,
    UnsilenceMedia,
    Unsubscribe,
    decode_message,
    encode_message,
)

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\n"

CASES: list[tuple[Command, dict[str, Any]]] = [
    (Ping(), {"command": "ping"}),
    (Statistics(), {"command": "statistics"}),
    (List(), {"command": "list"}),
    (List(limit=5), {"command": "list", "limit": 5}),
    (
        Offer(sdp=SDP, call_id="c1", from_tag="ft"),
        {"command": "offer", "call-id": "c1", "from-tag": "ft", "sdp": SDP},
    ),
    (
        Offer(
            sdp=SDP,
            call_id="c1",
            from_tag="ft",
            via_branch="z9hG4bK1",
            flags=["trust-address", "strict-source"],
            replace=["origin", "session-connection"],
            direction=["priv", "pub"],
            received_from=("IP4", "10.0.0.1"),
            media_address="192.0.2.1",
            address_family="IP6",
            ice="remove",
            ice_lite="forward",
            dtls="passive",
            dtls_reverse="active",
            dtls_fingerprint="SHA-256",
            sdes=["off"],
            osrtp=["offer"],
            rtcp_mux=["demux"],
            t38=["decode"],
            transport_protocol="RTP/SAVPF",
            codec=Codec(strip="PCMA", offer=["opus"], except_="G722", transcode="PCMU",
                        mask="all", set_="opus/48000/2/32000", consume="G729", accept="AMR"),
            ptime=20,
            ptime_reverse=30,
            tos=184,
            record_call="yes",
            metadata="k=v",
            label="caller",
            supports="load limit",
            extra={"generate-RTCP": "on"},
        ),
        {
            "command": "offer",
            "call-id": "c1",
            "from-tag": "ft",
            "via-branch": "z9hG4bK1",
            "flags": ["trust-address", "strict-source"],
            "sdp": SDP,
            "replace": ["origin", "session-connection"],
            "direction": ["priv", "pub"],
            "received-from": ["IP4", "10.0.0.1"],
            "media-address": "192.0.2.1",
            "address-family": "IP6",
            "ICE": "remove",
            "ICE-lite": "forward",
            "DTLS": "passive",
            "DTLS-reverse": "active",
            "DTLS-fingerprint": "SHA-256",
            "SDES": ["off"],
            "OSRTP": ["offer"],
            "rtcp-mux": ["demux"],
            "T.38": ["decode"],
            "transport-protocol": "RTP/SAVPF",
            "codec": {
                "strip": ["PCMA"],
                "offer": ["opus"],
                "except": ["G722"],
                "transcode": ["PCMU"],
                "mask": ["all"],
                "set": ["opus/48000/2/32000"],
                "consume": ["G729"],
                "accept": ["AMR"],
            },
            "ptime": 20,
            "ptime-reverse": 30,
            "TOS": 184,
            "record-call": "yes",
            "metadata": "k=v",
            "label": "caller",
            "supports": ["load limit"],
            "generate-RTCP": "on",
        },
    ),
    (
        Answer(sdp=SDP, call_id="c1", from_tag="ft", to_tag="tt", ice="remove"),
        {"command": "answer", "call-id": "c1", "from-tag": "ft", "to-tag": "tt", "sdp": SDP,
         "ICE": "remove"},
    ),
    (
        Publish(sdp=SDP, call_id="c1", from_tag="ft", codec=Codec(accept=["PCMU", "any"])),
        {"command": "publish", "call-id": "c1", "from-tag": "ft", "sdp": SDP,
         "codec": {"accept": ["PCMU", "any"]}},
    ),
    (Delete(call_id="c1"), {"command": "delete", "call-id": "c1"}),
    (
        Delete(call_id="c1", from_tag="ft", to_tag="tt", via_branch="b", flags="fatal",
               delete_delay=0),
        {"command": "delete", "call-id": "c1", "from-tag": "ft", "to-tag": "tt",
         "via-branch": "b", "flags": ["fatal"], "delete delay": 0},
    ),
    (Query(call_id="c1", from_tag="ft"), {"command": "query", "call-id": "c1", "from-tag": "ft"}),
    (
        StartRecording(call_id="c1", metadata="m", output_destination="/tmp/x"),
        {"command": "start recording", "call-id": "c1", "metadata": "m",
         "output-destination": "/tmp/x"},
    ),
    (StopRecording(call_id="c1", flags=["pause"]),
     {"command": "stop recording", "call-id": "c1", "flags": ["pause"]}),
    (PauseRecording(call_id="c1"), {"command": "pause recording", "call-id": "c1"}),
    (
        BlockDTMF(call_id="c1", from_tag="ft", dtmf_security="tone", digit="5", dtmf_delay=100,
                  delay_buffer=50),
        {"command": "block DTMF", "call-id": "c1", "from-tag": "ft", "DTMF-security": "tone",
         "digit": "5", "DTMF-delay": 100, "delay-buffer": 50},
    ),
    (UnblockDTMF(call_id="c1", flags="all"),
     {"command": "unblock DTMF", "call-id": "c1", "flags": ["all"]}),
    (BlockMedia(call_id="c1", address="192.168.42.42"),
     {"command": "block media", "call-id": "c1", "address": "192.168.42.42"}),
    (UnblockMedia(call_id="c1", label="callee"),
     {"command": "unblock media", "call-id": "c1", "label": "callee"}),
    (SilenceMedia(call_id="c1", from_tag="ft"),
     {"command": "silence media", "call-id": "c1", "from-tag": "ft"}),
    (UnsilenceMedia(call_id="c1"), {"command": "unsilence media", "call-id": "c1"}),
    (StartForwarding(call_id="c1", from_tag="ft"),
     {"command": "start forwarding", "call-id": "c1", "from-tag": "ft"}),
    (StopForwarding(call_id="c1"), {"command": "stop forwarding", "call-id": "c1"}),
    (
        PlayMedia(call_id="c1", from_tag="ft", file="/srv/hello.wav", repeat_times=2,
                  start_pos=10),
        {"command": "play media", "call-id": "c1", "from-tag": "ft", "file": "/srv/hello.wav",
         "repeat-times": 2, "start-pos": 10},
    ),
    (PlayMedia(call_id="c1", label="a", blob=b"RIFF\xff\x00"),
     {"command": "play media", "call-id": "c1", "label": "a", "blob": b"RIFF\xff\x00"}),
    (PlayMedia(call_id="c1", flags="all", db_id=12345),
     {"command": "play media", "call-id": "c1", "flags": ["all"], "db-id": 12345}),
    (StopMedia(call_id="c1", from_tag="ft"),
     {"command": "stop media", "call-id": "c1", "from-tag": "ft"}),
    (
        PlayDTMF(call_id="c1", from_tag="ft", code="#", duration=300, volume=5, pause=150),
        {"command": "play DTMF", "call-id": "c1", "from-tag": "ft", "code": "#",
         "duration": 300, "volume": 5, "pause": 150},
    ),
    (PlayDTMF(call_id="c1", code=15), {"command": "play DTMF", "call-id": "c1", "code": 15}),
    (
        SubscribeRequest(call_id="c1", from_tags=["a", "b"], to_tag="sub", set_label="rec",
                         flags="all", interface="pub", transport_protocol="RTP/AVP"),
        {"command": "subscribe request", "call-id": "c1", "to-tag": "sub", "flags": ["all"],
         "from-tags": ["a", "b"], "set-label": "rec", "interface": "pub",
         "transport-protocol": "RTP/AVP"},
    ),
    (
        SubscribeAnswer(call_id="c1", to_tag="sub", sdp=SDP, flags="allow transcoding"),
        {"command": "subscribe answer", "call-id": "c1", "to-tag": "sub",
         "flags": ["allow transcoding"], "sdp": SDP},
    ),
    (Unsubscribe(call_id="c1", to_tag="sub"),
     {"command": "unsubscribe", "call-id": "c1", "to-tag": "sub"}),
    (
        Connect(call_id="c1", from_tag="a", to_tag="b", to_call_id="c2"),
        {"command": "connect", "call-id": "c1", "from-tag": "a", "to-tag": "b",
         "to-call-id": "c2"},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("command", "expected"), CASES, ids=[c.name for c, _ in CASES])
def test_builder_gives_rtpengine_dictionary(command: Command, expected: dict[str, Any]) -> None:
    assert command.to_dict() == expected


@pytest.mark.parametrize(("command", "expected"), CASES, ids=[c.name for c, _ in CASES])
def test_builder_dictionary_survives_the_wire(command: Command, expected: dict[str, Any]) -> None:
    assert decode_message(encode_message("t_1", command.to_dict())).document == expected


def test_every_documented_command_has_a_builder() -> None:
    documented = {
        "ping", "offer", "answer", "delete", "query", "list", "start recording",
        "stop recording", "pause recording", "block DTMF", "unblock DTMF", "block media",
        "unblock media", "silence media", "unsilence media", "start forwarding",
        "stop forwarding", "play media", "stop media", "play DTMF", "statistics",
        "subscribe request", "subscribe answer", "unsubscribe", "publish", "connect",
    }  # fmt: skip
    assert set(COMMANDS) == documented
    assert {c.name for c, _ in CASES} == documented


@pytest.mark.parametrize(
    "build",
    [
        lambda: Offer(sdp=SDP, call_id="", from_tag="ft"),
        lambda: Offer(sdp=SDP, call_id="c", from_tag=""),
        lambda: Answer(sdp=SDP, call_id="c", from_tag="ft"),
        lambda: Publish(sdp=SDP, call_id="c"),
        lambda: Offer(sdp=SDP, call_id="c", from_tag="f", tos=256),
        lambda: Offer(sdp=SDP, call_id="c", from_tag="f", received_from=("IPX", "1.2.3.4")),
        lambda: Offer(sdp=SDP, call_id="c", from_tag="f", flags=["ok", 5]),  # type: ignore[list-item]
        lambda: Delete(call_id="c", delete_delay=-1),
        lambda: List(limit=-1),
        lambda: PlayMedia(call_id="c"),
        lambda: PlayMedia(call_id="c", file="a", db_id=1),
        lambda: PlayDTMF(call_id="c", code=16),
        lambda: PlayDTMF(call_id="c", code="E"),
        lambda: PlayDTMF(call_id="c", code="12"),
        lambda: PlayDTMF(call_id="c", code=True),
        lambda: SubscribeAnswer(call_id="c", sdp=SDP),
        lambda: Unsubscribe(call_id="c"),
        lambda: Query(call_id="c", extra={5: "x"}),  # type: ignore[arg-type]
    ],
)
def test_builders_refuse_what_rtpengine_would_reject(build: Any) -> None:
    with pytest.raises(CommandError) as info:
        build()
    assert isinstance(info.value, LocalProtocolError)


def test_extra_keys_come_last_and_may_not_override() -> None:
    query = Query(call_id="c", extra=[("b", 1), ("a", "x")])
    assert list(query.to_dict()) == ["command", "call-id", "b", "a"]
    with pytest.raises(CommandError, match="already set"):
        Query(call_id="c", extra={"call-id": "other"}).to_dict()


def test_an_empty_codec_is_left_out() -> None:
    assert "codec" not in Offer(sdp=SDP, call_id="c", from_tag="f", codec=Codec()).to_dict()


def test_builders_are_frozen_values() -> None:
    a = Delete(call_id="c", flags=("fatal",))
    assert a == Delete(call_id="c", flags="fatal")
    assert hash(a) == hash(Delete(call_id="c", flags=["fatal"]))
