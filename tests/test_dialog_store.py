"""Dialog persistence: dialogs as rows of Kamailio's dialog table, and the
SQLite store with Kamailio's tables."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sipcore import Endpoint, LocalProtocolError
from sipcore_dialog import (
    Dialog,
    DialogContext,
    DialogRecord,
    DialogSchema,
    DialogState,
    ProfileLink,
    Property,
    SQLiteDialogStore,
    dialog_from_record,
    record_from_dialog,
)

WALL = 1_700_000_000.0  # unix time at tracker time 0 in these tests


def rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def a_dialog() -> Dialog:
    """A confirmed dialog with every stored field set to something non-default."""
    return Dialog(
        h_entry=1390,
        h_id=162,
        call_id="a84b4c76e66710@pc33.atlanta.com",
        from_uri="sip:alice@atlanta.com",
        from_tag="1928301774",
        to_uri="sip:bob@biloxi.com",
        req_uri="sip:bob@biloxi.com",
        caller_cseq="314159",
        caller_contact="sip:alice@pc33.atlanta.com",
        init_time=10.0,
        state=DialogState.CONFIRMED,
        to_tag="a6c85cf",
        callee_cseq="7",
        callee_contact="sip:bob@192.0.2.4",
        caller_route_set=("<sip:p1.atlanta.com;lr>", "<sip:127.0.0.1:5060;lr;did=e65.2a>"),
        callee_route_set=("<sip:p3.biloxi.com;lr;x=a,b>",),
        caller_socket=Endpoint("127.0.0.1", 5060),
        callee_socket=Endpoint("::1", 5061, "TCP"),
        start_time=12.0,
        timeout=3600,
        deadline=3612.0,
        sflags=0b1001,
        iflags=Property.KA_SRC | Property.TIMEOUT_NORESET,
        vars={"billing": "gold", "unicode": "ünï"},
        ctx=DialogContext(timeout_route="TIMEOUT", timeout_bye=True),
        profiles=[
            ProfileLink("caller", "alice"),
            ProfileLink("calls", None),
            ProfileLink("caller", "alice"),
        ],
        acked=True,
    )


STORED_FIELDS = (
    *("h_entry", "h_id", "call_id", "from_uri", "from_tag", "to_uri", "req_uri", "caller_cseq"),
    *("caller_contact", "state", "to_tag", "callee_cseq", "callee_contact", "caller_route_set"),
    *("callee_route_set", "caller_socket", "callee_socket", "start_time", "timeout", "deadline"),
    *("sflags", "iflags", "vars", "profiles", "acked"),
)


def test_a_dialog_survives_the_round_trip_to_a_record_and_back() -> None:
    dialog = a_dialog()
    back = dialog_from_record(record_from_dialog(dialog, WALL), WALL)
    for name in STORED_FIELDS:
        assert getattr(back, name) == getattr(dialog, name), name
    assert back.ctx.timeout_route == "TIMEOUT" and back.ctx.timeout_bye
    # The tracker's clock may restart: the same unix times read on another offset.
    later = dialog_from_record(record_from_dialog(dialog, WALL), WALL + 1000)
    assert later.deadline == dialog.deadline - 1000  # type: ignore[operator]
    assert later.start_time == dialog.start_time - 1000  # type: ignore[operator]


def test_the_record_holds_the_values_kamailio_stores() -> None:
    record = record_from_dialog(a_dialog(), WALL)
    assert (record.state, record.start_time, record.timeout) == (4, WALL + 12, WALL + 3612)
    assert record.caller_route_set == "<sip:p1.atlanta.com;lr>,<sip:127.0.0.1:5060;lr;did=e65.2a>"
    assert (record.caller_sock, record.callee_sock) == ("udp:127.0.0.1:5060", "tcp:[::1]:5061")
    # DLG_IFLAG_TIMEOUTBYE 1 | KA_SRC 2 | TIMER_NORESET 8
    assert (record.sflags, record.iflags) == (9, 11)
    assert record.toroute_name == "TIMEOUT"
    assert json.loads(record.xdata) == {
        "profiles": [
            {"name": "caller", "value": "alice"},
            {"name": "calls"},
            {"name": "caller", "value": "alice"},
        ],
        "sipcore": {"lifetime": 3600},
    }
    assert record.vars == (("billing", "gold"), ("unicode", "ünï"))


def test_the_sqlite_store_writes_the_record_and_reads_it_back(tmp_path: Path) -> None:
    record = record_from_dialog(a_dialog(), WALL)
    store = SQLiteDialogStore(tmp_path / "d.sqlite")
    store.write([record], [])
    (batch,) = list(store.load_all(200))
    assert batch == [record] and isinstance(batch[0], DialogRecord) and batch[0].id == 1
    store.write([attrs_evolve(record, state=3, vars=(("billing", "silver"),))], [])
    (again,) = store.load_all(200)
    assert [(r.state, r.vars) for r in again] == [(3, (("billing", "silver"),))]  # type: ignore[union-attr]
    assert rows(tmp_path / "d.sqlite", "SELECT count(*) FROM dialog") == [(1,)]
    store.write([], [record.key])
    assert list(store.load_all(200)) == []
    assert rows(tmp_path / "d.sqlite", "SELECT count(*) FROM dialog_vars") == [(0,)]
    store.close()


def attrs_evolve(record: DialogRecord, **changes: object) -> DialogRecord:
    return attrs.evolve(record, **changes)  # type: ignore[arg-type]


_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    texts=st.lists(_text, min_size=10, max_size=10),
    numbers=st.lists(st.integers(0, 2**32 - 1), min_size=6, max_size=6),
    variables=st.dictionaries(_text, _text, max_size=4),
)
def test_any_text_and_number_survive_the_sqlite_round_trip(
    tmp_path: Path, texts: list[str], numbers: list[int], variables: dict[str, str]
) -> None:
    record = DialogRecord(
        h_entry=numbers[0],
        h_id=numbers[1],
        call_id=texts[0],
        from_uri=texts[1],
        from_tag=texts[2],
        to_uri=texts[3],
        to_tag=texts[4],
        caller_cseq=texts[5],
        callee_cseq=texts[6],
        caller_route_set=texts[7],
        callee_route_set=texts[8],
        caller_contact="c",
        callee_contact="d",
        caller_sock="",
        callee_sock="udp:10.0.0.1:5060",
        state=4,
        start_time=numbers[2],
        timeout=numbers[3],
        sflags=numbers[4],
        iflags=numbers[5],
        toroute_name=texts[9],
        req_uri="sip:x",
        xdata="",
        vars=tuple(variables.items()),
    )
    path = tmp_path / "h.sqlite"
    path.unlink(missing_ok=True)
    store = SQLiteDialogStore(path, synchronous="OFF")
    try:
        store.write([record], [])
        assert [list(b) for b in store.load_all(0)] == [[record]]
    finally:
        store.close()


def test_a_configured_column_an_existing_table_lacks_is_refused(tmp_path: Path) -> None:
    kamailio_db(tmp_path / "kamailio.sqlite")
    with pytest.raises(LocalProtocolError, match="callid_c_name"):
        SQLiteDialogStore(
            tmp_path / "kamailio.sqlite", DialogSchema(call_id_column="callid_c_name")
        )


def test_column_names_that_clash_are_refused() -> None:
    with pytest.raises(LocalProtocolError):
        SQLiteDialogStore(":memory:", DialogSchema(call_id_column="from_uri"))
    with pytest.raises(LocalProtocolError):
        SQLiteDialogStore(":memory:", DialogSchema(vars_key_column="id"))
    with pytest.raises(LocalProtocolError):
        SQLiteDialogStore(":memory:", DialogSchema(table_name=""))


# utils/kamctl/db_sqlite/standard-create.sql and dialog-create.sql, Kamailio 5.6.
KAMAILIO_SQLITE_SCHEMA = """
CREATE TABLE version (
    id INTEGER PRIMARY KEY NOT NULL,
    table_name VARCHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL,
    CONSTRAINT version_table_name_idx UNIQUE (table_name)
);

