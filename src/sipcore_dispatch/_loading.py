"""Reading destination lists: Kamailio's ``dispatcher.list`` text and the
``dispatcher`` SQL table.

This module owns parsing records into :class:`Destination` values and the
``ds_load_mode`` decision (skip or fail). It builds a complete new list or
raises; it never touches the live table (the dispatcher swaps it in).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable

from sipcore import ParseError, SipURI, parse_uri

from ._config import DispatcherConfig, LoadMode
from ._destination import Destination, DestinationState, ListError, parse_attrs

__all__ = ["parse_list", "read_sqlite"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def _int_field(text: str, what: str) -> int:
    s = text.strip()
    try:
        digits = s.lstrip("+-")
        if digits[:2].lower() == "0x":
            value = int(s, 16)
        elif digits.isascii() and digits.isdigit() and len(s) - len(digits) <= 1:
            value = int(s, 10)
        else:
            raise ValueError(s)
    except ValueError:
        raise ParseError(f"{what} is not a number: {text[:40]!r}") from None
    if not -(2**31) <= value < 2**32:
        raise ParseError(f"{what} out of range: {text[:40]!r}")
    return value


def make_destination(
    setid: int,
    uri: str,
    flags: int = 0,
    priority: int = 0,
    attrs_text: str = "",
    description: str = "",
    order: int = 0,
) -> Destination:
    """Validate one record (raises :class:`sipcore.ParseError`)."""
    if not 0 <= setid < 2**31:
        raise ParseError(f"set id out of range: {setid}")
    if not uri:
        raise ParseError("empty destination URI")
    parsed = parse_uri(uri)
    if not isinstance(parsed, SipURI):
        raise ParseError(f"destination must be a sip: or sips: URI, not {uri[:80]!r}")
    if flags < 0 or flags >= 2**32:
        raise ParseError(f"flags out of range: {flags}")
    state = DestinationState(flags & 63)
    return Destination(
        setid=setid,
        uri=uri,
        flags=state,
        priority=priority if -(2**31) <= priority < 2**31 else 0,
        attrs=parse_attrs(attrs_text),
        description=description,
        host=parsed.host,
        port=parsed.port,
        order=order,
    )


def _parse_line(line: str, order: int) -> Destination | None:
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    # As Kamailio's ds_load_list: a '#' ends the line after the set id, the
    # URI, the flags or the priority; the attrs run to the next whitespace
    # and anything after them is ignored.
    fields: list[str] = []
    for token in text.split(None, 5)[:5]:
        if len(fields) < 4 and "#" in token:
            head = token.split("#", 1)[0]
            if head:
                fields.append(head)
            break
        fields.append(token)
    if len(fields) < 2:
        raise ParseError("expected 'setid uri [flags [priority [attrs]]]'")
    setid = _int_field(fields[0], "set id")
    flags = _int_field(fields[2], "flags") if len(fields) > 2 else 0
    priority = _int_field(fields[3], "priority") if len(fields) > 3 else 0
    attrs_text = fields[4] if len(fields) > 4 else ""
    return make_destination(setid, fields[1], flags, priority, attrs_text, "", order)


def _collect(
    records: Iterable[tuple[int, Destination | ParseError | None]],
    source: str,
    config: DispatcherConfig,
) -> tuple[list[Destination], list[str]]:
    out: list[Destination] = []
    errors: list[str] = []
    for line_no, item in records:
        if isinstance(item, ParseError):
            message = f"{source}:{line_no}: {item.reason}"
            if config.ds_load_mode is LoadMode.FATAL:
                raise ListError(source, line_no, item.reason)
            if len(errors) < 1000:  # bounded report; the count is what matters
                errors.append(message)
            continue
        if item is None:
            continue
        if len(out) >= config.max_destinations:
            raise ListError(source, line_no, f"more than {config.max_destinations} destinations")
        out.append(item)
    return out, errors


def parse_list(
    text: str, source: str = "dispatcher.list", config: DispatcherConfig | None = None
) -> tuple[list[Destination], list[str]]:
    """Parse ``dispatcher.list`` text: ``setid uri [flags [priority [attrs]]]``
    per line, ``#`` comments, blank lines, decimal or ``0x`` hex numbers.

    Returns the destinations in file order and the problems skipped (with
    ``ds_load_mode=SKIP``); with ``FATAL`` the first problem raises
    :class:`ListError` naming ``source:line``.
    """
    config = config or DispatcherConfig()
    if len(text) > config.max_list_bytes:
        raise ListError(source, 0, f"list larger than {config.max_list_bytes} bytes")

    def records() -> Iterable[tuple[int, Destination | ParseError | None]]:
        for number, line in enumerate(text.splitlines(), 1):
            if len(line) > config.max_line_length:
                yield number, ParseError(f"line longer than {config.max_line_length} characters")
                continue
            try:
                yield number, _parse_line(line, number)
            except ParseError as exc:
                yield number, exc

    return _collect(records(), source, config)


def read_sqlite(
    connection: sqlite3.Connection,
    table: str = "dispatcher",
    config: DispatcherConfig | None = None,
) -> tuple[list[Destination], list[str]]:
    """Read Kamailio's ``dispatcher`` table (``id, setid, destination,
    flags, priority, attrs, description``) in ``id`` order; errors name
    ``table:id``."""
    config = config or DispatcherConfig()
    if not _IDENTIFIER.fullmatch(table):
        raise ListError(table, 0, "table name is not a plain identifier")
    try:
        cursor = connection.execute(
            f'SELECT id, setid, destination, flags, priority, attrs, description FROM "{table}" '
            "ORDER BY id LIMIT ?",
            (config.max_destinations + 1,),
        )
        rows = cursor.fetchall()
    except sqlite3.Error as exc:
        raise ListError(table, 0, f"cannot read the table: {exc}") from None

    def records() -> Iterable[tuple[int, Destination | ParseError | None]]:
        for order, row in enumerate(rows):
            row_id = row[0] if isinstance(row[0], int) else order
            try:
                setid, uri, flags, priority, attrs_text, description = row[1:]
                if not isinstance(setid, int) or not isinstance(uri, str):
                    raise ParseError("setid must be an integer and destination text")
                yield (
                    row_id,
                    make_destination(
                        setid,
                        uri.strip(),
                        flags if isinstance(flags, int) else 0,
                        priority if isinstance(priority, int) else 0,
                        attrs_text if isinstance(attrs_text, str) else "",
                        description if isinstance(description, str) else "",
                        order,
                    ),
                )
            except ParseError as exc:
                yield row_id, exc

    return _collect(records(), table, config)
