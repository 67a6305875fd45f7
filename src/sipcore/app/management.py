"""The management endpoints of ``sipcore-proxy``: JSON over HTTP.

This module owns the routes (which path and method is which command),
reading their parameters, and the shape of the answers: ``{"result": ...}``
with status 200, or ``{"error": {"code": ..., "message": ...}}`` with the
HTTP status of the fault. The commands themselves are the libraries':
:class:`sipcore_dialog.DialogManagement` (Kamailio's ``dlg.*`` RPCs) and
:class:`sipcore_dispatch.DispatcherManagement` (``dispatcher.*``) and the
rtpengine pool of :class:`~sipcore.app.media.MediaRelay` (``rtpengine.show``,
``rtpengine.enable``), so the answers have the shapes ``kamcmd`` prints.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import attrs

from sipcore_dialog import ManagementError as DialogManagementError
from sipcore_dispatch import ManagementError as DispatcherManagementError
from sipcore_media import MediaError, NodeInfo, ReplyReceived

from .config import ConfigError
from .httpserver import HttpError, HttpRequest
from .media import MediaRelay
from .routing import ACCOUNT_PROFILE, CALLER_PROFILE

if TYPE_CHECKING:
    from .service import App

__all__ = ["ROUTES", "ManagementApi"]

Command = Callable[["ManagementApi", HttpRequest, list[str]], Awaitable[object]]
# A profile can hold a value per caller: list at most this many in one answer.
_MAX_VALUES: Final = 1000


def _int(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise HttpError(400, f"{name} must be an integer")
    return value


def _str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise HttpError(400, f"{name} must be a non-empty string")
    return value


def _object(request: HttpRequest) -> dict[str, Any]:
    value = request.json()
    if not isinstance(value, dict):
        raise HttpError(400, "the body must be a JSON object")
    return value


def _flag(request: HttpRequest, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true", "yes")


class ManagementApi:
    """The commands, over a running :class:`~sipcore.app.service.App`."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def handle(self, request: HttpRequest) -> tuple[int, object]:
        segments = [s for s in request.path.split("/") if s]
        matching = [(r, p) for r in ROUTES if (p := r.match(segments)) is not None]
        for route, params in matching:
            if request.method != route.method:
                continue
            try:
                result = await route.command(self, request, params)
            except (DialogManagementError, DispatcherManagementError) as exc:
                status = (
                    exc.status_hint if exc.status_hint and 400 <= exc.status_hint < 600 else 500
                )
                raise HttpError(status, exc.reason) from None
            return 200, {"result": result}
        if matching:
            allowed = sorted({r.method for r, _ in matching})
            raise HttpError(405, f"{request.path} takes {', '.join(allowed)}")
        raise HttpError(404, f"no such endpoint: {request.path} (GET / lists them)")

    # -- general -----------------------------------------------------------------------

    async def index(self, request: HttpRequest, params: list[str]) -> object:
        return [f"{r.method} /{'/'.join(r.pattern)}" for r in ROUTES]

    async def health(self, request: HttpRequest, params: list[str]) -> object:
        return {
            "status": "running" if self.app.router.accepting else "draining",
            "uptime": round(self.app.uptime(), 3),
        }

    async def stats(self, request: HttpRequest, params: list[str]) -> object:
        app = self.app
        out: dict[str, object] = {
            "proxy": dict(app.proxy.stats),
            "active_requests": app.proxy.active_requests,
            "waiting_requests": app.router.waiting,
            "routing": attrs.asdict(app.router.counters),
            "dialogs": attrs.asdict(app.tracker.stats),
        }
        if app.media is not None:
            out["media"] = attrs.asdict(app.media.counters)
        return out

    # -- dialogs (dlg.*) -------------------------------------------------------------------

    async def dialogs(self, request: HttpRequest, params: list[str]) -> object:
        mgmt = self.app.dialog_management
        context = _flag(request, "context")
        call_id = request.query.get("call_id")
        if call_id is not None:
            return mgmt.dlg_list(call_id, request.query.get("from_tag"), context=context)
        return mgmt.list(context=context)

    async def dialog_stats(self, request: HttpRequest, params: list[str]) -> object:
        return {
            "active": self.app.dialog_management.stats_active(),
            "statistics": attrs.asdict(self.app.tracker.stats),
        }

    async def end_dialog(self, request: HttpRequest, params: list[str]) -> object:
        body = _object(request)
        mgmt = self.app.dialog_management
        now = self.app.now()
        if "h_entry" in body or "h_id" in body:
            mgmt.end_dlg(_int(body, "h_entry"), _int(body, "h_id"), now=now)
        else:
            mgmt.terminate_dlg(
                _str(body, "call_id"), _str(body, "from_tag"), _str(body, "to_tag"), now=now
            )
        self.app.flush()
        return "Ok. Dialog ended."

    async def profiles(self, request: HttpRequest, params: list[str]) -> object:
        tracker = self.app.tracker
        return {
            name: {
                "size": tracker.profile_size(name),
                "values": len(tracker.profiles[name].values()),
            }
            for name in (CALLER_PROFILE, ACCOUNT_PROFILE)
        }

    async def profile(self, request: HttpRequest, params: list[str]) -> object:
        (name,) = params
        mgmt = self.app.dialog_management
        value = request.query.get("value")
        size = mgmt.profile_get_size(name, value)
        out: dict[str, object] = {"profile": name, "value": value, "size": size}
        if value is None:
            profile = self.app.tracker.profiles[name]
            values = profile.values()
            counts = sorted(((profile.size(v), v) for v in values), reverse=True)
            out["values"] = {v: n for n, v in counts[:_MAX_VALUES]}
            out["truncated"] = len(values) > _MAX_VALUES
        return out

    async def profile_dialogs(self, request: HttpRequest, params: list[str]) -> object:
        (name,) = params
        return self.app.dialog_management.profile_list(name, request.query.get("value"))

    # -- dispatcher (dispatcher.*) ---------------------------------------------------------

    async def dispatcher_list(self, request: HttpRequest, params: list[str]) -> object:
        mode = request.query.get("mode", "")
        if mode not in ("", "short", "full"):
            raise HttpError(400, "mode is short or full")
        return self.app.dispatcher_management.list(mode)

    async def set_state(self, request: HttpRequest, params: list[str]) -> object:
        body = _object(request)
        group = _int(body, "group")
        mgmt = self.app.dispatcher_management
        if "duid" in body:
            result = mgmt.set_duid_state(_str(body, "state"), group, _str(body, "duid"))
        else:
            result = mgmt.set_state(_str(body, "state"), group, _str(body, "address"))
        self.app.report_destination_events(mgmt.take_events(), "dispatcher.set_state")
        return result

    async def reload(self, request: HttpRequest, params: list[str]) -> object:
        try:
            return await self.app.reload_destinations()
        except ConfigError as exc:
            raise HttpError(500, f"Reload Failed: {exc}") from None

    async def ping_active(self, request: HttpRequest, params: list[str]) -> object:
        body = _object(request)
        state = body.get("state")
        if state is not None and state not in (0, 1):
            raise HttpError(400, "state is 0 or 1")
        return self.app.dispatcher_management.ping_active(state)

    # -- rtpengine (rtpengine.*) ----------------------------------------------------------

    def _media(self) -> MediaRelay:
        media = self.app.media
        if media is None:
            raise HttpError(404, "no rtpengine node is configured ([media])")
        return media

    def _nodes(self, media: MediaRelay, url: str = "all") -> list[dict[str, object]]:
        now = self.app.now()
        return [_node(info, now) for info in media.show(url)]

    async def rtpengine(self, request: HttpRequest, params: list[str]) -> object:
        media = self._media()
        url = request.query.get("url", "all")
        try:
            nodes = self._nodes(media, url)
        except MediaError as exc:
            raise HttpError(404, exc.reason) from None
        return {
            "nodes": nodes,
            "hash_total": media.rtp.get_hash_total(),
            "pending": media.rtp.pool.pending,
            "calls": media.calls,
        }

    async def rtpengine_enable(self, request: HttpRequest, params: list[str]) -> object:
        media = self._media()
        body = _object(request)
        url = _str(body, "url")
        enabled = body.get("enabled")
        if enabled not in (True, False, 0, 1) or isinstance(enabled, float):
            raise HttpError(400, "enabled must be true or false (1 or 0)")
        loop = asyncio.get_running_loop()
        try:
            pings = media.enable(url, bool(enabled), self.app.now())
        except MediaError as exc:
            raise HttpError(404, exc.reason) from None
        waits: list[asyncio.Future[bool]] = []
        for command_id in pings:
            done: asyncio.Future[bool] = loop.create_future()
            media.watch(command_id, functools.partial(_settle, done))
            waits.append(done)
        self.app.flush()
        # Kamailio answers rtpengine.enable 1 after the ping; the pool
        # bounds it to rtpengine_retr sends rtpengine_tout_ms apart.
        options = media.options
        bound = options.rtpengine_retr * options.rtpengine_tout_ms / 1000 + 1.0
        try:
            answered = await asyncio.wait_for(asyncio.gather(*waits), bound)
        except TimeoutError:  # pragma: no cover - the pool ends every ping sooner
            answered = [f.done() and f.result() for f in waits]
        finally:
            for command_id in pings:
                media.forget(command_id)
        nodes = self._nodes(media, url)
        if not all(answered):
            silent = [n["url"] for n in nodes if not n["active"]]
            raise HttpError(
                500, f"not enabled, no answer to the ping: {', '.join(map(str, silent))}"
            )
        return {"nodes": nodes}


