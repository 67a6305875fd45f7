"""Thousands of calls through the proxy core on a simulated, lossy network.

UAC -> proxy -> UAS1 (and UAS2 for failover), all sipcore user agents in
memory. The wire loses, duplicates and reorders datagrams (seeded). Every
call must end as its scenario says, and once the timers have run out no
transaction, timer or request context may be left anywhere.
"""

from __future__ import annotations

import logging
import random

import pytest

from simnet import Network, ProxyNode, Uac, Uas, Wire
from sipcore import Endpoint, Proxy, ProxyConfig, RequestContext

PROXY = Endpoint("127.0.0.1", 5060)
UAC = Endpoint("127.0.0.1", 5061)
UAS1 = Endpoint("127.0.0.1", 5062)
UAS2 = Endpoint("127.0.0.1", 5063)

# user at UAS1 -> the outcomes the caller may see
SCENARIOS = {
    "ok": {"completed"},
    "busy": {"486"},
    "fail": {"completed"},  # 503 from UAS1, failover to UAS2
    "silent": {"completed"},  # UAS1 never answers: 408 after Timer B, failover
    "cancel": {"487", "completed"},  # CANCEL races the 200
}


def failover(ctx: RequestContext) -> None:
    """Kamailio's failure_route: on 408 or 503 from the first gateway, try the next."""
    best = ctx.best_response
    if ctx.cancelled or best is None or len(ctx.branches) > 1:
        return
    if best.status_code in (408, 503):
        ctx.relay(UAS2)


def route(ctx: RequestContext) -> None:
    """Kamailio's request_route for a record-routing load balancer."""
    if ctx.loose_route():
        ctx.relay()
        return
    if ctx.method != "INVITE":
        ctx.reply(404)
        return
    ctx.record_route()
    ctx.on_failure(failover)
    ctx.relay(UAS1)


def simulate(
    seed: int, calls: int, wire: Wire
) -> tuple[Network, Proxy, Uac, Uas, Uas, dict[str, str]]:
    rng = random.Random(seed)
    net = Network(seed, wire)
    proxy = Proxy(ProxyConfig(listen=(PROXY,)), route)
    uac = Uac(UAC, PROXY, hold=1.0)
    uas1 = Uas(UAS1, ring=0.3)
    uas2 = Uas(UAS2, ring=0.2, behaviour="ok")
    for node in (ProxyNode(proxy), uac, uas1, uas2):
        net.add(node)
    scenario_of: dict[str, str] = {}
    names = list(SCENARIOS)
    weights = [40, 15, 15, 10, 20]
    for i in range(calls):
        scenario = rng.choices(names, weights)[0]
        user = "ok" if scenario == "cancel" else scenario
        cancel_after = rng.uniform(0.0, 0.6) if scenario == "cancel" else None
        uac.place(i * 0.05, user, i, cancel_after)
        scenario_of[f"call-{i}@{UAC.host}"] = scenario
    net.run(until=calls * 0.05 + 40.0)
    return net, proxy, uac, uas1, uas2, scenario_of


@pytest.mark.parametrize(
    ("seed", "wire"),
    [
        (1, Wire()),
        (2, Wire(loss=0.03, duplicate=0.03, delay=(0.001, 0.08))),
        (3, Wire(loss=0.05, duplicate=0.05, delay=(0.001, 0.3))),
    ],
    ids=["clean", "lossy", "very-lossy-reordering"],
)
def test_a_thousand_calls_end_as_their_scenario_says_and_leave_nothing_behind(
    seed: int, wire: Wire, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 1000
    with caplog.at_level(logging.WARNING, logger="sipcore"):
        net, proxy, uac, uas1, uas2, scenario_of = simulate(seed, calls, wire)
    # A hook or script that raised is logged, not propagated: none may have.
    assert not caplog.records, [r.getMessage() for r in caplog.records[:5]]
    outcomes: dict[str, int] = {}
    wrong = []
    for call_id, call in uac.calls.items():
        scenario = scenario_of[call_id]
        outcome = call.outcome
        outcomes[f"{scenario}->{outcome}"] = outcomes.get(f"{scenario}->{outcome}", 0) + 1
        if outcome not in SCENARIOS[scenario]:
            wrong.append((call_id, scenario, outcome))
    assert len(uac.calls) == calls
    assert not wrong, (wrong[:10], outcomes)
    # The callee side agrees: every completed call was ACKed and hung up there.
    for call_id, call in uac.calls.items():
        if call.outcome == "completed":
            at = uas2 if scenario_of[call_id] in ("fail", "silent") else uas1
            uas_call = at.calls[call_id]
            assert uas_call.acked and uas_call.byed, (call_id, scenario_of[call_id])
        if call.outcome == "487":
            assert uas1.calls[call_id].cancelled
    # Failover really happened: UAS2 saw exactly the failed-over calls.
    failed_over = {c for c, s in scenario_of.items() if s in ("fail", "silent")}
    assert set(uas2.calls) == failed_over
    # Both outcomes of the CANCEL race occur over a thousand calls.
    assert outcomes.get("cancel->487", 0) > 0 and outcomes.get("cancel->completed", 0) > 0
    if wire.loss:
        assert net.lost > 0 and net.duplicated > 0

    # Let every timer run out (Timer D, J, K, L, M are at most 32 s).
    net.run(until=net.now + 300.0)
    assert net.in_flight == 0
    assert proxy.active_requests == 0
    assert proxy.layer.client_transactions == 0
    assert proxy.layer.server_transactions == 0
    assert proxy.layer.pending_timers == 0
    assert proxy.next_deadline() is None
    for agent in (uac, uas1, uas2):
        assert agent.idle, agent
        assert not agent.errors, agent.errors[:5]
