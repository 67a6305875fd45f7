"""Transaction-layer benchmark: whole calls through sipcore's proxy core and sippy's
transaction manager, in memory, and the memory each in-flight transaction holds.

Usage::

    python benchmarks/transactions.py [--check] [--json PATH] [--quick]
                                      [--rounds N] [--calls N] [--inflight N] [--profile]

A scripted UAC (127.0.0.1:5080) calls a scripted UAS (127.0.0.1:5070) through the
element under test (127.0.0.1:5060). Every message is wire bytes, every call has its
own Call-ID, tags and branches, and nothing opens a socket. One call is::

    UAC -> INVITE (SDP)  ->  element  -> 100 to the UAC, INVITE to the UAS
    UAS -> 180           ->  element  -> 180 to the UAC
    UAS -> 200 (SDP)     ->  element  -> 200 to the UAC
    UAC -> ACK           ->  element  -> ACK to the UAS (see below)
    UAC -> BYE           ->  element  -> BYE to the UAS
    UAS -> 200 (BYE)     ->  element  -> 200 to the UAC

The scripted UAS answers from the bytes it was sent (it copies their Via, From, To,
Call-ID, CSeq and Record-Route lines); the UAC builds its ACK and BYE route set from
the Record-Route of the 200 it got. Every output is checked: where it goes, its start
line, its Call-ID and CSeq, one Via (the UAC's own) on what reaches the UAC, the
To tag on the ACK. A round also counts what each UA received.

**sipcore**: a stateful, record-routing :class:`sipcore.Proxy` with the script
``if ctx.loose_route(): ctx.relay(); return`` / ``ctx.record_route();
ctx.relay(UAS)``: per call a server and a client INVITE transaction, a server and
a client BYE transaction, the ACK forwarded statelessly along the Record-Route,
Timer C. The driver does what an event loop does: after each datagram it reads
``next_deadline()`` and ticks when a timer is due. At the end of a round the clock
jumps past every timer (Timers J, K, L, M) and the proxy must hold no transaction,
timer or request context.

**sippy** 2.5.0 is a B2BUA stack whose ``SipTransactionManager`` is written for a
UA. It runs here unmodified, with an in-memory transport in place of its
``Udp_server`` (the class attribute ``model_udp_server`` it provides for that), its
own ``SipLogger`` with the ``none`` back end, and its own timers on its own
``EventDispatcher2``: the driver runs one iteration of ``ED2.loop()`` (dispatch
due timers, drop cancelled ones past half the heap) after each datagram, as the
reactor would, without its sleep. The transaction user is a pass-through modelled
on sippy's ``StatefulProxy`` (without its debug ``print``): per new request it
answers 100 to an INVITE, decrements Max-Forwards, pushes a Via with a new branch
and starts a client transaction towards the UAS; every response is forwarded
upstream without its top Via. What sippy does differently, by design:

* it does not record-route: its client transaction builds and sends the ACK for a
  2xx itself, routed by the 2xx's Record-Route, as a UA does (a Record-Route naming
  itself would send that ACK to itself). So the ACK is hop by hop, as in a B2BUA:
  the UAC's ACK ends in sippy's server transaction, and the UAS gets sippy's ACK,
  sent when the 200 arrives. sipcore parses and routes the UAC's ACK instead;
* it keeps no transaction after its final response (no Timers J, K, L, M):
  a non-INVITE transaction ends at once, an INVITE server transaction at the ACK.
  Retransmissions are absorbed by an MD5-keyed cache of every datagram received,
  purged every 32 s, which it must compute for every datagram;
* each datagram costs it the ``MonoTime`` and ``Remote_address`` its receiver
  thread makes, and ``bytes.decode()`` / ``str.encode()``.

The per-call figure includes the scripted UAs and the checks (the same code for
both sides); their cost alone, replayed from recorded outputs, is printed too.

**Memory**: with ``tracemalloc``, N calls are left in flight (INVITE relayed, 180
forwarded, no final response) on a fresh element; the traced memory it holds then,
less what it held before, divided by the transactions it holds (server + client),
is the figure; the peak during the set-up is shown too. sippy's figure is shown
with and without its retransmission cache (which it keeps 32 to 64 s).

Rounds of the two libraries alternate so load on a shared machine hits both alike;
the best round is the figure, the median is printed beside it. The garbage
collector is off while a round runs (as ``timeit`` does), and collected between
rounds. The run is a report: it exits 0 unless ``--check`` is given, which makes a
flow that failed its checks exit 1 (the issue sets no speed target).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import heapq
import json
import os
import pstats
import secrets
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from messages import SDP_ANSWER, SDP_OFFER
from run import machine_info, package_version

REPO = Path(__file__).resolve().parent.parent

try:
    import sipcore
except ImportError:  # a checkout without the package installed
    sys.path.insert(0, str(REPO / "src"))
    import sipcore

HOST = "127.0.0.1"
ELEMENT_PORT, UAS_PORT, UAC_PORT = 5060, 5070, 5080

# What run_call() gets back from an element: (who it was sent to, wire bytes).
Output = tuple[str, bytes]


class FlowError(Exception):
    """The element did not do what the call flow needs."""


# --------------------------------------------------------------------------
# The scripted UAs


@dataclass(frozen=True, slots=True)
class Call:
    """One call's pre-rendered requests (the UAC's) and the values checked."""

    call_id: bytes
    invite_branch: bytes
    bye_branch: bytes
    to_tag: bytes
    invite: bytes
    ack_head: bytes  # the ACK up to its route set...
    ack_tail: bytes  # ...and after it
    bye_head: bytes
    bye_tail: bytes


UAC_VIA = b"Via: SIP/2.0/UDP 127.0.0.1:5080;branch=%s;rport"
UAC_FROM = b'From: "Alice" <sip:alice@127.0.0.1:5080>;tag=%s'
UAS_TO = b"To: <sip:bob@127.0.0.1:5070>"
UAS_URI = b"sip:bob@127.0.0.1:5070"
UAS_CONTACT = b"Contact: <sip:bob@127.0.0.1:5070>"
INVITE_CSEQ = b"CSeq: 1 INVITE"
BYE_CSEQ = b"CSeq: 2 BYE"


def make_call(serial: str) -> Call:
    call_id = f"{serial}.{secrets.token_hex(8)}@127.0.0.1".encode()
    from_tag = secrets.token_hex(6).encode()
    to_tag = secrets.token_hex(6).encode()
    invite_branch = b"z9hG4bK-" + secrets.token_hex(10).encode()
    common = [
        UAC_FROM % from_tag,
        b"%s;tag=%s" % (UAS_TO, to_tag),
        b"Call-ID: " + call_id,
    ]
    invite = b"\r\n".join(
        [
            b"INVITE " + UAS_URI + b" SIP/2.0",
            UAC_VIA % invite_branch,
            b"Max-Forwards: 70",
            UAC_FROM % from_tag,
            UAS_TO,
            b"Call-ID: " + call_id,
            INVITE_CSEQ,
            b"Contact: <sip:alice@127.0.0.1:5080>",
            b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE",
            b"Supported: replaces, timer",
            b"User-Agent: bench-uac/1.0",
            b"Content-Type: application/sdp",
            b"Content-Length: %d" % len(SDP_OFFER),
            b"",
            SDP_OFFER,
        ]
    )

    def in_dialog(method: bytes, branch: bytes, cseq: bytes) -> tuple[bytes, bytes]:
        head = b"\r\n".join(
            [method + b" " + UAS_URI + b" SIP/2.0", UAC_VIA % branch, b"Max-Forwards: 70", b""]
        )
        tail = b"\r\n".join(
            [*common, cseq, b"User-Agent: bench-uac/1.0", b"Content-Length: 0", b"", b""]
        )
        return head, tail

    ack_branch = b"z9hG4bK-" + secrets.token_hex(10).encode()
    bye_branch = b"z9hG4bK-" + secrets.token_hex(10).encode()
    ack_head, ack_tail = in_dialog(b"ACK", ack_branch, b"CSeq: 1 ACK")
    bye_head, bye_tail = in_dialog(b"BYE", bye_branch, BYE_CSEQ)
    return Call(
        call_id, invite_branch, bye_branch, to_tag, invite, ack_head, ack_tail, bye_head, bye_tail
    )


_COPIED = frozenset({b"via", b"v", b"from", b"f", b"call-id", b"i", b"cseq"})
RINGING = b"SIP/2.0 180 Ringing"
OK = b"SIP/2.0 200 OK"


def respond(request: bytes, status: bytes, to_tag: bytes, *, dialog: bool, body: bytes) -> bytes:
    """The scripted UAS's response to ``request`` (RFC 3261 8.2.6, from its bytes)."""
    end = request.find(b"\r\n\r\n")
    if end < 0:
        raise FlowError(f"the UAS got an unframed request: {request[:60]!r}")
    lines = [status]
    for line in request[:end].split(b"\r\n")[1:]:
        name = line[: line.find(b":")].rstrip().lower()
        if name in _COPIED:
            lines.append(line)
        elif name in (b"to", b"t"):
            lines.append(line if b";tag=" in line else line + b";tag=" + to_tag)
        elif dialog and name == b"record-route":
            lines.append(line)
    if dialog:
        lines.append(UAS_CONTACT)
    if body:
        lines.append(b"Content-Type: application/sdp")
    lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def route_set(response: bytes) -> bytes:
    """The UAC's Route lines: the 2xx's Record-Route, reversed (RFC 3261 12.1.2)."""
    head = response[: response.find(b"\r\n\r\n")]
    values = [
        line[13:].strip()
        for line in head.split(b"\r\n")[1:]
        if line[:13].lower() == b"record-route:"
    ]
    return b"".join(b"Route: " + value + b"\r\n" for value in reversed(values))


