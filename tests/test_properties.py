"""Property tests for the message layer.

The strategies in ``strategies.py`` write valid messages and say what they
hold; these tests check that sipcore reads exactly that, serializes the
input back octet for octet, edits one line without touching the others,
never raises anything but ParseError on damaged or random input, and
spends time linear in the size of what it is given.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import re
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import sipcore
from sipcore import (
    NEED_DATA,
    Address,
    Defect,
    KeepAlive,
    Message,
    Params,
    ParseError,
    Request,
    Response,
    SipURI,
    StreamParser,
    TelURI,
    Via,
    _headers,
    _uri,
    canonical_name,
    parse_message,
    parse_uri,
)
from sipcore._message import ENCODING, ERRORS
from strategies import (
    AddressSpec,
    MessageSpec,
    SipUriSpec,
    TelUriSpec,
    UriSpec,
    ViaSpec,
    address_specs,
    extension_names,
    header_values,
    hosts,
    messages,
    mutated,
    render_sip_uri,
    requests,
    sip_uri_specs,
    sip_uri_texts,
    tel_uri_specs,
    tokens,
    via_specs,
)

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def _settings(n: int) -> settings:
    return settings(max_examples=n, deadline=None, suppress_health_check=_HEALTH)


# -- comparing what was parsed with what was generated ----------------------------


def assert_uri(parsed: object, spec: UriSpec) -> None:
    if isinstance(spec, SipUriSpec):
        assert isinstance(parsed, SipURI)
        assert parsed.scheme == spec.scheme
        assert parsed.user == spec.user
        assert parsed.password == spec.password
        assert parsed.host == spec.host
        assert parsed.port == spec.port
        assert tuple(parsed.params.items()) == spec.params
        assert parsed.headers == spec.headers
    else:
        assert isinstance(parsed, TelURI)
        assert parsed.number == spec.number
        assert tuple(parsed.params.items()) == spec.params


def assert_address(parsed: Address, spec: AddressSpec) -> None:
    assert parsed.display_name == spec.display
    assert_uri(parsed.uri, spec.uri)
    assert str(parsed.uri) == spec.text
    assert tuple(parsed.params.items()) == spec.params
    assert parsed.tag == spec.tag
    assert parsed.expires == spec.expires
    assert parsed.q == spec.q


def assert_addresses(parsed: Sequence[Address], specs: Sequence[AddressSpec]) -> None:
    assert len(parsed) == len(specs)
    for address, spec in zip(parsed, specs, strict=True):
        assert_address(address, spec)


def assert_vias(parsed: Sequence[Via], specs: Sequence[ViaSpec]) -> None:
    assert len(parsed) == len(specs)
    for via, spec in zip(parsed, specs, strict=True):
        assert via.protocol == "SIP/2.0"
        assert via.transport == spec.transport
        assert via.host == spec.host
        assert via.port == spec.port
        assert tuple(via.params.items()) == spec.params
        assert via.branch == spec.branch
        assert via.received == spec.received
        assert via.rport == spec.rport
        assert via.maddr == spec.maddr
        assert via.ttl == spec.ttl


def assert_message(msg: Message, spec: MessageSpec) -> None:
    """Every field sipcore exposes equals what the strategy generated."""
    if spec.is_request:
        assert isinstance(msg, Request)
        assert msg.method == spec.method
        assert spec.uri is not None
        assert_uri(msg.uri, spec.uri)
        assert str(msg.uri) == spec.uri_text
    else:
        assert isinstance(msg, Response)
        assert msg.status_code == spec.status_code
        assert msg.reason == spec.reason
    assert msg.start_line == spec.start_line
    assert msg.headers() == [(line.name, line.value) for line in spec.lines]
    assert msg.call_id == spec.call_id
    assert (msg.cseq.number, msg.cseq.method) == (spec.cseq_number, spec.cseq_method)
    assert_address(msg.from_, spec.from_)
    assert_address(msg.to, spec.to)
    assert_vias(msg.via, spec.vias)
    assert msg.contact_is_star == spec.contact_star
    assert_addresses(msg.contact, spec.contact)
    assert_addresses(msg.route, spec.route)
    assert_addresses(msg.record_route, spec.record_route)
    assert msg.max_forwards == spec.max_forwards
    assert msg.content_type == spec.content_type
    assert msg.content_length == len(spec.body)
    assert msg.body == spec.body
    for name in {name.lower() for name, _ in spec.extensions}:
        values = [value for n, value in spec.extensions if n.lower() == name]
        assert msg.get_all(name.upper()) == values
        assert msg.get(name) == values[0]
        assert msg.count(name) == len(values)
        assert name in msg


# -- reading everything, tolerating only ParseError ----------------------------


def _attempt(read: Callable[[], object]) -> None:
    with contextlib.suppress(ParseError):
        read()


def _read_address(address: Address) -> None:
    str(address)
    str(address.uri)
    hash(address.uri)
    _ = address.uri == address.uri
    address.tag  # noqa: B018
    _attempt(lambda: address.expires)
    _attempt(lambda: address.q)
    if isinstance(address.uri, SipURI):
        uri = address.uri
        uri.transport, uri.lr, uri.maddr, uri.user_param, uri.hostport, uri.address  # noqa: B018


def _read_addresses(read: Callable[[], Iterable[Address]]) -> None:
    def each() -> None:
        for address in read():
            _read_address(address)

    _attempt(each)


def _read_vias(msg: Message) -> None:
    for via in msg.via:
        str(via)
        via.branch, via.received, via.maddr, via.sent_by, via.address  # noqa: B018
        via.has_rfc3261_branch  # noqa: B018
        _attempt(lambda via=via: via.rport)  # type: ignore[misc]
        _attempt(lambda via=via: via.ttl)  # type: ignore[misc]


def read_everything(msg: Message) -> None:
    """Touch every accessor of ``msg``; only ParseError may come out."""
    bytes(msg)
    repr(msg)
    msg.start_line  # noqa: B018
    if isinstance(msg, Request):
        msg.method  # noqa: B018

        def uri() -> None:
            u = msg.uri
            str(u)
            hash(u)
            _ = u == u

        _attempt(uri)
    elif isinstance(msg, Response):
        msg.status_code, msg.reason  # noqa: B018
    headers = msg.headers()
    for name, _ in headers:
        _attempt(lambda name=name: msg.get(name))  # type: ignore[misc]
        _attempt(lambda name=name: msg.get_all(name))  # type: ignore[misc]
        msg.count(name)
        _ = name in msg
    list(msg)
    _attempt(lambda: msg.call_id)
    _attempt(lambda: str(msg.cseq))
    _attempt(lambda: _read_address(msg.from_))
    _attempt(lambda: _read_address(msg.to))
    _attempt(lambda: _read_vias(msg))
    _attempt(lambda: msg.contact_is_star)
    _read_addresses(lambda: msg.contact)
    _read_addresses(lambda: msg.route)
    _read_addresses(lambda: msg.record_route)
    _attempt(lambda: msg.max_forwards)
    _attempt(lambda: msg.expires)
    _attempt(lambda: msg.content_type)
    _attempt(lambda: [c.username for c in msg.authorization])
    _attempt(lambda: [c.realm for c in msg.proxy_authorization])
    msg.content_length, msg.body, msg.defects  # noqa: B018
    _attempt(msg.validate)
    msg.defects  # noqa: B018


def parse_and_read(data: bytes) -> Message | None:
    """Parse leniently and strictly and read everything; None if rejected."""
    with contextlib.suppress(ParseError):
        parse_message(data, strict=True)
    try:
        msg = parse_message(data)
    except ParseError as exc:
        assert isinstance(exc.status_hint, int)
        return None
    read_everything(msg)
    return msg


# -- 1. generate, parse, compare ----------------------------------------------


@_settings(160)
@given(spec=messages())
def test_generated_message_parses_to_the_generated_fields(spec: MessageSpec) -> None:
    msg = parse_message(spec.data)
    assert bytes(msg) == spec.data
    assert_message(msg, spec)
    assert msg.validate() == ()
    assert bytes(msg) == spec.data  # reading and validating did not change it


@_settings(60)
@given(spec=messages())
def test_generated_message_passes_strict_parsing(spec: MessageSpec) -> None:
    msg = parse_message(spec.data, strict=True)
    assert bytes(msg) == spec.data
    assert msg.defects == ()


# -- 2. edits change one line and nothing else ---------------------------------


def _logical_lines(data: bytes) -> list[str]:
    """The start line and header lines (folds kept inside their line)."""
    head = data[: data.index(b"\r\n\r\n")].decode("utf-8", "surrogateescape")
    return re.split(r"\r\n(?![ \t])", head)


@dataclasses.dataclass(frozen=True)
class Edit:
    """One edit to apply to a parsed message, with what it should leave behind."""

    kind: str
    name: str = ""
    value: str = ""
    first: bool = False
    body: bytes = b""
    number: int = 0
    via: ViaSpec | None = None
    address: AddressSpec | None = None
    uri: SipUriSpec | None = None
    uri_as_object: bool = False


@st.composite
def _edits(draw: st.DrawFn) -> tuple[MessageSpec, Edit]:
    spec = draw(messages())
    ext_names = [name for name, _ in spec.extensions]
    any_ext = extension_names()
    if ext_names:
        # An existing name in any case, or a new one.
        any_ext = (
            any_ext | st.sampled_from(ext_names).map(str.swapcase) | st.sampled_from(ext_names)
        )
    kinds = ["add", "remove", "replace", "set_body", "remove_first_via", "max_forwards"]
    if spec.is_request:
        kinds.append("uri")
    kind = draw(st.sampled_from(kinds))
    if kind == "add":
        first = draw(st.booleans())
        target = draw(st.sampled_from(["extension", "Via", "Route", "Record-Route"]))
        if target == "Via":
            v, via = draw(via_specs(fold=False))
            return spec, Edit(kind, "Via", v.unfolded, first, via=via)
        if target != "extension":
            v, address = draw(address_specs(fold=False, name_addr=True))
            return spec, Edit(kind, target, v.unfolded, first, address=address)
        _, text = draw(header_values(fold=False))
        return spec, Edit(kind, draw(any_ext), text, first)
    if kind == "remove":
        present = [line.name for line in spec.lines if line.key != "content-length"]
        return spec, Edit(kind, draw(st.sampled_from(present) | any_ext))
    if kind == "replace":
        target = draw(st.sampled_from(["extension", "Call-ID", "i", "To", "Via"]))
        if target == "To":
            v, address = draw(address_specs(fold=False))
            return spec, Edit(kind, "To", v.unfolded, address=address)
        if target == "Via":
            v, via = draw(via_specs(fold=False))
            return spec, Edit(kind, "Via", v.unfolded, via=via)
        if target == "extension":
            _, text = draw(header_values(fold=False))
            return spec, Edit(kind, draw(any_ext), text)
        return spec, Edit(kind, target, draw(tokens(1, 20)))
    if kind == "set_body":
        return spec, Edit(kind, body=draw(st.binary(max_size=100)))
    if kind == "max_forwards":
        return spec, Edit(kind, number=draw(st.integers(0, 255)))
    if kind == "uri":
        text, uri = draw(sip_uri_texts(allow_headers=False))
        return spec, Edit(kind, value=text, uri=uri, uri_as_object=draw(st.booleans()))
    return spec, Edit(kind)


def _positions(spec: MessageSpec, name: str) -> list[int]:
    key = canonical_name(name)
    return [i for i, line in enumerate(spec.lines) if line.key == key]


def _apply(spec: MessageSpec, edit: Edit, msg: Message) -> tuple[str, list[str], bytes]:
    """Apply ``edit`` to ``msg``; return the start line, header lines and body
    the serialization must have (worked out from the generated text)."""
    lines = [line.wire for line in spec.lines]
    at = _positions(spec, edit.name) if edit.name else []
    if edit.kind == "add":
        pos = (at[0] if edit.first else at[-1] + 1) if at else (0 if edit.first else len(lines))
        lines.insert(pos, f"{edit.name}: {edit.value}")
        msg.add_header(edit.name, edit.value, first=edit.first)
    elif edit.kind == "remove":
        for i in reversed(at):
            del lines[i]
        assert msg.remove_header(edit.name) == len(at)
    elif edit.kind == "replace":
        if at:
            lines[at[0]] = f"{edit.name}: {edit.value}"
            for i in reversed(at[1:]):
                del lines[i]
        else:
            lines.append(f"{edit.name}: {edit.value}")
        msg.replace_header(edit.name, edit.value)
    elif edit.kind == "set_body":
        (cl,) = _positions(spec, "Content-Length")
        lines[cl] = f"{spec.lines[cl].name}: {len(edit.body)}"
        msg.set_body(edit.body)
        return spec.start_line, lines, edit.body
    elif edit.kind == "remove_first_via":
        top = _positions(spec, "Via")[0]
        removed = msg.remove_first("Via")
        assert removed is not None
        alone = parse_message(f"OPTIONS sip:x SIP/2.0\r\nVia: {removed}\r\n\r\n".encode())
        assert_vias(alone.via, spec.vias[:1])
        after = _logical_lines(bytes(msg))[1:]
        if len(after) == len(lines):  # the top line held more values: it keeps them
            assert after[top].startswith(spec.lines[top].name + ": ")
            lines[top] = after[top]
        else:
            del lines[top]
    elif edit.kind == "max_forwards":
        mf = _positions(spec, "Max-Forwards")
        if mf:
            lines[mf[0]] = f"Max-Forwards: {edit.number}"
        else:
            lines.append(f"Max-Forwards: {edit.number}")
        msg.max_forwards = edit.number
    else:
        assert edit.kind == "uri" and isinstance(msg, Request)
        msg.uri = parse_uri(edit.value) if edit.uri_as_object else edit.value
        return f"{spec.method} {edit.value} SIP/2.0", lines, spec.body
    return spec.start_line, lines, spec.body


def _assert_edit_visible(spec: MessageSpec, edit: Edit, msg: Message) -> None:
    key = canonical_name(edit.name) if edit.name else ""
    vias: Sequence[ViaSpec] = spec.vias
    if edit.kind == "add" and edit.via is not None:
        vias = [edit.via, *vias] if edit.first else [*vias, edit.via]
    elif edit.kind == "add" and edit.address is not None:
        old = spec.route if key == "route" else spec.record_route
        want = [edit.address, *old] if edit.first else [*old, edit.address]
        assert_addresses(msg.route if key == "route" else msg.record_route, want)
    elif edit.kind == "add":
        old_values = [v for n, v in spec.extensions if n.lower() == edit.name.lower()]
        want_values = [edit.value, *old_values] if edit.first else [*old_values, edit.value]
        assert msg.get_all(edit.name) == want_values
    elif edit.kind == "remove":
        assert edit.name not in msg
        assert msg.count(edit.name) == 0
        assert msg.get(edit.name) is None
        if key == "via":
            vias = []
    elif edit.kind == "replace":
        if edit.via is not None:
            vias = [edit.via]
        elif edit.address is not None:
            assert_address(msg.to, edit.address)
        elif key == "call-id":
            assert msg.call_id == edit.value
        else:
            assert msg.get_all(edit.name) == [edit.value]
    elif edit.kind == "remove_first_via":
        vias = spec.vias[1:]
    elif edit.kind == "max_forwards":
        assert msg.max_forwards == edit.number
    elif edit.kind == "uri":
        assert isinstance(msg, Request) and edit.uri is not None
        assert_uri(msg.uri, edit.uri)
    assert_vias(msg.via, vias)


@_settings(160)
@given(case=_edits())
def test_one_edit_changes_only_its_own_lines(case: tuple[MessageSpec, Edit]) -> None:
    spec, edit = case
    msg = parse_message(spec.data)
    start_line, lines, body = _apply(spec, edit, msg)
    out = bytes(msg)
    # Byte for byte: the lines the edit did not touch are as they arrived.
    assert _logical_lines(out) == [start_line, *lines]
    assert out.endswith(b"\r\n\r\n" + body)
    again = parse_message(out)
    assert bytes(again) == out
    assert again.body == body
    assert int(again.get("Content-Length") or "-1") == len(body)
    _assert_edit_visible(spec, edit, msg)
    _assert_edit_visible(spec, edit, again)


# -- 3. damaged messages: only ParseError ---------------------------------------


@_settings(200)
@given(data=st.data())
def test_damaged_message_raises_only_parse_error(data: st.DataObject) -> None:
    spec = data.draw(messages(), label="spec")
    damaged = data.draw(mutated(spec.data), label="damaged")
    msg = parse_and_read(damaged)
    if msg is None:
        return
    # Edits on whatever parsed: ParseError is the only acceptable failure.
    _attempt(lambda: msg.remove_first("Via"))
    msg.max_forwards = 69
    msg.add_header("X-Probe", "1", first=True)
    msg.set_body(b"probe")
    out = bytes(msg)
    again = parse_and_read(out)
    if again is not None:
        assert again.body == b"probe"


_KEEPALIVES = st.sampled_from([b"", b"", b"\r\n", b"\r\n\r\n"])


def _chunks(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _drain(parser: StreamParser, budget: int) -> list[Message | KeepAlive]:
    """Every event the parser has ready; fails if it will not stop."""
    out: list[Message | KeepAlive] = []
    for _ in range(budget):
        event = parser.next_event()
        if event is NEED_DATA:
            return out
        assert isinstance(event, Message | KeepAlive)
        out.append(event)
    raise AssertionError(f"next_event() still busy after {budget} calls")


@_settings(60)
@given(
    specs=st.lists(messages(), min_size=1, max_size=3),
    gaps=st.lists(_KEEPALIVES, min_size=3, max_size=3),
    cuts=st.lists(st.integers(0, 3000), max_size=8),
)
def test_stream_parser_frames_valid_messages_in_any_chunking(
    specs: list[MessageSpec], gaps: list[bytes], cuts: list[int]
) -> None:
    stream = b"".join(gap + spec.data for spec, gap in zip(specs, gaps, strict=False))
    parser = StreamParser()
    events: list[Message | KeepAlive] = []
    for chunk in _chunks(stream, cuts):
        parser.receive_data(chunk)
        events += _drain(parser, len(stream) + 2)
    got = [e for e in events if isinstance(e, Message)]
    assert [bytes(m) for m in got] == [spec.data for spec in specs]
    for msg, spec in zip(got, specs, strict=True):
        assert_message(msg, spec)
    keepalive_octets = sum(4 if e.ping else 2 for e in events if isinstance(e, KeepAlive))
    assert keepalive_octets == sum(len(gap) for gap in gaps[: len(specs)])
    assert parser.buffered == 0


@_settings(120)
@given(data=st.data())
def test_stream_parser_on_damaged_bytes_raises_only_parse_error(data: st.DataObject) -> None:
    specs = data.draw(st.lists(messages(), min_size=1, max_size=2), label="specs")
    stream = data.draw(mutated(b"\r\n".join(spec.data for spec in specs)), label="damaged")
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=6), label="cuts")
    _feed_stream(stream, cuts)


def _feed_stream(stream: bytes, cuts: Sequence[int]) -> None:
    parser = StreamParser()
    for chunk in _chunks(stream, cuts):
        parser.receive_data(chunk)
        try:
            events = _drain(parser, len(stream) + 2)
        except ParseError as exc:
            # Broken for good: the same error again, whatever comes next.
            parser.receive_data(b"\r\n\r\n")
            with pytest.raises(ParseError) as again:
                parser.next_event()
            assert again.value is exc
            return
        for event in events:
            if isinstance(event, Message):
                read_everything(event)


# -- 4. arbitrary input ---------------------------------------------------------


@_settings(300)
@given(data=st.binary(max_size=2000))
@example(data=b"")
@example(data=b"\r\n")
@example(data=b"SIP/2.0 200\r\n\r\n")
@example(data=b"INVITE sip:a SIP/2.0\r\nVia: SIP/2.0 a/b\r\n\r\n")
def test_arbitrary_bytes_raise_only_parse_error(data: bytes) -> None:
    parse_and_read(data)
    _feed_stream(data, [len(data) // 2])


_SIP_SOUP = st.text(
    st.sampled_from(' \t:;,="<>@[]/\\?&%*.-+0123456789abcxyzSIPUDTsip')
    | st.characters(codec="utf-8"),
    max_size=40,
)


@_settings(150)
@given(spec=requests(), soup=_SIP_SOUP, which=st.integers(0, 99))
@example(
    spec=None,
    soup="SIP/2.0 a/b",
    which=-1,
)
def test_structured_header_of_sip_punctuation_raises_only_parse_error(
    spec: MessageSpec | None, soup: str, which: int
) -> None:
    if spec is None:  # the explicit example: a Via whose slashes are in the wrong place
        data = f"OPTIONS sip:a SIP/2.0\r\nVia: {soup}\r\n\r\n".encode()
    else:
        lines = [spec.start_line, *(line.wire for line in spec.lines)]
        i = which % len(lines)
        if i == 0:
            lines[0] = f"{spec.method} {soup} SIP/2.0"
        else:
            lines[i] = spec.lines[i - 1].name + ": " + soup
        data = "\r\n".join(lines).encode("utf-8", "surrogateescape") + b"\r\n\r\n" + spec.body
    parse_and_read(data)


@_settings(300)
@given(text=st.text(max_size=200) | st.text(max_size=200).map(lambda t: "sip:" + t))
@example(text="sip:[")
@example(text="sip:a@[::1")
@example(text="tel:")
def test_parse_uri_on_arbitrary_text_raises_only_parse_error(text: str) -> None:
    try:
        uri = parse_uri(text)
    except ParseError:
        return
    assert str(uri) == text or not isinstance(uri, SipURI | TelURI)
    hash(uri)
    assert uri == uri
    if isinstance(uri, SipURI):
        uri.transport, uri.lr, uri.maddr, uri.user_param, uri.hostport, uri.address  # noqa: B018


# -- 5. linear time and the size limit --------------------------------------------


def _request(extra: str, via: str = "SIP/2.0/UDP h;branch=z9hG4bK1", uri: str = "sip:a@b") -> bytes:
    return (
        f"INVITE {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:a@b>;tag=1\r\n"
        f"To: <sip:b@c>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: 0\r\n\r\n"
    ).encode()


def _lines(name: str, unit: str, n: int, per_line: int, head: str = "", tail: str = "") -> str:
    """``n`` copies of ``unit`` spread over ``name`` header lines of at most
    ``per_line`` copies each, so no line passes the 8 KiB line limit."""
    out = []
    while n > 0:
        k = min(n, per_line)
        out.append(f"{name}: {head}{unit * k}{tail}\r\n")
        n -= k
    return "".join(out)


# shape -> (n, make): make(n) and make(8 * n) both fit the 64 KiB message
# limit, and make(8 * n) is close to it.
SHAPES: dict[str, tuple[int, Callable[[int], bytes]]] = {
    "long header values": (7000, lambda n: _request(_lines("X-Long", "a", n, 8000))),
    "many folds in one value": (
        # 8n folds make one line far over 8 KiB: rejected, after the folds are joined.
        1700,
        lambda n: _request("X-Fold: a" + "\r\n b" * n + "\r\n"),
    ),
    "folded lines": (1700, lambda n: _request(_lines("X-Fold", "\r\n b", n, 2000, "a"))),
    "headers over the count limit": (1250, lambda n: _request(_lines("X", "", n, 1, "y"))),
    "Via params": (
        3500,
        lambda n: _request(_lines("Via", ";p", n, 4000, "SIP/2.0/UDP h;branch=z9hG4bK2")),
    ),
    "comma-separated Vias": (
        500,
        lambda n: _request(_lines("Via", ",SIP/2.0/UDP h", n, 580, "SIP/2.0/UDP h")),
    ),
    "escaped quotes in display names": (
        3500,
        lambda n: _request(_lines("Contact", '\\"', n, 4000, '"', '" <sip:c@d>')),
    ),
    "escaped backslashes in display names": (
        3500,
        lambda n: _request(_lines("Contact", "\\\\", n, 4000, '"', '" <sip:c@d>')),
    ),
    "repeated quotes": (7000, lambda n: _request(_lines("Contact", '"', n, 8000))),
    "repeated <": (7000, lambda n: _request(_lines("Contact", "<", n, 8000))),
    "repeated ,": (7000, lambda n: _request(_lines("Contact", ",", n, 8000))),
    "repeated <sip:a@b>,": (
        700,
        lambda n: _request(_lines("Route", "<sip:a@b>,", n, 800, "", "<sip:a@b>")),
    ),
    "Contact params": (3500, lambda n: _request(_lines("Contact", ";p", n, 4000, "<sip:a@b>"))),
    "URI params": (
        3500,
        lambda n: _request(_lines("Contact", ";p", n, 4000, "<sip:a@b", ">")),
    ),
    "huge user parts": (
        2300,
        lambda n: _request(_lines("Contact", "%62", n, 2600, "<sip:", "@b>")),
    ),
    "huge Request-URI user part": (150, lambda n: _request("", uri="sip:" + "%41" * n + "@b")),
}


def _parse_validate(data: bytes) -> None:
    try:
        msg = parse_message(data)
        msg.validate()
        read_everything(msg)
    except ParseError:
        pass


def _cost(run: Callable[[], None], repeat: int = 5) -> float:
    """The least time ``run`` took over a few tries (the least is the least noisy)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _growth(make: Callable[[int], bytes], n: int, run: Callable[[bytes], None]) -> float:
    small, large = make(n), make(8 * n)
    assert len(large) <= sipcore.Limits().max_message_size
    # Enough rounds that the small input takes measurable time.
    rounds = max(1, int(2e-3 / max(_cost(lambda: run(small), 1), 1e-6)))

    def run_small() -> None:
        for _ in range(rounds):
            run(small)

    t_small = _cost(run_small) / rounds
    t_large = _cost(lambda: run(large), 3)
    return t_large / max(t_small, 1e-9)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_parse_and_validate_time_grows_linearly(shape: str) -> None:
    n, make = SHAPES[shape]
    ratio = _growth(make, n, _parse_validate)
    assert ratio < 30, f"8x the input took {ratio:.1f}x the time"


