"""The four RFC 3261 transaction machines and the transaction layer, on a fake clock."""

from __future__ import annotations

import pytest

from sipcore import (
    Endpoint,
    LocalProtocolError,
    Request,
    Send,
    State,
    Timer,
    TimerSettings,
    Transaction,
    TransactionKind,
    TransactionLayer,
    events,
    make_cancel,
    parse_message,
    response_destination,
)
from sipcore._transaction import TABLES, Input
from txn_helpers import (
    UAC,
    UAS,
    ClientDriver,
    ServerDriver,
    of_type,
    reparse,
    request,
    response,
    sends,
    sent_methods,
)


def retransmit_times(driver: ClientDriver | ServerDriver, until: float) -> list[float]:
    """The times at which the transaction sent something, firing each timer
    when it is due, up to ``until``."""
    times = []
    while True:
        deadline = driver.layer.next_deadline()
        if deadline is None or deadline > until:
            break
        out = driver.advance(deadline - driver.now)
        if sends(out):
            times.append(round(driver.now, 6))
    driver.now = max(driver.now, until)
    return times


def state_of(txn: Transaction) -> State:
    """The state now (a call, so that mypy does not narrow across changes)."""
    return txn.state


def assert_forgotten(layer: TransactionLayer) -> None:
    assert layer.client_transactions == 0
    assert layer.server_transactions == 0
    assert layer.pending_timers == 0
    assert layer.next_deadline() is None


# -- client INVITE (RFC 3261 figure 5, RFC 6026 figure 3) ---------------------


def test_client_invite_sends_the_request_and_starts_timers_a_and_b() -> None:
    d = ClientDriver("INVITE")
    assert sent_methods(d.out) == ["INVITE"]
    assert sends(d.out)[0].destination == UAS
    assert d.txn.state is State.CALLING
    assert d.txn.timers == {Timer.A, Timer.B}
    assert d.layer.next_deadline() == 0.5


def test_client_invite_timer_a_doubles_without_a_cap_until_timer_b() -> None:
    d = ClientDriver("INVITE")
    assert retransmit_times(d, 31.9) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    out = d.advance(0.1)  # now 32.0 = 64*T1: Timer B
    assert [type(o) for o in out] == [events.TransactionTimedOut, events.TransactionTerminated]
    assert d.txn.state is State.TERMINATED
    assert_forgotten(d.layer)


def test_client_invite_over_tcp_never_retransmits_but_still_times_out() -> None:
    d = ClientDriver("INVITE", reliable=True)
    assert d.txn.timers == {Timer.B}
    assert retransmit_times(d, 31.9) == []
    assert of_type(d.advance(0.1), events.TransactionTimedOut)


def test_client_invite_provisional_stops_retransmissions_and_is_passed_up() -> None:
    d = ClientDriver("INVITE")
    out = d.respond(180)
    (event,) = of_type(out, events.ResponseReceived)
    assert isinstance(event, events.ResponseReceived) and event.response.status_code == 180
    assert d.txn.state is State.PROCEEDING
    assert d.txn.timers == frozenset()  # no Timer A, and no Timer B in Proceeding
    assert retransmit_times(d, 60) == []
    assert d.txn.state is State.PROCEEDING  # the TU's Timer C ends it, not the transaction


def test_client_invite_more_provisionals_in_proceeding_are_passed_up() -> None:
    d = ClientDriver("INVITE").into(State.PROCEEDING)
    out = d.respond(183)
    assert len(of_type(out, events.ResponseReceived)) == 1


@pytest.mark.parametrize("start", [State.CALLING, State.PROCEEDING])
def test_client_invite_failure_sends_ack_passes_up_and_waits_timer_d(start: State) -> None:
    d = ClientDriver("INVITE").into(start)
    out = d.respond(486)
    assert sent_methods(out) == ["ACK"]
    assert [type(o) for o in out] == [Send, events.ResponseReceived]
    ack = sends(out)[0].message
    assert isinstance(ack, Request)
    assert ack.uri == d.request.uri
    assert ack.get("Via") == d.request.get("Via")  # same branch: RFC 3261 17.1.1.3
    assert ack.to.tag == "b1" and ack.from_.tag == "a1"
    assert (ack.cseq.number, ack.cseq.method) == (1, "ACK")
    assert ack.call_id == d.request.call_id
    assert sends(out)[0].destination == UAS
    assert d.txn.state is State.COMPLETED and d.txn.timers == {Timer.D}
    # A retransmitted final response gets the ACK again and is not passed up.
    again = d.respond(486)
    assert sent_methods(again) == ["ACK"] and not of_type(again, events.ResponseReceived)
    assert d.advance(31.9) == []
    out = d.advance(0.1)
    assert of_type(out, events.TransactionTerminated) and not of_type(out, Send)
    assert_forgotten(d.layer)


