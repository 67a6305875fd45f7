"""``sipcore-proxy`` as a child process: calls survive a restart through the
SQLite dialog store, SIGTERM and SIGINT stop it gracefully (exit 0, store
flushed), and every line it logs is one JSON object.

The child is started with ``python -m sipcore.app``; its ports are read
from its ``ready`` log line. Every wait is bounded; a child still running
at the end is killed by its PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs

from app_helpers import PROXY_COMMAND, Caller, Uas, destinations_toml, http, run, write_config
from sipcore import Endpoint

START_WAIT = 20.0
STOP_WAIT = 20.0


@attrs.define
class Child:
    """A running ``sipcore-proxy`` and the records it logged so far."""

    process: asyncio.subprocess.Process
    records: list[dict[str, Any]] = attrs.Factory(list)
    lines: list[str] = attrs.Factory(list)
    ready: dict[str, Any] = attrs.Factory(dict)
    reader: asyncio.Task[None] | None = None
    logged: asyncio.Event = attrs.Factory(asyncio.Event)

    @property
    def sip(self) -> Endpoint:
        return Endpoint.parse(self.ready["sip"][0])

    @property
    def management(self) -> tuple[str, int]:
        host, _, port = self.ready["management"].rpartition(":")
        return host, int(port)

    def events(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r.get("event") == name]

    async def event(self, name: str, timeout: float = START_WAIT) -> dict[str, Any]:
        """The first record of event ``name``, waiting for it (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.events(name):
            left = deadline - loop.time()
            if left <= 0 or self.process.returncode is not None:
                raise AssertionError(f"no {name} record: {self.records[-5:]}")
            self.logged.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.logged.wait(), left)
        return self.events(name)[0]

    async def stop(self, signum: signal.Signals) -> int:
        self.process.send_signal(signum)
        code = await asyncio.wait_for(self.process.wait(), STOP_WAIT)
        if self.reader is not None:
            await asyncio.wait_for(self.reader, STOP_WAIT)
        return code


async def _read(child: Child, ready: asyncio.Future[None]) -> None:
    stream = child.process.stderr
    assert stream is not None
    while line := await stream.readline():
        text = line.decode()
        child.lines.append(text)
        record = json.loads(text)  # every line must be one JSON object
        child.records.append(record)
        child.logged.set()
        if record.get("event") == "ready" and not ready.done():
            child.ready = record
            ready.set_result(None)
    if not ready.done():
        ready.set_exception(AssertionError("the proxy exited before it was ready"))


