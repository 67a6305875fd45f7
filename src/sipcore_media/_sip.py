"""SIP glue: ng commands from SIP messages, the SDP put back into them.

This module owns reading what Kamailio's module takes from a message
(:func:`sip_context`: Call-ID, tags, Vias, the SDP body, the source
address), Kamailio's ``rtpengine_manage()`` decision (:func:`manage_command`:
offer, answer or delete by method, status and where the SDP is), writing
rtpengine's SDP back into the message with Content-Length kept right
(:func:`apply_sdp`, also inside a ``multipart/mixed`` body) and
:class:`Rtpengine`, the module's script functions (``rtpengine_offer``,
``rtpengine_manage``, ``block_dtmf``...) over an :class:`RtpenginePool`.
It sends nothing itself: every function returns pool events.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

import attrs

from sipcore import Endpoint, Message, ParseError, Request, Response

from ._config import RtpengineConfig
from ._errors import CommandError, MessageError
from ._flags import SipContext, build_command
from ._pool import NodeInfo, RtpenginePool
from ._replies import SdpReply
from .events import CommandFailed, MediaEvent, ReplyReceived

__all__ = ["Rtpengine", "apply_sdp", "extract_sdp", "manage_command", "sip_context"]

_SDP: Final = "application/sdp"
_SDPFRAG: Final = "application/trickle-ice-sdpfrag"
_BOUNDARY: Final = re.compile(r';\s*boundary\s*=\s*(?:"([^"]+)"|([^;\s]+))', re.I)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


@attrs.frozen
class _Part:
    # Where the SDP sits in the body: [start, end) and whether it is a
    # trickle-ICE fragment.
    start: int
    end: int
    fragment: bool


def _multipart_sdp(body: bytes, content_type: str) -> _Part | None:
    match = _BOUNDARY.search(content_type)
    if match is None:
        return None
    delimiter = b"--" + (match.group(1) or match.group(2)).encode("utf-8", "surrogateescape")
    position = body.find(delimiter)
    while position >= 0:
        line_end = body.find(b"\n", position)
        if line_end < 0:
            return None
        headers_end = body.find(b"\r\n\r\n", line_end)
        gap = 4
        if headers_end < 0:
            headers_end, gap = body.find(b"\n\n", line_end), 2
        if headers_end < 0:
            return None
        following = body.find(delimiter, headers_end)
        if following < 0:
            return None
        headers = body[line_end + 1 : headers_end].decode("utf-8", "replace").lower()
        start = headers_end + gap
        end = following - 2 if body[following - 2 : following] == b"\r\n" else following - 1
        kinds = re.findall(r"^content-type\s*:\s*([^;\r\n]+)", headers, re.M)
        if kinds and kinds[0].strip() in (_SDP, _SDPFRAG):
            return _Part(start, max(start, end), kinds[0].strip() == _SDPFRAG)
        position = following
    return None


def _locate_sdp(msg: Message) -> _Part | None:
    body = msg.body
    if not body:
        return None
    kind = _media_type(msg.content_type)
    if kind in ("", _SDP):  # no Content-Type: Kamailio assumes SDP
        return _Part(0, len(body), False)
    if kind == _SDPFRAG:
        return _Part(0, len(body), True)
    if kind == "multipart/mixed":
        return _multipart_sdp(body, msg.content_type or "")
    return None


def extract_sdp(msg: Message) -> bytes | None:
    """The SDP of ``msg`` as Kamailio's ``extract_body()`` finds it: the
    body when it is ``application/sdp`` (or has no Content-Type), a
    trickle-ICE fragment, or the SDP part of a ``multipart/mixed`` body."""
    part = _locate_sdp(msg)
    return None if part is None else msg.body[part.start : part.end]


def _as_text(data: bytes) -> str | bytes:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def sip_context(
    msg: Request | Response,
    source: Endpoint | str | None,
    *,
    extra_id: str | None = None,
    next_branch: str | None = None,
) -> SipContext:
    """What Kamailio's module reads from ``msg`` (received from ``source``)."""
    try:
        call_id = msg.call_id
        from_tag = msg.from_.tag
        to_tag = msg.to.tag
        vias = tuple(v.branch for v in msg.via[:2])
    except ParseError as exc:
        raise MessageError(f"can't read the message: {exc.reason}") from None
    if not call_id:
        raise MessageError("can't get Call-Id field")
    if not from_tag:
        raise MessageError("can't get From tag")
    part = _locate_sdp(msg)
    address = source.host if isinstance(source, Endpoint) else source
    return SipContext(
        call_id=call_id,
        from_tag=from_tag,
        to_tag=to_tag or None,
        is_request=isinstance(msg, Request),
        sdp=None if part is None else _as_text(msg.body[part.start : part.end]),
        sdp_fragment=part is not None and part.fragment,
        source_address=address,
        vias=vias,
        extra_id=extra_id,
        next_branch=next_branch,
    )


