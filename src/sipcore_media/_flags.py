"""Kamailio's flag strings, turned into ng dictionaries as its module does.

This module owns :func:`parse_flags` (the tokens of a string such as
``"ICE=remove replace-origin RTP/AVP codec-strip=PCMA direction=external"``
into the parts of an ng dictionary, by the rules of Kamailio's
``parse_flags()`` in the order it applies them) and :func:`build_command`
(the whole dictionary Kamailio's ``rtpp_function_call()`` sends: the
parsed flags plus ``supports``, ``sdp``, ``received-from``, ``call-id``,
``via-branch``, the tags by Kamailio's swapping rules and ``command``).
The SIP values come in as a :class:`SipContext`; reading them from a
message is :mod:`sipcore_media._sip`'s job. Nothing here sends anything.

Kamailio 5.6 (the installed version) is the default dialect.
``KAMAILIO_5_8`` is the module as its current source reads (5.8 and
later): it adds the ``received-from=IP`` token (5.7), the
``codec-accept`` / ``codec-consume`` tokens (5.8), the
``sip-message-type`` key, and sends ``received-from`` only when the
function was given a flag string.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable
from typing import Final

import attrs

from ._codec import NgDict, NgValue
from ._errors import FlagError, MessageError

__all__ = [
    "DIRECTIONAL_COMMANDS",
    "FlagDialect",
    "ParsedFlags",
    "SipContext",
    "ViaBranch",
    "build_command",
    "parse_flags",
]


class FlagDialect(enum.Enum):
    """Which Kamailio's flag rules to follow."""

    KAMAILIO_5_6 = "5.6"
    KAMAILIO_5_8 = "5.8"


class ViaBranch(enum.Enum):
    """The ``via-branch=`` values (Kamailio's ``ng_flags->via``)."""

    FIRST = "1"  # the first Via's branch
    SECOND = "2"  # the second Via's branch
    AUTO = "auto"  # first in a request, second in a reply
    EXTRA = "extra"  # the extra_id_pv value
    NEXT = "next"  # the branch tm will give the next outgoing branch
    AUTO_NEXT = "auto-next"  # next in a request, first in a reply
    AUTO_EXTRA = "auto-extra"  # extra in a request, first in a reply


_VIA_VALUES: Final = {
    "auto": ViaBranch.AUTO,
    "extra": ViaBranch.EXTRA,
    "next": ViaBranch.NEXT,
    "auto-next": ViaBranch.AUTO_NEXT,
    "next-auto": ViaBranch.AUTO_NEXT,
    "auto-extra": ViaBranch.AUTO_EXTRA,
    "extra-auto": ViaBranch.AUTO_EXTRA,
}

# Transport state bits: 0x100 "a transport token was seen", 0x001 SRTP,
# 0x002 AVPF, 0x004 DTLS. 0x105 and 0x107 name nothing: Kamailio's table
# has NULL there and its bencode_dictionary_add_string() adds nothing for
# NULL, so the command goes out without "transport-protocol".
_SEEN: Final = 0x100
_TRANSPORTS: Final = {
    0: "RTP/AVP",
    1: "RTP/SAVP",
    2: "RTP/AVPF",
    3: "RTP/SAVPF",
    4: "UDP/TLS/RTP/SAVP",
    6: "UDP/TLS/RTP/SAVPF",
}
_FULL_TRANSPORTS: Final = {
    "RTP/AVP": 0x100,
    "RTP/SAVP": 0x101,
    "RTP/AVPF": 0x102,
    "RTP/SAVPF": 0x103,
    "UDP/TLS/RTP/SAVP": 0x104,
    "UDP/TLS/RTP/SAVPF": 0x106,
}

#: Commands whose tags are sent only when the flags say ``directional``
#: (or give ``from-tag=``): the whole call is meant otherwise.
DIRECTIONAL_COMMANDS: Final = frozenset(
    {
        "block DTMF",
        "unblock DTMF",
        "block media",
        "unblock media",
        "silence media",
        "unsilence media",
        "start forwarding",
        "stop forwarding",
    }
)
# Kamailio builds the SDP-related lists only for these; elsewhere the
# tokens are consumed and dropped.
_SDP_COMMANDS: Final = frozenset({"offer", "answer"})
# Commands that carry the message's SDP ("subscribe answer": the
# subscriber's answer, as the current module's rtpengine_subscribe_answer).
_BODY_COMMANDS: Final = _SDP_COMMANDS | {"subscribe answer"}

