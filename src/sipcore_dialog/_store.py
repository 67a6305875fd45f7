"""Dialog persistence values: the store interface, a row, and the conversions.

This module owns :class:`DialogStore` (what the tracker needs from a
database), :class:`DialogRecord` (one row of Kamailio's ``dialog`` table with
its ``dialog_vars`` rows), the ``xdata`` JSON that carries profile
memberships, the conversions between a :class:`~sipcore_dialog.Dialog` and a
record, and the one cattrs converter that (un)structures records to database
rows and ``xdata`` to JSON.

It does no I/O and reads no clock. Kamailio stores unix times (``start_time``;
``timeout`` is the absolute expiry) while the tracker's clock is monotonic,
so every conversion takes ``wall_clock_offset`` from the application:
unix time = ``now + wall_clock_offset``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Final, Protocol

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn
from cattrs.preconf.json import make_converter

from sipcore import Endpoint, ParseError, SipError
from sipcore._headers import parse_address, split_list

from ._config import DialogSchema
from ._dialog import Dialog, DialogContext, DialogState, Property
from ._profiles import ProfileLink

__all__ = [
    "DialogRecord",
    "DialogStore",
    "LoadReport",
    "ProfileEntry",
    "RecordError",
    "SkippedRecord",
    "XData",
    "dialog_from_record",
    "record_from_dialog",
]

log = logging.getLogger("sipcore.dialog.store")

# Record fields in Kamailio's column order, each with the DialogSchema
# attribute that names its column (Kamailio: the *_column module parameters).
COLUMNS: Final = (
    ("h_entry", "h_entry_column"),
    ("h_id", "h_id_column"),
    ("call_id", "call_id_column"),
    ("from_uri", "from_uri_column"),
    ("from_tag", "from_tag_column"),
    ("to_uri", "to_uri_column"),
    ("to_tag", "to_tag_column"),
    ("caller_cseq", "from_cseq_column"),
    ("callee_cseq", "to_cseq_column"),
    ("caller_route_set", "from_route_column"),
    ("callee_route_set", "to_route_column"),
    ("caller_contact", "from_contact_column"),
    ("callee_contact", "to_contact_column"),
    ("caller_sock", "from_sock_column"),
    ("callee_sock", "to_sock_column"),
    ("state", "state_column"),
    ("start_time", "start_time_column"),
    ("timeout", "timeout_column"),
    ("sflags", "sflags_column"),
    ("iflags", "iflags_column"),
    ("toroute_name", "toroute_name_column"),
    ("req_uri", "req_uri_column"),
    ("xdata", "xdata_column"),
)
# The columns Kamailio's schema lets be NULL; an empty value is written as
# NULL there (as Kamailio does) and a NULL reads as empty.
NULLABLE: Final = frozenset({"caller_route_set", "callee_route_set", "toroute_name", "xdata"})
# DLG_IFLAG_TIMEOUTBYE: send BYEs when the dialog times out ($dlg_ctx(timeout_bye)).
IFLAG_TIMEOUT_BYE: Final = 1
_PROPERTY_BITS: Final = int(Property.KA_SRC | Property.KA_DST | Property.TIMEOUT_NORESET)
_UINT32: Final = 0xFFFFFFFF
# A text column longer than this is not something either side wrote.
MAX_COLUMN_CHARS: Final = 65536


def column_names(schema: DialogSchema) -> dict[str, str]:
    """Record field -> column name, per ``schema``."""
    return {field: getattr(schema, attribute) for field, attribute in COLUMNS}


class RecordError(SipError):
    """A database row that cannot be a dialog (garbage state, a bad socket,
    a hash entry that does not match its Call-ID...)."""


@attrs.frozen
class DialogRecord:
    """One row of Kamailio's ``dialog`` table, every column, with the
    dialog's ``dialog_vars`` rows.

    Values are as Kamailio stores them: ``start_time`` and ``timeout`` are
    unix seconds (``timeout`` the absolute expiry), route sets the
    comma-joined Record-Route values, sockets ``proto:host:port`` text,
    ``xdata`` JSON with the profile memberships. An empty string stands for
    a NULL column. ``id`` is the table's autoincrement key when the record
    was read from a database (never written: the database assigns it).
    """

    h_entry: int
    h_id: int
    call_id: str
    from_uri: str
    from_tag: str
    to_uri: str
    to_tag: str
    caller_cseq: str
    callee_cseq: str
    caller_route_set: str
    callee_route_set: str
    caller_contact: str
    callee_contact: str
    caller_sock: str
    callee_sock: str
    state: int
    start_time: int
    timeout: int
    sflags: int
    iflags: int
    toroute_name: str
    req_uri: str
    xdata: str
    vars: tuple[tuple[str, str], ...] = ()
    id: int | None = attrs.field(default=None, eq=False)

    @property
    def key(self) -> tuple[int, int]:
        """``(h_entry, h_id)``: how Kamailio's RPC and database name a dialog."""
        return (self.h_entry, self.h_id)


