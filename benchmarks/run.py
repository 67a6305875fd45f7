"""Message-layer benchmark: sipcore against sippy (the B2BUA's SIP stack).

Usage::

    python benchmarks/run.py [--check] [--json PATH] [--quick] [--rounds N] [--round-time S]

For every sample message in ``messages.py`` it times:

* parse + fields: parse the wire bytes and read what a proxy reads (top Via
  branch, From tag, To tag, Call-ID, CSeq number and method, first Contact
  host, Max-Forwards on requests);
* serialize unmodified: render that parsed message (fields already read, as a
  proxy does before forwarding) back to wire bytes.

Both libraries start from and end with ``bytes``: sippy parses ``str``, so its
figures include ``bytes.decode()`` and ``str.encode()``, exactly as sippy's own
transport does (``SipTransactionManager.handleIncoming`` decodes,
``Network_server.send_to`` encodes).

Before timing, the very expression that is timed is evaluated once and its
result checked against the expected values, so a benchmark cannot silently
read nothing.  Each figure is the best of several rounds (the median is in the
JSON output); the two libraries' rounds alternate, so load on a shared machine
hits both alike; the garbage collector is off while timing (``timeit`` default).

The run is a report: the exit status is 0 even when a target is missed, unless
``--check`` is given.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import messages
from messages import Sample

REPO = Path(__file__).resolve().parent.parent

# Targets: sippy time / sipcore time, geometric mean over all sample messages.
TARGET_PARSE = 4.0
TARGET_SERIALIZE = 10.0

Fields = tuple[object, ...]


@dataclass
class Library:
    """How one SIP library is driven by the benchmark.

    ``parse`` turns wire bytes into a message object, ``read_fields`` returns
    the proxy fields in ``Sample.fields()`` order.  ``serialize_expr`` is the
    Python expression (over a parsed message named ``m``) that renders the
    message to wire bytes; it is timed as a ``timeit`` statement, so no extra
    function call is measured.
    """

    name: str
    version: str
    parse: Callable[[bytes], Any]
    read_fields: Callable[[Any], Fields]
    serialize_expr: str
    credentials: Callable[[Any], Fields]


# --------------------------------------------------------------------------
# sipcore


def load_sipcore() -> Library:
    """Import sipcore (from the checkout's src/ when it is not installed)."""
    try:
        import sipcore
    except ImportError:
        sys.path.insert(0, str(REPO / "src"))
        import sipcore

    if not hasattr(sipcore, "parse_message"):
        raise ImportError(f"{sipcore.__name__} has no parse_message (is the message layer there?)")

    parse_message = sipcore.parse_message
    sip_uri = sipcore.SipURI
    request = sipcore.Request

    def read_fields(m: sipcore.Request | sipcore.Response) -> Fields:
        contact = m.contact
        uri = contact[0].uri if contact else None
        return (
            m.via[0].branch,
            m.from_.tag,
            m.to.tag,
            m.call_id,
            m.cseq.number,
            m.cseq.method,
            uri.host if isinstance(uri, sip_uri) else None,
            m.max_forwards if isinstance(m, request) else None,
        )

    def credentials(m: sipcore.Request | sipcore.Response) -> Fields:
        c = m.authorization[0]
        p = c.params
        return (
            c.scheme,
            c.username,
            c.realm,
            c.nonce,
            c.uri,
            c.response,
            p.get("algorithm"),
            p.get("cnonce"),
            p.get("qop"),
            p.get("nc"),
        )

    return Library(
        name="sipcore",
        version=package_version("sipcore", getattr(sipcore, "__version__", None)),
        parse=parse_message,
        read_fields=read_fields,
        serialize_expr="bytes(m)",
        credentials=credentials,
    )


# --------------------------------------------------------------------------
# sippy


def load_sippy() -> Library:
    """Import sippy's message classes (they parse ``str``, not ``bytes``)."""
    from sippy.SipRequest import SipRequest
    from sippy.SipResponse import SipResponse

    def parse(data: bytes) -> Any:
        # Same dispatch as sippy's SipTransactionManager.handleIncoming.
        text = data.decode()
        if text.startswith("SIP/2.0 "):
            return SipResponse(text)
        return SipRequest(text)

    def read_fields(m: Any) -> Fields:
        # getHFBody() scans the header list and parses the header on first use.
        number, method = m.getHFBody("cseq").getCSeq()
        contact = m.getHFs("contact")
        max_forwards = m.getHFs("max-forwards") if isinstance(m, SipRequest) else None
        return (
            m.getHFBody("via").getBranch(),
            m.getHFBody("from").getTag(),
            m.getHFBody("to").getTag(),
            str(m.getHFBody("call-id")),
            number,
            method,
            contact[0].getBody().getUrl().host if contact else None,
            max_forwards[0].getBody().getNum() if max_forwards else None,
        )

    def credentials(m: Any) -> Fields:
        c = m.getHFBody("authorization")
        scheme = str(c.body).split(None, 1)[0]  # sippy keeps no scheme attribute
        return (
            scheme,
            c.username,
            c.realm,
            c.nonce,
            c.uri,
            c.response,
            c.algorithm,
            c.cnonce,
            c.qop,
            c.nc,
        )

    return Library(
        name="sippy",
        version=package_version("sippy", None),
        parse=parse,
        read_fields=read_fields,
        # What sippy puts on the wire: SipTransactionManager.transmitMsg uses
        # localStr(), Network_server.send_to encodes it as UTF-8.
        serialize_expr="m.localStr().encode()",
        credentials=credentials,
    )


def package_version(dist: str, fallback: object) -> str:
    """The installed version of ``dist`` (benchmarks/transactions.py uses it too)."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return str(fallback) if fallback is not None else "unknown"


# --------------------------------------------------------------------------
# Timing


@dataclass
class Timing:
    best_ns: float
    median_ns: float
    number: int
    rounds: int


@dataclass
class Settings:
    rounds: int
    round_time_s: float


def calibrate(timer: timeit.Timer, settings: Settings) -> int:
    """Loop count that makes one round last about ``round_time_s`` (also a warm-up)."""
    target_ns = settings.round_time_s * 1e9
    number = 1
    while True:
        elapsed = timer.timeit(number)
        if elapsed >= target_ns:
            return number
        if elapsed <= 0:
            number *= 10
        else:
            number = max(number * 2, min(number * 10, int(number * target_ns / elapsed * 1.1)))


def measure(jobs: dict[str, tuple[str, dict[str, Any]]], settings: Settings) -> dict[str, Timing]:
    """Time each job's ``(statement, namespace)`` and return its per-call figures.

    The jobs' rounds are interleaved (one round of each, then again), so a
    burst of load on a shared machine hits every library alike.
    """
    timers = {
        name: timeit.Timer(stmt, globals=ns, timer=time.perf_counter_ns)
        for name, (stmt, ns) in jobs.items()
    }
    numbers = {name: calibrate(timer, settings) for name, timer in timers.items()}
    samples: dict[str, list[float]] = {name: [] for name in timers}
    for _ in range(settings.rounds):
        for name, timer in timers.items():
            samples[name].append(timer.timeit(numbers[name]) / numbers[name])
    return {
        name: Timing(min(s), statistics.median(s), numbers[name], settings.rounds)
        for name, s in samples.items()
    }


# --------------------------------------------------------------------------
# Checks done once, before timing


class CheckError(Exception):
    pass


def expect(what: str, got: object, want: object) -> None:
    if got != want:
        raise CheckError(f"{what}: got {got!r}, expected {want!r}")


def prepare(lib: Library, sample: Sample) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Check ``lib`` on ``sample`` and return the timeit namespaces.

    Returns the namespaces for parse + fields, serialize (fields read) and
    serialize (fresh parse).  Raises CheckError or the library's own error.
    """
    parse_ns: dict[str, Any] = {
        "parse": lib.parse,
        "read": lib.read_fields,
        "data": sample.data,
    }
    expect("parse + fields", eval(PARSE_EXPR, parse_ns), sample.fields())

    if sample.authorization is not None:
        got = lib.credentials(lib.parse(sample.data))
        expect("Authorization", got, sample.authorization.values())

    # The serialized message is the one a proxy holds: parsed, fields read.
    m = lib.parse(sample.data)
    lib.read_fields(m)
    serialize_ns: dict[str, Any] = {"m": m}
    out = eval(lib.serialize_expr, serialize_ns)
    check_output(lib, sample, out)

    fresh = lib.parse(sample.data)
    fresh_ns: dict[str, Any] = {"m": fresh}
    check_output(lib, sample, eval(lib.serialize_expr, fresh_ns))
    return parse_ns, serialize_ns, fresh_ns


PARSE_EXPR = "read(parse(data))"


def check_output(lib: Library, sample: Sample, out: object) -> None:
    """The rendered message must be bytes, well framed, and parse back the same."""
    if not isinstance(out, bytes):
        raise CheckError(f"serialization returned {type(out).__name__}, not bytes")
    try:
        messages.check_framing(out)
    except ValueError as exc:
        raise CheckError(f"serialized message is badly framed: {exc}") from None
    expect("fields of the re-parsed output", lib.read_fields(lib.parse(out)), sample.fields())
    body = sample.data.partition(b"\r\n\r\n")[2]
    expect("body of the serialized output", out.partition(b"\r\n\r\n")[2], body)


# --------------------------------------------------------------------------
# Running and reporting


MEASURES = (
    ("parse_fields", "Parse + read proxy fields", TARGET_PARSE),
    ("serialize", "Serialize unmodified (parsed, fields read)", TARGET_SERIALIZE),
    ("serialize_fresh", "Serialize unmodified (fresh parse, nothing read; informational)", None),
)


@dataclass
class MessageResult:
    name: str
    size: int
    # measure -> library -> timing
    timings: dict[str, dict[str, Timing]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # library -> reason
    # library -> whether the unmodified serialization equals the input bytes
    identical: dict[str, bool] = field(default_factory=dict)


def run_sample(libs: Sequence[Library], sample: Sample, settings: Settings) -> MessageResult:
    result = MessageResult(sample.name, len(sample.data))
    jobs: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {key: {} for key, _, _ in MEASURES}
    for lib in libs:
        try:
            parse_ns, serialize_ns, fresh_ns = prepare(lib, sample)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            result.errors[lib.name] = reason
            print(f"!! {lib.name} failed on {sample.name}: {reason}", file=sys.stderr)
            print(f"!! continuing without {lib.name} figures for it", file=sys.stderr)
            continue
        result.identical[lib.name] = eval(lib.serialize_expr, serialize_ns) == sample.data
        jobs["parse_fields"][lib.name] = (PARSE_EXPR, parse_ns)
        jobs["serialize"][lib.name] = (lib.serialize_expr, serialize_ns)
        jobs["serialize_fresh"][lib.name] = (lib.serialize_expr, fresh_ns)
    result.timings = {key: measure(measure_jobs, settings) for key, measure_jobs in jobs.items()}
    return result


def ratio(timings: dict[str, Timing]) -> float | None:
    if "sipcore" in timings and "sippy" in timings:
        return timings["sippy"].best_ns / timings["sipcore"].best_ns
    return None


def geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


@dataclass
class Verdict:
    measure: str
    target: float | None
    geomean: float | None
    messages: int  # how many messages the geomean covers
    status: str  # PASS, FAIL, n/a (informational), or INCOMPLETE


def verdict(key: str, target: float | None, results: Sequence[MessageResult]) -> Verdict:
    ratios = [r for res in results if (r := ratio(res.timings[key])) is not None]
    gm = geomean(ratios) if ratios else None
    if target is None:
        status = "info"
    elif gm is None:
        status = "INCOMPLETE"
    elif any("sipcore" in res.errors for res in results):
        status = "INCOMPLETE"  # sipcore must handle every message
    else:
        status = "PASS" if gm >= target else "FAIL"
    return Verdict(key, target, gm, len(ratios), status)


def fmt_us(t: Timing | None) -> str:
    return f"{t.best_ns / 1000:10.2f}" if t is not None else f"{'n/a':>10}"


def print_table(
    title: str, key: str, results: Sequence[MessageResult], v: Verdict, rounds: int
) -> None:
    print()
    print(f"{title} -- µs per message, best of {rounds} rounds")
    columns = ("message", "bytes", "sipcore µs", "sippy µs", "sippy/sipcore")
    header = "{:<20} {:>5} {:>10} {:>10} {:>14}".format(*columns)
    print(header)
    print("-" * len(header))
    for res in results:
        t = res.timings[key]
        r = ratio(t)
        rs = f"{r:13.1f}x" if r is not None else f"{'n/a':>14}"
        print(
            f"{res.name:<20} {res.size:>5} {fmt_us(t.get('sipcore'))} {fmt_us(t.get('sippy'))} {rs}"
        )
    print("-" * len(header))
    gm = f"{v.geomean:13.1f}x" if v.geomean is not None else f"{'n/a':>14}"
    print(f"{'geometric mean':<20} {'':>5} {'':>10} {'':>10} {gm}", end="")
    if v.target is not None:
        print(f"   target >= {v.target:g}x: {v.status}", end="")
        if v.geomean is not None and v.messages < len(results):
            print(f" (over {v.messages} of {len(results)} messages)", end="")
    print()


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model"):
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "cpu": cpu_model(),
        "nproc": len(affinity(0)) if affinity is not None else os.cpu_count(),
        "cpu_count": os.cpu_count(),
        "speedups": speedups_in_use(),
    }


def speedups_in_use() -> str:
    """Which twin of sipcore's hot paths runs (see sipcore/_accel.py)."""
    try:
        from sipcore._accel import speedups
    except ImportError:  # an older sipcore: pure Python
        return "pure Python (no sipcore._accel)"
    if speedups is not None:
        return "compiled (sipcore._speedups)"
    if os.environ.get("SIPCORE_PURE_PYTHON"):
        return "pure Python (SIPCORE_PURE_PYTHON is set)"
    return "pure Python (sipcore._speedups is not built)"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Benchmark sipcore's message layer against sippy.")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is not met")
    p.add_argument("--json", metavar="PATH", type=Path, help="write the results as JSON")
    p.add_argument("--rounds", type=int, default=15, help="timed rounds per figure (default 15)")
    p.add_argument(
        "--round-time",
        type=float,
        default=0.03,
        metavar="S",
        help="approximate seconds per round (default 0.03)",
    )
    p.add_argument("--quick", action="store_true", help="3 short rounds (smoke test)")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.round_time = 3, 0.01
    if args.rounds < 1 or args.round_time <= 0:
        p.error("--rounds must be >= 1 and --round-time > 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings(args.rounds, args.round_time)
    started = time.perf_counter()

    for sample in messages.SAMPLES:
        messages.check_framing(sample.data)

    libs: list[Library] = []
    unavailable: dict[str, str] = {}
    for name, loader in (("sipcore", load_sipcore), ("sippy", load_sippy)):
        try:
            libs.append(loader())
        except Exception as exc:
            unavailable[name] = f"{type(exc).__name__}: {exc}"
            print(f"!! {name} is unavailable ({unavailable[name]});", file=sys.stderr)
            print("!! continuing with the other library's figures only", file=sys.stderr)

    info = machine_info()
    print("sipcore message-layer benchmark")
    print(f"platform : {info['platform']}")
    print(f"python   : {info['python']}")
    print(f"cpu      : {info['cpu']}")
    print(f"nproc    : {info['nproc']} (os.cpu_count {info['cpu_count']})")
    print(f"speedups : {info['speedups']}")
    for lib in libs:
        print(f"{lib.name:<9}: {lib.version}")
    for name, reason in unavailable.items():
        print(f"{name:<9}: unavailable ({reason})")
    rounds = f"{settings.rounds} rounds of ~{settings.round_time_s:g} s"
    print(f"timing   : {rounds} per figure, libraries interleaved, best kept, gc off")

    results = [run_sample(libs, sample, settings) for sample in messages.SAMPLES]
    verdicts = [verdict(key, target, results) for key, _, target in MEASURES]
    for (key, title, _), v in zip(MEASURES, verdicts, strict=True):
        print_table(title, key, results, v, settings.rounds)

    print()
    for lib in libs:
        same = [r.name for r in results if r.identical.get(lib.name)]
        differ = [r.name for r in results if r.identical.get(lib.name) is False]
        line = f"{lib.name}: unmodified output byte-identical to input for {len(same)} messages"
        print(line + (f"; differs for: {', '.join(differ)}" if differ else ""))
    for res in results:
        for name, reason in res.errors.items():
            print(f"{name} could not be measured on {res.name}: {reason}")
    elapsed = time.perf_counter() - started
    print(f"total run time: {elapsed:.1f} s")

    if args.json is not None:
        report = {
            "machine": info,
            "settings": asdict(settings),
            "libraries": {lib.name: lib.version for lib in libs},
            "unavailable": unavailable,
            "results": [asdict(r) for r in results],
            "verdicts": [asdict(v) for v in verdicts],
            "elapsed_s": elapsed,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {args.json}")

    if args.check:
        bad = [v for v in verdicts if v.status in ("FAIL", "INCOMPLETE")]
        for v in bad:
            print(f"--check: {v.measure} is {v.status}", file=sys.stderr)
        return 1 if bad else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
