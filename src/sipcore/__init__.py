"""sipcore: SIP messages, URIs, RFC 3261 transactions and a stateful proxy core.

Sans-I/O: nothing here opens a socket, starts a thread or reads a clock.
"""

from . import events
from ._build import (
    REASON_PHRASES,
    make_ack,
    make_cancel,
    make_request,
    make_response,
    new_branch,
    new_tag,
)
from ._errors import LocalProtocolError, ParseError, RemoteProtocolError, SipError
from ._hashing import core_hash
from ._headers import Address, Credentials, CSeq, Defect, Via, canonical_name
from ._message import Limits, Message, Request, Response, parse_message
from ._proxy import (
    Branch,
    BranchState,
    Proxy,
    ProxyConfig,
    ProxyHooks,
    RequestContext,
    Service,
    uri_destination,
)
from ._stream import NEED_DATA, KeepAlive, NeedData, StreamParser
from ._timers import SecondTimers, TimerHandle, TimerQueue
from ._transaction import (
    ClientTransaction,
    ServerTransaction,
    State,
    Timer,
    TimerSettings,
    Transaction,
    TransactionKind,
    TransactionLayer,
)
from ._transport import Endpoint, Send, is_ip_address, response_destination, stamp_received
from ._uri import URI, AbsoluteURI, Params, SipURI, TelURI, parse_uri

__all__ = [
    "NEED_DATA",
    "REASON_PHRASES",
    "URI",
    "AbsoluteURI",
    "Address",
    "Branch",
    "BranchState",
    "CSeq",
    "ClientTransaction",
    "Credentials",
    "Defect",
    "Endpoint",
    "KeepAlive",
    "Limits",
    "LocalProtocolError",
    "Message",
    "NeedData",
    "Params",
    "ParseError",
    "Proxy",
    "ProxyConfig",
    "ProxyHooks",
    "RemoteProtocolError",
    "Request",
    "RequestContext",
    "Response",
    "SecondTimers",
    "Send",
    "ServerTransaction",
    "Service",
    "SipError",
    "SipURI",
    "State",
    "StreamParser",
    "TelURI",
    "Timer",
    "TimerHandle",
    "TimerQueue",
    "TimerSettings",
    "Transaction",
    "TransactionKind",
    "TransactionLayer",
    "Via",
    "canonical_name",
    "core_hash",
    "events",
    "is_ip_address",
    "make_ack",
    "make_cancel",
    "make_request",
    "make_response",
    "new_branch",
    "new_tag",
    "parse_message",
    "parse_uri",
    "response_destination",
    "stamp_received",
    "uri_destination",
]
