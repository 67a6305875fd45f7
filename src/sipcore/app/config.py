"""The ``sipcore-proxy`` configuration: one TOML file, read into frozen values.

This module owns the file format (every table and key, its type, default
and bounds), :class:`ConfigError` (a bad file reported as one line that
names the key and its line), and the destination list the dispatcher is
loaded from (inline ``[[dispatcher.destinations]]`` or a Kamailio
``dispatcher.list``), which ``POST /dispatcher/reload`` reads again, and the
rtpengine nodes and flag strings of ``[media]`` / ``[[rtpengine]]``
(checked with :mod:`sipcore_media`'s own parsers, so a node or flag the
proxy would fail on at the first call is refused here). It reads files and
nothing else: no sockets, no clock, no name resolution.

Unknown keys are errors, so that a typo is reported rather than silently
ignored. Relative paths are taken relative to the working directory, as
Kamailio takes them.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar

import attrs

from sipcore import Endpoint, LocalProtocolError, SipError, SipURI, parse_uri
from sipcore_dialog import DbMode
from sipcore_dispatch import (
    ALGORITHMS,
    Destination,
    ListError,
    ProbingMode,
    make_destination,
    parse_list,
    parse_state,
)
from sipcore_dispatch import DispatcherConfig as _DispatcherConfig
from sipcore_media import (
    MAX_RTPP_TRIED_NODES,
    FlagDialect,
    HashAlgo,
    MediaError,
    RtpengineConfig,
    SipContext,
    build_command,
    parse_rtpengine_sock,
)

__all__ = [
    "AppConfig",
    "ConfigError",
    "DestinationsConfig",
    "DialogOptions",
    "DispatcherOptions",
    "LimitOptions",
    "LoggingOptions",
    "ManagementOptions",
    "MediaOptions",
    "PersistenceOptions",
    "ProbingOptions",
    "ProxyOptions",
    "error_at",
    "key_lines",
    "known_keys",
    "load_config",
    "parse_config",
    "read_destinations",
]

_T = TypeVar("_T")

# Kamailio's dispatcher: ds_select_dst() can try at most this many per request
# here, as the proxy core forks at most 12 branches (ProxyConfig.max_branches).
MAX_ATTEMPTS: Final = 12
_ON_FAILURE: Final = ("reject", "passthrough")
_FLAG_DIALECTS: Final = {d.value: d for d in FlagDialect}
# What most Kamailio configurations pass to rtpengine_manage(): the o= and
# session c= lines get rtpengine's address too, not only the media lines.
_DEFAULT_MEDIA_FLAGS: Final = "replace-origin replace-session-connection"
# A request waits for its offer suspended, and the proxy core answers a
# request suspended this long 408 (ProxyConfig.suspend_timeout's default):
# one node's sends must fit in it.
_SUSPEND_BOUND_MS: Final = 30_000
# A message to try the flag strings on: what a call gives build_command().
_FLAG_PROBE: Final = SipContext(
    call_id="check",
    from_tag="from",
    to_tag="to",
    sdp="v=0\r\n",
    source_address="127.0.0.1",
    vias=("z9hG4bK1", "z9hG4bK2"),
)
_ACCOUNT_KEYS: Final = ("from_uri", "from_domain", "auth_username")
_PROBING_MODES: Final = {
    "none": ProbingMode.NONE,
    "all": ProbingMode.ALL,
    "inactive": ProbingMode.INACTIVE,
    "flagged": ProbingMode.ONLY_FLAGGED,
}
_DB_MODES: Final = {
    "realtime": DbMode.REALTIME,
    "delayed": DbMode.DELAYED,
    "shutdown": DbMode.SHUTDOWN,
}
_LOG_LEVELS: Final = ("debug", "info", "warning", "error")
_LOG_FORMATS: Final = ("json", "text")
_SYNCHRONOUS: Final = ("normal", "full")
# A file larger than this is not a configuration file.
_MAX_CONFIG_BYTES: Final = 4 * 1024 * 1024


class ConfigError(Exception):
    """A configuration file that cannot be used.

    ``key`` is the dotted key at fault (``dispatcher.algorithm``,
    ``dispatcher.destinations[1].uri``) or None for a syntax error,
    ``line`` and ``column`` its 1-based position when known. ``str()`` is
    the one line ``sipcore-proxy`` prints.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str = "<config>",
        key: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.key = key
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = self.source
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        what = f"{self.key}: " if self.key else ""
        # One line, whatever the message holds (a list file's reason may not).
        return " ".join(f"{where}: {what}{self.message}".split())


# -- where a key is written ---------------------------------------------------------