@attrs.frozen
class SkippedRecord:
    """A row that was not loaded, and why (what Kamailio logs and skips)."""

    reason: str
    row_id: int | None = None
    h_entry: int | None = None
    h_id: int | None = None
    call_id: str | None = None


@attrs.frozen
class LoadReport:
    """What a load did: the dialogs it put in memory, the rows it skipped
    (the first :data:`MAX_REPORTED`; ``skipped_count`` counts all) and the
    records it left alone because a dialog with their id was in memory."""

    dialogs: tuple[Dialog, ...] = ()
    skipped: tuple[SkippedRecord, ...] = ()
    skipped_count: int = 0
    already_loaded: int = 0


MAX_REPORTED: Final = 100


class DialogStore(Protocol):
    """What the tracker needs from a database (Kamailio: the ``dialog`` and
    ``dialog_vars`` tables behind ``db_url``).

    A store does the I/O; the tracker decides what is written and when
    (``db_mode``). :class:`~sipcore_dialog.SQLiteDialogStore` is the
    embedded default.
    """

    def write(self, saves: Sequence[DialogRecord], deletes: Sequence[tuple[int, int]]) -> None:
        """In one transaction: insert or update each record (its row, and its
        variables in place of the stored ones), then delete each
        ``(h_entry, h_id)`` with its variables. On failure raise, having
        changed nothing."""
        ...

    def load_all(self, fetch_rows: int) -> Iterator[Sequence[DialogRecord | SkippedRecord]]:
        """Every stored dialog, in batches of at most ``fetch_rows`` (0: no
        limit, Kamailio's ``db_fetch_rows``); a row that cannot be read
        comes as a :class:`SkippedRecord`."""
        ...

    def load_call_id(self, call_id: str) -> Sequence[DialogRecord | SkippedRecord]:
        """The stored dialogs with this Call-ID (``dlg_db_load_callid``)."""
        ...

    def clear(self) -> None:
        """Delete every row of both tables (shutdown mode does, after loading)."""
        ...

    def close(self) -> None: ...


# -- xdata: the profile memberships, as Kamailio's dlg_profiles_to_json writes them -----------


@attrs.frozen
class ProfileEntry:
    """One membership in ``xdata``: ``{"name": ..., "value": ...}``, the value
    only for a profile with values. Kamailio's ``puid``/``expires``/``flags``
    keys are read past."""

    name: str
    value: str | None = None


@attrs.frozen
class SipcoreXData:
    """What sipcore keeps beside Kamailio's keys (Kamailio ignores it):
    ``lifetime``, the dialog's timeout in seconds, which a timer reset after
    a reload needs (Kamailio guesses it as ``timeout - start_time``)."""

    lifetime: int | None = None


@attrs.frozen
class XData:
    """The ``xdata`` column: ``{"profiles":[{"name":"caller","value":"alice"},
    {"name":"calls"}],"sipcore":{"lifetime":43200}}``."""

    profiles: tuple[ProfileEntry, ...] = ()
    sipcore: SipcoreXData | None = None


def _structure_str(value: object, _: object) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8")
    raise TypeError(f"expected text, not {type(value).__name__}")


