"""The log formats of ``sipcore-proxy``: one record per line, as a JSON
object or as ``key=value`` pairs, tracebacks included."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from sipcore.app import logs


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])


def test_an_app_event_is_one_json_object_with_its_fields(captured: io.StringIO) -> None:
    logs.configure("info", "json", captured)
    logs.event("limit.reached", "alice has 2 calls", profile="caller", calls=2, value=None)
    logs.event("hidden", "below the level", level=logging.DEBUG)
    (line,) = captured.getvalue().splitlines()
    record = json.loads(line)
    assert record["level"] == "info" and record["logger"] == "sipcore.app"
    assert record["event"] == "limit.reached" and record["msg"] == "alice has 2 calls"
    assert (record["profile"], record["calls"], record["value"]) == ("caller", 2, None)
    assert record["ts"].endswith("Z") and "T" in record["ts"]


def test_a_traceback_stays_inside_its_record(captured: io.StringIO) -> None:
    logs.configure("info", "json", captured)
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        logging.getLogger("sipcore.asyncio").exception("the core raised")
    (line,) = captured.getvalue().splitlines()
    record = json.loads(line)
    assert record["msg"] == "the core raised" and "event" not in record
    assert "RuntimeError: boom\nsecond line" in record["exc"]


def test_the_text_format_is_key_value_pairs_quoted_when_needed(captured: io.StringIO) -> None:
    logs.configure("debug", "text", captured)
    logs.event("failover", "INVITE c1 fails over", level=logging.DEBUG, to="sip:10.0.0.2", n=3)
    (line,) = captured.getvalue().splitlines()
    assert line.startswith("ts=")
    fields = line.split(" ", 3)
    assert fields[1:3] == ["level=debug", "logger=sipcore.app"]
    assert line.endswith(' event=failover msg="INVITE c1 fails over" to=sip:10.0.0.2 n=3')
