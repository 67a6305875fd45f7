"""Destinations: the value loaded from a list, its state flags and the
run-time status a prober drives.

This module owns :class:`Destination` (frozen: set id, URI, load-time
flags, priority, parsed attributes), :class:`DestinationState` (Kamailio's
state bits), :class:`DestinationStatus` (the mutable part: current state,
the probing/inactive counter, call load, latency) and the errors of the
package. It does not select, load files or touch the network.
"""

from __future__ import annotations

import enum

import attrs

from sipcore import LocalProtocolError, ParseError, SipError

__all__ = [
    "STATES_ALL",
    "Destination",
    "DestinationAttrs",
    "DestinationState",
    "DestinationStatus",
    "DispatchError",
    "ListError",
    "UnknownDestination",
    "parse_attrs",
    "parse_state",
]


class DispatchError(SipError):
    """Base of the dispatcher's errors."""


class UnknownDestination(DispatchError, LocalProtocolError):
    """A set id or destination URI that is not in the table."""


class ListError(DispatchError, ParseError):
    """A bad record in a destination list, with where it was.

    ``source`` is the file (or table) name, ``line`` the 1-based line (or
    row id); ``errors`` holds every problem found when several were.
    """

    def __init__(self, source: str, line: int, reason: str, errors: tuple[str, ...] = ()) -> None:
        text = f"{source}:{line}: {reason}"
        super().__init__(text, None)
        self.source = source
        self.line = line
        self.errors = errors or (text,)


class DestinationState(enum.IntFlag):
    """Kamailio's destination state bits (``DS_*_DST`` in dispatch.h)."""

    ACTIVE = 0
    INACTIVE = 1  # DS_INACTIVE_DST
    TRYING = 2  # DS_TRYING_DST
    DISABLED = 4  # DS_DISABLED_DST
    PROBING = 8  # DS_PROBING_DST
    NO_RESOLVE = 16  # DS_NODNSARES_DST
    NO_PING = 32  # DS_NOPING_DST

    @property
    def skipped(self) -> bool:
        """Kamailio: ``ds_skip_dst()``: inactive or disabled."""
        return bool(self & (DestinationState.INACTIVE | DestinationState.DISABLED))


_SKIPPED_BITS = int(DestinationState.INACTIVE | DestinationState.DISABLED)

#: Kamailio: ``DS_STATES_ALL``, the bits a state change replaces.
STATES_ALL = DestinationState(31)

_STATE_LETTERS = {
    "a": DestinationState.ACTIVE,
    "1": DestinationState.ACTIVE,
    "i": DestinationState.INACTIVE,
    "0": DestinationState.INACTIVE,
    "d": DestinationState.DISABLED,
    "2": DestinationState.DISABLED,
    "t": DestinationState.TRYING,
    "3": DestinationState.TRYING,
}


_MARK_LETTERS = {
    "i": DestinationState.INACTIVE,
    "d": DestinationState.DISABLED,
    "t": DestinationState.TRYING,
    "p": DestinationState.PROBING,
}


def parse_state(text: str) -> DestinationState:
    """Kamailio's state letters.

    ``ds_mark_dst("ip")`` (``ds_parse_flags``): any of ``i`` inactive,
    ``d`` disabled, ``t`` trying, ``p`` probing, in any order and case, each
    adding its bit; ``a`` clears what came before it. The digit forms of
    ``dispatcher.set_state`` are taken too: ``1`` active, ``0`` inactive,
    ``2`` disabled, ``3`` trying, a trailing ``p`` adds probing.

    >>> parse_state("ip")
    <DestinationState.INACTIVE|PROBING: 9>
    >>> parse_state("PI") == parse_state("0p") == parse_state("ip")
    True
    """
    lowered = text.strip().lower()
    if not lowered or len(lowered) > 8:
        raise LocalProtocolError(f"unknown destination state {text!r}")
    if lowered[0] in "0123":
        state = _STATE_LETTERS[lowered[0]]
        if lowered[1:] not in ("", "p"):
            raise LocalProtocolError(f"unknown destination state {text!r}")
        return state | DestinationState.PROBING if lowered[1:] else state
    state = DestinationState.ACTIVE
    for letter in lowered:
        if letter == "a":
            state = DestinationState.ACTIVE
        elif letter in _MARK_LETTERS:
            state |= _MARK_LETTERS[letter]
        else:
            raise LocalProtocolError(f"unknown destination state {text!r}")
    return state


_INT_ATTRS = ("maxload", "weight", "rweight", "cc", "latency", "ocmin", "ocmax", "ocrate")
_STR_ATTRS = ("duid", "socket", "sockname", "ping_from", "obproxy")
_SPECIAL = frozenset(_INT_ATTRS + _STR_ATTRS)


@attrs.frozen
class DestinationAttrs:
    """The ``attrs`` column: ``name=value`` pairs separated by ``;``.

    The special attributes are parsed; ``body`` is the text as written
    (Kamailio's ``attrs.body``, what ``attrs_pvname`` exports) and
    ``user`` every other attribute, verbatim and in order. ``weight`` and
    ``rweight`` outside 1..100 are 0, as in Kamailio. ``latency`` is None
    when not given (Kamailio then starts the latency statistics empty).
    The overload-control trio is clamped as Kamailio's ``ds_set_attrs``
    does: ``ocmax`` 1..100 (0 means 100), ``ocmin`` 0..``ocmax``,
    ``ocrate`` between them.
    """

    body: str = ""
    duid: str = ""
    maxload: int = 0
    weight: int = 0
    rweight: int = 0
    cc: int = 0
    socket: str = ""
    sockname: str = ""
    ping_from: str = ""
    obproxy: str = ""
    latency: int | None = None
    ocmin: int = 0
    ocmax: int = 100
    ocrate: int = 0
    user: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str | None:
        """A user attribute's value (the first one of that name)."""
        for key, value in self.user:
            if key == name:
                return value
        return None


