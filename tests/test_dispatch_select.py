"""Selection: Kamailio 5.6's algorithms, failover lists and the
rendezvous hash, checked against the rules of the hashing notes."""

from __future__ import annotations

import collections
import random
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipcore import LocalProtocolError, ParseError, Request, make_request, parse_message
from sipcore_dispatch import (
    DestinationState,
    Dispatcher,
    DispatcherConfig,
    DsFlags,
    GlibcRandom,
    Selection,
    ds_get_hash,
    relative_weight_slots,
    uri_hash_keys,
    weight_slots,
)
from sipcore_dispatch._keys import _uri_hash_keys

NOTES_LIST = """\
1 sip:127.0.0.1:5071 0 0
1 sip:127.0.0.1:5072 0 0
1 sip:127.0.0.1:5073 0 0
1 sip:127.0.0.1:5074 0 0
5 sip:127.0.0.1:5071 0 0
5 sip:127.0.0.1:5072 0 10
5 sip:127.0.0.1:5073 0 5
5 sip:127.0.0.1:5074 0 10
"""


# --- an independent transcription of the notes' §2 and §4 ---------------
def notes_hash(*keys: bytes | None) -> int:
    def sb(b: int) -> int:
        return b - 256 if b >= 0x80 else b

    m = 0xFFFFFFFF
    h = 0
    for key in keys:
        if key is None:
            continue
        full = len(key) // 4 * 4
        for i in range(0, full, 4):
            v = (
                (sb(key[i]) << 24) + (sb(key[i + 1]) << 16) + (sb(key[i + 2]) << 8) + sb(key[i + 3])
            ) & m
            h = (h + (v ^ (v >> 3))) & m
        v = 0
        for b in key[full:]:
            v = ((v << 8) + sb(b)) & m
        h = (h + (v ^ (v >> 3))) & m
    h = (h + (h >> 11) + (h >> 13) + (h >> 23)) & m
    return h or 1


def notes_pick(h: int, skipped: list[bool]) -> int | None:
    nr = len(skipped)
    idx = start = h % nr
    while skipped[idx]:
        idx = (idx + 1) % nr
        if idx == start:
            return None
    return idx


def request(
    *,
    call_id: str = "a84b4c76e66710@pc33.atlanta.com",
    from_: str = "Alice <sip:alice@atlanta.com>;tag=1928301774",
    to: str = "Bob <sip:bob@biloxi.com>",
    ruri: str = "sip:bob@biloxi.com",
    extra: str = "",
) -> Request:
    raw = (
        f"INVITE {ruri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n"
        "Max-Forwards: 70\r\n"
        f"To: {to}\r\n"
        f"From: {from_}\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 314159 INVITE\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(raw.encode())
    assert isinstance(msg, Request)
    return msg


def loaded(text: str = NOTES_LIST, **config: object) -> Dispatcher:
    d = Dispatcher(DispatcherConfig(**config), rng=random.Random(7))  # type: ignore[arg-type]
    d.load_list(text)
    return d


def chosen_port(sel: Selection) -> int | None:
    assert sel.current is not None
    return sel.current.port


# --- URI -> keys -----------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "keys"),
    [
        ("sip:alice:secret@h", (b"alice", b"h")),
        ("sip:a@h:5060", (b"a", b"h")),
        ("sip:a@h", (b"a", b"h")),
        ("sips:a@h:5061", (b"a", b"h")),
        ("sips:a@h:5060", (b"a", b"h:5060")),
        ("sip:a@h:5061", (b"a", b"h:5061")),
        ("sip:a@H.Example.COM:05062", (b"a", b"H.Example.COM:05062")),
        ("sip:+4930123;npdi@h;user=phone", (b"+4930123", b"h")),
        ("sip:+4930123;npdi@h", (b"+4930123;npdi", b"h")),
        ("sips:a@h:5061;user=phone", (b"a", b"h:5061")),
        ("sips:a@h:5060;USER=phone", (b"a", b"h")),
        ("sip:a@h;user=Phone", (b"a", b"h")),
        ("sip:bob;x=y@h", (b"bob;x=y", b"h")),
        ("sip:[2001:db8::10]:5060;transport=udp", (None, b"[2001:db8::10]")),
        ("sip:u@[2001:db8::10]:5070?subject=x", (b"u", b"[2001:db8::10]:5070")),
        ("sip:h;lr", (None, b"h")),
        ("sip:%61lice@h", (b"%61lice", b"h")),
        (" \tsip:a@h\r\n", (b"a", b"h")),
    ],
)
def test_uri_hash_keys_follow_parse_uri(uri: str, keys: tuple[bytes | None, bytes]) -> None:
    assert uri_hash_keys(uri) == keys


