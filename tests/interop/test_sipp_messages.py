"""sipp and sipcore exchange real datagrams on 127.0.0.1.

Two directions: sipp's built-in UAC calls a tiny UAS written here with a
plain socket, which parses every datagram with sipcore and answers with
sipcore-built responses; and sipcore-built requests call sipp's built-in
UAS. Both prove that what sipcore reads and writes is what a widely used
SIP implementation writes and reads.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

import sipcore

from .conftest import LOOPBACK, SIPP_ALL_CALLS_SUCCESSFUL, StartSipp

pytestmark = pytest.mark.interop

CALLS = 5
SIPP_TIMEOUT = 20.0
# Upper bounds for the hand-written peers, so that no loop can run away.
MAX_DATAGRAMS = 50 * CALLS
SERVE_SECONDS = SIPP_TIMEOUT + 5.0
RECV_POLL_SECONDS = 0.2

SDP_ANSWER = (
    b"v=0\r\n"
    b"o=sipcore 1 1 IN IP4 127.0.0.1\r\n"
    b"s=-\r\n"
    b"c=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)


def raw_header(data: bytes, name: str) -> str:
    """A header's value read with a regex, independently of sipcore."""
    match = re.search(rb"^" + name.encode() + rb"[ \t]*:[ \t]*(.*?)\r?$", data, re.M | re.I)
    assert match is not None, f"no {name} header in {data!r}"
    return match.group(1).decode()


@dataclass
class TinyUas:
    """A UAS on a plain UDP socket: sipcore parses, sipcore answers.

    INVITE gets 100, 180 and a 200 with Contact and SDP; BYE gets 200; ACK
    gets nothing. Every check that fails is recorded in ``problems`` (an
    assertion raised in the thread would be lost), and the test asserts the
    list is empty.
    """

    sock: socket.socket
    stop: threading.Event = field(default_factory=threading.Event)
    problems: list[str] = field(default_factory=list)
    seen: dict[str, set[str]] = field(default_factory=dict)
    to_tags: dict[str, str] = field(default_factory=dict)
    datagrams: int = 0

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def serve(self) -> None:
        deadline = time.monotonic() + SERVE_SECONDS
        while (
            not self.stop.is_set()
            and time.monotonic() < deadline
            and self.datagrams < MAX_DATAGRAMS
        ):
            try:
                data, source = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.datagrams += 1
            try:
                self.handle(data, source)
            except Exception as exc:  # recorded for the test thread to report
                self.problems.append(f"{type(exc).__name__}: {exc} while handling {data!r}")

    def handle(self, data: bytes, source: tuple[str, int]) -> None:
        msg = sipcore.parse_message(data)
        if not isinstance(msg, sipcore.Request):
            self.problems.append(f"expected a request, got {msg!r}")
            return
        self.check_fields(msg, data)
        self.seen.setdefault(msg.method, set()).add(msg.call_id)
        if msg.method == "INVITE":
            to_tag = self.to_tags.setdefault(msg.call_id, f"uas{len(self.to_tags) + 1}")
            self.send(sipcore.make_response(msg, 100), source)
            self.send(sipcore.make_response(msg, 180, to_tag=to_tag), source)
            ok = sipcore.make_response(msg, 200, to_tag=to_tag)
            ok.add_header("Contact", f"<sip:uas@{LOOPBACK}:{self.port}>")
            ok.set_body(SDP_ANSWER, "application/sdp")
            self.send(ok, source)
        elif msg.method == "BYE":
            self.send(sipcore.make_response(msg, 200), source)
        elif msg.method != "ACK":
            self.problems.append(f"unexpected {msg.method}")

    def check_fields(self, msg: sipcore.Request, data: bytes) -> None:
        expected_cseq = raw_header(data, "CSeq").split()
        checks = {
            "Call-ID": (msg.call_id, raw_header(data, "Call-ID")),
            "CSeq number": (str(msg.cseq.number), expected_cseq[0]),
            "CSeq method": (msg.cseq.method, msg.method),
            "CSeq method as written": (msg.cseq.method, expected_cseq[1]),
            "Via transport": (msg.via[0].transport, "UDP"),
            "Via host": (msg.via[0].host, LOOPBACK),
            "branch cookie": ((msg.via[0].branch or "")[:7], "z9hG4bK"),
            "From tag from sipp": ("SIPpTag" in (msg.from_.tag or ""), True),
            "From URI host": (getattr(msg.from_.uri, "host", None), LOOPBACK),
        }
        for what, (got, want) in checks.items():
            if got != want:
                self.problems.append(f"{msg.method} {what}: read {got!r}, expected {want!r}")
        # The To tag is ours from the 200 on: ACK and BYE must carry it back.
        if msg.method in ("ACK", "BYE") and msg.to.tag != self.to_tags.get(msg.call_id):
            self.problems.append(f"{msg.method} To tag {msg.to.tag!r} is not ours")
        if msg.method == "INVITE" and (msg.content_type != "application/sdp" or not msg.body):
            self.problems.append(f"INVITE without SDP: {msg.content_type!r} {msg.body!r}")

    def send(self, response: sipcore.Response, destination: tuple[str, int]) -> None:
        self.sock.sendto(bytes(response), destination)


@pytest.fixture
def tiny_uas() -> Iterator[TinyUas]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.settimeout(RECV_POLL_SECONDS)
        uas = TinyUas(sock)
        thread = threading.Thread(target=uas.serve, name="tiny-uas", daemon=True)
        thread.start()
        yield uas
        uas.stop.set()
        thread.join(timeout=5)


