"""The one exception hierarchy of sipcore.

Every error the public API raises on bad input or misuse derives from
:class:`SipError`, so an embedding application can catch one type and never
see a bare ``ValueError`` or ``IndexError`` escape from a parser.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._message import Message

__all__ = ["LocalProtocolError", "ParseError", "RemoteProtocolError", "SipError"]


class SipError(Exception):
    """Base of every sipcore error.

    ``reason`` says what went wrong in words; ``status_hint`` is the SIP
    status code to answer with where SIP has one (400, 413, 420, 481, 483,
    505...), else ``None``.
    """

    def __init__(self, reason: str, status_hint: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_hint = status_hint

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, status_hint={self.status_hint!r})"


class RemoteProtocolError(SipError):
    """The peer sent something SIP does not allow."""


class ParseError(RemoteProtocolError):
    """Bytes that are not a well-formed SIP message (or URI, or header).

    ``message`` is the framed message when framing got that far, so that a
    server can still answer it (a 400 or 505 needs the request's Via,
    From, To, Call-ID and CSeq); it is ``None`` when even the start line or
    the framing failed.
    """

    def __init__(
        self,
        reason: str,
        status_hint: int | None = 400,
        message: Message | None = None,
    ) -> None:
        super().__init__(reason, status_hint)
        self.message = message


class LocalProtocolError(SipError):
    """The application used the API in a way SIP or sipcore does not allow."""
