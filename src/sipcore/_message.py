"""SIP messages: framing, lazy header access, edits and serialization.

This module owns the :class:`Request` / :class:`Response` objects and
:func:`parse_message`. Parsing is split in two: framing (start line, header
lines, Content-Length, body) happens at once and is cheap; a header's
structure is parsed on first access and cached until that header is
edited. Header lines are kept as the text they arrived as, so an unmodified
message serializes to its input bytes and an edit touches only its line.

Text is decoded as UTF-8 with ``surrogateescape``: any octet survives the
round trip, and no input can make decoding fail.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import repeat
from typing import Any, ClassVar, Final, TypeVar, overload

import attrs

from ._accel import speedups
from ._errors import LocalProtocolError, ParseError
from ._headers import (
    LIST_HEADERS,
    Address,
    Credentials,
    CSeq,
    Defect,
    Via,
    canonical_name,
    is_token,
    parse_address,
    parse_credentials,
    parse_cseq,
    parse_delta_seconds,
    parse_via,
    pretty_name,
    split_list,
    tolerate,
)
from ._uri import URI, SipURI, parse_uint, parse_uri

__all__ = ["Limits", "Message", "Request", "Response", "parse_message"]

ENCODING: Final = "utf-8"
ERRORS: Final = "surrogateescape"
SIP_VERSION: Final = "SIP/2.0"
_MAX_UINT32: Final = 2**32 - 1
# What surrounds a header value and may be dropped: SP, HTAB and line breaks
# (RFC 3261 section 25.1 LWS). Not str.strip()'s Unicode whitespace: U+00A0,
# U+3000... are TEXT-UTF8char and belong to the value.
_LWS: Final = " \t\r\n"

# Headers RFC 3261 allows at most once; a second copy makes a request
# ambiguous (RFC 4475 section 3.3.8).
_SINGLE: Final = frozenset(
    {"call-id", "cseq", "from", "to", "max-forwards", "content-length", "content-type", "expires"}
)

# Header name as written -> canonical key. Filled as names are seen; bounded
# so that a stream of random names cannot grow it without limit.
_NAME_CACHE: dict[str, str] = {}
_NAME_CACHE_MAX: Final = 512
# The key of a line that is no header: no lookup ever matches it.
_BAD_LINE: Final = ":bad"


@attrs.frozen
class Limits:
    """Bounds on what one message may cost. Exceeding one is a ParseError."""

    max_message_size: int = 65536  # 413
    max_headers: int = 256  # 400
    max_header_length: int = 8192  # one header line with its folded continuations; 400
    max_uri_length: int = 4096  # the Request-URI; 414


DEFAULT_LIMITS: Final = Limits()
# Edits are the application's own doing: only parsing is bounded by Limits.
_EDIT_LIMITS: Final = Limits(max_headers=1 << 30)


_T = TypeVar("_T")
_UNPARSED: Final = object()


class LazyValues(Sequence[_T]):
    """The values of a list header, each parsed on first access.

    A proxy reading ``msg.via[0]`` never pays for the Vias below it.
    Compares equal to any sequence holding the same values. It holds no
    reference to its message (the message caches it: a cycle would leave
    every parsed message to the cyclic garbage collector).
    """

    __slots__ = ("_from_lines", "_items", "_key", "_parse", "_texts")

    def __init__(self, key: str, texts: list[str], parse: Callable[[str], _T]):
        self._key = key
        self._texts = texts
        self._parse = parse
        # True when ``texts`` are whole header lines holding one value each,
        # whose value is cut out only when read (see Message._list).
        self._from_lines = False
        self._items: list[Any] = [_UNPARSED] * len(texts)

    def __len__(self) -> int:
        return len(self._texts)

    @overload
    def __getitem__(self, index: int) -> _T: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[_T, ...]: ...
    def __getitem__(self, index: int | slice) -> _T | tuple[_T, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(*index.indices(len(self._texts))))
        item = self._items[index]
        if item is _UNPARSED:
            text = self._texts[index]
            try:
                item = self._items[index] = self._parse(
                    _line_value(text) if self._from_lines else text
                )
            except ParseError as exc:
                raise ParseError(
                    f"{pretty_name(self._key)}: {exc.reason}", exc.status_hint
                ) from None
        return item  # type: ignore[no-any-return]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or isinstance(other, str):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self)!r})"


def _lazy_values(
    key: str, texts: list[str], parse: Callable[[str], _T], from_lines: bool
) -> LazyValues[_T]:
    """LazyValues(...) without the class call, which costs as much again."""
    values: LazyValues[_T] = object.__new__(LazyValues)
    values._key = key
    values._texts = texts
    values._parse = parse
    values._from_lines = from_lines
    values._items = [_UNPARSED] * len(texts)
    return values


def _line_value(line: str) -> str:
    """The value of a header line: after the colon, unfolded, without LWS."""
    value = line[line.find(":") + 1 :]
    if "\n" in value:
        # Folded: each line break with its leading whitespace is one SP.
        return " ".join(map(str.strip, value.split("\n"), repeat(_LWS))).strip(_LWS)
    return value.strip(_LWS)


def _key_of(name: str) -> str:
    key = _NAME_CACHE.get(name)
    if key is None:
        key = canonical_name(name)
        # A name with leading whitespace is a folded continuation line: never
        # cache it, so that the fast path sends such messages the slow way.
        if len(_NAME_CACHE) < _NAME_CACHE_MAX and name[:1] not in (" ", "\t"):
            _NAME_CACHE[name] = key
    return key


class Message:
    """What requests and responses share: headers, body, serialization.

    Not thread-safe; a message belongs to one task at a time.
    """

    __slots__ = (
        "_body",
        "_body_start",
        "_cache",
        "_defects",
        "_eols",
        "_keys",
        "_lines",
        "_raw",
        "_sep",
    )

    _lines: list[str]  # start line, then one entry per header (folded lines kept whole)
    _eols: list[str] | None  # terminator after each line but the last; None: all CRLF
    _sep: str  # what ends the last header line and the header section
    _keys: list[str]  # canonical header name of each line; ":start" for the start line
    _cache: dict[str, Any]
    _body: bytes
    _raw: bytes | None  # the exact input while nothing was edited
    _defects: list[Defect] | None  # None in strict mode: defects raise
    _body_start: int  # while parsing: where the body starts in the input

    is_request: ClassVar[bool]

    # -- construction ---------------------------------------------------

    def _setup(
        self,
        lines: list[str],
        body: bytes,
        *,
        eols: list[str] | None = None,
        sep: str = "\r\n\r\n",
        raw: bytes | None = None,
        defects: list[Defect] | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._lines = lines
        self._eols = eols
        self._sep = sep
        self._body = body
        self._raw = raw
        self._cache = {}
        self._defects = defects
        self._keys = self._build_keys(limits)

    def _build_keys(self, limits: Limits = DEFAULT_LIMITS) -> list[str]:
        lines = self._lines
        if len(lines) - 1 > limits.max_headers:
            # Answerable still (a 400 needs the Via, From, To...): index the
            # lines the limit allows, and mark the rest unreadable.
            keys = self._index(lines[: limits.max_headers + 1])
            keys += [_BAD_LINE] * (len(lines) - len(keys))
            self._keys = keys
            raise ParseError(f"more than {limits.max_headers} header fields", 400, self)
        keys = self._index(lines)
        if _BAD_LINE in keys:
            self._keys = keys  # the good lines stay readable, to answer 400
            line = lines[keys.index(_BAD_LINE)]
            raise ParseError(f"bad header line {line[:60]!r}", 400, self)
        return keys

    @staticmethod
    def _index(lines: list[str]) -> list[str]:
        """Each line's canonical header name; ``_BAD_LINE`` for a line that
        is no header (no colon, or no token before it)."""
        # C-speed passes over the lines; the per-line Python work happens
        # only for names not seen before.
        keys = list(map(_NAME_CACHE.get, [line[: line.find(":")] for line in lines]))
        keys[0] = ":start"
        if None in keys:
            for i in range(1, len(lines)):
                if keys[i] is None:
                    line = lines[i]
                    colon = line.find(":")
                    name = line[:colon]
                    keys[i] = (
                        _BAD_LINE if colon <= 0 or not is_token(name.strip()) else _key_of(name)
                    )
        return keys  # type: ignore[return-value]

    def _positions(self, key: str) -> list[int]:
        keys = self._keys
        count = keys.count(key)
        if not count:
            return []
        i = keys.index(key)
        out = [i]
        for _ in range(count - 1):
            i = keys.index(key, i + 1)
            out.append(i)
        return out

    # -- raw header access ----------------------------------------------

    def _value(self, i: int) -> str:
        line = self._lines[i]
        if "\n" not in line:
            return _line_value(line)
        # A folded line is unfolded once per message: get() and headers()
        # may read it again and again. Keyed by the line itself (it holds a
        # line break, so no header key can collide), the entry stays right
        # through edits.
        value = self._cache.get(line)
        if value is None:
            value = self._cache[line] = _line_value(line)
        return value

    def _defect(self, reason: str, header: str | None = None, status: int = 400) -> None:
        if self._defects is None:
            raise ParseError(reason, status, self)
        defect = Defect(reason, status, header)
        if defect not in self._defects:
            self._defects.append(defect)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _key_of(name) in self._keys

    def get(self, name: str) -> str | None:
        """The first value of a header (long or compact name, any case).

        For list headers (Via, Contact, Route, Allow...) that is the first
        element of the first line; otherwise the whole first line's value.
        """
        values = self.get_all(name)
        return values[0] if values else None

    def raw_value(self, name: str) -> str | None:
        """The first header of that name's value exactly as received: after
        the colon, trimmed of space, tab, CR and LF at both ends, with any
        line folding kept (Kamailio hashes a header body so; ``call_id``
        and :meth:`get` give the unfolded value)."""
        keys = self._keys
        key = _key_of(name)
        if key not in keys:
            return None
        line = self._lines[keys.index(key)]
        return line[line.find(":") + 1 :].strip(" \t\r\n")

    def get_all(self, name: str) -> list[str]:
        """Every value of a header, in order; list headers are split on the
        commas their grammar allows (never inside quotes or ``<...>``)."""
        return self._values_of(_key_of(name))

    def _values_of(self, key: str) -> list[str]:
        keys = self._keys
        if key not in keys:
            return []
        if keys.count(key) == 1:
            values = [self._value(keys.index(key))]
        else:
            values = [self._value(i) for i in self._positions(key)]
        if key not in LIST_HEADERS:
            return values
        out: list[str] = []
        for value in values:
            if "," not in value:
                out.append(value)
                continue
            try:
                out += [v.strip(_LWS) for v in split_list(value)]
            except ParseError as exc:
                raise self._wrap(exc, key) from None
        return out

    def headers(self) -> list[tuple[str, str]]:
        """Every header line as ``(name as written, unfolded value)``, in order."""
        lines = self._lines
        keys = self._keys
        return [
            (lines[i][: lines[i].find(":")].strip(), self._value(i))
            for i in range(1, len(lines))
            if keys[i] != _BAD_LINE
        ]

    def count(self, name: str) -> int:
        """How many header lines carry ``name``."""
        return self._keys.count(_key_of(name))

    # -- structured access ----------------------------------------------

    def _wrap(self, exc: ParseError, key: str) -> ParseError:
        if exc.message is self:  # already names its header
            return exc
        return ParseError(f"{pretty_name(key)}: {exc.reason}", exc.status_hint, self)

    def _first(self, key: str) -> str | None:
        keys = self._keys
        return self._value(keys.index(key)) if key in keys else None

    def _required(self, key: str) -> str:
        keys = self._keys
        if key not in keys:
            raise ParseError(f"missing {pretty_name(key)} header", 400, self)
        return self._value(keys.index(key))

    @property
    def start_line(self) -> str:
        return self._lines[0]

    def _address_parser(self, key: str) -> Callable[[str], Address]:
        defects = self._defects
        return lambda value: parse_address(value, defects, key)

    def _addresses(self, key: str) -> LazyValues[Address]:
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = _list_values(self, key, self._address_parser(key))
        return cached

    def _address(self, key: str) -> Address:
        cached = self._cache.get(key)
        if cached is None:
            keys = self._keys
            if key not in keys:
                raise ParseError(f"missing {pretty_name(key)} header", 400, self)
            try:
                cached = parse_address(
                    _line_value(self._lines[keys.index(key)]), self._defects, key
                )
            except ParseError as exc:
                raise self._wrap(exc, key) from None
            self._cache[key] = cached
        return cached

    @property
    def call_id(self) -> str:
        """Kamailio: ``$ci``. The first Call-ID; ParseError(400) when missing."""
        keys = self._keys
        if "call-id" not in keys:
            raise ParseError("missing Call-ID header", 400, self)
        value = _line_value(self._lines[keys.index("call-id")])
        if not value:
            raise ParseError("empty Call-ID", 400, self)
        return value

    @property
    def cseq(self) -> CSeq:
        """Kamailio: ``$cs`` and ``$cs(method)``."""
        cached = self._cache.get("cseq")
        if cached is None:
            keys = self._keys
            if "cseq" not in keys:
                raise ParseError("missing CSeq header", 400, self)
            try:
                cached = self._cache["cseq"] = parse_cseq(
                    _line_value(self._lines[keys.index("cseq")])
                )
            except ParseError as exc:
                raise self._wrap(exc, "cseq") from None
        return cached

    @property
    def from_(self) -> Address:
        """Kamailio: ``$fu``, ``$fn``, ``$ft``. ParseError(400) when missing."""
        return self._address("from")

    @property
    def to(self) -> Address:
        """Kamailio: ``$tu``, ``$tn``, ``$tt``. ParseError(400) when missing."""
        return self._address("to")

    @property
    def via(self) -> LazyValues[Via]:
        """Every Via value, topmost first, each parsed when first read.

        Kamailio: ``$hdr(Via)``, ``@via[1]``.
        """
        cached = self._cache.get("via")
        if cached is None:
            cached = self._cache["via"] = _list_values(self, "via", parse_via)
        return cached

    @property
    def contact_is_star(self) -> bool:
        """True for ``Contact: *`` (a REGISTER removing every binding)."""
        return self._first("contact") == "*" and self._keys.count("contact") == 1

    @property
    def contact(self) -> Sequence[Address]:
        """Every Contact value; empty for ``Contact: *`` (see contact_is_star)."""
        cached = self._cache.get("contact")
        if cached is None:
            cached = self._addresses("contact")
        if len(cached._texts) == 1 and "*" in cached._texts[0] and self.contact_is_star:
            return ()
        return cached

    @property
    def route(self) -> Sequence[Address]:
        return self._addresses("route")

    @property
    def record_route(self) -> Sequence[Address]:
        return self._addresses("record-route")

    @property
    def max_forwards(self) -> int | None:
        """Kamailio: ``$hdr(Max-Forwards)``, the maxfwd module. None when absent."""
        cached = self._cache.get("max-forwards", self)
        if cached is not self:
            return cached  # type: ignore[no-any-return]
        keys = self._keys
        mf = None
        if "max-forwards" in keys:
            value = _line_value(self._lines[keys.index("max-forwards")])
            if 0 < len(value) < 4 and value.isdigit() and value.isascii():
                mf = int(value)  # what parse_uint would give, the short way
            else:
                try:
                    mf = parse_uint(value, "Max-Forwards")
                except ParseError as exc:
                    raise self._wrap(exc, "max-forwards") from None
            if mf > 255:
                self._defect(f"Max-Forwards {mf} above 255", "max-forwards")
        self._cache["max-forwards"] = mf
        return mf

    @max_forwards.setter
    def max_forwards(self, value: int) -> None:
        if not 0 <= value <= 255:
            raise LocalProtocolError(f"Max-Forwards {value} out of range")
        self.replace_header("Max-Forwards", str(value))

    @property
    def expires(self) -> int | None:
        """The Expires header in seconds (values above 2**32-1 are clamped)."""
        value = self._first("expires")
        if value is None:
            return None
        try:
            return parse_delta_seconds(value)
        except ParseError as exc:
            raise self._wrap(exc, "expires") from None

    @property
    def content_type(self) -> str | None:
        """Kamailio: ``$cT``. The whole value, parameters included."""
        return self._first("content-type")

    @property
    def content_length(self) -> int:
        """Kamailio: ``$cl``. Always the body's length: sipcore keeps them equal."""
        return len(self._body)

    @property
    def authorization(self) -> tuple[Credentials, ...]:
        return self._credentials("authorization")

    @property
    def proxy_authorization(self) -> tuple[Credentials, ...]:
        return self._credentials("proxy-authorization")

    def _credentials(self, key: str) -> tuple[Credentials, ...]:
        cached = self._cache.get(key)
        if cached is None:
            try:
                cached = tuple(parse_credentials(v) for v in self.get_all(key))
            except ParseError as exc:
                raise self._wrap(exc, key) from None
            self._cache[key] = cached
        return cached

    @property
    def body(self) -> bytes:
        """Kamailio: ``$rb``."""
        return self._body

    @property
    def defects(self) -> tuple[Defect, ...]:
        """Deviations tolerated so far (framing, and headers read so far).

        :meth:`validate` reads every header, so after it this is complete.
        """
        return tuple(self._defects or ())

    # -- validation -------------------------------------------------------

    def validate(self) -> tuple[Defect, ...]:
        """Read every header sipcore knows and check RFC 3261's rules.

        Raises :class:`ParseError` for what no element can process (missing
        or duplicated mandatory headers, malformed values, CSeq out of
        range or not matching the method); returns the tolerated defects.
        """
        for key in _SINGLE:
            if self._keys.count(key) > 1:
                raise ParseError(f"more than one {pretty_name(key)} header", 400, self)
        for key in ("via", "call-id", "cseq", "from", "to"):
            if key not in self._keys:
                raise ParseError(f"missing {pretty_name(key)} header", 400, self)
        if not self.via:
            raise ParseError("missing Via header", 400, self)
        self.call_id, self.cseq, self.max_forwards, self.expires  # noqa: B018 - parse for errors
        self.authorization, self.proxy_authorization  # noqa: B018
        for via in self.via:
            via.rport, via.ttl  # noqa: B018
        addresses = [
            ("from", [self.from_]),
            ("to", [self.to]),
            ("contact", self.contact),
            ("route", self.route),
            ("record-route", self.record_route),
        ]
        for key, values in addresses:
            for address in values:
                try:
                    address.uri  # noqa: B018
                except ParseError as exc:
                    raise self._wrap(exc, key) from None
        for contact in self.contact:
            contact.expires, contact.q  # noqa: B018
        date = self._first("date")
        if date is not None and not date.endswith(" GMT"):
            self._defect("Date not in GMT (RFC 3261 section 20.17)", "date")
        self._validate_start()
        return self.defects

    def _validate_start(self) -> None:
        raise NotImplementedError

    def _canonical_start(self) -> str:
        raise NotImplementedError

    # -- edits --------------------------------------------------------------

    def _edited(self, key: str) -> None:
        self._raw = None
        self._cache.pop(key, None)
        self._keys = self._build_keys(_EDIT_LIMITS)

    def _eol_insert(self, pos: int) -> None:
        # A line inserted at ``pos`` gets a CRLF after the line before it.
        if self._eols is not None:
            self._eols.insert(pos - 1, "\r\n")

    @staticmethod
    def _line(name: str, value: str) -> str:
        if not is_token(name):
            raise LocalProtocolError(f"bad header name {name!r}")
        if "\r" in value or "\n" in value:
            raise LocalProtocolError("header value with a line break")
        return f"{name}: {value}"

    def add_header(self, name: str, value: str, *, first: bool = False) -> None:
        """Add a header line. ``first=True`` puts it above every line of the
        same name (a new top Via, a new Record-Route); otherwise it goes
        after the last line of that name, or at the end.

        Kamailio: ``append_hf`` / ``insert_hf``.
        """
        line = self._line(name, value)
        key = _key_of(name)
        idx = self._positions(key)
        if not idx:
            pos = 1 if first else len(self._lines)
        else:
            pos = idx[0] if first else idx[-1] + 1
        self._lines.insert(pos, line)
        self._eol_insert(pos)
        self._edited(key)

    def remove_header(self, name: str) -> int:
        """Remove every line of a header; returns how many went. Kamailio: ``remove_hf``."""
        key = _key_of(name)
        idx = self._positions(key)
        if not idx:
            return 0
        for i in reversed(idx):
            del self._lines[i]
            if self._eols is not None:
                del self._eols[i - 1]
        self._edited(key)
        return len(idx)

    def replace_header(self, name: str, value: str) -> None:
        """Set a header to one value: the first line is rewritten in place
        and any further lines of that name are removed."""
        line = self._line(name, value)
        key = _key_of(name)
        idx = self._positions(key)
        if not idx:
            self.add_header(name, value)
            return
        self._lines[idx[0]] = line
        for i in reversed(idx[1:]):
            del self._lines[i]
            if self._eols is not None:
                del self._eols[i - 1]
        self._edited(key)

    def remove_first(self, name: str) -> str | None:
        """Remove the first value of a header (the top Via, the first Route)
        and return it; a line holding several values keeps the others."""
        key = _key_of(name)
        idx = self._positions(key)
        if not idx:
            return None
        i = idx[0]
        value = self._value(i)
        parts = split_list(value) if key in LIST_HEADERS else [value]
        if len(parts) == 1:
            del self._lines[i]
            if self._eols is not None:
                del self._eols[i - 1]
        else:
            written = self._lines[i][: self._lines[i].find(":")].strip()
            self._lines[i] = f"{written}: {','.join(p.strip(_LWS) for p in parts[1:])}"
        self._edited(key)
        return parts[0].strip(_LWS)

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        """Replace the body and keep Content-Length right. Kamailio: ``set_body``."""
        self._body = bytes(body)
        if content_type is not None:
            self.replace_header("Content-Type", content_type)
        idx = self._positions("content-length")
        if idx:
            written = self._lines[idx[0]][: self._lines[idx[0]].find(":")].strip()
            self.replace_header(written, str(len(self._body)))
        else:
            self.add_header("Content-Length", str(len(self._body)))
        self._raw = None

    # -- serialization --------------------------------------------------------

    def __bytes__(self) -> bytes:
        raw = self._raw
        if raw is not None:
            return raw
        # An edited message is one this element sends on: the start line is
        # written canonically (RFC 4475 3.1.2.4-6: a tolerated malformed
        # request line must not be forwarded) and the header section ends.
        self._lines[0] = self._canonical_start()
        sep = self._sep if self._sep in ("\r\n\r\n", "\r\n\n", "\n\n") else "\r\n\r\n"
        if self._eols is None:
            head = "\r\n".join(self._lines)
        else:
            parts = []
            for line, eol in zip(self._lines, self._eols, strict=False):
                parts.append(line)
                parts.append(eol)
            parts.append(self._lines[-1])
            head = "".join(parts)
        raw = (head + sep).encode(ENCODING, ERRORS) + self._body
        self._raw = raw
        return raw

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.headers())


