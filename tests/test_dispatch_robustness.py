"""Bad input never crashes the dispatcher: only typed sipcore errors."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sipcore import ParseError, SipError
from sipcore_dispatch import (
    Dispatcher,
    DispatcherConfig,
    ListError,
    LoadMode,
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
