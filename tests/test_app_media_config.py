"""The ``[media]`` and ``[[rtpengine]]`` parts of the ``sipcore-proxy``
configuration: what a good file gives (the rtpengine module's parameters
under their Kamailio names, nodes in Kamailio's ``rtpengine_sock`` syntax
or as tables), and every bad one refused with one line naming the key and
its line."""

from __future__ import annotations

import pytest

from sipcore.app import ConfigError, parse_config
from sipcore_media import FlagDialect, HashAlgo, RtpengineConfig

ONE = '[[dispatcher.destinations]]\nuri = "sip:127.0.0.1:5070"\n'


def media(text: str) -> str:
    return f"{ONE}[media]\n{text}"


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "proxy.toml")
    return caught.value


def test_no_media_table_means_no_media_and_kamailio_defaults() -> None:
    options = parse_config(ONE).media
    assert not options.active and options.enabled and options.rtpengine_sock == ()
    assert options.on_failure == "reject"
    assert (
        options.offer_flags == options.answer_flags == "replace-origin replace-session-connection"
    )
    assert options.delete_flags == ""
    config = options.rtpengine_config()
    kamailio = RtpengineConfig()
    for name in (
        "rtpengine_tout_ms",
        "rtpengine_retr",
        "rtpengine_disable_tout",
        "queried_nodes_limit",
        "aggressive_redetection",
        "rtpengine_allow_op",
        "hash_algo",
        "hash_table_tout",
        "ping_interval",
        "flag_dialect",
        "max_pending",
    ):
        assert getattr(config, name) == getattr(kamailio, name), name


def test_every_key_reaches_the_pool_configuration() -> None:
    options = parse_config(
        media(
            'rtpengine_sock = ["udp:127.0.0.1:2223=2 udp:127.0.0.1:2224", "udp6:[::1]:2225"]\n'
            'on_failure = "passthrough"\n'
            'offer_flags = "ICE=remove replace-origin RTP/AVP"\n'
            'answer_flags = "ICE=remove"\n'
            'delete_flags = "delete-delay=0"\n'
            'flag_dialect = "5.8"\n'
            "rtpengine_tout_ms = 250\n"
            "rtpengine_retr = 3\n"
            "rtpengine_disable_tout = 10\n"
            "queried_nodes_limit = 2\n"
            "aggressive_redetection = false\n"
            "rtpengine_allow_op = 1\n"
            "hash_algo = 2\n"
            "hash_table_tout = 600\n"
            "ping_interval = 30\n"
            "max_pending = 500\n"
        )
    ).media
    assert options.active and options.on_failure == "passthrough"
    config = options.rtpengine_config()
    assert config.rtpengine_sock == ("udp:127.0.0.1:2223=2 udp:127.0.0.1:2224", "udp6:[::1]:2225")
    assert (config.rtpengine_tout_ms, config.rtpengine_retr, config.rtpengine_disable_tout) == (
        250,
        3,
        10,
    )
    assert (config.queried_nodes_limit, config.aggressive_redetection) == (2, False)
    assert (config.rtpengine_allow_op, config.hash_algo, config.hash_table_tout) == (
        1,
        HashAlgo.CRC32,
        600,
    )
    assert (config.ping_interval, config.max_pending) == (30, 500)
    assert config.flag_dialect is FlagDialect.KAMAILIO_5_8
    assert options.delete_flags == "delete-delay=0"


def test_rtpengine_tables_are_nodes_with_weights() -> None:
    text = (
        f"{ONE}"
        '[[rtpengine]]\nurl = "udp:127.0.0.1:2223"\nweight = 3\n'
        '[[rtpengine]]\nurl = "udp:127.0.0.1:2224"\n'
    )
    options = parse_config(text).media
    assert options.active
    assert options.rtpengine_sock == ("udp:127.0.0.1:2223=3", "udp:127.0.0.1:2224=1")


def test_enabled_false_keeps_the_nodes_but_handles_no_media() -> None:
    options = parse_config(media('enabled = false\nrtpengine_sock = "udp:127.0.0.1:2223"\n')).media
    assert options.rtpengine_sock and not options.active