# What the UAs count, per round: each must equal the number of calls.
RECEIVED = (
    "UAC got 100",
    "UAC got 180",
    "UAC got 200 (INVITE)",
    "UAC got 200 (BYE)",
    "UAS got INVITE",
    "UAS got ACK",
    "UAS got BYE",
)
UAC_100, UAC_180, UAC_200, UAC_BYE_200, UAS_INVITE, UAS_ACK, UAS_BYE = range(len(RECEIVED))


def _sorted(
    out: list[Output], call: Call, n_uac: int, n_uas: int
) -> tuple[list[bytes], list[bytes]]:
    uac: list[bytes] = []
    uas: list[bytes] = []
    for to, data in out:
        if call.call_id not in data:
            raise FlowError(f"a message without this call's Call-ID went to {to}: {data[:60]!r}")
        if to == "uac":
            uac.append(data)
        elif to == "uas":
            uas.append(data)
        else:
            raise FlowError(f"a message went to {to}: {data[:60]!r}")
    if len(uac) != n_uac or len(uas) != n_uas:
        got = [data.partition(b"\r\n")[0].decode() for _, data in out]
        raise FlowError(f"expected {n_uac} message(s) to the UAC and {n_uas} to the UAS, got {got}")
    return uac, uas


def _to_uac(data: bytes, start: bytes, cseq: bytes, branch: bytes) -> None:
    if not data.startswith(start) or cseq not in data:
        raise FlowError(f"the UAC expected {start!r} ({cseq!r}), got {data[:60]!r}")
    if data.count(b"\nVia:") != 1 or branch not in data:
        raise FlowError(f"a response reached the UAC without exactly its own Via: {data!r}")


