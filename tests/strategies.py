"""Hypothesis strategies that write valid SIP messages and say what they hold.

Every strategy here draws two things at once: the octets as a peer could
send them, and the values a correct parser must read back from those
octets. Tests parse the first and compare against the second, so a
strategy must never produce text whose meaning it does not know.

The text is deliberately untidy where RFC 3261 allows it: header names in
any case and in compact form, whitespace and line folding wherever LWS or
SWS is allowed, %-escapes anywhere in a URI user part, quoted display names
with escaped quotes and backslashes, leading zeros in numbers.

This module owns only generation; the comparisons live in the tests.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import string
from collections.abc import Sequence
from typing import TypeAlias

from hypothesis import strategies as st

__all__ = [
    "AddressSpec",
    "HeaderLine",
    "HeaderText",
    "MessageSpec",
    "SipUriSpec",
    "TelUriSpec",
    "UriSpec",
    "ViaSpec",
    "address_specs",
    "extension_names",
    "header_values",
    "hosts",
    "messages",
    "method_tokens",
    "mutated",
    "render_sip_uri",
    "requests",
    "responses",
    "sip_uri_specs",
    "sip_uri_texts",
    "tel_uri_specs",
    "tokens",
    "via_specs",
]

# -- character classes (RFC 3261 section 25.1) ---------------------------------

ALNUM = string.ascii_letters + string.digits
TOKEN_CHARS = ALNUM + "-.!%*_+`'~"
MARK = "-_.!~*'()"
UNRESERVED = ALNUM + MARK
USER_SAFE = UNRESERVED + "&=+$,;?/"
PASSWORD_SAFE = UNRESERVED + "&=+$,"
PARAM_SAFE = UNRESERVED + "[]/:&+$"
HEADER_SAFE = UNRESERVED + "[]/?:+$"
# Call-ID "word" characters.
WORD_CHARS = ALNUM + "-.!%*_+`'~()<>:\\\"/[]?{}"
KNOWN_METHODS = (
    "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "SUBSCRIBE",
    "NOTIFY", "PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE",
)  # fmt: skip
TRANSPORTS = ("UDP", "TCP", "TLS", "SCTP", "WS", "WSS", "udp", "tcp", "Tls")

# Header names sipcore reads itself, or splits on commas: an "unknown"
# extension header must not be one of these, or its value would be split or
# interpreted. Single letters are excluded too (compact forms).
RESERVED_NAMES = frozenset(
    {
        "via", "from", "to", "call-id", "cseq", "contact", "route", "record-route",
        "max-forwards", "content-length", "content-type", "expires", "authorization",
        "proxy-authorization", "date", "path", "service-route", "accept",
        "accept-encoding", "accept-language", "alert-info", "allow", "allow-events",
        "call-info", "content-encoding", "content-language", "error-info", "in-reply-to",
        "proxy-require", "reason", "reply-to", "require", "supported", "unsupported",
        "warning", "p-asserted-identity", "p-preferred-identity", "www-authenticate",
        "proxy-authenticate", "accept-contact", "referred-by", "request-disposition",
        "reject-contact", "identity-info", "event", "refer-to", "subject",
        "session-expires", "identity", "timestamp",
    }
)  # fmt: skip

Params: TypeAlias = tuple[tuple[str, str | None], ...]


# -- expected values -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SipUriSpec:
    """A sip:/sips: URI's components, unescaped, as parse_uri must return them."""

    scheme: str  # lowercase
    user: str | None
    password: str | None
    host: str  # as written
    port: int | None
    params: Params
    headers: tuple[tuple[str, str], ...]


@dataclasses.dataclass(frozen=True)
class TelUriSpec:
    number: str
    params: Params


UriSpec: TypeAlias = SipUriSpec | TelUriSpec


@dataclasses.dataclass(frozen=True)
class AddressSpec:
    text: str  # the URI as written
    uri: UriSpec
    display: str | None
    params: Params  # header parameters as written (names and values stripped)
    expires: int | None = None
    q: float | None = None

    @property
    def tag(self) -> str | None:
        return _param(self.params, "tag")


