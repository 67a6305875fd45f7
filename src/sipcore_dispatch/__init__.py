"""sipcore_dispatch: Kamailio's ``dispatcher`` as a sans-I/O library.

Destination sets loaded from ``dispatcher.list`` or the ``dispatcher``
table, Kamailio-compatible selection algorithms with failover lists,
marking with Kamailio's thresholds, call load, health probing with
latency statistics, and a rendezvous hash.
Nothing here opens a socket or reads a clock.
"""

from . import events
from ._config import DispatcherConfig, DsFlags, LoadMode, ProbingMode
from ._destination import (
    STATES_ALL,
    Destination,
    DestinationAttrs,
    DestinationState,
    DestinationStatus,
    DispatchError,
    ListError,
    UnknownDestination,
    parse_attrs,
    parse_state,
)
from ._dispatcher import (
    ALGORITHMS,
    Dispatcher,
    array_order,
    latency_sample,
    relative_weight_slots,
    weight_slots,
)
from ._glibc import GlibcRandom
from ._keys import ds_get_hash, uri_hash_keys
from ._loading import make_destination, parse_list, read_sqlite
from ._management import DispatcherManagement, ManagementError, rpc_flags, rpc_state
from ._prober import Probe, Prober, ProbeService, parse_reply_codes, reply_code_accepted
from ._selection import Selection
from .events import DestinationDown, DestinationUp

__all__ = [
    "ALGORITHMS",
    "STATES_ALL",
    "Destination",
    "DestinationAttrs",
    "DestinationDown",
    "DestinationState",
    "DestinationStatus",
    "DestinationUp",
    "DispatchError",
    "Dispatcher",
    "DispatcherConfig",
    "DispatcherManagement",
    "DsFlags",
    "GlibcRandom",
    "ListError",
    "LoadMode",
    "ManagementError",
    "Probe",
    "ProbeService",
    "Prober",
    "ProbingMode",
    "Selection",
    "UnknownDestination",
    "array_order",
    "ds_get_hash",
    "events",
    "latency_sample",
    "make_destination",
    "parse_attrs",
    "parse_list",
    "parse_reply_codes",
    "parse_state",
    "read_sqlite",
    "relative_weight_slots",
    "reply_code_accepted",
    "rpc_flags",
    "rpc_state",
    "uri_hash_keys",
    "weight_slots",
]
