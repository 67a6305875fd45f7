"""Loading destination lists: dispatcher.list text, SQLite, reloads."""

from __future__ import annotations

import doctest
import sqlite3
from pathlib import Path

import pytest

import sipcore_dispatch
from sipcore import SipError
from sipcore_dispatch import (
    DestinationState,
    Dispatcher,
    DispatcherConfig,
    ListError,
    LoadMode,
    UnknownDestination,
    _destination,
    _dispatcher,
    _glibc,
    _keys,
    parse_attrs,
    parse_list,
)

# The reference list of the hashing notes: set 1 all priority 0, set 5 with
# priorities 0, 10, 5, 10 for 5071..5074.
NOTES_LIST = """\
# set 1: four gateways, same priority
1 sip:127.0.0.1:5071 0 0
1 sip:127.0.0.1:5072 0 0
1 sip:127.0.0.1:5073 0 0
1 sip:127.0.0.1:5074 0 0

5 sip:127.0.0.1:5071 0 0
5 sip:127.0.0.1:5072 0 10
5 sip:127.0.0.1:5073 0 5
5 sip:127.0.0.1:5074 0 10
"""


def ports(d: Dispatcher, setid: int) -> list[int | None]:
    return [dest.port for dest in d.destinations(setid)]


def test_module_doctests_pass() -> None:
    for module in (_dispatcher, _glibc, _keys, _destination):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_array_order_matches_the_notes_examples() -> None:
    d = Dispatcher()
    assert d.load_list(NOTES_LIST) == []
    assert ports(d, 1) == [5074, 5073, 5072, 5071]
    assert ports(d, 5) == [5074, 5072, 5073, 5071]
    assert d.setids() == [1, 5]


def test_good_lines_fields_hex_flags_and_attrs() -> None:
    text = (
        "  2 sip:gw1.example.com:5080 0x8 7 duid=gw1;weight=60;maxload=10;x-site=fra;cc=1\n"
        "\t2  sips:gw2.example.com   1\n"
        "2 sip:[2001:db8::1]:5062\n"
    )
    dests, skipped = parse_list(text)
    assert skipped == []
    first, second, third = dests
    assert (first.setid, first.flags, first.priority) == (2, DestinationState.PROBING, 7)
    assert first.attrs.duid == "gw1" and first.attrs.weight == 60 and first.attrs.maxload == 10
    assert first.attrs.cc == 1 and first.attrs.user == (("x-site", "fra"),)
    assert first.attrs.body == "duid=gw1;weight=60;maxload=10;x-site=fra;cc=1"
    assert first.host == "gw1.example.com" and first.port == 5080
    assert second.flags == DestinationState.INACTIVE and second.priority == 0
    assert second.uri == "sips:gw2.example.com"
    assert third.host == "[2001:db8::1]" and third.port == 5062


def test_every_special_attribute_is_parsed_and_user_ones_kept_in_order() -> None:
    a = parse_attrs(
        "duid=d1;maxload=5;weight=101;rweight=30;cc=1;socket=udp:10.0.0.1:5060;"
        "sockname=s0;ping_from=sip:p@x;obproxy=sip:ob;latency=40;ocmin=10;ocrate=50;"
        "zeta=1;alpha=two;flag"
    )
    assert (a.duid, a.maxload, a.weight, a.rweight, a.cc) == ("d1", 5, 0, 30, 1)
    assert (a.socket, a.sockname, a.ping_from, a.obproxy) == (
        "udp:10.0.0.1:5060",
        "s0",
        "sip:p@x",
        "sip:ob",
    )
    assert (a.latency, a.ocmin, a.ocrate) == (40, 10, 50)
    assert a.user == (("zeta", "1"), ("alpha", "two"), ("flag", ""))
    assert a.get("alpha") == "two" and a.get("missing") is None


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("x sip:h", "set id is not a number"),
        ("1", "expected 'setid uri"),
        ("1 sip:h zz", "flags is not a number"),
        ("1 sip:h 0 p", "priority is not a number"),
        ("1 not-a-uri", ""),
        ("1 tel:+123", "sip: or sips:"),
        ("-1 sip:h", "set id out of range"),
        ("1 sip:h 0x100000000", "flags out of range"),
    ],
)
def test_each_bad_line_is_reported_with_file_and_line(line: str, reason: str) -> None:
    text = f"# header\n1 sip:ok.example.com\n{line}\n"
    fatal = DispatcherConfig(ds_load_mode=LoadMode.FATAL)
    with pytest.raises(ListError) as info:
        parse_list(text, "/etc/kamailio/dispatcher.list", fatal)
    assert info.value.source == "/etc/kamailio/dispatcher.list" and info.value.line == 3
    assert str(info.value).startswith("/etc/kamailio/dispatcher.list:3: ")
    assert reason in str(info.value)
    assert isinstance(info.value, SipError)


