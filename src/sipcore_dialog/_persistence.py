"""Keeping a dialog store in step with a tracker: Kamailio's ``db_mode``.

This module owns :class:`StoreSync`, the hook layer between a
:class:`~sipcore_dialog.DialogTracker` and a
:class:`~sipcore_dialog.DialogStore`. It is told which dialogs changed (the
tracker's events, its setters, :meth:`Dialog.set_var` and the flag setters),
decides per ``db_mode`` what to write and when, and loads records back into
the tracker.

What it must not do: read a clock (``now`` comes from the tracker), match or
time dialogs (the tracker does), or let a failing store raise into message
handling (a failed write is logged, counted and retried).
"""

from __future__ import annotations

import logging
import typing
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Final

from sipcore import core_hash

from . import events
from ._config import DbMode
from ._dialog import Dialog
from ._store import (
    MAX_REPORTED,
    DialogRecord,
    DialogStore,
    LoadReport,
    RecordError,
    SkippedRecord,
    dialog_from_record,
    record_from_dialog,
)

if TYPE_CHECKING:
    from ._tracker import DialogTracker

__all__ = ["StoreSync"]

log = logging.getLogger("sipcore.dialog.store")

# After a failed write, try again this much later even if nothing else changes.
RETRY_AFTER: Final = 1.0

Key = tuple[int, int]


