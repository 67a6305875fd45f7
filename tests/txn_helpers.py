"""Helpers for transaction-layer tests: requests, responses, a driver that
puts a transaction of any kind into any state, and output filters."""

from __future__ import annotations

from collections.abc import Sequence

from sipcore import (
    ClientTransaction,
    Endpoint,
    Request,
    Response,
    Send,
    ServerTransaction,
    State,
    TransactionKind,
    TransactionLayer,
    events,
    make_request,
    make_response,
    new_branch,
    parse_message,
)
from sipcore._transaction import Output

UAC = Endpoint("192.0.2.10", 5060)
UAS = Endpoint("192.0.2.20", 5070)
UAC_TCP = Endpoint("192.0.2.10", 40123, "TCP")
UAS_TCP = Endpoint("192.0.2.20", 5070, "TCP")


def request(
    method: str = "INVITE",
    *,
    branch: str | None = None,
    sent_by: str = "192.0.2.10:5060",
    transport: str = "UDP",
    call_id: str = "call-1@192.0.2.10",
    cseq: int = 1,
    to_tag: str | None = None,
) -> Request:
    """A request as the UAC at 192.0.2.10 sends it, parsed from the wire."""
    via = f"SIP/2.0/{transport} {sent_by}"
    if branch != "":
        via += f";branch={branch or new_branch()}"
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    built = make_request(
        method,
        "sip:bob@example.com",
        from_="<sip:alice@example.com>;tag=a1",
        to=to,
        via=via,
        call_id=call_id,
        cseq=cseq,
    )
    msg = reparse(built)
    assert isinstance(msg, Request)
    return msg


def reparse(message: Request | Response) -> Request | Response:
    """What the far end receives: the message parsed from its bytes."""
    return parse_message(bytes(message))


def response(req: Request, code: int, *, to_tag: str = "b1") -> Response:
    msg = reparse(make_response(req, code, to_tag=to_tag))
    assert isinstance(msg, Response)
    return msg


def sends(outputs: Sequence[Output]) -> list[Send]:
    return [o for o in outputs if isinstance(o, Send)]


def of_type(outputs: Sequence[Output], kind: type) -> list[Output]:
    return [o for o in outputs if isinstance(o, kind)]


def sent_methods(outputs: Sequence[Output]) -> list[str]:
    """``INVITE``, ``ACK``, ``180``... for each Send, in order."""
    out = []
    for s in sends(outputs):
        m = s.message
        if isinstance(m, Request):
            out.append(m.method)
        elif isinstance(m, Response):
            out.append(str(m.status_code))
    return out


class ClientDriver:
    """One client transaction and its layer, steerable into any state."""

    def __init__(self, method: str, reliable: bool = False) -> None:
        self.layer = TransactionLayer()
        self.now = 0.0
        transport = "TCP" if reliable else "UDP"
        self.request = request(method, transport=transport)
        self.destination = UAS_TCP if reliable else UAS
        self.txn: ClientTransaction = self.layer.send_request(
            self.request, self.destination, self.now
        )
        self.out: list[Output] = self.layer.take()

    def respond(self, code: int) -> list[Output]:
        msg = response(self.request, code)
        self.layer.receive(msg, self.destination, self.now)
        return self.layer.take()

    def advance(self, seconds: float) -> list[Output]:
        self.now += seconds
        self.layer.tick(self.now)
        return self.layer.take()

    def into(self, state: State) -> ClientDriver:
        invite = self.txn.kind is TransactionKind.CLIENT_INVITE
        if state is State.PROCEEDING:
            self.respond(180)
        elif state is State.COMPLETED:
            self.respond(486)
        elif state is State.ACCEPTED:
            self.respond(200)
        elif state in (State.CALLING, State.TRYING):
            pass
        else:  # pragma: no cover - a test asked for a state this kind has not
            raise AssertionError(state)
        expected = state if state is not State.TRYING or not invite else State.CALLING
        assert self.txn.state is expected
        return self


class ServerDriver:
    """One server transaction and its layer, steerable into any state."""

    def __init__(self, method: str, reliable: bool = False) -> None:
        self.layer = TransactionLayer()
        self.now = 0.0
        self.source = UAC_TCP if reliable else UAC
        transport = "TCP" if reliable else "UDP"
        sent_by = "192.0.2.10:40123" if reliable else "192.0.2.10:5060"
        self.request = request(method, transport=transport, sent_by=sent_by)
        self.layer.receive(self.request, self.source, self.now)
        self.out = self.layer.take()
        (event,) = of_type(self.out, events.RequestReceived)
        assert isinstance(event, events.RequestReceived)
        self.txn: ServerTransaction = event.transaction

    def send(self, code: int) -> list[Output]:
        self.layer.send_response(self.txn, response(self.request, code), self.now)
        return self.layer.take()

    def retransmission(self) -> list[Output]:
        self.layer.receive(reparse(self.request), self.source, self.now)
        return self.layer.take()

    def ack(self, to_tag: str = "b1") -> list[Output]:
        last = self.txn.last_response
        assert last is not None or to_tag
        via = self.request.get("Via")
        assert via is not None
        ack = parse_message(
            (
                "ACK sip:bob@example.com SIP/2.0\r\n"
                f"Via: {via}\r\n"
                "Max-Forwards: 70\r\n"
                "From: <sip:alice@example.com>;tag=a1\r\n"
                f"To: <sip:bob@example.com>;tag={to_tag}\r\n"
                f"Call-ID: {self.request.call_id}\r\n"
                f"CSeq: {self.request.cseq.number} ACK\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
        )
        self.layer.receive(ack, self.source, self.now)
        return self.layer.take()

    def advance(self, seconds: float) -> list[Output]:
        self.now += seconds
        self.layer.tick(self.now)
        return self.layer.take()

    def into(self, state: State) -> ServerDriver:
        if state is State.PROCEEDING:
            self.send(100 if self.txn.is_invite else 180)
        elif state is State.COMPLETED:
            self.send(486 if self.txn.is_invite else 200)
        elif state is State.CONFIRMED:
            self.send(486)
            self.ack()
        elif state is State.ACCEPTED:
            self.send(200)
        assert self.txn.state is state, (self.txn.state, state)
        return self
