"""Builders: new requests, and responses to requests per RFC 3261 8.2.6.

Nothing here reads a clock or a socket; tags and branches come from
``secrets`` unless the caller passes its own.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Final

import attrs

from ._errors import LocalProtocolError
from ._headers import Address, Via, parse_address
from ._message import Message, Request, Response, build_message
from ._uri import URI

__all__ = [
    "REASON_PHRASES",
    "make_ack",
    "make_cancel",
    "make_request",
    "make_response",
    "new_branch",
    "new_tag",
]

REASON_PHRASES: Final = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 430: "Flow Failed",
    433: "Anonymity Disallowed", 436: "Bad Identity-Info", 437: "Unsupported Certificate",
    438: "Invalid Identity Header", 439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded", 469: "Bad Info Package", 470: "Consent Needed",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here",
    489: "Bad Event", 491: "Request Pending", 493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}  # fmt: skip

# Methods whose 101-199 and 2xx responses create a dialog, so the UAS
# copies Record-Route into them (RFC 3261 section 12.1.1, RFC 6665).
_DIALOG_METHODS: Final = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})

MAGIC_COOKIE: Final = "z9hG4bK"


def new_tag() -> str:
    """A random From/To tag (RFC 3261 section 19.3: at least 32 bits)."""
    return secrets.token_hex(8)


def new_branch() -> str:
    """A random RFC 3261 branch, magic cookie included."""
    return MAGIC_COOKIE + secrets.token_hex(12)


def _as_address(value: Address | URI | str) -> Address:
    if isinstance(value, Address):
        return value
    if isinstance(value, str):
        return parse_address(value, None)
    return Address(value)


def make_request(
    method: str,
    uri: URI | str,
    *,
    from_: Address | URI | str,
    to: Address | URI | str,
    via: Via | str | None,
    call_id: str | None = None,
    cseq: int = 1,
    from_tag: str | None = None,
    max_forwards: int = 70,
    contact: Address | URI | str | None = None,
    route: Iterable[Address | URI | str] = (),
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Request:
    """Build a request with the headers RFC 3261 section 8.1.1 requires.

    ``from_``/``to`` take an :class:`Address`, a URI or text; a From without
    a tag gets ``from_tag`` or a fresh one. ``via`` is the Via value this
    element adds (its branch included), or None for a request handed to a
    transaction layer that puts its own on top (``Proxy.send_request``);
    ``call_id`` defaults to a random one.
    """
    if not 0 <= max_forwards <= 255:
        raise LocalProtocolError(f"Max-Forwards {max_forwards} out of range")
    sender = _as_address(from_)
    if sender.tag is None:
        sender = attrs.evolve(sender, params=sender.params.with_param("tag", from_tag or new_tag()))
    lines: list[tuple[str, str]] = [] if via is None else [("Via", str(via))]
    lines.append(("Max-Forwards", str(max_forwards)))
    lines += [("Route", str(_as_address(r))) for r in route]
    lines += [
        ("From", str(sender)),
        ("To", str(_as_address(to))),
        ("Call-ID", call_id or secrets.token_hex(16)),
        ("CSeq", f"{cseq} {method}"),
    ]
    if contact is not None:
        lines.append(("Contact", str(_as_address(contact))))
    lines += list(headers)
    if content_type is not None:
        lines.append(("Content-Type", content_type))
    lines.append(("Content-Length", str(len(body))))
    msg = build_message(f"{method} {uri} SIP/2.0", lines, body)
    if not isinstance(msg, Request):
        raise LocalProtocolError(f"bad method {method!r}")
    return msg


def make_response(
    request: Request,
    status_code: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """Build a response to ``request`` per RFC 3261 section 8.2.6.

    Via (every value, in order), From, Call-ID and CSeq are copied as they
    were written; To is copied and gets ``to_tag`` (or a fresh tag) unless
    it has one already or this is a 100; Record-Route is copied into the
    responses that create a dialog; a 100 echoes Timestamp (8.2.6.1).

    Kamailio: ``sl_send_reply`` / ``send_reply``.
    """
    if not 100 <= status_code <= 699:
        raise LocalProtocolError(f"status code {status_code} out of range")
    if request.method == "ACK":
        raise LocalProtocolError("ACK is never answered")
    if reason is None:
        reason = REASON_PHRASES.get(status_code, "Unknown")
    if "\r" in reason or "\n" in reason:
        raise LocalProtocolError("reason phrase with a line break")
    lines: list[tuple[str, str]] = []
    for name, value in request.headers():
        if "\r" in value or "\n" in value:
            # Only lenient parsing of odd input lets a line break into a value:
            # the copy says the same with spaces, so a reply can always be made.
            value = value.replace("\r", " ").replace("\n", " ")
        key = name.lower()
        if key in ("via", "v", "from", "f", "call-id", "i", "cseq"):
            lines.append((name, value))
        elif key in ("to", "t"):
            if request.to.tag is None and status_code != 100:
                value = f"{value};tag={to_tag or new_tag()}"
            lines.append((name, value))
        elif (
            key == "record-route"
            and (100 < status_code < 300 and request.method in _DIALOG_METHODS)
        ) or (key == "timestamp" and status_code == 100):
            lines.append((name, value))
    lines += list(headers)
    if content_type is not None:
        lines.append(("Content-Type", content_type))
    lines.append(("Content-Length", str(len(body))))
    msg = build_message(f"SIP/2.0 {status_code} {reason}", lines, body)
    if not isinstance(msg, Response):  # pragma: no cover - the start line is ours
        raise LocalProtocolError("not a response")
    return msg


def _copied(request: Message, keys: tuple[str, ...]) -> list[tuple[str, str]]:
    """The request's header lines of the given kinds, as written, in order."""
    return [(name, value) for name, value in request.headers() if name.lower() in keys]


