"""RFC 3261 section 17 transactions, with RFC 6026's Accepted state.

This module owns the four transaction state machines (client INVITE,
client non-INVITE, server INVITE, server non-INVITE) and the
:class:`TransactionLayer` that matches messages to them (sections 17.1.3
and 17.2.3, with the RFC 2543 fallback), absorbs retransmissions, builds
the ACK for 300-699 responses, runs timers A to M, and tells the
transaction user (TU) what happened.

The machines are tables: ``(state, input) -> (next state, actions)``, one
per kind, below. An input with no row in the current state is absorbed.
Leaving a state cancels its timers, except where a row says a timer runs on
(the client non-INVITE's E and F from Trying into Proceeding).

No I/O: inputs are messages with their source and ``now``; outputs are
:class:`~sipcore.Send` actions and :mod:`sipcore.events` values, drained in
order with :meth:`TransactionLayer.take`. The layer never reads a clock.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterator
from typing import Any, Final, TypeAlias

import attrs

from . import events
from ._build import MAGIC_COOKIE, make_ack
from ._errors import LocalProtocolError, ParseError
from ._headers import Via
from ._message import Request, Response
from ._timers import TimerHandle, TimerQueue
from ._transport import Endpoint, Send, response_destination

__all__ = [
    "ClientTransaction",
    "Input",
    "ServerTransaction",
    "State",
    "Timer",
    "TimerSettings",
    "Transaction",
    "TransactionKind",
    "TransactionLayer",
]


class State(enum.Enum):
    """Transaction states, named as RFC 3261 and RFC 6026 name them."""

    CALLING = "Calling"
    TRYING = "Trying"
    PROCEEDING = "Proceeding"
    COMPLETED = "Completed"
    CONFIRMED = "Confirmed"
    ACCEPTED = "Accepted"
    TERMINATED = "Terminated"


class TransactionKind(enum.Enum):
    CLIENT_INVITE = "client INVITE"
    CLIENT_NON_INVITE = "client non-INVITE"
    SERVER_INVITE = "server INVITE"
    SERVER_NON_INVITE = "server non-INVITE"


class Timer(enum.Enum):
    """RFC 3261 table 4 and RFC 6026 section 8.4."""

    A = "A"  # client INVITE request retransmit (unreliable), T1 doubling
    B = "B"  # client INVITE timeout, 64*T1
    D = "D"  # client INVITE: wait for response retransmits, 32 s (0 reliable)
    E = "E"  # client non-INVITE request retransmit (unreliable), T1 doubling to T2
    F = "F"  # client non-INVITE timeout, 64*T1
    G = "G"  # server INVITE response retransmit (unreliable), T1 doubling to T2
    H = "H"  # server INVITE: wait for ACK, 64*T1
    I = "I"  # server INVITE: wait for ACK retransmits, T4 (0 reliable)  # noqa: E741
    J = "J"  # server non-INVITE: wait for request retransmits, 64*T1 (0 reliable)
    K = "K"  # client non-INVITE: wait for response retransmits, T4 (0 reliable)
    L = "L"  # server INVITE Accepted: wait for 2xx retransmits and ACKs, 64*T1
    M = "M"  # client INVITE Accepted: wait for 2xx retransmits, 64*T1


class Input(enum.Enum):
    """What can happen to a transaction."""

    PROVISIONAL = "1xx received"
    SUCCESS = "2xx received"
    FAILURE = "300-699 received"
    REQUEST = "request retransmission received"
    ACK = "ACK received"
    SEND_PROVISIONAL = "TU sends 1xx"
    SEND_SUCCESS = "TU sends 2xx"
    SEND_FAILURE = "TU sends 300-699"
    TRANSPORT_ERROR = "transport error"
    TIMER_A = "Timer A"
    TIMER_B = "Timer B"
    TIMER_D = "Timer D"
    TIMER_E = "Timer E"
    TIMER_F = "Timer F"
    TIMER_G = "Timer G"
    TIMER_H = "Timer H"
    TIMER_I = "Timer I"
    TIMER_J = "Timer J"
    TIMER_K = "Timer K"
    TIMER_L = "Timer L"
    TIMER_M = "Timer M"


class Do(enum.Enum):
    """What a row of a table makes the transaction do, in order."""

    RETRANSMIT_REQUEST = "retransmit the request"
    PASS_RESPONSE = "pass the response to the TU"
    SEND_ACK = "build and send the ACK"
    RESEND_ACK = "send the ACK again"
    SEND_RESPONSE = "send the TU's response"
    RESEND_RESPONSE = "send the last response again"
    PASS_ACK = "pass the ACK to the TU"
    REPORT_TIMEOUT = "tell the TU it timed out"
    REPORT_TRANSPORT_ERROR = "tell the TU of the transport error"


_S = State
_I = Input
Action: TypeAlias = Do | Timer  # a Timer in a row means: (re)start that timer
Row: TypeAlias = tuple[State, tuple[Action, ...]]
Table: TypeAlias = dict[tuple[State, Input], Row]

# RFC 3261 figure 5, with RFC 6026 figure 3 (2xx moves to Accepted).
CLIENT_INVITE: Final[Table] = {
    (_S.CALLING, _I.TIMER_A): (_S.CALLING, (Do.RETRANSMIT_REQUEST, Timer.A)),
    (_S.CALLING, _I.TIMER_B): (_S.TERMINATED, (Do.REPORT_TIMEOUT,)),
    (_S.CALLING, _I.TRANSPORT_ERROR): (_S.TERMINATED, (Do.REPORT_TRANSPORT_ERROR,)),
    (_S.CALLING, _I.PROVISIONAL): (_S.PROCEEDING, (Do.PASS_RESPONSE,)),
    (_S.CALLING, _I.SUCCESS): (_S.ACCEPTED, (Do.PASS_RESPONSE, Timer.M)),
    (_S.CALLING, _I.FAILURE): (_S.COMPLETED, (Do.SEND_ACK, Do.PASS_RESPONSE, Timer.D)),
    (_S.PROCEEDING, _I.PROVISIONAL): (_S.PROCEEDING, (Do.PASS_RESPONSE,)),
    (_S.PROCEEDING, _I.SUCCESS): (_S.ACCEPTED, (Do.PASS_RESPONSE, Timer.M)),
    (_S.PROCEEDING, _I.FAILURE): (_S.COMPLETED, (Do.SEND_ACK, Do.PASS_RESPONSE, Timer.D)),
    # RFC 3261 section 9.1: once a CANCEL was sent, Timer B runs again in
    # Proceeding (see TransactionLayer.cancel_sent), so a UAS that never
    # answers the INVITE cannot keep the transaction for ever.
    (_S.PROCEEDING, _I.TIMER_B): (_S.TERMINATED, (Do.REPORT_TIMEOUT,)),
    (_S.COMPLETED, _I.FAILURE): (_S.COMPLETED, (Do.RESEND_ACK,)),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): (_S.TERMINATED, (Do.REPORT_TRANSPORT_ERROR,)),
    (_S.COMPLETED, _I.TIMER_D): (_S.TERMINATED, ()),
    (_S.ACCEPTED, _I.SUCCESS): (_S.ACCEPTED, (Do.PASS_RESPONSE,)),
    (_S.ACCEPTED, _I.TIMER_M): (_S.TERMINATED, ()),
}

# RFC 3261 figure 6.
CLIENT_NON_INVITE: Final[Table] = {
    (_S.TRYING, _I.TIMER_E): (_S.TRYING, (Do.RETRANSMIT_REQUEST, Timer.E)),
    (_S.TRYING, _I.TIMER_F): (_S.TERMINATED, (Do.REPORT_TIMEOUT,)),
    (_S.TRYING, _I.TRANSPORT_ERROR): (_S.TERMINATED, (Do.REPORT_TRANSPORT_ERROR,)),
    (_S.TRYING, _I.PROVISIONAL): (_S.PROCEEDING, (Do.PASS_RESPONSE,)),
    (_S.TRYING, _I.SUCCESS): (_S.COMPLETED, (Do.PASS_RESPONSE, Timer.K)),
    (_S.TRYING, _I.FAILURE): (_S.COMPLETED, (Do.PASS_RESPONSE, Timer.K)),
    (_S.PROCEEDING, _I.TIMER_E): (_S.PROCEEDING, (Do.RETRANSMIT_REQUEST, Timer.E)),
    (_S.PROCEEDING, _I.TIMER_F): (_S.TERMINATED, (Do.REPORT_TIMEOUT,)),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): (_S.TERMINATED, (Do.REPORT_TRANSPORT_ERROR,)),
    (_S.PROCEEDING, _I.PROVISIONAL): (_S.PROCEEDING, (Do.PASS_RESPONSE,)),
    (_S.PROCEEDING, _I.SUCCESS): (_S.COMPLETED, (Do.PASS_RESPONSE, Timer.K)),
    (_S.PROCEEDING, _I.FAILURE): (_S.COMPLETED, (Do.PASS_RESPONSE, Timer.K)),
    (_S.COMPLETED, _I.TIMER_K): (_S.TERMINATED, ()),
}

# RFC 3261 figure 7, with RFC 6026 figure 5 (2xx moves to Accepted).
SERVER_INVITE: Final[Table] = {
    (_S.PROCEEDING, _I.REQUEST): (_S.PROCEEDING, (Do.RESEND_RESPONSE,)),
    (_S.PROCEEDING, _I.SEND_PROVISIONAL): (_S.PROCEEDING, (Do.SEND_RESPONSE,)),
    (_S.PROCEEDING, _I.SEND_SUCCESS): (_S.ACCEPTED, (Do.SEND_RESPONSE, Timer.L)),
    (_S.PROCEEDING, _I.SEND_FAILURE): (_S.COMPLETED, (Do.SEND_RESPONSE, Timer.G, Timer.H)),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): (_S.TERMINATED, (Do.REPORT_TRANSPORT_ERROR,)),
    (_S.COMPLETED, _I.REQUEST): (_S.COMPLETED, (Do.RESEND_RESPONSE,)),
    (_S.COMPLETED, _I.TIMER_G): (_S.COMPLETED, (Do.RESEND_RESPONSE, Timer.G)),
    (_S.COMPLETED, _I.TIMER_H): (_S.TERMINATED, (Do.REPORT_TIMEOUT,)),
    (_S.COMPLETED, _I.ACK): (_S.CONFIRMED, (Timer.I,)),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): (_S.TERMINATED, (Do.REPORT_TRANSPORT_ERROR,)),
    (_S.CONFIRMED, _I.TIMER_I): (_S.TERMINATED, ()),
    (_S.ACCEPTED, _I.SEND_SUCCESS): (_S.ACCEPTED, (Do.SEND_RESPONSE,)),
    (_S.ACCEPTED, _I.ACK): (_S.ACCEPTED, (Do.PASS_ACK,)),
    (_S.ACCEPTED, _I.TRANSPORT_ERROR): (_S.ACCEPTED, (Do.REPORT_TRANSPORT_ERROR,)),
    (_S.ACCEPTED, _I.TIMER_L): (_S.TERMINATED, ()),
}

# RFC 3261 figure 8.
SERVER_NON_INVITE: Final[Table] = {
    (_S.TRYING, _I.SEND_PROVISIONAL): (_S.PROCEEDING, (Do.SEND_RESPONSE,)),
    (_S.TRYING, _I.SEND_SUCCESS): (_S.COMPLETED, (Do.SEND_RESPONSE, Timer.J)),
    (_S.TRYING, _I.SEND_FAILURE): (_S.COMPLETED, (Do.SEND_RESPONSE, Timer.J)),
    (_S.PROCEEDING, _I.REQUEST): (_S.PROCEEDING, (Do.RESEND_RESPONSE,)),
    (_S.PROCEEDING, _I.SEND_PROVISIONAL): (_S.PROCEEDING, (Do.SEND_RESPONSE,)),
    (_S.PROCEEDING, _I.SEND_SUCCESS): (_S.COMPLETED, (Do.SEND_RESPONSE, Timer.J)),
    (_S.PROCEEDING, _I.SEND_FAILURE): (_S.COMPLETED, (Do.SEND_RESPONSE, Timer.J)),
    (_S.PROCEEDING, _I.TRANSPORT_ERROR): (_S.TERMINATED, (Do.REPORT_TRANSPORT_ERROR,)),
    (_S.COMPLETED, _I.REQUEST): (_S.COMPLETED, (Do.RESEND_RESPONSE,)),
    (_S.COMPLETED, _I.TRANSPORT_ERROR): (_S.TERMINATED, (Do.REPORT_TRANSPORT_ERROR,)),
    (_S.COMPLETED, _I.TIMER_J): (_S.TERMINATED, ()),
}

TABLES: Final = {
    TransactionKind.CLIENT_INVITE: CLIENT_INVITE,
    TransactionKind.CLIENT_NON_INVITE: CLIENT_NON_INVITE,
    TransactionKind.SERVER_INVITE: SERVER_INVITE,
    TransactionKind.SERVER_NON_INVITE: SERVER_NON_INVITE,
}

# Timers that keep running when the transaction changes state (all others
# are cancelled on leaving the state that started them).
_RUN_ON: Final = {
    (TransactionKind.CLIENT_NON_INVITE, State.PROCEEDING): frozenset({Timer.E, Timer.F}),
}
_TIMER_INPUT: Final = {timer: Input[f"TIMER_{timer.value}"] for timer in Timer}
# Timers that only retransmit: they do not run over a reliable transport.
_RETRANSMIT_TIMERS: Final = frozenset({Timer.A, Timer.E, Timer.G})
_INITIAL_STATE: Final = {
    TransactionKind.CLIENT_INVITE: State.CALLING,
    TransactionKind.CLIENT_NON_INVITE: State.TRYING,
    TransactionKind.SERVER_INVITE: State.PROCEEDING,
    TransactionKind.SERVER_NON_INVITE: State.TRYING,
}


@attrs.frozen
class TimerSettings:
    """RFC 3261's timer values in seconds (section 17.1.1.1, table 4).

    ``t1`` is the RTT estimate (0.5), ``t2`` the cap on non-INVITE and
    response retransmit intervals (4), ``t4`` how long a message may stay
    in the network (5); ``timer_d`` is Timer D on an unreliable transport
    (at least 32). Kamailio: tm's ``retr_timer1``, ``retr_timer2``.
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_d: float = 32.0

    def __attrs_post_init__(self) -> None:
        if not 0 < self.t1 <= self.t2:
            raise LocalProtocolError("timers need 0 < T1 <= T2")
        if self.t4 <= 0 or self.timer_d < 0:
            raise LocalProtocolError("T4 must be positive and Timer D not negative")


