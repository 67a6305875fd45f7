"""rtpengine_sock as Kamailio reads it, and the module parameters' defaults."""

from __future__ import annotations

import pytest

from sipcore import LocalProtocolError
from sipcore_media import (
    DEFAULT_PORT,
    ConfigError,
    FlagDialect,
    HashAlgo,
    NodeAddress,
    RtpengineConfig,
    parse_rtpengine_sock,
)


def nodes(value: str | list[str], setid_default: int = 0) -> list[tuple[int, str, int]]:
    return [(n.setid, n.url, n.weight) for n in parse_rtpengine_sock(value, setid_default)]


def test_the_readme_examples() -> None:
    assert nodes("udp:localhost:12221") == [(0, "udp:localhost:12221", 1)]
    assert nodes("udp6:localhost:12221") == [(0, "udp6:localhost:12221", 1)]
    assert nodes("ws://localhost:12221/") == [(0, "ws://localhost:12221/", 1)]
    assert nodes("wss://localhost:12221/") == [(0, "wss://localhost:12221/", 1)]
    assert nodes("udp:localhost:12221=2 udp:localhost:12222=1") == [
        (0, "udp:localhost:12221", 2),
        (0, "udp:localhost:12222", 1),
    ]
    assert nodes(["1 == udp:localhost:12221 udp:localhost:12222", "2 == udp:localhost:12225"]) == [
        (1, "udp:localhost:12221", 1),
        (1, "udp:localhost:12222", 1),
        (2, "udp:localhost:12225", 1),
    ]


def test_addresses_are_split_as_kamailio_builds_its_sockets() -> None:
    [a, b, c, d, e, f] = parse_rtpengine_sock(
        "udp:10.0.0.1:2223 udp6:[2001:db8::1]:2224 udp:rtp.example.com UDP:10.0.0.2: "
        "unix:/run/rtpengine.sock ws://10.0.0.3:8080/ng"
    )
    assert a.address == NodeAddress("udp:10.0.0.1:2223", "udp", "10.0.0.1", 2223)
    assert b.address == NodeAddress("udp6:[2001:db8::1]:2224", "udp6", "2001:db8::1", 2224)
    assert b.address.destination == ("2001:db8::1", 2224)
    assert c.address.port == DEFAULT_PORT == 22222 and c.address.host == "rtp.example.com"
    assert (d.address.scheme, d.address.host, d.address.port) == ("udp", "10.0.0.2", 22222)
    assert e.address == NodeAddress("unix:/run/rtpengine.sock", "unix", path="/run/rtpengine.sock")
    assert f.address == NodeAddress("ws://10.0.0.3:8080/ng", "ws")
    with pytest.raises(ConfigError, match="not a UDP node"):
        _ = f.address.destination


def test_set_ids_default_and_whitespace() -> None:
    assert nodes("  udp:h:1   udp:h:2 ", setid_default=4) == [(4, "udp:h:1", 1), (4, "udp:h:2", 1)]
    assert nodes("  12   ==   udp:h:1") == [(12, "udp:h:1", 1)]
    assert nodes("") == [] and nodes("   ") == []


def test_weights_are_read_as_strtoul_reads_them() -> None:
    assert nodes("udp:h:1=abc udp:h:2=7x udp:h:3=") == [
        (0, "udp:h:1", 0),
        (0, "udp:h:2", 7),
        (0, "udp:h:3", 0),
    ]
    assert nodes("udp:h:1=-1") == [(0, "udp:h:1", 2**32 - 1)]


def test_a_repeated_node_updates_the_first() -> None:
    assert nodes(["udp:h:1=2 udp:h:2", "udp:h:1=5"]) == [(0, "udp:h:1", 5), (0, "udp:h:2", 1)]
    assert nodes(["udp:h:1", "1 == udp:h:1=3"]) == [(0, "udp:h:1", 1), (1, "udp:h:1", 3)]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tcp:h:1", "must start with"),
        ("h:1", "must start with"),
        ("udp:h:70000", "valid port"),
        ("udp:h:12ab", "valid port"),
        ("udp:h:1:2", "valid port"),
        ("udp6:[::1]:x", "valid port"),
        ("udp:", "no host"),
        ("unix:", "no socket path"),
        ("x == udp:h:1", "invalid set_id"),
        ("-1 == udp:h:1", "invalid set_id"),
        ("1 ==", "nothing after"),
        ("1 ==   ", "empty rtpengine list"),
    ],
)
def test_nodes_kamailio_would_ignore_are_errors_here(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_rtpengine_sock(value)
    assert isinstance(info.value, LocalProtocolError)


def test_defaults_are_kamailio_5_6s() -> None:
    config = RtpengineConfig()
    assert (
        config.rtpengine_sock,
        config.setid_default,
        config.rtpengine_disable_tout,
        config.aggressive_redetection,
        config.rtpengine_tout_ms,
        config.rtpengine_retr,
        config.queried_nodes_limit,
        config.rtpengine_allow_op,
        config.hash_algo,
        config.hash_table_tout,
        config.hash_table_size,
        config.ping_interval,
        config.flag_dialect,
    ) == ((), 0, 60, True, 1000, 5, 30, 0, HashAlgo.LEGACY, 3600, 256, 0, FlagDialect.KAMAILIO_5_6)
    assert RtpengineConfig("udp:h:1").rtpengine_sock == ("udp:h:1",)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"queried_nodes_limit": 0},
        {"queried_nodes_limit": 31},
        {"rtpengine_retr": 0},
        {"rtpengine_tout_ms": 0},
        {"rtpengine_allow_op": 3},
        {"rtpengine_disable_tout": -1},
        {"max_pending": 0},
    ],
)
def test_out_of_range_parameters_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ConfigError):
        RtpengineConfig(**kwargs)  # type: ignore[arg-type]