_ATOI: Final = re.compile(r"[ \t\n\v\f\r]*([+-]?[0-9]+)")


def _atoi(text: str) -> int:
    """glibc's ``atoi``: ``(int) strtol(s, NULL, 10)``."""
    match = _ATOI.match(text)
    if match is None:
        return 0
    value = max(-(2**63), min(2**63 - 1, int(match.group(1))))
    value &= 0xFFFFFFFF
    return value - 2**32 if value >= 2**31 else value


def _key_value_prefix(key: str, name: str, value: str | None) -> str | None:
    """Kamailio's ``str_key_val_prefix``: ``name=X`` or ``name-X`` gives X."""
    if key == name:
        return value if value else None
    if key.startswith(name) and len(key) - len(name) >= 2 and key[len(name)] == "-":
        return key[len(name) + 1 :]
    return None


@attrs.define
class ParsedFlags:
    """What a flag string asks for, before the SIP values are added.

    ``entries`` are the top-level keys in the order the tokens gave them
    (``ICE``, ``TOS``, ``delete delay``...); the lists and ``codec`` are
    empty when no token filled them. The rest overrides SIP values or
    changes how the command is built.
    """

    command: str
    entries: dict[str, NgValue] = attrs.field(factory=dict)
    flags: list[str] = attrs.field(factory=list)
    replace: list[str] = attrs.field(factory=list)
    direction: list[str] = attrs.field(factory=list)
    rtcp_mux: list[str] = attrs.field(factory=list)
    sdes: list[str] = attrs.field(factory=list)
    t38: list[str] = attrs.field(factory=list)
    codec: dict[str, list[str]] = attrs.field(factory=dict)
    received_from: list[str] = attrs.field(factory=list)
    from_tags: list[str] = attrs.field(factory=list)
    transport: int = 0
    call_id: str | None = None
    from_tag: str | None = None
    to_tag: str | None = None
    include_to_tag: bool = False
    via: ViaBranch | None = None
    directional: bool = False

    @property
    def transport_protocol(self) -> str | None:
        """The ``transport-protocol`` the transport tokens give, if any
        (none for ``SRTP DTLS``, which names no protocol: Kamailio then
        sends the command without the key)."""
        if not self.transport & _SEEN:
            return None
        return _TRANSPORTS.get(self.transport & 0x7)


def _codec_rules(dialect: FlagDialect) -> tuple[tuple[str, str | None, str], ...]:
    rules: list[tuple[str, str | None, str]] = [
        ("transcode", "codec-transcode", "transcode"),
        ("codec-strip", None, "strip"),
        ("codec-offer", None, "offer"),
        ("codec-mask", None, "mask"),
        ("codec-set", None, "set"),
        ("codec-except", None, "except"),
    ]
    if dialect is FlagDialect.KAMAILIO_5_8:
        rules += [("codec-accept", None, "accept"), ("codec-consume", None, "consume")]
    return tuple(rules)


def _address_family(text: str) -> str | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    return "IP4" if address.version == 4 else "IP6"


def _tokens(text: str) -> list[tuple[str, str | None]]:
    """Kamailio's tokenizer: a key runs to a space or ``=``; a value from
    the ``=`` to the next space. An empty key ends the string."""
    out: list[tuple[str, str | None]] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] == " ":
            i += 1
        j = i
        while j < n and text[j] not in " =":
            j += 1
        key = text[i:j]
        value: str | None = None
        if j < n and text[j] == "=":
            k = text.find(" ", j + 1)
            k = n if k < 0 else k
            value = text[j + 1 : k]
            j = k
        if not key:
            return out
        out.append((key, value))
        i = j


def parse_flags(
    text: str, command: str, dialect: FlagDialect = FlagDialect.KAMAILIO_5_6
) -> ParsedFlags:
    """Parse a Kamailio flag string for ``command`` (an ng command name).

    ``force-answer`` turns an offer into an answer (``ParsedFlags.command``).

    >>> p = parse_flags("ICE=remove replace-origin RTP/AVP codec-strip=PCMA", "offer")
    >>> p.entries, p.replace, p.codec, p.transport_protocol
    ({'ICE': 'remove'}, ['origin'], {'strip': ['PCMA']}, 'RTP/AVP')
    """
    parsed = ParsedFlags(command=command)
    sdp_lists = command in _SDP_COMMANDS
    codec_rules = _codec_rules(dialect)

    def add(target: list[str], item: str) -> None:
        # Kamailio's lists exist only for offer/answer; other commands drop.
        if sdp_lists:
            target.append(item)

    for key, value in _tokens(text):
        if _list_rule(parsed, key, value, dialect, add):
            continue
        if _codec_rule(parsed, key, value, codec_rules, sdp_lists):
            continue
        if _special_rule(parsed, key, value, add, dialect):
            continue
        if value is None:
            parsed.flags.append(key)
        else:
            parsed.entries[key] = value
    return parsed