def _to_uas(data: bytes, start: bytes) -> None:
    if not data.startswith(start):
        raise FlowError(f"the UAS expected {start!r}, got {data[:60]!r}")


class Element(Protocol):
    """One side of the benchmark: an element the scripted UAs talk to."""

    name: str
    version: str
    # True when the element sends its own ACK for a 2xx (when the 200 arrives)
    # and absorbs the UAC's; False when it record-routes and routes the UAC's
    # ACK (then the 2xx must carry a Record-Route for the UAC's route set).
    hop_by_hop_ack: bool

    def deliver(self, data: bytes, from_uac: bool) -> list[Output]: ...

    def finish(self) -> None:
        """Run every timer out and check nothing is left; FlowError if something is."""

    def settle(self) -> None:
        """Do what an idle event loop would do next, before memory is read."""

    def transactions(self) -> int: ...


Deliver = Callable[[bytes, bool], list[Output]]


def run_call(call: Call, deliver: Deliver, hop_by_hop_ack: bool, tally: list[int]) -> None:
    """One whole call, every output checked; counts what each UA received in ``tally``."""
    uac, uas = _sorted(deliver(call.invite, True), call, 1, 1)
    _to_uac(uac[0], b"SIP/2.0 100 ", INVITE_CSEQ, call.invite_branch)
    _to_uas(uas[0], b"INVITE ")
    invite = uas[0]
    tally[UAC_100] += 1
    tally[UAS_INVITE] += 1

    ringing = respond(invite, RINGING, call.to_tag, dialog=True, body=b"")
    uac, _ = _sorted(deliver(ringing, False), call, 1, 0)
    _to_uac(uac[0], b"SIP/2.0 180 ", INVITE_CSEQ, call.invite_branch)
    tally[UAC_180] += 1

    ok = respond(invite, OK, call.to_tag, dialog=True, body=SDP_ANSWER)
    uac, uas = _sorted(deliver(ok, False), call, 1, 1 if hop_by_hop_ack else 0)
    _to_uac(uac[0], b"SIP/2.0 200 ", INVITE_CSEQ, call.invite_branch)
    if not uac[0].endswith(SDP_ANSWER):
        raise FlowError("the 200 reached the UAC without its SDP answer")
    tally[UAC_200] += 1
    routes = route_set(uac[0])
    if not routes and not hop_by_hop_ack:
        raise FlowError("the 200 reached the UAC without a Record-Route")
    if hop_by_hop_ack:
        _to_uas(uas[0], b"ACK ")
        if call.to_tag not in uas[0]:
            raise FlowError(f"the ACK to the UAS lacks the To tag: {uas[0]!r}")
        tally[UAS_ACK] += 1

    ack = call.ack_head + routes + call.ack_tail
    _, uas = _sorted(deliver(ack, True), call, 0, 0 if hop_by_hop_ack else 1)
    if not hop_by_hop_ack:
        _to_uas(uas[0], b"ACK ")
        tally[UAS_ACK] += 1

    bye = call.bye_head + routes + call.bye_tail
    _, uas = _sorted(deliver(bye, True), call, 0, 1)
    _to_uas(uas[0], b"BYE ")
    tally[UAS_BYE] += 1

    bye_ok = respond(uas[0], OK, call.to_tag, dialog=False, body=b"")
    uac, _ = _sorted(deliver(bye_ok, False), call, 1, 0)
    _to_uac(uac[0], b"SIP/2.0 200 ", BYE_CSEQ, call.bye_branch)
    tally[UAC_BYE_200] += 1


