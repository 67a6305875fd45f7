"""Typed builders for every ng command rtpengine documents.

This module owns one frozen class per command (``Offer``, ``Answer``,
``Delete``, ``Query``, ``BlockDTMF``...) whose :meth:`~Command.to_dict`
gives the ng dictionary, with rtpengine's key spellings (``call-id``,
``from-tag``, ``transport-protocol``, ``ICE``, ``delete delay``...).
Fields left at their default are left out of the dictionary. A key the
class does not name goes in ``extra``. It does not encode, send or parse
replies.

Commands that rtpengine 10.5 (the Debian package) does not know yet are
built all the same (``pause recording``, ``connect``); 10.5 answers them
with ``Unrecognized command``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import ClassVar, Final

import attrs

from ._codec import NgDict, NgValue
from ._errors import CommandError

__all__ = [
    "COMMANDS",
    "Answer",
    "BlockDTMF",
    "BlockMedia",
    "Codec",
    "Command",
    "Connect",
    "Delete",
    "List",
    "Offer",
    "PauseRecording",
    "Ping",
    "PlayDTMF",
    "PlayMedia",
    "Publish",
    "Query",
    "SilenceMedia",
    "StartForwarding",
    "StartRecording",
    "Statistics",
    "StopForwarding",
    "StopMedia",
    "StopRecording",
    "SubscribeAnswer",
    "SubscribeRequest",
    "UnblockDTMF",
    "UnblockMedia",
    "UnsilenceMedia",
    "Unsubscribe",
]

# -- converters ------------------------------------------------------------------


def _strings(value: str | Iterable[str]) -> tuple[str, ...]:
    """A list-valued key given as one string or an iterable of strings."""
    if isinstance(value, str):
        return (value,)
    items = tuple(value)
    for item in items:
        if not isinstance(item, str):
            raise CommandError(f"expected strings, got {item!r}")
    return items


def _pairs(
    value: Mapping[str, NgValue] | Iterable[tuple[str, NgValue]],
) -> tuple[tuple[str, NgValue], ...]:
    items = tuple(value.items()) if isinstance(value, Mapping) else tuple(value)
    for key, _ in items:
        if not isinstance(key, str):
            raise CommandError(f"an ng key is a string, not {key!r}")
    return items


def _put(document: NgDict, key: str, value: NgValue | None) -> None:
    if value is not None:
        document[key] = value


def _put_list(document: NgDict, key: str, values: tuple[str, ...]) -> None:
    if values:
        document[key] = list(values)


# -- the base ----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Command:
    """One ng command. ``name`` is the ``command`` value (spaces included).

    ``extra`` holds keys this class does not name, in order; naming one the
    class already set is an error rather than a silent override.
    """

    name: ClassVar[str] = ""
    extra: tuple[tuple[str, NgValue], ...] = attrs.field(default=(), converter=_pairs)

    def to_dict(self) -> NgDict:
        """The ng dictionary for this command."""
        document: NgDict = {"command": self.name}
        self._fill(document)
        for key, value in self.extra:
            if key in document:
                raise CommandError(f"extra key {key!r} is already set by {self.name!r}")
            document[key] = value
        return document

    def _fill(self, document: NgDict) -> None:
        """Add the command's own keys (overridden per command)."""


@attrs.frozen(kw_only=True)
class Ping(Command):
    """``ping``: the reply is ``result: pong``."""

    name: ClassVar[str] = "ping"


@attrs.frozen(kw_only=True)
class Statistics(Command):
    """``statistics``: the daemon's counters (``statistics`` in the reply)."""

    name: ClassVar[str] = "statistics"


@attrs.frozen(kw_only=True)
class List(Command):
    """``list``: the call-ids the daemon knows, at most ``limit`` (32 by default)."""

    name: ClassVar[str] = "list"
    limit: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.limit is not None and self.limit < 0:
            raise CommandError("list: limit must be >= 0")

    def _fill(self, document: NgDict) -> None:
        _put(document, "limit", self.limit)


# -- commands about one call -------------------------------------------------------


@attrs.frozen(kw_only=True)
class _CallCommand(Command):
    call_id: str
    from_tag: str | None = None
    to_tag: str | None = None
    via_branch: str | None = None
    flags: tuple[str, ...] = attrs.field(default=(), converter=_strings)

    def __attrs_post_init__(self) -> None:
        if not self.call_id:
            raise CommandError(f"{self.name}: call_id is required")

    def _fill(self, document: NgDict) -> None:
        document["call-id"] = self.call_id
        _put(document, "from-tag", self.from_tag)
        _put(document, "to-tag", self.to_tag)
        _put(document, "via-branch", self.via_branch)
        _put_list(document, "flags", self.flags)


