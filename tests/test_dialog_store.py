"""Dialog persistence: dialogs as rows of Kamailio's dialog table."""

from __future__ import annotations

import json

from sipcore import Endpoint
from sipcore_dialog import (
    Dialog,
    DialogContext,
    DialogState,
    ProfileLink,
    Property,
    dialog_from_record,
    record_from_dialog,
)

WALL = 1_700_000_000.0  # unix time at tracker time 0 in these tests


def a_dialog() -> Dialog:
    """A confirmed dialog with every stored field set to something non-default."""
    return Dialog(
        h_entry=1390,
        h_id=162,
        call_id="a84b4c76e66710@pc33.atlanta.com",
        from_uri="sip:alice@atlanta.com",
        from_tag="1928301774",
        to_uri="sip:bob@biloxi.com",
        req_uri="sip:bob@biloxi.com",
        caller_cseq="314159",
        caller_contact="sip:alice@pc33.atlanta.com",
        init_time=10.0,
        state=DialogState.CONFIRMED,
        to_tag="a6c85cf",
        callee_cseq="7",
        callee_contact="sip:bob@192.0.2.4",
        caller_route_set=("<sip:p1.atlanta.com;lr>", "<sip:127.0.0.1:5060;lr;did=e65.2a>"),
        callee_route_set=("<sip:p3.biloxi.com;lr;x=a,b>",),
        caller_socket=Endpoint("127.0.0.1", 5060),
        callee_socket=Endpoint("::1", 5061, "TCP"),
        start_time=12.0,
        timeout=3600,
        deadline=3612.0,
        sflags=0b1001,
        iflags=Property.KA_SRC | Property.TIMEOUT_NORESET,
        vars={"billing": "gold", "unicode": "ünï"},
        ctx=DialogContext(timeout_route="TIMEOUT", timeout_bye=True),
        profiles=[
            ProfileLink("caller", "alice"),
            ProfileLink("calls", None),
            ProfileLink("caller", "alice"),
        ],
        acked=True,
    )


STORED_FIELDS = (
    *("h_entry", "h_id", "call_id", "from_uri", "from_tag", "to_uri", "req_uri", "caller_cseq"),
    *("caller_contact", "state", "to_tag", "callee_cseq", "callee_contact", "caller_route_set"),
    *("callee_route_set", "caller_socket", "callee_socket", "start_time", "timeout", "deadline"),
    *("sflags", "iflags", "vars", "profiles", "acked"),
)


def test_a_dialog_survives_the_round_trip_to_a_record_and_back() -> None:
    dialog = a_dialog()
    back = dialog_from_record(record_from_dialog(dialog, WALL), WALL)
    for name in STORED_FIELDS:
        assert getattr(back, name) == getattr(dialog, name), name
    assert back.ctx.timeout_route == "TIMEOUT" and back.ctx.timeout_bye
    # The tracker's clock may restart: the same unix times read on another offset.
    later = dialog_from_record(record_from_dialog(dialog, WALL), WALL + 1000)
    assert later.deadline == dialog.deadline - 1000  # type: ignore[operator]
    assert later.start_time == dialog.start_time - 1000  # type: ignore[operator]


def test_the_record_holds_the_values_kamailio_stores() -> None:
    record = record_from_dialog(a_dialog(), WALL)
    assert (record.state, record.start_time, record.timeout) == (4, WALL + 12, WALL + 3612)
    assert record.caller_route_set == "<sip:p1.atlanta.com;lr>,<sip:127.0.0.1:5060;lr;did=e65.2a>"
    assert (record.caller_sock, record.callee_sock) == ("udp:127.0.0.1:5060", "tcp:[::1]:5061")
    # DLG_IFLAG_TIMEOUTBYE 1 | KA_SRC 2 | TIMER_NORESET 8
    assert (record.sflags, record.iflags) == (9, 11)
    assert record.toroute_name == "TIMEOUT"
    assert json.loads(record.xdata) == {
        "profiles": [
            {"name": "caller", "value": "alice"},
            {"name": "calls"},
            {"name": "caller", "value": "alice"},
        ],
        "sipcore": {"lifetime": 3600},
    }
    assert record.vars == (("billing", "gold"), ("unicode", "ünï"))
