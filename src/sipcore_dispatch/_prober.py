"""Health probing: Kamailio's keepalive pings of destinations.

This module owns the :class:`Prober` (when the next round of pings is due,
which destinations a round pings per ``ds_probing_mode``, the requests it
builds, and what a final reply, a timeout or a failed send does to a
destination's state and latency statistics), the :class:`Probe` value that
leaves it, ``ds_ping_reply_codes`` parsing and :class:`ProbeService`, the
glue that sends probes through a :class:`sipcore.Proxy`. The prober builds
requests but never sends one and never reads a clock.
"""

from __future__ import annotations

import itertools
import logging

import attrs

from sipcore import (
    LocalProtocolError,
    Proxy,
    Request,
    Response,
    SipError,
    make_request,
    parse_uri,
    uri_destination,
)

from ._config import ProbingMode
from ._destination import Destination, DestinationState, DestinationStatus, UnknownDestination
from ._dispatcher import Dispatcher
from .events import DestinationEvent

__all__ = ["Probe", "ProbeService", "Prober", "parse_reply_codes", "reply_code_accepted"]

log = logging.getLogger("sipcore_dispatch.prober")

_NOT_PINGED = DestinationState.DISABLED | DestinationState.NO_PING | DestinationState.NO_RESOLVE


def parse_reply_codes(text: str) -> tuple[int, ...]:
    """Kamailio: ``ds_ping_reply_codes``: ``code=NNN`` (100..699) and
    ``class=N`` (1..6) entries separated by ``;``; anything else is ignored,
    as Kamailio's parser does. Classes come back as one digit.

    >>> parse_reply_codes("code=403;class=4;code=999;x=1")
    (403, 4)
    """
    out: list[int] = []
    for part in text.split(";"):
        name, _, value = part.partition("=")
        value = value.strip()
        if not value.isascii() or not value.isdigit() or len(value) > 4:
            continue
        number = int(value)
        kind = name.strip().lower()
        if (kind == "code" and 100 <= number < 700) or (kind == "class" and 1 <= number < 7):
            out.append(number)
    return tuple(out)


