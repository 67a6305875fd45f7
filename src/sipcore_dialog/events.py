"""What happens to dialogs, as frozen values: one class per Kamailio
callback type (``DLGCB_*``) and per event route (``dialog:start``,
``dialog:end``, ``dialog:failed``).

Subscribe with :meth:`sipcore_dialog.DialogTracker.subscribe` (every
dialog) or :meth:`sipcore_dialog.DialogTracker.subscribe_dialog` (one).
``message`` is the request or response that caused the event, when one did.
"""

from __future__ import annotations

from typing import TypeAlias

import attrs

from sipcore import Request, Response

from ._dialog import Dialog, DialogState, Direction

__all__ = [
    "DialogConfirmed",
    "DialogConfirmedNoAck",
    "DialogCreated",
    "DialogDestroyed",
    "DialogEarly",
    "DialogEnd",
    "DialogEvent",
    "DialogExpired",
    "DialogFailed",
    "DialogFailedRoute",
    "DialogRequestWithin",
    "DialogResponseForwarded",
    "DialogResponseWithin",
    "DialogSpiraled",
    "DialogStart",
    "DialogStateChanged",
    "DialogTerminated",
    "DialogTerminatedConfirmed",
    "KeepaliveFailed",
]


@attrs.frozen
class DialogCreated:
    """DLGCB_CREATED: an initial INVITE made a dialog."""

    dialog: Dialog
    message: Request | None = None


@attrs.frozen
class DialogSpiraled:
    """DLGCB_SPIRALED: the initial INVITE came through again (a spiral)."""

    dialog: Dialog
    message: Request | None = None


@attrs.frozen
class DialogEarly:
    """DLGCB_EARLY: a provisional response (101-199) was forwarded."""

    dialog: Dialog
    message: Response | None = None


@attrs.frozen
class DialogConfirmedNoAck:
    """DLGCB_CONFIRMED_NA: a 2xx was forwarded; its ACK has not been seen."""

    dialog: Dialog
    message: Response | None = None


@attrs.frozen
class DialogConfirmed:
    """DLGCB_CONFIRMED: the ACK for the 2xx was seen."""

    dialog: Dialog
    message: Request | None = None


@attrs.frozen
class DialogFailed:
    """DLGCB_FAILED: the initial INVITE was answered 300-699 (or cancelled)."""

    dialog: Dialog
    message: Response | None = None


@attrs.frozen
class DialogRequestWithin:
    """DLGCB_REQ_WITHIN: a sequential request (not the confirming ACK)."""

    dialog: Dialog
    message: Request | None
    direction: Direction


@attrs.frozen
class DialogResponseForwarded:
    """DLGCB_RESPONSE_FWDED: a response to the initial INVITE was forwarded."""

    dialog: Dialog
    message: Response | None = None


@attrs.frozen
class DialogResponseWithin:
    """DLGCB_RESPONSE_WITHIN: a response to a sequential request."""

    dialog: Dialog
    message: Response | None
    direction: Direction


@attrs.frozen
class DialogTerminated:
    """DLGCB_TERMINATED: a BYE ended the dialog (or the tracker ended it)."""

    dialog: Dialog
    message: Request | None
    direction: Direction | None = None


@attrs.frozen
class DialogTerminatedConfirmed:
    """DLGCB_TERMINATED_CONFIRMED: the BYE was answered."""

    dialog: Dialog
    message: Response | None = None


@attrs.frozen
class DialogExpired:
    """DLGCB_EXPIRED: the dialog's timer ran out with no BYE."""

    dialog: Dialog


@attrs.frozen
class DialogDestroyed:
    """DLGCB_DESTROY: the dialog left the tracker's memory."""

    dialog: Dialog


@attrs.frozen
class DialogStart:
    """``event_route[dialog:start]``: a 200 OK for the INVITE was processed."""

    dialog: Dialog


@attrs.frozen
class DialogEnd:
    """``event_route[dialog:end]``: the BYE was processed or the dialog timed out."""

    dialog: Dialog


@attrs.frozen
class DialogFailedRoute:
    """``event_route[dialog:failed]``: the INVITE got a reply of 300 or more."""

    dialog: Dialog


@attrs.frozen
class DialogStateChanged:
    """Any state change, old to new (what Kamailio logs; for observers)."""

    dialog: Dialog
    old: DialogState
    new: DialogState


@attrs.frozen
class KeepaliveFailed:
    """An in-dialog keepalive OPTIONS got 408 or 481 (``ka_failed_limit``)."""

    dialog: Dialog
    side: str
    status_code: int


DialogEvent: TypeAlias = (
    DialogCreated
    | DialogSpiraled
    | DialogEarly
    | DialogConfirmedNoAck
    | DialogConfirmed
    | DialogFailed
    | DialogRequestWithin
    | DialogResponseForwarded
    | DialogResponseWithin
    | DialogTerminated
    | DialogTerminatedConfirmed
    | DialogExpired
    | DialogDestroyed
    | DialogStart
    | DialogEnd
    | DialogFailedRoute
    | DialogStateChanged
    | KeepaliveFailed
)
