"""The dialog tracker: Kamailio's dialog module as a sans-I/O object.

This module owns :class:`DialogTracker`: creating dialogs for initial
INVITEs (``dlg_manage``), spiral detection, matching sequential requests
and replies (the ``did`` Record-Route cookie and SIP matching, in the three
``dlg_match_mode`` modes), every state transition Kamailio makes, the
dialog timers (early, no-ACK, lifetime, linger after the end), profiles,
statistics, and locally generated requests (BYE, CANCEL, in-dialog
requests). It plugs into a :class:`sipcore.Proxy` through its hooks and
runs its timers inside the proxy's ``tick``; it never reads a clock.

What it must not do: persist (that is the store's job: the tracker only
tells :class:`~sipcore_dialog._persistence.StoreSync` what changed, through
the ``@_settles`` methods and the events) or touch sockets.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

import attrs

from sipcore import (
    Address,
    Endpoint,
    LocalProtocolError,
    ParseError,
    Proxy,
    Request,
    RequestContext,
    Response,
    SecondTimers,
    SipURI,
    core_hash,
    make_request,
)

from . import events
from ._config import DbMode, DialogConfig, MatchMode
from ._dialog import Dialog, DialogState, Direction, Property, Side, parse_reverse_hex
from ._persistence import StoreSync
from ._profiles import ProfileLink, ProfileTable
from ._store import DialogStore, LoadReport

__all__ = ["DialogStats", "DialogTracker"]

log = logging.getLogger("sipcore.dialog")

_E = TypeVar("_E")
_P = ParamSpec("_P")
_R = TypeVar("_R")
# A noack or keepalive failure leaves the dialog this long to live (Kamailio: 10 s).
_GRACE: Final = 10.0


@attrs.define
class DialogStats:
    """Kamailio's dialog statistics."""

    active: int = 0  # active_dialogs: counted from the 2xx
    early: int = 0  # early_dialogs
    processed: int = 0  # processed_dialogs: created since start
    expired: int = 0  # expired_dialogs
    failed: int = 0  # failed_dialogs


