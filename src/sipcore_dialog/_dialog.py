"""One dialog: its identity, state, both legs, timers, flags and variables.

This module owns :class:`Dialog` (Kamailio's ``dlg_cell``), the state enum
with Kamailio's numbers, the direction of a request within a dialog, the
properties (``ka-src``, ``ka-dst``, ``timeout-noreset``) and the dialog
context (``$dlg_ctx``). It does not match, time or persist dialogs: that is
the tracker's job.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from sipcore import Endpoint, TimerHandle

if TYPE_CHECKING:
    from ._profiles import ProfileLink

__all__ = ["Dialog", "DialogContext", "DialogState", "Direction", "Property", "Side"]


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


@attrs.define(slots=True)
class DialogContext:
    """``$dlg_ctx(...)``: what the script sets for what happens next."""

    timeout_route: str | None = None  # $dlg_ctx(timeout_route)
    timeout_bye: bool = False  # $dlg_ctx(timeout_bye)
    flags: int = 0  # $dlg_ctx(flags)
    on: bool = True  # $dlg_ctx(on)
    set: bool = False  # $dlg_ctx(set): a dialog is bound to the request
    dir: int = 0  # $dlg_ctx(dir): 1 downstream, 2 upstream


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


@attrs.define(slots=True, eq=False, repr=False)
class Dialog:
    """A tracked dialog (Kamailio: ``dlg_cell``).

    Read its attributes freely; change it through the tracker (states,
    timers, profiles) or through the setters documented here (variables,
    flags). ``h_entry``/``h_id`` identify it as Kamailio's RPC and database
    do; :attr:`did` is the Record-Route cookie built from them.
    """

    h_entry: int
    h_id: int
    call_id: str
    from_uri: str
    from_tag: str
    to_uri: str
    req_uri: str
    caller_cseq: str
    caller_contact: str
    init_time: float
    state: DialogState = DialogState.UNCONFIRMED
    to_tag: str | None = None
    callee_cseq: str = ""
    callee_contact: str = ""
    caller_route_set: tuple[str, ...] = ()
    callee_route_set: tuple[str, ...] = ()
    caller_socket: Endpoint | None = None  # where this element received the caller
    callee_socket: Endpoint | None = None
    caller_address: Endpoint | None = None  # where the caller's requests came from
    callee_address: Endpoint | None = None
    start_time: float | None = None  # when it was confirmed (the 2xx)
    end_time: float | None = None
    timeout: int = 0  # lifetime in seconds once confirmed
    deadline: float | None = None  # when the current timer fires
    sflags: int = 0  # dlg_setflag
    iflags: Property = attrs.field(factory=lambda: Property(0))
    vars: dict[str, str] = attrs.Factory(dict)
    ctx: DialogContext = attrs.Factory(DialogContext)
    profiles: list[ProfileLink] = attrs.Factory(list)
    acked: bool = False
    terminated_by: Direction | None = None
    expired: bool = False
    spirals: int = 0
    ka_failures: dict[Side, int] = attrs.Factory(dict)
    subscribers: dict[type, list[Any]] | None = None  # per-dialog callbacks
    _timer: TimerHandle | None = None
    _ka_timer: TimerHandle | None = None
    _timer_kind: str = ""
    # Told of every change made through set_var/set_flag/reset_flag: the
    # tracker's store watcher, so realtime mode writes variables and flags.
    _changed: Callable[[Dialog], object] | None = None

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
        return (self.end_time or now) - self.start_time

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
