"""The ``sipcore-proxy`` configuration file: what a good file gives, and
that every bad one is refused with one line naming the key and its line,
both from Python and from the command line (a child process)."""

from __future__ import annotations

import doctest
import subprocess
from pathlib import Path

import pytest

import sipcore.app.config
from app_helpers import PROXY_COMMAND, write_config
from sipcore import Endpoint
from sipcore.app import ConfigError, load_config, parse_config
from sipcore.app.config import key_lines, read_destinations
from sipcore_dialog import DbMode
from sipcore_dispatch import DestinationState, ProbingMode

ONE = '[[dispatcher.destinations]]\nuri = "sip:127.0.0.1:5070"\n'


def error_of(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, "proxy.toml")
    return caught.value


def test_module_doctests_pass() -> None:
    assert doctest.testmod(sipcore.app.config).failed == 0


def test_a_file_with_one_destination_gets_every_default() -> None:
    config = parse_config(ONE)
    p = config.proxy
    assert p.listen == (Endpoint("127.0.0.1", 5060, "UDP"), Endpoint("127.0.0.1", 5060, "TCP"))
    assert (p.t1, p.t2, p.t4, p.fr_inv_timeout, p.shutdown_grace) == (0.5, 4.0, 5.0, 120.0, 5.0)
    d = config.dispatcher
    assert (d.setid, d.algorithm, d.attempts, d.mark_state) == (1, 4, 3, "ip")
    assert d.failover_codes == d.mark_codes == (408, 500, 502, 503, 504)
    assert [x.uri for x in d.destinations] == ["sip:127.0.0.1:5070"]
    assert config.probing.interval == 0 and config.probing.mode is ProbingMode.ONLY_FLAGGED
    assert (config.limits.per_caller, config.limits.per_account, config.limits.status) == (
        0,
        0,
        486,
    )
    assert config.limits.account_key == "from_uri"
    assert config.dialog.default_timeout == 43200 and config.dialog.send_bye is False
    s = config.persistence
    assert (s.enabled, s.path, s.mode, s.synchronous) == (
        True,
        "sipcore-dialogs.sqlite",
        DbMode.REALTIME,
        "normal",
    )
    m = config.management
    assert (m.enabled, m.host, m.port) == (True, "127.0.0.1", 8060)
    assert (config.logging.level, config.logging.format) == ("info", "json")


def test_every_section_is_read_into_the_libraries_settings() -> None:
    config = parse_config(
        "[proxy]\n"
        'listen = ["udp:127.0.0.1:5080", "tcp:[::1]:5081"]\n'
        'aliases = ["lb.example.com"]\n'
        "t1 = 0.1\n"
        "[dispatcher]\n"
        "setid = 7\nalgorithm = 9\nattempts = 2\nhash_user_only = true\n"
        "failover_codes = [503]\n"
        "[[dispatcher.destinations]]\n"
        'uri = "sip:10.0.0.1:5060"\nsetid = 7\nflags = "p"\npriority = 5\n'
        'attrs = "weight=60;duid=gw1"\n'
        '[probing]\ninterval = 10\nmode = "all"\nthreshold = 3\nlatency_stats = true\n'
        'from = "sip:lb@example.com"\n'
        '[limits]\nper_caller = 2\nper_account = 10\naccount_key = "auth_username"\nstatus = 503\n'
        "[dialog]\ndefault_timeout = 3600\nkeepalive_interval = 30\n"
        '[persistence]\nmode = "delayed"\nupdate_period = 5\n'
        '[logging]\nformat = "text"\nlevel = "debug"\n'
    )
    assert config.proxy.listen[1] == Endpoint("::1", 5081, "TCP")
    (dest,) = config.dispatcher.destinations
    assert (dest.setid, dest.flags, dest.priority, dest.attrs.duid, dest.attrs.weight) == (
        7,
        DestinationState.PROBING,
        5,
        "gw1",
        60,
    )
    ds = config.dispatcher_config()
    assert ds.ds_ping_interval == 10 and ds.ds_probing_mode is ProbingMode.ALL
    assert ds.ds_probing_threshold == 3 and ds.ds_ping_latency_stats
    assert ds.ds_ping_from == "sip:lb@example.com" and int(ds.flags) == 1
    assert config.limits.status == 503 and config.limits.account_key == "auth_username"
    assert config.persistence.mode is DbMode.DELAYED
    assert config.logging.format == "text"