_BARE: Final = r"[A-Za-z0-9_-]+"
_QUOTED: Final = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_KEY_PART: Final = rf"(?:{_BARE}|{_QUOTED})"
_DOTTED: Final = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_TABLE_ARRAY: Final = re.compile(rf"^\s*\[\[\s*({_DOTTED})\s*\]\]")
_TABLE: Final = re.compile(rf"^\s*\[\s*({_DOTTED})\s*\]")
_ASSIGNMENT: Final = re.compile(rf"^\s*({_DOTTED})\s*=")
_PART: Final = re.compile(_KEY_PART)


def _split_key(text: str) -> list[str]:
    parts = []
    for match in _PART.finditer(text):
        part = match.group(0)
        if part[0] in "\"'":
            part = part[1:-1]
        parts.append(part)
    return parts


def key_lines(text: str) -> dict[str, int]:
    """The line each table header and key is written on, by dotted path
    (``proxy.listen``, ``dispatcher.destinations[0].uri``).

    A line scanner, not a parser: it runs only on text tomllib accepted, and
    skips the inside of multi-line strings.

    >>> key_lines('[p]\\nlisten = []\\n[[d.x]]\\nuri = 1\\n[[d.x]]\\nuri = 2\\n')
    {'p': 1, 'p.listen': 2, 'd.x': 3, 'd.x[0]': 3, 'd.x[0].uri': 4, 'd.x[1]': 5, 'd.x[1].uri': 6}
    """
    lines: dict[str, int] = {}
    arrays: dict[str, int] = {}
    prefix = ""
    in_string: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if in_string is not None:
            if line.count(in_string) % 2 == 1:
                in_string = None
            continue
        header = _TABLE_ARRAY.match(line)
        if header is not None:
            name = ".".join(_split_key(header.group(1)))
            index = arrays.get(name, -1) + 1
            arrays[name] = index
            prefix = f"{name}[{index}]"
            lines.setdefault(name, number)
            lines.setdefault(prefix, number)
            continue
        header = _TABLE.match(line)
        if header is not None:
            prefix = ".".join(_split_key(header.group(1)))
            lines.setdefault(prefix, number)
            continue
        assignment = _ASSIGNMENT.match(line)
        if assignment is not None:
            key = ".".join(_split_key(assignment.group(1)))
            lines.setdefault(f"{prefix}.{key}" if prefix else key, number)
        for quotes in ('"""', "'''"):
            if line.count(quotes) % 2 == 1:
                in_string = quotes
                break
    return lines


class _Locator:
    """Turns a dotted key into ConfigErrors that carry its line."""

    def __init__(self, source: str, text: str) -> None:
        self.source = source
        self._lines = key_lines(text)
        # Every key the reader knows, by table ("dispatcher.destinations"
        # for each [[dispatcher.destinations]]): what the docs must list.
        self.known: dict[str, set[str]] = {}

    def line_of(self, key: str) -> int | None:
        # An element of an array or a key inside an inline table has no line
        # of its own: report the line of the nearest enclosing key.
        path = key
        while path:
            if path in self._lines:
                return self._lines[path]
            cut = max(path.rfind("."), path.rfind("["))
            path = path[:cut] if cut > 0 else ""
        return None

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, source=self.source, key=key, line=self.line_of(key))


# -- reading tables ---------------------------------------------------------------------


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


