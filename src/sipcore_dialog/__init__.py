"""sipcore_dialog: dialog tracking with the semantics of Kamailio's dialog module.

Attach a :class:`DialogTracker` to a :class:`sipcore.Proxy` and call
:meth:`DialogTracker.manage` from the routing script for the INVITEs to
track. Sans-I/O: no sockets, no clock; timers run in the proxy's ``tick``.
"""

from . import events
from ._bridge import HOLD_SDP, bridge, refer
from ._config import DbMode, DialogConfig, DialogSchema, MatchMode
from ._dialog import Dialog, DialogContext, DialogState, Direction, Property, Side
from ._management import DialogManagement, ManagementError
from ._profiles import Profile, ProfileLink, ProfileTable, RemoteItem
from ._tracker import DialogStats, DialogTracker

__all__ = [
    "HOLD_SDP",
    "DbMode",
    "Dialog",
    "DialogConfig",
    "DialogContext",
    "DialogManagement",
    "DialogSchema",
    "DialogState",
    "DialogStats",
    "DialogTracker",
    "Direction",
    "ManagementError",
    "MatchMode",
    "Profile",
    "ProfileLink",
    "ProfileTable",
    "Property",
    "RemoteItem",
    "Side",
    "bridge",
    "events",
    "refer",
]
