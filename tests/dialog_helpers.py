"""A proxy with a dialog tracker, and a caller and callee that talk
through it with real messages (built with sipcore, parsed from bytes)."""

from __future__ import annotations

from collections.abc import Callable

from sipcore import (
    Endpoint,
    Proxy,
    ProxyConfig,
    Request,
    RequestContext,
    Response,
    Send,
    make_request,
    make_response,
    new_branch,
    parse_message,
)
from sipcore_dialog import DialogConfig, DialogStore, DialogTracker

PROXY = Endpoint("127.0.0.1", 5060)
UAC = Endpoint("127.0.0.1", 5061)
UAS = Endpoint("127.0.0.1", 5062)
UAS2 = Endpoint("127.0.0.1", 5063)


def as_request(send: Send) -> Request:
    msg = parse_message(send.data)
    assert isinstance(msg, Request), msg
    return msg


def as_response(send: Send) -> Response:
    msg = parse_message(send.data)
    assert isinstance(msg, Response), msg
    return msg


class Rig:
    """Proxy + tracker; the default script tracks every initial INVITE,
    puts it in the ``caller`` profile (value: the From user) and the
    ``calls`` profile, and relays it to UAS."""

    def __init__(
        self,
        config: DialogConfig | None = None,
        script: Callable[[Rig, RequestContext], None] | None = None,
        *,
        store: DialogStore | None = None,
        wall_clock_offset: float = 0.0,
    ) -> None:
        self.config = config or DialogConfig(
            profiles_with_value=("caller",), profiles_no_value=("calls",)
        )
        self.tracker = DialogTracker(self.config, store=store, wall_clock_offset=wall_clock_offset)
        self.now = 0.0
        self.events: list[object] = []
        self.script = script or Rig.default_script
        self.proxy = Proxy(ProxyConfig(listen=(PROXY,)), lambda ctx: self.script(self, ctx))
        self.tracker.attach(self.proxy)

    def default_script(self, ctx: RequestContext) -> None:
        if ctx.loose_route():
            ctx.relay()
            return
        if ctx.method != "INVITE":
            ctx.reply(404)
            return
        ctx.record_route()
        dialog = self.tracker.manage(ctx)
        assert dialog is not None
        if "caller" in self.tracker.profiles:
            user = ctx.request.from_.uri.user  # type: ignore[union-attr]
            self.tracker.set_profile(dialog, "caller", user)
        if "calls" in self.tracker.profiles:
            self.tracker.set_profile(dialog, "calls")
        ctx.relay(UAS)

    def record(self, *types: type) -> None:
        for kind in types:
            self.tracker.subscribe(kind, self.events.append)

    def names(self) -> list[str]:
        return [type(e).__name__ for e in self.events]

    def send(self, data: bytes, source: Endpoint) -> list[Send]:
        return self.proxy.receive(data, source, self.now)

    def advance(self, seconds: float) -> list[Send]:
        self.now += seconds
        out: list[Send] = []
        while (d := self.proxy.next_deadline()) is not None and d <= self.now:
            out += self.proxy.tick(d)
        out += self.proxy.tick(self.now)
        return out


class Call:
    """One call from UAC (alice) to UAS (bob) through the rig's proxy."""

    def __init__(self, rig: Rig, call_id: str = "call-1", user: str = "alice") -> None:
        self.rig = rig
        self.call_id = call_id
        self.user = user
        self.invite = make_request(
            "INVITE",
            "sip:bob@example.com",
            from_=f"<sip:{user}@example.com>",
            from_tag=f"{user}-tag",
            to="<sip:bob@example.com>",
            via=f"SIP/2.0/UDP {UAC.hostport};branch={new_branch()}",
            call_id=call_id,
            contact=f"<sip:{user}@{UAC.hostport}>",
        )
        self.forwarded: Send | None = None  # the INVITE as the UAS got it
        self.answer: Response | None = None  # the 2xx as the UAC got it
        self.cseq = 1
        self.uas_cseq = 100

    def start(self) -> list[Send]:
        out = self.rig.send(bytes(self.invite), UAC)
        forwarded = [s for s in out if isinstance(s.message, Request)]
        if forwarded:
            self.forwarded = forwarded[-1]
        return out

    def reply(self, code: int, *, to_tag: str = "bob-tag", source: Endpoint = UAS) -> list[Send]:
        assert self.forwarded is not None
        request = as_request(self.forwarded)
        headers = [("Contact", f"<sip:bob@{source.hostport}>")] if code < 300 else []
        response = make_response(request, code, to_tag=to_tag, headers=headers)
        out = self.rig.send(bytes(response), source)
        for s in out:
            message = s.message
            to_caller = s.destination == UAC and isinstance(message, Response)
            if to_caller and isinstance(message, Response) and 200 <= message.status_code < 300:
                self.answer = as_response(s)
        return out

    def _route_set(self) -> list[str]:
        assert self.answer is not None
        return [str(rr) for rr in reversed(self.answer.record_route)]

    def in_dialog(self, method: str, *, cseq: int | None = None) -> Request:
        """A request from the caller along the route set."""
        assert self.answer is not None
        if cseq is None:
            if method != "ACK":
                self.cseq += 1
            cseq = self.cseq
        return make_request(
            method,
            self.answer.contact[0].uri,
            from_=str(self.invite.from_),
            to=str(self.answer.to),
            via=f"SIP/2.0/UDP {UAC.hostport};branch={new_branch()}",
            call_id=self.call_id,
            cseq=cseq,
            route=self._route_set(),
        )

    def from_callee(self, method: str) -> Request:
        """A request from the callee to the caller (the route set reversed)."""
        assert self.answer is not None and self.forwarded is not None
        self.uas_cseq += 1
        rr = as_request(self.forwarded).record_route
        return make_request(
            method,
            f"sip:{self.user}@{UAC.hostport}",
            from_=str(self.answer.to),
            to=str(self.invite.from_),
            via=f"SIP/2.0/UDP {UAS.hostport};branch={new_branch()}",
            call_id=self.call_id,
            cseq=self.uas_cseq,
            route=[str(r) for r in rr],
        )

    def ack(self) -> list[Send]:
        return self.rig.send(bytes(self.in_dialog("ACK", cseq=1)), UAC)

    def bye(self) -> tuple[list[Send], list[Send]]:
        """The caller hangs up; the callee answers 200. (sends, answer sends)"""
        out = self.rig.send(bytes(self.in_dialog("BYE")), UAC)
        to_uas = [s for s in out if s.destination == UAS and isinstance(s.message, Request)]
        assert to_uas, out
        ok = make_response(as_request(to_uas[0]), 200)
        return out, self.rig.send(bytes(ok), UAS)

    def established(self) -> None:
        self.start()
        self.reply(180)
        self.reply(200)
        self.ack()