def test_sipp_uac_completes_every_call_against_a_sipcore_uas(
    start_sipp: StartSipp, udp_port: Callable[[], int], tiny_uas: TinyUas
) -> None:
    sipp = start_sipp(
        scenario="uac",
        local_port=udp_port(),
        remote=(LOOPBACK, tiny_uas.port),
        calls=CALLS,
        rate=20,
        timeout=SIPP_TIMEOUT,
    )
    result = sipp.wait()
    tiny_uas.stop.set()

    assert tiny_uas.problems == []
    assert result.returncode == SIPP_ALL_CALLS_SUCCESSFUL, result.describe()
    assert result.successful_calls == CALLS, result.describe()
    assert result.failed_calls == 0, result.describe()
    assert {method: len(ids) for method, ids in tiny_uas.seen.items()} == {
        "INVITE": CALLS,
        "ACK": CALLS,
        "BYE": CALLS,
    }


@dataclass
class UacSocket:
    """The test's side of a call to sipp's UAS: one socket, bounded waits."""

    sock: socket.socket
    peer: tuple[str, int]

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    def send(self, request: sipcore.Request) -> None:
        self.sock.sendto(bytes(request), self.peer)

    def receive(self, timeout: float) -> sipcore.Response | None:
        self.sock.settimeout(timeout)
        try:
            data, _ = self.sock.recvfrom(65535)
        except TimeoutError:
            return None
        msg = sipcore.parse_message(data)
        assert isinstance(msg, sipcore.Response), f"expected a response, got {data!r}"
        return msg

    def transact(self, request: sipcore.Request, final_status: int) -> list[sipcore.Response]:
        """Send ``request`` until a response comes (Timer A style, bounded),
        then collect responses until the final one."""
        responses: list[sipcore.Response] = []
        deadline = time.monotonic() + 10.0
        interval = 0.5
        # sipp may still be binding its socket: retransmit until it answers.
        for _ in range(20):
            self.send(request)
            first = self.receive(interval)
            if first is not None:
                responses.append(first)
                break
        else:
            raise AssertionError(f"no answer from sipp to {request.method}")
        while responses[-1].status_code < 200 and time.monotonic() < deadline:
            nxt = self.receive(max(0.0, deadline - time.monotonic()))
            if nxt is None:
                break
            responses.append(nxt)
        assert responses[-1].status_code == final_status, [
            (r.status_code, r.reason) for r in responses
        ]
        return responses


@pytest.fixture
def uac_socket(udp_port: Callable[[], int]) -> Iterator[UacSocket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        yield UacSocket(sock, (LOOPBACK, udp_port()))


def test_sipcore_requests_complete_a_call_with_sipp_uas(
    start_sipp: StartSipp, uac_socket: UacSocket
) -> None:
    sipp = start_sipp(
        scenario="uas",
        local_port=uac_socket.peer[1],
        calls=1,
        timeout=SIPP_TIMEOUT,
    )
    me = f"{LOOPBACK}:{uac_socket.port}"
    target = f"sip:service@{LOOPBACK}:{uac_socket.peer[1]}"
    call_id = f"{sipcore.new_tag()}@{LOOPBACK}"
    from_tag = sipcore.new_tag()

    def request(method: str, uri: str, cseq: int, *, to: str = target) -> sipcore.Request:
        return sipcore.make_request(
            method,
            uri,
            from_=f"sipcore <sip:alice@{me}>",
            to=to,
            via=f"SIP/2.0/UDP {me};branch={sipcore.new_branch()}",
            call_id=call_id,
            cseq=cseq,
            from_tag=from_tag,
            contact=f"<sip:alice@{me}>",
        )

    invite = request("INVITE", target, 1)
    invite.set_body(SDP_ANSWER, "application/sdp")
    responses = request_and_check(uac_socket, invite, 200)
    ok = responses[-1]
    assert [r.status_code for r in responses][-2:] == [180, 200]
    to_tag = ok.to.tag
    assert to_tag is not None
    assert ok.cseq.number == 1 and ok.cseq.method == "INVITE"
    assert ok.call_id == call_id and ok.from_.tag == from_tag
    assert ok.via[0].branch == invite.via[0].branch
    assert ok.contact, "sipp's 200 has a Contact"
    assert ok.content_type == "application/sdp" and ok.body.startswith(b"v=0")

    # In-dialog requests go to the remote target (the Contact of the 200)
    # and carry the To tag sipp chose.
    remote_target = str(ok.contact[0].uri)
    to_with_tag = f"<{target}>;tag={to_tag}"
    ack = request("ACK", remote_target, 1, to=to_with_tag)
    uac_socket.send(ack)
    bye = request("BYE", remote_target, 2, to=to_with_tag)
    bye_responses = request_and_check(uac_socket, bye, 200)
    assert bye_responses[-1].cseq.method == "BYE"

    # sipp's built-in UAS keeps the call for a 4 s timewait after the BYE,
    # so this wait is most of the test's run time.
    result = sipp.wait()
    assert result.returncode == SIPP_ALL_CALLS_SUCCESSFUL, result.describe()
    assert result.successful_calls == 1, result.describe()


def request_and_check(
    uac: UacSocket, request: sipcore.Request, final_status: int
) -> list[sipcore.Response]:
    responses = uac.transact(request, final_status)
    for response in responses:
        assert response.call_id == request.call_id
        assert response.cseq == request.cseq
        assert response.via[0].branch == request.via[0].branch
    return responses