def start_call(call: Call, element: Element) -> None:
    """Leave a call in flight: INVITE relayed, 180 forwarded, no final response."""
    uac, uas = _sorted(element.deliver(call.invite, True), call, 1, 1)
    _to_uas(uas[0], b"INVITE ")
    ringing = respond(uas[0], RINGING, call.to_tag, dialog=True, body=b"")
    uac, _ = _sorted(element.deliver(ringing, False), call, 1, 0)
    _to_uac(uac[0], b"SIP/2.0 180 ", INVITE_CSEQ, call.invite_branch)


# --------------------------------------------------------------------------
# sipcore


ELEMENT_EP = sipcore.Endpoint(HOST, ELEMENT_PORT)
UAS_EP = sipcore.Endpoint(HOST, UAS_PORT)
UAC_EP = sipcore.Endpoint(HOST, UAC_PORT)
# Seconds of the fake clock between two datagrams.
CLOCK_STEP = 0.0002


def route_script(ctx: sipcore.RequestContext) -> None:
    """The record-routing script under test."""
    if ctx.loose_route():
        ctx.relay()
        return
    ctx.record_route()
    ctx.relay(UAS_EP)


class SipcoreElement:
    name = "sipcore"
    hop_by_hop_ack = False

    def __init__(self) -> None:
        self.version = package_version("sipcore", getattr(sipcore, "__version__", None))
        self.proxy = sipcore.Proxy(sipcore.ProxyConfig(listen=(ELEMENT_EP,)), route_script)
        self.now = 0.0
        self._labels = {UAC_EP: "uac", UAS_EP: "uas"}

    def deliver(self, data: bytes, from_uac: bool) -> list[Output]:
        self.now += CLOCK_STEP
        now = self.now
        proxy = self.proxy
        sends = proxy.receive(data, UAC_EP if from_uac else UAS_EP, now)
        deadline = proxy.next_deadline()
        if deadline is not None and deadline <= now:
            sends += proxy.tick(now)
        labels = self._labels
        return [(labels.get(s.destination, str(s.destination)), s.data) for s in sends]

    def finish(self) -> None:
        proxy = self.proxy
        t = proxy.config.timers
        # Every timer a completed call leaves (J, K, L, M) is due by then.
        self.now += 64 * t.t1 + t.t4 + 1.0
        sends = proxy.tick(self.now)
        for _ in range(4):  # bounded: a timer set by a timer would show here
            deadline = proxy.next_deadline()
            if deadline is None:
                break
            self.now = max(self.now, deadline)
            sends += proxy.tick(self.now)
        if sends:
            raise FlowError(f"sipcore sent {len(sends)} message(s) when its timers ran out")
        left = {
            "active_requests": proxy.active_requests,
            "client_transactions": proxy.layer.client_transactions,
            "server_transactions": proxy.layer.server_transactions,
            "pending_timers": proxy.layer.pending_timers,
            "next_deadline": proxy.next_deadline(),
        }
        if any(v not in (0, None) for v in left.values()):
            raise FlowError(f"sipcore holds state after its timers ran out: {left}")

    def settle(self) -> None:
        pass  # cancelled timers leave sipcore's queue at once

    def transactions(self) -> int:
        return self.proxy.layer.client_transactions + self.proxy.layer.server_transactions


# --------------------------------------------------------------------------
# sippy


