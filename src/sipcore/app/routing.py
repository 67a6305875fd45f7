"""The load balancer's routing script: what ``sipcore-proxy`` does with
each request, written against the libraries' public API only.

It is Kamailio's dispatcher example turned into Python. In-dialog requests
follow their route set (``loose_route``). An initial INVITE is checked
against the per-caller and per-account limits (dialog profiles), gets a
destination from the dispatcher, is tracked as a dialog (``dlg_manage``),
record-routed and relayed; when it fails with one of the failover codes
the destination is marked (``ds_mark_dst``) and the next one of the
selection is tried (``ds_next_dst``). Other initial requests are relayed
the same way, without a dialog. An OPTIONS to the proxy itself is
answered 200. With rtpengine nodes configured, every request is handed
to the media part (:mod:`.media`, ``rtpengine_manage()``) just before it
is relayed: an INVITE with SDP waits for its offer, a BYE deletes.

It owns the counters the management interface reports and the set of
requests still waiting for a final answer (what a graceful shutdown waits
for). It never touches a socket or reads a clock: times come from the
request context.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import attrs

from sipcore import (
    REASON_PHRASES,
    Proxy,
    RequestContext,
    Response,
    SipError,
    SipURI,
    TelURI,
)
from sipcore_dialog import DialogTracker
from sipcore_dispatch import (
    Dispatcher,
    DispatchError,
    Selection,
)
from sipcore_dispatch.events import DestinationEvent

from .config import AppConfig
from .logs import event
from .media import MediaRelay

__all__ = ["ACCOUNT_PROFILE", "CALLER_PROFILE", "Counters", "Router"]

#: The dialog profiles (with value) every call is put in.
CALLER_PROFILE: Final = "caller"
ACCOUNT_PROFILE: Final = "account"

# Keys of RequestContext.data this script uses.
_SELECTION: Final = "app.selection"
_TRIED: Final = "app.tried"  # branch index -> destination URI
# What a request is answered while the proxy shuts down.
_DRAINING_RETRY_AFTER: Final = "5"
# Dialog-forming requests get our Record-Route (Kamailio's default script).
_RECORD_ROUTED: Final = frozenset({"INVITE", "SUBSCRIBE"})


@attrs.define
class Counters:
    """What the script did, since start (``GET /stats``)."""

    over_caller_limit: int = 0
    over_account_limit: int = 0
    no_destination: int = 0
    failovers: int = 0
    marked: int = 0
    refused_draining: int = 0
    options_answered: int = 0
    not_here: int = 0


class Router:
    """The routing script (:meth:`route`) and failure route of one proxy.

    ``on_destination_event`` gets every :class:`DestinationDown` /
    :class:`DestinationUp` a failure mark causes. Set :attr:`proxy` before
    the first request (the proxy is made once its sockets are bound).
    """

    def __init__(
        self,
        config: AppConfig,
        dispatcher: Dispatcher,
        tracker: DialogTracker,
        *,
        on_destination_event: Callable[[DestinationEvent, str], object] | None = None,
        media: MediaRelay | None = None,
    ) -> None:
        self.config = config
        self.dispatcher = dispatcher
        self.tracker = tracker
        #: rtpengine control, when the configuration has nodes.
        self.media = media
        self.proxy: Proxy | None = None
        self.counters = Counters()
        #: False once a shutdown began: new requests are answered 503.
        self.accepting = True
        #: Called when the last request waiting for a final answer got one.
        self.on_idle: Callable[[], object] | None = None
        self._waiting: set[RequestContext] = set()
        self._on_destination_event = on_destination_event
        limits = config.limits
        self._limit_reason = limits.reason or REASON_PHRASES.get(limits.status, "Busy Here")

    # -- requests waiting for an answer ---------------------------------------------

    @property
    def waiting(self) -> int:
        """Requests relayed or held here that have no final answer yet."""
        return len(self._waiting)

    def hook(self, proxy: Proxy) -> None:
        """Follow ``proxy``'s answers (call once, when the proxy is made)."""
        self.proxy = proxy
        proxy.hooks.response_forwarded.append(self._answered)

    def _wait(self, ctx: RequestContext) -> None:
        if ctx.transaction is None or ctx.final_sent is not None or ctx in self._waiting:
            return
        self._waiting.add(ctx)
        ctx.on_end(self._done)

    def _answered(self, ctx: RequestContext, response: Response) -> None:
        if response.status_code >= 200:
            self._done(ctx)

    def _done(self, ctx: RequestContext) -> None:
        if ctx in self._waiting:
            self._waiting.discard(ctx)
            if not self._waiting and self.on_idle is not None:
                self.on_idle()

    # -- request_route -------------------------------------------------------------------

    def route(self, ctx: RequestContext) -> None:  # Kamailio: request_route
        request = ctx.request
        if request.to.tag is not None:
            self._within_dialog(ctx)
            return
        if ctx.method == "ACK":
            return  # an ACK outside any dialog or transaction: nothing to do
        if not self.accepting:
            self.counters.refused_draining += 1
            ctx.reply(503, headers=[("Retry-After", _DRAINING_RETRY_AFTER)])
            return
        # Kamailio's default script: an initial request's preloaded Route is dropped.
        request.remove_header("Route")
        if ctx.method == "OPTIONS" and self._is_self(ctx):
            self.counters.options_answered += 1
            ctx.reply(200)
            return
        if ctx.method == "INVITE" and not self._within_limits(ctx):
            return
        selection = self._select(ctx)
        if selection is None:
            return
        if ctx.method == "INVITE":
            self._track(ctx)
        if ctx.method in _RECORD_ROUTED:
            ctx.record_route()
        media = self.media
        if media is not None:
            self._wait(ctx)  # also while its offer is out
            if media.on_request(ctx, lambda now: self._relay(ctx, selection, now=now)):
                return
        self._relay(ctx, selection)

    def _within_dialog(self, ctx: RequestContext) -> None:
        if ctx.loose_route():
            media = self.media
            if ctx.is_stateless:  # the ACK for a 2xx
                if media is None or not media.on_request(ctx, lambda now: ctx.forward()):
                    ctx.forward()
                return
            self._wait(ctx)
            if media is None or not media.on_request(ctx, lambda now: ctx.relay(now=now)):
                ctx.relay()
            return
        if ctx.method == "ACK":
            return  # not ours to route (an ACK for a non-2xx never gets here)
        self.counters.not_here += 1
        ctx.reply(404, "Not here")

    def _is_self(self, ctx: RequestContext) -> bool:
        uri = ctx.request.uri
        proxy = self.proxy
        return (
            isinstance(uri, SipURI)
            and uri.user is None
            and proxy is not None
            and proxy.is_local(uri)
        )

    # -- limits ---------------------------------------------------------------------------

    def caller_of(self, ctx: RequestContext) -> str | None:
        """The caller a call counts against: the From URI's user (Kamailio:
        ``$fU``), or a tel: URI's number; None when there is none."""
        uri = ctx.request.from_.uri
        if isinstance(uri, SipURI):
            return uri.user or None
        if isinstance(uri, TelURI):
            return uri.number
        return None

    def account_of(self, ctx: RequestContext) -> str | None:
        """The account a call counts against, per ``limits.account_key``:
        ``from_uri`` is ``user@host`` of the From URI (``$fU@$fd``),
        ``from_domain`` its host (``$fd``), ``auth_username`` the username of
        the Proxy-Authorization, else Authorization, credentials (``$au``).
        None when the request has none (it then counts against no account)."""
        key = self.config.limits.account_key
        request = ctx.request
        if key == "auth_username":
            for credentials in (*request.proxy_authorization, *request.authorization):
                if credentials.username:
                    return credentials.username
            return None
        uri = request.from_.uri
        if not isinstance(uri, SipURI):
            return None
        host = uri.host.lower()
        if key == "from_domain":
            return host
        return f"{uri.user}@{host}" if uri.user else host

    def _within_limits(self, ctx: RequestContext) -> bool:
        limits = self.config.limits
        checks = (
            (CALLER_PROFILE, limits.per_caller, self.caller_of(ctx)),
            (ACCOUNT_PROFILE, limits.per_account, self.account_of(ctx)),
        )
        for profile, limit, value in checks:
            if not limit or value is None:
                continue
            size = self.tracker.profile_size(profile, value)
            if size < limit:
                continue
            if profile == CALLER_PROFILE:
                self.counters.over_caller_limit += 1
            else:
                self.counters.over_account_limit += 1
            event(
                "limit.reached",
                f"{profile} {value} has {size} calls (limit {limit}): answered {limits.status}",
                profile=profile,
                value=value,
                calls=size,
                limit=limit,
                status=limits.status,
                call_id=ctx.request.call_id,
            )
            ctx.reply(limits.status, self._limit_reason)
            return False
        return True

    def _track(self, ctx: RequestContext) -> None:
        dialog = self.tracker.manage(ctx)  # Kamailio: dlg_manage()
        if dialog is None or dialog.profiles:
            return  # a spiral into a dialog already counted
        caller, account = self.caller_of(ctx), self.account_of(ctx)
        if caller is not None:
            self.tracker.set_profile(dialog, CALLER_PROFILE, caller)
        if account is not None:
            self.tracker.set_profile(dialog, ACCOUNT_PROFILE, account)
        if self.config.dialog.keepalive_interval:
            self.tracker.set_property(dialog, "ka-src")
            self.tracker.set_property(dialog, "ka-dst")

    # -- dispatching ---------------------------------------------------------------------

    def _select(self, ctx: RequestContext) -> Selection | None:
        options = self.config.dispatcher
        try:
            selection = self.dispatcher.select(  # Kamailio: ds_select_dst()
                options.setid,
                options.algorithm,
                ctx.request,
                limit=options.attempts,
                now=ctx.now,
            )
        except DispatchError as exc:
            selection = None
            event("dispatch.failed", exc.reason, call_id=ctx.request.call_id)
        if not selection:
            self.counters.no_destination += 1
            ctx.reply(503, "No destination available")
            return None
        return selection

    def _relay(
        self, ctx: RequestContext, selection: Selection, *, now: float | None = None
    ) -> None:
        """Relay to the selection's current destination (every one for alg
        12). ``now`` when it happens after the script returned (the offer
        came back)."""
        tried: dict[int, str] = ctx.data.setdefault(_TRIED, {})
        ctx.data[_SELECTION] = selection
        ctx.on_failure(self._failure)
        self._wait(ctx)
        try:
            if selection.alg == 12:  # parallel: a branch to every destination
                branches = ctx.fork([(d.uri, None) for d in selection], now=now)
                for branch, dest in zip(branches, selection, strict=True):
                    tried[branch.index] = dest.uri
                return
            current = selection.current
            assert current is not None
            relayed = ctx.relay(current.uri, now=now)  # $du; the Request-URI stays
            if relayed is not None:
                tried[relayed.index] = current.uri
        except SipError as exc:
            # A destination with no address (the names are resolved at load).
            event("dispatch.failed", exc.reason, call_id=ctx.request.call_id)
            if not ctx.branches:
                self.counters.no_destination += 1
                ctx.reply(503, "No destination available", now=now)

    # -- failure_route --------------------------------------------------------------------

    def _failure(self, ctx: RequestContext) -> None:  # Kamailio: failure_route
        if ctx.cancelled:
            return  # t_is_canceled(): the caller gave up
        selection: Selection = ctx.data[_SELECTION]
        tried: dict[int, str] = ctx.data[_TRIED]
        options = self.config.dispatcher
        fail_over = False
        for branch in ctx.branches:
            uri = tried.pop(branch.index, None)
            code = branch.status_code
            if uri is None or code is None:
                continue
            # A Timer C 408 after a provisional: the destination is alive,
            # the callee did not answer (t_branch_replied()).
            if branch.local and code == 408 and branch.answered:
                continue
            if code in options.mark_codes:
                self._mark(selection.setid, uri, code, ctx.request.call_id)
            if code in options.failover_codes:
                fail_over = True
        if not fail_over or selection.alg == 12:
            return  # the core answers with the best response
        following = self._next(selection, ctx.request.call_id)
        if following is None:
            return
        current = following.current
        assert current is not None
        self.counters.failovers += 1
        event(
            "failover",
            f"{ctx.method} {ctx.request.call_id} fails over to {current.uri}",
            call_id=ctx.request.call_id,
            to=current.uri,
        )
        self._relay(ctx, following)

    def _next(self, selection: Selection, call_id: str) -> Selection | None:
        """Kamailio: ``ds_next_dst()`` (for alg 10 the call's load moves
        along), passing over destinations that went out of rotation since
        the selection was made."""
        step = self.dispatcher.next(selection, call_id)
        while step is not None:
            current = step.current
            assert current is not None
            try:
                usable = not self.dispatcher.state(step.setid, current.uri).skipped
            except DispatchError:
                usable = False  # removed by a reload meanwhile
            if usable:
                return step
            step = self.dispatcher.next(step, call_id)
        return None

    def _mark(self, setid: int, uri: str, code: int, call_id: str) -> None:
        try:
            change = self.dispatcher.mark(
                setid,
                uri,
                self.config.dispatcher.mark_state,
                code=code,
                reason=REASON_PHRASES.get(code, ""),
            )
        except DispatchError:
            return  # removed by a reload meanwhile
        self.counters.marked += 1
        if change is not None and self._on_destination_event is not None:
            self._on_destination_event(change, f"{code} from {uri} (call {call_id})")