def test_client_invite_over_tcp_terminates_at_once_after_a_failure() -> None:
    d = ClientDriver("INVITE", reliable=True)
    out = d.respond(503)
    assert [type(o) for o in out] == [Send, events.ResponseReceived, events.TransactionTerminated]
    assert_forgotten(d.layer)


def test_client_invite_timer_d_is_configurable() -> None:
    d = ClientDriver("INVITE")
    d.layer.settings = TimerSettings(timer_d=40.0)
    d.respond(486)
    assert d.advance(39.9) == []
    assert of_type(d.advance(0.1), events.TransactionTerminated)


@pytest.mark.parametrize("start", [State.CALLING, State.PROCEEDING])
def test_client_invite_2xx_goes_to_accepted_and_every_2xx_is_passed_up(start: State) -> None:
    d = ClientDriver("INVITE").into(start)
    out = d.respond(200)
    assert [type(o) for o in out] == [events.ResponseReceived]  # the TU ACKs a 2xx
    assert d.txn.state is State.ACCEPTED and d.txn.timers == {Timer.M}
    assert len(of_type(d.respond(200), events.ResponseReceived)) == 1
    assert d.respond(180) == []  # absorbed
    assert d.respond(486) == []  # absorbed
    assert d.advance(31.9) == []
    assert of_type(d.advance(0.1), events.TransactionTerminated)
    assert_forgotten(d.layer)


@pytest.mark.parametrize("start", [State.CALLING, State.COMPLETED])
def test_client_invite_transport_error_terminates(start: State) -> None:
    d = ClientDriver("INVITE").into(start)
    d.layer.transport_error(d.txn, d.now)
    out = d.layer.take()
    assert [type(o) for o in out] == [events.TransportFailed, events.TransactionTerminated]
    assert_forgotten(d.layer)


def test_client_invite_absorbs_provisionals_after_the_final() -> None:
    d = ClientDriver("INVITE").into(State.COMPLETED)
    assert d.respond(180) == []
    assert d.respond(200) == []


# -- client non-INVITE (figure 6) --------------------------------------------


def test_client_non_invite_timer_e_doubles_up_to_t2_until_timer_f() -> None:
    d = ClientDriver("OPTIONS")
    assert d.txn.state is State.TRYING and d.txn.timers == {Timer.E, Timer.F}
    times = retransmit_times(d, 31.9)
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    out = d.advance(0.1)
    assert [type(o) for o in out] == [events.TransactionTimedOut, events.TransactionTerminated]
    assert_forgotten(d.layer)


def test_client_non_invite_in_proceeding_retransmits_every_t2_and_f_keeps_running() -> None:
    d = ClientDriver("OPTIONS")
    d.advance(0.5)  # first retransmission at 0.5, next due at 1.5
    d.respond(100)
    assert d.txn.state is State.PROCEEDING and d.txn.timers == {Timer.E, Timer.F}
    times = retransmit_times(d, 31.9)
    assert times == [1.5, 5.5, 9.5, 13.5, 17.5, 21.5, 25.5, 29.5]
    assert of_type(d.advance(0.1), events.TransactionTimedOut)  # F from the start: 32 s


def test_client_non_invite_over_tcp_does_not_retransmit() -> None:
    d = ClientDriver("OPTIONS", reliable=True)
    assert d.txn.timers == {Timer.F}
    assert retransmit_times(d, 31.9) == []