class Transaction:
    """What both kinds of transaction have: a state, the request that made
    it, its timers. Read the attributes; the layer changes them.

    ``user_data`` belongs to the TU (the proxy core keeps its branch there).
    """

    __slots__ = (
        "_intervals",
        "_key",
        "_timers",
        "kind",
        "last_response",
        "reliable",
        "request",
        "state",
        "user_data",
    )

    kind: TransactionKind
    state: State
    request: Request
    reliable: bool
    last_response: Response | None
    user_data: Any

    def __init__(self, kind: TransactionKind, request: Request, reliable: bool) -> None:
        self.kind = kind
        self.state = _INITIAL_STATE[kind]
        self.request = request
        self.reliable = reliable
        self.last_response = None
        self.user_data = None
        self._timers: dict[Timer, TimerHandle] = {}
        self._intervals: dict[Timer, float] = {}
        self._key: tuple[object, ...] = ()

    @property
    def is_invite(self) -> bool:
        return self.kind in (TransactionKind.CLIENT_INVITE, TransactionKind.SERVER_INVITE)

    @property
    def terminated(self) -> bool:
        return self.state is State.TERMINATED

    @property
    def timers(self) -> frozenset[Timer]:
        """The timers running now."""
        return frozenset(self._timers)

    def __repr__(self) -> str:
        return f"<{self.kind.value} transaction {self.request.method} {self.state.value}>"