class _Table:
    """One TOML table being read: each key is taken once, with its type
    checked; :meth:`done` refuses the keys nobody took."""

    def __init__(self, data: dict[str, Any], path: str, locator: _Locator) -> None:
        self._data = data
        self._path = path
        self._locator = locator
        self._taken: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self._path}.{name}" if self._path else name

    def error(self, name: str, message: str) -> ConfigError:
        return self._locator.error(self.key(name), message)

    def has(self, name: str) -> bool:
        return name in self._data

    def _take(self, name: str) -> None:
        self._taken.add(name)
        self._locator.known.setdefault(re.sub(r"\[\d+\]", "", self._path), set()).add(name)

    def _get(self, name: str, default: _T, check: Callable[[object], bool], wanted: str) -> Any:
        self._take(name)
        if name not in self._data:
            return default
        value = self._data[name]
        if not check(value):
            raise self.error(name, f"must be {wanted}, not {_type_name(value)}")
        return value

    def string(self, name: str, default: str) -> str:
        value: str = self._get(name, default, lambda v: isinstance(v, str), "a string")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value: bool = self._get(name, default, lambda v: isinstance(v, bool), "true or false")
        return value

    def integer(
        self, name: str, default: int, *, low: int | None = None, high: int | None = None
    ) -> int:
        value: int = self._get(
            name, default, lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"
        )
        self._bounds(name, value, low, high)
        return value

    def number(
        self, name: str, default: float, *, low: float | None = None, high: float | None = None
    ) -> float:
        value = self._get(
            name,
            default,
            lambda v: isinstance(v, int | float) and not isinstance(v, bool),
            "a number",
        )
        self._bounds(name, value, low, high)
        return float(value)

    def _bounds(self, name: str, value: float, low: float | None, high: float | None) -> None:
        if low is not None and value < low:
            raise self.error(name, f"must be at least {low}, not {value}")
        if high is not None and value > high:
            raise self.error(name, f"must be at most {high}, not {value}")

    def strings(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self._get(
            name,
            default,
            lambda v: isinstance(v, list | tuple) and all(isinstance(x, str) for x in v),
            "an array of strings",
        )
        return tuple(value)

    def integers(self, name: str, default: tuple[int, ...]) -> tuple[int, ...]:
        value = self._get(
            name,
            default,
            lambda v: (
                isinstance(v, list | tuple)
                and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
            ),
            "an array of integers",
        )
        return tuple(value)

    def choice(self, name: str, default: str, choices: Iterable[str]) -> str:
        options = tuple(choices)
        value = self.string(name, default)
        if value.lower() not in options:
            raise self.error(name, f"must be one of {', '.join(options)}, not {value!r}")
        return value.lower()

    def table(self, name: str) -> _Table:
        value = self._get(name, {}, lambda v: isinstance(v, dict), "a table")
        return _Table(value, self.key(name), self._locator)

    def tables(self, name: str) -> list[_Table]:
        value = self._get(
            name,
            [],
            lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v),
            "an array of tables ([[...]])",
        )
        return [
            _Table(item, f"{self.key(name)}[{i}]", self._locator) for i, item in enumerate(value)
        ]

    def raw(self, name: str) -> object:
        self._take(name)
        return self._data.get(name)

    def done(self) -> None:
        for name in self._data:
            if name not in self._taken:
                raise self.error(name, "unknown key")


# -- the values ----------------------------------------------------------------------------


@attrs.frozen
class ProxyOptions:
    """``[proxy]``: the SIP side. ``listen`` holds Kamailio-style sockets
    (``udp:127.0.0.1:5060``; port 0 takes a free one); the timers are
    RFC 3261's T1, T2, T4 and Timer C (Kamailio: ``fr_inv_timer``)."""

    listen: tuple[Endpoint, ...] = (
        Endpoint("127.0.0.1", 5060, "UDP"),
        Endpoint("127.0.0.1", 5060, "TCP"),
    )
    aliases: tuple[str, ...] = ()
    server_header: str = ""
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    fr_inv_timeout: float = 120.0
    max_forwards: int = 70
    shutdown_grace: float = 5.0
    tcp_connect_timeout: float = 5.0
    tcp_max_connections: int = 1024
    tcp_idle_timeout: float = 300.0


@attrs.frozen
class DestinationsConfig:
    """Where the dispatcher's destinations come from: the config file's
    ``[[dispatcher.destinations]]``, or ``list_file`` (a ``dispatcher.list``)."""

    config_path: str | None
    list_file: str = ""


@attrs.frozen
class DispatcherOptions:
    """``[dispatcher]``: which set new requests go to, how a destination is
    chosen (Kamailio's algorithm numbers), and what a failure does."""

    setid: int = 1
    algorithm: int = 4
    attempts: int = 3
    failover_codes: tuple[int, ...] = (408, 500, 502, 503, 504)
    mark_codes: tuple[int, ...] = (408, 500, 502, 503, 504)
    mark_state: str = "ip"
    hash_user_only: bool = False
    use_default: bool = False
    reload_delta: int = 5
    list_file: str = ""
    destinations: tuple[Destination, ...] = ()


@attrs.frozen
class ProbingOptions:
    """``[probing]``: the dispatcher's keepalives (``ds_ping_*``)."""

    interval: int = 0
    mode: ProbingMode = ProbingMode.ONLY_FLAGGED
    method: str = "OPTIONS"
    from_uri: str = "sip:dispatcher@localhost"
    reply_codes: str = ""
    threshold: int = 1
    inactive_threshold: int = 1
    latency_stats: bool = False


@attrs.frozen
class LimitOptions:
    """``[limits]``: concurrent calls per caller and per account (0: no
    limit), and the answer to a call over a limit."""

    per_caller: int = 0
    per_account: int = 0
    account_key: str = "from_uri"
    status: int = 486
    reason: str = ""


@attrs.frozen
class DialogOptions:
    """``[dialog]``: the dialog timers (Kamailio's dialog module parameters)."""

    default_timeout: int = 43200
    early_timeout: int = 300
    noack_timeout: int = 60
    end_timeout: int = 300
    send_bye: bool = False
    keepalive_interval: int = 0


@attrs.frozen
class PersistenceOptions:
    """``[persistence]``: confirmed dialogs in an SQLite file."""

    enabled: bool = True
    path: str = "sipcore-dialogs.sqlite"
    mode: DbMode = DbMode.REALTIME
    update_period: int = 60
    synchronous: str = "normal"