def test_header_count_limit_rejects_ten_thousand_headers() -> None:
    data = _request(_lines("X", "", 10_000, 1, "y"))
    assert len(data) <= 65536
    start = time.perf_counter()
    with pytest.raises(ParseError) as err:
        parse_message(data)
    assert time.perf_counter() - start < 0.5
    assert err.value.status_hint == 400


@pytest.mark.parametrize("size", [65537, 1 << 20, 16 << 20])
def test_oversized_datagram_is_rejected_with_413_at_once(size: int) -> None:
    data = _request("X: " + "a" * size + "\r\n")
    start = time.perf_counter()
    with pytest.raises(ParseError) as err:
        parse_message(data)
    assert time.perf_counter() - start < 0.05
    assert err.value.status_hint == 413


def test_stream_without_end_of_headers_is_rejected_with_413() -> None:
    parser = StreamParser()
    chunk = b"INVITE sip:a@b SIP/2.0\r\n" + b"X: " + b"a" * 8000 + b"\r\n"
    start = time.perf_counter()
    with pytest.raises(ParseError) as err:
        for _ in range(100):
            parser.receive_data(chunk)
            assert parser.next_event() is NEED_DATA
    assert time.perf_counter() - start < 0.5
    assert err.value.status_hint == 413


def test_stream_with_huge_content_length_is_rejected_with_413_before_the_body() -> None:
    parser = StreamParser()
    parser.receive_data(_request("").replace(b"Content-Length: 0", b"Content-Length: 1000000000"))
    with pytest.raises(ParseError) as err:
        parser.next_event()
    assert err.value.status_hint == 413


