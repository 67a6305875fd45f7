"""Unit tests of the message layer: builders, edits, streams, limits, URIs."""

from __future__ import annotations

import pytest

import sipcore
from sipcore import (
    NEED_DATA,
    AbsoluteURI,
    KeepAlive,
    Limits,
    LocalProtocolError,
    ParseError,
    Request,
    Response,
    SipURI,
    StreamParser,
    TelURI,
    make_request,
    make_response,
    parse_message,
    parse_uri,
)

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Via: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKold;received=192.0.2.7\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: Bob <sip:bob@biloxi.example.com>\r\n"
    b'From: "Alice \\"A\\"" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Record-Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com;transport=tcp>;expires=60;q=0.5\r\n"
    b'Authorization: Digest username="alice", realm="atlanta.example.com", '
    b'nonce="84a4cc6f3082121f32b42a2187831a9e", uri="sip:bob@biloxi.example.com", '
    b'response="7587245234b3434cc3412213e5f113a5", algorithm=MD5, qop=auth, nc=00000001, '
    b'cnonce="0a4f113b"\r\n'
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def _invite() -> Request:
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    return msg


def test_fields_of_a_typical_invite() -> None:
    msg = _invite()
    assert msg.method == "INVITE"
    assert isinstance(msg.uri, SipURI)
    assert (msg.uri.user, msg.uri.host, msg.uri.port) == ("bob", "biloxi.example.com", None)
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert (msg.cseq.number, msg.cseq.method) == (314159, "INVITE")
    assert msg.from_.display_name == 'Alice "A"'
    assert msg.from_.tag == "1928301774"
    assert msg.to.display_name == "Bob"
    assert msg.to.tag is None
    top, second = msg.via
    assert (top.transport, top.host, top.port, top.branch) == (
        "UDP",
        "pc33.atlanta.example.com",
        5060,
        "z9hG4bK776asdhds",
    )
    assert "rport" in top.params and top.rport is None
    assert (second.host, second.address, second.port, second.received) == (
        "[2001:db8::1]",
        "2001:db8::1",
        5070,
        "192.0.2.7",
    )
    assert [str(r.uri) for r in msg.record_route] == [
        "sip:p1.example.com;lr",
        "sip:p2.example.com;lr",
    ]
    (contact,) = msg.contact
    assert (contact.expires, contact.q) == (60, 0.5)
    assert isinstance(contact.uri, SipURI) and contact.uri.transport == "tcp"
    assert msg.max_forwards == 70
    (creds,) = msg.authorization
    assert creds.is_digest
    assert (creds.username, creds.realm, creds.qop, creds.nc, creds.cnonce) == (
        "alice",
        "atlanta.example.com",
        "auth",
        "00000001",
        "0a4f113b",
    )
    assert creds.uri == "sip:bob@biloxi.example.com"
    assert msg.content_type == "application/sdp"
    assert msg.body == b"v=0\n" and msg.content_length == 4
    assert msg.validate() == ()
    assert bytes(msg) == INVITE


def test_header_access_is_case_insensitive_and_knows_compact_names() -> None:
    msg = _invite()
    assert msg.get("VIA") == msg.get("v") == msg.get_all("via")[0]
    assert len(msg.get_all("Record-Route")) == 2
    assert msg.count("record-route") == 1  # one line, two values
    assert "i" in msg and "call-id" in msg and "X-Nothing" not in msg
    assert msg.get("x-nothing") is None


def test_edit_touches_only_its_line() -> None:
    msg = _invite()
    msg.max_forwards = 69
    out = bytes(msg)
    assert out == INVITE.replace(b"Max-Forwards: 70", b"Max-Forwards: 69")


def test_add_header_first_puts_a_via_on_top_and_remove_first_takes_it_off() -> None:
    msg = _invite()
    msg.add_header("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKproxy", first=True)
    assert msg.via[0].host == "proxy.example.com"
    assert len(msg.via) == 3
    assert bytes(msg).startswith(
        b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKproxy\r\n"
        b"Via: SIP/2.0/UDP pc33"
    )
    assert msg.remove_first("Via") == "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKproxy"
    assert bytes(msg) == INVITE


