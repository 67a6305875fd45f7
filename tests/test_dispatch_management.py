"""The dispatcher.* RPC commands, set_duid_state / set_state_all, and
alg 64 (round-robin with RFC 7339 overload control) with dispatcher.oclist."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sipcore_dispatch import (
    DestinationDown,
    DestinationState,
    Dispatcher,
    DispatcherConfig,
    DispatcherManagement,
    LoadMode,
    ManagementError,
    Prober,
    UnknownDestination,
    ds_get_hash,
    rpc_flags,
    rpc_state,
)

S = DestinationState
LIST = (
    "1 sip:10.0.0.1:5060 0 5 duid=gw1;weight=50;rweight=10;socket=udp:10.0.0.9:5060;region=eu\n"
    "1 sip:10.0.0.2:5060;transport=tcp 8 10 duid=gw2\n"
    "2 sip:gw.example.com 1\n"
)


def make(**config: object) -> tuple[Dispatcher, DispatcherManagement]:
    d = Dispatcher(DispatcherConfig(**config))  # type: ignore[arg-type]
    d.load_list(LIST)
    texts = [LIST]
    return d, DispatcherManagement(
        d, prober=Prober(d, now=0.0), reload=lambda: d.load_list(texts[-1])
    )


def test_flags_letters_follow_kamailio_precedence() -> None:
    assert rpc_flags(S.ACTIVE) == "AX"
    assert rpc_flags(S.ACTIVE | S.PROBING) == "AP"
    assert rpc_flags(S.INACTIVE | S.DISABLED) == "IX"  # inactive wins
    assert rpc_flags(S.DISABLED | S.TRYING) == "DX"
    assert rpc_flags(S.TRYING | S.PROBING) == "TP"


def test_rpc_state_parameter() -> None:
    assert rpc_state("a") == S.ACTIVE and rpc_state("1") == S.ACTIVE
    assert rpc_state("IP") == S.INACTIVE | S.PROBING and rpc_state("0p") == S.INACTIVE | S.PROBING
    assert rpc_state("dp") == S.DISABLED and rpc_state("2") == S.DISABLED
    assert rpc_state("tP") == S.TRYING | S.PROBING
    assert rpc_state("active") == S.ACTIVE  # only two letters are read
    for bad in ("", "x", "9"):
        with pytest.raises(ManagementError):
            rpc_state(bad)


def test_list_has_kamailio_shape() -> None:
    _, m = make(ds_ping_latency_stats=True, ds_hash_size=8)
    out = m.list()
    assert out["NRSETS"] == 2
    set1 = out["RECORDS"][0]["SET"]
    assert set1["ID"] == 1
    first, second = (t["DEST"] for t in set1["TARGETS"])
    # Array order: priority 10 before priority 5.
    assert first["URI"] == "sip:10.0.0.2:5060;transport=tcp"
    assert (first["FLAGS"], first["PRIORITY"]) == ("AP", 10)
    assert second["ATTRS"] == {
        "BODY": "duid=gw1;weight=50;rweight=10;socket=udp:10.0.0.9:5060;region=eu",
        "DUID": "gw1",
        "MAXLOAD": 0,
        "WEIGHT": 50,
        "RWEIGHT": 10,
        "SOCKET": "udp:10.0.0.9:5060",
        "SOCKNAME": None,
        "OBPROXY": None,
    }
    assert second["LATENCY"] == {"AVG": 0.0, "STD": 0.0, "EST": 0.0, "MAX": 0, "TIMEOUT": 0}
    assert second["RUNTIME"] == {"DLGLOAD": 0}
    set2 = out["RECORDS"][1]["SET"]["TARGETS"][0]["DEST"]
    assert set2["FLAGS"] == "IX" and "ATTRS" not in set2


def test_list_short_and_full_modes() -> None:
    _, m = make()
    short = m.list("short")["RECORDS"][0]["SET"]["TARGETS"][1]["DEST"]
    assert set(short) == {"URI", "FLAGS", "PRIORITY"}
    full = m.list("FULL")["RECORDS"][0]["SET"]["TARGETS"][0]["DEST"]
    assert (full["HOST"], full["IPADDR"], full["PORT"], full["PROTOID"]) == (
        "10.0.0.2",
        "10.0.0.2",
        5060,
        2,
    )
    named = m.list("full")["RECORDS"][1]["SET"]["TARGETS"][0]["DEST"]
    assert (named["HOST"], named["IPADDR"], named["PORT"]) == ("gw.example.com", "", 0)


def test_list_of_an_empty_table_is_a_fault() -> None:
    m = DispatcherManagement(Dispatcher())
    with pytest.raises(ManagementError, match="No Destination Sets"):
        m.list()


def test_set_state_by_address_duid_and_all() -> None:
    d, m = make()
    assert m.set_state("ip", 1, "sip:10.0.0.1:5060") == "Ok. Dispatcher state updated."
    assert d.state(1, "sip:10.0.0.1:5060") == S.INACTIVE | S.PROBING
    assert m.take_events() == [DestinationDown(1, "sip:10.0.0.1:5060", S.INACTIVE | S.PROBING)]
    m.set_duid_state("d", 1, "GW2")  # duid compared case-insensitively
    assert d.state(1, "sip:10.0.0.2:5060;transport=tcp") == S.DISABLED
    m.set_state("a", 1, "all")
    assert {d.state(1, x.uri) for x in d.destinations(1)} == {S.ACTIVE}
    m.set_duid_state("t", 1, "all")
    assert {d.state(1, x.uri) for x in d.destinations(1)} == {S.TRYING}
    with pytest.raises(ManagementError, match="State Update Failed"):
        m.set_state("a", 1, "sip:nowhere")
    with pytest.raises(ManagementError, match="State Update Failed"):
        m.set_state("a", 7, "all")
    with pytest.raises(ManagementError, match="State Update Failed"):
        m.set_duid_state("a", 1, "gw9")


def test_set_duid_state_changes_only_the_first_match() -> None:
    d = Dispatcher()
    d.load_list("1 sip:a.example 0 0 duid=x\n1 sip:b.example 0 0 duid=x\n")
    d.set_duid_state(1, "x", "i")
    assert [d.state(1, x.uri) for x in d.destinations(1)] == [S.INACTIVE, S.ACTIVE]
    with pytest.raises(UnknownDestination):
        d.set_duid_state(1, "y", "i")


def test_ping_active_reads_and_switches_the_prober() -> None:
    _, m = make()
    assert m.ping_active() == {"OldPingState": 1}
    assert m.ping_active(0) == {"NewPingState": 0, "OldPingState": 1}
    assert m.prober is not None and m.prober.ping_active is False
    assert m.ping_active() == {"OldPingState": 0}
    with pytest.raises(ManagementError):
        DispatcherManagement(Dispatcher()).ping_active(1)


def test_reload_add_remove_respect_reload_delta() -> None:
    d, m = make(reload_delta=5)
    assert m.add(2, "sip:10.1.1.1", 8, 3, "duid=new", now=100.0).startswith("Ok.")
    assert "sip:10.1.1.1" in [x.uri for x in d.destinations(2)]
    with pytest.raises(ManagementError, match="Ongoing reload"):
        m.remove(2, "sip:10.1.1.1", now=104.0)
    assert m.remove(2, "sip:10.1.1.1", now=105.5).startswith("Ok.")
    assert "sip:10.1.1.1" not in [x.uri for x in d.destinations(2)]
    assert m.reload(now=111.0) == "Ok. Dispatcher successfully reloaded."
    with pytest.raises(ManagementError, match="Removing dispatcher dst failed"):
        m.remove(2, "sip:not-there", now=200.0)
    with pytest.raises(ManagementError, match="Adding dispatcher dst failed"):
        m.add(2, "not a uri at all <>", now=300.0)


def test_failed_reload_keeps_the_old_table() -> None:
    d = Dispatcher(DispatcherConfig(ds_load_mode=LoadMode.FATAL))
    d.load_list(LIST)
    m = DispatcherManagement(d, reload=lambda: d.load_list("1 sip:ok\nx sip:bad\n"))
    with pytest.raises(ManagementError, match="Reload Failed"):
        m.reload(now=0.0)
    assert len(d.destinations(1)) == 2
    with pytest.raises(ManagementError, match="Reload Failed"):
        DispatcherManagement(d).reload(now=0.0)


def test_hash_command_is_ds_get_hash_and_its_slot() -> None:
    _, m = make()
    h = ds_get_hash(b"alice", b"server.com")
    assert m.hash(4, "alice", "server.com") == {"hashid": h, "slot": h % 4}
    assert m.hash(0, "alice") == {"hashid": ds_get_hash(b"alice"), "slot": 0}


# ------------------------------------------------ alg 64 and oclist
OC_LIST = "".join(f"5 sip:10.0.5.{i}:5060 0 0 ocmin=10;ocmax=80\n" for i in range(1, 4))


def test_overload_attributes_are_clamped_like_kamailio() -> None:
    d = Dispatcher()
    d.load_list("1 sip:a 0 0 ocmin=50;ocmax=30;ocrate=90\n1 sip:b 0 0 ocmax=0;ocrate=150\n")
    a, b = (x.attrs for x in sorted(d.destinations(1), key=lambda x: x.uri))
    assert (a.ocmin, a.ocmax, a.ocrate) == (0, 30, 30)  # min>max resets min; rate capped
    assert (b.ocmin, b.ocmax, b.ocrate) == (0, 100, 0)


def test_alg_64_is_round_robin_while_no_overload_is_reported() -> None:
    d = Dispatcher()
    d.load_list(OC_LIST)
    picks = [d.select(5, 64, now=1.0).uris[0] for _ in range(6)]
    rr = Dispatcher()
    rr.load_list(OC_LIST)
    assert picks == [rr.select(5, 4).uris[0] for _ in range(6)]


def test_alg_64_sheds_the_reported_rate_while_it_is_valid() -> None:
    d = Dispatcher(rng=random.Random(7))
    d.load_list("6 sip:10.0.6.1 0 0\n6 sip:10.0.6.2 0 0\n")
    first, second = (x.uri for x in d.destinations(6))
    assert d.set_overload(6, first, 50, 2000, seq=1, now=10.0)
    assert not d.set_overload(6, first, 70, 2000, seq=1, now=10.0)  # seq not newer
    # Round-robin restarts from the one after the chosen destination, so
    # every other pick examines ``first``: a kept turn costs two picks
    # (first, then second), a shed one a single pick (second at once). 100
    # examinations (one pass of the drop pattern, 50 shed) take 150 picks.
    counts: Counter[str] = Counter(d.select(6, 64, now=11.0).uris[0] for _ in range(1500))
    assert counts == {first: 500, second: 1000}
    # Past the validity window nothing is shed.
    after: Counter[str] = Counter(d.select(6, 64, now=12.5).uris[0] for _ in range(300))
    assert after == {first: 150, second: 150}
    # Alg 4 ignores overload control.
    d.set_overload(6, first, 100, 60_000, seq=2, now=12.5)
    assert Counter(d.select(6, 4).uris[0] for _ in range(300)) == {first: 150, second: 150}
    assert Counter(d.select(6, 64, now=13.0).uris[0] for _ in range(300)) == {second: 300}


def test_overload_rate_is_clamped_to_ocmin_ocmax_and_listed() -> None:
    d = Dispatcher()
    d.load_list(OC_LIST)
    d.set_overload(5, "sip:10.0.5.1:5060", 95, 0, seq=3, now=1.0)
    d.set_overload(5, "sip:10.0.5.3:5060", 2, 0, seq=1, now=1.0)
    m = DispatcherManagement(d)
    rows = {row["URI"]: row for row in m.oclist(5)}
    assert rows["sip:10.0.5.1:5060"]["OCRATE"] == 80 and rows["sip:10.0.5.1:5060"]["OCSEQ"] == 3
    assert rows["sip:10.0.5.3:5060"]["OCRATE"] == 10
    assert rows["sip:10.0.5.1:5060"]["OCUNTIL"] == pytest.approx(1.5)  # 500 ms default
    # No report yet: the list's ocrate (0, raised to ocmin as Kamailio does).
    assert rows["sip:10.0.5.2:5060"]["OCRATE"] == 10
    with pytest.raises(ManagementError):
        m.oclist(9)


def test_parameters_may_come_as_json_text_or_numbers() -> None:
    d, m = make()
    m.set_state("i", "1", "sip:10.0.0.1:5060")
    assert d.state(1, "sip:10.0.0.1:5060") == S.INACTIVE
    assert m.hash("4", "alice", "server.com") == m.hash(4, "alice", "server.com")
    assert m.ping_active("0") == {"NewPingState": 0, "OldPingState": 1}
    for bad in ("one", "1.5", "", True):
        with pytest.raises(ManagementError, match="Invalid Parameters"):
            m.set_state("a", bad, "all")