def _feed_in_chunks(size: int) -> Callable[[bytes], None]:
    def run(data: bytes) -> None:
        parser = StreamParser()
        for i in range(0, len(data), size):
            parser.receive_data(data[i : i + size])
            while parser.next_event() is not NEED_DATA:
                pass

    return run


def test_stream_framing_time_grows_linearly_with_small_chunks() -> None:
    def make(n: int) -> bytes:
        return _request(_lines("X-Long", "a", n, 8000))

    ratio = _growth(make, 7000, _feed_in_chunks(16))
    assert ratio < 30, f"8x the input took {ratio:.1f}x the time"


def test_folding_does_not_make_a_header_section_costlier_per_octet() -> None:
    folded = _request("X-Fold: a" + "\r\n b" * 15_000 + "\r\n")
    plain = _request("X-Fold: a" + "   b" * 15_000 + "\r\n")
    assert len(folded) == len(plain)  # both rejected: one line over 8 KiB

    def run(data: bytes) -> Callable[[], None]:
        return lambda: _parse_validate(data)

    ratio = _cost(run(folded), 3) / _cost(run(plain), 3)
    assert ratio < 10, f"folded input took {ratio:.1f}x the time of unfolded input of its size"


# -- 6. URIs ----------------------------------------------------------------------


@_settings(300)
@given(case=sip_uri_texts())
@example(
    case=(
        "sip:%61l%69ce@EXAMPLE.com:05060;TRANSPORT=tcp",
        SipUriSpec("sip", "alice", None, "EXAMPLE.com", 5060, (("TRANSPORT", "tcp"),), ()),
    )
)
def test_sip_uri_text_parses_to_its_components(case: tuple[str, SipUriSpec]) -> None:
    text, spec = case
    uri = parse_uri(text)
    assert_uri(uri, spec)
    assert str(uri) == text


