"""The node pool: Kamailio's selection, stickiness, retries and failover, on a fake clock."""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media_helpers import SDP, FakeNode, Net
from sipcore_media import (
    CommandFailed,
    ConfigError,
    Delete,
    HashAlgo,
    NgDecodeError,
    NgErrorReply,
    NodeDisabled,
    NodeEnabled,
    NoNodeAvailable,
    Offer,
    Overloaded,
    Ping,
    Query,
    ReplyReceived,
    RtpengineConfig,
    RtpenginePool,
    SdpReply,
    Transmit,
    call_hash,
    encode_message,
)

A = ("127.0.0.2", 2001)
B = ("127.0.0.3", 2002)
C = ("127.0.0.4", 2003)
URL_A, URL_B, URL_C = (f"udp:{h}:{p}" for h, p in (A, B, C))


def net(
    sock: str | tuple[str, ...] = f"{URL_A} {URL_B}",
    dead: tuple[tuple[str, int], ...] = (),
    **config: Any,
) -> Net:
    pool = RtpenginePool(RtpengineConfig(sock, **config), cookie_prefix="t")
    nodes = {addr: FakeNode(addr) for addr in (A, B, C)}
    for addr in dead:
        nodes[addr].answer = None
    return Net(pool, nodes)


def offer(call_id: str, via: str | None = None) -> Offer:
    return Offer(sdp=SDP, call_id=call_id, from_tag="ft", via_branch=via)


def answer_of(call_id: str) -> dict[str, Any]:
    return {"command": "answer", "call-id": call_id, "from-tag": "ft", "to-tag": "tt", "sdp": SDP}


def on_first_of_two() -> str:
    """A Call-ID that two nodes of equal weight put on the first."""
    return next(c for c in (f"k{i}" for i in range(100)) if legacy_choice(c, [1, 1]) == 0)


def legacy_choice(call_id: str, weights: list[int]) -> int:
    """Kamailio 5.6's pick, computed independently: byte sum mod 256, then walk."""
    cut = (sum(call_id.encode()) % 256) % sum(weights)
    for i, w in enumerate(weights):
        if cut < w:
            return i
        cut -= w
    raise AssertionError


# -- hashing and selection ----------------------------------------------------------


def test_call_hash_algorithms_match_kamailios() -> None:
    assert call_hash("a", HashAlgo.LEGACY) == 97
    assert call_hash("ab" * 200, HashAlgo.LEGACY) == (195 * 200) % 256
    assert call_hash("abc", HashAlgo.CRC32) == zlib.crc32(b"abc") == 0x352441C2
    digest = hashlib.sha1(b"abc").digest()
    assert call_hash("abc", HashAlgo.SHA1) == sum(struct.unpack("20b", digest)) % 2**32


def test_a_new_call_goes_where_the_weighted_hash_says() -> None:
    n = net(f"{URL_A}=2 {URL_B}=1")
    # "a" sums to 97: 97 % 3 = 1 < 2, node A; "b": 98 % 3 = 2, past A's 2, node B.
    n.request(offer("a"))
    n.request(offer("b"))
    assert [t.destination for t in n.sent] == [A, B]
    for i in range(30):
        call_id = f"call-{i}@host"
        n.sent.clear()
        n.request(offer(call_id))
        assert n.sent[0].destination == (A, B)[legacy_choice(call_id, [2, 1])]


def test_a_node_of_weight_zero_is_never_chosen() -> None:
    n = net(f"{URL_A}=0 {URL_B}")
    for i in range(20):
        n.request(offer(f"c{i}"))
    assert {t.destination for t in n.sent} == {B}


def test_the_reply_is_typed_and_carries_the_node_and_context() -> None:
    n = net(URL_A)
    n.request(offer("c1"), context="mine")
    [done] = n.finished()
    assert isinstance(done, ReplyReceived)
    assert isinstance(done.reply, SdpReply) and "40000" in done.reply.sdp
    assert (done.node, done.context, done.command) == (URL_A, "mine", "offer")
    assert n.nodes[A].cookies == ["t_1"]