class InMemoryServer:
    """What sippy's transaction manager needs of its ``Udp_server``: the local
    address, ``send_to`` (which encodes ``str`` as ``Network_server.send_to``
    does) and ``shutdown``; what would be sent is kept in ``sent``."""

    transport = "udp"

    def __init__(self, global_config: dict[str, Any], uopts: Any) -> None:
        self.uopts = uopts.getCopy()
        self.sent: list[tuple[bytes, tuple[str, int]]] = []

    def getSIPaddr(self) -> tuple[tuple[str, int], str]:  # sippy's name
        return (self.uopts.laddress, self.transport)

    def addr2str(self, address: tuple[str, int]) -> str:
        return f"{self.transport}:{address[0]}:{address[1]}"

    def send_to(self, data: bytes | str, address: tuple[str, int], delayed: bool = False) -> None:
        if not isinstance(data, bytes):
            data = data.encode("utf-8")
        self.sent.append((data, address))

    def shutdown(self) -> None:
        self.uopts.data_callback = None


class SippyElement:
    name = "sippy"
    hop_by_hop_ack = True

    def __init__(self) -> None:
        # sippy's logger reads its back end from the environment: "none" is its
        # own null logger (a method that does nothing).
        os.environ["SIPLOG_BEND"] = "none"
        from sippy.Core.EventDispatcher import ED2
        from sippy.Network_server import Remote_address
        from sippy.SipHeader import SipHeader
        from sippy.SipLogger import SipLogger
        from sippy.SipTransactionManager import SipTransactionManager
        from sippy.SipVia import SipVia
        from sippy.Time.MonoTime import MonoTime
        from sippy.Udp_server import Udp_server_opts

        class InMemoryTransactionManager(SipTransactionManager):  # type: ignore[misc]
            model_udp_server = (InMemoryServer, Udp_server_opts)

        self.version = package_version("sippy", None)
        self._ed = ED2
        self._remote_address = Remote_address
        self._mono_time = MonoTime
        self._via = SipVia
        self._header = SipHeader
        config = {
            "_sip_address": HOST,
            "_sip_port": ELEMENT_PORT,
            "_sip_logger": SipLogger("sipcore-bench"),
        }
        self.tm = InMemoryTransactionManager(config, self._request)
        self.server: InMemoryServer = self.tm.l4r.getServer(None)
        self._uas_target = ((HOST, UAS_PORT), "udp")
        self._uac = (HOST, UAC_PORT)
        self._uas = (HOST, UAS_PORT)
        self._labels = {self._uac: "uac", self._uas: "uas"}

    # The transaction user: sippy/StatefulProxy.py less its print()s, plus the
    # 100 Trying sipcore sends.
    def _request(self, req: Any, t: Any) -> tuple[Any, None, None]:
        trying = req.genResponse(100, "Trying") if req.getMethod() == "INVITE" else None
        try:
            if req.getHFBody("max-forwards").incNum(incr=-1) <= 0:
                return (req.genResponse(483, "Too Many Hops"), None, None)
        except IndexError:
            req.appendHeader(self._header(name="max-forwards"))
        via = self._via()
        via.genBranch()
        req.insertHeaderBefore(req.getHF("via"), self._header(name="via", body=via))
        req.setTarget(self._uas_target)
        self.tm.newTransaction(req, self._response)
        return (trying, None, None)

    def _response(self, resp: Any) -> None:
        resp.removeHeader(resp.getHF("via"))
        self.tm.sendResponse(resp)

    def _reactor_iteration(self) -> None:
        """One pass of ``EventDispatcher2.loop()``, without its sleep."""
        ed = self._ed
        ed.last_ts = self._mono_time()
        ed.dispatchTimers()
        if ed.twasted * 2 > len(ed.tlisteners):
            self._compact_timers()

    def _compact_timers(self) -> None:
        # What ED2.loop() does when cancelled timers are half its heap.
        ed = self._ed
        ed.tlisteners = [x for x in ed.tlisteners if x.cb_func is not None]
        heapq.heapify(ed.tlisteners)
        ed.twasted = 0

    def deliver(self, data: bytes, from_uac: bool) -> list[Output]:
        source = self._uac if from_uac else self._uas
        # What sippy's receiver thread hands the transaction manager.
        self.tm.handleIncoming(
            data, self._remote_address(source, "udp"), self.server, self._mono_time()
        )
        self._reactor_iteration()
        server = self.server
        sent = server.sent
        server.sent = []
        labels = self._labels
        return [(labels.get(address, str(address)), out) for out, address in sent]

    def finish(self) -> None:
        ed = self._ed
        tm = self.tm
        # Move the reactor's clock 70 s on (past Timer D, 32 s, and two cache
        # purges) and run what is due, then purge the retransmission cache as its
        # 32 s timer does (twice: l1 -> l2 -> gone), whatever that timer's phase.
        ed.last_ts = self._mono_time().getOffsetCopy(70.0)
        ed.dispatchTimers()
        self.drop_retransmission_cache()
        if self.server.sent:
            raise FlowError(f"sippy sent {len(self.server.sent)} message(s) when its timers ran")
        # The dispatcher is process-wide: count the timers of this manager only.
        live = [
            x
            for x in ed.tlisteners
            if getattr(x.cb_func, "__self__", None) is tm and x is not tm.cp_timer
        ]
        left = {
            "tclient": len(tm.tclient),
            "tserver": len(tm.tserver),
            "timers": len(live),
            "l1rcache": len(tm.l1rcache),
            "l2rcache": len(tm.l2rcache),
        }
        if any(left.values()):
            raise FlowError(f"sippy holds state after its timers ran out: {left}")

    def settle(self) -> None:
        # The loop drops cancelled timers only once they are half its heap;
        # dropping them all gives sippy its lowest figure.
        self._compact_timers()

    def transactions(self) -> int:
        return len(self.tm.tclient) + len(self.tm.tserver)

    def drop_retransmission_cache(self) -> None:
        """What its 32 s purge timer does, twice."""
        self.tm.rCachePurge()
        self.tm.rCachePurge()
        self._compact_timers()

    def close(self) -> None:
        """Cancel the purge timer this manager set on the process-wide dispatcher."""
        self.tm.cp_timer.cancel()
        self._compact_timers()


