"""The errors of sipcore_media, all under :class:`sipcore.SipError`.

This module owns the exception classes only. Each one also derives from
the sipcore class that says whose fault it is: :class:`~sipcore.ParseError`
or :class:`~sipcore.RemoteProtocolError` for what rtpengine (or a SIP
message) sent, :class:`~sipcore.LocalProtocolError` for what the caller
asked. ``status_hint`` is the SIP status a proxy would answer the call
with when the media command behind it failed.
"""

from __future__ import annotations

from sipcore import LocalProtocolError, ParseError, RemoteProtocolError, SipError

__all__ = [
    "CommandError",
    "ConfigError",
    "FlagError",
    "MediaError",
    "MessageError",
    "NgDecodeError",
    "NgEncodeError",
    "NgErrorReply",
    "NoNodeAvailable",
    "Overloaded",
    "UnexpectedReply",
]


class MediaError(SipError):
    """Base of every error sipcore_media raises or reports."""


class NgDecodeError(MediaError, ParseError):
    """Bytes that are not an ng message: no cookie, not a bencoded
    dictionary, too large, too deep. Kamailio: "failed to decode bencoded
    reply from proxy"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status_hint=500)


class NgEncodeError(MediaError, LocalProtocolError):
    """A value the ng encoding cannot carry (a float, a None, a cookie with
    a space, a string that is not valid Unicode)."""


class UnexpectedReply(MediaError, RemoteProtocolError):
    """A well-formed ng dictionary that is not what the command expects: no
    ``result``, an offer reply without ``sdp``, a field of the wrong type.
    Kamailio: "No 'result' dictionary entry", "failed to extract sdp body"."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status_hint=500)


class NgErrorReply(MediaError, RemoteProtocolError):
    """rtpengine answered ``result: error``; ``error_reason`` is its
    ``error-reason`` (``"Unknown call-id"``...). Kamailio: "proxy replied
    with error"."""

    def __init__(self, error_reason: str, command: str = "") -> None:
        what = f"{command}: " if command else ""
        super().__init__(f"{what}rtpengine replied with error: {error_reason}", status_hint=500)
        self.error_reason = error_reason
        self.command = command


class NoNodeAvailable(MediaError):
    """No rtpengine node could carry the command: every node of the set is
    disabled, the queried-nodes limit was reached, or the nodes tried never
    answered. ``tried`` lists the node URLs asked, in order. Kamailio: "no
    available proxies", "queried nodes limit reached"."""

    def __init__(self, reason: str, tried: tuple[str, ...] = ()) -> None:
        super().__init__(reason, status_hint=503)
        self.tried = tried


class Overloaded(MediaError):
    """More commands in flight than ``RtpengineConfig.max_pending`` allows;
    the command was not sent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status_hint=503)


class CommandError(MediaError, LocalProtocolError):
    """A command built wrongly: a required key missing (``call_id``, an
    answer's ``to_tag``), a value out of range, an ``extra`` key that
    repeats one the command sets."""


class FlagError(MediaError, LocalProtocolError):
    """A flag string Kamailio's rtpengine module rejects (``call-id`` without
    a value, ``via-branch=bogus``, ``force-answer`` outside an offer...)."""


class ConfigError(MediaError, LocalProtocolError):
    """A bad module parameter: an ``rtpengine_sock`` node Kamailio would
    ignore, a set id that is not a number, a parameter out of range."""


class MessageError(MediaError, RemoteProtocolError):
    """The SIP message lacks what the command needs: no From tag, no SDP
    body for an offer, no To tag for an answer. Kamailio: "can't get From
    tag", "No to-tag present", "can't extract body from the message"."""

    def __init__(self, reason: str, status_hint: int | None = 400) -> None:
        super().__init__(reason, status_hint)
