"""Bad input never crashes the dispatcher: only typed sipcore errors."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sipcore import LocalProtocolError, ParseError, SipError
from sipcore_dispatch import (
    Dispatcher,
    DispatcherConfig,
    DispatcherManagement,
    ListError,
    LoadMode,
    Prober,
    parse_attrs,
    uri_hash_keys,
)

FIELD = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
LINE = st.one_of(
    FIELD,
    st.builds(lambda a, b, c, d, e: f"{a} {b} {c} {d} {e}", FIELD, FIELD, FIELD, FIELD, FIELD),
    st.builds(lambda a, b: f"1 sip:{a} 0x{b}", FIELD, FIELD),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINE, max_size=8), st.sampled_from(list(LoadMode)))
def test_any_list_text_loads_or_raises_list_error(lines: list[str], mode: LoadMode) -> None:
    d = Dispatcher(DispatcherConfig(ds_load_mode=mode))
    d.load_list("1 sip:keep.example.com\n")
    text = "\n".join(lines)
    try:
        skipped = d.load_list(text, "fuzz.list")
    except ListError as exc:
        assert str(exc).startswith("fuzz.list:")
        assert mode is LoadMode.FATAL
        assert d.destinations(1)[0].uri == "sip:keep.example.com"  # old table kept
    else:
        assert all(s.startswith("fuzz.list:") for s in skipped)
        for setid in d.setids():
            # A set selects something exactly when it has a usable destination.
            assert bool(d.select(setid, 4)) == d.is_active(setid)


@settings(max_examples=300, deadline=None)
@given(FIELD)
def test_any_attrs_text_parses(text: str) -> None:
    attrs = parse_attrs(text)
    assert 0 <= attrs.weight <= 100 and 0 <= attrs.rweight <= 100 and attrs.maxload >= 0


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_any_uri_text_gives_keys_or_parse_error(text: str) -> None:
    try:
        key1, key2 = uri_hash_keys(text)
    except ParseError as exc:
        assert isinstance(exc, SipError)
    else:
        assert key1 is None or isinstance(key1, bytes)
        assert key2 is None or isinstance(key2, bytes)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["list", "set_state", "set_duid_state", "add", "remove", "hash", "oclist"]),
    st.lists(st.one_of(FIELD, st.integers(-(2**40), 2**40)), max_size=5),
)
def test_management_commands_with_any_arguments_answer_or_fault(
    command: str, args: list[str | int]
) -> None:
    # What an operator or a script could send: any text, any number, in any
    # position. The answer is a result or a ManagementError; the table is
    # left whole.
    d = Dispatcher()
    d.load_list("1 sip:10.0.0.1 8 0 duid=a\n1 sip:10.0.0.2\n")
    mgmt = DispatcherManagement(d)
    method = getattr(mgmt, command)
    try:
        if command in ("add", "remove"):
            method(*args, now=0.0)
        else:
            method(*args)
    except (SipError, TypeError):
        # TypeError: the wrong number of arguments, a Python call error
        # the RPC layer in front would turn into "Invalid Parameters".
        pass
    assert 1 in d.setids() or command == "remove"
    for setid in d.setids():
        assert bool(d.select(setid, 4)) == d.is_active(setid)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(-(2**31), 2**31),
    st.sampled_from(["", "code=404", "class=2;code=999", "code=;class=x", "\x00=\x00"]),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e9, max_value=1e9),
)
def test_probe_replies_with_any_code_keep_states_valid(code: int, codes: str, now: float) -> None:
    d = Dispatcher(DispatcherConfig(ds_ping_reply_codes=codes, ds_ping_latency_stats=True))
    d.load_list("1 sip:10.0.0.1 8 0 cc=1;weight=10\n1 sip:10.0.0.2 8 0 cc=1;weight=5\n")
    prober = Prober(d, now=0.0)
    for probe in prober.probe_round(0.0):
        try:
            prober.completed(probe, code, now)
        except LocalProtocolError:
            assert code < 200
    for _dest, status in d.entries():
        assert status.bits & ~0x3F == 0
        assert status.latency_count >= 0 and status.rweight >= 0
    assert len(d.relative_weight_table(1)) == 100
