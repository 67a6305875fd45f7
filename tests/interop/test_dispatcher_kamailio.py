"""Reference check: Kamailio 5.6's dispatcher and sipcore_dispatch pick the same destinations.

One kamailio (``dispatcher``, ``sl``, ``textops``, ``pv``; the cfg is below)
on 127.0.0.1 loads :data:`DISPATCHER_LIST`; a :class:`~sipcore_dispatch.Dispatcher`
loads the same text. Each request is built as text, parsed by sipcore, and
that one :class:`~sipcore.Request` is both sent to Kamailio over UDP and
handed to ``Dispatcher.select``. The request names the selections to make
(the i-th ``X-Set`` and ``X-Alg`` header are one ``ds_select_dst(set,
alg)``); Kamailio answers it itself, one ``X-Du`` reply header per
selection, carrying ``$du`` or ``none`` when ``ds_select_dst`` failed.

Compared, selection by selection:

* algs 0-3 (Call-ID, From, To, R-URI hashes) on 240 generated requests of
  varied shapes, each asking four sets: plain destinations, mixed
  priorities, one destination marked inactive over RPC
  (``dispatcher.set_state``), and states from the list's flags (inactive,
  disabled, trying, no-DNS). Once with ``flags=0`` and once, on a second
  kamailio, with ``flags=1`` (hash the URI user only);
* alg 4 (round robin) as sequences of at least 200 on sets shaped the same
  way, one of them with destinations marked and unmarked between phases;
* alg 9 (weights): Kamailio shuffles its 100 slots with a seed nobody
  knows, so only the count per destination in each aligned block of 100 is
  compared, against sipcore and against the counts the weights give.

``ds_ping_interval`` is 0: nothing but the test changes a state, and after
each test ``dispatcher.list`` must show the same arrays and states as
sipcore holds.

A folded Call-ID (a line break inside the header value) is hashed as
received, fold included, by both.
"""

from __future__ import annotations

import collections
import contextlib
import random
import socket
import string
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from sipcore import Request, Response, parse_message
from sipcore_dispatch import (
    Dispatcher,
    DispatcherConfig,
    DispatcherManagement,
    DsFlags,
    rpc_flags,
)

from .kamailio import (
    LOOPBACK,
    MODULES_DIR,
    Kamailio,
    config_head,
    free_udp_port,
    missing_modules,
    start_kamailio,
)

pytestmark = pytest.mark.interop

MODULES = ("jsonrpcs", "ctl", "kex", "sl", "pv", "textops", "dispatcher")
RECEIVE_TIMEOUT = 2.0
# Datagrams skipped (answers to something else) while waiting for one reply.
MAX_SKIPPED = 20
# Selections one request may ask for (the cfg refuses more).
MAX_SELECTIONS = 16
HASH_REQUESTS = 240
SEED = 50603  # Kamailio 5.6.3

