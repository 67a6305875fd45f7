"""Header names and the structured header values proxies and dialogs read.

This module owns: canonical and compact header names, splitting of
comma-separated header values where the grammar allows it, and the parsers
for Via, name-addr/addr-spec (From, To, Contact, Route...), CSeq and
credentials. It knows nothing of message framing.

Every parser takes ``defects``: in lenient mode a deviation that RFC 4475
says an element may tolerate is appended there instead of raising.
"""

from __future__ import annotations

import re
import string
from typing import Final

import attrs

from ._accel import speedups
from ._errors import ParseError
from ._uri import (
    _HOSTNAME_CHARS,
    EMPTY_PARAMS,
    PLAIN_PARAMS,
    URI,
    Params,
    get_param,
    lazy_params,
    parse_uri,
    plain_params,
    slot_setters,
    split_hostport,
)

__all__ = ["Address", "CSeq", "Credentials", "Defect", "Via"]

# RFC 3261 section 7.3.3 plus the compact forms registered since.
COMPACT: Final = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

# How header names are written when sipcore writes them.
_PRETTY: Final = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "mime-version": "MIME-Version",
    "rack": "RAck",
    "rseq": "RSeq",
}

# Headers whose value is a comma-separated list (RFC 3261 section 7.3.1):
# only these are split on commas; everything else is one value per line.
LIST_HEADERS: Final = frozenset(
    {
        "via",
        "contact",
        "route",
        "record-route",
        "path",
        "service-route",
        "accept",
        "accept-encoding",
        "accept-language",
        "alert-info",
        "allow",
        "allow-events",
        "call-info",
        "content-encoding",
        "content-language",
        "error-info",
        "in-reply-to",
        "proxy-require",
        "reason",
        "reply-to",
        "require",
        "supported",
        "unsupported",
        "warning",
        "p-asserted-identity",
        "p-preferred-identity",
    }
)

_TOKEN_CHARS: Final = frozenset(string.ascii_letters + string.digits + "-.!%*_+`'~")
_WS: Final = " \t"
_TOKEN_WS: Final = _TOKEN_CHARS | frozenset(" \t\r\n")
_MAX_UINT32: Final = 2**32 - 1
_DIGITS: Final = frozenset(string.digits)
_TOKEN_CLASS: Final = r"-.!%*_+`'~A-Za-z0-9"

# The shapes nearly every Via and name-addr takes, matched in one linear
# pass (possessive quantifiers): what they match, the careful parsers below
# would read the same way; whatever they do not match goes to those parsers.
_VIA: Final = re.compile(
    rf"SIP/2\.0/([{_TOKEN_CLASS}]++) ([A-Za-z0-9._-]++)(?::([0-9]{{1,5}}+))?(?:;({PLAIN_PARAMS}))?"
)
_NAME_ADDR: Final = re.compile(rf'(?:"([^"\\]*+)"\s*+)?<([^<>"\s]++)>(?:\s*+;({PLAIN_PARAMS}))?')


def canonical_name(name: str) -> str:
    """The lowercase long form of a header name (``"v"`` -> ``"via"``)."""
    key = name.strip().lower()
    return COMPACT.get(key, key)


def pretty_name(key: str) -> str:
    """How sipcore writes a header name it was given in any case."""
    key = canonical_name(key)
    return _PRETTY.get(key) or "-".join(part.capitalize() for part in key.split("-"))


def is_token(text: str) -> bool:
    return bool(text) and _TOKEN_CHARS.issuperset(text)


@attrs.frozen
class Defect:
    """A deviation from RFC 3261 that lenient parsing tolerated.

    ``status_hint`` is what a strict element would have answered.
    """

    reason: str
    status_hint: int = 400
    header: str | None = None


def tolerate(
    defects: list[Defect] | None, reason: str, header: str | None, status: int = 400
) -> None:
    """Record a tolerable defect, or raise when parsing strictly (defects is None)."""
    if defects is None:
        raise ParseError(reason, status)
    defects.append(Defect(reason, status, header))