@attrs.frozen(kw_only=True)
class Delete(_CallCommand):
    """``delete``: tear the call (or one branch, one dialogue) down.

    ``delete_delay`` (seconds, 0 = now) goes out as ``delete delay``, the
    spelling Kamailio sends. ``flags=["fatal"]`` turns an unknown call into
    an error instead of a warning.
    """

    name: ClassVar[str] = "delete"
    delete_delay: int | None = None

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.delete_delay is not None and self.delete_delay < 0:
            raise CommandError("delete: delete_delay must be >= 0")

    def _fill(self, document: NgDict) -> None:
        super()._fill(document)
        _put(document, "delete delay", self.delete_delay)


@attrs.frozen(kw_only=True)
class Query(_CallCommand):
    """``query``: the call's tags, streams, packet counters and MOS values."""

    name: ClassVar[str] = "query"


@attrs.frozen(kw_only=True)
class Connect(_CallCommand):
    """``connect``: join two parties' media without an offer/answer
    (newer rtpengine; ``to_call_id`` joins parties of two calls)."""

    name: ClassVar[str] = "connect"
    to_call_id: str | None = None

    def _fill(self, document: NgDict) -> None:
        super()._fill(document)
        _put(document, "to-call-id", self.to_call_id)


@attrs.frozen(kw_only=True)
class StartRecording(_CallCommand):
    """``start recording``."""

    name: ClassVar[str] = "start recording"
    metadata: str | None = None
    output_destination: str | None = None

    def _fill(self, document: NgDict) -> None:
        super()._fill(document)
        _put(document, "metadata", self.metadata)
        _put(document, "output-destination", self.output_destination)


@attrs.frozen(kw_only=True)
class StopRecording(_CallCommand):
    """``stop recording`` (``flags=["pause"]`` pauses instead)."""

    name: ClassVar[str] = "stop recording"


@attrs.frozen(kw_only=True)
class PauseRecording(_CallCommand):
    """``pause recording`` (newer rtpengine; 10.5 wants ``stop recording``
    with ``flags=["pause"]``)."""

    name: ClassVar[str] = "pause recording"


@attrs.frozen(kw_only=True)
class _ParticipantCommand(_CallCommand):
    # A participant is chosen by from_tag, by label, by the media address it
    # advertised, or (none of them) the whole call.
    label: str | None = None
    address: str | None = None

    def _fill(self, document: NgDict) -> None:
        super()._fill(document)
        _put(document, "label", self.label)
        _put(document, "address", self.address)


@attrs.frozen(kw_only=True)
class BlockDTMF(_ParticipantCommand):
    """``block DTMF``; ``dtmf_security`` picks the mode (``drop``,
    ``silence``, ``tone``, ``random``, ``zero``, ``DTMF``, ``off``)."""

    name: ClassVar[str] = "block DTMF"
    dtmf_security: str | None = None
    digit: str | None = None
    dtmf_delay: int | None = None
    delay_buffer: int | None = None

    def _fill(self, document: NgDict) -> None:
        super()._fill(document)
        _put(document, "DTMF-security", self.dtmf_security)
        _put(document, "digit", self.digit)
        _put(document, "DTMF-delay", self.dtmf_delay)
        _put(document, "delay-buffer", self.delay_buffer)


@attrs.frozen(kw_only=True)
class UnblockDTMF(_ParticipantCommand):
    """``unblock DTMF`` (``flags=["all"]`` also lifts per-participant blocks)."""

    name: ClassVar[str] = "unblock DTMF"


@attrs.frozen(kw_only=True)
class BlockMedia(_ParticipantCommand):
    """``block media``."""

    name: ClassVar[str] = "block media"


@attrs.frozen(kw_only=True)
class UnblockMedia(_ParticipantCommand):
    """``unblock media``."""

    name: ClassVar[str] = "unblock media"


@attrs.frozen(kw_only=True)
class SilenceMedia(_ParticipantCommand):
    """``silence media``: payload replaced by silence (G.711, G.722)."""

    name: ClassVar[str] = "silence media"


@attrs.frozen(kw_only=True)
class UnsilenceMedia(_ParticipantCommand):
    """``unsilence media``."""

    name: ClassVar[str] = "unsilence media"


@attrs.frozen(kw_only=True)
class StartForwarding(_ParticipantCommand):
    """``start forwarding``: the recording daemon's PCM forwarding."""

    name: ClassVar[str] = "start forwarding"