def _list_rule(
    parsed: ParsedFlags,
    key: str,
    value: str | None,
    dialect: FlagDialect,
    add: Callable[[list[str], str], None],
) -> bool:
    item = _key_value_prefix(key, "replace", value)
    if item is not None:
        add(parsed.replace, item)
        return True
    if dialect is FlagDialect.KAMAILIO_5_8:
        address = _key_value_prefix(key, "received-from", value)
        if address is not None:
            family = _address_family(address)
            if family is not None:  # Kamailio drops what is not an IP address
                parsed.received_from += [family, address]
            return True
    item = _key_value_prefix(key, "SDES", value)
    if item is not None:
        add(parsed.sdes, item)
        return True
    item = _key_value_prefix(key, "T38", value)
    if item is None:
        item = _key_value_prefix(key, "T.38", value)
    if item is not None:
        add(parsed.t38, item)
        return True
    item = _key_value_prefix(key, "rtcp-mux", value)
    if item is not None:
        add(parsed.rtcp_mux, item)
        return True
    return False


def _codec_rule(
    parsed: ParsedFlags,
    key: str,
    value: str | None,
    rules: tuple[tuple[str, str | None, str], ...],
    sdp_lists: bool,
) -> bool:
    for first, second, slot in rules:
        item = _key_value_prefix(key, first, value)
        if item is None and second is not None:
            item = _key_value_prefix(key, second, value)
        if item is not None:
            if sdp_lists:
                parsed.codec.setdefault(slot, []).append(item)
            return True
    return False


def _special_rule(
    parsed: ParsedFlags,
    key: str,
    value: str | None,
    add: Callable[[list[str], str], None],
    dialect: FlagDialect,
) -> bool:
    """Kamailio's ``switch (key.len)`` block; False sends the token on to
    the generic rule (a bare word to ``flags``, ``key=value`` to the top)."""
    bare = value is None
    if key in _FULL_TRANSPORTS and bare:
        parsed.transport = _FULL_TRANSPORTS[key]
    elif key == "RTP" and bare:
        parsed.transport = (parsed.transport | _SEEN) & ~0x001
    elif key == "AVP" and bare:
        parsed.transport = (parsed.transport | _SEEN) & ~0x002
    elif key == "SRTP" and bare:
        parsed.transport |= 0x101
    elif key == "AVPF" and bare:
        parsed.transport |= 0x102
    elif key == "DTLS" and bare:
        parsed.transport |= 0x104
    elif key == "TOS" and not bare:
        parsed.entries["TOS"] = _atoi(value or "")
    elif key == "to-tag":
        if value is not None:
            parsed.to_tag = value
        parsed.include_to_tag = True
    elif key == "call-id":
        if value is None:
            raise FlagError("error processing flag 'call-id': missing value")
        parsed.call_id = value
    elif key in ("internal", "external"):
        add(parsed.direction, key)
    elif key == "from-tag":
        if value is None:
            raise FlagError("error processing flag 'from-tag': missing value")
        parsed.from_tag = value
        parsed.directional = True
    elif key == "direction":
        if value is None:
            # Kamailio adds a string of length -1 and fails the command.
            raise FlagError("error processing flag 'direction': missing value")
        add(parsed.direction, value)
    elif key == "from-tags" and dialect is FlagDialect.KAMAILIO_5_8:
        if value is None:
            raise FlagError("error processing flag 'from-tags': missing value")
        parsed.from_tags.append(value)
    elif key == "via-branch":
        parsed.via = _via_branch(value)
    elif key == "repacketize":
        parsed.entries["repacketize"] = _repacketize(value)
    elif key == "directional":
        parsed.directional = True
    elif key == "force-answer":
        if parsed.command != "offer":
            raise FlagError("error processing flag 'force-answer': not an offer")
        parsed.command = "answer"
    elif key == "delete-delay":
        # Kamailio adds the integer, then (falling out of its switch) the
        # token again by the generic rule: "delete-delay=5" gives both
        # "delete delay": 5 and "delete-delay": "5".
        if value is not None:
            parsed.entries["delete delay"] = _atoi(value)
        return False
    else:
        return False
    return True