DISPATCHER_LIST = """\
# Hash algorithms 0-3: every generated request asks sets 1 to 4.
# 1: equal priorities, so the array is the file order reversed.
1 sip:127.0.0.1:5071
1 sip:127.0.0.1:5072
1 sip:127.0.0.1:5073;transport=udp
1 sip:gw4@127.0.0.1:5074
# 2: mixed priorities: highest first, equal ones in reverse file order.
2 sip:127.0.0.1:5081 0 0
2 sip:127.0.0.1:5082 0 10
2 sip:127.0.0.1:5083 0 5
2 sip:127.0.0.1:5084 0 10
2 sip:127.0.0.1:5085 0 1
# 3: mixed priorities; the test marks 5093 (array entry 0) inactive over RPC.
3 sip:127.0.0.1:5091 0 1
3 sip:127.0.0.1:5092 0 1
3 sip:127.0.0.1:5093 0 3
3 sip:127.0.0.1:5094 0 2
3 sip:127.0.0.1:5095 0 0
3 sip:127.0.0.1:5096 0 2
# 4: states from the flags: inactive (1, the last array entry, so the probe
#    wraps) and disabled (4) are skipped; trying (2) and no-DNS (16, a name
#    nobody resolves) are used.
4 sip:127.0.0.1:5101 1
4 sip:127.0.0.1:5102
4 sip:127.0.0.1:5103 4 5
4 sip:127.0.0.1:5104 2
4 sip:nodns.invalid:5105 16
4 sip:127.0.0.1:5106 0 5
# Round robin (alg 4): one set per sequence, shaped like sets 1 to 4.
11 sip:127.0.0.1:5111
11 sip:127.0.0.1:5112
11 sip:127.0.0.1:5113;transport=udp
11 sip:gw4@127.0.0.1:5114
12 sip:127.0.0.1:5121 0 0
12 sip:127.0.0.1:5122 0 10
12 sip:127.0.0.1:5123 0 5
12 sip:127.0.0.1:5124 0 10
12 sip:127.0.0.1:5125 0 1
13 sip:127.0.0.1:5131 0 1
13 sip:127.0.0.1:5132 0 1
13 sip:127.0.0.1:5133 0 3
13 sip:127.0.0.1:5134 0 2
13 sip:127.0.0.1:5135 0 0
13 sip:127.0.0.1:5136 0 2
14 sip:127.0.0.1:5141 1
14 sip:127.0.0.1:5142
14 sip:127.0.0.1:5143 4 5
14 sip:127.0.0.1:5144 2
14 sip:nodns.invalid:5145 16
14 sip:127.0.0.1:5146 0 5
# Weight based (alg 9).
# 21: array order 5214, 5213, 5212, 5211 takes 5+15+25+40 = 85 slots; the
#     15 left go to the last array entry, 5211 (the first line).
21 sip:127.0.0.1:5211 0 0 weight=40
21 sip:127.0.0.1:5212 0 0 weight=25
21 sip:127.0.0.1:5213 0 0 weight=15
21 sip:127.0.0.1:5214 0 0 weight=5
# 22: mixed priorities, weights over 100: 5222 (50), 5223 (30), then 5221
#     gets the 20 slots left of its 60.
22 sip:127.0.0.1:5221 0 0 weight=60
22 sip:127.0.0.1:5222 0 9 weight=50
22 sip:127.0.0.1:5223 0 0 weight=30
# 23: 10/20/30/40 slots in array order 5234, 5233, 5232, 5231; the test
#     marks destinations between blocks of 100.
23 sip:127.0.0.1:5231 0 0 weight=40
23 sip:127.0.0.1:5232 0 0 weight=30
23 sip:127.0.0.1:5233 0 0 weight=20
23 sip:127.0.0.1:5234 0 0 weight=10
# 24: array entry 0 (the last line) has no weight and 150 is out of range:
#     no table is built, alg 9 always takes array entry 0.
24 sip:127.0.0.1:5241 0 0 weight=50
24 sip:127.0.0.1:5242 0 0 weight=150
24 sip:127.0.0.1:5243 0 0 duid=w0
"""

CONFIG_TEMPLATE = (
    config_head(
        "sipcore_dispatch's reference: the reply names what ds_select_dst() chose",
        ("kex", "sl", "pv", "textops", "dispatcher"),
    )
    + """
modparam("dispatcher", "list_file", "{list_file}")
modparam("dispatcher", "flags", {flags})
# No probing: only dispatcher.set_state changes a destination's state.
modparam("dispatcher", "ds_ping_interval", 0)

request_route {{
    # The i-th X-Set and the i-th X-Alg header are one ds_select_dst().
    $var(n) = $hdrc(X-Alg);
    if ($var(n) != $hdrc(X-Set) || $var(n) > {max_selections}) {{
        sl_send_reply("400", "X-Set and X-Alg do not pair up");
        exit;
    }}
    $var(i) = 0;
    while ($var(i) < $var(n)) {{
        $var(set) = $(hdr(X-Set)[$var(i)]{{s.int}});
        $var(alg) = $(hdr(X-Alg)[$var(i)]{{s.int}});
        if (ds_select_dst("$var(set)", "$var(alg)")) {{
            append_to_reply("X-Du: $var(set) $var(alg) $du\\r\\n");
        }} else {{
            append_to_reply("X-Du: $var(set) $var(alg) none\\r\\n");
        }}
        $var(i) = $var(i) + 1;
    }}
    sl_send_reply("200", "OK");
}}
"""
)


