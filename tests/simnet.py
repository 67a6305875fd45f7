"""An in-memory SIP network for tests: nodes, a seeded lossy wire, and
user agents written on sipcore's transaction layer.

Nothing here touches a socket or a clock. :class:`Network` delivers each
datagram after a random delay (so datagrams overtake each other), drops or
duplicates some, and fires every node's timers in time order. The UAC and
UAS are small but complete RFC 3261 user agents: the UAC ACKs every 2xx
(retransmissions too), CANCELs, sends BYE along the route set; the UAS
retransmits its 2xx until the ACK (section 13.3.1.4) and answers CANCEL
with 487.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from typing import Protocol

import attrs

from sipcore import (
    ClientTransaction,
    Endpoint,
    Proxy,
    Request,
    Response,
    Send,
    ServerTransaction,
    SipURI,
    State,
    TimerQueue,
    TransactionLayer,
    events,
    make_cancel,
    make_request,
    make_response,
    new_branch,
    parse_message,
)


class Node(Protocol):
    endpoint: Endpoint

    def receive(self, data: bytes, source: Endpoint, now: float) -> list[Send]: ...
    def tick(self, now: float) -> list[Send]: ...
    def next_deadline(self) -> float | None: ...


@attrs.define
class Wire:
    """How the network misbehaves: probabilities per datagram, delay range in s."""

    loss: float = 0.0
    duplicate: float = 0.0
    delay: tuple[float, float] = (0.001, 0.02)


class Network:
    """Datagrams in flight between nodes, delivered in time order."""

    def __init__(self, seed: int, wire: Wire | None = None) -> None:
        self.rng = random.Random(seed)
        self.wire = wire or Wire()
        self.now = 0.0
        self.nodes: dict[tuple[str, int], Node] = {}
        self._flight: list[tuple[float, int, bytes, Endpoint, Endpoint]] = []
        self._seq = itertools.count()
        self.delivered = 0
        self.lost = 0
        self.duplicated = 0
        self.undeliverable = 0

    def add(self, node: Node) -> None:
        self.nodes[node.endpoint.address] = node

    def send(self, sends: list[Send], source: Endpoint) -> None:
        wire = self.wire
        for send in sends:
            data = send.data
            copies = 1
            if self.rng.random() < wire.duplicate:
                copies = 2
                self.duplicated += 1
            for _ in range(copies):
                if self.rng.random() < wire.loss:
                    self.lost += 1
                    continue
                at = self.now + self.rng.uniform(*wire.delay)
                heapq.heappush(self._flight, (at, next(self._seq), data, source, send.destination))

    def run(self, until: float, max_steps: int = 5_000_000) -> None:
        """Deliver and tick until ``until`` (simulated seconds)."""
        for _ in range(max_steps):
            deadlines = [d for n in self.nodes.values() if (d := n.next_deadline()) is not None]
            next_timer = min(deadlines) if deadlines else None
            next_packet = self._flight[0][0] if self._flight else None
            candidates = [t for t in (next_timer, next_packet) if t is not None]
            if not candidates or min(candidates) > until:
                self.now = until
                return
            self.now = max(self.now, min(candidates))
            if next_packet is not None and next_packet <= self.now:
                _, _, data, source, destination = heapq.heappop(self._flight)
                node = self.nodes.get(destination.address)
                if node is None:
                    self.undeliverable += 1
                    continue
                self.delivered += 1
                self.send(node.receive(data, source, self.now), node.endpoint)
                continue
            for node in list(self.nodes.values()):
                deadline = node.next_deadline()
                if deadline is not None and deadline <= self.now:
                    self.send(node.tick(self.now), node.endpoint)
        raise AssertionError(f"simulation did not settle in {max_steps} steps")

    @property
    def in_flight(self) -> int:
        return len(self._flight)


class ProxyNode:
    """A :class:`Proxy` on the simulated network."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.endpoint = proxy.config.listen[0]

    def receive(self, data: bytes, source: Endpoint, now: float) -> list[Send]:
        return self.proxy.receive(data, source, now)

    def tick(self, now: float) -> list[Send]:
        return self.proxy.tick(now)

    def next_deadline(self) -> float | None:
        return self.proxy.next_deadline()