def quoted_end(text: str, start: int) -> int:
    """Index of the quote closing the quoted-string opened at ``start``."""
    i = start + 1
    n = len(text)
    while True:
        q = text.find('"', i)
        if q < 0:
            raise ParseError("unterminated quoted string")
        b = text.find("\\", i, q)
        if b < 0:
            return q
        # A quoted-pair: skip the escaped character and look again.
        i = b + 2
        if i > n:
            raise ParseError("unterminated quoted string")


def _unquote(inner: str) -> str:
    if "\\" not in inner:
        return inner
    out = []
    i = 0
    while i < len(inner):
        c = inner[i]
        if c == "\\" and i + 1 < len(inner):
            i += 1
            c = inner[i]
        out.append(c)
        i += 1
    return "".join(out)


def quote_string(text: str) -> str:
    """Render ``text`` as a quoted-string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_outside(text: str, sep: str) -> list[str]:
    """Split on ``sep`` where it is outside quoted strings and ``<...>``."""
    if '"' not in text and "<" not in text:
        return text.split(sep)
    parts = []
    start = i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i = quoted_end(text, i) + 1
            continue
        if c == "<":
            gt = text.find(">", i)
            if gt < 0:
                raise ParseError("unterminated <")
            i = gt + 1
            continue
        if c == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def split_list(value: str) -> list[str]:
    """Split a list header's value into its elements; empty elements are errors."""
    if "," not in value:
        return [value]
    parts = split_outside(value, ",")
    for part in parts:
        if not part.strip():
            raise ParseError("empty element in header list")
    return parts


def parse_header_params(text: str) -> Params:
    """``;a=b;c`` after a header value (the leading ``;`` already removed)."""
    lazy = lazy_params(text)
    return _parse_header_params_careful(text) if lazy is None else lazy


def _parse_header_params_careful(text: str) -> Params:
    parts = split_outside(text, ";") if '"' in text else text.split(";")
    items = []
    for part in parts:
        name, eq, value = part.partition("=")
        name = name.strip()
        if not name:
            raise ParseError("empty header parameter")
        items.append((name, value.strip() if eq else None))
    return Params(tuple(items))


