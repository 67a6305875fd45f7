"""``sipcore-demo`` (also ``python -m sipcore demo``): the load balancer at work.

It starts ``sipcore-proxy`` in-process (:class:`sipcore.app.App` on
127.0.0.1, every port chosen by the system) in front of three backend UASes,
places calls through it from one UAC, takes backend 2 down twice while the
calls run (first silent, then answering 503) and brings it back, and ends
with a summary: calls placed and completed, the distribution over the
backends, the failovers and the destination marked down and up, the calls
refused by the per-caller limit, the dialog statistics and the profile
sizes, as the management endpoint reports them.

This module owns the demo's user agents (asyncio UDP sockets, messages
built with :func:`sipcore.make_request` / :func:`sipcore.make_response`,
in-dialog requests sent along the Record-Route set), the scenario, the
progress lines and the summary. It drives the proxy only as a client
would, over SIP and the management endpoint; it looks inside only to
observe (the proxy's hooks and the application's log events), never to
steer. It needs nothing but the install: no peer, no file, no network
beyond 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import functools
import json
import logging
import os
import secrets
import shutil
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import IO, Any, Final, cast

import attrs

from . import (
    URI,
    Branch,
    Endpoint,
    Request,
    RequestContext,
    Response,
    SipError,
    SipURI,
    make_ack,
    make_request,
    make_response,
    new_branch,
    parse_message,
    uri_destination,
)
from .app import App, parse_config
from .app.logs import JsonFormatter

__all__ = ["Options", "Summary", "main", "parse_args", "run"]

LOOPBACK: Final = "127.0.0.1"
BACKENDS: Final = ("b1", "b2", "b3")
#: The backend the scenario takes down and brings back.
FLAKY: Final = "b2"
TENANTS: Final = ("acme.example", "globex.example", "initech.example")
#: The caller whose bursts of three calls meet the per-caller limit.
BUSY_CALLER: Final = "sales"
BUSY_TENANT: Final = "globex.example"
BURST: Final = 3
BURSTS: Final = 5
PER_CALLER_LIMIT: Final = 2
#: Callers besides the busy one; a caller comes back only after this many
#: calls, long after its last call ended, so none but the busy one meets
#: the limit.
CALLERS: Final = 90

# The proxy's timers: a short T1 makes Timer B and Timer F (64 x T1) 1.6 s,
# so a backend that goes silent is noticed quickly; probes every second.
PROXY_T1: Final = 0.025
PROBE_INTERVAL: Final = 1
# The UAC's own retransmission timers (RFC 3261 defaults), and how long it
# waits for any final answer.
UAC_T1: Final = 0.5
UAC_T2: Final = 4.0
ANSWER_WAIT: Final = 15.0
# The longest the scenario waits for the proxy to notice a change.
NOTICE_WAIT: Final = 15.0
# Bounds: calls in progress at once, the calls a run may place, the
# answers a backend remembers for retransmissions.
MAX_CONCURRENT: Final = 32
MIN_CALLS: Final = 30
MAX_CALLS: Final = 20_000
MAX_REMEMBERED: Final = 4096
PROGRESS_EVERY: Final = 1.0
SAMPLE_EVERY: Final = 0.5
HTTP_WAIT: Final = 3.0
MAX_HTTP_ANSWER: Final = 1 << 20

DEFAULT_CALLS: Final = 300
DEFAULT_RATE: Final = 10.0
DEFAULT_HOLD: Final = 0.4
QUICK_RATE: Final = 40.0
QUICK_HOLD: Final = 0.1


@attrs.frozen
class Options:
    """What to run: ``calls`` at ``rate`` calls per second, each held
    ``hold`` seconds between its ACK and its BYE."""

    calls: int = DEFAULT_CALLS
    rate: float = DEFAULT_RATE
    hold: float = DEFAULT_HOLD


# -- what the demo records --------------------------------------------------------------------


class Mode(enum.Enum):
    """How a backend behaves."""

    UP = "up"
    SILENT = "silent"  # reads everything, answers nothing (a crash, a cut cable)
    OVERLOADED = "503"  # new calls and probes get 503 (overload, maintenance)


@attrs.frozen
class Attempt:
    """One branch of a call's INVITE, as the proxy saw it end."""

    backend: str
    code: int | None
    local: bool  # the answer was made in the proxy (a Timer B 408)


@attrs.frozen
class CallResult:
    """One call, from the UAC's side, with the proxy's branches."""

    index: int
    call_id: str
    caller: str
    tenant: str
    code: int | None  # the INVITE's final answer; None: none came
    reason: str
    answered_by: str | None
    bye_code: int | None
    setup_time: float
    attempts: tuple[Attempt, ...] = ()

    @property
    def completed(self) -> bool:
        return self.code is not None and 200 <= self.code < 300 and self.bye_code == 200

    @property
    def rejected_by_limit(self) -> bool:
        return self.code == 486

    @property
    def cut_off(self) -> bool:
        """Answered, but its BYE was not: the backend died under it."""
        return self.code is not None and 200 <= self.code < 300 and self.bye_code != 200

    @property
    def failed(self) -> bool:
        """No answer, an error answer other than the limit's, or cut off."""
        return self.code is None or (self.code >= 300 and self.code != 486) or self.cut_off

    @property
    def failed_over(self) -> bool:
        return len(self.attempts) > 1


class Kind(enum.Enum):
    """What a timeline entry is about."""

    BACKEND = "backend"  # a backend changed, or the proxy marked one
    FAILOVER = "failover"
    LIMIT = "limit"


@attrs.frozen
class TimelineEntry:
    at: float  # seconds since the first call
    placed: int  # calls placed by then
    kind: Kind
    text: str


@attrs.define
class BackendCounts:
    invites: int = 0  # new INVITEs (retransmissions not counted)
    answered: int = 0  # with 200
    refused: int = 0  # with 503
    unanswered: int = 0  # read while silent
    byes: int = 0
    probes_answered: int = 0
    probes_unanswered: int = 0


@attrs.frozen
class BackendSummary:
    name: str
    address: str
    calls: int  # calls it completed
    counts: BackendCounts
    flags: str  # its dispatcher state at the end (Kamailio's flags)
    calls_after_back: int  # calls it completed after it was last marked up