@attrs.frozen
class ManagementOptions:
    """``[management]``: the JSON-over-HTTP endpoint (loopback only)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8060
    max_request_bytes: int = 65536


@attrs.frozen
class LoggingOptions:
    """``[logging]``: one record per line on stderr."""

    level: str = "info"
    format: str = "json"


@attrs.frozen
class MediaOptions:
    """``[media]`` and ``[[rtpengine]]``: rtpengine control on every call
    (Kamailio's ``rtpengine_manage()``), with the rtpengine module's
    parameters under their Kamailio names and 5.6's defaults.

    ``rtpengine_sock`` holds the nodes as ``rtpengine_sock`` lines (the
    ``[[rtpengine]]`` tables are turned into ``url=weight`` entries);
    media is handled only when :attr:`active`: enabled with a node.
    """

    enabled: bool = True
    rtpengine_sock: tuple[str, ...] = ()
    on_failure: str = "reject"
    offer_flags: str = _DEFAULT_MEDIA_FLAGS
    answer_flags: str = _DEFAULT_MEDIA_FLAGS
    delete_flags: str = ""
    flag_dialect: FlagDialect = FlagDialect.KAMAILIO_5_6
    rtpengine_tout_ms: int = 1000
    rtpengine_retr: int = 5
    rtpengine_disable_tout: int = 60
    queried_nodes_limit: int = MAX_RTPP_TRIED_NODES
    aggressive_redetection: bool = True
    rtpengine_allow_op: int = 0
    hash_algo: HashAlgo = HashAlgo.LEGACY
    hash_table_tout: int = 3600
    ping_interval: int = 0
    max_pending: int = 10_000

    @property
    def active(self) -> bool:
        """True when calls get offer, answer and delete."""
        return self.enabled and bool(self.rtpengine_sock)

    def rtpengine_config(self) -> RtpengineConfig:
        """The :class:`sipcore_media.RtpengineConfig` these options make."""
        return RtpengineConfig(
            rtpengine_sock=self.rtpengine_sock,
            rtpengine_disable_tout=self.rtpengine_disable_tout,
            aggressive_redetection=self.aggressive_redetection,
            rtpengine_tout_ms=self.rtpengine_tout_ms,
            rtpengine_retr=self.rtpengine_retr,
            queried_nodes_limit=self.queried_nodes_limit,
            rtpengine_allow_op=self.rtpengine_allow_op,
            hash_algo=self.hash_algo,
            hash_table_tout=self.hash_table_tout,
            ping_interval=self.ping_interval,
            flag_dialect=self.flag_dialect,
            max_pending=self.max_pending,
        )


@attrs.frozen
class AppConfig:
    """The whole file. ``source`` is its path (for reloads and messages)."""

    proxy: ProxyOptions = ProxyOptions()
    dispatcher: DispatcherOptions = DispatcherOptions()
    probing: ProbingOptions = ProbingOptions()
    limits: LimitOptions = LimitOptions()
    dialog: DialogOptions = DialogOptions()
    persistence: PersistenceOptions = PersistenceOptions()
    management: ManagementOptions = ManagementOptions()
    logging: LoggingOptions = LoggingOptions()
    media: MediaOptions = MediaOptions()
    source: str | None = None

    def dispatcher_config(self) -> _DispatcherConfig:
        """The :class:`sipcore_dispatch.DispatcherConfig` these options make."""
        from sipcore_dispatch import DsFlags, LoadMode

        d, p = self.dispatcher, self.probing
        return _DispatcherConfig(
            flags=DsFlags.HASH_USER_ONLY if d.hash_user_only else DsFlags.NONE,
            use_default=d.use_default,
            ds_load_mode=LoadMode.FATAL,
            ds_probing_threshold=p.threshold,
            ds_inactive_threshold=p.inactive_threshold,
            ds_ping_method=p.method,
            ds_ping_from=p.from_uri,
            ds_ping_interval=p.interval,
            ds_probing_mode=p.mode,
            ds_ping_reply_codes=p.reply_codes,
            ds_ping_latency_stats=p.latency_stats,
            reload_delta=d.reload_delta,
        )


# -- the sections -----------------------------------------------------------------------------


def _endpoint(table: _Table, key: str, text: str) -> Endpoint:
    try:
        endpoint = Endpoint.parse(text)
    except LocalProtocolError as exc:
        raise table.error(key, f"{text!r} is not a socket: {exc}") from None
    if endpoint.transport not in ("UDP", "TCP"):
        raise table.error(key, f"{text!r}: only udp and tcp are served")
    try:
        address = ipaddress.ip_address(endpoint.host)
    except ValueError:
        raise table.error(key, f"{text!r}: the host must be an IP address") from None
    if address.is_unspecified:
        # The proxy writes this address in Via and Record-Route.
        raise table.error(key, f"{text!r}: listen on a specific address, not {address}")
    return endpoint


def _proxy(t: _Table) -> ProxyOptions:
    defaults = ProxyOptions()
    texts = t.strings(
        "listen", tuple(f"{e.transport.lower()}:{e.hostport}" for e in defaults.listen)
    )
    if not texts:
        raise t.error("listen", "needs at least one socket")
    listen = tuple(_endpoint(t, f"listen[{i}]", text) for i, text in enumerate(texts))
    if len(set(listen)) != len(listen):
        raise t.error("listen", "a socket is listed twice")
    t1 = t.number("t1", defaults.t1, low=0.001, high=60)
    t2 = t.number("t2", defaults.t2, low=0.001, high=600)
    if t2 < t1:
        raise t.error("t2", f"must not be below t1 ({t1})")
    options = ProxyOptions(
        listen=listen,
        aliases=t.strings("aliases", ()),
        server_header=t.string("server_header", ""),
        t1=t1,
        t2=t2,
        t4=t.number("t4", defaults.t4, low=0.001, high=600),
        fr_inv_timeout=t.number("fr_inv_timeout", defaults.fr_inv_timeout, low=1, high=86400),
        max_forwards=t.integer("max_forwards", defaults.max_forwards, low=1, high=255),
        shutdown_grace=t.number("shutdown_grace", defaults.shutdown_grace, low=0, high=3600),
        tcp_connect_timeout=t.number(
            "tcp_connect_timeout", defaults.tcp_connect_timeout, low=0.01, high=600
        ),
        tcp_max_connections=t.integer(
            "tcp_max_connections", defaults.tcp_max_connections, low=1, high=1_000_000
        ),
        tcp_idle_timeout=t.number("tcp_idle_timeout", defaults.tcp_idle_timeout, low=1, high=86400),
    )
    t.done()
    return options


def _status_codes(t: _Table, name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    codes = t.integers(name, default)
    for i, code in enumerate(codes):
        if not 300 <= code <= 699:
            raise t.error(f"{name}[{i}]", f"{code} is not a failure status (300-699)")
    return codes


def _destination(t: _Table, setid: int, order: int) -> Destination:
    if not t.has("uri"):
        raise t.error("uri", "is required")
    uri = t.string("uri", "")
    dest_setid = t.integer("setid", setid, low=0, high=2**31 - 1)
    flags_value = t.raw("flags")
    if flags_value is None:
        flags = 0
    elif isinstance(flags_value, str):
        try:
            flags = int(parse_state(flags_value)) if flags_value else 0
        except SipError as exc:
            raise t.error("flags", f"{flags_value!r}: {exc}") from None
    elif isinstance(flags_value, int) and not isinstance(flags_value, bool):
        flags = flags_value
    else:
        raise t.error(
            "flags", f"must be an integer or state letters, not {_type_name(flags_value)}"
        )
    priority = t.integer("priority", 0, low=-(2**31), high=2**31 - 1)
    attrs_text = t.string("attrs", "")
    description = t.string("description", "")
    t.done()
    try:
        parsed = parse_uri(uri)
    except SipError as exc:
        raise t.error("uri", f"{uri!r}: {exc.reason}") from None
    if not isinstance(parsed, SipURI):
        raise t.error("uri", f"{uri!r}: a destination is a sip: or sips: URI")
    if not 0 <= flags < 2**32:
        raise t.error("flags", f"{flags} is out of range")
    try:
        return make_destination(dest_setid, uri, flags, priority, attrs_text, description, order)
    except SipError as exc:  # pragma: no cover - checked above; Kamailio's attrs never fail
        raise t.error("uri", exc.reason) from None


def _dispatcher(t: _Table) -> DispatcherOptions:
    d = DispatcherOptions()
    setid = t.integer("setid", d.setid, low=0, high=2**31 - 1)
    algorithm = t.integer("algorithm", d.algorithm)
    if algorithm not in ALGORITHMS:
        known = ", ".join(str(a) for a in ALGORITHMS)
        raise t.error("algorithm", f"{algorithm} is not a dispatcher algorithm ({known})")
    if algorithm == 7:
        raise t.error("algorithm", "7 (hash over a custom key) needs a key this proxy cannot set")
    mark_state = t.string("mark_state", d.mark_state)
    try:
        parse_state(mark_state)
    except SipError as exc:
        raise t.error("mark_state", f"{mark_state!r}: {exc}") from None
    list_file = t.string("list_file", "")
    entries = t.tables("destinations")
    if list_file and entries:
        raise t.error("list_file", "give list_file or [[dispatcher.destinations]], not both")
    destinations = tuple(_destination(e, setid, i) for i, e in enumerate(entries))
    options = DispatcherOptions(
        setid=setid,
        algorithm=algorithm,
        attempts=t.integer("attempts", d.attempts, low=1, high=MAX_ATTEMPTS),
        failover_codes=_status_codes(t, "failover_codes", d.failover_codes),
        mark_codes=_status_codes(t, "mark_codes", d.mark_codes),
        mark_state=mark_state,
        hash_user_only=t.boolean("hash_user_only", d.hash_user_only),
        use_default=t.boolean("use_default", d.use_default),
        reload_delta=t.integer("reload_delta", d.reload_delta, low=0, high=3600),
        list_file=list_file,
        destinations=destinations,
    )
    t.done()
    if not list_file and not destinations:
        raise t.error(
            "destinations", "no destinations: add [[dispatcher.destinations]] or list_file"
        )
    if destinations and not any(dest.setid == setid for dest in destinations):
        raise t.error("setid", f"no destination is in set {setid}")
    return options


def _probing(t: _Table) -> ProbingOptions:
    p = ProbingOptions()
    mode = t.choice("mode", "flagged", _PROBING_MODES)
    options = ProbingOptions(
        interval=t.integer("interval", p.interval, low=0, high=86400),
        mode=_PROBING_MODES[mode],
        method=t.string("method", p.method),
        from_uri=t.string("from", p.from_uri),
        reply_codes=t.string("reply_codes", p.reply_codes),
        threshold=t.integer("threshold", p.threshold, low=1, high=1000),
        inactive_threshold=t.integer("inactive_threshold", p.inactive_threshold, low=1, high=1000),
        latency_stats=t.boolean("latency_stats", p.latency_stats),
    )
    if not re.fullmatch(r"[A-Z]+", options.method):
        raise t.error("method", f"{options.method!r} is not a SIP method")
    t.done()
    return options


def _limits(t: _Table) -> LimitOptions:
    limits = LimitOptions()
    status = t.integer("status", limits.status)
    if status not in (486, 503):
        raise t.error("status", f"must be 486 or 503, not {status}")
    options = LimitOptions(
        per_caller=t.integer("per_caller", 0, low=0, high=1_000_000),
        per_account=t.integer("per_account", 0, low=0, high=1_000_000),
        account_key=t.choice("account_key", limits.account_key, _ACCOUNT_KEYS),
        status=status,
        reason=t.string("reason", ""),
    )
    if any(c in options.reason for c in "\r\n"):
        raise t.error("reason", "must be one line")
    t.done()
    return options


def _dialog(t: _Table) -> DialogOptions:
    d = DialogOptions()
    options = DialogOptions(
        default_timeout=t.integer("default_timeout", d.default_timeout, low=1, high=10**7),
        early_timeout=t.integer("early_timeout", d.early_timeout, low=1, high=10**7),
        noack_timeout=t.integer("noack_timeout", d.noack_timeout, low=1, high=10**7),
        end_timeout=t.integer("end_timeout", d.end_timeout, low=1, high=10**7),
        send_bye=t.boolean("send_bye", d.send_bye),
        keepalive_interval=t.integer("keepalive_interval", 0, low=0, high=86400),
    )
    if 0 < options.keepalive_interval < 30:
        raise t.error("keepalive_interval", "must be 0 (off) or at least 30 (Kamailio's minimum)")
    t.done()
    return options


def _persistence(t: _Table) -> PersistenceOptions:
    p = PersistenceOptions()
    options = PersistenceOptions(
        enabled=t.boolean("enabled", p.enabled),
        path=t.string("path", p.path),
        mode=_DB_MODES[t.choice("mode", "realtime", _DB_MODES)],
        update_period=t.integer("update_period", p.update_period, low=1, high=86400),
        synchronous=t.choice("synchronous", p.synchronous, _SYNCHRONOUS),
    )
    if options.enabled and not options.path:
        raise t.error("path", "is empty (set enabled = false to keep dialogs in memory only)")
    t.done()
    return options


def _management(t: _Table) -> ManagementOptions:
    m = ManagementOptions()
    enabled = t.boolean("enabled", m.enabled)
    text = t.string("listen", f"{m.host}:{m.port}")
    host, port = _host_port(t, "listen", text)
    options = ManagementOptions(
        enabled=enabled,
        host=host,
        port=port,
        max_request_bytes=t.integer("max_request_bytes", m.max_request_bytes, low=1024, high=2**24),
    )
    t.done()
    return options


def _host_port(t: _Table, key: str, text: str) -> tuple[str, int]:
    host, colon, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not colon or not port_text.isdigit() or int(port_text) > 65535:
        raise t.error(key, f"{text!r} is not host:port")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise t.error(key, f"{text!r}: the host must be an IP address") from None
    if not address.is_loopback:
        # Anyone who can reach it can end calls and take gateways out.
        raise t.error(key, f"{text!r}: the management endpoint has no authentication; use loopback")
    return host, int(port_text)


def _logging(t: _Table) -> LoggingOptions:
    options = LoggingOptions(
        level=t.choice("level", "info", _LOG_LEVELS),
        format=t.choice("format", "json", _LOG_FORMATS),
    )
    t.done()
    return options


def _check_nodes(t: _Table, key: str, lines: tuple[str, ...]) -> int:
    """Read ``rtpengine_sock`` lines as Kamailio does; refuse what this
    proxy cannot talk to. Returns how many nodes they hold."""
    try:
        specs = parse_rtpengine_sock(lines)
    except MediaError as exc:
        raise t.error(key, exc.reason) from None
    for spec in specs:
        address = spec.address
        if address.scheme not in ("udp", "udp6"):
            raise t.error(
                key, f"{spec.url}: this proxy speaks ng over UDP only (udp: or udp6: nodes)"
            )
        try:
            ipaddress.ip_address(address.host or "")
        except ValueError:
            # Nothing resolves names for the ng socket (sipcore_media.asyncio).
            raise t.error(key, f"{spec.url}: the host must be an IP address") from None
        if spec.setid != 0:
            raise t.error(key, f"{spec.url}: set {spec.setid}: this proxy uses one set (0)")
    return len(specs)


def _flags(t: _Table, name: str, command: str, default: str, dialect: FlagDialect) -> str:
    flags = t.string(name, default)
    try:
        build_command(command, flags, _FLAG_PROBE, dialect)
    except MediaError as exc:
        raise t.error(name, f"{flags!r}: {exc.reason}") from None
    return flags


def _rtpengine_nodes(tables: list[_Table]) -> tuple[str, ...]:
    lines = []
    for t in tables:
        if not t.has("url"):
            raise t.error("url", "is required")
        url = t.string("url", "")
        weight = t.integer("weight", 1, low=0, high=2**31 - 1)
        t.done()
        if not url or any(c.isspace() or c == "=" for c in url):
            raise t.error("url", f"{url!r} is one node URL (udp:host:port), no spaces or '='")
        line = f"{url}={weight}"
        _check_nodes(t, "url", (line,))
        lines.append(line)
    return tuple(lines)


def _media(t: _Table, nodes: list[_Table]) -> MediaOptions:
    m = MediaOptions()
    sock_value = t.raw("rtpengine_sock")
    if sock_value is None:
        sock: tuple[str, ...] = ()
    elif isinstance(sock_value, str):
        sock = (sock_value,) if sock_value.strip() else ()
    elif isinstance(sock_value, list) and all(isinstance(v, str) for v in sock_value):
        sock = tuple(v for v in sock_value if v.strip())
    else:
        raise t.error(
            "rtpengine_sock",
            f"must be a string or an array of strings, not {_type_name(sock_value)}",
        )
    if sock:
        _check_nodes(t, "rtpengine_sock", sock)
    listed = _rtpengine_nodes(nodes)
    if sock and listed:
        raise t.error("rtpengine_sock", "give rtpengine_sock or [[rtpengine]] tables, not both")
    dialect = _FLAG_DIALECTS[t.choice("flag_dialect", m.flag_dialect.value, _FLAG_DIALECTS)]
    options = MediaOptions(
        enabled=t.boolean("enabled", m.enabled),
        rtpengine_sock=sock or listed,
        on_failure=t.choice("on_failure", m.on_failure, _ON_FAILURE),
        offer_flags=_flags(t, "offer_flags", "offer", m.offer_flags, dialect),
        answer_flags=_flags(t, "answer_flags", "answer", m.answer_flags, dialect),
        delete_flags=_flags(t, "delete_flags", "delete", m.delete_flags, dialect),
        flag_dialect=dialect,
        rtpengine_tout_ms=t.integer("rtpengine_tout_ms", m.rtpengine_tout_ms, low=1, high=60_000),
        rtpengine_retr=t.integer("rtpengine_retr", m.rtpengine_retr, low=1, high=100),
        rtpengine_disable_tout=t.integer(
            "rtpengine_disable_tout", m.rtpengine_disable_tout, low=0, high=86400
        ),
        queried_nodes_limit=t.integer(
            "queried_nodes_limit", m.queried_nodes_limit, low=1, high=MAX_RTPP_TRIED_NODES
        ),
        aggressive_redetection=t.boolean("aggressive_redetection", m.aggressive_redetection),
        rtpengine_allow_op=t.integer("rtpengine_allow_op", m.rtpengine_allow_op, low=0, high=2),
        hash_algo=HashAlgo(t.integer("hash_algo", int(m.hash_algo), low=0, high=2)),
        hash_table_tout=t.integer("hash_table_tout", m.hash_table_tout, low=1, high=10**7),
        ping_interval=t.integer("ping_interval", m.ping_interval, low=0, high=86400),
        max_pending=t.integer("max_pending", m.max_pending, low=1, high=1_000_000),
    )
    per_node = options.rtpengine_tout_ms * options.rtpengine_retr
    if per_node > _SUSPEND_BOUND_MS:
        raise t.error(
            "rtpengine_retr",
            f"{options.rtpengine_retr} sends {options.rtpengine_tout_ms} ms apart wait "
            f"{per_node / 1000:g} s for one node; a call waits at most "
            f"{_SUSPEND_BOUND_MS // 1000} s for its offer",
        )
    t.done()
    return options


# -- entry points ----------------------------------------------------------------------------


def parse_config(text: str, source: str = "<config>") -> AppConfig:
    """Read a configuration from TOML text; raises :class:`ConfigError`.

    ``source`` names the file in messages and is where a reload reads the
    destinations again.
    """
    return _parse(text, source)[0]


def known_keys() -> dict[str, set[str]]:
    """Every key of the file, by table (``""`` is the top level): what
    ``docs/proxy-app.md`` must document."""
    minimal = (
        '[[dispatcher.destinations]]\nuri = "sip:127.0.0.1"\n'
        '[[rtpengine]]\nurl = "udp:127.0.0.1:2223"\n'
    )
    return _parse(minimal, "<config>")[1].known


def _parse(text: str, source: str) -> tuple[AppConfig, _Locator]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(exc, source) from None
    locator = _Locator(source, text)
    root = _Table(data, "", locator)
    config = AppConfig(
        proxy=_proxy(root.table("proxy")),
        dispatcher=_dispatcher(root.table("dispatcher")),
        probing=_probing(root.table("probing")),
        limits=_limits(root.table("limits")),
        dialog=_dialog(root.table("dialog")),
        persistence=_persistence(root.table("persistence")),
        management=_management(root.table("management")),
        logging=_logging(root.table("logging")),
        media=_media(root.table("media"), root.tables("rtpengine")),
        source=None if source == "<config>" else source,
    )
    root.done()
    try:
        config.dispatcher_config()
    except SipError as exc:  # pragma: no cover - every bound is checked above
        raise ConfigError(exc.reason, source=source) from None
    return config, locator


_POSITION: Final = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def _syntax_error(exc: tomllib.TOMLDecodeError, source: str) -> ConfigError:
    message = str(exc)
    match = _POSITION.search(message)
    if match is None:
        return ConfigError(f"not valid TOML: {message}", source=source)
    return ConfigError(
        f"not valid TOML: {message[: match.start()]}",
        source=source,
        line=int(match.group(1)),
        column=int(match.group(2)),
    )


def _read_text(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the file: {exc.strerror}", source=path) from None
    if len(data) > _MAX_CONFIG_BYTES:
        raise ConfigError(f"larger than {_MAX_CONFIG_BYTES} bytes", source=path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError("not UTF-8", source=path, line=line) from None


def load_config(path: str | os.PathLike[str]) -> AppConfig:
    """Read the configuration file at ``path``; raises :class:`ConfigError`."""
    name = os.fspath(path)
    return parse_config(_read_text(name), name)


def read_destinations(config: AppConfig, *, reread: bool = False) -> list[Destination]:
    """The destinations to load: the config file's ``[[dispatcher.destinations]]``
    or the list file's. With ``reread`` (``dispatcher.reload``) the config
    file is read again first, so that edits to it count; only its
    destinations are used, the rest waits for a restart. Raises
    :class:`ConfigError` naming the file and line at fault, or when the set
    new requests go to would be empty."""
    options = config.dispatcher
    if reread and config.source is not None:
        options = load_config(config.source).dispatcher
    destinations: list[Destination]
    source = config.source or "<config>"
    if options.list_file:
        source = options.list_file
        text = _read_text(options.list_file)
        try:
            destinations, _ = parse_list(text, options.list_file, config.dispatcher_config())
        except ListError as exc:
            reason = exc.reason.removeprefix(f"{exc.source}:{exc.line}: ")
            raise ConfigError(reason, source=options.list_file, line=exc.line or None) from None
    else:
        destinations = list(options.destinations)
    if not any(d.setid == config.dispatcher.setid for d in destinations):
        raise ConfigError(
            f"no destination is in set {config.dispatcher.setid} (dispatcher.setid)", source=source
        )
    return destinations


def error_at(config: AppConfig, key: str, message: str) -> ConfigError:
    """A :class:`ConfigError` for ``key`` of a configuration already read
    (a problem found when it is used: a store that cannot be opened, a name
    that does not resolve), with the key's line when the file says it."""
    source = config.source or "<config>"
    line = None
    if config.source is not None:
        try:
            line = _Locator(source, _read_text(config.source)).line_of(key)
        except ConfigError:
            line = None
    return ConfigError(message, source=source, key=key, line=line)
