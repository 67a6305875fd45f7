"""rtpengine on every call: the media part of ``sipcore-proxy``'s routing script.

This module owns :class:`MediaRelay`, Kamailio's ``rtpengine_manage()`` as
the load balancer uses it, over a :class:`sipcore_media.Rtpengine`: an
offer for the SDP of an initial INVITE before it is relayed (the request
suspended meanwhile), an answer for the SDP of its 1xx/2xx before they are
forwarded, a delete when the call ends (BYE, a final failure such as the
487 after a CANCEL, a dialog timeout), and the same for re-INVITEs, UPDATE,
PRACK and the ACK of a late offer, both directions. It owns the counters
``GET /stats`` shows and the dialog variable (``rtpengine``, the node a
call is on) that lets a call set up before a restart be deleted after it.

It is sans-I/O like the libraries: the ng datagrams go out through
:meth:`MediaRelay.take_transmits`, those that come back in through
:meth:`MediaRelay.receive`, and its timers run inside the proxy's (it is one
of ``proxy.services``). It never opens a socket or reads a clock.

**Holding a response.** The proxy core forwards a response as soon as its
reply hooks return: a provisional can only be dropped there and a 2xx not
even that. The answer for a 2xx with SDP needs a round trip to rtpengine,
so the response is held one level out, where the core's output is data:
the reply hook starts the command and marks the response; :meth:`filter`
takes the core's :class:`~sipcore.Send` of that response out of what goes
on the wire (and any resend of it); when rtpengine's reply has rewritten
the SDP of that same Response object, the Send is released through
:meth:`take_sends`, in the order the responses came. Retransmissions of a
held response from the UAS are swallowed until its answer is back, then
rewritten from the answer already had.

**Never stalling.** Every command is asynchronous: a request or response
waiting for rtpengine holds up nothing else. A dead node costs at most
``rtpengine_retr`` × ``rtpengine_tout_ms`` before the pool disables it and
moves every command waiting on it on; with no node left a command fails
at once, and the INVITE is answered 503 (``on_failure = "reject"``) or
relayed with its SDP unchanged (``"passthrough"``). A failed answer or
delete never holds a call: the message goes on unchanged.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterable
from typing import Final

import attrs

from sipcore import (
    Branch,
    ParseError,
    Proxy,
    RequestContext,
    Response,
    Send,
    SipError,
)
from sipcore_dialog import Dialog, DialogTracker
from sipcore_dialog import events as dialog_events
from sipcore_media import (
    CommandFailed,
    MediaError,
    MediaEvent,
    NodeDisabled,
    NodeEnabled,
    NodeInfo,
    ReplyReceived,
    Rtpengine,
    SipContext,
    Transmit,
    apply_sdp,
    build_command,
    extract_sdp,
    manage_command,
)

from .config import MediaOptions
from .logs import event

__all__ = ["MEDIA_VAR", "MediaCounters", "MediaRelay"]

log = logging.getLogger("sipcore.app.media")

#: The dialog variable naming the rtpengine node a call's media is on.
MEDIA_VAR: Final = "rtpengine"
#: The answer to a call whose offer no rtpengine node took (``on_failure = "reject"``).
REJECT_STATUS: Final = 503
REJECT_REASON: Final = "No media relay available"
# ctx.data key of a request's media exchange.
_EXCHANGE: Final = "app.media"
# Calls known in memory (their node, their From tag); a call pushed out
# still has its dialog variable.
_MAX_CALLS: Final = 1_000_000
# Requests whose replies may carry an answer (or, with no SDP in the
# request, an offer): the stateful ones of the offer/answer model.
_EXCHANGES: Final = frozenset({"INVITE", "UPDATE", "PRACK"})

_Key = tuple[str | None, int, int]  # To tag, CSeq number, status: one response and its resends


@attrs.define
class MediaCounters:
    """What the media part did, since start (``GET /stats``)."""

    offers: int = 0
    answers: int = 0
    deletes: int = 0
    failed: int = 0  # commands that ended with no usable reply (delete included)
    rejected: int = 0  # requests answered 503 because no node took their offer
    passed_through: int = 0  # messages sent on with their SDP unchanged after a failure
    held: int = 0  # responses held for their answer


@attrs.define(eq=False)
class _Call:
    call_id: str
    from_tag: str
    node: str | None


@attrs.define(eq=False)
class _Held:
    """A response waiting for rtpengine: the Send the core made for it is
    kept back until ``done``. ``release`` is False for a UAS's resend of a
    response already held: it is dropped, the first one goes."""

    response: Response
    key: _Key
    release: bool
    done: bool = False
    send: Send | None = None


@attrs.define(eq=False)
class _Exchange:
    """One request's media (``ctx.data``): what its replies need."""

    call_id: str
    initial: bool  # the call's initial INVITE
    offer_in_request: bool
    managed: bool = True  # False: an offer that failed and passed through
    answered: dict[_Key, bytes | None] = attrs.field(factory=dict)  # None: failed
    in_flight: set[_Key] = attrs.field(factory=set)
    queue: collections.deque[_Held] = attrs.field(factory=collections.deque)