@pytest.mark.parametrize("start", [State.TRYING, State.PROCEEDING])
@pytest.mark.parametrize("code", [200, 404])
def test_client_non_invite_final_is_passed_up_then_timer_k(start: State, code: int) -> None:
    d = ClientDriver("OPTIONS").into(start)
    out = d.respond(code)
    assert [type(o) for o in out] == [events.ResponseReceived]
    assert d.txn.state is State.COMPLETED and d.txn.timers == {Timer.K}
    assert d.respond(code) == []  # retransmissions absorbed
    assert d.advance(4.9) == []
    assert of_type(d.advance(0.1), events.TransactionTerminated)  # K = T4
    assert_forgotten(d.layer)


def test_client_non_invite_over_tcp_terminates_at_once_after_the_final() -> None:
    d = ClientDriver("OPTIONS", reliable=True)
    out = d.respond(200)
    assert [type(o) for o in out] == [events.ResponseReceived, events.TransactionTerminated]


@pytest.mark.parametrize("start", [State.TRYING, State.PROCEEDING])
def test_client_non_invite_transport_error_terminates(start: State) -> None:
    d = ClientDriver("OPTIONS").into(start)
    d.layer.transport_error(d.txn, d.now)
    assert [type(o) for o in d.layer.take()] == [
        events.TransportFailed,
        events.TransactionTerminated,
    ]


def test_client_non_invite_timer_f_in_proceeding_times_out() -> None:
    d = ClientDriver("OPTIONS").into(State.PROCEEDING)
    d.advance(31.9)
    assert of_type(d.advance(0.1), events.TransactionTimedOut)


# -- server INVITE (figure 7, RFC 6026 figure 5) ------------------------------


def test_server_invite_new_request_is_passed_up_and_retransmissions_absorbed() -> None:
    d = ServerDriver("INVITE")
    assert d.txn.state is State.PROCEEDING
    assert d.txn.timers == frozenset()
    assert d.retransmission() == []  # nothing sent yet: nothing to resend
    d.send(100)
    out = d.retransmission()
    assert sent_methods(out) == ["100"]  # the last provisional again
    assert sends(out)[0].destination == UAC
    assert d.layer.server_transactions == 1


def test_server_invite_provisionals_are_sent_and_stay_in_proceeding() -> None:
    d = ServerDriver("INVITE")
    assert sent_methods(d.send(180)) == ["180"]
    assert sent_methods(d.send(183)) == ["183"]
    assert d.txn.state is State.PROCEEDING
    assert sent_methods(d.retransmission()) == ["183"]


def test_server_invite_failure_retransmits_on_timer_g_until_timer_h() -> None:
    d = ServerDriver("INVITE")
    assert sent_methods(d.send(486)) == ["486"]
    assert d.txn.state is State.COMPLETED and d.txn.timers == {Timer.G, Timer.H}
    times = retransmit_times(d, 31.9)
    assert times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    out = d.advance(0.1)
    assert [type(o) for o in out] == [events.TransactionTimedOut, events.TransactionTerminated]
    assert_forgotten(d.layer)


def test_server_invite_request_retransmission_in_completed_resends_the_final() -> None:
    d = ServerDriver("INVITE").into(State.COMPLETED)
    assert sent_methods(d.retransmission()) == ["486"]


def test_server_invite_ack_confirms_stops_g_and_h_and_timer_i_ends_it() -> None:
    d = ServerDriver("INVITE").into(State.COMPLETED)
    assert d.ack() == []  # the ACK for a failure is the transaction's, not the TU's
    assert d.txn.state is State.CONFIRMED and d.txn.timers == {Timer.I}
    assert d.ack() == []  # ACK retransmissions absorbed
    assert d.retransmission() == []
    assert d.advance(4.9) == []
    assert of_type(d.advance(0.1), events.TransactionTerminated)  # I = T4
    assert_forgotten(d.layer)


def test_server_invite_over_tcp_has_no_timer_g_and_ends_on_the_ack() -> None:
    d = ServerDriver("INVITE", reliable=True)
    d.send(486)
    assert d.txn.timers == {Timer.H}
    out = d.ack()
    assert [type(o) for o in out] == [events.TransactionTerminated]
    assert_forgotten(d.layer)