@dataclasses.dataclass(frozen=True)
class ViaSpec:
    transport: str
    host: str
    port: int | None
    params: Params
    rport: int | None = None
    ttl: int | None = None

    @property
    def branch(self) -> str | None:
        return _param(self.params, "branch")

    @property
    def received(self) -> str | None:
        return _param(self.params, "received")

    @property
    def maddr(self) -> str | None:
        return _param(self.params, "maddr")


@dataclasses.dataclass(frozen=True)
class HeaderLine:
    name: str  # as written, without the whitespace before the colon
    key: str  # canonical long name, lowercase
    wire: str  # the whole line as sent, folded continuations included, no final CRLF
    value: str  # what Message.headers() must give: unfolded and stripped


@dataclasses.dataclass(frozen=True)
class MessageSpec:
    data: bytes
    start_line: str
    method: str | None
    uri_text: str | None
    uri: UriSpec | None
    status_code: int | None
    reason: str | None
    lines: tuple[HeaderLine, ...]
    call_id: str
    cseq_number: int
    cseq_method: str
    from_: AddressSpec
    to: AddressSpec
    vias: tuple[ViaSpec, ...]
    contact: tuple[AddressSpec, ...]
    contact_star: bool
    route: tuple[AddressSpec, ...]
    record_route: tuple[AddressSpec, ...]
    max_forwards: int | None
    content_type: str | None
    extensions: tuple[tuple[str, str], ...]  # (name as written, value) in order
    body: bytes

    @property
    def is_request(self) -> bool:
        return self.method is not None


def _param(params: Params, name: str) -> str | None:
    for key, value in params:
        if key.lower() == name:
            return value
    return None


# -- small pieces --------------------------------------------------------------
# Strategies are built once, here: building them inside the composites
# below costs more than drawing from them.

_TOKEN = {n: st.text(TOKEN_CHARS, min_size=n, max_size=12) for n in (0, 1, 2)}
_CONTROLS = "".join(map(chr, [*range(0x20), *range(0x7F, 0xA0)]))
_ODDS = st.integers(0, 7)
_BOOL = st.booleans()
_PORT = st.none() | st.integers(0, 65535)
_ANY_CHAR = st.characters(codec="utf-8")
_DISPLAY_CHARS = st.characters(codec="utf-8", exclude_characters="\r\n") | st.sampled_from('"\\ ')
_DISPLAY = st.text(_DISPLAY_CHARS, max_size=12)
_METHOD = st.sampled_from(KNOWN_METHODS) | st.text(TOKEN_CHARS, min_size=1, max_size=10)
_TRANSPORT = st.sampled_from(TRANSPORTS) | st.text(TOKEN_CHARS, min_size=1, max_size=5)
_WORD = st.text(WORD_CHARS, min_size=1, max_size=16)
# Whitespace where the grammar has SWS (optional) or LWS (required); with
# folding, some choices are a line fold: [WSP] CRLF 1*WSP.
_REQ = (" ", "\t", "  ", " \t", " ", " ", " ")
_OPT = ("", "", "", "", "", "", *_REQ)
_FOLDS = ("\r\n ", "\r\n\t", " \r\n ", "\t\r\n  ", "\r\n\t ")
_WS = {
    (required, fold): st.sampled_from((_REQ if required else _OPT) + (_FOLDS if fold else ()))
    for required in (False, True)
    for fold in (False, True)
}
_BEFORE_COLON = st.sampled_from(("", "", "", " ", "\t", " \t"))
_AFTER_VALUE = st.sampled_from(("", "", "", " ", "\t"))
_QVALUES = st.sampled_from(("0", "1", "0.5", "0.123", "1.0", "1.000", "0.00", "0.7"))
_REASON = st.text(
    st.characters(codec="utf-8", exclude_characters=_CONTROLS) | st.sampled_from(" \t"),
    max_size=20,
)
_BODY = st.binary(max_size=200) | st.sampled_from((b"", b"\r\n\r\n", b"v=0\r\n\x00"))