BAD = [
    pytest.param("[proxy\n", 1, None, "not valid TOML: Expected ']'", id="syntax"),
    pytest.param(
        f'{ONE}\n[proxy]\nlisten = ["udp:127.0.0.1:1"\n',
        None,
        None,
        "not valid TOML",
        id="unclosed-array",
    ),
    pytest.param(f"colour = 1\n{ONE}", 1, "colour", "unknown key", id="unknown-top-key"),
    pytest.param(
        f"[proxy]\nt1 = 0.5\nlisen = []\n{ONE}", 3, "proxy.lisen", "unknown key", id="typo"
    ),
    pytest.param(
        f'[proxy]\nlisten = "udp:127.0.0.1:5060"\n{ONE}',
        2,
        "proxy.listen",
        "must be an array of strings, not a string",
        id="type",
    ),
    pytest.param(
        f"[proxy]\nmax_forwards = true\n{ONE}",
        2,
        "proxy.max_forwards",
        "must be an integer, not a boolean",
        id="bool-for-int",
    ),
    pytest.param(
        f"[proxy]\nlisten = []\n{ONE}",
        2,
        "proxy.listen",
        "needs at least one socket",
        id="no-listen",
    ),
    pytest.param(
        f'[proxy]\nlisten = ["udp:0.0.0.0:5060"]\n{ONE}',
        2,
        "proxy.listen[0]",
        "listen on a specific address",
        id="wildcard",
    ),
    pytest.param(
        f'[proxy]\nlisten = [\n  "udp:127.0.0.1:5060",\n  "tls:127.0.0.1:5061",\n]\n{ONE}',
        2,
        "proxy.listen[1]",
        "only udp and tcp",
        id="tls",
    ),
    pytest.param(
        f'[proxy]\nlisten = ["udp:sip.example.com:5060"]\n{ONE}',
        2,
        "proxy.listen[0]",
        "must be an IP address",
        id="name",
    ),
    pytest.param(
        f"[proxy]\nt1 = 2.0\nt2 = 1.0\n{ONE}",
        3,
        "proxy.t2",
        "must not be below t1",
        id="t2-below-t1",
    ),
    pytest.param(
        f"[dispatcher]\nalgorithm = 99\n{ONE}",
        2,
        "dispatcher.algorithm",
        "99 is not a dispatcher algorithm",
        id="algorithm",
    ),
    pytest.param(
        f"[dispatcher]\nalgorithm = 7\n{ONE}",
        2,
        "dispatcher.algorithm",
        "custom key",
        id="algorithm-7",
    ),
    pytest.param(
        f"[dispatcher]\nattempts = 13\n{ONE}", 2, "dispatcher.attempts", "at most 12", id="attempts"
    ),
    pytest.param(
        f"[dispatcher]\nfailover_codes = [503, 200]\n{ONE}",
        2,
        "dispatcher.failover_codes[1]",
        "200 is not a failure status",
        id="failover-200",
    ),
    pytest.param(
        f'[dispatcher]\nmark_state = "x"\n{ONE}', 2, "dispatcher.mark_state", "'x'", id="mark-state"
    ),
    pytest.param(
        "[dispatcher]\nsetid = 1\n",
        1,
        "dispatcher.destinations",
        "no destinations",
        id="no-destinations",
    ),
    pytest.param(
        f"[dispatcher]\nsetid = 2\n{ONE}setid = 3\n",
        2,
        "dispatcher.setid",
        "no destination is in set 2",
        id="empty-set",
    ),
    pytest.param(
        f'[dispatcher]\nlist_file = "d.list"\n{ONE}',
        2,
        "dispatcher.list_file",
        "not both",
        id="list-and-inline",
    ),
    pytest.param(
        "[[dispatcher.destinations]]\npriority = 1\n",
        1,
        "dispatcher.destinations[0].uri",
        "is required",
        id="no-uri",
    ),
    pytest.param(
        f'{ONE}[[dispatcher.destinations]]\nuri = "sip:[bad"\n',
        4,
        "dispatcher.destinations[1].uri",
        "'sip:[bad': unterminated IPv6",
        id="bad-uri",
    ),
    pytest.param(
        f'{ONE}[[dispatcher.destinations]]\nuri = "tel:+123"\n',
        4,
        "dispatcher.destinations[1].uri",
        "'tel:+123': a destination is a sip: or sips: URI",
        id="tel-uri",
    ),
    pytest.param(
        f'{ONE}[[dispatcher.destinations]]\nuri = "sip:10.0.0.2"\nflags = 1.5\n',
        5,
        "dispatcher.destinations[1].flags",
        "integer or state letters",
        id="flags-type",
    ),
    pytest.param(
        f'{ONE}[[dispatcher.destinations]]\nuri = "sip:10.0.0.2"\nweight = 5\n',
        5,
        "dispatcher.destinations[1].weight",
        "unknown key",
        id="dest-unknown",
    ),
    pytest.param(
        f'[probing]\nmode = "sometimes"\n{ONE}',
        2,
        "probing.mode",
        "must be one of none, all, inactive, flagged",
        id="probing-mode",
    ),
    pytest.param(
        f'[probing]\nmethod = "op tions"\n{ONE}',
        2,
        "probing.method",
        "not a SIP method",
        id="probing-method",
    ),
    pytest.param(
        f"[limits]\nstatus = 404\n{ONE}",
        2,
        "limits.status",
        "must be 486 or 503, not 404",
        id="limit-status",
    ),
    pytest.param(
        f"[limits]\nper_caller = -1\n{ONE}",
        2,
        "limits.per_caller",
        "at least 0",
        id="negative-limit",
    ),
    pytest.param(
        f'[limits]\naccount_key = "ip"\n{ONE}',
        2,
        "limits.account_key",
        "from_uri, from_domain, auth_username",
        id="account-key",
    ),
    pytest.param(
        f"[dialog]\nkeepalive_interval = 10\n{ONE}",
        2,
        "dialog.keepalive_interval",
        "at least 30",
        id="keepalive",
    ),
    pytest.param(
        f'[persistence]\npath = ""\n{ONE}', 2, "persistence.path", "is empty", id="store-path"
    ),
    pytest.param(
        f'[persistence]\nmode = "sometimes"\n{ONE}',
        2,
        "persistence.mode",
        "realtime, delayed, shutdown",
        id="store-mode",
    ),
    pytest.param(
        f'[management]\nlisten = "0.0.0.0:8060"\n{ONE}',
        2,
        "management.listen",
        "use loopback",
        id="management-public",
    ),
    pytest.param(
        f'[management]\nlisten = "localhost"\n{ONE}',
        2,
        "management.listen",
        "is not host:port",
        id="management-port",
    ),
    pytest.param(
        f'[logging]\nformat = "xml"\n{ONE}', 2, "logging.format", "json, text", id="log-format"
    ),
]


