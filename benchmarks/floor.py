"""How fast can pure Python read the proxy fields at all?

A reference point for ``run.py``'s parse + fields figure: ``floor()`` reads
the same fields out of the INVITE with nothing but string slicing. It builds
no objects, checks nothing, handles no folding, compact names, quoting or
duplicate headers, and would be wrong on many valid messages. No parser
can be faster than it on this interpreter, so the sippy/floor ratio it
prints is the ceiling for any pure-Python parser's speed-up over sippy.

Run: ``python benchmarks/floor.py`` (sippy installed, as in ``nox -s bench``).
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sipcore
from messages import INVITE

_NAMES = {
    name: name.lower()
    for name in (
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Content-Length",
        "Content-Type", "Record-Route", "Route", "Allow", "Supported", "User-Agent",
    )
}  # fmt: skip


def floor(data: bytes) -> tuple[object, ...]:
    end = data.find(b"\r\n\r\n")
    lines = data[:end].decode("utf-8", "surrogateescape").split("\r\n")
    keys = [_NAMES.get(line.partition(":")[0]) for line in lines]

    def value(key: str) -> str:
        line = lines[keys.index(key)]
        return line[line.find(":") + 1 :].strip()

    length = int(value("content-length"))
    body = data[end + 4 : end + 4 + length]
    via = value("via")
    from_ = value("from")
    to = value("to")
    number, method = value("cseq").split()
    contact = value("contact")
    return (
        via[via.find("branch=") + 7 :].partition(";")[0],
        from_[from_.find("tag=") + 4 :].partition(";")[0],
        to[to.find("tag=") + 4 :].partition(";")[0] if "tag=" in to else None,
        value("call-id"),
        int(number),
        method,
        contact[contact.find("@") + 1 :].partition(">")[0].partition(";")[0].partition(":")[0],
        int(value("max-forwards")),
        len(body),
    )


def with_sipcore(data: bytes) -> tuple[object, ...]:
    msg = sipcore.parse_message(data)
    contact = msg.contact[0].uri
    return (
        msg.via[0].branch,
        msg.from_.tag,
        msg.to.tag,
        msg.call_id,
        msg.cseq.number,
        msg.cseq.method,
        contact.host if isinstance(contact, sipcore.SipURI) else None,
        msg.max_forwards,
        len(msg.body),
    )


def best_us(func: Callable[[bytes], object], rounds: int = 9, number: int = 5000) -> float:
    timer = timeit.Timer(lambda: func(INVITE))
    return min(timer.repeat(rounds, number)) / number * 1e6


def main() -> int:
    if floor(INVITE) != with_sipcore(INVITE):
        print("floor() and sipcore disagree on the fields:", floor(INVITE), with_sipcore(INVITE))
        return 1
    floor_us = best_us(floor)
    sipcore_us = best_us(with_sipcore)
    print(f"INVITE parse + fields, µs: floor {floor_us:.2f}, sipcore {sipcore_us:.2f}", end="")
    try:
        from sippy.SipRequest import SipRequest
    except ImportError:
        print(" (sippy not installed)")
        return 0

    def with_sippy(data: bytes) -> object:
        msg = SipRequest(data.decode())
        return (
            msg.getHFBody("via").getBranch(),
            msg.getHFBody("from").getTag(),
            msg.getHFBody("to").getTag(),
            str(msg.getHFBody("call-id")),
            msg.getHFBody("cseq").getCSeq(),
            msg.getHFs("contact")[0].getBody().getUrl().host,
            msg.getHFs("max-forwards")[0].getBody().getNum(),
        )

    sippy_us = best_us(with_sippy)
    print(f", sippy {sippy_us:.2f}")
    print(f"sippy/floor {sippy_us / floor_us:.1f}x (the ceiling for any pure-Python parser)")
    print(f"sippy/sipcore {sippy_us / sipcore_us:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