def test_cookies_are_new_for_every_command() -> None:
    n = net(URL_A)
    for i in range(5):
        n.request(Query(call_id=f"c{i}"))
    assert n.nodes[A].cookies == [f"t_{i}" for i in range(1, 6)]
    assert len({RtpenginePool(RtpengineConfig(URL_A))._cookie_prefix for _ in range(20)}) == 20


# -- stickiness -----------------------------------------------------------------------


def test_answer_and_delete_follow_the_offer_node_even_after_failover() -> None:
    call_id = on_first_of_two()
    n = net(dead=(A,), rtpengine_tout_ms=100, rtpengine_retr=2)
    n.request(offer(call_id))
    n.advance(1.0)
    [done] = n.finished()
    assert isinstance(done, ReplyReceived) and done.node == URL_B
    assert n.pool.sticky_node(call_id) == URL_B
    n.nodes[A].answer = n.nodes[B].answer  # A is back: the hash points to it again
    n.advance(100.0)  # ... and is re-enabled by its recheck ping
    n.request(answer_of(call_id))
    n.request(Delete(call_id=call_id))
    assert n.nodes[B].commands == ["offer", "answer", "delete"]
    assert "answer" not in n.nodes[A].commands
    assert n.pool.sticky_node(call_id) is None and n.pool.hash_total() == 0


def test_via_branches_stick_apart_and_a_delete_without_branch_ends_them_all() -> None:
    n = net(URL_A)
    n.request(offer("c", via="b1"))
    n.request(offer("c", via="b2"))
    assert n.pool.hash_total() == 2
    n.request(Delete(call_id="c", via_branch="b1"))
    assert (n.pool.sticky_node("c", "b1"), n.pool.sticky_node("c", "b2")) == (None, URL_A)
    n.request(offer("c", via="b3"))
    n.request(Delete(call_id="c"))
    assert n.pool.hash_total() == 0


def test_sticky_entries_expire_after_hash_table_tout() -> None:
    n = net(URL_A, hash_table_tout=30)
    n.request(offer("c"))
    assert n.pool.hash_total() == 1
    n.advance(29.5)
    assert n.pool.sticky_node("c") == URL_A
    n.advance(31.0)
    assert n.pool.hash_total() == 0 and n.pool.sticky_node("c") is None


def test_the_sticky_table_is_bounded() -> None:
    n = net(URL_A, max_hash_entries=3)
    for i in range(10):
        n.request(offer(f"c{i}"))
    assert n.pool.hash_total() == 3


def test_errors_do_not_make_a_call_sticky() -> None:
    n = net(URL_A)
    n.nodes[A].answer = lambda d: {"result": "error", "error-reason": "Unknown call-id"}
    n.request(Query(call_id="gone"))
    [failed] = n.finished()
    assert isinstance(failed, CommandFailed) and isinstance(failed.error, NgErrorReply)
    assert failed.error.error_reason == "Unknown call-id" and failed.tried == (URL_A,)
    assert n.pool.hash_total() == 0


# -- retransmission and failover -------------------------------------------------------


def test_retransmissions_reuse_the_cookie_at_tout_ms_intervals() -> None:
    n = net(URL_A, dead=(A,), rtpengine_tout_ms=300, rtpengine_retr=3)
    n.request(offer("c"))
    assert n.pool.next_deadline() == pytest.approx(0.3)
    n.advance(0.299)
    assert len(n.sent) == 1
    n.advance(0.3)
    n.advance(0.6)
    assert [(t.attempt, t.cookie) for t in n.sent] == [(1, "t_1"), (2, "t_1"), (3, "t_1")]
    assert len({t.datagram for t in n.sent}) == 1
    assert n.finished() == []
    n.advance(0.9)
    [failed] = n.finished()
    assert isinstance(failed, CommandFailed) and isinstance(failed.error, NoNodeAvailable)
    assert failed.error.status_hint == 503 and failed.tried == (URL_A,)
    [disabled] = n.of_type(NodeDisabled)
    assert (disabled.url, disabled.until) == (URL_A, pytest.approx(60.9))