def test_a_uri_without_host_cannot_be_hashed() -> None:
    with pytest.raises(ParseError):
        uri_hash_keys("tel:+4930123")
    with pytest.raises(ParseError):
        loaded().select(1, 1, request(from_="<tel:+4930123>;tag=1"))


def test_user_only_flag_drops_the_host() -> None:
    assert uri_hash_keys("sip:a@h:5099", user_only=True) == (b"a", None)
    d = loaded(flags=DsFlags.HASH_USER_ONLY)
    r = request(from_="<sip:carol@one.example>;tag=1")
    r2 = request(from_="<sip:carol@two.example:5099>;tag=2")
    assert d.select(1, 1, r).uris == d.select(1, 1, r2).uris


def test_ds_get_hash_matches_the_notes_and_pins_known_values() -> None:
    assert ds_get_hash(b"abc") == notes_hash(b"abc") == 7167810
    for k1, k2 in [(b"ab", b"c"), (b"a", b"bc"), (b"\xc3\xa9t\xc3\xa9", b"h:5062"), (b"", None)]:
        assert ds_get_hash(k1, k2) == notes_hash(k1, k2)
    assert ds_get_hash(b"ab", b"c") != ds_get_hash(b"a", b"bc")
    # An empty key hashes to 0, which ds_get_hash maps to 1.
    assert ds_get_hash(b"") == 1


# --- hash algorithms 0-3 over generated requests --------------------------
def generated(n: int) -> list[tuple[Request, dict[int, tuple[bytes | None, ...]]]]:
    rng = random.Random(2024)
    out = []
    for i in range(n):
        user = rng.choice(["alice", "+4930123", "bob.smith", "üser", "x" * rng.randint(1, 9)])
        host = rng.choice(["atlanta.com", "10.0.0.7", "Biloxi.Example.COM", "[2001:db8::5]"])
        port = rng.choice([None, 5060, 5062, 5061])
        hostport = host if port is None else f"{host}:{port}"
        key2 = (hostport if port not in (None, 5060) else host).encode()
        password = ":pw" if i % 7 == 0 else ""
        call_id = f"  {rng.getrandbits(64):x}@{host}  "
        from_ = f'"Caller {i}" <sip:{user}{password}@{hostport};transport=udp>;tag={i}'
        to = f"sip:{user}@{hostport};tag=t{i}" if i % 3 else f"<sip:{user}@{hostport}>"
        ruri = f"sip:{user}@{hostport};user=ip"
        r = request(call_id=call_id.strip(), from_=from_, to=to, ruri=ruri)
        keys: dict[int, tuple[bytes | None, ...]] = {
            0: (call_id.strip().encode(),),
            1: (user.encode(), key2),
            2: (user.encode(), key2),
            3: (user.encode(), key2),
        }
        out.append((r, keys))
    return out


@pytest.mark.parametrize("alg", [0, 1, 2, 3])
@pytest.mark.parametrize("setid", [1, 5])
@pytest.mark.parametrize("inactive", [None, "sip:127.0.0.1:5073"])
def test_hash_algorithms_pick_what_kamailio_picks(
    alg: int, setid: int, inactive: str | None
) -> None:
    d = loaded()
    if inactive:
        d.mark(setid, inactive, "i")
    array = d.destinations(setid)
    skipped = [d.state(setid, x.uri).skipped for x in array]
    for r, keys in generated(200):
        expected = notes_pick(notes_hash(*keys[alg]), skipped)
        assert expected is not None
        assert d.select(setid, alg, r).current == array[expected]