@_settings(100)
@given(case=tel_uri_specs())
def test_tel_uri_text_parses_to_its_components(case: tuple[str, TelUriSpec]) -> None:
    text, spec = case
    uri = parse_uri(text)
    assert_uri(uri, spec)
    assert str(uri) == text


def _build(spec: SipUriSpec) -> SipURI:
    return SipURI(
        host=spec.host,
        user=spec.user,
        password=spec.password,
        port=spec.port,
        params=Params(spec.params),
        headers=spec.headers,
        scheme=spec.scheme,
    )


@_settings(300)
@given(spec=sip_uri_specs())
def test_built_sip_uri_renders_text_that_parses_back_equal(spec: SipUriSpec) -> None:
    built = _build(spec)
    text = str(built)
    parsed = parse_uri(text)
    assert_uri(parsed, spec)
    assert parsed == built
    assert hash(parsed) == hash(built)
    assert str(parsed) == text


def _recase(draw: Callable[[st.SearchStrategy[int]], int], text: str) -> str:
    flips = draw(st.integers(0, (1 << len(text)) - 1)) if text else 0
    return "".join(
        c.swapcase() if flips >> i & 1 and c.isascii() else c for i, c in enumerate(text)
    )


@st.composite
def _same_uri_written_twice(draw: st.DrawFn) -> tuple[str, str]:
    """Two texts RFC 3261 section 19.1.4 calls equal: independent escaping,
    scheme/host/parameter case, parameter order and header order."""
    spec = draw(sip_uri_specs())
    other = SipUriSpec(
        spec.scheme,
        spec.user,
        spec.password,
        _recase(draw, spec.host),
        spec.port,
        tuple(
            (_recase(draw, k), None if v is None else _recase(draw, v))
            for k, v in draw(st.permutations(spec.params))
        ),
        tuple(draw(st.permutations(spec.headers))),
    )
    return render_sip_uri(draw, spec), render_sip_uri(draw, other)


