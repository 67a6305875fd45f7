"""Dialog persistence: records and rows, what each db_mode writes and when,
loading (at start, by Call-ID, extra), Kamailio's own tables and rows, and
rows that are not dialogs."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dialog_helpers import PROXY, UAC, UAS, Call, Rig
from sipcore import (
    Endpoint,
    LocalProtocolError,
    RequestContext,
    core_hash,
    make_request,
    new_branch,
)
from sipcore_dialog import (
    DbMode,
    Dialog,
    DialogConfig,
    DialogContext,
    DialogRecord,
    DialogSchema,
    DialogState,
    DialogTracker,
    ProfileLink,
    Property,
    SkippedRecord,
    SQLiteDialogStore,
    dialog_from_record,
    events,
    record_from_dialog,
)
from sipcore_dialog._dialog import reverse_hex

WALL = 1_700_000_000.0  # unix time at tracker time 0 in these tests
Key = tuple[int, int]


class RecordingStore:
    """A DialogStore in memory that keeps every write() call (one per transaction)."""

    def __init__(self) -> None:
        self.rows: dict[Key, DialogRecord] = {}
        self.writes: list[tuple[list[DialogRecord], list[Key]]] = []
        self.fail = False
        self.closed = False
        self.cleared = 0

    def write(self, saves: Sequence[DialogRecord], deletes: Sequence[Key]) -> None:
        if self.fail:
            raise sqlite3.OperationalError("disk I/O error")
        self.writes.append((list(saves), list(deletes)))
        for record in saves:
            self.rows[record.key] = record
        for key in deletes:
            self.rows.pop(key, None)

    def load_all(self, fetch_rows: int) -> Iterator[list[DialogRecord | SkippedRecord]]:
        rows: list[DialogRecord | SkippedRecord] = list(self.rows.values())
        step = fetch_rows or len(rows) or 1
        for i in range(0, len(rows), step):
            yield rows[i : i + step]

    def load_call_id(self, call_id: str) -> list[DialogRecord | SkippedRecord]:
        return [r for r in self.rows.values() if r.call_id == call_id]

    def clear(self) -> None:
        self.cleared += 1
        self.rows.clear()

    def close(self) -> None:
        self.closed = True

    def saved_states(self) -> list[list[int]]:
        return [[r.state for r in saves] for saves, _ in self.writes]


def config(mode: DbMode, **kwargs: object) -> DialogConfig:
    return DialogConfig(
        db_mode=mode,
        profiles_with_value=("caller",),
        profiles_no_value=("calls",),
        **kwargs,  # type: ignore[arg-type]
    )


def rig_with(store: RecordingStore | SQLiteDialogStore, mode: DbMode, **kwargs: object) -> Rig:
    return Rig(config(mode, **kwargs), store=store, wall_clock_offset=WALL)


def the_dialog(rig: Rig, call_id: str = "call-1", user: str = "alice") -> Dialog:
    dialog = rig.tracker.get(call_id, f"{user}-tag", "bob-tag")
    assert dialog is not None
    return dialog


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


# -- records and rows -------------------------------------------------------------------------


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


# -- what each db_mode writes, and when ---------------------------------------------------------


def test_realtime_stores_a_dialog_when_confirmed_and_updates_it_on_the_ack() -> None:
    store = RecordingStore()
    rig = rig_with(store, DbMode.REALTIME)
    call = Call(rig)
    call.start()
    call.reply(180)
    assert store.writes == []  # states 1 and 2 are never stored
    call.reply(200)
    assert store.saved_states() == [[3]]
    rig.advance(2)
    call.ack()
    assert store.saved_states() == [[3], [4]]
    (record,) = store.rows.values()
    assert record.timeout == round(WALL + 2 + 43200) and record.start_time == round(WALL)
    assert json.loads(record.xdata)["profiles"] == [
        {"name": "caller", "value": "alice"},
        {"name": "calls"},
    ]


def test_realtime_writes_each_change_once_and_deletes_the_dialog_when_it_ends() -> None:
    store = RecordingStore()
    rig = rig_with(store, DbMode.REALTIME)
    call = Call(rig)
    call.established()
    dialog = the_dialog(rig)
    tracker = rig.tracker
    n = len(store.writes)
    dialog.set_var("billing", "gold")
    assert len(store.writes) == n + 1 and store.rows[dialog.h_entry, dialog.h_id].vars == (
        ("billing", "gold"),
    )
    dialog.set_var("billing", "gold")  # no change, no write
    assert len(store.writes) == n + 1
    dialog.set_flag(4)
    tracker.set_profile(dialog, "caller", "boss")
    tracker.set_property(dialog, "timeout-noreset")
    tracker.set_timeout(dialog, 120, now=rig.now)
    assert len(store.writes) == n + 5
    record = store.rows[dialog.h_entry, dialog.h_id]
    assert record.sflags == 16 and record.iflags == Property.TIMEOUT_NORESET
    assert {"name": "caller", "value": "boss"} in json.loads(record.xdata)["profiles"]
    assert record.timeout == round(WALL + rig.now + 120)
    tracker.reset_property(dialog, "timeout-noreset")
    dialog.set_var("billing", None)  # $dlg_var(billing) = $null
    dialog.set_var("never-set", None)  # nothing to delete, nothing to write
    assert len(store.writes) == n + 7 and store.rows[dialog.h_entry, dialog.h_id].vars == ()
    rig.advance(5)
    rig.send(bytes(call.in_dialog("INFO")), UAC)  # resets the lifetime timer
    assert len(store.writes) == n + 8
    assert store.rows[dialog.h_entry, dialog.h_id].timeout == round(WALL + rig.now + 120)
    call.bye()
    assert store.writes[-1] == ([], [(dialog.h_entry, dialog.h_id)]) and store.rows == {}
    rig.advance(rig.config.deleted_linger + 1)
    assert len(tracker) == 0 and store.rows == {}


def test_realtime_never_stores_a_failed_call_nor_a_setup_change() -> None:
    store = RecordingStore()
    rig = rig_with(store, DbMode.REALTIME)
    call = Call(rig)
    call.start()
    dialog = next(iter(rig.tracker))
    dialog.set_var("tier", "gold")  # in setup: stored with the dialog once confirmed
    call.reply(486)
    rig.advance(10)
    assert store.writes == [] and len(rig.tracker) == 0


def test_the_script_sets_before_confirmation_are_in_the_first_stored_row() -> None:
    store = RecordingStore()

    def script(rig: Rig, ctx: RequestContext) -> None:
        Rig.default_script(rig, ctx)
        dialog = rig.tracker.manage(ctx)
        assert dialog is not None
        dialog.set_var("tier", "gold")
        dialog.set_flag(1)

    rig = Rig(config(DbMode.REALTIME), script, store=store, wall_clock_offset=WALL)
    Call(rig).established()
    first = store.writes[0][0][0]
    assert first.state == 3 and first.vars == (("tier", "gold"),) and first.sflags == 2


def test_delayed_mode_writes_changes_together_at_most_db_update_period_later() -> None:
    store = RecordingStore()
    rig = rig_with(store, DbMode.DELAYED, db_update_period=10)
    first, second = Call(rig, "call-1"), Call(rig, "call-2", user="bob2")
    first.established()
    rig.advance(3)
    second.established()
    assert store.writes == []
    assert rig.tracker.next_deadline() == 10.0  # the first change at 0, plus the period
    rig.advance(6.9)
    assert store.writes == []
    rig.advance(0.1)
    assert len(store.writes) == 1
    saves, deletes = store.writes[0]
    assert sorted(r.call_id for r in saves) == ["call-1", "call-2"] and deletes == []
    assert {r.state for r in saves} == {4}
    rig.advance(2)  # t = 12
    first.bye()
    the_dialog(rig, "call-2", "bob2").set_var("x", "1")
    rig.advance(9.9)
    assert len(store.writes) == 1
    rig.advance(0.1)  # t = 22: 10 s after the BYE
    assert len(store.writes) == 2
    saves, deletes = store.writes[1]
    assert [r.vars for r in saves] == [(("x", "1"),)]
    assert [r.call_id for r in store.rows.values()] == ["call-2"] and len(deletes) == 1
    rig.advance(100)
    assert len(store.writes) == 2 and rig.tracker.next_deadline() is not None  # lifetime timers


def test_delayed_mode_flushes_what_is_pending_on_close() -> None:
    store = RecordingStore()
    rig = rig_with(store, DbMode.DELAYED, db_update_period=60)
    Call(rig).established()
    assert store.writes == []
    rig.tracker.close()
    assert store.saved_states() == [[4]] and store.closed


def test_shutdown_mode_writes_nothing_at_run_time_then_every_confirmed_dialog_on_close() -> None:
    store = RecordingStore()
    rig = rig_with(store, DbMode.SHUTDOWN)
    Call(rig, "up-1").established()
    Call(rig, "up-2", user="carol").established()
    ended = Call(rig, "ended", user="dave")
    ended.established()
    ended.bye()
    Call(rig, "ringing", user="erin").start()
    rig.advance(100)
    assert store.writes == []
    rig.tracker.close()
    assert len(store.writes) == 1 and store.closed
    assert sorted(r.call_id for r in store.writes[0][0]) == ["up-1", "up-2"]


def test_shutdown_mode_empties_the_tables_after_loading_and_refills_them_on_close(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.sqlite"
    writer = rig_with(SQLiteDialogStore(path), DbMode.REALTIME)
    Call(writer).established()
    writer.tracker.close()
    rig = rig_with(SQLiteDialogStore(path), DbMode.SHUTDOWN)
    assert len(rig.tracker.load(0.0).dialogs) == 1
    assert rows(path, "SELECT count(*) FROM dialog") == [(0,)]
    rig.tracker.close()
    assert rows(path, "SELECT callid, state FROM dialog") == [("call-1", 4)]


def test_no_db_mode_writes_nothing_but_can_load(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    writer = rig_with(SQLiteDialogStore(path), DbMode.REALTIME)
    Call(writer).established()
    reader = rig_with(SQLiteDialogStore(path), DbMode.NONE)
    assert len(reader.tracker.load(0.0).dialogs) == 1
    Call(reader, "other", user="zed").established()
    reader.tracker.close()
    assert rows(path, "SELECT callid FROM dialog") == [("call-1",)]


def test_a_failing_store_never_breaks_call_handling_and_the_write_is_retried() -> None:
    store = RecordingStore()
    store.fail = True
    rig = rig_with(store, DbMode.REALTIME)
    call = Call(rig)
    call.established()
    assert the_dialog(rig).state is DialogState.CONFIRMED
    sync = rig.tracker._store_sync
    assert sync is not None and sync.write_errors == 2 and store.rows == {}
    store.fail = False
    assert rig.tracker.next_deadline() == pytest.approx(rig.now + 1.0)
    rig.advance(1.0)
    assert [r.state for r in store.rows.values()] == [4]


def test_loading_without_a_store_is_an_api_error() -> None:
    with pytest.raises(LocalProtocolError):
        DialogTracker().load(0.0)


# -- loading ------------------------------------------------------------------------------------


def test_load_restores_confirmed_dialogs_with_profiles_vars_timers_and_a_bye_matches_by_did(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.sqlite"
    old = rig_with(SQLiteDialogStore(path), DbMode.REALTIME)
    short, long_ = Call(old, "short"), Call(old, "long", user="bob2")
    short.established()
    long_.established()
    old.tracker.set_timeout(the_dialog(old, "short"), 100, now=old.now)
    the_dialog(old, "long", "bob2").set_var("billing", "gold")
    old.tracker.set_property(the_dialog(old, "long", "bob2"), "ka-dst")
    dids = {d.call_id: d.did for d in old.tracker}
    # A restart 30 s later (wall time), the new process's clock starting at 0.
    new = Rig(config(DbMode.REALTIME), store=SQLiteDialogStore(path), wall_clock_offset=WALL + 30)
    new.record(events.DialogTerminated, events.DialogExpired)
    report = new.tracker.load(0.0)
    assert (len(report.dialogs), report.skipped_count, report.already_loaded) == (2, 0, 0)
    assert {d.call_id: d.did for d in new.tracker} == dids
    assert new.tracker.stats.active == 2 and new.tracker.stats_active()["ongoing"] == 2
    assert new.tracker.profile_size("calls") == 2
    assert new.tracker.profile_size("caller", "alice") == 1
    assert new.tracker.profile_size("caller", "bob2") == 1
    long_dialog = the_dialog(new, "long", "bob2")
    assert long_dialog.vars == {"billing": "gold"} and long_dialog.iflags == Property.KA_DST
    assert long_dialog.timeout == 43200 and long_dialog.deadline == 43200 - 30
    short_dialog = the_dialog(new, "short")
    assert short_dialog.timeout == 100 and short_dialog.deadline == 70
    assert new.tracker.next_deadline() == 70
    # The caller hangs up with the route set (and did) of the call before the restart.
    long_.rig = new
    long_.bye()
    assert new.names() == ["DialogTerminated"] and long_dialog.is_ended
    assert rows(path, "SELECT callid FROM dialog") == [("short",)]
    # The short one's timer runs out when it would have without the restart.
    new.advance(69.5)
    assert not short_dialog.is_ended
    new.advance(0.5)
    assert new.names()[-1] == "DialogExpired" and short_dialog.is_ended
    assert rows(path, "SELECT count(*) FROM dialog") == [(0,)]
    # Fresh dialogs never take a loaded one's id.
    Call(new, "fresh", user="zoe").established()
    assert len({(d.h_entry, d.h_id) for d in new.tracker}) == len(new.tracker)


def test_a_dialog_whose_expiry_passed_while_down_times_out_at_once(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    old = rig_with(SQLiteDialogStore(path), DbMode.REALTIME)
    Call(old).established()
    old.tracker.set_timeout(the_dialog(old), 60, now=0.0)
    new = Rig(config(DbMode.REALTIME), store=SQLiteDialogStore(path), wall_clock_offset=WALL + 600)
    new.record(events.DialogExpired)
    (dialog,) = new.tracker.load(0.0).dialogs
    assert dialog.deadline == 0.0
    new.advance(0.0)
    assert new.names() == ["DialogExpired"] and dialog.is_ended


def test_db_skip_load_loads_nothing(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    Call(rig_with(SQLiteDialogStore(path), DbMode.REALTIME)).established()
    rig = rig_with(SQLiteDialogStore(path), DbMode.REALTIME, db_skip_load=True)
    assert rig.tracker.load(0.0).dialogs == () and len(rig.tracker) == 0
    assert len(rig.tracker.load_call_id("call-1", 0.0).dialogs) == 1


def test_loading_in_batches_of_db_fetch_rows_loads_every_dialog(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    writer = rig_with(SQLiteDialogStore(path), DbMode.REALTIME)
    for i in range(7):
        Call(writer, f"c{i}", user=f"u{i}").established()
    store = SQLiteDialogStore(path)
    assert [len(batch) for batch in store.load_all(3)] == [3, 3, 1]
    rig = rig_with(store, DbMode.REALTIME, db_fetch_rows=3)
    assert len(rig.tracker.load(0.0).dialogs) == 7 and rig.tracker.profile_size("calls") == 7


def test_load_call_id_loads_that_call_only_and_only_once(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    writer = rig_with(SQLiteDialogStore(path), DbMode.REALTIME)
    Call(writer, "call-1").established()
    Call(writer, "call-2", user="carol").established()
    rig = rig_with(SQLiteDialogStore(path), DbMode.REALTIME, db_skip_load=True)
    report = rig.tracker.load_call_id("call-2", 0.0)
    assert [d.call_id for d in report.dialogs] == ["call-2"] and len(rig.tracker) == 1
    again = rig.tracker.load_call_id("call-2", 0.0)
    assert (again.dialogs, again.already_loaded) == ((), 1)
    assert rig.tracker.load_call_id("nothing", 0.0).dialogs == ()
    assert rig.tracker.get("call-2", "carol-tag", "bob-tag") is report.dialogs[0]


def test_a_script_loads_an_unknown_dialog_by_call_id_and_follows_the_request(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.sqlite"
    old = rig_with(SQLiteDialogStore(path), DbMode.REALTIME)
    call = Call(old)
    call.established()

    def script(rig: Rig, ctx: RequestContext) -> None:
        # Kamailio: if(has_totag() && !is_known_dlg()) dlg_db_load_callid("$ci");
        if ctx.request.to.tag and "dialog" not in ctx.data:
            rig.tracker.load_call_id(ctx.request.call_id, ctx.now)
            rig.tracker.on_request(ctx.request, ctx.now, ctx.source)
        Rig.default_script(rig, ctx)

    new = Rig(
        config(DbMode.REALTIME, db_skip_load=True),
        script,
        store=SQLiteDialogStore(path),
        wall_clock_offset=WALL,
    )
    new.record(events.DialogTerminated)
    assert new.tracker.load(0.0).dialogs == ()
    call.rig = new
    call.bye()
    assert new.names() == ["DialogTerminated"]
    assert rows(path, "SELECT count(*) FROM dialog") == [(0,)]


def test_load_extra_brings_in_another_instances_dialogs_and_leaves_its_own(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite"
    a = rig_with(SQLiteDialogStore(path), DbMode.REALTIME, h_id_start=0, h_id_step=2)
    b = rig_with(SQLiteDialogStore(path), DbMode.REALTIME, h_id_start=1, h_id_step=2)
    a_calls = [Call(a, f"a{i}", user=f"a{i}") for i in range(3)]
    b_calls = [Call(b, f"b{i}", user=f"b{i}") for i in range(2)]
    for call in a_calls + b_calls:
        call.established()
    assert {d.h_id % 2 for d in a.tracker} == {0} and {d.h_id % 2 for d in b.tracker} == {1}
    report = a.tracker.load_extra(a.now)
    assert sorted(d.call_id for d in report.dialogs) == ["b0", "b1"]
    assert report.already_loaded == 3 and len(a.tracker) == 5
    assert a.tracker.profile_size("calls") == 5
    # B's caller hangs up through A (B failed over): A matches it by its did.
    b_calls[0].rig = a
    b_calls[0].bye()
    assert a.tracker.get("b0", "b0-tag", "bob-tag").is_ended  # type: ignore[union-attr]
    assert sorted(r[0] for r in rows(path, "SELECT callid FROM dialog")) == [  # type: ignore[type-var]
        "a0",
        "a1",
        "a2",
        "b1",
    ]


def test_a_profile_this_tracker_does_not_define_is_dropped_and_the_dialog_still_loads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "d.sqlite"
    Call(rig_with(SQLiteDialogStore(path), DbMode.REALTIME)).established()
    rig = Rig(
        DialogConfig(db_mode=DbMode.REALTIME, profiles_no_value=("calls",)),
        store=SQLiteDialogStore(path),
        wall_clock_offset=WALL,
    )
    (dialog,) = rig.tracker.load(0.0).dialogs
    assert (
        dialog.profiles == [ProfileLink("calls", None)] and rig.tracker.profile_size("calls") == 1
    )


# -- table and column names -----------------------------------------------------------------------


def test_configured_table_and_column_names_are_used_and_quoted(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE victim (x INTEGER)")
    db.commit()
    db.close()
    schema = DialogSchema(
        table_name='my "dialogs"',
        call_id_column="call id",
        h_entry_column="h_entry_c_name",
        state_column="state; DROP TABLE victim; --",
        xdata_column="extra",
        vars_table_name="my_dialog_vars",
        vars_key_column="vars_key_name",
        vars_h_id_column="vars_h_id_name",
    )
    rig = rig_with(SQLiteDialogStore(path, schema), DbMode.REALTIME)
    Call(rig).established()
    the_dialog(rig).set_var("billing", "gold")
    tables = {r[0] for r in rows(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"victim", 'my "dialogs"', "my_dialog_vars"}
    columns = [r[1] for r in rows(path, """PRAGMA table_info('my "dialogs"')""")]
    assert "call id" in columns and "state; DROP TABLE victim; --" in columns
    assert "callid" not in columns and "extra" in columns
    assert rows(path, 'SELECT "call id", "state; DROP TABLE victim; --" FROM "my ""dialogs"""') == [
        ("call-1", 4)
    ]
    assert rows(path, "SELECT vars_key_name, dialog_value FROM my_dialog_vars") == [
        ("billing", "gold")
    ]
    reader = rig_with(SQLiteDialogStore(path, schema), DbMode.REALTIME)
    (dialog,) = reader.tracker.load(0.0).dialogs
    assert dialog.vars == {"billing": "gold"}


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


