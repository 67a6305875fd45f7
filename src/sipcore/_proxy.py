"""A sans-I/O stateful proxy core (RFC 3261 section 16).

This module owns :class:`Proxy`, the engine a routing script drives, and
:class:`RequestContext`, the script's handle on one request: what
Kamailio's ``tm``, ``sl``, ``rr`` and ``maxfwd`` modules do. It validates
requests (16.3), runs the script, builds and sends branches (16.6), keeps
the response context (16.7: best response, 6xx, every 2xx forwarded),
propagates CANCEL (16.10), runs Timer C (16.8), and calls the hooks other
packages plug into. It never touches a socket or a clock: bytes and
``now`` go in, :class:`~sipcore.Send` actions come out.

What it must not do: resolve names (a resolver is passed in), parse
SDP, or keep dialog state (that is :mod:`sipcore_dialog`).
"""

from __future__ import annotations

import enum
import hashlib
import logging
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Protocol, TypeAlias

import attrs

from . import events
from ._build import MAGIC_COOKIE, make_cancel, make_response
from ._errors import LocalProtocolError, ParseError, SipError
from ._message import Request, Response, parse_message
from ._timers import TimerHandle, TimerQueue
from ._transaction import (
    ClientTransaction,
    ServerTransaction,
    State,
    TimerSettings,
    TransactionLayer,
)
from ._transport import (
    DEFAULT_PORT,
    DEFAULT_TLS_PORT,
    Endpoint,
    Send,
    is_ip_address,
    response_destination,
    stamp_received,
)
from ._uri import URI, SipURI, parse_uri

__all__ = [
    "Branch",
    "BranchState",
    "Proxy",
    "ProxyConfig",
    "ProxyHooks",
    "RequestContext",
    "Service",
    "uri_destination",
]

log = logging.getLogger("sipcore.proxy")

Resolver: TypeAlias = Callable[[str], str | None]
# Hooks may return anything (a lambda's value); only a reply hook's False counts.
RouteHook: TypeAlias = Callable[["RequestContext"], object]
BranchHook: TypeAlias = Callable[["RequestContext", "Branch"], object]
ReplyHook: TypeAlias = Callable[["RequestContext", "Branch", Response], "bool | None"]

# Responses a proxy prefers to forward among 4xx (RFC 3261 section 16.7 step 6).
_PREFERRED_4XX: Final = frozenset({401, 407, 415, 420, 484})
_CLASS_RANK: Final = {6: 0, 3: 1, 4: 2, 5: 3}


@attrs.frozen
class ProxyConfig:
    """How a :class:`Proxy` behaves.

    ``listen`` are the addresses this proxy receives on and writes in Via
    and Record-Route (Kamailio: ``listen``), ``aliases`` further host names
    that mean this proxy (``alias``). ``fr_inv_timeout`` is Timer C, the
    wait for a final response to an INVITE after a provisional (Kamailio:
    tm ``fr_inv_timer``, 120 s); ``suspend_timeout`` bounds how long a
    suspended request may wait for the script (tm ``fr_timer``).
    """

    listen: tuple[Endpoint, ...]
    aliases: frozenset[str] = frozenset()
    timers: TimerSettings = attrs.Factory(TimerSettings)
    fr_inv_timeout: float = 120.0
    suspend_timeout: float = 30.0
    send_100_trying: bool = True
    loop_detection: bool = True
    # Kamailio's rr append_fromtag (on by default): ;ftag=<From tag> in our
    # Record-Route, so in-dialog requests tell their direction (is_direction).
    append_fromtag: bool = True
    supported_extensions: frozenset[str] = frozenset()
    max_branches: int = 12
    default_max_forwards: int = 70
    server_header: str | None = None

    def __attrs_post_init__(self) -> None:
        if not self.listen:
            raise LocalProtocolError("a proxy needs at least one listen address")
        if self.max_branches < 1:
            raise LocalProtocolError("max_branches must be at least 1")


class BranchState(enum.Enum):
    PENDING = "pending"  # sent, no final response yet
    COMPLETED = "completed"  # a final response (received or local) ended it


@attrs.define(eq=False)
class Branch:
    """One destination a request was forked to (Kamailio: a tm branch)."""

    index: int
    uri: URI
    destination: Endpoint
    request: Request
    transaction: ClientTransaction | None = None
    state: BranchState = BranchState.PENDING
    provisional: Response | None = None  # the last provisional (not 100) received
    answered: bool = False  # any 1xx arrived: a CANCEL may be sent (RFC 3261 9.1)
    response: Response | None = None  # the final response, once there is one
    local: bool = False  # the final response was made here (408, 503)
    cancel_wanted: bool = False  # cancel as soon as a provisional arrives
    cancelled: bool = False  # a CANCEL was sent
    _timer_c: TimerHandle | None = None

    @property
    def status_code(self) -> int | None:
        return None if self.response is None else self.response.status_code


@attrs.define
class ProxyHooks:
    """Callbacks other packages register (dispatcher, dialog, rtpengine).

    Each list is called in order. ``request_received`` runs before the
    script for every request (ACKs included); ``relaying`` when the script
    relays or forks, before any branch is built (so it may still add
    Record-Route parameters); ``branch_sending`` before each
    branch leaves (it may edit ``branch.request``); ``reply_received`` for
    each response to a branch (return ``False`` to drop a provisional);
    ``failure`` when every branch ended without a 2xx or 6xx, before the
    script's failure route; ``response_forwarded`` for each response sent
    upstream; ``transaction_ended`` when a request's transactions are gone.
    """

    request_received: list[RouteHook] = attrs.Factory(list)
    relaying: list[RouteHook] = attrs.Factory(list)
    branch_sending: list[BranchHook] = attrs.Factory(list)
    reply_received: list[ReplyHook] = attrs.Factory(list)
    failure: list[RouteHook] = attrs.Factory(list)
    response_forwarded: list[Callable[[RequestContext, Response], object]] = attrs.Factory(list)
    transaction_ended: list[RouteHook] = attrs.Factory(list)


