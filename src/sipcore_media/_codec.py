"""The ng wire format: ``<cookie> <bencoded dictionary>``.

This module owns turning a cookie and a dictionary into datagram bytes and
back, with bencode.py doing the bencoding. Text comes out as ``str`` and
bytes that are not UTF-8 (a ``blob``, a broken SDP) as ``bytes``, so nothing
is lost and nothing raises on the way in; dictionary keys must be UTF-8.
Decoding is bounded (size, nesting) and every failure is an
:class:`~sipcore_media.NgDecodeError`. It knows nothing about commands,
nodes or time.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, TypeAlias, Union

import attrs
import bencodepy

from ._errors import NgDecodeError, NgEncodeError

__all__ = [
    "MAX_DEPTH",
    "MAX_MESSAGE_SIZE",
    "NgDict",
    "NgMessage",
    "NgValue",
    "decode_document",
    "decode_message",
    "encode_document",
    "encode_message",
    "split_cookie",
]

# Union rather than "|" so that the aliases are real objects at run time.
NgValue: TypeAlias = Union[str, bytes, int, list["NgValue"], dict[str, "NgValue"]]  # noqa: UP007
NgDict: TypeAlias = dict[str, NgValue]

#: The largest message decoded: Kamailio's reply buffer (``0x40000``).
MAX_MESSAGE_SIZE: Final = 0x40000
#: Deepest nesting accepted; a ``query`` reply is 7 levels deep.
MAX_DEPTH: Final = 32

_DECODER: Final = bencodepy.Bencode(
    encoding="utf-8", encoding_fallback="value", max_depth=MAX_DEPTH
)
_ENCODER: Final = bencodepy.BencodeEncoder()
# What bencode.py raises on input it cannot decode or values it cannot
# encode; caught so that none of them leaves this module bare.
_DECODE_FAILURES: Final = (bencodepy.BencodeDecodeError, ValueError, TypeError, RecursionError)
_ENCODE_FAILURES: Final = (KeyError, TypeError, ValueError, RecursionError)


@attrs.frozen
class NgMessage:
    """One decoded ng message: its cookie and its dictionary."""

    cookie: str
    document: NgDict


def _cookie_bytes(cookie: str) -> bytes:
    if not isinstance(cookie, str) or not cookie:
        raise NgEncodeError(f"a cookie must be a non-empty string, not {cookie!r}")
    raw = cookie.encode("utf-8", "surrogateescape")
    if b" " in raw:
        raise NgEncodeError(f"a cookie must not contain a space: {cookie!r}")
    return raw


def encode_document(document: Mapping[str, object]) -> bytes:
    """The bencoded dictionary alone (what follows the cookie).

    >>> encode_document({"command": "ping"})
    b'd7:command4:pinge'
    """
    if type(document) is not dict:
        # bencode.py picks its encoder by exact type: a Mapping becomes a dict.
        if not isinstance(document, Mapping):
            raise NgEncodeError(f"an ng document is a dictionary, not {type(document).__name__}")
        document = dict(document)
    try:
        data: bytes = _ENCODER.encode(document)
    except _ENCODE_FAILURES as exc:
        raise NgEncodeError(f"value cannot be bencoded: {exc!r}") from None
    return data


def encode_message(cookie: str, document: Mapping[str, object]) -> bytes:
    """``cookie``, one space, the bencoded ``document``.

    >>> encode_message("5323_1", {"command": "ping"})
    b'5323_1 d7:command4:pinge'
    """
    return _cookie_bytes(cookie) + b" " + encode_document(document)


def split_cookie(data: bytes) -> tuple[str, bytes]:
    """The cookie (up to the first space) and the rest, undecoded."""
    cookie, space, rest = bytes(data).partition(b" ")
    if not space:
        raise NgDecodeError("no cookie: an ng message is '<cookie> <dictionary>'")
    if not cookie:
        raise NgDecodeError("empty cookie")
    return cookie.decode("utf-8", "surrogateescape"), rest


def decode_message(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE) -> NgMessage:
    """Decode one ng message; :class:`NgDecodeError` on anything else.

    >>> decode_message(b"5323_1 d6:result4:ponge")
    NgMessage(cookie='5323_1', document={'result': 'pong'})
    """
    if len(data) > max_size:
        raise NgDecodeError(f"message of {len(data)} bytes exceeds the {max_size}-byte limit")
    cookie, body = split_cookie(data)
    return NgMessage(cookie, decode_document(body))


def decode_document(body: bytes) -> NgDict:
    """Decode the dictionary part of an ng message."""
    if body[:1] == b"{":
        raise NgDecodeError("a JSON document: only the bencoded form is spoken here")
    if body[:1] != b"d":
        raise NgDecodeError("not a bencoded dictionary")
    try:
        document = _DECODER.decode(body)
    except _DECODE_FAILURES as exc:
        raise NgDecodeError(f"malformed bencode: {exc}") from None
    if not isinstance(document, dict):  # pragma: no cover - the first byte was 'd'
        raise NgDecodeError("not a bencoded dictionary")
    result: NgDict = document
    return result