def _via_branch(value: str | None) -> ViaBranch:
    if value is None:
        raise FlagError("error processing flag 'via-branch': missing value")
    if value[:1] in ("1", "2"):  # Kamailio looks at the first character only
        return ViaBranch(value[0])
    mode = _VIA_VALUES.get(value)
    if mode is None:
        raise FlagError(f"error processing flag 'via-branch' (value {value!r}): invalid value")
    return mode


def _repacketize(value: str | None) -> int:
    if value is None:
        raise FlagError("error processing flag 'repacketize': missing value")
    digits = re.match(r"[0-9]*", value)
    number = int(digits.group(0)) if digits and digits.group(0) else 0
    if number == 0:
        raise FlagError(f"error processing flag 'repacketize' (value {value!r}): invalid value")
    return number


@attrs.frozen
class SipContext:
    """The SIP values Kamailio takes from the message for a command.

    ``vias`` are the branches of the first and second Via (None where a
    Via or its branch is missing); ``source_address`` the IP the message
    came from (for ``received-from``); ``sdp`` the body for an offer or an
    answer, ``sdp_fragment`` True for a trickle-ICE ``sdpfrag`` body.
    ``extra_id`` is Kamailio's ``extra_id_pv`` value and ``next_branch``
    the branch tm would give the next outgoing branch (``via-branch=next``).
    """

    call_id: str
    from_tag: str
    to_tag: str | None = None
    is_request: bool = True
    sdp: str | bytes | None = None
    sdp_fragment: bool = False
    source_address: str | None = None
    vias: tuple[str | None, ...] = ()
    extra_id: str | None = None
    next_branch: str | None = None


def _resolve_via(mode: ViaBranch, context: SipContext) -> str:
    reply = not context.is_request
    if mode is ViaBranch.AUTO:
        mode = ViaBranch.SECOND if reply else ViaBranch.FIRST
    elif mode is ViaBranch.AUTO_NEXT:
        mode = ViaBranch.FIRST if reply else ViaBranch.NEXT
    elif mode is ViaBranch.AUTO_EXTRA:
        mode = ViaBranch.FIRST if reply else ViaBranch.EXTRA
    value: str | None
    if mode in (ViaBranch.FIRST, ViaBranch.SECOND):
        index = 0 if mode is ViaBranch.FIRST else 1
        value = context.vias[index] if index < len(context.vias) else None
        if not value:
            raise MessageError(f"can't get Via branch: the message has no Via {index + 1} branch")
        return value
    value = context.extra_id if mode is ViaBranch.EXTRA else context.next_branch
    if not value:
        what = "extra_id (extra_id_pv)" if mode is ViaBranch.EXTRA else "next_branch"
        raise FlagError(f"via-branch={mode.value} needs {what}")
    return value


def _tags(
    parsed: ParsedFlags,
    command: str,
    context: SipContext,
    document: NgDict,
    dialect: FlagDialect,
) -> None:
    """Kamailio's ``parse_from_to_tags``: which tag goes where."""
    from_tag = parsed.from_tag if parsed.from_tag is not None else context.from_tag
    to_tag = parsed.to_tag if parsed.to_tag is not None else context.to_tag
    # Every command but delete (and subscribe request) sends the To tag when
    # there is one; those only with the to-tag token.
    include_to = command not in ("delete", "subscribe request") or parsed.include_to_tag
    if command in DIRECTIONAL_COMMANDS:
        if parsed.directional:
            document["from-tag"] = from_tag
            # 5.6 names the one party by its From tag alone, whatever the
            # message's To tag or a to-tag token say (seen with 5.6.3).
            if dialect is not FlagDialect.KAMAILIO_5_6 and include_to and to_tag:
                document["to-tag"] = to_tag
        return
    # The subscription commands (current Kamailio only): the parties go in
    # from-tags, the subscription is the to-tag.
    if command == "subscribe request":
        if parsed.from_tags:
            document["from-tags"] = list(parsed.from_tags)
        if include_to and to_tag:
            document["to-tag"] = to_tag
        return
    if command in ("subscribe answer", "unsubscribe"):
        if to_tag:
            document["to-tag"] = to_tag
        return
    if (
        (context.is_request and command != "answer")
        or (not context.is_request and command in ("delete", "answer"))
        or parsed.directional
    ):
        document["from-tag"] = from_tag
        if include_to and to_tag:
            document["to-tag"] = to_tag
        return
    # An answer in a request (ACK, PRACK) or anything else in a reply: the
    # tags swap sides, as rtpengine wants the offerer's tag as from-tag.
    if not to_tag:
        raise MessageError("No to-tag present")
    document["from-tag"] = to_tag
    document["to-tag"] = from_tag


