"""URIs: ``sip:``/``sips:`` (RFC 3261 section 19.1), ``tel:`` (RFC 3966) and
any other absolute URI kept opaque.

This module owns URI parsing, rendering with the right %-escaping, and
equality per RFC 3261 section 19.1.4. It does no DNS and no I/O.
"""

from __future__ import annotations

import enum
import ipaddress
import re
import string
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias
from urllib.parse import quote, unquote

import attrs

from ._accel import speedups
from ._errors import ParseError

__all__ = ["URI", "AbsoluteURI", "Params", "SipURI", "TelURI", "parse_uri"]

_ALNUM = frozenset(string.ascii_letters + string.digits)
_SCHEME_CHARS = _ALNUM | frozenset("+-.")
_HOSTNAME_CHARS = _ALNUM | frozenset("-._")  # "_" is not in the ABNF; seen in the wild
_IPV6_CHARS = frozenset(string.hexdigits + ":.")
_DIGITS = frozenset(string.digits)
# Octets that never appear unescaped in a SIP URI: a lenient parser still
# refuses them because they would change how the message is framed or read.
_FORBIDDEN = frozenset(' \t\r\n<>"\x00')

# What may stay unescaped when rendering each component (RFC 3261 section 25.1);
# quote() always keeps ASCII letters, digits and "_.-~".
_SAFE_USER = "!*'()&=+$,;?/"
_SAFE_PASSWORD = "!*'()&=+$,"
_SAFE_PARAM = "!*'()[]/:&+$"
_SAFE_HEADER = "!*'()[]/?:+$"

MAX_PORT = 65535


def _unescape(text: str) -> str:
    if "%" not in text:
        return text
    return unquote(text, errors="surrogateescape")


def _escape(text: str, safe: str) -> str:
    return quote(text, safe=safe, errors="surrogateescape")


def slot_setters(cls: type, *names: str) -> tuple[Callable[[Any, Any], None], ...]:
    """The setters of ``cls``'s slots ``names``.

    The fast paths build frozen values they have already checked with
    ``object.__new__`` and these: attrs' ``__init__`` and
    ``object.__setattr__`` cost about twice as much per field.
    """
    return tuple(cls.__dict__[name].__set__ for name in names)


class _ParamsText:
    # A parsed Params may start as its text (see lazy_params): lookups read
    # the text, and items_ is split out of it only when first needed. None
    # once split, and for a Params built from items. A plain slot, not an
    # attrs field: attrs.fields(), asdict() and eq/hash/repr never see it.
    __slots__ = ("_text",)
    _text: str | None


