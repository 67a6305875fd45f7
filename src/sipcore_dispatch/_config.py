"""The dispatcher's configuration: Kamailio's dispatcher module parameters.

This module owns :class:`DispatcherConfig` (the module parameters, named as
Kamailio names them, with Kamailio 5.6's defaults), the ``flags`` bits and
the ``ds_load_mode`` / ``ds_probing_mode`` enums. It holds no state.
"""

from __future__ import annotations

import enum

import attrs

from sipcore import LocalProtocolError

__all__ = ["DispatcherConfig", "DsFlags", "LoadMode", "ProbingMode"]


class DsFlags(enum.IntFlag):
    """Kamailio: the ``flags`` module parameter."""

    NONE = 0
    HASH_USER_ONLY = 1  # DS_HASH_USER_ONLY: hash only the user part of a URI
    FAILOVER_ON = 2  # DS_FAILOVER_ON: keep the failover list (always built here)


class LoadMode(enum.IntEnum):
    """Kamailio: ``ds_load_mode`` (what a bad record in a list does)."""

    SKIP = 0  # the record is reported and skipped (Kamailio's default)
    FATAL = 1  # the whole load fails, the old table stays


class ProbingMode(enum.IntEnum):
    """Kamailio: ``ds_probing_mode`` (used by the prober, not by selection).

    0 pings only destinations in the probing state, 1 all of them, 2 the
    inactive ones, 3 those with the probing flag (dispatch.h's
    ``DS_PROBE_*``)."""

    NONE = 0  # DS_PROBE_NONE
    ALL = 1  # DS_PROBE_ALL
    INACTIVE = 2  # DS_PROBE_INACTIVE
    ONLY_FLAGGED = 3  # DS_PROBE_ONLYFLAGGED


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise LocalProtocolError(f"{attribute.name} must be at least 1, not {value}")


def _non_negative(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise LocalProtocolError(f"{attribute.name} must not be negative")


def _alpha(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise LocalProtocolError(f"{attribute.name} must be in (0, 1], not {value}")


@attrs.frozen
class DispatcherConfig:
    """Kamailio's dispatcher module parameters, with Kamailio 5.6's defaults.

    Used by selection and marking: ``flags``, ``use_default``, ``force_dst``
    (see :meth:`Dispatcher.select`), ``ds_probing_threshold``,
    ``ds_inactive_threshold``, ``ds_load_mode``, ``ds_hash_expire``,
    ``ds_hash_initexpire``. Kept for the prober and the proxy glue (later
    work): ``ds_ping_method``, ``ds_ping_from``, ``ds_ping_interval``,
    ``ds_probing_mode``, ``ds_ping_reply_codes``, ``ds_ping_latency_stats``,
    ``ds_retain_latency_stats`` (a reload keeps the statistics),
    ``ds_latency_estimator_alpha`` (a fraction: Kamailio's integer ``900``
    is ``0.9`` here),
    ``outbound_proxy``, ``ds_default_socket``, ``ds_default_sockname``,
    ``ds_attrs_none``, ``reload_delta``.

    Only meaningful inside Kamailio, so absent here: ``list_file`` /
    ``db_url`` / ``table_name`` and the column names (you pass the text or
    the SQLite connection and table), ``dst_avp`` / ``grp_avp`` /
    ``cnt_avp`` / ``dstid_avp`` / ``attrs_avp`` / ``sock_avp`` /
    ``xavp_dst`` / ``xavp_ctx`` (the :class:`Selection` is the failover
    list), ``hash_pvar`` (pass ``key=`` to alg 7), ``setid_pvname`` /
    ``attrs_pvname`` (read :attr:`Destination.setid` / ``attrs``),
    ``ds_db_extra_attrs``, ``ds_timer_mode``, ``ds_dns_mode``,
    ``ds_dns_ttl``, ``event_callback`` (events are returned values).
    ``ds_hash_size`` is kept for documentation; the load table here is a
    dict bounded by ``max_load_entries``.
    """

    flags: DsFlags = DsFlags.NONE
    use_default: bool = False
    force_dst: bool = True
    ds_load_mode: LoadMode = LoadMode.SKIP
    ds_probing_threshold: int = attrs.field(default=1, validator=_positive)
    ds_inactive_threshold: int = attrs.field(default=1, validator=_positive)
    ds_ping_method: str = "OPTIONS"
    ds_ping_from: str = "sip:dispatcher@localhost"
    ds_ping_interval: int = attrs.field(default=0, validator=_non_negative)
    ds_probing_mode: ProbingMode = ProbingMode.NONE
    ds_ping_reply_codes: str = ""
    ds_ping_latency_stats: bool = False
    ds_retain_latency_stats: bool = False
    ds_latency_estimator_alpha: float = attrs.field(default=0.9, validator=_alpha)
    ds_hash_size: int = attrs.field(default=0, validator=_non_negative)
    ds_hash_expire: int = attrs.field(default=7200, validator=_non_negative)
    ds_hash_initexpire: int = attrs.field(default=7200, validator=_non_negative)
    ds_hash_check_interval: int = attrs.field(default=30, validator=_non_negative)
    outbound_proxy: str = ""
    ds_default_socket: str = ""
    ds_default_sockname: str = ""
    ds_attrs_none: bool = False
    reload_delta: int = attrs.field(default=5, validator=_non_negative)
    # Bounds of this library (no Kamailio counterpart).
    max_destinations: int = attrs.field(default=100_000, validator=_positive)
    max_line_length: int = attrs.field(default=65_536, validator=_positive)
    max_list_bytes: int = attrs.field(default=64 * 1024 * 1024, validator=_positive)
    max_load_entries: int = attrs.field(default=1_000_000, validator=_positive)
