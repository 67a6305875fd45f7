"""``sipcore-proxy`` between a sipp UAC and sipp UASes.

The app runs in the test's own event loop (:class:`sipcore.app.App`, the
object the command runs) on an ephemeral 127.0.0.1 port, configured by a
TOML file like any other; every sipp runs as a subprocess the loop polls.
Each run is bounded by a call count, sipp's ``-timeout`` and a deadline
after which every sipp is killed by its PID. The scenario files honour
Record-Route (see interop-notes.md); ``uac_busy.xml`` also takes a 486 as
an outcome and holds answered calls for ``-d`` milliseconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from app_helpers import destinations_toml, http, write_config
from sipcore.app import App, load_config

from .conftest import LOOPBACK, SippResult, StartSipp
from .test_proxy_sipp import assert_all_calls_completed, bound_by_sipp, finished

pytestmark = pytest.mark.interop

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
UAC_SCENARIO = str(SCENARIOS / "uac_record_route.xml")
UAC_BUSY_SCENARIO = str(SCENARIOS / "uac_busy.xml")
UAS_SCENARIO = str(SCENARIOS / "uas_record_route.xml")
UAS_503_SCENARIO = str(SCENARIOS / "uas_503.xml")

SIPP_TIMEOUT = 30.0
ROUND_ROBIN = 4


def proxy_config(tmp_path: Path, *uas_ports: int, extra: str = "") -> Path:
    """The app on udp:127.0.0.1:0 in front of the sipp UASes on ``uas_ports``."""
    uris = [f"sip:{LOOPBACK}:{port}" for port in uas_ports]
    text = (
        f'[proxy]\nlisten = ["udp:{LOOPBACK}:0"]\nshutdown_grace = 2.0\n'
        f"[dispatcher]\nalgorithm = {ROUND_ROBIN}\n"
        f"{destinations_toml(*uris)}"
        f'[persistence]\npath = "{tmp_path / "dialogs.sqlite"}"\n'
        f'[management]\nlisten = "{LOOPBACK}:0"\n'
        f"{extra}"
    )
    return write_config(tmp_path, text)


async def started(path: Path, *uas_ports: int) -> App:
    app = App(load_config(path))
    await app.start()
    for port in uas_ports:
        await bound_by_sipp(port)
    return app


def test_sipp_calls_through_sipcore_proxy_all_complete_spread_over_two_uases(
    start_sipp: StartSipp, udp_port: Callable[[], int], tmp_path: Path
) -> None:
    calls, each = 30, 15
    first_port, second_port = udp_port(), udp_port()
    first = start_sipp(
        scenario=UAS_SCENARIO, local_port=first_port, calls=each, timeout=SIPP_TIMEOUT
    )
    second = start_sipp(
        scenario=UAS_SCENARIO, local_port=second_port, calls=each, timeout=SIPP_TIMEOUT
    )
    path = proxy_config(tmp_path, first_port, second_port)

    async def main() -> tuple[list[SippResult], dict[str, object]]:
        app = await started(path, first_port, second_port)
        try:
            uac = start_sipp(
                scenario=UAC_SCENARIO,
                local_port=udp_port(),  # chosen after the app bound its port-0 sockets
                remote=app.sip_listen[0].address,
                calls=calls,
                rate=15,
                timeout=SIPP_TIMEOUT,
            )
            results = await finished(uac, first, second)
            _, stats = await http(app.management_address, "GET", "/stats")
            return results, stats["result"]
        finally:
            await app.shutdown()

    (uac_result, first_result, second_result), stats = asyncio.run(main())
    assert_all_calls_completed(uac_result, calls)
    # Round-robin: each UAS took exactly its half, every call to the end.
    assert_all_calls_completed(first_result, each)
    assert_all_calls_completed(second_result, each)
    dialogs = stats["dialogs"]
    assert isinstance(dialogs, dict)
    assert (dialogs["processed"], dialogs["active"], dialogs["failed"]) == (calls, 0, 0)


def test_a_uas_answering_503_is_marked_and_its_call_fails_over_to_the_other(
    start_sipp: StartSipp, udp_port: Callable[[], int], tmp_path: Path
) -> None:
    calls = 20
    broken_port, good_port = udp_port(), udp_port()
    # Marked inactive by its first 503, the broken UAS gets one call only.
    broken = start_sipp(
        scenario=UAS_503_SCENARIO, local_port=broken_port, calls=1, timeout=SIPP_TIMEOUT
    )
    good = start_sipp(
        scenario=UAS_SCENARIO, local_port=good_port, calls=calls, timeout=SIPP_TIMEOUT
    )
    path = proxy_config(tmp_path, good_port, broken_port)
    broken_uri = f"sip:{LOOPBACK}:{broken_port}"

    async def main() -> tuple[list[SippResult], dict[str, str], dict[str, object]]:
        app = await started(path, broken_port, good_port)
        try:
            uac = start_sipp(
                scenario=UAC_SCENARIO,
                local_port=udp_port(),  # chosen after the app bound its port-0 sockets
                remote=app.sip_listen[0].address,
                calls=calls,
                rate=20,
                timeout=SIPP_TIMEOUT,
            )
            results = await finished(uac, broken, good)
            _, listed = await http(app.management_address, "GET", "/dispatcher/list")
            targets = listed["result"]["RECORDS"][0]["SET"]["TARGETS"]
            flags = {t["DEST"]["URI"]: t["DEST"]["FLAGS"] for t in targets}
            _, stats = await http(app.management_address, "GET", "/stats")
            return results, flags, stats["result"]["routing"]
        finally:
            await app.shutdown()

    (uac_result, broken_result, good_result), flags, routing = asyncio.run(main())
    assert_all_calls_completed(uac_result, calls)
    assert_all_calls_completed(good_result, calls)
    # The broken UAS saw its INVITE and the proxy's ACK for the 503.
    assert_all_calls_completed(broken_result, 1)
    assert flags[broken_uri] == "IP"  # ds_mark_dst("ip")
    assert isinstance(routing, dict)
    assert (routing["failovers"], routing["marked"]) == (1, 1)


def test_the_call_over_the_per_caller_limit_gets_486_from_the_proxy(
    start_sipp: StartSipp, udp_port: Callable[[], int], tmp_path: Path
) -> None:
    limit = 3
    uas_port = udp_port()
    uas = start_sipp(scenario=UAS_SCENARIO, local_port=uas_port, calls=limit, timeout=SIPP_TIMEOUT)
    # Every sipp call is From sip:sipp@...: one caller.
    path = proxy_config(tmp_path, uas_port, extra=f"[limits]\nper_caller = {limit}\n")
    messages = tmp_path / "uac-messages.log"

    async def main() -> tuple[list[SippResult], dict[str, object], int]:
        app = await started(path, uas_port)
        try:
            uac = start_sipp(
                scenario=UAC_BUSY_SCENARIO,
                local_port=udp_port(),  # chosen after the app bound its port-0 sockets
                remote=app.sip_listen[0].address,
                calls=limit + 1,
                rate=20,  # all four INVITEs within about 0.2 s ...
                timeout=SIPP_TIMEOUT,
                # ... while each answered call is held 3 s before its BYE.
                extra_args=["-d", "3000", "-trace_msg", "-message_file", str(messages)],
            )
            results = await finished(uac, uas)
            _, stats = await http(app.management_address, "GET", "/stats")
            return results, stats["result"]["routing"], app.tracker.profile_size("caller")
        finally:
            await app.shutdown()

    (uac_result, uas_result), routing, left = asyncio.run(main())
    assert_all_calls_completed(uac_result, limit + 1)  # the refused one ends by its scenario
    assert_all_calls_completed(uas_result, limit)  # the refused one never reached it
    trace = messages.read_text(encoding="utf-8", errors="replace")
    busy = [block for block in trace.split("\n\n") if "SIP/2.0 486 Busy Here" in block]
    assert len(busy) == 1, trace[-3000:]
    assert f"Call-ID: {limit + 1}-" in busy[0]  # the last call placed
    assert isinstance(routing, dict) and routing["over_caller_limit"] == 1
    assert left == 0


def test_calls_outlive_a_restart_of_sipcore_proxy_under_sipp(
    start_sipp: StartSipp, udp_port: Callable[[], int], tmp_path: Path
) -> None:
    """Three sipp calls are answered, the proxy is stopped (its store
    flushed) and started again on the same port while the calls are held;
    the new process loads the three dialogs, routes their BYEs and ends
    them."""
    calls = 3
    uas_port, proxy_port = udp_port(), udp_port()
    uas = start_sipp(scenario=UAS_SCENARIO, local_port=uas_port, calls=calls, timeout=SIPP_TIMEOUT)
    uris = destinations_toml(f"sip:{LOOPBACK}:{uas_port}")
    path = write_config(
        tmp_path,
        f'[proxy]\nlisten = ["udp:{LOOPBACK}:{proxy_port}"]\nshutdown_grace = 1.0\n'
        f"[dispatcher]\nalgorithm = {ROUND_ROBIN}\n{uris}"
        f'[persistence]\npath = "{tmp_path / "dialogs.sqlite"}"\n'
        f'[management]\nlisten = "{LOOPBACK}:0"\n',
    )

    async def main() -> tuple[list[SippResult], dict[str, int], dict[str, int]]:
        loop = asyncio.get_running_loop()
        first = await started(path, uas_port)
        try:
            uac = start_sipp(
                scenario=UAC_BUSY_SCENARIO,
                local_port=udp_port(),  # chosen after the app bound its port-0 sockets
                remote=(LOOPBACK, proxy_port),
                calls=calls,
                rate=20,
                timeout=SIPP_TIMEOUT,
                extra_args=["-d", "4000"],  # held long enough to restart under them
            )
            deadline = loop.time() + 10.0
            while first.tracker.stats_active()["ongoing"] < calls:
                assert loop.time() < deadline, first.tracker.stats_active()
                await asyncio.sleep(0.05)
        finally:
            await first.shutdown()
        second = App(load_config(path))
        await second.start()
        try:
            loaded = second.tracker.stats_active()
            results = await finished(uac, uas)
            return results, loaded, second.tracker.stats_active()
        finally:
            await second.shutdown()

    (uac_result, uas_result), loaded, after = asyncio.run(main())
    assert loaded["ongoing"] == calls  # the new process knew the calls
    assert_all_calls_completed(uac_result, calls)  # their BYEs went through it
    assert_all_calls_completed(uas_result, calls)
    assert after["ongoing"] == 0  # and it saw them end
