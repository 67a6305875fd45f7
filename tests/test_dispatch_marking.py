"""Marking destinations: ds_mark_dst's threshold counters, events, and the
list queries (is_from_list, is_active, list_exists, count)."""

from __future__ import annotations

import pytest

from sipcore import LocalProtocolError
from sipcore_dispatch import (
    DestinationDown,
    DestinationState,
    DestinationUp,
    Dispatcher,
    DispatcherConfig,
    UnknownDestination,
    parse_state,
)

S = DestinationState
URI = "sip:10.0.0.1:5080"
LIST = f"1 {URI}\n1 sip:gw.example.com\n2 sip:10.0.0.1:5090 8\n"


def make(**config: int) -> Dispatcher:
    d = Dispatcher(DispatcherConfig(**config))  # type: ignore[arg-type]
    d.load_list(LIST)
    return d


def test_state_letters() -> None:
    assert parse_state("a") == S.ACTIVE and parse_state("1") == S.ACTIVE
    assert parse_state("I") == S.INACTIVE and parse_state("0") == S.INACTIVE
    assert parse_state("dp") == S.DISABLED | S.PROBING
    assert parse_state("tp") == S.TRYING | S.PROBING
    # ds_parse_flags: any order, repeats allowed, "a" clears what came before.
    assert parse_state("pi") == parse_state("ipp") == S.INACTIVE | S.PROBING
    assert parse_state("ia") == S.ACTIVE and parse_state("iAp") == S.PROBING
    for bad in ["", "x", "iq", "0x", "2pp", "iiiiiiiii"]:
        with pytest.raises(LocalProtocolError):
            parse_state(bad)


def test_trying_counts_failures_up_to_probing_threshold() -> None:
    d = make(ds_probing_threshold=3)
    assert d.mark(1, URI, "tp") is None
    assert d.state(1, URI) == S.TRYING | S.PROBING and d.status(1, URI).message_count == 1
    assert d.mark(1, URI, "tp") is None
    event = d.mark(1, URI, "tp")
    assert event == DestinationDown(1, URI, S.INACTIVE | S.PROBING)
    assert d.status(1, URI).message_count == 0
    # Trying on an inactive destination keeps it inactive.
    assert d.mark(1, URI, "t") is None
    assert d.state(1, URI) == S.INACTIVE


def test_inactive_needs_inactive_threshold_successes_to_come_back() -> None:
    d = make(ds_inactive_threshold=3)
    assert d.mark(1, URI, "i") == DestinationDown(1, URI, S.INACTIVE)
    d.set_state(1, URI, "ip")
    assert d.mark(1, URI, "a") is None
    assert d.state(1, URI) == S.INACTIVE | S.PROBING  # probing kept while waiting
    assert d.mark(1, URI, "a") is None
    assert d.mark(1, URI, "a") == DestinationUp(1, URI, S.ACTIVE)
    assert d.status(1, URI).message_count == 0


def test_default_thresholds_act_at_once() -> None:
    d = make()
    assert d.mark(1, URI, "t") == DestinationDown(1, URI, S.INACTIVE)
    assert d.mark(1, URI, "a") == DestinationUp(1, URI, S.ACTIVE)


def test_disabled_wins_and_marking_matches_uri_case_insensitively() -> None:
    d = make()
    assert d.mark(1, URI.upper(), S.DISABLED | S.INACTIVE) == DestinationDown(1, URI, S.DISABLED)
    assert d.mark(1, URI, "a") == DestinationUp(1, URI, S.ACTIVE)
    with pytest.raises(UnknownDestination):
        d.mark(1, "sip:nowhere", "a")
    with pytest.raises(UnknownDestination):
        d.mark(3, URI, "a")


def test_mark_by_address_marks_every_set_at_that_host_and_port() -> None:
    d = make()
    events = d.mark_address("10.0.0.1", None, "i")
    assert [(e.setid, e.uri) for e in events] == [(1, URI), (2, "sip:10.0.0.1:5090")]
    d2 = make()
    assert [e.uri for e in d2.mark_address("GW.example.com", 5060, "i")] == ["sip:gw.example.com"]
    assert d2.mark_address("10.0.0.1", 5070, "i") == []


def test_queries() -> None:
    d = make()
    assert d.list_exists(1) and not d.list_exists(7)
    assert d.count(1) == 2 and d.count(2, "p") == 1 and d.count(7) == 0
    found = d.is_from_list("10.0.0.1", 5090)
    assert found is not None and found.setid == 2
    assert d.is_from_list("10.0.0.1", 5080, setid=2) is None
    assert d.is_from_list("gw.example.com", 5062) is not None  # no port in the list
    assert d.is_from_list("10.9.9.9") is None
    d.mark(1, URI, "i")
    assert d.count(1, "a") == 1 and d.count(1, "i") == 1 and d.count(1, "ai") == 2
    assert d.is_from_list("10.0.0.1", 5080, setid=1, active_only=True) is None
    assert d.is_active(1) and not d.is_active(1, URI) and d.is_active(1, "sip:gw.example.com")
    d.mark(1, "sip:gw.example.com", "d")
    assert not d.is_active(1) and d.count(1, "d") == 1 and not d.is_active(9)
    with pytest.raises(LocalProtocolError):
        d.count(1, "z")


def test_entries_expose_live_status_for_a_prober() -> None:
    d = make(ds_probing_threshold=2)
    assert [(dest.setid, dest.uri) for dest, _ in d.entries()] == [
        (1, "sip:gw.example.com"),
        (1, URI),
        (2, "sip:10.0.0.1:5090"),
    ]
    probing = [dest.uri for dest, status in d.entries() if status.state & S.PROBING]
    assert probing == ["sip:10.0.0.1:5090"]
    d.mark(1, URI, "tp")
    assert dict((dest.uri, s.message_count) for dest, s in d.entries())[URI] == 1


def test_group_stats_count_states_like_dsg() -> None:
    d = Dispatcher()
    d.load_list("3 sip:a 0\n3 sip:b 9\n3 sip:c 4\n3 sip:d 10\n3 sip:e 0 0 duid=e\n")
    assert d.group_stats(3) == {
        "count": 5,
        "active": 3,  # a, d (trying is still usable), e
        "inactive": 2,  # b (inactive), c (disabled)
        "disabled": 1,
        "trying": 1,
        "probing": 2,
        "load": 0,
    }
    with pytest.raises(UnknownDestination):
        d.group_stats(4)


def test_mark_without_a_state_is_inactive_and_probing_in_mode_all() -> None:
    d = make()
    assert d.mark(1, URI) == DestinationDown(1, URI, S.INACTIVE)
    d = make(ds_probing_mode=1)
    d.mark(1, URI)
    assert d.state(1, URI) == S.INACTIVE | S.PROBING


def test_mark_carries_the_reply_that_caused_it_into_the_event() -> None:
    d = make()
    event = d.mark(1, URI, "ip", code=503, reason="Service Unavailable")
    assert event == DestinationDown(
        1, URI, S.INACTIVE | S.PROBING, 503, "Service Unavailable", True
    )
    assert d.mark(1, URI, "a", code=200, reason="OK") == DestinationUp(
        1, URI, S.ACTIVE, 200, "OK", True
    )