# -- Kamailio's schema and rows -------------------------------------------------------------------

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

# The MySQL form (kamctl/mysql/dialog-create.sql) types hash_entry etc. as
# INT(10) UNSIGNED NOT NULL; db_sqlite's are the INTEGER columns above.
INSERT_AS_KAMAILIO = """
INSERT INTO dialog (hash_entry, hash_id, callid, from_uri, from_tag, to_uri, to_tag,
    caller_cseq, callee_cseq, caller_route_set, callee_route_set, caller_contact,
    callee_contact, caller_sock, callee_sock, state, start_time, timeout, sflags, iflags,
    toroute_name, req_uri, xdata)
VALUES (:h_entry, :h_id, :callid, 'sip:alice@example.com', :from_tag, 'sip:bob@example.com',
    'bob-tag', '1', '1', :caller_rr, NULL, 'sip:alice@127.0.0.1:5061', 'sip:bob@127.0.0.1:5062',
    :caller_sock, 'udp:127.0.0.1:5060', :state, :start, :timeout, 0, :iflags, NULL,
    'sip:bob@example.com', :xdata)
"""


def kamailio_row(call_id: str, h_id: int, **overrides: object) -> dict[str, object]:
    h_entry = core_hash(call_id.encode(), size=4096)
    row: dict[str, object] = {
        "h_entry": h_entry,
        "h_id": h_id,
        "callid": call_id,
        "from_tag": "alice-tag",
        "caller_rr": f"<sip:10.0.0.9;lr>,<sip:127.0.0.1:5060;lr;did={reverse_hex(h_entry)}."
        f"{reverse_hex(h_id)}>",
        "caller_sock": "udp:127.0.0.1:5060",
        "state": 4,
        "start": int(WALL) - 600,
        "timeout": int(WALL) + 3000,
        "iflags": 0,
        "xdata": '{"profiles":[{"name":"caller","value":"alice"},{"name":"calls"}]}',
    }
    row.update(overrides)
    return row