@attrs.frozen
class Summary:
    """Everything the summary prints, for the tests to read too."""

    options: Options
    placed: int  # INVITEs the UAC sent (new calls, not retransmissions)
    duration: float
    proxy: str
    management: str
    calls: tuple[CallResult, ...]
    backends: tuple[BackendSummary, ...]
    timeline: tuple[TimelineEntry, ...]
    down_events: int
    up_events: int
    invites_to_down_backend: int  # relayed to a destination out of rotation
    limit_events: tuple[dict[str, Any], ...]
    stats: dict[str, Any]  # GET /stats at the end
    dialog_stats: dict[str, Any]  # GET /dialogs/stats at the end
    profiles: dict[str, Any]  # GET /profiles at the end
    peaks: dict[str, int]
    tenant_peaks: dict[str, int]
    checks: tuple[tuple[str, bool], ...]

    @property
    def completed(self) -> int:
        return sum(1 for c in self.calls if c.completed)

    @property
    def rejected_by_limit(self) -> int:
        return sum(1 for c in self.calls if c.rejected_by_limit)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.calls if c.failed)

    @property
    def cut_off(self) -> tuple[CallResult, ...]:
        return tuple(c for c in self.calls if c.cut_off)

    @property
    def failed_over(self) -> tuple[CallResult, ...]:
        return tuple(c for c in self.calls if c.failed_over)

    @property
    def ok(self) -> bool:
        return all(passed for _, passed in self.checks)


# -- the backends -----------------------------------------------------------------------------


class Backend(asyncio.DatagramProtocol):
    """A UAS on 127.0.0.1 that answers calls by itself, as :attr:`mode` says.

    An INVITE gets 200 with a Contact naming the backend (its Record-Route
    copied by ``make_response``) or 503, or nothing when silent; a BYE
    gets 200 (481 for a call it does not know); an OPTIONS (the proxy's
    probe) 200 or 503 or nothing. A retransmitted INVITE gets the answer
    it got before.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.mode = Mode.UP
        self.counts = BackendCounts()
        self.endpoint = Endpoint(LOOPBACK, 0)
        self.transport: asyncio.DatagramTransport | None = None
        self._answers: dict[str, Response | None] = {}  # INVITE branch -> answer
        self._calls: set[str] = set()  # Call-IDs it answered 200 and has no BYE for
        self._after_probe: tuple[Mode, asyncio.Future[None]] | None = None
        #: Requests read while silent whose transaction the proxy still runs:
        #: Call-ID -> method. The demo clears an entry when the proxy answers it.
        self.ignored: dict[str, str] = {}

    def set_mode(self, mode: Mode) -> None:
        """Behave as ``mode`` from now on. Coming back from silence is a
        restart: the calls it had are forgotten (a late BYE gets 481)."""
        if self.mode is Mode.SILENT and mode is not Mode.SILENT:
            self._calls.clear()
        self.mode = mode

    @classmethod
    async def open(cls, name: str) -> Backend:
        loop = asyncio.get_running_loop()
        transport, backend = await loop.create_datagram_endpoint(
            lambda: cls(name), local_addr=(LOOPBACK, 0)
        )
        backend.endpoint = Endpoint(LOOPBACK, transport.get_extra_info("sockname")[1])
        return backend

    @property
    def uri(self) -> str:
        return f"sip:{self.endpoint.hostport}"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's datagram transport does not subclass
        # DatagramTransport on CPython 3.11: no isinstance check.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def switch_after_probe(self, mode: Mode) -> asyncio.Future[None]:
        """Take ``mode`` just after answering the next probe: the change is
        then met by a call before the next probe (a second later) sees it."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._after_probe = (mode, done)
        return done

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            message = parse_message(data)
            if isinstance(message, Request):
                self._request(message, addr)
        except SipError:
            pass  # not for a demo backend to answer: what the proxy sends parses

    def _request(self, message: Request, addr: tuple[Any, ...]) -> None:
        method = message.method
        if method == "INVITE":
            self._invite(message, addr)
        elif method == "ACK":
            pass
        elif method == "OPTIONS":
            self._probe(message, addr)
        elif self.mode is Mode.SILENT:
            self.ignored[message.call_id] = method
        elif method == "BYE":
            known = message.call_id in self._calls
            self._calls.discard(message.call_id)
            if known:
                self.counts.byes += 1
            self._send(make_response(message, 200 if known else 481), addr)
        else:
            self._send(make_response(message, 200), addr)

    def _invite(self, invite: Request, addr: tuple[Any, ...]) -> None:
        branch = invite.via[0].branch or invite.call_id
        if branch in self._answers:  # a retransmission: the same answer again
            before = self._answers[branch]
            if before is not None:
                self._send(before, addr)
            return
        if len(self._answers) >= MAX_REMEMBERED:
            self._answers.pop(next(iter(self._answers)))
        self.counts.invites += 1
        answer: Response | None = None
        if self.mode is Mode.UP:
            self.counts.answered += 1
            self._calls.add(invite.call_id)
            contact = f"<sip:{self.name}@{self.endpoint.hostport}>"
            answer = make_response(
                invite,
                200,
                to_tag=f"{self.name}-{secrets.token_hex(4)}",
                headers=[("Contact", contact)],
            )
        elif self.mode is Mode.OVERLOADED:
            self.counts.refused += 1
            answer = make_response(invite, 503, to_tag=f"{self.name}-{secrets.token_hex(4)}")
        else:
            self.counts.unanswered += 1
            self.ignored[invite.call_id] = "INVITE"
        self._answers[branch] = answer
        if answer is not None:
            self._send(answer, addr)

    def _probe(self, options: Request, addr: tuple[Any, ...]) -> None:
        if self.mode is Mode.SILENT:
            self.counts.probes_unanswered += 1
        else:
            self.counts.probes_answered += 1
            self._send(make_response(options, 200 if self.mode is Mode.UP else 503), addr)
        if self._after_probe is not None:
            mode, done = self._after_probe
            self._after_probe = None
            self.set_mode(mode)
            if not done.done():
                done.set_result(None)

    def _send(self, response: Response, addr: tuple[Any, ...]) -> None:
        if self.transport is not None:
            self.transport.sendto(bytes(response), addr)