def test_skip_mode_reports_and_skips_bad_lines() -> None:
    d = Dispatcher()  # ds_load_mode=0, Kamailio's default, skips
    assert d.config.ds_load_mode is LoadMode.SKIP
    skipped = d.load_list("1 sip:a.example.com\n1 bogus\n1 sip:b.example.com\n9 sip:\n", "f.list")
    assert len(skipped) == 2
    assert skipped[0].startswith("f.list:2: ") and skipped[1].startswith("f.list:4: ")
    assert [x.host for x in d.destinations(1)] == ["b.example.com", "a.example.com"]
    assert not d.list_exists(9)


def test_a_failed_reload_leaves_the_old_table_untouched() -> None:
    d = Dispatcher(DispatcherConfig(ds_load_mode=LoadMode.FATAL))
    d.load_list(NOTES_LIST)
    d.mark(1, "sip:127.0.0.1:5073", "i")
    with pytest.raises(ListError):
        d.load_list("7 sip:new.example.com\n7 sip:bad uri\n")
    assert ports(d, 1) == [5074, 5073, 5072, 5071]
    assert not d.list_exists(7)
    assert d.state(1, "sip:127.0.0.1:5073") == DestinationState.INACTIVE


def test_reload_keeps_states_of_destinations_that_remain() -> None:
    d = Dispatcher()
    d.load_list(NOTES_LIST)
    d.mark(1, "sip:127.0.0.1:5073", "ip")
    d.select(1, 4)  # moves the round-robin counter
    d.load_list("1 sip:127.0.0.1:5073\n1 sip:127.0.0.1:5075 1\n1 SIP:127.0.0.1:5071\n")
    assert d.state(1, "sip:127.0.0.1:5073") == DestinationState.INACTIVE | DestinationState.PROBING
    assert d.state(1, "sip:127.0.0.1:5075") == DestinationState.INACTIVE  # from its flags
    assert d.state(1, "sip:127.0.0.1:5071") == DestinationState.ACTIVE
    assert not d.list_exists(5)
    # Counters restart after a reload: round-robin starts at index 0 again.
    assert d.select(1, 4).uris[0] == "SIP:127.0.0.1:5071"


def test_limits_bound_lines_and_destination_count() -> None:
    config = DispatcherConfig(max_destinations=3, max_line_length=100)
    with pytest.raises(ListError, match="more than 3 destinations"):
        parse_list("".join(f"1 sip:h{i}\n" for i in range(4)), config=config)
    dests, skipped = parse_list("1 sip:h;" + "a" * 200 + "\n1 sip:ok", "x", config)
    assert skipped == ["x:1: line longer than 100 characters"] and len(dests) == 1
    # A million comment lines are read in bounded memory and yield nothing.
    dests, skipped = parse_list("#\n" * 1_000_000)
    assert dests == [] and skipped == []


def test_sqlite_table_with_kamailios_schema() -> None:
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE TABLE dispatcher (id INTEGER PRIMARY KEY, setid INTEGER DEFAULT 0 NOT NULL,"
        " destination TEXT DEFAULT '' NOT NULL, flags INTEGER DEFAULT 0 NOT NULL,"
        " priority INTEGER DEFAULT 0 NOT NULL, attrs TEXT DEFAULT '' NOT NULL,"
        " description TEXT DEFAULT '' NOT NULL)"
    )
    db.executemany(
        "INSERT INTO dispatcher (id, setid, destination, flags, priority, attrs, description)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (1, 5, "sip:127.0.0.1:5071", 0, 0, "", "a"),
            (2, 5, "sip:127.0.0.1:5072", 0, 10, "weight=10", "b"),
            (3, 5, "sip:127.0.0.1:5073", 4, 5, "", "c"),
            (4, 5, "sip:127.0.0.1:5074", 0, 10, "duid=x", "d"),
        ],
    )
    d = Dispatcher()
    assert d.load_sqlite(db) == []
    assert ports(d, 5) == [5074, 5072, 5073, 5071]
    assert d.destinations(5)[2].description == "c"
    assert d.state(5, "sip:127.0.0.1:5073") == DestinationState.DISABLED
    db.execute("INSERT INTO dispatcher VALUES (9, 5, 'nonsense', 0, 0, '', '')")
    skipped = d.load_sqlite(db)
    assert len(skipped) == 1 and skipped[0].startswith("dispatcher:9: ")
    with pytest.raises(ListError, match="dispatcher:9: "):
        Dispatcher(DispatcherConfig(ds_load_mode=LoadMode.FATAL)).load_sqlite(db)
    with pytest.raises(ListError, match="plain identifier"):
        d.load_sqlite(db, 'dispatcher"; DROP TABLE x; --')
    with pytest.raises(ListError, match="cannot read"):
        d.load_sqlite(db, "missing_table")