def kamailio_db(path: Path, *dialogs: dict[str, object]) -> None:
    db = sqlite3.connect(path)
    db.executescript(KAMAILIO_SQLITE_SCHEMA)
    db.executemany(INSERT_AS_KAMAILIO, dialogs)
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


def test_a_database_kamailio_wrote_loads_and_its_dialogs_match_their_bye(tmp_path: Path) -> None:
    path = tmp_path / "kamailio.sqlite"
    kamailio_db(
        path,
        kamailio_row("kam-1", 5001),
        kamailio_row("kam-2", 5002, state=3, iflags=1 | 8, from_tag="carol-tag", xdata=None),
    )
    db = sqlite3.connect(path)
    h_entry = core_hash(b"kam-1", size=4096)
    db.executemany(
        "INSERT INTO dialog_vars (hash_entry, hash_id, dialog_key, dialog_value) VALUES (?,?,?,?)",
        [(h_entry, 5001, "billing", "gold"), (h_entry, 5001, "account", "42")],
    )
    db.commit()
    db.close()
    rig = rig_with(SQLiteDialogStore(path), DbMode.REALTIME)
    rig.record(events.DialogTerminated)
    report = rig.tracker.load(0.0)
    assert report.skipped == () and len(report.dialogs) == 2
    kam1 = the_dialog(rig, "kam-1")
    assert (kam1.h_entry, kam1.h_id, kam1.state) == (h_entry, 5001, DialogState.CONFIRMED)
    assert kam1.vars == {"billing": "gold", "account": "42"}
    assert kam1.caller_route_set == (
        "<sip:10.0.0.9;lr>",
        f"<sip:127.0.0.1:5060;lr;did={kam1.did}>",
    )
    assert kam1.caller_socket == PROXY and kam1.callee_socket == PROXY
    assert kam1.start_time == -600 and kam1.deadline == 3000
    assert kam1.timeout == 3600  # Kamailio's guess: timeout - start_time
    assert (
        rig.tracker.profile_size("caller", "alice") == 1 and rig.tracker.profile_size("calls") == 1
    )
    kam2 = the_dialog(rig, "kam-2", "carol")
    assert kam2.state is DialogState.CONFIRMED_NA and kam2.profiles == []
    assert kam2.ctx.timeout_bye and kam2.iflags == Property.TIMEOUT_NORESET
    # The callee hangs up kam-1 along the route set Kamailio stored.
    bye = make_request(
        "BYE",
        "sip:alice@127.0.0.1:5061",
        from_="<sip:bob@example.com>;tag=bob-tag",
        to="<sip:alice@example.com>;tag=alice-tag",
        via=f"SIP/2.0/UDP {UAS.hostport};branch={new_branch()}",
        call_id="kam-1",
        cseq=2,
        route=[f"<sip:127.0.0.1:5060;lr;did={kam1.did}>"],
    )
    out = rig.send(bytes(bye), UAS)
    assert rig.names() == ["DialogTerminated"] and kam1.is_ended
    assert [s.destination for s in out if s.message.start_line.startswith("BYE")] == [UAC]
    assert rows(path, "SELECT callid FROM dialog") == [("kam-2",)]
    assert rows(path, "SELECT count(*) FROM dialog_vars") == [(0,)]