def test_bytes_that_are_not_utf8_are_hashed_as_they_came() -> None:
    # sipcore keeps a byte that is not UTF-8 (0xE9 is Latin-1 "e acute") as
    # a surrogate escape; Kamailio hashes the bytes it received, and so must
    # selection, rather than fail to encode them.
    raw = (
        bytes(request())
        .replace(b"a84b4c76e66710@pc33.atlanta.com", b"caf\xe9")
        .replace(b"sip:alice@", b"sip:al\xe9@")
        .replace(b"INVITE sip:bob@", b"INVITE sip:b\xf6b@")
    )
    r = parse_message(raw)
    assert isinstance(r, Request)
    assert uri_hash_keys(r.from_.uri_text) == (b"al\xe9", b"atlanta.com")
    d = loaded()
    for alg, keys in (
        (0, (b"caf\xe9",)),
        (1, (b"al\xe9", b"atlanta.com")),
        (3, (b"b\xf6b", b"biloxi.com")),
    ):
        expected = notes_pick(notes_hash(*keys), [False] * 4)
        assert expected is not None
        assert d.select(1, alg, r).current == d.destinations(1)[expected]


def test_rewritten_request_uri_is_the_one_hashed() -> None:
    d = loaded()
    r = make_request(
        "INVITE",
        "sip:first@a.example",
        from_="sip:x@y",
        to="sip:z@w",
        via="SIP/2.0/UDP h;branch=z9hG4bK1",
        call_id="c1",
    )
    r.uri = "sip:second@b.example:5080"
    expected = notes_pick(notes_hash(b"second", b"b.example:5080"), [False] * 4)
    assert expected is not None
    assert d.select(1, 3, r).current == d.destinations(1)[expected]


def test_all_destinations_down_fails_the_selection() -> None:
    d = loaded()
    for x in d.destinations(1):
        d.mark(1, x.uri, "d")
    sel = d.select(1, 0, request())
    assert not sel and sel.current is None and len(sel) == 0
    assert not d.select(1, 4)


# --- round robin (alg 4) and auth username (alg 5) ------------------------
def test_round_robin_cycles_in_array_order() -> None:
    d = loaded()
    assert [chosen_port(d.select(1, 4)) for _ in range(6)] == [5074, 5073, 5072, 5071, 5074, 5073]


def test_round_robin_continues_after_the_destination_it_skipped_to() -> None:
    d = loaded()
    d.mark(1, "sip:127.0.0.1:5073", "i")
    assert [chosen_port(d.select(1, 4)) for _ in range(6)] == [5074, 5072, 5071, 5074, 5072, 5071]


def test_auth_username_hash_and_round_robin_without_credentials() -> None:
    d = loaded()
    auth = 'Proxy-Authorization: Digest username="alice", realm="atlanta.com", nonce="n"\r\n'
    r = request(extra=auth)
    expected = notes_pick(notes_hash(b"alice"), [False] * 4)
    assert expected is not None
    assert d.select(1, 5, r).current == d.destinations(1)[expected]
    # Only the user part of the username; Proxy-Authorization comes first.
    both = (
        'Authorization: Digest username="bob", realm="b", nonce="n"\r\n'
        'Proxy-Authorization: Digest username=" alice@atlanta.com", realm="a", nonce="n"\r\n'
    )
    assert d.select(1, 5, request(extra=both)).current == d.destinations(1)[expected]
    www = 'Authorization: Digest username="bob", realm="b", nonce="n"\r\n'
    expected_bob = notes_pick(notes_hash(b"bob"), [False] * 4)
    assert expected_bob is not None
    assert d.select(1, 5, request(extra=www)).current == d.destinations(1)[expected_bob]
    # No credentials: the set's round-robin counter, shared with alg 4.
    assert chosen_port(d.select(1, 5, request())) == 5074
    assert chosen_port(d.select(1, 4)) == 5073
    assert chosen_port(d.select(1, 5, request())) == 5072