@attrs.frozen(kw_only=True)
class StopForwarding(_ParticipantCommand):
    """``stop forwarding``."""

    name: ClassVar[str] = "stop forwarding"


@attrs.frozen(kw_only=True)
class PlayMedia(_ParticipantCommand):
    """``play media``: exactly one of ``file`` (a path on the daemon's
    host), ``blob`` (the media bytes) or ``db_id``."""

    name: ClassVar[str] = "play media"
    file: str | None = None
    blob: bytes | None = None
    db_id: int | None = None
    repeat_times: int | None = None
    start_pos: int | None = None

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        given = [v for v in (self.file, self.blob, self.db_id) if v is not None]
        if len(given) != 1:
            raise CommandError("play media: give exactly one of file, blob, db_id")

    def _fill(self, document: NgDict) -> None:
        super()._fill(document)
        _put(document, "file", self.file)
        _put(document, "blob", self.blob)
        _put(document, "db-id", self.db_id)
        _put(document, "repeat-times", self.repeat_times)
        _put(document, "start-pos", self.start_pos)


@attrs.frozen(kw_only=True)
class StopMedia(_ParticipantCommand):
    """``stop media``."""

    name: ClassVar[str] = "stop media"


_DTMF_DIGITS: Final = frozenset("0123456789*#ABCDabcd")


@attrs.frozen(kw_only=True)
class PlayDTMF(_ParticipantCommand):
    """``play DTMF``: ``code`` is 0-15 or one of ``0-9 * # A-D``; the
    selected party is the one that generates the event."""

    name: ClassVar[str] = "play DTMF"
    code: int | str
    duration: int | None = None
    volume: int | None = None
    pause: int | None = None

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        code = self.code
        ok = (
            (isinstance(code, int) and not isinstance(code, bool) and 0 <= code <= 15)
            if not isinstance(code, str)
            else (len(code) == 1 and code in _DTMF_DIGITS)
        )
        if not ok:
            raise CommandError(f"play DTMF: code {code!r} is not 0-15 or 0-9*#A-D")

    def _fill(self, document: NgDict) -> None:
        super()._fill(document)
        document["code"] = self.code
        _put(document, "duration", self.duration)
        _put(document, "volume", self.volume)
        _put(document, "pause", self.pause)


# -- commands that carry SDP -------------------------------------------------------


@attrs.frozen(kw_only=True)
class Codec:
    """The ``codec`` dictionary: lists of codec specs (``PCMA``,
    ``opus/48000/2``, ``all``). ``except_`` and ``set_`` are the ``except``
    and ``set`` lists."""

    strip: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    offer: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    except_: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    transcode: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    mask: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    set_: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    consume: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    accept: tuple[str, ...] = attrs.field(default=(), converter=_strings)

    def to_dict(self) -> NgDict:
        document: NgDict = {}
        for key, values in (
            ("strip", self.strip),
            ("offer", self.offer),
            ("except", self.except_),
            ("transcode", self.transcode),
            ("mask", self.mask),
            ("set", self.set_),
            ("consume", self.consume),
            ("accept", self.accept),
        ):
            _put_list(document, key, values)
        return document


def _received_from(value: tuple[str, str] | None) -> tuple[str, str] | None:
    if value is None:
        return None
    family, address = value
    if family not in ("IP4", "IP6"):
        raise CommandError(f"received_from family must be IP4 or IP6, not {family!r}")
    return (family, address)