def tokens(min_size: int = 1, max_size: int = 12) -> st.SearchStrategy[str]:
    if max_size == 12 and min_size in _TOKEN:
        return _TOKEN[min_size]
    return st.text(TOKEN_CHARS, min_size=min_size, max_size=max_size)


def method_tokens() -> st.SearchStrategy[str]:
    """Known methods and extension methods (any token; methods are case-sensitive)."""
    return _METHOD


def _case(draw: st.DrawFn, text: str) -> str:
    """``text`` with the case of some ASCII letters flipped (one time in four)."""
    if draw(st.integers(0, 3)) != 0 or not text:
        return text
    mask = draw(st.integers(0, (1 << len(text)) - 1))
    # Only ASCII letters: "ß".swapcase() is "SS", which is another string.
    return "".join(c.swapcase() if mask >> i & 1 and c.isascii() else c for i, c in enumerate(text))


def _pct(draw: st.DrawFn, text: str, safe: str) -> str:
    """%-escape ``text``: everything outside ``safe``, and sometimes a safe
    character too (an escaped unreserved character means the same thing)."""
    extra = 0
    if text and draw(_ODDS) == 0:
        extra = draw(st.integers(0, (1 << len(text)) - 1))
    lower = draw(_BOOL)
    out = []
    for i, ch in enumerate(text):
        if ch in safe and not extra >> i & 1:
            out.append(ch)
            continue
        for octet in ch.encode("utf-8"):
            out.append(f"%{octet:02x}" if lower else f"%{octet:02X}")
    return "".join(out)


def _uint_text(draw: st.DrawFn, value: int, width: int) -> str:
    """``value`` in decimal, with leading zeros up to ``width`` digits in all."""
    digits = str(value)
    if len(digits) >= width or draw(_ODDS) > 1:
        return digits
    return "0" * draw(st.integers(1, width - len(digits))) + digits


_LABEL = st.text(ALNUM, min_size=1, max_size=8) | st.builds(
    lambda a, mid, b: a + mid + b,
    st.text(ALNUM, min_size=1, max_size=3),
    st.text(ALNUM + "-", min_size=1, max_size=4),
    st.text(ALNUM, min_size=1, max_size=3),
)
_LABELS = st.lists(_LABEL, min_size=1, max_size=4)


@st.composite
def hostnames(draw: st.DrawFn) -> str:
    labels = draw(_LABELS)
    if labels[-1].isdigit():
        labels[-1] = "x" + labels[-1]  # a last label of digits reads as an IPv4 part
    name = ".".join(labels)
    return name + "." if draw(_ODDS) == 0 else name


@st.composite
def ipv6_references(draw: st.DrawFn) -> str:
    addr = draw(st.ip_addresses(v=6))
    assert isinstance(addr, ipaddress.IPv6Address)
    text = addr.exploded if draw(_BOOL) else addr.compressed
    if draw(_BOOL):
        text = text.upper()
    return f"[{text}]"


_HOSTS = st.one_of(hostnames(), st.ip_addresses(v=4).map(str), ipv6_references())


def hosts() -> st.SearchStrategy[str]:
    """Hostnames, IPv4 addresses and IPv6 references, as they would be written."""
    return _HOSTS


def _strip_free(pairs: list[tuple[str, str | None]]) -> Params:
    # parse_params strips whitespace around names and values before it
    # unescapes them: leave such pairs out rather than expect the strip.
    return tuple((k, v) for k, v in pairs if k == k.strip() and (v is None or v == v.strip()))


_URI_PARAMS = st.lists(
    st.tuples(
        st.text(st.sampled_from(ALNUM + "-_.!~*'()[]/:&+$"), min_size=1, max_size=8)
        | st.text(_ANY_CHAR, min_size=1, max_size=4)
        | st.sampled_from(("transport", "user", "method", "ttl", "maddr", "lr")),
        st.none()
        | st.text(st.sampled_from(PARAM_SAFE), max_size=8)
        | st.text(_ANY_CHAR, max_size=4),
    ),
    max_size=4,
    unique_by=lambda kv: kv[0].lower(),
).map(_strip_free)
_USER = (
    st.none()
    | st.text(TOKEN_CHARS, min_size=1, max_size=10)
    | st.text(_ANY_CHAR, min_size=1, max_size=10)
    | st.sampled_from(("+15551234567", "alice", "a b", "a@b", "%", "a;b?c/d"))
)
_PASSWORD = st.text(_ANY_CHAR, max_size=6)
_URI_HEADERS = st.lists(
    st.tuples(st.text(_ANY_CHAR, min_size=1, max_size=6), st.text(_ANY_CHAR, max_size=6)),
    max_size=2,
).map(tuple)


