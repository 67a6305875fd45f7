"""What each hash algorithm hashes, extracted the way Kamailio does.

This module owns the URI -> (user, host[:port]) split of Kamailio's
``get_uri_hash_keys`` on the URI text as written (no unescaping, case
kept), the ``user=phone`` exception, and ``ds_get_hash`` (core_hash with a
zero result mapped to 1). It reads messages; it never changes them.
"""

from __future__ import annotations

import re

from sipcore import ParseError, Request, core_hash

__all__ = ["ds_get_hash", "uri_hash_keys"]

# Kamailio's trim(): space, tab, CR and LF only.
_TRIM = " \t\r\n"
_SIMPLE_SIP = re.compile(r"sip:(?:([^:@;?\[\s]*)@)?([^:@;?\[\s]+)(?::([0-9]{1,5}))?", re.ASCII)


def _octets(text: str) -> bytes:
    # The bytes as they came: sipcore decodes messages as UTF-8 with
    # surrogateescape, and Kamailio hashes whatever bytes it got.
    return text.encode("utf-8", "surrogateescape")


def ds_get_hash(key1: bytes | None, key2: bytes | None = None) -> int:
    """Kamailio: ``ds_get_hash()``; an absent key contributes nothing.

    >>> ds_get_hash(b"abc") == 7167810
    True
    """
    # An empty first key adds nothing to core_hash, so an absent one is one.
    return core_hash(key1 or b"", key2) or 1


def _user_phone(params: str) -> bool:
    for param in params.split(";"):
        name, eq, value = param.partition("=")
        if eq and name.strip().lower() == "user" and value.strip() == "phone":
            return True
    return False


def uri_hash_keys(text: str, *, user_only: bool = False) -> tuple[bytes | None, bytes | None]:
    """``(key1, key2)`` of a URI for algs 1-3: the user without password
    and ``host[:port]`` with the port only when it is not the default.

    >>> uri_hash_keys("sip:alice:secret@Example.com:5060;transport=udp")
    (b'alice', b'Example.com')
    >>> uri_hash_keys("sips:a@h:5061;user=phone")
    (b'a', b'h:5061')
    """
    # The shape nearly every request has, ``sip:user@host`` with an optional
    # port and no parameters, headers, password or IPv6 reference, is split
    # by one match of a pattern whose parts cannot overlap (no
    # backtracking); anything else takes the general path, which handles
    # every case (this one too, identically: a test holds them together).
    match = _SIMPLE_SIP.fullmatch(text)
    if match is not None:
        user, host, port = match.groups()
        if port is None or int(port) <= 65535:
            key1 = None if user is None else user.encode("utf-8", "surrogateescape")
            if user_only:
                return key1, None
            if port is not None and int(port) != 5060:
                host = f"{host}:{port}"
            return key1, host.encode("utf-8", "surrogateescape")
    return _uri_hash_keys(text, user_only=user_only)


def _uri_hash_keys(text: str, *, user_only: bool = False) -> tuple[bytes | None, bytes | None]:
    uri = text.strip(_TRIM)
    scheme, colon, rest = uri.partition(":")
    if not colon or not scheme:
        raise ParseError(f"not a URI: {text!r}")
    scheme = scheme.lower()
    if scheme == "tel":
        # Kamailio's get_uri_hash_keys wants a host; a tel: URI has none.
        raise ParseError(f"no host to hash in {text!r}")
    if scheme not in ("sip", "sips"):
        raise ParseError(f"cannot hash a {scheme}: URI")
    # The last "@" separates the user: one in URI headers must be escaped.
    at = rest.rfind("@")
    if at >= 0:
        userinfo, hostpart = rest[:at], rest[at + 1 :]
    else:
        userinfo, hostpart = None, rest
    # host[:port] ends at the URI parameters or headers.
    cut = len(hostpart)
    for ch in ";?":
        i = hostpart.find(ch)
        if i >= 0:
            cut = min(cut, i)
    hostport, params = hostpart[:cut], hostpart[cut:]
    params = params.split("?", 1)[0]
    phone = _user_phone(params[1:]) if params.startswith(";") else False
    user: str | None = None
    if userinfo is not None:
        user = userinfo.split(":", 1)[0]
        if phone:
            user = user.split(";", 1)[0]
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise ParseError(f"unterminated IPv6 reference in {text!r}")
        host, port_text = hostport[: close + 1], hostport[close + 1 :]
        if port_text and not port_text.startswith(":"):
            raise ParseError(f"junk after IPv6 reference in {text!r}")
        port_text = port_text[1:]
    else:
        host, _, port_text = hostport.partition(":")
    if not host:
        raise ParseError(f"no host in {text!r}")
    default = 5061 if scheme == "sips" and not phone else 5060
    key2 = host
    if port_text:
        if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
            raise ParseError(f"bad port in {text!r}")
        if int(port_text) != default:
            key2 = f"{host}:{port_text}"
    key1 = None if user is None else _octets(user)
    return key1, None if user_only else _octets(key2)


def call_id_key(request: Request) -> bytes:
    """What alg 0 hashes: the Call-ID as received, folds and all (Kamailio
    hashes the header body, not an unfolded copy), trimmed."""
    raw = request.raw_value("Call-ID")
    if not raw:
        # Missing or empty: the ParseError the accessor gives for it.
        raw = request.call_id
    return _octets(raw)


def request_keys(
    request: Request, alg: int, *, user_only: bool = False
) -> tuple[bytes | None, bytes | None] | None:
    """The keys alg 0-3 and 5 hash, or None for alg 5 without credentials."""
    if alg == 0:
        return call_id_key(request), None
    if alg == 1:
        return uri_hash_keys(request.from_.uri_text, user_only=user_only)
    if alg == 2:
        return uri_hash_keys(request.to.uri_text, user_only=user_only)
    if alg == 3:
        return uri_hash_keys(request.uri_text, user_only=user_only)
    if alg == 5:
        return _auth_user(request)
    raise ParseError(f"algorithm {alg} does not hash the request")


def _auth_user(request: Request) -> tuple[bytes | None, bytes | None] | None:
    # ds_hash_authusername: the first Proxy-Authorization that parses, else
    # the first Authorization; the user part of its username (before '@',
    # as Kamailio's digest parser splits it), trimmed. None: round-robin.
    for name in ("proxy_authorization", "authorization"):
        try:
            creds = getattr(request, name)
        except ParseError:
            continue
        if not creds:
            continue
        user = (creds[0].username or "").split("@", 1)[0].strip(_TRIM)
        return (_octets(user), None) if user else None
    return None