def apply_sdp(msg: Message, sdp: str | bytes) -> None:
    """Put rtpengine's SDP into ``msg`` where the old one was (the whole
    body, or the SDP part of a multipart body) and fix Content-Length.
    Kamailio: the lumps ``rtpengine_offer()`` / ``rtpengine_answer()`` add."""
    data = sdp.encode("utf-8", "surrogateescape") if isinstance(sdp, str) else bytes(sdp)
    part = _locate_sdp(msg)
    if part is None:
        raise MessageError("the message has no SDP body to replace")
    body = msg.body
    msg.set_body(body[: part.start] + data + body[part.end :])


_MANAGED: Final = frozenset({"INVITE", "ACK", "CANCEL", "BYE", "UPDATE", "PRACK"})


def manage_command(
    msg: Request | Response,
    *,
    failure_route: bool = False,
    offer_in_request: bool | None = None,
) -> str | None:
    """Kamailio's ``rtpengine_manage()``: which command (``"offer"``,
    ``"answer"``, ``"delete"``) the message calls for, or None.

    CANCEL and BYE delete; a reply of 300 or more deletes; an INVITE with
    SDP offers (deletes in a failure route); UPDATE with SDP offers; ACK or
    PRACK with SDP answers. A 1xx/2xx with SDP answers, unless it answers
    an INVITE that had no SDP (``offer_in_request=False``, what Kamailio
    learns from tm): then it is the offer. Without tm's knowledge
    (``offer_in_request=None``) Kamailio takes it as the answer.
    """
    try:
        method = msg.cseq.method
    except ParseError as exc:
        raise MessageError(f"no CSeq header: {exc.reason}") from None
    if method not in _MANAGED:
        return None
    if method in ("CANCEL", "BYE"):
        return "delete"
    has_sdp = _locate_sdp(msg) is not None
    if isinstance(msg, Request):
        if method in ("ACK", "PRACK") and has_sdp:
            return "answer"
        if method == "UPDATE" and has_sdp:
            return "offer"
        if method == "INVITE" and has_sdp:
            return "delete" if failure_route else "offer"
        return None
    if msg.status_code >= 300:
        return "delete"
    if not has_sdp:
        return None
    if method == "UPDATE" or offer_in_request is None or offer_in_request:
        return "answer"
    return "offer"


@attrs.frozen
class _Job:
    # What the pool carries for the glue: the message to rewrite (None: do
    # not rewrite) and the caller's own context.
    message: Message | None
    context: object