@pytest.mark.parametrize(("text", "line", "key", "message"), BAD)
def test_a_bad_file_is_one_error_naming_the_key_and_its_line(
    text: str, line: int | None, key: str | None, message: str
) -> None:
    error = error_of(text)
    assert error.key == key
    assert error.line == line
    assert message in error.message, error
    shown = str(error)
    assert "\n" not in shown
    where = "proxy.toml" if line is None else f"proxy.toml:{line}"
    assert shown.startswith(f"{where}:"), shown
    if key is not None:
        assert f" {key}: " in shown


def test_a_syntax_error_carries_tomllib_s_line_and_column() -> None:
    error = error_of(f"{ONE}[proxy]\nt1 = = 1\n")
    assert (error.line, error.column) == (4, 6)
    assert str(error) == "proxy.toml:4:6: not valid TOML: Invalid value"


def test_key_lines_skip_multi_line_strings_and_follow_arrays_of_tables() -> None:
    text = (
        '[logging]\nlevel = """\nfake = 1\n"""\n'
        "[[dispatcher.destinations]]\nuri = 1\n"
        "[[dispatcher.destinations]]\n'uri' = 2\n"
        '[a."b.c"]\nd = 1\n'
    )
    lines = key_lines(text)
    assert "logging.fake" not in lines and "fake" not in lines
    assert lines["dispatcher.destinations[1].uri"] == 8
    assert lines["a.b.c.d"] == 10


