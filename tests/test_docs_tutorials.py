"""The tutorials' programs, run as written: docs/tutorial-*.md.

``tests/test_docs_examples.py`` runs every page's ``>>>`` examples; this
module runs the full programs, each page's ``python`` block, extracted and
executed (not as ``__main__``):

- tutorial-testing.md: its pytest module, against the page's own
  definitions (the doctests' globals, importable as ``lab``);
- tutorial-threads.md: the threaded proxy on a real 127.0.0.1 socket, with
  in-test UAC and UAS: a lookup in a worker thread, a retransmission on
  time, a record-routed call, a 404, and a clean stop;
- tutorial-load-balancer.md: no more than 50 lines, and on real sockets a
  call fails over from a server answering 503 (then marked down, and kept
  down by its probes) to the healthy one, and in a second run from a
  server that never answers, after Timer B.

Every wait is bounded; the longest test takes about four seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import doctest
import functools
import re
import socket
import sys
import time
import types
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, cast

import attrs
import pytest

import sipcore
import sipcore.asyncio
from aio_peers import LOOPBACK, WAIT, UdpPeer, build_request, in_dialog
from sipcore import Endpoint, Request, Response, TimerSettings
from sipcore_dialog import DialogState
from sipcore_dispatch import DestinationState

DOCS = Path(__file__).resolve().parent.parent / "docs"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.M | re.S)
S = DestinationState
TEST_DEADLINE = 15.0  # no scenario may run longer than this


def python_block(page: str) -> tuple[str, int]:
    """The one ``python`` block of ``docs/<page>``, and the page's line it starts on."""
    text = (DOCS / page).read_text(encoding="utf-8")
    blocks = list(PYTHON_BLOCK.finditer(text))
    assert len(blocks) == 1, f"expected one python block in {page}, found {len(blocks)}"
    return blocks[0].group(1), text.count("\n", 0, blocks[0].start(1)) + 1


def load_program(page: str) -> dict[str, Any]:
    """Execute the page's program as an imported module would be; a
    traceback names the page and its line."""
    code, line = python_block(page)
    namespace: dict[str, Any] = {"__name__": f"docs_{Path(page).stem.replace('-', '_')}"}
    exec(compile("\n" * (line - 1) + code, str(DOCS / page), "exec"), namespace)
    return namespace


