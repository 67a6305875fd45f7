"""Kamailio's ``core_hash`` (src/core/hash_func.h), bit for bit.

This module owns the one hash function Kamailio uses to place a dialog in
its table (``h_entry = core_hash(Call-ID, size=hash_size)``) and, with a
zero result mapped to 1, to pick a dispatcher destination
(``ds_get_hash``). Matching it is what lets a database or a Record-Route
cookie written by Kamailio be used here, and the other way round.
"""

from __future__ import annotations

from typing import Final

__all__ = ["core_hash"]

_MASK: Final = 0xFFFFFFFF


def _signed(byte: int) -> int:
    # C's char is signed on x86-64: 0x80..0xFF count as negative.
    return byte - 256 if byte > 127 else byte


def _mix(h: int, key: bytes) -> int:
    n = len(key)
    end = n - n % 4
    for i in range(0, end, 4):
        v = (
            (_signed(key[i]) << 24)
            + (_signed(key[i + 1]) << 16)
            + (_signed(key[i + 2]) << 8)
            + _signed(key[i + 3])
        ) & _MASK
        h = (h + (v ^ (v >> 3))) & _MASK
    v = 0
    for i in range(end, n):
        v = ((v << 8) + _signed(key[i])) & _MASK
    return (h + (v ^ (v >> 3))) & _MASK


def core_hash(key1: bytes, key2: bytes | None = None, size: int = 0) -> int:
    """Kamailio's ``core_hash(s1, s2, size)``: unsigned 32-bit, masked with
    ``size - 1`` when ``size`` (a power of two) is given.

    >>> core_hash(b"abc")
    7167810
    >>> core_hash(b"a84b4c76e66710@pc33.atlanta.com", size=4096) < 4096
    True
    """
    h = _mix(0, key1)
    if key2 is not None:
        h = _mix(h, key2)
    h = (h + (h >> 11) + (h >> 13) + (h >> 23)) & _MASK
    return h & (size - 1) if size else h
