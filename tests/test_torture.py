"""The RFC 4475 and RFC 5118 torture messages, one test per corpus file.

Each test reads its message as bytes from ``../shared/testdata/`` (the
corpus lives beside the repository, not in it) and checks what the RFC
asks of an element: a valid message parses, strictly and leniently, to
the field values the sender meant; an invalid one is refused with a
:class:`sipcore.ParseError` carrying the status to answer with, or, where
the RFC lets an element be liberal, parsed with the deviation named in
``msg.defects``. Messages for the layers above the parser (transaction,
application, backward compatibility) are checked for the values those
layers need to do what the RFC says.

The manifests drive the meta-tests: a corpus file without its own test
here, or one whose octets changed, fails the suite.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import re
from pathlib import Path
from typing import NotRequired, TypedDict, cast

import pytest

from sipcore import (
    NEED_DATA,
    AbsoluteURI,
    Defect,
    KeepAlive,
    NeedData,
    ParseError,
    Request,
    Response,
    SipURI,
    StreamParser,
    parse_message,
)
from sipcore import URI as AnyURI

TESTDATA = Path(__file__).resolve().parents[1].parent / "shared" / "testdata"

if not (TESTDATA / "rfc4475" / "manifest.json").is_file():
    pytest.skip(
        f"torture corpus not found at {TESTDATA}: clone the shared/ folder beside the repository",
        allow_module_level=True,
    )

FOLDERS = ("rfc4475", "rfc5118")
MAX_UINT32 = 2**32 - 1
# Chunk sizes for the stream framer: one octet at a time, an odd size that
# splits CRLFs and the header/body boundary, and everything at once.
CHUNK_SIZES = (1, 7, None)


class Entry(TypedDict):
    """One object of a corpus manifest.json (see shared/testdata/README.md)."""

    file: str
    section: str
    title: str
    kind: str
    expect: str
    call_id: str | None
    size: int
    sha256: str
    notes: str
    archive_file: NotRequired[str]
    archive_sha256: NotRequired[str]


# (canonical header name or None for the start line/framing, a word the reason contains)
Expected = tuple[str | None, str]


@functools.cache
def manifest(folder: str) -> tuple[Entry, ...]:
    text = (TESTDATA / folder / "manifest.json").read_text(encoding="utf-8")
    return tuple(cast(list[Entry], json.loads(text)))


def entry(folder: str, name: str) -> Entry:
    for item in manifest(folder):
        if item["file"] == name:
            return item
    raise AssertionError(f"{folder}/{name} is not in its manifest")


def datagram(folder: str, name: str) -> bytes:
    """The file's octets, exactly as the RFC archive holds them."""
    return (TESTDATA / folder / name).read_bytes()


def per_file_test_prefix(folder: str, name: str) -> str:
    return f"test_{folder}_{name.removesuffix('.dat').replace('-', '_')}_"


# -- helpers: what "handled as the RFC says" means, per outcome ----------------


def sip(uri: AnyURI) -> SipURI:
    assert isinstance(uri, SipURI), f"expected a sip:/sips: URI, got {uri!r}"
    return uri


def absolute(uri: AnyURI) -> AbsoluteURI:
    assert isinstance(uri, AbsoluteURI), f"expected an opaque absolute URI, got {uri!r}"
    return uri


def as_request(msg: Request | Response) -> Request:
    assert isinstance(msg, Request), f"expected a request, got {msg!r}"
    return msg


def as_response(msg: Request | Response) -> Response:
    assert isinstance(msg, Response), f"expected a response, got {msg!r}"
    return msg


def drain(parser: StreamParser) -> list[Request | Response | KeepAlive]:
    events: list[Request | Response | KeepAlive] = []
    while True:
        event = parser.next_event()
        if isinstance(event, NeedData):
            return events
        events.append(event)


def assert_stream_frames(wire: bytes, datagram_msg: Request | Response) -> None:
    """A stream carrying exactly this message frames it, whatever the chunking,
    leniently and strictly."""
    for size, strict in itertools.product(CHUNK_SIZES, (False, True)):
        step = size or len(wire)
        parser = StreamParser(strict=strict)
        events: list[Request | Response | KeepAlive] = []
        for start in range(0, len(wire), step):
            parser.receive_data(wire[start : start + step])
            events += drain(parser)
        assert len(events) == 1, f"chunk size {size}, strict={strict}: {events!r}"
        framed = events[0]
        assert isinstance(framed, Request | Response)
        assert bytes(framed) == wire
        assert framed.headers() == datagram_msg.headers()
        assert framed.body == datagram_msg.body
        assert parser.next_event() is NEED_DATA
        assert parser.buffered == 0


def assert_framing(msg: Request | Response, wire: bytes, item: Entry) -> None:
    """Call-ID as the manifest has it, body framed by Content-Length, exact octets."""
    if item["call_id"] is None:
        assert "Call-ID" not in msg
    else:
        assert msg.call_id == item["call_id"]
    assert bytes(msg) == wire
    declared = msg.get("Content-Length")
    if declared is not None:
        assert int(declared) == len(msg.body) == msg.content_length
    assert wire.endswith(msg.body)


def accept(folder: str, name: str, *, wire: bytes | None = None) -> Request | Response:
    """The message parses leniently and strictly, and validation finds nothing.

    ``wire`` is what the message is on its own when the datagram holds more.
    """
    data = datagram(folder, name)
    wire = data if wire is None else wire
    msg = parse_message(data)
    assert msg.validate() == ()
    assert msg.defects == ()
    strict = parse_message(data, strict=True)
    assert bytes(strict) == wire
    assert strict.headers() == msg.headers()
    assert_framing(msg, wire, entry(folder, name))
    if "Content-Length" in msg:
        assert_stream_frames(wire, msg)
    return msg


def accept_request(folder: str, name: str, *, wire: bytes | None = None) -> Request:
    return as_request(accept(folder, name, wire=wire))


def accept_response(folder: str, name: str) -> Response:
    return as_response(accept(folder, name))


def assert_defects(found: tuple[Defect, ...], expected: tuple[Expected, ...]) -> None:
    assert len(found) == len(expected), found
    for header, word in expected:
        matches = [d for d in found if d.header == header and word.lower() in d.reason.lower()]
        assert len(matches) == 1, f"no single defect ({header}, {word!r}) in {found!r}"
        assert matches[0].status_hint == 400


def tolerate(folder: str, name: str, *expected: Expected) -> Request:
    """A liberal element processes the request and names what was wrong;
    a strict one refuses it with 400."""
    data = datagram(folder, name)
    msg = as_request(parse_message(data))
    assert_defects(msg.validate(), expected)
    assert_framing(msg, data, entry(folder, name))
    with pytest.raises(ParseError) as info:
        parse_message(data, strict=True)
    assert info.value.status_hint == 400
    assert any(word.lower() in info.value.reason.lower() for _, word in expected)
    return msg


def reject_on_validate(folder: str, name: str, header: str) -> Request | Response:
    """The message frames (so a 400 can be built from it) but validation
    refuses it, naming ``header``; strict parsing refuses it the same way."""
    data = datagram(folder, name)
    msg = parse_message(data)
    assert_framing(msg, data, entry(folder, name))
    with pytest.raises(ParseError) as info:
        msg.validate()
    assert info.value.status_hint == 400
    assert header in info.value.reason
    assert info.value.message is msg
    with pytest.raises(ParseError) as strict_info:
        parse_message(data, strict=True)
    assert strict_info.value.status_hint == 400
    assert header in strict_info.value.reason
    return msg