@st.composite
def sip_uri_specs(draw: st.DrawFn, *, allow_headers: bool = True) -> SipUriSpec:
    """The components of a sip:/sips: URI (unescaped)."""
    scheme = "sips" if draw(st.integers(0, 2)) == 0 else "sip"
    user = draw(_USER)
    password = None
    if user is not None and draw(_ODDS) == 0:
        password = draw(_PASSWORD)
    headers: tuple[tuple[str, str], ...] = ()
    if allow_headers and draw(st.integers(0, 3)) == 0:
        headers = draw(_URI_HEADERS)
    return SipUriSpec(scheme, user, password, draw(_HOSTS), draw(_PORT), draw(_URI_PARAMS), headers)


def render_sip_uri(draw: st.DrawFn, spec: SipUriSpec) -> str:
    """One of the many ways to write ``spec``."""
    out = [_case(draw, spec.scheme), ":"]
    if spec.user is not None:
        out.append(_pct(draw, spec.user, USER_SAFE))
        if spec.password is not None:
            out += [":", _pct(draw, spec.password, PASSWORD_SAFE)]
        out.append("@")
    out.append(spec.host)
    if spec.port is not None:
        out += [":", _uint_text(draw, spec.port, 5)]
    for name, value in spec.params:
        out += [";", _pct(draw, name, PARAM_SAFE)]
        if value is not None:
            out += ["=", _pct(draw, value, PARAM_SAFE)]
    if spec.headers:
        out.append("?")
        out.append(
            "&".join(
                _pct(draw, k, HEADER_SAFE) + "=" + _pct(draw, v, HEADER_SAFE)
                for k, v in spec.headers
            )
        )
    return "".join(out)


@st.composite
def sip_uri_texts(draw: st.DrawFn, *, allow_headers: bool = True) -> tuple[str, SipUriSpec]:
    spec = draw(sip_uri_specs(allow_headers=allow_headers))
    return render_sip_uri(draw, spec), spec


_TEL_GROUPS = st.lists(st.text("0123456789", min_size=1, max_size=4), min_size=1, max_size=4)
_TEL_SEPS = st.lists(st.sampled_from(("", "-", ".", "")), min_size=3, max_size=3)
_TEL_PARAMS = st.lists(
    st.tuples(st.text(TOKEN_CHARS, min_size=1, max_size=6), st.none() | _TOKEN[1]),
    max_size=2,
    unique_by=lambda kv: kv[0].lower(),
)


@st.composite
def tel_uri_specs(draw: st.DrawFn) -> tuple[str, TelUriSpec]:
    groups = draw(_TEL_GROUPS)
    seps = draw(_TEL_SEPS)
    number = groups[0] + "".join(s + g for s, g in zip(seps, groups[1:], strict=False))
    params: list[tuple[str, str | None]] = []
    if draw(_BOOL):
        number = "+" + number
    else:
        context = draw(st.sampled_from(("+1", "+44-20", "example.com")))
        params.append(("phone-context", context))
    params += [kv for kv in draw(_TEL_PARAMS) if kv[0].lower() != "phone-context"]
    rendered = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)
    return f"{_case(draw, 'tel')}:{number}{rendered}", TelUriSpec(number, tuple(params))


# -- header values with LWS and folding -----------------------------------------


