"""The proxy core, one RFC 3261 section 16 behaviour at a time, on a fake clock."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from sipcore import (
    Endpoint,
    Proxy,
    ProxyConfig,
    ProxyHooks,
    Request,
    RequestContext,
    Response,
    Send,
    make_request,
    make_response,
    parse_message,
)

PROXY = Endpoint("127.0.0.1", 5060)
UAC = Endpoint("127.0.0.1", 5061)
UAS1 = Endpoint("127.0.0.1", 5062)
UAS2 = Endpoint("127.0.0.1", 5063)


def invite_bytes(
    *,
    uri: str = "sip:bob@example.com",
    branch: str | None = None,
    call_id: str = "c1@uac",
    extra: str = "",
    max_forwards: str | None = "70",
    method: str = "INVITE",
    cseq: int = 1,
    vias: str = "",
) -> bytes:
    mf = f"Max-Forwards: {max_forwards}\r\n" if max_forwards is not None else ""
    # One branch per Call-ID by default: a CANCEL shares its INVITE's.
    branch = branch or "z9hG4bK" + call_id.replace("@", "-")
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}\r\n{vias}"
        f"{mf}"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        "To: <sip:bob@example.com>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:alice@127.0.0.1:5061>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class Harness:
    """A proxy with a script, a fake clock and helpers to play UAC and UAS."""

    def __init__(self, route: Callable[[RequestContext], object], **config: object) -> None:
        self.proxy = Proxy(ProxyConfig(listen=(PROXY,), **config), route)  # type: ignore[arg-type]
        self.now = 0.0

    def send(self, data: bytes, source: Endpoint = UAC) -> list[Send]:
        return self.proxy.receive(data, source, self.now)

    def advance(self, seconds: float) -> list[Send]:
        self.now += seconds
        return self.proxy.tick(self.now)

    def answer(self, forwarded: Send, code: int, *, to_tag: str = "b1", **kw: object) -> list[Send]:
        """The downstream UAS answers the request the proxy forwarded."""
        request = parse_message(forwarded.data)
        assert isinstance(request, Request)
        response = make_response(request, code, to_tag=to_tag, **kw)  # type: ignore[arg-type]
        return self.send(bytes(response), forwarded.destination)

    def settle(self) -> None:
        """Run every timer out; nothing may be left afterwards."""
        for _ in range(1000):
            deadline = self.proxy.next_deadline()
            if deadline is None:
                break
            self.now = deadline
            self.proxy.tick(self.now)
        assert self.proxy.active_requests == 0
        assert self.proxy.layer.client_transactions == 0
        assert self.proxy.layer.server_transactions == 0


def to(sends: list[Send], where: Endpoint) -> list[Send]:
    return [s for s in sends if s.destination == where]


def codes(sends: list[Send]) -> list[int]:
    return [s.message.status_code for s in sends if isinstance(s.message, Response)]


def requests(sends: list[Send]) -> list[Request]:
    return [s.message for s in sends if isinstance(s.message, Request)]


def relay_to(*targets: Endpoint) -> Callable[[RequestContext], None]:
    def route(ctx: RequestContext) -> None:
        if ctx.loose_route():
            ctx.relay()
            return
        ctx.record_route()
        if len(targets) == 1:
            ctx.relay(targets[0])
        else:
            ctx.fork([(t, None) for t in targets])

    return route


# -- 16.3 validation ---------------------------------------------------------------


def test_a_local_reply_is_sent_and_retransmitted_for_a_retransmitted_request() -> None:
    h = Harness(lambda ctx: ctx.reply(200))
    first = h.send(invite_bytes(method="OPTIONS"))
    assert codes(first) == [200] and first[0].destination == UAC
    again = h.send(invite_bytes(method="OPTIONS"))
    assert codes(again) == [200]
    assert again[0].data == first[0].data


@pytest.mark.parametrize("mf", ["0", "00"])
def test_max_forwards_zero_is_answered_483(mf: str) -> None:
    h = Harness(relay_to(UAS1))
    out = h.send(invite_bytes(max_forwards=mf))
    assert 483 in codes(out) and not to(out, UAS1)


def test_max_forwards_is_decremented_or_added_as_70() -> None:
    h = Harness(relay_to(UAS1))
    (fwd,) = requests(to(h.send(invite_bytes(max_forwards="5")), UAS1))
    assert fwd.max_forwards == 4
    (fwd,) = requests(to(h.send(invite_bytes(max_forwards=None, call_id="c2")), UAS1))
    assert fwd.max_forwards == 70


def test_unsupported_proxy_require_is_answered_420_with_unsupported() -> None:
    h = Harness(relay_to(UAS1))
    out = h.send(invite_bytes(extra="Proxy-Require: foo, bar\r\n"))
    (resp,) = [
        s.message for s in out if isinstance(s.message, Response) and s.message.status_code == 420
    ]
    assert resp.get_all("Unsupported") == ["foo", "bar"]
    h2 = Harness(relay_to(UAS1), supported_extensions=frozenset({"foo", "bar"}))
    assert to(h2.send(invite_bytes(extra="Proxy-Require: foo, bar\r\n")), UAS1)


def test_a_request_that_comes_back_unchanged_is_a_loop_and_a_spiral_is_not() -> None:
    h = Harness(relay_to(PROXY))  # the proxy routes to itself
    out = h.send(invite_bytes())
    (looped,) = requests(to(out, PROXY))
    back = h.send(bytes(looped), PROXY)
    assert 482 in codes(back)

    # Same request with a new Request-URI (a spiral): forwarded again.
    def rewrite(ctx: RequestContext) -> None:
        ctx.record_route()
        ctx.relay(PROXY if "bob" in str(ctx.request.uri) else UAS1, uri="sip:carol@example.com")

    h = Harness(rewrite)
    (spiral,) = requests(to(h.send(invite_bytes()), PROXY))
    out = h.send(bytes(spiral), PROXY)
    assert 482 not in codes(out)
    assert requests(to(out, UAS1))


def test_an_unparseable_request_gets_400_and_garbage_is_dropped() -> None:
    h = Harness(relay_to(UAS1))
    bad = invite_bytes().replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE")
    out = h.send(bad)
    assert codes(out) == [400] and out[0].destination == UAC
    assert h.send(b"\x00\xff garbage \r\n\r\n") == []
    assert h.send(b"") == []
    assert h.proxy.stats["dropped"] == 2


def test_a_cseq_method_that_does_not_match_is_a_400() -> None:
    h = Harness(relay_to(UAS1))
    out = h.send(invite_bytes().replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"))
    assert codes(out) == [400]


def test_a_script_that_raises_answers_500_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    def broken(ctx: RequestContext) -> None:
        raise RuntimeError("bug in the script")

    h = Harness(broken)
    with caplog.at_level(logging.ERROR, logger="sipcore.proxy"):
        out = h.send(invite_bytes(method="OPTIONS"))
    assert codes(out) == [500]
    assert "route raised" in caplog.text


def test_a_script_that_does_nothing_drops_the_request() -> None:
    h = Harness(lambda ctx: None)
    out = h.send(invite_bytes(method="OPTIONS"))
    assert out == []
    assert h.proxy.active_requests == 0 and h.proxy.layer.server_transactions == 0


# -- 16.6 forwarding ------------------------------------------------------------------


def test_a_relayed_invite_gets_100_upstream_and_via_record_route_received_downstream() -> None:
    def route(ctx: RequestContext) -> None:
        ctx.record_route({"did": "abc.1"})
        ctx.relay(UAS1)

    h = Harness(route)
    src = Endpoint("127.0.0.2", 40000)  # not the Via sent-by: received/rport go on
    data = invite_bytes(branch="z9hG4bKuac1").replace(b"5061;branch", b"5061;rport;branch")
    out = h.send(data, src)
    assert codes(to(out, src)) == [100]
    (fwd,) = requests(to(out, UAS1))
    top, second = fwd.via[0], fwd.via[1]
    assert top.host == "127.0.0.1" and top.port == 5060 and top.has_rfc3261_branch
    assert second.received == "127.0.0.2" and second.rport == 40000
    (rr,) = fwd.record_route
    assert str(rr.uri) == "sip:127.0.0.1:5060;lr;ftag=a1;did=abc.1"  # ftag: rr's append_fromtag
    assert fwd.max_forwards == 69
    assert fwd.uri == parse_message(data).uri  # type: ignore[union-attr]


def test_loose_route_removes_our_route_and_forwards_to_the_next_hop() -> None:
    h = Harness(relay_to(UAS1))
    data = invite_bytes(
        method="BYE",
        uri="sip:bob@127.0.0.1:5062",
        extra="Route: <sip:127.0.0.1:5060;lr>, <sip:127.0.0.1:5063;lr>\r\n",
    )
    (fwd,) = requests(h.send(data))
    assert [str(r.uri) for r in fwd.route] == ["sip:127.0.0.1:5063;lr"]
    out = h.send(data)  # a retransmission is absorbed
    assert requests(out) == []
    (fwd2,) = requests(h.send(data.replace(b"z9hG4bKc1-uac", b"z9hG4bKc1-uac2")))
    assert fwd2.uri == fwd.uri


def test_loose_route_after_a_strict_router_restores_the_request_uri() -> None:
    h = Harness(relay_to(UAS1))
    # A strict router put our Record-Route URI (no lr) in the Request-URI and
    # the real target last in the Route set (RFC 3261 16.4).
    data = invite_bytes(
        method="BYE",
        uri="sip:127.0.0.1:5060",
        extra="Route: <sip:127.0.0.1:5063;lr>, <sip:bob@127.0.0.1:5062>\r\n",
    )
    out = h.send(data)
    (fwd,) = requests(out)
    assert str(fwd.uri) == "sip:bob@127.0.0.1:5062"
    assert [str(r.uri) for r in fwd.route] == ["sip:127.0.0.1:5063;lr"]
    assert out[0].destination == UAS2  # the next loose Route, not the Request-URI


def test_a_next_hop_strict_router_gets_the_request_uri_rewritten() -> None:
    h = Harness(relay_to(UAS1))
    data = invite_bytes(
        method="BYE", uri="sip:bob@127.0.0.1:5062", extra="Route: <sip:127.0.0.1:5063>\r\n"
    )
    (send,) = h.send(data)
    fwd = send.message
    assert isinstance(fwd, Request)
    assert send.destination == UAS2
    assert str(fwd.uri) == "sip:127.0.0.1:5063"  # 16.6 step 7
    assert [str(r.uri) for r in fwd.route] == ["sip:bob@127.0.0.1:5062"]


def test_an_unresolvable_destination_is_answered_478() -> None:
    h = Harness(lambda ctx: ctx.relay())
    out = h.send(invite_bytes(method="OPTIONS", uri="sip:bob@nowhere.invalid"))
    assert codes(out) == [478]


def test_a_resolver_turns_names_into_addresses() -> None:
    h = Harness(lambda ctx: ctx.relay())
    h.proxy.resolver = {"gw.example.com": "127.0.0.1"}.get
    (send,) = h.send(invite_bytes(method="OPTIONS", uri="sip:bob@gw.example.com:5062"))
    assert send.destination == UAS1


# -- 16.7 responses ------------------------------------------------------------------------


def test_provisional_and_final_responses_go_upstream_without_our_via_and_100_does_not() -> None:
    h = Harness(relay_to(UAS1))
    out = h.send(invite_bytes())
    (fwd,) = to(out, UAS1)
    assert h.answer(fwd, 100) == []
    (ringing,) = h.answer(fwd, 180)
    assert ringing.destination == UAC and codes([ringing]) == [180]
    resp = ringing.message
    assert isinstance(resp, Response) and len(resp.via) == 1
    assert resp.via[0].branch == "z9hG4bKc1-uac"
    (ok,) = h.answer(fwd, 200)
    assert codes([ok]) == [200]
    h.settle()


def test_forking_forwards_every_2xx_and_cancels_the_pending_branches() -> None:
    h = Harness(relay_to(UAS1, UAS2))
    out = h.send(invite_bytes())
    (b1,) = to(out, UAS1)
    (b2,) = to(out, UAS2)
    h.answer(b2, 180, to_tag="t2")
    out = h.answer(b1, 200, to_tag="t1")
    assert codes(to(out, UAC)) == [200]
    (cancel,) = requests(to(out, UAS2))
    assert (
        cancel.method == "CANCEL" and cancel.via[0].branch == parse_message(b2.data).via[0].branch
    )
    # UAS2 answered 200 before the CANCEL reached it: forwarded too.
    out = h.answer(b2, 200, to_tag="t2")
    assert codes(to(out, UAC)) == [200]


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ((486, 404), 486),  # same class: the first branch
        ((404, 401), 401),  # 401 is preferred among 4xx
        ((503, 302), 302),  # the lowest class wins
        ((503, 503), 500),  # 16.7 step 6: only 503s become a 500
        ((480, 603), 603),  # a 6xx beats everything
    ],
)
def test_best_response_of_forked_failures(answers: tuple[int, int], expected: int) -> None:
    h = Harness(relay_to(UAS1, UAS2))
    out = h.send(invite_bytes())
    (b1,) = to(out, UAS1)
    (b2,) = to(out, UAS2)
    assert to(h.answer(b1, answers[0]), UAC) == []  # nothing upstream until all are done
    out = h.answer(b2, answers[1], to_tag="b2")
    assert codes(to(out, UAC)) == [expected]
    h.settle()


def test_a_6xx_cancels_the_other_branches_and_is_forwarded_at_once() -> None:
    h = Harness(relay_to(UAS1, UAS2))
    out = h.send(invite_bytes())
    (b1,) = to(out, UAS1)
    (b2,) = to(out, UAS2)
    h.answer(b2, 180, to_tag="b2")
    out = h.answer(b1, 603)
    assert [r.method for r in requests(to(out, UAS2))] == ["CANCEL"]
    assert codes(to(out, UAC)) == []  # waits for the cancelled branch's 487
    out = h.answer(b2, 487, to_tag="b2")
    assert codes(to(out, UAC)) == [603]


def test_failure_route_fails_over_on_503_and_sees_the_best_response() -> None:
    seen: list[int] = []

    def failover(ctx: RequestContext) -> None:
        best = ctx.best_response
        assert best is not None
        seen.append(best.status_code)
        ctx.relay(UAS2)

    def route(ctx: RequestContext) -> None:
        ctx.on_failure(failover)
        ctx.relay(UAS1)

    h = Harness(route)
    (b1,) = to(h.send(invite_bytes()), UAS1)
    out = h.answer(b1, 503)
    assert seen == [503]
    assert codes(to(out, UAC)) == []
    (b2,) = to(out, UAS2)
    out = h.answer(b2, 486, to_tag="b2")
    assert codes(to(out, UAC)) == [486]  # the failure route is armed once
    h.settle()


def test_a_stray_2xx_after_the_transactions_ended_is_forwarded_statelessly() -> None:
    h = Harness(relay_to(UAS1))
    (fwd,) = to(h.send(invite_bytes()), UAS1)
    h.answer(fwd, 200)
    h.settle()
    out = h.answer(fwd, 200)  # the UAS retransmits its 2xx late
    assert codes(out) == [200] and out[0].destination == UAC


def test_an_ack_for_a_2xx_is_forwarded_statelessly_along_the_route() -> None:
    h = Harness(relay_to(UAS1))
    ack = invite_bytes(
        method="ACK",
        uri="sip:bob@127.0.0.1:5062",
        branch="z9hG4bKack1",
        extra="Route: <sip:127.0.0.1:5060;lr>\r\n",
    )
    (send,) = h.send(ack)
    fwd = send.message
    assert isinstance(fwd, Request) and fwd.method == "ACK" and send.destination == UAS1
    assert fwd.max_forwards == 69 and len(fwd.via) == 2 and "Route" not in fwd
    (again,) = h.send(ack)
    assert again.data == send.data  # the same branch for a retransmission (16.11)
    assert h.proxy.active_requests == 0


# -- 16.10 CANCEL, 16.8 Timer C, 16.9 transport errors ----------------------------------------


def test_cancel_after_a_provisional_is_propagated_and_the_487_forwarded() -> None:
    h = Harness(relay_to(UAS1))
    (fwd,) = to(h.send(invite_bytes()), UAS1)
    h.answer(fwd, 180)
    cancel = invite_bytes(method="CANCEL")
    out = h.send(cancel)
    assert codes(to(out, UAC)) == [200]
    (down,) = requests(to(out, UAS1))
    assert down.method == "CANCEL"
    out = h.answer(fwd, 487)
    assert codes(to(out, UAC)) == [487]
    h.settle()


def test_cancel_before_any_provisional_waits_for_one() -> None:
    h = Harness(relay_to(UAS1))
    (fwd,) = to(h.send(invite_bytes()), UAS1)
    out = h.send(invite_bytes(method="CANCEL"))
    assert codes(to(out, UAC)) == [200] and requests(to(out, UAS1)) == []
    out = h.answer(fwd, 100)
    assert [r.method for r in requests(out)] == ["CANCEL"]  # RFC 3261 9.1


def test_cancel_for_an_unknown_invite_is_481_and_for_a_suspended_one_487() -> None:
    h = Harness(lambda ctx: ctx.suspend())
    assert codes(h.send(invite_bytes(method="CANCEL", call_id="nope"))) == [481]
    h.send(invite_bytes())
    out = h.send(invite_bytes(method="CANCEL"))
    assert sorted(codes(out)) == [200, 487]
    h.settle()


def test_a_suspended_request_is_answered_408_when_the_script_never_comes_back() -> None:
    h = Harness(lambda ctx: ctx.suspend(), suspend_timeout=5.0)
    h.send(invite_bytes(method="OPTIONS"))
    assert h.advance(4.9) == []
    assert codes(h.advance(0.1)) == [408]
    h.settle()


def test_a_suspended_request_can_be_relayed_later() -> None:
    parked: list[RequestContext] = []

    def park(ctx: RequestContext) -> None:
        ctx.suspend()
        parked.append(ctx)

    h = Harness(park)
    assert h.send(invite_bytes(method="OPTIONS")) == []
    parked[0].relay(UAS1, now=2.0)  # the lookup the script waited for came back
    (send,) = h.proxy.take()
    assert send.destination == UAS1
    assert h.proxy.next_deadline() == pytest.approx(2.5)  # Timer E from the relay's now


def test_timer_c_cancels_a_ringing_branch_and_answers_408() -> None:
    h = Harness(relay_to(UAS1), fr_inv_timeout=60.0)
    (fwd,) = to(h.send(invite_bytes()), UAS1)
    h.answer(fwd, 180)
    assert requests(h.advance(59.0)) == []
    out = h.advance(1.0)
    assert [r.method for r in requests(to(out, UAS1))] == ["CANCEL"]
    assert codes(to(out, UAC)) == [408]
    h.settle()  # the UAS never answers the CANCELled INVITE: Timer B after it ends it


def test_a_branch_that_never_answers_times_out_408() -> None:
    h = Harness(relay_to(UAS1))
    h.send(invite_bytes())
    out: list[Send] = []
    while (deadline := h.proxy.next_deadline()) is not None and deadline <= 40.0:
        out += h.advance(deadline - h.now)
    upstream = codes(to(out, UAC))
    assert upstream[0] == 408 and set(upstream) == {408}  # then Timer G resends it
    retransmitted = [r for r in requests(to(out, UAS1)) if r.method == "INVITE"]
    assert len(retransmitted) == 6  # Timer A: 0.5, 1, 2, 4, 8, 16
    h.settle()


def test_a_transport_error_on_a_branch_is_a_503_and_a_lone_503_goes_up_as_500() -> None:
    h = Harness(relay_to(UAS1))
    (fwd,) = to(h.send(invite_bytes()), UAS1)
    out = h.proxy.transport_error(fwd, h.now)
    assert codes(to(out, UAC)) == [500]


# -- hooks -------------------------------------------------------------------------------------


def test_hooks_see_every_stage_once_and_can_edit_and_drop() -> None:
    calls: list[str] = []
    hooks = ProxyHooks()
    hooks.request_received.append(lambda ctx: calls.append(f"request {ctx.method}"))

    def branch(ctx: RequestContext, b: object) -> None:
        calls.append("branch")
        ctx.branches[-1].request.add_header("X-Balanced", "yes")

    hooks.branch_sending.append(branch)

    def reply(ctx: RequestContext, b: object, r: Response) -> bool:
        calls.append(f"reply {r.status_code}")
        return r.status_code != 183

    hooks.reply_received.append(reply)
    hooks.response_forwarded.append(lambda ctx, r: calls.append(f"forwarded {r.status_code}"))
    hooks.transaction_ended.append(lambda ctx: calls.append("ended"))
    h = Harness(relay_to(UAS1))
    h.proxy.hooks = hooks
    (fwd,) = to(h.send(invite_bytes()), UAS1)
    assert parse_message(fwd.data).get("X-Balanced") == "yes"
    assert h.answer(fwd, 183) == []  # dropped by the reply hook
    h.answer(fwd, 200)
    h.settle()
    assert calls == [
        "request INVITE",
        "branch",
        "reply 183",
        "reply 200",
        "forwarded 200",
        "ended",
    ]


def test_config_refuses_nonsense() -> None:
    from sipcore import LocalProtocolError

    with pytest.raises(LocalProtocolError):
        ProxyConfig(listen=())
    with pytest.raises(LocalProtocolError):
        ProxyConfig(listen=(PROXY,), max_branches=0)


def test_a_401_and_a_407_from_two_branches_go_up_with_both_challenges() -> None:
    h = Harness(relay_to(UAS1, UAS2))
    out = h.send(invite_bytes())
    (b1,) = to(out, UAS1)
    (b2,) = to(out, UAS2)
    h.answer(b1, 401, headers=[("WWW-Authenticate", 'Digest realm="one", nonce="1"')])
    out = h.answer(
        b2, 407, to_tag="b2", headers=[("Proxy-Authenticate", 'Digest realm="two", nonce="2"')]
    )
    (up,) = [s.message for s in to(out, UAC) if isinstance(s.message, Response)]
    assert up.status_code == 401
    assert up.get_all("WWW-Authenticate") == ['Digest realm="one", nonce="1"']
    assert up.get_all("Proxy-Authenticate") == ['Digest realm="two", nonce="2"']


def test_a_transport_error_sending_a_response_upstream_ends_the_server_transaction() -> None:
    h = Harness(lambda ctx: ctx.reply(486))
    (sent,) = [s for s in h.send(invite_bytes()) if codes([s]) == [486]]
    assert h.proxy.layer.server_transactions == 1
    h.proxy.transport_error(sent, h.now)
    assert h.proxy.layer.server_transactions == 0
    assert h.proxy.active_requests == 0


def test_a_local_request_gets_its_responses_and_a_timeout_as_408() -> None:

    h = Harness(lambda ctx: None)
    got: list[int] = []
    bye = make_request(
        "BYE",
        "sip:bob@127.0.0.1:5062",
        from_="<sip:alice@example.com>;tag=a1",
        to="<sip:bob@example.com>;tag=b1",
        via="SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKignored",
        call_id="c9",
    )
    bye.remove_header("Via")
    h.proxy.send_request(bye, now=0.0, on_response=lambda r: got.append(r.status_code))
    (send,) = h.proxy.take()
    assert send.destination == UAS1 and parse_message(send.data).via[0].port == 5060
    h.answer(send, 200)
    assert got == [200]
    opt = make_request(
        "OPTIONS",
        "sip:bob@127.0.0.1:5062",
        from_="<sip:alice@example.com>;tag=a1",
        to="<sip:bob@example.com>;tag=b1",
        via="SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx",
        call_id="c9",
        cseq=2,
    )
    opt.remove_header("Via")
    h.proxy.send_request(opt, UAS1, now=0.0, on_response=lambda r: got.append(r.status_code))
    h.settle()
    assert got == [200, 408]


def test_on_failure_hears_of_a_timeout_or_a_transport_error_instead() -> None:
    h = Harness(lambda ctx: None)
    answered: list[int] = []
    failed: list[int] = []

    def options(call_id: str) -> Request:
        return make_request(
            "OPTIONS",
            "sip:bob@127.0.0.1:5062",
            from_="<sip:alice@example.com>;tag=a1",
            to="<sip:bob@example.com>",
            via=None,
            call_id=call_id,
        )

    for call_id in ("t1", "t2"):
        h.proxy.send_request(
            options(call_id),
            UAS1,
            now=0.0,
            on_response=lambda r: answered.append(r.status_code),
            on_failure=failed.append,
        )
    first, _unanswered = h.proxy.take()
    h.proxy.transport_error(first, 0.1)
    assert failed == [503]
    h.settle()  # the other one is never answered
    assert failed == [503, 408] and answered == []


def test_services_are_ticked_by_the_proxy_when_due() -> None:
    class Every10s:
        def __init__(self) -> None:
            self.due: float | None = 10.0
            self.ticks: list[float] = []

        def next_deadline(self) -> float | None:
            return self.due

        def tick(self, now: float) -> None:
            self.ticks.append(now)
            self.due = now + 10.0 if len(self.ticks) < 3 else None

    h = Harness(lambda ctx: None)
    service = Every10s()
    h.proxy.services.append(service)
    assert h.proxy.next_deadline() == 10.0
    h.settle()
    assert service.ticks == [10.0, 20.0, 30.0]


def test_relay_of_an_ack_for_a_2xx_forwards_it_statelessly_and_returns_no_branch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from sipcore import Branch, make_request, new_branch

    relayed: list[Branch | None] = []

    def script(ctx: RequestContext) -> None:
        if ctx.loose_route():
            relayed.append(ctx.relay())
            return
        ctx.record_route()
        ctx.relay(UAS1)

    h = Harness(script)
    ack = make_request(
        "ACK",
        "sip:bob@127.0.0.1:5062",
        from_="<sip:alice@example.com>;tag=a1",
        to="<sip:bob@example.com>;tag=b1",
        via=f"SIP/2.0/UDP 127.0.0.1:5061;branch={new_branch()}",
        route=["<sip:127.0.0.1:5060;lr>"],
    )
    with caplog.at_level(logging.WARNING, logger="sipcore.proxy"):
        sent = h.send(bytes(ack))
    assert [r.levelname for r in caplog.records] == []
    assert relayed == [None]
    assert [s.destination for s in sent] == [UAS1]
    forwarded = parse_message(sent[0].data)
    assert forwarded.start_line == "ACK sip:bob@127.0.0.1:5062 SIP/2.0"
    assert "Route" not in forwarded
    assert len(forwarded.via) == 2


def test_append_fromtag_off_leaves_the_record_route_without_ftag() -> None:
    h = Harness(relay_to(UAS1), append_fromtag=False)
    (fwd,) = requests(to(h.send(invite_bytes()), UAS1))
    assert [str(rr.uri) for rr in fwd.record_route] == ["sip:127.0.0.1:5060;lr"]