def test_a_dead_first_node_fails_over_within_retr_times_tout() -> None:
    n = net(f"{URL_A} {URL_B}", dead=(A,), rtpengine_tout_ms=200, rtpengine_retr=2)
    call_id = on_first_of_two()
    n.request(offer(call_id))
    n.advance(0.4)
    [done] = n.finished()
    assert isinstance(done, ReplyReceived) and done.node == URL_B
    # Two sends to A 200 ms apart, then B with a new cookie at 0.4 s.
    assert [(t.destination, t.cookie, t.attempt) for t in n.sent] == [
        (A, "t_1", 1), (A, "t_1", 2), (B, "t_2", 1)
    ]  # fmt: skip


def test_a_disabled_node_gets_nothing_until_its_recheck_ping_is_answered() -> None:
    n = net(f"{URL_A} {URL_B}", dead=(A,), rtpengine_tout_ms=100, rtpengine_retr=1,
            rtpengine_disable_tout=10)  # fmt: skip
    for i in range(20):
        n.request(offer(f"call-{i}"))
        n.advance(n.now + 0.2)
    a_before = len(n.nodes[A].received)
    assert a_before == 1  # only the first command ever went to A
    assert all(isinstance(e, ReplyReceived) for e in n.finished())
    [disabled] = n.of_type(NodeDisabled)
    assert disabled.until is not None and disabled.until < 1.0 + 10  # disabled within 1 s
    n.advance(disabled.until - 0.01)
    assert n.nodes[A].commands == ["offer"]
    n.advance(disabled.until)
    assert n.nodes[A].commands == ["offer", "ping"]  # the recheck, on time
    assert n.pool.show(URL_A)[0].active is False  # no pong: still disabled
    n.nodes[A].answer = n.nodes[B].answer
    n.advance(30.0)
    assert n.of_type(NodeEnabled) == [NodeEnabled(URL_A, 0)]
    assert n.pool.show(URL_A)[0].active is True


def test_when_every_node_is_disabled_the_pool_says_so_at_once() -> None:
    n = net(dead=(A, B), rtpengine_tout_ms=100, rtpengine_retr=1)
    n.request(offer("c1"))
    n.advance(0.2)
    [failed] = n.finished()
    assert isinstance(failed, CommandFailed) and set(failed.tried) == {URL_A, URL_B}
    # aggressive_redetection: when no node was left the nodes were pinged ...
    pings = [t for t in n.sent if t.command == "ping"]
    assert sorted(t.destination for t in pings) == [A, B]
    # ... and while those pings are out, a new command is refused at once.
    [refused] = n.pool.request(offer("c2"), n.now)
    assert isinstance(refused, CommandFailed)
    assert "no available proxies" in str(refused.error) and refused.tried == ()
    n.advance(n.now + 1.0)  # the pings time out; the next refusal pings again
    events = n.pool.request(offer("c3"), n.now)
    assert isinstance(events[0], CommandFailed)
    assert sorted(e.destination for e in events[1:] if isinstance(e, Transmit)) == [A, B]


def test_without_aggressive_redetection_no_ping_goes_out() -> None:
    n = net(dead=(A, B), rtpengine_tout_ms=100, rtpengine_retr=1, aggressive_redetection=False)
    n.request(offer("c1"))
    n.advance(0.2)
    events = n.pool.request(offer("c2"), n.now)
    assert [type(e) for e in events] == [CommandFailed]