def _structure_int(value: object, _: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TypeError(f"expected an integer, not {type(value).__name__}")


def _make_converter() -> cattrs.Converter:
    conv = make_converter()
    # Strict: a database or JSON value of the wrong type is a bad row, never
    # str(None) == "None" or int("12abc").
    conv.register_structure_hook(str, _structure_str)
    conv.register_structure_hook(int, _structure_int)
    for cls in (ProfileEntry, SipcoreXData, XData):
        conv.register_unstructure_hook(
            cls, make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True)
        )
    return conv


converter: Final = _make_converter()


def dump_xdata(xdata: XData) -> str:
    return json.dumps(
        converter.unstructure(xdata), separators=(",", ":"), ensure_ascii=False, sort_keys=False
    )


def load_xdata(text: str) -> XData:
    """Parse ``xdata``; RecordError when it is not the shape above."""
    if not text:
        return XData()
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        return converter.structure(data, XData)
    except Exception as exc:
        raise RecordError(f"xdata: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc))
    return str(exc) or type(exc).__name__


# -- rows --------------------------------------------------------------------------------------


def record_to_row(record: DialogRecord) -> dict[str, object]:
    """Record field -> the value its column gets (NULL for an empty nullable one)."""
    row: dict[str, object] = {}
    for field, _ in COLUMNS:
        value = getattr(record, field)
        row[field] = None if field in NULLABLE and value == "" else value
    return row


def record_from_row(
    row: Mapping[str, object],
    variables: Sequence[tuple[object, object]] = (),
    row_id: int | None = None,
) -> DialogRecord:
    """The record a row holds (keyed by record field); RecordError when a
    column has the wrong type or is NULL where Kamailio's schema says NOT NULL.
    A variable whose key or value is not text is dropped (Kamailio skips it)."""
    data: dict[str, object] = {}
    for field, _ in COLUMNS:
        value = row.get(field)
        if value is None and field in NULLABLE:
            value = ""
        if isinstance(value, str | bytes) and len(value) > MAX_COLUMN_CHARS:
            raise RecordError(f"{field}: longer than {MAX_COLUMN_CHARS} characters")
        data[field] = value
    pairs = []
    for key, value in variables:
        try:
            pairs.append((_structure_str(key, str), _structure_str(value, str)))
        except (TypeError, ValueError):
            log.warning(
                "dialog %s:%s: variable %r is not text, dropped",
                row.get("h_entry"),
                row.get("h_id"),
                key,
            )
    data["vars"] = pairs
    data["id"] = row_id
    try:
        return converter.structure(data, DialogRecord)
    except Exception as exc:
        raise RecordError(_describe(exc)) from None


# -- Dialog <-> record ---------------------------------------------------------------------------


def record_from_dialog(dialog: Dialog, wall_clock_offset: float) -> DialogRecord:
    """The row a dialog is stored as (Kamailio: ``update_dialog_dbinfo``):
    ``timeout`` is the unix time its current timer fires (0 when none)."""
    xdata = XData(
        tuple(ProfileEntry(link.profile, link.value) for link in dialog.profiles),
        SipcoreXData(dialog.timeout),
    )
    start = dialog.start_time if dialog.start_time is not None else dialog.init_time
    iflags = int(dialog.iflags) | (IFLAG_TIMEOUT_BYE if dialog.ctx.timeout_bye else 0)
    return DialogRecord(
        h_entry=dialog.h_entry,
        h_id=dialog.h_id,
        call_id=dialog.call_id,
        from_uri=dialog.from_uri,
        from_tag=dialog.from_tag,
        to_uri=dialog.to_uri,
        to_tag=dialog.to_tag or "",
        caller_cseq=dialog.caller_cseq,
        callee_cseq=dialog.callee_cseq,
        caller_route_set=",".join(dialog.caller_route_set),
        callee_route_set=",".join(dialog.callee_route_set),
        caller_contact=dialog.caller_contact,
        callee_contact=dialog.callee_contact,
        caller_sock="" if dialog.caller_socket is None else str(dialog.caller_socket),
        callee_sock="" if dialog.callee_socket is None else str(dialog.callee_socket),
        state=int(dialog.state),
        start_time=max(0, round(start + wall_clock_offset)),
        timeout=0
        if dialog.deadline is None
        else max(0, round(dialog.deadline + wall_clock_offset)),
        sflags=dialog.sflags,
        iflags=iflags,
        toroute_name=dialog.ctx.timeout_route or "",
        req_uri=dialog.req_uri,
        xdata=dump_xdata(xdata),
        vars=tuple(dialog.vars.items()),
    )


_RESTORED: Final = (DialogState.CONFIRMED_NA, DialogState.CONFIRMED)


def dialog_from_record(record: DialogRecord, wall_clock_offset: float) -> Dialog:
    """The dialog a record describes (Kamailio: ``load_dialog_info_from_db``),
    its ``start_time`` and ``deadline`` on the tracker's clock and its
    profile links unlinked (the tracker links the ones it defines).

    Only confirmed dialogs (states 3 and 4) are stored, so only they are
    restored. Raises :class:`RecordError` for a record that is not one.
    """
    try:
        state = DialogState(record.state)
    except ValueError:
        raise RecordError(f"state {record.state} is not a dialog state") from None
    if state not in _RESTORED:
        raise RecordError(f"state {state.value} ({state.name}): only confirmed dialogs are stored")
    for name in ("h_entry", "h_id", "sflags", "iflags"):
        value = getattr(record, name)
        if not 0 <= value <= _UINT32:
            raise RecordError(f"{name} {value} is not an unsigned 32-bit number")
    if not record.call_id or not record.from_tag:
        raise RecordError("a dialog needs a Call-ID and a From tag")
    xdata = load_xdata(record.xdata)
    lifetime = xdata.sipcore.lifetime if xdata.sipcore is not None else None
    if lifetime is None:
        lifetime = max(0, record.timeout - record.start_time)
    elif lifetime < 0:
        raise RecordError(f"xdata: lifetime {lifetime} is negative")
    start = record.start_time - wall_clock_offset
    return Dialog(
        h_entry=record.h_entry,
        h_id=record.h_id,
        call_id=record.call_id,
        from_uri=record.from_uri,
        from_tag=record.from_tag,
        to_uri=record.to_uri,
        req_uri=record.req_uri,
        caller_cseq=record.caller_cseq,
        caller_contact=record.caller_contact,
        init_time=start,
        state=state,
        to_tag=record.to_tag or None,
        callee_cseq=record.callee_cseq,
        callee_contact=record.callee_contact,
        caller_route_set=_route_set(record.caller_route_set, "caller_route_set"),
        callee_route_set=_route_set(record.callee_route_set, "callee_route_set"),
        caller_socket=_socket(record.caller_sock, "caller_sock"),
        callee_socket=_socket(record.callee_sock, "callee_sock"),
        start_time=start,
        timeout=lifetime,
        deadline=record.timeout - wall_clock_offset,
        sflags=record.sflags,
        iflags=Property(record.iflags & _PROPERTY_BITS),
        vars=dict(record.vars),
        ctx=DialogContext(
            timeout_route=record.toroute_name or None,
            timeout_bye=bool(record.iflags & IFLAG_TIMEOUT_BYE),
        ),
        profiles=[ProfileLink(entry.name, entry.value) for entry in xdata.profiles],
        acked=state is DialogState.CONFIRMED,
    )


def _route_set(text: str, column: str) -> tuple[str, ...]:
    if not text.strip():
        return ()
    try:
        parts = tuple(part.strip() for part in split_list(text))
        for part in parts:
            parse_address(part, [], "Route").uri  # noqa: B018 - parsing is the check
        return parts
    except ParseError as exc:
        raise RecordError(f"{column}: {exc.reason}") from None


def _socket(text: str, column: str) -> Endpoint | None:
    if not text:
        return None
    try:
        return Endpoint.parse(text)
    except SipError as exc:
        raise RecordError(f"{column}: {exc.reason}") from None