@attrs.frozen(kw_only=True)
class _MediaOptions(_CallCommand):
    # The offer/answer keys of rtpengine's ng protocol that Kamailio users
    # reach for; anything else goes in ``extra``.
    sdp: str | bytes
    replace: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    direction: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    interface: str | None = None
    received_from: tuple[str, str] | None = attrs.field(default=None, converter=_received_from)
    media_address: str | None = None
    address_family: str | None = None
    ice: str | None = None
    ice_lite: str | None = None
    dtls: str | None = None
    dtls_reverse: str | None = None
    dtls_fingerprint: str | None = None
    sdes: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    osrtp: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    rtcp_mux: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    t38: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    transport_protocol: str | None = None
    codec: Codec | None = None
    ptime: int | None = None
    ptime_reverse: int | None = None
    tos: int | None = None
    record_call: str | None = None
    metadata: str | None = None
    label: str | None = None
    supports: tuple[str, ...] = attrs.field(default=(), converter=_strings)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.tos is not None and not -1 <= self.tos <= 255:
            raise CommandError(f"{self.name}: tos must be -1..255, not {self.tos}")

    def _fill(self, document: NgDict) -> None:
        super()._fill(document)
        document["sdp"] = self.sdp
        _put_list(document, "replace", self.replace)
        _put_list(document, "direction", self.direction)
        _put(document, "interface", self.interface)
        if self.received_from is not None:
            document["received-from"] = list(self.received_from)
        _put(document, "media-address", self.media_address)
        _put(document, "address-family", self.address_family)
        _put(document, "ICE", self.ice)
        _put(document, "ICE-lite", self.ice_lite)
        _put(document, "DTLS", self.dtls)
        _put(document, "DTLS-reverse", self.dtls_reverse)
        _put(document, "DTLS-fingerprint", self.dtls_fingerprint)
        _put_list(document, "SDES", self.sdes)
        _put_list(document, "OSRTP", self.osrtp)
        _put_list(document, "rtcp-mux", self.rtcp_mux)
        _put_list(document, "T.38", self.t38)
        _put(document, "transport-protocol", self.transport_protocol)
        if self.codec is not None:
            codec = self.codec.to_dict()
            if codec:
                document["codec"] = codec
        _put(document, "ptime", self.ptime)
        _put(document, "ptime-reverse", self.ptime_reverse)
        _put(document, "TOS", self.tos)
        _put(document, "record-call", self.record_call)
        _put(document, "metadata", self.metadata)
        _put(document, "label", self.label)
        _put_list(document, "supports", self.supports)


@attrs.frozen(kw_only=True)
class Offer(_MediaOptions):
    """``offer``: ``sdp``, ``call_id`` and ``from_tag`` are required; the
    reply carries the rewritten ``sdp``."""

    name: ClassVar[str] = "offer"

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if not self.from_tag:
            raise CommandError("offer: from_tag is required")


@attrs.frozen(kw_only=True)
class Answer(_MediaOptions):
    """``answer``: as an offer plus the ``to_tag``. ``from_tag`` is the
    offerer's tag, whichever side the answer comes from."""

    name: ClassVar[str] = "answer"

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if not self.from_tag or not self.to_tag:
            raise CommandError("answer: from_tag and to_tag are required")


@attrs.frozen(kw_only=True)
class Publish(_MediaOptions):
    """``publish``: send-only media given to rtpengine outside an
    offer/answer; the reply is a recvonly answer SDP."""

    name: ClassVar[str] = "publish"

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if not self.from_tag:
            raise CommandError("publish: from_tag is required")


@attrs.frozen(kw_only=True)
class SubscribeRequest(_CallCommand):
    """``subscribe request``: a copy of the media of one participant
    (``from_tag`` or ``label``), several (``from_tags``) or all
    (``flags=["all"]``); the reply is a sendonly offer SDP and the new
    subscription's ``to-tag``."""

    name: ClassVar[str] = "subscribe request"
    from_tags: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    label: str | None = None
    set_label: str | None = None
    interface: str | None = None
    transport_protocol: str | None = None

    def _fill(self, document: NgDict) -> None:
        super()._fill(document)
        _put_list(document, "from-tags", self.from_tags)
        _put(document, "label", self.label)
        _put(document, "set-label", self.set_label)
        _put(document, "interface", self.interface)
        _put(document, "transport-protocol", self.transport_protocol)


@attrs.frozen(kw_only=True)
class SubscribeAnswer(_CallCommand):
    """``subscribe answer``: the subscriber's answer SDP for ``to_tag``."""

    name: ClassVar[str] = "subscribe answer"
    sdp: str | bytes

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if not self.to_tag:
            raise CommandError("subscribe answer: to_tag is required")

    def _fill(self, document: NgDict) -> None:
        super()._fill(document)
        document["sdp"] = self.sdp


@attrs.frozen(kw_only=True)
class Unsubscribe(_CallCommand):
    """``unsubscribe``: end the subscription ``to_tag``."""

    name: ClassVar[str] = "unsubscribe"

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if not self.to_tag:
            raise CommandError("unsubscribe: to_tag is required")


#: Every builder by its ng command name.
COMMANDS: Final[Mapping[str, type[Command]]] = {
    cls.name: cls
    for cls in (
        Ping,
        Offer,
        Answer,
        Delete,
        Query,
        List,
        StartRecording,
        StopRecording,
        PauseRecording,
        BlockDTMF,
        UnblockDTMF,
        BlockMedia,
        UnblockMedia,
        SilenceMedia,
        UnsilenceMedia,
        StartForwarding,
        StopForwarding,
        PlayMedia,
        StopMedia,
        PlayDTMF,
        Statistics,
        SubscribeRequest,
        SubscribeAnswer,
        Unsubscribe,
        Publish,
        Connect,
    )
}