def test_remove_first_of_a_comma_list_keeps_the_rest_of_the_line() -> None:
    msg = _invite()
    assert msg.remove_first("Record-Route") == "<sip:p1.example.com;lr>"
    assert [str(r.uri) for r in msg.record_route] == ["sip:p2.example.com;lr"]


def test_replace_and_remove_headers() -> None:
    msg = _invite()
    msg.replace_header("Call-ID", "new-call")
    assert msg.call_id == "new-call"
    assert msg.remove_header("Record-Route") == 1
    assert msg.record_route == ()
    assert msg.remove_header("Record-Route") == 0
    again = parse_message(bytes(msg))
    assert again.call_id == "new-call" and "record-route" not in again


def test_set_body_keeps_content_length_right_even_when_compact() -> None:
    msg = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n")
    msg.set_body(b"hello", content_type="text/plain")
    out = bytes(msg)
    assert out.endswith(b"l: 5\r\nContent-Type: text/plain\r\n\r\nhello")
    assert parse_message(out).body == b"hello"


def test_header_injection_is_refused() -> None:
    msg = _invite()
    with pytest.raises(LocalProtocolError):
        msg.add_header("X-Evil", "a\r\nVia: SIP/2.0/UDP evil")
    with pytest.raises(LocalProtocolError):
        msg.add_header("Bad Name", "x")


def test_request_uri_can_be_rewritten() -> None:
    msg = _invite()
    msg.uri = "sip:bob@192.0.2.4:5062"
    assert isinstance(msg.uri, SipURI) and msg.uri.port == 5062
    assert bytes(msg).startswith(b"INVITE sip:bob@192.0.2.4:5062 SIP/2.0\r\n")


def test_make_response_follows_rfc3261_8_2_6() -> None:
    req = _invite()
    resp = make_response(req, 180, to_tag="abc")
    assert isinstance(resp, Response)
    assert (resp.status_code, resp.reason) == (180, "Ringing")
    assert [v.branch for v in resp.via] == [v.branch for v in req.via]
    assert resp.call_id == req.call_id and resp.cseq == req.cseq
    assert resp.from_.tag == "1928301774"
    assert resp.to.tag == "abc"
    assert len(resp.record_route) == 2  # dialog-creating response copies Record-Route
    assert resp.body == b"" and resp.get("Content-Length") == "0"
    trying = make_response(req, 100)
    assert trying.to.tag is None and trying.record_route == ()
    ok = make_response(req, 200, body=b"v=0\r\n", content_type="application/sdp")
    assert ok.to.tag is not None and ok.content_length == 5
    assert parse_message(bytes(ok)).body == b"v=0\r\n"


def test_make_response_keeps_an_existing_to_tag_and_refuses_ack() -> None:
    req = _invite()
    req.replace_header("To", "<sip:bob@biloxi.example.com>;tag=xyz")
    assert make_response(req, 487, to_tag="other").to.tag == "xyz"
    ack = make_request(
        "ACK",
        "sip:bob@b.example.com",
        from_="sip:a@a.example.com",
        to="sip:bob@b.example.com",
        via="SIP/2.0/UDP a.example.com;branch=z9hG4bKx",
    )
    with pytest.raises(LocalProtocolError):
        make_response(ack, 200)


def test_make_request_builds_a_valid_request() -> None:
    req = make_request(
        "OPTIONS",
        "sip:bob@biloxi.example.com",
        from_="Alice <sip:alice@atlanta.example.com>",
        to="sip:bob@biloxi.example.com",
        via="SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKabc",
        call_id="cid-1",
        cseq=7,
        from_tag="ftag",
        contact="sip:alice@192.0.2.1",
    )
    again = parse_message(bytes(req), strict=True)
    assert isinstance(again, Request)
    assert again.method == "OPTIONS" and again.cseq.number == 7
    assert again.from_.tag == "ftag" and again.from_.display_name == "Alice"
    assert again.to.tag is None
    assert again.call_id == "cid-1" and again.max_forwards == 70
    assert str(again.contact[0].uri) == "sip:alice@192.0.2.1"
    assert again.via[0].has_rfc3261_branch


def test_address_with_tag() -> None:
    to = _invite().to.with_tag("t1")
    assert to.tag == "t1" and str(to) == "Bob <sip:bob@biloxi.example.com>;tag=t1"