def test_a_row_this_store_writes_reads_as_kamailio_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    rig = rig_with(SQLiteDialogStore(path), DbMode.REALTIME)
    Call(rig).established()
    dialog = the_dialog(rig)
    dialog.set_var("billing", "gold")
    # The columns load_dialog_info_from_db reads, by Kamailio's names.
    (row,) = rows(
        path,
        "SELECT hash_entry, hash_id, callid, from_tag, to_tag, state, start_time, timeout,"
        " caller_sock, callee_sock, caller_route_set, toroute_name, xdata, iflags FROM dialog",
    )
    assert row[:8] == (
        core_hash(b"call-1", size=4096),
        dialog.h_id,
        "call-1",
        "alice-tag",
        "bob-tag",
        4,
        int(WALL),
        int(WALL) + 43200,
    )
    # Both sockets: the listen address facing each party (one here).
    assert row[8:12] == ("udp:127.0.0.1:5060", "udp:127.0.0.1:5060", None, None)
    profiles = json.loads(str(row[12]))["profiles"]  # what dlg_json_to_profiles reads
    assert profiles == [{"name": "caller", "value": "alice"}, {"name": "calls"}]
    assert rows(path, "SELECT hash_entry, hash_id, dialog_key, dialog_value FROM dialog_vars") == [
        (dialog.h_entry, dialog.h_id, "billing", "gold")
    ]