def test_server_invite_2xx_goes_to_accepted_and_passes_acks_up() -> None:
    d = ServerDriver("INVITE")
    assert sent_methods(d.send(200)) == ["200"]
    assert d.txn.state is State.ACCEPTED and d.txn.timers == {Timer.L}
    assert d.retransmission() == []  # RFC 6026: absorbed, the TU retransmits the 2xx
    assert sent_methods(d.send(200)) == ["200"]  # the TU's retransmission goes out
    out = d.ack()
    (ack,) = of_type(out, events.AckReceived)
    assert isinstance(ack, events.AckReceived) and ack.transaction is d.txn
    assert d.advance(31.9) == []
    assert of_type(d.advance(0.1), events.TransactionTerminated)  # L = 64*T1
    assert_forgotten(d.layer)


def test_server_invite_discards_responses_the_state_does_not_allow() -> None:
    d = ServerDriver("INVITE").into(State.COMPLETED)
    assert d.send(200) == []
    assert d.send(180) == []
    d = ServerDriver("INVITE").into(State.ACCEPTED)
    assert d.send(486) == []


@pytest.mark.parametrize("start", [State.PROCEEDING, State.COMPLETED])
def test_server_invite_transport_error_terminates(start: State) -> None:
    d = ServerDriver("INVITE").into(start)
    d.layer.transport_error(d.txn, d.now)
    assert [type(o) for o in d.layer.take()] == [
        events.TransportFailed,
        events.TransactionTerminated,
    ]


def test_server_invite_transport_error_in_accepted_is_reported_and_it_stays() -> None:
    d = ServerDriver("INVITE").into(State.ACCEPTED)
    d.layer.transport_error(d.txn, d.now)
    assert [type(o) for o in d.layer.take()] == [events.TransportFailed]
    assert d.txn.state is State.ACCEPTED


# -- server non-INVITE (figure 8) ---------------------------------------------


def test_server_non_invite_trying_absorbs_retransmissions() -> None:
    d = ServerDriver("OPTIONS")
    assert d.txn.state is State.TRYING
    assert d.retransmission() == []


def test_server_non_invite_provisional_then_final_then_timer_j() -> None:
    d = ServerDriver("OPTIONS")
    assert sent_methods(d.send(100)) == ["100"]
    assert d.txn.state is State.PROCEEDING
    assert sent_methods(d.retransmission()) == ["100"]
    assert sent_methods(d.send(200)) == ["200"]
    assert state_of(d.txn) is State.COMPLETED and d.txn.timers == {Timer.J}
    assert sent_methods(d.retransmission()) == ["200"]
    assert d.send(404) == []  # further finals discarded
    assert d.advance(31.9) == []
    assert of_type(d.advance(0.1), events.TransactionTerminated)  # J = 64*T1
    assert_forgotten(d.layer)


def test_server_non_invite_final_from_trying() -> None:
    d = ServerDriver("OPTIONS")
    d.send(404)
    assert d.txn.state is State.COMPLETED


def test_server_non_invite_over_tcp_terminates_when_the_final_is_sent() -> None:
    d = ServerDriver("OPTIONS", reliable=True)
    out = d.send(200)
    assert [type(o) for o in out] == [Send, events.TransactionTerminated]
    assert_forgotten(d.layer)


@pytest.mark.parametrize("start", [State.PROCEEDING, State.COMPLETED])
def test_server_non_invite_transport_error_terminates(start: State) -> None:
    d = ServerDriver("OPTIONS").into(start)
    d.layer.transport_error(d.txn, d.now)
    assert of_type(d.layer.take(), events.TransactionTerminated)


# -- every cell of every table --------------------------------------------------

_STATES_OF = {
    TransactionKind.CLIENT_INVITE: [
        State.CALLING,
        State.PROCEEDING,
        State.COMPLETED,
        State.ACCEPTED,
    ],
    TransactionKind.CLIENT_NON_INVITE: [State.TRYING, State.PROCEEDING, State.COMPLETED],
    TransactionKind.SERVER_INVITE: [
        State.PROCEEDING,
        State.COMPLETED,
        State.CONFIRMED,
        State.ACCEPTED,
    ],
    TransactionKind.SERVER_NON_INVITE: [State.TRYING, State.PROCEEDING, State.COMPLETED],
}
_METHOD_OF = {
    TransactionKind.CLIENT_INVITE: "INVITE",
    TransactionKind.CLIENT_NON_INVITE: "OPTIONS",
    TransactionKind.SERVER_INVITE: "INVITE",
    TransactionKind.SERVER_NON_INVITE: "OPTIONS",
}
_CLIENT_INPUTS = {Input.PROVISIONAL: 180, Input.SUCCESS: 200, Input.FAILURE: 486}
_SERVER_INPUTS = {Input.SEND_PROVISIONAL: 180, Input.SEND_SUCCESS: 200, Input.SEND_FAILURE: 486}


