"""The management endpoint of ``sipcore-proxy``: JSON over HTTP on 127.0.0.1,
each route against a running app (real sockets), and what it refuses."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from aio_peers import WAIT
from app_helpers import Caller, Uas, app_toml, http, run, running, sip_udp, write_config
from sipcore.app import load_config
from sipcore_dialog import DialogState


def flags(listed: dict[str, object]) -> dict[str, str]:
    """URI -> FLAGS of every target in a dispatcher.list answer."""
    out = {}
    for record in listed["RECORDS"]:  # type: ignore[attr-defined]
        for target in record["SET"]["TARGETS"]:
            out[target["DEST"]["URI"]] = target["DEST"]["FLAGS"]
    return out


def test_dialogs_stats_and_profiles_describe_the_calls_in_progress(tmp_path: Path) -> None:
    async def main() -> None:
        uas = await Uas.open("uas")
        async with running(app_toml(tmp_path, uas.uri)) as app:
            mgmt = app.management_address
            alice = await Caller.open(sip_udp(app), "alice")
            answers = [await alice.call("m1"), await alice.call("m2")]
            await uas.wait_for("the ACKs", lambda: uas.methods().count("ACK") == 2)

            status, body = await http(mgmt, "GET", "/")
            assert status == 200 and "GET /dialogs" in body["result"]
            status, body = await http(mgmt, "GET", "/health")
            assert (status, body["result"]["status"]) == (200, "running")
            assert body["result"]["uptime"] >= 0

            status, body = await http(mgmt, "GET", "/dialogs")
            rows = body["result"]
            assert status == 200
            assert sorted(r["call-id"] for r in rows) == ["m1", "m2"]
            assert {r["state"] for r in rows} == {int(DialogState.CONFIRMED)}
            assert rows[0]["profiles"] == [{"caller": "alice"}, {"account": "alice@example.com"}]
            status, body = await http(mgmt, "GET", "/dialogs?call_id=m2&context=1")
            (row,) = body["result"]
            assert row["call-id"] == "m2" and "context" in row and row["caller"]["tag"] == "m2-tag"

            status, body = await http(mgmt, "GET", "/dialogs/stats")
            assert body["result"]["active"]["ongoing"] == 2
            assert body["result"]["statistics"]["active"] == 2

            status, body = await http(mgmt, "GET", "/profiles")
            assert body["result"] == {
                "caller": {"size": 2, "values": 1},
                "account": {"size": 2, "values": 1},
            }
            status, body = await http(mgmt, "GET", "/profiles/caller")
            assert body["result"] == {
                "profile": "caller",
                "value": None,
                "size": 2,
                "values": {"alice": 2},
                "truncated": False,
            }
            status, body = await http(mgmt, "GET", "/profiles/caller?value=bob")
            assert body["result"]["size"] == 0
            status, body = await http(mgmt, "GET", "/profiles/caller/dialogs?value=alice")
            assert sorted(r["call-id"] for r in body["result"]) == ["m1", "m2"]
            status, body = await http(mgmt, "GET", "/profiles/trunk")
            assert (status, body["error"]["message"]) == (404, "Profile not found: trunk")

            status, body = await http(mgmt, "GET", "/stats")
            stats = body["result"]
            assert stats["dialogs"]["active"] == 2 and stats["waiting_requests"] == 0
            assert stats["routing"]["over_caller_limit"] == 0
            assert stats["proxy"]["relayed"] >= 4

            # Ending a dialog from here: a BYE to each side.
            (row,) = [r for r in rows if r["call-id"] == "m1"]
            ended = await http(
                mgmt, "POST", "/dialogs/end", {"h_entry": row["h_entry"], "h_id": row["h_id"]}
            )
            assert ended == (200, {"result": "Ok. Dialog ended."})
            bye = await alice.peer.request("BYE")
            assert bye.call_id == "m1"
            await uas.wait_for("the BYE", lambda: "BYE" in uas.methods())
            assert app.tracker.get("m1", "m1-tag", "uas").state is DialogState.DELETED  # type: ignore[union-attr]
            status, body = await http(mgmt, "POST", "/dialogs/end", {"h_entry": 1, "h_id": 1})
            assert (status, body["error"]["message"]) == (404, "Dialog not found")
            status, body = await http(mgmt, "POST", "/dialogs/end", {"call_id": "m2"})
            assert (status, body["error"]["message"]) == (
                400,
                "from_tag must be a non-empty string",
            )
            assert (await alice.bye(answers[1], 3)).status_code == 200
            alice.close()
        uas.close()

    run(main())


def test_dispatcher_commands_list_mark_reload_and_switch_pings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sipcore.app")

    async def main() -> None:
        a, b, c = await Uas.open("a"), await Uas.open("b"), await Uas.open("c")
        text = app_toml(tmp_path, a.uri, b.uri, dispatcher_extra="reload_delta = 0\n")
        path = write_config(tmp_path, text)
        async with running(load_config(path)) as app:
            mgmt = app.management_address
            status, body = await http(mgmt, "GET", "/dispatcher/list")
            assert status == 200 and body["result"]["NRSETS"] == 1
            assert flags(body["result"]) == {a.uri: "AX", b.uri: "AX"}
            status, body = await http(mgmt, "GET", "/dispatcher/list?mode=full")
            target = body["result"]["RECORDS"][0]["SET"]["TARGETS"][0]["DEST"]
            assert target["IPADDR"] == "127.0.0.1"

            marked = await http(
                mgmt, "POST", "/dispatcher/set_state", {"state": "ip", "group": 1, "address": a.uri}
            )
            assert marked == (200, {"result": "Ok. Dispatcher state updated."})
            assert flags((await http(mgmt, "GET", "/dispatcher/list"))[1]["result"])[a.uri] == "IP"
            caller = await Caller.open(sip_udp(app))
            for call_id in ("s1", "s2"):
                answer = await caller.call(call_id)
                assert answer.to.tag == "b"
                assert (await caller.bye(answer)).status_code == 200
            status, body = await http(
                mgmt, "POST", "/dispatcher/set_state", {"state": "x", "group": 1, "address": a.uri}
            )
            assert (status, body["error"]["message"]) == (500, "Unknown State Value")
            status, body = await http(
                mgmt, "POST", "/dispatcher/set_state", {"state": "a", "group": 1}
            )
            assert status == 400 and "address" in body["error"]["message"]

            # Reload: the file gains c; a keeps the state it was given.
            path.write_text(
                app_toml(tmp_path, a.uri, b.uri, c.uri, dispatcher_extra="reload_delta = 0\n")
            )
            reloaded = await http(mgmt, "POST", "/dispatcher/reload")
            assert reloaded == (200, {"result": "Ok. Dispatcher successfully reloaded."})
            assert flags((await http(mgmt, "GET", "/dispatcher/list"))[1]["result"]) == {
                a.uri: "IP",
                b.uri: "AX",
                c.uri: "AX",
            }
            # A broken file is refused with its line; the table stays.
            path.write_text(path.read_text().replace(f'uri = "{c.uri}"', 'uri = "sip:[bad"'))
            status, body = await http(mgmt, "POST", "/dispatcher/reload")
            message = body["error"]["message"]
            assert status == 500 and message.startswith(f"Reload Failed: {path}:")
            assert "dispatcher.destinations[2].uri" in message
            assert len(flags((await http(mgmt, "GET", "/dispatcher/list"))[1]["result"])) == 3

            pings = await http(mgmt, "POST", "/dispatcher/ping_active", {"state": 0})
            assert pings == (200, {"result": {"NewPingState": 0, "OldPingState": 1}})
            assert (await http(mgmt, "POST", "/dispatcher/ping_active"))[1] == {
                "result": {"OldPingState": 0}
            }
            caller.close()
        for uas in (a, b, c):
            uas.close()

    run(main())
    downs = [r for r in caplog.records if getattr(r, "sipcore_event", None) == "destination.down"]
    assert [r.sipcore_fields["cause"] for r in downs] == ["dispatcher.set_state"]  # type: ignore[attr-defined]


def test_a_second_reload_within_reload_delta_is_refused(tmp_path: Path) -> None:
    async def main() -> None:
        path = write_config(tmp_path, app_toml(tmp_path, "sip:127.0.0.1:5999"))
        async with running(load_config(path)) as app:
            mgmt = app.management_address
            assert (await http(mgmt, "POST", "/dispatcher/reload"))[0] == 200
            status, body = await http(mgmt, "POST", "/dispatcher/reload")
            assert (status, body["error"]["message"]) == (500, "Ongoing reload")

    run(main())


BAD_REQUESTS = [
    pytest.param(b"GET /nowhere HTTP/1.1\r\n\r\n", 404, "no such endpoint: /nowhere", id="unknown"),
    pytest.param(
        b"GET /dispatcher/reload HTTP/1.1\r\n\r\n",
        405,
        "/dispatcher/reload takes POST",
        id="method",
    ),
    pytest.param(
        b"POST /dispatcher/set_state HTTP/1.1\r\nContent-Length: 5\r\n\r\n{oops",
        400,
        "not JSON",
        id="json",
    ),
    pytest.param(
        b"POST /dispatcher/set_state HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]",
        400,
        "JSON object",
        id="array",
    ),
    pytest.param(
        b"POST /dialogs/end HTTP/1.1\r\nContent-Length: 99999\r\n\r\n",
        413,
        "larger than 4096",
        id="large",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nX: " + b"y" * 5000 + b"\r\n\r\n", 431, "head too large", id="head"
    ),
    pytest.param(
        b"POST /dispatcher/reload HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        501,
        "chunked",
        id="chunked",
    ),
    pytest.param(b"BREW /pot HTCPCP/1.0\r\n\r\n", 400, "bad request line", id="line"),
    pytest.param(b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400, "bad header line", id="header"),
    pytest.param(
        b"GET /dispatcher/list?mode=long HTTP/1.1\r\n\r\n", 400, "mode is short or full", id="mode"
    ),
]


@pytest.mark.parametrize(("raw", "status", "message"), BAD_REQUESTS)
def test_the_endpoint_refuses_what_it_cannot_serve(
    tmp_path: Path, raw: bytes, status: int, message: str
) -> None:
    async def main() -> None:
        extra = "max_request_bytes = 4096\n"
        text = app_toml(tmp_path, "sip:127.0.0.1:5999").replace(
            'listen = "127.0.0.1:0"\n', f'listen = "127.0.0.1:0"\n{extra}'
        )
        async with running(text) as app:
            got, body = await http(app.management_address, "", "", raw=raw)
            assert got == status
            assert body["error"]["code"] == status and message in body["error"]["message"], body

    run(main())


def test_a_client_that_expects_100_continue_gets_it(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(app_toml(tmp_path, "sip:127.0.0.1:5999")) as app:
            assert app.management_address is not None
            reader, writer = await asyncio.open_connection(*app.management_address)
            body = b'{"state": 1}'
            writer.write(
                b"POST /dispatcher/ping_active HTTP/1.1\r\nExpect: 100-continue\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body)
            )
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(body)
            answer = await asyncio.wait_for(reader.read(), WAIT)
            writer.close()
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n")
            assert json.loads(answer.partition(b"\r\n\r\n")[2]) == {
                "result": {"NewPingState": 1, "OldPingState": 1}
            }

    run(main())
