"""Health probing: which destinations a round pings, the probe requests,
what replies, timeouts and failed sends do to states, the latency
statistics and congestion control, and the prober inside a Proxy (real
messages through the transaction layer, fake clock)."""

from __future__ import annotations

import math
import statistics

import pytest

from sipcore import (
    Endpoint,
    LocalProtocolError,
    Proxy,
    ProxyConfig,
    Request,
    make_response,
    parse_message,
)
from sipcore_dispatch import (
    DestinationDown,
    DestinationState,
    DestinationUp,
    Dispatcher,
    DispatcherConfig,
    Probe,
    Prober,
    ProbeService,
    ProbingMode,
    parse_reply_codes,
    reply_code_accepted,
)

S = DestinationState
A = "sip:10.0.0.1:5060"
B = "sip:10.0.0.2:5060"


def make(text: str, **config: object) -> tuple[Dispatcher, Prober]:
    d = Dispatcher(DispatcherConfig(**config))  # type: ignore[arg-type]
    d.load_list(text)
    return d, Prober(d, now=0.0)


def test_reply_codes_parse_codes_and_classes_like_kamailio() -> None:
    assert parse_reply_codes("code=403;class=4;code=999;class=7;x=1;code=40a") == (403, 4)
    assert parse_reply_codes("") == ()
    assert reply_code_accepted(200, ()) and reply_code_accepted(299, ())
    assert not reply_code_accepted(404, ()) and not reply_code_accepted(408, ())
    assert reply_code_accepted(404, (4,)) and not reply_code_accepted(503, (4,))
    assert reply_code_accepted(503, (503,)) and not reply_code_accepted(502, (503,))


def test_no_interval_means_no_rounds() -> None:
    _, p = make(f"1 {A} 8\n")
    assert p.next_deadline() is None
    assert p.tick(1e9) == []


def test_rounds_every_interval_and_missed_rounds_are_not_made_up() -> None:
    _, p = make(f"1 {A} 8\n", ds_ping_interval=10)
    assert p.next_deadline() == 10.0
    assert p.tick(9.9) == []
    assert [x.uri for x in p.tick(10.0)] == [A]
    assert p.next_deadline() == 20.0
    assert len(p.tick(75.0)) == 1  # one round, not six
    assert p.next_deadline() == 85.0


def test_ping_active_off_skips_rounds_but_keeps_the_clock() -> None:
    _, p = make(f"1 {A} 8\n", ds_ping_interval=5)
    p.ping_active = False
    assert p.tick(5.0) == [] and p.next_deadline() == 10.0
    p.ping_active = True
    assert len(p.tick(10.0)) == 1


# flags: 0 active, 8 active+probing, 9 inactive+probing, 1 inactive,
# 12 disabled+probing, 40 probing+no-ping, 24 probing+no-resolve.
FLAGS_LIST = "".join(f"1 sip:10.0.1.{f}:5060 {f}\n" for f in (0, 8, 9, 1, 12, 40, 24))


@pytest.mark.parametrize(
    ("mode", "pinged"),
    [
        (ProbingMode.NONE, {8, 9}),
        (ProbingMode.ALL, {0, 8, 9, 1}),
        (ProbingMode.INACTIVE, {9}),
        (ProbingMode.ONLY_FLAGGED, {8, 9}),
    ],
)
def test_which_destinations_a_round_pings(mode: ProbingMode, pinged: set[int]) -> None:
    _, p = make(FLAGS_LIST, ds_probing_mode=mode)
    got = {int(x.uri.split(".")[3].split(":")[0]) for x in p.probe_round(0.0)}
    assert got == pinged


def test_probe_request_is_an_options_to_the_destination_without_via() -> None:
    text = f"1 {A} 8 0 ping_from=sip:lb@example.com;obproxy=sip:10.9.9.9;sockname=pub\n1 {B} 8\n"
    _, p = make(text, ds_ping_from="sip:probe@lb.local", outbound_proxy="sip:10.8.8.8")
    probes = {x.uri: x for x in p.probe_round(3.0)}
    first, second = probes[A], probes[B]
    req = parse_message(bytes(first.request))
    assert isinstance(req, Request)
    assert req.method == "OPTIONS" and str(req.uri) == A
    assert str(req.to.uri) == A and req.to.tag is None
    assert str(req.from_.uri) == "sip:lb@example.com"
    assert req.from_.tag
    assert "Via" not in req and req.cseq.method == "OPTIONS"
    assert first.outbound_proxy == "sip:10.9.9.9" and first.socket == "pub"
    assert str(second.request.from_.uri) == "sip:probe@lb.local"
    assert second.outbound_proxy == "sip:10.8.8.8" and second.socket == ""
    assert first.sent_at == 3.0


