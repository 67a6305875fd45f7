"""Reply models: what rtpengine answered, typed.

This module owns :func:`parse_reply` and the frozen reply classes: the
envelope every reply has (``result``, ``warning``, ``error-reason``) and the
command-specific parts (the rewritten SDP of an offer, the call statistics
of a query or delete, the call list, a playback's duration...). The nested
statistics are structured with one cattrs converter whose hooks are strict:
a field of the wrong type makes the reply an
:class:`~sipcore_media.UnexpectedReply`, never a wrong value. Every model
keeps the raw dictionary in ``document`` for keys it does not name.
"""

from __future__ import annotations

import functools
import json
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

from ._codec import NgDict, NgValue
from ._errors import UnexpectedReply

if TYPE_CHECKING:
    from ._stats import MosStats

__all__ = [
    "CallStatsReply",
    "DTMFEvent",
    "ErrorReply",
    "IngressSSRC",
    "ListReply",
    "LoadLimitReply",
    "Media",
    "MosEntry",
    "OkReply",
    "PacketStats",
    "PingReply",
    "PlayMediaReply",
    "Reply",
    "SSRCStats",
    "SdpReply",
    "StatisticsReply",
    "StopMediaReply",
    "Stream",
    "StreamEndpoint",
    "SubscribeReply",
    "Tag",
    "Totals",
    "parse_dtmf_event",
    "parse_reply",
    "text",
]


def _ng(key: str) -> Any:
    # The wire key of a field whose Python name differs.
    return {"ng": key}


# -- the nested parts of a query / delete reply ---------------------------------------


@attrs.frozen
class PacketStats:
    """``stats`` of a stream, or one side of ``totals``; a counter rtpengine
    left out is -1, as Kamailio reads it."""

    packets: int = -1
    bytes: int = -1
    errors: int = -1


@attrs.frozen
class Totals:
    """``totals``: the call's RTP and RTCP counters (None when absent)."""

    rtp: PacketStats | None = attrs.field(default=None, metadata=_ng("RTP"))
    rtcp: PacketStats | None = attrs.field(default=None, metadata=_ng("RTCP"))


@attrs.frozen
class StreamEndpoint:
    """``endpoint`` / ``advertised endpoint`` of a stream."""

    family: str | None = None
    address: str | None = None
    port: int | None = None


@attrs.frozen
class IngressSSRC:
    """One entry of a stream's ``ingress SSRCs``."""

    ssrc: int | None = attrs.field(default=None, metadata=_ng("SSRC"))


@attrs.frozen
class Stream:
    """One packet stream (RTP or RTCP) of a media."""

    local_port: int | None = attrs.field(default=None, metadata=_ng("local port"))
    local_address: str | None = attrs.field(default=None, metadata=_ng("local address"))
    family: str | None = None
    endpoint: StreamEndpoint | None = None
    advertised_endpoint: StreamEndpoint | None = attrs.field(
        default=None, metadata=_ng("advertised endpoint")
    )
    last_packet: int | None = attrs.field(default=None, metadata=_ng("last packet"))
    flags: tuple[str, ...] = ()
    stats: PacketStats = attrs.field(factory=PacketStats)
    crypto_suite: str | None = attrs.field(default=None, metadata=_ng("crypto suite"))
    ssrc: int | None = attrs.field(default=None, metadata=_ng("SSRC"))
    ingress_ssrcs: tuple[IngressSSRC, ...] = attrs.field(default=(), metadata=_ng("ingress SSRCs"))


@attrs.frozen
class Media:
    """One SDP media section as rtpengine knows it."""

    index: int | None = None
    type: str | None = None
    protocol: str | None = None
    flags: tuple[str, ...] = ()
    streams: tuple[Stream, ...] = ()


@attrs.frozen
class Tag:
    """One call party (a SIP tag) and its medias."""

    tag: str = ""
    label: str | None = None
    created: int | None = None
    in_dialogue_with: str | None = attrs.field(default=None, metadata=_ng("in dialogue with"))
    medias: tuple[Media, ...] = ()


@attrs.frozen
class MosEntry:
    """One MOS sample: ``average MOS``, ``highest MOS`` or ``lowest MOS``.

    ``mos`` is in tenths (43 is 4.3), ``reported_at`` a UNIX time,
    ``packet_loss`` percent, ``jitter`` ms, the round-trip times µs. A key
    rtpengine left out is -1, as Kamailio reads it.
    """

    mos: int = attrs.field(default=-1, metadata=_ng("MOS"))
    reported_at: int = attrs.field(default=-1, metadata=_ng("reported at"))
    packet_loss: int = attrs.field(default=-1, metadata=_ng("packet loss"))
    jitter: int = -1
    round_trip_time: int = attrs.field(default=-1, metadata=_ng("round-trip time"))
    round_trip_time_leg: int = attrs.field(default=-1, metadata=_ng("round-trip time leg"))
    samples: int = -1