def _settle(future: asyncio.Future[bool], outcome: object) -> None:
    if not future.done():
        future.set_result(isinstance(outcome, ReplyReceived))


def _node(info: NodeInfo, now: float) -> dict[str, object]:
    """One node as ``rtpengine.show`` lists it; ``recheck_in`` is how long a
    node disabled for not answering waits for its next ping (seconds)."""
    return {
        "url": info.url,
        "set": info.setid,
        "index": info.index,
        "weight": info.weight,
        "disabled": info.disabled,
        "active": info.active,
        "recheck_in": None
        if info.recheck_at is None
        else round(max(0.0, info.recheck_at - now), 3),
    }


@attrs.frozen
class Route:
    """``method`` and a path of literal segments and ``*`` (a parameter)."""

    method: str
    pattern: tuple[str, ...]
    command: Command

    def match(self, segments: list[str]) -> list[str] | None:
        if len(segments) != len(self.pattern):
            return None
        params = []
        for want, have in zip(self.pattern, segments, strict=True):
            if want == "*":
                params.append(have)
            elif want != have:
                return None
        return params


def _route(method: str, path: str, command: Command) -> Route:
    return Route(method, tuple(s for s in path.split("/") if s), command)


ROUTES: Final = (
    _route("GET", "/", ManagementApi.index),
    _route("GET", "/health", ManagementApi.health),
    _route("GET", "/stats", ManagementApi.stats),
    _route("GET", "/dialogs", ManagementApi.dialogs),
    _route("GET", "/dialogs/stats", ManagementApi.dialog_stats),
    _route("POST", "/dialogs/end", ManagementApi.end_dialog),
    _route("GET", "/profiles", ManagementApi.profiles),
    _route("GET", "/profiles/*", ManagementApi.profile),
    _route("GET", "/profiles/*/dialogs", ManagementApi.profile_dialogs),
    _route("GET", "/dispatcher/list", ManagementApi.dispatcher_list),
    _route("POST", "/dispatcher/set_state", ManagementApi.set_state),
    _route("POST", "/dispatcher/reload", ManagementApi.reload),
    _route("POST", "/dispatcher/ping_active", ManagementApi.ping_active),
    _route("GET", "/rtpengine", ManagementApi.rtpengine),
    _route("POST", "/rtpengine/enable", ManagementApi.rtpengine_enable),
)