# --- random (6) and custom key (7) -----------------------------------------
def test_random_uses_rand_mod_nr_from_the_injected_source() -> None:
    d = Dispatcher(rng=GlibcRandom(1))
    d.load_list(NOTES_LIST)
    replay = GlibcRandom(1)
    array = d.destinations(1)
    for _ in range(50):
        assert d.select(1, 6).current == array[replay.getrandbits(31) % 4]


def test_random_is_uniform_over_100000_selections() -> None:
    d = loaded()
    counts = collections.Counter(chosen_port(d.select(1, 6)) for _ in range(100_000))
    # 25,000 expected each; sd = sqrt(100000*.25*.75) ~ 137; 5 sd bound.
    assert all(abs(c - 25_000) < 700 for c in counts.values()) and len(counts) == 4


def test_custom_key_hash() -> None:
    d = loaded()
    for key in ["tenant-42", "ü", " \ttrimmed\r\n", "x" * 33]:
        expected = notes_pick(notes_hash(key.strip().encode()), [False] * 4)
        assert expected is not None
        assert d.select(1, 7, key=key).current == d.destinations(1)[expected]
    assert not d.select(1, 7, key=" \t")  # an empty key fails, as in Kamailio
    with pytest.raises(LocalProtocolError):
        d.select(1, 7)


# --- serial (8), parallel (12) and failover ---------------------------------
def test_serial_picks_highest_priority_then_walks_in_order() -> None:
    d = loaded()
    assert [x.port for x in d.select(5, 8)] == [5074, 5072, 5073, 5071]
    d.mark(5, "sip:127.0.0.1:5074", "i")
    sel = d.select(5, 8)
    assert [x.port for x in sel] == [5072, 5073, 5071]
    walked = []
    step: Selection | None = sel
    while step is not None:
        assert step.current is not None
        walked.append(step.current.port)
        step = step.next()
    assert walked == [5072, 5073, 5071]


def test_parallel_forks_to_the_chosen_and_every_later_entry() -> None:
    d = loaded()
    assert [x.port for x in d.select(1, 12)] == [5074, 5073, 5072, 5071]
    # The first usable entry is the choice; Kamailio's ds_add_branches then
    # adds every later entry without looking at its state.
    d.mark(1, "sip:127.0.0.1:5074", "i")
    d.mark(1, "sip:127.0.0.1:5072", "d")
    assert [x.port for x in d.select(1, 12)] == [5073, 5072, 5071]
    assert [x.port for x in d.select(1, 12, limit=2)] == [5073, 5072]


def test_failover_list_is_chosen_then_following_then_wrapped() -> None:
    d = loaded()
    d.mark(1, "sip:127.0.0.1:5071", "i")
    d.select(1, 4)
    d.select(1, 4)  # the next round-robin choice is index 2 (5072)
    sel = d.select(1, 4, limit=None)
    assert [x.port for x in sel] == [5072, 5074, 5073]
    assert [x.port for x in d.select(1, 8, limit=2)] == [5074, 5073]
    with pytest.raises(LocalProtocolError):
        d.select(1, 8, limit=0)


def test_use_default_reserves_the_last_entry_as_last_resort() -> None:
    d = loaded(use_default=True)
    # Round robin runs over the first nr-1 = 3 entries; the default is last.
    sel = d.select(1, 4)
    assert [x.port for x in sel] == [5074, 5073, 5072, 5071]
    for x in d.destinations(1)[:3]:
        d.mark(1, x.uri, "i")
    assert [x.port for x in d.select(1, 0, request())] == [5071]
    # The default is added last only when the limit leaves room for it.
    assert [x.port for x in loaded(use_default=True).select(1, 8, limit=2)] == [5074, 5073]
    assert [x.port for x in loaded(use_default=True).select(1, 8, limit=4)] == [
        5074,
        5073,
        5072,
        5071,
    ]
    # Hashing runs modulo nr-1.
    d2 = loaded(use_default=True)
    r = request(call_id="abc")
    assert chosen_port(d2.select(1, 0, r)) == d2.destinations(1)[notes_hash(b"abc") % 3].port


# --- weight (9) ---------------------------------------------------------------
WEIGHTS = """\
3 sip:10.0.0.1 0 0 weight=50
3 sip:10.0.0.2 0 0 weight=30
3 sip:10.0.0.3 0 0 weight=20
"""