BAD = [
    pytest.param(
        media('rtpengine_sock = "tcp:127.0.0.1:2223"\n'),
        4,
        "media.rtpengine_sock",
        "must start with udp:, udp6:, unix:, ws:// or wss://",
        id="scheme",
    ),
    pytest.param(
        media('rtpengine_sock = "unix:/run/rtpengine.sock"\n'),
        4,
        "media.rtpengine_sock",
        "ng over UDP only",
        id="unix",
    ),
    pytest.param(
        media('rtpengine_sock = "ws://127.0.0.1:8080/ng"\n'),
        4,
        "media.rtpengine_sock",
        "ng over UDP only",
        id="websocket",
    ),
    pytest.param(
        media('rtpengine_sock = "udp:rtp.example.com:2223"\n'),
        4,
        "media.rtpengine_sock",
        "the host must be an IP address",
        id="name",
    ),
    pytest.param(
        media('rtpengine_sock = "udp:127.0.0.1:99999"\n'),
        4,
        "media.rtpengine_sock",
        "valid port number",
        id="port",
    ),
    pytest.param(
        media('rtpengine_sock = "1 == udp:127.0.0.1:2223"\n'),
        4,
        "media.rtpengine_sock",
        "this proxy uses one set (0)",
        id="set",
    ),
    pytest.param(
        media("rtpengine_sock = 2223\n"),
        4,
        "media.rtpengine_sock",
        "must be a string or an array of strings, not an integer",
        id="sock-type",
    ),
    pytest.param(
        media('rtpengine_sock = "udp:127.0.0.1:2223"\n')
        + '[[rtpengine]]\nurl = "udp:127.0.0.1:2224"\n',
        4,
        "media.rtpengine_sock",
        "not both",
        id="both",
    ),
    pytest.param(
        f"{ONE}[[rtpengine]]\nweight = 2\n", 3, "rtpengine[0].url", "is required", id="url"
    ),
    pytest.param(
        f'{ONE}[[rtpengine]]\nurl = "udp:127.0.0.1:2223=2"\n',
        4,
        "rtpengine[0].url",
        "no spaces or '='",
        id="url-weight",
    ),
    pytest.param(
        f'{ONE}[[rtpengine]]\nurl = "udp:127.0.0.1:2223"\nweight = -1\n',
        5,
        "rtpengine[0].weight",
        "at least 0",
        id="weight",
    ),
    pytest.param(
        f'{ONE}[[rtpengine]]\nurl = "udp:127.0.0.1:2223"\nhost = "x"\n',
        5,
        "rtpengine[0].host",
        "unknown key",
        id="node-unknown",
    ),
    pytest.param(f"{ONE}[rtpengine]\nurl = 1\n", 3, "rtpengine", "array of tables", id="not-array"),
    pytest.param(
        media('on_failure = "retry"\n'), 4, "media.on_failure", "reject, passthrough", id="failure"
    ),
    pytest.param(
        media('offer_flags = "via-branch=bogus"\n'),
        4,
        "media.offer_flags",
        "invalid value",
        id="offer-flags",
    ),
    pytest.param(
        media('answer_flags = "direction"\n'),
        4,
        "media.answer_flags",
        "direction",
        id="answer-flags",
    ),
    pytest.param(
        media('offer_flags = "via-branch=extra"\n'),
        4,
        "media.offer_flags",
        "extra",
        id="flags-this-proxy-cannot-fill",
    ),
    pytest.param(
        media('flag_dialect = "6.0"\n'), 4, "media.flag_dialect", "5.6, 5.8", id="dialect"
    ),
    pytest.param(
        media("queried_nodes_limit = 31\n"),
        4,
        "media.queried_nodes_limit",
        "at most 30",
        id="nodes-limit",
    ),
    pytest.param(media("rtpengine_retr = 0\n"), 4, "media.rtpengine_retr", "at least 1", id="retr"),
    pytest.param(
        media("rtpengine_tout_ms = 10000\nrtpengine_retr = 4\n"),
        5,
        "media.rtpengine_retr",
        "a call waits at most 30 s for its offer",
        id="over-the-suspend-bound",
    ),
    pytest.param(media("hash_algo = 3\n"), 4, "media.hash_algo", "at most 2", id="hash-algo"),
    pytest.param(
        media("rtpengine_allow_op = 3\n"), 4, "media.rtpengine_allow_op", "at most 2", id="allow"
    ),
    pytest.param(media("rtpengine = 1\n"), 4, "media.rtpengine", "unknown key", id="unknown"),
    pytest.param(
        media('enabled = "yes"\n'), 4, "media.enabled", "must be true or false", id="enabled"
    ),
]


@pytest.mark.parametrize(("text", "line", "key", "message"), BAD)
def test_a_bad_media_table_is_one_error_naming_the_key_and_its_line(
    text: str, line: int, key: str, message: str
) -> None:
    error = error_of(text)
    assert (error.key, error.line) == (key, line), error
    assert message in error.message, error
    shown = str(error)
    assert "\n" not in shown and shown.startswith(f"proxy.toml:{line}: {key}: ")