def _assert_equal(a_text: str, b_text: str) -> None:
    a, b = parse_uri(a_text), parse_uri(b_text)
    assert a == b
    assert b == a
    assert hash(a) == hash(b)


def _assert_unequal(a_text: str, b_text: str) -> None:
    a, b = parse_uri(a_text), parse_uri(b_text)
    assert a != b
    assert b != a


@_settings(300)
@given(pair=_same_uri_written_twice())
@example(pair=("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"))
@example(pair=("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"))
@example(
    pair=(
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    )
)
@example(
    pair=(
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    )
)
@example(pair=("sip:a@[2001:DB8::1]", "sip:a@[2001:db8:0:0:0:0:0:1]"))
def test_differently_written_equal_uris_compare_and_hash_equal(pair: tuple[str, str]) -> None:
    _assert_equal(*pair)


@_settings(200)
@given(spec=sip_uri_specs(), data=st.data())
def test_uri_without_a_port_differs_from_one_with_a_port(
    spec: SipUriSpec, data: st.DataObject
) -> None:
    assume(spec.port is None)
    port = data.draw(st.integers(0, 65535))
    with_port = dataclasses.replace(spec, port=port)
    _assert_unequal(str(_build(spec)), str(_build(with_port)))
    _assert_unequal("sip:carol@chicago.com", "sip:carol@chicago.com:5060")