# -- kamailio -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kamailio_for(
    kamailio_binary: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[DsFlags], Kamailio]]:
    """A kamailio per value of the ``flags`` modparam, started on first use."""
    missing = missing_modules(MODULES_DIR, MODULES)
    if missing:
        pytest.skip(
            f"kamailio modules missing from {MODULES_DIR}: {missing}: run scripts/install-peers.sh"
        )
    started: dict[DsFlags, Kamailio] = {}

    def get(flags: DsFlags) -> Kamailio:
        if flags not in started:
            rundir = tmp_path_factory.mktemp(f"kamailio-flags{int(flags)}")
            list_file = rundir / "dispatcher.list"
            list_file.write_text(DISPATCHER_LIST, encoding="utf-8")

            def render(port: int, rpc_socket: Path, ctl_socket: Path) -> str:
                return CONFIG_TEMPLATE.format(
                    host=LOOPBACK,
                    port=port,
                    modules=f"{MODULES_DIR}/",
                    rpc_socket=rpc_socket,
                    ctl_socket=ctl_socket,
                    list_file=list_file,
                    flags=int(flags),
                    max_selections=MAX_SELECTIONS,
                )

            started[flags] = start_kamailio(
                kamailio_binary,
                rundir,
                port=free_udp_port(set()),
                config=render,
                ready_method="dispatcher.list",
            )
        return started[flags]

    yield get
    for kamailio in started.values():
        kamailio.stop()


def load_ours(flags: DsFlags = DsFlags.NONE) -> Dispatcher:
    ours = Dispatcher(DispatcherConfig(flags=flags))
    skipped = ours.load_list(DISPATCHER_LIST)
    assert skipped == [], skipped
    return ours


def mark_both(kamailio: Kamailio, ours: Dispatcher, setid: int, uri: str, state: str) -> None:
    """``dispatcher.set_state`` on Kamailio, ``Dispatcher.set_state`` on ours;
    ``uri`` "all" is every destination of the set."""
    kamailio.rpc.call("dispatcher.set_state", state, setid, uri)
    targets = [d.uri for d in ours.destinations(setid)] if uri == "all" else [uri]
    for target in targets:
        ours.set_state(setid, target, state)


# One destination as dispatcher.list prints it: URI, FLAGS, PRIORITY, weight.
Row = tuple[str, str, int, int]


def kamailio_table(kamailio: Kamailio) -> dict[int, list[Row]]:
    """``dispatcher.list``: each set's destinations in array order."""
    result = kamailio.rpc.call("dispatcher.list")
    table: dict[int, list[Row]] = {}
    for record in result["RECORDS"]:
        dset = record["SET"]
        rows: list[Row] = []
        for target in dset["TARGETS"]:
            dest = target["DEST"]
            weight = int(dest.get("ATTRS", {}).get("WEIGHT", 0))
            rows.append((str(dest["URI"]), str(dest["FLAGS"]), int(dest["PRIORITY"]), weight))
        table[int(dset["ID"])] = rows
    return table


def our_table(ours: Dispatcher) -> dict[int, list[Row]]:
    return {
        setid: [
            (d.uri, rpc_flags(ours.state(setid, d.uri)), d.priority, d.attrs.weight)
            for d in ours.destinations(setid)
        ]
        for setid in ours.setids()
    }


def assert_same_tables(kamailio: Kamailio, ours: Dispatcher, setids: Sequence[int]) -> None:
    theirs, mine = kamailio_table(kamailio), our_table(ours)
    for setid in setids:
        assert theirs[setid] == mine[setid], (
            f"set {setid}: Kamailio {theirs[setid]}, ours {mine[setid]}"
        )


# -- the requests --------------------------------------------------------------------------

