"""sipcore_dialog: dialog tracking with the semantics of Kamailio's dialog module.

Attach a :class:`DialogTracker` to a :class:`sipcore.Proxy` and call
:meth:`DialogTracker.manage` from the routing script for the INVITEs to
track. Sans-I/O: no sockets, no clock; timers run in the proxy's ``tick``.
Give it a :class:`DialogStore` (:class:`SQLiteDialogStore` is the embedded
one) to keep confirmed dialogs across restarts, per ``db_mode``.
"""

from . import events
from ._bridge import HOLD_SDP, bridge, refer
from ._config import DbMode, DialogConfig, DialogSchema, MatchMode
from ._dialog import Dialog, DialogContext, DialogState, Direction, Property, Side
from ._management import DialogManagement, ManagementError
from ._profiles import Profile, ProfileLink, ProfileTable, RemoteItem
from ._sqlite import SQLiteDialogStore
from ._store import (
    DialogRecord,
    DialogStore,
    LoadReport,
    RecordError,
    SkippedRecord,
    dialog_from_record,
    record_from_dialog,
)
from ._tracker import DialogStats, DialogTracker

__all__ = [
    "HOLD_SDP",
    "DbMode",
    "Dialog",
    "DialogConfig",
    "DialogContext",
    "DialogManagement",
    "DialogRecord",
    "DialogSchema",
    "DialogState",
    "DialogStats",
    "DialogStore",
    "DialogTracker",
    "Direction",
    "LoadReport",
    "ManagementError",
    "MatchMode",
    "Profile",
    "ProfileLink",
    "ProfileTable",
    "Property",
    "RecordError",
    "RemoteItem",
    "SQLiteDialogStore",
    "Side",
    "SkippedRecord",
    "bridge",
    "dialog_from_record",
    "events",
    "record_from_dialog",
    "refer",
]
