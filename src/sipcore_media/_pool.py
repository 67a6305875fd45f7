"""A pool of rtpengine nodes: selection, stickiness, retransmission, failover.

This module owns :class:`RtpenginePool`, Kamailio's rtpengine node
handling as a sans-I/O state machine. :meth:`~RtpenginePool.request`
picks a node and gives the datagram to send; :meth:`~RtpenginePool.receive`
takes a datagram that arrived and gives the reply, or the same command
sent to the next node; :meth:`~RtpenginePool.tick` retransmits, fails over
and probes disabled nodes when their time comes. All three return
:mod:`sipcore_media.events` values and never block.

Kamailio's rules, kept: a call sticks to the node that answered its first
command (Call-ID and via-branch, for ``hash_table_tout``; a delete without
via-branch ends every branch); otherwise the Call-ID hash walks the
weights of the enabled nodes not yet tried; a node that does not answer
``rtpengine_retr`` sends, ``rtpengine_tout_ms`` apart, of the same cookie
is disabled for ``rtpengine_disable_tout`` and the command goes to another
node with a new cookie, at most ``queried_nodes_limit`` nodes in all; a
``load limit`` reply, ``Parallel session limit reached`` and ``Ran out of
ports`` move on without disabling.

Where it differs, so that a dead node never holds up other calls
(Kamailio issue 3370): a disabled node whose time has come is pinged in
the background and rejoins on its ``pong`` instead of being pinged inside
the command; when every node is disabled the command fails at once (with
``aggressive_redetection`` the nodes are pinged for the next command);
when a node is given up on, every other command waiting on it moves to
the next node at once instead of waiting out its own retries.

It must not open sockets, resolve names or read a clock: ``now`` is given.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import itertools
import secrets
import zlib
from collections.abc import Mapping
from typing import Final, cast

import attrs

from sipcore import SecondTimers, TimerHandle, TimerQueue

from ._codec import NgDict, decode_document, encode_document, split_cookie
from ._commands import Command
from ._config import HashAlgo, RtpengineConfig
from ._errors import (
    CommandError,
    ConfigError,
    MediaError,
    NgDecodeError,
    NgErrorReply,
    NoNodeAvailable,
    Overloaded,
    UnexpectedReply,
)
from ._replies import ErrorReply, LoadLimitReply, PingReply, Reply, parse_reply
from ._sock import NodeAddress, NodeSpec, parse_rtpengine_sock
from .events import (
    CommandFailed,
    MediaEvent,
    NodeDisabled,
    NodeEnabled,
    ReplyReceived,
    Transmit,
)

__all__ = ["FAILOVER_ERRORS", "NodeInfo", "RtpenginePool"]

#: Error reasons after which Kamailio asks the next node (and does not
#: disable this one).
FAILOVER_ERRORS: Final = frozenset({"Parallel session limit reached", "Ran out of ports"})


class _Probe(enum.Enum):
    RECHECK = "recheck"  # a disabled node's time came (Kamailio's rtpp_test)
    PING = "ping"  # rtpengine.ping: a failure disables, a pong enables unless permanent
    ENABLE = "enable"  # rtpengine.enable 1: a pong enables even a permanent node


@attrs.define(eq=False)
class _Node:
    spec: NodeSpec
    index: int
    disabled: bool = False
    permanent: bool = False
    recheck_at: float = 0.0
    displayed: bool = True
    probe: str | None = None  # cookie of the ping in flight

    @property
    def url(self) -> str:
        return self.spec.url


@attrs.frozen
class NodeInfo:
    """One node as ``rtpengine.show`` lists it. ``disabled`` is Kamailio's
    "disabled(permanent)" (by hand or by a reload); ``active`` is False for
    any disabled node; ``recheck_at`` is when a node disabled for not
    answering is probed again (on the caller's clock), else None."""

    url: str
    setid: int
    index: int
    weight: int
    disabled: bool
    active: bool
    recheck_at: float | None


@attrs.define(eq=False)
class _Pending:
    command_id: int
    command: str
    body: bytes
    call_id: str | None
    via_branch: str
    setid: int
    context: object
    explicit: bool  # sent to a named node: no selection, no failover
    probe: _Probe | None
    report: bool  # surface the outcome (False for background rechecks)
    queried: list[_Node] = attrs.field(factory=list)
    node: _Node | None = None
    cookie: str = ""
    datagram: bytes = b""
    sends: int = 0
    timer: TimerHandle | None = None


@attrs.define(eq=False)
class _Sticky:
    node: _Node
    expires: float
    second: int


_Key = tuple[str, str]


def _signed_sum(data: bytes) -> int:
    # C's char is signed on x86-64.
    return sum(b - 256 if b > 127 else b for b in data) & 0xFFFFFFFF


def call_hash(call_id: str, algo: HashAlgo) -> int:
    """The number a Call-ID selects a node with (Kamailio's ``sum``)."""
    data = call_id.encode("utf-8", "surrogateescape")
    if algo is HashAlgo.LEGACY:
        return sum(data) & 0xFF
    if algo is HashAlgo.SHA1:
        return _signed_sum(hashlib.sha1(data).digest())
    return zlib.crc32(data) & 0xFFFFFFFF


def _same_address(source: tuple[str, int], node: NodeAddress) -> bool:
    """Whether a reply from ``source`` can be the node's. Only a node given
    by IP address can be checked (a name would need resolving)."""
    if node.host is None:
        return True
    try:
        expected = ipaddress.ip_address(node.host)
    except ValueError:
        return True
    try:
        seen = ipaddress.ip_address(source[0].split("%", 1)[0])
    except ValueError:
        return False
    return (seen, source[1]) == (expected, node.port)


class RtpenginePool:
    """Kamailio's rtpengine sets and nodes, sans-I/O.

    >>> pool = RtpenginePool(RtpengineConfig("udp:127.0.0.1:2223"), cookie_prefix="k")
    >>> [sent] = pool.request({"command": "ping"}, now=0.0)
    >>> sent.destination, sent.datagram
    (('127.0.0.1', 2223), b'k_1 d7:command4:pinge')
    >>> [done] = pool.receive(b"k_1 d6:result4:ponge", now=0.01)
    >>> type(done.reply).__name__, done.node
    ('PingReply', 'udp:127.0.0.1:2223')
    """

    def __init__(
        self, config: RtpengineConfig | None = None, *, cookie_prefix: str | None = None
    ) -> None:
        self.config = config or RtpengineConfig()
        prefix = cookie_prefix if cookie_prefix is not None else secrets.token_hex(6)
        if not prefix or not prefix.isascii() or not prefix.isprintable() or " " in prefix:
            raise ConfigError("cookie_prefix must be printable ASCII without spaces")
        # Cookies must be unique per daemon for a minute (its reply cache is
        # keyed by the cookie alone): a random prefix per pool, a counter.
        self._cookie_prefix = prefix
        self._cookies = itertools.count(1)
        self._ids = itertools.count(1)
        self._sets: dict[int, list[_Node]] = {}
        self._node_count = 0
        self._pending: dict[str, _Pending] = {}
        self._timers: TimerQueue[tuple[str, object]] = TimerQueue()
        self._sticky: dict[str, dict[str, _Sticky]] = {}
        self._sticky_count = 0
        self._sticky_timers: SecondTimers[_Key] = SecondTimers()
        #: Replies whose cookie matched nothing (late, duplicate, foreign).
        self.stray_replies = 0
        self._load(parse_rtpengine_sock(self.config.rtpengine_sock, self.config.setid_default))

    # -- configuration ------------------------------------------------------------

    def _load(self, specs: list[NodeSpec]) -> None:
        for spec in specs:
            if spec.address.scheme == "unix":
                raise ConfigError(
                    f"{spec.url}: unix sockets carry no cookie; use udp:, udp6:, ws:// or wss://"
                )
            nodes = self._sets.setdefault(spec.setid, [])
            for node in nodes:
                if node.url == spec.url:
                    node.spec = spec
                    if not node.displayed:  # hidden by a reload, listed again
                        node.displayed = True
                        node.disabled = node.permanent = False
                    break
            else:
                nodes.append(_Node(spec, self._node_count))
                self._node_count += 1

    def reload(self, rtpengine_sock: str | tuple[str, ...], now: float) -> list[MediaEvent]:
        """Kamailio: ``rtpengine.reload``. Nodes still listed keep their
        state and take the new weight; new ones join; the others are hidden
        and disabled for good (commands already sent to them run their
        course: answered, or moved on after their retries)."""
        specs = parse_rtpengine_sock(rtpengine_sock, self.config.setid_default)
        listed = {(s.setid, s.url) for s in specs}
        events: list[MediaEvent] = []
        for setid, nodes in self._sets.items():
            for node in nodes:
                if (setid, node.url) not in listed and node.displayed:
                    node.displayed = False
                    self._disable(node, now, events, "removed by reload", permanent=True)
        self._load(specs)
        return events

    # -- introspection -------------------------------------------------------------

    def show(self, url: str = "all") -> list[NodeInfo]:
        """Kamailio: ``rtpengine.show url|all``."""
        out = []
        for setid, nodes in sorted(self._sets.items()):
            for node in nodes:
                if not node.displayed or (url != "all" and node.url != url):
                    continue
                timed_out = node.disabled and not node.permanent
                out.append(
                    NodeInfo(
                        url=node.url,
                        setid=setid,
                        index=node.index,
                        weight=node.spec.weight,
                        disabled=node.disabled and node.permanent,
                        active=not node.disabled,
                        recheck_at=node.recheck_at if timed_out else None,
                    )
                )
        if not out:
            raise ConfigError(f"rtpengine node {url!r} not found")
        return out

    def hash_total(self) -> int:
        """Kamailio: ``rtpengine.get_hash_total``: calls in the sticky table."""
        return self._sticky_count

    @property
    def pending(self) -> int:
        """Commands (and pings) waiting for a reply."""
        return len(self._pending)

    def sticky_node(self, call_id: str, via_branch: str = "") -> str | None:
        """The URL the call is stuck to, if any."""
        entry = self._sticky.get(call_id, {}).get(via_branch)
        return entry.node.url if entry is not None else None

    # -- timers ---------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`tick` has work next (None: nothing pending)."""
        deadlines = [
            d
            for d in (self._timers.next_deadline(), self._sticky_timers.next_deadline())
            if d is not None
        ]
        return min(deadlines) if deadlines else None

    def tick(self, now: float) -> list[MediaEvent]:
        """Retransmit, fail over, probe and expire what is due at ``now``."""
        events: list[MediaEvent] = []
        for kind, payload in self._timers.pop_due(now):
            if kind == "reply":
                assert isinstance(payload, str)
                self._reply_timeout(payload, now, events)
            elif kind == "recheck":
                assert isinstance(payload, _Node)
                node = payload
                if node.disabled and not node.permanent and node.recheck_at <= now:
                    self._start_probe(node, _Probe.RECHECK, now, events)
            elif kind == "interval":
                self._ping_interval(now, events)
        for key in self._sticky_timers.pop_due(now):
            entry = self._sticky.get(key[0], {}).get(key[1])
            if entry is not None and entry.expires <= now:
                self._drop_sticky(key[0], key[1], cancel=False)
        return events

    def start(self, now: float) -> list[MediaEvent]:
        """Arm the ``ping_interval`` timer (when set) and ping every node,
        as Kamailio does at startup with ``ping_mode`` 1."""
        events = self.ping_all(now)
        if self.config.ping_interval:
            self._timers.add(now + self.config.ping_interval, ("interval", None))
        return events

    def _ping_interval(self, now: float, events: list[MediaEvent]) -> None:
        for node in self._all_nodes():
            if node.displayed and not node.permanent and node.probe is None:
                self._start_probe(node, _Probe.PING, now, events)
        self._timers.add(now + self.config.ping_interval, ("interval", None))

    # -- node management (the RPC commands) -----------------------------------------

    def _all_nodes(self) -> list[_Node]:
        return [node for nodes in self._sets.values() for node in nodes]

    def _find(self, url: str) -> list[_Node]:
        found = [n for n in self._all_nodes() if n.displayed and (url == "all" or n.url == url)]
        if not found:
            raise ConfigError(f"rtpengine node {url!r} not found")
        return found

    def ping(self, url: str, now: float) -> list[MediaEvent]:
        """Kamailio: ``rtpengine.ping url|all``: each node gets a ``ping``;
        one that does not answer is disabled (not for good), one that
        answers is enabled unless it was disabled by hand. Each ping ends
        in a :class:`ReplyReceived` or :class:`CommandFailed`."""
        events: list[MediaEvent] = []
        for node in self._find(url):
            self._start_probe(node, _Probe.PING, now, events, report=True)
        return events

    def ping_all(self, now: float) -> list[MediaEvent]:
        """:meth:`ping` every node."""
        return self.ping("all", now) if self._all_nodes() else []

    def enable(self, url: str, enabled: bool, now: float) -> list[MediaEvent]:
        """Kamailio: ``rtpengine.enable url|all 0|1``. 0 disables for good
        (no probing) at once; 1 pings the node and enables it on ``pong``
        (on no answer it stays disabled, but is probed again later)."""
        events: list[MediaEvent] = []
        for node in self._find(url):
            if enabled:
                self._start_probe(node, _Probe.ENABLE, now, events, report=True)
            else:
                self._disable(node, now, events, "disabled by hand", permanent=True)
        return events

    def _disable(
        self,
        node: _Node,
        now: float,
        events: list[MediaEvent],
        reason: str,
        *,
        permanent: bool = False,
    ) -> None:
        was = (node.disabled, node.permanent)
        node.disabled = True
        if permanent:
            node.permanent = True
        if not node.permanent:
            node.recheck_at = now + self.config.rtpengine_disable_tout
            self._timers.add(node.recheck_at, ("recheck", node))
        if (node.disabled, node.permanent) != was or not node.permanent:
            until = None if node.permanent else node.recheck_at
            events.append(NodeDisabled(node.url, node.spec.setid, until, reason))
        if permanent:
            # Disabled by hand or removed: commands already sent may still be
            # answered (and must not be set up twice); they run their course.
            return
        # Nothing else waits on a node given up on (Kamailio issue 3370).
        for pending in [p for p in self._pending.values() if p.node is node and p.probe is None]:
            self._retire(pending)
            pending.queried.append(node)
            self._next_node(pending, now, events, f"{node.url} disabled: {reason}")

    def _enable(self, node: _Node, events: list[MediaEvent]) -> None:
        if node.disabled:
            events.append(NodeEnabled(node.url, node.spec.setid))
        node.disabled = False
        node.permanent = False
        node.recheck_at = 0.0

    # -- sending --------------------------------------------------------------------

    def request(
        self,
        command: Command | Mapping[str, object],
        now: float,
        *,
        setid: int | None = None,
        node: str | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Send one ng command: the node is chosen by Kamailio's rules in set
        ``setid`` (``setid_default`` when None), or is the node ``node``
        (a URL) with no failover. The outcome comes back later, from
        :meth:`receive` or :meth:`tick`, as a :class:`ReplyReceived` or
        :class:`CommandFailed` carrying ``context``; when no node can be
        asked it is in the list returned here."""
        document = (
            command.to_dict() if isinstance(command, Command) else cast(NgDict, dict(command))
        )
        name = document.get("command")
        if not isinstance(name, str) or not name:
            raise CommandError("an ng command needs a 'command' string")
        call_id = document.get("call-id")
        via = document.get("via-branch", "")
        pending = _Pending(
            command_id=next(self._ids),
            command=name,
            body=encode_document(document),
            call_id=call_id if isinstance(call_id, str) else None,
            via_branch=via if isinstance(via, str) else "",
            setid=self.config.setid_default if setid is None else setid,
            context=context,
            explicit=node is not None,
            probe=None,
            report=True,
        )
        events: list[MediaEvent] = []
        if len(self._pending) >= self.config.max_pending:
            self._fail(
                pending,
                Overloaded(f"{len(self._pending)} commands in flight (max_pending)"),
                events,
            )
            return events
        if node is not None:
            self._send(pending, self._find_one(node, pending.setid), now, events)
        else:
            self._next_node(pending, now, events, "")
        # The command's own Transmit (or CommandFailed) first, then the pings
        # its selection started.
        events.sort(key=lambda e: getattr(e, "command_id", None) != pending.command_id)
        return events

    def _find_one(self, url: str, setid: int) -> _Node:
        nodes = [n for n in self._find(url) if n.url == url]
        for candidate in nodes:
            if candidate.spec.setid == setid:
                return candidate
        return nodes[0]

    def _new_cookie(self) -> str:
        return f"{self._cookie_prefix}_{next(self._cookies)}"

    def _send(self, pending: _Pending, node: _Node, now: float, events: list[MediaEvent]) -> None:
        pending.node = node
        pending.cookie = self._new_cookie()
        pending.datagram = pending.cookie.encode("ascii") + b" " + pending.body
        pending.sends = 1
        self._pending[pending.cookie] = pending
        self._arm(pending, now)
        events.append(
            Transmit(
                pending.datagram,
                node.spec.address,
                pending.cookie,
                pending.command_id,
                pending.command,
                1,
            )
        )

    def _arm(self, pending: _Pending, now: float) -> None:
        timeout = self.config.rtpengine_tout_ms / 1000
        pending.timer = self._timers.add(now + timeout, ("reply", pending.cookie))

    def _retire(self, pending: _Pending) -> None:
        """Forget the current cookie: its late replies will be strays."""
        if pending.timer is not None:
            self._timers.cancel(pending.timer)
            pending.timer = None
        self._pending.pop(pending.cookie, None)
        if pending.node is not None and pending.node.probe == pending.cookie:
            pending.node.probe = None

    def _fail(self, pending: _Pending, error: MediaError, events: list[MediaEvent]) -> None:
        if pending.report:
            tried = tuple(n.url for n in pending.queried)
            if pending.node is not None and pending.node not in pending.queried:
                tried += (pending.node.url,)
            events.append(
                CommandFailed(pending.command_id, pending.command, error, tried, pending.context)
            )

    def _next_node(self, pending: _Pending, now: float, events: list[MediaEvent], why: str) -> None:
        """Kamailio's ``select_node`` loop: another node, or the failure."""
        tried = tuple(n.url for n in pending.queried)
        prefix = f"{why}; " if why else ""
        if pending.explicit:
            pending.node = None
            self._fail(
                pending, NoNodeAvailable(f"{prefix}no failover to a named node", tried), events
            )
            return
        if len(pending.queried) >= self.config.queried_nodes_limit:
            pending.node = None
            self._fail(
                pending, NoNodeAvailable(f"{prefix}queried nodes limit reached", tried), events
            )
            return
        node, reason = self._select(pending, now, events)
        if node is None:
            pending.node = None
            self._fail(pending, NoNodeAvailable(f"{prefix}{reason}", tried), events)
            return
        self._send(pending, node, now, events)

    # -- selection ------------------------------------------------------------------

    def _select(
        self, pending: _Pending, now: float, events: list[MediaEvent]
    ) -> tuple[_Node | None, str]:
        nodes = self._sets.get(pending.setid)
        if not nodes:
            return None, f"no rtpengine set {pending.setid}"
        node = self._sticky_lookup(pending.call_id, pending.via_branch, pending.command, now)
        if node is not None and node in pending.queried:
            return None, f"the call's node {node.url} has already been queried"
        if node is None or node.spec.setid != pending.setid or not node.displayed:
            node = self._select_new(pending, nodes, now, events)
            if node is None:
                return None, "no available proxies"
        if not node.disabled:
            return node, ""
        allow = self.config.rtpengine_allow_op
        if allow and (node.permanent or allow == 1):
            return node, ""
        return None, f"the call's node {node.url} is disabled"

    def _select_new(
        self, pending: _Pending, nodes: list[_Node], now: float, events: list[MediaEvent]
    ) -> _Node | None:
        total = 0
        for node in nodes:
            if not node.displayed:
                continue
            if node.disabled and not node.permanent and node.recheck_at <= now:
                # Kamailio pings it here and waits; here the ping goes out
                # and the node rejoins when its pong arrives.
                self._start_probe(node, _Probe.RECHECK, now, events)
            if not node.disabled and node not in pending.queried:
                total += node.spec.weight
        if total == 0:
            if self.config.aggressive_redetection:
                for node in nodes:
                    if node.displayed and node.disabled and not node.permanent:
                        self._start_probe(node, _Probe.RECHECK, now, events)
            return None
        cut = call_hash(pending.call_id or "", self.config.hash_algo) % total
        for node in nodes:
            if not node.displayed or node.disabled or node in pending.queried:
                continue
            if cut < node.spec.weight:
                return node
            cut -= node.spec.weight
        return None  # pragma: no cover - the weights summed to more than cut

    # -- the sticky table (Kamailio's rtpengine_hash_table) -----------------------------

    def _sticky_lookup(
        self, call_id: str | None, via_branch: str, command: str, now: float
    ) -> _Node | None:
        if not call_id:
            return None
        branches = self._sticky.get(call_id)
        if not branches:
            return None
        entry = branches.get(via_branch)
        if entry is None and not via_branch and command == "delete":
            entry = next(iter(branches.values()))  # a delete without branch: any
        if entry is None:
            return None
        if entry.expires <= now:
            return None
        return entry.node

    def _sticky_insert(self, pending: _Pending, node: _Node, now: float) -> None:
        call_id = pending.call_id
        if not call_id or self._sticky_count >= self.config.max_hash_entries:
            return
        if self._sticky_lookup(call_id, pending.via_branch, pending.command, now) is not None:
            return
        branches = self._sticky.setdefault(call_id, {})
        old = branches.get(pending.via_branch)
        if old is not None:  # expired but not yet swept
            self._drop_sticky(call_id, pending.via_branch)
            branches = self._sticky.setdefault(call_id, {})
        expires = now + self.config.hash_table_tout
        second = self._sticky_timers.add(expires, (call_id, pending.via_branch))
        branches[pending.via_branch] = _Sticky(node, expires, second)
        self._sticky_count += 1

    def _drop_sticky(self, call_id: str, via_branch: str, *, cancel: bool = True) -> None:
        branches = self._sticky.get(call_id)
        if branches is None:
            return
        entry = branches.pop(via_branch, None)
        if entry is None:
            return
        self._sticky_count -= 1
        if cancel:
            self._sticky_timers.cancel(entry.second, (call_id, via_branch))
        if not branches:
            del self._sticky[call_id]

    def _sticky_delete(self, call_id: str | None, via_branch: str) -> None:
        if not call_id:
            return
        if via_branch:
            self._drop_sticky(call_id, via_branch)
        else:
            for branch in list(self._sticky.get(call_id, {})):
                self._drop_sticky(call_id, branch)

    # -- probes ---------------------------------------------------------------------

    def _start_probe(
        self,
        node: _Node,
        kind: _Probe,
        now: float,
        events: list[MediaEvent],
        *,
        report: bool = False,
    ) -> None:
        if node.probe is not None and not report:
            return  # one background ping per node at a time
        pending = _Pending(
            command_id=next(self._ids),
            command="ping",
            body=encode_document({"command": "ping"}),
            call_id=None,
            via_branch="",
            setid=node.spec.setid,
            context=None,
            explicit=True,
            probe=kind,
            report=report,
        )
        self._send(pending, node, now, events)
        node.probe = pending.cookie

    def _probe_result(
        self,
        pending: _Pending,
        reply: Reply | None,
        error: MediaError | None,
        now: float,
        events: list[MediaEvent],
    ) -> None:
        node = pending.node
        assert node is not None
        if isinstance(reply, PingReply):
            if pending.probe is _Probe.ENABLE or not node.permanent:
                self._enable(node, events)
            if pending.report:
                events.append(
                    ReplyReceived(
                        pending.command_id, pending.command, reply, node.url, pending.context
                    )
                )
            return
        reason = str(error) if error is not None else "no pong"
        if pending.probe is _Probe.ENABLE:
            node.permanent = False  # tried and failed: disabled, but probed again
        if not (node.disabled and node.permanent):
            self._disable(node, now, events, reason)
        if pending.report:
            self._fail(pending, error or UnexpectedReply(reason), events)

    # -- receiving ------------------------------------------------------------------

    def receive(
        self, datagram: bytes, now: float, *, source: tuple[str, int] | None = None
    ) -> list[MediaEvent]:
        """Take a datagram from a node. A reply to a command in flight ends
        it (:class:`ReplyReceived`, :class:`CommandFailed`) or sends it to
        the next node (a ``load limit``). Replies matching no cookie in
        flight (late retransmissions, another client's) are dropped and
        counted in :attr:`stray_replies`; with ``source`` given, a reply
        from another address than the node's IP is dropped too."""
        try:
            cookie, body = split_cookie(datagram)
        except NgDecodeError:
            self.stray_replies += 1
            return []
        pending = self._pending.get(cookie)
        if pending is None or pending.node is None:
            self.stray_replies += 1
            return []
        node = pending.node
        if source is not None and not _same_address(source, node.spec.address):
            self.stray_replies += 1
            return []
        self._retire(pending)
        events: list[MediaEvent] = []
        reply: Reply | None = None
        error: MediaError | None = None
        if len(datagram) > self.config.max_reply_size:
            error = NgDecodeError(
                f"reply of {len(datagram)} bytes exceeds max_reply_size "
                f"({self.config.max_reply_size})"
            )
        else:
            try:
                reply = parse_reply(pending.command, decode_document(body))
            except (NgDecodeError, UnexpectedReply) as exc:
                error = exc
        if pending.probe is not None:
            self._probe_result(pending, reply, error, now, events)
            return events
        if error is not None or reply is None:
            self._fail(pending, error or UnexpectedReply("no reply"), events)
            return events
        if isinstance(reply, LoadLimitReply) or (
            isinstance(reply, ErrorReply) and reply.error_reason in FAILOVER_ERRORS
        ):
            what = reply.error_reason if isinstance(reply, ErrorReply) else "load limit"
            pending.queried.append(node)
            self._next_node(pending, now, events, f"{node.url}: {what}")
            return events
        if isinstance(reply, ErrorReply):
            pending.queried.append(node)
            self._fail(pending, NgErrorReply(reply.error_reason, pending.command), events)
            return events
        self._sticky_insert(pending, node, now)
        if pending.command == "delete":
            self._sticky_delete(pending.call_id, pending.via_branch)
        events.append(
            ReplyReceived(pending.command_id, pending.command, reply, node.url, pending.context)
        )
        return events

    def _reply_timeout(self, cookie: str, now: float, events: list[MediaEvent]) -> None:
        pending = self._pending.get(cookie)
        if pending is None or pending.node is None:
            return
        node = pending.node
        pending.timer = None
        reliable = node.spec.address.scheme in ("ws", "wss")
        if not reliable and pending.sends < self.config.rtpengine_retr:
            pending.sends += 1
            self._arm(pending, now)
            events.append(
                Transmit(
                    pending.datagram,
                    node.spec.address,
                    pending.cookie,
                    pending.command_id,
                    pending.command,
                    pending.sends,
                )
            )
            return
        self._retire(pending)
        reason = f"timeout waiting reply for command {pending.command!r} from {node.url}"
        if pending.probe is not None:
            self._probe_result(pending, None, NoNodeAvailable(reason, (node.url,)), now, events)
            return
        pending.queried.append(node)
        if not node.permanent:
            self._disable(node, now, events, reason)
        self._next_node(pending, now, events, reason)