def test_load_config_reports_a_missing_file_and_bytes_that_are_not_utf8(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as missing:
        load_config(tmp_path / "nope.toml")
    assert str(missing.value).endswith("nope.toml: cannot read the file: No such file or directory")
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(ONE.encode() + b'[proxy]\nserver_header = "caf\xe9"\n')
    with pytest.raises(ConfigError) as latin:
        load_config(bad)
    assert latin.value.line == 4 and "not UTF-8" in str(latin.value)


def test_a_list_file_is_read_and_its_bad_line_named(tmp_path: Path) -> None:
    listing = tmp_path / "dispatcher.list"
    listing.write_text("# gateways\n1 sip:10.0.0.1:5060 0 0 duid=a\n1 sip:10.0.0.2:5060\n")
    path = write_config(tmp_path, f'[dispatcher]\nlist_file = "{listing}"\n')
    config = load_config(path)
    assert [d.uri for d in read_destinations(config)] == ["sip:10.0.0.1:5060", "sip:10.0.0.2:5060"]
    listing.write_text("1 sip:10.0.0.1:5060\n1 sip:[oops\n")
    with pytest.raises(ConfigError) as caught:
        read_destinations(config)
    assert caught.value.line == 2 and str(caught.value).startswith(f"{listing}:2: ")
    listing.write_text("2 sip:10.0.0.1:5060\n")
    with pytest.raises(ConfigError, match="no destination is in set 1"):
        read_destinations(config)


def test_reading_the_destinations_again_sees_edits_to_the_config_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, ONE)
    config = load_config(path)
    path.write_text(ONE + '[[dispatcher.destinations]]\nuri = "sip:127.0.0.1:5071"\n')
    assert [d.uri for d in read_destinations(config)] == ["sip:127.0.0.1:5070"]
    assert len(read_destinations(config, reread=True)) == 2
    path.write_text(ONE + "[[dispatcher.destinations]]\n")
    with pytest.raises(ConfigError) as caught:
        read_destinations(config, reread=True)
    assert caught.value.key == "dispatcher.destinations[1].uri" and caught.value.line == 3


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PROXY_COMMAND, *args], cwd=cwd, capture_output=True, text=True, timeout=30
    )


def test_the_command_prints_one_line_and_exits_2_for_a_bad_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"[dispatcher]\nalgorithm = 99\n{ONE}")
    done = run_cli(str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"sipcore-proxy: {path}:2: dispatcher.algorithm: 99 is not")


def test_the_command_checks_a_good_file_without_starting(tmp_path: Path) -> None:
    path = write_config(tmp_path, ONE)
    done = run_cli(str(path), "--check", cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{path}: OK\n", "")


def test_a_store_that_cannot_be_opened_is_a_config_error_at_start(tmp_path: Path) -> None:
    text = (
        f'[proxy]\nlisten = ["udp:127.0.0.1:0"]\n{ONE}[management]\nenabled = false\n'
        f'[persistence]\npath = "{tmp_path}/no/such/dir/d.sqlite"\n'
    )
    path = write_config(tmp_path, text)
    done = run_cli(str(path), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    last = done.stderr.splitlines()[-1]
    assert "Traceback" not in done.stderr
    assert last.startswith(f"sipcore-proxy: {path}:8: persistence.path: cannot open"), last


def test_the_check_reads_the_list_file_too(tmp_path: Path) -> None:
    listing = tmp_path / "dispatcher.list"
    listing.write_text("1 sip:10.0.0.1:5060\n1 sip:[oops\n")
    path = write_config(tmp_path, f'[dispatcher]\nlist_file = "{listing}"\n')
    done = run_cli(str(path), "--check", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.startswith(f"sipcore-proxy: {listing}:2: ") and done.stderr.count("\n") == 1