def reject_on_parse(folder: str, name: str, status: int, word: str) -> ParseError:
    """Neither lenient nor strict parsing gives a message."""
    data = datagram(folder, name)
    raised = []
    for strict in (False, True):
        with pytest.raises(ParseError) as info:
            parse_message(data, strict=strict)
        assert info.value.status_hint == status
        assert word in info.value.reason
        raised.append(info.value)
    return raised[0]


def stream_error(data: bytes) -> ParseError:
    parser = StreamParser()
    parser.receive_data(data)
    with pytest.raises(ParseError) as info:
        parser.next_event()
    with pytest.raises(ParseError):  # framing is lost for good: close the connection
        parser.next_event()
    return info.value


def via_summary(msg: Request | Response) -> list[tuple[str, str, int | None, str | None]]:
    return [(via.transport, via.host, via.port, via.branch) for via in msg.via]


SDP_TAIL = b"m=audio 49217 RTP/AVP 0 12\r\nm=video 3227 RTP/AVP 31\r\na=rtpmap:31 LPC\r\n"


# -- RFC 4475 section 3.1.1: valid messages --------------------------------------


def test_rfc4475_wsinv_folding_and_odd_lws_still_give_every_field_value() -> None:
    msg = accept_request("rfc4475", "wsinv.dat")
    assert msg.method == "INVITE"
    uri = sip(msg.uri)
    assert (uri.scheme, uri.user, uri.host, uri.port) == (
        "sip",
        "vivekg",
        "chair-dnrc.example.com",
        None,
    )
    assert uri.params.items_ == (("unknownparam", None),)
    assert msg.to.display_name is None
    assert str(msg.to.uri) == "sip:vivekg@chair-dnrc.example.com"
    assert msg.to.tag == "1918181833n"
    # "J Rosenberg \\\"" unquoted: a backslash, then a quote.
    assert msg.from_.display_name == 'J Rosenberg \\"'
    assert str(msg.from_.uri) == "sip:jdrosen@example.com"
    assert msg.from_.tag == "98asjd8"
    assert msg.max_forwards == 68  # "0068"
    assert (msg.cseq.number, msg.cseq.method) == (9, "INVITE")  # "0009\r\n  INVITE"
    assert via_summary(msg) == [
        ("UDP", "192.0.2.2", None, "390skdjuw"),
        ("TCP", "spindle.example.com", None, "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", None, "z9hG4bK30239"),
    ]
    assert all(via.protocol == "SIP/2.0" for via in msg.via)
    assert not msg.via[0].has_rfc3261_branch
    assert msg.via[1].has_rfc3261_branch
    (contact,) = msg.contact
    assert contact.display_name == 'Quoted string ""'
    assert str(contact.uri) == "sip:jdrosen@example.com"
    assert contact.params.items_ == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    assert contact.q == 0.33
    (route,) = msg.route
    route_uri = sip(route.uri)
    assert (route_uri.user, route_uri.host, route_uri.lr) == (None, "services.example.com", True)
    assert route_uri.params.items_ == (
        ("lr", None),
        ("unknownwith", "value"),
        ("unknown-no-value", None),
    )
    assert msg.get("Subject") == ""  # "s :" with nothing after it
    assert msg.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert msg.content_type == "application/sdp"
    assert len(msg.body) == 150
    assert msg.body.startswith(b"v=0\r\no=mhandley 29739 7272939 IN IP4 192.0.2.3\r\n")
    assert msg.body.endswith(SDP_TAIL)


def test_rfc4475_intmeth_every_legal_token_character_is_kept() -> None:
    msg = accept_request("rfc4475", "intmeth.dat")
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert msg.method == method
    uri = sip(msg.uri)
    user = "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.user == user
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert (uri.host, uri.port, uri.params.items_, uri.headers) == ("example.com", None, (), ())
    (via,) = msg.via
    assert (via.transport, via.host, via.branch) == (
        "TCP",
        "host1.example.com",
        "z9hG4bK-.!%66*_+`'~",
    )
    assert msg.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    to_uri = sip(msg.to.uri)
    assert (to_uri.user, to_uri.password, to_uri.host) == (user, None, "example.com")
    assert msg.to.tag is None
    assert msg.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert str(msg.from_.uri) == "sip:mundane@example.com"
    assert msg.from_.params.items_ == (
        ("fromParam''~+*_!.-%", '"работающий"'),
        ("tag", "_token~1'+`*%!-."),
    )
    assert (msg.cseq.number, msg.cseq.method) == (139122385, method)
    assert msg.max_forwards == 255
    assert msg.get("extensionHeader-!.%*+_`'~") == "\ufeff大停電"
    assert msg.body == b""


def test_rfc4475_esc01_percent_escapes_are_decoded_exactly_once() -> None:
    msg = accept_request("rfc4475", "esc01.dat")
    assert msg.method == "INVITE"
    uri = sip(msg.uri)
    assert (uri.scheme, uri.user, uri.host, uri.port) == (
        "sip",
        "sips:user@example.com",
        "example.net",
        None,
    )
    assert sip(msg.to.uri).user == "user"  # %75se%72
    assert msg.to.tag is None
    assert sip(msg.from_.uri).user == "I have spaces"
    assert msg.from_.tag == "938"
    assert msg.call_id == "esc01.239409asdfakjkn23onasd0-3234"  # compact "i:"
    assert (msg.cseq.number, msg.cseq.method) == (234234, "INVITE")
    assert msg.max_forwards == 87
    assert via_summary(msg) == [("UDP", "host5.example.net", None, "z9hG4bKkdjuw")]
    (contact,) = msg.contact
    contact_uri = sip(contact.uri)
    assert (contact_uri.user, contact_uri.host) == ("caller", "host5.example.net")
    assert contact_uri.lr  # ;%6C%72
    assert contact_uri.params.items_ == (("lr", None), ("name", "value%41"))
    assert contact.params.items_ == ()
    assert msg.content_type == "application/sdp"  # compact "C:"
    assert len(msg.body) == 150
    assert msg.body.endswith(SDP_TAIL)


def test_rfc4475_escnull_escaped_nul_does_not_truncate_users() -> None:
    msg = accept_request("rfc4475", "escnull.dat")
    assert msg.method == "REGISTER"
    uri = sip(msg.uri)
    assert (uri.user, uri.host) == (None, "example.com")
    assert (sip(msg.to.uri).user, sip(msg.to.uri).host) == ("null-\x00-null", "example.com")
    assert sip(msg.from_.uri).user == "null-\x00-null"
    assert msg.from_.tag == "839923423"
    assert msg.to.tag is None
    assert (msg.cseq.number, msg.cseq.method) == (14398234, "REGISTER")
    assert msg.max_forwards == 70
    assert via_summary(msg) == [("UDP", "host5.example.com", None, "z9hG4bKkdjuw")]
    first, second = msg.contact
    assert sip(first.uri).user == "\x00"
    assert sip(second.uri).user == "\x00\x00"
    assert sip(first.uri).host == sip(second.uri).host == "host5.example.com"
    assert first.uri != second.uri  # two distinct bindings
    assert msg.get("Content-Length") == "0"  # "L:0"


