"""The stateful proxy core, driven with wire bytes on a fake clock."""

from __future__ import annotations

import logging

import pytest

from sipcore import (
    Branch,
    Endpoint,
    Proxy,
    ProxyConfig,
    RequestContext,
    make_request,
    new_branch,
    parse_message,
)

PROXY = Endpoint("192.0.2.1", 5060)
UAC = Endpoint("192.0.2.10", 5060)
UAS = Endpoint("192.0.2.20", 5070)


def test_relay_of_an_ack_for_a_2xx_forwards_it_statelessly_and_returns_no_branch(
    caplog: pytest.LogCaptureFixture,
) -> None:
    relayed: list[Branch | None] = []

    def script(ctx: RequestContext) -> None:
        if ctx.loose_route():
            relayed.append(ctx.relay())
            return
        ctx.record_route()
        ctx.relay(UAS)

    proxy = Proxy(ProxyConfig(listen=(PROXY,)), script)
    ack = make_request(
        "ACK",
        "sip:bob@192.0.2.20:5070",
        from_="<sip:alice@example.com>;tag=a1",
        to="<sip:bob@example.com>;tag=b1",
        via=f"SIP/2.0/UDP 192.0.2.10:5060;branch={new_branch()}",
        route=["<sip:192.0.2.1:5060;lr>"],
    )
    with caplog.at_level(logging.WARNING, logger="sipcore.proxy"):
        sent = proxy.receive(bytes(ack), UAC, 0.0)

    assert [r.levelname for r in caplog.records] == []
    assert relayed == [None]
    assert [s.destination for s in sent] == [UAS]
    forwarded = parse_message(sent[0].data)
    assert forwarded.start_line == "ACK sip:bob@192.0.2.20:5070 SIP/2.0"
    assert "Route" not in forwarded
    assert len(forwarded.via) == 2