def test_other_commands_waiting_on_a_dead_node_move_on_at_once() -> None:
    n = net(f"{URL_A} {URL_B}", dead=(A,), rtpengine_tout_ms=1000, rtpengine_retr=2)
    on_a = [c for c in (f"k{i}" for i in range(100)) if legacy_choice(c, [1, 1]) == 0][:3]
    n.request(offer(on_a[0]))
    n.advance(1.5)
    n.request(offer(on_a[1]))  # A not given up yet: this one goes to A too
    n.advance(1.9)
    n.request(offer(on_a[2]))
    assert [t.destination for t in n.sent if t.attempt == 1] == [A, A, A]
    n.advance(2.0)  # the first command's second send times out: A is given up
    done = n.finished()
    assert [e.node for e in done if isinstance(e, ReplyReceived)] == [URL_B, URL_B, URL_B]
    assert n.now == 2.0


def test_queried_nodes_limit_bounds_the_nodes_tried() -> None:
    n = net(f"{URL_A} {URL_B} {URL_C}", dead=(A, B, C), rtpengine_tout_ms=100,
            rtpengine_retr=2, queried_nodes_limit=2)  # fmt: skip
    n.request(offer("c"))
    n.advance(10.0)
    [failed] = n.finished()
    assert isinstance(failed, CommandFailed)
    assert "queried nodes limit reached" in str(failed.error) and len(failed.tried) == 2
    assert len([t for t in n.sent if t.command == "offer"]) == 4


def test_worst_case_time_is_bounded_by_nodes_retries_and_timeout() -> None:
    n = net(f"{URL_A} {URL_B} {URL_C}", dead=(A, B, C), rtpengine_tout_ms=250,
            rtpengine_retr=3)  # fmt: skip
    n.request(offer("c"))
    while not n.finished():
        deadline = n.pool.next_deadline()
        assert deadline is not None
        n.advance(deadline)
    assert n.now == pytest.approx(3 * 3 * 0.25)


@pytest.mark.parametrize(
    "reply",
    [
        {"result": "load limit"},
        {"result": "error", "error-reason": "Parallel session limit reached"},
        {"result": "error", "error-reason": "Ran out of ports"},
    ],
)
def test_a_full_node_passes_the_command_on_without_being_disabled(reply: dict[str, Any]) -> None:
    n = net(f"{URL_A} {URL_B}")
    n.nodes[A].answer = lambda d: reply
    n.nodes[B].answer = lambda d: {"sdp": "v=0", "result": "ok"}
    call_id = on_first_of_two()
    n.request(offer(call_id))
    [done] = n.finished()
    assert isinstance(done, ReplyReceived) and done.node == URL_B
    assert n.of_type(NodeDisabled) == [] and n.pool.show(URL_A)[0].active


def test_a_malformed_reply_fails_the_command_without_failover() -> None:
    n = net(f"{URL_A} {URL_B}")
    pool = n.pool
    [sent] = pool.request(Query(call_id="c"), 0.0)
    assert isinstance(sent, Transmit)
    [failed] = pool.receive(sent.cookie.encode() + b" d6:result", 0.1)
    assert isinstance(failed, CommandFailed) and isinstance(failed.error, NgDecodeError)
    [sent] = pool.request(Offer(sdp=SDP, call_id="c", from_tag="f"), 0.0)
    assert isinstance(sent, Transmit)
    [failed] = pool.receive(encode_message(sent.cookie, {"result": "ok"}), 0.1)
    assert isinstance(failed, CommandFailed) and "no 'sdp'" in str(failed.error)
    assert pool.pending == 0


def test_late_and_foreign_replies_are_dropped_and_counted() -> None:
    n = net(f"{URL_A} {URL_B}", rtpengine_tout_ms=100, rtpengine_retr=1)
    n.nodes[A].answer = None
    call_id = on_first_of_two()
    n.request(offer(call_id))
    n.advance(0.1)  # failed over to B, answered
    late = encode_message("t_1", {"sdp": "v=0", "result": "ok"})  # A's answer, too late
    assert n.pool.receive(late, n.now) == []
    assert n.pool.receive(b"garbage", n.now) == []
    assert n.pool.receive(encode_message("other_9", {"result": "ok"}), n.now) == []
    assert n.pool.stray_replies == 3
    assert len(n.finished()) == 1