# Keys the module writes itself; a key=value token naming one of them is
# sent twice by Kamailio (undefined which rtpengine uses) and dropped here.
_MODULE_KEYS: Final = frozenset(
    {
        "supports",
        "sdp",
        "call-id",
        "via-branch",
        "from-tag",
        "to-tag",
        "command",
        "received-from",
    }
)


def build_command(
    command: str,
    flags: str | None,
    context: SipContext,
    dialect: FlagDialect = FlagDialect.KAMAILIO_5_6,
) -> NgDict:
    """The dictionary Kamailio's module sends for ``command`` with the flag
    string ``flags`` (None: the function was called without one) about the
    message described by ``context``.

    >>> ctx = SipContext("a84b4c76e66710", "1928301774", sdp="v=0\\r\\n",
    ...                  source_address="127.0.0.1")
    >>> build_command("offer", "ICE=remove replace-origin", ctx)
    ... # doctest: +NORMALIZE_WHITESPACE
    {'supports': ['load limit'], 'sdp': 'v=0\\r\\n', 'ICE': 'remove',
     'replace': ['origin'], 'received-from': ['IP4', '127.0.0.1'],
     'call-id': 'a84b4c76e66710', 'from-tag': '1928301774', 'command': 'offer'}
    """
    parsed = parse_flags(flags, command, dialect) if flags is not None else None
    if parsed is not None:
        command = parsed.command
    document: NgDict = {"supports": ["load limit"]}
    if command in _BODY_COMMANDS:
        if context.sdp is None:
            raise MessageError("can't extract body from the message")
        document["sdp"] = context.sdp
    flag_list: list[NgValue] = list(parsed.flags) if parsed is not None else []
    if parsed is not None:
        for key, value in parsed.entries.items():
            if key not in _MODULE_KEYS:
                document[key] = value
        if parsed.direction:
            document["direction"] = list(parsed.direction)
    # "fragment" marks a trickle-ICE sdpfrag body, so only a command that
    # sends the body carries it. 5.6 always adds it (5.6.3 sends
    # ["fragment"] with no flag string at all); the current module appends
    # it after deciding whether to send the list, so it goes out only when
    # other bare flags do.
    if (
        context.sdp_fragment
        and command in _BODY_COMMANDS
        and (flag_list or dialect is FlagDialect.KAMAILIO_5_6)
    ):
        flag_list.append("fragment")
    if flag_list:
        document["flags"] = flag_list
    if parsed is not None:
        if parsed.replace:
            document["replace"] = list(parsed.replace)
        if parsed.codec:
            document["codec"] = {k: list(v) for k, v in parsed.codec.items()}
        protocol = parsed.transport_protocol
        if protocol is not None:
            document["transport-protocol"] = protocol
        if parsed.rtcp_mux:
            document["rtcp-mux"] = list(parsed.rtcp_mux)
        if parsed.sdes:
            document["SDES"] = list(parsed.sdes)
        if parsed.t38:
            document["T.38"] = list(parsed.t38)
    if parsed is not None and parsed.received_from:
        document["received-from"] = list(parsed.received_from)
    elif context.source_address is not None and (
        parsed is not None or dialect is FlagDialect.KAMAILIO_5_6
    ):
        # 5.6 always sends the SIP source; the current module only when the
        # function was given a flag string.
        family = _address_family(context.source_address) or "?"
        document["received-from"] = [family, context.source_address]
    effective = parsed or ParsedFlags(command=command)
    document["call-id"] = effective.call_id if effective.call_id is not None else context.call_id
    if effective.via is not None:
        document["via-branch"] = _resolve_via(effective.via, context)
    _tags(effective, command, context, document, dialect)
    document["command"] = command
    if dialect is FlagDialect.KAMAILIO_5_8:
        document["sip-message-type"] = "sip_request" if context.is_request else "sip_reply"
    return document