# RFC 3261 "word" (the Call-ID alphabet) without the double quote.
WORD = string.ascii_letters + string.digits + "-.!%*_+`'~()<>:\\/[]?{}"
USER_CHARS = string.ascii_letters + string.digits + "-_.!~*'()&=+$,"
HOSTS = (
    "example.com",
    "EXAMPLE.org",
    "a.b.example.net",
    "h",
    "proxy-7.example.co.uk",
    "192.0.2.10",
    "[2001:db8::10]",
)
PORTS = (None, None, None, "5060", "5061", "05060", "5070", "65535", "1")
URI_PARAMS = (
    "",
    "",
    "",
    ";transport=tcp",
    ";user=phone",
    ";User=phone",
    ";user=Phone",
    ";lr",
    ";maddr=192.0.2.1;ttl=5",
    ";x=1;user=phone;y",
)
# Text as sipcore decodes it: "\udce9" is the single byte 0xE9 (Latin-1 é,
# not UTF-8), which Kamailio hashes as it comes.
NON_ASCII = ("é", "ü", "\udce9", "\udcff")
DISPLAY_NAMES = (
    None,
    None,
    "Alice",
    "Alice Smith",
    '"Smith, J. <boss>"',
    '"A \\"B\\" C"',
    '""',
    '"Jürgen"',
)


def _text(rng: random.Random, alphabet: str, length: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(length))


def gen_call_id(rng: random.Random) -> str:
    length = rng.choice((1, 2, 3, 4, 5, 7, 8, 9, 16, 31, 32, 33, 64, 120))
    value = _text(rng, WORD, length)
    shape = rng.randrange(8)
    if shape == 0:
        value += "@" + rng.choice(HOSTS)
    elif shape == 1:
        cut = rng.randrange(len(value) + 1)
        value = value[:cut] + rng.choice(NON_ASCII) + value[cut:]
    elif shape == 2:
        value = f"{rng.randrange(10**9):x}-{rng.randrange(10**6)}@192.0.2.{rng.randrange(256)}"
    return value


def gen_user(rng: random.Random) -> str | None:
    shape = rng.randrange(10)
    if shape == 0:
        return None
    if shape == 1:
        number = "+49" + _text(rng, string.digits, rng.randrange(4, 12))
        return number + rng.choice(("", ";npdi", ";rn=+4930123;npdi", "-1"))
    if shape == 2:
        return _text(rng, USER_CHARS, rng.randrange(1, 8)) + ":" + _text(rng, USER_CHARS, 6)
    if shape == 3:
        return "%41" + _text(rng, string.ascii_lowercase, rng.randrange(1, 6)) + "%20x"
    if shape == 4:
        return "bob;x=" + _text(rng, string.digits, 3)
    if shape == 5:
        return _text(rng, string.ascii_lowercase, rng.randrange(1, 6)) + rng.choice(NON_ASCII)
    return _text(rng, USER_CHARS, rng.choice((1, 2, 3, 4, 5, 8, 13, 24, 47)))


def gen_uri(rng: random.Random, *, headers: bool) -> str:
    scheme = rng.choice(("sip", "sip", "sip", "sips", "SIP"))
    user = gen_user(rng)
    host = rng.choice(HOSTS)
    if rng.randrange(4) == 0:
        host = _text(rng, string.ascii_lowercase, rng.randrange(1, 20)) + ".example"
    port = rng.choice(PORTS)
    if port is None and rng.randrange(5) == 0:
        port = str(rng.randrange(1024, 65536))
    uri = f"{scheme}:"
    if user is not None:
        uri += f"{user}@"
    uri += host
    if port is not None:
        uri += f":{port}"
    uri += rng.choice(URI_PARAMS)
    if headers and rng.randrange(8) == 0:
        uri += "?subject=hello&priority=urgent"
    return uri


def gen_address(rng: random.Random, params: str) -> str:
    """A From or To value: name-addr, or addr-spec when the URI allows it
    (RFC 3261 20: a URI with ',', ';' or '?' needs the brackets)."""
    uri = gen_uri(rng, headers=True)
    display = rng.choice(DISPLAY_NAMES)
    if display is None and not any(c in uri for c in ",;?") and rng.randrange(2) == 0:
        return uri + params
    gap = rng.choice((" ", "", "  ")) if display is not None else ""
    before_params = rng.choice(("", "", " "))
    return f"{display or ''}{gap}<{uri}>{before_params}{params}"