@attrs.frozen
class Params(_ParamsText, Mapping[str, "str | None"]):
    """Ordered ``;name=value`` parameters; names compare case-insensitively.

    A parameter written without ``=`` (``;lr``) has the value ``None``.
    Values keep their case: whether case matters depends on the parameter
    (a ``tag`` is case-sensitive, a ``transport`` is not).
    """

    items_: tuple[tuple[str, str | None], ...] = ()

    def __attrs_post_init__(self) -> None:
        _set_params_text(self, None)

    if not TYPE_CHECKING:  # hidden from mypy, which would then allow any attribute

        def __getattr__(self, name):
            # Reached only for an unset slot: items_ of a lazy Params, or
            # _text of one that pickle or copy made without __init__.
            if name == "_text":
                _set_params_text(self, None)
                return None
            if name != "items_":
                raise AttributeError(name)
            text = self._text
            if text is None:  # split meanwhile (items_ is set before _text is cleared)
                return object.__getattribute__(self, name)
            items = tuple(
                (key, value if eq else None)
                for key, eq, value in (part.partition("=") for part in text.split(";"))
            )
            _set_params_items(self, items)
            _set_params_text(self, None)
            return items

    def _find(self, name: str) -> int:
        for i, (key, _) in enumerate(self.items_):  # exact spelling first: the common case
            if key == name:
                return i
        lname = name.lower()
        for i, (key, _) in enumerate(self.items_):
            if key.lower() == lname:
                return i
        return -1

    def _lookup(self, text: str, name: str) -> str | _Missing | None:
        """What ``get(name)`` finds in the text of a lazy Params; _MISSING
        when absent; _UNSURE when only the split items can tell."""
        if not name or ";" in name or "=" in name:
            return _UNSURE
        found = _find_param(text, name)
        if found is _MISSING:
            if not (text.isascii() and name.isascii()):
                return _UNSURE  # lower() may change lengths
            found = _find_param(text.lower(), name.lower(), text)
        return found

    def __getitem__(self, name: str) -> str | None:
        text = self._text
        if text is not None:
            found = self._lookup(text, name)
            if found is _MISSING:
                raise KeyError(name)
            if found is not _UNSURE:
                return found
        i = self._find(name)
        if i < 0:
            raise KeyError(name)
        return self.items_[i][1]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        text = self._text
        if text is not None:
            found = self._lookup(text, name)
            if found is not _UNSURE:
                return found is not _MISSING
        return self._find(name) >= 0

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        text = self._text
        if text is not None:
            found = self._lookup(text, name)
            if found is _MISSING:
                return default
            if found is not _UNSURE:
                return found
        for key, value in self.items_:
            if key == name:
                return value
        i = self._find(name)
        return default if i < 0 else self.items_[i][1]

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self.items_)

    def __len__(self) -> int:
        text = self._text
        if text is not None:
            return text.count(";") + 1
        return len(self.items_)

    def __bool__(self) -> bool:
        return self._text is not None or bool(self.items_)

    def with_param(self, name: str, value: str | None = None) -> Params:
        """A copy with ``name`` set (replaced in place, or appended)."""
        i = self._find(name)
        items = list(self.items_)
        if i < 0:
            items.append((name, value))
        else:
            items[i] = (items[i][0], value)
        return Params(tuple(items))

    def without(self, name: str) -> Params:
        """A copy without any parameter called ``name``."""
        lname = name.lower()
        return Params(tuple(kv for kv in self.items_ if kv[0].lower() != lname))

    def render(self, safe: str | None = None) -> str:
        """``;a=b;c`` text; with ``safe``, names and values are %-escaped."""
        text = self._text
        if text is not None and safe is None:
            return ";" + text
        parts = []
        for key, value in self.items_:
            if safe is not None:
                key = _escape(key, safe)
                value = None if value is None else _escape(value, safe)
            parts.append(key if value is None else f"{key}={value}")
        return "".join(";" + p for p in parts)


_set_params_text, _set_params_items = slot_setters(_ParamsText, "_text") + slot_setters(
    Params, "items_"
)


class _Missing(enum.Enum):
    MISSING = "MISSING"
    UNSURE = "UNSURE"


_MISSING: Final = _Missing.MISSING
_UNSURE: Final = _Missing.UNSURE

EMPTY_PARAMS = Params()


def _find_param(
    text: str, name: str, original: str | None = None
) -> str | Literal[_Missing.MISSING] | None:
    """The value of the first ``name`` parameter in plain parameter text
    (``a=b;c``: see lazy_params), sliced from ``original`` when given."""
    n = len(name)
    i = text.find(name)
    while i >= 0:
        if i == 0 or text[i - 1] == ";":
            end = i + n
            after = text[end : end + 1]
            if after == "=":
                out = text if original is None else original
                stop = text.find(";", end)
                return out[end + 1 :] if stop < 0 else out[end + 1 : stop]
            if not after or after == ";":
                return None
        i = text.find(name, i + 1)
    return _MISSING


def get_param(params: Params, name: str) -> str | None:
    """``params.get(name)`` for a lowercase name without ``;`` or ``=``
    (``"tag"``, ``"branch"``): the accessors' short way to the common case."""
    text = params._text
    if text is not None:
        found = _find_param(text, name)
        if found is not _MISSING:
            return found
    elif params is EMPTY_PARAMS:
        return None
    return params.get(name)


def _plain_params_pattern(excluded: str) -> str:
    name = rf'[^;="%\s{excluded}]++'
    value = rf'(?:=[^;"%\s{excluded}]*+)?'
    return rf"{name}{value}(?:;{name}{value})*+"