class Request(Message):
    """A SIP request. Build one with :func:`sipcore.make_request`."""

    __slots__ = ("_uri_text", "method", "version")
    is_request = True

    method: str
    version: str
    _uri_text: str

    @property
    def uri(self) -> URI:
        """The Request-URI (Kamailio: ``$ru``), parsed on first access."""
        cached = self._cache.get(":uri")
        if cached is None:
            try:
                cached = self._cache[":uri"] = parse_uri(self._uri_text)
            except ParseError as exc:
                raise ParseError(f"Request-URI: {exc.reason}", exc.status_hint, self) from None
        return cached

    @uri.setter
    def uri(self, value: URI | str) -> None:
        """Rewrite the Request-URI (Kamailio: ``$ru = ...``, ``rewriteuri``)."""
        text = str(value)
        parsed = parse_uri(text) if isinstance(value, str) else value
        self._uri_text = text
        self._lines[0] = self._canonical_start()
        self._cache[":uri"] = parsed
        self._raw = None

    @property
    def uri_text(self) -> str:
        """The Request-URI as written, without parsing it (Kamailio hashes
        ``$ru`` as text: dispatcher algorithm 3)."""
        return self._uri_text

    def _canonical_start(self) -> str:
        return f"{self.method} {self._uri_text} {SIP_VERSION}"

    def _validate_start(self) -> None:
        uri = self.uri
        if isinstance(uri, SipURI) and uri.headers:
            self._defect("header component in the Request-URI", None)
        cseq = self.cseq
        if cseq.method != self.method:
            raise ParseError(f"CSeq method {cseq.method} does not match {self.method}", 400, self)
        if "max-forwards" not in self._keys:
            self._defect("missing Max-Forwards (RFC 2543 element?)", "max-forwards")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self._uri_text}>"