def _host_key(host: str) -> str:
    host = host.lower()
    return host[1:-1] if host.startswith("[") else host


def uri_destination(uri: URI, resolver: Resolver | None = None) -> Endpoint | None:
    """Where a request for ``uri`` goes: maddr or host, port, transport
    (RFC 3263 without DNS: names go through ``resolver``, which returns an
    address or None). None when the host cannot be resolved."""
    if not isinstance(uri, SipURI):
        return None
    transport = (uri.transport or ("tls" if uri.scheme == "sips" else "udp")).upper()
    if uri.scheme == "sips" and transport == "TCP":
        transport = "TLS"
    host = _host_key(uri.maddr or uri.host)
    port = uri.port or (DEFAULT_TLS_PORT if transport in ("TLS", "WSS") else DEFAULT_PORT)
    if not is_ip_address(host):
        resolved = resolver(host) if resolver is not None else None
        if resolved is None:
            return None
        host = resolved
    try:
        return Endpoint(host, port, transport)
    except LocalProtocolError:
        return None


def _next_max_forwards(received: int | None, default: int) -> int:
    """16.6 step 3: decrement Max-Forwards, or add one (70) when absent."""
    return default if received is None else max(received - 1, 0)


def _made_here(sent: Request, code: int) -> Response:
    """The final response this element makes for a request it sent that got
    none (16.8: 408, 16.9: 503), as if it had come back: our Via removed."""
    response = make_response(sent, code)
    response.remove_first("Via")
    return response


def _loop_hash(request: Request) -> str:
    """RFC 3261 section 16.6 step 8: a hash of what makes this request this
    request, so a copy that comes back unchanged is a loop (482) and one
    that comes back with a new Request-URI is a spiral."""
    parts = [
        str(request.uri),
        request.from_.tag or "",
        request.to.tag or "",
        request.call_id,
        str(request.cseq.number),
        ",".join(request.get_all("Proxy-Require")),
        ",".join(request.get_all("Route")),
    ]
    return hashlib.blake2s(
        "\n".join(parts).encode("utf-8", "surrogateescape"), digest_size=5
    ).hexdigest()