def _apply(d: ClientDriver | ServerDriver, what: Input) -> None:
    """Make ``what`` happen to the driver's transaction through the public API."""
    if isinstance(d, ClientDriver) and what in _CLIENT_INPUTS:
        d.respond(_CLIENT_INPUTS[what])
    elif isinstance(d, ServerDriver) and what in _SERVER_INPUTS:
        d.send(_SERVER_INPUTS[what])
    elif isinstance(d, ServerDriver) and what is Input.REQUEST:
        d.retransmission()
    elif isinstance(d, ServerDriver) and what is Input.ACK:
        d.ack()
    elif what is Input.TRANSPORT_ERROR:
        d.layer.transport_error(d.txn, d.now)
        d.layer.take()
    else:
        timer = Timer(what.value.removeprefix("Timer "))
        if timer is Timer.B and isinstance(d, ClientDriver) and d.txn.state is State.PROCEEDING:
            d.layer.cancel_sent(d.txn, d.now)  # the only way Timer B runs in Proceeding
        if timer not in d.txn.timers:
            return  # that timer cannot be running in this state: nothing to fire
        handle = d.txn._timers[timer]
        d.now = handle[0]
        d.layer.tick(d.now)
        d.layer.take()


_CELLS = [
    (kind, state, what)
    for kind, states in _STATES_OF.items()
    for state in states
    for what in Input
    if (
        kind.name.startswith("CLIENT")
        and what not in _SERVER_INPUTS
        and what not in (Input.REQUEST, Input.ACK)
    )
    or (kind.name.startswith("SERVER") and what not in _CLIENT_INPUTS)
]


@pytest.mark.parametrize(
    ("kind", "state", "what"), _CELLS, ids=[f"{k.name}-{s.name}-{w.name}" for k, s, w in _CELLS]
)
def test_every_table_cell_moves_to_the_state_its_row_names(
    kind: TransactionKind, state: State, what: Input
) -> None:
    method = _METHOD_OF[kind]
    d: ClientDriver | ServerDriver
    d = ClientDriver(method) if kind.name.startswith("CLIENT") else ServerDriver(method)
    d.into(state)
    row = TABLES[kind].get((state, what))
    timer_input = what.name.startswith("TIMER_")
    started_by_cancel = kind is TransactionKind.CLIENT_INVITE and what is Input.TIMER_B
    if (
        timer_input
        and not started_by_cancel
        and Timer(what.value.removeprefix("Timer ")) not in d.txn.timers
    ):
        assert row is None, f"{what} has a row in {state} but its timer is not running there"
        return
    _apply(d, what)
    expected = state if row is None else row[0]
    assert d.txn.state is expected


def test_every_row_of_every_table_is_reachable_through_the_cell_test() -> None:
    covered = {(k, s, w) for k, s, w in _CELLS}
    for kind, table in TABLES.items():
        for state, what in table:
            assert (kind, state, what) in covered, (kind, state, what)


# -- matching (sections 17.1.3 and 17.2.3) -----------------------------------------


def test_response_with_an_unknown_branch_is_stray() -> None:
    layer = TransactionLayer()
    req = request("INVITE")
    layer.send_request(req, UAS, 0.0)
    layer.take()
    other = response(request("INVITE"), 200)
    layer.receive(other, UAS, 0.0)
    (stray,) = layer.take()
    assert isinstance(stray, events.StrayResponse) and stray.response is other


def test_response_matches_on_branch_and_cseq_method() -> None:
    layer = TransactionLayer()
    invite = request("INVITE", branch="z9hG4bKsame")
    txn = layer.send_request(invite, UAS, 0.0)
    cancel = make_cancel(invite)
    cancel_txn = layer.send_request(cancel, UAS, 0.0)
    layer.take()
    layer.receive(response(reparse(cancel), 200), UAS, 0.0)  # type: ignore[arg-type]
    (event,) = of_type(layer.take(), events.ResponseReceived)
    assert isinstance(event, events.ResponseReceived) and event.transaction is cancel_txn
    assert txn.state is State.CALLING