@_settings(200)
@given(
    spec=sip_uri_specs(),
    name=st.sampled_from(["user", "ttl", "method", "maddr", "transport"]),
    value=tokens(1, 8),
    case=st.booleans(),
)
def test_special_uri_param_on_one_side_only_makes_uris_unequal(
    spec: SipUriSpec, name: str, value: str, case: bool
) -> None:
    assume(name not in {k.lower() for k, _ in spec.params})
    written = name.upper() if case else name
    one_side = Params(spec.params).with_param(written, value)
    other = _build(spec)
    with_param = SipURI(
        other.host, other.user, other.password, other.port, one_side, other.headers, other.scheme
    )
    _assert_unequal(str(other), str(with_param))


@_settings(200)
@given(spec=sip_uri_specs(), name=tokens(1, 8), value=st.none() | tokens(1, 8))
def test_other_uri_param_on_one_side_only_leaves_uris_equal(
    spec: SipUriSpec, name: str, value: str | None
) -> None:
    assume(name.lower() not in {"user", "ttl", "method", "maddr", "transport"})
    assume(name.lower() not in {k.lower() for k, _ in spec.params})
    built = _build(spec)
    with_param = SipURI(
        built.host,
        built.user,
        built.password,
        built.port,
        built.params.with_param(name, value),
        built.headers,
        built.scheme,
    )
    _assert_equal(str(built), str(with_param))