def test_weight_slots_are_laid_out_as_kamailio_does() -> None:
    d = loaded(WEIGHTS)
    array = d.destinations(3)  # [10.0.0.3 (20), 10.0.0.2 (30), 10.0.0.1 (50)]
    assert weight_slots(array) == [0] * 20 + [1] * 30 + [2] * 50
    # Entry 0 without a weight: no table, always index 0.
    d2 = loaded("4 sip:a 0 0 weight=70\n4 sip:b 0 0\n")
    assert weight_slots(d2.destinations(4)) == [0] * 100
    assert {chosen_port(d2.select(4, 9)) for _ in range(100)} == {None}
    assert {d2.select(4, 9).uris[0] for _ in range(100)} == {"sip:b"}
    # Truncated at 100 in array order; a shortfall all goes to nr-1.
    d3 = loaded("6 sip:a 0 0 weight=10\n6 sip:b 0 0 weight=80\n6 sip:c 0 0 weight=60\n")
    assert weight_slots(d3.destinations(6)) == [0] * 60 + [1] * 40
    d4 = loaded("7 sip:a 0 0 weight=10\n7 sip:b 0 0 weight=20\n7 sip:c 0 0 weight=30\n")
    assert weight_slots(d4.destinations(7)) == [0] * 30 + [1] * 20 + [2] * 50


def test_weight_table_shuffle_replays_glibc() -> None:
    d = Dispatcher(rng=GlibcRandom(12345))
    d.load_list(WEIGHTS)
    table = [0] * 20 + [1] * 30 + [2] * 50
    rand = GlibcRandom(12345)
    for j in range(100):
        k = j + rand.getrandbits(31) % (100 - j)
        table[j], table[k] = table[k], table[j]
    assert list(d.weight_table(3)) == table
    array = d.destinations(3)
    assert [d.select(3, 9).current for _ in range(100)] == [array[i] for i in table]


def test_every_block_of_100_weight_selections_has_the_slot_counts() -> None:
    d = loaded(WEIGHTS)
    picks = [d.select(3, 9).uris[0] for _ in range(100_000)]
    for block in range(0, 100_000, 100):
        counts = collections.Counter(picks[block : block + 100])
        assert counts == {"sip:10.0.0.1": 50, "sip:10.0.0.2": 30, "sip:10.0.0.3": 20}


def test_inactive_weighted_destination_falls_through_to_the_next_index() -> None:
    d = loaded(WEIGHTS)
    d.mark(3, "sip:10.0.0.2", "i")  # index 1: its 30 slots probe on to index 2
    counts = collections.Counter(d.select(3, 9).uris[0] for _ in range(100))
    assert counts == {"sip:10.0.0.1": 80, "sip:10.0.0.3": 20}


# --- relative weight (11) ------------------------------------------------------
RWEIGHTS = """\
9 sip:127.0.0.1:5071 0 0 rweight=50
9 sip:127.0.0.1:5072 1 0 rweight=25
9 sip:127.0.0.1:5073 0 0 rweight=25
"""


def test_relative_weight_example_of_the_notes() -> None:
    d = loaded(RWEIGHTS)
    assert [x.port for x in d.destinations(9)] == [5073, 5072, 5071]
    assert sorted(d.relative_weight_table(9)) == [0] * 33 + [2] * 67
    counts = collections.Counter(chosen_port(d.select(9, 11)) for _ in range(100))
    assert counts == {5073: 33, 5071: 67}


def test_relative_weight_table_is_rebuilt_when_usability_changes() -> None:
    d = loaded(RWEIGHTS)
    d.mark(9, "sip:127.0.0.1:5072", "a")  # S = 100: 25 / 25 / 50
    assert collections.Counter(d.relative_weight_table(9)) == {0: 25, 1: 25, 2: 50}
    d.mark(9, "sip:127.0.0.1:5073", "d")  # S = 75: 33 / 66 + 1 left over
    assert collections.Counter(d.relative_weight_table(9)) == {1: 33, 2: 67}
    array = d.destinations(9)
    states = [DestinationState.ACTIVE] * 3
    assert relative_weight_slots(array[:1], states[:1]) is None


