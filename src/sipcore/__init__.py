"""sipcore: SIP messages, URIs and (to come) transactions and a proxy core.

Sans-I/O: nothing here opens a socket, starts a thread or reads a clock.
"""

from ._build import REASON_PHRASES, make_request, make_response, new_branch, new_tag
from ._errors import LocalProtocolError, ParseError, RemoteProtocolError, SipError
from ._headers import Address, Credentials, CSeq, Defect, Via, canonical_name
from ._message import Limits, Message, Request, Response, parse_message
from ._stream import NEED_DATA, KeepAlive, NeedData, StreamParser
from ._uri import URI, AbsoluteURI, Params, SipURI, TelURI, parse_uri

__all__ = [
    "NEED_DATA",
    "REASON_PHRASES",
    "URI",
    "AbsoluteURI",
    "Address",
    "CSeq",
    "Credentials",
    "Defect",
    "KeepAlive",
    "Limits",
    "LocalProtocolError",
    "Message",
    "NeedData",
    "Params",
    "ParseError",
    "RemoteProtocolError",
    "Request",
    "Response",
    "SipError",
    "SipURI",
    "StreamParser",
    "TelURI",
    "Via",
    "canonical_name",
    "make_request",
    "make_response",
    "new_branch",
    "new_tag",
    "parse_message",
    "parse_uri",
]