def test_a_reply_from_the_wrong_address_is_not_taken() -> None:
    pool = RtpenginePool(RtpengineConfig(URL_A), cookie_prefix="t")
    [sent] = pool.request(Ping(), 0.0)
    assert isinstance(sent, Transmit)
    reply = encode_message(sent.cookie, {"result": "pong"})
    assert pool.receive(reply, 0.1, source=("127.0.0.9", A[1])) == []
    assert pool.receive(reply, 0.1, source=("not-an-address", A[1])) == []
    assert pool.receive(reply, 0.1, source=(A[0], A[1] + 1)) == []
    [done] = pool.receive(reply, 0.1, source=A)
    assert isinstance(done, ReplyReceived)


def test_a_websocket_node_is_asked_once_per_timeout() -> None:
    pool = RtpenginePool(
        RtpengineConfig(f"ws://127.0.0.1:8080/ng {URL_B}", rtpengine_tout_ms=500),
        cookie_prefix="t",
    )
    call_id = on_first_of_two()
    [first] = pool.request(offer(call_id), 0.0)
    assert isinstance(first, Transmit) and first.node.scheme == "ws"
    assert first.node.url == "ws://127.0.0.1:8080/ng"
    events = pool.tick(0.5)
    assert isinstance(events[0], NodeDisabled)
    assert [(e.node.url, e.attempt) for e in events if isinstance(e, Transmit)] == [(URL_B, 1)]


# -- sets, named nodes, limits --------------------------------------------------------


def test_commands_go_to_the_set_asked_for() -> None:
    n = net((f"{URL_A}", f"7 == {URL_B} {URL_C}"))
    n.request(offer("x"))
    n.request(offer("y"), setid=7)
    assert n.sent[0].destination == A and n.sent[1].destination in (B, C)
    events = n.pool.request(offer("z"), n.now, setid=3)
    assert isinstance(events[0], CommandFailed) and "no rtpengine set 3" in str(events[0].error)


def test_a_call_stuck_in_one_set_is_placed_anew_in_another() -> None:
    n = net((f"{URL_A}", f"7 == {URL_B}"))
    n.request(offer("x"))
    n.request(answer_of("x"), setid=7)
    assert [t.destination for t in n.sent] == [A, B]


def test_a_named_node_gets_the_command_without_failover() -> None:
    n = net(f"{URL_A} {URL_B}", dead=(A,), rtpengine_tout_ms=100, rtpengine_retr=1)
    n.request({"command": "statistics"}, node=URL_A)
    n.advance(1.0)
    [failed] = n.finished()
    assert isinstance(failed, CommandFailed) and "no failover" in str(failed.error)
    assert [t.destination for t in n.sent] == [A]


def test_too_many_commands_in_flight_are_refused() -> None:
    pool = RtpenginePool(RtpengineConfig(URL_A, max_pending=2), cookie_prefix="t")
    pool.request(Query(call_id="1"), 0.0)
    pool.request(Query(call_id="2"), 0.0)
    [refused] = pool.request(Query(call_id="3"), 0.0)
    assert isinstance(refused, CommandFailed) and isinstance(refused.error, Overloaded)


def test_a_command_needs_a_name() -> None:
    with pytest.raises(Exception, match="'command'"):
        RtpenginePool(RtpengineConfig(URL_A)).request({"call-id": "c"}, 0.0)


# -- the RPC commands -----------------------------------------------------------------


def test_show_lists_nodes_as_rtpengine_show_does() -> None:
    n = net((f"{URL_A}=3 {URL_B}", f"1 == {URL_C}"))
    infos = n.pool.show()
    assert [(i.url, i.setid, i.index, i.weight, i.active) for i in infos] == [
        (URL_A, 0, 0, 3, True), (URL_B, 0, 1, 1, True), (URL_C, 1, 2, 1, True)
    ]  # fmt: skip
    with pytest.raises(ConfigError):
        n.pool.show("udp:nowhere:1")