class StoreSync:
    """Writes a tracker's confirmed dialogs to a store per ``db_mode``.

    - realtime: every change is written when the tracker call that made it
      returns (one transaction per message, timer or API call);
    - delayed: changed dialogs are marked and written together, at most
      ``db_update_period`` seconds after the first change;
    - shutdown: nothing at run time; :meth:`flush` (``tracker.close()``)
      writes every confirmed dialog;
    - none: nothing is written (loads still work).

    As in Kamailio, a dialog is first stored when confirmed (states 1 and 2
    are never stored) and deleted when it ends (state 5).
    """

    def __init__(
        self, tracker: DialogTracker, store: DialogStore, wall_clock_offset: float
    ) -> None:
        self._tracker = tracker
        self.store = store
        self.wall_clock_offset = wall_clock_offset
        self.mode = tracker.config.db_mode
        self.write_errors = 0  # failed store writes (each retried)
        self._pending: dict[Dialog, None] = {}  # an ordered set
        # What the store holds: key -> hash of the record last written, so an
        # unchanged dialog costs no write.
        self._written: dict[Key, int] = {}
        self._depth = 0
        # One bound method for every dialog's change hook (not one per dialog).
        self._touch = self.touch
        self._next_flush: float | None = None
        for event_type in typing.get_args(events.DialogEvent):
            tracker.subscribe(event_type, self._on_event)

    # -- what changed ---------------------------------------------------------------

    def _on_event(self, event: events.DialogEvent) -> None:
        self.touch(event.dialog)

    def touch(self, dialog: Dialog) -> None:
        """``dialog`` changed (or may have)."""
        if dialog._changed is None:
            dialog._changed = self._touch  # so set_var/set_flag report here too
        if self.mode is DbMode.NONE or self.mode is DbMode.SHUTDOWN:
            return
        self._pending[dialog] = None
        if self.mode is DbMode.DELAYED:
            if self._next_flush is None:
                self._next_flush = self._tracker._now + self._tracker.config.db_update_period
        elif self._depth == 0:
            self._write_pending()

    def enter(self, dialog: Dialog | None) -> None:
        """A tracker call starts: changes wait until it returns."""
        self._depth += 1
        if dialog is not None:
            self.touch(dialog)

    def leave(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self.mode is DbMode.REALTIME and self._pending:
            self._write_pending()

    # -- writing -------------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        return self._next_flush

    def tick(self, now: float) -> None:
        if self._next_flush is not None and now >= self._next_flush:
            self._next_flush = None
            self._write_pending()

    def flush(self) -> None:
        """Write what is pending now; in shutdown mode, every dialog."""
        if self.mode is DbMode.SHUTDOWN:
            live = [d for d in self._tracker if d.is_confirmed]
            gone = [k for k in self._written if not _confirmed(self._tracker.by_id(*k))]
            self._write(live, gone)
        elif self._pending:
            self._write_pending()

    def close(self) -> None:
        """Flush and close the store; the tracker goes on in memory only."""
        try:
            self.flush()
        finally:
            self.mode = DbMode.NONE
            self._pending.clear()
            self._next_flush = None
            self.store.close()

    def _write_pending(self) -> None:
        dialogs = list(self._pending)
        self._pending.clear()
        if not self._write(dialogs):
            for dialog in dialogs:
                self._pending.setdefault(dialog, None)
            if self._next_flush is None:
                self._next_flush = self._tracker._now + RETRY_AFTER

    def _write(self, dialogs: Iterable[Dialog], gone: Iterable[Key] = ()) -> bool:
        saves: list[DialogRecord] = []
        deletes: list[Key] = list(gone)
        written: dict[Key, int | None] = dict.fromkeys(deletes)
        for dialog in dialogs:
            key = (dialog.h_entry, dialog.h_id)
            holder = self._tracker.by_id(*key)
            if holder is dialog and dialog.is_confirmed:
                record = record_from_dialog(dialog, self.wall_clock_offset)
                digest = hash(record)
                if self._written.get(key) != digest:
                    saves.append(record)
                    written[key] = digest
            elif key in self._written and key not in written and holder in (dialog, None):
                # Ended (state 5) or destroyed: Kamailio keeps no deleted dialogs.
                deletes.append(key)
                written[key] = None
        if not saves and not deletes:
            return True
        try:
            self.store.write(saves, deletes)
        except Exception:
            self.write_errors += 1
            log.exception(
                "dialog store write failed (%d saves, %d deletes)", len(saves), len(deletes)
            )
            return False
        for done, stored in written.items():
            if stored is None:
                self._written.pop(done, None)
            else:
                self._written[done] = stored
        return True

    # -- loading ---------------------------------------------------------------------------

    def load(
        self, batches: Iterable[Sequence[DialogRecord | SkippedRecord]], now: float
    ) -> LoadReport:
        """Put every record not in memory yet into the tracker."""
        loaded: list[Dialog] = []
        skipped: list[SkippedRecord] = []
        skipped_count = already = 0
        for batch in batches:
            for item in batch:
                problem: SkippedRecord | None
                if isinstance(item, SkippedRecord):
                    problem = item
                elif self._tracker.by_id(*item.key) is not None:
                    already += 1
                    continue
                else:
                    problem = self._adopt(item, now, loaded)
                if problem is not None:
                    skipped_count += 1
                    log.warning(
                        "dialog row %s (%s:%s) skipped: %s",
                        problem.row_id,
                        problem.h_entry,
                        problem.h_id,
                        problem.reason,
                    )
                    if len(skipped) < MAX_REPORTED:
                        skipped.append(problem)
        return LoadReport(tuple(loaded), tuple(skipped), skipped_count, already)

    def _adopt(
        self, record: DialogRecord, now: float, loaded: list[Dialog]
    ) -> SkippedRecord | None:
        try:
            size = self._tracker.config.hash_size
            expected = core_hash(record.call_id.encode("utf-8", "surrogateescape"), size=size)
            if record.h_entry != expected:
                raise RecordError(
                    f"hash_entry {record.h_entry} is not its Call-ID's ({expected} with"
                    f" hash_size {size}): written with another hash_size?"
                )
            dialog = dialog_from_record(record, self.wall_clock_offset)
        except Exception as exc:
            reason = exc.reason if isinstance(exc, RecordError) else f"{type(exc).__name__}: {exc}"
            return SkippedRecord(reason, record.id, record.h_entry, record.h_id, record.call_id)
        if not self._tracker._adopt(dialog, now):
            return None
        dialog._changed = self._touch
        self._written[record.key] = hash(record_from_dialog(dialog, self.wall_clock_offset))
        loaded.append(dialog)
        return None

    def forget_stored(self) -> None:
        """The store was cleared (shutdown mode, after loading)."""
        self._written.clear()


def _confirmed(dialog: Dialog | None) -> bool:
    return dialog is not None and dialog.is_confirmed