class DispatchClient:
    """Sends requests to kamailio one at a time from one UDP socket and reads
    each reply (bounded in time and in datagrams skipped)."""

    def __init__(self, server: tuple[str, int], rng: random.Random) -> None:
        self.server = server
        self.rng = rng
        self.sent = 0
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((LOOPBACK, 0))
        self.port: int = self._sock.getsockname()[1]

    def close(self) -> None:
        self._sock.close()

    def request(
        self, selections: Sequence[tuple[int, int]], *, call_id: str | None = None
    ) -> Request:
        """A generated INVITE asking for ``selections`` ((set, alg) pairs);
        ``call_id`` is written as given instead of a generated one."""
        rng = self.rng
        self.sent += 1
        names = ("f", "t", "i") if rng.randrange(5) == 0 else ("From", "To", "Call-ID")
        pad = rng.choice((" ", " ", "", "   "))
        from_tag = f";tag={rng.randrange(16**8):08x}" + rng.choice(("", ";x-p=1"))
        lines = [
            f"INVITE {gen_uri(rng, headers=False)} SIP/2.0",
            f"Via: SIP/2.0/UDP {LOOPBACK}:{self.port};branch=z9hG4bK-ds-{self.sent};rport",
            "Max-Forwards: 70",
            f"{names[0]}:{pad}{gen_address(rng, from_tag)}",
            f"{names[1]}:{pad}{gen_address(rng, rng.choice(('', '', ';x-to=1')))}",
            f"{names[2]}:{pad}{call_id or gen_call_id(rng)}{rng.choice(('', '', '  '))}",
            f"CSeq: {self.sent} INVITE",
            f"Contact: <sip:caller@{LOOPBACK}:{self.port}>",
        ]
        lines += [f"X-Set: {setid}" for setid, _ in selections]
        lines += [f"X-Alg: {alg}" for _, alg in selections]
        lines.append("Content-Length: 0")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
        request = parse_message(data)
        assert isinstance(request, Request)
        assert bytes(request) == data, "sipcore must send the request as generated"
        return request

    def ask(self, request: Request, selections: Sequence[tuple[int, int]]) -> list[str | None]:
        """Kamailio's choice for each selection: ``$du``, or None."""
        self._sock.sendto(bytes(request), self.server)
        deadline = time.monotonic() + RECEIVE_TIMEOUT
        for _ in range(MAX_SKIPPED):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._sock.settimeout(remaining)
            try:
                data = self._sock.recv(65535)
            except TimeoutError:
                break
            reply = parse_message(data)
            if not isinstance(reply, Response) or reply.cseq.number != request.cseq.number:
                continue
            assert reply.status_code == 200, f"kamailio answered {reply.status_code} {reply.reason}"
            return parse_choices(reply, selections)
        raise AssertionError(
            f"no reply from kamailio within {RECEIVE_TIMEOUT}s to request {self.sent}"
        )


def parse_choices(reply: Response, selections: Sequence[tuple[int, int]]) -> list[str | None]:
    lines = reply.get_all("X-Du")
    assert len(lines) == len(selections), f"asked {selections}, got {lines}"
    choices: list[str | None] = []
    for line, (setid, alg) in zip(lines, selections, strict=True):
        got_set, got_alg, uri = line.split(" ", 2)
        assert (int(got_set), int(got_alg)) == (setid, alg), line
        choices.append(None if uri == "none" else uri)
    return choices


@contextlib.contextmanager
def client_for(kamailio: Kamailio, seed: int) -> Iterator[DispatchClient]:
    client = DispatchClient(kamailio.address, random.Random(seed))
    try:
        yield client
    finally:
        client.close()


def our_choice(ours: Dispatcher, setid: int, alg: int, request: Request) -> str | None:
    chosen = ours.select(setid, alg, request).current
    return None if chosen is None else chosen.uri


def describe(request: Request) -> str:
    return (
        f"Call-ID {request.call_id!r}, From {request.from_.uri_text!r}, "
        f"To {request.to.uri_text!r}, R-URI {str(request.uri)!r}"
    )


def usable_uris(ours: Dispatcher, setid: int) -> set[str]:
    return {d.uri for d in ours.destinations(setid) if not ours.state(setid, d.uri).skipped}


# -- algs 0-3 --------------------------------------------------------------------------

HASH_SETS = (1, 2, 3, 4)
HASH_ALGS = (0, 1, 2, 3)