@_settings(200)
@given(spec=sip_uri_specs(), name=tokens(1, 8), value=tokens(0, 8))
def test_uri_header_on_one_side_only_makes_uris_unequal(
    spec: SipUriSpec, name: str, value: str
) -> None:
    assume(name.lower() not in {k.lower() for k, _ in spec.headers})
    built = _build(spec)
    with_header = SipURI(
        built.host,
        built.user,
        built.password,
        built.port,
        built.params,
        (*built.headers, (name, value)),
        built.scheme,
    )
    _assert_unequal(str(built), str(with_header))


@_settings(200)
@given(spec=sip_uri_specs(), data=st.data())
def test_uri_user_part_compares_case_sensitively(spec: SipUriSpec, data: st.DataObject) -> None:
    assume(spec.user is not None and any(c.isascii() and c.isalpha() for c in spec.user))
    assert spec.user is not None
    other = _recase(data.draw, spec.user)
    assume(other != spec.user)
    built = _build(spec)
    recased = SipURI(built.host, other, built.password, built.port, built.params,
                     built.headers, built.scheme)  # fmt: skip
    _assert_unequal(str(built), str(recased))


@_settings(300)
@given(a=sip_uri_texts(), b=sip_uri_texts(), swap=st.booleans())
def test_uri_hash_is_consistent_with_equality(
    a: tuple[str, SipUriSpec], b: tuple[str, SipUriSpec], swap: bool
) -> None:
    x, y = parse_uri(a[0]), parse_uri(b[0])
    if swap:
        x, y = y, x
    assert (x == y) == (y == x)
    if x == y:
        assert hash(x) == hash(y)
    # Same components, differently written: equal, so equal hashes.
    z = parse_uri(str(_build(a[1])))
    assert z == parse_uri(a[0])
    assert hash(z) == hash(parse_uri(a[0]))