INSERT INTO version (table_name, table_version) values ('version','1');

CREATE TABLE dialog (
    id INTEGER PRIMARY KEY NOT NULL,
    hash_entry INTEGER NOT NULL,
    hash_id INTEGER NOT NULL,
    callid VARCHAR(255) NOT NULL,
    from_uri VARCHAR(255) NOT NULL,
    from_tag VARCHAR(128) NOT NULL,
    to_uri VARCHAR(255) NOT NULL,
    to_tag VARCHAR(128) NOT NULL,
    caller_cseq VARCHAR(20) NOT NULL,
    callee_cseq VARCHAR(20) NOT NULL,
    caller_route_set VARCHAR(512),
    callee_route_set VARCHAR(512),
    caller_contact VARCHAR(255) NOT NULL,
    callee_contact VARCHAR(255) NOT NULL,
    caller_sock VARCHAR(64) NOT NULL,
    callee_sock VARCHAR(64) NOT NULL,
    state INTEGER NOT NULL,
    start_time INTEGER NOT NULL,
    timeout INTEGER DEFAULT 0 NOT NULL,
    sflags INTEGER DEFAULT 0 NOT NULL,
    iflags INTEGER DEFAULT 0 NOT NULL,
    toroute_name VARCHAR(32),
    req_uri VARCHAR(255) NOT NULL,
    xdata VARCHAR(512)
);

CREATE INDEX dialog_hash_idx ON dialog (hash_entry, hash_id);

INSERT INTO version (table_name, table_version) values ('dialog','7');

CREATE TABLE dialog_vars (
    id INTEGER PRIMARY KEY NOT NULL,
    hash_entry INTEGER NOT NULL,
    hash_id INTEGER NOT NULL,
    dialog_key VARCHAR(128) NOT NULL,
    dialog_value VARCHAR(512) NOT NULL
);

CREATE INDEX dialog_vars_hash_idx ON dialog_vars (hash_entry, hash_id);

INSERT INTO version (table_name, table_version) values ('dialog_vars','1');
"""


def kamailio_db(path: Path) -> None:
    db = sqlite3.connect(path)
    db.executescript(KAMAILIO_SQLITE_SCHEMA)
    db.commit()
    db.close()


def test_the_tables_the_store_creates_are_kamailios(tmp_path: Path) -> None:
    kamailio_db(tmp_path / "kamailio.sqlite")
    SQLiteDialogStore(tmp_path / "ours.sqlite", version_table=True).close()
    for table in ("dialog", "dialog_vars", "version"):
        sql = f"PRAGMA table_info({table})"
        assert rows(tmp_path / "ours.sqlite", sql) == rows(tmp_path / "kamailio.sqlite", sql)
    for index in ("dialog_hash_idx", "dialog_vars_hash_idx"):
        sql = f"PRAGMA index_info({index})"
        assert rows(tmp_path / "ours.sqlite", sql) == rows(tmp_path / "kamailio.sqlite", sql) != []
    assert rows(tmp_path / "ours.sqlite", "SELECT table_name, table_version FROM version") == [
        ("dialog", 7),
        ("dialog_vars", 1),
    ]
