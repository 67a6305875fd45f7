"""Kamailio's core_hash, checked against hand computation of its C code."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sipcore import core_hash

M = 0xFFFFFFFF


def finish(h: int) -> int:
    return (h + (h >> 11) + (h >> 13) + (h >> 23)) & M


def test_a_key_shorter_than_a_block_is_only_a_tail() -> None:
    v = (ord("a") << 16) + (ord("b") << 8) + ord("c")
    assert core_hash(b"abc") == finish(v ^ (v >> 3))


def test_a_full_block_then_an_empty_tail() -> None:
    v = (ord("a") << 24) + (ord("b") << 16) + (ord("c") << 8) + ord("d")
    assert core_hash(b"abcd") == finish((v ^ (v >> 3)) & M)  # the empty tail adds 0


def test_bytes_above_0x7f_are_signed_as_in_c() -> None:
    # 0xC3 is -61 as a C char: (-61 << 16) leaks into the top byte.
    v = ((ord("a") << 24) + (-61 << 16) + (ord("b") << 8) + ord("c")) & M
    assert core_hash(b"a\xc3bc") == finish((v ^ (v >> 3)) & M)


def test_two_keys_are_blocked_each_from_its_own_start() -> None:
    assert core_hash(b"ab", b"c") != core_hash(b"a", b"bc")
    assert core_hash(b"abcd", b"") == core_hash(b"abcd")


@given(st.binary(max_size=200), st.sampled_from([1, 2, 16, 4096]))
def test_size_masks_to_a_slot_of_the_table(key: bytes, size: int) -> None:
    h = core_hash(key, size=size)
    assert 0 <= h < size
    assert h == core_hash(key) & (size - 1)
    assert 0 <= core_hash(key) <= M


def reference(key1: bytes, key2: bytes | None = None) -> int:
    # The C loop read literally: 4 signed chars per word, then the tail.
    h = 0
    for key in (key1, key2):
        if key is None:
            continue
        signed = [b - 256 if b > 127 else b for b in key]
        end = len(key) - len(key) % 4
        for i in range(0, end, 4):
            a, b, c, d = signed[i : i + 4]
            v = ((a << 24) + (b << 16) + (c << 8) + d) & M
            h = (h + (v ^ (v >> 3))) & M
        v = 0
        for x in signed[end:]:
            v = ((v << 8) + x) & M
        h = (h + (v ^ (v >> 3))) & M
    return finish(h)


@given(st.binary(max_size=300), st.none() | st.binary(max_size=60))
def test_matches_the_c_loop_for_any_bytes(key1: bytes, key2: bytes | None) -> None:
    assert core_hash(key1, key2) == reference(key1, key2)


@given(st.text(st.characters(max_codepoint=127), max_size=300))
def test_the_ascii_fast_path_matches_the_c_loop(text: str) -> None:
    key = text.encode()
    assert core_hash(key) == reference(key)
    assert core_hash(key, key) == reference(key, key)