class _Agent:
    """What the UAC and UAS share: a transaction layer and their own timers."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.layer = TransactionLayer()
        self.timers: TimerQueue[Callable[[float], None]] = TimerQueue()
        self.errors: list[str] = []
        self._pending: list[Send] = []

    def receive(self, data: bytes, source: Endpoint, now: float) -> list[Send]:
        message = parse_message(data)
        self.layer.receive(message, source, now)
        self._events(now)
        return self._sends()

    def tick(self, now: float) -> list[Send]:
        self.layer.tick(now)
        self._events(now)
        for action in self.timers.pop_due(now):
            action(now)
            self._events(now)
        return self._sends()

    def next_deadline(self) -> float | None:
        deadlines = [
            d for d in (self.layer.next_deadline(), self.timers.next_deadline()) if d is not None
        ]
        return min(deadlines) if deadlines else None

    def _sends(self) -> list[Send]:
        out = self._pending
        self._pending = []
        return out

    def _events(self, now: float) -> None:
        while True:
            outputs = self.layer.take()
            if not outputs:
                return
            for output in outputs:
                if isinstance(output, Send):
                    self._pending.append(output)
                else:
                    self.on_event(output, now)

    def on_event(self, event: events.TransactionEvent, now: float) -> None:
        raise NotImplementedError

    @property
    def idle(self) -> bool:
        return (
            self.layer.client_transactions == 0
            and self.layer.server_transactions == 0
            and self.layer.pending_timers == 0
            and len(self.timers) == 0
        )


@attrs.define
class UacCall:
    """One call as the caller sees it."""

    call_id: str
    user: str
    invite: Request
    cancel_after: float | None = None  # seconds after the first 180: send CANCEL
    provisional: bool = False
    final: int | None = None  # the INVITE's final status as the UAC saw it
    ack: Request | None = None
    bye_status: int | None = None
    timed_out: bool = False
    cancelled: bool = False

    @property
    def outcome(self) -> str:
        if self.timed_out:
            return "timeout"
        if self.final is None:
            return "unanswered"
        if 200 <= self.final < 300:
            return "completed" if self.bye_status == 200 else f"bye:{self.bye_status}"
        return str(self.final)


class Uac(_Agent):
    """Places calls through ``proxy``; hangs up ``hold`` seconds after the 200."""

    def __init__(self, endpoint: Endpoint, proxy: Endpoint, hold: float = 1.0) -> None:
        super().__init__(endpoint)
        self.proxy = proxy
        self.hold = hold
        self.calls: dict[str, UacCall] = {}

    def call(self, now: float, user: str, index: int, cancel_after: float | None = None) -> None:
        call_id = f"call-{index}@{self.endpoint.host}"
        invite = make_request(
            "INVITE",
            f"sip:{user}@example.com",
            from_="<sip:alice@example.com>",
            to=f"<sip:{user}@example.com>",
            via=f"SIP/2.0/UDP {self.endpoint.hostport};branch={new_branch()}",
            call_id=call_id,
            contact=f"<sip:alice@{self.endpoint.hostport}>",
        )
        self.calls[call_id] = UacCall(call_id, user, invite, cancel_after)
        self.layer.send_request(invite, self.proxy, now)
        self._events(now)

    def place(self, now: float, user: str, index: int, cancel_after: float | None = None) -> None:
        """Schedule a call to start at ``now`` (from outside the network loop)."""
        self.timers.add(now, lambda t: self.call(t, user, index, cancel_after))

    def on_event(self, event: events.TransactionEvent, now: float) -> None:
        if isinstance(event, events.ResponseReceived):
            self._response(event.transaction, event.response, now)
        elif isinstance(event, events.TransactionTimedOut):
            call = self.calls.get(event.transaction.request.call_id)
            if call is not None and event.transaction.request.method == "INVITE":
                call.timed_out = True
        elif isinstance(event, events.RequestReceived):
            self.errors.append(f"UAC got a request {event.request.method}")
            self.layer.send_response(event.transaction, make_response(event.request, 481), now)

    def _response(self, txn: ClientTransaction, response: Response, now: float) -> None:
        call = self.calls[response.call_id]
        method = response.cseq.method
        code = response.status_code
        if method == "INVITE":
            if code < 200:
                if code >= 180 and not call.provisional:
                    call.provisional = True
                    if call.cancel_after is not None:
                        self.timers.add(now + call.cancel_after, lambda t: self._cancel(call, t))
                return
            if call.final is None:
                call.final = code
            elif 200 <= code < 300 and call.final >= 300:
                self.errors.append(f"{call.call_id}: a 2xx after final {call.final}")
            if 200 <= code < 300:
                first = call.ack is None
                if first:
                    call.ack = self._ack(call, response)
                    self.timers.add(now + self.hold, lambda t: self._bye(call, response, t))
                assert call.ack is not None
                self.layer.send_stateless(call.ack, self.proxy)
        elif method == "BYE" and code >= 200:
            call.bye_status = code

    def _cancel(self, call: UacCall, now: float) -> None:
        if call.final is None and not call.cancelled:
            call.cancelled = True
            self.layer.send_request(make_cancel(call.invite), self.proxy, now)

    def _in_dialog(self, call: UacCall, response: Response, method: str, cseq: int) -> Request:
        contact = response.contact[0].uri
        route = [str(rr) for rr in reversed(response.record_route)]
        return make_request(
            method,
            contact,
            from_=str(call.invite.from_),
            to=str(response.to),
            via=f"SIP/2.0/UDP {self.endpoint.hostport};branch={new_branch()}",
            call_id=call.call_id,
            cseq=cseq,
            route=route,
        )

    def _ack(self, call: UacCall, response: Response) -> Request:
        return self._in_dialog(call, response, "ACK", 1)

    def _bye(self, call: UacCall, response: Response, now: float) -> None:
        self.layer.send_request(self._in_dialog(call, response, "BYE", 2), self.proxy, now)


@attrs.define
class UasCall:
    call_id: str
    transaction: ServerTransaction
    final: int | None = None
    response: Response | None = None
    acked: bool = False
    byed: bool = False
    cancelled: bool = False


class Uas(_Agent):
    """Answers by the Request-URI's user: ``ok`` rings then answers 200,
    ``busy`` answers 486, ``fail`` answers 503, ``silent`` never answers.
    ``behaviour`` overrides that for every call (a failover target)."""

    def __init__(self, endpoint: Endpoint, ring: float = 0.3, behaviour: str | None = None) -> None:
        super().__init__(endpoint)
        self.ring = ring
        self.behaviour = behaviour
        self.calls: dict[str, UasCall] = {}
        self.invites = 0

    def on_event(self, event: events.TransactionEvent, now: float) -> None:
        if isinstance(event, events.RequestReceived):
            self._request(event.transaction, event.request, now)
        elif isinstance(event, events.AckReceived):
            call = self.calls.get(event.request.call_id)
            if call is not None:
                call.acked = True

    def _request(self, txn: ServerTransaction, request: Request, now: float) -> None:
        method = request.method
        if method == "INVITE":
            self.invites += 1
            call = UasCall(request.call_id, txn)
            self.calls[request.call_id] = call
            uri = request.uri
            mode = self.behaviour or (uri.user if isinstance(uri, SipURI) else None)
            if mode == "busy":
                self._final(call, 486, now)
            elif mode == "fail":
                self._final(call, 503, now)
            elif mode == "ok":
                self.layer.send_response(
                    txn, make_response(request, 180, to_tag=self._tag(call)), now
                )
                self.timers.add(now + self.ring, lambda t: self._answer(call, t))
            elif mode == "silent":
                # A dead host: it keeps nothing, and each retransmission is
                # as unanswered as the first.
                self.layer.drop(txn)
            else:
                self.errors.append(f"unknown user {mode}")
        elif method == "CANCEL":
            invite = self.layer.find_cancelled(request)
            self.layer.send_response(txn, make_response(request, 200), now)
            pending = self.calls.get(request.call_id)
            if invite is not None and pending is not None and pending.final is None:
                pending.cancelled = True
                self._final(pending, 487, now)
        elif method == "BYE":
            ended = self.calls.get(request.call_id)
            if ended is None:
                self.layer.send_response(txn, make_response(request, 481), now)
                return
            ended.byed = True
            self.layer.send_response(txn, make_response(request, 200), now)
        else:
            self.layer.send_response(txn, make_response(request, 405), now)

    @staticmethod
    def _tag(call: UasCall) -> str:
        return "uas-" + call.call_id.split("@")[0]

    def _final(self, call: UasCall, code: int, now: float) -> None:
        request = call.transaction.request
        response = make_response(
            request,
            code,
            to_tag=self._tag(call),
            headers=[("Contact", f"<sip:bob@{self.endpoint.hostport}>")] if code < 300 else (),
        )
        call.final = code
        call.response = response
        self.layer.send_response(call.transaction, response, now)

    def _answer(self, call: UasCall, now: float) -> None:
        if call.final is not None:
            return
        self._final(call, 200, now)
        give_up = now + 32.0
        self.timers.add(now + 0.5, lambda t: self._retransmit(call, t, 0.5, give_up))

    def _retransmit(self, call: UasCall, now: float, interval: float, give_up: float) -> None:
        # RFC 3261 13.3.1.4: the UAS core retransmits the 2xx, T1 doubling to
        # T2, until the ACK comes or 64*T1 has passed.
        if call.acked or call.response is None or now >= give_up:
            return
        if call.transaction.state is State.ACCEPTED:
            self.layer.send_response(call.transaction, call.response, now)
        nxt = min(interval * 2, 4.0)
        self.timers.add(now + nxt, lambda t: self._retransmit(call, t, nxt, give_up))