def run(scenario: Coroutine[Any, Any, None]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(scenario, TEST_DEADLINE)

    asyncio.run(bounded())


async def until(what: str, condition: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.1f} s: {what}")
        await asyncio.sleep(0.01)


def port_is_free(endpoint: Endpoint) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        try:
            again.bind(endpoint.address)
        except OSError:
            return False
    return True


@attrs.frozen
class Arrival:
    request: Request
    at: float  # time.monotonic(), the clock of every party here


class Uas(asyncio.DatagramProtocol):
    """A UDP UAS on 127.0.0.1: answers every request except ACK with
    ``code`` (its ``name`` as To tag, a Contact to itself), or never when
    ``code`` is None; the first ``drop`` requests it reads go unanswered."""

    def __init__(self, name: str, code: int | None, drop: int = 0) -> None:
        self.name = name
        self.code = code
        self.drop = drop
        self.arrivals: list[Arrival] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.endpoint = Endpoint(LOOPBACK, 0)

    @classmethod
    async def open(cls, name: str, code: int | None, drop: int = 0) -> Uas:
        loop = asyncio.get_running_loop()
        transport, uas = await loop.create_datagram_endpoint(
            lambda: cls(name, code, drop), local_addr=(LOOPBACK, 0)
        )
        uas.endpoint = Endpoint(LOOPBACK, transport.get_extra_info("sockname")[1])
        return uas

    @property
    def uri(self) -> str:
        return f"sip:{self.endpoint.hostport}"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # As in aio_peers: the selector loop's transport is not a DatagramTransport subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        request = sipcore.parse_message(data)
        if not isinstance(request, Request):
            return
        self.arrivals.append(Arrival(request, time.monotonic()))
        if self.drop > 0:
            self.drop -= 1
            return
        if self.code is None or request.method == "ACK" or self.transport is None:
            return
        answer = sipcore.make_response(request, self.code, to_tag=self.name)
        if request.method == "INVITE" and self.code < 300:
            answer.add_header("Contact", f"<sip:{self.name}@{self.endpoint.hostport}>")
        self.transport.sendto(bytes(answer), addr)

    def received(self, method: str) -> list[Arrival]:
        return [a for a in self.arrivals if a.request.method == method]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# -- tutorial-testing.md ---------------------------------------------------------


def test_docs_tutorial_testing_pytest_module_passes_against_the_pages_definitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    page = DOCS / "tutorial-testing.md"
    parser = doctest.DocTestParser()
    globs: dict[str, Any] = {"__name__": "lab"}
    examples = parser.get_doctest(page.read_text(encoding="utf-8"), globs, "lab", str(page), 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(examples, clear_globs=False)
    assert runner.failures == 0, f"{runner.failures} examples failed in {page.name}"
    lab = types.ModuleType("lab")
    lab.__dict__.update(examples.globs)
    monkeypatch.setitem(sys.modules, "lab", lab)

    namespace = load_program("tutorial-testing.md")
    assert "lab" in namespace  # the fixture
    tests = {name: f for name, f in namespace.items() if name.startswith("test_")}
    assert len(tests) == 3, sorted(tests)
    for test in tests.values():
        # What the fixture returns, made here: a pytest fixture cannot be called.
        test(lab.new_lab())


# -- tutorial-threads.md -----------------------------------------------------------


def test_docs_tutorial_threads_program_runs_only_when_asked() -> None:
    namespace = load_program("tutorial-threads.md")
    assert callable(namespace["main"]) and isinstance(namespace["SipThread"], type)


def test_docs_tutorial_threads_proxy_serves_from_its_thread_and_stops_cleanly() -> None:
    namespace = load_program("tutorial-threads.md")

    async def scenario() -> None:
        uac = await UdpPeer.open()
        # The UAS drops the first request it reads: the MESSAGE's retransmission gets the 200.
        bob = await Uas.open("bob", 200, drop=1)
        namespace["LOCATIONS"] = {"sip:bob@example.com": f"sip:bob@{bob.endpoint.hostport}"}
        sip = namespace["SipThread"]((LOOPBACK, 0))
        sip.start()
        proxy: Endpoint = sip.endpoint
        try:
            await exercise(uac, bob, proxy)
        finally:
            # stop() joins the thread; it never waits long, but not on the loop.
            await asyncio.get_running_loop().run_in_executor(None, sip.stop)
            uac.close()
            bob.close()
        assert not sip.is_alive()
        assert port_is_free(proxy)

    async def exercise(uac: UdpPeer, bob: Uas, proxy: Endpoint) -> None:
        # A MESSAGE: looked up on a worker, relayed to the location, and
        # retransmitted (Timer E, T1 = 0.5 s) by the thread's select() timeout.
        message = build_request("MESSAGE", "sip:bob@example.com", uac.endpoint, call_id="t1")
        uac.send(message, proxy)
        answer = await uac.response()
        assert (answer.status_code, answer.to.tag) == (200, "bob")
        first, second = bob.received("MESSAGE")
        assert str(first.request.uri) == f"sip:bob@{bob.endpoint.hostport}"
        assert first.request.via[0].branch == second.request.via[0].branch
        assert 0.45 <= second.at - first.at <= 2.5, second.at - first.at

        # An INVITE: record-routed; the ACK and the BYE follow the route set.
        invite = build_request("INVITE", "sip:bob@example.com", uac.endpoint, call_id="t2")
        uac.send(invite, proxy)
        ok = await uac.response()
        assert ok.status_code == 200
        assert [str(rr.uri) for rr in ok.record_route] == [f"sip:{proxy.hostport};lr;ftag=uac-tag"]
        uac.send(in_dialog("ACK", ok, uac.endpoint, cseq=1), proxy)
        await until("the ACK reached bob", lambda: len(bob.received("ACK")) == 1)
        uac.send(in_dialog("BYE", ok, uac.endpoint, cseq=2), proxy)
        bye_answer = await uac.response()
        assert (bye_answer.status_code, bye_answer.cseq.method) == (200, "BYE")
        assert "Route" not in bob.received("BYE")[0].request

        # A user with no location.
        nobody = build_request("MESSAGE", "sip:carol@example.com", uac.endpoint, call_id="t3")
        uac.send(nobody, proxy)
        assert (await uac.response()).status_code == 404

    run(scenario())


# -- tutorial-load-balancer.md -------------------------------------------------------


def test_docs_load_balancer_fits_in_50_lines_and_runs_only_when_asked() -> None:
    code, _ = python_block("tutorial-load-balancer.md")
    assert len(code.splitlines()) <= 50, f"{len(code.splitlines())} lines"
    namespace = load_program("tutorial-load-balancer.md")
    assert callable(namespace["main"]) and callable(namespace["failover"])
    assert namespace["ds"].setids() == [1]


async def start_balancer(namespace: dict[str, Any], servers: list[Uas]) -> tuple[Endpoint, Any]:
    """Point the program's set 1 at ``servers`` (the first is the first
    choice of its round robin), listen on a free port, and run its main()."""
    ds = namespace["ds"]
    namespace["LISTEN"] = ["udp:127.0.0.1:0"]
    # Array order is the reverse of the list's (equal priorities).
    assert ds.load_list("".join(f"1 {uas.uri}\n" for uas in reversed(servers))) == []
    assert [d.uri for d in ds.destinations(1)] == [uas.uri for uas in servers]
    started: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
    namespace["print"] = lambda *args: started.set_result(args)  # learns the bound port
    task = asyncio.create_task(namespace["main"]())
    _, listen = await asyncio.wait_for(started, WAIT)
    assert isinstance(listen, Endpoint)
    return listen, task


async def stop_balancer(task: asyncio.Task[None], listen: Endpoint) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, WAIT)
    assert port_is_free(listen)


def test_docs_load_balancer_fails_over_from_a_503_server_and_marks_it_down() -> None:
    namespace = load_program("tutorial-load-balancer.md")
    ds, dialogs = namespace["ds"], namespace["dialogs"]
    # Probes every 2 s rather than 10, so that the test sees a round; the
    # first call is over long before it.
    ds.config = attrs.evolve(ds.config, ds_ping_interval=2)

    async def scenario() -> None:
        broken, good = await Uas.open("broken", 503), await Uas.open("good", 200)
        uac = await UdpPeer.open()
        listen, task = await start_balancer(namespace, [broken, good])
        try:
            await exercise(uac, broken, good, listen)
        finally:
            await stop_balancer(task, listen)
            for peer in (uac, broken, good):
                peer.close()

    async def exercise(uac: UdpPeer, broken: Uas, good: Uas, lb: Endpoint) -> None:
        # The first choice answers 503: the balancer ACKs it, marks it down
        # and relays to the next; the caller sees only the 200.
        uac.send(build_request("INVITE", "sip:service@example.com", uac.endpoint, call_id="b1"), lb)
        ok = await uac.response()
        assert (ok.status_code, ok.to.tag) == (200, "good")
        await until("the ACK of the 503 reached broken", lambda: len(broken.arrivals) == 2)
        assert [a.request.method for a in broken.arrivals] == ["INVITE", "ACK"]
        assert len(good.received("INVITE")) == 1
        assert ds.state(1, broken.uri) == S.INACTIVE | S.PROBING
        assert ds.is_active(1, good.uri)
        (dialog,) = dialogs
        assert (dialog.state, dialog.to_tag) == (DialogState.CONFIRMED_NA, "good")

        # In-dialog requests follow the route set to the server that answered.
        assert [str(rr.uri) for rr in ok.record_route] == [
            f"sip:{lb.hostport};lr;ftag=uac-tag;did={dialog.did}"
        ]
        uac.send(in_dialog("ACK", ok, uac.endpoint, cseq=1), lb)
        await until("the ACK reached good", lambda: len(good.received("ACK")) == 1)
        assert dialog.state == DialogState.CONFIRMED
        uac.send(in_dialog("BYE", ok, uac.endpoint, cseq=2), lb)
        assert (await uac.response()).cseq.method == "BYE"
        assert dialog.state == DialogState.DELETED

        # The next call skips the server that is down.
        uac.send(build_request("INVITE", "sip:service@example.com", uac.endpoint, call_id="b2"), lb)
        assert (await uac.response()).to.tag == "good"
        assert len(broken.received("INVITE")) == 1 and len(good.received("INVITE")) == 2

        # A round of probes (mode ALL: both servers): the healthy one answers
        # and is kept probing, the broken one answers 503 and stays down.
        await until(
            "a probe of good answered",
            lambda: ds.state(1, good.uri) == S.PROBING,
            timeout=2.0 + WAIT,
        )
        await until("broken probed", lambda: len(broken.received("OPTIONS")) >= 1)
        assert broken.received("OPTIONS")[0].request.uri == sipcore.parse_uri(broken.uri)
        await asyncio.sleep(0.1)  # its 503 is read by now
        assert ds.state(1, broken.uri) == S.INACTIVE | S.PROBING

    run(scenario())


def test_docs_load_balancer_fails_over_after_timer_b_from_a_silent_server() -> None:
    namespace = load_program("tutorial-load-balancer.md")
    ds = namespace["ds"]
    # T1 of 50 ms instead of 500: Timer B (64 * T1) ends the silent branch
    # after 3.2 s. Only the program's sipcore.ProxyConfig changes.
    t1 = 0.05
    namespace["sipcore"] = types.SimpleNamespace(
        Proxy=sipcore.Proxy,
        ProxyConfig=functools.partial(sipcore.ProxyConfig, timers=TimerSettings(t1=t1)),
        asyncio=sipcore.asyncio,
    )

    async def scenario() -> None:
        silent, good = await Uas.open("silent", None), await Uas.open("good", 200)
        uac = await UdpPeer.open()
        listen, task = await start_balancer(namespace, [silent, good])
        try:
            sent = time.monotonic()
            invite = build_request("INVITE", "sip:service@example.com", uac.endpoint, call_id="s1")
            uac.send(invite, listen)
            ok = await uac.response(timeout=64 * t1 + WAIT)
            assert (ok.status_code, ok.to.tag) == (200, "good")
            (failed_over,) = good.received("INVITE")
            assert failed_over.at - sent >= 64 * t1
            # Timer A retransmitted it to the silent server meanwhile.
            assert len(silent.received("INVITE")) >= 4
            assert ds.state(1, silent.uri) == S.INACTIVE | S.PROBING
            assert ds.is_active(1, good.uri)
        finally:
            await stop_balancer(task, listen)
            for peer in (uac, silent, good):
                peer.close()

    run(scenario())


def test_uas_helper_answers_as_documented() -> None:
    async def scenario() -> None:
        uas, uac = await Uas.open("x", 486, drop=1), await UdpPeer.open()
        request = build_request("OPTIONS", uas.uri, uac.endpoint, call_id="h1")
        uac.send(request, uas.endpoint)
        uac.send(request, uas.endpoint)
        answer: Response = await uac.response()
        assert (answer.status_code, answer.to.tag, len(uas.arrivals)) == (486, "x", 2)
        uas.close()
        uac.close()

    run(scenario())