# -- the caller -------------------------------------------------------------------------------


class _Call:
    """One call's inbox and the ACK to send again if its 2xx comes again."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[Response] = asyncio.Queue()
        self.ack: tuple[Request, Endpoint] | None = None


class Uac(asyncio.DatagramProtocol):
    """The calling side: one UDP socket, the calls told apart by Call-ID.

    Each call is INVITE (retransmitted until the proxy's 100), its final
    answer, then for a 2xx an ACK and, after the hold, a BYE, both sent to
    the 2xx's Contact along its Record-Route (RFC 3261 12.1.2: the next
    hop is the first Route); a failure is ACKed hop by hop (17.1.1.3).
    """

    def __init__(self, proxy: Endpoint) -> None:
        self.proxy = proxy
        self.endpoint = Endpoint(LOOPBACK, 0)
        self.transport: asyncio.DatagramTransport | None = None
        self._calls: dict[str, _Call] = {}

    @classmethod
    async def open(cls, proxy: Endpoint) -> Uac:
        loop = asyncio.get_running_loop()
        transport, uac = await loop.create_datagram_endpoint(
            lambda: cls(proxy), local_addr=(LOOPBACK, 0)
        )
        uac.endpoint = Endpoint(LOOPBACK, transport.get_extra_info("sockname")[1])
        return uac

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        try:
            message = parse_message(data)
            call = self._calls.get(message.call_id) if isinstance(message, Response) else None
        except SipError:
            return
        if call is not None and isinstance(message, Response):
            call.inbox.put_nowait(message)

    def _send(self, request: Request, to: Endpoint) -> None:
        if self.transport is not None:
            self.transport.sendto(bytes(request), to.address)

    def _via(self) -> str:
        return f"SIP/2.0/UDP {self.endpoint.hostport};branch={new_branch()};rport"

    async def call(self, index: int, caller: str, tenant: str, hold: float) -> CallResult:
        loop = asyncio.get_running_loop()
        call_id = f"demo-{index:05d}-{secrets.token_hex(4)}"
        call = self._calls[call_id] = _Call()
        started = loop.time()
        invite = make_request(
            "INVITE",
            "sip:support@sipcore.demo",
            from_=f"<sip:{caller}@{tenant}>",
            to="<sip:support@sipcore.demo>",
            via=self._via(),
            call_id=call_id,
            contact=f"<sip:{caller}@{self.endpoint.hostport}>",
        )
        try:
            final = await self._transaction(call, invite, self.proxy)
            setup = loop.time() - started
            outcome = functools.partial(CallResult, index, call_id, caller, tenant)
            if final is None:
                return outcome(None, "no answer", None, None, setup)
            if final.status_code >= 300:
                self._send(make_ack(invite, final), self.proxy)
                return outcome(final.status_code, final.reason, None, None, setup)
            target, route, next_hop = self._route_set(invite, final)
            answered_by = target.user if isinstance(target, SipURI) else None
            ack = self._in_dialog("ACK", invite, final, target, route, cseq=1)
            call.ack = (ack, next_hop)
            self._send(ack, next_hop)
            await self._hold(call, hold)
            bye = self._in_dialog("BYE", invite, final, target, route, cseq=2)
            ended = await self._transaction(call, bye, next_hop)
            bye_code = None if ended is None else ended.status_code
            return outcome(final.status_code, final.reason, answered_by, bye_code, setup)
        finally:
            del self._calls[call_id]

    def _route_set(
        self, invite: Request, answer: Response
    ) -> tuple[URI, tuple[str, ...], Endpoint]:
        """The remote target, the route set and the next hop a 2xx gives."""
        target = answer.contact[0].uri if answer.contact else invite.uri
        # A UAC's route set is the Record-Route in reverse order (12.1.2).
        route = tuple(f"<{rr.uri}>" for rr in reversed(answer.record_route))
        first = answer.record_route[-1].uri if answer.record_route else target
        next_hop = uri_destination(first) or self.proxy
        return target, route, next_hop

    def _in_dialog(
        self,
        method: str,
        invite: Request,
        answer: Response,
        target: URI,
        route: tuple[str, ...],
        *,
        cseq: int,
    ) -> Request:
        return make_request(
            method,
            target,
            from_=invite.from_,
            to=answer.to,
            via=self._via(),
            call_id=invite.call_id,
            cseq=cseq,
            route=route,
        )

    async def _hold(self, call: _Call, hold: float) -> None:
        """Hold the call; a 2xx that comes again (our ACK was lost) is ACKed again."""
        loop = asyncio.get_running_loop()
        until = loop.time() + hold
        while (left := until - loop.time()) > 0:
            try:
                again = await asyncio.wait_for(call.inbox.get(), left)
            except TimeoutError:
                return
            self._late(call, again)

    def _late(self, call: _Call, response: Response) -> None:
        if response.cseq.method == "INVITE" and response.status_code < 300 and call.ack:
            self._send(*call.ack)

    async def _transaction(self, call: _Call, request: Request, to: Endpoint) -> Response | None:
        """Send ``request`` until an answer stops the retransmissions (a
        provisional for an INVITE, RFC 3261 17.1.1.2), then wait for its
        final answer; None when none came within ``ANSWER_WAIT``."""
        loop = asyncio.get_running_loop()
        method = request.method
        deadline = loop.time() + ANSWER_WAIT
        interval = UAC_T1
        retransmit_at: float | None = loop.time() + interval
        self._send(request, to)
        while True:
            now = loop.time()
            if now >= deadline:
                return None
            if retransmit_at is not None and now >= retransmit_at:
                self._send(request, to)
                interval = interval * 2 if method == "INVITE" else min(interval * 2, UAC_T2)
                retransmit_at = now + interval
            wake = deadline if retransmit_at is None else min(deadline, retransmit_at)
            try:
                response = await asyncio.wait_for(call.inbox.get(), max(wake - now, 0.0))
            except TimeoutError:
                continue
            if response.cseq.method != method:
                self._late(call, response)
                continue
            if response.status_code >= 200:
                return response
            if method == "INVITE":
                retransmit_at = None


# -- observing the proxy ------------------------------------------------------------------------


class _AppEvents(logging.Handler):
    """The application's log events (``docs/proxy-app.md``, "Logs"), read
    as the JSON lines it documents and handed to ``on_event``."""

    def __init__(self, on_event: Callable[[dict[str, Any]], object]) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self._on_event = on_event

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = json.loads(self.format(record))
        except (TypeError, ValueError):
            return
        if not isinstance(fields, dict) or "event" not in fields:
            return
        try:
            self._on_event(fields)
        except Exception:
            # Never into the proxy, which logs from inside its own work.
            self.handleError(record)


@contextlib.contextmanager
def _app_events(on_event: Callable[[dict[str, Any]], object]) -> Iterator[None]:
    """Collect the app's events (and keep them off stderr) while the demo runs."""
    logger = logging.getLogger("sipcore.app")
    handler = _AppEvents(on_event)
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