class ClientTransaction(Transaction):
    """A request this element sent, and the responses it gets back."""

    __slots__ = ("ack", "destination")

    destination: Endpoint
    ack: Request | None  # the ACK sent for a 300-699 final response

    def __init__(self, request: Request, destination: Endpoint) -> None:
        kind = (
            TransactionKind.CLIENT_INVITE
            if request.method == "INVITE"
            else TransactionKind.CLIENT_NON_INVITE
        )
        super().__init__(kind, request, destination.reliable)
        self.destination = destination
        self.ack = None


class ServerTransaction(Transaction):
    """A request this element received, and the responses the TU sends to it."""

    __slots__ = ("response_destination", "source")

    source: Endpoint
    response_destination: Endpoint

    def __init__(self, request: Request, source: Endpoint, via_index: int = 0) -> None:
        kind = (
            TransactionKind.SERVER_INVITE
            if request.method == "INVITE"
            else TransactionKind.SERVER_NON_INVITE
        )
        super().__init__(kind, request, source.reliable)
        self.source = source
        self.response_destination = response_destination(request.via[via_index], source)


Output: TypeAlias = Send | events.TransactionEvent


def _classify_response(code: int) -> Input:
    if code < 200:
        return Input.PROVISIONAL
    if code < 300:
        return Input.SUCCESS
    return Input.FAILURE