class HeaderText:
    """A header value as written (``wire``) and as sipcore unfolds it (``flat``).

    Whitespace only enters through :meth:`ws`, never twice in a row, so a
    fold always stands for exactly one SP in the unfolded value.
    """

    def __init__(self, draw: st.DrawFn, fold: bool) -> None:
        self.draw = draw
        self.fold = fold
        self.wire: list[str] = []
        self.flat: list[str] = []

    def text(self, text: str) -> None:
        self.wire.append(text)
        self.flat.append(text)

    def ws(self, *, required: bool) -> None:
        ws = self.draw(_WS[required, self.fold])
        self.wire.append(ws)
        self.flat.append(" " if "\n" in ws else ws)

    @property
    def unfolded(self) -> str:
        """The value as Message.headers() gives it back."""
        return "".join(self.flat).strip()

    def extend(self, other: HeaderText) -> None:
        self.wire += other.wire
        self.flat += other.flat


def _header_line(draw: st.DrawFn, names: Sequence[str], key: str, value: HeaderText) -> HeaderLine:
    name = names[draw(st.integers(0, len(names) - 1))] if len(names) > 1 else names[0]
    name = _case(draw, name)
    head = HeaderText(draw, value.fold)
    head.ws(required=False)
    wire = (
        name
        + draw(_BEFORE_COLON)
        + ":"
        + "".join(head.wire)
        + "".join(value.wire)
        + draw(_AFTER_VALUE)
    )
    flat = ("".join(head.flat) + "".join(value.flat)).strip()
    return HeaderLine(name, key, wire, flat)


def _quoted_string(draw: st.DrawFn, text: str) -> str:
    extra = draw(st.integers(0, (1 << len(text)) - 1)) if text and draw(_ODDS) == 0 else 0
    out = ['"']
    for i, ch in enumerate(text):
        if ch in '"\\' or (ch < " " and ch != "\t") or ch == "\x7f":
            out.append("\\" + ch)
        elif ch.isascii() and extra >> i & 1:
            out.append("\\" + ch)  # a quoted-pair may escape any ASCII character
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_GENERIC_NAMES = st.lists(st.text(TOKEN_CHARS, min_size=1, max_size=8), max_size=3)
_QUOTED_VALUE = st.text(_DISPLAY_CHARS, max_size=6)


def _generic_params(draw: st.DrawFn, taken: set[str]) -> list[tuple[str, str]]:
    """Extension header parameters: (name, "=value" as written, or "" for none)."""
    out = []
    for name in draw(_GENERIC_NAMES):
        if name.lower() in taken:
            continue
        taken.add(name.lower())
        kind = draw(st.integers(0, 3))
        if kind == 0:
            value = ""
        elif kind == 1:
            value = "=" + draw(_TOKEN[1])
        elif kind == 2:
            value = "=" + draw(_HOSTS)
        else:
            value = "=" + _quoted_string(draw, draw(_QUOTED_VALUE))
        out.append((name, value))
    return out


def _write_params(v: HeaderText, params: Sequence[tuple[str, str]]) -> Params:
    """Write ``;name=value`` pairs with optional whitespace; return the Params
    sipcore must read (values as written, None for a bare name)."""
    read: list[tuple[str, str | None]] = []
    for name, value in params:
        v.ws(required=False)
        v.text(";")
        v.ws(required=False)
        v.text(name)
        if value:
            v.ws(required=False)
            v.text("=")
            v.ws(required=False)
            v.text(value[1:])
            read.append((name, value[1:]))
        else:
            read.append((name, None))
    return tuple(read)


_DISPLAY_WORDS = st.lists(st.text(TOKEN_CHARS, min_size=1, max_size=6), min_size=1, max_size=3)