def test_rfc4475_esc02_percent_outside_uris_is_literal() -> None:
    msg = accept_request("rfc4475", "esc02.dat")
    assert msg.method == "RE%47IST%45R"  # an unknown method, not REGISTER
    assert (msg.cseq.number, msg.cseq.method) == (29344, "RE%47IST%45R")
    assert sip(msg.uri).host == "registrar.example.com"
    assert msg.to.display_name == msg.from_.display_name == "%Z%45"
    assert str(msg.to.uri) == str(msg.from_.uri) == "sip:resource@example.com"
    assert msg.from_.tag == "f232jadfj23"
    assert msg.to.tag is None
    assert via_summary(msg) == [("TCP", "host.example.com", None, "z9hG4bK209%fzsnel234")]
    assert msg.max_forwards == 70
    # C%6Fntact is an unknown header: two Contact values, not three.
    assert [str(contact.uri) for contact in msg.contact] == [
        "sip:alias1@host1.example.com",
        "sip:alias3@host3.example.com",
    ]
    assert msg.count("Contact") == 2
    assert msg.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_rfc4475_lwsdisp_display_name_may_touch_the_angle_bracket() -> None:
    msg = accept_request("rfc4475", "lwsdisp.dat")
    assert msg.method == "OPTIONS"
    assert str(msg.uri) == "sip:user@example.com"
    assert msg.from_.display_name == "caller"
    assert str(msg.from_.uri) == "sip:caller@example.com"
    assert msg.from_.tag == "323"
    assert (msg.to.display_name, str(msg.to.uri), msg.to.tag) == (
        None,
        "sip:user@example.com",
        None,
    )
    assert (msg.cseq.number, msg.cseq.method) == (60, "OPTIONS")
    assert msg.max_forwards == 70
    assert via_summary(msg) == [("UDP", "funky.example.com", None, "z9hG4bKkdjuw")]


def test_rfc4475_longreq_long_values_are_not_truncated() -> None:
    msg = accept_request("rfc4475", "longreq.dat")
    assert msg.method == "INVITE"
    assert str(msg.uri) == "sip:user@example.com"
    assert msg.to.display_name == "I have a user name of " + "extreme" * 10 + " proportion"
    to_uri = sip(msg.to.uri)
    assert (to_uri.user, to_uri.host, to_uri.port) == ("user", "example.com", 6000)
    assert to_uri.params.items_ == (
        ("unknownparam1", "verylong" + "long" * 19 + "value"),
        ("longparam" + "name" * 25, "shortvalue"),
        ("verylong" + "long" * 24 + "ParameterNameWithNoValue", None),
    )
    caller = "amazinglylongcallername" * 5
    from_uri = sip(msg.from_.uri)
    assert (from_uri.user, from_uri.host) == (caller, "example.net")
    assert msg.from_.display_name is None
    assert msg.from_.params.items_ == (
        ("tag", "1" + "298" * 50 + "2424"),
        ("unknownheaderparam" + "name" * 20, "unknowheaderparam" + "value" * 15),
        ("unknownValueless" + "paramname" * 10, None),
    )
    assert (msg.cseq.number, msg.cseq.method) == (3882340, "INVITE")
    long_ = "long" * 20
    assert msg.get("Unknown-" + "Long" * 20 + "-Name") == (
        f"unknown-{long_}-value; unknown-{long_}-parameter-name = unknown-{long_}-parameter-value"
    )
    # 34 Via values under every spelling of the name, whitespace before the colon included.
    assert len(msg.via) == 34
    assert [via.host for via in msg.via] == [f"sip{n}.example.com" for n in range(33, 0, -1)] + [
        "host.example.com"
    ]
    assert all(via.transport == "TCP" and via.port is None for via in msg.via)
    assert all(via.branch is None for via in msg.via[:33])
    last = msg.via[33]
    assert last.received == "192.0.2.5"
    assert last.branch == "verylong" + "long" * 49 + "branchvalue"
    assert msg.max_forwards == 70
    (contact,) = msg.contact
    assert (sip(contact.uri).user, sip(contact.uri).host) == (caller, "host5.example.net")
    assert msg.content_type == "application/sdp"
    assert msg.get("Content-Length") == "150"  # compact "l:"
    assert msg.body.endswith(SDP_TAIL)


def test_rfc4475_dblreq_trailing_octets_are_not_part_of_the_register() -> None:
    data = datagram("rfc4475", "dblreq.dat")
    register = data[: data.index(b"\r\n\r\n") + 4]
    assert (len(register), len(data) - len(register)) == (300, 450)
    msg = accept_request("rfc4475", "dblreq.dat", wire=register)
    assert msg.method == "REGISTER"
    assert str(msg.uri) == "sip:example.com"
    assert (msg.cseq.number, msg.cseq.method) == (8, "REGISTER")
    assert str(msg.to.uri) == "sip:j.user@example.com"
    assert msg.to.tag is None
    assert str(msg.from_.uri) == "sip:j.user@example.com"
    assert msg.from_.tag == "43251j3j324"
    assert msg.max_forwards == 8
    assert [str(contact.uri) for contact in msg.contact] == ["sip:j.user@host.example.com"]
    assert via_summary(msg) == [("UDP", "192.0.2.125", None, "z9hG4bKkdjuw23492")]
    assert msg.body == b""
    # A proxy forwarding the REGISTER must not carry the trailing INVITE along.
    msg.max_forwards = 7
    msg.add_header("Via", "SIP/2.0/UDP proxy.example.net;branch=z9hG4bKfwd1", first=True)
    forwarded = bytes(msg)
    assert b"INVITE" not in forwarded
    assert forwarded.endswith(b"Content-Length: 0\r\n\r\n")
    assert parse_message(forwarded, strict=True).via[0].host == "proxy.example.net"


