"""The dialog module's RPC commands (``dlg.*``) as a Python API.

This module owns :class:`DialogManagement`: one method per Kamailio RPC
command, returning JSON-ready data shaped as Kamailio's ``dlg.list`` prints
it, so that tools written against ``kamcmd`` output keep working. It only
reads the tracker and calls its public methods; ``dump_file`` is the one
method that writes (to a path or stream the caller names).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, Final

from sipcore import SipError

from ._dialog import Dialog, DialogState, Side
from ._tracker import DialogTracker

__all__ = ["DialogManagement", "ManagementError"]

# One dialog description per item (the method named list() shadows the builtin
# inside the class body, hence the alias).
Rows = list[dict[str, Any]]
_Stamp = Callable[[float | None], int]

_MATCH_KEYS: Final = ("ruri", "furi", "turi", "callid", "start_ts")
_MATCH_OPS: Final = ("eq", "re", "sw", "gt", "lt")
_BRIEFING: Final[dict[str, tuple[str, Callable[[Dialog, _Stamp], object]]]] = {
    "f": ("from_uri", lambda d, ts: d.from_uri),
    "t": ("to_uri", lambda d, ts: d.to_uri),
    "c": ("call-id", lambda d, ts: d.call_id),
    "F": ("from_tag", lambda d, ts: d.from_tag),
    "T": ("to_tag", lambda d, ts: d.to_tag or ""),
    "I": ("init_ts", lambda d, ts: ts(d.init_time)),
    "S": ("start_ts", lambda d, ts: ts(d.start_time)),
    "E": ("end_ts", lambda d, ts: ts(d.end_time)),
    "s": ("state", lambda d, ts: int(d.state)),
}
# A regular expression from an operator is bounded like any other input.
_MAX_PATTERN: Final = 256


class ManagementError(SipError):
    """An RPC command that cannot be done; ``status_hint`` is the RPC fault
    code Kamailio answers with (404 not found, 400 bad parameters)."""


class DialogManagement:
    """Kamailio's ``dlg.*`` RPC commands over a :class:`DialogTracker`.

    ``to_unix`` turns the tracker's clock into Unix time for the
    ``*_ts`` fields (default: the tracker's clock is taken as Unix time).
    """

    def __init__(
        self,
        tracker: DialogTracker,
        *,
        to_unix: Callable[[float], float] | None = None,
        max_results: int = 100_000,
    ) -> None:
        self.tracker = tracker
        self._to_unix = to_unix or (lambda t: t)
        self.max_results = max_results

    # -- descriptions ---------------------------------------------------------

    def _ts(self, value: float | None) -> int:
        return 0 if value is None else int(self._to_unix(value))

    def describe(self, dialog: Dialog, *, context: bool = False) -> dict[str, Any]:
        """One dialog as ``dlg.list`` prints it."""
        out: dict[str, Any] = {
            "h_entry": dialog.h_entry,
            "h_id": dialog.h_id,
            "call-id": dialog.call_id,
            "from_uri": dialog.from_uri,
            "to_uri": dialog.to_uri,
            "state": int(dialog.state),
            "start_ts": self._ts(dialog.start_time),
            "init_ts": self._ts(dialog.init_time),
            "end_ts": self._ts(dialog.end_time),
            "timeout": self._ts(dialog.deadline) if dialog.deadline is not None else 0,
            "lifetime": dialog.timeout,
            "dflags": 0,
            "sflags": dialog.sflags,
            "iflags": int(dialog.iflags),
            "caller": {
                "tag": dialog.from_tag,
                "contact": dialog.caller_contact,
                "cseq": dialog.caller_cseq,
                "route_set": ",".join(dialog.caller_route_set),
                "socket": str(dialog.caller_socket) if dialog.caller_socket else "",
            },
            "callee": {
                "tag": dialog.to_tag or "",
                "contact": dialog.callee_contact,
                "cseq": dialog.callee_cseq,
                "route_set": ",".join(dialog.callee_route_set),
                "socket": str(dialog.callee_socket) if dialog.callee_socket else "",
            },
            "profiles": [{link.profile: link.value or ""} for link in dialog.profiles],
            "variables": [{k: v} for k, v in dialog.vars.items()],
        }
        if context:
            ctx = dialog.ctx
            out["context"] = {
                "timeout_route": ctx.timeout_route or "",
                "timeout_bye": int(ctx.timeout_bye),
                "flags": ctx.flags,
                "spirals": dialog.spirals,
            }
        return out

    def _find(self, call_id: str, from_tag: str, to_tag: str | None) -> Dialog:
        dialog = self.tracker.get(call_id, from_tag, to_tag)
        if dialog is None:
            raise ManagementError("Dialog not found", 404)
        return dialog

    # -- dlg.list, dlg.list_ctx, dlg.dlg_list, dlg.dlg_list_ctx --------------

    def list(self, *, context: bool = False) -> Rows:
        """``dlg.list`` (``dlg.list_ctx`` with ``context=True``)."""
        return [self.describe(d, context=context) for d in self._bounded(self.tracker)]

    def dlg_list(self, call_id: str, from_tag: str | None = None, *, context: bool = False) -> Rows:
        """``dlg.dlg_list callid [from_tag]`` (``dlg.dlg_list_ctx``): the
        dialogs with that Call-ID (and caller From tag)."""
        return [
            self.describe(d, context=context)
            for d in self.tracker
            if d.call_id == call_id and (from_tag is None or d.from_tag == from_tag)
        ]

    def list_match(
        self,
        key: str,
        op: str,
        value: str,
        limit: int | None = None,
        *,
        context: bool = False,
    ) -> Rows:
        """``dlg.list_match mkey mop mval [limit]`` (and ``_ctx``).

        ``key``: ruri, furi, turi, callid, start_ts; ``op``: eq, re, sw, gt,
        lt (gt and lt only with start_ts, whose value may be ``s:1641550904``
        or a number)."""
        if key not in _MATCH_KEYS:
            raise ManagementError(f"unknown match key {key!r}", 400)
        if op not in _MATCH_OPS:
            raise ManagementError(f"unknown match operator {op!r}", 400)
        if op in ("gt", "lt") and key != "start_ts":
            raise ManagementError("gt and lt compare start_ts only", 400)
        test = self._matcher(key, op, value)
        out = []
        for dialog in self.tracker:
            if test(dialog):
                out.append(self.describe(dialog, context=context))
                if limit is not None and len(out) >= limit:
                    break
        return out

    def _matcher(self, key: str, op: str, value: str) -> Callable[[Dialog], bool]:
        if key == "start_ts":
            text = value[2:] if value.startswith("s:") else value
            try:
                wanted = int(text)
            except ValueError:
                raise ManagementError(f"bad start_ts value {value!r}", 400) from None

            def number(d: Dialog) -> bool:
                ts = self._ts(d.start_time)
                if op == "gt":
                    return ts > wanted
                if op == "lt":
                    return ts < wanted
                return str(ts) == text if op != "re" else re.search(text, str(ts)) is not None

            return number
        field: Callable[[Dialog], str] = {
            "ruri": lambda d: d.req_uri,
            "furi": lambda d: d.from_uri,
            "turi": lambda d: d.to_uri,
            "callid": lambda d: d.call_id,
        }[key]
        if op == "eq":
            return lambda d: field(d) == value
        if op == "sw":
            return lambda d: field(d).startswith(value)
        if op == "re":
            if len(value) > _MAX_PATTERN:
                raise ManagementError("regular expression too long", 400)
            try:
                pattern = re.compile(value)
            except re.error as exc:
                raise ManagementError(f"bad regular expression: {exc}", 400) from None
            return lambda d: pattern.search(field(d)) is not None
        raise ManagementError("gt and lt compare start_ts only", 400)

    def _bounded(self, dialogs: Iterable[Dialog]) -> Iterable[Dialog]:
        for i, dialog in enumerate(dialogs):
            if i >= self.max_results:
                return
            yield dialog

    # -- dlg.dump_file ------------------------------------------------------------

    def dump_file(self, target: str | Path | IO[str]) -> int:
        """``dlg.dump_file path``: every dialog as a JSON array; how many."""
        dialogs = self.list(context=True)
        if isinstance(target, str | Path):
            with open(target, "w", encoding="utf-8") as handle:
                json.dump(dialogs, handle, indent=1)
        else:
            json.dump(dialogs, target, indent=1)
        return len(dialogs)

    # -- dlg.terminate_dlg, dlg.end_dlg, dlg.set_state -----------------------------

    def terminate_dlg(self, call_id: str, from_tag: str, to_tag: str, *, now: float) -> None:
        """``dlg.terminate_dlg callid from_tag to_tag``: BYE both ways; only
        for confirmed dialogs."""
        dialog = self._find(call_id, from_tag, to_tag)
        if dialog.state is not DialogState.CONFIRMED:
            raise ManagementError("Dialog is not confirmed", 404)
        self.tracker.bye(dialog, Side.ALL, now=now)

    def end_dlg(
        self,
        h_entry: int,
        h_id: int,
        *,
        now: float,
        extra_headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """``dlg.end_dlg h_entry h_id [extra_hdrs]``: BYE both ways (or, in
        setup, CANCEL and ``bye_early_code``)."""
        dialog = self.tracker.by_id(h_entry, h_id)
        if dialog is None:
            raise ManagementError("Dialog not found", 404)
        self.tracker.bye(dialog, Side.ALL, now=now, headers=extra_headers)

    def set_state(self, call_id: str, from_tag: str, to_tag: str, state: int) -> None:
        """``dlg.set_state callid from_tag to_tag state``: no BYE, no end events."""
        dialog = self._find(call_id, from_tag, to_tag)
        try:
            new = DialogState(state)
        except ValueError:
            raise ManagementError(f"bad dialog state {state!r}", 400) from None
        self.tracker.set_state(dialog, new)

    # -- profiles -------------------------------------------------------------------

    def profile_get_size(self, profile: str, value: str | None = None) -> int:
        """``dlg.profile_get_size profile [value]``."""
        if profile not in self.tracker.profiles:
            raise ManagementError(f"Profile not found: {profile}", 404)
        return self.tracker.profile_size(profile, value)

    def profile_list(self, profile: str, value: str | None = None) -> Rows:
        """``dlg.profile_list profile [value]``."""
        if profile not in self.tracker.profiles:
            raise ManagementError(f"Profile not found: {profile}", 404)
        return [self.describe(d) for d in self.tracker.profiles[profile].dialogs(value)]

    # -- dlg.bridge_dlg, dlg.stats_active, dlg.is_alive, dlg.briefing -------------

    def bridge_dlg(
        self,
        from_uri: str,
        to_uri: str,
        outbound_proxy: str | None = None,
        body: str | None = None,
        *,
        now: float,
    ) -> None:
        """``dlg.bridge_dlg from to [op] [body]``: a ``.`` for ``op`` or
        ``body`` means none; ``""`` or ``_`` for ``body`` sends no SDP."""
        from ._bridge import bridge

        op = None if outbound_proxy in (None, ".") else outbound_proxy
        sdp: bytes | None
        if body is None or body == ".":
            sdp = None
        elif body in ("", "_"):
            sdp = b""
        else:
            sdp = body.encode("utf-8")
        bridge(self.tracker, from_uri, to_uri, outbound_proxy=op, body=sdp, now=now)

    def stats_active(self, local_only: bool = False) -> dict[str, int]:
        """``dlg.stats_active [local_only]``."""
        if not local_only:
            return self.tracker.stats_active()
        counts = {"starting": 0, "connecting": 0, "answering": 0, "ongoing": 0}
        names = {1: "starting", 2: "connecting", 3: "answering", 4: "ongoing"}
        for dialog in self.tracker:
            name = names.get(int(dialog.state))
            if name is not None and dialog.caller_socket is not None:
                counts[name] += 1
        counts["all"] = sum(counts.values())
        return counts

    def is_alive(self, call_id: str, from_tag: str, to_tag: str) -> bool:
        """``dlg.is_alive callid from_tag to_tag``: raises unless confirmed."""
        dialog = self._find(call_id, from_tag, to_tag)
        if dialog.state is not DialogState.CONFIRMED:
            raise ManagementError("Dialog not in confirmed state", 404)
        return True

    def briefing(self, attrs: str = "ftcFT") -> Rows:
        """``dlg.briefing [attrs]``: h_entry and h_id always, then one field
        per letter: f t c F T I S E s."""
        unknown = set(attrs) - set(_BRIEFING)
        if unknown:
            raise ManagementError(f"unknown briefing attributes {''.join(sorted(unknown))}", 400)
        out = []
        for dialog in self._bounded(self.tracker):
            item: dict[str, Any] = {"h_entry": dialog.h_entry, "h_id": dialog.h_id}
            for letter in attrs:
                name, get = _BRIEFING[letter]
                item[name] = get(dialog, self._ts)
            out.append(item)
        return out