class Response(Message):
    """A SIP response. Build one with :func:`sipcore.make_response`."""

    __slots__ = ("reason", "status_code", "version")
    is_request = False

    status_code: int
    reason: str
    version: str

    def _canonical_start(self) -> str:
        return f"{SIP_VERSION} {self.status_code} {self.reason}"

    def _validate_start(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"<Response {self.status_code} {self.reason}>"


def _list_values(msg: Message, key: str, parse: Callable[[str], _T]) -> LazyValues[_T]:
    """The values of list header ``key``, each parsed when first read.

    Lines without a comma hold one value each: their values are cut out
    only when read. Any comma sends the lines through split_list, so a
    malformed list raises here, as it always did.
    """
    keys = msg._keys
    lines = msg._lines
    count = keys.count(key)
    if count == 1:
        line = lines[keys.index(key)]
        if "," not in line:  # a header name never holds a comma
            return _lazy_values(key, [line], parse, True)
    elif count:
        i = keys.index(key)
        picked = [lines[i]]
        for _ in range(count - 1):
            i = keys.index(key, i + 1)
            picked.append(lines[i])
        for line in picked:
            if "," in line:
                break
        else:
            return _lazy_values(key, picked, parse, True)
    return _lazy_values(key, msg._values_of(key), parse, False)


def _request_line(line: str, defects: list[Defect] | None, limits: Limits) -> tuple[str, str, str]:
    parts = line.split(" ")
    if len(parts) == 3 and parts[0] and parts[1] and parts[2]:
        method, uri, version = parts
    else:
        words = line.split()
        if len(words) < 3:
            raise ParseError(f"bad request line {line[:80]!r}", 400)
        method, version = words[0], words[-1]
        if len(words) == 3:
            tolerate(defects, "extra whitespace in the request line", None)
            uri = words[1]
        else:
            tolerate(defects, "whitespace inside the Request-URI", None)
            uri = "".join(words[1:-1])
    if not is_token(method):
        raise ParseError(f"bad method {method[:40]!r}", 400)
    if len(uri) > limits.max_uri_length:
        raise ParseError("Request-URI too long", 414)
    if uri.startswith("<") and uri.endswith(">"):
        tolerate(defects, "Request-URI enclosed in <>", None)
        uri = uri[1:-1]
    return method, uri, version


def _check_version(version: str) -> bool:
    return version == SIP_VERSION or version.upper() == SIP_VERSION


# A line break followed by SP or HTAB is a fold (RFC 3261 section 7.3.1);
# any other ends a header line. A fixed-width lookahead: no backtracking.
_LINE_END_CRLF: Final = re.compile(r"\r\n(?![ \t])")
_LINE_END_ANY: Final = re.compile(r"(\r?\n)(?![ \t])")


def _split_head(text: str) -> tuple[list[str], list[str] | None]:
    """Header section text -> (lines with folded continuations merged, eols).

    Each merged line is cut out of the text once: many folds cost no more
    than as many octets without them.
    """
    folded = "\n " in text or "\n\t" in text
    if text.count("\n") == text.count("\r\n"):
        if not folded:
            return text.split("\r\n"), None
        # The start line never takes a continuation: split it off first.
        first, rest = text.split("\r\n", 1)
        lines = _LINE_END_CRLF.split(rest)
        lines.insert(0, first)
        return lines, None
    # Bare LF line ends (lenient): keep each line's own terminator.
    if not folded:
        lines = []
        eols = []
        for piece in text.split("\n"):
            if piece.endswith("\r"):
                lines.append(piece[:-1])
                eols.append("\r\n")
            else:
                lines.append(piece)
                eols.append("\n")
        eols.pop()  # the last line's terminator belongs to the separator
        return lines, eols
    nl = text.find("\n")
    cr = nl > 0 and text[nl - 1] == "\r"
    parts = _LINE_END_ANY.split(text[nl + 1 :])
    lines = [text[: nl - 1] if cr else text[:nl]]
    lines += parts[0::2]
    eols = ["\r\n" if cr else "\n"]
    eols += parts[1::2]
    if lines[-1].endswith("\r"):
        lines[-1] = lines[-1][:-1]  # as the unfolded branch does
    return lines, eols


def _locate_head(data: bytes, start: int, defects: list[Defect] | None) -> tuple[int, int, str]:
    """(end of the header text, start of the body, separator text)."""
    end = data.find(b"\r\n\r\n", start)
    if end >= 0:
        lf = data.find(b"\n\n", start, end)
        if lf < 0:
            return end, end + 4, "\r\n\r\n"
        end = lf
    else:
        end = data.find(b"\n\n", start)
    if end >= 0:
        tolerate(defects, "bare LF line ends", None)
        sep = "\r\n\n" if data[end - 1 : end] == b"\r" else "\n\n"
        if sep == "\r\n\n":
            end -= 1
        return end, end + len(sep), sep
    # No empty line at all: the datagram ends inside the header section.
    tolerate(defects, "no empty line after the header section", None)
    n = len(data)
    if data.endswith(b"\r\n"):
        return n - 2, n, "\r\n"
    if data.endswith(b"\n"):
        return n - 1, n, "\n"
    return n, n, ""


def _start_line(
    lines: list[str], eols: list[str] | None, defects: list[Defect] | None, limits: Limits
) -> Request | Response:
    """A message object with its start line parsed (headers not yet attached)."""
    first = lines[0]
    msg: Request | Response
    if first[:4].upper() == "SIP/":
        version, _, rest = first.partition(" ")
        code, _, reason = rest.partition(" ")
        if not (len(code) == 3 and code.isascii() and code.isdigit() and "1" <= code[0] <= "6"):
            raise ParseError(f"bad status code {code[:20]!r}", 400)
        if not _check_version(version):
            raise ParseError(f"unsupported version {version[:20]!r}", 505)
        msg = Response.__new__(Response)
        msg.status_code = int(code)
        msg.reason = reason
        msg.version = version
        return msg
    method, uri, version = _request_line(first, defects, limits)
    if version[:4].upper() != "SIP/":
        raise ParseError(f"not a SIP request line: {first[:80]!r}", 400)
    msg = Request.__new__(Request)
    msg.method = method
    msg._uri_text = uri
    msg.version = version
    if not _check_version(version):
        msg._setup(lines, b"", eols=eols, defects=defects, limits=limits)
        raise ParseError(f"unsupported version {version[:20]!r}", 505, msg)
    return msg


# Methods known to be tokens: the fast path skips the per-character check.
_METHODS: Final = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "PRACK", "SUBSCRIBE", "NOTIFY"}
    | {"PUBLISH", "INFO", "REFER", "MESSAGE", "UPDATE"}
)