def test_server_transactions_differ_by_sent_by_even_with_the_same_branch() -> None:
    layer = TransactionLayer()
    layer.receive(request("OPTIONS", branch="z9hG4bKx", sent_by="192.0.2.10:5060"), UAC, 0.0)
    layer.receive(request("OPTIONS", branch="z9hG4bKx", sent_by="192.0.2.11:5060"), UAC, 0.0)
    assert len(of_type(layer.take(), events.RequestReceived)) == 2
    assert layer.server_transactions == 2


def test_cancel_is_its_own_transaction_and_finds_the_invite() -> None:
    d = ServerDriver("INVITE")
    cancel = reparse(make_cancel(d.request))
    assert isinstance(cancel, Request)
    d.layer.receive(cancel, UAC, 0.0)
    (event,) = of_type(d.layer.take(), events.RequestReceived)
    assert isinstance(event, events.RequestReceived)
    assert event.transaction is not d.txn
    assert event.transaction.kind is TransactionKind.SERVER_NON_INVITE
    assert d.layer.find_cancelled(cancel) is d.txn


def test_cancel_for_an_unknown_invite_finds_nothing() -> None:
    d = ServerDriver("INVITE")
    other = reparse(make_cancel(request("INVITE")))
    assert isinstance(other, Request)
    assert d.layer.find_cancelled(other) is None


def test_ack_for_a_2xx_with_its_own_branch_goes_to_the_tu_without_a_transaction() -> None:
    layer = TransactionLayer()
    ack = request("ACK", to_tag="b1")
    layer.receive(ack, UAC, 0.0)
    (event,) = layer.take()
    assert isinstance(event, events.AckReceived) and event.transaction is None
    assert layer.server_transactions == 0


def test_rfc2543_request_without_magic_cookie_matches_its_retransmission() -> None:
    layer = TransactionLayer()
    invite = request("INVITE", branch="")  # no branch at all
    assert invite.via[0].branch is None
    layer.receive(invite, UAC, 0.0)
    (event,) = of_type(layer.take(), events.RequestReceived)
    assert isinstance(event, events.RequestReceived)
    txn = event.transaction
    layer.send_response(txn, response(invite, 486, to_tag="t9"), 0.0)
    layer.take()
    layer.receive(reparse(invite), UAC, 0.1)
    assert sent_methods(layer.take()) == ["486"]
    # The ACK matches by the To tag of the response the transaction sent.
    raw = (
        "ACK sip:bob@example.com SIP/2.0\r\n"
        f"Via: {invite.get('Via')}\r\n"
        "From: <sip:alice@example.com>;tag=a1\r\n"
        "To: <sip:bob@example.com>;tag={tag}\r\n"
        f"Call-ID: {invite.call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
    )
    layer.receive(parse_message(raw.replace("{tag}", "other").encode()), UAC, 0.2)
    assert of_type(layer.take(), events.AckReceived)  # no match: the TU sees it
    assert txn.state is State.COMPLETED
    layer.receive(parse_message(raw.replace("{tag}", "t9").encode()), UAC, 0.3)
    assert layer.take() == []
    assert state_of(txn) is State.CONFIRMED