def test_addr_spec_parameter_may_quote_a_less_than_sign() -> None:
    msg = parse_message(INVITE.replace(b"Contact: <", b'Contact: sip:c@h;p="<";q=1, <', 1))
    first = msg.contact[0]
    assert str(first.uri) == "sip:c@h" and first.display_name is None
    assert first.params == sipcore.Params((("p", '"<"'), ("q", "1")))
    assert str(msg.contact[1].uri) == "sip:alice@pc33.atlanta.example.com;transport=tcp"


# -- errors and limits ------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 400),
        (b"\r\n\r\n", 400),
        (b"this is not SIP\r\n\r\n", 400),
        (b"INVITE sip:a@b SIP/3.0\r\nContent-Length: 0\r\n\r\n", 505),
        (b"SIP/2.0 1000 Huge\r\n\r\n", 400),
        (b"SIP/2.0 099 Low\r\n\r\n", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nabc", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 2\r\n\r\nab", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\nno colon here\r\n\r\n", 400),
    ],
)
def test_malformed_input_is_a_parse_error_with_a_status(data: bytes, status: int) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert info.value.status_hint == status


def test_a_505_carries_the_request_so_it_can_be_answered() -> None:
    data = (
        b"OPTIONS sip:a@b SIP/7.0\r\nVia: SIP/7.0/UDP h;branch=z9hG4bKa\r\n"
        b"From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n"
    )
    with pytest.raises(ParseError) as info:
        parse_message(data)
    assert info.value.status_hint == 505
    assert isinstance(info.value.message, Request)
    assert info.value.message.call_id == "c"


def test_limits_are_enforced() -> None:
    big = b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 70000 + b"\r\n\r\n"
    with pytest.raises(ParseError) as info:
        parse_message(big)
    assert info.value.status_hint == 413
    many = b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X: 1\r\n" * 20 + b"\r\n"
    with pytest.raises(ParseError) as info:
        parse_message(many, limits=Limits(max_headers=10))
    assert info.value.status_hint == 400
    long_line = b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 300 + b"\r\n\r\n"
    with pytest.raises(ParseError):
        parse_message(long_line, limits=Limits(max_header_length=100))
    long_uri = b"OPTIONS sip:" + b"a" * 300 + b"@b SIP/2.0\r\n\r\n"
    with pytest.raises(ParseError) as info:
        parse_message(long_uri, limits=Limits(max_uri_length=100))
    assert info.value.status_hint == 414


def test_strict_mode_raises_on_what_lenient_mode_tolerates() -> None:
    data = b"OPTIONS  sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\r\n\r\n"
    msg = parse_message(data)
    assert [d.reason for d in msg.defects] == ["extra whitespace in the request line"]
    with pytest.raises(ParseError):
        parse_message(data, strict=True)


def test_bare_lf_messages_parse_leniently_and_round_trip() -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bKa\nl: 2\n\nhi"
    msg = parse_message(data)
    assert msg.via[0].host == "h" and msg.body == b"hi"
    assert bytes(msg) == data
    msg.add_header("X-New", "1")
    assert parse_message(bytes(msg)).get("x-new") == "1"
    with pytest.raises(ParseError):
        parse_message(data, strict=True)


def test_no_content_length_in_a_datagram_means_the_rest_is_body() -> None:
    msg = parse_message(b"MESSAGE sip:a@b SIP/2.0\r\n\r\nhello")
    assert msg.body == b"hello"


def test_octets_after_the_declared_length_are_not_part_of_the_message() -> None:
    data = b"OPTIONS sip:a@b SIP/2.0\r\nl: 2\r\n\r\nhijunk"
    msg = parse_message(data)
    assert msg.body == b"hi"
    assert bytes(msg) == data[:-4]


# -- streams --------------------------------------------------------------------


def test_stream_frames_messages_split_anywhere() -> None:
    stream = INVITE + b"\r\n\r\n" + INVITE
    for size in (1, 3, 64, len(stream)):
        parser = StreamParser()
        events: list[object] = []
        for i in range(0, len(stream), size):
            parser.receive_data(stream[i : i + size])
            while (event := parser.next_event()) is not NEED_DATA:
                events.append(event)
        assert len(events) == 3
        first, ping, second = events
        assert isinstance(first, Request) and bytes(first) == INVITE
        assert ping == KeepAlive(ping=True)
        assert isinstance(second, Request) and second.call_id == first.call_id
        assert parser.buffered == 0