def _fast_start_line(first: str, limits: Limits) -> Request | Response | None:
    """The message object for a plain SIP/2.0 start line; None when unsure."""
    if first.startswith("SIP/2.0 "):
        code, _, reason = first[8:].partition(" ")
        if len(code) != 3 or not (code.isdigit() and code.isascii() and "1" <= code[0] <= "6"):
            return None
        response = Response.__new__(Response)
        response.status_code = int(code)
        response.reason = reason
        response.version = SIP_VERSION
        return response
    method, _, rest = first.partition(" ")
    uri, _, version = rest.partition(" ")
    # The version being exactly SIP/2.0 means there were exactly two spaces.
    if (
        version != SIP_VERSION
        or method not in _METHODS
        or not uri
        or uri[0] == "<"
        or len(uri) > limits.max_uri_length
    ):
        return None
    request = Request.__new__(Request)
    request.method = method
    request._uri_text = uri
    request.version = SIP_VERSION
    return request


def parse_head(head: bytes, defects: list[Defect] | None, limits: Limits) -> Request | Response:
    """Parse a CRLF header section (no body): used by streams and builders."""
    text = head.decode(ENCODING, ERRORS)
    lines, eols = _split_head(text)
    if len(text) > limits.max_header_length:
        for line in lines:
            if len(line) > limits.max_header_length:
                raise ParseError(f"header line longer than {limits.max_header_length}", 400)
    msg = _start_line(lines, eols, defects, limits)
    msg._setup(lines, b"", eols=eols, defects=defects, limits=limits)
    _refuse_bare_cr(text, msg)
    return msg


