"""The dispatcher: destination sets, selection, marking and call load.

This module owns the live table (sets in Kamailio's array order, each
destination's run-time status, the per-set counters ``last`` / ``wlast`` /
``rwlast`` and the 100-slot weight tables), every selection algorithm,
``ds_mark_dst``'s threshold counters and alg 10's load table. It never
sends, resolves or reads a clock: time comes in as ``now``.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import os
import random
import sqlite3
from collections.abc import Iterable, Sequence

import attrs

from sipcore import LocalProtocolError, Request

from ._config import DispatcherConfig, DsFlags
from ._destination import (
    STATES_ALL,
    Destination,
    DestinationState,
    DestinationStatus,
    ListError,
    UnknownDestination,
    parse_state,
)
from ._keys import call_id_key, ds_get_hash, request_keys, uri_hash_keys
from ._loading import make_destination, parse_list, read_sqlite
from ._selection import Selection, built_selection
from .events import DestinationDown, DestinationEvent, DestinationUp

__all__ = ["ALGORITHMS", "Dispatcher", "array_order"]

_SKIP = int(DestinationState.INACTIVE | DestinationState.DISABLED)

#: Algorithm numbers implemented, with Kamailio's names.
ALGORITHMS: dict[int, str] = {
    0: "hash over Call-ID",
    1: "hash over From URI",
    2: "hash over To URI",
    3: "hash over R-URI",
    4: "round-robin",
    5: "hash over authorization username",
    6: "random",
    7: "hash over custom key",
    8: "serial by priority",
    9: "weight based",
    10: "call load",
    11: "relative weight",
    12: "parallel",
    13: "latency optimised",
    14: "round-robin within the top priority, then serial",
    15: "priority and weight, DNS SRV style",
    64: "round-robin with overload control (RFC 7339)",
}


def array_order(destinations: Iterable[Destination]) -> list[Destination]:
    """Kamailio's array order of one set: priority descending, then the
    reverse of the file order (``add_dest2list`` + the backwards copy).

    >>> from sipcore_dispatch import make_destination as d
    >>> [x.uri[-4:] for x in array_order([d(5, "sip:h:5071", priority=0),
    ...     d(5, "sip:h:5072", priority=10, order=1), d(5, "sip:h:5073", priority=5, order=2),
    ...     d(5, "sip:h:5074", priority=10, order=3)])]
    ['5074', '5072', '5073', '5071']
    """
    ordered = sorted(destinations, key=lambda d: d.order, reverse=True)
    ordered.sort(key=lambda d: d.priority, reverse=True)
    return ordered


@attrs.define
class _Set:
    setid: int
    loaded: list[Destination]  # file order
    array: list[Destination] = attrs.Factory(list)
    status: list[DestinationStatus] = attrs.Factory(list)
    last: int = 0
    wlast: int = 0
    rwlast: int = 0
    prlast: int = 0  # alg 14's round-robin counter within the top priority
    # Runs of equal priority in the array, (start, end), highest first.
    levels: list[tuple[int, int]] = attrs.Factory(list)
    # Alg 15's draw table for its best usable level, (n, indexes, running
    # weight totals); None after any change of usability.
    pw: tuple[int, list[int], list[int]] | None = None
    wlist: list[int] = attrs.Factory(lambda: [0] * 100)
    rwlist: list[int] = attrs.Factory(lambda: [0] * 100)

    def find(self, uri: str) -> int:
        lowered = uri.lower()
        for i, dest in enumerate(self.array):
            if dest.uri.lower() == lowered:
                return i
        return -1


@attrs.define
class _Load:
    setid: int
    duid: str
    expires: float
    confirmed: bool = False


def latency_sample(status: DestinationStatus, latency: int, config: DispatcherConfig) -> None:
    """Kamailio: ``latency_stats_update``: one probe round trip of
    ``latency`` ms into the running average, standard deviation (Welford's
    online algorithm), min/max and the EWMA estimate
    (``ds_latency_estimator_alpha``); the average freezes into a weighted
    one after 2**21 samples, and a stable average (stdev under 0.5 after 10
    samples) counts as trained at once."""
    training = 10_000
    if status.latency_count < 2_097_152:
        status.latency_count += 1
    else:
        status.latency_m2 -= status.latency_m2 / (status.latency_count or 1)
    if status.latency_count == 1:
        status.reset_latency(latency)
        status.latency_count = 1
    if 10 < status.latency_count < training and status.latency_stdev < 0.5:
        status.latency_count = training
    status.latency_min = min(status.latency_min, latency)
    status.latency_max = max(status.latency_max, latency)
    if status.latency_count > 1:
        delta = latency - status.latency_average
        status.latency_average += delta / (status.latency_count or 1)
        status.latency_m2 += delta * (latency - status.latency_average)
        status.latency_stdev = math.sqrt(status.latency_m2 / ((status.latency_count - 1) or 1))
    if status.latency_count < 10:
        status.latency_estimate = status.latency_average
    else:
        alpha = config.ds_latency_estimator_alpha
        status.latency_estimate = status.latency_estimate * alpha + latency * (1 - alpha)


def _shuffle(table: list[int], rng: random.Random) -> None:
    # Kamailio: shuffle_uint100array, exactly 100 rand() calls.
    for j in range(100):
        k = j + rng.getrandbits(31) % (100 - j)
        table[j], table[k] = table[k], table[j]


def weight_slots(array: Sequence[Destination]) -> list[int]:
    """Kamailio: ``dp_init_weights`` before the shuffle (hashing notes §6)."""
    table = [0] * 100
    if not array or array[0].attrs.weight == 0:
        return table
    t = 0
    for j, dest in enumerate(array):
        for _ in range(dest.attrs.weight):
            if t >= 100:
                break
            table[t] = j
            t += 1
    for k in range(t, 100):
        table[k] = len(array) - 1
    return table


def relative_weight_slots(
    array: Sequence[Destination],
    states: Sequence[DestinationState],
    rweights: Sequence[int] | None = None,
) -> list[int] | None:
    """Kamailio: ``dp_init_relative_weights`` before the shuffle (§7);
    None when Kamailio leaves the table as it was. ``rweights`` are the
    live relative weights (congestion control lowers them); the list's by
    default."""
    if len(array) < 2:
        return None
    weights = [d.attrs.rweight for d in array] if rweights is None else list(rweights)
    usable = [j for j, s in enumerate(states) if not s & _SKIP]
    total = sum(weights[j] for j in usable)
    if total == 0:
        return None
    table = [0] * 100
    t = 0
    for j in usable:
        for _ in range(weights[j] * 100 // total):
            if t >= 100:
                break
            table[t] = j
            t += 1
    fill = table[t - 1] if t else len(array) - 1
    for k in range(t, 100):
        table[k] = fill
    return table


class Dispatcher:
    """Destination sets and selection (Kamailio: the ``dispatcher`` module).

    ``rng`` is the random source of alg 6 and of the weight-table shuffles
    (any :class:`random.Random`; :class:`GlibcRandom` replays glibc's).
    """

    def __init__(
        self, config: DispatcherConfig | None = None, *, rng: random.Random | None = None
    ) -> None:
        self._config = config or DispatcherConfig()
        self._user_only = bool(int(self._config.flags) & DsFlags.HASH_USER_ONLY.value)
        self.rng = rng if rng is not None else random.Random()
        self._sets: dict[int, _Set] = {}
        self._load: dict[str, _Load] = {}
        self._order = 0

    @property
    def config(self) -> DispatcherConfig:
        return self._config

    @config.setter
    def config(self, value: DispatcherConfig) -> None:
        # Selection reads the flags on every call: keep them as a plain bool.
        self._config = value
        self._user_only = bool(int(value.flags) & DsFlags.HASH_USER_ONLY.value)

    # ----------------------------------------------------------- loading
    def load(
        self,
        destinations: Iterable[Destination],
        *,
        keep_states: bool = True,
        retain_latency: bool | None = None,
    ) -> None:
        """Replace the table (Kamailio: ``dispatcher.reload``).

        The new table is built completely, then swapped in. With
        ``keep_states`` a destination that stays (same set, same URI,
        compared case-insensitively) keeps its state, counters, load and
        overload-control state; its latency statistics too when
        ``retain_latency`` (default: ``ds_retain_latency_stats``). New ones
        start from their list flags. Counters restart at 0 and weight tables
        are rebuilt and reshuffled, as in Kamailio.
        """
        if retain_latency is None:
            retain_latency = self.config.ds_retain_latency_stats
        by_set: dict[int, list[Destination]] = {}
        for count, dest in enumerate(destinations, 1):
            if count > self.config.max_destinations:
                raise LocalProtocolError(f"more than {self.config.max_destinations} destinations")
            by_set.setdefault(dest.setid, []).append(dest)
        new: dict[int, _Set] = {}
        for setid in sorted(by_set):
            new[setid] = self._build(setid, by_set[setid], keep_states, retain_latency)
        self._sets = new
        self._order = max((d.order for s in new.values() for d in s.loaded), default=0) + 1

    def _build(
        self, setid: int, loaded: list[Destination], keep_states: bool, retain_latency: bool
    ) -> _Set:
        old = self._sets.get(setid) if keep_states else None
        entry = _Set(setid, loaded)
        entry.array = array_order(loaded)
        for dest in entry.array:
            i = old.find(dest.uri) if old is not None else -1
            if old is not None and i >= 0:
                status = attrs.evolve(old.status[i], rweight=dest.attrs.rweight)
                if not retain_latency:
                    status.reset_latency(dest.attrs.latency)
                    status.timeouts = 0
            else:
                status = DestinationStatus(
                    dest.flags, rweight=dest.attrs.rweight, oc_rate=dest.attrs.ocrate
                )
                status.reset_latency(dest.attrs.latency)
            entry.status.append(status)
        for i, dest in enumerate(entry.array):
            if i and dest.priority == entry.array[i - 1].priority:
                entry.levels[-1] = (entry.levels[-1][0], i + 1)
            else:
                entry.levels.append((i, i + 1))
        entry.wlist = weight_slots(entry.array)
        if entry.array and entry.array[0].attrs.weight:
            _shuffle(entry.wlist, self.rng)
        self._reinit_rweights(entry)
        return entry

    def _reinit_rweights(self, entry: _Set) -> None:
        table = relative_weight_slots(
            entry.array, [s.state for s in entry.status], [s.rweight for s in entry.status]
        )
        if table is not None:
            _shuffle(table, self.rng)
            entry.rwlist = table

    def load_list(self, text: str, source: str = "dispatcher.list") -> list[str]:
        """Load ``dispatcher.list`` text; returns the problems skipped
        (``ds_load_mode=SKIP``) or raises :class:`ListError` (``FATAL``),
        leaving the old table in place."""
        destinations, skipped = parse_list(text, source, self.config)
        self.load(destinations)
        return skipped

    def load_file(self, path: str | os.PathLike[str]) -> list[str]:
        """Kamailio: ``list_file``: read and load a ``dispatcher.list``
        (at most ``max_list_bytes``, UTF-8); errors name the file."""
        name = os.fspath(path)
        try:
            with open(name, "rb") as handle:
                data = handle.read(self.config.max_list_bytes + 1)
        except OSError as exc:
            raise ListError(name, 0, f"cannot read the list: {exc.strerror}") from None
        if len(data) > self.config.max_list_bytes:
            raise ListError(name, 0, f"list larger than {self.config.max_list_bytes} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data[: exc.start].count(b"\n") + 1
            raise ListError(name, line, "not UTF-8") from None
        return self.load_list(text, name)

    def load_sqlite(self, connection: sqlite3.Connection, table: str = "dispatcher") -> list[str]:
        """Load Kamailio's ``dispatcher`` table from an SQLite connection."""
        destinations, skipped = read_sqlite(connection, table, self.config)
        self.load(destinations)
        return skipped

    def add(
        self, setid: int, uri: str, flags: int = 0, priority: int = 0, attrs_text: str = ""
    ) -> Destination:
        """Kamailio: ``dispatcher.add``: a destination after the others
        of its set in file order (so it comes first among its priority)."""
        dest = make_destination(setid, uri, flags, priority, attrs_text, "", self._order)
        self._order += 1
        others = [d for s in self._sets.values() for d in s.loaded]
        self.load([*others, dest], retain_latency=True)
        return dest

    def remove(self, setid: int, uri: str) -> None:
        """Kamailio: ``dispatcher.remove``."""
        entry = self._set(setid)
        if entry.find(uri) < 0:
            raise UnknownDestination(f"{uri} is not in set {setid}")
        lowered = uri.lower()
        self.load(
            [
                d
                for s in self._sets.values()
                for d in s.loaded
                if not (s.setid == setid and d.uri.lower() == lowered)
            ],
            retain_latency=True,
        )

    # ---------------------------------------------------------- queries
    def _set(self, setid: int) -> _Set:
        entry = self._sets.get(setid)
        if entry is None:
            raise UnknownDestination(f"destination set {setid} not found")
        return entry

    def setids(self) -> list[int]:
        return sorted(self._sets)

    def destinations(self, setid: int) -> tuple[Destination, ...]:
        """A set in array order (what ``kamcmd dispatcher.list`` prints)."""
        return tuple(self._set(setid).array)

    def status(self, setid: int, uri: str) -> DestinationStatus:
        entry = self._set(setid)
        i = entry.find(uri)
        if i < 0:
            raise UnknownDestination(f"{uri} is not in set {setid}")
        return entry.status[i]

    def entries(self) -> list[tuple[Destination, DestinationStatus]]:
        """Every destination with its live status, sets in id order, each in
        array order: what a prober walks to decide whom to ping. Change
        states through :meth:`mark` / :meth:`set_state`, so that thresholds,
        events and the relative-weight tables follow."""
        return [
            (dest, status)
            for setid in sorted(self._sets)
            for dest, status in zip(self._sets[setid].array, self._sets[setid].status, strict=True)
        ]

    def state(self, setid: int, uri: str) -> DestinationState:
        """Kamailio: ``ds_get_state()``."""
        return self.status(setid, uri).state

    def weight_table(self, setid: int) -> tuple[int, ...]:
        """The (shuffled) 100 alg-9 slots, as array indexes."""
        return tuple(self._set(setid).wlist)

    def relative_weight_table(self, setid: int) -> tuple[int, ...]:
        return tuple(self._set(setid).rwlist)

    def list_exists(self, setid: int) -> bool:
        """Kamailio: ``ds_list_exists()``."""
        return setid in self._sets

    def is_active(self, setid: int, uri: str | None = None) -> bool:
        """Kamailio: ``ds_is_active()``: any (or this, compared exactly)
        destination of the set is neither inactive nor disabled."""
        entry = self._sets.get(setid)
        if entry is None:
            return False
        return any(
            not s.bits & _SKIP and (uri is None or d.uri == uri)
            for d, s in zip(entry.array, entry.status, strict=True)
        )

    def count(self, setid: int, states: str = "") -> int:
        """Kamailio: ``ds_count()``: destinations of a set whose state
        matches any letter: ``a`` active (usable), ``i`` inactive, ``d``
        disabled, ``t`` trying, ``p`` probing; empty counts all."""
        entry = self._sets.get(setid)
        if entry is None:
            return 0
        letters = states.lower()
        if not letters:
            return len(entry.array)
        if set(letters) - set("aidtp"):
            raise LocalProtocolError(f"unknown state letters {states!r}")
        n = 0
        for s in entry.status:
            st = s.state
            if (
                ("a" in letters and not st & _SKIP)
                or ("i" in letters and st & DestinationState.INACTIVE)
                or ("d" in letters and st & DestinationState.DISABLED)
                or ("t" in letters and st & DestinationState.TRYING)
                or ("p" in letters and st & DestinationState.PROBING)
            ):
                n += 1
        return n

    def group_stats(self, setid: int) -> dict[str, int]:
        """Kamailio: ``ds_dsg_fetch(setid)`` then ``$dsg(key)``: how many
        destinations the set has (``count``), how many are usable
        (``active``: neither inactive nor disabled) and not (``inactive``),
        and, beyond those, how many carry each state bit (``disabled``,
        ``trying``, ``probing``) and the total counted call load
        (``load``)."""
        entry = self._set(setid)
        bits = [s.bits for s in entry.status]
        active = sum(1 for b in bits if not b & _SKIP)
        return {
            "count": len(bits),
            "active": active,
            "inactive": len(bits) - active,
            "disabled": sum(1 for b in bits if b & DestinationState.DISABLED.value),
            "trying": sum(1 for b in bits if b & DestinationState.TRYING.value),
            "probing": sum(1 for b in bits if b & DestinationState.PROBING.value),
            "load": sum(s.load for s in entry.status),
        }

    def is_from_list(
        self, host: str, port: int | None = None, setid: int = -1, *, active_only: bool = False
    ) -> Destination | None:
        """Kamailio: ``ds_is_from_list()``: the destination whose host is
        ``host`` (textual, case-insensitive; no DNS here) and whose port is
        ``port`` or unspecified; set -1 searches every set."""
        sets = (
            self._sets.values()
            if setid == -1
            else [self._sets[setid]]
            if setid in self._sets
            else []
        )
        lowered = host.lower()
        for entry in sets:
            for dest, s in zip(entry.array, entry.status, strict=True):
                if dest.host.lower() != lowered:
                    continue
                if dest.port is not None and port is not None and dest.port != port:
                    continue
                if active_only and s.bits & _SKIP:
                    continue
                return dest
        return None

    # ---------------------------------------------------------- marking
    def mark(
        self,
        setid: int,
        uri: str,
        state: DestinationState | str | None = None,
        *,
        code: int = 0,
        reason: str = "",
    ) -> DestinationEvent | None:
        """Kamailio: ``ds_mark_dst()`` / ``ds_update_state()``.

        Marking a destination *trying* counts a failure; at
        ``ds_probing_threshold`` failures it becomes inactive. Marking an
        inactive destination active counts a success; it becomes active at
        ``ds_inactive_threshold`` successes. Disabled wins over the rest.
        Returns :class:`DestinationDown` / :class:`DestinationUp` when the
        destination left or rejoined the rotation. Without a state, as
        ``ds_mark_dst()``: inactive, and probing in ``ds_probing_mode`` ALL.
        ``code`` and ``reason`` are the reply that made the caller mark (a
        failure route's), carried into the event as ``$dsv(code)`` and
        ``$dsv(reason)`` are in Kamailio.
        """
        if state is None:
            state = DestinationState.INACTIVE
            if self._config.ds_probing_mode == 1:
                state |= DestinationState.PROBING
        new = parse_state(state) if isinstance(state, str) else DestinationState(state)
        entry = self._set(setid)
        i = entry.find(uri)
        if i < 0:
            raise UnknownDestination(f"{uri} is not in set {setid}")
        status = entry.status[i]
        old = status.state
        init = new
        flags = old & ~STATES_ALL
        if new & DestinationState.TRYING and old & DestinationState.INACTIVE:
            # Inactive must go through active before trying again.
            new = (new & ~DestinationState.TRYING) | DestinationState.INACTIVE
        flags |= DestinationState.DISABLED if new & DestinationState.DISABLED else new
        cfg = self.config
        if new & DestinationState.TRYING:
            status.message_count += 1
            if status.message_count >= cfg.ds_probing_threshold:
                flags = (flags & ~DestinationState.TRYING) | DestinationState.INACTIVE
                status.message_count = 0
        elif not init & DestinationState.TRYING and old & DestinationState.INACTIVE:
            status.message_count += 1
            if status.message_count < cfg.ds_inactive_threshold:
                flags |= DestinationState.INACTIVE
                if old & DestinationState.PROBING:
                    flags |= DestinationState.PROBING
            else:
                status.message_count = 0
        else:
            status.message_count = 0
        status.state = DestinationState(flags)
        event = self._changed(entry, i, old)
        if event is not None and (code or reason):
            event = attrs.evolve(event, code=code, reason=reason, replied=code > 0)
        return event

    def set_state(
        self, setid: int, uri: str, state: DestinationState | str
    ) -> DestinationEvent | None:
        """Kamailio: ``dispatcher.set_state`` (``ds_reinit_state``): the state
        bits replaced, no threshold counting."""
        new = parse_state(state) if isinstance(state, str) else DestinationState(state)
        entry = self._set(setid)
        i = entry.find(uri)
        if i < 0:
            raise UnknownDestination(f"{uri} is not in set {setid}")
        status = entry.status[i]
        old = status.state
        status.state = DestinationState((old & ~STATES_ALL) | (new & STATES_ALL))
        return self._changed(entry, i, old)

    def set_duid_state(
        self, setid: int, duid: str, state: DestinationState | str
    ) -> DestinationEvent | None:
        """Kamailio: ``dispatcher.set_duid_state`` (``ds_reinit_duid_state``):
        as :meth:`set_state` for the first destination (array order) whose
        ``duid`` matches, case-insensitively."""
        entry = self._set(setid)
        lowered = duid.lower()
        for dest in entry.array:
            if dest.attrs.duid and dest.attrs.duid.lower() == lowered:
                return self.set_state(setid, dest.uri, state)
        raise UnknownDestination(f"no destination with duid {duid} in set {setid}")

    def set_state_all(self, setid: int, state: DestinationState | str) -> list[DestinationEvent]:
        """Kamailio: ``dispatcher.set_state <state> <set> all``
        (``ds_reinit_state_all``)."""
        events = [self.set_state(setid, dest.uri, state) for dest in self._set(setid).array]
        return [e for e in events if e is not None]

    def mark_address(
        self, host: str, port: int | None, state: DestinationState | str, setid: int = -1
    ) -> list[DestinationEvent]:
        """``mark`` every destination at ``host[:port]`` (Kamailio: the
        ``ds_mark_dst`` of a reply's source address)."""
        events: list[DestinationEvent] = []
        lowered = host.lower()
        for entry in list(self._sets.values()):
            if setid != -1 and entry.setid != setid:
                continue
            for dest in list(entry.array):
                if dest.host.lower() == lowered and (port is None or (dest.port or 5060) == port):
                    event = self.mark(entry.setid, dest.uri, state)
                    if event is not None:
                        events.append(event)
        return events

    def _changed(self, entry: _Set, i: int, old: DestinationState) -> DestinationEvent | None:
        status = entry.status[i]
        dest = entry.array[i]
        was, now = bool(old & _SKIP), bool(status.bits & _SKIP)
        if was != now:
            entry.pw = None
        if was != now and status.rweight > 0:
            self._reinit_rweights(entry)
        if not was and now:
            return DestinationDown(entry.setid, dest.uri, status.state)
        if was and not now:
            return DestinationUp(entry.setid, dest.uri, status.state)
        return None

    # ---------------------------------------------------------- latency
    def update_latency(self, setid: int, uri: str, code: int, now: float) -> None:
        """Kamailio: ``ds_update_latency()``: a probe of ``uri`` finished with
        ``code`` (408 for a timeout). Only a destination in the probing state
        is measured, from :attr:`DestinationStatus.ping_started` to ``now``;
        a 408 counts a timeout instead of a sample. Then, for destinations
        with ``cc=1`` and a ``weight``, congestion control lowers the live
        ``rweight`` by the congestion (estimate minus average, ms) and
        rebuilds the relative-weight table (§7) when one changed.
        """
        entry = self._set(setid)
        i = entry.find(uri)
        if i < 0:
            raise UnknownDestination(f"{uri} is not in set {setid}")
        status = entry.status[i]
        if not status.state & DestinationState.PROBING:
            return
        if code == 408:
            status.timeouts += 1
        if status.ping_started is None:
            return
        if code != 408:
            # Whole microseconds, then truncated to ms, as Kamailio's timeval
            # arithmetic does (and so 0.020 s of float time is 20 ms, not 19).
            micros = round((now - status.ping_started) * 1_000_000)
            latency_sample(status, micros // 1000, self.config)
        self._congestion_control(entry, i)

    def _congestion_control(self, entry: _Set, pinged: int) -> None:
        # ds_update_latency's second half: every cc destination is weighed;
        # the pinged one gets weight - congestion as its rweight. When all of
        # them (and more than one) are fully congested, rweights follow the
        # share of the total congestion instead (x16 for precision).
        enabled, changed = True, False
        congested = normal = total = 0
        for j, (dest, status) in enumerate(zip(entry.array, entry.status, strict=True)):
            if not dest.attrs.cc:
                enabled = False
                continue
            if dest.attrs.weight <= 0:
                continue
            congestion = max(int(status.latency_estimate - status.latency_average), 0)
            total += congestion
            active = max(dest.attrs.weight - congestion, 0)
            if active == 0:
                congested += 1
            else:
                normal += 1
            if j == pinged and status.rweight != active:
                status.rweight = active
                changed = True
        if enabled and congested > 1 and normal == 0:
            for status in entry.status:
                congestion = int(status.latency_estimate - status.latency_average)
                share = (total << 4) // (congestion or 1)
                if status.rweight != share:
                    status.rweight = share
                    changed = True
        if enabled and changed:
            self._reinit_rweights(entry)

    # -------------------------------------------------- overload control
    def set_overload(
        self, setid: int, uri: str, rate: int, validity_ms: int, seq: int, now: float
    ) -> bool:
        """Kamailio: ``ds_oc_set_attrs()`` (RFC 7339 ``oc``/``oc-validity``/
        ``oc-seq`` from a reply): for alg 64, drop ``rate`` percent of the
        new calls to ``uri`` (clamped to its ``ocmin``..``ocmax``) for
        ``validity_ms`` (500 when 0 or less), unless ``seq`` is not newer
        than the last one applied. Returns whether it was applied."""
        entry = self._set(setid)
        i = entry.find(uri)
        if i < 0:
            raise UnknownDestination(f"{uri} is not in set {setid}")
        dest, status = entry.array[i], entry.status[i]
        if status.oc_seq >= seq:
            return False
        status.oc_rate = min(max(rate, dest.attrs.ocmin), dest.attrs.ocmax)
        pattern = [False] * status.oc_rate + [True] * (100 - status.oc_rate)
        self.rng.shuffle(pattern)
        status.oc_pattern = tuple(pattern)
        status.oc_until = now + (validity_ms if validity_ms > 0 else 500) / 1000.0
        status.oc_seq = seq
        return True

    def _overload_skip(self, status: DestinationStatus, now: float | None) -> bool:
        # ds_oc_skip: outside the validity window every call passes; inside
        # it, the next slot of the drop pattern decides.
        if now is None or status.oc_until < now or not status.oc_pattern:
            return False
        use = status.oc_pattern[status.oc_index]
        status.oc_index = (status.oc_index + 1) % 100
        return not use

    def overload_list(self, setid: int) -> list[dict[str, object]]:
        """Kamailio: ``dispatcher.oclist``: each destination's overload state."""
        entry = self._set(setid)
        return [
            {
                "URI": dest.uri,
                "OCMIN": dest.attrs.ocmin,
                "OCMAX": dest.attrs.ocmax,
                "OCRATE": status.oc_rate,
                "OCSEQ": status.oc_seq,
                "OCUNTIL": status.oc_until,
            }
            for dest, status in zip(entry.array, entry.status, strict=True)
        ]

    # -------------------------------------------------------- selection
    def select(
        self,
        setid: int,
        alg: int,
        request: Request | None = None,
        *,
        limit: int | None = None,
        key: str | bytes | None = None,
        now: float | None = None,
    ) -> Selection:
        """Kamailio: ``ds_select_dst()`` / ``ds_select_domain()`` /
        ``ds_select()`` / ``ds_select_routes()``: the destinations to try.

        The first is the choice; the rest is the failover list in Kamailio's
        order (after the chosen one in array order, wrapping, skipping
        inactive and disabled ones; with ``use_default`` the last array
        entry is kept for last). ``limit`` caps the list (with
        ``use_default`` the default stays last). An empty :class:`Selection`
        means Kamailio's ``false``. Setting ``$du`` / ``$ru`` from it is the
        caller's part (``force_dst`` is for that caller to honour).
        """
        if limit is not None and limit < 1:
            raise LocalProtocolError("limit must be at least 1")
        entry = self._sets.get(setid)
        if entry is None:
            raise UnknownDestination(f"destination set {setid} not found")
        nr = len(entry.array)
        if nr == 0:
            return Selection(setid, alg)
        n = nr - 1 if self._config.use_default and nr > 1 else nr
        round_robin = False
        if alg == 0 and request is not None:
            # The most used algorithms, without the general key dispatch.
            h = ds_get_hash(call_id_key(request))
        elif (alg == 1 or alg == 2 or alg == 3) and request is not None:
            text = (
                request.from_.uri_text
                if alg == 1
                else request.to.uri_text
                if alg == 2
                else request.uri_text
            )
            h = ds_get_hash(*uri_hash_keys(text, user_only=self._user_only))
        elif alg == 13:
            return self._by_latency(entry, n, limit)
        elif alg == 14:
            return self._round_robin_top_priority(entry, n, limit)
        elif alg == 15:
            return self._priority_weight(entry, n, limit)
        elif alg in (0, 1, 2, 3, 5):
            if request is None:
                raise LocalProtocolError(f"algorithm {alg} needs the request")
            keys = request_keys(request, alg, user_only=self._user_only)
            if keys is None:  # alg 5 without credentials: round-robin
                round_robin = True
                h = entry.last
                entry.last = (entry.last + 1) % nr
            else:
                h = ds_get_hash(*keys)
        elif alg in (4, 64):
            h = entry.last
            entry.last = (entry.last + 1) % nr
            round_robin = True
        elif alg == 6:
            h = self.rng.getrandbits(31)
        elif alg == 7:
            if key is None:
                raise LocalProtocolError("algorithm 7 needs key=")
            # ds_hash_pvar: the key trimmed; an empty one fails the selection.
            data = (key.encode("utf-8", "surrogateescape") if isinstance(key, str) else key).strip(
                b" \t\r\n"
            )
            if not data:
                return Selection(setid, alg)
            h = ds_get_hash(data)
        elif alg in (8, 12):
            h = 0
        elif alg == 9:
            h = entry.wlist[entry.wlast]
            entry.wlast = (entry.wlast + 1) % 100
        elif alg == 11:
            h = entry.rwlist[entry.rwlast]
            entry.rwlast = (entry.rwlast + 1) % 100
        elif alg == 10:
            if request is None or now is None:
                raise LocalProtocolError("algorithm 10 needs the request and now")
            if request.method != "INVITE":
                h, alg = 0, 0  # only an INVITE starts a call: first entry
            else:
                h = self._least_loaded(entry, request, now)
                if h < 0:
                    return Selection(setid, alg)
        else:
            raise LocalProtocolError(f"dispatcher algorithm {alg} is not implemented")
        start = h % n
        status = entry.status
        if alg != 64 and not status[start].bits & _SKIP:
            chosen = start  # the common case: the hashed-to one is usable
        else:
            chosen = self._probe(entry, start, n, now if alg == 64 else None)
            if chosen < 0:
                return Selection(setid, alg)
        if round_robin:
            entry.last = (chosen + 1) % nr
        if limit == 1 and alg != 12:
            return built_selection(setid, alg, (entry.array[chosen],))
        if alg == 12:
            # ds_add_branches: a branch for every entry after the chosen one,
            # in array order, whatever its state (Kamailio does not check).
            end = nr if limit is None else min(nr, chosen + limit)
            return Selection(entry.setid, 12, tuple(entry.array[chosen:end]))
        return self._selection(entry, alg, chosen, n, limit)

    def _probe(self, entry: _Set, start: int, n: int, overload_now: float | None = None) -> int:
        # Hashing notes §4: linear towards higher indexes, wrapping. With
        # alg 64 (overload_now set) a destination under overload control is
        # also passed over for the calls its drop pattern sheds.
        status = entry.status

        def unusable(j: int) -> bool:
            return bool(status[j].bits & _SKIP) or (
                overload_now is not None and self._overload_skip(status[j], overload_now)
            )

        i = start
        while unusable(i):
            i = (i + 1) % n
            if i == start:
                if n < len(entry.array):
                    default = len(entry.array) - 1
                    return -1 if unusable(default) else default
                return -1
        return i

    def _selection(
        self, entry: _Set, alg: int, chosen: int, n: int, limit: int | None
    ) -> Selection:
        # ds_manage_routes_fill_xavp: the chosen one, those after it, those
        # before it (skipping unusable ones and the reserved default), then
        # the default if the limit leaves room for it.
        if limit == 1:
            return Selection(entry.setid, alg, (entry.array[chosen],))
        status = entry.status
        array = entry.array
        default = len(array) - 1
        if limit is None and alg != 10:
            # The whole list, the common call: one pass with no cap to check.
            picked = [array[chosen]]
            picked += [
                array[i]
                for i in itertools.chain(range(chosen + 1, n), range(0, min(chosen, n)))
                if not status[i].bits & _SKIP
            ]
            if n < len(array) and chosen != default:
                picked.append(array[default])
            return built_selection(entry.setid, alg, tuple(picked))
        order = [chosen]
        cap = len(array) if limit is None else limit
        for i in itertools.chain(range(chosen + 1, n), range(0, min(chosen, n))):
            if len(order) >= cap:
                break
            if status[i].bits & _SKIP:
                continue
            if alg == 10 and array[i].attrs.maxload and status[i].load >= array[i].attrs.maxload:
                continue
            order.append(i)
        if n < len(array) and chosen != default and len(order) < cap:
            order.append(default)
        return Selection(entry.setid, alg, tuple(array[i] for i in order))

    def _by_latency(self, entry: _Set, n: int, limit: int | None) -> Selection:
        # ds_manage_route_algo13: walk nr entries from the round-robin
        # counter (modulo n), give each usable one a priority lowered by
        # latency / priority (congestion ms with cc=1), sort by that priority
        # (a stable sort, as Kamailio's bubble sort), the first is the choice.
        nr = len(entry.array)
        ranked: list[tuple[int, int]] = []  # (rpriority, index); -1 = unusable
        z = entry.last
        for _ in range(nr):
            dest, status = entry.array[z], entry.status[z]
            if status.bits & _SKIP:
                ranked.append((-1, -1))
            else:
                estimate = status.latency_estimate
                latency = int(estimate - status.latency_average if dest.attrs.cc else estimate)
                priority = dest.priority
                handicap = latency // priority if latency > priority > 0 else 0
                rpriority = priority - handicap
                if rpriority < 1 and priority > 0:
                    rpriority = 1
                ranked.append((rpriority, z))
            z = (z + 1) % n
        ranked.sort(key=lambda item: -item[0])
        chosen = ranked[0][1]
        if chosen < 0:
            return Selection(entry.setid, 13)
        entry.last = (chosen + 1) % nr
        cap = nr if limit is None else limit
        order: list[int] = []
        default = nr - 1 if n < nr else -1
        for _, i in ranked:
            if len(order) >= cap:
                break
            if i >= 0 and i != default:
                order.append(i)
        if not order:
            order = [chosen]
        elif default >= 0 and chosen != default and len(order) < cap:
            order.append(default)  # Kamailio adds it without looking at its state
        return Selection(entry.setid, 13, tuple(entry.array[i] for i in order))

    def _round_robin_top_priority(self, entry: _Set, n: int, limit: int | None) -> Selection:
        # Alg 14 (beyond Kamailio 5.6): round-robin over the highest priority
        # level that has a usable destination (a counter per set, passing
        # over unusable ones as alg 4 does); the failover list walks the rest
        # of that level from there, then every lower level in array order,
        # then the default. With limit=1 the cost does not grow with the set.
        status = entry.status
        cap = len(entry.array) if limit is None else limit
        order: list[int] = []
        for start, end in entry.levels:
            end = min(end, n)
            size = end - start
            if size <= 0:
                continue
            candidates: Iterable[int] = range(start, end)
            if not order:
                chosen = self._next_usable_in(entry, start, size)
                if chosen < 0:
                    continue
                order.append(chosen)
                if len(order) >= cap:
                    break
                # The rest of the level, from the one after the chosen.
                candidates = [start + (chosen - start + k) % size for k in range(1, size)]
            for i in candidates:
                if len(order) >= cap:
                    break
                if not status[i].bits & _SKIP:
                    order.append(i)
            if len(order) >= cap:
                break
        if len(order) < cap:
            order += self._usable_default(entry, n)
        return Selection(entry.setid, 14, tuple(entry.array[i] for i in order[:cap]))

    @staticmethod
    def _next_usable_in(entry: _Set, start: int, size: int) -> int:
        # Alg 14's turn: from the level's counter on, the first usable one.
        status = entry.status
        first = entry.prlast % size
        for step in range(size):
            i = start + (first + step) % size
            if not status[i].bits & _SKIP:
                entry.prlast = (i - start + 1) % size
                return i
        return -1

    def _usable_default(self, entry: _Set, n: int) -> list[int]:
        # With use_default the reserved last entry closes every list.
        default = len(entry.array) - 1
        if n < len(entry.array) and not entry.status[default].bits & _SKIP:
            return [default]
        return []

    def _priority_weight(self, entry: _Set, n: int, limit: int | None) -> Selection:
        # Alg 15, as Kamailio's later "priority-weight" algorithm is
        # described (DNS SRV, RFC 2782): the lowest priority value first;
        # within a value, an order drawn at random in proportion to
        # ``weight`` (all equal when none has one; one without a weight
        # comes after those with one). The first pick draws from a table
        # kept until usability changes; a longer list orders each level by
        # weighted random keys (the same law as drawing one by one).
        if entry.pw is None or entry.pw[0] != n:
            entry.pw = self._draw_table(entry, n)
        _, members, totals = entry.pw
        if not members:
            order = self._usable_default(entry, n)
            return Selection(entry.setid, 15, tuple(entry.array[i] for i in order[:1]))
        first = members[bisect.bisect_right(totals, self.rng.random() * totals[-1])]
        if limit == 1:
            return Selection(entry.setid, 15, (entry.array[first],))
        order = [first]
        for start, end in reversed(entry.levels):
            end = min(end, n)
            level = [
                i for i in range(start, end) if i != first and not entry.status[i].bits & _SKIP
            ]
            weighted = [i for i in level if entry.array[i].attrs.weight > 0]
            pool = weighted or level
            keyed = sorted(
                pool,
                key=lambda i: self.rng.random() ** (1.0 / (entry.array[i].attrs.weight or 1)),
                reverse=True,
            )
            chosen = set(pool)
            order += keyed + [i for i in level if i not in chosen]
        order += self._usable_default(entry, n)
        cap = len(order) if limit is None else limit
        return Selection(entry.setid, 15, tuple(entry.array[i] for i in order[:cap]))

    @staticmethod
    def _draw_table(entry: _Set, n: int) -> tuple[int, list[int], list[int]]:
        # The lowest priority value is the last level of the array.
        for start, end in reversed(entry.levels):
            usable = [i for i in range(start, min(end, n)) if not entry.status[i].bits & _SKIP]
            if not usable:
                continue
            weighted = [i for i in usable if entry.array[i].attrs.weight > 0] or usable
            totals = list(itertools.accumulate(entry.array[i].attrs.weight or 1 for i in weighted))
            return n, weighted, totals
        return n, [], []

    # --------------------------------------------------------- call load
    def _least_loaded(self, entry: _Set, request: Request, now: float) -> int:
        # ds_get_leastloaded + ds_load_add: without a duid (or with the load
        # table full) the destination is still used, its load not counted
        # ("classic dispatching").
        call_id = request.call_id.strip()
        self.load_unset(call_id)  # a re-selected call is counted once
        best, least = -1, 2**31 - 1
        for j, (dest, s) in enumerate(zip(entry.array, entry.status, strict=True)):
            if s.bits & _SKIP:
                continue
            if dest.attrs.maxload and s.load >= dest.attrs.maxload:
                continue
            if s.load < least:
                best, least = j, s.load
        if best < 0:
            return -1
        duid = entry.array[best].attrs.duid
        if duid and len(self._load) < self.config.max_load_entries:
            expires = now + self.config.ds_hash_initexpire
            self._load[call_id] = _Load(entry.setid, duid, expires)
            entry.status[best].load += 1
        return best

    def next(self, selection: Selection, call_id: str | None = None) -> Selection | None:
        """Kamailio: ``ds_next_dst()``: the selection moved on. For alg 10,
        with the call's ``call_id``, the call's load moves to the new
        destination (``ds_load_replace``); a destination without a duid is
        passed over, as Kamailio does."""
        step = selection.next()
        if selection.alg != 10 or call_id is None:
            return step
        item = self._load.get(call_id.strip())
        while step is not None and item is not None:
            dest = step.current
            assert dest is not None
            if dest.attrs.duid:
                self._release(item)
                item.duid = dest.attrs.duid
                self._acquire(item)
                return step
            step = step.next()
        return step

    def _acquire(self, item: _Load) -> None:
        self._adjust_load(item, +1)

    def _adjust_load(self, item: _Load, delta: int) -> None:
        """Count ``item``'s call on (+1) or off (-1) the destination whose
        duid it holds; never below zero."""
        entry = self._sets.get(item.setid)
        if entry is None:
            return
        for dest, s in zip(entry.array, entry.status, strict=True):
            if dest.attrs.duid == item.duid:
                s.load = max(0, s.load + delta)
                return

    def load_update(self, call_id: str, now: float) -> bool:
        """Kamailio: ``ds_load_update()`` (on the 2xx to the INVITE): the call
        confirmed, kept until ``now + ds_hash_expire``."""
        item = self._load.get(call_id.strip())
        if item is None:
            return False
        item.confirmed = True
        item.expires = now + self.config.ds_hash_expire
        return True

    def load_unset(self, call_id: str) -> bool:
        """Kamailio: ``ds_load_unset()`` (on failure or BYE)."""
        item = self._load.pop(call_id.strip(), None)
        if item is None:
            return False
        self._release(item)
        return True

    def _release(self, item: _Load) -> None:
        self._adjust_load(item, -1)

    def expire_load(self, now: float) -> int:
        """Drop call-load entries past their expiry (Kamailio's ds_ht timer);
        returns how many."""
        stale = [cid for cid, item in self._load.items() if item.expires <= now]
        for cid in stale:
            self._release(self._load.pop(cid))
        return len(stale)

    def next_deadline(self) -> float | None:
        return min((item.expires for item in self._load.values()), default=None)

    def tick(self, now: float) -> None:
        self.expire_load(now)

    # -------------------------------------------------------- rendezvous
    def rendezvous(self, setid: int, key: str | bytes, *, limit: int | None = None) -> Selection:
        """Beyond Kamailio: weighted rendezvous (highest-random-weight) hash.

        Each usable destination scores ``-w / ln(u)``, ``u`` uniform in
        (0, 1) from BLAKE2b of key and URI, ``w`` its ``weight`` (1 when
        unset). Highest score first. When a destination goes down only the
        keys it held move, spread over the rest in proportion to weight.
        """
        entry = self._set(setid)
        data = key.encode() if isinstance(key, str) else key
        scored: list[tuple[float, int]] = []
        for i, (dest, s) in enumerate(zip(entry.array, entry.status, strict=True)):
            if s.bits & _SKIP:
                continue
            salt = hashlib.blake2b(dest.uri.encode(), digest_size=32).digest()
            digest = hashlib.blake2b(data, digest_size=8, key=salt).digest()
            u = (int.from_bytes(digest, "big") + 0.5) / 2.0**64
            scored.append((-(dest.attrs.weight or 1) / math.log(u), i))
        scored.sort(key=lambda item: (-item[0], item[1]))
        if limit is not None:
            scored = scored[:limit]
        return Selection(entry.setid, -1, tuple(entry.array[i] for _, i in scored))
