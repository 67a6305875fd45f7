"""The minimal proxy in docs/asyncio.md, run exactly as written, on real sockets.

The page's one ``python`` code block is extracted and executed (not as
``__main__``); the test then points its UAS and BACKUP at in-test sockets,
listens on port 0 and runs its ``main()``: a call that the UAS answers 503
fails over to the backup, and the ACK and BYE follow the route set.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from pathlib import Path
from typing import Any

import sipcore
from aio_peers import WAIT, TcpPeer, UdpPeer, build_request, in_dialog
from sipcore import Endpoint, Request

PAGE = Path(__file__).resolve().parent.parent / "docs" / "asyncio.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.M | re.S)


def example_code() -> str:
    blocks = PYTHON_BLOCK.findall(PAGE.read_text(encoding="utf-8"))
    assert len(blocks) == 1, f"expected one python block in {PAGE.name}, found {len(blocks)}"
    code: str = blocks[0]
    return code


def test_docs_asyncio_md_has_the_example_and_it_runs_only_when_asked() -> None:
    namespace: dict[str, Any] = {"__name__": "docs_asyncio_example"}
    exec(compile(example_code(), str(PAGE), "exec"), namespace)
    assert callable(namespace["main"]) and callable(namespace["route"])
    assert len(example_code().splitlines()) <= 50, "the example must fit on one screen"


def test_docs_asyncio_example_relays_fails_over_and_routes_in_dialog_requests() -> None:
    namespace: dict[str, Any] = {"__name__": "docs_asyncio_example"}
    exec(compile(example_code(), str(PAGE), "exec"), namespace)

    async def scenario() -> None:
        uac, broken, backup = await UdpPeer.open(), await UdpPeer.open(), await UdpPeer.open()
        namespace["LISTEN"] = ["udp:127.0.0.1:0", "tcp:127.0.0.1:0"]
        namespace["UAS"], namespace["BACKUP"] = broken.endpoint, backup.endpoint
        started: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        namespace["print"] = lambda *args: started.set_result(args)  # learns the bound ports
        proxy_task = asyncio.create_task(namespace["main"]())
        _, udp, tcp = await asyncio.wait_for(started, WAIT)
        assert isinstance(udp, Endpoint) and isinstance(tcp, Endpoint)

        # A new call: the UAS is out of service, the failure route tries the backup.
        uac.send(build_request("INVITE", "sip:bob@example.com", uac.endpoint, call_id="d1"), udp)
        first = await broken.request("INVITE")
        broken.send(sipcore.make_response(first, 503, to_tag="down"), udp)
        assert (await broken.request("ACK")).to.tag == "down"  # the proxy's ACK for the 503
        second = await backup.request("INVITE")
        assert [str(rr.uri) for rr in second.record_route] == [
            f"sip:{udp.hostport};lr;ftag=uac-tag"
        ]
        ok = sipcore.make_response(second, 200, to_tag="up")
        ok.add_header("Contact", f"<sip:bob@{backup.endpoint.hostport}>")
        backup.send(ok, udp)
        answered = await uac.response()
        assert answered.status_code == 200 and answered.to.tag == "up"

        # In-dialog requests follow the route set to the backup.
        uac.send(in_dialog("ACK", answered, uac.endpoint, cseq=1), udp)
        assert "Route" not in await backup.request("ACK")
        uac.send(in_dialog("BYE", answered, uac.endpoint, cseq=2), udp)
        bye = await backup.request("BYE")
        backup.send(sipcore.make_response(bye, 200), udp)
        assert (await uac.response()).cseq.method == "BYE"

        # The TCP listener serves too: a MESSAGE over TCP goes to the UAS.
        client = await TcpPeer.connect(tcp)
        message = build_request("MESSAGE", "sip:bob@example.com", client.endpoint, call_id="d2")
        await client.write(bytes(message))
        relayed = await broken.request("MESSAGE")
        assert isinstance(relayed, Request) and relayed.via[1].transport == "TCP"
        broken.send(sipcore.make_response(relayed, 202), udp)
        assert (await client.response()).status_code == 202
        await client.close()

        # Cancelling main() closes the server (serve_forever, async with).
        proxy_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(proxy_task, WAIT)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind(udp.address)
        for peer in (uac, broken, backup):
            peer.close()

    async def bounded() -> None:
        await asyncio.wait_for(scenario(), 30.0)

    asyncio.run(bounded())