class ManagementError(Exception):
    """The management endpoint did not answer a request with a result."""


async def _get(address: tuple[str, int], path: str) -> Any:
    """``GET path`` on the management endpoint (one request per
    connection, as it serves them); its ``result``."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*address), HTTP_WAIT)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {address[0]}\r\nConnection: close\r\n\r\n".encode()
        )
        await asyncio.wait_for(writer.drain(), HTTP_WAIT)
        data = b""
        while chunk := await asyncio.wait_for(reader.read(65536), HTTP_WAIT):
            data += chunk
            if len(data) > MAX_HTTP_ANSWER:
                raise ManagementError(f"GET {path}: an answer over {MAX_HTTP_ANSWER} bytes")
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await asyncio.wait_for(writer.wait_closed(), HTTP_WAIT)
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if status != [b"200"] or not isinstance(answer, dict) or "result" not in answer:
        first = head.split(b"\r\n", 1)[0].decode(errors="replace")
        raise ManagementError(f"GET {path}: {first} {answer!r}")
    return answer["result"]


def _describe_attempt(attempt: Attempt) -> str:
    if attempt.code is None:
        return f"{attempt.backend} no answer"
    if attempt.local and attempt.code == 408:
        return f"{attempt.backend} no answer (408 after Timer B)"
    return f"{attempt.backend} {attempt.code}"


# -- output -----------------------------------------------------------------------------------


class Console:
    """Progress and events on ``stream``: on a terminal one line that updates
    in place, with the events printed above it; otherwise one progress line
    per second between the event lines (a log or a pipe reads well).

    Events are printed from inside the proxy's callbacks, so a write that
    fails (the reader of a pipe went away) must not raise there: the
    console goes quiet and says so in :attr:`broken`."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        isatty = getattr(stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.broken = False
        self._status = ""

    def _write(self, text: str) -> None:
        if self.broken:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # ValueError: the stream was closed
            self.broken = True

    def line(self, text: str) -> None:
        if self.tty and self._status:
            # Over the status line, which is then drawn again below.
            self._write("\r" + " " * len(self._status) + "\r" + text + "\n" + self._status)
        else:
            self._write(text + "\n")

    def status(self, text: str) -> None:
        if not self.tty:
            self.line(text)
            return
        # A line longer than the terminal would wrap, and "\r" would not take it back.
        text = text[: max(shutil.get_terminal_size().columns - 1, 20)]
        pad = max(len(self._status) - len(text), 0)
        self._write("\r" + text + " " * pad)
        self._status = text

    def end_status(self) -> None:
        if self.tty and self._status:
            self._write("\n")
        self._status = ""


def _numeric(cell: object) -> bool:
    """A number, or one with a unit (``41%``, ``1.60s``): right-aligned."""
    if isinstance(cell, int | float):
        return True
    text = str(cell).rstrip("%s")
    return bool(text) and text.replace(".", "", 1).isdigit()


def table(
    headers: Sequence[str], rows: Sequence[Sequence[object]], indent: str = "  "
) -> list[str]:
    """Aligned plain-text columns: text to the left, numbers to the right."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    if not rows:
        cells.append(["(none)", *[""] * (len(headers) - 1)])
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [bool(rows) and all(_numeric(row[i]) for row in rows) for i in range(len(headers))]
    out = []
    for n, row in enumerate(cells):
        parts = [
            c.rjust(w) if numeric[i] else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append(indent + "  ".join(parts).rstrip())
        if n == 0:
            out.append(indent + "  ".join("-" * w for w in widths))
    return out


# -- the run ----------------------------------------------------------------------------------


@attrs.frozen
class _Step:
    """A change of the flaky backend, made before call ``at`` is placed.
    ``wait`` is the dispatcher state to wait for first ("down" / "up")."""

    at: int
    wait: str | None
    mode: Mode | None
    after_probe: bool
    text: str  # what happens, for the timeline
    plan: str  # the same, for the plan in the header


def _steps(calls: int) -> tuple[_Step, ...]:
    c = calls
    return (
        _Step(
            c // 3,
            None,
            Mode.SILENT,
            False,
            "goes silent (answers nothing, not even OPTIONS)",
            f"silent from call {c // 3}",
        ),
        _Step(c // 2, "down", Mode.UP, False, "restarts and answers again", f"back at {c // 2}"),
        _Step(
            2 * c // 3,
            "up",
            Mode.OVERLOADED,
            True,
            "answers everything 503 (overloaded)",
            f"answers 503 from {2 * c // 3}",
        ),
        _Step(5 * c // 6, "down", Mode.UP, False, "is healthy again", f"back at {5 * c // 6}"),
        # The last calls go to all three again.
        _Step(11 * c // 12, "up", None, False, "", ""),
    )


def _bursts(calls: int) -> frozenset[int]:
    """Where the busy caller places three calls at once: spread over the
    run, clear of the scenario's steps."""
    steps = {s.at for s in _steps(calls)}
    out: list[int] = []

    def free(at: int) -> bool:
        return (
            0 <= at <= calls - BURST
            and not any(at < s < at + BURST for s in steps)
            and all(at + BURST <= b or b + BURST <= at for b in out)
        )

    for k in range(BURSTS):
        ideal = calls * (2 * k + 1) // (2 * BURSTS)
        near = (ideal + d for n in range(calls) for d in (-n, n))
        out.append(next(at for at in near if free(at)))
    return frozenset(out)