# --- call load (10) ---------------------------------------------------------------
LOADS = """\
2 sip:10.0.0.1 0 0 duid=a;maxload=2
2 sip:10.0.0.2 0 0 duid=b;maxload=1
"""


def test_call_load_picks_least_loaded_and_respects_maxload() -> None:
    d = loaded(LOADS)
    picks = [list(d.select(2, 10, request(call_id=f"c{i}"), now=0.0).uris[:1]) for i in range(4)]
    assert picks == [["sip:10.0.0.2"], ["sip:10.0.0.1"], ["sip:10.0.0.1"], []]
    assert d.status(2, "sip:10.0.0.1").load == 2 and d.status(2, "sip:10.0.0.2").load == 1
    assert d.load_unset("c0") and not d.load_unset("c0")
    assert d.select(2, 10, request(call_id="c9"), now=1.0).uris[0] == "sip:10.0.0.2"
    with pytest.raises(LocalProtocolError):
        d.select(2, 10, request())


def test_next_destination_moves_the_call_load() -> None:
    # Array order: 10.0.0.2 (duid b), 10.0.0.3 (no duid), 10.0.0.1 (duid a).
    d = loaded("2 sip:10.0.0.1 0 0 duid=a\n2 sip:10.0.0.3\n2 sip:10.0.0.2 0 0 duid=b\n")
    sel = d.select(2, 10, request(call_id="m"), now=0.0)
    assert sel.uris == ("sip:10.0.0.2", "sip:10.0.0.3", "sip:10.0.0.1")
    assert d.status(2, "sip:10.0.0.2").load == 1
    step = d.next(sel, "m")  # 10.0.0.3 has no duid: passed over
    assert step is not None and step.current is not None
    assert step.current.uri == "sip:10.0.0.1"
    assert d.status(2, "sip:10.0.0.2").load == 0 and d.status(2, "sip:10.0.0.1").load == 1
    assert d.next(step, "m") is None
    # Without the Call-ID, next() is the plain walk.
    assert d.next(sel) == sel.next()


def test_call_load_expires_unconfirmed_and_confirmed_calls() -> None:
    d = loaded(LOADS, ds_hash_initexpire=10, ds_hash_expire=100)
    d.select(2, 10, request(call_id="x"), now=0.0)
    d.select(2, 10, request(call_id="y"), now=0.0)
    assert d.load_update("x", now=5.0) and not d.load_update("nope", now=5.0)
    assert d.next_deadline() == 10.0
    assert d.expire_load(10.0) == 1  # y never confirmed
    assert d.next_deadline() == 105.0
    d.tick(105.0)
    assert d.next_deadline() is None
    assert d.status(2, "sip:10.0.0.1").load == 0 and d.status(2, "sip:10.0.0.2").load == 0


def test_call_load_without_duid_dispatches_without_counting() -> None:
    d = loaded("2 sip:10.0.0.1\n")
    assert d.select(2, 10, request(), now=0.0).uris == ("sip:10.0.0.1",)
    assert d.status(2, "sip:10.0.0.1").load == 0 and d.next_deadline() is None


def test_call_load_counts_only_invites_and_skips_full_ones_in_failover() -> None:
    d = loaded(LOADS + "2 sip:10.0.0.3 0 0 duid=c\n")
    bye = make_request(
        "BYE", "sip:x@y", from_="sip:a@b", to="sip:c@d", via="SIP/2.0/UDP h;branch=z9hG4bK2"
    )
    assert d.select(2, 10, bye, now=0.0).current == d.destinations(2)[0]  # first entry
    assert all(d.status(2, x.uri).load == 0 for x in d.destinations(2))
    d.select(2, 10, request(call_id="one"), now=0.0)  # 10.0.0.3 (index 0)
    d.select(2, 10, request(call_id="two"), now=0.0)  # 10.0.0.2, now at its maxload
    sel = d.select(2, 10, request(call_id="three"), now=0.0)
    assert sel.uris == ("sip:10.0.0.1", "sip:10.0.0.3")  # 10.0.0.2 is full