# -- rows that are not dialogs ---------------------------------------------------------------------

BAD_ROWS: dict[str, tuple[dict[str, object], str]] = {
    "state-text": ({"state": "garbage"}, "state"),
    "state-9": ({"state": 9}, "state 9 is not a dialog state"),
    "state-early": ({"state": 2}, "only confirmed dialogs"),
    "state-deleted": ({"state": 5}, "only confirmed dialogs"),
    "socket": ({"caller_sock": "udp:127.0.0.1:99999"}, "caller_sock"),
    "xdata": ({"xdata": "{not json"}, "xdata"),
    "xdata-shape": ({"xdata": '{"profiles":[{"value":"x"}]}'}, "xdata"),
    "timeout-text": ({"timeout": "soon"}, "timeout"),
    "route-set": ({"caller_rr": "<sip:unterminated;lr"}, "caller_route_set"),
    "callid-bytes": ({"callid": b"\xff\xfe"}, "call_id"),
    "hash-size": ({"h_entry": 4097}, "hash_size"),
}


def test_bad_rows_are_skipped_and_reported_and_the_good_ones_load(tmp_path: Path) -> None:
    path = tmp_path / "kamailio.sqlite"
    bad = [
        kamailio_row(f"bad-{name}", 100 + i, **change)
        for i, (name, (change, _)) in enumerate(BAD_ROWS.items())
    ]
    kamailio_db(path, kamailio_row("good-1", 1), *bad, kamailio_row("good-2", 2))
    db = sqlite3.connect(path)
    good_entry = core_hash(b"good-1", size=4096)
    db.execute(
        "INSERT INTO dialog_vars (hash_entry, hash_id, dialog_key, dialog_value) VALUES"
        " (?, 1, 'ok', 'yes'), (?, 1, 'blob', X'FFFE')",
        (good_entry, good_entry),
    )
    db.commit()
    db.close()
    rig = rig_with(SQLiteDialogStore(path), DbMode.REALTIME, db_fetch_rows=4)
    report = rig.tracker.load(0.0)
    assert sorted(d.call_id for d in report.dialogs) == ["good-1", "good-2"]
    assert report.skipped_count == len(BAD_ROWS) == len(report.skipped)
    by_row = {s.row_id: s for s in report.skipped}
    for i, (name, (_, why)) in enumerate(BAD_ROWS.items()):
        skipped = by_row[i + 2]  # row 1 is good-1
        assert why in skipped.reason, (name, skipped.reason)
        assert skipped.h_id == 100 + i
    assert the_dialog(rig, "good-1").vars == {"ok": "yes"}  # the non-text value is dropped
    assert len(rig.tracker) == 2 and rig.tracker.stats.active == 2
