"""The running ``sipcore-proxy``: the libraries wired to sockets and a clock.

This module owns :class:`App`, the I/O shell over the sans-I/O parts: a
:class:`sipcore.Proxy` served by :mod:`sipcore.asyncio`, with a
:class:`sipcore_dialog.DialogTracker` (and its SQLite store), a
:class:`sipcore_dispatch.Dispatcher` and its :class:`ProbeService`, the
routing script of :mod:`.routing`, the rtpengine control of :mod:`.media`
(with its ng UDP sockets) and the management endpoint of
:mod:`.management`. It reads the loop's clock, resolves destination names
(at start and on reload), logs what happens, and stops gracefully.

:func:`run` is the programmatic entry: the command line and the tests use
it the same way, the tests with port 0 everywhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Final, TypeVar

import sipcore.asyncio
from sipcore import (
    Endpoint,
    LocalProtocolError,
    Proxy,
    ProxyConfig,
    Request,
    Response,
    Send,
    TimerSettings,
    is_ip_address,
)
from sipcore_dialog import (
    DbMode,
    DialogConfig,
    DialogManagement,
    DialogTracker,
    SQLiteDialogStore,
    events,
)
from sipcore_dispatch import (
    Destination,
    DestinationDown,
    Dispatcher,
    DispatcherManagement,
    Prober,
    ProbeService,
)
from sipcore_dispatch.events import DestinationEvent
from sipcore_media import NodeDisabled, parse_rtpengine_sock

from .config import AppConfig, ConfigError, MediaOptions, error_at, read_destinations
from .httpserver import JsonHttpServer
from .logs import event
from .management import ManagementApi
from .media import MediaRelay
from .routing import ACCOUNT_PROFILE, CALLER_PROFILE, Router

__all__ = ["App", "run"]

# How long resolving the destinations' host names may take, all together.
_RESOLVE_TIMEOUT: Final = 10.0
# Alg 10 counts calls per destination: the dialog events keep the count.
_CALL_LOAD: Final = 10

_V = TypeVar("_V")

log = logging.getLogger("sipcore.app")


class _ObservedCore:
    """The proxy as the asyncio adapter drives it, with a look at the
    events the prober queued after every call (so that they are logged
    when they happen, not when someone asks), and, with media, the
    responses held for their rtpengine answer kept off the wire until it
    is back (:meth:`MediaRelay.filter`)."""

    def __init__(
        self, proxy: Proxy, after: Callable[[], object], media: MediaRelay | None = None
    ) -> None:
        self.proxy = proxy
        self._after = after
        self._media = media

    def _out(self, sends: list[Send]) -> list[Send]:
        media = self._media
        if media is None:
            return sends
        return [*media.filter(sends), *media.take_sends()]

    def receive(self, data: bytes | Request | Response, source: Endpoint, now: float) -> list[Send]:
        try:
            return self._out(self.proxy.receive(data, source, now))
        finally:
            self._after()

    def tick(self, now: float) -> list[Send]:
        try:
            return self._out(self.proxy.tick(now))
        finally:
            self._after()

    def next_deadline(self) -> float | None:
        return self.proxy.next_deadline()

    def take(self) -> list[Send]:
        return self._out(self.proxy.take())

    def transport_error(self, send: Send, now: float) -> list[Send]:
        try:
            return self._out(self.proxy.transport_error(send, now))
        finally:
            self._after()


class _NgSocket(asyncio.DatagramProtocol):
    """One UDP socket to the rtpengine nodes of one address family."""

    def __init__(self, deliver: Callable[[bytes, tuple[str, int]], object]) -> None:
        self._deliver = deliver

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        host, port = addr[0], addr[1]
        if isinstance(host, str) and isinstance(port, int):
            self._deliver(data, (host, port))

    def error_received(self, exc: Exception) -> None:
        # ICMP "port unreachable" from a dead node: the pool's timers decide.
        log.debug("ng socket error: %s", exc)


def _ng_binds(options: MediaOptions) -> dict[int, tuple[str, int]]:
    """Where to bind the ng sockets: one per address family the nodes use,
    on loopback when every node of that family is (an ephemeral port)."""
    hosts: dict[int, list[ipaddress.IPv4Address | ipaddress.IPv6Address]] = {}
    for spec in parse_rtpengine_sock(options.rtpengine_sock):
        address = ipaddress.ip_address(spec.address.host or "")
        family = int(socket.AF_INET6 if address.version == 6 else socket.AF_INET)
        hosts.setdefault(family, []).append(address)
    binds: dict[int, tuple[str, int]] = {}
    for family, addresses in hosts.items():
        loopback = all(a.is_loopback for a in addresses)
        if family == socket.AF_INET6:
            binds[family] = ("::1" if loopback else "::", 0)
        else:
            binds[family] = ("127.0.0.1" if loopback else "0.0.0.0", 0)
    return binds


class App:
    """One ``sipcore-proxy``: :meth:`start` binds and loads, :meth:`shutdown`
    drains and flushes. Between the two, the attributes are the live parts
    (``proxy``, ``tracker``, ``dispatcher``, ``router``, ...);
    ``sip_listen`` and ``management_address`` are the bound addresses."""

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self.dispatcher = Dispatcher(config.dispatcher_config())
        self.sip_listen: tuple[Endpoint, ...] = ()
        self.management_address: tuple[str, int] | None = None
        self._names: dict[str, str] = {}
        self._pending: list[Destination] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: sipcore.asyncio.Server | None = None
        self._http: JsonHttpServer | None = None
        self._proxy: Proxy | None = None
        self._tracker: DialogTracker | None = None
        self._router: Router | None = None
        self._media: MediaRelay | None = None
        self._ng: dict[int, asyncio.DatagramTransport] = {}
        self._probe_service: ProbeService | None = None
        self._dialog_management: DialogManagement | None = None
        self._dispatcher_management: DispatcherManagement | None = None
        self._stopped = False
        self._idle = asyncio.Event()
        self._hurry = asyncio.Event()
        self._started_at = 0.0
        self._to_unix = 0.0  # unix time minus the loop's clock

    # -- the live parts ---------------------------------------------------------------

    def _running(self, value: _V | None) -> _V:
        if value is None:
            raise LocalProtocolError("the proxy is not started")
        return value

    @property
    def proxy(self) -> Proxy:
        return self._running(self._proxy)

    @property
    def tracker(self) -> DialogTracker:
        return self._running(self._tracker)

    @property
    def router(self) -> Router:
        return self._running(self._router)

    @property
    def media(self) -> MediaRelay | None:
        """The rtpengine control; None when the configuration has no node."""
        self._running(self._router)
        return self._media

    @property
    def dialog_management(self) -> DialogManagement:
        return self._running(self._dialog_management)

    @property
    def dispatcher_management(self) -> DispatcherManagement:
        return self._running(self._dispatcher_management)

    def now(self) -> float:
        """The loop's clock, the one the proxy and the tracker run on."""
        return self._running(self._loop).time()

    def uptime(self) -> float:
        """Seconds since :meth:`start` finished."""
        return self.now() - self._started_at

    def flush(self) -> None:
        """Send what a command queued in the proxy (BYEs of an ended dialog)
        and in the media part (ng datagrams)."""
        if self._server is not None:
            self._server.flush()
        self._flush_media()

    # -- starting -----------------------------------------------------------------------

    async def start(self) -> None:
        """Resolve and load the destinations, open the dialog store and load
        its dialogs, bind the SIP sockets and the management endpoint.
        Raises :class:`ConfigError` for what the file got wrong, OSError
        when a socket cannot be bound."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        config = self.config
        destinations = read_destinations(config)
        self._names = await self._resolve(destinations)
        self.dispatcher.load(destinations)
        self._tracker = self._make_tracker(loop)
        if config.media.active:
            self._media = MediaRelay(config.media)
        self._router = Router(
            config,
            self.dispatcher,
            self._tracker,
            on_destination_event=self._destination_event,
            media=self._media,
        )
        self._router.on_idle = self._idle.set
        self._subscribe(self._tracker)
        try:
            await self._open_ng()
        except BaseException:
            self._close_ng()
            self._tracker.close()
            raise
        p = config.proxy
        limits = sipcore.asyncio.ConnectionLimits(
            connect_timeout=p.tcp_connect_timeout,
            max_connections=p.tcp_max_connections,
            idle_timeout=p.tcp_idle_timeout,
        )
        try:
            self._server = await sipcore.asyncio.serve(
                self._make_core, listen=p.listen, limits=limits
            )
        except BaseException:
            self._close_ng()
            self._tracker.close()
            raise
        self.sip_listen = self._server.listen
        if self._media is not None:
            self._media.start(loop.time())  # ping every node
            self.flush()
        try:
            await self._start_management()
        except BaseException:
            await self._close_sockets()
            self._tracker.close()
            raise
        self._started_at = loop.time()
        event(
            "ready",
            "sipcore-proxy is ready",
            sip=[f"{e.transport.lower()}:{e.hostport}" for e in self.sip_listen],
            management=(
                None
                if self.management_address is None
                else f"{self.management_address[0]}:{self.management_address[1]}"
            ),
            destinations=len(destinations),
            dialogs=len(self._tracker),
            rtpengine=[i.url for i in self._media.show()] if self._media is not None else [],
        )

    def _make_tracker(self, loop: asyncio.AbstractEventLoop) -> DialogTracker:
        c = self.config
        stored = c.persistence.enabled
        dialog_config = DialogConfig(
            default_timeout=c.dialog.default_timeout,
            early_timeout=c.dialog.early_timeout,
            noack_timeout=c.dialog.noack_timeout,
            end_timeout=c.dialog.end_timeout,
            send_bye=c.dialog.send_bye,
            ka_interval=c.dialog.keepalive_interval,
            db_mode=c.persistence.mode if stored else DbMode.NONE,
            db_update_period=c.persistence.update_period,
            profiles_with_value=(CALLER_PROFILE, ACCOUNT_PROFILE),
        )
        store = None
        if stored:
            path = c.persistence.path
            try:
                store = SQLiteDialogStore(path, synchronous=c.persistence.synchronous.upper())
            except (sqlite3.Error, OSError) as exc:
                raise error_at(c, "persistence.path", f"cannot open {path!r}: {exc}") from None
        # The store keeps unix times; the tracker runs on the loop's clock.
        offset = time.time() - loop.time()
        tracker = DialogTracker(dialog_config, store=store, wall_clock_offset=offset)
        self._to_unix = offset
        return tracker

    def _make_core(self, bound: tuple[Endpoint, ...]) -> _ObservedCore:
        """The proxy, made once the sockets are bound (their ports are in
        Via and Record-Route), with everything that runs on its timers."""
        loop = self._running(self._loop)
        tracker, router = self.tracker, self.router
        p = self.config.proxy
        proxy_config = ProxyConfig(
            listen=bound,
            aliases=frozenset(a.lower() for a in p.aliases),
            timers=TimerSettings(t1=p.t1, t2=p.t2, t4=p.t4),
            fr_inv_timeout=p.fr_inv_timeout,
            default_max_forwards=p.max_forwards,
            server_header=p.server_header or None,
        )
        proxy = Proxy(proxy_config, router.route, resolver=self._resolve_name)
        tracker.attach(proxy)
        router.hook(proxy)
        if self._media is not None:
            self._media.attach(proxy, tracker)
        now = loop.time()
        prober = Prober(self.dispatcher, now=now)
        self._probe_service = ProbeService(prober, proxy)
        proxy.services.append(self._probe_service)
        proxy.services.append(self.dispatcher)  # alg 10's call-load expiry
        self._proxy = proxy
        offset = self._to_unix
        self._dialog_management = DialogManagement(tracker, to_unix=lambda t: t + offset)
        self._dispatcher_management = DispatcherManagement(
            self.dispatcher, prober=prober, reload=self._load_pending
        )
        if self.config.persistence.enabled:
            report = tracker.load(now)
            event(
                "dialogs.loaded",
                f"{len(report.dialogs)} dialogs loaded from {self.config.persistence.path}",
                loaded=len(report.dialogs),
                skipped=report.skipped_count,
                reasons=[s.reason for s in report.skipped[:10]],
            )
        return _ObservedCore(proxy, self._after_core, self._media)

    async def _start_management(self) -> None:
        m = self.config.management
        if not m.enabled:
            return
        api = ManagementApi(self)
        self._http = JsonHttpServer(api.handle, max_request_bytes=m.max_request_bytes)
        self.management_address = await self._http.start(m.host, m.port)

    # -- the ng sockets ---------------------------------------------------------------

    async def _open_ng(self) -> None:
        if self._media is None:
            return
        loop = self._running(self._loop)
        for family, address in _ng_binds(self.config.media).items():
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _NgSocket(self._ng_received), local_addr=address, family=family
            )
            self._ng[family] = transport

    def _close_ng(self) -> None:
        for transport in self._ng.values():
            transport.close()
        self._ng.clear()

    def _ng_received(self, data: bytes, source: tuple[str, int]) -> None:
        media = self._media
        if media is None or not self._ng:
            return
        try:
            media.receive(data, source, self.now())
        except Exception:
            log.exception("the media part raised on an ng reply from %s:%s", *source)
        self.flush()  # the requests it let go, the responses it released

    def _flush_media(self) -> None:
        """Send the ng datagrams the media part queued; log its node events."""
        media = self._media
        if media is None:
            return
        for transmit in media.take_transmits():
            host, port = transmit.destination
            family = int(socket.AF_INET6 if ":" in host else socket.AF_INET)
            transport = self._ng.get(family)
            if transport is None or transport.is_closing():
                continue  # stopping: the pool's timers give up on it
            transport.sendto(transmit.datagram, (host, port))
        for change in media.take_node_events():
            down = isinstance(change, NodeDisabled)
            fields: dict[str, object] = {"url": change.url}
            if isinstance(change, NodeDisabled):
                fields["reason"] = change.reason
                fields["until"] = (
                    None if change.until is None else round(change.until + self._to_unix, 3)
                )
            event(
                "rtpengine.down" if down else "rtpengine.up",
                f"rtpengine {change.url} is {'down' if down else 'up'}",
                level=30 if down else 20,
                **fields,
            )

    # -- names ---------------------------------------------------------------------------

    def _resolve_name(self, host: str) -> str | None:
        return self._names.get(host.lower())

    async def _resolve(self, destinations: Iterable[Destination]) -> dict[str, str]:
        """The address of each destination host that is a name, of a family
        the proxy listens on (Kamailio resolves them at load too)."""
        loop = self._running(self._loop)
        families = {
            socket.AF_INET6 if ":" in e.host else socket.AF_INET for e in self.config.proxy.listen
        }
        names = sorted(
            {
                d.host.lower()
                for d in destinations
                if d.host and not is_ip_address(d.host.strip("[]"))
            }
        )
        out: dict[str, str] = {}

        async def resolve(name: str) -> None:
            try:
                infos = await loop.getaddrinfo(name, None, type=socket.SOCK_DGRAM)
            except OSError as exc:
                raise self._name_error(name, f"cannot resolve {name}: {exc}") from None
            for family, _, _, _, address in infos:
                if family in families:
                    out[name] = str(address[0])
                    return
            raise self._name_error(name, f"{name} has no address of a family the proxy listens on")

        try:
            async with asyncio.timeout(_RESOLVE_TIMEOUT):
                for name in names:
                    await resolve(name)
        except TimeoutError:
            raise self._name_error(
                "", f"resolving {len(names)} names took over {_RESOLVE_TIMEOUT} s"
            ) from None
        return out

    def _name_error(self, name: str, message: str) -> ConfigError:
        key = (
            "dispatcher.list_file"
            if self.config.dispatcher.list_file
            else "dispatcher.destinations"
        )
        return error_at(self.config, key, message)

    # -- reloading ----------------------------------------------------------------------

    async def reload_destinations(self) -> object:
        """``dispatcher.reload``: read the destinations again (the config
        file's, or the list file), resolve their names, and swap them in;
        destinations that stay keep their state. Raises :class:`ConfigError`
        when the file is wrong, leaving the old table in place."""
        destinations = read_destinations(self.config, reread=True)
        names = await self._resolve(destinations)
        self._pending = destinations
        try:
            result = self.dispatcher_management.reload(now=self.now())
        finally:
            self._pending = None
        self._names = names
        event("dispatcher.reloaded", "destinations reloaded", destinations=len(destinations))
        return result

    def _load_pending(self) -> None:
        if self._pending is not None:
            self.dispatcher.load(self._pending)

    # -- events -------------------------------------------------------------------------

    def _after_core(self) -> None:
        service = self._probe_service
        if service is not None:
            self.report_destination_events(service.take_events(), "probe")
        self._flush_media()

    def _destination_event(self, change: DestinationEvent, cause: str) -> None:
        self.report_destination_events([change], cause)

    def report_destination_events(self, changes: Iterable[DestinationEvent], cause: str) -> None:
        """Log each destination that left or rejoined the rotation."""
        for change in changes:
            down = isinstance(change, DestinationDown)
            event(
                "destination.down" if down else "destination.up",
                f"{change.uri} in set {change.setid} is {'down' if down else 'up'} ({cause})",
                level=30 if down else 20,
                setid=change.setid,
                uri=change.uri,
                state=int(change.state),
                code=change.code,
                reason=change.reason,
                cause=cause,
            )

    def _subscribe(self, tracker: DialogTracker) -> None:
        def started(e: events.DialogStart) -> None:
            d = e.dialog
            if self.config.dispatcher.algorithm == _CALL_LOAD:
                self.dispatcher.load_update(d.call_id, tracker.now)
            event(
                "dialog.start", "call answered", call_id=d.call_id, h_entry=d.h_entry, h_id=d.h_id
            )

        def ended(e: events.DialogEnd) -> None:
            d = e.dialog
            if self.config.dispatcher.algorithm == _CALL_LOAD:
                self.dispatcher.load_unset(d.call_id)
            event("dialog.end", "call ended", call_id=d.call_id, expired=d.expired)

        def failed(e: events.DialogFailed) -> None:
            d = e.dialog
            if self.config.dispatcher.algorithm == _CALL_LOAD:
                self.dispatcher.load_unset(d.call_id)
            code = e.message.status_code if e.message is not None else None
            event("dialog.failed", "call failed", call_id=d.call_id, status=code)

        tracker.subscribe(events.DialogStart, started)
        tracker.subscribe(events.DialogEnd, ended)
        tracker.subscribe(events.DialogFailed, failed)

    # -- stopping -----------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop gracefully: answer new requests 503, give the requests still
        waiting for an answer up to ``proxy.shutdown_grace`` seconds (less
        after :meth:`hurry`), close every socket, then flush and close the
        dialog store. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        router = self._router
        grace = self.config.proxy.shutdown_grace
        if router is not None:
            router.accepting = False
            waiting = router.waiting
            event("stopping", "stopping", waiting=waiting, grace=grace)
            if waiting and not self._hurry.is_set():
                self._idle.clear()
                idle = asyncio.ensure_future(self._idle.wait())
                hurry = asyncio.ensure_future(self._hurry.wait())
                try:
                    await asyncio.wait((idle, hurry), timeout=grace, return_when="FIRST_COMPLETED")
                finally:
                    idle.cancel()
                    hurry.cancel()
        abandoned = router.waiting if router is not None else 0
        await self._close_sockets()
        tracker = self._tracker
        dialogs = 0
        if tracker is not None:
            dialogs = len(tracker)
            tracker.close()  # Kamailio's shutdown write; then the store is closed
        event("stopped", "stopped", abandoned=abandoned, dialogs=dialogs)

    def hurry(self) -> None:
        """Cut the grace of a shutdown short (a second SIGTERM)."""
        self._hurry.set()

    async def _close_sockets(self) -> None:
        if self._http is not None:
            self._http.close()
            await self._http.wait_closed()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self._close_ng()

    async def __aenter__(self) -> App:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()


async def run(
    config: AppConfig,
    *,
    stop: asyncio.Event | None = None,
    started: Callable[[App], object] | None = None,
) -> None:
    """Run ``sipcore-proxy`` until ``stop`` is set, then stop gracefully.
    ``started(app)`` is called once it is ready (the bound ports are in
    ``app.sip_listen`` and ``app.management_address``)."""
    stop = stop if stop is not None else asyncio.Event()
    app = App(config)
    await app.start()
    try:
        if started is not None:
            started(app)
        await stop.wait()
    finally:
        await app.shutdown()