def test_rfc4475_semiuri_semicolon_and_escaped_at_belong_to_the_user() -> None:
    msg = accept_request("rfc4475", "semiuri.dat")
    assert msg.method == "OPTIONS"
    uri = sip(msg.uri)
    assert (uri.user, uri.password, uri.host, uri.port) == (
        "user;par=u@example.net",
        None,
        "example.com",
        None,
    )
    assert uri.params.items_ == ()
    assert str(msg.to.uri) == "sip:j_user@example.com"
    assert str(msg.from_.uri) == "sip:caller@example.org"
    assert msg.from_.tag == "33242"
    assert msg.max_forwards == 3
    assert (msg.cseq.number, msg.cseq.method) == (8, "OPTIONS")
    assert msg.get_all("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]
    assert via_summary(msg) == [("UDP", "192.0.2.1", None, "z9hG4bKkdjuw")]


def test_rfc4475_transports_unknown_via_transports_are_ordinary_vias() -> None:
    msg = accept_request("rfc4475", "transports.dat")
    assert msg.method == "OPTIONS"
    assert str(msg.uri) == "sip:user@example.com"
    assert via_summary(msg) == [
        ("UDP", "t1.example.com", None, "z9hG4bKkdjuw"),
        ("SCTP", "t2.example.com", None, "z9hG4bKklasjdhf"),
        ("TLS", "t3.example.com", None, "z9hG4bK2980unddj"),
        ("UNKNOWN", "t4.example.com", None, "z9hG4bKasd0f3en"),
        ("TCP", "t5.example.com", None, "z9hG4bK0a9idfnee"),
    ]
    assert all(via.has_rfc3261_branch for via in msg.via)
    assert (msg.from_.display_name, str(msg.from_.uri), msg.from_.tag) == (
        None,
        "sip:caller@example.com",
        "323",
    )
    assert str(msg.to.uri) == "sip:user@example.com"
    assert (msg.cseq.number, msg.cseq.method) == (60, "OPTIONS")
    assert msg.max_forwards == 70
    assert msg.get("Accept") == "application/sdp"


def test_rfc4475_mpart01_binary_multipart_body_is_framed_by_content_length() -> None:
    data = datagram("rfc4475", "mpart01.dat")
    msg = accept_request("rfc4475", "mpart01.dat")
    assert msg.method == "MESSAGE"
    assert str(msg.uri) == "sip:kumiko@example.org"
    (via,) = msg.via
    assert (via.transport, via.host, via.port) == ("UDP", "127.0.0.1", 5070)
    assert via.branch == "z9hG4bK-d87543-4dade06d0bdb11ee-1--d87543-"
    assert "rport" in via.params
    assert via.rport is None  # present without a value: "fill it in"
    assert msg.max_forwards == 70
    (route,) = msg.route
    assert (sip(route.uri).host, sip(route.uri).port, sip(route.uri).user) == (
        "127.0.0.1",
        5080,
        None,
    )
    (contact,) = msg.contact
    assert (sip(contact.uri).user, sip(contact.uri).port) == ("fluffy", 5070)
    assert str(msg.to.uri) == "sip:kumiko@example.org"
    assert (str(msg.from_.uri), msg.from_.tag) == ("sip:fluffy@example.com", "2fb0dcc9")
    assert (msg.cseq.number, msg.cseq.method) == (1, "MESSAGE")
    assert msg.content_type == "multipart/mixed;boundary=7a9cbec02ceef655"
    assert msg.get("Content-Transfer-Encoding") == "binary"
    assert msg.get("Date") == "Sat, 15 Oct 2005 04:44:56 GMT"
    assert msg.get("User-Agent") == "SIPimp.org/0.2.5 (curses)"
    identity = msg.get("Identity")
    assert identity is not None
    assert identity.startswith("r5mwreLuyDRYBi/0TiPwEsY3rEVsk") and identity.endswith("MWYUA=")
    body = msg.body
    assert len(body) == 553
    assert body == data[-553:]
    assert body.startswith(b"--7a9cbec02ceef655\r\nContent-Type: text/plain\r\n")
    assert body.endswith(b"\r\n--7a9cbec02ceef655--\r\n")
    # The binary part's NUL, bare CR and bare LF octets are body, not line ends.
    assert b"\x00" in body
    assert re.search(rb"\r[^\n]", body)
    assert re.search(rb"[^\r]\n", body)


def test_rfc4475_unreason_utf8_reason_phrase_is_kept() -> None:
    msg = accept_response("rfc4475", "unreason.dat")
    assert (msg.version, msg.status_code) == ("SIP/2.0", 200)
    assert msg.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    assert via_summary(msg) == [("UDP", "192.0.2.198", None, "z9hG4bK1324923")]
    assert (msg.cseq.number, msg.cseq.method) == (35, "INVITE")
    assert (str(msg.from_.uri), msg.from_.tag) == ("sip:user@example.com", "11141343")
    assert (str(msg.to.uri), msg.to.tag) == ("sip:user@example.edu", "2229")
    assert [str(contact.uri) for contact in msg.contact] == ["sip:user@host198.example.com"]
    assert msg.max_forwards is None
    assert msg.content_type == "application/sdp"
    assert len(msg.body) == 154
    assert msg.body.endswith(SDP_TAIL)


def test_rfc4475_noreason_empty_reason_phrase_is_allowed() -> None:
    msg = accept_response("rfc4475", "noreason.dat")
    assert msg.start_line == "SIP/2.0 100 "
    assert (msg.status_code, msg.reason) == (100, "")
    assert via_summary(msg) == [("UDP", "192.0.2.105", None, "z9hG4bK2398ndaoe")]
    assert (msg.cseq.number, msg.cseq.method) == (35, "INVITE")
    assert (str(msg.from_.uri), msg.from_.tag) == ("sip:user@example.com", "39ansfi3")
    assert (str(msg.to.uri), msg.to.tag) == ("sip:user@example.edu", "902jndnke3")
    assert [str(contact.uri) for contact in msg.contact] == ["sip:user@host105.example.com"]
    assert msg.body == b""


# -- RFC 4475 section 3.1.2: invalid messages -------------------------------------


def test_rfc4475_badinv01_empty_via_and_contact_elements_are_refused() -> None:
    msg = reject_on_validate("rfc4475", "badinv01.dat", "Via")
    with pytest.raises(ParseError) as via_info:
        list(msg.via)
    assert via_info.value.reason.startswith("Via")
    with pytest.raises(ParseError) as contact_info:
        list(msg.contact)
    assert contact_info.value.reason.startswith("Contact")
    # What a 400 needs is still there.
    assert (msg.cseq.number, msg.cseq.method) == (8, "INVITE")
    assert msg.from_.tag == "134161461246"
    assert str(msg.to.uri) == "sip:j.user@example.com"
    assert len(msg.body) == 152


def test_rfc4475_clerr_content_length_beyond_the_datagram_is_refused() -> None:
    data = datagram("rfc4475", "clerr.dat")
    exc = reject_on_parse("rfc4475", "clerr.dat", 400, "Content-Length")
    assert "9999" in exc.reason
    framed = exc.message
    assert framed is not None  # enough to answer 400 over UDP
    assert framed.call_id == entry("rfc4475", "clerr.dat")["call_id"]
    assert (framed.cseq.number, framed.cseq.method) == (8, "INVITE")
    # On a stream the same octets are a message still arriving: wait for more.
    parser = StreamParser()
    parser.receive_data(data)
    assert parser.next_event() is NEED_DATA
    assert parser.buffered == len(data)


def test_rfc4475_ncl_negative_content_length_is_refused() -> None:
    data = datagram("rfc4475", "ncl.dat")
    exc = reject_on_parse("rfc4475", "ncl.dat", 400, "Content-Length")
    assert "-999" in exc.reason
    assert exc.message is not None
    assert exc.message.call_id == entry("rfc4475", "ncl.dat")["call_id"]
    assert "Content-Length" in stream_error(data).reason


def test_rfc4475_scalar02_cseq_above_32_bits_is_refused() -> None:
    msg = reject_on_validate("rfc4475", "scalar02.dat", "CSeq")
    with pytest.raises(ParseError) as info:
        msg.cseq  # noqa: B018
    assert "36893488147419103232" in info.value.reason
    # The other overlarge values would each be tolerable alone.
    assert msg.max_forwards == 300
    assert_defects(msg.defects, (("max-forwards", "Max-Forwards"),))
    assert msg.expires == MAX_UINT32
    (contact,) = msg.contact
    assert contact.expires == MAX_UINT32
    assert str(contact.uri) == "sip:user@host129.example.com"


def test_rfc4475_scalarlg_response_with_overlarge_values_is_discarded() -> None:
    msg = as_response(reject_on_validate("rfc4475", "scalarlg.dat", "CSeq"))
    assert (msg.status_code, msg.reason) == (503, "Service Unavailable")
    with pytest.raises(ParseError):
        msg.cseq  # noqa: B018
    # Kept as text, never converted, so nothing overflows.
    assert msg.get("Retry-After") == "949302838503028349304023988"
    assert msg.get_all("Warning") == ['1812 overture "In Progress"']
    (via,) = msg.via
    assert (via.host, via.branch, via.received) == (
        "host129.example.com",
        "z9hG4bKzzxdiwo34sw",
        "192.0.2.129",
    )


def test_rfc4475_quotbal_unterminated_quoted_display_name_is_refused() -> None:
    msg = reject_on_validate("rfc4475", "quotbal.dat", "To")
    with pytest.raises(ParseError) as info:
        msg.to  # noqa: B018
    assert "To" in info.value.reason and "quoted" in info.value.reason
    assert (str(msg.from_.uri), msg.from_.tag) == ("sip:caller@example.net", "93334")
    assert via_summary(msg) == [("UDP", "192.0.2.59", 5050, "z9hG4bKkdjuw39234")]
    assert len(msg.body) == 152


def test_rfc4475_ltgtruri_angle_brackets_around_the_request_uri_are_a_defect() -> None:
    msg = tolerate("rfc4475", "ltgtruri.dat", (None, "<>"))
    assert msg.start_line == "INVITE <sip:user@example.com> SIP/2.0"
    assert msg.method == "INVITE"
    uri = sip(msg.uri)
    assert (uri.user, uri.host, uri.port, uri.params.items_) == ("user", "example.com", None, ())
    assert (msg.cseq.number, msg.cseq.method) == (1, "INVITE")
    assert via_summary(msg) == [("UDP", "192.0.2.5", None, None)]
    assert len(msg.body) == 159


def test_rfc4475_lwsruri_whitespace_inside_the_request_uri_is_a_defect() -> None:
    msg = tolerate("rfc4475", "lwsruri.dat", (None, "whitespace"))
    uri = sip(msg.uri)
    assert (uri.user, uri.host, uri.params.items_) == ("user", "example.com", (("lr", None),))
    assert msg.to.tag == "3xfe-9921883-z9f"
    assert (msg.cseq.number, msg.cseq.method) == (2130706432, "INVITE")
    assert via_summary(msg) == [("UDP", "192.0.2.1", 5060, "z9hG4bKkdjuw2395")]


def test_rfc4475_lwsstart_double_spaces_in_the_request_line_are_a_defect() -> None:
    msg = tolerate("rfc4475", "lwsstart.dat", (None, "whitespace"))
    assert (msg.method, str(msg.uri), msg.version) == ("INVITE", "sip:user@example.com", "SIP/2.0")
    assert (msg.cseq.number, msg.cseq.method) == (1893884, "INVITE")
    assert msg.max_forwards == 8
    assert len(msg.body) == 150


def test_rfc4475_trws_trailing_spaces_after_the_version_are_a_defect() -> None:
    msg = tolerate("rfc4475", "trws.dat", (None, "whitespace"))
    assert (msg.method, str(msg.uri), msg.version) == (
        "OPTIONS",
        "sip:remote-target@example.com",
        "SIP/2.0",
    )
    # The archive's typo, kept: "examle".
    assert via_summary(msg) == [("TCP", "host1.examle.com", None, "z9hG4bK299342093")]
    assert (msg.cseq.number, msg.cseq.method) == (238923, "OPTIONS")


def test_rfc4475_escruri_escaped_header_in_the_request_uri_is_a_defect() -> None:
    msg = tolerate("rfc4475", "escruri.dat", (None, "Request-URI"))
    uri = sip(msg.uri)
    assert (uri.user, uri.host) == ("user", "example.com")
    assert uri.headers == (("Route", "<sip:example.com>"),)
    # The escaped header never becomes a real one.
    assert "Route" not in msg
    assert len(msg.route) == 0
    assert (msg.cseq.number, msg.cseq.method) == (149209342, "INVITE")


def test_rfc4475_baddate_non_gmt_date_is_a_defect() -> None:
    msg = tolerate("rfc4475", "baddate.dat", ("date", "GMT"))
    assert msg.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"
    assert (msg.cseq.number, msg.cseq.method) == (1392934, "INVITE")
    assert len(msg.body) == 150


def test_rfc4475_regbadct_unbracketed_contact_with_header_is_a_defect() -> None:
    msg = tolerate("rfc4475", "regbadct.dat", ("contact", "<>"))
    (contact,) = msg.contact
    uri = sip(contact.uri)
    assert (uri.user, uri.host) == ("user", "example.com")
    assert uri.headers == (("Route", "<sip:sip.example.com>"),)
    assert contact.params.items_ == ()
    assert via_summary(msg) == [("UDP", "135.180.130.133", 5060, "z9hG4bKkdjuw")]


def test_rfc4475_badaspec_spaces_inside_the_to_brackets_are_a_defect() -> None:
    msg = tolerate("rfc4475", "badaspec.dat", ("to", "whitespace"))
    assert msg.to.display_name == "Watson, Thomas"
    assert str(msg.to.uri) == "sip:t.watson@example.org"
    assert msg.from_.display_name == "Bell, Alexander"
    assert (str(msg.from_.uri), msg.from_.tag) == ("sip:a.g.bell@example.com", "433423")
    assert via_summary(msg) == [("UDP", "host4.example.com", 5060, "z9hG4bKkdju43234")]


def test_rfc4475_baddn_unquoted_non_token_display_names_are_defects() -> None:
    data = datagram("rfc4475", "baddn.dat")
    assert data.endswith(b"l: 0\r\n")  # the archive copy has no empty line
    msg = tolerate(
        "rfc4475",
        "baddn.dat",
        (None, "empty line"),
        ("from", "display name"),
        ("to", "display name"),
    )
    assert (msg.from_.display_name, msg.from_.tag) == ("Bell, Alexander", "43")
    assert msg.to.display_name == "Watson, Thomas"
    assert str(msg.to.uri) == "sip:t.watson@example.org"
    assert msg.body == b""
    # With the empty line in place only the display names are wrong.
    closed = parse_message(data + b"\r\n")
    assert_defects(closed.validate(), (("from", "display name"), ("to", "display name")))
    # On a stream the header section has not ended yet.
    parser = StreamParser()
    parser.receive_data(data)
    assert parser.next_event() is NEED_DATA


def test_rfc4475_badvers_unknown_sip_version_gets_505() -> None:
    data = datagram("rfc4475", "badvers.dat")
    exc = reject_on_parse("rfc4475", "badvers.dat", 505, "SIP/7.0")
    framed = exc.message
    assert isinstance(framed, Request)  # enough to answer the 505
    assert (framed.method, framed.version) == ("OPTIONS", "SIP/7.0")
    assert framed.call_id == entry("rfc4475", "badvers.dat")["call_id"]
    assert framed.via[0].protocol == "SIP/7.0"
    assert framed.from_.tag == "qweoiqpe"
    assert stream_error(data).status_hint == 505


def test_rfc4475_mismatch01_cseq_method_must_match_the_request_line() -> None:
    msg = as_request(reject_on_validate("rfc4475", "mismatch01.dat", "CSeq"))
    assert msg.method == "OPTIONS"
    assert (msg.cseq.number, msg.cseq.method) == (8, "INVITE")
    with pytest.raises(ParseError) as info:
        msg.validate()
    assert "INVITE" in info.value.reason and "OPTIONS" in info.value.reason


def test_rfc4475_mismatch02_unknown_method_with_other_cseq_method_is_refused() -> None:
    msg = as_request(reject_on_validate("rfc4475", "mismatch02.dat", "CSeq"))
    assert msg.method == "NEWMETHOD"
    assert (msg.cseq.number, msg.cseq.method) == (8, "INVITE")
    assert msg.content_type == "application/sdp"
    assert len(msg.body) == 138


def test_rfc4475_bigcode_status_code_above_699_is_dropped() -> None:
    data = datagram("rfc4475", "bigcode.dat")
    exc = reject_on_parse("rfc4475", "bigcode.dat", 400, "status code")
    assert "4294967301" in exc.reason
    assert exc.message is None  # nothing to answer: a response is dropped
    assert "status code" in stream_error(data).reason


# -- RFC 4475 section 3.2: transaction layer -----------------------------------


def test_rfc4475_badbranch_bare_magic_cookie_is_no_rfc3261_branch() -> None:
    msg = accept_request("rfc4475", "badbranch.dat")
    (via,) = msg.via
    assert via.branch == "z9hG4bK"
    assert not via.has_rfc3261_branch
    assert (via.transport, via.host, via.port) == ("UDP", "192.0.2.1", None)
    assert (msg.cseq.number, msg.cseq.method) == (8, "OPTIONS")
    assert msg.from_.tag == "33242"


# -- RFC 4475 section 3.3: application layer -----------------------------------


def test_rfc4475_insuf_missing_call_id_from_and_to_are_refused() -> None:
    msg = reject_on_validate("rfc4475", "insuf.dat", "Call-ID")
    with pytest.raises(ParseError) as call_id_info:
        msg.call_id  # noqa: B018
    assert "Call-ID" in call_id_info.value.reason
    with pytest.raises(ParseError) as from_info:
        msg.from_  # noqa: B018
    assert "From" in from_info.value.reason
    with pytest.raises(ParseError) as to_info:
        msg.to  # noqa: B018
    assert "To" in to_info.value.reason
    assert (msg.cseq.number, msg.cseq.method) == (193942, "INVITE")
    assert via_summary(msg) == [("UDP", "192.0.2.95", None, "z9hG4bKkdj.insuf")]
    assert len(msg.body) == 152


def test_rfc4475_unkscm_unknown_request_uri_scheme_is_an_opaque_uri() -> None:
    msg = accept_request("rfc4475", "unkscm.dat")
    uri = absolute(msg.uri)
    assert (uri.scheme, uri.opaque) == ("nobodyknowsthisscheme", "totallyopaquecontent")
    assert msg.start_line == "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0"
    assert str(msg.to.uri) == "sip:user@example.com"  # what must not be routed on
    assert (msg.cseq.number, msg.cseq.method) == (3923423, "OPTIONS")
    assert msg.max_forwards == 3


def test_rfc4475_novelsc_atypical_request_uri_scheme_is_an_opaque_uri() -> None:
    msg = accept_request("rfc4475", "novelsc.dat")
    uri = absolute(msg.uri)
    assert (uri.scheme, uri.opaque) == ("soap.beep", "//192.0.2.103:3002")
    assert (msg.cseq.number, msg.cseq.method) == (3923423, "OPTIONS")


def test_rfc4475_unksm2_non_sip_schemes_in_to_from_and_contact_parse() -> None:
    msg = accept_request("rfc4475", "unksm2.dat")
    assert msg.method == "REGISTER"
    to_uri = absolute(msg.to.uri)
    assert (to_uri.scheme, to_uri.opaque) == ("isbn", "2983792873")
    from_uri = absolute(msg.from_.uri)
    assert (from_uri.scheme, from_uri.opaque) == ("http", "//www.example.com")
    assert msg.from_.tag == "3234233"
    (contact,) = msg.contact
    contact_uri = absolute(contact.uri)
    assert (contact_uri.scheme, contact_uri.opaque) == ("name", "John_Smith")
    assert via_summary(msg) == [("UDP", "192.0.2.21", 5060, "z9hG4bKkdjuw")]


def test_rfc4475_bext01_require_and_proxy_require_option_tags_are_listed() -> None:
    msg = accept_request("rfc4475", "bext01.dat")
    assert msg.get_all("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert msg.get_all("Proxy-Require") == ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]
    assert via_summary(msg) == [("TLS", "fold-and-staple.example.com", None, "z9hG4bKkdjuw")]
    assert (msg.cseq.number, msg.cseq.method) == (8, "OPTIONS")


def test_rfc4475_invut_unknown_content_type_is_kept_with_its_body() -> None:
    msg = accept_request("rfc4475", "invut.dat")
    assert msg.content_type == "application/unknownformat"
    assert msg.body == b'<audio>\r\n <pcmu port="443"/>\r\n</audio>\r\n'
    assert (msg.cseq.number, msg.cseq.method) == (235448, "INVITE")


def test_rfc4475_regaut01_unknown_authorization_scheme_is_kept() -> None:
    msg = accept_request("rfc4475", "regaut01.dat")
    assert msg.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"
    (credentials,) = msg.authorization
    assert credentials.scheme == "NoOneKnowsThisScheme"
    assert not credentials.is_digest
    assert credentials.params.items_ == (("opaque-data", "here"),)
    assert (msg.cseq.number, msg.cseq.method) == (9338, "REGISTER")


def test_rfc4475_multi01_duplicated_single_value_headers_are_refused() -> None:
    data = datagram("rfc4475", "multi01.dat")
    msg = parse_message(data)
    assert_framing(msg, data, entry("rfc4475", "multi01.dat"))
    with pytest.raises(ParseError) as info:
        msg.validate()
    assert info.value.status_hint == 400
    assert "more than one" in info.value.reason
    assert any(name in info.value.reason for name in ("Call-ID", "CSeq", "From", "To", "Max"))
    with pytest.raises(ParseError) as strict_info:
        parse_message(data, strict=True)
    assert "more than one" in strict_info.value.reason
    for name in ("Call-ID", "CSeq", "From", "To", "Max-Forwards", "Contact"):
        assert msg.count(name) == 2
    assert msg.get_all("Call-ID") == ["multi01.98asdh@192.0.2.1", "multi01.98asdh@192.0.2.2"]
    assert (msg.cseq.number, msg.cseq.method) == (5, "INVITE")  # the first
    assert len(msg.body) == 154
    assert msg.body.endswith(b"a=rtpmap:31 LPC\r\n\r\n")  # l: 154 counts the extra CRLF


def test_rfc4475_mcl01_conflicting_content_lengths_are_refused() -> None:
    data = datagram("rfc4475", "mcl01.dat")
    exc = reject_on_parse("rfc4475", "mcl01.dat", 400, "Content-Length")
    assert exc.message is not None
    assert exc.message.call_id == entry("rfc4475", "mcl01.dat")["call_id"]
    assert exc.message.get_all("Content-Length") == ["13", "5"]
    assert "Content-Length" in stream_error(data).reason


def test_rfc4475_bcast_broadcast_via_is_visible_to_the_proxy() -> None:
    msg = accept_response("rfc4475", "bcast.dat")
    assert (msg.status_code, msg.reason) == (200, "OK")
    assert via_summary(msg) == [
        ("UDP", "192.0.2.198", None, "z9hG4bK1324923"),
        ("UDP", "255.255.255.255", None, "z9hG4bK1saber23"),
    ]
    assert (msg.cseq.number, msg.cseq.method) == (35, "INVITE")
    assert len(msg.body) == 154


def test_rfc4475_zeromf_max_forwards_zero_is_read_as_zero() -> None:
    msg = accept_request("rfc4475", "zeromf.dat")
    assert msg.max_forwards == 0
    assert msg.get("Max-Forwards") == "0"
    assert (msg.cseq.number, msg.cseq.method) == (39234321, "OPTIONS")


def test_rfc4475_cparam01_param_after_unbracketed_contact_is_a_header_param() -> None:
    msg = accept_request("rfc4475", "cparam01.dat")
    (contact,) = msg.contact
    assert contact.params.items_ == (("unknownparam", None),)
    uri = sip(contact.uri)
    assert (uri.user, uri.host, uri.params.items_) == ("+19725552222", "gw1.example.net", ())
    assert str(uri) == "sip:+19725552222@gw1.example.net"
    assert (msg.cseq.number, msg.cseq.method) == (2, "REGISTER")


def test_rfc4475_cparam02_param_inside_brackets_is_a_uri_param() -> None:
    msg = accept_request("rfc4475", "cparam02.dat")
    (contact,) = msg.contact
    assert contact.params.items_ == ()
    uri = sip(contact.uri)
    assert (uri.user, uri.host, uri.params.items_) == (
        "+19725552222",
        "gw1.example.net",
        (("unknownparam", None),),
    )
    assert str(uri) == "sip:+19725552222@gw1.example.net;unknownparam"
    assert (msg.cseq.number, msg.cseq.method) == (3, "REGISTER")


def test_rfc4475_regescrt_contact_uri_keeps_its_escaped_route_header() -> None:
    msg = accept_request("rfc4475", "regescrt.dat")
    (contact,) = msg.contact  # compact "M:"
    uri = sip(contact.uri)
    assert (uri.user, uri.host) == ("user", "example.com")
    assert uri.headers == (("Route", "<sip:sip.example.com>"),)
    assert str(uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    assert (msg.cseq.number, msg.cseq.method) == (14398234, "REGISTER")


def test_rfc4475_sdp01_unacceptable_accept_is_visible_to_the_application() -> None:
    msg = accept_request("rfc4475", "sdp01.dat")
    assert msg.get_all("Accept") == ["text/nobodyKnowsThis"]
    assert msg.content_type == "application/sdp"
    assert len(msg.body) == 150
    assert (msg.cseq.number, msg.cseq.method) == (8, "INVITE")


# -- RFC 4475 section 3.4: backward compatibility ------------------------------


def test_rfc4475_inv2543_rfc2543_invite_is_accepted_with_its_defect() -> None:
    data = datagram("rfc4475", "inv2543.dat")
    msg = tolerate("rfc4475", "inv2543.dat", ("max-forwards", "Max-Forwards"))
    assert msg.max_forwards is None
    assert "Content-Length" not in msg
    # No Content-Length: the body is the rest of the datagram.
    assert msg.body == data[data.index(b"\r\n\r\n") + 4 :]
    assert len(msg.body) == 105
    (via,) = msg.via
    assert (via.host, via.branch, via.has_rfc3261_branch) == ("iftgw.example.com", None, False)
    assert msg.from_.tag is None
    assert sip(msg.from_.uri).user_param == "phone"  # inside <>: a URI parameter
    assert msg.to.params.items_ == (("user", "phone"),)  # no <>: a header parameter
    assert sip(msg.to.uri).params.items_ == ()
    (record_route,) = msg.record_route
    assert sip(record_route.uri).maddr == "ss1.example.com"
    assert (msg.cseq.number, msg.cseq.method) == (56, "INVITE")


# -- RFC 5118: IPv6 ------------------------------------------------------------


def test_rfc5118_ipv6_good_bracketed_references_parse_everywhere() -> None:
    msg = accept_request("rfc5118", "ipv6-good.dat")
    uri = sip(msg.uri)
    assert (uri.user, uri.host, uri.address, uri.port) == (
        None,
        "[2001:db8::10]",
        "2001:db8::10",
        None,
    )
    (via,) = msg.via
    assert (via.host, via.address, via.port) == ("[2001:db8::9:1]", "2001:db8::9:1", None)
    assert via.branch == "z9hG4bKas3-111"
    (contact,) = msg.contact
    assert contact.display_name == "Caller"
    assert (sip(contact.uri).host, sip(contact.uri).address) == ("[2001:db8::1]", "2001:db8::1")
    assert (msg.cseq.number, msg.cseq.method) == (98176, "REGISTER")


def test_rfc5118_ipv6_bad_unbracketed_request_uri_address_is_refused() -> None:
    msg = as_request(reject_on_validate("rfc5118", "ipv6-bad.dat", "Request-URI"))
    with pytest.raises(ParseError) as info:
        msg.uri  # noqa: B018
    assert info.value.status_hint == 400
    assert "Request-URI" in info.value.reason
    assert info.value.message is msg
    assert msg.start_line == "REGISTER sip:2001:db8::10 SIP/2.0"
    assert msg.via[0].host == "[2001:db8::9:1]"
    assert sip(msg.contact[0].uri).host == "[2001:db8::1]"


def test_rfc5118_ipv6_bad_unbracketed_address_in_contact_is_refused_naming_contact() -> None:
    # The same mistake as section 4.2, moved from the Request-URI into the Contact.
    data = datagram("rfc5118", "ipv6-good.dat")
    data = data.replace(b"<sip:caller@[2001:db8::1]>", b"<sip:caller@2001:db8::1>")
    msg = parse_message(data)
    with pytest.raises(ParseError) as info:
        msg.validate()
    assert info.value.status_hint == 400
    assert "IPv6" in info.value.reason
    assert info.value.reason.startswith("Contact")


def test_rfc5118_port_ambiguous_everything_in_brackets_is_the_address() -> None:
    msg = accept_request("rfc5118", "port-ambiguous.dat")
    uri = sip(msg.uri)
    assert (uri.host, uri.address, uri.port) == (
        "[2001:db8::10:5070]",
        "2001:db8::10:5070",
        None,
    )
    # Not what the sender meant: the port-unambiguous form is another URI.
    meant = parse_message(datagram("rfc5118", "port-unambiguous.dat"))
    assert as_request(meant).uri != uri


def test_rfc5118_port_unambiguous_port_follows_the_bracket() -> None:
    msg = accept_request("rfc5118", "port-unambiguous.dat")
    uri = sip(msg.uri)
    assert (uri.host, uri.address, uri.port) == ("[2001:db8::10]", "2001:db8::10", 5070)
    assert uri.hostport == "[2001:db8::10]:5070"
    assert msg.via[0].host == "[2001:db8::9:1]"


def test_rfc5118_via_received_param_with_delim_is_accepted() -> None:
    msg = accept_request("rfc5118", "via-received-param-with-delim.dat")
    assert msg.method == "BYE"
    (via,) = msg.via
    assert (via.host, via.port) == ("[2001:db8::9:1]", None)
    assert via.received == "[2001:db8::9:255]"
    assert via.branch == "z9hG4bKas3-111"
    assert msg.to.tag == "bd76ya"
    assert sip(msg.uri).host == "[2001:db8::10]"


def test_rfc5118_via_received_param_no_delim_is_accepted() -> None:
    msg = accept_request("rfc5118", "via-received-param-no-delim.dat")
    (via,) = msg.via
    assert (via.host, via.port) == ("[2001:db8::9:1]", None)
    assert via.received == "2001:db8::9:255"
    assert via.branch == "z9hG4bKas3"
    assert (msg.cseq.number, msg.cseq.method) == (921, "OPTIONS")
    assert sip(msg.contact[0].uri).host == "[2001:db8::9:1]"


def test_rfc5118_ipv6_in_sdp_body_is_carried_untouched() -> None:
    msg = accept_request("rfc5118", "ipv6-in-sdp.dat")
    assert sip(msg.uri).host == sip(msg.to.uri).host == "[2001:db8::10]"
    assert msg.via[0].host == "[2001:db8::20]"
    assert sip(msg.contact[0].uri).host == "[2001:db8::20]"
    assert len(msg.body) == 251
    assert b"o=assistant 971731711378798081 0 IN IP6 2001:db8::20\r\n" in msg.body
    assert b"c=IN IP6 2001:db8::20\r\n" in msg.body
    assert msg.content_type == "application/sdp"


def test_rfc5118_mult_ip_in_header_mixed_ipv4_and_ipv6_vias() -> None:
    msg = accept_request("rfc5118", "mult-ip-in-header.dat")
    assert msg.method == "BYE"
    assert via_summary(msg) == [
        ("UDP", "[2001:db8::9:1]", 6050, "z9hG4bKas3-111"),
        ("UDP", "192.0.2.1", None, "z9hG4bKjhja8781hjuaij65144"),
        ("TCP", "[2001:db8::9:255]", None, "z9hG4bK451jj"),
    ]
    assert [via.address for via in msg.via] == ["2001:db8::9:1", "192.0.2.1", "2001:db8::9:255"]
    assert msg.via[2].received == "192.0.2.200"
    assert msg.to.tag == "9817--94"


def test_rfc5118_mult_ip_in_sdp_body_is_carried_untouched() -> None:
    msg = accept_request("rfc5118", "mult-ip-in-sdp.dat")
    assert len(msg.body) == 189
    assert b"m=audio 22334 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\n" in msg.body
    assert b"m=video 6024 RTP/AVP 107\r\nc=IN IP6 2001:db8::1\r\n" in msg.body
    assert sip(msg.contact[0].uri).host == "[2001:db8::9:1]"


def test_rfc5118_ipv4_mapped_ipv6_references_parse() -> None:
    msg = accept_request("rfc5118", "ipv4-mapped-ipv6.dat")
    assert via_summary(msg) == [
        ("UDP", "[::ffff:192.0.2.10]", 19823, "z9hG4bKbh19"),
        ("UDP", "[::ffff:192.0.2.2]", None, "z9hG4bKas3-111"),
    ]
    assert msg.via[0].address == "::ffff:192.0.2.10"
    (contact,) = msg.contact
    assert contact.display_name == "T. desk phone"
    assert (sip(contact.uri).user, sip(contact.uri).host) == ("ted", "[::ffff:192.0.2.2]")
    assert len(msg.body) == 245
    assert b"c=IN IP6 ::ffff:192.0.2.2\r\n" in msg.body


def test_rfc5118_ipv6_bug_abnf_3_colons_is_tolerated() -> None:
    msg = accept_request("rfc5118", "ipv6-bug-abnf-3-colons.dat")
    uri = sip(msg.uri)
    assert (uri.user, uri.host, uri.address, uri.port) == (
        "user",
        "[2001:db8:::192.0.2.1]",
        "2001:db8:::192.0.2.1",
        None,
    )
    assert sip(msg.to.uri).host == "[2001:db8:::192.0.2.1]"
    assert msg.via[0].host == "lab1.east.example.com"


def test_rfc5118_ipv6_correct_abnf_2_colons_parses() -> None:
    msg = accept_request("rfc5118", "ipv6-correct-abnf-2-colons.dat")
    uri = sip(msg.uri)
    assert (uri.user, uri.host, uri.address, uri.port) == (
        "user",
        "[2001:db8::192.0.2.1]",
        "2001:db8::192.0.2.1",
        None,
    )
    assert sip(msg.to.uri).host == "[2001:db8::192.0.2.1]"


# -- forwarding what a liberal element accepted (RFC 4475 section 3.1.2) ---------
#
# RFC 4475 3.1.2.7, 3.1.2.9 and 3.1.2.10: an element that accepts these
# requests must not forward the <> or the extra SP, so a copy sent on after
# an edit has a canonical request line.


def forwarded_copy(folder: str, name: str) -> bytes:
    """What a proxy sends on: the accepted request with a new Via, one hop fewer."""
    msg = as_request(parse_message(datagram(folder, name)))
    msg.validate()
    hops = msg.max_forwards
    msg.max_forwards = 69 if hops is None else hops - 1
    msg.add_header("Via", "SIP/2.0/UDP proxy.example.net;branch=z9hG4bKfwd1", first=True)
    return bytes(msg)


def test_rfc4475_ltgtruri_forwarded_copy_drops_the_angle_brackets() -> None:
    forwarded = forwarded_copy("rfc4475", "ltgtruri.dat")
    assert forwarded.startswith(b"INVITE sip:user@example.com SIP/2.0\r\n")
    assert parse_message(forwarded).validate() == ()


def test_rfc4475_lwsstart_forwarded_copy_has_single_spaces() -> None:
    forwarded = forwarded_copy("rfc4475", "lwsstart.dat")
    assert forwarded.startswith(b"INVITE sip:user@example.com SIP/2.0\r\n")
    assert parse_message(forwarded).validate() == ()


def test_rfc4475_trws_forwarded_copy_has_no_trailing_spaces() -> None:
    forwarded = forwarded_copy("rfc4475", "trws.dat")
    assert forwarded.startswith(b"OPTIONS sip:remote-target@example.com SIP/2.0\r\n")
    assert parse_message(forwarded).validate() == ()


def test_rfc4475_baddn_edited_copy_ends_its_header_section() -> None:
    msg = parse_message(datagram("rfc4475", "baddn.dat"))
    msg.add_header("Via", "SIP/2.0/UDP proxy.example.net;branch=z9hG4bKfwd1", first=True)
    edited = bytes(msg)
    assert edited.endswith(b"\r\n\r\n")
    assert not any("empty line" in d.reason for d in parse_message(edited).validate())


# -- leading CRLFs (RFC 3261 section 7.5) -----------------------------------------


VALID = [(f, item["file"]) for f in FOLDERS for item in manifest(f) if item["kind"] == "valid"]


@pytest.mark.parametrize(("folder", "name"), VALID, ids=[f"{f}/{n}" for f, n in VALID])
def test_valid_message_after_leading_crlfs_serializes_without_them(folder: str, name: str) -> None:
    data = datagram(folder, name)
    msg = parse_message(data)
    padded = parse_message(b"\r\n\r\n" + data)
    assert bytes(padded) == bytes(msg)
    assert padded.headers() == msg.headers()
    assert padded.validate() == ()


# -- the corpus itself -------------------------------------------------------------


@pytest.mark.parametrize("folder", FOLDERS)
def test_corpus_files_match_their_manifest(folder: str) -> None:
    items = manifest(folder)
    on_disk = sorted(path.name for path in (TESTDATA / folder).glob("*.dat"))
    assert on_disk == sorted(item["file"] for item in items)
    for item in items:
        data = datagram(folder, item["file"])
        assert len(data) == item["size"], item["file"]
        assert hashlib.sha256(data).hexdigest() == item["sha256"], item["file"]
        if "archive_file" in item:
            archived = (TESTDATA / folder / item["archive_file"]).read_bytes()
            assert hashlib.sha256(archived).hexdigest() == item["archive_sha256"]


def test_every_corpus_file_has_its_own_test() -> None:
    tests = [
        name for name, value in globals().items() if name.startswith("test_") and callable(value)
    ]
    for folder in FOLDERS:
        for item in manifest(folder):
            prefix = per_file_test_prefix(folder, item["file"])
            assert any(name.startswith(prefix) for name in tests), f"no {prefix}* test"


def test_every_per_file_test_names_a_corpus_file() -> None:
    prefixes = [per_file_test_prefix(f, item["file"]) for f in FOLDERS for item in manifest(f)]
    for name in globals():
        if name.startswith(("test_rfc4475_", "test_rfc5118_")):
            assert any(name.startswith(prefix) for prefix in prefixes), name