# name[=value] pairs separated by ";": names non-empty, no quotes, "%" or
# whitespace anywhere (\s is what str.strip() removes, Unicode's included).
# Such text splits on ";" and "=" alone into what parse_params and
# parse_header_params would make of it. Possessive quantifiers: linear.
PLAIN_PARAMS: Final = _plain_params_pattern("")
_PLAIN_PARAMS: Final = re.compile(PLAIN_PARAMS)


def plain_params(text: str) -> Params:
    """A Params for text PLAIN_PARAMS matches, split only when its items
    are needed (lookups read the text)."""
    params = object.__new__(Params)
    _set_params_text(params, text)
    return params


def lazy_params(text: str) -> Params | None:
    """plain_params(text) when PLAIN_PARAMS matches ``text`` (``a=b;c``, no
    leading ``;``), else None: the careful parsers get the rest."""
    if _PLAIN_PARAMS.fullmatch(text) is None:
        return None
    return plain_params(text)


def parse_params(text: str, *, unescape: bool = False, what: str = "parameter") -> Params:
    """Parse ``a=b;c;d=e`` (no leading ``;``). Empty parameters are an error."""
    lazy = lazy_params(text)
    return _parse_params_careful(text, unescape, what) if lazy is None else lazy


def _parse_params_careful(text: str, unescape: bool = False, what: str = "parameter") -> Params:
    items = []
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        name = name.strip()
        if not name:
            raise ParseError(f"empty {what}")
        if unescape:
            items.append((_unescape(name), _unescape(value.strip()) if eq else None))
        else:
            items.append((name, value.strip() if eq else None))
    return Params(tuple(items))


def _check_host(host: str) -> None:
    if not host:
        raise ParseError("empty host")
    if host[0] == "[":
        if host[-1] != "]" or len(host) < 4 or not _IPV6_CHARS.issuperset(host[1:-1]):
            raise ParseError(f"bad IPv6 reference {host!r}")
        if host.count(":") < 2:
            raise ParseError(f"bad IPv6 reference {host!r}")
    elif not _HOSTNAME_CHARS.issuperset(host):
        if ":" in host:
            raise ParseError(f"IPv6 address without [ ] in {host!r}")
        raise ParseError(f"bad host {host!r}")


