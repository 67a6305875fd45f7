"""The dialog tracker's configuration: Kamailio's dialog module parameters.

This module owns :class:`DialogConfig` (every module parameter that means
something to a library, with Kamailio's defaults), the match and database
modes, and :class:`DialogSchema` (the ``dialog`` / ``dialog_vars`` table and
column names). It holds no state.
"""

from __future__ import annotations

import enum

import attrs

from sipcore import LocalProtocolError

__all__ = ["DbMode", "DialogConfig", "DialogSchema", "MatchMode"]


class MatchMode(enum.IntEnum):
    """Kamailio: ``dlg_match_mode``."""

    DID_ONLY = 0
    DID_FALLBACK = 1
    DID_NONE = 2


class DbMode(enum.IntEnum):
    """Kamailio: ``db_mode``."""

    NONE = 0
    REALTIME = 1
    DELAYED = 2
    SHUTDOWN = 3


@attrs.frozen
class DialogSchema:
    """Table and column names, Kamailio's defaults (``table_name``,
    ``call_id_column``...), so a database either side wrote can be read."""

    table_name: str = "dialog"
    call_id_column: str = "callid"
    from_uri_column: str = "from_uri"
    from_tag_column: str = "from_tag"
    to_uri_column: str = "to_uri"
    to_tag_column: str = "to_tag"
    from_cseq_column: str = "caller_cseq"
    to_cseq_column: str = "callee_cseq"
    from_route_column: str = "caller_route_set"
    to_route_column: str = "callee_route_set"
    from_contact_column: str = "caller_contact"
    to_contact_column: str = "callee_contact"
    from_sock_column: str = "caller_sock"
    to_sock_column: str = "callee_sock"
    h_id_column: str = "hash_id"
    h_entry_column: str = "hash_entry"
    state_column: str = "state"
    start_time_column: str = "start_time"
    timeout_column: str = "timeout"
    sflags_column: str = "sflags"
    iflags_column: str = "iflags"
    toroute_name_column: str = "toroute_name"
    req_uri_column: str = "req_uri"
    xdata_column: str = "xdata"
    vars_table_name: str = "dialog_vars"
    vars_h_id_column: str = "hash_id"
    vars_h_entry_column: str = "hash_entry"
    vars_key_column: str = "dialog_key"
    vars_value_column: str = "dialog_value"


def _power_of_two(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1 or value & (value - 1):
        raise LocalProtocolError(f"{attribute.name} must be a power of two, not {value}")


def _non_negative(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 0:
        raise LocalProtocolError(f"{attribute.name} must not be negative")


@attrs.frozen
class DialogConfig:
    """Kamailio's dialog module parameters, with Kamailio's defaults.

    Times are seconds. Parameters that only make sense inside Kamailio's
    process model (``timer_procs``, ``enable_dmq``, ``db_url``,
    ``event_callback``, ``debug_variables``, ``dlg_flag``, ``timeout_avp``)
    have Pythonic counterparts or none; the mapping page says which.
    """

    enable_stats: bool = True
    hash_size: int = attrs.field(default=4096, validator=_power_of_two)
    rr_param: str = "did"
    default_timeout: int = attrs.field(default=43200, validator=_non_negative)
    early_timeout: int = attrs.field(default=300, validator=_non_negative)
    noack_timeout: int = attrs.field(default=60, validator=_non_negative)
    end_timeout: int = attrs.field(default=300, validator=_non_negative)
    extra_headers: tuple[tuple[str, str], ...] = ()  # dlg_extra_hdrs
    match_mode: MatchMode = MatchMode.DID_ONLY
    detect_spirals: bool = True
    db_mode: DbMode = DbMode.NONE
    db_update_period: int = attrs.field(default=60, validator=_non_negative)
    db_fetch_rows: int = 200
    db_skip_load: bool = False
    schema: DialogSchema = attrs.Factory(DialogSchema)
    profiles_with_value: tuple[str, ...] = ()
    profiles_no_value: tuple[str, ...] = ()
    bridge_controller: str = "sip:controller@kamailio.org"
    bridge_contact: str = "sip:controller@kamailio.org:5060"
    initial_cbs_inscript: bool = True
    send_bye: bool = False
    filter_mode: int = 0  # dlg_filter_mode: 1 = no keepalive/timeout action for non-local
    wait_ack: bool = True
    ka_timer: int = 0
    ka_interval: int = attrs.field(default=0, validator=_non_negative)
    ka_failed_limit: int = 1
    timeout_noreset: bool = False
    track_cseq_updates: bool = False
    lreq_callee_headers: tuple[tuple[str, str], ...] = ()
    h_id_start: int = 0
    h_id_step: int = attrs.field(default=1)
    keep_proxy_rr: int = 0  # 1 callee leg, 2 caller leg, 3 both
    bye_early_code: int = 480
    bye_early_reason: str = "Temporarily Unavailable"
    # How long a dialog stays in state 5 once its BYE was answered (or a
    # failed one, to absorb the ACK): tm's wait timer, 5 s in Kamailio.
    deleted_linger: float = 5.0

    def __attrs_post_init__(self) -> None:
        if self.h_id_step < 1:
            raise LocalProtocolError("h_id_step must be at least 1")
        if self.h_id_step > 1 and not 0 <= self.h_id_start < self.h_id_step:
            raise LocalProtocolError("h_id_start must be below h_id_step")
        both = set(self.profiles_with_value) & set(self.profiles_no_value)
        if both:
            raise LocalProtocolError(f"profiles declared with and without value: {sorted(both)}")
        if self.ka_interval and self.ka_interval < 30:
            raise LocalProtocolError("ka_interval is at least 30 seconds (Kamailio's minimum)")