@pytest.mark.parametrize(
    "flags", [DsFlags.NONE, DsFlags.HASH_USER_ONLY], ids=["flags0", "hash-user-only"]
)
def test_hash_algorithms_pick_the_destination_kamailio_picks(
    kamailio_for: Callable[[DsFlags], Kamailio], flags: DsFlags
) -> None:
    kamailio = kamailio_for(flags)
    ours = load_ours(flags)
    mark_both(kamailio, ours, 3, "sip:127.0.0.1:5093", "i")
    assert_same_tables(kamailio, ours, HASH_SETS)
    selections = [(setid, alg) for setid in HASH_SETS for alg in HASH_ALGS]
    picked: dict[tuple[int, int], collections.Counter[str | None]] = collections.defaultdict(
        collections.Counter
    )
    keys: dict[str, set[str]] = collections.defaultdict(set)
    mismatches: list[str] = []
    with client_for(kamailio, SEED + int(flags)) as client:
        for _ in range(HASH_REQUESTS):
            request = client.request(selections)
            keys["Call-ID"].add(request.call_id)
            keys["From"].add(request.from_.uri_text)
            keys["To"].add(request.to.uri_text)
            keys["R-URI"].add(str(request.uri))
            theirs = client.ask(request, selections)
            for (setid, alg), their in zip(selections, theirs, strict=True):
                mine = our_choice(ours, setid, alg, request)
                picked[(setid, alg)][their] += 1
                if mine != their:
                    mismatches.append(
                        f"set {setid} alg {alg}: Kamailio {their}, ours {mine}; {describe(request)}"
                    )
    assert not mismatches, f"{len(mismatches)} differences:\n" + "\n".join(mismatches[:10])
    # The keys were really varied, and the picks spread over every usable
    # destination and never reached a skipped one.
    assert all(len(values) >= 200 for values in keys.values()), {
        name: len(values) for name, values in keys.items()
    }
    for (setid, alg), counts in picked.items():
        assert sum(counts.values()) == HASH_REQUESTS
        assert set(counts) == usable_uris(ours, setid), (setid, alg, counts)
    assert_same_tables(kamailio, ours, HASH_SETS)


# -- alg 4 and alg 9: sequences ---------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """``selections`` made after ``marks`` ((uri or "all", state)) were applied
    to both; for alg 9, ``counts`` is each destination's share of every block
    of 100 in the phase."""

    selections: int
    marks: tuple[tuple[str, str], ...] = ()
    counts: Mapping[str, int] = field(default_factory=dict)


@dataclass
class PhaseRun:
    """What each side chose in one phase, and which destinations were usable."""

    usable: set[str]
    theirs: list[str | None] = field(default_factory=list)
    mine: list[str | None] = field(default_factory=list)


def run_phases(
    kamailio: Kamailio, ours: Dispatcher, setid: int, alg: int, phases: Sequence[Phase]
) -> list[PhaseRun]:
    """Each phase's selections, one request each, in order, from one socket."""
    runs: list[PhaseRun] = []
    with client_for(kamailio, SEED + setid) as client:
        for phase in phases:
            for uri, state in phase.marks:
                mark_both(kamailio, ours, setid, uri, state)
            run = PhaseRun(usable_uris(ours, setid))
            for _ in range(phase.selections):
                request = client.request([(setid, alg)])
                (their,) = client.ask(request, [(setid, alg)])
                run.theirs.append(their)
                run.mine.append(our_choice(ours, setid, alg, request))
            runs.append(run)
    return runs


def first_difference(theirs: Sequence[str | None], mine: Sequence[str | None]) -> str:
    for i, (their, my) in enumerate(zip(theirs, mine, strict=True)):
        if their != my:
            context = theirs[max(0, i - 5) : i + 5]
            return f"selection {i}: Kamailio {their}, ours {my}; Kamailio around it: {context}"
    return "none"


ROUND_ROBIN = {
    "plain": (11, (Phase(200),)),
    "priorities": (12, (Phase(210),)),
    "list-flags": (14, (Phase(204),)),
    "marked-over-rpc": (
        13,
        (
            Phase(50),
            Phase(60, marks=(("sip:127.0.0.1:5134", "i"),)),
            Phase(40, marks=(("sip:127.0.0.1:5133", "d"),)),
            # Every destination skipped: the selection fails, the counter moves.
            Phase(
                6,
                marks=tuple((f"sip:127.0.0.1:{port}", "i") for port in (5131, 5132, 5135, 5136)),
            ),
            Phase(50, marks=(("all", "a"),)),
            Phase(30, marks=(("sip:127.0.0.1:5135", "t"), ("sip:127.0.0.1:5132", "ip"))),
        ),
    ),
}