def _waves(calls: int) -> list[tuple[int, int]]:
    """The calls as (first index, how many at once)."""
    bursts = _bursts(calls)
    out, i = [], 0
    while i < calls:
        size = BURST if i in bursts else 1
        out.append((i, size))
        i += size
    return out


def _caller(index: int) -> tuple[str, str]:
    k = index % CALLERS
    return f"user{k + 1:02d}", TENANTS[k % len(TENANTS)]


def config_text(backends: Sequence[Backend]) -> str:
    """The proxy's configuration: the file a user would write, on port 0."""
    destinations = "".join(
        f'[[dispatcher.destinations]]\nuri = "{b.uri}"\nattrs = "duid={b.name}"\n'
        f'description = "backend {b.name}"\n'
        for b in backends
    )
    return (
        "[proxy]\n"
        f'listen = ["udp:{LOOPBACK}:0"]\n'
        f"t1 = {PROXY_T1}\n"
        "shutdown_grace = 2.0\n"
        'server_header = "sipcore-proxy (demo)"\n'
        "[dispatcher]\n"
        "algorithm = 4\n"  # round-robin
        "attempts = 3\n"
        'mark_state = "ip"\n'
        f"{destinations}"
        "[probing]\n"
        f"interval = {PROBE_INTERVAL}\n"
        'mode = "all"\n'
        "[limits]\n"
        f"per_caller = {PER_CALLER_LIMIT}\n"
        'account_key = "from_domain"\n'
        "[persistence]\n"
        "enabled = false\n"
        "[management]\n"
        f'listen = "{LOOPBACK}:0"\n'
    )


