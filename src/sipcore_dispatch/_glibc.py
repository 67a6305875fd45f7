"""glibc's ``rand()`` (TYPE_3, degree 31) as a :class:`random.Random`.

Kamailio shuffles its weight tables with ``rand()``. The dispatcher draws
every random number through ``getrandbits(31)``, so any ``random.Random``
works; this one replays glibc's stream for a given ``srand`` seed, which is
what it takes to reproduce a Kamailio shuffle when the seed is known.
"""

from __future__ import annotations

import random
from typing import Any

__all__ = ["GlibcRandom"]

_M31 = 2147483647


class GlibcRandom(random.Random):
    """``GlibcRandom(seed).getrandbits(31)`` is glibc's ``rand()`` after
    ``srand(seed)``.

    >>> GlibcRandom(1).getrandbits(31)
    1804289383
    """

    _r: list[int]

    def seed(self, a: Any = None, version: int = 2) -> None:
        seed = int(a or 0) & 0xFFFFFFFF
        if seed >= 2**31:
            seed -= 2**32  # srand takes an unsigned int, stored as int32
        r = [seed or 1]
        for i in range(1, 31):
            prev = r[i - 1]
            hi = int(prev / 127773)  # C division truncates towards zero
            lo = prev - hi * 127773
            word = 16807 * lo - 2836 * hi
            if word < 0:
                word += _M31
            r.append(word)
        for i in range(31, 34):
            r.append(r[i - 31])
        for i in range(34, 344):
            r.append((r[i - 31] + r[i - 3]) & 0xFFFFFFFF)
        self._r = r[-34:]

    def _next(self) -> int:
        r = self._r
        value = (r[-31] + r[-3]) & 0xFFFFFFFF
        r.append(value)
        del r[0]
        return value >> 1

    def getrandbits(self, k: int) -> int:
        if k <= 31:
            return self._next() >> (31 - k)
        out = 0
        bits = 0
        while bits < k:
            out = (out << 31) | self._next()
            bits += 31
        return out >> (bits - k)

    def random(self) -> float:
        return self.getrandbits(53) / 9007199254740992.0

    def getstate(self) -> Any:
        return tuple(self._r)

    def setstate(self, state: Any) -> None:
        self._r = list(state)