def split_hostport(text: str) -> tuple[str, int | None]:
    """``host[:port]`` with IPv6 references; the host is returned as written."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ParseError(f"unterminated IPv6 reference in {text!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if not rest:
            _check_host(host)
            return host, None
        if rest[0] != ":":
            raise ParseError(f"junk after IPv6 reference in {text!r}")
        port_text = rest[1:]
    else:
        if text.count(":") > 1:
            raise ParseError(f"IPv6 address without [ ] in {text[:80]!r}")
        host, colon, port_text = text.partition(":")
        if not colon:
            _check_host(host)
            return host, None
    _check_host(host)
    return host, parse_port(port_text)


def parse_uint(text: str, what: str, limit: int = 2**32 - 1) -> int:
    """A non-negative decimal (leading zeros allowed) no larger than ``limit``."""
    text = text.strip()
    digits = text.lstrip("0") or "0"
    if not text or not _DIGITS.issuperset(text) or len(digits) > 10:
        raise ParseError(f"bad {what} {text[:20]!r}")
    value = int(digits)
    if value > limit:
        raise ParseError(f"{what} {value} out of range")
    return value


def parse_port(text: str) -> int:
    return parse_uint(text, "port", MAX_PORT)


def _host_key(host: str) -> str:
    """Host in the form equality compares: case folded, IP literals normalised."""
    host = host.lower()
    if host.startswith("["):
        try:
            return "[" + ipaddress.IPv6Address(host[1:-1]).compressed + "]"
        except ValueError:
            return host
    return host


@attrs.frozen(eq=False)
class SipURI:
    """A ``sip:`` or ``sips:`` URI.

    ``user`` and ``password`` hold the unescaped text; ``host`` is as written
    (an IPv6 reference keeps its brackets, see :attr:`address`).
    Equality and hashing follow RFC 3261 section 19.1.4.
    """

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = EMPTY_PARAMS
    headers: tuple[tuple[str, str], ...] = ()
    scheme: str = "sip"
    # The text this URI was parsed from; None when built in code.
    _text: str | None = attrs.field(default=None, init=False, repr=False)

    @property
    def address(self) -> str:
        """The host without IPv6 brackets, as sockets want it."""
        host = self.host
        return host[1:-1] if host.startswith("[") else host

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def lr(self) -> bool:
        return "lr" in self.params

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def user_param(self) -> str | None:
        """The ``user=`` URI parameter (``phone``, ``ip``...)."""
        return self.params.get("user")

    @property
    def hostport(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        if self._text is not None:
            return self._text
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(_escape(self.user, _SAFE_USER))
            if self.password is not None:
                out += [":", _escape(self.password, _SAFE_PASSWORD)]
            out.append("@")
        out.append(self.hostport)
        out.append(self.params.render(_SAFE_PARAM))
        if self.headers:
            out.append("?")
            out.append(
                "&".join(
                    f"{_escape(k, _SAFE_HEADER)}={_escape(v, _SAFE_HEADER)}"
                    for k, v in self.headers
                )
            )
        return "".join(out)

    def _key(self) -> tuple[object, ...]:
        return (
            self.scheme,
            self.user,
            self.password,
            _host_key(self.host),
            self.port,
            frozenset((k.lower(), v) for k, v in self.headers),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipURI):
            return NotImplemented
        if self._key() != other._key():
            return False
        mine, theirs = self.params, other.params
        for name in set(mine) | set(theirs):
            lname = name.lower()
            in_mine, in_theirs = lname in mine, lname in theirs
            if in_mine and in_theirs:
                a, b = mine[lname], theirs[lname]
                if (a or "").lower() != (b or "").lower() or (a is None) != (b is None):
                    return False
            elif lname in ("user", "ttl", "method", "maddr", "transport"):
                # RFC 3261 19.1.4 names user, ttl, method and maddr; RFC 3261's
                # own examples (and every stack) treat transport the same way.
                return False
        return True

    def __hash__(self) -> int:
        return hash(self._key())


@attrs.frozen(eq=False)
class TelURI:
    """A ``tel:`` URI (RFC 3966): the number and its parameters."""

    number: str
    params: Params = EMPTY_PARAMS
    _text: str | None = attrs.field(default=None, init=False, repr=False)

    @property
    def scheme(self) -> str:
        return "tel"

    @property
    def is_global(self) -> bool:
        return self.number.startswith("+")

    def __str__(self) -> str:
        if self._text is not None:
            return self._text
        return f"tel:{self.number}{self.params.render()}"

    def _key(self) -> tuple[object, ...]:
        # RFC 3966 section 4: visual separators are ignored, parameters
        # compare case-insensitively and in any order.
        digits = "".join(c for c in self.number if c not in "-.()").lower()
        params = frozenset((k.lower(), (v or "").lower()) for k, v in self.params.items_)
        return (digits, params)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TelURI):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())


@attrs.frozen
class AbsoluteURI:
    """Any other absolute URI (``http:``, ``urn:``, ``isbn:``...), kept opaque."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


URI: TypeAlias = SipURI | TelURI | AbsoluteURI


# The shape nearly every SIP URI takes (lowercase scheme, a user without
# password or escapes, a host name or IPv4 address, plain parameters, no
# headers), matched in one linear pass: what it matches, _parse_sip would
# read the same way. No character _FORBIDDEN holds, no "@" or "?" outside
# the user part.
_URI_PARAMS: Final = _plain_params_pattern(r"@?<>\x00")
_SIP: Final = re.compile(
    r'(sips?+):(?:([^:@;?%\s<>"\x00]++)@)?([A-Za-z0-9._-]++)(?::([0-9]{1,5}+))?'
    rf"(?:;({_URI_PARAMS}))?"
)

