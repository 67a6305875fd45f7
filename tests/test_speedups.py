"""The compiled twins in sipcore._speedups give what their Python twins give.

Each function of the C module replaces a Python function on a hot path and
falls back on it for any shape it does not handle. These tests feed both
the same input, generated and mutated from realistic values, and require
the same result: equal values, the same field values and types, a lazy
parameter text where the Python code keeps one, or the same ParseError.
The whole test suite also runs against the Python twins alone
(``SIPCORE_PURE_PYTHON=1``, see .ci/run), so both are held to the same
behaviour, not only to each other.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import sipcore
from sipcore import _hashing, _headers, _message, _uri
from sipcore._accel import speedups

pytestmark = pytest.mark.skipif(
    speedups is None,
    reason="sipcore._speedups is not built here (no C compiler?) or SIPCORE_PURE_PYTHON is set",
)

MANY = settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Characters that matter to the grammars, a few that end them, and a few
# outside ASCII (which the C code always hands to the Python code).
GRAMMAR = (
    'SIP/2.0UDPTCPsipsbranchtagz9hG4bK:;=@?<>"\\%&,. \t\r\n\x00\x0b\x1c\x1f'
    "-_!~*+`'0123456789aAzZ[]é\u00a0\u3000"
)

VIAS = [
    "SIP/2.0/UDP proxy.atlanta.example.com:5060;branch=z9hG4bK2d4790.1",
    "SIP/2.0/TCP 192.0.2.1;received=192.0.2.9;rport=5060;branch=z9hG4bK77",
    "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKx",
    "SIP/2.0/TLS host;rport;branch=z9hG4bK.a",
    "SIP/2.0/UDP host:65536;branch=x",
    "SIP/2.0/UDP host:123456",
    "SIP / 2.0 / UDP host",
    'SIP/2.0/UDP host;branch="q"',
]
ADDRESSES = [
    '"Alice" <sip:alice@atlanta.example.com>;tag=9fxced76sl',
    "<sip:bob@biloxi.example.com>",
    "<sip:bob@biloxi.example.com> ;tag=a;x",
    '"" <sip:x@y>',
    '"A \\"q\\"" <sip:x@y>;tag=1',
    "Bob <sip:bob@192.0.2.4>",
    "sip:carol@chicago.example.com;tag=7",
    "<sip:a@b>;",
    "<sip:a@b> ",
    '"unterminated <sip:a@b>',
]
URIS = [
    "sip:alice@atlanta.example.com",
    "sips:bob@biloxi.example.com:5061;transport=tls;lr",
    "sip:192.0.2.10:5060;maddr=239.255.255.1;ttl=15",
    "sip:user:pass@host",
    "sip:%61lice@host",
    "sip:alice@host?subject=x",
    "sip:[2001:db8::1]:5060",
    "sip:host:99999",
    "SIP:alice@host",
    "tel:+1-201-555-0123",
    "sip:a@b;x=\x00",
]
CSEQS = ["314159 INVITE", "1 ACK", "0000000001 BYE", "4294967296 INVITE", "1  INVITE", "x INVITE"]
LINES = [
    "Via: SIP/2.0/UDP a;branch=b",
    "Subject:  hello \t",
    "Subject: folded\r\n  over\r\n\tlines",
    "no colon here",
    ":",
    "To:\t<sip:x@y> \r\n",
    "X: caf\u00e9 \u00a0",
]


def mutated(samples: list[str]) -> st.SearchStrategy[str]:
    """A sample with up to four characters inserted, deleted or replaced."""

    @st.composite
    def build(draw: st.DrawFn) -> str:
        text = list(draw(st.sampled_from(samples)))
        for _ in range(draw(st.integers(0, 4))):
            pos = draw(st.integers(0, len(text)))
            op = draw(st.sampled_from(["insert", "delete", "replace"]))
            ch = draw(st.sampled_from(GRAMMAR))
            if op == "insert" or not text:
                text.insert(pos, ch)
            elif op == "delete":
                del text[min(pos, len(text) - 1)]
            else:
                text[min(pos, len(text) - 1)] = ch
        return "".join(text)

    return build()


def texts(samples: list[str]) -> st.SearchStrategy[str]:
    return mutated(samples) | st.text(GRAMMAR, max_size=40) | st.sampled_from(samples)


def outcome(func: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    try:
        return "value", func(*args)
    except sipcore.ParseError as exc:
        return "error", (exc.reason, exc.status_hint)


def fields(value: Any) -> Any:
    """Every attribute a value holds, recursively, with its type: so that
    equal-but-differently-built values (a lazy Params against a split one,
    an int against a bool) count as different."""
    if attrs.has(type(value)):
        out: dict[str, Any] = {"type": type(value).__name__}
        for field in attrs.fields(type(value)):
            out[field.name] = fields(getattr(value, field.name))
        if isinstance(value, _uri.Params):
            out["_text"] = value._text
        return out
    if isinstance(value, tuple):
        return tuple(fields(v) for v in value)
    return (type(value).__name__, value)


def same(c_func: Callable[..., Any], py_func: Callable[..., Any], *args: Any) -> None:
    c_kind, c_value = outcome(c_func, *args)
    py_kind, py_value = outcome(py_func, *args)
    assert c_kind == py_kind, (args, c_value, py_value)
    # Field by field (value equality would parse an Address's URI, and a
    # bad one raises there).
    assert fields(c_value) == fields(py_value), args


def test_the_public_names_are_the_compiled_twins() -> None:
    assert speedups is not None
    assert _headers.parse_via is speedups.parse_via
    assert _headers.parse_address is speedups.parse_address
    assert _uri.parse_uri is speedups.parse_uri
    assert sipcore.parse_uri is speedups.parse_uri
    assert _message._line_value is speedups.line_value
    assert _hashing.core_hash is speedups.core_hash
    assert _message._list_values is speedups.list_values
    assert _message._parse_head_c is speedups.parse_head


@MANY
@given(texts(VIAS))
@example("SIP/2.0/UDP host:65535;branch=z9hG4bK1")
@example("SIP/2.0/UDP host:65536")
@example("SIP/2.0/UDP host;branch=a;")
@example("SIP/2.0/UDP host;;branch=a")
@example("SIP/2.0/UDP host;=a")
def test_via_parses_as_the_python_twin_parses(text: str) -> None:
    same(_headers.parse_via, _headers.parse_via_py, text)


@MANY
@given(texts(ADDRESSES), st.booleans())
@example('"\\" <sip:a@b>', False)
@example("<sip:a@b>\x1c;tag=1", False)
@example("<sip:a@b>;tag=1", True)
def test_address_parses_as_the_python_twin_parses(text: str, strict: bool) -> None:
    same(
        lambda t: _headers.parse_address(t, None if strict else [], "from"),
        lambda t: _headers.parse_address_py(t, None if strict else [], "from"),
        text,
    )


def test_address_reports_the_same_defects_as_the_python_twin() -> None:
    for text in ADDRESSES:
        c_defects: list[sipcore.Defect] = []
        py_defects: list[sipcore.Defect] = []
        outcome(_headers.parse_address, text, c_defects, "to")
        outcome(_headers.parse_address_py, text, py_defects, "to")
        assert c_defects == py_defects, text


@MANY
@given(texts(URIS))
@example("sip:@host")
@example("sip:a@b@c")
@example("sips:host:0")
@example("sip:host;x=%41")
@example("sip:host;maddr=a@b")
def test_uri_parses_as_the_python_twin_parses(text: str) -> None:
    same(_uri.parse_uri, _uri.parse_uri_py, text)


# Each character the plain shapes exclude, in each place it could go.
EDGE_CHARS = ';="%@?<>\x00 \t\x0b\x1c\\:,é'
EDGE_URIS = [
    t.format(c)
    for c in EDGE_CHARS
    for t in ["sip:h;a{0}b", "sip:h;a=b{0}c", "sip:u{0}v@h", "sip:h{0}", "sip:h:50{0}"]
]
EDGE_VIAS = [
    t.format(c)
    for c in EDGE_CHARS
    for t in ["SIP/2.0/U{0}DP h", "SIP/2.0/UDP h{0}", "SIP/2.0/UDP h;a{0}b", "SIP/2.0/UDP h;a=b{0}"]
]
EDGE_ADDRESSES = [
    t.format(c)
    for c in EDGE_CHARS
    for t in ['"a{0}b" <sip:h>', "<sip:h{0}>", "<sip:h>{0};a", "<sip:h>;a{0}b", "<sip:h>;a=b{0}"]
]


@pytest.mark.parametrize("text", EDGE_URIS)
def test_uri_edge_characters_parse_as_in_the_python_twin(text: str) -> None:
    same(_uri.parse_uri, _uri.parse_uri_py, text)


@pytest.mark.parametrize("text", EDGE_VIAS)
def test_via_edge_characters_parse_as_in_the_python_twin(text: str) -> None:
    same(_headers.parse_via, _headers.parse_via_py, text)


@pytest.mark.parametrize("text", EDGE_ADDRESSES)
def test_address_edge_characters_parse_as_in_the_python_twin(text: str) -> None:
    same(
        lambda t: _headers.parse_address(t, [], "to"),
        lambda t: _headers.parse_address_py(t, [], "to"),
        text,
    )


@MANY
@given(texts(CSEQS))
@example("999999999 INVITE")
@example("1000000000 INVITE")
@example("1 INVITE ")
def test_cseq_parses_as_the_python_twin_parses(text: str) -> None:
    same(_headers.parse_cseq, _headers.parse_cseq_py, text)


@MANY
@given(texts(LINES))
def test_a_line_value_is_what_the_python_twin_cuts(line: str) -> None:
    assert _message._line_value(line) == _message.line_value_py(line)


PARAM_TEXTS = ["branch=z9hG4bK1;received=a", "tag=x;tagx=y", "xtag=1;tag", "tag", "a=b;tag=", ""]


@MANY
@given(texts(PARAM_TEXTS), st.sampled_from(["tag", "branch", "ta", "", ";", "é", "a=b"]))
@example("tag=a", "")
@example("", "")
@example(";tag=1", "tag")
def test_find_param_finds_what_the_python_twin_finds(text: str, name: str) -> None:
    assert speedups is not None
    assert speedups.find_param(text, name) == _uri._find_param(text, name)


@MANY
@given(texts(PARAM_TEXTS), st.sampled_from(["tag", "branch", "lr", "rport"]))
def test_get_param_gets_what_the_python_twin_gets(text: str, name: str) -> None:
    lazy = _uri.lazy_params(text)
    for params in [lazy, _uri.EMPTY_PARAMS, _uri.Params((("TAG", "up"), ("branch", None)))]:
        if params is not None:
            assert _uri.get_param(params, name) == _uri.get_param_py(params, name)


MESSAGES = [
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n"
    b"To: <sip:bob@b>\r\nFrom: <sip:a@a>;tag=1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n"
    b"Max-Forwards: 70\r\nContent-Length: 4\r\n\r\nabcd",
    b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nt: <sip:b@b>;tag=2\r\n"
    b"f: <sip:a@a>;tag=1\r\ni: c\r\nCSeq: 1 INVITE\r\nl: 0\r\n\r\n",
    b"\r\n\r\nOPTIONS sip:x SIP/2.0\r\nX-Unknown-Name: 1\r\n\r\n",
]


def frames() -> st.SearchStrategy[bytes]:
    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(st.sampled_from(MESSAGES)))
        for _ in range(draw(st.integers(0, 4))):
            pos = draw(st.integers(0, len(data)))
            byte = draw(st.sampled_from(b"\r\n\r\n: \t\x00\x80\xffaZ"))
            if draw(st.booleans()) or not data:
                data.insert(pos, byte)
            else:
                del data[min(pos, len(data) - 1)]
        return bytes(data)

    return build() | st.binary(max_size=80)


@MANY
@given(
    frames(),
    st.integers(0, 4),
    st.sampled_from([8192, 40, 0]),
    st.sampled_from([256, 3, 0]),
)
def test_framing_frames_as_the_python_twin_frames(
    data: bytes, start: int, max_length: int, max_headers: int
) -> None:
    assert speedups is not None
    names = dict(_message._NAME_CACHE)
    names.update({"Via": "via", "To": "to", "From": "from", "Call-ID": "call-id"})
    c_framed = speedups.frame(data, start, max_length, max_headers, names)
    py_framed = _message._frame(data, start, max_length, max_headers, names)
    if c_framed is None:
        # The C code gives up only on octets above 0x7f, which the Python
        # code decodes itself.
        assert py_framed is None or not data[start:].isascii()
    else:
        assert c_framed == py_framed


@MANY
@given(frames())
def test_a_message_parses_to_the_same_fields_with_either_framing(data: bytes) -> None:
    # The whole of parse_message with the compiled fast path against the
    # same parse with the compiled header section switched off.
    def parse(compiled: bool) -> tuple[str, Any]:
        saved = _message._parse_head_c
        if not compiled:
            _message._parse_head_c = None
        try:
            return outcome(lambda d: _summary(sipcore.parse_message(d)), data)
        finally:
            _message._parse_head_c = saved

    assert parse(True) == parse(False)


@MANY
@given(frames(), st.integers(0, 2), st.sampled_from([4096, 5]), st.booleans())
@example(b"SIP/2.0 99 x\r\n\r\n", 0, 4096, False)
@example(b"SIP/2.0 200\r\n\r\n", 0, 4096, False)
@example(b"INVITE sip:x SIP/2.0 \r\n\r\n", 0, 4096, False)
@example(b"INVITE <sip:x> SIP/2.0\r\n\r\n", 0, 4096, False)
@example(b"FOO sip:x SIP/2.0\r\n\r\n", 0, 4096, False)
@example(b"ACK sip:x SIP/2.0\r\nContent-Length: 12\r\n\r\n", 0, 4096, True)
@example(b"ACK sip:x SIP/2.0\r\nl: 1234567890\r\n\r\n", 0, 4096, True)
@example(b"ACK sip:x SIP/2.0\r\nl: 1\r\nl: 1\r\n\r\n", 0, 4096, True)
def test_the_header_section_parses_as_in_the_python_twin(
    data: bytes, start: int, max_uri: int, strict: bool
) -> None:
    assert speedups is not None
    limits = _message.Limits(max_uri_length=max_uri)
    names = dict(_message._NAME_CACHE)
    names.update({"Content-Length": "content-length", "l": "content-length", "Via": "via"})
    saved = _message._NAME_CACHE.copy()
    _message._NAME_CACHE.clear()
    _message._NAME_CACHE.update(names)
    try:
        defects: list[sipcore.Defect] | None = None if strict else []
        c_head = speedups.parse_head(
            data, start, limits.max_header_length, limits.max_headers, max_uri, names, defects
        )
        py_head = _message._parse_head_fast(data, start, limits, defects)
    finally:
        _message._NAME_CACHE.clear()
        _message._NAME_CACHE.update(saved)
    if c_head is None:
        assert py_head is None or not data[start:].isascii()
        return
    assert py_head is not None
    c_msg, c_end, c_length = c_head
    py_msg, py_end, py_length = py_head
    assert type(c_msg) is type(py_msg)
    assert (c_end, c_length) == (py_end, py_length)
    assert c_msg._defects is py_msg._defects
    for slot in ("_lines", "_keys", "_eols", "_sep", "_cache", "version"):
        assert getattr(c_msg, slot) == getattr(py_msg, slot), slot
    if isinstance(c_msg, sipcore.Request):
        assert isinstance(py_msg, sipcore.Request)
        assert (c_msg.method, c_msg._uri_text) == (py_msg.method, py_msg._uri_text)
    else:
        assert isinstance(py_msg, sipcore.Response)
        assert (c_msg.status_code, c_msg.reason) == (py_msg.status_code, py_msg.reason)


LIST_MESSAGES = [
    b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=1\r\nRoute: <sip:p1;lr>\r\n"
    b"Via: SIP/2.0/UDP b, SIP/2.0/UDP c\r\nContact: *\r\nRoute: <sip:p2;lr>,<sip:p3>\r\n"
    b'Record-Route: <sip:r;lr>\r\nContact: "a,b" <sip:x>\r\n\r\n',
]


@MANY
@given(
    frames() | mutated([m.decode() for m in LIST_MESSAGES]).map(str.encode),
    st.sampled_from(["via", "contact", "route", "record-route", "absent"]),
)
def test_list_headers_split_as_in_the_python_twin(data: bytes, key: str) -> None:
    assert speedups is not None
    try:
        msg = sipcore.parse_message(data)
    except sipcore.ParseError:
        return

    def values(func: Callable[..., Any]) -> tuple[str, Any]:
        kind, got = outcome(func, msg, key, str.upper)
        if kind == "error":
            return kind, got
        return kind, (type(got), got._key, got._texts, got._from_lines, got._items, got._parse)

    assert values(speedups.list_values) == values(_message.list_values_py)


def _summary(msg: sipcore.Request | sipcore.Response) -> tuple[object, ...]:
    return (msg.start_line, msg.headers(), msg._keys, msg.body, bytes(msg), msg.defects)


@MANY
@given(
    st.binary(max_size=70),
    st.none() | st.binary(max_size=70),
    st.sampled_from([0, 1, 16, 4096]),
)
@example(b"abc", None, 0)
@example(b"\x80\xff\x7f", b"\xfe", 4096)
def test_core_hash_is_the_python_twins_hash(key1: bytes, key2: bytes | None, size: int) -> None:
    assert speedups is not None
    assert speedups.core_hash(key1, key2, size) == _hashing.core_hash_py(key1, key2, size)


def test_core_hash_keeps_kamailios_value_for_a_known_key() -> None:
    # The figure of the Python twin's doctest, computed from Kamailio's C.
    assert sipcore.core_hash(b"abc") == 7167810


def test_the_twins_run_alone_when_asked() -> None:
    # SIPCORE_PURE_PYTHON=1 leaves the compiled module unused, and the
    # message layer still answers.
    code = (
        "import sipcore, sipcore._accel as a, sipcore._headers as h;"
        "assert a.speedups is None; assert h.parse_via is h.parse_via_py;"
        f"m = sipcore.parse_message({MESSAGES[0]!r}); print(m.via[0].branch)"
    )
    env = dict(os.environ, SIPCORE_PURE_PYTHON="1")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "z9hG4bK1"


def test_an_unconfigured_function_says_so() -> None:
    # A C function called before its classes were given raises, it does
    # not crash: load the built file alone, as a top-level module, in an
    # interpreter that never imports sipcore.
    assert speedups is not None
    code = (
        "import importlib.util, sys;"
        f"spec = importlib.util.spec_from_file_location('_speedups', {speedups.__file__!r});"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m);"
        "assert 'sipcore' not in sys.modules"
        "\nfor f, a in [(m.parse_via, 'SIP/2.0/UDP a'), (m.line_value, 'a: b')]:"
        "\n    try:\n        f(a)\n    except RuntimeError as e:\n        print(e)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.count("not configured") == 2
