"""sipcore.asyncio: a real Proxy on real 127.0.0.1 sockets, driven by asyncio.

Each test runs its own event loop with ``asyncio.run``; the peers are the
in-test sockets of ``aio_peers``, and every wait is bounded (``WAIT``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import socket
import struct
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest

import sipcore
import sipcore.asyncio
from aio_peers import LOOPBACK, WAIT, TcpPeer, UdpPeer, build_request, in_dialog
from sipcore import Endpoint, Proxy, ProxyConfig, Request, RequestContext, Response, Send
from sipcore.asyncio import ConnectionLimits

UDP0 = Endpoint(LOOPBACK, 0, "UDP")
TCP0 = Endpoint(LOOPBACK, 0, "TCP")
Route = Callable[[RequestContext], None]


def run(coro: Coroutine[Any, Any, None]) -> None:
    """Run one test's coroutine on a fresh loop, bounded as a whole."""

    async def bounded() -> None:
        await asyncio.wait_for(coro, 30.0)

    asyncio.run(bounded())


def relaying_to(
    target: Endpoint, failures: list[list[tuple[int | None, bool]]] | None = None
) -> Route:
    """A record-routing script: OPTIONS to the proxy answered 200, in-dialog
    requests along their route set, everything else to ``target``.
    ``failures`` collects the branches' (status, made here) at failure time."""

    def failed(ctx: RequestContext) -> None:
        if failures is not None:
            failures.append([(b.status_code, b.local) for b in ctx.branches])

    def route(ctx: RequestContext) -> None:
        if ctx.loose_route():
            if ctx.is_stateless:
                ctx.forward()
            else:
                ctx.relay()
            return
        uri = ctx.request.uri
        if ctx.method == "OPTIONS" and isinstance(uri, sipcore.SipURI) and uri.user is None:
            ctx.reply(200)
            return
        ctx.record_route()
        ctx.on_failure(failed)
        ctx.relay(target)

    return route


@contextlib.asynccontextmanager
async def proxy_on(
    route: Route,
    *listen: Endpoint,
    timers: sipcore.TimerSettings | None = None,
    limits: ConnectionLimits | None = None,
) -> AsyncIterator[sipcore.asyncio.Server]:
    """A Proxy served on ``listen`` (port 0: the factory gets the real ports)."""

    def make(bound: tuple[Endpoint, ...]) -> Proxy:
        config = ProxyConfig(listen=bound, timers=timers or sipcore.TimerSettings())
        return Proxy(config, route)

    server = await sipcore.asyncio.serve(make, listen=listen or (UDP0,), limits=limits)
    async with server:
        yield server