def test_disabling_by_hand_lets_commands_already_sent_finish() -> None:
    n = net(URL_A)
    events = n.pool.request(offer("c"), 0.0)
    [sent] = [e for e in events if isinstance(e, Transmit)]
    n.deliver(n.pool.enable(URL_A, False, 0.0))
    [done] = n.pool.receive(encode_message(sent.cookie, {"sdp": "v=0", "result": "ok"}), 0.1)
    assert isinstance(done, ReplyReceived) and done.node == URL_A


def test_enable_zero_disables_for_good_and_one_pings_back() -> None:
    n = net(f"{URL_A} {URL_B}")
    n.deliver(n.pool.enable(URL_A, False, n.now))
    assert n.of_type(NodeDisabled) == [NodeDisabled(URL_A, 0, None, "disabled by hand")]
    info = n.pool.show(URL_A)[0]
    assert (info.disabled, info.active, info.recheck_at) == (True, False, None)
    n.advance(1000.0)
    assert n.nodes[A].received == []  # never probed
    n.deliver(n.pool.enable(URL_A, True, n.now))
    assert n.nodes[A].commands == ["ping"]
    assert n.pool.show(URL_A)[0].active and n.of_type(NodeEnabled) == [NodeEnabled(URL_A, 0)]


def test_rpc_ping_disables_a_silent_node_but_not_for_good() -> None:
    n = net(f"{URL_A} {URL_B}", dead=(A,), rtpengine_tout_ms=100, rtpengine_retr=2,
            rtpengine_disable_tout=5)  # fmt: skip
    n.deliver(n.pool.ping("all", n.now))
    n.advance(1.0)
    outcomes = {(type(e).__name__, e.node if isinstance(e, ReplyReceived) else e.tried)
                for e in n.finished()}  # fmt: skip
    assert outcomes == {("ReplyReceived", URL_B), ("CommandFailed", (URL_A,))}
    info = n.pool.show(URL_A)[0]
    assert (info.active, info.disabled) == (False, False)
    assert info.recheck_at == pytest.approx(5.2)


def test_a_permanently_disabled_node_stays_so_on_a_pong() -> None:
    n = net(URL_A)
    n.deliver(n.pool.enable(URL_A, False, 0.0))
    n.deliver(n.pool.ping(URL_A, 0.0))
    assert n.pool.show(URL_A)[0].disabled


def test_allow_op_lets_calls_finish_on_disabled_nodes() -> None:
    for allow, timed_out_ok, by_hand_ok in ((0, False, False), (1, True, True), (2, False, True)):
        n = net(URL_A, rtpengine_allow_op=allow)
        n.request(offer("c1"))
        n.request(offer("c2"))
        n.nodes[A].answer = None
        n.request(Query(call_id="c1"))
        n.advance(10.0)  # A times out and is disabled
        n.nodes[A].answer = n.nodes[B].answer
        before = len(n.nodes[A].received)
        n.request(Delete(call_id="c1"))
        assert (len(n.nodes[A].received) > before) is timed_out_ok, allow
        n.deliver(n.pool.enable(URL_A, False, n.now))
        before = len(n.nodes[A].received)
        n.request(Delete(call_id="c2"))
        assert (len(n.nodes[A].received) > before) is by_hand_ok, allow


def test_reload_hides_removed_nodes_and_their_commands_run_their_course() -> None:
    n = net(f"{URL_A} {URL_B}", rtpengine_tout_ms=100, rtpengine_retr=2)
    n.nodes[A].answer = None
    call_id = on_first_of_two()
    n.request(offer(call_id))
    n.deliver(n.pool.reload(f"{URL_B}=5 {URL_C}", n.now))
    assert n.finished() == []  # the offer sent to A still waits for its answer
    n.advance(0.2)
    [done] = n.finished()
    assert isinstance(done, ReplyReceived) and done.node == URL_B
    assert [(i.url, i.weight) for i in n.pool.show()] == [(URL_B, 5), (URL_C, 1)]
    # Listed again, a hidden node comes back selectable.
    n.deliver(n.pool.reload(f"{URL_A} {URL_B}", n.now))
    assert [(i.url, i.active) for i in n.pool.show()] == [(URL_A, True), (URL_B, True)]