@attrs.frozen
class SSRCStats:
    """One entry of the reply's ``SSRC`` dictionary."""

    average_mos: MosEntry | None = attrs.field(default=None, metadata=_ng("average MOS"))
    highest_mos: MosEntry | None = attrs.field(default=None, metadata=_ng("highest MOS"))
    lowest_mos: MosEntry | None = attrs.field(default=None, metadata=_ng("lowest MOS"))


# -- the strict converter ------------------------------------------------------------

_INTEGER: Final = re.compile(r"-?[0-9]{1,20}")


def text(value: object) -> str:
    """A string field: ``str`` as is, non-UTF-8 ``bytes`` decoded losslessly
    (``surrogateescape``, so encoding it back gives the same bytes)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _structure_str(value: object, _: object) -> str:
    return text(value)


def _structure_int(value: object, _: object) -> int:
    # rtpengine writes some numbers as decimal strings; anything else is not
    # an integer (a bool is not one either).
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str | bytes):
        raw = text(value)
        if _INTEGER.fullmatch(raw):
            return int(raw)
    raise TypeError(f"expected an integer, got {value!r}")


_converter: Final = cattrs.Converter(detailed_validation=False)
_converter.register_structure_hook(str, _structure_str)
_converter.register_structure_hook(int, _structure_int)


def _is_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple


def _tuple_hook(tp: Any) -> Callable[[object, object], tuple[Any, ...]]:
    (item_type, _ellipsis) = typing.get_args(tp)

    def structure(value: object, _: object) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return tuple(_converter.structure(item, item_type) for item in value)

    return structure


def _is_dict(tp: Any) -> bool:
    return typing.get_origin(tp) is dict


def _dict_hook(tp: Any) -> Callable[[object, object], dict[str, Any]]:
    (_key_type, value_type) = typing.get_args(tp)

    def structure(value: object, _: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise TypeError(f"expected a dictionary, got {type(value).__name__}")
        return {text(k): _converter.structure(v, value_type) for k, v in value.items()}

    return structure


def _attrs_hook(cls: type[Any]) -> Callable[[object, object], Any]:
    renames: dict[str, Any] = {
        a.name: override(rename=a.metadata["ng"]) for a in attrs.fields(cls) if "ng" in a.metadata
    }
    inner = make_dict_structure_fn(cls, _converter, **renames)

    def structure(value: object, tp: object) -> Any:
        if not isinstance(value, dict):
            raise TypeError(f"expected a dictionary for {cls.__name__}")
        return inner(value, cls)

    return structure


def _is_optional_model(tp: Any) -> bool:
    args = typing.get_args(tp)
    return (
        isinstance(tp, types.UnionType)
        and len(args) == 2
        and type(None) in args
        and any(attrs.has(a) for a in args)
    )


def _optional_hook(tp: Any) -> Callable[[object, object], Any]:
    (model,) = [a for a in typing.get_args(tp) if a is not type(None)]

    def structure(value: object, _: object) -> Any:
        return None if value is None else _converter.structure(value, model)

    return structure


_converter.register_structure_hook_factory(_is_tuple, _tuple_hook)
_converter.register_structure_hook_factory(_is_dict, _dict_hook)
_converter.register_structure_hook_factory(attrs.has, _attrs_hook)
_converter.register_structure_hook_factory(_is_optional_model, _optional_hook)

_STRUCTURE_FAILURES: Final = (
    TypeError,
    ValueError,
    KeyError,
    AttributeError,
    cattrs.BaseValidationError,
)


def _structure(value: object, tp: Any, where: str) -> Any:
    try:
        return _converter.structure(value, tp)
    except _STRUCTURE_FAILURES as exc:
        raise UnexpectedReply(f"malformed {where!r} in the reply: {exc}") from None


# -- the replies -------------------------------------------------------------------


@attrs.frozen
class Reply:
    """Every reply: ``result``, the optional ``warning`` and the raw
    dictionary (``document``) for keys the model does not name."""

    result: str
    warning: str | None
    document: NgDict = attrs.field(repr=False)

    @property
    def ok(self) -> bool:
        """True for ``ok`` and ``pong``."""
        return self.result in ("ok", "pong")

    def to_json(self, pretty: bool = False) -> str:
        """The reply as JSON text. Kamailio: ``rtpengine_query_v("j")``
        (``"jp"``: ``pretty=True``); bytes that are not UTF-8 are written
        with U+FFFD in their place."""
        return json.dumps(
            _jsonable(self.document), indent=2 if pretty else None, ensure_ascii=False
        )


@attrs.frozen
class OkReply(Reply):
    """``result: ok`` of a command with nothing more to say."""


@attrs.frozen
class PingReply(Reply):
    """``result: pong``."""


@attrs.frozen
class ErrorReply(Reply):
    """``result: error`` and its ``error-reason``."""

    error_reason: str


@attrs.frozen
class LoadLimitReply(Reply):
    """``result: load limit`` (only to requests that ``supports`` it): the
    node is full; Kamailio tries the next one. ``message`` is optional."""

    message: str | None


@attrs.frozen
class SdpReply(Reply):
    """The reply to ``offer``, ``answer`` and ``publish``: the new SDP."""

    sdp: str


@attrs.frozen
class SubscribeReply(Reply):
    """The reply to ``subscribe request``: a sendonly offer SDP and the
    tags of the subscription."""

    sdp: str
    to_tag: str | None
    from_tag: str | None
    from_tags: tuple[str, ...]


@attrs.frozen
class CallStatsReply(Reply):
    """The reply to ``query``, and to ``delete`` when the call existed.

    ``created`` and ``last_signal`` are UNIX times; ``tags`` are the call's
    parties; ``totals`` the packet counters (``$rtpstat``); ``ssrc`` the
    per-SSRC MOS figures Kamailio reads for its ``mos_*`` variables (see
    :meth:`mos` and :meth:`rtpstat`).

    ``tags``, ``totals`` and ``ssrc`` are structured when first read (a
    call's statistics cost more to type than the rest of its commands, and
    Kamailio too reads them only when asked): a malformed one raises
    :class:`UnexpectedReply` then.
    """

    created: int | None
    created_us: int | None
    last_signal: int | None

    @functools.cached_property
    def tags(self) -> dict[str, Tag]:
        value: dict[str, Tag] = _structure(self.document.get("tags", {}), dict[str, Tag], "tags")
        return value

    @functools.cached_property
    def totals(self) -> Totals | None:
        value: Totals | None = _structure(self.document.get("totals"), Totals | None, "totals")
        return value

    @functools.cached_property
    def ssrc(self) -> dict[str, SSRCStats]:
        value: dict[str, SSRCStats] = _structure(
            self.document.get("SSRC", {}), dict[str, SSRCStats], "SSRC"
        )
        return value

    def rtpstat(self) -> str:
        """Kamailio's ``$rtpstat``; an :class:`UnexpectedReply` without totals."""
        from ._stats import rtpstat

        return rtpstat(self)

    def mos(self, label: str | None = None) -> MosStats:
        """Kamailio's ``mos_*`` figures (min, max, average); with ``label``
        only the legs so labelled (``mos_A_label_pv``). See
        :class:`~sipcore_media.MosStats`."""
        from ._stats import mos_stats

        return mos_stats(self, label)