def closed_tcp_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (connect is refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
    return port


def options(me: Endpoint, to: Endpoint, cseq: int = 1) -> Request:
    return build_request("OPTIONS", f"sip:{to.hostport}", me, call_id=f"opt-{cseq}", cseq=cseq)


# -- UDP ------------------------------------------------------------------------------------


def test_udp_options_is_answered_200_through_a_real_socket() -> None:
    async def main() -> None:
        async with proxy_on(relaying_to(Endpoint(LOOPBACK, 9))) as server:
            proxy = server.listen[0]
            assert proxy.port != 0
            client = await UdpPeer.open()
            request = options(client.endpoint, proxy)
            client.send(request, proxy)
            message, source, _ = await client.receive()
            assert isinstance(message, Response)
            assert message.status_code == 200
            assert message.call_id == request.call_id
            assert message.via[0].branch == request.via[0].branch
            assert source == proxy  # answered from the socket it was sent to
            client.close()

    run(main())


def test_udp_invite_200_ack_bye_are_relayed_between_two_sockets() -> None:
    async def main() -> None:
        uac, uas = await UdpPeer.open(), await UdpPeer.open()
        async with proxy_on(relaying_to(uas.endpoint)) as server:
            proxy = server.listen[0]
            invite = build_request(
                "INVITE", f"sip:bob@{proxy.hostport}", uac.endpoint, call_id="c1"
            )
            uac.send(invite, proxy)

            trying = await uac.response(skip_100=False)
            assert trying.status_code == 100
            relayed, source, _ = await uas.receive()
            assert isinstance(relayed, Request) and relayed.method == "INVITE"
            assert source == proxy
            assert relayed.via[0].sent_by == proxy.hostport
            assert relayed.via[1].branch == invite.via[0].branch
            assert [str(rr.uri) for rr in relayed.record_route] == [
                f"sip:{proxy.hostport};lr;ftag=uac-tag"
            ]
            assert relayed.max_forwards == 69

            uas.send(sipcore.make_response(relayed, 180, to_tag="uas-tag"), proxy)
            ok = sipcore.make_response(relayed, 200, to_tag="uas-tag")
            ok.add_header("Contact", f"<sip:bob@{uas.endpoint.hostport}>")
            uas.send(ok, proxy)
            ringing, answered = await uac.response(), await uac.response()
            assert (ringing.status_code, answered.status_code) == (180, 200)
            assert len(answered.via) == 1 and answered.via[0].branch == invite.via[0].branch
            assert [str(rr.uri) for rr in answered.record_route] == [
                f"sip:{proxy.hostport};lr;ftag=uac-tag"
            ]
            remote_target = str(answered.contact[0].uri)

            ack = in_dialog("ACK", answered, uac.endpoint, cseq=1)
            uac.send(ack, proxy)
            got_ack = await uas.request("ACK")
            assert "Route" not in got_ack  # the proxy took its own Route off
            assert got_ack.via[1].branch == ack.via[0].branch

            bye = in_dialog("BYE", answered, uac.endpoint, cseq=2)
            uac.send(bye, proxy)
            got_bye = await uas.request("BYE")
            assert str(got_bye.uri) == remote_target
            uas.send(sipcore.make_response(got_bye, 200), proxy)
            bye_ok = await uac.response()
            assert bye_ok.status_code == 200 and bye_ok.cseq.method == "BYE"
        uac.close()
        uas.close()

    run(main())


def test_udp_invite_is_retransmitted_by_the_proxy_timer_until_timer_b() -> None:
    async def main() -> None:
        uac, silent_uas = await UdpPeer.open(), await UdpPeer.open()
        timers = sipcore.TimerSettings(t1=0.05)  # A: 50, 100, 200... ms; B: 3.2 s
        async with proxy_on(relaying_to(silent_uas.endpoint), timers=timers) as server:
            proxy = server.listen[0]
            uac.send(
                build_request("INVITE", "sip:bob@example.com", uac.endpoint, call_id="t"), proxy
            )
            arrivals: list[float] = []
            copies: set[bytes] = set()
            while len(arrivals) < 6:  # the original and 5 retransmissions
                message, _, at = await silent_uas.receive(timeout=2.0)
                assert isinstance(message, Request) and message.method == "INVITE"
                arrivals.append(at)
                copies.add(bytes(message))
            assert len(copies) == 1, "a retransmission is the same request again"
            gaps = [b - a for a, b in itertools.pairwise(arrivals)]
            assert all(later > earlier for earlier, later in itertools.pairwise(gaps)), gaps
            assert 0.03 < gaps[0] < 0.5, gaps

            final = await uac.response(timeout=5.0)  # Timer B fired in the proxy
            assert final.status_code == 408
        uac.close()
        silent_uas.close()

    run(main())


def test_udp_send_error_is_reported_as_a_transport_error() -> None:
    async def main() -> None:
        failures: list[list[tuple[int | None, bool]]] = []
        uac = await UdpPeer.open()
        # sendto() refuses port 0 at once (EINVAL): the adapter reports it.
        async with proxy_on(relaying_to(Endpoint(LOOPBACK, 0), failures)) as server:
            proxy = server.listen[0]
            uac.send(
                build_request("INVITE", "sip:bob@example.com", uac.endpoint, call_id="e"), proxy
            )
            final = await uac.response()
            # 16.7 step 6: a lone 503 (the local one) goes upstream as 500.
            assert final.status_code == 500
            assert failures == [[(503, True)]]
        uac.close()

    run(main())


def test_malformed_datagrams_do_not_stop_the_server() -> None:
    async def main() -> None:
        async with proxy_on(relaying_to(Endpoint(LOOPBACK, 9))) as server:
            proxy = server.listen[0]
            client = await UdpPeer.open()
            assert client.transport is not None
            for junk in (
                b"",
                b"\x00\xff\xfe garbage",
                b"INVITE sip:x SIP/2.0\r\nVia: broken\r\n\r\n",
            ):
                client.transport.sendto(junk, proxy.address)
            request = options(client.endpoint, proxy)
            client.send(request, proxy)
            while True:  # the broken INVITE may be answered 400 first
                answer = await client.response()
                if answer.call_id == request.call_id:
                    break
                assert answer.status_code == 400
            assert answer.status_code == 200
            client.close()

    run(main())


class EchoCore:
    """A core that is not a Proxy: echoes each datagram back, raises on "boom"."""

    def __init__(self) -> None:
        self.received = 0

    def receive(self, data: bytes | Request | Response, source: Endpoint, now: float) -> list[Send]:
        self.received += 1
        message = sipcore.parse_message(data) if isinstance(data, bytes) else data
        if b"boom" in message.body:
            raise RuntimeError("the core's own bug")
        return [Send(message, source)]

    def tick(self, now: float) -> list[Send]:
        return []

    def next_deadline(self) -> float | None:
        return None

    def take(self) -> list[Send]:
        return []

    def transport_error(self, send: Send, now: float) -> list[Send]:
        return []


def test_any_core_of_the_protocol_shape_is_served_and_its_exceptions_are_contained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = EchoCore()

    async def main() -> None:
        async with await sipcore.asyncio.serve(core, listen=["udp:127.0.0.1:0"]) as server:
            peer = await UdpPeer.open()
            request = options(peer.endpoint, server.listen[0])
            request.set_body(b"boom", "text/plain")
            peer.send(request, server.listen[0])
            request.set_body(b"fine", "text/plain")
            peer.send(request, server.listen[0])
            echoed, _, _ = await peer.receive()
            assert echoed.body == b"fine"
            peer.close()

    with caplog.at_level(logging.ERROR, logger="sipcore.asyncio"):
        run(main())
    assert core.received == 2
    assert any("the core raised" in r.getMessage() for r in caplog.records)


# -- TCP ------------------------------------------------------------------------------------


def test_tcp_frames_two_messages_in_one_segment_and_one_split_in_two() -> None:
    async def main() -> None:
        async with proxy_on(relaying_to(Endpoint(LOOPBACK, 9)), UDP0, TCP0) as server:
            proxy = server.listen[1]
            client = await TcpPeer.connect(proxy)
            sock = client.writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            first, second = options(client.endpoint, proxy, 1), options(client.endpoint, proxy, 2)
            await client.write(bytes(first) + bytes(second))
            answers = [await client.response(), await client.response()]
            assert [(r.status_code, r.cseq.number) for r in answers] == [(200, 1), (200, 2)]

            third = bytes(options(client.endpoint, proxy, 3))
            await client.write(third[:40])
            with pytest.raises(TimeoutError):  # half a message is not a message
                await client.response(timeout=0.2)
            await client.write(third[40:])
            answer = await client.response()
            assert (answer.status_code, answer.cseq.number) == (200, 3)
            assert answer.via[0].transport == "TCP"
            assert server.connections == 1
            await client.close()

    run(main())


def test_tcp_keepalive_ping_is_answered_with_a_crlf() -> None:
    async def main() -> None:
        async with proxy_on(relaying_to(Endpoint(LOOPBACK, 9)), TCP0) as server:
            proxy = server.listen[0]
            client = await TcpPeer.connect(proxy)
            await client.write(b"\r\n\r\n")
            pong = await asyncio.wait_for(client.reader.readexactly(2), WAIT)
            assert pong == b"\r\n"
            # The connection is still usable for SIP after the ping.
            await client.write(bytes(options(client.endpoint, proxy)))
            assert (await client.response()).status_code == 200
            await client.close()

    run(main())


def test_unframeable_tcp_stream_is_closed_and_the_server_keeps_serving() -> None:
    async def main() -> None:
        async with proxy_on(relaying_to(Endpoint(LOOPBACK, 9)), TCP0) as server:
            proxy = server.listen[0]
            bad = await TcpPeer.connect(proxy)
            no_length = bytes(options(bad.endpoint, proxy)).replace(b"Content-Length: 0\r\n", b"")
            await bad.write(no_length)  # a stream message needs a Content-Length
            assert await bad.closed_by_peer()
            good = await TcpPeer.connect(proxy)
            await good.write(bytes(options(good.endpoint, proxy)))
            assert (await good.response()).status_code == 200
            await bad.close()
            await good.close()

    run(main())


def test_tcp_connections_over_the_cap_are_refused() -> None:
    async def main() -> None:
        limits = ConnectionLimits(max_connections=1)
        async with proxy_on(relaying_to(Endpoint(LOOPBACK, 9)), TCP0, limits=limits) as server:
            proxy = server.listen[0]
            first = await TcpPeer.connect(proxy)
            await first.write(bytes(options(first.endpoint, proxy, 1)))
            assert (await first.response()).status_code == 200
            second = await TcpPeer.connect(proxy)
            assert await second.closed_by_peer()
            await first.write(bytes(options(first.endpoint, proxy, 2)))
            assert (await first.response()).status_code == 200
            assert server.connections == 1
            await first.close()
            await second.close()

    run(main())


class TcpUas:
    """An in-test TCP UAS: answers INVITE and BYE 200 on the connection they came on."""

    def __init__(self, *, reset_on_invite: bool = False) -> None:
        self.reset_on_invite = reset_on_invite
        self.accepted = 0
        self.requests: list[Request] = []
        self.server: asyncio.Server | None = None

    @property
    def endpoint(self) -> Endpoint:
        assert self.server is not None
        return Endpoint(LOOPBACK, self.server.sockets[0].getsockname()[1], "TCP")

    async def start(self) -> TcpUas:
        self.server = await asyncio.start_server(self.handle, LOOPBACK, 0)
        return self

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        peer = TcpPeer(reader, writer)
        try:
            while True:
                event = await peer.event(timeout=10.0)
                if not isinstance(event, Request):
                    continue
                self.requests.append(event)
                if self.reset_on_invite and event.method == "INVITE":
                    sock = writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    writer.transport.abort()  # RST: the connection breaks
                    return
                if event.method != "ACK":
                    ok = sipcore.make_response(event, 200, to_tag="tcp-uas")
                    ok.add_header("Contact", f"<sip:bob@{self.endpoint.hostport};transport=tcp>")
                    await peer.write(bytes(ok))
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()


def test_send_to_a_tcp_endpoint_opens_one_connection_and_reuses_it() -> None:
    async def main() -> None:
        uas = await TcpUas().start()
        uac = await UdpPeer.open()
        async with proxy_on(relaying_to(uas.endpoint), UDP0, TCP0) as server:
            udp, tcp = server.listen
            uac.send(
                build_request("INVITE", "sip:bob@example.com", uac.endpoint, call_id="t1"), udp
            )
            answered = await uac.response()
            assert answered.status_code == 200
            assert uas.requests[0].via[0].transport == "TCP"
            assert uas.requests[0].via[0].sent_by == tcp.hostport

            uac.send(in_dialog("ACK", answered, uac.endpoint, cseq=1), udp)
            uac.send(in_dialog("BYE", answered, uac.endpoint, cseq=2), udp)
            bye_ok = await uac.response()
            assert (bye_ok.status_code, bye_ok.cseq.method) == (200, "BYE")
            assert [r.method for r in uas.requests] == ["INVITE", "ACK", "BYE"]
            assert uas.accepted == 1, "the ACK and BYE went over the INVITE's connection"
            assert server.connections == 1
        uac.close()
        uas.close()

    run(main())


def test_unreachable_tcp_endpoint_is_reported_and_the_client_is_answered() -> None:
    async def main() -> None:
        failures: list[list[tuple[int | None, bool]]] = []
        uac = await UdpPeer.open()
        nowhere = Endpoint(LOOPBACK, closed_tcp_port(), "TCP")
        async with proxy_on(relaying_to(nowhere, failures), UDP0, TCP0) as server:
            uac.send(
                build_request("INVITE", "sip:bob@example.com", uac.endpoint, call_id="u"),
                server.listen[0],
            )
            final = await uac.response()  # long before Timer B's 32 s
            # The refused connect made the branch a local 503 (RFC 3261 16.9);
            # 16.7 step 6 turns a lone 503 into a 500 upstream.
            assert final.status_code == 500
            assert failures == [[(503, True)]]
            assert server.connections == 0
        uac.close()

    run(main())


def test_tcp_connect_that_never_completes_times_out_as_a_transport_error() -> None:
    async def main() -> None:
        failures: list[list[tuple[int | None, bool]]] = []
        uac = await UdpPeer.open()
        with socket.socket() as deaf, socket.socket() as filler:
            deaf.bind((LOOPBACK, 0))
            deaf.listen(0)  # never accepts: once one connection waits, SYNs are dropped
            filler.connect(deaf.getsockname())
            target = Endpoint(LOOPBACK, deaf.getsockname()[1], "TCP")
            limits = ConnectionLimits(connect_timeout=0.3)
            async with proxy_on(relaying_to(target, failures), UDP0, limits=limits) as server:
                loop = asyncio.get_running_loop()
                sent = loop.time()
                uac.send(
                    build_request("INVITE", "sip:bob@example.com", uac.endpoint, call_id="d"),
                    server.listen[0],
                )
                final = await uac.response()
                assert final.status_code == 500
                assert loop.time() - sent >= 0.3
                assert failures == [[(503, True)]]
        uac.close()

    run(main())


def test_broken_tcp_connection_is_reported_as_a_transport_error() -> None:
    async def main() -> None:
        failures: list[list[tuple[int | None, bool]]] = []
        uas = await TcpUas(reset_on_invite=True).start()
        uac = await UdpPeer.open()
        async with proxy_on(relaying_to(uas.endpoint, failures), UDP0, TCP0) as server:
            uac.send(
                build_request("INVITE", "sip:bob@example.com", uac.endpoint, call_id="b"),
                server.listen[0],
            )
            final = await uac.response()
            assert final.status_code == 500
            assert failures == [[(503, True)]]
            assert [r.method for r in uas.requests] == ["INVITE"]
            assert server.connections == 0
        uac.close()
        uas.close()

    run(main())


# -- binding, closing -------------------------------------------------------------------------


def test_port_zero_binds_real_ports_and_the_factory_gets_them() -> None:
    async def main() -> None:
        seen: list[tuple[Endpoint, ...]] = []

        def make(bound: tuple[Endpoint, ...]) -> Proxy:
            seen.append(bound)
            return Proxy(ProxyConfig(listen=bound), relaying_to(Endpoint(LOOPBACK, 9)))

        server = await sipcore.asyncio.serve(make, listen=["udp:127.0.0.1:0", TCP0])
        async with server:
            udp, tcp = server.listen
            assert (udp.transport, tcp.transport) == ("UDP", "TCP")
            assert udp.port > 0 and tcp.port > 0
            assert seen == [server.listen]
            proxy = server.core
            assert isinstance(proxy, Proxy) and proxy.config.listen == server.listen

        with pytest.raises(sipcore.LocalProtocolError):
            await sipcore.asyncio.serve(Proxy(ProxyConfig(listen=(UDP0,)), make_route()))

    run(main())


def make_route() -> Route:
    return relaying_to(Endpoint(LOOPBACK, 9))


def test_a_proxy_is_served_on_its_configured_listen_addresses() -> None:
    async def main() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((LOOPBACK, 0))
            port = probe.getsockname()[1]
        listen = Endpoint(LOOPBACK, port, "UDP")
        proxy = Proxy(ProxyConfig(listen=(listen,)), make_route())
        async with await sipcore.asyncio.serve(proxy) as server:
            assert server.listen == (listen,)
            assert server.core is proxy
            client = await UdpPeer.open()
            client.send(options(client.endpoint, listen), listen)
            assert (await client.response()).status_code == 200
            client.close()

    run(main())


def test_close_releases_the_sockets_and_stops_the_timer() -> None:
    async def main() -> None:
        uac, silent_uas = await UdpPeer.open(), await UdpPeer.open()
        timers = sipcore.TimerSettings(t1=0.05)
        async with proxy_on(relaying_to(silent_uas.endpoint), UDP0, TCP0, timers=timers) as server:
            udp, tcp = server.listen
            client = await TcpPeer.connect(tcp)
            uac.send(build_request("INVITE", "sip:bob@example.com", uac.endpoint, call_id="x"), udp)
            await silent_uas.request("INVITE")
            await silent_uas.request("INVITE")  # a retransmission: the timer runs
        # Closed: the client's connection ends, no retransmission follows
        # (two more were due within 0.5 s), and both ports are free again.
        assert await client.closed_by_peer()
        await asyncio.sleep(0.05)
        while not silent_uas.inbox.empty():  # sent before the close
            silent_uas.inbox.get_nowait()
        with pytest.raises(TimeoutError):
            await silent_uas.receive(timeout=0.5)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind(udp.address)
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection(*tcp.address)
        await client.close()
        uac.close()
        silent_uas.close()

    run(main())


def test_serve_forever_returns_when_the_server_is_closed() -> None:
    async def main() -> None:
        async with proxy_on(make_route()) as server:
            forever = asyncio.ensure_future(server.serve_forever())
            await asyncio.sleep(0)
            assert not forever.done()
            server.close()
            await asyncio.wait_for(forever, WAIT)

    run(main())


def test_a_suspended_request_answered_later_goes_out_on_flush() -> None:
    async def main() -> None:
        servers: list[sipcore.asyncio.Server] = []

        def answer_later(ctx: RequestContext) -> None:
            ctx.reply(200)
            servers[0].flush()

        def route(ctx: RequestContext) -> None:
            ctx.suspend()  # e.g. waiting for a database: answered from a callback
            asyncio.get_running_loop().call_later(0.05, answer_later, ctx)

        async with proxy_on(route, TCP0) as server:
            servers.append(server)
            proxy = server.listen[0]
            client = await TcpPeer.connect(proxy)  # TCP: no retransmission to help it out
            await client.write(bytes(options(client.endpoint, proxy)))
            answer = await client.response(timeout=1.0)
            assert answer.status_code == 200
            await client.close()

    run(main())


def test_an_idle_tcp_connection_is_closed() -> None:
    async def main() -> None:
        limits = ConnectionLimits(idle_timeout=0.2)
        async with proxy_on(make_route(), TCP0, limits=limits) as server:
            proxy = server.listen[0]
            client = await TcpPeer.connect(proxy)
            await client.write(bytes(options(client.endpoint, proxy)))
            assert (await client.response()).status_code == 200
            assert server.connections == 1
            assert await client.closed_by_peer(timeout=2.0)
            await asyncio.sleep(0)
            assert server.connections == 0
            await client.close()

    run(main())


def test_import_sipcore_does_not_load_the_adapter_and_the_adapter_uses_the_stdlib_asyncio() -> None:
    code = (
        "import sys, sipcore; assert 'sipcore.asyncio' not in sys.modules; "
        "import sipcore.asyncio, asyncio; "
        "assert sipcore.asyncio.asyncio is asyncio; "
        "assert asyncio.__file__.endswith('asyncio/__init__.py')"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
