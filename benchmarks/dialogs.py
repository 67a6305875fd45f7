"""Dialog-tracker benchmark (issue 4).

Usage::

    python benchmarks/dialogs.py [--dialogs N] [--quick] [--json PATH] [--check]

Measures, on sipcore_dialog's public API:

* create + confirm + terminate throughput: dialogs per second through the
  tracker (INVITE, 200, ACK, BYE, 200 for the BYE), the messages parsed from
  bytes beforehand (parsing is the message layer's cost, measured by run.py);
* sequential-request match cost: ``tracker.match(bye)`` with N confirmed
  dialogs in memory, by the ``did`` cookie and by Call-ID and tags;
* memory per confirmed dialog with N (default 1,000,000) concurrent
  dialogs: resident memory before and after, divided by N (target < 1 KiB);
* one ``tick`` with N armed timers when nothing expires (target: < 50 µs).

Every figure is checked against what the tracker holds before it is
reported. Exit status 0 unless ``--check`` is given and a target fails.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from sipcore import Endpoint, Request, Response, parse_message  # noqa: E402
from sipcore_dialog import DialogConfig, DialogState, DialogTracker, MatchMode  # noqa: E402

TARGET_BYTES = 1024
TARGET_TICK_US = 50.0

SOURCE = Endpoint("192.0.2.10", 5060)
CALLEE = Endpoint("198.51.100.2", 5060)
PROXY_RR = "<sip:proxy.example.com;lr;did={did}>"

INVITE = (
    "INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{i}x\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:alice{u}@atlanta.example.com>;tag=ft{i}\r\n"
    "To: <sip:bob@biloxi.example.com>\r\n"
    "Call-ID: {i}-a84b4c76e66710@192.0.2.10\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:alice{u}@192.0.2.10:5060>\r\n"
    "Content-Length: 0\r\n\r\n"
)
OK = (
    "SIP/2.0 200 OK\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{i}x\r\n"
    "From: <sip:alice{u}@atlanta.example.com>;tag=ft{i}\r\n"
    "To: <sip:bob@biloxi.example.com>;tag=tt{i}\r\n"
    "Call-ID: {i}-a84b4c76e66710@192.0.2.10\r\n"
    "CSeq: {cseq} {method}\r\n"
    "Contact: <sip:bob@198.51.100.2:5060>\r\n"
    "Content-Length: 0\r\n\r\n"
)
IN_DIALOG = (
    "{method} sip:bob@198.51.100.2:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{i}{method}\r\n"
    "Max-Forwards: 70\r\n"
    "Route: {route}\r\n"
    "From: <sip:alice{u}@atlanta.example.com>;tag=ft{i}\r\n"
    "To: <sip:bob@biloxi.example.com>;tag=tt{i}\r\n"
    "Call-ID: {i}-a84b4c76e66710@192.0.2.10\r\n"
    "CSeq: {cseq} {method}\r\n"
    "Content-Length: 0\r\n\r\n"
)


def _request(text: str) -> Request:
    msg = parse_message(text.encode())
    assert isinstance(msg, Request)
    return msg


def _response(text: str) -> Response:
    msg = parse_message(text.encode())
    assert isinstance(msg, Response)
    return msg


def confirm(tracker: DialogTracker, i: int, now: float) -> Any:
    """One dialog up to state 4 (INVITE, 200, ACK), parsed from bytes."""
    u = i  # every caller distinct: no string is shared between dialogs
    dialog = tracker.create(_request(INVITE.format(i=i, u=u)), now, SOURCE)
    tracker.on_response(
        dialog, _response(OK.format(i=i, u=u, cseq=1, method="INVITE")), now, CALLEE
    )
    route = PROXY_RR.format(did=dialog.did)
    tracker.on_request(
        _request(IN_DIALOG.format(i=i, u=u, method="ACK", cseq=1, route=route)), now, SOURCE
    )
    return dialog


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def bench_throughput(n: int) -> dict[str, float]:
    # The ACK and BYE carry the did cookie, which holds a random h_id: a dry
    # run with the same seed tells what each dialog's did will be, so that
    # every message can be parsed before the clock starts.
    dry = DialogTracker(DialogConfig(), rng=random.Random(7))
    dids = [dry.create(_request(INVITE.format(i=i, u=i)), 0.0, SOURCE).did for i in range(n)]
    tracker = DialogTracker(DialogConfig(), rng=random.Random(7))
    msgs = []
    for i in range(n):
        route = PROXY_RR.format(did=dids[i])
        bye = _request(IN_DIALOG.format(i=i, u=i, method="BYE", cseq=2, route=route))
        msgs.append(
            (
                _request(INVITE.format(i=i, u=i)),
                _response(OK.format(i=i, u=i, cseq=1, method="INVITE")),
                _request(IN_DIALOG.format(i=i, u=i, method="ACK", cseq=1, route=route)),
                bye,
                _response(OK.format(i=i, u=i, cseq=2, method="BYE")),
            )
        )
    gc.collect()
    start = time.perf_counter()
    for invite, ok, ack, bye, bye_ok in msgs:
        dialog = tracker.create(invite, 0.0, SOURCE)
        tracker.on_response(dialog, ok, 0.0, CALLEE)
        tracker.on_request(ack, 0.0, SOURCE)
        found = tracker.on_request(bye, 0.0, SOURCE)
        assert found is not None and found[0] is dialog
        tracker.on_request_response(dialog, bye, bye_ok, found[1], 0.0)
    elapsed = time.perf_counter() - start
    assert tracker.stats.processed == n and tracker.stats.active == 0
    assert all(d.state is DialogState.DELETED for d in tracker)
    return {"dialogs": n, "per_second": n / elapsed, "us_per_dialog": elapsed / n * 1e6}


def bench_match(n: int, rounds: int = 5) -> dict[str, float]:
    out: dict[str, float] = {"dialogs": n}
    for mode in (MatchMode.DID_ONLY, MatchMode.DID_NONE):
        tracker = DialogTracker(DialogConfig(match_mode=mode))
        probes = []
        for i in range(n):
            dialog = confirm(tracker, i, 0.0)
            if i % max(n // 1000, 1) == 0:
                route = PROXY_RR.format(did=dialog.did)
                probes.append(
                    (
                        _request(IN_DIALOG.format(i=i, u=i, method="BYE", cseq=2, route=route)),
                        dialog,
                    )
                )
        for request, dialog in probes:  # parse the headers once, outside the timing
            found = tracker.match(request)
            assert found is not None and found[0] is dialog
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            for request, _dialog in probes:
                tracker.match(request)
            best = min(best, (time.perf_counter() - start) / len(probes))
        out[f"{mode.name.lower()}_us"] = best * 1e6
    return out


def bench_memory_and_tick(n: int) -> dict[str, float]:
    gc.collect()
    tracker = DialogTracker(DialogConfig())
    before = rss_bytes()
    start = time.perf_counter()
    for i in range(n):
        confirm(tracker, i, 0.0)
    created = time.perf_counter() - start
    gc.collect()
    after = rss_bytes()
    assert len(tracker) == n and tracker.stats_active()["ongoing"] == n
    per_dialog = (after - before) / n
    # One tick with every timer armed and none due: the cost must not grow with n.
    first = tracker.next_deadline()
    assert first is not None and first > 1.0
    samples = []
    for k in range(2000):
        t0 = time.perf_counter()
        tracker.tick(0.5 + k * 1e-6)
        samples.append(time.perf_counter() - t0)
    assert len(tracker) == n  # nothing expired
    return {
        "dialogs": n,
        "bytes_per_dialog": per_dialog,
        "build_seconds": created,
        "tick_us_median": statistics.median(samples) * 1e6,
        "tick_us_p99": sorted(samples)[int(len(samples) * 0.99)] * 1e6,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dialogs", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="100,000 dialogs, fewer rounds")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    n = 100_000 if args.quick else args.dialogs
    print(f"python   : {platform.python_implementation()} {platform.python_version()}")
    print(f"machine  : {platform.machine()}, {os.cpu_count()} cores")
    results: dict[str, Any] = {}
    results["throughput"] = t = bench_throughput(20_000 if not args.quick else 5_000)
    print(
        f"\ncreate + confirm + terminate: {t['per_second']:.0f} dialogs/s"
        f" ({t['us_per_dialog']:.1f} µs each, {t['dialogs']:.0f} dialogs; every message"
        " parsed before timing, its headers on first read inside)"
    )
    results["match"] = m = bench_match(min(n, 100_000))
    print(
        f"sequential-request match with {m['dialogs']:.0f} dialogs:"
        f" {m['did_only_us']:.2f} µs by did cookie, {m['did_none_us']:.2f} µs by Call-ID and tags"
    )
    results["memory"] = mem = bench_memory_and_tick(n)
    ok_mem = mem["bytes_per_dialog"] < TARGET_BYTES
    ok_tick = mem["tick_us_median"] < TARGET_TICK_US
    print(
        f"memory with {mem['dialogs']:.0f} confirmed dialogs: {mem['bytes_per_dialog']:.0f} B each"
        f" (target < {TARGET_BYTES}: {'PASS' if ok_mem else 'FAIL'});"
        f" built in {mem['build_seconds']:.1f} s"
    )
    verdict = "PASS" if ok_tick else "FAIL"
    print(
        f"tick with {mem['dialogs']:.0f} armed timers, none due:"
        f" median {mem['tick_us_median']:.2f} µs, p99 {mem['tick_us_p99']:.2f} µs"
        f" (target < {TARGET_TICK_US:.0f}: {verdict})"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if args.check and not (ok_mem and ok_tick) else 0


if __name__ == "__main__":
    raise SystemExit(main())
