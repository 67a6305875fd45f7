"""One dialog: its identity, state, both legs, timers, flags and variables.

This module owns :class:`Dialog` (Kamailio's ``dlg_cell``), the state enum
with Kamailio's numbers, the direction of a request within a dialog, the
properties (``ka-src``, ``ka-dst``, ``timeout-noreset``) and the dialog
context (``$dlg_ctx``). It does not match, time or persist dialogs: that is
the tracker's job.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import attrs

from sipcore import Endpoint

if TYPE_CHECKING:
    from ._profiles import ProfileLink

__all__ = [
    "Dialog",
    "DialogContext",
    "DialogExtra",
    "DialogState",
    "Direction",
    "Property",
    "Side",
]


class DialogState(enum.IntEnum):
    """Kamailio's dialog states, with their numbers (RPC, database)."""

    UNCONFIRMED = 1
    EARLY = 2
    CONFIRMED_NA = 3  # a 2xx seen, its ACK not yet
    CONFIRMED = 4
    DELETED = 5


class Direction(enum.Enum):
    """Which way a request travels within its dialog."""

    DOWNSTREAM = "caller to callee"
    UPSTREAM = "callee to caller"


class Side(enum.Enum):
    """A party of the dialog (Kamailio's 'caller', 'callee', 'all')."""

    CALLER = "caller"
    CALLEE = "callee"
    ALL = "all"


class Property(enum.IntFlag):
    """``dlg_set_property``; stored in the ``iflags`` column with Kamailio's
    bit values (``DLG_IFLAG_KA_SRC``... in ``dlg_hash.h``), so a row either
    side wrote means the same to the other. Bit 1 (``DLG_IFLAG_TIMEOUTBYE``)
    is :attr:`DialogContext.timeout_bye`."""

    KA_SRC = 2  # keepalive OPTIONS to the caller
    KA_DST = 4  # keepalive OPTIONS to the callee
    TIMEOUT_NORESET = 8  # DLG_IFLAG_TIMER_NORESET


# Flags are values: one shared empty set (building an IntFlag costs ~15 us).
NO_PROPERTIES: Final = Property(0)


@attrs.define(slots=True)
class DialogContext:
    """``$dlg_ctx(...)``: what the script sets for what happens next."""

    timeout_route: str | None = None  # $dlg_ctx(timeout_route)
    timeout_bye: bool = False  # $dlg_ctx(timeout_bye)
    flags: int = 0  # $dlg_ctx(flags)
    on: bool = True  # $dlg_ctx(on)


def reverse_hex(value: int) -> str:
    """Kamailio's ``int2reverse_hex``: hex digits, least significant first."""
    if value == 0:
        return "0"
    out = []
    while value:
        out.append("0123456789abcdef"[value & 15])
        value >>= 4
    return "".join(out)


def parse_reverse_hex(text: str) -> int | None:
    """Kamailio's ``reverse_hex2int``; None when ``text`` is not hex."""
    if not text or len(text) > 8:
        return None
    value = 0
    for shift, char in enumerate(text):
        digit = "0123456789abcdef".find(char.lower())
        if digit < 0:
            return None
        value |= digit << (4 * shift)
    return value


# The fields read only now and then (local requests, RPC listings, the
# store) are packed into one string: a dialog then pays one string header
# for all of them instead of one each. Order matters: it is the encoding.
_COLD: Final = (
    "from_uri",
    "to_uri",
    "req_uri",
    "caller_contact",
    "callee_contact",
    "caller_cseq",
    "callee_cseq",
    "caller_route_set",
    "callee_route_set",
    "caller_address",
    "callee_address",
)
_INDEX: Final = {name: i for i, name in enumerate(_COLD)}
_ROUTES: Final = frozenset({"caller_route_set", "callee_route_set"})
_ADDRESSES: Final = frozenset({"caller_address", "callee_address"})
_SEP: Final = "\x00"
_ACKED: Final = 1
_EXPIRED: Final = 2
_ROUTE_SEP: Final = "\x01"


_Value = str | tuple[str, ...]  # a route set is a tuple, every other field text


def _pack(values: list[_Value]) -> str | tuple[_Value, ...]:
    """One string for all the cold fields, or (when a value holds a
    separator, which only lenient parsing of odd input lets in) the values
    as they are: correctness first, compactness where it is safe."""
    parts = []
    safe = True
    for value in values:
        if isinstance(value, tuple):
            text = _ROUTE_SEP.join(value)
            if text.count(_ROUTE_SEP) != max(len(value) - 1, 0):
                safe = False
            parts.append(text)
        else:
            parts.append(value)
    joined = _SEP.join(parts)
    if safe and joined.count(_SEP) == len(parts) - 1:
        return joined
    return tuple(values)