@pytest.mark.parametrize("case", list(ROUND_ROBIN))
def test_round_robin_follows_kamailio_sequence(
    kamailio_for: Callable[[DsFlags], Kamailio], case: str
) -> None:
    setid, phases = ROUND_ROBIN[case]
    kamailio = kamailio_for(DsFlags.NONE)
    ours = load_ours()
    assert_same_tables(kamailio, ours, [setid])
    runs = run_phases(kamailio, ours, setid, 4, phases)
    assert sum(len(run.theirs) for run in runs) >= 200
    for number, run in enumerate(runs):
        assert run.theirs == run.mine, f"phase {number}: {first_difference(run.theirs, run.mine)}"
        # Not vacuous: every usable destination had its turns, the skipped
        # ones none, and a set with none usable failed every selection.
        expected: set[str | None] = set(run.usable) if run.usable else {None}
        assert set(run.theirs) == expected, f"phase {number}: {collections.Counter(run.theirs)}"
    assert_same_tables(kamailio, ours, [setid])


WEIGHTS = {
    "sum-under-100": (
        21,
        (
            Phase(
                300,
                counts={
                    "sip:127.0.0.1:5211": 55,
                    "sip:127.0.0.1:5212": 25,
                    "sip:127.0.0.1:5213": 15,
                    "sip:127.0.0.1:5214": 5,
                },
            ),
        ),
    ),
    "sum-over-100-with-priorities": (
        22,
        (
            Phase(
                300,
                counts={
                    "sip:127.0.0.1:5222": 50,
                    "sip:127.0.0.1:5223": 30,
                    "sip:127.0.0.1:5221": 20,
                },
            ),
        ),
    ),
    "marked-between-blocks": (
        23,
        (
            Phase(
                300,
                counts={
                    "sip:127.0.0.1:5234": 10,
                    "sip:127.0.0.1:5233": 20,
                    "sip:127.0.0.1:5232": 30,
                    "sip:127.0.0.1:5231": 40,
                },
            ),
            # The last array entry's slots probe on, wrapping to entry 0.
            Phase(
                200,
                marks=(("sip:127.0.0.1:5231", "i"),),
                counts={
                    "sip:127.0.0.1:5234": 50,
                    "sip:127.0.0.1:5233": 20,
                    "sip:127.0.0.1:5232": 30,
                },
            ),
            Phase(
                100,
                marks=(("sip:127.0.0.1:5233", "d"),),
                counts={"sip:127.0.0.1:5234": 50, "sip:127.0.0.1:5232": 50},
            ),
            Phase(
                100,
                marks=(("all", "a"),),
                counts={
                    "sip:127.0.0.1:5234": 10,
                    "sip:127.0.0.1:5233": 20,
                    "sip:127.0.0.1:5232": 30,
                    "sip:127.0.0.1:5231": 40,
                },
            ),
        ),
    ),
    "first-entry-unweighted": (24, (Phase(300, counts={"sip:127.0.0.1:5243": 100}),)),
}


def block_counts(picks: Sequence[str | None]) -> list[dict[str | None, int]]:
    return [dict(collections.Counter(picks[i : i + 100])) for i in range(0, len(picks), 100)]