# -- 7. fast paths give what the careful parsers give ----------------------------
#
# The parsers try one linear pattern for the shape nearly every value takes
# and leave everything else to the careful code below it. Whatever the
# pattern accepts, the careful code must read the same way.


def _outcome(parse: Callable[[], object], fields: Callable[[Any], object]) -> object:
    try:
        return ("ok", fields(parse()))
    except ParseError as exc:
        return ("error", exc.reason)


def _params_fields(params: Params) -> object:
    return (repr(params), params.items_, params.render())


def _via_fields(via: Via) -> object:
    return (via.transport, via.host, via.port, _params_fields(via.params), via.protocol)


def _uri_fields(uri: object) -> object:
    return (type(uri).__name__, repr(uri), str(uri))


def _address_fields(address: Address) -> object:
    uri = address.uri
    return (_uri_fields(uri), address.display_name, _params_fields(address.params))


def _maybe_damaged(data: st.DataObject, text: str) -> str:
    if not data.draw(st.booleans(), label="damage"):
        return text
    damaged = data.draw(mutated(text.encode(ENCODING, ERRORS)), label="damaged")
    return damaged.decode(ENCODING, ERRORS)


@_settings(300)
@given(data=st.data())
def test_fast_via_parse_agrees_with_the_careful_parse(data: st.DataObject) -> None:
    v, spec = data.draw(via_specs(fold=False), label="via")
    text = v.unfolded
    if data.draw(st.booleans(), label="compact"):
        # As most Vias are written: no LWS around the slashes, one SP.
        port = "" if spec.port is None else f":{spec.port}"
        params = "".join(f";{k}" if x is None else f";{k}={x}" for k, x in spec.params)
        text = f"SIP/2.0/{spec.transport} {spec.host}{port}{params}"
    text = _maybe_damaged(data, text)
    fast = _outcome(lambda: _headers.parse_via(text), _via_fields)
    assert fast == _outcome(lambda: _headers._parse_via_careful(text), _via_fields)


@_settings(300)
@given(data=st.data(), strict=st.booleans())
def test_fast_address_parse_agrees_with_the_careful_parse(
    data: st.DataObject, strict: bool
) -> None:
    v, _ = data.draw(address_specs(fold=False), label="address")
    text = _maybe_damaged(data, v.unfolded)
    fast_defects: list[Defect] | None = None if strict else []
    careful_defects: list[Defect] | None = None if strict else []
    fast = _outcome(lambda: _headers.parse_address(text, fast_defects), _address_fields)
    careful = _outcome(
        lambda: _headers._parse_address_careful(text, careful_defects, None), _address_fields
    )
    assert (fast, fast_defects) == (careful, careful_defects)


@_settings(300)
@given(data=st.data())
def test_fast_uri_parse_agrees_with_the_careful_parse(data: st.DataObject) -> None:
    text, _ = data.draw(sip_uri_texts(), label="uri")
    text = _maybe_damaged(data, text)
    fast = _outcome(lambda: parse_uri(text), _uri_fields)
    assert fast == _outcome(lambda: _uri._parse_uri_careful(text), _uri_fields)


_PARAM_TEXT = st.lists(
    st.sampled_from(["a", "A", "b", "=", ";", "%", '"', " ", "\t", "\u00a0", "\u0130"])
    | st.sampled_from(["tag", "TAG", "branch", "lr"]),
    max_size=8,
).map("".join)
_PARAM_NAMES = st.sampled_from(
    ["", "a", "A", "b", "tag", "Tag", "branch", "lr", "a=b", ";", " a", "\u0130", "i\u0307"]
)


@_settings(500)
@given(text=_PARAM_TEXT, names=st.lists(_PARAM_NAMES, max_size=4), header=st.booleans())
def test_params_read_from_their_text_answer_as_split_params_do(
    text: str, names: list[str], header: bool
) -> None:
    parse: Callable[[str], Params] = _headers.parse_header_params if header else _uri.parse_params
    careful: Callable[[str], Params] = (
        _headers._parse_header_params_careful if header else _uri._parse_params_careful
    )
    try:
        split = careful(text)
    except ParseError:
        assert _uri.lazy_params(text) is None
        return
    params = parse(text)
    # Every lookup first, while a lazy Params still reads its text.
    for name in names:
        assert params.get(name, "?") == split.get(name, "?")
        assert (name in params) == (name in split)
        if name and name.islower() and ";" not in name and "=" not in name:
            assert _uri.get_param(params, name) == split.get(name)
    assert (len(params), bool(params), params.render()) == (len(split), bool(split), split.render())
    assert params == split and hash(params) == hash(split) and repr(params) == repr(split)
    assert list(params.items()) == list(split.items())


# -- known defects (minimal inputs) ----------------------------------------------


def test_extension_value_keeps_unicode_whitespace_at_its_edges() -> None:
    msg = parse_message(_request("X-A: a\u00a0\r\n"))
    assert msg.get("X-A") == "a\u00a0"


def test_hosts_strategy_writes_hosts_that_parse() -> None:
    # A guard on the strategies themselves: a host they write is a host.
    @_settings(50)
    @given(host=hosts())
    def check(host: str) -> None:
        uri = parse_uri(f"sip:{host}")
        assert isinstance(uri, SipURI)
        assert uri.host == host

    check()