def _top_via(request: Request) -> tuple[str, str]:
    top = request.get("Via")
    if top is None:
        raise LocalProtocolError("request without a Via")
    return ("Via", top)


def make_cancel(request: Request) -> Request:
    """The CANCEL for a pending ``request`` (RFC 3261 section 9.1).

    Request-URI, Call-ID, From, To, the CSeq number and the top Via (so
    its branch) are the request's; the Route set is copied; the method
    is CANCEL. Kamailio: what ``t_relay`` sends for a CANCEL it relays.
    """
    if request.method in ("ACK", "CANCEL"):
        raise LocalProtocolError(f"a {request.method} cannot be cancelled")
    lines = [_top_via(request), ("Max-Forwards", "70")]
    lines += _copied(request, ("route",))
    lines += _copied(request, ("from", "f", "to", "t", "call-id", "i"))
    lines.append(("CSeq", f"{request.cseq.number} CANCEL"))
    lines.append(("Content-Length", "0"))
    msg = build_message(f"CANCEL {request.uri} SIP/2.0", lines, b"")
    if not isinstance(msg, Request):  # pragma: no cover - the start line is ours
        raise LocalProtocolError("not a request")
    return msg


def make_ack(request: Request, response: Response) -> Request:
    """The ACK a client transaction sends for a 300-699 final response to
    an INVITE (RFC 3261 section 17.1.1.3).

    Request-URI, Call-ID, From, top Via and Route set are the INVITE's, To
    is the response's (with its tag), CSeq has the INVITE's number and
    method ACK. An ACK for a 2xx is the UA core's, not this.
    """
    if request.method != "INVITE":
        raise LocalProtocolError("only an INVITE is acknowledged")
    if not 300 <= response.status_code <= 699:
        raise LocalProtocolError("an ACK for a 2xx is built by the UA core, not the transaction")
    lines = [_top_via(request), ("Max-Forwards", "70")]
    lines += _copied(request, ("route",))
    lines += _copied(request, ("from", "f", "call-id", "i"))
    lines += _copied(response, ("to", "t"))
    lines.append(("CSeq", f"{request.cseq.number} ACK"))
    lines.append(("Content-Length", "0"))
    msg = build_message(f"ACK {request.uri} SIP/2.0", lines, b"")
    if not isinstance(msg, Request):  # pragma: no cover - the start line is ours
        raise LocalProtocolError("not a request")
    return msg