@attrs.frozen
class Via:
    """One Via header value: ``SIP/2.0/UDP host:port;branch=...``."""

    transport: str
    host: str
    port: int | None = None
    params: Params = EMPTY_PARAMS
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return get_param(self.params, "branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The rport value; ``None`` when absent or when present without a value
        (test ``"rport" in via.params`` for the latter)."""
        value = self.params.get("rport")
        if not value:
            return None
        if len(value) > 5 or not _DIGITS.issuperset(value):
            raise ParseError(f"bad rport {value!r}")
        return int(value)

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def ttl(self) -> int | None:
        value = self.params.get("ttl")
        if value is None:
            return None
        if not value or len(value) > 3 or not _DIGITS.issuperset(value) or int(value) > 255:
            raise ParseError(f"bad ttl {value!r}")
        return int(value)

    @property
    def has_rfc3261_branch(self) -> bool:
        """True when the branch carries the magic cookie and an identifier after it."""
        branch = self.branch
        return branch is not None and len(branch) > 7 and branch.startswith("z9hG4bK")

    @property
    def sent_by(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """The sent-by host without IPv6 brackets."""
        return self.host[1:-1] if self.host.startswith("[") else self.host

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{self.params.render()}"


_via_transport, _via_host, _via_port, _via_params, _via_protocol = slot_setters(
    Via, "transport", "host", "port", "params", "protocol"
)


def parse_via(text: str) -> Via:
    match = _VIA.fullmatch(text)
    if match is not None:
        transport, sent_host, port_text, ptext = match.groups()
        sent_port = None if port_text is None else int(port_text)
        if sent_port is None or sent_port <= 65535:
            via = object.__new__(Via)
            _via_transport(via, transport)
            _via_host(via, sent_host)
            _via_port(via, sent_port)
            _via_params(via, EMPTY_PARAMS if ptext is None else plain_params(ptext))
            _via_protocol(via, "SIP/2.0")
            return via
    return _parse_via_careful(text)


def _parse_via_careful(text: str) -> Via:
    value = text.strip()
    if value.startswith("SIP/2.0/") and '"' not in value:
        # Fast path: "SIP/2.0/UDP host:port;params" with no LWS inside.
        sp = value.find(" ", 8)
        transport = value[8:sp]
        rest = value[sp + 1 :].lstrip()
        sent_by, semi, ptext = rest.partition(";")
        if (
            sp > 8
            and " " not in sent_by
            and "\t" not in sent_by
            and _TOKEN_CHARS.issuperset(transport)
        ):
            host, _, port_text = sent_by.partition(":")
            port: int | None
            if (
                host
                and 0 < len(port_text) < 6
                and port_text.isascii()
                and port_text.isdigit()
                and _HOSTNAME_CHARS.issuperset(host)
                and int(port_text) <= 65535
            ):
                port = int(port_text)
            else:
                host, port = split_hostport(sent_by)
            params = parse_header_params(ptext) if semi else EMPTY_PARAMS
            return Via(transport, host, port, params)
    return _parse_via_slow(value)


def _parse_via_slow(value: str) -> Via:
    head, semi, ptext = value.partition(";") if '"' not in value else _partition_quoted(value)
    head = head.strip()
    # LWS may surround the slashes and the colon (RFC 3261 section 25.1).
    joined = "/".join(part.strip() for part in head.split("/"))
    pieces = joined.split(None, 1)
    if len(pieces) != 2:
        raise ParseError(f"bad Via {value[:80]!r}")
    proto, sent_by = pieces
    parts = proto.split("/")
    if len(parts) != 3:
        raise ParseError(f"bad Via protocol {proto!r}")
    name, version, transport = parts
    sent_by = "".join(sent_by.split())
    if not (is_token(name) and is_token(version) and is_token(transport)):
        raise ParseError(f"bad Via protocol {proto!r}")
    host, port = split_hostport(sent_by)
    params = parse_header_params(ptext) if semi else EMPTY_PARAMS
    protocol = "SIP/2.0" if name == "SIP" and version == "2.0" else f"{name}/{version}"
    return Via(transport, host, port, params, protocol)


def _partition_quoted(value: str) -> tuple[str, str, str]:
    parts = split_outside(value, ";")
    if len(parts) == 1:
        return value, "", ""
    return parts[0], ";", ";".join(parts[1:])


def _uri_key(value: URI | str) -> URI:
    return parse_uri(value) if isinstance(value, str) else value


@attrs.frozen
class Address:
    """A name-addr or addr-spec with header parameters: From, To, Contact,
    Route, Record-Route, Refer-To...

    ``uri`` may be given as text; it is parsed on first access of
    :attr:`uri` (a From tag can be read without parsing the From URI).
    """

    _uri: URI | str = attrs.field(alias="uri", eq=_uri_key, repr=lambda u: repr(str(u)))
    display_name: str | None = None
    params: Params = EMPTY_PARAMS

    @property
    def uri(self) -> URI:
        uri = self._uri
        if isinstance(uri, str):
            uri = parse_uri(uri)
            _address_uri(self, uri)
        return uri

    @property
    def uri_text(self) -> str:
        """The URI as written, without parsing it (a tracker storing the
        From URI needs its text, not its parts)."""
        uri = self._uri
        return uri if isinstance(uri, str) else str(uri)

    @property
    def tag(self) -> str | None:
        return get_param(self.params, "tag")

    @property
    def expires(self) -> int | None:
        """The Contact ``expires`` parameter; values above 2**32-1 are clamped."""
        value = self.params.get("expires")
        if value is None:
            return None
        return parse_delta_seconds(value)

    @property
    def q(self) -> float | None:
        value = self.params.get("q")
        if value is None:
            return None
        try:
            q = float(value)
        except ValueError:
            raise ParseError(f"bad q value {value!r}") from None
        if not 0.0 <= q <= 1.0:
            raise ParseError(f"q value {value!r} out of range")
        return q

    def with_tag(self, tag: str) -> Address:
        """A copy with the ``tag`` parameter set (a UAS answering, a UAC's ACK/BYE)."""
        return attrs.evolve(self, params=self.params.with_param("tag", tag))

    def __str__(self) -> str:
        out = ""
        if self.display_name is not None:
            name = self.display_name
            out = (
                name if name and all(is_token(w) for w in name.split(" ")) else quote_string(name)
            ) + " "
        return f"{out}<{self._uri}>{self.params.render()}"


_address_uri, _address_display_name, _address_params = slot_setters(
    Address, "_uri", "display_name", "params"
)


def parse_address(text: str, defects: list[Defect] | None, header: str | None = None) -> Address:
    """Parse a name-addr or addr-spec followed by header parameters.

    ``defects`` is ``None`` in strict mode (any deviation raises).
    """
    match = _NAME_ADDR.fullmatch(text)
    if match is not None:
        quoted, uri_text, ptext = match.groups()
        address = object.__new__(Address)
        _address_uri(address, uri_text)
        _address_display_name(address, quoted)
        _address_params(address, EMPTY_PARAMS if ptext is None else plain_params(ptext))
        return address
    return _parse_address_careful(text, defects, header)


def _parse_address_careful(text: str, defects: list[Defect] | None, header: str | None) -> Address:
    s = text.strip()
    lt = s.find("<")
    if lt < 0:
        if not s:
            raise ParseError("empty address")
        if s[0] == '"':
            raise ParseError("quoted display name without <URI>")
        return _parse_addr_spec(s, defects, header)
    display: str | None = None
    if s[0] == '"':
        end = quoted_end(s, 0)
        display = _unquote(s[1:end])
        if s[end + 1 :].lstrip()[:1] != "<":
            raise ParseError("quoted display name without <URI>")
        lt = s.find("<", end)
    elif lt:
        name = s[:lt].strip()
        if name:
            if '"' in name:
                semi = name.find(";")
                if 0 <= semi < name.find('"'):
                    # No display name: an addr-spec whose parameter is a
                    # quoted-string holding a "<".
                    return _parse_addr_spec(s, defects, header)
                raise ParseError("misplaced quote in display name")
            if not _TOKEN_WS.issuperset(name):
                tolerate(defects, "unquoted display name with non-token characters", header)
            display = " ".join(name.split())
    gt = s.find(">", lt)
    if gt < 0:
        raise ParseError("unterminated <URI>")
    uri_text = s[lt + 1 : gt]
    if not uri_text or uri_text[0] in _WS or uri_text[-1] in _WS:
        if not uri_text.strip():
            raise ParseError("empty <URI>")
        tolerate(defects, "whitespace inside <URI>", header)
        uri_text = uri_text.strip()
    if gt + 1 == len(s):
        return Address(uri_text, display)
    tail = s[gt + 1 :].lstrip()
    if tail[:1] != ";":
        raise ParseError("junk after <URI>")
    return Address(uri_text, display, parse_header_params(tail[1:]))


def _parse_addr_spec(s: str, defects: list[Defect] | None, header: str | None) -> Address:
    # Without <>, everything after the first ";" is a header parameter
    # (RFC 3261 section 20: a URI with ";", "," or "?" needs the brackets).
    uri_text, semi, ptext = s.partition(";")
    uri_text = uri_text.strip()
    if "?" in uri_text or "," in uri_text:
        tolerate(defects, "URI with '?' or ',' outside <>", header)
    params = parse_header_params(ptext) if semi else EMPTY_PARAMS
    if not uri_text:
        raise ParseError("empty address")
    return Address(uri_text, None, params)


@attrs.frozen
class CSeq:
    """The CSeq header: sequence number and method."""

    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


_cseq_number, _cseq_method = slot_setters(CSeq, "number", "method")


def parse_cseq(text: str) -> CSeq:
    number, sp, method = text.partition(" ")
    if (
        sp
        and 0 < len(number) < 10
        and number.isascii()
        and number.isdigit()
        and _TOKEN_CHARS.issuperset(method)
        and method
    ):
        cseq = object.__new__(CSeq)
        _cseq_number(cseq, int(number))
        _cseq_method(cseq, method)
        return cseq
    parts = text.split()
    if len(parts) != 2:
        raise ParseError(f"bad CSeq {text[:80]!r}")
    number, method = parts
    if len(number) > 10 or not _DIGITS.issuperset(number):
        raise ParseError(f"CSeq number {number[:20]!r} is not a 32-bit integer")
    value = int(number)
    if value > _MAX_UINT32:
        raise ParseError(f"CSeq number {value} exceeds 2**32-1")
    if not is_token(method):
        raise ParseError(f"bad CSeq method {method!r}")
    return CSeq(value, method)


def parse_delta_seconds(text: str) -> int:
    """delta-seconds; values above 2**32-1 mean 2**32-1 (RFC 3261 section 25.1)."""
    text = text.strip()
    if not text or not _DIGITS.issuperset(text):
        raise ParseError(f"bad delta-seconds {text[:20]!r}")
    digits = text.lstrip("0") or "0"
    return _MAX_UINT32 if len(digits) > 10 else min(int(digits), _MAX_UINT32)


@attrs.frozen
class Credentials:
    """An Authorization or Proxy-Authorization value (RFC 3261 section 22.4).

    ``params`` holds the auth-params with quotes removed; the named
    properties cover the Digest parameters.
    """

    scheme: str
    params: Params = EMPTY_PARAMS

    def _get(self, name: str) -> str | None:
        return self.params.get(name)

    @property
    def is_digest(self) -> bool:
        return self.scheme.lower() == "digest"

    @property
    def username(self) -> str | None:
        return self._get("username")

    @property
    def realm(self) -> str | None:
        return self._get("realm")

    @property
    def nonce(self) -> str | None:
        return self._get("nonce")

    @property
    def uri(self) -> str | None:
        return self._get("uri")

    @property
    def response(self) -> str | None:
        return self._get("response")

    @property
    def algorithm(self) -> str | None:
        return self._get("algorithm")

    @property
    def cnonce(self) -> str | None:
        return self._get("cnonce")

    @property
    def opaque(self) -> str | None:
        return self._get("opaque")

    @property
    def qop(self) -> str | None:
        return self._get("qop")

    @property
    def nc(self) -> str | None:
        return self._get("nc")


def parse_credentials(text: str) -> Credentials:
    value = text.strip()
    pieces = value.split(None, 1)
    if not pieces or not is_token(pieces[0]):
        raise ParseError(f"bad credentials {value[:80]!r}")
    scheme = pieces[0]
    items: list[tuple[str, str | None]] = []
    if len(pieces) == 2:
        for part in split_outside(pieces[1], ","):
            part = part.strip()
            if not part:
                continue
            name, eq, val = part.partition("=")
            name = name.strip()
            val = val.strip()
            if not is_token(name):
                # An opaque token68-style credential (e.g. Basic): keep it whole.
                items.append(("", part))
                continue
            if val.startswith('"'):
                end = quoted_end(val, 0)
                val = _unquote(val[1:end])
            items.append((name, val if eq else None))
    return Credentials(scheme, Params(tuple(items)))


# The compiled twins (see _accel), when built: same results, less time. The
# Python twins keep these names too (tests compare the two).
parse_via_py = parse_via
parse_address_py = parse_address
parse_cseq_py = parse_cseq
if speedups is not None:
    speedups.configure(
        Via=Via,
        Address=Address,
        CSeq=CSeq,
        via=parse_via,
        address=parse_address,
        cseq=parse_cseq,
    )
    parse_via = speedups.parse_via
    parse_address = speedups.parse_address
    parse_cseq = speedups.parse_cseq