@attrs.frozen
class ListReply(Reply):
    """The reply to ``list``: call-ids."""

    calls: tuple[str, ...]


@attrs.frozen
class PlayMediaReply(Reply):
    """The reply to ``play media``: ``duration`` in ms, or None when
    rtpengine could not tell (Kamailio's ``media_duration`` is then -1)."""

    duration: int | None


@attrs.frozen
class StopMediaReply(Reply):
    """The reply to ``stop media``: the last frame played, when given."""

    last_frame_pos: int | None


@attrs.frozen
class StatisticsReply(Reply):
    """The reply to ``statistics``: the daemon's counters, as sent (their
    layout changes between rtpengine versions)."""

    statistics: dict[str, NgValue]


def _jsonable(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _optional_text(document: Mapping[str, NgValue], key: str) -> str | None:
    value = document.get(key)
    if value is None:
        return None
    try:
        return text(value)
    except TypeError:
        raise UnexpectedReply(f"{key!r} in the reply is not a string") from None


def _required_text(document: Mapping[str, NgValue], key: str, command: str) -> str:
    value = _optional_text(document, key)
    if value is None:
        raise UnexpectedReply(f"the {command} reply has no {key!r}")
    return value


def _optional_int(document: Mapping[str, NgValue], key: str) -> int | None:
    value = document.get(key)
    return None if value is None else int(_structure(value, int, key))


def _ok_reply(command: str, result: str, warning: str | None, document: NgDict) -> Reply:
    if command in ("offer", "answer", "publish"):
        return SdpReply(result, warning, document, _required_text(document, "sdp", command))
    if command in ("query", "delete"):
        return CallStatsReply(
            result,
            warning,
            document,
            created=_optional_int(document, "created"),
            created_us=_optional_int(document, "created_us"),
            last_signal=_optional_int(document, "last signal"),
        )
    if command == "subscribe request":
        return SubscribeReply(
            result,
            warning,
            document,
            sdp=_required_text(document, "sdp", command),
            to_tag=_optional_text(document, "to-tag"),
            from_tag=_optional_text(document, "from-tag"),
            from_tags=_structure(document.get("from-tags", []), tuple[str, ...], "from-tags"),
        )
    if command == "list":
        calls = _structure(document.get("calls", []), tuple[str, ...], "calls")
        return ListReply(result, warning, document, calls)
    if command == "play media":
        return PlayMediaReply(result, warning, document, _optional_int(document, "duration"))
    if command == "stop media":
        return StopMediaReply(result, warning, document, _optional_int(document, "last-frame-pos"))
    if command == "statistics":
        statistics = document.get("statistics", {})
        if not isinstance(statistics, dict):
            raise UnexpectedReply("'statistics' in the reply is not a dictionary")
        return StatisticsReply(result, warning, document, statistics)
    return OkReply(result, warning, document)


def parse_reply(command: str, document: NgDict) -> Reply:
    """The typed reply to ``command`` (an ng command name) from a decoded
    dictionary. ``error`` and ``load limit`` replies come back as
    :class:`ErrorReply` / :class:`LoadLimitReply`; a reply that is
    malformed for the command raises :class:`UnexpectedReply`.

    >>> parse_reply("ping", {"result": "pong"})
    PingReply(result='pong', warning=None)
    >>> parse_reply("delete", {"result": "error", "error-reason": "Unknown call-id"})
    ErrorReply(result='error', warning=None, error_reason='Unknown call-id')
    """
    if not isinstance(document, dict):
        raise UnexpectedReply("a reply is a dictionary")
    result = _optional_text(document, "result")
    if result is None:
        raise UnexpectedReply("no 'result' in the reply")
    warning = _optional_text(document, "warning")
    if result == "error":
        reason = _optional_text(document, "error-reason") or ""
        return ErrorReply(result, warning, document, reason)
    if result == "load limit":
        return LoadLimitReply(result, warning, document, _optional_text(document, "message"))
    if command == "ping":
        if result != "pong":
            raise UnexpectedReply(f"a ping is answered 'pong', not {result!r}")
        return PingReply(result, warning, document)
    if result != "ok":
        raise UnexpectedReply(f"unknown result {result!r} to {command!r}")
    return _ok_reply(command, result, warning, document)


@attrs.frozen
class DTMFEvent:
    """One DTMF event rtpengine reported to ``dtmf_events_sock`` (a JSON
    datagram; Kamailio: ``event_route[rtpengine:dtmf-event]`` with the
    ``dtmf_event_callid``, ``dtmf_event_source_tag``,
    ``dtmf_event_timestamp`` and ``dtmf_event`` variables). ``document``
    keeps every key rtpengine sent."""

    callid: str | None
    source_tag: str | None
    timestamp: int | None
    event: int | None
    document: dict[str, object] = attrs.field(repr=False)


#: Larger than any DTMF report; Kamailio reads them into 32 KiB.
_DTMF_EVENT_SIZE: Final = 32768


def parse_dtmf_event(datagram: bytes) -> DTMFEvent:
    """Read one DTMF event datagram; :class:`UnexpectedReply` when it is
    not a JSON object with the fields of the right types.

    >>> parse_dtmf_event(b'{"callid": "c1", "source_tag": "ft", "timestamp": 1700000000, '
    ...                  b'"event": 5}')
    DTMFEvent(callid='c1', source_tag='ft', timestamp=1700000000, event=5)
    """
    if len(datagram) > _DTMF_EVENT_SIZE:
        raise UnexpectedReply(f"a DTMF event of {len(datagram)} bytes")
    try:
        document = json.loads(datagram)
    except (ValueError, RecursionError) as exc:
        raise UnexpectedReply(f"a DTMF event is JSON: {exc}") from None
    if not isinstance(document, dict):
        raise UnexpectedReply("a DTMF event is a JSON object")

    def field(name: str, kind: type) -> Any:
        value = document.get(name)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise UnexpectedReply(f"DTMF event {name!r} is not a {kind.__name__}")
        return value

    return DTMFEvent(
        callid=field("callid", str),
        source_tag=field("source_tag", str),
        timestamp=field("timestamp", int),
        event=field("event", int),
        document=document,
    )