def test_start_pings_every_node_and_ping_interval_repeats_it() -> None:
    n = net(f"{URL_A} {URL_B}", ping_interval=60)
    n.deliver(n.pool.start(0.0))
    assert n.nodes[A].commands == ["ping"] and n.nodes[B].commands == ["ping"]
    n.advance(125.0)
    assert n.nodes[A].commands == ["ping"] * 3


def test_a_node_by_name_takes_replies_from_any_address() -> None:
    pool = RtpenginePool(RtpengineConfig("udp:rtp.example.com:2223"), cookie_prefix="t")
    [sent] = pool.request(Ping(), 0.0)
    assert isinstance(sent, Transmit) and sent.destination == ("rtp.example.com", 2223)
    [done] = pool.receive(encode_message(sent.cookie, {"result": "pong"}), 0.1, source=A)
    assert isinstance(done, ReplyReceived)


@pytest.mark.parametrize("prefix", ["", "a b", "caf\u00e9", "tab\t"])
def test_cookie_prefixes_must_be_printable_ascii(prefix: str) -> None:
    with pytest.raises(ConfigError):
        RtpenginePool(RtpengineConfig(URL_A), cookie_prefix=prefix)


def test_unix_nodes_are_refused_by_the_pool() -> None:
    with pytest.raises(ConfigError, match="unix"):
        RtpenginePool(RtpengineConfig("unix:/run/rtpengine.sock"))


# -- nothing crashes, everything ends --------------------------------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.integers(0, 20), st.sampled_from(["offer", "delete"])),
        st.tuples(st.just("advance"), st.floats(0.0, 3.0)),
        st.tuples(st.just("toggle"), st.sampled_from([0, 1, 2])),
        st.tuples(st.just("garbage"), st.binary(max_size=30)),
        st.tuples(st.just("enable"), st.sampled_from([0, 1, 2]), st.booleans()),
    ),
    max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(_ops)
def test_every_command_ends_exactly_once_whatever_happens(ops: list[Any]) -> None:
    n = net(f"{URL_A} {URL_B}=2 {URL_C}", rtpengine_tout_ms=200, rtpengine_retr=2,
            rtpengine_disable_tout=2)  # fmt: skip
    addresses = (A, B, C)
    urls = (URL_A, URL_B, URL_C)
    requested: list[int] = []
    for op in ops:
        if op[0] == "request":
            call_id = f"call-{op[1]}"
            command: Any = offer(call_id) if op[2] == "offer" else Delete(call_id=call_id)
            events = n.pool.request(command, n.now)
            own = events[0]  # the command's own Transmit or CommandFailed comes first
            assert isinstance(own, Transmit | CommandFailed) and own.command == op[2]
            requested.append(own.command_id)
            n.deliver(events)
        elif op[0] == "advance":
            n.advance(n.now + op[1])
        elif op[0] == "toggle":
            node = n.nodes[addresses[op[1]]]
            node.answer = None if node.answer is not None else n.nodes[C].answer or (lambda d: {
                "result": "ok", "sdp": "v=0"})  # fmt: skip
        elif op[0] == "garbage":
            assert n.pool.receive(op[1], n.now) == []
        else:
            n.deliver(n.pool.enable(urls[op[1]], op[2], n.now))
    n.advance(n.now + 30.0)
    finished = [e.command_id for e in n.finished() if e.command_id in requested]
    assert sorted(finished) == sorted(requested)
    assert n.pool.pending <= 3  # at most the background pings are left
