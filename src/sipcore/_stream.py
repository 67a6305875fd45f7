"""Framing SIP messages out of a byte stream (TCP, TLS, WebSocket-less).

:class:`StreamParser` owns one connection's receive buffer. It does no
I/O: the application feeds it bytes and pulls events, in the manner of
h11. Messages are framed by Content-Length (mandatory on streams, RFC 3261
section 18.3); CRLF keepalives (RFC 5626 section 3.5.1) come out as events.
Once framing is lost the parser stays broken: the connection must close.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from ._errors import ParseError
from ._headers import Defect
from ._message import (
    DEFAULT_LIMITS,
    Limits,
    Request,
    Response,
    _content_length,
    parse_head,
)

__all__ = ["NEED_DATA", "KeepAlive", "NeedData", "StreamParser"]


class NeedData(enum.Enum):
    """Sentinel type: no whole event is buffered yet."""

    NEED_DATA = "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA


@attrs.frozen
class KeepAlive:
    """A CRLF keepalive: ``ping`` is a double CRLF (answer it with a single
    CRLF), otherwise a single CRLF (a pong, or stray CRLF between messages).

    A single CRLF is reported once the octet after it has arrived: until
    then it cannot be told from the first half of a ping.
    """

    ping: bool


_PING: Final = KeepAlive(ping=True)
_PONG: Final = KeepAlive(ping=False)


class StreamParser:
    """Frames messages out of one connection's byte stream.

    >>> p = StreamParser()
    >>> p.receive_data(b"OPTIONS sip:a@b SIP/2.0\\r\\nl: 0\\r\\n\\r\\n\\r\\n\\r\\n")
    >>> p.next_event()
    <Request OPTIONS sip:a@b>
    >>> p.next_event()
    KeepAlive(ping=True)
    >>> p.next_event()
    <NeedData.NEED_DATA: 'NEED_DATA'>
    """

    def __init__(self, *, strict: bool = False, limits: Limits | None = None) -> None:
        self._buf = bytearray()
        self._strict = strict
        self._limits = limits or DEFAULT_LIMITS
        self._error: ParseError | None = None
        # The header section already parsed while waiting for the body.
        self._pending: tuple[Request | Response, int, int] | None = None
        # Where the search for the end of the header section resumes: the
        # octets before it were searched already. Without it, a header
        # section arriving in small chunks would cost O(n^2).
        self._scanned = 0

    @property
    def buffered(self) -> int:
        """Octets received and not yet returned as events."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        """Buffer more octets; nothing is parsed until :meth:`next_event`."""
        self._buf += data

    def next_event(self) -> Request | Response | KeepAlive | NeedData:
        """The next message or keepalive, or ``NEED_DATA``.

        Raises :class:`ParseError` when the stream cannot be framed (then and
        on every later call): missing or bad Content-Length, a message over
        the size limit, a malformed start line or header section.
        """
        if self._error is not None:
            raise self._error
        try:
            return self._next()
        except ParseError as exc:
            self._error = exc
            raise

    def _next(self) -> Request | Response | KeepAlive | NeedData:
        buf = self._buf
        if self._pending is None:
            if buf[:1] == b"\r":
                if buf[:4] == b"\r\n\r\n":
                    del buf[:4]
                    self._scanned = 0
                    return _PING
                if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                    # A lone CRLF may be half a ping: wait for the next octet.
                    return NEED_DATA
                if buf[:2] == b"\r\n":
                    del buf[:2]
                    self._scanned = 0
                    return _PONG
            end = buf.find(b"\r\n\r\n", self._scanned)
            limit = self._limits.max_message_size
            if end < 0:
                if len(buf) > limit:
                    raise ParseError(f"header section larger than {limit} octets", 413)
                # The last three octets may begin a CRLFCRLF the next chunk ends.
                self._scanned = max(0, len(buf) - 3)
                return NEED_DATA
            self._scanned = 0
            defects: list[Defect] | None = None if self._strict else []
            msg = parse_head(bytes(buf[:end]), defects, self._limits)
            length = _content_length(msg)
            if length is None:
                raise ParseError("missing Content-Length on a stream transport", 400, msg)
            if end + 4 + length > limit:
                raise ParseError(f"message larger than {limit} octets", 413, msg)
            self._pending = (msg, end + 4, length)
        msg, body_start, length = self._pending
        stop = body_start + length
        if len(buf) < stop:
            return NEED_DATA
        self._pending = None
        raw = bytes(buf[:stop])
        del buf[:stop]
        msg._body = raw[body_start:]
        msg._raw = raw
        if self._strict:
            msg.validate()
        return msg
