"""Crash safety: a process tracking dialogs in realtime mode is killed with
SIGKILL in the middle of traffic; a tracker loading the same SQLite file
gets back every dialog the process had reported confirmed and not ended,
with its did, profiles and variables."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dialog_crash_child import CONFIG
from sipcore_dialog import DialogState, DialogTracker, SQLiteDialogStore

CHILD = Path(__file__).resolve().parent / "dialog_crash_child.py"
CONFIRMED_BEFORE_KILL = 200  # reports to wait for before the kill
TIMEOUT = 60.0  # seconds, for the whole exchange with the child


def read_lines(
    proc: subprocess.Popen[bytes], until: float, enough: int, buffer: bytes = b""
) -> tuple[list[str], bytes]:
    """Lines from the child's stdout (after ``buffer``, the unfinished tail
    of an earlier read) until ``enough`` are confirmations, the child's end
    or ``until`` (a time.monotonic() value); and the new unfinished tail."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    lines: list[str] = []
    confirmed = 0
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while confirmed < enough and (left := until - time.monotonic()) > 0:
            if not selector.select(timeout=left):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break  # the child exited
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                text = line.decode()
                lines.append(text)
                confirmed += '"confirmed"' in text
    return lines, buffer


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_every_dialog_confirmed_before_a_sigkill_is_back_after_the_restart(tmp_path: Path) -> None:
    path = tmp_path / "dialogs.sqlite"
    with (tmp_path / "child.stderr").open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), str(path), str(TIMEOUT)],
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
    try:
        until = time.monotonic() + TIMEOUT
        lines, tail = read_lines(proc, until, CONFIRMED_BEFORE_KILL)
        assert proc.poll() is None, (tmp_path / "child.stderr").read_text()
        os.kill(proc.pid, signal.SIGKILL)  # in the middle of traffic: it never pauses
        proc.wait(timeout=10)
        # What it wrote before it died is reported too: drain the pipe to EOF.
        more, _cut_off = read_lines(proc, time.monotonic() + 10, 10**9, tail)
        assert proc.returncode == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
    facts: list[dict[str, Any]] = [json.loads(line) for line in lines + more]
    confirmed = {f["call_id"]: f for f in facts if f["event"] == "confirmed"}
    ending = {f["call_id"] for f in facts if f["event"] == "ending"}
    ended = {f["call_id"] for f in facts if f["event"] == "ended"}
    expected = {call_id: f for call_id, f in confirmed.items() if call_id not in ending}
    assert len(confirmed) >= CONFIRMED_BEFORE_KILL and len(ended) >= CONFIRMED_BEFORE_KILL // 5

    tracker = DialogTracker(CONFIG, store=SQLiteDialogStore(path), wall_clock_offset=time.time())
    report = tracker.load(0.0)
    print(
        f"\ncrash test: {len(confirmed)} dialogs reported confirmed before the SIGKILL,"
        f" {len(ending)} of them hung up ({len(ended)} reported ended),"
        f" {len(expected)} expected back; {len(report.dialogs)} loaded,"
        f" {report.skipped_count} rows skipped"
    )
    assert report.skipped_count == 0, report.skipped
    for call_id, fact in expected.items():
        user = fact["user"]
        dialog = tracker.get(call_id, f"{user}-tag", "bob-tag")
        assert dialog is not None, f"{call_id} was confirmed before the kill and is lost"
        assert dialog.state is DialogState.CONFIRMED and dialog.did == fact["did"]
        assert dialog.vars == fact["vars"] and set(dialog.vars) == {"tier", "seq"}
        assert tracker.is_in_profile(dialog, "caller", user)
        assert tracker.is_in_profile(dialog, "calls")
        assert dialog.deadline is not None and dialog.deadline > CONFIG.default_timeout - 120
    for call_id in ended:
        assert tracker.get(call_id, f"{confirmed[call_id]['user']}-tag", "bob-tag") is None
    # Besides: at most the one call the kill caught between its commit and its
    # report, and a hang-up caught between its report and its commit.
    assert 0 <= len(tracker) - len(expected) <= 1 + len(ending - ended)
    assert tracker.profile_size("calls") == len(tracker) == tracker.stats.active
    tracker.close()
