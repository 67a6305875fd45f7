"""The node pool's configuration: Kamailio's rtpengine module parameters.

This module owns :class:`RtpengineConfig` (the parameters that shape node
selection, failover and retransmission, named as Kamailio names them, with
Kamailio 5.6's defaults) and :class:`HashAlgo`. It holds no state.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable

import attrs

from ._errors import ConfigError
from ._flags import FlagDialect

__all__ = ["MAX_RTPP_TRIED_NODES", "HashAlgo", "RtpengineConfig"]

#: Kamailio's upper bound for ``queried_nodes_limit`` (and its default).
MAX_RTPP_TRIED_NODES = 30


class HashAlgo(enum.IntEnum):
    """Kamailio: ``hash_algo``, how a Call-ID picks a node."""

    LEGACY = 0  # byte sum of the Call-ID, low 8 bits (5.6's default)
    SHA1 = 1  # byte sum (as signed chars) of the Call-ID's SHA-1 digest
    CRC32 = 2  # CRC-32 of the Call-ID (the default of current Kamailio)


def _socks(value: str | Iterable[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _at_least(minimum: int) -> Callable[[object, attrs.Attribute[int], int], None]:
    def check(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
        if value < minimum:
            raise ConfigError(f"{attribute.name} must be at least {minimum}, not {value}")

    return check


def _nodes_limit(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 1 <= value <= MAX_RTPP_TRIED_NODES:
        raise ConfigError(f"queried_nodes_limit must be 1..{MAX_RTPP_TRIED_NODES}, not {value}")


def _allow_op(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value not in (0, 1, 2):
        raise ConfigError(f"rtpengine_allow_op must be 0, 1 or 2, not {value}")


@attrs.frozen
class RtpengineConfig:
    """Kamailio's rtpengine module parameters, with Kamailio 5.6's defaults.

    Used by the pool: ``rtpengine_sock`` (one string per ``modparam``
    line, see :func:`~sipcore_media.parse_rtpengine_sock`),
    ``setid_default``, ``rtpengine_disable_tout`` (s),
    ``aggressive_redetection``, ``rtpengine_tout_ms``, ``rtpengine_retr``
    (sends per node: 1 is no retransmission), ``queried_nodes_limit``,
    ``rtpengine_allow_op``, ``hash_algo``, ``hash_table_tout`` (s) and
    ``ping_interval`` (s; 0, 5.6's behaviour, pings only nodes waiting to
    come back; current Kamailio pings every node every 60 s).
    ``hash_table_size`` is kept for documentation: the sticky table is a
    dict bounded by ``max_hash_entries``. ``flag_dialect`` picks 5.6's or
    the current module's flag rules.

    Only meaningful inside Kamailio, so absent here: ``db_url``,
    ``table_name`` and the column names (build the ``rtpengine_sock``
    strings from your table), ``extra_id_pv`` (pass ``extra_id=``),
    ``setid_avp`` (pass ``setid=``), ``force_send_interface`` and
    ``control_cmd_tos`` (socket options of your transport),
    ``read_sdp_pv`` / ``write_sdp_pv`` / ``write_sdp_pv_mode`` (the SDP is
    a value you get; the message is rewritten only when you ask),
    ``rtp_inst_pvar`` (the node's URL is in every reply event),
    ``media_duration`` and the ``mos_*`` variables (reply models),
    ``dtmf_events_sock`` and ``dtmf_event*`` (a UDP listener of yours),
    ``wsapi`` (your WebSocket client), ``ping_mode`` (call
    ``ping_all()`` at start), ``enable_dmq`` (no cluster replication).
    """

    rtpengine_sock: tuple[str, ...] = attrs.field(default=(), converter=_socks)
    setid_default: int = attrs.field(default=0, validator=_at_least(0))
    rtpengine_disable_tout: int = attrs.field(default=60, validator=_at_least(0))
    aggressive_redetection: bool = True
    rtpengine_tout_ms: int = attrs.field(default=1000, validator=_at_least(1))
    rtpengine_retr: int = attrs.field(default=5, validator=_at_least(1))
    queried_nodes_limit: int = attrs.field(default=MAX_RTPP_TRIED_NODES, validator=_nodes_limit)
    rtpengine_allow_op: int = attrs.field(default=0, validator=_allow_op)
    hash_algo: HashAlgo = HashAlgo.LEGACY
    hash_table_tout: int = attrs.field(default=3600, validator=_at_least(1))
    hash_table_size: int = 256
    ping_interval: int = attrs.field(default=0, validator=_at_least(0))
    flag_dialect: FlagDialect = FlagDialect.KAMAILIO_5_6
    # Bounds of this library (no Kamailio counterpart).
    max_pending: int = attrs.field(default=10_000, validator=_at_least(1))
    max_hash_entries: int = attrs.field(default=1_000_000, validator=_at_least(1))
    max_reply_size: int = attrs.field(default=0x40000, validator=_at_least(1))