def _rfc3261_branch(branch: str | None) -> bool:
    return branch is not None and branch.startswith(MAGIC_COOKIE) and len(branch) > 7


def _rfc3261_server_key(via: Via, method: str) -> tuple[object, ...]:
    """Section 17.2.3: branch, sent-by and method (ACK counted as INVITE by
    the caller) identify a server transaction."""
    return ("3261", via.branch, via.sent_by.lower(), method)


class TransactionLayer:
    """Every transaction of one SIP element, matched, timed and driven.

    Inputs: :meth:`receive` (a parsed message and where it came from),
    :meth:`send_request` and :meth:`send_response` (from the TU),
    :meth:`transport_error`, :meth:`tick`. Outputs: :meth:`take` drains
    what is due, in order: :class:`~sipcore.Send` actions and events.

    Kamailio: the ``tm`` module's transaction table.
    """

    def __init__(self, settings: TimerSettings | None = None) -> None:
        self.settings = settings or TimerSettings()
        self._client: dict[tuple[object, ...], ClientTransaction] = {}
        self._server: dict[tuple[object, ...], ServerTransaction] = {}
        self._timers: TimerQueue[tuple[Transaction, Timer]] = TimerQueue()
        self._outbox: list[Output] = []
        self._ids = itertools.count(1)

    # -- what the TU reads -------------------------------------------------

    def take(self) -> list[Output]:
        """Everything to send and every event since the last call, in order."""
        out = self._outbox
        self._outbox = []
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must next run, or None when no timer is pending."""
        return self._timers.next_deadline()

    @property
    def client_transactions(self) -> int:
        return len(self._client)

    @property
    def server_transactions(self) -> int:
        return len(self._server)

    @property
    def pending_timers(self) -> int:
        return len(self._timers)

    def transactions(self) -> Iterator[Transaction]:
        """Every live transaction, client then server."""
        yield from self._client.values()
        yield from self._server.values()

    # -- client side ----------------------------------------------------------

    def send_request(
        self, request: Request, destination: Endpoint, now: float
    ) -> ClientTransaction:
        """Start a client transaction: send ``request`` and retransmit it as
        RFC 3261 says until a response or a timeout.

        The request's top Via must carry an RFC 3261 branch (magic cookie)
        unique to this transaction. An ACK is never a transaction: send it
        with :meth:`send_stateless`.
        """
        if request.method == "ACK":
            raise LocalProtocolError("an ACK is not a transaction: use send_stateless()")
        try:
            branch = request.via[0].branch
        except (ParseError, IndexError):
            raise LocalProtocolError("a request this element sends needs a top Via") from None
        if not _rfc3261_branch(branch):
            raise LocalProtocolError("the top Via needs an RFC 3261 branch (z9hG4bK...)")
        key = (branch, request.method)
        if key in self._client:
            raise LocalProtocolError(f"a client transaction with branch {branch} exists")
        txn = ClientTransaction(request, destination)
        txn._key = key
        self._client[key] = txn
        self._outbox.append(Send(request, destination))
        if txn.is_invite:
            self._start(txn, Timer.A, now)
            self._start(txn, Timer.B, now)
        else:
            self._start(txn, Timer.E, now)
            self._start(txn, Timer.F, now)
        return txn

    def send_stateless(self, message: Request | Response, destination: Endpoint) -> None:
        """Send without a transaction: an ACK for a 2xx, a stateless reply or forward."""
        self._outbox.append(Send(message, destination))

    def cancel_sent(self, transaction: ClientTransaction, now: float) -> None:
        """A CANCEL for this INVITE went out: if no final response comes
        within 64*T1, end the transaction (RFC 3261 section 9.1)."""
        if transaction.kind is TransactionKind.CLIENT_INVITE and transaction.state in (
            State.CALLING,
            State.PROCEEDING,
        ):
            self._start(transaction, Timer.B, now)

    def drop(self, transaction: Transaction) -> None:
        """Forget a transaction without sending anything more (a request the
        TU chose not to answer: its retransmissions are new requests again)."""
        if transaction.state is not State.TERMINATED:
            transaction.state = State.TERMINATED
            self._forget(transaction)

    def find_for_send(self, send: Send) -> Transaction | None:
        """The transaction a :class:`Send` belongs to, so that an adapter's
        failure to send it can be reported (:meth:`transport_error`)."""
        message = send.message
        try:
            via = message.via[0] if message.via else None
            if via is None:
                return None
            if isinstance(message, Request):
                method = "INVITE" if message.method == "ACK" else message.method
                return self._client.get((via.branch, method))
            if isinstance(message, Response) and _rfc3261_branch(via.branch):
                return self._server.get(_rfc3261_server_key(via, message.cseq.method))
        except ParseError:
            return None
        return None

    def find_client(self, branch: str, method: str) -> ClientTransaction | None:
        return self._client.get((branch, method))

    # -- server side ------------------------------------------------------------

    def send_response(self, transaction: ServerTransaction, response: Response, now: float) -> None:
        """Have the server transaction send the TU's response (and retransmit
        it where RFC 3261 says). Responses the state no longer allows are
        discarded, as section 17.2 requires."""
        code = response.status_code
        if code < 200:
            kind = Input.SEND_PROVISIONAL
        elif code < 300:
            kind = Input.SEND_SUCCESS
        else:
            kind = Input.SEND_FAILURE
        self._feed(transaction, kind, now, response)

    def find_cancelled(self, cancel: Request) -> ServerTransaction | None:
        """The server transaction a CANCEL cancels (RFC 3261 section 9.2), if any."""
        if cancel.method != "CANCEL":
            raise LocalProtocolError("not a CANCEL")
        try:
            key = self._server_key(cancel, method="INVITE")
        except ParseError:
            return None
        return self._server.get(key)

    # -- input ------------------------------------------------------------------

    def receive(self, message: Request | Response, source: Endpoint, now: float) -> None:
        """A message from the network, already parsed (the TU answers
        unparseable requests itself, e.g. with a 400).

        Raises ParseError when a header the matching needs is missing or
        malformed; nothing is changed then.
        """
        if isinstance(message, Response):
            self._receive_response(message, source, now)
        else:
            self._receive_request(message, source, now)

    def _receive_response(self, response: Response, source: Endpoint, now: float) -> None:
        via = response.via[0] if response.via else None
        key = (via.branch if via else None, response.cseq.method)
        txn = self._client.get(key)
        if txn is None:
            self._outbox.append(events.StrayResponse(response, source))
            return
        self._feed(txn, _classify_response(response.status_code), now, response)

    def _server_key(self, request: Request, *, method: str | None = None) -> tuple[object, ...]:
        if not request.via:
            raise ParseError("missing Via header", 400, request)
        via = request.via[0]
        branch = via.branch
        wanted = method or ("INVITE" if request.method == "ACK" else request.method)
        if _rfc3261_branch(branch):
            return _rfc3261_server_key(via, wanted)
        # RFC 2543 (section 17.2.3): the INVITE is matched on its Request-URI,
        # tags, Call-ID, CSeq number and top Via; the To tag is compared by
        # the caller for an ACK (it is the tag of the response).
        to_tag = None if request.method == "ACK" else request.to.tag
        return (
            "2543",
            str(request.uri),
            request.from_.tag,
            request.call_id,
            request.cseq.number,
            request.get("Via"),
            wanted,
            to_tag,
        )

    def _receive_request(self, request: Request, source: Endpoint, now: float) -> None:
        key = self._server_key(request)
        if request.method == "ACK":
            txn = self._match_2543_ack(request, key) if key[0] == "2543" else self._server.get(key)
            if txn is None:
                self._outbox.append(events.AckReceived(request, source, None))
            else:
                self._feed(txn, Input.ACK, now, request, source)
            return
        txn = self._server.get(key)
        if txn is not None:
            self._feed(txn, Input.REQUEST, now)
            return
        txn = ServerTransaction(request, source)
        txn._key = key
        self._server[key] = txn
        self._outbox.append(events.RequestReceived(txn, request))

    def _match_2543_ack(self, ack: Request, key: tuple[object, ...]) -> ServerTransaction | None:
        # The INVITE of an initial request has no To tag; a re-INVITE has the
        # same To tag as its ACK.
        for to_tag in (None, ack.to.tag):
            txn = self._server.get((*key[:-1], to_tag))
            if txn is not None:
                sent = txn.last_response
                if sent is not None and sent.to.tag == ack.to.tag:
                    return txn
        return None

    def transport_error(self, transaction: Transaction, now: float) -> None:
        """The transport could not send a message of ``transaction``
        (ICMP unreachable, a refused or broken connection)."""
        self._feed(transaction, Input.TRANSPORT_ERROR, now)

    def tick(self, now: float) -> None:
        """Fire every timer due at ``now``."""
        for txn, timer in self._timers.pop_due(now):
            if txn._timers.get(timer) is None:
                continue  # pragma: no cover - cancelled timers leave the queue
            del txn._timers[timer]
            self._feed(txn, _TIMER_INPUT[timer], now)

    # -- the machine ----------------------------------------------------------------

    def _feed(
        self,
        txn: Transaction,
        what: Input,
        now: float,
        message: Request | Response | None = None,
        source: Endpoint | None = None,
    ) -> None:
        if txn.state is State.TERMINATED:
            return
        row = TABLES[txn.kind].get((txn.state, what))
        if row is None:
            return  # absorbed: nothing in this state reacts to it
        next_state, actions = row
        if next_state is not txn.state:
            keep = _RUN_ON.get((txn.kind, next_state), frozenset())
            for timer in list(txn._timers):
                if timer not in keep:
                    self._timers.cancel(txn._timers.pop(timer))
            txn.state = next_state
        for action in actions:
            if isinstance(action, Timer):
                self._start(txn, action, now)
            else:
                self._do(txn, action, message, source)
        if txn.state is State.TERMINATED:
            self._forget(txn)

    def _do(
        self,
        txn: Transaction,
        action: Do,
        message: Request | Response | None,
        source: Endpoint | None,
    ) -> None:
        outbox = self._outbox
        response = message if isinstance(message, Response) else None
        if action is Do.PASS_RESPONSE:
            assert isinstance(txn, ClientTransaction) and response is not None
            txn.last_response = response
            outbox.append(events.ResponseReceived(txn, response))
        elif action is Do.RETRANSMIT_REQUEST:
            assert isinstance(txn, ClientTransaction)
            outbox.append(Send(txn.request, txn.destination))
        elif action is Do.SEND_ACK:
            assert isinstance(txn, ClientTransaction) and response is not None
            txn.ack = make_ack(txn.request, response)
            outbox.append(Send(txn.ack, txn.destination))
        elif action is Do.RESEND_ACK:
            assert isinstance(txn, ClientTransaction) and txn.ack is not None
            outbox.append(Send(txn.ack, txn.destination))
        elif action is Do.SEND_RESPONSE:
            assert isinstance(txn, ServerTransaction) and response is not None
            txn.last_response = response
            outbox.append(Send(response, txn.response_destination))
        elif action is Do.RESEND_RESPONSE:
            assert isinstance(txn, ServerTransaction)
            if txn.last_response is not None:
                outbox.append(Send(txn.last_response, txn.response_destination))
        elif action is Do.PASS_ACK:
            assert isinstance(txn, ServerTransaction) and isinstance(message, Request)
            outbox.append(events.AckReceived(message, source or txn.source, txn))
        elif action is Do.REPORT_TIMEOUT:
            outbox.append(events.TransactionTimedOut(txn))
        elif action is Do.REPORT_TRANSPORT_ERROR:
            outbox.append(events.TransportFailed(txn))

    def _duration(self, txn: Transaction, timer: Timer) -> float | None:
        """How long ``timer`` runs for ``txn``; None: it does not run at all."""
        s = self.settings
        if timer in _RETRANSMIT_TIMERS:
            if txn.reliable:
                return None
            previous = txn._intervals.get(timer)
            if previous is None:
                interval = s.t1
            elif timer is Timer.A:
                interval = previous * 2
            elif timer is Timer.E and txn.state is State.PROCEEDING:
                interval = s.t2
            else:
                interval = min(previous * 2, s.t2)
            txn._intervals[timer] = interval
            return interval
        if timer in (Timer.B, Timer.F, Timer.H, Timer.L, Timer.M):
            return 64 * s.t1
        if txn.reliable:
            return 0.0
        if timer is Timer.D:
            return s.timer_d
        if timer is Timer.J:
            return 64 * s.t1
        return s.t4  # I and K

    def _start(self, txn: Transaction, timer: Timer, now: float) -> None:
        duration = self._duration(txn, timer)
        if duration is None:
            return
        old = txn._timers.pop(timer, None)
        if old is not None:
            self._timers.cancel(old)
        if duration == 0:
            # A zero timer (reliable transport) fires at once.
            self._feed(txn, _TIMER_INPUT[timer], now)
            return
        txn._timers[timer] = self._timers.add(now + duration, (txn, timer))

    def _forget(self, txn: Transaction) -> None:
        table: dict[tuple[object, ...], Any] = (
            self._client if isinstance(txn, ClientTransaction) else self._server
        )
        if table.get(txn._key) is not txn:
            return  # already forgotten (a zero timer terminated it inside a row)
        del table[txn._key]
        for handle in txn._timers.values():
            self._timers.cancel(handle)
        txn._timers.clear()
        self._outbox.append(events.TransactionTerminated(txn))
