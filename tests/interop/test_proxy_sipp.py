"""A stateful sipcore proxy on sipcore.asyncio between a sipp UAC and sipp UASes.

The proxy runs in the test's own event loop (``asyncio.run``) while every
sipp runs as a subprocess that the loop polls; nothing blocks the loop,
and every wait is bounded by a call count, sipp's ``-timeout`` and a
deadline after which each sipp is killed by its PID. The scenario files in
``scenarios/`` honour Record-Route (sipp's built-in ones do not, see
interop-notes.md).
"""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

import sipcore.asyncio
from sipcore import Endpoint, Proxy, ProxyConfig, RequestContext

from .conftest import (
    KILL_GRACE_SECONDS,
    LOOPBACK,
    SIPP_ALL_CALLS_SUCCESSFUL,
    SippProcess,
    SippResult,
    StartSipp,
)

pytestmark = pytest.mark.interop

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
UAC_SCENARIO = str(SCENARIOS / "uac_record_route.xml")
UAS_SCENARIO = str(SCENARIOS / "uas_record_route.xml")
UAS_503_SCENARIO = str(SCENARIOS / "uas_503.xml")

CALLS = 50
RATE = 20  # calls per second
FAILOVER_CALLS = 20
SIPP_TIMEOUT = 30.0
# The whole exchange, sipp's start-up and shut-down included, must end by then.
RUN_LIMIT = SIPP_TIMEOUT + KILL_GRACE_SECONDS


def record_routing_proxy(
    first: Endpoint, backup: Endpoint | None, failed_over: list[int]
) -> Callable[[tuple[Endpoint, ...]], Proxy]:
    """The proxy under test, made once its socket is bound (port 0).

    Kamailio's shape: in-dialog requests follow their route set
    (``loose_route``), initial INVITEs are record-routed and relayed to
    ``first``; when every branch fails, the failure route relays to
    ``backup`` once and notes the status it failed over from.
    """

    def failure_route(ctx: RequestContext) -> None:
        best = ctx.best_response
        if backup is not None and best is not None:
            failed_over.append(best.status_code)
            ctx.relay(backup)

    def route(ctx: RequestContext) -> None:
        if ctx.loose_route():
            if ctx.is_stateless:  # the ACK for a 2xx
                ctx.forward()
            else:
                ctx.relay()
            return
        if ctx.method != "INVITE":
            ctx.reply(404)  # nothing but new calls comes without a Route here
            return
        ctx.record_route()
        ctx.on_failure(failure_route)
        ctx.relay(first)

    def make(bound: tuple[Endpoint, ...]) -> Proxy:
        return Proxy(ProxyConfig(listen=bound), route)

    return make


async def bound_by_sipp(port: int) -> None:
    """Return once sipp has bound its UDP port (bounded), so the first
    INVITE does not go to a socket that is not there yet."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while loop.time() < deadline:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return
                raise
        await asyncio.sleep(0.02)
    raise AssertionError(f"sipp did not bind udp:{LOOPBACK}:{port} within 5 s")


async def finished(*sipps: SippProcess) -> list[SippResult]:
    """Poll the sipp processes from the loop (the proxy keeps running) until
    all have exited; kill them all by PID past RUN_LIMIT."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RUN_LIMIT
    while any(s.process.poll() is None for s in sipps):
        if loop.time() > deadline:
            for sipp in sipps:
                sipp.kill()
            results = [s.wait() for s in sipps]
            raise AssertionError(
                f"sipp still running after {RUN_LIMIT:.0f}s: killed\n"
                + "\n".join(r.describe() for r in results)
            )
        await asyncio.sleep(0.05)
    return [s.wait() for s in sipps]


def assert_all_calls_completed(result: SippResult, calls: int) -> None:
    print(f"sipp: successful={result.successful_calls} failed={result.failed_calls}")
    assert result.returncode == SIPP_ALL_CALLS_SUCCESSFUL, result.describe()
    assert result.successful_calls == calls, result.describe()
    assert result.failed_calls == 0, result.describe()


def test_sipp_calls_through_the_record_routing_proxy_all_complete(
    start_sipp: StartSipp, udp_port: Callable[[], int]
) -> None:
    uas_port = udp_port()
    uas = start_sipp(scenario=UAS_SCENARIO, local_port=uas_port, calls=CALLS, timeout=SIPP_TIMEOUT)
    failed_over: list[int] = []
    make = record_routing_proxy(Endpoint(LOOPBACK, uas_port), None, failed_over)

    async def main() -> tuple[list[SippResult], dict[str, int]]:
        async with await sipcore.asyncio.serve(make, listen=[f"udp:{LOOPBACK}:0"]) as server:
            await bound_by_sipp(uas_port)
            proxy = server.listen[0]
            uac = start_sipp(
                scenario=UAC_SCENARIO,
                local_port=udp_port(),  # chosen after the proxy bound its port-0 socket
                remote=proxy.address,
                calls=CALLS,
                rate=RATE,
                timeout=SIPP_TIMEOUT,
            )
            results = await finished(uac, uas)
            core = server.core
            assert isinstance(core, Proxy)
            return results, dict(core.stats)

    (uac_result, uas_result), stats = asyncio.run(main())
    assert_all_calls_completed(uac_result, CALLS)
    assert_all_calls_completed(uas_result, CALLS)
    # Every INVITE, ACK and BYE went through the proxy: none bypassed it.
    assert stats["relayed"] >= 3 * CALLS, stats
    assert failed_over == []


def test_failure_route_fails_over_from_a_503_uas_to_a_second_uas(
    start_sipp: StartSipp, udp_port: Callable[[], int]
) -> None:
    broken_port, good_port = udp_port(), udp_port()
    broken = start_sipp(
        scenario=UAS_503_SCENARIO,
        local_port=broken_port,
        calls=FAILOVER_CALLS,
        timeout=SIPP_TIMEOUT,
    )
    good = start_sipp(
        scenario=UAS_SCENARIO, local_port=good_port, calls=FAILOVER_CALLS, timeout=SIPP_TIMEOUT
    )
    failed_over: list[int] = []
    make = record_routing_proxy(
        Endpoint(LOOPBACK, broken_port), Endpoint(LOOPBACK, good_port), failed_over
    )

    async def main() -> list[SippResult]:
        async with await sipcore.asyncio.serve(make, listen=[f"udp:{LOOPBACK}:0"]) as server:
            await bound_by_sipp(broken_port)
            await bound_by_sipp(good_port)
            uac = start_sipp(
                scenario=UAC_SCENARIO,
                local_port=udp_port(),  # chosen after the proxy bound its port-0 socket
                remote=server.listen[0].address,
                calls=FAILOVER_CALLS,
                rate=RATE,
                timeout=SIPP_TIMEOUT,
            )
            return await finished(uac, broken, good)

    uac_result, broken_result, good_result = asyncio.run(main())
    assert_all_calls_completed(uac_result, FAILOVER_CALLS)
    # The 503 UAS saw every INVITE and the proxy's ACK for each 503.
    assert_all_calls_completed(broken_result, FAILOVER_CALLS)
    assert_all_calls_completed(good_result, FAILOVER_CALLS)
    assert failed_over == [503] * FAILOVER_CALLS