class _Run:
    """One run of the demo: the parts, what they did, and the scenario."""

    def __init__(self, options: Options, console: Console) -> None:
        self.options = options
        self.console = console
        self.loop = asyncio.get_running_loop()
        self.started = self.loop.time()
        self.backends: dict[str, Backend] = {}
        self.by_port: dict[int, str] = {}
        self.results: list[CallResult] = []
        self.attempts: dict[str, tuple[Attempt, ...]] = {}
        self.timeline: list[TimelineEntry] = []
        self.placed = 0
        self.in_progress: dict[str, set[int]] = {}  # caller -> call indexes
        self.down: set[str] = set()
        self.down_events = 0
        self.up_events = 0
        self.last_up: dict[str, int] = {}  # backend -> calls placed when it was last marked up
        self.invites_to_down = 0
        self.limit_events: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.peaks: Counter[str] = Counter()
        self.tenant_peaks: Counter[str] = Counter()
        self.sample: dict[str, Any] = {}
        self.problems: list[str] = []
        self._uac: Uac | None = None

    @property
    def uac(self) -> Uac:
        assert self._uac is not None, "the UAC is opened before the first call"
        return self._uac

    def elapsed(self) -> float:
        return self.loop.time() - self.started

    def note(self, kind: Kind, text: str) -> None:
        entry = TimelineEntry(self.elapsed(), self.placed, kind, text)
        self.timeline.append(entry)
        self.console.line(f"  {entry.at:6.1f}s  {entry.placed:>5} placed  {text}")

    # -- what the proxy tells -----------------------------------------------------------

    def on_event(self, fields: dict[str, Any]) -> None:
        name = fields.get("event")
        if name in ("destination.down", "destination.up"):
            backend = self.name_of_uri(str(fields.get("uri", "")))
            down = name == "destination.down"
            if down:
                self.down.add(backend)
                self.down_events += 1
            else:
                self.down.discard(backend)
                self.up_events += 1
                self.last_up[backend] = self.placed
            code = fields.get("code")
            cause = str(fields.get("cause", ""))
            if not code and cause[:3].isdigit():
                code = int(cause[:3])  # a mark by a call's answer: "503 from sip:..."
            what = "an INVITE" if cause != "probe" else "its probe"
            if code == 408:
                timer = "B" if cause != "probe" else "F"
                why = f"{what} got no answer (408 after Timer {timer})"
            else:
                why = f"{what} got {code}"
            self.note(
                Kind.BACKEND, f"{backend} marked {'DOWN' if down else 'up'} by the proxy: {why}"
            )
            self.changed.set()
        elif name == "limit.reached":
            self.limit_events.append(fields)

    def name_of_uri(self, uri: str) -> str:
        for name, backend in self.backends.items():
            if backend.uri == uri:
                return name
        return uri

    def on_branch(self, ctx: RequestContext, branch: Branch) -> None:
        if branch.request.method != "INVITE":
            return
        name = self.by_port.get(branch.destination.port)
        if name is not None and name in self.down:
            self.invites_to_down += 1

    def on_response(self, ctx: RequestContext, response: Response) -> None:
        if ctx.final_sent is not response:
            return  # a provisional, or a 2xx again (relayed statelessly)
        call_id = ctx.request.call_id
        for backend in self.backends.values():
            if backend.ignored.get(call_id) == ctx.method:
                del backend.ignored[call_id]
                self.changed.set()
        if ctx.method != "INVITE":
            return
        attempts = tuple(
            Attempt(
                self.by_port.get(b.destination.port, str(b.destination)), b.status_code, b.local
            )
            for b in ctx.branches
        )
        self.attempts[ctx.request.call_id] = attempts
        if len(attempts) > 1:
            tried = " -> ".join(_describe_attempt(a) for a in attempts)
            self.note(Kind.FAILOVER, f"failover: {ctx.request.call_id}: {tried}")

    # -- the scenario -------------------------------------------------------------------

    async def until(self, want: str) -> None:
        """Until the flaky backend is marked ``want`` ("down" / "up"), bounded."""
        deadline = self.loop.time() + NOTICE_WAIT
        backend = self.backends[FLAKY]
        # Down, and (after a silence) no request of the silence still waiting
        # for its Timer B or F: its late 408 would mark the backend down again.
        while (FLAKY in self.down) != (want == "down") or (want == "down" and backend.ignored):
            left = deadline - self.loop.time()
            if left <= 0:
                self.problems.append(f"{FLAKY} was not marked {want} within {NOTICE_WAIT} s")
                return
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)

    async def step(self, step: _Step) -> None:
        if step.wait is not None:
            await self.until(step.wait)
        if step.mode is None:
            return
        backend = self.backends[FLAKY]
        if step.after_probe:
            done = backend.switch_after_probe(step.mode)
            try:
                await asyncio.wait_for(done, NOTICE_WAIT)
            except TimeoutError:
                self.problems.append(f"{FLAKY} got no probe within {NOTICE_WAIT} s")
                backend.set_mode(step.mode)
        else:
            backend.set_mode(step.mode)
        self.note(Kind.BACKEND, f"{FLAKY} {step.text}")

    async def one_call(
        self, index: int, caller: str, tenant: str, slots: asyncio.Semaphore
    ) -> None:
        try:
            result = await self.uac.call(index, caller, tenant, self.options.hold)
            self.results.append(
                attrs.evolve(result, attempts=self.attempts.pop(result.call_id, ()))
            )
            if result.rejected_by_limit:
                self.note(
                    Kind.LIMIT,
                    f"{result.call_id} from {caller}@{tenant}: {result.code} {result.reason}",
                )
        finally:
            self.in_progress[caller].discard(index)
            slots.release()

    async def place_calls(self) -> None:
        options = self.options
        steps = list(_steps(options.calls))
        slots = asyncio.Semaphore(MAX_CONCURRENT)
        tasks: list[asyncio.Task[None]] = []
        base = self.loop.time()
        for first, size in _waves(options.calls):
            if self.console.broken:
                break  # nobody is reading: finish the calls in progress and stop
            while steps and steps[0].at <= first:
                await self.step(steps.pop(0))
                base = self.loop.time() - first / options.rate  # no catching up after a wait
            delay = base + first / options.rate - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if size > 1:
                # A burst starts with the busy caller idle, so exactly one call is over the limit.
                idle_by = self.loop.time() + ANSWER_WAIT * 2
                while self.in_progress.get(BUSY_CALLER) and self.loop.time() < idle_by:
                    await asyncio.sleep(0.01)
            for index in range(first, first + size):
                caller, tenant = (BUSY_CALLER, BUSY_TENANT) if size > 1 else _caller(index)
                await slots.acquire()
                self.in_progress.setdefault(caller, set()).add(index)
                self.placed += 1
                tasks.append(asyncio.create_task(self.one_call(index, caller, tenant, slots)))
        for step in steps:
            await self.step(step)
        await asyncio.gather(*tasks)

    # -- watching -------------------------------------------------------------------------

    async def sampler(self, management: tuple[str, int]) -> None:
        """The dialogs and profiles over the management endpoint, for the
        progress line and the peaks."""
        while True:
            try:
                dialogs = await _get(management, "/dialogs/stats")
                profiles = await _get(management, "/profiles")
                account = await _get(management, "/profiles/account")
            except (OSError, TimeoutError, ManagementError) as exc:
                self.problems.append(f"management endpoint: {exc}")
                return
            active = dialogs["active"]["all"]
            self.sample = {"dialogs": active}
            self.peaks["dialogs"] = max(self.peaks["dialogs"], active)
            for name in ("caller", "account"):
                self.peaks[f"{name}.size"] = max(self.peaks[f"{name}.size"], profiles[name]["size"])
                self.peaks[f"{name}.values"] = max(
                    self.peaks[f"{name}.values"], profiles[name]["values"]
                )
            for tenant, size in account.get("values", {}).items():
                self.tenant_peaks[tenant] = max(self.tenant_peaks[tenant], size)
            await asyncio.sleep(SAMPLE_EVERY)

    def progress_line(self) -> str:
        done = len(self.results)
        completed = sum(1 for r in self.results if r.completed)
        busy = sum(1 for r in self.results if r.rejected_by_limit)
        failed = done - completed - busy
        per = Counter(r.answered_by for r in self.results if r.completed)
        spread = "  ".join(
            f"{n} {per[n]}{' DOWN' if n in self.down else ''}" for n in self.backends
        )
        return (
            f"[{self.elapsed():5.1f}s] {self.placed:>3}/{self.options.calls} placed:"
            f" {completed} ok, {busy} busy, {failed} failed"
            f" | {self.sample.get('dialogs', 0)} dialogs | {spread}"
        )

    async def progress(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY)
            self.console.status(self.progress_line())

    # -- the whole run -------------------------------------------------------------------------

    async def run(self) -> Summary:
        with contextlib.ExitStack() as stack:
            for name in BACKENDS:
                backend = await Backend.open(name)
                stack.callback(backend.close)
                self.backends[name] = backend
                self.by_port[backend.endpoint.port] = name
            config = parse_config(config_text(list(self.backends.values())), "sipcore-demo")
            with _app_events(self.on_event):
                async with App(config) as app:
                    (sip,) = app.sip_listen
                    management = app.management_address
                    assert management is not None
                    app.proxy.hooks.branch_sending.append(self.on_branch)
                    app.proxy.hooks.response_forwarded.append(self.on_response)
                    self._uac = await Uac.open(sip)
                    stack.callback(self._uac.close)
                    self.header(sip, management)
                    self.started = self.loop.time()
                    watchers = [
                        asyncio.create_task(self.sampler(management)),
                        asyncio.create_task(self.progress()),
                    ]
                    try:
                        await self.place_calls()
                    finally:
                        for task in watchers:
                            task.cancel()
                        await asyncio.gather(*watchers, return_exceptions=True)
                    duration = self.elapsed()
                    self.console.status(self.progress_line())
                    self.console.end_status()
                    return await self.summarise(sip, management, duration)

    def header(self, sip: Endpoint, management: tuple[str, int]) -> None:
        o = self.options
        names = ", ".join(f"{n} {b.endpoint.hostport}" for n, b in self.backends.items())
        plan = ", ".join(s.plan for s in _steps(o.calls) if s.plan)
        for text in (
            f"sipcore demo: sipcore-proxy on udp:{sip.hostport},"
            f" management on http://{management[0]}:{management[1]}/",
            f"  backends    {names}",
            "  dispatcher  round-robin; failover and marking on 408 and 5xx;"
            f" probes every {PROBE_INTERVAL} s",
            f"  timers      T1 {PROXY_T1 * 1000:g} ms: no answer is a 408 after"
            f" {64 * PROXY_T1:g} s (Timer B, Timer F)",
            f"  limit       {PER_CALLER_LIMIT} calls at once per caller, 486 over it;"
            f" {BUSY_CALLER} calls {BURST} at once, {BURSTS} times",
            f"  calls       {o.calls} at {o.rate:g} a second, each held {o.hold:g} s",
            f"  {FLAKY}          {plan}",
            "",
        ):
            self.console.line(text)

    async def summarise(
        self, sip: Endpoint, management: tuple[str, int], duration: float
    ) -> Summary:
        stats = await _get(management, "/stats")
        dialog_stats = await _get(management, "/dialogs/stats")
        profiles = await _get(management, "/profiles")
        listing = await _get(management, "/dispatcher/list")
        flags = {
            self.name_of_uri(t["DEST"]["URI"]): t["DEST"]["FLAGS"]
            for record in listing["RECORDS"]
            for t in record["SET"]["TARGETS"]
        }
        calls = tuple(sorted(self.results, key=lambda r: r.index))
        completed_by: Counter[str | None] = Counter(c.answered_by for c in calls if c.completed)
        back = self.last_up.get(FLAKY)
        backends = tuple(
            BackendSummary(
                name,
                b.endpoint.hostport,
                completed_by[name],
                attrs.evolve(b.counts),
                flags.get(name, "?"),
                0,
            )
            for name, b in self.backends.items()
        )
        if back is not None:
            after = sum(
                1 for c in calls if c.completed and c.answered_by == FLAKY and c.index >= back
            )
            backends = tuple(
                attrs.evolve(b, calls_after_back=after) if b.name == FLAKY else b for b in backends
            )
        summary = Summary(
            options=self.options,
            placed=self.placed,
            duration=duration,
            proxy=f"udp:{sip.hostport}",
            management=f"{management[0]}:{management[1]}",
            calls=calls,
            backends=backends,
            timeline=tuple(self.timeline),
            down_events=self.down_events,
            up_events=self.up_events,
            invites_to_down_backend=self.invites_to_down,
            limit_events=tuple(self.limit_events),
            stats=stats,
            dialog_stats=dialog_stats,
            profiles=profiles,
            peaks=dict(self.peaks),
            tenant_peaks=dict(self.tenant_peaks),
            checks=(),
        )
        return attrs.evolve(summary, checks=tuple(self._checks(summary)))

    def _checks(self, s: Summary) -> Iterator[tuple[str, bool]]:
        stats = s.dialog_stats["statistics"]
        routing = s.stats["routing"]
        no_destination = sum(1 for c in s.calls if c.code == 503)
        yield (
            f"placed {s.placed} = completed {s.completed} + rejected by the limit"
            f" {s.rejected_by_limit} + failed {s.failed}",
            s.placed == s.options.calls == s.completed + s.rejected_by_limit + s.failed,
        )
        yield (
            f"the failed calls ({s.failed}) were all in progress on {FLAKY} when it went silent",
            len(s.cut_off) == s.failed and all(c.answered_by == FLAKY for c in s.cut_off),
        )
        yield (
            "every backend completed calls",
            all(b.calls > 0 for b in s.backends),
        )
        yield (
            f"no INVITE went to {FLAKY} while it was marked down ({s.invites_to_down_backend} did)",
            s.invites_to_down_backend == 0,
        )
        yield (
            f"{FLAKY} was marked down and up again ({s.down_events} down, {s.up_events} up)",
            s.down_events >= 1 and s.up_events == s.down_events and FLAKY not in self.down,
        )
        yield (
            f"calls failed over ({len(s.failed_over)}) = the proxy's failovers"
            f" ({routing['failovers']})",
            len(s.failed_over) >= 1 and len(s.failed_over) == routing["failovers"],
        )
        yield (
            f"calls over the limit ({s.rejected_by_limit}) = the proxy's count"
            f" ({routing['over_caller_limit']}) = {BURSTS} bursts",
            s.rejected_by_limit == routing["over_caller_limit"] == BURSTS,
        )
        yield (
            f"dialogs processed {stats['processed']} = calls past the limit"
            f" {s.placed - s.rejected_by_limit - no_destination}; none active, none left",
            stats["processed"] == s.placed - s.rejected_by_limit - no_destination
            and stats["active"] == stats["early"] == 0
            and dict(s.dialog_stats["active"])["all"] == 0
            and s.profiles["caller"]["size"] == s.profiles["account"]["size"] == 0,
        )
        for problem in self.problems:
            yield (problem, False)