def _c_int(text: str) -> int | None:
    # Kamailio reads these with str2sint: an optional sign and digits only;
    # anything else fails (None) and the attribute keeps its default.
    s = text.strip()
    digits = s[1:] if s[:1] in ("+", "-") else s
    if not digits or not digits.isascii() or not digits.isdigit() or len(digits) > 10:
        return None
    value = int(digits)
    return -value if s[:1] == "-" else value


def parse_attrs(text: str) -> DestinationAttrs:
    """Parse an ``attrs`` string the way Kamailio's ``ds_set_attrs`` does.

    >>> a = parse_attrs("duid=gw1;weight=50;region=eu;maxload=20")
    >>> a.duid, a.weight, a.maxload, a.user
    ('gw1', 50, 20, (('region', 'eu'),))
    """
    body = text.strip()
    values: dict[str, object] = {}
    user: list[tuple[str, str]] = []
    for part in body.split(";"):
        if not part.strip():
            continue
        name, _, value = part.partition("=")
        name = name.strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        key = name.lower()
        if key in _SPECIAL:
            if key in values:
                continue  # first one wins, as a linear scan would find it
            number = _c_int(value) if key in _INT_ATTRS else None
            if key == "latency":
                if number is not None:
                    values[key] = number
            elif key in _INT_ATTRS:
                number = number or 0
                if key in ("weight", "rweight") and not 1 <= number <= 100:
                    number = 0
                values[key] = max(number, 0)
            else:
                values[key] = value
        else:
            user.append((name, value))
    _clamp_overload(values)
    return DestinationAttrs(body=body, user=tuple(user), **values)  # type: ignore[arg-type]


def _clamp_overload(values: dict[str, object]) -> None:
    # ds_set_attrs' order of corrections, so odd combinations end the same.
    ocmax = int(values.get("ocmax", 100))  # type: ignore[call-overload]
    ocmin = int(values.get("ocmin", 0))  # type: ignore[call-overload]
    ocrate = int(values.get("ocrate", 0))  # type: ignore[call-overload]
    if ocmax > 100 or ocmax == 0:
        ocmax = 100
    if ocmin > 100 or ocmin > ocmax:
        ocmin = 0
    if ocrate > 100:
        ocrate = 0
    ocrate = min(max(ocrate, ocmin), ocmax)
    values.update(ocmax=ocmax, ocmin=ocmin, ocrate=ocrate)


@attrs.frozen
class Destination:
    """One destination of a set, as loaded (Kamailio: ``ds_dest_t``).

    ``flags`` are the state bits the list gave; the current state lives in
    :class:`DestinationStatus`. ``uri`` is the text as written (it becomes
    ``$du``); ``order`` is its position in the source (file line order),
    which decides the array order among equal priorities.
    """

    setid: int
    uri: str
    flags: DestinationState = DestinationState.ACTIVE
    priority: int = 0
    attrs: DestinationAttrs = DestinationAttrs()
    description: str = ""
    host: str = ""
    port: int | None = None
    order: int = 0


@attrs.define
class DestinationStatus:
    """The run-time state of a destination, what probing and marking move.

    ``message_count`` is Kamailio's counter: failures while trying (against
    ``ds_probing_threshold``) or successes while inactive (against
    ``ds_inactive_threshold``). ``load`` is the number of calls counted for
    alg 10. The ``latency_*`` fields are Kamailio's ``latency_stats``
    (milliseconds; ``latency_count`` samples, ``timeouts`` pings answered by
    a 408), filled from probe replies when ``ds_ping_latency_stats`` is on;
    ``ping_started`` is when the last probe left. ``rweight`` is the live
    relative weight (the list's, lowered by congestion control). The
    ``oc_*`` fields are alg 64's overload-control state: the rate in force,
    its 100-slot drop pattern, the slot pointer, until when it holds and
    the last sequence number applied. ``bits`` holds the state as a plain
    int (what selection tests on its hot path); :attr:`state` is the same
    as a :class:`DestinationState`.
    """

    bits: int = attrs.field(converter=int)
    message_count: int = 0
    load: int = 0
    latency_average: float = 0.0
    latency_estimate: float = 0.0
    latency_stdev: float = 0.0
    latency_m2: float = 0.0
    latency_min: int = 0
    latency_max: int = 0
    latency_count: int = 0
    timeouts: int = 0
    ping_started: float | None = None
    rweight: int = 0
    oc_rate: int = 0
    oc_pattern: tuple[bool, ...] = ()
    oc_index: int = 0
    oc_until: float = 0.0
    oc_seq: int = 0

    @property
    def state(self) -> DestinationState:
        return DestinationState(self.bits)

    @state.setter
    def state(self, value: DestinationState) -> None:
        self.bits = int(value)

    def reset_latency(self, initial: int | None) -> None:
        """Kamailio: ``latency_stats_init``: a ``latency`` attribute starts
        the statistics as if trained (10,000 samples at that value)."""
        self.latency_stdev = self.latency_m2 = 0.0
        if initial is None:
            self.latency_average = self.latency_estimate = 0.0
            self.latency_min = self.latency_max = self.latency_count = 0
        else:
            self.latency_average = self.latency_estimate = float(initial)
            self.latency_min = self.latency_max = initial
            self.latency_count = 10_000

    @property
    def usable(self) -> bool:
        return not self.bits & _SKIPPED_BITS