def test_add_and_remove_at_run_time_keep_states() -> None:
    d = Dispatcher()
    d.load_list(NOTES_LIST)
    d.mark(1, "sip:127.0.0.1:5072", "d")
    d.add(1, "sip:127.0.0.1:5079", priority=0)
    assert ports(d, 1) == [5079, 5074, 5073, 5072, 5071]
    assert d.state(1, "sip:127.0.0.1:5072") == DestinationState.DISABLED
    d.remove(1, "sip:127.0.0.1:5074")
    assert ports(d, 1) == [5079, 5073, 5072, 5071]
    with pytest.raises(UnknownDestination):
        d.remove(1, "sip:127.0.0.1:5074")
    with pytest.raises(UnknownDestination):
        d.destinations(42)


def test_public_names_are_exported() -> None:
    for name in sipcore_dispatch.__all__:
        assert hasattr(sipcore_dispatch, name), name


def test_attribute_numbers_are_read_like_str2sint() -> None:
    a = parse_attrs("weight=50x;maxload=-3;rweight=+40;cc=;ocmin=99999999999;latency=-5")
    assert (a.weight, a.maxload, a.rweight, a.cc, a.ocmin, a.latency) == (0, 0, 40, 0, 0, -5)
    assert parse_attrs("weight=0").weight == 0 and parse_attrs("weight=100").weight == 100
    assert parse_attrs("duid=a;duid=b").duid == "a"


def test_load_file_reads_a_list_and_names_the_file(tmp_path: Path) -> None:
    good = tmp_path / "dispatcher.list"
    good.write_text(NOTES_LIST, encoding="utf-8")
    d = Dispatcher()
    assert d.load_file(good) == []
    assert ports(d, 5) == [5074, 5072, 5073, 5071]
    bad = tmp_path / "bad.list"
    bad.write_bytes(b"1 sip:a\n1 sip:\xff\n")
    with pytest.raises(ListError, match=r"bad.list:2: not UTF-8"):
        d.load_file(bad)
    with pytest.raises(ListError, match="cannot read"):
        d.load_file(tmp_path / "missing.list")
    small = Dispatcher(DispatcherConfig(max_list_bytes=10))
    with pytest.raises(ListError, match="larger than 10 bytes"):
        small.load_file(good)
    assert ports(d, 5) == [5074, 5072, 5073, 5071]


def test_config_defaults_are_kamailios() -> None:
    c = DispatcherConfig()
    assert (c.flags, c.use_default, c.force_dst, c.ds_load_mode) == (0, False, True, LoadMode.SKIP)
    assert (c.ds_probing_threshold, c.ds_inactive_threshold, c.ds_ping_interval) == (1, 1, 0)
    assert (c.ds_ping_method, c.ds_ping_from) == ("OPTIONS", "sip:dispatcher@localhost")
    assert int(c.ds_probing_mode) == 0 and c.ds_latency_estimator_alpha == 0.9
    assert (c.ds_hash_size, c.ds_hash_expire, c.ds_hash_initexpire) == (0, 7200, 7200)
    assert c.ds_hash_check_interval == 30
    with pytest.raises(SipError):
        DispatcherConfig(ds_probing_threshold=0)
    with pytest.raises(SipError):
        DispatcherConfig(ds_latency_estimator_alpha=1.5)


def test_comments_after_fields_and_text_after_attrs_as_kamailio_reads_them() -> None:
    dests, skipped = parse_list(
        "1 sip:a.example.com#gw a\n"
        "1 sip:b.example.com 2 # trying\n"
        "1 sip:c.example.com 0 5#five\n"
        "1 sip:d.example.com 0 0 weight=5 ignored text\n"
        "1#no uri\n"
    )
    assert [(x.host, int(x.flags), x.priority) for x in dests] == [
        ("a.example.com", 0, 0),
        ("b.example.com", 2, 0),
        ("c.example.com", 0, 5),
        ("d.example.com", 0, 0),
    ]
    assert dests[3].attrs.weight == 5 and dests[3].attrs.body == "weight=5"
    assert len(skipped) == 1 and skipped[0].startswith("dispatcher.list:5: expected")