@st.composite
def address_specs(
    draw: st.DrawFn,
    *,
    fold: bool = True,
    tag: bool | None = None,
    contact: bool = False,
    name_addr: bool = False,
) -> tuple[HeaderText, AddressSpec]:
    """A name-addr or addr-spec with header parameters."""
    uri: UriSpec
    if draw(st.integers(0, 4)) == 0:
        uri_text, uri = draw(tel_uri_specs())
    else:
        uri_text, uri = draw(sip_uri_texts())
    v = HeaderText(draw, fold)
    bare = not name_addr and not any(c in uri_text for c in ";?,") and draw(_BOOL)
    display: str | None = None
    if bare:
        v.text(uri_text)
    else:
        form = draw(st.integers(0, 2))
        if form == 1:
            display = draw(_DISPLAY)
            v.text(_quoted_string(draw, display))
            v.ws(required=False)
        elif form == 2:
            words = draw(_DISPLAY_WORDS)
            for word in words:
                v.text(word)
                v.ws(required=True)
            display = " ".join(words)
        v.text("<" + uri_text + ">")
    # expires and q mean something in a Contact; elsewhere leave them out
    # rather than expect an accessor to read a value it may reject.
    taken: set[str] = {"expires", "q"}
    params: list[tuple[str, str]] = []
    if draw(_BOOL) if tag is None else tag:
        params.append((_case(draw, "tag"), "=" + draw(_TOKEN[1])))
        taken.add("tag")
    expires = q = None
    if contact:
        if draw(_BOOL):
            seconds = draw(st.integers(0, 7200) | st.integers(0, 2**32 + 10))
            params.append((_case(draw, "expires"), "=" + _uint_text(draw, seconds, 12)))
            expires = min(seconds, 2**32 - 1)
        if draw(_BOOL):
            qtext = draw(_QVALUES)
            params.append((_case(draw, "q"), "=" + qtext))
            q = float(qtext)
    params += _generic_params(draw, taken)
    params = draw(st.permutations(params))
    read = _write_params(v, params)
    return v, AddressSpec(uri_text, uri, display, read, expires, q)


@st.composite
def via_specs(draw: st.DrawFn, *, fold: bool = True) -> tuple[HeaderText, ViaSpec]:
    v = HeaderText(draw, fold)
    transport = draw(_TRANSPORT)
    v.text("SIP")
    for part in ("2.0", transport):
        v.ws(required=False)
        v.text("/")
        v.ws(required=False)
        v.text(part)
    v.ws(required=True)
    host = draw(_HOSTS)
    v.text(host)
    port = draw(_PORT)
    if port is not None:
        v.ws(required=False)
        v.text(":")
        v.ws(required=False)
        v.text(_uint_text(draw, port, 5))
    params: list[tuple[str, str]] = []
    if draw(_ODDS) != 0:
        params.append((_case(draw, "branch"), "=z9hG4bK" + draw(_TOKEN[0])))
    if draw(_BOOL):
        params.append((_case(draw, "received"), "=" + str(draw(st.ip_addresses()))))
    rport = None
    if draw(_BOOL):
        if draw(_BOOL):
            params.append((_case(draw, "rport"), ""))
        else:
            rport = draw(st.integers(0, 65535))
            params.append((_case(draw, "rport"), "=" + _uint_text(draw, rport, 5)))
    if draw(st.integers(0, 3)) == 0:
        params.append((_case(draw, "maddr"), "=" + draw(_HOSTS)))
    ttl = None
    if draw(st.integers(0, 3)) == 0:
        ttl = draw(st.integers(0, 255))
        params.append((_case(draw, "ttl"), "=" + _uint_text(draw, ttl, 3)))
    params += _generic_params(draw, {"branch", "received", "rport", "maddr", "ttl"})
    params = draw(st.permutations(params))
    read = _write_params(v, params)
    return v, ViaSpec(transport, host, port, read, rport, ttl)


def _list_lines(
    draw: st.DrawFn,
    names: Sequence[str],
    key: str,
    elements: Sequence[HeaderText],
    fold: bool,
) -> list[HeaderLine]:
    """Spread list elements over lines, in order: several on one line
    (comma-separated) or one per line."""
    lines = []
    i = 0
    while i < len(elements):
        take = draw(st.integers(1, len(elements) - i))
        v = HeaderText(draw, fold)
        for j, element in enumerate(elements[i : i + take]):
            if j:
                v.ws(required=False)
                v.text(",")
                v.ws(required=False)
            v.extend(element)
        lines.append(_header_line(draw, names, key, v))
        i += take
    return lines


# TEXT-UTF8char: visible ASCII and any non-ASCII character. Unicode
# whitespace (NBSP...) may sit inside a word but not at its edges: see
# test_extension_value_keeps_unicode_whitespace_at_its_edges.
_SEGMENTS = st.lists(
    st.text(
        st.characters(codec="utf-8", exclude_characters=" \t\x7f", min_codepoint=0x21),
        min_size=1,
        max_size=10,
    ).filter(lambda s: not s[0].isspace() and not s[-1].isspace()),
    max_size=4,
)