def reply_code_accepted(code: int, accepted: tuple[int, ...]) -> bool:
    """Kamailio: ``ds_ping_check_rplcode()`` plus the 2xx rule of
    ``ds_options_callback``: a 2xx, or a listed code, or a code of a listed
    class, counts as the destination being alive."""
    if 200 <= code <= 299:
        return True
    return any(code == c if c >= 10 else code // 100 == c for c in accepted)


@attrs.frozen
class Probe:
    """One keepalive to send (Kamailio: ``ds_ping_set``'s ``t_request``).

    ``request`` has no Via yet (the transaction layer adds its own);
    ``outbound_proxy`` is where to send it instead of its Request-URI
    (``obproxy`` / ``outbound_proxy``), ``socket`` the local socket asked for
    (``sockname`` / ``socket`` / ``ds_default_sockname`` /
    ``ds_default_socket``, the first one set), both empty when not set.
    """

    setid: int
    uri: str
    request: Request = attrs.field(eq=False, repr=False)
    outbound_proxy: str = ""
    socket: str = ""
    sent_at: float = 0.0


class Prober:
    """Kamailio's dispatcher keepalives as a sans-I/O state machine.

    Every ``ds_ping_interval`` seconds (none when 0) :meth:`tick` returns
    the :class:`Probe` of each destination ``ds_probing_mode`` says to ping:
    ``ALL`` pings every one, ``NONE`` / ``ONLY_FLAGGED`` those in the probing
    state, ``INACTIVE`` those inactive and probing; disabled, ``NO_PING``
    and ``NO_RESOLVE`` destinations never. Report each probe's final code
    with :meth:`completed` (a timeout is a 408) or :meth:`send_failed`;
    the returned :class:`DestinationDown` / :class:`DestinationUp` are
    Kamailio's ``dispatcher:dst-down`` / ``dst-up`` events.
    """

    def __init__(self, dispatcher: Dispatcher, *, now: float) -> None:
        self.dispatcher = dispatcher
        #: Kamailio: ``dispatcher.ping_active`` (pings on or off).
        self.ping_active = True
        self._accepted = parse_reply_codes(dispatcher.config.ds_ping_reply_codes)
        interval = dispatcher.config.ds_ping_interval
        self._due: float | None = now + interval if interval > 0 else None
        self._serial = itertools.count(1)

    def set_reply_codes(self, text: str) -> None:
        """Kamailio: changing ``ds_ping_reply_codes`` at run time (cfg_rpc)."""
        self._accepted = parse_reply_codes(text)

    @property
    def reply_codes(self) -> tuple[int, ...]:
        return self._accepted

    def next_deadline(self) -> float | None:
        return self._due

    def tick(self, now: float) -> list[Probe]:
        """The probes of the round due at ``now`` (none if not due, or if
        pings are off by ``dispatcher.ping_active``). A round missed by more
        than an interval is not made up: the next one is an interval away."""
        if self._due is None or now < self._due:
            return []
        interval = self.dispatcher.config.ds_ping_interval
        self._due += interval
        if self._due <= now:
            self._due = now + interval
        if not self.ping_active:
            return []
        return self.probe_round(now)

    def probe_round(self, now: float) -> list[Probe]:
        """Kamailio: ``ds_ping_set()`` over every set: one round, now."""
        return [
            self._probe(dest, status, now)
            for dest, status in self.dispatcher.entries()
            if not status.state & _NOT_PINGED and self._wanted(status.state)
        ]

    def _wanted(self, state: DestinationState) -> bool:
        # ds_ping_result_helper.
        mode = self.dispatcher.config.ds_probing_mode
        if mode is ProbingMode.ALL:
            return True
        probing = bool(state & DestinationState.PROBING)
        if mode is not ProbingMode.INACTIVE:
            return probing
        return probing and bool(state & DestinationState.INACTIVE)

    def _probe(self, dest: Destination, status: DestinationStatus, now: float) -> Probe:
        cfg = self.dispatcher.config
        a = dest.attrs
        request = make_request(
            cfg.ds_ping_method,
            dest.uri,
            from_=a.ping_from or cfg.ds_ping_from,
            to=dest.uri,
            via=None,
            cseq=next(self._serial) % 2**31,
        )
        status.ping_started = now
        return Probe(
            dest.setid,
            dest.uri,
            request,
            outbound_proxy=a.obproxy or cfg.outbound_proxy,
            socket=a.sockname or a.socket or cfg.ds_default_sockname or cfg.ds_default_socket,
            sent_at=now,
        )

    def completed(
        self, probe: Probe, code: int, now: float, reason: str = "", *, replied: bool = True
    ) -> DestinationEvent | None:
        """Kamailio: ``ds_options_callback()``: ``probe`` ended with the
        final ``code`` (408 for a timeout). Latency is measured first (with
        ``ds_ping_latency_stats``); an accepted code marks the destination
        active (keeping it probing in modes ``ALL`` and ``ONLY_FLAGGED``),
        any other marks it trying and probing, so ``ds_probing_threshold``
        failures take it down and ``ds_inactive_threshold`` successes bring
        it back. A destination disabled meanwhile, removed by a reload, or
        (mode ``ONLY_FLAGGED``) no longer probing is left alone. The event
        carries ``code``, ``reason`` and ``replied`` (False for a reply
        made locally, such as a timeout's 408): Kamailio's ``$dsv``."""
        if code < 200:
            raise LocalProtocolError(f"a probe completes with a final code, not {code}")
        d = self.dispatcher
        try:
            if d.config.ds_ping_latency_stats:
                d.update_latency(probe.setid, probe.uri, code, now)
            state = d.state(probe.setid, probe.uri)
        except UnknownDestination:
            return None
        mode = d.config.ds_probing_mode
        probing = bool(state & DestinationState.PROBING)
        if mode is ProbingMode.ONLY_FLAGGED and not probing:
            return None
        if state & DestinationState.DISABLED:
            return None
        if reply_code_accepted(code, self._accepted):
            new = DestinationState.ACTIVE
            if mode is ProbingMode.ALL or (mode is ProbingMode.ONLY_FLAGGED and probing):
                new |= DestinationState.PROBING
        else:
            new = DestinationState.TRYING
            if mode is not ProbingMode.NONE:
                new |= DestinationState.PROBING
        event = d.mark(probe.setid, probe.uri, new)
        if event is None:
            return None
        return attrs.evolve(event, code=code, reason=reason, replied=replied)

    def send_failed(self, probe: Probe) -> DestinationEvent | None:
        """Kamailio: ``ds_ping_set`` when ``t_request`` fails (rctx code
        500, "Sending keepalive failed"): the destination is marked trying
        (and probing unless mode ``NONE``), unless disabled meanwhile."""
        d = self.dispatcher
        try:
            state = d.state(probe.setid, probe.uri)
        except UnknownDestination:
            return None
        if state & DestinationState.DISABLED:
            return None
        new = DestinationState.TRYING
        if d.config.ds_probing_mode is not ProbingMode.NONE:
            new |= DestinationState.PROBING
        event = d.mark(probe.setid, probe.uri, new)
        if event is None:
            return None
        return attrs.evolve(event, code=500, reason="Sending keepalive failed")


class ProbeService:
    """Runs a :class:`Prober` inside a :class:`sipcore.Proxy`: its rounds are
    sent with :meth:`Proxy.send_request` (a transaction each, so timeouts
    and transport errors come back as 408 / 503) and the final replies fed
    back. Add it to ``proxy.services``; collect the state-change events with
    :meth:`take_events`. The probe's ``socket`` is not honoured: the proxy
    sends from its own endpoint for the transport."""

    def __init__(self, prober: Prober, proxy: Proxy) -> None:
        self.prober = prober
        self.proxy = proxy
        self._events: list[DestinationEvent] = []

    def next_deadline(self) -> float | None:
        return self.prober.next_deadline()

    def tick(self, now: float) -> None:
        for probe in self.prober.tick(now):
            self.send(probe, now)

    def send(self, probe: Probe, now: float) -> None:
        """Send one probe (also for a round started by hand)."""
        destination = None

        def answered(response: Response) -> None:
            self._answered(probe, response)

        def failed(code: int) -> None:
            # No reply came: a timeout (408) or a transport error (503).
            reason = "Request Timeout" if code == 408 else "Service Unavailable"
            self._record(self.prober.completed(probe, code, self.proxy.now, reason, replied=False))

        try:
            if probe.outbound_proxy:
                destination = uri_destination(parse_uri(probe.outbound_proxy), self.proxy.resolver)
                if destination is None:
                    raise SipError(f"cannot resolve {probe.outbound_proxy}", 478)
            self.proxy.send_request(
                probe.request,
                destination,
                now=now,
                on_response=answered,
                on_failure=failed,
            )
        except SipError as exc:
            log.warning("probe of %s in set %d not sent: %s", probe.uri, probe.setid, exc)
            self._record(self.prober.send_failed(probe))

    def _answered(self, probe: Probe, response: Response) -> None:
        if response.status_code < 200:
            return
        self._record(
            self.prober.completed(probe, response.status_code, self.proxy.now, response.reason)
        )

    def _record(self, event: DestinationEvent | None) -> None:
        if event is not None:
            self._events.append(event)

    def take_events(self) -> list[DestinationEvent]:
        """The destinations that went down or came back since the last call."""
        out, self._events = self._events, []
        return out