def _content_length(msg: Message) -> int | None:
    keys = msg._keys
    if "content-length" not in keys:
        return None
    if keys.count("content-length") == 1:
        value = msg._value(keys.index("content-length"))
        if len(value) < 10 and value.isascii() and value.isdigit():
            return int(value)
    values = {msg._value(i) for i in msg._positions("content-length")}
    if len(values) > 1:
        raise ParseError("conflicting Content-Length values", 400, msg)
    try:
        return parse_uint(values.pop(), "Content-Length")
    except ParseError as exc:
        raise ParseError(exc.reason, 400, msg) from None


def parse_message(
    data: bytes | bytearray | memoryview,
    *,
    strict: bool = False,
    limits: Limits | None = None,
) -> Request | Response:
    """Parse one SIP message from a datagram.

    Lenient by default: deviations RFC 4475 lets an element tolerate are
    recorded in ``msg.defects``. With ``strict=True`` they raise, and the
    message is validated (:meth:`Message.validate`) before it is returned.
    Any input either gives a message or raises :class:`ParseError`.

    Without a Content-Length the body is the rest of the datagram (RFC 3261
    section 18.3); octets after the declared length are not part of the
    message and are not serialized again.
    """
    if type(data) is not bytes:
        data = bytes(data)
    if limits is None:
        limits = DEFAULT_LIMITS
    n = len(data)
    if n > limits.max_message_size:
        raise ParseError(f"message larger than {limits.max_message_size} octets", 413)
    defects: list[Defect] | None = None if strict else []
    start = 0
    while data.startswith(b"\r\n", start):  # RFC 3261 section 7.5: skip leading CRLFs
        start += 2
    if start >= n:
        raise ParseError("empty message", 400)
    head = None
    if _parse_head_c is not None:
        head = _parse_head_c(
            data,
            start,
            limits.max_header_length,
            limits.max_headers,
            limits.max_uri_length,
            _NAME_CACHE,
            defects,
        )
    if head is None:
        head = _parse_head_fast(data, start, limits, defects)
    msg: Request | Response | None = None
    if head is not None:
        msg, end, length_or_unknown = head
        body_start = end + 4
        length = _content_length(msg) if length_or_unknown < 0 else length_or_unknown
    if msg is None:
        msg = _parse_head_slow(data, start, defects, limits)
        body_start = msg._body_start
        length = _content_length(msg)
    if length is None:
        body = data[body_start:]
        stop = n
    else:
        stop = body_start + length
        if stop > n:
            msg._body = data[body_start:]
            msg._raw = None
            raise ParseError(
                f"Content-Length {length} exceeds the {n - body_start} octets received", 400, msg
            )
        body = data[body_start:stop]
    msg._body = body
    msg._raw = data if start == 0 and stop == n else data[start:stop]
    if strict:
        msg.validate()
    return msg