@attrs.define(eq=False)
class _RequestJob:
    ctx: RequestContext
    command: str
    proceed: Callable[[float], object]
    exchange: _Exchange | None
    finished: bool = False


@attrs.define(eq=False)
class _ReplyJob:
    ctx: RequestContext
    command: str
    exchange: _Exchange
    held: _Held


@attrs.define(eq=False)
class _DeleteJob:
    call_id: str
    why: str


Outcome = ReplyReceived | CommandFailed


class MediaRelay:
    """rtpengine offer, answer and delete for the calls of one proxy.

    Call :meth:`attach` once the proxy is made; the routing script hands
    each request to :meth:`on_request` (True: the request is the media
    part's until it calls ``proceed(now)`` or answers it). ``cookie_prefix``
    is for tests; by default each run draws a random one.
    """

    def __init__(self, options: MediaOptions, *, cookie_prefix: str | None = None) -> None:
        self.options = options
        self.rtp = Rtpengine(options.rtpengine_config(), cookie_prefix=cookie_prefix)
        self.counters = MediaCounters()
        self._proxy: Proxy | None = None
        self._calls: dict[str, _Call] = {}
        self._held: dict[int, _Held] = {}
        self._transmits: list[Transmit] = []
        self._node_events: list[NodeDisabled | NodeEnabled] = []
        self._released: list[Send] = []
        self._watchers: dict[int, Callable[[Outcome], object]] = {}

    # -- plumbing ------------------------------------------------------------------

    def attach(self, proxy: Proxy, tracker: DialogTracker | None = None) -> None:
        """Run on ``proxy``'s timers, see the responses it forwards, and end
        the media of the dialogs ``tracker`` ends."""
        self._proxy = proxy
        proxy.services.append(self)
        proxy.hooks.response_forwarded.append(self._forwarded)
        if tracker is not None:
            tracker.subscribe(
                dialog_events.DialogEnd, lambda e: self._dialog_over(e.dialog, "dialog ended")
            )
            tracker.subscribe(
                dialog_events.DialogFailed, lambda e: self._dialog_over(e.dialog, "dialog failed")
            )

    @property
    def now(self) -> float:
        return self._proxy.now if self._proxy is not None else 0.0

    def start(self, now: float) -> None:
        """Ping every node, as Kamailio does at startup (``ping_mode``); one
        that does not answer is out of the selection until it does."""
        self._handle(self.rtp.pool.start(now), now)

    def next_deadline(self) -> float | None:
        return self.rtp.next_deadline()

    def tick(self, now: float) -> None:
        try:
            events = self.rtp.tick(now)
        except SipError as exc:  # pragma: no cover - rewriting an SDP that was found before
            log.warning("rtpengine tick: %s", exc.reason)
            return
        self._handle(events, now)

    def receive(self, datagram: bytes, source: tuple[str, int], now: float) -> None:
        """A datagram from the ng socket. Requests it lets go and responses
        it releases are queued in the proxy and in :meth:`take_sends`."""
        try:
            events = self.rtp.receive(datagram, now, source=source)
        except SipError as exc:  # pragma: no cover - rewriting an SDP that was found before
            log.warning("rtpengine reply from %s:%s: %s", *source, exc.reason)
            return
        self._handle(events, now)

    def take_transmits(self) -> list[Transmit]:
        """The ng datagrams to send, since the last call."""
        out, self._transmits = self._transmits, []
        return out

    def take_node_events(self) -> list[NodeDisabled | NodeEnabled]:
        """Nodes that left or rejoined the selection, since the last call."""
        out, self._node_events = self._node_events, []
        return out

    def take_sends(self) -> list[Send]:
        """Responses whose answer came back, to go on the wire now."""
        out, self._released = self._released, []
        return out

    def filter(self, sends: Iterable[Send]) -> list[Send]:
        """``sends`` without those of a response held for its answer."""
        out = []
        for send in sends:
            held = self._held.get(id(send.message)) if self._held else None
            if held is not None and held.response is send.message:
                if held.send is None:
                    held.send = send
                continue
            out.append(send)
        return out

    # -- what the management endpoint asks ---------------------------------------------

    def show(self, url: str = "all") -> list[NodeInfo]:
        """Kamailio: ``rtpengine.show``; sipcore_media.ConfigError for an unknown URL."""
        return self.rtp.show(url)

    def enable(self, url: str, enabled: bool, now: float) -> list[int]:
        """Kamailio: ``rtpengine.enable url|all 0|1``; the ids of the pings
        sent (1 enables a node when it answers), for :meth:`watch`."""
        events = self.rtp.enable(url, enabled, now)
        pings = [e.command_id for e in events if isinstance(e, Transmit)]
        self._handle(events, now)
        return pings

    def watch(self, command_id: int, callback: Callable[[Outcome], object]) -> None:
        """Call ``callback`` with how command ``command_id`` ended."""
        self._watchers[command_id] = callback

    def forget(self, command_id: int) -> None:
        self._watchers.pop(command_id, None)

    @property
    def calls(self) -> int:
        """Calls whose media is on a node now (as far as this process knows)."""
        return len(self._calls)

    # -- requests --------------------------------------------------------------------

    def on_request(self, ctx: RequestContext, proceed: Callable[[float], object]) -> bool:
        """The script's ``rtpengine_manage()`` for a request about to be relayed
        (an initial INVITE once its destination is chosen, an in-dialog
        request once loose-routed). False: nothing to wait for, relay it
        now. True: an offer or answer is out; ``proceed(now)`` relays it
        when rtpengine has rewritten its SDP, or the request is answered
        503 when no node took an offer (``on_failure = "reject"``)."""
        request = ctx.request
        try:
            call_id = request.call_id
            initial = request.to.tag is None
        except ParseError:
            return False
        method = ctx.method
        if initial and method != "INVITE":
            return False
        if not initial and not self._is_media_call(ctx, call_id):
            return False
        if method == "BYE":
            self.end_call(call_id, self.now, "BYE", dialog=_dialog_of(ctx))
            return False  # the delete needs no answer before the BYE goes on
        has_sdp = extract_sdp(request) is not None
        exchange = None
        if method in _EXCHANGES and not ctx.is_stateless:
            exchange = _Exchange(call_id, initial, offer_in_request=has_sdp)
            ctx.data[_EXCHANGE] = exchange
            ctx.on_reply(self._on_reply)
        try:
            command = manage_command(request)
        except MediaError:
            return False
        if command not in ("offer", "answer"):
            return False  # no SDP: a late offer comes in the 2xx
        job = _RequestJob(ctx, command, proceed, exchange)
        flags = self.options.offer_flags if command == "offer" else self.options.answer_flags
        function = self.rtp.rtpengine_offer if command == "offer" else self.rtp.rtpengine_answer
        try:
            events = function(request, ctx.now, flags, source=ctx.source, context=job)
        except MediaError as exc:  # the message lacks what the command needs
            self._request_failed(job, exc, (), ctx.now)
            return True
        self._handle(events, ctx.now)
        if not job.finished and not ctx.is_stateless:
            ctx.suspend()  # Kamailio waits in the worker; here nothing waits
        return True

    def _request_done(self, job: _RequestJob, outcome: Outcome, now: float) -> None:
        job.finished = True
        if isinstance(outcome, CommandFailed):
            self._request_failed(job, outcome.error, outcome.tried, now)
            return
        ctx, exchange = job.ctx, job.exchange
        self._count(job.command)
        over = not ctx.is_stateless and (ctx.final_sent is not None or ctx.cancelled)
        if job.command == "offer" and exchange is not None and exchange.initial:
            if over:  # cancelled, or over the suspend bound (408): delete at once
                self._remember(_Call(exchange.call_id, _from_tag(ctx), outcome.node))
                self.end_call(exchange.call_id, now, "answered before the offer came back")
                return
            self._started(ctx, exchange.call_id, outcome.node)
        if not over:
            self._proceed(job, now)

    def _request_failed(
        self, job: _RequestJob, error: SipError, tried: tuple[str, ...], now: float
    ) -> None:
        job.finished = True
        ctx, exchange = job.ctx, job.exchange
        self.counters.failed += 1
        reject = (
            job.command == "offer" and not ctx.is_stateless and self.options.on_failure == "reject"
        )
        call_id = exchange.call_id if exchange is not None else _call_id(ctx)
        event(
            "media.failed",
            f"rtpengine {job.command} for {ctx.method} {call_id} failed: {error.reason}",
            level=logging.WARNING,
            call_id=call_id,
            command=job.command,
            error=error.reason,
            tried=list(tried),
            action="rejected" if reject else "passed through",
        )
        if not ctx.is_stateless and (ctx.final_sent is not None or ctx.cancelled):
            return  # answered meanwhile
        if reject:
            self.counters.rejected += 1
            ctx.reply(REJECT_STATUS, REJECT_REASON, now=now)
            return
        if exchange is not None and job.command == "offer":
            exchange.managed = False  # nothing on rtpengine to answer: replies go as they are
        self.counters.passed_through += 1
        self._proceed(job, now)

    def _proceed(self, job: _RequestJob, now: float) -> None:
        ctx = job.ctx
        try:
            job.proceed(now)
        except SipError as exc:
            log.warning("relaying %r after rtpengine failed: %s", ctx, exc.reason)
            self._answer_instead(ctx, exc.status_hint or 500, now)
        except Exception:
            log.exception("relaying %r after rtpengine raised", ctx)
            self._answer_instead(ctx, 500, now)

    @staticmethod
    def _answer_instead(ctx: RequestContext, code: int, now: float) -> None:
        if ctx.is_stateless or ctx.final_sent is not None or ctx.pending_branches:
            return
        ctx.reply(code if 300 <= code <= 699 else 500, now=now)

    # -- responses -----------------------------------------------------------------------

    def _on_reply(self, ctx: RequestContext, branch: Branch, response: Response) -> bool | None:
        """``ctx.on_reply``: an answer (or a late offer) for a 1xx/2xx with SDP."""
        exchange = ctx.data.get(_EXCHANGE)
        if not isinstance(exchange, _Exchange) or not exchange.managed:
            return None
        code = response.status_code
        if code <= 100 or code >= 300 or extract_sdp(response) is None:
            return None
        try:
            key: _Key = (response.to.tag, response.cseq.number, code)
            command = manage_command(response, offer_in_request=exchange.offer_in_request)
        except (ParseError, MediaError):
            return None
        if key in exchange.answered:  # a resend of one already answered
            sdp = exchange.answered[key]
            if sdp is not None:
                apply_sdp(response, sdp)
            return None
        if key in exchange.in_flight:  # a resend while its answer is out: swallowed
            self._hold(exchange, response, key, release=False)
            return None
        if command not in ("offer", "answer"):
            return None
        held = self._hold(exchange, response, key, release=True)
        exchange.in_flight.add(key)
        self.counters.held += 1
        job = _ReplyJob(ctx, command, exchange, held)
        flags = self.options.offer_flags if command == "offer" else self.options.answer_flags
        function = self.rtp.rtpengine_offer if command == "offer" else self.rtp.rtpengine_answer
        now = self.now
        try:
            events = function(response, now, flags, source=branch.destination, context=job)
        except MediaError as exc:
            self._reply_failed(job, exc, (), now)
            return None
        self._handle(events, now)
        return None

    def _hold(self, exchange: _Exchange, response: Response, key: _Key, *, release: bool) -> _Held:
        held = _Held(response, key, release)
        exchange.queue.append(held)
        self._held[id(response)] = held
        return held

    def _reply_done(self, job: _ReplyJob, outcome: Outcome, now: float) -> None:
        if isinstance(outcome, CommandFailed):
            self._reply_failed(job, outcome.error, outcome.tried, now)
            return
        self._count(job.command)
        exchange = job.exchange
        if job.command == "offer" and exchange.initial:  # a late offer, in the 2xx
            self._started(job.ctx, exchange.call_id, outcome.node)
        self._settle(job.ctx, exchange, job.held.key, extract_sdp(job.held.response))

    def _reply_failed(
        self, job: _ReplyJob, error: SipError, tried: tuple[str, ...], now: float
    ) -> None:
        self.counters.failed += 1
        self.counters.passed_through += 1
        response = job.held.response
        event(
            "media.failed",
            f"rtpengine {job.command} for {response.status_code} {job.exchange.call_id} "
            f"failed: {error.reason}",
            level=logging.WARNING,
            call_id=job.exchange.call_id,
            command=job.command,
            error=error.reason,
            tried=list(tried),
            action="passed through",
        )
        self._settle(job.ctx, job.exchange, job.held.key, None)

    def _settle(
        self, ctx: RequestContext, exchange: _Exchange, key: _Key, sdp: bytes | None
    ) -> None:
        """The answer for ``key`` is in (None: failed): release in order.
        A provisional whose request was answered meanwhile is dropped."""
        exchange.in_flight.discard(key)
        exchange.answered[key] = sdp
        for held in exchange.queue:
            if held.key == key:
                held.done = True
        while exchange.queue and exchange.queue[0].done:
            held = exchange.queue.popleft()
            self._held.pop(id(held.response), None)
            final = ctx.final_sent
            # A final that went upstream while this was held (a 487 with no
            # SDP passes at once); one held behind it in the queue has not.
            late = (
                held.response.status_code < 200
                and final is not None
                and id(final) not in self._held
            )
            if held.release and held.send is not None and not late:
                self._released.append(held.send)

    # -- the end of a call --------------------------------------------------------------

    def _forwarded(self, ctx: RequestContext, response: Response) -> None:
        """A final failure of the initial INVITE went upstream (486, 408,
        the 487 after a CANCEL, our own 503): the call has no media."""
        if response.status_code < 300:
            return
        exchange = ctx.data.get(_EXCHANGE)
        if isinstance(exchange, _Exchange) and exchange.initial:
            self.end_call(
                exchange.call_id, self.now, f"{response.status_code}", dialog=_dialog_of(ctx)
            )

    def _dialog_over(self, dialog: Dialog, why: str) -> None:
        if dialog.call_id in self._calls or MEDIA_VAR in dialog.vars:
            self.end_call(dialog.call_id, self.now, why, dialog=dialog)

    def end_call(self, call_id: str, now: float, why: str, *, dialog: Dialog | None = None) -> bool:
        """Kamailio: ``rtpengine_delete()``: the call's media is over. Once
        per call; False when there was nothing to delete."""
        call = self._calls.pop(call_id, None)
        if call is None and dialog is not None and MEDIA_VAR in dialog.vars:
            call = _Call(call_id, dialog.from_tag, dialog.vars[MEDIA_VAR])
        if dialog is not None:
            dialog.set_var(MEDIA_VAR, None)
        if call is None:
            return False
        context = SipContext(call_id=call_id, from_tag=call.from_tag)
        try:
            document = build_command(
                "delete", self.options.delete_flags, context, self.options.flag_dialect
            )
        except MediaError as exc:  # pragma: no cover - the flags were checked at load
            log.warning("cannot build the delete for %s: %s", call_id, exc.reason)
            return False
        pool = self.rtp.pool
        node = None
        if pool.sticky_node(call_id) is None and call.node is not None:
            # Known from the dialog (a call from before a restart): its node.
            known = {info.url for info in pool.show()}
            node = call.node if call.node in known else None
        job = _DeleteJob(call_id, why)
        self._handle(pool.request(document, now, node=node, context=job), now)
        return True

    def _delete_done(self, job: _DeleteJob, outcome: Outcome) -> None:
        if isinstance(outcome, ReplyReceived):
            self.counters.deletes += 1
            return
        self.counters.failed += 1
        event(
            "media.failed",
            f"rtpengine delete for {job.call_id} ({job.why}) failed: {outcome.error.reason}",
            level=logging.WARNING,
            call_id=job.call_id,
            command="delete",
            error=outcome.error.reason,
            tried=list(outcome.tried),
            action="forgotten",
        )

    # -- bookkeeping -----------------------------------------------------------------------

    def _is_media_call(self, ctx: RequestContext, call_id: str) -> bool:
        if call_id in self._calls:
            return True
        dialog = _dialog_of(ctx)
        if dialog is None or MEDIA_VAR not in dialog.vars:
            return False
        # A call from before a restart: known again from its dialog.
        self._remember(_Call(call_id, dialog.from_tag, dialog.vars[MEDIA_VAR]))
        return True

    def _started(self, ctx: RequestContext, call_id: str, node: str) -> None:
        self._remember(_Call(call_id, _from_tag(ctx), node))
        dialog = _dialog_of(ctx)
        if dialog is not None:
            dialog.set_var(MEDIA_VAR, node)

    def _remember(self, call: _Call) -> None:
        calls = self._calls
        if call.call_id not in calls and len(calls) >= _MAX_CALLS:
            del calls[next(iter(calls))]  # the oldest; its dialog variable still says
        calls[call.call_id] = call

    def _count(self, command: str) -> None:
        if command == "offer":
            self.counters.offers += 1
        else:
            self.counters.answers += 1

    def _handle(self, events: Iterable[MediaEvent], now: float) -> None:
        for item in events:
            if isinstance(item, Transmit):
                self._transmits.append(item)
            elif isinstance(item, NodeDisabled | NodeEnabled):
                self._node_events.append(item)
            else:
                self._outcome(item, now)

    def _outcome(self, outcome: Outcome, now: float) -> None:
        watcher = self._watchers.pop(outcome.command_id, None)
        if watcher is not None:
            watcher(outcome)
        job = outcome.context
        try:
            if isinstance(job, _RequestJob):
                self._request_done(job, outcome, now)
            elif isinstance(job, _ReplyJob):
                self._reply_done(job, outcome, now)
            elif isinstance(job, _DeleteJob):
                self._delete_done(job, outcome)
        except Exception:
            log.exception("handling the rtpengine %s reply raised", outcome.command)


def _dialog_of(ctx: RequestContext) -> Dialog | None:
    dialog = ctx.data.get("dialog")
    return dialog if isinstance(dialog, Dialog) else None


def _from_tag(ctx: RequestContext) -> str:
    try:
        return ctx.request.from_.tag or ""
    except ParseError:  # pragma: no cover - the command needed it
        return ""


def _call_id(ctx: RequestContext) -> str:
    try:
        return ctx.request.call_id
    except ParseError:  # pragma: no cover - checked before any command
        return ""