_STATE_NAMES: Final = {"A": "active", "I": "inactive", "D": "disabled", "T": "trying"}


def _state(flags: str) -> str:
    """Kamailio's dispatcher flags (``AP``) in words, the flags after them."""
    name = _STATE_NAMES.get(flags[:1], "?")
    return f"{name}{', probed' if 'P' in flags[1:] else ''} ({flags})"


def render(s: Summary) -> list[str]:
    """The summary's tables."""
    out = ["", f"Summary ({s.duration:.1f} s)", ""]
    routing = s.stats["routing"]
    out.append("Calls")
    out += table(
        ("", "calls"),
        [
            ("placed", s.placed),
            ("completed (INVITE, 200, ACK, hold, BYE, 200)", s.completed),
            (f"rejected by the per-caller limit ({PER_CALLER_LIMIT}): 486", s.rejected_by_limit),
            (
                f"failed: in progress on {FLAKY} when it went silent (BYE unanswered)",
                len(s.cut_off),
            ),
            ("failed otherwise", s.failed - len(s.cut_off)),
            ("retried on another backend (failover)", len(s.failed_over)),
        ],
    )
    out += ["", "Backends"]
    total = max(s.completed, 1)
    out += table(
        (
            "backend",
            "address",
            "calls",
            "share",
            "INVITEs",
            "503s",
            "unanswered",
            "probes",
            "state at the end",
        ),
        [
            (
                b.name,
                b.address,
                b.calls,
                f"{100 * b.calls / total:.0f}%",
                b.counts.invites,
                b.counts.refused,
                b.counts.unanswered,
                b.counts.probes_answered + b.counts.probes_unanswered,
                _state(b.flags),
            )
            for b in s.backends
        ],
    )
    flaky = next(b for b in s.backends if b.name == FLAKY)
    out.append(
        f"  {FLAKY} completed {flaky.calls_after_back} calls after it was last marked up;"
        f" INVITEs relayed to it while marked down: {s.invites_to_down_backend}"
    )
    out += ["", f"Backend {FLAKY} down and up (times from the first call)"]
    out += table(
        ("time", "calls placed", "what happened"),
        [(f"{e.at:.1f}s", e.placed, e.text) for e in s.timeline if e.kind is Kind.BACKEND],
    )
    out += ["", "Failovers (calls retried on another backend)"]
    out += table(
        ("call", "caller", "branches, in order", "setup"),
        [
            (
                c.call_id,
                f"{c.caller}@{c.tenant}",
                " -> ".join(_describe_attempt(a) for a in c.attempts),
                f"{c.setup_time:.2f}s",
            )
            for c in s.failed_over
        ],
    )
    out += [
        "",
        f"Per-caller limit ({PER_CALLER_LIMIT} at once; {BUSY_CALLER} calls {BURST} at a time)",
    ]
    out += table(
        ("call", "caller", "answer", "the caller's calls then"),
        [
            (str(e.get("call_id")), f"{e.get('value')}", f"{e.get('status')}", e.get("calls", 0))
            for e in s.limit_events
        ],
    )
    stats = s.dialog_stats["statistics"]
    out += ["", "Dialogs (GET /dialogs/stats at the end; peak sampled every 0.5 s)"]
    out += table(
        ("processed", "active", "early", "failed", "expired", "peak at once"),
        [
            (
                stats["processed"],
                stats["active"],
                stats["early"],
                stats["failed"],
                stats["expired"],
                s.peaks.get("dialogs", 0),
            )
        ],
    )
    out += ["", "Profiles (GET /profiles; peak sampled every 0.5 s)"]
    out += table(
        ("profile", "what a value is", "limit", "peak size", "peak values", "size at end"),
        [
            (
                "caller",
                "From user",
                PER_CALLER_LIMIT,
                s.peaks.get("caller.size", 0),
                s.peaks.get("caller.values", 0),
                s.profiles["caller"]["size"],
            ),
            (
                "account",
                "From domain",
                "none",
                s.peaks.get("account.size", 0),
                s.peaks.get("account.values", 0),
                s.profiles["account"]["size"],
            ),
        ],
    )
    peaks = ", ".join(f"{t} {n}" for t, n in sorted(s.tenant_peaks.items()))
    out.append(f"  account peak per tenant: {peaks or 'none sampled'}")
    proxy = s.stats["proxy"]
    out += ["", "Proxy counters (GET /stats)"]
    out += table(
        ("received", "relayed", "failovers", "marked", "over caller limit"),
        [
            (
                proxy.get("received", 0),
                proxy.get("relayed", 0),
                routing["failovers"],
                routing["marked"],
                routing["over_caller_limit"],
            )
        ],
    )
    out += ["", "Checks"]
    out += [f"  {'ok    ' if passed else 'FAILED'}  {text}" for text, passed in s.checks]
    return out