(
    _sip_host,
    _sip_user,
    _sip_password,
    _sip_port,
    _sip_params,
    _sip_headers,
    _sip_scheme,
    _sip_text,
) = slot_setters(SipURI, "host", "user", "password", "port", "params", "headers", "scheme", "_text")


def parse_uri(text: str) -> URI:
    """Parse an absolute URI; ``sip:``/``sips:`` and ``tel:`` are structured.

    Raises :class:`ParseError` (status hint 400) on malformed input.
    """
    match = _SIP.fullmatch(text)
    if match is not None:
        scheme, user, host, port_text, ptext = match.groups()
        port = None if port_text is None else int(port_text)
        if port is None or port <= MAX_PORT:
            uri = object.__new__(SipURI)
            _sip_host(uri, host)
            _sip_user(uri, user)
            _sip_password(uri, None)
            _sip_port(uri, port)
            _sip_params(uri, EMPTY_PARAMS if ptext is None else plain_params(ptext))
            _sip_headers(uri, ())
            _sip_scheme(uri, scheme)
            _sip_text(uri, text)
            return uri
    return _parse_uri_careful(text)


def _parse_uri_careful(text: str) -> URI:
    scheme, colon, rest = text.partition(":")
    if not colon or not scheme or not _SCHEME_CHARS.issuperset(scheme) or not scheme[0].isalpha():
        raise ParseError(f"not an absolute URI: {text[:80]!r}")
    if not _FORBIDDEN.isdisjoint(text):
        raise ParseError(f"forbidden character in URI {text[:80]!r}")
    lscheme = scheme.lower()
    if lscheme in ("sip", "sips"):
        return _parse_sip(text, lscheme, rest)
    if lscheme == "tel":
        number, _, ptext = rest.partition(";")
        if not number:
            raise ParseError("empty tel: number")
        tel = TelURI(number, parse_params(ptext) if ptext else EMPTY_PARAMS)
        object.__setattr__(tel, "_text", text)
        return tel
    if not rest:
        raise ParseError(f"empty {scheme}: URI")
    return AbsoluteURI(lscheme, rest)


def _parse_sip(text: str, scheme: str, rest: str) -> SipURI:
    user = password = None
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        u, colon, p = userinfo.partition(":")
        if not u:
            raise ParseError(f"empty user in {text[:80]!r}")
        if "%" in userinfo:
            user = _unescape(u)
            password = _unescape(p) if colon else None
        else:
            user = u
            password = p if colon else None
    headers: tuple[tuple[str, str], ...] = ()
    if "?" in rest:
        rest, _, htext = rest.partition("?")
        hs = []
        for part in htext.split("&"):
            name, eq, value = part.partition("=")
            if not name or not eq:
                raise ParseError(f"bad URI header {part!r}")
            hs.append((_unescape(name), _unescape(value)))
        headers = tuple(hs)
    hostport, semi, ptext = rest.partition(";")
    host, colon, port_text = hostport.partition(":")
    if (
        host
        and _HOSTNAME_CHARS.issuperset(host)
        and (not colon or (0 < len(port_text) < 6 and port_text.isascii() and port_text.isdigit()))
    ):
        port = int(port_text) if colon else None
        if port is not None and port > MAX_PORT:
            raise ParseError(f"port {port} out of range")
    else:
        host, port = split_hostport(hostport)
    params = (
        parse_params(ptext, unescape="%" in ptext, what="URI parameter") if semi else EMPTY_PARAMS
    )
    uri = SipURI(host, user, password, port, params, headers, scheme)
    object.__setattr__(uri, "_text", text)
    return uri


# The compiled twins (see _accel), when built: same results, less time. The
# Python twins keep these names too (tests compare the two).
parse_uri_py = parse_uri
get_param_py = get_param
if speedups is not None:
    speedups.configure(
        SipURI=SipURI, Params=Params, EMPTY_PARAMS=EMPTY_PARAMS, MISSING=_MISSING, uri=parse_uri
    )
    parse_uri = speedups.parse_uri
    get_param = speedups.get_param