def _parse_head_fast(
    data: bytes, start: int, limits: Limits, defects: list[Defect] | None
) -> tuple[Request | Response, int, int] | None:
    """The fast path of parse_message: ``(msg, end, length)`` for a header
    section :func:`_frame` frames with a plain SIP/2.0 start line, the
    message's header slots set (no body yet); ``length`` is the
    Content-Length when it is the last line, there once, of 1 to 9 digits,
    -1 when :func:`_content_length` must read it. None: the careful path.
    """
    framed = _frame(data, start, limits.max_header_length, limits.max_headers, _NAME_CACHE)
    if framed is None:
        return None
    end, lines, keys = framed
    msg = _fast_start_line(lines[0], limits)
    if msg is None:
        return None
    msg._lines = lines
    msg._keys = keys
    msg._eols = None
    msg._sep = "\r\n\r\n"
    msg._cache = {}
    msg._defects = defects
    length = -1
    # Content-Length is most often the last line, and there once.
    if keys[-1] == "content-length" and keys.count("content-length") == 1:
        line = lines[-1]
        value = line[line.find(":") + 1 :].strip(_LWS)
        if len(value) < 10 and value.isdigit() and value.isascii():
            length = int(value)
    return msg, end, length


def _frame(
    data: bytes, start: int, max_header_length: int, max_headers: int, names: dict[str, str]
) -> tuple[int, list[str], list[str]] | None:
    """The framing fast path: ``(end, lines, keys)`` when the header section
    ends at the first CRLF CRLF no more than ``max_header_length`` octets
    after ``start``, every CR and LF in it is one CRLF, it has at most
    ``max_headers`` lines and each header line's name as written is a key
    of ``names``; None for anything else, left to the careful path.
    """
    end = data.find(b"\r\n\r\n", start)
    if end < 0 or end - start > max_header_length:
        return None
    text = data[start:end].decode(ENCODING, ERRORS)
    lines = text.split("\r\n")
    nlines = len(lines)
    # More lines than the header limit: over it, or (folds) not one header
    # per line. Exactly one CR and one LF per line end: no bare LF (lenient)
    # and no bare CR (refused), both the careful path's to handle.
    crlfs = nlines - 1
    if nlines > max_headers or not text.count("\n") == crlfs == text.count("\r"):
        return None
    get = names.get
    keys = [get(line.partition(":")[0]) for line in lines]
    keys[0] = ":start"
    if None in keys:
        return None
    return end, lines, keys  # type: ignore[return-value]