def test_ping_method_is_configurable() -> None:
    _, p = make(f"1 {A} 8\n", ds_ping_method="INFO")
    assert p.probe_round(0.0)[0].request.method == "INFO"


def probe_of(p: Prober, uri: str, now: float = 0.0) -> Probe:
    return next(x for x in p.probe_round(now) if x.uri == uri)


def test_failures_take_a_destination_down_at_probing_threshold() -> None:
    d, p = make(
        f"1 {A} 8\n1 {B} 8\n", ds_probing_threshold=3, ds_probing_mode=ProbingMode.ONLY_FLAGGED
    )
    assert p.completed(probe_of(p, A), 408, 1.0) is None
    assert d.state(1, A) == S.TRYING | S.PROBING
    assert p.completed(probe_of(p, A), 503, 2.0) is None
    assert p.completed(probe_of(p, A), 408, 3.0, "Request Timeout") == DestinationDown(
        1, A, S.INACTIVE | S.PROBING, 408, "Request Timeout", True
    )
    assert d.state(1, B) == S.PROBING  # the other one untouched


def test_successes_bring_it_back_at_inactive_threshold() -> None:
    d, p = make(f"1 {A} 9\n", ds_inactive_threshold=2)
    assert p.completed(probe_of(p, A), 200, 1.0) is None
    assert d.state(1, A) == S.INACTIVE | S.PROBING
    assert p.completed(probe_of(p, A), 200, 2.0, "OK") == DestinationUp(
        1, A, S.ACTIVE, 200, "OK", True
    )
    # Mode NONE: once up, it is no longer probed.
    assert p.probe_round(3.0) == []


def test_mode_all_and_only_flagged_keep_probing_after_success() -> None:
    for mode in (ProbingMode.ALL, ProbingMode.ONLY_FLAGGED):
        d, p = make(f"1 {A} 9\n", ds_probing_mode=mode)
        assert p.completed(probe_of(p, A), 200, 1.0) == DestinationUp(
            1, A, S.PROBING, 200, "", True
        )
        assert d.state(1, A) == S.PROBING


def test_failure_in_mode_none_sets_trying_without_probing() -> None:
    d, p = make(f"1 {A} 8\n", ds_probing_threshold=2)
    p.completed(probe_of(p, A), 500, 1.0)
    assert d.state(1, A) == S.TRYING  # Kamailio drops the probing bit in mode 0


def test_accepted_reply_codes_count_as_alive() -> None:
    d, p = make(f"1 {A} 9\n", ds_ping_reply_codes="class=4;code=501")
    assert p.completed(probe_of(p, A), 404, 1.0) == DestinationUp(1, A, S.ACTIVE, 404, "", True)
    d.set_state(1, A, "ip")
    assert p.completed(probe_of(p, A), 501, 2.0) == DestinationUp(1, A, S.ACTIVE, 501, "", True)
    d.set_state(1, A, "ap")
    p.set_reply_codes("")
    assert p.reply_codes == ()
    # Now a 404 is a failure; one is the default ds_probing_threshold.
    assert p.completed(probe_of(p, A), 404, 3.0) == DestinationDown(1, A, S.INACTIVE, 404, "", True)


def test_disabled_meanwhile_or_removed_or_unflagged_is_left_alone() -> None:
    d, p = make(f"1 {A} 8\n1 {B} 8\n", ds_probing_mode=ProbingMode.ONLY_FLAGGED)
    pa, pb = probe_of(p, A), probe_of(p, B)
    d.set_state(1, A, "d")
    assert p.completed(pa, 408, 1.0) is None and d.state(1, A) == S.DISABLED
    d.set_state(1, B, "a")  # probing flag removed by RPC
    assert p.completed(pb, 408, 1.0) is None and d.state(1, B) == S.ACTIVE
    d.remove(1, B)
    assert p.completed(pb, 408, 1.0) is None


