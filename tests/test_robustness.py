"""Bad input never crashes the embedding application (issues 2-4).

Damaged and random datagrams go through the whole stack at once: a
record-routing proxy with a dialog tracker attached that tracks every
INVITE into profiles. Nothing but ``Send`` actions may come out, no hook may
raise (a hook that raises is logged at ERROR and turns the request into a
500), and once the timers have run out nothing may be left behind.
"""

from __future__ import annotations

import logging

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipcore import (
    Endpoint,
    Proxy,
    ProxyConfig,
    Request,
    RequestContext,
    Send,
    make_request,
    make_response,
    parse_message,
)
from sipcore_dialog import DialogConfig, DialogTracker
from strategies import messages, mutated

PROXY = Endpoint("127.0.0.1", 5060)
UAC = Endpoint("127.0.0.1", 5061)
UAS = Endpoint("127.0.0.1", 5062)


def stack() -> tuple[Proxy, DialogTracker]:
    tracker = DialogTracker(
        DialogConfig(profiles_with_value=("caller",), profiles_no_value=("calls",))
    )

    def route(ctx: RequestContext) -> None:
        if ctx.loose_route():
            ctx.relay()
            return
        if ctx.method != "INVITE":
            ctx.reply(404)
            return
        ctx.record_route()
        dialog = tracker.manage(ctx)
        if dialog is not None:
            tracker.set_profile(dialog, "calls")
            tracker.set_profile(dialog, "caller", ctx.request.from_.tag or "anonymous")
        ctx.relay(UAS)

    proxy = Proxy(ProxyConfig(listen=(PROXY,)), route)
    tracker.attach(proxy)
    return proxy, tracker


def a_call() -> list[tuple[bytes, Endpoint]]:
    """The datagrams of one call as they reach the proxy, from both sides."""
    invite = make_request(
        "INVITE",
        "sip:bob@example.com",
        from_="<sip:alice@example.com>",
        from_tag="a1",
        to="<sip:bob@example.com>",
        via="SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKrobust1",
        call_id="robust-1",
        contact="<sip:alice@127.0.0.1:5061>",
    )
    proxy, _ = stack()
    relayed = next(s for s in proxy.receive(bytes(invite), UAC, 0.0) if s.destination == UAS)
    forwarded = parse_message(relayed.data)
    assert isinstance(forwarded, Request)
    ok = make_response(
        forwarded, 200, to_tag="b1", headers=[("Contact", "<sip:bob@127.0.0.1:5062>")]
    )
    rr = str(forwarded.record_route[0])
    ack = make_request(
        "ACK",
        "sip:bob@127.0.0.1:5062",
        from_="<sip:alice@example.com>;tag=a1",
        to="<sip:bob@example.com>;tag=b1",
        via="SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKrobust2",
        call_id="robust-1",
        route=[rr],
    )
    bye = make_request(
        "BYE",
        "sip:bob@127.0.0.1:5062",
        from_="<sip:alice@example.com>;tag=a1",
        to="<sip:bob@example.com>;tag=b1",
        via="SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bKrobust3",
        call_id="robust-1",
        cseq=2,
        route=[rr],
    )
    return [
        (bytes(invite), UAC),
        (bytes(make_response(forwarded, 180, to_tag="b1")), UAS),
        (bytes(ok), UAS),
        (bytes(ack), UAC),
        (bytes(bye), UAC),
    ]


CALL = a_call()


def run(proxy: Proxy, datagrams: list[tuple[bytes, Endpoint]]) -> float:
    now = 0.0
    for data, source in datagrams:
        now += 0.01
        out = proxy.receive(data, source, now)
        assert all(isinstance(s, Send) for s in out)
        for send in out:
            bytes(send.data)  # whatever comes out can be sent
    return now


def run_and_settle(
    proxy: Proxy, tracker: DialogTracker, datagrams: list[tuple[bytes, Endpoint]]
) -> None:
    """Feed the datagrams, let every timer run out; nothing may be logged
    at ERROR (a hook that raised) and nothing may be left behind."""
    errors = _ErrorLog()
    logging.getLogger("sipcore").addHandler(errors)
    try:
        settle(proxy, tracker, run(proxy, datagrams))
    finally:
        logging.getLogger("sipcore").removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]


def settle(proxy: Proxy, tracker: DialogTracker, now: float) -> None:
    for _ in range(10_000):
        deadline = proxy.next_deadline()
        if deadline is None:
            break
        now = max(now, deadline)
        assert all(isinstance(s, Send) for s in proxy.tick(now))
    assert proxy.next_deadline() is None
    assert proxy.active_requests == 0
    assert proxy.layer.client_transactions == 0 and proxy.layer.server_transactions == 0
    assert len(tracker) == 0
    assert tracker.profile_size("calls") == 0 and tracker.profile_size("caller") == 0


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_a_damaged_call_never_raises_and_leaves_nothing_behind(data: st.DataObject) -> None:
    proxy, tracker = stack()
    datagrams = []
    for raw, source in CALL:
        if data.draw(st.booleans(), label="damage this one"):
            raw = data.draw(mutated(raw), label="damaged")
        datagrams.append((raw, source))
    run_and_settle(proxy, tracker, datagrams)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_random_messages_and_their_damage_never_raise(data: st.DataObject) -> None:
    proxy, tracker = stack()
    datagrams = []
    for _ in range(data.draw(st.integers(1, 4), label="how many")):
        spec = data.draw(messages(), label="message")
        raw = spec.data
        if data.draw(st.booleans(), label="damage it"):
            raw = data.draw(mutated(raw), label="damaged")
        datagrams.append((raw, data.draw(st.sampled_from([UAC, UAS]), label="from")))
    run_and_settle(proxy, tracker, datagrams)


def test_the_undamaged_call_goes_through_and_ends() -> None:
    proxy, tracker = stack()
    now = run(proxy, CALL)
    assert tracker.stats.processed == 1 and tracker.stats.active == 0  # the BYE ended it
    settle(proxy, tracker, now)


class _ErrorLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