# --- latency (13) -------------------------------------------------------------
def test_latency_round_robins_the_fast_and_keeps_the_slow_for_failover() -> None:
    # Kamailio's alg 13: priority 30 lowered by latency // 30; c's 90 ms
    # makes it 27, so a and b take turns and c is only the failover.
    d = loaded("8 sip:a 0 30\n8 sip:b 0 30\n8 sip:c 0 30 latency=90\n8 sip:d 1 30\n")
    assert [x.uri for x in d.destinations(8)] == ["sip:d", "sip:c", "sip:b", "sip:a"]
    assert d.select(8, 13).uris == ("sip:b", "sip:a", "sip:c")
    assert d.select(8, 13).uris == ("sip:a", "sip:b", "sip:c")
    assert d.select(8, 13).uris == ("sip:b", "sip:a", "sip:c")
    assert d.select(8, 13, limit=1).uris == ("sip:a",)
    # Once probing measures c at 10 ms it joins the rotation.
    d.status(8, "sip:c").latency_estimate = 10.0
    d.status(8, "sip:c").latency_count = 20
    assert d.select(8, 13).uris == ("sip:c", "sip:b", "sip:a")
    for x in d.destinations(8):
        d.mark(8, x.uri, "i")
    assert not d.select(8, 13)


def test_latency_without_priorities_is_round_robin() -> None:
    d = loaded()
    assert [chosen_port(d.select(1, 13)) for _ in range(5)] == [5074, 5073, 5072, 5071, 5074]


def test_unknown_algorithm_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        loaded().select(1, 99)
    with pytest.raises(LocalProtocolError):
        loaded().select(1, 0)  # needs the request


# --- rendezvous versus alg 0 --------------------------------------------------------
TEN = "".join(f"1 sip:10.0.0.{i}\n" for i in range(10))


def movement(d: Dispatcher, pick: object, down: str, n: int = 20_000) -> tuple[int, int, int]:
    """(calls that moved, moved calls that were not on `down`, max moved to one)."""
    assert callable(pick)
    keys = [f"call-{i}@example.com" for i in range(n)]
    before = [pick(k) for k in keys]
    d.mark(1, down, "i")
    after = [pick(k) for k in keys]
    moved = [(b, a) for b, a in zip(before, after, strict=True) if a != b]
    wrongly = sum(1 for b, _ in moved if b != down)
    per_target = collections.Counter(a for _, a in moved)
    return len(moved), wrongly, max(per_target.values())


def test_rendezvous_moves_only_the_dead_destinations_calls_and_spreads_them() -> None:
    d = loaded(TEN)
    down = "sip:10.0.0.4"
    moved, wrongly, worst = movement(d, lambda k: d.rendezvous(1, k).uris[0], down)
    assert wrongly == 0
    assert 1_600 < moved < 2_400  # about a tenth of 20,000
    assert worst < moved / 9 * 1.5  # spread over the other nine
    # Kamailio's alg 0 (alg 7 hashes a key exactly as alg 0 hashes a Call-ID):
    # the same calls move, but all of them onto one neighbour.
    d0 = loaded(TEN)
    moved0, wrongly0, worst0 = movement(d0, lambda k: d0.select(1, 7, key=k).uris[0], down)
    assert wrongly0 == 0 and worst0 == moved0


def test_rendezvous_honours_weights_and_gives_a_full_failover_order() -> None:
    d = loaded("1 sip:a 0 0 weight=10\n1 sip:b 0 0 weight=30\n1 sip:c 0 0 weight=60\n")
    counts = collections.Counter(d.rendezvous(1, f"k{i}").uris[0] for i in range(100_000))
    for uri, share in [("sip:a", 0.1), ("sip:b", 0.3), ("sip:c", 0.6)]:
        # sd <= sqrt(100000*.25) = 158; allow ~5 sd.
        assert abs(counts[uri] - share * 100_000) < 800, counts
    sel = d.rendezvous(1, "same", limit=2)
    assert len(sel) == 2 and sel.uris == d.rendezvous(1, "same").uris[:2]