def test_completed_refuses_a_provisional_code() -> None:
    _, p = make(f"1 {A} 8\n")
    with pytest.raises(LocalProtocolError):
        p.completed(probe_of(p, A), 180, 1.0)


def test_send_failure_counts_as_a_failure() -> None:
    d, p = make(f"1 {A} 8\n", ds_probing_mode=ProbingMode.ALL)
    probe = probe_of(p, A)
    assert p.send_failed(probe) == DestinationDown(
        1, A, S.INACTIVE | S.PROBING, 500, "Sending keepalive failed", False
    )
    d.set_state(1, A, "d")
    assert p.send_failed(probe) is None and d.state(1, A) == S.DISABLED


def replay(samples: list[int], alpha: float = 0.9) -> Dispatcher:
    d, p = make(
        f"1 {A} 8\n",
        ds_ping_latency_stats=True,
        ds_latency_estimator_alpha=alpha,
        ds_probing_mode=ProbingMode.ONLY_FLAGGED,
    )
    now = 100.0
    for ms in samples:
        probe = probe_of(p, A, now)
        p.completed(probe, 200, now + ms / 1000.0)
        now += 10.0
    return d


def test_latency_average_stdev_min_max_match_the_sample_statistics() -> None:
    samples = [12, 15, 11, 30, 14, 13, 12]
    status = replay(samples).status(1, A)
    assert status.latency_count == len(samples)
    assert status.latency_average == pytest.approx(statistics.mean(samples), abs=1e-6)
    assert status.latency_stdev == pytest.approx(statistics.stdev(samples), abs=1e-6)
    assert (status.latency_min, status.latency_max) == (11, 30)
    # Under 10 samples the estimate is the average.
    assert status.latency_estimate == pytest.approx(statistics.mean(samples), abs=1e-6)


def test_latency_estimate_is_an_ewma_from_the_tenth_sample() -> None:
    samples = [10, 12, 9, 11, 10, 13, 10, 9, 12, 40, 40, 40]
    status = replay(samples, alpha=0.8).status(1, A)
    expected = statistics.mean(samples[:9])
    for ms in samples[9:]:
        expected = expected * 0.8 + ms * 0.2
    assert status.latency_estimate == pytest.approx(expected, abs=1e-6)


def test_stable_latency_trains_the_estimator_at_once() -> None:
    status = replay([20] * 11).status(1, A)
    assert status.latency_count == 10_000 and status.latency_stdev == 0.0


def test_timeouts_count_but_do_not_make_samples() -> None:
    d, p = make(
        f"1 {A} 8\n",
        ds_ping_latency_stats=True,
        ds_probing_threshold=10,
        ds_probing_mode=ProbingMode.ONLY_FLAGGED,
    )
    p.completed(probe_of(p, A, 0.0), 200, 0.020)
    p.completed(probe_of(p, A, 10.0), 408, 42.0)
    status = d.status(1, A)
    assert status.timeouts == 1 and status.latency_count == 1 and status.latency_max == 20


def test_a_destination_not_probing_gets_no_latency() -> None:
    d, p = make(f"1 {A} 0\n", ds_ping_latency_stats=True, ds_probing_mode=ProbingMode.ALL)
    p.completed(probe_of(p, A, 0.0), 200, 0.5)
    # The reply set the probing bit (mode ALL); the sample came before it.
    assert d.state(1, A) == S.PROBING and d.status(1, A).latency_count == 0


def test_latency_attribute_starts_the_statistics_trained() -> None:
    d, p = make(f"1 {A} 8 0 latency=50\n", ds_ping_latency_stats=True)
    status = d.status(1, A)
    assert (status.latency_count, status.latency_average, status.latency_estimate) == (
        10_000,
        50.0,
        50.0,
    )
    p.completed(probe_of(p, A, 0.0), 200, 0.150)
    assert status.latency_estimate == pytest.approx(50 * 0.9 + 150 * 0.1)
    assert status.latency_max == 150