# --------------------------------------------------------------------------
# Throughput


@dataclass
class Throughput:
    calls_per_round: int
    rounds: int
    best_calls_s: float
    median_calls_s: float
    per_call_us_best: float
    harness_us: float  # the scripted UAs and checks alone, per call
    round_s: list[float] = field(default_factory=list)


def new_calls(n: int, tag: str) -> list[Call]:
    return [make_call(f"{tag}.{i}") for i in range(n)]


def run_round(element: Element, calls: Sequence[Call]) -> float:
    """Seconds for ``calls`` whole calls plus running the timers out; raises FlowError."""
    tally = [0] * len(RECEIVED)
    deliver = element.deliver
    hop = element.hop_by_hop_ack
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        for call in calls:
            run_call(call, deliver, hop, tally)
        element.finish()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    wrong = {RECEIVED[i]: n for i, n in enumerate(tally) if n != len(calls)}
    if wrong:
        raise FlowError(f"{element.name}: expected {len(calls)} of each, got {wrong}")
    return elapsed


def harness_cost(element: Element, calls: Sequence[Call]) -> float:
    """Seconds per call of the scripted UAs and the checks alone: the calls are
    run once for real with their outputs recorded, then again against the
    recording (time measured on the replay only)."""
    recorded: list[list[Output]] = []

    def recording(data: bytes, from_uac: bool) -> list[Output]:
        out = element.deliver(data, from_uac)
        recorded.append(out)
        return out

    tally = [0] * len(RECEIVED)
    for call in calls:
        run_call(call, recording, element.hop_by_hop_ack, tally)
    element.finish()
    replay: Iterator[list[Output]] = iter(recorded)

    def replaying(data: bytes, from_uac: bool) -> list[Output]:
        return next(replay)

    best = float("inf")
    for _ in range(3):
        replay = iter(recorded)
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter()
            for call in calls:
                run_call(call, replaying, element.hop_by_hop_ack, tally)
            best = min(best, time.perf_counter() - start)
        finally:
            gc.enable()
    return best / len(calls)