def test_client_needs_an_rfc3261_branch_and_refuses_acks_and_duplicates() -> None:
    layer = TransactionLayer()
    with pytest.raises(LocalProtocolError):
        layer.send_request(request("INVITE", branch=""), UAS, 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_request(request("ACK"), UAS, 0.0)
    req = request("OPTIONS", branch="z9hG4bKdup")
    layer.send_request(req, UAS, 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_request(request("OPTIONS", branch="z9hG4bKdup"), UAS, 0.0)


def test_send_stateless_emits_a_send_and_keeps_no_state() -> None:
    layer = TransactionLayer()
    ack = request("ACK", to_tag="b1")
    layer.send_stateless(ack, UAS)
    (out,) = layer.take()
    assert out == Send(ack, UAS)
    assert_forgotten(layer)


def test_timer_settings_scale_every_timer() -> None:
    layer = TransactionLayer(TimerSettings(t1=0.1, t2=0.4, t4=1.0, timer_d=2.0))
    layer.send_request(request("OPTIONS"), UAS, 0.0)
    assert layer.next_deadline() == pytest.approx(0.1)
    layer.tick(6.4)  # 64*T1
    assert of_type(layer.take(), events.TransactionTimedOut)


def test_timer_settings_refuse_nonsense() -> None:
    with pytest.raises(LocalProtocolError):
        TimerSettings(t1=0.0)
    with pytest.raises(LocalProtocolError):
        TimerSettings(t1=5.0, t2=4.0)


# -- where responses go (RFC 3261 section 18.2.2, RFC 3581) --------------------------


def _via(text: str) -> object:
    msg = parse_message(
        f"OPTIONS sip:x SIP/2.0\r\nVia: {text}\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n"
        "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nContent-Length: 0\r\n\r\n".encode()
    )
    return msg.via[0]


_SRC = Endpoint("198.51.100.1", 40000)
_SRC_TCP = Endpoint("198.51.100.1", 40000, "TCP")


@pytest.mark.parametrize(
    ("via", "source", "expected"),
    [
        ("SIP/2.0/UDP 192.0.2.1:5062", _SRC, Endpoint("198.51.100.1", 5062)),
        ("SIP/2.0/UDP host.example.com", _SRC, Endpoint("198.51.100.1", 5060)),
        ("SIP/2.0/UDP 192.0.2.1:5062;rport", _SRC, Endpoint("198.51.100.1", 40000)),
        ("SIP/2.0/UDP 192.0.2.1;maddr=239.1.1.1", _SRC, Endpoint("239.1.1.1", 5060)),
        ("SIP/2.0/TCP 192.0.2.1:5062", _SRC_TCP, _SRC_TCP),
    ],
)
def test_response_destination_follows_section_18_2_2(
    via: str, source: Endpoint, expected: Endpoint
) -> None:
    assert response_destination(_via(via), source) == expected  # type: ignore[arg-type]


def test_server_transaction_sends_its_responses_where_18_2_2_says() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS", sent_by="192.0.2.10:5062")
    source = Endpoint("198.51.100.7", 33333)
    layer.receive(req, source, 0.0)
    (event,) = layer.take()
    assert isinstance(event, events.RequestReceived)
    layer.send_response(event.transaction, response(req, 200), 0.0)
    (send,) = sends(layer.take())
    assert send.destination == Endpoint("198.51.100.7", 5062)  # source host, sent-by port


def test_endpoint_parses_kamailio_socket_syntax() -> None:
    assert Endpoint.parse("udp:127.0.0.1:5060") == Endpoint("127.0.0.1", 5060, "UDP")
    assert Endpoint.parse("tcp:[::1]:5070") == Endpoint("::1", 5070, "TCP")
    assert Endpoint.parse("10.0.0.1") == Endpoint("10.0.0.1", 5060)
    assert Endpoint.parse("tls:example.com") == Endpoint("example.com", 5061, "TLS")
    assert str(Endpoint("::1", 5060, "tcp")) == "tcp:[::1]:5060"
    with pytest.raises(LocalProtocolError):
        Endpoint.parse("udp:host:99999")
    with pytest.raises(LocalProtocolError):
        Endpoint("h", 5060, "carrier-pigeon")


def test_a_cancelled_invite_ends_64_t1_after_the_cancel_when_no_final_comes() -> None:
    d = ClientDriver("INVITE").into(State.PROCEEDING)
    d.advance(100.0)
    assert d.txn.state is State.PROCEEDING  # Proceeding has no timer of its own
    d.layer.cancel_sent(d.txn, d.now)
    assert d.advance(31.9) == []
    out = d.advance(0.1)
    assert [type(o) for o in out] == [events.TransactionTimedOut, events.TransactionTerminated]
    assert_forgotten(d.layer)


def test_drop_forgets_a_server_transaction_and_its_retransmission_is_new() -> None:
    d = ServerDriver("OPTIONS")
    d.layer.drop(d.txn)
    assert of_type(d.layer.take(), events.TransactionTerminated)
    assert_forgotten(d.layer)
    assert of_type(d.retransmission(), events.RequestReceived)