def _parse_head_slow(
    data: bytes, start: int, defects: list[Defect] | None, limits: Limits
) -> Request | Response:
    """Bare LF line ends, folding, new header names, limits: the careful way."""
    end, body_start, sep = _locate_head(data, start, defects)
    text = data[start:end].decode(ENCODING, ERRORS)
    lines, eols = _split_head(text)
    if len(text) > limits.max_header_length:
        for line in lines:
            if len(line) > limits.max_header_length:
                raise ParseError(f"header line longer than {limits.max_header_length}", 400)
    msg = _start_line(lines, eols, defects, limits)
    msg._setup(lines, b"", eols=eols, sep=sep, defects=defects, limits=limits)
    msg._body_start = body_start
    _refuse_bare_cr(text, msg)
    return msg


def _refuse_bare_cr(text: str, msg: Message) -> None:
    """A CR not followed by LF inside the header section: no element may pass
    it on (a receiver could take it for a line end: header injection)."""
    if text.count("\r") != text.count("\r\n"):
        raise ParseError("bare CR in the header section", 400, msg)


def build_message(
    start_line: str, headers: Iterable[tuple[str, str]], body: bytes
) -> Request | Response:
    """Assemble a message from parts (used by the builders)."""
    lines = [start_line]
    for name, value in headers:
        lines.append(Message._line(name, value))
    data = "\r\n".join(lines).encode(ENCODING, ERRORS)
    msg = parse_head(data, [], _EDIT_LIMITS)
    msg._body = bytes(body)
    return msg


# The compiled twins (see _accel), when built: same results, less time. The
# Python twins keep these names too (tests compare the two). The compiled
# frame() is _frame's twin for those tests: parse_head() does its framing.
line_value_py = _line_value
list_values_py = _list_values
_parse_head_c = None
if speedups is not None:
    speedups.configure(
        line_value=_line_value,
        Request=Request,
        Response=Response,
        LazyValues=LazyValues,
        UNPARSED=_UNPARSED,
        METHODS=_METHODS,
        list=_list_values,
    )
    _parse_head_c = speedups.parse_head
    _line_value = speedups.line_value
    _list_values = speedups.list_values
