"""rtpengine control benchmark (issue 6).

Usage::

    python benchmarks/media.py [--quick] [--check] [--json PATH] [--sequences N]

Measures:

* the ng codec on a typical offer (the dictionary Kamailio sends for
  ``rtpengine_offer("ICE=remove replace-origin replace-session-connection
  RTP/AVP")`` on an INVITE with a 14-line SDP, and rtpengine 10.5's reply
  to it): encoding the request, decoding the reply, and the reply's typed
  model; bencode.py's own ``encode`` / ``decode`` of the same dictionaries
  beside it, so the cost sipcore_media adds is visible;
* ``RtpenginePool.request`` + ``receive`` for one offer (selection, cookie,
  timers, the sticky table), with the reply made beforehand;
* offer/answer/delete sequences per second against a real rtpengine
  started here (userspace, 127.0.0.1, as the interop tests run it), from
  one client (``sipcore_media.asyncio`` on one UDP socket): one sequence at
  a time, and 32 in flight; the CPU time of the client and of the daemon
  per sequence is read from /proc beside it.

Every timed call is made once first and its result checked. There are no
targets in the issue; ``--check`` exits 1 only when a command failed.
Skips the rtpengine part (and says so) when rtpengine is not installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path
from typing import Any

import bencodepy

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from sipcore_media import (  # noqa: E402
    Answer,
    CallStatsReply,
    Delete,
    Offer,
    RtpengineConfig,
    RtpenginePool,
    SdpReply,
    SipContext,
    build_command,
    decode_message,
    encode_message,
    parse_reply,
)
from sipcore_media.asyncio import NgClient  # noqa: E402

SDP = (
    "v=0\r\n"
    "o=alice 2890844526 2890844526 IN IP4 127.0.0.5\r\n"
    "s=-\r\n"
    "c=IN IP4 127.0.0.5\r\n"
    "t=0 0\r\n"
    "m=audio 49170 RTP/AVP 0 8 9 18 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:18 G729/8000\r\n"
    "a=fmtp:18 annexb=no\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=sendrecv\r\n"
)
REPLY_SDP = SDP.replace("127.0.0.5", "127.0.0.1").replace("49170", "30000") + "a=rtcp:30001\r\n"
ANSWER_SDP = SDP.replace("127.0.0.5", "127.0.0.6")
FLAGS = "ICE=remove replace-origin replace-session-connection RTP/AVP"
IN_FLIGHT = 32


def typical_offer() -> dict[str, Any]:
    context = SipContext(
        "a84b4c76e66710@pc33.atlanta.example.com",
        "1928301774",
        sdp=SDP,
        source_address="127.0.0.5",
        vias=("z9hG4bK776asdhds",),
    )
    return build_command("offer", FLAGS, context)


def best_us(call: Any, number: int) -> float:
    return min(timeit.repeat(call, number=number, repeat=5)) / number * 1e6


def interleaved_us(jobs: dict[str, Any], number: int, rounds: int) -> dict[str, float]:
    """Best of ``rounds`` for each job, the rounds of all jobs interleaved so
    that load on the machine skews them alike (as run.py does)."""
    best = dict.fromkeys(jobs, float("inf"))
    for _ in range(rounds):
        for name, call in jobs.items():
            best[name] = min(best[name], timeit.timeit(call, number=number) / number * 1e6)
    return best


def delete_reply() -> dict[str, Any]:
    """A delete reply of the shape rtpengine 10.5 sends for a two-party call."""

    def stream(port: int, kind: str) -> dict[str, Any]:
        endpoint = {"family": "IPv4", "address": "127.0.0.5", "port": 30000}
        stats = {"packets": 0, "bytes": 0, "errors": 0}
        return {"local port": port, "local address": "127.0.0.1", "family": "IPv4",
                "endpoint": endpoint, "advertised endpoint": endpoint, "last packet": 1796169186,
                "flags": [kind, "filled"], "stats": stats}  # fmt: skip

    zero = {"packets": 0, "bytes": 0, "errors": 0}
    tags = {}
    for tag, other, port in (("ft", "tt", 40000), ("tt", "ft", 40002)):
        peer = [{"tag": other, "type": "offer/answer"}]
        media = {"index": 1, "type": "audio", "protocol": "RTP/AVP",
                 "streams": [stream(port, "RTP"), stream(port + 1, "RTCP")],
                 "flags": ["initialized", "send", "recv"]}  # fmt: skip
        tags[tag] = {"tag": tag, "created": 1796169186, "subscriptions": peer,
                     "subscribers": peer, "medias": [media]}  # fmt: skip
    return {"created": 1796169186, "created_us": 174328, "last signal": 1796169186, "SSRC": {},
            "tags": tags, "totals": {"RTP": zero, "RTCP": zero}, "result": "ok"}  # fmt: skip


def codec_figures(number: int, rounds: int) -> dict[str, float]:
    request = typical_offer()
    reply = {"sdp": REPLY_SDP, "result": "ok"}
    reply_datagram = encode_message("5323_1", reply)
    reply_body = reply_datagram.partition(b" ")[2]
    request_body = bencodepy.encode(request)
    delete_body = bencodepy.encode(delete_reply())
    delete_datagram = b"5323_2 " + delete_body
    # Each timed call, once, checked.
    assert decode_message(delete_datagram).document == delete_reply()
    assert encode_message("5323_1", request) == b"5323_1 " + request_body
    decoded = decode_message(reply_datagram)
    assert decoded.document == reply
    model = parse_reply("offer", decoded.document)
    assert isinstance(model, SdpReply) and model.sdp == REPLY_SDP
    assert bencodepy.decode(reply_body) == {b"sdp": REPLY_SDP.encode(), b"result": b"ok"}
    jobs = {
        "encode_offer_us": lambda: encode_message("5323_1", request),
        "bencodepy_encode_us": lambda: bencodepy.encode(request),
        "decode_reply_us": lambda: decode_message(reply_datagram),
        "bencodepy_decode_us": lambda: bencodepy.decode(reply_body),
        "reply_model_us": lambda: parse_reply("offer", decoded.document),
        "decode_delete_reply_us": lambda: decode_message(delete_datagram),
        "bencodepy_decode_delete_us": lambda: bencodepy.decode(delete_body),
    }
    figures = interleaved_us(jobs, number // 10, rounds)
    figures["delete_reply_bytes"] = float(len(delete_datagram))
    figures["request_bytes"] = float(len(request_body) + 7)
    figures["reply_bytes"] = float(len(reply_datagram))
    figures["codec_total_us"] = (
        figures["encode_offer_us"] + figures["decode_reply_us"] + figures["reply_model_us"]
    )
    figures["bencodepy_total_us"] = figures["bencodepy_encode_us"] + figures["bencodepy_decode_us"]
    return figures


def pool_figure(number: int) -> float:
    pool = RtpenginePool(
        RtpengineConfig("udp:127.0.0.1:2223 udp:127.0.0.1:2224"), cookie_prefix="b"
    )
    document = typical_offer()
    reply = bencodepy.encode({"sdp": REPLY_SDP, "result": "ok"})
    counter = iter(range(1, 10**9))

    def one() -> None:
        n = next(counter)
        document["call-id"] = f"call-{n}"
        [sent] = pool.request(document, 0.0)
        [done] = pool.receive(sent.cookie.encode() + b" " + reply, 0.0)  # type: ignore[union-attr]
        assert isinstance(done.reply, SdpReply)  # type: ignore[union-attr]

    one()
    us = best_us(one, number)
    assert pool.pending == 0
    return us


# -- against the real rtpengine ----------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_rtpengine(binary: str, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """rtpengine as the interop tests start it; a new port when it was taken."""
    for _ in range(5):
        port = _free_port()
        base = random.randrange(20000, 58000, 2000)
        log = (workdir / f"rtpengine-{port}.log").open("wb")
        process = subprocess.Popen(
            [binary, "--config-file=none", "--table=-1", "--interface=127.0.0.1",
             f"--listen-ng=127.0.0.1:{port}", f"--port-min={base}", f"--port-max={base + 1999}",
             "--foreground", "--log-stderr", "--delete-delay=0", "--log-level=4"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            while process.poll() is None and time.monotonic() < deadline:
                sock.sendto(encode_message(f"up_{time.monotonic_ns()}", {"command": "ping"}),
                            ("127.0.0.1", port))  # fmt: skip
                try:
                    if b"pong" in sock.recv(65535):
                        return process, port
                except TimeoutError:
                    continue
        process.kill()
        process.wait(5)
    raise RuntimeError("rtpengine did not start")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sequences(port: int, total: int, in_flight: int) -> dict[str, float]:
    pool = RtpenginePool(RtpengineConfig(f"udp:127.0.0.1:{port}"))
    client = await NgClient.open(pool)
    tag = f"{os.getpid()}-{time.time_ns()}"
    failures = 0
    started = iter(range(total))

    async def worker() -> None:
        nonlocal failures
        for n in started:
            call_id = f"bench-{tag}-{n}"
            try:
                offer = await client.request(
                    Offer(sdp=SDP, call_id=call_id, from_tag="ft", replace=["origin"], ice="remove")
                )
                assert isinstance(offer.reply, SdpReply) and "c=IN IP4 127.0.0.1" in offer.reply.sdp
                answer = await client.request(
                    Answer(sdp=ANSWER_SDP, call_id=call_id, from_tag="ft", to_tag="tt")
                )
                assert isinstance(answer.reply, SdpReply)
                delete = await client.request(Delete(call_id=call_id))
                assert isinstance(delete.reply, CallStatsReply) and delete.reply.warning is None
            except Exception:  # counted, and --check fails on it
                failures += 1

    cpu = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    client.close()
    return {
        "sequences_per_s": total / elapsed,
        "client_cpu_us_per_sequence": cpu / total * 1e6,
        "failures": float(failures),
        "stray_replies": float(pool.stray_replies),
    }


def against_rtpengine(total: int) -> dict[str, float] | None:
    binary = shutil.which("rtpengine")
    if binary is None:
        print("rtpengine not installed (scripts/install-peers.sh): sequences not measured")
        return None
    with tempfile.TemporaryDirectory(prefix="media-bench-") as workdir:
        process, port = start_rtpengine(binary, Path(workdir))
        try:
            asyncio.run(sequences(port, 50, 4))  # warm up both sides
            results: dict[str, float] = {}
            for label, in_flight in (("serial", 1), (f"{IN_FLIGHT}_in_flight", IN_FLIGHT)):
                before = cpu_seconds(process.pid)
                figures = asyncio.run(sequences(port, total, in_flight))
                daemon = cpu_seconds(process.pid) - before
                figures["daemon_cpu_us_per_sequence"] = daemon / total * 1e6
                for key, value in figures.items():
                    results[f"{label}/{key}"] = value
            return results
        finally:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--json")
    parser.add_argument("--sequences", type=int)
    args = parser.parse_args()
    number = 2000 if args.quick else 20000
    total = args.sequences or (300 if args.quick else 3000)

    print(f"python   : {platform.python_implementation()} {platform.python_version()}")
    print(f"machine  : {platform.machine()}, {os.cpu_count()} cores")
    codec = codec_figures(number, 5 if args.quick else 15)
    print(
        f"typical offer: request {codec['request_bytes']:.0f} B, reply {codec['reply_bytes']:.0f} B"
    )
    print(
        f"  sipcore_media  encode {codec['encode_offer_us']:6.2f} µs  decode "
        f"{codec['decode_reply_us']:6.2f} µs  reply model {codec['reply_model_us']:5.2f} µs  "
        f"total {codec['codec_total_us']:6.2f} µs"
    )
    print(
        f"  bencode.py     encode {codec['bencodepy_encode_us']:6.2f} µs  decode "
        f"{codec['bencodepy_decode_us']:6.2f} µs                     "
        f"total {codec['bencodepy_total_us']:6.2f} µs"
    )
    print(
        f"delete reply of a two-party call ({codec['delete_reply_bytes']:.0f} B): decode "
        f"{codec['decode_delete_reply_us']:.0f} µs, bencode.py alone "
        f"{codec['bencodepy_decode_delete_us']:.0f} µs"
    )
    pool_us = pool_figure(number // 4)
    print(f"pool request + receive, one offer: {pool_us:.2f} µs")
    results: dict[str, float] = {**codec, "pool_offer_us": pool_us}
    live = against_rtpengine(total)
    failed = False
    if live is not None:
        results.update(live)
        for label in ("serial", f"{IN_FLIGHT}_in_flight"):
            print(
                f"offer/answer/delete against rtpengine, {label.replace('_', ' ')}: "
                f"{live[f'{label}/sequences_per_s']:7.0f} sequences/s  "
                f"(client {live[f'{label}/client_cpu_us_per_sequence']:.0f} µs, "
                f"rtpengine {live[f'{label}/daemon_cpu_us_per_sequence']:.0f} µs CPU "
                f"per sequence; {live[f'{label}/failures']:.0f} failed, "
                f"{live[f'{label}/stray_replies']:.0f} stray replies)"
            )
            failed = failed or live[f"{label}/failures"] > 0
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
