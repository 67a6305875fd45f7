"""The embedded dialog store: Kamailio's ``dialog`` and ``dialog_vars`` tables
in an SQLite file (the standard library's ``sqlite3``).

This module owns :class:`SQLiteDialogStore`. The tables are Kamailio's
(``utils/kamctl/db_sqlite/dialog-create.sql``: same columns, types and
indexes, the names from :class:`~sipcore_dialog.DialogSchema`), so a file
Kamailio's ``db_sqlite`` wrote loads here and the other way round. Values
always go in as query parameters; the configured table and column names,
which cannot, are quoted as SQL identifiers.

It decides nothing about what to store or when (the tracker's ``db_mode``
does) and reads no clock.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

from sipcore import LocalProtocolError

from ._config import DialogSchema
from ._store import (
    COLUMNS,
    DialogRecord,
    RecordError,
    SkippedRecord,
    column_names,
    record_from_row,
    record_to_row,
)

__all__ = ["SQLiteDialogStore"]

# Kamailio 5.6's SQLite column types, by record field (the id column is
# ``id INTEGER PRIMARY KEY NOT NULL``, SQLite's autoincrementing rowid).
_TYPES: Final = {
    "h_entry": "INTEGER NOT NULL",
    "h_id": "INTEGER NOT NULL",
    "call_id": "VARCHAR(255) NOT NULL",
    "from_uri": "VARCHAR(255) NOT NULL",
    "from_tag": "VARCHAR(128) NOT NULL",
    "to_uri": "VARCHAR(255) NOT NULL",
    "to_tag": "VARCHAR(128) NOT NULL",
    "caller_cseq": "VARCHAR(20) NOT NULL",
    "callee_cseq": "VARCHAR(20) NOT NULL",
    "caller_route_set": "VARCHAR(512)",
    "callee_route_set": "VARCHAR(512)",
    "caller_contact": "VARCHAR(255) NOT NULL",
    "callee_contact": "VARCHAR(255) NOT NULL",
    "caller_sock": "VARCHAR(64) NOT NULL",
    "callee_sock": "VARCHAR(64) NOT NULL",
    "state": "INTEGER NOT NULL",
    "start_time": "INTEGER NOT NULL",
    "timeout": "INTEGER DEFAULT 0 NOT NULL",
    "sflags": "INTEGER DEFAULT 0 NOT NULL",
    "iflags": "INTEGER DEFAULT 0 NOT NULL",
    "toroute_name": "VARCHAR(32)",
    "req_uri": "VARCHAR(255) NOT NULL",
    "xdata": "VARCHAR(512)",
}
# Kamailio's table versions for its version table (dialog 7, dialog_vars 1).
_TABLE_VERSIONS: Final = (7, 1)
# dlg_db_load_callid: more dialogs than this with one Call-ID is not a call.
MAX_PER_CALL_ID: Final = 64
# Variables read per dialog at most (a table with more is not Kamailio's doing).
MAX_VARS: Final = 1024


def quote_identifier(name: str) -> str:
    """``name`` as an SQL identifier: in double quotes, quotes doubled."""
    if not name or "\x00" in name:
        raise LocalProtocolError(f"{name!r} cannot name a table or column")
    return '"' + name.replace('"', '""') + '"'


class SQLiteDialogStore:
    """Kamailio's dialog tables in an SQLite file (``":memory:"`` works too).

    The tables and their indexes are created when missing; with
    ``version_table`` the ``version`` table Kamailio checks at start is
    created too and given the two tables' rows. The journal is WAL;
    ``synchronous="NORMAL"`` (the default) survives a killed process,
    ``"FULL"`` a power cut too, at an fsync per transaction. Each
    :meth:`write` is one transaction. Not for use from several threads.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        schema: DialogSchema | None = None,
        *,
        synchronous: str = "NORMAL",
        version_table: bool = False,
        busy_timeout: float = 5.0,
    ) -> None:
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise LocalProtocolError(
                f"synchronous must be OFF, NORMAL, FULL or EXTRA, not {synchronous!r}"
            )
        self.schema = schema or DialogSchema()
        self._columns = column_names(self.schema)
        names = [*self._columns.values(), "id"]
        if len({n.lower() for n in names}) != len(names):
            raise LocalProtocolError(
                "the dialog table's column names must differ (and not be 'id')"
            )
        s = self.schema
        var_names = [
            s.vars_h_entry_column,
            s.vars_h_id_column,
            s.vars_key_column,
            s.vars_value_column,
            "id",
        ]
        if len({n.lower() for n in var_names}) != len(var_names):
            raise LocalProtocolError(
                "the dialog_vars table's column names must differ (and not be 'id')"
            )
        self._q = {field: quote_identifier(name) for field, name in self._columns.items()}
        self._table = quote_identifier(s.table_name)
        self._vars = quote_identifier(s.vars_table_name)
        self._v_entry = quote_identifier(s.vars_h_entry_column)
        self._v_id = quote_identifier(s.vars_h_id_column)
        self._v_key = quote_identifier(s.vars_key_column)
        self._v_value = quote_identifier(s.vars_value_column)
        # Autocommit: transactions are explicit, one per write().
        self._db = sqlite3.connect(os.fspath(path), isolation_level=None, timeout=busy_timeout)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
            self._create(version_table)
        except BaseException:
            self._db.close()
            raise
        self._prepare()

    # -- schema --------------------------------------------------------------------------------

    def _create(self, version_table: bool) -> None:
        s = self.schema
        columns = ",\n    ".join(f"{self._q[field]} {_TYPES[field]}" for field, _ in COLUMNS)
        idx = quote_identifier(f"{s.table_name}_hash_idx")
        vars_idx = quote_identifier(f"{s.vars_table_name}_hash_idx")
        statements = [
            f"CREATE TABLE IF NOT EXISTS {self._table} (\n"
            f"    id INTEGER PRIMARY KEY NOT NULL,\n    {columns}\n)",
            f"CREATE INDEX IF NOT EXISTS {idx} ON {self._table}"
            f" ({self._q['h_entry']}, {self._q['h_id']})",
            f"CREATE TABLE IF NOT EXISTS {self._vars} (\n"
            f"    id INTEGER PRIMARY KEY NOT NULL,\n"
            f"    {self._v_entry} INTEGER NOT NULL,\n"
            f"    {self._v_id} INTEGER NOT NULL,\n"
            f"    {self._v_key} VARCHAR(128) NOT NULL,\n"
            f"    {self._v_value} VARCHAR(512) NOT NULL\n)",
            f"CREATE INDEX IF NOT EXISTS {vars_idx} ON {self._vars}"
            f" ({self._v_entry}, {self._v_id})",
        ]
        if version_table:
            statements.append(
                "CREATE TABLE IF NOT EXISTS version (\n"
                "    id INTEGER PRIMARY KEY NOT NULL,\n"
                "    table_name VARCHAR(32) NOT NULL,\n"
                "    table_version INTEGER DEFAULT 0 NOT NULL,\n"
                "    CONSTRAINT version_table_name_idx UNIQUE (table_name)\n)"
            )
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements:
                self._db.execute(statement)
            self._check_columns(s.table_name, self._columns.values())
            self._check_columns(
                s.vars_table_name,
                (s.vars_h_entry_column, s.vars_h_id_column, s.vars_key_column, s.vars_value_column),
            )
            if version_table:
                rows = zip((s.table_name, s.vars_table_name), _TABLE_VERSIONS, strict=True)
                self._db.executemany(
                    "INSERT OR IGNORE INTO version (table_name, table_version) VALUES (?, ?)", rows
                )
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _check_columns(self, table: str, wanted: Iterable[str]) -> None:
        # A table that existed already may not have the configured columns.
        have = {row[1] for row in self._db.execute("SELECT * FROM pragma_table_info(?)", (table,))}
        missing = [name for name in wanted if name not in have]
        if missing:
            raise LocalProtocolError(
                f"table {table!r} has no column {', '.join(map(repr, missing))}"
            )

    def _prepare(self) -> None:
        q = self._q
        fields = [field for field, _ in COLUMNS]
        key = f"{q['h_entry']} = ? AND {q['h_id']} = ?"
        self._sql_update = (
            f"UPDATE {self._table} SET {', '.join(f'{q[f]} = ?' for f in fields)} WHERE {key}"
        )
        self._sql_insert = (
            f"INSERT INTO {self._table} ({', '.join(q[f] for f in fields)})"
            f" VALUES ({', '.join('?' for _ in fields)})"
        )
        self._sql_delete = f"DELETE FROM {self._table} WHERE {key}"
        self._sql_select = f"SELECT rowid, {', '.join(q[f] for f in fields)} FROM {self._table}"
        var_key = f"{self._v_entry} = ? AND {self._v_id} = ?"
        self._sql_vars_delete = f"DELETE FROM {self._vars} WHERE {var_key}"
        self._sql_vars_insert = (
            f"INSERT INTO {self._vars}"
            f" ({self._v_entry}, {self._v_id}, {self._v_key}, {self._v_value}) VALUES (?, ?, ?, ?)"
        )
        self._sql_vars_select = (
            f"SELECT {self._v_key}, {self._v_value} FROM {self._vars} WHERE {var_key}"
            " ORDER BY rowid LIMIT ?"
        )
        self._fields = fields

    # -- DialogStore -----------------------------------------------------------------------------

    def write(self, saves: Sequence[DialogRecord], deletes: Sequence[tuple[int, int]]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for record in saves:
                row = record_to_row(record)
                values = [row[f] for f in self._fields]
                key = (record.h_entry, record.h_id)
                if db.execute(self._sql_update, (*values, *key)).rowcount == 0:
                    db.execute(self._sql_insert, values)
                db.execute(self._sql_vars_delete, key)
                db.executemany(self._sql_vars_insert, [(*key, k, v) for k, v in record.vars])
            for key in deletes:
                db.execute(self._sql_delete, key)
                db.execute(self._sql_vars_delete, key)
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def load_all(self, fetch_rows: int) -> Iterator[list[DialogRecord | SkippedRecord]]:
        # Keyset pages: no read transaction stays open between batches.
        after = -1
        limit = fetch_rows if fetch_rows > 0 else -1
        while True:
            rows = self._db.execute(
                f"{self._sql_select} WHERE rowid > ? ORDER BY rowid LIMIT ?", (after, limit)
            ).fetchall()
            if not rows:
                return
            after = rows[-1][0]
            yield [self._record(row) for row in rows]
            if limit < 0:
                return

    def load_call_id(self, call_id: str) -> list[DialogRecord | SkippedRecord]:
        rows = self._db.execute(
            f"{self._sql_select} WHERE {self._q['call_id']} = ? ORDER BY rowid LIMIT ?",
            (call_id, MAX_PER_CALL_ID),
        ).fetchall()
        return [self._record(row) for row in rows]

    def clear(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(f"DELETE FROM {self._table}")
            db.execute(f"DELETE FROM {self._vars}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()

    def _record(self, row: tuple[object, ...]) -> DialogRecord | SkippedRecord:
        row_id = row[0] if isinstance(row[0], int) else None
        values = dict(zip(self._fields, row[1:], strict=True))
        h_entry, h_id = values["h_entry"], values["h_id"]
        try:
            variables: list[tuple[object, object]] = []
            if isinstance(h_entry, int) and isinstance(h_id, int):
                variables = self._db.execute(
                    self._sql_vars_select, (h_entry, h_id, MAX_VARS)
                ).fetchall()
            return record_from_row(values, variables, row_id)
        except (RecordError, sqlite3.Error) as exc:
            call_id = values["call_id"]
            return SkippedRecord(
                exc.reason if isinstance(exc, RecordError) else str(exc),
                row_id,
                h_entry if isinstance(h_entry, int) else None,
                h_id if isinstance(h_id, int) else None,
                call_id if isinstance(call_id, str) else None,
            )