class RequestContext:
    """One request as the routing script sees it (Kamailio: the message in
    ``request_route`` and, once relayed, its tm transaction).

    The script reads ``request`` and edits it (Request-URI, headers), then
    ends with one of :meth:`reply`, :meth:`relay` / :meth:`fork`,
    :meth:`suspend` (answer later), or nothing (drop). ``data`` is free for
    the script and plugins (Kamailio's AVPs and dialog variables).
    """

    def __init__(
        self,
        proxy: Proxy,
        request: Request,
        source: Endpoint,
        transaction: ServerTransaction | None,
        now: float,
    ) -> None:
        self._proxy = proxy
        self.request = request
        self.source = source
        self.transaction = transaction
        self.now = now
        self.branches: list[Branch] = []
        self.data: dict[str, Any] = {}
        self.cancelled = False
        self.final_sent: Response | None = None
        self.suspended = False
        self.record_route_params: str | None = None  # None: no Record-Route
        self.extra_rr_params = ""  # add_rr_param(): used only with Record-Route
        self.failure_route: RouteHook | None = None
        self.reply_route: ReplyHook | None = None
        self.branch_route: BranchHook | None = None
        self.end_hooks: list[RouteHook] = []
        self._suspend_timer: TimerHandle | None = None
        self._acted = False
        self._ended = False
        # Hashed before the script edits the request: a copy that comes back
        # must hash the same to be seen as a loop. Only a stateful branch
        # carries it (a stateless ACK's branch is derived otherwise).
        stateful = transaction is not None and proxy.config.loop_detection
        self._loop_hash = _loop_hash(request) if stateful else ""
        self._in_failure = False

    # -- what the script reads -------------------------------------------

    @property
    def method(self) -> str:
        return self.request.method

    @property
    def is_stateless(self) -> bool:
        """True for an ACK to a 2xx: it is forwarded, never answered."""
        return self.transaction is None

    @property
    def pending_branches(self) -> list[Branch]:
        return [b for b in self.branches if b.state is BranchState.PENDING]

    @property
    def best_response(self) -> Response | None:
        """The response RFC 3261 section 16.7 step 6 would forward now."""
        return _best_response(self.branches)

    # -- what the script does ----------------------------------------------

    def reply(
        self,
        status_code: int,
        reason: str | None = None,
        *,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        now: float | None = None,
    ) -> Response:
        """Answer the request from here. Kamailio: ``sl_send_reply`` /
        ``t_reply`` (stateful: retransmitted, absorbs retransmissions).
        ``now`` as for :meth:`fork`."""
        self._proxy._at(now)
        if self.transaction is None:
            raise LocalProtocolError("an ACK is never answered")
        response = make_response(
            self.request,
            status_code,
            reason,
            headers=self._proxy._extra_headers(headers),
            body=body,
            content_type=content_type,
        )
        self._acted = True
        self._proxy._send_upstream(self, response)
        return response

    def record_route(self, params: str | dict[str, str | None] | None = None) -> None:
        """Put this proxy in the dialog's route set (Kamailio: ``record_route()``,
        ``record_route_preset``); ``params`` go on the URI (the dialog package
        adds its ``did`` cookie here)."""
        if isinstance(params, dict):
            text = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())
        else:
            text = "" if not params else (params if params.startswith(";") else ";" + params)
        if self.record_route_params is None:
            self.record_route_params = text
        else:
            self.record_route_params += text

    def add_rr_param(self, param: str) -> None:
        """Kamailio: ``add_rr_param(";name=value")``: a parameter for this
        proxy's Record-Route, used only when the script record-routes
        (the dialog package puts its ``did`` cookie here)."""
        self.extra_rr_params += param if param.startswith(";") else ";" + param

    def cancel_branches(self) -> None:
        """Kamailio: ``t_cancel_branches("all")``: CANCEL every pending branch.
        A request not relayed yet is answered 487."""
        self._proxy._cancel(self)

    def loose_route(self) -> bool:
        """Route-set processing (RFC 3261 16.4 and 16.12). Kamailio: ``loose_route()``.

        A Request-URI a strict router made ours is replaced by the last
        Route; Route values naming this proxy are removed from the top.
        True when the request carried a Route header (an in-dialog request
        to be forwarded along its route set).
        """
        req = self.request
        if "Route" not in req:
            return False
        proxy = self._proxy
        if proxy.is_local(req.uri) and not self._uri_has_lr(req.uri):
            # The previous hop was a strict router: our Record-Route URI is in
            # the Request-URI and the real target is the last Route value.
            routes = req.route
            last = routes[-1].uri
            values = req.get_all("Route")
            req.remove_header("Route")
            for value in values[:-1]:
                req.add_header("Route", value)
            req.uri = last
        while "Route" in req and proxy.is_local(req.route[0].uri):
            req.remove_first("Route")
        return True

    @staticmethod
    def _uri_has_lr(uri: URI) -> bool:
        return isinstance(uri, SipURI) and uri.lr

    def relay(
        self,
        target: Endpoint | URI | str | None = None,
        *,
        uri: URI | str | None = None,
        now: float | None = None,
    ) -> Branch | None:
        """Forward the request statefully (Kamailio: ``t_relay()``,
        ``t_relay_to``, ``$du``).

        ``uri`` sets the branch's Request-URI (default: the request's).
        ``target`` is where it goes: an Endpoint, or a URI (``$du``); by
        default the top Route, else the Request-URI. Raises SipError with
        status_hint 478 when no address can be had for it. Returns the new
        branch, or None for an ACK to a 2xx (forwarded statelessly).
        """
        made = self.fork([(target, uri)], now=now)
        return made[0] if made else None

    def fork(
        self,
        targets: Sequence[tuple[Endpoint | URI | str | None, URI | str | None]],
        *,
        now: float | None = None,
    ) -> list[Branch]:
        """Forward to several destinations at once (parallel forking;
        Kamailio: ``append_branch`` then ``t_relay``). Each item is
        ``(target, uri)`` as for :meth:`relay`. ``now`` is needed only when
        the script acts later, outside the proxy call that gave it this context
        (then collect the sends with :meth:`Proxy.take`)."""
        self._proxy._at(now)
        if self.cancelled:
            raise LocalProtocolError("the request was cancelled")
        if self.final_sent is not None:
            raise LocalProtocolError("a final response was sent already")
        if len(self.branches) + len(targets) > self._proxy.config.max_branches:
            raise SipError("too many branches", 500)
        self._acted = True
        for hook in self._proxy.hooks.relaying:
            hook(self)
        if self.transaction is None:
            for target, uri in targets:
                self._proxy._forward_stateless(self, target, uri)
            return []
        made = [self._proxy._new_branch(self, target, uri) for target, uri in targets]
        for branch in made:
            self._proxy._send_branch(self, branch)
        return made

    def forward(self, target: Endpoint | URI | str | None = None) -> None:
        """Forward without keeping state (Kamailio: ``forward()``)."""
        self._acted = True
        self._proxy._forward_stateless(self, target, None)

    def suspend(self) -> None:
        """Keep the request open after the script returns, to be answered
        or relayed later (Kamailio: ``t_suspend``). Bounded by
        ``suspend_timeout``: then it is answered 408."""
        self._acted = True
        self.suspended = True
        self._proxy._arm_suspend(self)

    def on_failure(self, hook: RouteHook) -> None:
        """Kamailio: ``t_on_failure``. Runs when every branch ended without
        a 2xx or 6xx; the hook may :meth:`relay` again (serial failover).
        Armed for one failure, as ``t_on_failure`` is: a hook that relays
        again and wants to see that attempt fail too arms itself again."""
        self.failure_route = hook

    def on_reply(self, hook: ReplyHook) -> None:
        """Kamailio: ``t_on_reply``. Sees each response; False drops a provisional."""
        self.reply_route = hook

    def on_branch(self, hook: BranchHook) -> None:
        """Kamailio: ``t_on_branch``. Edits each branch's request before it leaves."""
        self.branch_route = hook

    def on_end(self, hook: RouteHook) -> None:
        """Called once when this request's transactions are all gone."""
        self.end_hooks.append(hook)

    def __repr__(self) -> str:
        return f"<RequestContext {self.method} branches={len(self.branches)}>"


def _merge_challenges(best: Response, branches: Sequence[Branch]) -> Response:
    """16.7 step 7: the 401/407 sent upstream carries the challenges of every
    branch that asked for credentials, so the UAC can answer them all."""
    names = ("WWW-Authenticate", "Proxy-Authenticate")
    for branch in branches:
        other = branch.response
        if other is None or other is best or other.status_code not in (401, 407):
            continue
        for name in names:
            for value in other.get_all(name):
                if value not in best.get_all(name):
                    best.add_header(name, value)
    return best