def test_reload_keeps_latency_only_when_asked() -> None:
    for retain in (False, True):
        d, p = make(f"1 {A} 8\n", ds_ping_latency_stats=True, ds_retain_latency_stats=retain)
        p.completed(probe_of(p, A, 0.0), 200, 0.030)
        d.set_state(1, A, "ip")
        d.load_list(f"1 {A} 8\n1 {B}\n")
        status = d.status(1, A)
        assert status.state == S.INACTIVE | S.PROBING  # the state always stays
        assert status.latency_count == (1 if retain else 0)


def test_congestion_control_lowers_rweight_and_rebuilds_the_table() -> None:
    text = f"1 {A} 8 0 cc=1;weight=50;rweight=50\n1 {B} 8 0 cc=1;weight=50;rweight=50\n"
    d, p = make(
        text,
        ds_ping_latency_stats=True,
        ds_latency_estimator_alpha=0.5,
        ds_probing_mode=ProbingMode.ONLY_FLAGGED,
    )
    assert sorted(d.relative_weight_table(1)).count(0) == 50
    now = 0.0
    # Both train on 20 ms; then A slows to 80 ms and its estimate runs ahead
    # of its average: that gap is its congestion.
    for step in range(40):
        for uri in (A, B):
            ms = 80 if (uri == A and step >= 30) else 20
            p.completed(probe_of(p, uri, now), 200, now + ms / 1000.0)
        now += 10.0
    sa, sb = d.status(1, A), d.status(1, B)
    congestion = int(sa.latency_estimate - sa.latency_average)
    assert congestion > 0
    assert sa.rweight == max(50 - congestion, 0) and sb.rweight == 50
    table = d.relative_weight_table(1)
    index_a = d.destinations(1).index(next(x for x in d.destinations(1) if x.uri == A))
    share_a = table.count(index_a)
    assert share_a == sa.rweight * 100 // (sa.rweight + sb.rweight)
    assert math.isclose(share_a + table.count(1 - index_a), 100)


# ------------------------------------------------- inside a Proxy
PROXY = Endpoint("127.0.0.1", 5060)
GW = Endpoint("10.0.0.1", 5060)


def test_probe_service_sends_through_the_proxy_and_feeds_replies_back() -> None:
    d = Dispatcher(DispatcherConfig(ds_ping_interval=5, ds_probing_mode=ProbingMode.ALL))
    d.load_list(f"1 {A}\n")
    proxy = Proxy(ProxyConfig(listen=(PROXY,)), lambda ctx: ctx.reply(404))
    service = ProbeService(Prober(d, now=0.0), proxy)
    proxy.services.append(service)
    assert proxy.next_deadline() == 5.0
    sends = proxy.tick(5.0)
    assert len(sends) == 1 and sends[0].destination == GW
    options = parse_message(sends[0].data)
    assert isinstance(options, Request) and options.method == "OPTIONS"
    assert (options.via[0].branch or "").startswith("z9hG4bK")
    proxy.receive(bytes(make_response(options, 200)), GW, 5.1)
    assert d.state(1, A) == S.PROBING and service.take_events() == []
    # The next probe is never answered: timer F turns it into a 408, and
    # with the default threshold of 1 that takes the destination down.
    proxy.tick(10.0)
    now = 10.0
    while d.state(1, A) & S.INACTIVE == 0 and now < 60.0:
        now = proxy.next_deadline() or now + 1.0
        proxy.tick(now)
    # No reply came: the transaction layer's timeout, not a 408 on the wire.
    assert service.take_events() == [
        DestinationDown(1, A, S.INACTIVE | S.PROBING, 408, "Request Timeout", False)
    ]
    assert 10.0 + 31.9 <= now <= 10.0 + 32.6  # 64 * T1 after the probe left


def test_probe_service_reports_an_unresolvable_outbound_proxy_as_a_failed_send() -> None:
    d = Dispatcher(DispatcherConfig(ds_probing_mode=ProbingMode.ALL))
    d.load_list(f"1 {A} 0 0 obproxy=sip:proxy.invalid\n")
    proxy = Proxy(ProxyConfig(listen=(PROXY,)), lambda ctx: ctx.reply(404))
    prober = Prober(d, now=0.0)
    service = ProbeService(prober, proxy)
    for probe in prober.probe_round(1.0):
        service.send(probe, 1.0)
    assert proxy.take() == []
    assert service.take_events() == [
        DestinationDown(1, A, S.INACTIVE | S.PROBING, 500, "Sending keepalive failed", False)
    ]