def _settles(
    method: Callable[Concatenate[DialogTracker, _P], _R],
) -> Callable[Concatenate[DialogTracker, _P], _R]:
    """A tracker call after which the store hears of what changed (in
    realtime mode, one write when the outermost such call returns). A first
    argument that is a dialog counts as changed."""

    @functools.wraps(method)
    def wrapper(self: DialogTracker, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        sync = self._store_sync
        if sync is None:
            return method(self, *args, **kwargs)
        sync.enter(args[0] if args and isinstance(args[0], Dialog) else None)
        try:
            return method(self, *args, **kwargs)
        finally:
            sync.leave()

    return wrapper


class DialogTracker:
    """Every dialog this proxy tracks.

    >>> tracker = DialogTracker(DialogConfig(profiles_with_value=("caller",)))
    >>> tracker.stats.active
    0

    Use it with a proxy: ``tracker.attach(proxy)``, then call
    :meth:`manage` from the routing script for the initial INVITEs to
    track (Kamailio: ``dlg_manage()``). Sequential requests and replies are
    matched and followed through the proxy's hooks.

    With a ``store``, confirmed dialogs are written per ``config.db_mode``
    and :meth:`load` brings them back; ``wall_clock_offset`` is unix time
    minus this tracker's clock (``time.time() - time.monotonic()`` when
    ``now`` is monotonic), which the store's unix timestamps need.
    """

    def __init__(
        self,
        config: DialogConfig | None = None,
        *,
        rng: random.Random | None = None,
        store: DialogStore | None = None,
        wall_clock_offset: float = 0.0,
    ) -> None:
        self.config = config or DialogConfig()
        self.stats = DialogStats()
        self.profiles = ProfileTable(self.config.profiles_with_value, self.config.profiles_no_value)
        self.timeout_routes: dict[str, Callable[[Dialog], object]] = {}
        self._rng = rng or random.Random()
        # Keyed by h_entry << 32 | h_id, and by Call-ID (a lone dialog is kept
        # as it is, several in a list): a million dialogs is the design load.
        self._by_id: dict[int, Dialog] = {}
        self._by_call_id: dict[str, Dialog | list[Dialog]] = {}
        self._next_n: dict[int, int] = {}
        # Each dialog has at most one state timer and one keepalive timer,
        # in whole seconds as Kamailio's dialog timer.
        self._timers: SecondTimers[Dialog] = SecondTimers()
        self._ka_timers: SecondTimers[Dialog] = SecondTimers()
        self._subscribers: dict[type, list[Callable[[Any], object]]] = {}
        self._initial: dict[Dialog, RequestContext] = {}
        self._proxy: Proxy | None = None
        self._unsent: list[tuple[Dialog, Side, Request]] = []
        self._now = 0.0
        self._store_sync: StoreSync | None = None
        if store is not None:
            self._store_sync = StoreSync(self, store, wall_clock_offset)

    # -- plumbing ---------------------------------------------------------------

    def attach(self, proxy: Proxy) -> None:
        """Follow ``proxy``'s requests and replies, and run on its timers."""
        self._proxy = proxy
        proxy.hooks.request_received.insert(0, self._on_request)
        proxy.hooks.response_forwarded.append(self._on_response_forwarded)
        proxy.hooks.branch_sending.append(self._on_branch)
        proxy.hooks.relaying.append(self._on_relaying)
        proxy.services.append(self)

    def subscribe(self, event_type: type[_E], callback: Callable[[_E], object]) -> None:
        """Call ``callback(event)`` for every event of ``event_type``
        (Kamailio: ``register_dlgcb`` with a NULL dialog; the event routes)."""
        self._subscribers.setdefault(event_type, []).append(callback)

    def subscribe_dialog(
        self, dialog: Dialog, event_type: type[_E], callback: Callable[[_E], object]
    ) -> None:
        """Kamailio: ``register_dlgcb(dlg, type, ...)``: one dialog's events."""
        if dialog.subscribers is None:
            dialog.subscribers = {}
        dialog.subscribers.setdefault(event_type, []).append(callback)

    def _emit(self, event: events.DialogEvent) -> None:
        callbacks = list(self._subscribers.get(type(event), ()))
        own = event.dialog.subscribers
        if own:
            callbacks += own.get(type(event), ())
        for callback in callbacks:
            try:
                callback(event)
            except Exception:
                log.exception("dialog callback raised for %s", type(event).__name__)

    # -- lookups --------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Dialog]:
        return iter(list(self._by_id.values()))

    def get(self, call_id: str, from_tag: str, to_tag: str | None = None) -> Dialog | None:
        """Kamailio: ``dlg_get(callid, ftag, ttag)``; either direction matches.
        An empty or None ``to_tag`` finds a dialog still in setup."""
        found = self._match_sip(call_id, from_tag, to_tag or None)
        return found[0] if found else None

    def by_id(self, h_entry: int, h_id: int) -> Dialog | None:
        return self._by_id.get(_key(h_entry, h_id))

    def _match_sip(
        self, call_id: str, from_tag: str | None, to_tag: str | None
    ) -> tuple[Dialog, Direction] | None:
        for dialog in self._with_call_id(call_id):
            direction = dialog.direction_of(from_tag, to_tag)
            if direction is not None:
                return dialog, direction
        return None

    def _link(self, dialog: Dialog) -> None:
        """Into both indexes (by id, and by Call-ID: a lone dialog kept bare)."""
        self._by_id[_key(dialog.h_entry, dialog.h_id)] = dialog
        same = self._by_call_id.get(dialog.call_id)
        if same is None:
            self._by_call_id[dialog.call_id] = dialog
        elif isinstance(same, list):
            same.append(dialog)
        else:
            self._by_call_id[dialog.call_id] = [same, dialog]

    def _unlink(self, dialog: Dialog) -> None:
        self._by_id.pop(_key(dialog.h_entry, dialog.h_id), None)
        same = self._by_call_id.get(dialog.call_id)
        if same is dialog:
            del self._by_call_id[dialog.call_id]
        elif isinstance(same, list) and dialog in same:
            same.remove(dialog)
            if len(same) == 1:
                self._by_call_id[dialog.call_id] = same[0]

    def _with_call_id(self, call_id: str) -> tuple[Dialog, ...] | list[Dialog]:
        same = self._by_call_id.get(call_id)
        if same is None:
            return ()
        return same if isinstance(same, list) else (same,)

    def _did_of(self, request: Request) -> tuple[int, int] | None:
        """The ``did`` cookie in the Route set (our Record-Route, echoed)."""
        name = self.config.rr_param
        try:
            routes = request.route
            for route in routes:
                uri = route.uri
                if not isinstance(uri, SipURI):
                    continue
                value = uri.params.get(name)
                if value is None:
                    continue
                entry_text, dot, id_text = value.partition(".")
                h_entry = parse_reverse_hex(entry_text)
                h_id = parse_reverse_hex(id_text)
                if dot and h_entry is not None and h_id is not None:
                    return h_entry, h_id
        except ParseError:
            return None
        return None

    def match(self, request: Request) -> tuple[Dialog, Direction] | None:
        """The dialog a sequential request belongs to and its direction, per
        ``dlg_match_mode``. A ``did`` cookie only matches when Call-ID and
        tags agree too."""
        mode = self.config.match_mode
        try:
            call_id = request.call_id
            from_tag = request.from_.tag
            to_tag = request.to.tag
        except ParseError:
            return None
        if to_tag is None and request.method != "CANCEL":
            return None
        if mode is not MatchMode.DID_NONE:
            did = self._did_of(request)
            if did is not None:
                dialog = self._by_id.get(_key(*did))
                if dialog is not None and dialog.call_id == call_id:
                    direction = dialog.direction_of(from_tag, to_tag)
                    if direction is not None:
                        return dialog, direction
                # A cookie that names no dialog, or one whose Call-ID and tags
                # disagree: no match, unless SIP matching may still find one.
                if mode is MatchMode.DID_ONLY:
                    return None
            elif mode is MatchMode.DID_ONLY:
                return None
        return self._match_sip(call_id, from_tag, to_tag)

    # -- creation (dlg_manage) ----------------------------------------------------------

    def manage(self, ctx: RequestContext) -> Dialog | None:
        """Kamailio: ``dlg_manage()``. For an initial INVITE, create its
        dialog (or find the one it spirals into) and bind it to the request;
        for a sequential request, return the dialog it matched."""
        bound = ctx.data.get("dialog")
        if isinstance(bound, Dialog):
            return bound
        request = ctx.request
        if request.method != "INVITE" or request.to.tag is not None:
            return None
        self._now = ctx.now
        dialog = self._spiral_of(request)
        if dialog is not None:
            dialog.spirals += 1
            self._emit(events.DialogSpiraled(dialog, request))
        else:
            dialog = self._create(
                request, ctx.now, ctx.source, self._socket_for(ctx.source.transport)
            )
            self._initial[dialog] = ctx
            ctx.on_end(functools.partial(self._initial_ended, dialog))
            if self.config.initial_cbs_inscript:
                self._emit(events.DialogCreated(dialog, request))
            else:
                ctx.data["dialog_created_pending"] = True
        ctx.data["dialog"] = dialog
        ctx.data["dialog_initial"] = True
        if self.config.match_mode is not MatchMode.DID_NONE:
            ctx.add_rr_param(f";{self.config.rr_param}={dialog.did}")
        return dialog

    def mark(self, ctx: RequestContext) -> None:
        """Kamailio's ``dlg_flag``: track this initial INVITE if and when the
        script relays it (``setflag(DLG_FLAG); t_relay()``), rather than now
        as :meth:`manage` does."""
        ctx.data["dialog_flag"] = True

    def _on_relaying(self, ctx: RequestContext) -> None:
        if ctx.data.get("dialog_flag") and "dialog" not in ctx.data:
            self.manage(ctx)

    def _initial_ended(self, dialog: Dialog, ctx: RequestContext) -> None:
        if self._initial.get(dialog) is ctx:
            del self._initial[dialog]

    def create(self, request: Request, now: float, source: Endpoint | None = None) -> Dialog:
        """Track an initial INVITE without a proxy (replies then come in
        through :meth:`on_response`, sequential requests through
        :meth:`on_request`)."""
        if request.method != "INVITE" or request.to.tag is not None:
            raise LocalProtocolError("only an initial INVITE creates a dialog")
        self._now = now
        dialog = self._create(request, now, source, None)
        self._emit(events.DialogCreated(dialog, request))
        return dialog

    def _spiral_of(self, request: Request) -> Dialog | None:
        if not self.config.detect_spirals:
            return None
        for dialog in self._with_call_id(request.call_id):
            if dialog.from_tag == request.from_.tag and dialog.state < DialogState.CONFIRMED_NA:
                return dialog
        return None

    def _new_id(self, h_entry: int) -> int:
        step = self.config.h_id_step
        n = self._next_n.get(h_entry)
        if n is None:
            # Kamailio starts each entry's counter at a random point.
            n = self._rng.randrange(1, 3 * self.config.hash_size)
        while True:
            h_id = self.config.h_id_start + n * step
            n += 1
            if _key(h_entry, h_id) not in self._by_id:
                self._next_n[h_entry] = n
                return h_id & 0xFFFFFFFF

    def _create(
        self,
        request: Request,
        now: float,
        source: Endpoint | None,
        socket: Endpoint | None,
    ) -> Dialog:
        call_id = request.call_id
        from_tag = request.from_.tag
        if not from_tag:
            raise ParseError("an initial INVITE without a From tag", 400, request)
        h_entry = core_hash(call_id.encode("utf-8", "surrogateescape"), size=self.config.hash_size)
        h_id = self._new_id(h_entry)
        contact = request.contact
        dialog = Dialog(
            h_entry=h_entry,
            h_id=h_id,
            call_id=call_id,
            from_uri=_uri_text(request.from_),
            from_tag=from_tag,
            to_uri=_uri_text(request.to),
            req_uri=str(request.uri),
            caller_cseq=str(request.cseq.number),
            caller_contact=_uri_text(contact[0]) if contact else "",
            init_time=now,
            caller_route_set=tuple(request.get_all("Record-Route")),
            caller_socket=socket,
            caller_address=source,
            timeout=self.config.default_timeout,
        )
        if self.config.timeout_noreset:
            dialog.iflags |= Property.TIMEOUT_NORESET
        self._link(dialog)
        if self.config.enable_stats:
            self.stats.processed += 1
        self._arm(dialog, now + self.config.early_timeout, "early")
        return dialog

    # -- state ------------------------------------------------------------------------------

    def _set_state(self, dialog: Dialog, new: DialogState) -> DialogState:
        old = dialog.state
        if old is new:
            return old
        dialog.state = new
        stats = self.stats if self.config.enable_stats else DialogStats()
        if old is DialogState.EARLY:
            stats.early -= 1
        if new is DialogState.EARLY:
            stats.early += 1
        confirmed = (DialogState.CONFIRMED_NA, DialogState.CONFIRMED)
        if new in confirmed and old not in confirmed:
            stats.active += 1
        if old in confirmed and new not in confirmed:
            stats.active -= 1
        self._emit(events.DialogStateChanged(dialog, old, new))
        return old

    def _arm(self, dialog: Dialog, deadline: float, kind: str) -> None:
        if dialog._timer is not None:
            self._timers.cancel(dialog._timer, dialog)
        dialog._timer = self._timers.add(deadline, dialog)
        dialog._timer_kind = kind

    def _disarm(self, dialog: Dialog) -> None:
        if dialog._timer is not None:
            self._timers.cancel(dialog._timer, dialog)
            dialog._timer = None
        if dialog._ka_timer is not None:
            self._ka_timers.cancel(dialog._ka_timer, dialog)
            dialog._ka_timer = None

    # -- replies to the initial INVITE --------------------------------------------------------

    @_settles
    def on_response(
        self, dialog: Dialog, response: Response, now: float, source: Endpoint | None = None
    ) -> None:
        """A response to the dialog's initial INVITE, as forwarded upstream."""
        self._now = now
        code = response.status_code
        self._emit(events.DialogResponseForwarded(dialog, response))
        if dialog.state >= DialogState.CONFIRMED_NA:
            return  # a 2xx retransmission, or another branch's 2xx
        if code < 200:
            if code > 100 and dialog.state is DialogState.UNCONFIRMED:
                self._set_state(dialog, DialogState.EARLY)
                self._emit(events.DialogEarly(dialog, response))
            return
        if code < 300:
            self._confirm_na(dialog, response, now, source)
            return
        self._fail(dialog, response, now)

    def _confirm_na(
        self, dialog: Dialog, response: Response, now: float, source: Endpoint | None
    ) -> None:
        dialog.to_tag = response.to.tag
        contact = response.contact
        routes = self._route_sets(dialog, response)
        fields: dict[str, object] = {
            "callee_contact": _uri_text(contact[0]) if contact else "",
            "callee_cseq": str(response.cseq.number),
            "callee_route_set": routes[0],
            "callee_address": source,
        }
        if routes[1] is not None:
            fields["caller_route_set"] = routes[1]
        dialog.update(**fields)
        if source is not None and self._proxy is not None:
            dialog.callee_socket = self._socket_for(source.transport)
        dialog.start_time = now
        self._set_state(dialog, DialogState.CONFIRMED_NA)
        self._arm(dialog, now + self.config.noack_timeout, "noack")
        self._emit(events.DialogConfirmedNoAck(dialog, response))
        self._emit(events.DialogStart(dialog))

    def _route_sets(
        self, dialog: Dialog, response: Response
    ) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
        """(route to the callee, route to the caller or None to keep it).

        To the callee: the Record-Route entries above ours, reversed. With
        ``keep_proxy_rr`` bit 1 our own entry stays in the callee's route,
        with bit 2 in the caller's (locally made requests then loop
        through this proxy)."""
        values = response.get_all("Record-Route")
        ours = len(values)
        for i, value in enumerate(values):
            if f"{self.config.rr_param}={dialog.did}" in value:
                ours = i
                break
        found = ours < len(values)
        keep = self.config.keep_proxy_rr
        above = values[: ours + 1] if keep & 1 and found else values[:ours]
        caller = None
        if keep & 2 and found:
            caller = (values[ours], *dialog.caller_route_set)
        return tuple(reversed(above)), caller

    def _socket_for(self, transport: str) -> Endpoint | None:
        """The proxy's listen address facing a party (None without a proxy)."""
        return None if self._proxy is None else self._proxy.local_endpoint(transport)

    def _end(self, dialog: Dialog, now: float) -> None:
        """State 5 from ``now``: out of every profile at once (Kamailio)."""
        dialog.end_time = now
        self._set_state(dialog, DialogState.DELETED)
        self._leave_profiles(dialog)

    def _fail(self, dialog: Dialog, response: Response | None, now: float) -> None:
        self._end(dialog, now)
        if self.config.enable_stats:
            self.stats.failed += 1
        self._emit(events.DialogFailed(dialog, response))
        self._emit(events.DialogFailedRoute(dialog))
        linger = self.config.deleted_linger if self.config.wait_ack else 0.0
        self._arm(dialog, now + linger, "destroy")

    # -- sequential requests ------------------------------------------------------------------

    @_settles
    def on_request(
        self, request: Request, now: float, source: Endpoint | None = None
    ) -> tuple[Dialog, Direction] | None:
        """A sequential request: match it and follow what it does to its dialog."""
        self._now = now
        found = self.match(request)
        if found is None:
            return None
        dialog, direction = found
        if dialog.state is DialogState.DELETED:
            return found
        method = request.method
        if method == "ACK":
            if dialog.state is DialogState.CONFIRMED_NA and request.cseq.number == int(
                dialog.caller_cseq or 0
            ):
                dialog.acked = True
                self._set_state(dialog, DialogState.CONFIRMED)
                self._arm_lifetime(dialog, now)
                self._emit(events.DialogConfirmed(dialog, request))
            else:
                self._emit(events.DialogRequestWithin(dialog, request, direction))
            return found
        self._track_cseq(dialog, request, direction)
        if method == "BYE":
            self._terminate(dialog, request, direction, now)
            return found
        if method == "CANCEL":
            return found  # the INVITE's 487 ends it
        self._emit(events.DialogRequestWithin(dialog, request, direction))
        resets = not dialog.iflags & Property.TIMEOUT_NORESET
        if resets and dialog.state is DialogState.CONFIRMED:
            self._arm_lifetime(dialog, now)
        return found

    def _track_cseq(self, dialog: Dialog, request: Request, direction: Direction) -> None:
        number = str(request.cseq.number)
        if direction is Direction.DOWNSTREAM:
            dialog.caller_cseq = number
        else:
            dialog.callee_cseq = number

    def _arm_lifetime(self, dialog: Dialog, now: float) -> None:
        self._arm(dialog, now + dialog.timeout, "lifetime")
        if self.config.ka_interval and dialog.iflags & (Property.KA_SRC | Property.KA_DST):
            self._arm_keepalive(dialog, now)

    def _terminate(
        self,
        dialog: Dialog,
        request: Request | None,
        direction: Direction | None,
        now: float,
    ) -> None:
        if dialog.state is DialogState.DELETED:
            return
        dialog.terminated_by = direction
        self._end(dialog, now)
        self._emit(events.DialogTerminated(dialog, request, direction))
        self._emit(events.DialogEnd(dialog))
        # Wait for the BYE's answer, but not for ever.
        self._arm(dialog, now + self.config.end_timeout, "ended")

    @_settles
    def on_request_response(
        self, dialog: Dialog, request: Request, response: Response, direction: Direction, now: float
    ) -> None:
        """A response to a sequential request, as forwarded."""
        self._now = now
        self._emit(events.DialogResponseWithin(dialog, response, direction))
        if request.method == "BYE":
            self._bye_answered(dialog, response, now)

    def _leave_profiles(self, dialog: Dialog) -> None:
        if dialog._extra is None or not dialog._extra.profiles:
            return
        for link in dialog._extra.profiles:
            if link.profile in self.profiles:
                self.profiles[link.profile].remove_all(dialog)
        dialog._extra.profiles.clear()

    # -- proxy hooks ----------------------------------------------------------------------------

    def _on_request(self, ctx: RequestContext) -> None:
        request = ctx.request
        if request.method == "INVITE" and _to_tag(request) is None:
            return  # initial: the script decides with manage()
        found = self.on_request(request, ctx.now, ctx.source)
        if found is not None:
            # $dlg_ctx(set) and $dlg_ctx(dir) belong to the request, not the dialog.
            ctx.data["dialog"], ctx.data["dialog_direction"] = found

    def _on_response_forwarded(self, ctx: RequestContext, response: Response) -> None:
        dialog = ctx.data.get("dialog")
        if not isinstance(dialog, Dialog):
            return
        if ctx.data.get("dialog_initial"):
            if self._initial.get(dialog) is ctx:
                if ctx.data.pop("dialog_created_pending", None) is not None:
                    self._emit(events.DialogCreated(dialog, ctx.request))
                self.on_response(dialog, response, self.now, _source_of(ctx, response))
            return
        direction = ctx.data.get("dialog_direction")
        if isinstance(direction, Direction):
            self.on_request_response(dialog, ctx.request, response, direction, self.now)

    def _on_branch(self, ctx: RequestContext, branch: object) -> None:
        # initial_cbs_inscript = 0: DLGCB_CREATED once the script has relayed.
        dialog = ctx.data.get("dialog")
        if isinstance(dialog, Dialog) and ctx.data.pop("dialog_created_pending", None):
            self._emit(events.DialogCreated(dialog, ctx.request))

    @property
    def now(self) -> float:
        """The time of the message or tick being handled: the proxy's when
        attached (a reply is timed when it comes, not with its request)."""
        return self._proxy.now if self._proxy is not None else self._now

    # -- timers ------------------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        deadlines = [
            d
            for d in (
                self._timers.next_deadline(),
                self._ka_timers.next_deadline(),
                self.profiles.next_deadline(),
                None if self._store_sync is None else self._store_sync.next_deadline(),
            )
            if d is not None
        ]
        return min(deadlines) if deadlines else None

    @_settles
    def tick(self, now: float) -> list[Dialog]:
        """Fire the dialog timers due at ``now``; returns the dialogs that
        expired. BYEs (``send_bye``, ``timeout_bye``) go out through the
        proxy, or, without one, come back from :meth:`take_requests`."""
        self._now = now
        expired: list[Dialog] = []
        self.profiles.expire(now)
        for dialog in self._ka_timers.pop_due(now):
            dialog._ka_timer = None
            self._keepalive(dialog, now)
        for dialog in self._timers.pop_due(now):
            dialog._timer = None
            kind = dialog._timer_kind
            if kind == "early":
                self._expire(dialog, now, early=True)
                expired.append(dialog)
            elif kind == "noack":
                # No ACK for the 2xx: Kamailio gives the dialog 10 more seconds.
                self._arm(dialog, now + _GRACE, "lifetime")
            elif kind == "lifetime":
                self._expire(dialog, now, early=False)
                expired.append(dialog)
            elif kind in ("ended", "destroy"):
                self._destroy(dialog)
        if self._store_sync is not None:
            self._store_sync.tick(now)
        return expired

    def take_requests(self) -> list[tuple[Dialog, Side, Request]]:
        """Without a proxy: the in-dialog requests the tracker made (BYEs on
        timeout, keepalives) since the last call, for the application to
        send (it adds its own Via)."""
        out = self._unsent
        self._unsent = []
        return out

    def _expire(self, dialog: Dialog, now: float, *, early: bool) -> None:
        if self.config.enable_stats:
            self.stats.expired += 1
        dialog.expired = True
        self._emit(events.DialogExpired(dialog))
        if early:
            # Never answered: Kamailio runs dialog:failed, and no timeout route.
            self._end(dialog, now)
            self._emit(events.DialogFailedRoute(dialog))
            self._arm(dialog, now + self.config.deleted_linger, "destroy")
            return
        extra = dialog._extra
        local = dialog.caller_socket is not None or not self.config.filter_mode & 1
        route = extra.ctx.timeout_route if extra is not None and local else None
        if route is not None and route in self.timeout_routes:
            try:
                self.timeout_routes[route](dialog)
            except Exception:
                log.exception("timeout route %s raised", route)
        if dialog.state is DialogState.DELETED:
            return  # the timeout route ended it
        send_bye = self.config.send_bye or (extra is not None and extra.ctx.timeout_bye)
        if send_bye and local:
            self.bye(dialog, Side.ALL, now=now)
            return
        self._end(dialog, now)
        self._emit(events.DialogEnd(dialog))
        self._arm(dialog, now + self.config.deleted_linger, "destroy")

    def _destroy(self, dialog: Dialog) -> None:
        self._disarm(dialog)
        self._leave_profiles(dialog)
        if dialog.state is not DialogState.DELETED:
            self._set_state(dialog, DialogState.DELETED)
        self._unlink(dialog)
        self._initial.pop(dialog, None)
        self._emit(events.DialogDestroyed(dialog))

    # -- what the script and the management API do --------------------------------------------

    @_settles
    def set_profile(self, dialog: Dialog, profile: str, value: str | None = None) -> None:
        """Kamailio: ``set_dlg_profile(profile[, value])``."""
        link = self.profiles[profile].add(dialog, value)
        dialog.profiles.append(link)

    @_settles
    def unset_profile(self, dialog: Dialog, profile: str, value: str | None = None) -> bool:
        """Kamailio: ``unset_dlg_profile(profile[, value])``."""
        table = self.profiles[profile]
        links = dialog._extra.profiles if dialog._extra is not None else []
        wanted = table._key(value) if value is not None else None
        for i, link in enumerate(links):
            if link.profile == profile and (value is None or link.value == wanted):
                # The table and the dialog drop the same membership.
                if not table.remove(dialog, link.value):
                    return False
                del links[i]
                return True
        return False

    def is_in_profile(self, dialog: Dialog, profile: str, value: str | None = None) -> bool:
        """Kamailio: ``is_in_profile(profile[, value])``."""
        return self.profiles[profile].contains(dialog, value)

    def profile_size(self, profile: str, value: str | None = None) -> int:
        """Kamailio: ``get_profile_size(profile[, value], size)``."""
        return self.profiles[profile].size(value)

    @_settles
    def set_timeout(self, dialog: Dialog, timeout: int, now: float | None = None) -> None:
        """Kamailio: ``dlg_set_timeout(timeout)``: the lifetime, from now
        when confirmed, else from the 2xx when it comes."""
        if timeout < 0:
            raise LocalProtocolError("a dialog timeout is not negative")
        dialog.timeout = timeout
        if dialog.state is DialogState.CONFIRMED:
            self._arm(dialog, (self.now if now is None else now) + timeout, "lifetime")

    @_settles
    def set_timeout_by_profile(
        self, profile: str, timeout: int, value: str | None = None, now: float | None = None
    ) -> int:
        """Kamailio: ``dlg_set_timeout_by_profile(profile, [value], timeout)``."""
        dialogs = list(self.profiles[profile].dialogs(value))
        for dialog in dialogs:
            self.set_timeout(dialog, timeout, now)
        return len(dialogs)

    @_settles
    def set_property(self, dialog: Dialog, prop: Property | str) -> None:
        """Kamailio: ``dlg_set_property("ka-src" | "ka-dst" | "timeout-noreset")``."""
        flag = _property(prop)
        dialog.iflags |= flag
        if flag & (Property.KA_SRC | Property.KA_DST) and dialog.state is DialogState.CONFIRMED:
            self._arm_keepalive(dialog, self.now)

    @_settles
    def reset_property(self, dialog: Dialog, prop: Property | str) -> None:
        """Kamailio: ``dlg_reset_property(...)``."""
        dialog.iflags &= ~_property(prop)

    def remote_profile(
        self, command: str, profile: str, value: str | None, uid: str, expires: float
    ) -> bool:
        """Kamailio: ``dlg_remote_profile(cmd, profile, value, uid, expires)``;
        ``expires`` is an absolute time on this tracker's clock."""
        if command == "add":
            self.profiles.remote_add(profile, value or None, uid, expires)
            return True
        if command == "rm":
            return self.profiles.remote_remove(profile, value or None, uid)
        raise LocalProtocolError(f"dlg_remote_profile command must be add or rm, not {command!r}")

    @_settles
    def set_state(self, dialog: Dialog, state: DialogState) -> None:
        """Kamailio RPC ``dlg.set_state``: no BYE, no end events; a dialog set
        to 5 is then destroyed after the linger time."""
        self._set_state(dialog, state)
        if state is DialogState.DELETED:
            self._leave_profiles(dialog)
            self._arm(dialog, self.now + self.config.deleted_linger, "destroy")

    # -- locally generated requests ------------------------------------------------------------

    def request_within(
        self,
        dialog: Dialog,
        side: Side,
        method: str,
        *,
        now: float,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        on_response: Callable[[Side, Response], object] | None = None,
    ) -> list[Request]:
        """Kamailio: ``dlg_req_within(side, method, ...)``: send an in-dialog
        request to the caller, the callee or both, with the right route
        set, tags and CSeq. Returns the requests; with a proxy attached they
        are sent through it, else they wait in :meth:`take_requests`."""
        proxy = self._proxy
        if dialog.to_tag is None:
            raise LocalProtocolError("an in-dialog request needs a confirmed dialog")
        sides = [Side.CALLER, Side.CALLEE] if side is Side.ALL else [side]
        sent = []
        for target in sides:
            request = self._build_within(dialog, target, method, headers, body, content_type)

            def callback(response: Response, t: Side = target) -> None:
                if on_response is not None:
                    on_response(t, response)

            if proxy is None:
                self._unsent.append((dialog, target, request))
                sent.append(request)
                continue
            proxy.send_request(
                request,
                self._destination(dialog, target),
                now=now,
                on_response=callback,
            )
            sent.append(request)
        return sent

    def _build_within(
        self,
        dialog: Dialog,
        side: Side,
        method: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        content_type: str | None,
        *,
        keepalive: bool = False,
    ) -> Request:
        assert dialog.to_tag is not None
        # A keepalive takes the CSeq below the last one and keeps the count,
        # as Kamailio's dlg_send_ka does, so it never collides with the
        # party's next real request; every other request takes the next one.
        if side is Side.CALLEE:
            target = dialog.callee_contact or dialog.req_uri
            from_ = f"<{dialog.from_uri}>;tag={dialog.from_tag}"
            to = f"<{dialog.to_uri}>;tag={dialog.to_tag}"
            last = int(dialog.caller_cseq or 0)
            cseq = max(last - 1, 0) if keepalive else last + 1
            if not keepalive:
                dialog.caller_cseq = str(cseq)
            route = dialog.callee_route_set
            extra = list(self.config.lreq_callee_headers)
        else:
            target = dialog.caller_contact
            from_ = f"<{dialog.to_uri}>;tag={dialog.to_tag}"
            to = f"<{dialog.from_uri}>;tag={dialog.from_tag}"
            last = int(dialog.callee_cseq or 0)
            cseq = max(last - 1, 0) if keepalive else last + 1
            if not keepalive:
                dialog.callee_cseq = str(cseq)
            route = dialog.caller_route_set
            extra = []
        request = make_request(
            method,
            target,
            from_=from_,
            to=to,
            via="SIP/2.0/UDP 0.0.0.0;branch=z9hG4bKplaceholder",
            call_id=dialog.call_id,
            cseq=cseq,
            route=route,
            headers=[*self.config.extra_headers, *extra, *headers],
            body=body,
            content_type=content_type,
        )
        request.remove_header("Via")  # the proxy puts its own on top
        return request

    def _destination(self, dialog: Dialog, side: Side) -> Endpoint | None:
        # Where that party's requests came from, when known and there is no
        # route set to follow; else the proxy resolves the Route or the URI.
        route = dialog.callee_route_set if side is Side.CALLEE else dialog.caller_route_set
        if route:
            return None
        address = dialog.callee_address if side is Side.CALLEE else dialog.caller_address
        return address

    @_settles
    def bye(
        self,
        dialog: Dialog,
        side: Side = Side.ALL,
        *,
        now: float,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Kamailio: ``dlg_bye(side)``, ``dlg.end_dlg``: BYE to the party or
        both; for a dialog still in setup, CANCEL towards the callee and
        ``bye_early_code`` to the caller."""
        self._now = now
        if dialog.state is DialogState.DELETED:
            return
        if not dialog.is_confirmed:
            ctx = self._initial.get(dialog)
            if ctx is not None:
                ctx.cancel_branches()
                if ctx.final_sent is None and ctx.transaction is not None:
                    ctx.reply(self.config.bye_early_code, self.config.bye_early_reason, now=now)
            if not dialog.is_ended:  # the early reply may have failed it already
                self._fail(dialog, None, now)
            return
        if dialog.to_tag is not None:
            self.request_within(
                dialog,
                side,
                "BYE",
                now=now,
                headers=headers,
                on_response=lambda _s, r: self._bye_answered(dialog, r, self.now),
            )
        self._terminate(dialog, None, None, now)

    def _bye_answered(self, dialog: Dialog, response: Response, now: float) -> None:
        """A final answer to a BYE (the party's or ours): DLGCB_TERMINATED_CONFIRMED,
        then the dialog lingers (tm's wait timer) instead of waiting end_timeout."""
        if response.status_code < 200:
            return
        self._emit(events.DialogTerminatedConfirmed(dialog, response))
        if dialog.state is DialogState.DELETED and dialog._timer_kind == "ended":
            self._arm(dialog, now + self.config.deleted_linger, "destroy")

    def _arm_keepalive(self, dialog: Dialog, now: float) -> None:
        if dialog._ka_timer is not None:
            self._ka_timers.cancel(dialog._ka_timer, dialog)
        dialog._ka_timer = self._ka_timers.add(now + self.config.ka_interval, dialog)

    def _keepalive(self, dialog: Dialog, now: float) -> None:
        if dialog.state is not DialogState.CONFIRMED or self._proxy is None:
            return
        if self.config.filter_mode & 1 and dialog.caller_socket is None:
            return  # dlg_filter_mode 1: no keepalives for a dialog not local
        sides = []
        if dialog.iflags & Property.KA_SRC:
            sides.append(Side.CALLER)
        if dialog.iflags & Property.KA_DST:
            sides.append(Side.CALLEE)
        for side in sides:
            request = self._build_within(dialog, side, "OPTIONS", (), b"", None, keepalive=True)
            self._proxy.send_request(
                request,
                self._destination(dialog, side),
                now=now,
                on_response=functools.partial(self._keepalive_answered, dialog, side),
            )
        self._arm_keepalive(dialog, now)

    @_settles
    def _keepalive_answered(self, dialog: Dialog, side: Side, response: Response) -> None:
        code = response.status_code
        if code < 200 or dialog.state is not DialogState.CONFIRMED:
            return
        if code in (408, 481):
            failures = dialog.ka_failures.get(side, 0) + 1
            dialog.ka_failures[side] = failures
            self._emit(events.KeepaliveFailed(dialog, side.value, code))
            if failures >= self.config.ka_failed_limit:
                self._arm(dialog, self.now + _GRACE, "lifetime")
        else:
            dialog.ka_failures[side] = 0

    def _require_proxy(self) -> Proxy:
        if self._proxy is None:
            raise LocalProtocolError("attach the tracker to a proxy to send requests")
        return self._proxy

    # -- persistence: the hook layer's entry points (the work is in StoreSync) -------------------

    def load(self, now: float) -> LoadReport:
        """Load the stored dialogs, as Kamailio does at start unless
        ``db_skip_load``: confirmed dialogs come back with their ``h_entry``
        and ``h_id`` (so in-flight ``did`` cookies still match), state,
        remaining lifetime, profiles and variables. Rows that cannot be a
        dialog are skipped and reported, never raised. In shutdown mode the
        tables are then emptied (Kamailio does), to be refilled by :meth:`close`."""
        sync = self._require_store()
        if self.config.db_skip_load:
            return LoadReport()
        self._now = now
        report = sync.load(sync.store.load_all(self.config.db_fetch_rows), now)
        if sync.mode is DbMode.SHUTDOWN:
            sync.store.clear()
            sync.forget_stored()
        return report

    def load_call_id(self, call_id: str, now: float) -> LoadReport:
        """Kamailio: ``dlg_db_load_callid(cival)``: load the stored dialogs
        with this Call-ID that are not in memory."""
        sync = self._require_store()
        self._now = now
        return sync.load([sync.store.load_call_id(call_id)], now)

    def load_extra(self, now: float) -> LoadReport:
        """Kamailio: ``dlg_db_load_extra()``: load every stored dialog not in
        memory (another instance's, with ``h_id_start``/``h_id_step`` apart)."""
        sync = self._require_store()
        self._now = now
        return sync.load(sync.store.load_all(self.config.db_fetch_rows), now)

    def flush(self) -> None:
        """Write what the store is owed now (delayed mode's pending changes;
        in shutdown mode every confirmed dialog)."""
        if self._store_sync is not None:
            self._store_sync.flush()

    def close(self) -> None:
        """Flush (Kamailio's shutdown write in ``db_mode`` 3) and close the store."""
        if self._store_sync is not None:
            self._store_sync.close()

    def _require_store(self) -> StoreSync:
        if self._store_sync is None:
            raise LocalProtocolError("this tracker has no store")
        return self._store_sync

    def _adopt(self, dialog: Dialog, now: float) -> bool:
        """Take a dialog rebuilt from a store into memory: its indexes, the
        profile links this tracker defines, its timer and statistics. False
        when a dialog with its id is here already."""
        key = _key(dialog.h_entry, dialog.h_id)
        if key in self._by_id:
            return False
        links: list[ProfileLink] = []
        if dialog._extra is not None:
            links = list(dialog._extra.profiles)
            dialog._extra.profiles.clear()
        for link in links:
            if link.profile not in self.profiles:
                log.warning(
                    "dialog %s:%s: no profile %r here, not restored",
                    dialog.h_entry,
                    dialog.h_id,
                    link.profile,
                )
                continue
            profile = self.profiles[link.profile]
            if profile.has_value != (link.value is not None):
                continue  # Kamailio skips a link whose value does not fit its profile
            dialog.profiles.append(profile.add(dialog, link.value))
        self._link(dialog)
        if self.config.enable_stats:
            self.stats.active += 1
        kind = "lifetime" if dialog.state is DialogState.CONFIRMED else "noack"
        stored = dialog.deadline  # the second its timer fires, from the record
        dialog._timer = None  # not in this tracker's queue yet
        deadline = now if stored is None else max(now, stored)
        self._arm(dialog, deadline, kind)
        keepalive = dialog.iflags & (Property.KA_SRC | Property.KA_DST)
        if dialog.state is DialogState.CONFIRMED and self.config.ka_interval and keepalive:
            self._arm_keepalive(dialog, now)
        return True

    # -- statistics ------------------------------------------------------------------------------

    def stats_active(self) -> dict[str, int]:
        """Kamailio RPC ``dlg.stats_active``: a scan of the dialogs by state."""
        counts = {"starting": 0, "connecting": 0, "answering": 0, "ongoing": 0}
        names = {
            DialogState.UNCONFIRMED: "starting",
            DialogState.EARLY: "connecting",
            DialogState.CONFIRMED_NA: "answering",
            DialogState.CONFIRMED: "ongoing",
        }
        for dialog in self._by_id.values():
            name = names.get(dialog.state)
            if name is not None:
                counts[name] += 1
        counts["all"] = sum(counts.values())
        return counts


def _key(h_entry: int, h_id: int) -> int:
    return h_entry << 32 | h_id


def _uri_text(address: Address) -> str:
    """An address's URI as text, without parsing the URI just to print it."""
    return address.uri_text


def _to_tag(request: Request) -> str | None:
    try:
        return request.to.tag
    except ParseError:
        return None


def _source_of(ctx: RequestContext, response: Response) -> Endpoint | None:
    for branch in ctx.branches:
        if branch.response is response:
            return branch.destination
    return None


def _property(prop: Property | str) -> Property:
    if isinstance(prop, Property):
        return prop
    names = {
        "ka-src": Property.KA_SRC,
        "ka-dst": Property.KA_DST,
        "timeout-noreset": Property.TIMEOUT_NORESET,
    }
    flag = names.get(prop)
    if flag is None:
        raise LocalProtocolError(f"unknown dialog property {prop!r}")
    return flag