def _best_response(branches: Sequence[Branch]) -> Response | None:
    best: tuple[tuple[int, int, int], Response] | None = None
    for order, branch in enumerate(branches):
        response = branch.response
        if response is None or response.status_code < 300:
            continue
        code = response.status_code
        rank = (_CLASS_RANK.get(code // 100, 4), 0 if code in _PREFERRED_4XX else 1, order)
        if best is None or rank < best[0]:
            best = (rank, response)
    return None if best is None else best[1]


@attrs.define
class _LocalRequest:
    """The owner of a client transaction the proxy started itself."""

    callback: Callable[[Response], object] | None
    on_failure: Callable[[int], object] | None = None


class Service(Protocol):
    """Something with its own timers that runs inside the proxy's
    :meth:`Proxy.tick` (the dialog tracker, the dispatcher's prober)."""

    def next_deadline(self) -> float | None: ...
    def tick(self, now: float) -> object: ...


class Proxy:
    """A stateful SIP proxy core with a routing script.

    ``route`` is the script (Kamailio: ``request_route``): called with a
    :class:`RequestContext` for every request that passed validation. Feed
    it with :meth:`receive` (datagrams or framed stream messages), drive
    its timers with :meth:`next_deadline` / :meth:`tick`, and send what
    comes back. ``resolver`` turns a host name into an address (no DNS here).
    """

    def __init__(
        self,
        config: ProxyConfig,
        route: RouteHook,
        *,
        resolver: Resolver | None = None,
        hooks: ProxyHooks | None = None,
    ) -> None:
        self.config = config
        self.route = route
        self.resolver = resolver
        self.hooks = hooks or ProxyHooks()
        self.layer = TransactionLayer(config.timers)
        self._timers: TimerQueue[tuple[str, Any]] = TimerQueue()
        self._outbox: list[Send] = []
        self._contexts: set[RequestContext] = set()
        self._now = 0.0
        self._local_hosts = {_host_key(e.host) for e in config.listen} | {
            _host_key(a) for a in config.aliases
        }
        self._local_ports = {e.port for e in config.listen}
        self._sent_by = {e.transport: e for e in reversed(config.listen)}
        self.stats = {"received": 0, "dropped": 0, "replied_locally": 0, "relayed": 0}
        # Plugins whose timers the proxy drives (see Service).
        self.services: list[Service] = []

    # -- driving it ------------------------------------------------------------

    def receive(self, data: bytes | Request | Response, source: Endpoint, now: float) -> list[Send]:
        """A datagram (or a message framed off a stream) from ``source``.

        Malformed input never raises: a request that can be answered gets a
        400 (or the status its defect calls for), anything else is dropped.
        """
        self._now = now
        self.stats["received"] += 1
        try:
            message = parse_message(data) if isinstance(data, bytes) else data
            if isinstance(message, Request):
                self._receive_request(message, source, now)
            else:
                self._receive_response(message, source, now)
        except ParseError as exc:
            self._reject(exc, source, now)
        self._drain()
        return self.take()

    def tick(self, now: float) -> list[Send]:
        """Run every timer due at ``now`` (transactions, Timer C, suspensions)."""
        self._now = now
        self.layer.tick(now)
        self._drain()
        for service in self.services:
            deadline = service.next_deadline()
            if deadline is not None and deadline <= now:
                try:
                    service.tick(now)
                except Exception:
                    log.exception("service %r raised in tick", service)
                self._drain()
        for kind, item in self._timers.pop_due(now):
            if kind == "C":
                self._timer_c(*item)
            elif kind == "suspend":
                self._suspend_expired(item)
            self._drain()
        return self.take()

    def next_deadline(self) -> float | None:
        deadlines = [
            d
            for d in (
                self.layer.next_deadline(),
                self._timers.next_deadline(),
                *(service.next_deadline() for service in self.services),
            )
            if d is not None
        ]
        return min(deadlines) if deadlines else None

    def send_request(
        self,
        request: Request,
        destination: Endpoint | None = None,
        *,
        now: float,
        on_response: Callable[[Response], object] | None = None,
        on_failure: Callable[[int], object] | None = None,
    ) -> ClientTransaction:
        """Send a request this proxy makes itself (a BYE for a timed-out
        dialog, a keepalive OPTIONS, a probe). Kamailio: tm's ``t_request``
        / ``uac`` API.

        A Via with a fresh branch is put on top; ``destination`` defaults to
        the top Route, else the Request-URI. ``on_response`` is called with
        every response, our Via removed; a timeout or a transport error is
        reported as a 408 or 503 made here, or, when ``on_failure`` is given,
        by calling it with that code instead (Kamailio's ``FAKED_REPLY``: no
        reply came). Collect the sends with :meth:`take`.
        """
        self._now = now
        if destination is None:
            target = request.route[0].uri if "Route" in request else request.uri
            destination = uri_destination(target, self.resolver)
            if destination is None:
                raise SipError(f"cannot resolve a destination for {target}", 478)
        branch = f"{MAGIC_COOKIE}lc{secrets.token_hex(10)}"
        request.add_header("Via", self._via_for(destination, branch), first=True)
        if request.max_forwards is None:
            request.max_forwards = self.config.default_max_forwards
        txn = self.layer.send_request(request, destination, now)
        txn.user_data = _LocalRequest(on_response, on_failure)
        return txn

    def send_stateless(self, message: Request | Response, destination: Endpoint) -> None:
        """Send without a transaction (an ACK for a 2xx this proxy received
        as a UAC). Collect it with :meth:`take`."""
        self.layer.send_stateless(message, destination)

    def _call_local(self, owner: _LocalRequest, response: Response) -> None:
        if owner.callback is None:
            return
        try:
            owner.callback(response)
        except Exception:
            log.exception("on_response callback raised")

    def take(self) -> list[Send]:
        """What to send since the last call (a script acting later, after
        :meth:`RequestContext.suspend`, queues here)."""
        self._drain()
        out = self._outbox
        self._outbox = []
        return out

    def transport_error(self, send: Send, now: float) -> list[Send]:
        """The adapter could not send ``send`` (connection refused, ICMP)."""
        self._now = now
        txn = self.layer.find_for_send(send)
        if txn is not None:
            self.layer.transport_error(txn, now)
        self._drain()
        return self.take()

    @property
    def now(self) -> float:
        """The time of the call being handled (or of the last one)."""
        return self._now

    def _at(self, now: float | None) -> None:
        if now is not None:
            self._now = now

    @property
    def active_requests(self) -> int:
        """Requests whose transactions are not all gone yet."""
        return len(self._contexts)

    def is_local(self, uri: URI) -> bool:
        """True when ``uri`` names this proxy (a listen address or alias)."""
        if not isinstance(uri, SipURI):
            return False
        default = DEFAULT_TLS_PORT if uri.scheme == "sips" else DEFAULT_PORT
        return self._is_ours(uri.host, uri.port, default)

    def _is_ours(self, host: str, port: int | None, default_port: int) -> bool:
        """``host:port`` (port absent: ``default_port``) is a listen address or alias."""
        return _host_key(host) in self._local_hosts and (port or default_port) in self._local_ports

    def local_endpoint(self, transport: str) -> Endpoint:
        """The listen address this proxy sends from, and writes in Via and
        Record-Route, for ``transport``: the first of that transport, else
        the first of all."""
        return self._sent_by.get(transport) or self.config.listen[0]

    # -- requests ------------------------------------------------------------------

    def _reject(self, exc: ParseError, source: Endpoint, now: float) -> None:
        message = exc.message
        if not isinstance(message, Request) or message.method == "ACK":
            self.stats["dropped"] += 1
            log.debug("dropped unparseable input from %s: %s", source, exc.reason)
            return
        try:
            response = make_response(message, exc.status_hint or 400)
            destination = response_destination(message.via[0], source)
        except (SipError, IndexError):
            self.stats["dropped"] += 1
            return
        self.stats["replied_locally"] += 1
        self._outbox.append(Send(response, destination))

    def _receive_request(self, request: Request, source: Endpoint, now: float) -> None:
        # What the transaction layer and every response need: without it a
        # request can only be answered 400 (ParseError carries the message).
        if not request.via:
            raise ParseError("missing Via header", 400, request)
        request.via[0], request.call_id, request.cseq, request.from_, request.to
        if request.cseq.method != request.method:
            raise ParseError("CSeq method does not match the request method", 400, request)
        stamp_received(request, source)
        self.layer.receive(request, source, now)

    def _on_request(self, txn: ServerTransaction, request: Request, now: float) -> None:
        ctx = RequestContext(self, request, txn.source, txn, now)
        txn.user_data = ctx
        self._contexts.add(ctx)
        if request.method == "CANCEL":
            self._on_cancel(ctx)
            return
        status = self._check(ctx)
        if status is not None:
            code, extra = status
            ctx.reply(code, headers=extra)
            self.stats["replied_locally"] += 1
            return
        if request.method == "INVITE" and self.config.send_100_trying:
            self.layer.send_response(txn, make_response(request, 100), now)
        self._run_script(ctx)

    def _check(self, ctx: RequestContext) -> tuple[int, list[tuple[str, str]]] | None:
        """RFC 3261 section 16.3 steps 3-5: Max-Forwards, loops, Proxy-Require."""
        request = ctx.request
        max_forwards = request.max_forwards
        if max_forwards is not None and max_forwards <= 0:
            return (483, [])
        if self.config.loop_detection and self._is_loop(request, ctx._loop_hash):
            return (482, [])
        required = [v.strip() for v in request.get_all("Proxy-Require")]
        unsupported = [o for o in required if o.lower() not in self.config.supported_extensions]
        if unsupported:
            return (420, [("Unsupported", ", ".join(unsupported))])
        return None

    def _is_loop(self, request: Request, loop_hash: str) -> bool:
        """A Via of ours whose branch carries this request's loop hash."""
        wanted = MAGIC_COOKIE + loop_hash + "."
        return any(
            self._is_ours(via.host, via.port, DEFAULT_PORT)
            and (via.branch or "").startswith(wanted)
            for via in request.via
        )

    def _run_script(self, ctx: RequestContext) -> None:
        try:
            for hook in self.hooks.request_received:
                hook(ctx)
                if ctx._acted:
                    break
            if not ctx._acted:
                self.route(ctx)
        except SipError as exc:
            log.warning("route failed for %r: %s", ctx, exc.reason)
            self._fail(ctx, exc.status_hint or 500)
            return
        except Exception:
            log.exception("route raised for %r", ctx)
            self._fail(ctx, 500)
            return
        if not ctx._acted and ctx.transaction is not None:
            # The script did nothing: drop the request, as Kamailio does when
            # a route exits without a reply. A retransmission runs it again.
            self.stats["dropped"] += 1
            self.layer.drop(ctx.transaction)

    def _fail(self, ctx: RequestContext, code: int) -> None:
        if ctx.transaction is None or ctx.final_sent is not None:
            return
        if ctx.pending_branches:
            return  # branches are out: their outcome answers the request
        try:
            ctx.reply(code if 300 <= code <= 699 else 500)
        except SipError:  # pragma: no cover - our own response
            log.exception("could not answer %r", ctx)

    def _on_ack(self, event: events.AckReceived) -> None:
        ctx = RequestContext(self, event.request, event.source, None, self._now)
        if event.request.max_forwards is not None and event.request.max_forwards <= 0:
            return
        self._run_script(ctx)

    def _on_cancel(self, ctx: RequestContext) -> None:
        assert ctx.transaction is not None
        cancel = ctx.request
        invite_txn = self.layer.find_cancelled(cancel)
        invite_ctx = invite_txn.user_data if invite_txn is not None else None
        if not isinstance(invite_ctx, RequestContext):
            ctx.reply(481)
            return
        ctx.reply(200)
        self._cancel(invite_ctx)

    def _cancel(self, ctx: RequestContext) -> None:
        """Cancel every pending branch of ``ctx`` (16.10); answer 487 when
        nothing was relayed yet."""
        ctx.cancelled = True
        if ctx.final_sent is not None:
            return
        if not ctx.pending_branches:
            if ctx.transaction is not None:
                ctx.reply(487)
            return
        for branch in ctx.pending_branches:
            self._cancel_branch(ctx, branch)

    def _cancel_branch(self, ctx: RequestContext, branch: Branch) -> None:
        if branch.cancelled or branch.state is not BranchState.PENDING:
            return
        txn = branch.transaction
        if not branch.answered or txn is None:
            branch.cancel_wanted = True  # RFC 3261 9.1: wait for a provisional
            return
        branch.cancelled = True
        cancel = make_cancel(branch.request)
        self.layer.send_request(cancel, branch.destination, self._now)
        self.layer.cancel_sent(txn, self._now)

    # -- branches ----------------------------------------------------------------------

    def _target(
        self, ctx: RequestContext, target: Endpoint | URI | str | None, uri: URI | str | None
    ) -> tuple[URI, Endpoint, Request]:
        request = parse_message(bytes(ctx.request))
        assert isinstance(request, Request)
        # 16.6 step 3; for a stateful request the checks made sure it is above 0.
        request.max_forwards = _next_max_forwards(
            request.max_forwards, self.config.default_max_forwards
        )
        if uri is not None:
            request.uri = uri
        if isinstance(target, str):
            target = parse_uri(target)
        if target is None and "Route" in request:
            top = request.route[0].uri
            if isinstance(top, SipURI) and not top.lr:
                # 16.6 step 7: the next hop is a strict router.
                request.add_header("Route", f"<{request.uri}>")
                request.remove_first("Route")
                request.uri = top
            target = top
        if target is None:
            target = request.uri
        if isinstance(target, Endpoint):
            destination: Endpoint | None = target
        else:
            destination = uri_destination(target, self.resolver)
        if destination is None:
            raise SipError(f"cannot resolve a destination for {target}", 478)
        return request.uri, destination, request

    def _via_for(self, destination: Endpoint, branch: str) -> str:
        local = self.local_endpoint(destination.transport)
        return f"SIP/2.0/{destination.transport} {local.hostport};branch={branch}"

    def _new_branch(
        self, ctx: RequestContext, target: Endpoint | URI | str | None, uri: URI | str | None
    ) -> Branch:
        branch_uri, destination, request = self._target(ctx, target, uri)
        if ctx.record_route_params is not None and request.method != "ACK":
            local = self.local_endpoint(ctx.source.transport)
            transport = "" if local.transport == "UDP" else f";transport={local.transport.lower()}"
            from_tag = ctx.request.from_.tag if self.config.append_fromtag else None
            ftag = f";ftag={from_tag}" if from_tag else ""
            request.add_header(
                "Record-Route",
                f"<sip:{local.hostport}{transport};lr{ftag}{ctx.record_route_params}"
                f"{ctx.extra_rr_params}>",
                first=True,
            )
        branch_id = f"{MAGIC_COOKIE}{ctx._loop_hash}.{secrets.token_hex(8)}"
        request.add_header("Via", self._via_for(destination, branch_id), first=True)
        branch = Branch(len(ctx.branches), branch_uri, destination, request)
        ctx.branches.append(branch)
        return branch

    def _send_branch(self, ctx: RequestContext, branch: Branch) -> None:
        try:
            for hook in self.hooks.branch_sending:
                hook(ctx, branch)
            if ctx.branch_route is not None:
                ctx.branch_route(ctx, branch)
        except Exception:
            log.exception("branch hook raised for %r", ctx)
        txn = self.layer.send_request(branch.request, branch.destination, self._now)
        txn.user_data = (ctx, branch)
        branch.transaction = txn
        self.stats["relayed"] += 1

    def _forward_stateless(
        self, ctx: RequestContext, target: Endpoint | URI | str | None, uri: URI | str | None
    ) -> None:
        _, destination, request = self._target(ctx, target, uri)
        # A stateless element's branch must be the same for a retransmission
        # (RFC 3261 16.11): derive it from the request's own top branch.
        top = ctx.request.via[0].branch or ctx.request.call_id
        digest = hashlib.blake2s(
            f"{top}\n{ctx.request.cseq}".encode("utf-8", "surrogateescape"), digest_size=8
        )
        request.add_header(
            "Via", self._via_for(destination, f"{MAGIC_COOKIE}sl{digest.hexdigest()}"), first=True
        )
        self.layer.send_stateless(request, destination)
        self.stats["relayed"] += 1

    # -- responses ------------------------------------------------------------------------

    def _receive_response(self, response: Response, source: Endpoint, now: float) -> None:
        if not response.via:
            raise ParseError("response without a Via", 400, response)
        response.via[0], response.cseq
        self.layer.receive(response, source, now)

    def _on_response(self, txn: ClientTransaction, response: Response) -> None:
        owner = txn.user_data
        if isinstance(owner, _LocalRequest):
            self._call_local(owner, response)
            return
        if not isinstance(owner, tuple):
            return  # a response to a CANCEL we sent: nothing goes upstream
        ctx, branch = owner
        response.remove_first("Via")
        self._branch_response(ctx, branch, response, local=False)

    def _branch_response(
        self, ctx: RequestContext, branch: Branch, response: Response, *, local: bool
    ) -> None:
        code = response.status_code
        keep = True
        try:
            for hook in self.hooks.reply_received:
                if hook(ctx, branch, response) is False:
                    keep = False
            if ctx.reply_route is not None and ctx.reply_route(ctx, branch, response) is False:
                keep = False
        except Exception:
            log.exception("reply hook raised for %r", ctx)
        if code < 200:
            if branch.state is not BranchState.PENDING:
                return
            branch.answered = True
            if code > 100:
                branch.provisional = response
            if ctx.request.method == "INVITE":
                self._arm_timer_c(ctx, branch)
            if branch.cancel_wanted:
                self._cancel_branch(ctx, branch)
            if code > 100 and keep and ctx.final_sent is None:
                self._send_upstream(ctx, response)
            return
        if 200 <= code < 300:
            # Every 2xx is forwarded, retransmissions and other branches' too (16.7 step 5).
            first = branch.state is BranchState.PENDING
            self._complete(branch, response, local)
            self._send_upstream(ctx, response)
            if first:
                for other in ctx.pending_branches:
                    self._cancel_branch(ctx, other)
            self._maybe_end(ctx)
            return
        if branch.state is not BranchState.PENDING:
            return
        self._complete(branch, response, local)
        if code >= 600:
            for other in ctx.pending_branches:
                self._cancel_branch(ctx, other)
        if not ctx.pending_branches:
            self._all_branches_failed(ctx)
        self._maybe_end(ctx)

    def _complete(self, branch: Branch, response: Response, local: bool) -> None:
        if branch.state is BranchState.PENDING:
            branch.state = BranchState.COMPLETED
            branch.response = response
            branch.local = local
        if branch._timer_c is not None:
            self._timers.cancel(branch._timer_c)
            branch._timer_c = None

    def _all_branches_failed(self, ctx: RequestContext) -> None:
        if ctx.final_sent is not None:
            return
        before = len(ctx.branches)
        if not ctx._in_failure:
            ctx._in_failure = True
            try:
                for hook in self.hooks.failure:
                    hook(ctx)
                if ctx.failure_route is not None and len(ctx.branches) == before:
                    hook_fn = ctx.failure_route
                    ctx.failure_route = None  # armed once, as t_on_failure; may re-arm
                    hook_fn(ctx)
            except SipError as exc:
                log.warning("failure route for %r: %s", ctx, exc.reason)
            except Exception:
                log.exception("failure route raised for %r", ctx)
            finally:
                ctx._in_failure = False
        if ctx.final_sent is not None or ctx.pending_branches:
            return  # the failure route answered or relayed again
        best = ctx.best_response
        if best is None:  # pragma: no cover - every completed branch has a response
            ctx.reply(500)
            return
        if best.status_code == 503:
            # 16.7 step 6: a lone 503 upstream would make the client think the
            # proxy itself is overloaded.
            best = make_response(ctx.request, 500, headers=self._extra_headers(()))
        elif best.status_code in (401, 407):
            best = _merge_challenges(best, ctx.branches)
        self._send_upstream(ctx, best)

    def _send_upstream(self, ctx: RequestContext, response: Response) -> None:
        txn = ctx.transaction
        if txn is None:
            return
        if response.status_code >= 200 and ctx.final_sent is None:
            ctx.final_sent = response
            self._cancel_suspend(ctx)
        if txn.state is State.TERMINATED:
            # A 2xx retransmission after the server transaction ended: 16.7
            # says forward it anyway, statelessly, where the request came from.
            self._outbox.append(Send(response, txn.response_destination))
        else:
            self.layer.send_response(txn, response, self._now)
        for hook in self.hooks.response_forwarded:
            try:
                hook(ctx, response)
            except Exception:
                log.exception("response_forwarded hook raised for %r", ctx)

    def _extra_headers(self, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        out = list(headers)
        if self.config.server_header:
            out.append(("Server", self.config.server_header))
        return out

    def _on_stray_response(self, event: events.StrayResponse) -> None:
        response = event.response
        if not (200 <= response.status_code < 300 and response.cseq.method == "INVITE"):
            return
        top = response.via[0] if response.via else None
        if (
            len(response.via) < 2
            or top is None
            or not self._is_ours(top.host, top.port, DEFAULT_PORT)
        ):
            return
        # A 2xx retransmission after our client transaction ended (16.7 step 3).
        response.remove_first("Via")
        via = response.via[0]
        host = via.received or via.address
        port = via.rport or via.port or DEFAULT_PORT
        try:
            destination = Endpoint(host, port, via.transport)
        except LocalProtocolError:
            return
        self._outbox.append(Send(response, destination))

    # -- timers ------------------------------------------------------------------------------

    def _arm_timer_c(self, ctx: RequestContext, branch: Branch) -> None:
        if branch._timer_c is not None:
            self._timers.cancel(branch._timer_c)
        branch._timer_c = self._timers.add(
            self._now + self.config.fr_inv_timeout, ("C", (ctx, branch))
        )

    def _timer_c(self, ctx: RequestContext, branch: Branch) -> None:
        """16.8: Timer C fired on a branch that had a provisional: CANCEL it
        and treat it as a 408 (Kamailio: fr_inv_timer)."""
        branch._timer_c = None
        if branch.state is not BranchState.PENDING:
            return
        branch.cancel_wanted = True
        self._cancel_branch(ctx, branch)
        self._local_final(ctx, branch, 408)

    def _local_final(self, ctx: RequestContext, branch: Branch, code: int) -> None:
        self._branch_response(ctx, branch, _made_here(branch.request, code), local=True)

    def _arm_suspend(self, ctx: RequestContext) -> None:
        if ctx._suspend_timer is None:
            ctx._suspend_timer = self._timers.add(
                self._now + self.config.suspend_timeout, ("suspend", ctx)
            )

    def _cancel_suspend(self, ctx: RequestContext) -> None:
        if ctx._suspend_timer is not None:
            self._timers.cancel(ctx._suspend_timer)
            ctx._suspend_timer = None

    def _suspend_expired(self, ctx: RequestContext) -> None:
        ctx._suspend_timer = None
        if ctx.final_sent is None and not ctx.branches and ctx.transaction is not None:
            ctx.reply(408)

    # -- events from the transaction layer ---------------------------------------------------

    def _drain(self) -> None:
        while True:
            outputs = self.layer.take()
            if not outputs:
                return
            for output in outputs:
                if isinstance(output, Send):
                    self._outbox.append(output)
                else:
                    self._event(output)

    def _event(self, event: events.TransactionEvent) -> None:
        try:
            self._dispatch_event(event)
        except SipError as exc:
            # A header the handling needed did not parse (the transaction
            # layer only read what matching needs): answer a request with the
            # error's status, drop anything else; never raise out of receive().
            self._event_failed(event, exc)

    def _event_failed(self, event: events.TransactionEvent, exc: SipError) -> None:
        self.stats["dropped"] += 1
        log.debug("could not handle %s: %s", type(event).__name__, exc.reason)
        if not isinstance(event, events.RequestReceived):
            return
        txn = event.transaction
        ctx = txn.user_data
        if isinstance(ctx, RequestContext) and (ctx.final_sent is not None or ctx.branches):
            return  # already answered or relayed: its transactions end it
        code = exc.status_hint if exc.status_hint and 300 <= exc.status_hint <= 699 else 400
        try:
            response = make_response(event.request, code)
        except SipError:
            self.layer.drop(txn)
            return
        if isinstance(ctx, RequestContext):
            ctx.final_sent = response
        self.layer.send_response(txn, response, self._now)
        self.stats["replied_locally"] += 1

    def _dispatch_event(self, event: events.TransactionEvent) -> None:
        if isinstance(event, events.RequestReceived):
            self._on_request(event.transaction, event.request, self._now)
        elif isinstance(event, events.ResponseReceived):
            self._on_response(event.transaction, event.response)
        elif isinstance(event, events.AckReceived):
            if event.transaction is None:
                self._on_ack(event)
        elif isinstance(event, events.StrayResponse):
            self._on_stray_response(event)
        elif isinstance(event, events.TransactionTimedOut | events.TransportFailed):
            self._on_txn_failure(event)
        elif isinstance(event, events.TransactionTerminated):
            self._on_terminated(event.transaction)

    def _on_txn_failure(self, event: events.TransactionTimedOut | events.TransportFailed) -> None:
        txn = event.transaction
        owner = txn.user_data
        if isinstance(owner, _LocalRequest) and isinstance(txn, ClientTransaction):
            code = 408 if isinstance(event, events.TransactionTimedOut) else 503
            if owner.on_failure is not None:
                try:
                    owner.on_failure(code)
                except Exception:
                    log.exception("on_failure callback raised")
                return
            self._call_local(owner, _made_here(txn.request, code))
            return
        if isinstance(txn, ClientTransaction) and isinstance(owner, tuple):
            ctx, branch = owner
            if branch.state is BranchState.PENDING:
                # 16.8 / 16.9: behave as if a 408 or 503 had come back.
                code = 408 if isinstance(event, events.TransactionTimedOut) else 503
                self._local_final(ctx, branch, code)

    def _on_terminated(self, txn: ServerTransaction | ClientTransaction | Any) -> None:
        owner = txn.user_data
        if isinstance(owner, tuple):
            self._maybe_end(owner[0])
        elif isinstance(owner, RequestContext):
            self._maybe_end(owner)

    def _maybe_end(self, ctx: RequestContext) -> None:
        if ctx._ended:
            return
        server = ctx.transaction
        if server is not None and server.state is not State.TERMINATED:
            return
        for branch in ctx.branches:
            txn = branch.transaction
            if txn is not None and txn.state is not State.TERMINATED:
                return
        if ctx._suspend_timer is not None:
            return
        ctx._ended = True
        for branch in ctx.branches:
            if branch._timer_c is not None:
                self._timers.cancel(branch._timer_c)
                branch._timer_c = None
        self._contexts.discard(ctx)
        for hook in [*self.hooks.transaction_ended, *ctx.end_hooks]:
            try:
                hook(ctx)
            except Exception:
                log.exception("transaction_ended hook raised for %r", ctx)
