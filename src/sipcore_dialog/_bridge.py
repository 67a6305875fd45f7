"""Third-party call control: ``dlg_bridge`` and ``dlg_refer``.

This module owns the two transfers Kamailio's dialog module makes by itself:
bridging two addresses (INVITE with a hold SDP from the controller, then a
REFER to the called party, then a BYE) and referring one party of a tracked
dialog elsewhere (REFER, then BYE to that party). Both send through the
tracker's proxy (``Proxy.send_request``) and keep no state beyond the
callbacks of those requests.
"""

from __future__ import annotations

from typing import Final

from sipcore import (
    Endpoint,
    LocalProtocolError,
    Request,
    Response,
    SipError,
    make_request,
    new_branch,
    new_tag,
    parse_uri,
    uri_destination,
)

from ._dialog import Dialog, Side
from ._tracker import DialogTracker

__all__ = ["HOLD_SDP", "bridge", "refer"]

# What Kamailio offers when no body is given: on hold (0.0.0.0), G.711.
HOLD_SDP: Final = (
    b"v=0\r\no=sipcore-bridge 0 0 IN IP4 0.0.0.0\r\ns=sipcore\r\nc=IN IP4 0.0.0.0\r\n"
    b"t=0 0\r\nm=audio 9 RTP/AVP 8 0\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
)


def _no_via(request: Request) -> Request:
    request.remove_header("Via")  # the proxy puts its own on top
    return request


def bridge(
    tracker: DialogTracker,
    from_uri: str,
    to_uri: str,
    *,
    outbound_proxy: str | None = None,
    body: bytes | None = None,
    now: float,
) -> Request:
    """Kamailio: ``dlg_bridge(from, to, op)`` / ``dlg.bridge_dlg``.

    Calls ``from_uri`` from ``bridge_controller``; when it answers 2xx, ACKs,
    REFERs it to ``to_uri`` and, once the REFER is answered, hangs up. An
    empty ``body`` sends no SDP; None sends the hold SDP. Returns the INVITE.
    """
    proxy = tracker._require_proxy()
    config = tracker.config
    sdp = HOLD_SDP if body is None else body
    invite = _no_via(
        make_request(
            "INVITE",
            from_uri,
            from_=f"<{config.bridge_controller}>;tag={new_tag()}",
            to=f"<{from_uri}>",
            via="SIP/2.0/UDP 0.0.0.0;branch=z9hG4bKplaceholder",
            contact=f"<{config.bridge_contact}>",
            body=sdp,
            content_type="application/sdp" if sdp else None,
        )
    )
    destination = None
    if outbound_proxy is not None:
        destination = uri_destination(parse_uri(outbound_proxy), proxy.resolver)
        if destination is None:
            raise SipError(f"cannot resolve the outbound proxy {outbound_proxy}", 478)
    state = {"answered": False}

    def on_invite(response: Response) -> None:
        if response.status_code < 200 or state["answered"]:
            return
        state["answered"] = True
        if response.status_code >= 300:
            return
        _after_answer(tracker, invite, response, to_uri, destination, now)

    proxy.send_request(invite, destination, now=now, on_response=on_invite)
    return invite


def _after_answer(
    tracker: DialogTracker,
    invite: Request,
    answer: Response,
    to_uri: str,
    outbound: Endpoint | None,
    now: float,
) -> None:
    proxy = tracker._require_proxy()
    config = tracker.config
    contact = answer.contact[0].uri if answer.contact else invite.uri
    record_route = list(reversed(answer.record_route))
    route = [str(rr) for rr in record_route]
    cseq = invite.cseq.number
    # The route set decides the next hop; without one, the outbound proxy.
    next_hop = None if route else outbound

    def within(method: str, number: int, headers: list[tuple[str, str]]) -> Request:
        return _no_via(
            make_request(
                method,
                contact,
                from_=str(invite.from_),
                to=str(answer.to),
                via="SIP/2.0/UDP 0.0.0.0;branch=z9hG4bKplaceholder",
                call_id=invite.call_id,
                cseq=number,
                route=route,
                headers=headers,
            )
        )

    ack_destination = next_hop or uri_destination(
        record_route[0].uri if record_route else contact, proxy.resolver
    )
    if ack_destination is None:
        return
    ack = within("ACK", cseq, [])
    local = proxy.local_endpoint(ack_destination.transport)
    ack.add_header(
        "Via",
        f"SIP/2.0/{ack_destination.transport} {local.hostport};branch={new_branch()}",
        first=True,
    )
    proxy.send_stateless(ack, ack_destination)
    refer_request = within(
        "REFER",
        cseq + 1,
        [
            ("Referred-By", config.bridge_controller),
            ("Refer-To", to_uri),
            ("Contact", f"<{config.bridge_contact}>"),
        ],
    )
    done = {"bye": False}

    def on_refer(response: Response) -> None:
        if response.status_code < 200 or done["bye"]:
            return
        done["bye"] = True  # Kamailio sends the BYE whatever the REFER's answer
        proxy.send_request(within("BYE", cseq + 2, []), next_hop, now=now)

    proxy.send_request(refer_request, next_hop, now=now, on_response=on_refer)


def refer(tracker: DialogTracker, dialog: Dialog, side: Side, address: str, *, now: float) -> None:
    """Kamailio: ``dlg_refer(side, address)``: REFER that party of the
    dialog to ``address``, then (whatever the answer) BYE it."""
    if side is Side.ALL:
        raise LocalProtocolError("dlg_refer takes the caller or the callee")
    config = tracker.config
    done = {"bye": False}

    def on_refer(_side: Side, response: Response) -> None:
        if response.status_code < 200 or done["bye"]:
            return
        done["bye"] = True
        tracker.request_within(dialog, side, "BYE", now=now)

    tracker.request_within(
        dialog,
        side,
        "REFER",
        now=now,
        headers=[
            ("Referred-By", config.bridge_controller),
            ("Refer-To", address),
            ("Contact", f"<{config.bridge_contact}>"),
        ],
        on_response=on_refer,
    )