def _keys_or_error(fn: Callable[..., object], text: str, user_only: bool) -> object:
    try:
        return fn(text, user_only=user_only)
    except ParseError as exc:
        return ("ParseError", str(exc))


@given(
    st.text(st.sampled_from("sip:@;?[]5060.abc:/ \t=%x9\udce9é"), max_size=30).map(
        lambda t: "sip:" + t
    )
    | st.text(st.sampled_from("sips:@;?[]5060.ab:\r\n"), max_size=30),
    st.booleans(),
)
def test_uri_key_fast_path_agrees_with_the_general_split(text: str, user_only: bool) -> None:
    # The fast path for sip:user@host[:port] must be invisible: same keys,
    # same errors, for any text at all.
    assert _keys_or_error(uri_hash_keys, text, user_only) == _keys_or_error(
        _uri_hash_keys, text, user_only
    )


def test_a_folded_call_id_is_hashed_as_received() -> None:
    raw = (
        b"INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"Call-ID: abc\r\n def\r\nCSeq: 1 INVITE\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    request = parse_message(raw)
    assert isinstance(request, Request)
    d = Dispatcher()
    d.load_list("".join(f"1 sip:10.0.0.{i}\n" for i in range(1, 8)))
    n = len(d.destinations(1))
    expected = d.destinations(1)[ds_get_hash(b"abc\r\n def") % n]
    assert d.select(1, 0, request).current == expected
    assert ds_get_hash(b"abc\r\n def") % n != ds_get_hash(b"abc def") % n  # it matters here


PRIORITY_LIST = (
    "4 sip:p10a 0 10\n4 sip:p10b 0 10\n4 sip:p10c 0 10\n"
    "4 sip:p5a 0 5 weight=30\n4 sip:p5b 0 5 weight=10\n4 sip:p0 0 0\n"
)


def test_alg_14_round_robins_within_the_top_priority_then_goes_serial() -> None:
    d = Dispatcher()
    d.load_list(PRIORITY_LIST)
    firsts = [d.select(4, 14).uris[0] for _ in range(6)]
    top = sorted(set(firsts))
    assert top == ["sip:p10a", "sip:p10b", "sip:p10c"]
    assert firsts[:3] == firsts[3:]  # a strict rotation
    full = d.select(4, 14).uris
    assert set(full[:3]) == set(top) and full[3:] == ("sip:p5b", "sip:p5a", "sip:p0")
    assert d.select(4, 14, limit=2).uris == full[1:3]  # the next turn, capped
    # The top level gone, the next level takes over.
    for uri in top:
        d.mark(4, uri, "i")
    assert {d.select(4, 14).uris[0] for _ in range(4)} == {"sip:p5a", "sip:p5b"}


def test_alg_15_prefers_the_lowest_priority_value_and_splits_by_weight() -> None:
    d = Dispatcher(rng=random.Random(3))
    d.load_list(PRIORITY_LIST)
    assert {d.select(4, 15).uris[0] for _ in range(50)} == {"sip:p0"}
    d.mark(4, "sip:p0", "i")
    counts = collections.Counter(d.select(4, 15).uris[0] for _ in range(20_000))
    assert set(counts) == {"sip:p5a", "sip:p5b"}
    # weight 30 against 10: 75% of first picks, within statistical bounds
    # (about 0.3% standard deviation at 20,000 draws).
    assert abs(counts["sip:p5a"] / 20_000 - 0.75) < 0.015
    full = d.select(4, 15).uris
    assert set(full[:2]) == {"sip:p5a", "sip:p5b"}
    assert set(full[2:]) == {"sip:p10a", "sip:p10b", "sip:p10c"} and len(full) == 5
    # Without weights a level is split evenly.
    d.mark(4, "sip:p5a", "i")
    d.mark(4, "sip:p5b", "i")
    even = collections.Counter(d.select(4, 15).uris[0] for _ in range(30_000))
    for uri in ("sip:p10a", "sip:p10b", "sip:p10c"):
        assert abs(even[uri] / 30_000 - 1 / 3) < 0.015
