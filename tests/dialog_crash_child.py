"""The child process of tests/test_dialog_crash.py.

A proxy and a dialog tracker in realtime mode with an SQLite store, fed
calls in memory without a pause until the parent kills it. Each fact the
parent checks is one JSON line on stdout, printed only once the write it
reports has committed: ``confirmed`` (with the did, the caller and the
variables), ``ending`` before a BYE goes in, ``ended`` after it was handled.

Usage: python dialog_crash_child.py DB_PATH [MAX_SECONDS]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from dialog_helpers import Call, Rig
from sipcore import RequestContext
from sipcore_dialog import DbMode, DialogConfig, SQLiteDialogStore

CONFIG = DialogConfig(
    db_mode=DbMode.REALTIME, profiles_with_value=("caller",), profiles_no_value=("calls",)
)


def script(rig: Rig, ctx: RequestContext) -> None:
    Rig.default_script(rig, ctx)
    dialog = rig.tracker.manage(ctx)
    if dialog is not None:  # an initial INVITE: a variable set while in setup
        dialog.set_var("tier", "gold" if len(rig.tracker) % 2 else "silver")


def report(**fact: object) -> None:
    sys.stdout.write(json.dumps(fact) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    path = argv[1]
    # Only a safety net for a parent that never kills: the test kills far sooner.
    stop_at = time.monotonic() + (float(argv[2]) if len(argv) > 2 else 60.0)
    rig = Rig(CONFIG, script, store=SQLiteDialogStore(path), wall_clock_offset=time.time())
    up: list[Call] = []
    n = 0
    while time.monotonic() < stop_at:
        call = Call(rig, f"crash-{n}", user=f"u{n}")
        call.established()
        dialog = rig.tracker.get(call.call_id, f"{call.user}-tag", "bob-tag")
        assert dialog is not None and dialog.is_confirmed
        dialog.set_var("seq", str(n))  # a variable set once confirmed: its own write
        report(
            event="confirmed",
            call_id=call.call_id,
            user=call.user,
            did=dialog.did,
            vars=dialog.vars,
        )
        up.append(call)
        if n % 4 == 3:  # hang up the oldest call now and then
            gone = up.pop(0)
            report(event="ending", call_id=gone.call_id)
            gone.bye()
            report(event="ended", call_id=gone.call_id)
        rig.advance(0.01)
        n += 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