def measure_throughput(
    elements: Sequence[Element], calls: int, rounds: int, errors: dict[str, str]
) -> dict[str, Throughput]:
    live = list(elements)
    harness: dict[str, float] = {}
    for element in list(live):
        try:
            run_round(element, new_calls(max(calls // 10, 20), f"warm.{element.name}"))
            harness[element.name] = harness_cost(
                element, new_calls(max(calls // 5, 20), f"replay.{element.name}")
            )
        except Exception as exc:
            _failed(element, exc, errors, live)
    samples: dict[str, list[float]] = {e.name: [] for e in live}
    for r in range(rounds):
        for element in list(live):
            batch = new_calls(calls, f"r{r}.{element.name}")
            try:
                samples[element.name].append(run_round(element, batch))
            except Exception as exc:
                _failed(element, exc, errors, live)
    results = {}
    for element in live:
        s = samples[element.name]
        best = min(s)
        results[element.name] = Throughput(
            calls_per_round=calls,
            rounds=rounds,
            best_calls_s=calls / best,
            median_calls_s=calls / statistics.median(s),
            per_call_us_best=best / calls * 1e6,
            harness_us=harness[element.name] * 1e6,
            round_s=s,
        )
    return results


def _failed(element: Element, exc: Exception, errors: dict[str, str], live: list[Element]) -> None:
    reason = f"{type(exc).__name__}: {exc}"
    errors[element.name] = reason
    print(f"!! {element.name} failed: {reason}", file=sys.stderr)
    print(f"!! continuing without {element.name} figures", file=sys.stderr)
    if element in live:
        live.remove(element)


# --------------------------------------------------------------------------
# Memory


@dataclass
class Memory:
    calls: int
    transactions: int
    bytes_per_transaction: float
    peak_bytes_per_transaction: float
    # sippy only: the figure once its retransmission cache is purged.
    without_cache_bytes_per_transaction: float | None = None


def measure_memory(make: Callable[[], Element], n: int) -> Memory:
    """Traced bytes an element holds per in-flight transaction, N INVITEs ringing."""
    calls = new_calls(n, "mem")
    gc.collect()
    tracemalloc.start()
    try:
        element = make()
        gc.collect()
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for call in calls:
            start_call(call, element)
        element.settle()
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
        held = element.transactions()
        if held != 2 * n:
            raise FlowError(f"{element.name} holds {held} transactions for {n} calls in flight")
        without_cache = None
        if isinstance(element, SippyElement):
            element.drop_retransmission_cache()
            gc.collect()
            after, _ = tracemalloc.get_traced_memory()
            without_cache = (after - base) / held
            element.close()
    finally:
        tracemalloc.stop()
    return Memory(n, held, (current - base) / held, (peak - base) / held, without_cache)


# --------------------------------------------------------------------------
# Profile


def profile_sipcore(calls: int, top: int = 15) -> None:
    element = SipcoreElement()
    run_round(element, new_calls(50, "prof.warm"))
    batch = new_calls(calls, "prof")
    tally = [0] * len(RECEIVED)
    profiler = cProfile.Profile()
    gc.collect()
    gc.disable()  # as in a timed round
    try:
        profiler.enable()
        for call in batch:
            run_call(call, element.deliver, element.hop_by_hop_ack, tally)
        element.finish()
        profiler.disable()
    finally:
        gc.enable()
    print()
    print(f"sipcore profile, {calls} calls (cProfile, gc off; the scripted UAs are in it too)")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


# --------------------------------------------------------------------------
# Report


SIDE_NOTE = (
    "Not the same work: sippy does less in two places (it adds no Record-Route, and keeps",
    "no transaction past its final response or ACK, so it has no Timers J/K/L/M to run)",
    "and other work in one (it sends its own ACK for the 200, hop by hop, where sipcore",
    "routes the UAC's). sippy alone hashes every datagram (MD5) for its retransmission",
    "cache. The module docstring has the details.",
)


def print_report(
    args: argparse.Namespace,
    throughput: dict[str, Throughput],
    memory: dict[str, Memory],
    errors: dict[str, str],
) -> None:
    core, peer = throughput.get("sipcore"), throughput.get("sippy")
    rounds, calls = args.rounds, args.calls
    print()
    print(f"Calls per second (INVITE/180/200/ACK/BYE/200), best of {rounds} rounds of {calls}")
    header = "{:<34} {:>10} {:>10} {:>14}".format("", "sipcore", "sippy", "sipcore/sippy")
    print(header)
    print("-" * len(header))

    def row(label: str, a: float | None, b: float | None, fmt: str, ratio: float | None) -> None:
        sa = format(a, fmt) if a is not None else "n/a"
        sb = format(b, fmt) if b is not None else "n/a"
        sr = f"{ratio:.2f}x" if ratio is not None else "n/a"
        print(f"{label:<34} {sa:>10} {sb:>10} {sr:>14}")

    def ratio(a: float | None, b: float | None) -> float | None:
        return a / b if a and b else None

    a = core.best_calls_s if core else None
    b = peer.best_calls_s if peer else None
    row("calls/s, best", a, b, ".0f", ratio(a, b))
    a = core.median_calls_s if core else None
    b = peer.median_calls_s if peer else None
    row("calls/s, median", a, b, ".0f", ratio(a, b))
    a = core.per_call_us_best if core else None
    b = peer.per_call_us_best if peer else None
    row("µs per call, best", a, b, ".1f", ratio(b, a))
    a = core.harness_us if core else None
    b = peer.harness_us if peer else None
    row("  of which scripted UAs + checks", a, b, ".1f", None)
    a = core.per_call_us_best - core.harness_us if core else None
    b = peer.per_call_us_best - peer.harness_us if peer else None
    row("µs per call, element only", a, b, ".1f", ratio(b, a))

    mc, mp = memory.get("sipcore"), memory.get("sippy")
    print()
    print(f"Bytes per in-flight transaction ({args.inflight} INVITEs ringing, tracemalloc)")
    print(header.replace("sipcore/sippy", "sippy/sipcore"))
    print("-" * len(header))
    a = mc.bytes_per_transaction if mc else None
    b = mp.bytes_per_transaction if mp else None
    row("held", a, b, ".0f", ratio(b, a))
    b2 = mp.without_cache_bytes_per_transaction if mp else None
    row("held, sippy's retransmit cache purged", a, b2, ".0f", ratio(b2, a))
    a = mc.peak_bytes_per_transaction if mc else None
    b = mp.peak_bytes_per_transaction if mp else None
    row("peak during set-up", a, b, ".0f", ratio(b, a))
    print()
    for line in SIDE_NOTE:
        print(line)
    for name, reason in errors.items():
        print(f"{name} FAILED its flow checks: {reason}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Calls per second and bytes per transaction: sipcore's proxy core"
        " against sippy's transaction manager."
    )
    p.add_argument("--check", action="store_true", help="exit 1 when a call flow failed its checks")
    p.add_argument("--json", metavar="PATH", type=Path, help="write the results as JSON")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per library (default 7)")
    p.add_argument("--calls", type=int, default=1000, help="calls per round (default 1000)")
    p.add_argument(
        "--inflight", type=int, default=2000, help="calls in flight for the memory figure"
    )
    p.add_argument("--profile", action="store_true", help="also print a cProfile of sipcore")
    p.add_argument("--quick", action="store_true", help="3 rounds of 100 calls, 200 in flight")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.calls, args.inflight = 3, 100, 200
    if args.rounds < 1 or args.calls < 1 or args.inflight < 1:
        p.error("--rounds, --calls and --inflight must be >= 1")
    if args.rounds > 100 or args.calls > 100_000 or args.inflight > 100_000:
        p.error("--rounds <= 100, --calls and --inflight <= 100000")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    errors: dict[str, str] = {}
    elements: list[Element] = [SipcoreElement()]
    factories: dict[str, Callable[[], Element]] = {"sipcore": SipcoreElement}
    try:
        elements.append(SippyElement())
        factories["sippy"] = SippyElement
    except Exception as exc:
        errors["sippy"] = f"unavailable: {type(exc).__name__}: {exc}"
        print(f"!! sippy is unavailable ({errors['sippy']})", file=sys.stderr)

    info = machine_info()
    print("sipcore transaction-layer benchmark")
    print(f"platform : {info['platform']}")
    print(f"python   : {info['python']}")
    print(f"cpu      : {info['cpu']}")
    print(f"nproc    : {info['nproc']} (os.cpu_count {info['cpu_count']})")
    for element in elements:
        print(f"{element.name:<9}: {element.version}")
    print(
        f"timing   : {args.rounds} rounds of {args.calls} calls per library, interleaved,"
        " best kept, gc off in a round"
    )

    throughput = measure_throughput(elements, args.calls, args.rounds, errors)
    memory: dict[str, Memory] = {}
    for name, make in factories.items():
        if name in errors:
            continue
        try:
            memory[name] = measure_memory(make, args.inflight)
        except Exception as exc:
            errors[name] = f"memory: {type(exc).__name__}: {exc}"
            print(f"!! {name} failed the memory run: {errors[name]}", file=sys.stderr)
    for element in elements:
        if isinstance(element, SippyElement):
            element.close()

    print_report(args, throughput, memory, errors)
    if args.profile:
        profile_sipcore(args.calls)
    elapsed = time.perf_counter() - started
    print(f"total run time: {elapsed:.1f} s")

    if args.json is not None:
        report = {
            "machine": info,
            "libraries": {e.name: e.version for e in elements},
            "settings": {"rounds": args.rounds, "calls": args.calls, "inflight": args.inflight},
            "throughput": {k: asdict(v) for k, v in throughput.items()},
            "memory": {k: asdict(v) for k, v in memory.items()},
            "errors": errors,
            "elapsed_s": elapsed,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {args.json}")

    if args.check:
        failed = [name for name, reason in errors.items() if not reason.startswith("unavailable")]
        for name in failed:
            print(f"--check: the {name} flow failed", file=sys.stderr)
        return 1 if failed or "sipcore" not in throughput else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