async def run(options: Options, stream: IO[str] | None = None) -> Summary:
    """Run the demo on the running loop, printing to ``stream`` (stdout)."""
    return await _demo(options, Console(stream if stream is not None else sys.stdout))


async def _demo(options: Options, console: Console) -> Summary:
    summary = await _Run(options, console).run()
    for text in render(summary):
        console.line(text)
    return summary


def _positive(kind: type[int] | type[float], low: float, high: float) -> Callable[[str], Any]:
    def convert(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low:g} and {high:g}")
        return value

    return convert


def parse_args(argv: Sequence[str] | None = None, prog: str = "sipcore-demo") -> Options:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Run sipcore-proxy in-process in front of three backends on 127.0.0.1, place calls"
            " through it, take a backend down and bring it back, and summarise what happened."
        ),
    )
    parser.add_argument(
        "--calls",
        type=_positive(int, MIN_CALLS, MAX_CALLS),
        default=DEFAULT_CALLS,
        help="calls to place (default %(default)s)",
    )
    parser.add_argument(
        "--rate",
        type=_positive(float, 0.5, 200),
        help=f"new calls per second (default {DEFAULT_RATE:g})",
    )
    parser.add_argument(
        "--hold",
        type=_positive(float, 0.0, 30),
        help=f"seconds between ACK and BYE (default {DEFAULT_HOLD:g})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"{QUICK_RATE:g} calls per second held {QUICK_HOLD:g} s (for tests)",
    )
    args = parser.parse_args(argv)
    rate = args.rate if args.rate is not None else QUICK_RATE if args.quick else DEFAULT_RATE
    hold = args.hold if args.hold is not None else QUICK_HOLD if args.quick else DEFAULT_HOLD
    return Options(calls=args.calls, rate=rate, hold=hold)


def main(argv: Sequence[str] | None = None, prog: str = "sipcore-demo") -> int:
    """``sipcore-demo``: 0 when every check of the summary passed, 1 otherwise."""
    options = parse_args(argv, prog)
    console = Console(sys.stdout)
    try:
        summary = asyncio.run(_demo(options, console))
    except KeyboardInterrupt:
        print("\nsipcore-demo: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        print(f"sipcore-demo: cannot run on {LOOPBACK}: {exc}", file=sys.stderr)
        return 1
    if console.broken:
        # The reader went away (``| head``): nothing more to say, on a
        # stdout that must not fail again when Python flushes it at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0 if summary.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