@pytest.mark.parametrize("case", list(WEIGHTS))
def test_weight_based_blocks_of_100_match_kamailio(
    kamailio_for: Callable[[DsFlags], Kamailio], case: str
) -> None:
    setid, phases = WEIGHTS[case]
    kamailio = kamailio_for(DsFlags.NONE)
    ours = load_ours()
    assert_same_tables(kamailio, ours, [setid])
    runs = run_phases(kamailio, ours, setid, 9, phases)
    assert sum(len(run.theirs) for run in runs) >= 300
    for number, (phase, run) in enumerate(zip(phases, runs, strict=True)):
        assert phase.selections % 100 == 0
        expected = [dict(phase.counts)] * (phase.selections // 100)
        assert block_counts(run.theirs) == expected, f"phase {number}: Kamailio"
        assert block_counts(run.mine) == expected, f"phase {number}: ours"
        # Each walks one fixed table of 100 slots: the sequence repeats.
        assert run.theirs[100:] == run.theirs[:-100], f"phase {number}: Kamailio"
        assert run.mine[100:] == run.mine[:-100], f"phase {number}: ours"
    assert_same_tables(kamailio, ours, [setid])


# Written as sent: a line break and indent inside the value (RFC 3261 7.3.1).
FOLDED_CALL_IDS = ("abc\r\n def", "abc\r\n\tdefgh", "f81d4fae-7dec-11d0\r\n  -a765@192.0.2.4")


def test_folded_call_id_hashes_as_kamailio_does(
    kamailio_for: Callable[[DsFlags], Kamailio],
) -> None:
    kamailio = kamailio_for(DsFlags.NONE)
    ours = load_ours()
    selections = [(1, 0), (2, 0)]  # sets no test marks
    differences: list[str] = []
    with client_for(kamailio, SEED) as client:
        for call_id in FOLDED_CALL_IDS:
            request = client.request(selections, call_id=call_id)
            theirs = client.ask(request, selections)
            for (setid, alg), their in zip(selections, theirs, strict=True):
                mine = our_choice(ours, setid, alg, request)
                if mine != their:
                    differences.append(f"{call_id!r} set {setid}: Kamailio {their}, ours {mine}")
    assert not differences, "\n".join(differences)


def test_both_load_the_list_into_the_same_arrays(
    kamailio_for: Callable[[DsFlags], Kamailio],
) -> None:
    """Array order (priority, then reverse file order), priorities, weights and
    the states from the list's flags, for every set (other tests' marks aside)."""
    theirs = kamailio_table(kamailio_for(DsFlags.NONE))
    mine = our_table(load_ours())
    assert sorted(theirs) == sorted(mine) == [1, 2, 3, 4, 11, 12, 13, 14, 21, 22, 23, 24]

    def unmarked(rows: list[Row]) -> list[tuple[str, int, int]]:
        return [(uri, priority, weight) for uri, _, priority, weight in rows]

    for setid in mine:
        assert unmarked(theirs[setid]) == unmarked(mine[setid]), setid
    for setid in (1, 2, 4, 11, 12, 14, 21, 22, 24):  # no test marks these
        assert theirs[setid] == mine[setid], setid
    assert [row[1] for row in mine[4]] == ["AX", "DX", "AX", "TX", "AX", "IX"]


def test_management_answers_as_kamailio_rpc_does(
    kamailio_for: Callable[[DsFlags], Kamailio],
) -> None:
    """``dispatcher.list`` (every field sipcore gives, for the sets no test
    marks) and ``dispatcher.hash`` answer as Kamailio's RPCs do."""
    kamailio = kamailio_for(DsFlags.NONE)
    theirs = kamailio.rpc.call("dispatcher.list")
    mine = DispatcherManagement(load_ours()).list()
    assert theirs["NRSETS"] == mine["NRSETS"]
    their_sets = {r["SET"]["ID"]: r["SET"]["TARGETS"] for r in theirs["RECORDS"]}
    my_sets = {r["SET"]["ID"]: r["SET"]["TARGETS"] for r in mine["RECORDS"]}
    compared = 0
    for setid in (1, 2, 4, 11, 12, 14, 21, 22, 24):
        for their, my in zip(their_sets[setid], my_sets[setid], strict=True):
            assert {k: their["DEST"].get(k) for k in my["DEST"]} == my["DEST"], setid
            compared += 1
    assert compared >= 20
    management = DispatcherManagement(Dispatcher())
    values = [("alice", "server.com"), ("bob", None), ("", "h"), ("x" * 37, "y.example.org:5070")]
    for nslots in (0, 1, 4, 7, 1000):
        for val1, val2 in values:
            params: list[str | int] = [nslots, val1] if val2 is None else [nslots, val1, val2]
            their_hash = kamailio.rpc.call("dispatcher.hash", *params)
            assert management.hash(nslots, val1, val2) == their_hash, (nslots, val1, val2)
