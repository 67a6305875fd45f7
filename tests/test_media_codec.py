"""The ng wire format: round trips, text versus bytes, malformed input."""

from __future__ import annotations

import contextlib
import doctest
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipcore import ParseError, SipError
from sipcore_media import (
    MAX_MESSAGE_SIZE,
    NgDecodeError,
    NgEncodeError,
    NgMessage,
    _codec,
    _commands,
    _flags,
    _pool,
    _replies,
    _sock,
    _stats,
    decode_message,
    encode_document,
    encode_message,
    split_cookie,
)

# An offer reply exactly as rtpengine 10.5 sent it (keys not sorted).
REAL_REPLY = (
    b"probe_1 d3:sdp63:v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n6:result2:oke"
)


def test_module_doctests_pass() -> None:
    for module in (_codec, _flags, _pool, _replies, _sock, _stats, _commands):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__


def test_encode_writes_cookie_space_and_sorted_bencode() -> None:
    data = encode_message("5323_1", {"command": "ping", "call-id": "c", "flags": ["a", "b"]})
    assert data == b"5323_1 d7:call-id1:c7:command4:ping5:flagsl1:a1:bee"


def test_decode_accepts_unsorted_keys_as_rtpengine_sends_them() -> None:
    message = decode_message(REAL_REPLY)
    assert message.cookie == "probe_1"
    assert message.document["result"] == "ok"
    assert isinstance(message.document["sdp"], str)
    assert message.document["sdp"].startswith("v=0\r\n")


def test_text_comes_out_as_str_and_other_bytes_as_bytes() -> None:
    message = decode_message(b"c d4:blob3:\xff\x00\xfe4:name5:alice5:countli7ei-3eee")
    assert message.document == {"blob": b"\xff\x00\xfe", "name": "alice", "count": [7, -3]}


def test_nested_document_round_trips() -> None:
    document: dict[str, Any] = {
        "command": "offer",
        "sdp": "v=0\r\n",
        "blob": b"\x80\x81",
        "codec": {"strip": ["PCMA", "G729"], "offer": []},
        "TOS": 184,
        "received-from": ["IP4", "127.0.0.1"],
    }
    assert decode_message(encode_message("x_9", document)) == NgMessage("x_9", document)


def test_encode_document_alone_has_no_cookie() -> None:
    assert encode_document({"result": "pong"}) == b"d6:result4:ponge"


@pytest.mark.parametrize(
    ("cookie", "document"),
    [
        ("", {"command": "ping"}),
        ("has space", {"command": "ping"}),
        ("c", {"command": 1.5}),
        ("c", {"command": None}),
        ("c", {1: "ping"}),
        ("c", {"sdp": "\udcff"}),  # a lone surrogate is no UTF-8
        ("c", {"list": [object()]}),
    ],
)
def test_values_bencode_cannot_carry_raise_ng_encode_error(cookie: str, document: Any) -> None:
    with pytest.raises(NgEncodeError):
        encode_message(cookie, document)


def test_encode_refuses_a_document_that_is_not_a_dictionary() -> None:
    with pytest.raises(NgEncodeError, match="dictionary"):
        encode_document(["command", "ping"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "no cookie"),
        (b"d6:result4:ponge", "no cookie"),
        (b" d6:result4:ponge", "empty cookie"),
        (b"c ", "not a bencoded dictionary"),
        (b"c li1ee", "not a bencoded dictionary"),
        (b"c i5e", "not a bencoded dictionary"),
        (b'c {"result": "ok"}', "JSON"),
        (b"c d6:result4:pon", "malformed"),
        (b"c d6:result4:pongejunk", "malformed"),
        (b"c di1ei2ee", "malformed"),
        (b"c d3:\xff\xfe\xfd4:ponge", "malformed"),
        (b"c d1:ai01ee", "malformed"),
        (b"c d1:ai-0ee", "malformed"),
        (b"c d1:a99:abce", "malformed"),
        (b"c d1:ae", "malformed"),
        (b"c d1:a" + b"l" * 200 + b"e" * 200 + b"e", "malformed"),
    ],
)
def test_malformed_messages_raise_ng_decode_error(data: bytes, reason: str) -> None:
    with pytest.raises(NgDecodeError, match=reason) as info:
        decode_message(data)
    assert isinstance(info.value, ParseError)


def test_oversized_message_is_refused_before_decoding() -> None:
    data = b"c d1:a" + str(MAX_MESSAGE_SIZE).encode() + b":" + b"x" * MAX_MESSAGE_SIZE + b"e"
    with pytest.raises(NgDecodeError, match="exceeds"):
        decode_message(data)
    assert decode_message(b"c d1:a1:xe", max_size=10).document == {"a": "x"}
    with pytest.raises(NgDecodeError, match="exceeds"):
        decode_message(b"c d1:a1:xe", max_size=9)


def test_split_cookie_cuts_at_the_first_space() -> None:
    assert split_cookie(b"a_1 d3:sdp3:a ba") == ("a_1", b"d3:sdp3:a ba")


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_a_message_or_ng_decode_error(data: bytes) -> None:
    try:
        message = decode_message(data)
    except NgDecodeError as exc:
        assert isinstance(exc, SipError)
    else:
        assert isinstance(message.document, dict)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_arbitrary_bencode_bodies_never_escape_untyped(body: bytes) -> None:
    with contextlib.suppress(NgDecodeError):
        decode_message(b"c d" + body)


_leaf = st.one_of(st.text(max_size=20), st.binary(max_size=20), st.integers(-(2**63), 2**63))
_values = st.recursive(
    _leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _normalised(value: Any) -> Any:
    # Bytes that are valid UTF-8 come back as text.
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    if isinstance(value, list):
        return [_normalised(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalised(v) for k, v in value.items()}
    return value


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=10), _values, max_size=6))
def test_any_document_round_trips(document: dict[str, Any]) -> None:
    decoded = decode_message(encode_message("rt_1", document))
    assert decoded.cookie == "rt_1"
    assert decoded.document == _normalised(document)
