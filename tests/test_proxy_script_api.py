"""The proxy core's script API, as an I/O adapter relies on it.

Things the asyncio adapter found while driving :class:`sipcore.Proxy`:
what a script does outside ``receive``/``tick`` (after ``suspend()``)
must come out of ``take()``, and ``relay()`` on an ACK returns to the script.
"""

from __future__ import annotations

import sipcore
from sipcore import Endpoint, Proxy, ProxyConfig, Request, RequestContext, Response

PROXY = Endpoint("127.0.0.1", 5060)
UAC = Endpoint("127.0.0.1", 5080)
UAS = Endpoint("127.0.0.1", 5070)


def request(method: str) -> Request:
    return sipcore.make_request(
        method,
        "sip:bob@127.0.0.1:5060",
        from_="<sip:alice@127.0.0.1:5080>",
        to="<sip:bob@127.0.0.1>",
        via=f"SIP/2.0/UDP {UAC.hostport};branch={sipcore.new_branch()}",
        call_id="script-api",
        from_tag="alice",
    )


def suspending_proxy() -> tuple[Proxy, list[RequestContext]]:
    held: list[RequestContext] = []

    def route(ctx: RequestContext) -> None:
        ctx.suspend()
        held.append(ctx)

    return Proxy(ProxyConfig(listen=(PROXY,)), route), held


def test_take_returns_a_reply_made_after_suspend() -> None:
    proxy, held = suspending_proxy()
    assert proxy.receive(bytes(request("OPTIONS")), UAC, 0.0) == []
    held[0].reply(200)
    sends = proxy.take()
    assert [(type(s.message), s.destination) for s in sends] == [(Response, UAC)]
    assert isinstance(sends[0].message, Response) and sends[0].message.status_code == 200
    assert proxy.take() == []


def test_take_returns_a_relay_made_after_suspend() -> None:
    proxy, held = suspending_proxy()
    proxy.receive(bytes(request("MESSAGE")), UAC, 0.0)
    held[0].relay(UAS)
    sends = proxy.take()
    assert [s.destination for s in sends] == [UAS]
    relayed = sends[0].message
    assert isinstance(relayed, Request) and relayed.method == "MESSAGE"
    assert relayed.via[0].sent_by == PROXY.hostport


def test_relay_forwards_an_ack_for_a_2xx_and_returns_to_the_script() -> None:
    completed: list[str] = []

    def route(ctx: RequestContext) -> None:
        ctx.relay(UAS)
        completed.append(ctx.method)

    proxy = Proxy(ProxyConfig(listen=(PROXY,)), route)
    ack = request("ACK")  # matches no transaction: forwarded statelessly
    sends = proxy.receive(bytes(ack), UAC, 0.0)
    assert [s.destination for s in sends] == [UAS]
    assert completed == ["ACK"], "the script stopped at relay()"