@contextlib.asynccontextmanager
async def started(config: Path) -> AsyncIterator[Child]:
    process = await asyncio.create_subprocess_exec(
        *PROXY_COMMAND,
        str(config),
        cwd=config.parent,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    child = Child(process)
    ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    child.reader = asyncio.create_task(_read(child, ready))
    try:
        await asyncio.wait_for(ready, START_WAIT)
        yield child
    finally:
        if process.returncode is None:
            process.kill()
            await asyncio.wait_for(process.wait(), STOP_WAIT)


def config_text(tmp_path: Path, uas: Uas, sip_port: int, grace: float = 2.0) -> str:
    return (
        f'[proxy]\nlisten = ["udp:127.0.0.1:{sip_port}"]\nshutdown_grace = {grace}\n'
        f"{destinations_toml(uas.uri)}"
        '[persistence]\npath = "dialogs.sqlite"\n'  # relative: the working directory
        '[management]\nlisten = "127.0.0.1:0"\n'
    )


def stored(path: Path) -> list[tuple[str, int]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT callid, state FROM dialog ORDER BY callid").fetchall()
    return [(str(c), int(s)) for c, s in rows]


def test_calls_survive_a_restart_and_their_byes_are_routed_by_the_new_process(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        uas = await Uas.open("uas")
        path = write_config(tmp_path, config_text(tmp_path, uas, 0))
        async with started(path) as first:
            caller = await Caller.open(first.sip)
            answers = [await caller.call(f"p{i}") for i in range(2)]
            assert [a.status_code for a in answers] == [200, 200]
            await uas.wait_for("the ACKs", lambda: uas.methods().count("ACK") == 2)
            status, body = await http(first.management, "GET", "/dialogs/stats")
            assert body["result"]["active"]["ongoing"] == 2
            assert await first.stop(signal.SIGTERM) == 0
        assert [e["event"] for e in first.records[-3:]] == ["signal", "stopping", "stopped"]
        assert first.events("stopped")[0]["dialogs"] == 2
        assert stored(tmp_path / "dialogs.sqlite") == [("p0", 4), ("p1", 4)]

        # The same SIP address (it is in every Record-Route), a new process.
        path.write_text(config_text(tmp_path, uas, first.sip.port))
        async with started(path) as second:
            assert second.events("dialogs.loaded")[0]["loaded"] == 2
            assert second.ready["dialogs"] == 2
            status, body = await http(second.management, "GET", "/dialogs")
            assert sorted((r["call-id"], r["state"]) for r in body["result"]) == [
                ("p0", 4),
                ("p1", 4),
            ]
            status, body = await http(second.management, "GET", "/profiles/caller?value=alice")
            assert body["result"]["size"] == 2
            assert (await caller.bye(answers[0])).status_code == 200
            await uas.wait_for("the BYE", lambda: "BYE" in uas.methods())
            status, body = await http(second.management, "GET", "/dialogs/stats")
            assert (status, body["result"]["statistics"]["active"]) == (200, 1)
            assert stored(tmp_path / "dialogs.sqlite") == [("p1", 4)]
            assert await second.stop(signal.SIGINT) == 0
        assert second.events("signal")[0]["signal"] == "SIGINT"
        assert stored(tmp_path / "dialogs.sqlite") == [("p1", 4)]
        caller.close()
        uas.close()

    run(main(), deadline=90.0)


def test_every_line_is_json_with_a_timestamp_level_and_event(tmp_path: Path) -> None:
    async def main() -> None:
        uas = await Uas.open("uas")
        path = write_config(tmp_path, config_text(tmp_path, uas, 0))
        async with started(path) as child:
            caller = await Caller.open(child.sip)
            answer = await caller.call("j1")
            assert (await caller.bye(answer)).status_code == 200
            assert await child.stop(signal.SIGTERM) == 0
        caller.close()
        uas.close()
        assert all(line.endswith("}\n") and line.count("\n") == 1 for line in child.lines)
        for record in child.records:
            assert set(record) >= {"ts", "level", "logger", "msg"}
            assert record["ts"].endswith("Z") and record["level"] in ("debug", "info", "warning")
        names = [r.get("event") for r in child.records if r["logger"] == "sipcore.app"]
        for wanted in ("dialogs.loaded", "ready", "dialog.start", "dialog.end", "stopped"):
            assert wanted in names, names
        (start,) = child.events("dialog.start")
        assert start["call_id"] == "j1"

    run(main(), deadline=60.0)


def test_a_second_sigterm_cuts_the_grace_time_short(tmp_path: Path) -> None:
    async def main() -> None:
        uas = await Uas.open("uas")
        uas.hold = True  # the INVITE stays unanswered: a request in flight
        path = write_config(tmp_path, config_text(tmp_path, uas, 0, grace=600.0))
        async with started(path) as child:
            caller = await Caller.open(child.sip)
            caller.invite("g1")
            await uas.wait_for("the INVITE", lambda: bool(uas.held))
            child.process.send_signal(signal.SIGTERM)
            stopping = await child.event("stopping")
            assert (stopping["waiting"], stopping["grace"]) == (1, 600.0)
            assert child.process.returncode is None  # it waits for the call
            assert await child.stop(signal.SIGTERM) == 0
        assert [e["msg"] for e in child.events("signal")] == [
            "SIGTERM: stopping",
            "SIGTERM again: stopping now",
        ]
        assert child.events("stopped")[0]["abandoned"] == 1
        caller.close()
        uas.close()

    run(main(), deadline=60.0)
