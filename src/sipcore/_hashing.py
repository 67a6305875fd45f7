"""Kamailio's ``core_hash`` (src/core/hash_func.h), bit for bit.

This module owns the one hash function Kamailio uses to place a dialog in
its table (``h_entry = core_hash(Call-ID, size=hash_size)``) and, with a
zero result mapped to 1, to pick a dispatcher destination
(``ds_get_hash``). Matching it is what lets a database or a Record-Route
cookie written by Kamailio be used here, and the other way round.
"""

from __future__ import annotations

from typing import Final

from ._accel import speedups

__all__ = ["core_hash"]

_MASK: Final = 0xFFFFFFFF


def _signed(byte: int) -> int:
    # C's char is signed on x86-64: 0x80..0xFF count as negative.
    return byte - 256 if byte > 127 else byte


_WIDE: Final = (1 << 64) - 1


def _make_masks(words: int) -> tuple[int, int]:
    # For a key of ``words`` 32-bit words read as one big integer: the mask
    # that keeps the low 29 bits of every word (so ``x >> 3`` does not leak
    # bits across words) and the one that keeps every other word.
    ones32 = ((1 << (32 * words)) - 1) // 0xFFFFFFFF
    ones64 = ((1 << (64 * ((words + 1) // 2))) - 1) // _WIDE
    return ones32 * 0x1FFFFFFF, ones64 * 0xFFFFFFFF


# Masks of keys up to 1 KiB (every Call-ID and URI part in practice) are
# kept once made (at most ~130 KB); a longer key makes its own each time.
_MASKS: Final[dict[int, tuple[int, int]]] = {}
_MASKS_KEPT: Final = 256


_PAD: Final = (b"", b"\0\0\0", b"\0\0", b"\0")


def _mix(h: int, key: bytes) -> int:
    # The C loop read literally, for keys with bytes above 0x7f.
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
    # Each key's tail of 1-3 bytes is hashed as the low bytes of one more
    # word: zero bytes put in front of it make it a whole word of that value.
    tail = len(key1) & 3
    data = key1[:-tail] + _PAD[tail] + key1[-tail:] if tail else key1
    if key2 is not None:
        tail = len(key2) & 3
        data += key2[:-tail] + _PAD[tail] + key2[-tail:] if tail else key2
    if data.isascii():
        # No byte is negative as a C char, so the words are the big-endian
        # digits of one integer. ``v ^ (v >> 3)`` is done on all of them at
        # once; adding the odd words onto the even ones makes digits of base
        # 2**64 that cannot overflow, and a number's remainder modulo
        # 2**64 - 1 is the sum of those digits (exact below 2**31 words).
        h = 0
        if data:
            x = int.from_bytes(data, "big")
            words = len(data) >> 2
            masks = _MASKS.get(words)
            if masks is None:
                masks = _make_masks(words)
                if words <= _MASKS_KEPT:
                    _MASKS[words] = masks
            keep29, alternate = masks
            z = x ^ ((x >> 3) & keep29)
            h = ((z & alternate) + ((z >> 32) & alternate)) % _WIDE & _MASK
    else:
        h = _mix(0, key1)
        if key2 is not None:
            h = _mix(h, key2)
    h = (h + (h >> 11) + (h >> 13) + (h >> 23)) & _MASK
    return h & (size - 1) if size else h


# The compiled twin (see _accel), when built: the same hash, less time. The
# Python twin keeps this name too (tests compare the two).
core_hash_py = core_hash
if speedups is not None:
    core_hash = speedups.core_hash