def test_stream_without_content_length_is_an_error_and_stays_one() -> None:
    parser = StreamParser()
    parser.receive_data(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n")
    with pytest.raises(ParseError):
        parser.next_event()
    with pytest.raises(ParseError):
        parser.next_event()


def test_stream_single_crlf_is_a_pong_once_the_next_octet_shows_it() -> None:
    parser = StreamParser()
    parser.receive_data(b"\r\n")
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"OPTIONS sip:a@b SIP/2.0\r\nl: 0\r\n\r\n")
    assert parser.next_event() == KeepAlive(ping=False)
    assert isinstance(parser.next_event(), Request)
    assert parser.next_event() is NEED_DATA


def test_stream_refuses_an_endless_header_section() -> None:
    parser = StreamParser(limits=Limits(max_message_size=1000))
    parser.receive_data(b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X: y\r\n" * 300)
    with pytest.raises(ParseError) as info:
        parser.next_event()
    assert info.value.status_hint == 413


# -- URIs -----------------------------------------------------------------------


def test_uri_kinds() -> None:
    sip = parse_uri("sips:alice:secret@[2001:db8::1]:5061;transport=tcp;lr?subject=hi%20there")
    assert isinstance(sip, SipURI)
    assert (sip.scheme, sip.user, sip.password, sip.host, sip.address, sip.port) == (
        "sips",
        "alice",
        "secret",
        "[2001:db8::1]",
        "2001:db8::1",
        5061,
    )
    assert sip.transport == "tcp" and sip.lr and sip.headers == (("subject", "hi there"),)
    tel = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert isinstance(tel, TelURI) and tel.is_global
    assert tel.params["phone-context"] == "example.com"
    other = parse_uri("urn:service:sos")
    assert isinstance(other, AbsoluteURI) and (other.scheme, other.opaque) == ("urn", "service:sos")


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;newparam=5"),
        (
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
        ),
        (
            "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
        ),
        ("sip:[2001:db8::1]", "sip:[2001:DB8:0:0::1]"),
    ],
)
def test_rfc3261_19_1_4_equivalent_uris(a: str, b: str) -> None:
    ua, ub = parse_uri(a), parse_uri(b)
    assert ua == ub and hash(ua) == hash(ub)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
        ("sip:bob@biloxi.com:6000;transport=tcp", "sip:bob@biloxi.com"),
        ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
        ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        ("sip:a@b", "sips:a@b"),
        ("sip:a@b;maddr=1.2.3.4", "sip:a@b"),
        ("sip:a@b;user=phone", "sip:a@b"),
    ],
)
def test_rfc3261_19_1_4_different_uris(a: str, b: str) -> None:
    assert parse_uri(a) != parse_uri(b)


def test_built_uri_renders_with_escaping() -> None:
    uri = SipURI("example.com", user="a b@c", port=5060, params=sipcore.Params((("lr", None),)))
    assert str(uri) == "sip:a%20b%40c@example.com:5060;lr"
    assert parse_uri(str(uri)) == uri


@pytest.mark.parametrize(
    "text",
    ["sip:", "sip:@host", "sip:host:99999", "sip:2001:db8::1", "sip:a@[::1", "nocolon", "1x:abc"],
)
def test_bad_uris_are_parse_errors(text: str) -> None:
    with pytest.raises(ParseError):
        parse_uri(text)


@pytest.mark.parametrize("ttl", ["", "256", "1a", "0001"])
def test_a_bad_via_ttl_is_a_parse_error(ttl: str) -> None:
    # ";ttl=" with no value used to reach int("") and raise ValueError (found by
    # test_damaged_message_raises_only_parse_error).
    via = sipcore.Via("UDP", "192.0.2.1", 5060, sipcore.Params((("ttl", ttl),)))
    with pytest.raises(sipcore.ParseError):
        via.ttl  # noqa: B018


def test_raw_value_keeps_folding_and_trims_the_ends() -> None:
    raw = (
        b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"i:  abc\r\n\tdef \r\nCSeq: 1 OPTIONS\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(raw)
    assert msg.raw_value("Call-ID") == "abc\r\n\tdef"
    assert msg.call_id == "abc def"
    assert msg.raw_value("Subject") is None