@st.composite
def header_values(draw: st.DrawFn, *, fold: bool = True) -> tuple[HeaderText, str]:
    """An extension header value (words of TEXT-UTF8 separated by LWS) and
    the value sipcore must read."""
    v = HeaderText(draw, fold)
    for i, segment in enumerate(draw(_SEGMENTS)):
        if i:
            v.ws(required=True)
        v.text(segment)
    return v, v.unfolded


_EXTENSION_NAMES = st.text(TOKEN_CHARS, min_size=2, max_size=14).filter(
    lambda n: n.lower() not in RESERVED_NAMES
)


def extension_names() -> st.SearchStrategy[str]:
    return _EXTENSION_NAMES


# -- whole messages ------------------------------------------------------------


def _interleave(draw: st.DrawFn, groups: list[list[HeaderLine]]) -> list[HeaderLine]:
    """Merge header groups in random order, keeping each group's own order
    (the order of lines of one name carries meaning; across names it does not)."""
    queues = [list(g) for g in groups if g]
    out = []
    while queues:
        i = draw(st.integers(0, len(queues) - 1))
        out.append(queues[i].pop(0))
        if not queues[i]:
            del queues[i]
    return out


@st.composite
def _message(draw: st.DrawFn, *, request: bool) -> MessageSpec:
    fold = draw(_BOOL)
    method: str | None = None
    uri_text: str | None = None
    uri: UriSpec | None = None
    status: int | None = None
    reason: str | None = None
    if request:
        method = draw(_METHOD)
        if draw(st.integers(0, 4)) == 0:
            uri_text, tel = draw(tel_uri_specs())
            uri = tel
        else:
            # RFC 3261 section 19.1.1: no headers in a Request-URI.
            uri_text, sip = draw(sip_uri_texts(allow_headers=False))
            uri = sip
        start_line = f"{method} {uri_text} SIP/2.0"
        cseq_method = method
    else:
        status = draw(st.integers(100, 699))
        reason = draw(_REASON)
        start_line = f"SIP/2.0 {status} {reason}"
        cseq_method = draw(_METHOD)

    groups: list[list[HeaderLine]] = []

    via_values = draw(st.lists(via_specs(fold=fold), min_size=1, max_size=5))
    groups.append(_list_lines(draw, ["Via", "v"], "via", [v for v, _ in via_values], fold))

    from_v, from_spec = draw(address_specs(fold=fold, tag=True))
    groups.append([_header_line(draw, ["From", "f"], "from", from_v)])
    to_v, to_spec = draw(address_specs(fold=fold))
    groups.append([_header_line(draw, ["To", "t"], "to", to_v)])

    call_id = draw(_WORD)
    if draw(_BOOL):
        call_id += "@" + draw(_WORD)
    cid = HeaderText(draw, fold)
    cid.text(call_id)
    groups.append([_header_line(draw, ["Call-ID", "i"], "call-id", cid)])

    cseq_number = draw(st.integers(0, 2**32 - 1))
    cs = HeaderText(draw, fold)
    cs.text(_uint_text(draw, cseq_number, 10))
    cs.ws(required=True)
    cs.text(cseq_method)
    groups.append([_header_line(draw, ["CSeq"], "cseq", cs)])

    max_forwards: int | None = None
    if request or draw(st.integers(0, 4)) == 0:
        max_forwards = draw(st.integers(0, 255))
        mf = HeaderText(draw, fold)
        mf.text(_uint_text(draw, max_forwards, 6))
        groups.append([_header_line(draw, ["Max-Forwards"], "max-forwards", mf)])

    contact: tuple[AddressSpec, ...] = ()
    contact_star = False
    choice = draw(st.integers(0, 5))
    if choice == 0:
        star = HeaderText(draw, fold)
        star.text("*")
        groups.append([_header_line(draw, ["Contact", "m"], "contact", star)])
        contact_star = True
    elif choice >= 3:
        drawn = draw(st.lists(address_specs(fold=fold, contact=True), min_size=1, max_size=3))
        contact = tuple(spec for _, spec in drawn)
        groups.append(_list_lines(draw, ["Contact", "m"], "contact", [v for v, _ in drawn], fold))

    routes: dict[str, tuple[AddressSpec, ...]] = {}
    for name in ("Route", "Record-Route"):
        drawn = draw(st.lists(address_specs(fold=fold, name_addr=True), max_size=3))
        routes[name] = tuple(spec for _, spec in drawn)
        groups.append(_list_lines(draw, [name], name.lower(), [v for v, _ in drawn], fold))

    extensions: list[HeaderLine] = []
    for name in draw(st.lists(_EXTENSION_NAMES, max_size=5)):
        if extensions and draw(st.integers(0, 3)) == 0:
            name = _case(draw, extensions[0].name)  # a repeated header
        value, _ = draw(header_values(fold=fold))
        line = _header_line(draw, [name], name.lower(), value)
        extensions.append(line)
    groups.append(extensions)

    body = draw(_BODY)
    content_type = None
    if body and draw(_BOOL):
        content_type = draw(st.sampled_from(["application/sdp", "text/plain;charset=utf-8"]))
        ct = HeaderText(draw, fold)
        ct.text(content_type)
        groups.append([_header_line(draw, ["Content-Type", "c"], "content-type", ct)])
    cl = HeaderText(draw, fold)
    cl.text(_uint_text(draw, len(body), 8))
    groups.append([_header_line(draw, ["Content-Length", "l"], "content-length", cl)])

    lines = tuple(_interleave(draw, groups))
    head = "\r\n".join([start_line, *(line.wire for line in lines)]) + "\r\n\r\n"
    return MessageSpec(
        data=head.encode("utf-8") + body,
        start_line=start_line,
        method=method,
        uri_text=uri_text,
        uri=uri,
        status_code=status,
        reason=reason,
        lines=lines,
        call_id=call_id,
        cseq_number=cseq_number,
        cseq_method=cseq_method,
        from_=from_spec,
        to=to_spec,
        vias=tuple(spec for _, spec in via_values),
        contact=contact,
        contact_star=contact_star,
        route=routes["Route"],
        record_route=routes["Record-Route"],
        max_forwards=max_forwards,
        content_type=content_type,
        extensions=tuple((line.name, line.value) for line in lines if line in extensions),
        body=body,
    )


