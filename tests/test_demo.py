"""``sipcore-demo``: the README's main command.

The demo runs as the user runs it (a child process, ``python -m sipcore
demo``) and in-process (:func:`sipcore.demo.run`), short and fast
(``--calls 60 --quick``, a few seconds), and the tests read its summary:
every call accounted for, every backend used, backend 2 marked down and
up twice with the failovers that followed and no INVITE sent to it while
it was down, the per-caller limit met once per burst, the dialog
statistics and profiles consistent with the calls. How long the default
run takes is not tested here (no timing tests).
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sipcore import demo
from sipcore.demo import FLAKY, Attempt, Options, Summary

ROOT = Path(__file__).resolve().parent.parent
QUICK = Options(calls=60, rate=demo.QUICK_RATE, hold=demo.QUICK_HOLD)
# Far more than the run needs (a few seconds); only a hang would reach it.
DEADLINE = 120.0


@pytest.fixture(scope="module")
def summary() -> tuple[Summary, str]:
    """One in-process run, shared by the tests that read it."""
    out = io.StringIO()

    async def main() -> Summary:
        return await asyncio.wait_for(demo.run(QUICK, out), DEADLINE)

    return asyncio.run(main()), out.getvalue()


def test_every_call_is_completed_rejected_by_the_limit_or_failed(
    summary: tuple[Summary, str],
) -> None:
    s, _ = summary
    assert s.placed == len(s.calls) == 60
    assert s.placed == s.completed + s.rejected_by_limit + s.failed
    # The only calls that fail are those in progress on b2 when it went
    # silent: answered, then their BYE got the proxy's 408.
    assert all(
        c.cut_off and c.answered_by == FLAKY and c.bye_code == 408 for c in s.calls if c.failed
    )
    assert s.completed >= 50


def test_every_backend_gets_calls_and_b2_gets_none_while_it_is_marked_down(
    summary: tuple[Summary, str],
) -> None:
    s, _ = summary
    assert [b.name for b in s.backends] == ["b1", "b2", "b3"]
    assert all(b.calls > 0 for b in s.backends)
    assert sum(b.calls for b in s.backends) == s.completed
    assert s.invites_to_down_backend == 0
    flaky = next(b for b in s.backends if b.name == FLAKY)
    assert flaky.calls_after_back > 0  # back in the rotation for the last calls
    assert flaky.counts.unanswered > 0 and flaky.counts.refused > 0
    assert {b.flags for b in s.backends} == {"AP"}  # all active again at the end


def test_b2_is_marked_down_and_up_twice_and_its_calls_fail_over(
    summary: tuple[Summary, str],
) -> None:
    s, _ = summary
    assert s.down_events == s.up_events == 2
    marks = [e.text for e in s.timeline if e.kind is demo.Kind.BACKEND and "marked" in e.text]
    assert [("DOWN" in m) for m in marks] == [True, False, True, False]
    assert "408" in marks[0] and "503" in marks[2]
    # A silent b2: its INVITEs time out (Timer B, a 408 made in the proxy);
    # an overloaded one answers 503. Either way another backend answers.
    assert s.failed_over
    firsts = {c.attempts[0] for c in s.failed_over}
    assert Attempt(FLAKY, 408, True) in firsts
    assert Attempt(FLAKY, 503, False) in firsts
    for call in s.failed_over:
        assert call.completed and call.answered_by not in (None, FLAKY)
        assert call.attempts[-1] == Attempt(call.answered_by or "", 200, False)
    assert len(s.failed_over) == s.stats["routing"]["failovers"]


def test_the_busy_caller_meets_the_per_caller_limit_once_per_burst(
    summary: tuple[Summary, str],
) -> None:
    s, _ = summary
    refused = [c for c in s.calls if c.rejected_by_limit]
    assert len(refused) == demo.BURSTS == s.stats["routing"]["over_caller_limit"]
    assert {(c.caller, c.code, c.reason) for c in refused} == {(demo.BUSY_CALLER, 486, "Busy Here")}
    assert [e["calls"] for e in s.limit_events] == [demo.PER_CALLER_LIMIT] * demo.BURSTS
    assert all(c.attempts == () for c in refused)  # refused before any backend


def test_the_dialog_statistics_and_profiles_match_the_calls(summary: tuple[Summary, str]) -> None:
    s, _ = summary
    stats = s.dialog_stats["statistics"]
    # A dialog for every call past the limit; all of them over at the end.
    assert stats["processed"] == s.placed - s.rejected_by_limit
    assert stats["active"] == stats["early"] == stats["expired"] == 0
    assert s.dialog_stats["active"]["all"] == 0
    assert s.profiles == {"caller": {"size": 0, "values": 0}, "account": {"size": 0, "values": 0}}
    assert 0 < s.peaks["dialogs"] <= demo.MAX_CONCURRENT
    assert s.peaks["account.values"] <= len(demo.TENANTS)
    assert s.ok, [text for text, passed in s.checks if not passed]


def test_the_output_has_progress_events_and_the_summary_tables(
    summary: tuple[Summary, str],
) -> None:
    _, text = summary
    for heading in (
        "Summary (",
        "Calls",
        "Backends",
        "Backend b2 down and up",
        "Failovers",
        "Per-caller limit",
        "Dialogs",
        "Profiles",
        "Checks",
    ):
        assert re.search(rf"^{re.escape(heading)}", text, re.M), heading
    assert re.search(r"^\[\s*\d+\.\ds\] +\d+/60 placed", text, re.M)  # a progress line
    assert "b2 goes silent" in text and "b2 marked DOWN by the proxy" in text
    assert "FAILED" not in text
    assert "\r" not in text  # not a terminal: whole lines only
    assert all(len(line) <= 100 for line in text.splitlines()), "wider than 100 columns"


def test_the_demo_leaves_the_app_loggers_as_it_found_them(summary: tuple[Summary, str]) -> None:
    logger = logging.getLogger("sipcore.app")
    assert logger.propagate and not any(isinstance(h, demo._AppEvents) for h in logger.handlers)


def _number(text: str, pattern: str) -> int:
    found = re.search(pattern, text, re.M)
    assert found, pattern
    return int(found.group(1))


def test_python_m_sipcore_demo_runs_the_quick_demo_as_a_child_process() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sipcore", "demo", "--calls", "60", "--quick"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stderr == ""  # the proxy's logs are the demo's to read, not the user's
    out = done.stdout
    placed = _number(out, r"^  placed\s+(\d+)$")
    completed = _number(out, r"^  completed \(INVITE.*?(\d+)$")
    refused = _number(out, r"^  rejected by the per-caller limit.*?(\d+)$")
    cut_off = _number(out, r"^  failed: in progress on b2.*?(\d+)$")
    other = _number(out, r"^  failed otherwise\s+(\d+)$")
    assert placed == 60 == completed + refused + cut_off + other
    assert (refused, other) == (demo.BURSTS, 0)
    assert _number(out, r"^  retried on another backend \(failover\)\s+(\d+)$") >= 2
    for name in ("b1", "b2", "b3"):
        assert _number(out, rf"^  {name}\s+127\.0\.0\.1:\d+\s+(\d+)\s") > 0
    assert _number(out, r"INVITEs relayed to it while marked down: (\d+)$") == 0
    assert len(re.findall(r"^ +[\d.]+s +\d+ +b2 marked DOWN", out, re.M)) == 2
    assert len(re.findall(r"^ +[\d.]+s +\d+ +b2 marked up", out, re.M)) == 2
    processed = _number(out, r"^Dialogs.*\n.*\n.*\n\s+(\d+)\s")
    assert processed == placed - refused
    checks = out.split("\nChecks\n", 1)[1].splitlines()
    assert len(checks) >= 7 and all(line.startswith("  ok ") for line in checks), checks


def test_the_demo_command_line() -> None:
    assert demo.parse_args([]) == Options(300, 10.0, 0.4)
    assert demo.parse_args(["--quick", "--calls", "60"]) == QUICK
    assert demo.parse_args(["--quick", "--rate", "5"]).rate == 5.0
    with pytest.raises(SystemExit) as exited:
        demo.parse_args(["--calls", "3"])
    assert exited.value.code == 2


def test_python_m_sipcore_without_a_subcommand_shows_its_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sipcore.__main__ import main

    assert main([]) == 2
    assert "python -m sipcore demo" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "sipcore-demo" in capsys.readouterr().out


def test_the_plan_places_every_call_once_and_no_burst_straddles_a_step() -> None:
    for calls in [*range(demo.MIN_CALLS, 400), 1001, demo.MAX_CALLS]:
        waves = demo._waves(calls)
        indexes = [i for first, size in waves for i in range(first, first + size)]
        assert indexes == list(range(calls)), calls
        bursts = [(first, size) for first, size in waves if size > 1]
        assert len(bursts) == demo.BURSTS, calls
        assert all(size == demo.BURST for _, size in bursts), calls
        steps = {s.at for s in demo._steps(calls)}
        assert not any(first < at < first + size for first, size in bursts for at in steps), calls


def test_tables_align_text_left_and_numbers_right() -> None:
    lines = demo.table(("name", "calls", "share"), [("b1", 9, "45%"), ("b10", 11, "5%")])
    assert lines == [
        "  name  calls  share",
        "  ----  -----  -----",
        "  b1        9    45%",
        "  b10      11     5%",
    ]
    assert demo.table(("call", "answer"), []) == [
        "  call    answer",
        "  ------  ------",
        "  (none)",
    ]


def test_the_readme_main_command_runs_this_demo() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/sipcore-demo" in readme
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert project["project"]["scripts"]["sipcore-demo"] == "sipcore.demo:main"
