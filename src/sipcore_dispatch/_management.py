"""Kamailio's ``dispatcher.*`` RPC commands.

This module owns :class:`DispatcherManagement`: one method per Kamailio RPC
(list, set_state, set_duid_state, reload, ping_active, add, remove, hash,
oclist), taking the RPC's parameters as Kamailio does and answering in the
shape of its JSON-RPC result, so that scripts written against ``kamcmd``
output keep working. It changes the dispatcher only through the
dispatcher's own methods and holds no state but the reload guard and the
events the commands caused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sipcore import SipError, is_ip_address

from ._destination import Destination, DestinationState, DestinationStatus, DispatchError
from ._dispatcher import Dispatcher
from ._keys import ds_get_hash
from ._prober import Prober
from .events import DestinationEvent

__all__ = ["DispatcherManagement", "ManagementError", "rpc_flags", "rpc_state"]

S = DestinationState
_MAX_EVENTS = 10_000
# oclist's rows (the method named list() shadows the builtin inside the
# class body, hence the alias).
Rows = list[dict[str, Any]]


class ManagementError(DispatchError):
    """An RPC command that cannot be done, with Kamailio's fault text as
    the reason; ``status_hint`` is the fault code (Kamailio answers 500)."""


Param = str | int


def _int(value: Param) -> int:
    # An RPC integer: an int, or its decimal text (JSON-RPC clients send
    # either); anything else is Kamailio's "Invalid Parameters".
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ManagementError("Invalid Parameters", 500)
    if isinstance(value, int):
        return value
    text = value.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isascii() or not digits.isdigit() or len(digits) > 18:
        raise ManagementError("Invalid Parameters", 500)
    return int(text)


def _str(value: Param) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ManagementError("Invalid Parameters", 500)
    return str(value)


def rpc_flags(state: DestinationState) -> str:
    """The two-letter ``FLAGS`` of ``dispatcher.list``: ``I`` inactive,
    ``D`` disabled, ``T`` trying or ``A`` active (first match in that
    order), then ``P`` probing or ``X``.

    >>> rpc_flags(DestinationState.INACTIVE | DestinationState.PROBING)
    'IP'
    """
    if state & S.INACTIVE:
        first = "I"
    elif state & S.DISABLED:
        first = "D"
    elif state & S.TRYING:
        first = "T"
    else:
        first = "A"
    return first + ("P" if state & S.PROBING else "X")


def rpc_state(text: str) -> DestinationState:
    """The state parameter of ``dispatcher.set_state``: the first letter
    (``a``/``1``, ``i``/``0``, ``d``/``2``, ``t``/``3``, any case) and a
    second ``p`` for probing, which a disabled state ignores.

    >>> rpc_state("IP"), rpc_state("dp")
    (<DestinationState.INACTIVE|PROBING: 9>, <DestinationState.DISABLED: 4>)
    """
    if not text:
        raise ManagementError("Invalid State Parameter", 500)
    first = text[0].lower()
    probing = len(text) > 1 and text[1] in "pP"
    if first in "0i":
        state = S.INACTIVE
    elif first in "1a":
        state = S.ACTIVE
    elif first in "2d":
        return S.DISABLED
    elif first in "3t":
        state = S.TRYING
    else:
        raise ManagementError("Unknown State Value", 500)
    return state | S.PROBING if probing else state


class DispatcherManagement:
    """Kamailio's ``dispatcher.*`` RPC commands over a :class:`Dispatcher`.

    ``reload`` is what ``dispatcher.reload`` does here (re-read the list
    file or table the application loaded from; it returns the problems
    skipped, as :meth:`Dispatcher.load_file` does); ``prober`` is the one
    whose pings ``dispatcher.ping_active`` switches. Commands that rebuild
    the table (reload, add, remove) refuse to run within ``reload_delta``
    seconds of the last one, as Kamailio does.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        *,
        prober: Prober | None = None,
        reload: Callable[[], object] | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.prober = prober
        self._reload = reload
        self._last_rebuild: float | None = None
        self._events: list[DestinationEvent] = []

    def take_events(self) -> list[DestinationEvent]:
        """State changes made by set_state / set_duid_state since the last
        call (Kamailio runs no event route for them; they are here for an
        application that wants to know)."""
        out, self._events = self._events, []
        return out

    def _record(self, events: list[DestinationEvent | None]) -> None:
        for event in events:
            if event is not None and len(self._events) < _MAX_EVENTS:
                self._events.append(event)

    # ------------------------------------------------------------- list
    def list(self, mode: Param = "") -> dict[str, Any]:
        """Kamailio: ``dispatcher.list [short|full]``."""
        lowered = _str(mode).lower()
        d = self.dispatcher
        if not d.setids():
            raise ManagementError("No Destination Sets", 500)
        records = []
        for setid in d.setids():
            targets = [
                {"DEST": self._describe(dest, d.status(setid, dest.uri), lowered)}
                for dest in d.destinations(setid)
            ]
            records.append({"SET": {"ID": setid, "TARGETS": targets}})
        return {"NRSETS": len(records), "RECORDS": records}

    def _describe(self, dest: Destination, status: DestinationStatus, mode: str) -> dict[str, Any]:
        cfg = self.dispatcher.config
        out: dict[str, Any] = {
            "URI": dest.uri,
            "FLAGS": rpc_flags(status.state),
            "PRIORITY": dest.priority,
        }
        if mode == "full":
            out.update(
                HOST=dest.host,
                IPADDR=dest.host if _is_ip(dest.host) else "",
                PORT=dest.port or 0,
                PROTOID=_proto_id(dest.uri),
                DNSTIME_SEC=0,
                DNSTIME_USEC=0,
            )
        if mode != "short" and (dest.attrs.body or cfg.ds_attrs_none):
            a = dest.attrs
            # An attribute not given is a null in Kamailio's answer.
            out["ATTRS"] = {
                "BODY": a.body or "none=yes",
                "DUID": a.duid or None,
                "MAXLOAD": a.maxload,
                "WEIGHT": a.weight,
                "RWEIGHT": status.rweight,
                "SOCKET": a.socket or None,
                "SOCKNAME": a.sockname or None,
                "OBPROXY": a.obproxy or None,
            }
        if cfg.ds_ping_latency_stats:
            out["LATENCY"] = {
                "AVG": round(status.latency_average, 6),
                "STD": round(status.latency_stdev, 6),
                "EST": round(status.latency_estimate, 6),
                "MAX": status.latency_max,
                "TIMEOUT": status.timeouts,
            }
        if cfg.ds_hash_size > 0:
            out["RUNTIME"] = {"DLGLOAD": status.load}
        return out

    # ------------------------------------------------------------ state
    def set_state(self, state: Param, group: Param, address: Param) -> str:
        """Kamailio: ``dispatcher.set_state <state> <group> <address|all>``."""
        new = rpc_state(_str(state))
        group, address = _int(group), _str(address)
        d = self.dispatcher
        try:
            if address == "all":
                self._record([*d.set_state_all(group, new)])
            else:
                self._record([d.set_state(group, address, new)])
        except DispatchError:
            raise ManagementError("State Update Failed", 500) from None
        return "Ok. Dispatcher state updated."

    def set_duid_state(self, state: Param, group: Param, duid: Param) -> str:
        """Kamailio: ``dispatcher.set_duid_state <state> <group> <duid|all>``."""
        new = rpc_state(_str(state))
        group, duid = _int(group), _str(duid)
        d = self.dispatcher
        try:
            if duid == "all":
                self._record([*d.set_state_all(group, new)])
            else:
                self._record([d.set_duid_state(group, duid, new)])
        except DispatchError:
            raise ManagementError("State Update Failed", 500) from None
        return "Ok. Dispatcher state updated."

    def ping_active(self, state: Param | None = None) -> dict[str, int]:
        """Kamailio: ``dispatcher.ping_active [0|1]``: the global switch of
        keepalives; without a state, the current one."""
        if self.prober is None:
            raise ManagementError("Ping State Update Failed", 500)
        old = int(self.prober.ping_active)
        if state is None:
            return {"OldPingState": old}
        new = _int(state)
        self.prober.ping_active = bool(new)
        return {"NewPingState": new, "OldPingState": old}

    # --------------------------------------------------------- rebuilds
    def _guard(self, now: float) -> None:
        delta = self.dispatcher.config.reload_delta
        if self._last_rebuild is not None and self._last_rebuild > now - delta:
            raise ManagementError("Ongoing reload", 500)
        self._last_rebuild = now

    def reload(self, *, now: float) -> str:
        """Kamailio: ``dispatcher.reload``. A failed reload leaves the old
        table in place (the load is atomic) and answers ``Reload Failed``."""
        if self._reload is None:
            raise ManagementError("Reload Failed", 500)
        self._guard(now)
        try:
            self._reload()
        except SipError:
            raise ManagementError("Reload Failed", 500) from None
        return "Ok. Dispatcher successfully reloaded."

    def add(
        self,
        group: Param,
        address: Param,
        flags: Param = 0,
        priority: Param = 0,
        attrs: Param = "",
        *,
        now: float,
    ) -> str:
        """Kamailio: ``dispatcher.add <group> <address> [flags priority [attrs]]``."""
        args = (_int(group), _str(address), _int(flags), _int(priority), _str(attrs))
        self._guard(now)
        try:
            self.dispatcher.add(*args)
        except SipError:
            raise ManagementError("Adding dispatcher dst failed", 500) from None
        return "Ok. Dispatcher destination added."

    def remove(self, group: Param, address: Param, *, now: float) -> str:
        """Kamailio: ``dispatcher.remove <group> <address>``."""
        setid, uri = _int(group), _str(address)
        self._guard(now)
        try:
            self.dispatcher.remove(setid, uri)
        except SipError:
            raise ManagementError("Removing dispatcher dst failed", 500) from None
        return "Ok. Dispatcher destination removed."

    # ------------------------------------------------------------ other
    def hash(self, nslots: Param, val1: Param, val2: Param | None = None) -> dict[str, int]:
        """Kamailio: ``dispatcher.hash <nslots> <val1> [val2]``: the
        dispatcher hash of the values and its slot (0 when nslots <= 0)."""
        nslots = _int(nslots)
        first = _str(val1).encode("utf-8", "surrogateescape")
        second = None if val2 is None else _str(val2).encode("utf-8", "surrogateescape")
        hashid = ds_get_hash(first, second)
        return {"hashid": hashid, "slot": hashid % nslots if nslots > 0 else 0}

    def oclist(self, group: Param) -> Rows:
        """Kamailio: ``dispatcher.oclist <group>``: overload-control state."""
        setid = _int(group)
        try:
            return self.dispatcher.overload_list(setid)
        except DispatchError:
            raise ManagementError("Destination set not found", 500) from None


def _is_ip(host: str) -> bool:
    return is_ip_address(host.strip("[]"))


def _proto_id(uri: str) -> int:
    # Kamailio's PROTO_* numbers: 0 none, 1 UDP, 2 TCP, 3 TLS, 4 SCTP, 5 WS.
    lowered = uri.lower()
    for name, number in (("udp", 1), ("tcp", 2), ("tls", 3), ("sctp", 4), ("ws", 5)):
        if f";transport={name}" in lowered:
            return number
    return 3 if lowered.startswith("sips:") else 0