def requests() -> st.SearchStrategy[MessageSpec]:
    return _message(request=True)


def responses() -> st.SearchStrategy[MessageSpec]:
    return _message(request=False)


def messages() -> st.SearchStrategy[MessageSpec]:
    return requests() | responses()


# -- damage --------------------------------------------------------------------

# Octets that mean something to a SIP parser: a random insertion of one of
# these reaches far more code than a random byte does.
_SIGNIFICANT = b' \t\r\n:;,="<>@[]/\\?&%*0123456789'


@st.composite
def mutated(draw: st.DrawFn, data: bytes, max_mutations: int = 4) -> bytes:
    """``data`` after a few random edits: bit flips, byte insertions,
    deletions, duplicated or dropped slices, truncation."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, max_mutations))):
        n = len(buf)
        kind = draw(st.integers(0, 6))
        pos = draw(st.integers(0, max(0, n - 1)))
        if kind == 0 and n:
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == 1:
            octet = draw(st.sampled_from(_SIGNIFICANT) | st.integers(0, 255))
            buf.insert(draw(st.integers(0, n)), octet)
        elif kind == 2 and n:
            del buf[pos]
        elif kind == 3 and n:
            end = draw(st.integers(pos, min(n, pos + 64)))
            buf[pos:pos] = buf[pos:end]
        elif kind == 4 and n:
            end = draw(st.integers(pos, min(n, pos + 64)))
            del buf[pos:end]
        elif kind == 5:
            del buf[draw(st.integers(0, n)) :]
        elif kind == 6 and n:
            buf[pos] = draw(st.sampled_from(_SIGNIFICANT))
    return bytes(buf)