class Rtpengine:
    """Kamailio's rtpengine module: its script functions over a node pool.

    Each function builds the command from the message and the flag string
    as Kamailio does, hands it to :attr:`pool` and returns the pool's
    events (the datagrams to send first). When the reply to an offer or
    answer arrives through :meth:`receive`, the message's SDP has been
    replaced before the :class:`ReplyReceived` comes out; its ``context``
    is the one given, or the message itself. ``source`` is where the
    message came from (``received-from``).
    """

    def __init__(
        self, config: RtpengineConfig | None = None, *, cookie_prefix: str | None = None
    ) -> None:
        self.pool = RtpenginePool(config, cookie_prefix=cookie_prefix)
        self.config = self.pool.config

    # -- the sans-I/O surface ------------------------------------------------------

    def receive(
        self, datagram: bytes, now: float, *, source: tuple[str, int] | None = None
    ) -> list[MediaEvent]:
        """:meth:`RtpenginePool.receive`, with the SDP written back."""
        return self._finish(self.pool.receive(datagram, now, source=source))

    def tick(self, now: float) -> list[MediaEvent]:
        """:meth:`RtpenginePool.tick`."""
        return self._finish(self.pool.tick(now))

    def next_deadline(self) -> float | None:
        return self.pool.next_deadline()

    def _finish(self, events: Sequence[MediaEvent]) -> list[MediaEvent]:
        out: list[MediaEvent] = []
        for event in events:
            if isinstance(event, ReplyReceived | CommandFailed) and isinstance(event.context, _Job):
                job = event.context
                if (
                    isinstance(event, ReplyReceived)
                    and job.message is not None
                    and isinstance(event.reply, SdpReply)
                ):
                    apply_sdp(job.message, event.reply.sdp)
                event = attrs.evolve(event, context=job.context)
            out.append(event)
        return out

    # -- the script functions ------------------------------------------------------

    def _call(
        self,
        command: str,
        msg: Request | Response,
        flags: str | None,
        now: float,
        *,
        source: Endpoint | str | None,
        rewrite: bool,
        setid: int | None,
        context: object,
        extra_id: str | None,
        next_branch: str | None,
    ) -> list[MediaEvent]:
        ctx = sip_context(msg, source, extra_id=extra_id, next_branch=next_branch)
        document = build_command(command, flags, ctx, self.config.flag_dialect)
        job = _Job(msg if rewrite else None, msg if context is None else context)
        return self._finish(self.pool.request(document, now, setid=setid, context=job))

    def rtpengine_offer(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
        extra_id: str | None = None,
        next_branch: str | None = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``rtpengine_offer([flags])``; the message's SDP is
        replaced when the reply comes."""
        return self._call(
            "offer", msg, flags, now, source=source, rewrite=True, setid=setid,
            context=context, extra_id=extra_id, next_branch=next_branch,
        )  # fmt: skip

    def rtpengine_answer(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
        extra_id: str | None = None,
        next_branch: str | None = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``rtpengine_answer([flags])``: in a reply, or in an ACK
        or PRACK (any other request is refused, as Kamailio does)."""
        if isinstance(msg, Request) and msg.method not in ("ACK", "PRACK"):
            raise CommandError(f"rtpengine_answer in a {msg.method} request")
        return self._call(
            "answer", msg, flags, now, source=source, rewrite=True, setid=setid,
            context=context, extra_id=extra_id, next_branch=next_branch,
        )  # fmt: skip

    def rtpengine_info(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``rtpengine_info([flags])``: an offer carrying a
        trickle-ICE fragment; the message is not rewritten."""
        return self._call(
            "offer", msg, flags, now, source=source, rewrite=False, setid=setid,
            context=context, extra_id=None, next_branch=None,
        )  # fmt: skip

    def rtpengine_manage(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        failure_route: bool = False,
        offer_in_request: bool | None = None,
        setid: int | None = None,
        context: object = None,
        extra_id: str | None = None,
        next_branch: str | None = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``rtpengine_manage([flags])``: offer, answer or delete
        as :func:`manage_command` decides; an empty list when the message
        calls for nothing."""
        command = manage_command(
            msg, failure_route=failure_route, offer_in_request=offer_in_request
        )
        if command is None:
            return []
        return self._call(
            command, msg, flags, now, source=source, rewrite=command != "delete",
            setid=setid, context=context, extra_id=extra_id, next_branch=next_branch,
        )  # fmt: skip

    def _simple(
        self,
        command: str,
        msg: Request | Response,
        now: float,
        flags: str | None,
        source: Endpoint | str | None,
        setid: int | None,
        context: object,
    ) -> list[MediaEvent]:
        return self._call(
            command, msg, flags, now, source=source, rewrite=False, setid=setid,
            context=context, extra_id=None, next_branch=None,
        )  # fmt: skip

    def rtpengine_delete(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``rtpengine_delete([flags])`` (and ``rtpengine_destroy``);
        the reply is a :class:`~sipcore_media.CallStatsReply` (the ``mos_*``
        figures, :meth:`~sipcore_media.CallStatsReply.mos`)."""
        return self._simple("delete", msg, now, flags, source, setid, context)

    def rtpengine_query(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``rtpengine_query([flags])``, and ``$rtpstat`` (the
        reply's :meth:`~sipcore_media.CallStatsReply.rtpstat`)."""
        return self._simple("query", msg, now, flags, source, setid, context)

    def start_recording(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``start_recording([flags])``."""
        return self._simple("start recording", msg, now, flags, source, setid, context)

    def stop_recording(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``stop_recording([flags])``."""
        return self._simple("stop recording", msg, now, flags, source, setid, context)

    def block_dtmf(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``block_dtmf([flags])``: the whole call unless
        ``directional`` or ``from-tag=`` names a party."""
        return self._simple("block DTMF", msg, now, flags, source, setid, context)

    def unblock_dtmf(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``unblock_dtmf([flags])``."""
        return self._simple("unblock DTMF", msg, now, flags, source, setid, context)

    def block_media(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``block_media([flags])``."""
        return self._simple("block media", msg, now, flags, source, setid, context)

    def unblock_media(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``unblock_media([flags])``."""
        return self._simple("unblock media", msg, now, flags, source, setid, context)

    def silence_media(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``silence_media([flags])``."""
        return self._simple("silence media", msg, now, flags, source, setid, context)

    def unsilence_media(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``unsilence_media([flags])``."""
        return self._simple("unsilence media", msg, now, flags, source, setid, context)

    def start_forwarding(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``start_forwarding([flags])``."""
        return self._simple("start forwarding", msg, now, flags, source, setid, context)

    def stop_forwarding(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``stop_forwarding([flags])``."""
        return self._simple("stop forwarding", msg, now, flags, source, setid, context)

    def play_media(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``play_media(flags)`` (``file=``, ``db-id=``...); the
        reply's ``duration`` is Kamailio's ``media_duration``."""
        return self._simple("play media", msg, now, flags, source, setid, context)

    def stop_media(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``stop_media([flags])``."""
        return self._simple("stop media", msg, now, flags, source, setid, context)

    def play_dtmf(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio: ``play_dtmf(flags)`` (``code=``, ``duration=``...)."""
        return self._simple("play DTMF", msg, now, flags, source, setid, context)

    def rtpengine_connect(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio (current): ``rtpengine_connect([flags])``: join the
        media of the From and To parties (``to-call-id=`` for two calls).
        rtpengine 10.5 does not know ``connect``."""
        return self._simple("connect", msg, now, flags, source, setid, context)

    def rtpengine_subscribe_request(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio (current): ``rtpengine_subscribe_request(flags, ...)``:
        the reply (:class:`~sipcore_media.SubscribeReply`) has the sendonly
        offer SDP and the subscription's to-tag Kamailio puts in its AVPs."""
        return self._simple("subscribe request", msg, now, flags, source, setid, context)

    def rtpengine_subscribe_answer(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio (current): ``rtpengine_subscribe_answer([flags])``: the
        subscriber's answer SDP (the message body) for ``to-tag=``."""
        return self._simple("subscribe answer", msg, now, flags, source, setid, context)

    def rtpengine_unsubscribe(
        self,
        msg: Request | Response,
        now: float,
        flags: str | None = None,
        *,
        source: Endpoint | str | None = None,
        setid: int | None = None,
        context: object = None,
    ) -> list[MediaEvent]:
        """Kamailio (current): ``rtpengine_unsubscribe([flags])``."""
        return self._simple("unsubscribe", msg, now, flags, source, setid, context)

    # -- the RPC commands -----------------------------------------------------------

    def show(self, url: str = "all") -> list[NodeInfo]:
        """Kamailio: ``rtpengine.show``."""
        return self.pool.show(url)

    def enable(self, url: str, enabled: bool, now: float) -> list[MediaEvent]:
        """Kamailio: ``rtpengine.enable``."""
        return self.pool.enable(url, enabled, now)

    def ping(self, url: str, now: float) -> list[MediaEvent]:
        """Kamailio: ``rtpengine.ping``."""
        return self.pool.ping(url, now)

    def reload(self, rtpengine_sock: str | tuple[str, ...], now: float) -> list[MediaEvent]:
        """Kamailio: ``rtpengine.reload``."""
        return self.pool.reload(rtpengine_sock, now)

    def get_hash_total(self) -> int:
        """Kamailio: ``rtpengine.get_hash_total``."""
        return self.pool.hash_total()