def _unpack(cold: str | tuple[_Value, ...]) -> list[_Value]:
    if not isinstance(cold, str):
        return list(cold)
    out: list[_Value] = list(cold.split(_SEP))
    for name in _ROUTES:
        i = _INDEX[name]
        text = out[i]
        assert isinstance(text, str)
        out[i] = tuple(text.split(_ROUTE_SEP)) if text else ()
    return out


class DialogExtra:
    """What only some dialogs use: variables, context, profiles, callbacks,
    the end of the call. Created on first use."""

    __slots__ = (
        "ctx",
        "end_time",
        "ka_failures",
        "profiles",
        "spirals",
        "subscribers",
        "terminated_by",
        "vars",
    )

    def __init__(self) -> None:
        self.vars: dict[str, str] = {}
        self.ctx = DialogContext()
        self.profiles: list[ProfileLink] = []
        self.subscribers: dict[type, list[Any]] | None = None
        self.ka_failures: dict[Side, int] = {}
        self.end_time: float | None = None
        self.terminated_by: Direction | None = None
        self.spirals = 0


class Dialog:
    """A tracked dialog (Kamailio: ``dlg_cell``).

    Read its attributes freely; change it through the tracker (states,
    timers, profiles) or through the setters documented here (variables,
    flags). ``h_entry``/``h_id`` identify it as Kamailio's RPC and database
    do; :attr:`did` is the Record-Route cookie built from them.

    Laid out for a million at a time: the hot fields are slots, the rest is
    packed (see ``_COLD``) or in a :class:`DialogExtra` made on first use.
    """

    __slots__ = (
        "_bits",
        "_changed",
        "_cold",
        "_extra",
        "_ka_timer",
        "_timer",
        "_timer_kind",
        "call_id",
        "callee_socket",
        "caller_socket",
        "from_tag",
        "h_entry",
        "h_id",
        "iflags",
        "init_time",
        "sflags",
        "start_time",
        "state",
        "timeout",
        "to_tag",
    )

    h_entry: int
    h_id: int
    call_id: str
    from_tag: str
    to_tag: str | None
    state: DialogState
    init_time: float
    start_time: float | None  # when it was confirmed (the 2xx)
    timeout: int  # lifetime in seconds once confirmed
    sflags: int  # dlg_setflag
    iflags: Property
    caller_socket: Endpoint | None  # where this element received the caller
    callee_socket: Endpoint | None

    def __init__(
        self,
        h_entry: int,
        h_id: int,
        call_id: str,
        from_uri: str,
        from_tag: str,
        to_uri: str,
        req_uri: str,
        caller_cseq: str,
        caller_contact: str,
        init_time: float,
        state: DialogState = DialogState.UNCONFIRMED,
        to_tag: str | None = None,
        callee_cseq: str = "",
        callee_contact: str = "",
        caller_route_set: tuple[str, ...] = (),
        callee_route_set: tuple[str, ...] = (),
        caller_socket: Endpoint | None = None,
        callee_socket: Endpoint | None = None,
        caller_address: Endpoint | None = None,
        callee_address: Endpoint | None = None,
        start_time: float | None = None,
        timeout: int = 0,
        sflags: int = 0,
        iflags: Property = NO_PROPERTIES,
        *,
        deadline: float | None = None,
        vars: dict[str, str] | None = None,
        ctx: DialogContext | None = None,
        profiles: list[ProfileLink] | None = None,
        acked: bool = False,
    ) -> None:
        self.h_entry = h_entry
        self.h_id = h_id
        self.call_id = call_id
        self.from_tag = from_tag
        self.to_tag = to_tag
        self.state = state
        self.init_time = init_time
        self.start_time = start_time
        self.timeout = timeout
        self.sflags = sflags
        self.iflags = iflags
        self.caller_socket = caller_socket
        self.callee_socket = callee_socket
        self._extra: DialogExtra | None = None
        self._bits = 0  # _ACKED | _EXPIRED
        # Told of every change made through set_var/set_flag/reset_flag: the
        # tracker's store watcher, so realtime mode writes them at once.
        self._changed: Callable[[Dialog], object] | None = None
        self._timer: int | None = None
        self._ka_timer: int | None = None
        self._timer_kind = ""
        # A dialog rebuilt from a store comes with the second its timer is to
        # fire; the tracker that adopts it arms that timer (SecondTimers key).
        self._timer = None if deadline is None else math.ceil(deadline)
        if acked:
            self._bits |= _ACKED
        if vars or ctx is not None or profiles:
            extra = self._more()
            if vars:
                extra.vars.update(vars)
            if ctx is not None:
                extra.ctx = ctx
            if profiles:
                extra.profiles.extend(profiles)
        self._cold: str | tuple[_Value, ...] = _pack(
            [
                from_uri,
                to_uri,
                req_uri,
                caller_contact,
                callee_contact,
                caller_cseq,
                callee_cseq,
                tuple(caller_route_set),
                tuple(callee_route_set),
                str(caller_address) if caller_address is not None else "",
                str(callee_address) if callee_address is not None else "",
            ]
        )

    # -- the packed fields -------------------------------------------------------

    def _get(self, name: str) -> str:
        cold = self._cold
        value = cold.split(_SEP)[_INDEX[name]] if isinstance(cold, str) else cold[_INDEX[name]]
        assert isinstance(value, str)
        return value

    def _routes(self, name: str) -> tuple[str, ...]:
        cold = self._cold
        if isinstance(cold, str):
            text = cold.split(_SEP)[_INDEX[name]]
            return tuple(text.split(_ROUTE_SEP)) if text else ()
        value = cold[_INDEX[name]]
        assert isinstance(value, tuple)
        return value

    def update(self, **fields: object) -> None:
        """Set several packed fields at once (one re-packing)."""
        values = _unpack(self._cold)
        for name, value in fields.items():
            stored: _Value
            if name in _ROUTES:
                assert isinstance(value, tuple | list)
                stored = tuple(str(v) for v in value)
            elif name in _ADDRESSES:
                stored = "" if value is None else str(value)
            else:
                stored = str(value)
            values[_INDEX[name]] = stored
        self._cold = _pack(values)

    @property
    def from_uri(self) -> str:
        return self._get("from_uri")

    @property
    def to_uri(self) -> str:
        return self._get("to_uri")

    @property
    def req_uri(self) -> str:
        return self._get("req_uri")

    @property
    def caller_contact(self) -> str:
        return self._get("caller_contact")

    @caller_contact.setter
    def caller_contact(self, value: str) -> None:
        self.update(caller_contact=value)

    @property
    def callee_contact(self) -> str:
        return self._get("callee_contact")

    @callee_contact.setter
    def callee_contact(self, value: str) -> None:
        self.update(callee_contact=value)

    @property
    def caller_cseq(self) -> str:
        return self._get("caller_cseq")

    @caller_cseq.setter
    def caller_cseq(self, value: str) -> None:
        self.update(caller_cseq=value)

    @property
    def callee_cseq(self) -> str:
        return self._get("callee_cseq")

    @callee_cseq.setter
    def callee_cseq(self, value: str) -> None:
        self.update(callee_cseq=value)

    @property
    def caller_route_set(self) -> tuple[str, ...]:
        return self._routes("caller_route_set")

    @caller_route_set.setter
    def caller_route_set(self, value: tuple[str, ...]) -> None:
        self.update(caller_route_set=value)

    @property
    def callee_route_set(self) -> tuple[str, ...]:
        return self._routes("callee_route_set")

    @callee_route_set.setter
    def callee_route_set(self, value: tuple[str, ...]) -> None:
        self.update(callee_route_set=value)

    @property
    def caller_address(self) -> Endpoint | None:
        """Where the caller's requests came from."""
        text = self._get("caller_address")
        return Endpoint.parse(text) if text else None

    @caller_address.setter
    def caller_address(self, value: Endpoint | None) -> None:
        self.update(caller_address=value)

    @property
    def callee_address(self) -> Endpoint | None:
        """Where the callee's responses and requests came from."""
        text = self._get("callee_address")
        return Endpoint.parse(text) if text else None

    @callee_address.setter
    def callee_address(self, value: Endpoint | None) -> None:
        self.update(callee_address=value)

    # -- the extras ------------------------------------------------------------------

    def _more(self) -> DialogExtra:
        extra = self._extra
        if extra is None:
            extra = self._extra = DialogExtra()
        return extra

    @property
    def vars(self) -> dict[str, str]:
        """``$dlg_var(name)``: free text the script keeps with the dialog."""
        return self._more().vars

    @property
    def ctx(self) -> DialogContext:
        """``$dlg_ctx(...)``: what the script sets for what happens next."""
        return self._more().ctx

    @property
    def profiles(self) -> list[ProfileLink]:
        """The profiles this dialog is in (change them through the tracker)."""
        return self._more().profiles

    @property
    def subscribers(self) -> dict[type, list[Any]] | None:
        return self._extra.subscribers if self._extra is not None else None

    @subscribers.setter
    def subscribers(self, value: dict[type, list[Any]] | None) -> None:
        self._more().subscribers = value

    @property
    def ka_failures(self) -> dict[Side, int]:
        return self._more().ka_failures

    @property
    def end_time(self) -> float | None:
        return self._extra.end_time if self._extra is not None else None

    @end_time.setter
    def end_time(self, value: float | None) -> None:
        self._more().end_time = value

    @property
    def terminated_by(self) -> Direction | None:
        """Who sent the BYE (None: the tracker ended it, or it did not end so)."""
        return self._extra.terminated_by if self._extra is not None else None

    @terminated_by.setter
    def terminated_by(self, value: Direction | None) -> None:
        self._more().terminated_by = value

    @property
    def expired(self) -> bool:
        """True when its timer ran out (DLGCB_EXPIRED)."""
        return bool(self._bits & _EXPIRED)

    @expired.setter
    def expired(self, value: bool) -> None:
        self._bits = self._bits | _EXPIRED if value else self._bits & ~_EXPIRED

    @property
    def acked(self) -> bool:
        """True once the ACK for the 2xx was seen (state 4 reached)."""
        return bool(self._bits & _ACKED)

    @acked.setter
    def acked(self, value: bool) -> None:
        self._bits = self._bits | _ACKED if value else self._bits & ~_ACKED

    @property
    def spirals(self) -> int:
        """How many times the initial INVITE spiralled back through this proxy."""
        return self._extra.spirals if self._extra is not None else 0

    @spirals.setter
    def spirals(self, value: int) -> None:
        self._more().spirals = value

    # -- behaviour ---------------------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        """When the dialog's current timer fires (whole seconds), or None."""
        return None if self._timer is None else float(self._timer)

    @property
    def did(self) -> str:
        """The Record-Route cookie value: ``<h_entry>.<h_id>`` in reverse hex."""
        return f"{reverse_hex(self.h_entry)}.{reverse_hex(self.h_id)}"

    @property
    def is_confirmed(self) -> bool:
        return self.state in (DialogState.CONFIRMED_NA, DialogState.CONFIRMED)

    @property
    def is_ended(self) -> bool:
        return self.state is DialogState.DELETED

    def lifetime(self, now: float) -> float:
        """``$DLG_lifetime``: seconds since the dialog was confirmed (0 before)."""
        if self.start_time is None:
            return 0.0
        end = self.end_time
        return (now if end is None else end) - self.start_time

    def is_flag_set(self, flag: int) -> bool:
        """Kamailio: ``dlg_isflagset(flag)`` (flag index 0-31)."""
        return bool(self.sflags & (1 << _flag_index(flag)))

    def set_flag(self, flag: int) -> None:
        """Kamailio: ``dlg_setflag(flag)``."""
        self.sflags |= 1 << _flag_index(flag)
        self._touch()

    def reset_flag(self, flag: int) -> None:
        """Kamailio: ``dlg_resetflag(flag)``."""
        self.sflags &= ~(1 << _flag_index(flag))
        self._touch()

    def set_var(self, name: str, value: str | None) -> None:
        """Kamailio: ``$dlg_var(name) = value``; ``None`` deletes it (``$null``).

        Read variables from :attr:`vars`; set them here, so that a store in
        realtime mode writes them at once (a write to the dict is only
        stored with the dialog's next change)."""
        if value is None:
            if self.vars.pop(name, None) is None:
                return
        elif self.vars.get(name) == value:
            return
        else:
            self.vars[name] = value
        self._touch()

    def _touch(self) -> None:
        if self._changed is not None:
            self._changed(self)

    def direction_of(self, from_tag: str | None, to_tag: str | None) -> Direction | None:
        """Which way a request with these tags travels, or None when they do
        not belong to this dialog."""
        if from_tag == self.from_tag and (to_tag == self.to_tag or self.to_tag is None):
            return Direction.DOWNSTREAM
        if self.to_tag is not None and from_tag == self.to_tag and to_tag == self.from_tag:
            return Direction.UPSTREAM
        return None

    def __repr__(self) -> str:
        return (
            f"<Dialog {self.h_entry}:{self.h_id} {self.state.name} call_id={self.call_id!r}"
            f" from_tag={self.from_tag!r} to_tag={self.to_tag!r}>"
        )


def _flag_index(flag: int) -> int:
    if not 0 <= flag <= 31:
        from sipcore import LocalProtocolError

        raise LocalProtocolError(f"dialog flag {flag} out of range 0-31")
    return flag
