"""Realistic SIP messages used by the benchmark suite.

One call, as seen by the proxy ``proxy.biloxi.example.com``: Alice's softphone
calls Bob through ``proxy.atlanta.example.com`` and ``proxy.biloxi.example.com``
(both record-route), Bob answers, Alice acknowledges, Bob hangs up.  Bob's
phone also registers with a Digest ``Authorization`` header.

Every message uses CRLF line ends and an exact ``Content-Length``.  Addresses
come from the documentation ranges (RFC 5737) and ``example.com``.

Each sample also carries the values a proxy reads from it, so the benchmark can
check that both libraries really read every field before it times anything.
"""

from __future__ import annotations

from dataclasses import dataclass

# Alice's offer: a typical softphone audio offer (PCMU, PCMA, G.722, DTMF).
SDP_OFFER = (
    b"v=0\r\n"
    b"o=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.101\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 9 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

# Bob's answer: PCMU plus DTMF.
SDP_ANSWER = (
    b"v=0\r\n"
    b"o=bob 2808844564 2808844564 IN IP4 198.51.100.23\r\n"
    b"s=-\r\n"
    b"c=IN IP4 198.51.100.23\r\n"
    b"t=0 0\r\n"
    b"m=audio 3456 RTP/AVP 0 101\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)

CALL_ID = "a84b4c76e66710f3c9d2@192.0.2.101"
ALICE_TAG = "9fxced76sl"
BOB_TAG = "314159-8321234356"

# INVITE from Alice's softphone, forwarded by proxy.atlanta (top Via,
# Record-Route, Max-Forwards decremented to 69).
INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP proxy.atlanta.example.com:5060;branch=z9hG4bK2d4790.a3f1c8e2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.101:5060;received=192.0.2.101;rport=5060"
    b";branch=z9hG4bK-524287-1---77ba7cd9eb0a1b4f\r\n"
    b"Max-Forwards: 69\r\n"
    b"Record-Route: <sip:proxy.atlanta.example.com;lr>\r\n"
    b'From: "Alice Liddell" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n'
    b'To: "Bob Sawyer" <sip:bob@biloxi.example.com>\r\n'
    b"Call-ID: a84b4c76e66710f3c9d2@192.0.2.101\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@192.0.2.101:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REFER, NOTIFY, SUBSCRIBE, INFO, MESSAGE,"
    b" PRACK, UPDATE\r\n"
    b"Supported: replaces, timer, 100rel, norefersub\r\n"
    b"User-Agent: ExamplePhone/5.2.5 (Linux; belle-sip/5.2.0)\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 264\r\n"
    b"\r\n" + SDP_OFFER
)

# 180 from Bob's phone, on its way back through proxy.biloxi (three Vias).
RINGING_180 = (
    b"SIP/2.0 180 Ringing\r\n"
    b"Via: SIP/2.0/UDP proxy.biloxi.example.com:5060;branch=z9hG4bK83c1a.7e52d9f04b6a.0\r\n"
    b"Via: SIP/2.0/UDP proxy.atlanta.example.com:5060;branch=z9hG4bK2d4790.a3f1c8e2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.101:5060;received=192.0.2.101;rport=5060"
    b";branch=z9hG4bK-524287-1---77ba7cd9eb0a1b4f\r\n"
    b"Record-Route: <sip:proxy.biloxi.example.com;lr>\r\n"
    b"Record-Route: <sip:proxy.atlanta.example.com;lr>\r\n"
    b'From: "Alice Liddell" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n'
    b'To: "Bob Sawyer" <sip:bob@biloxi.example.com>;tag=314159-8321234356\r\n'
    b"Call-ID: a84b4c76e66710f3c9d2@192.0.2.101\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:bob@198.51.100.23:5062;transport=udp>\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# 200 OK with Bob's SDP answer.
OK_200 = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP proxy.biloxi.example.com:5060;branch=z9hG4bK83c1a.7e52d9f04b6a.0\r\n"
    b"Via: SIP/2.0/UDP proxy.atlanta.example.com:5060;branch=z9hG4bK2d4790.a3f1c8e2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.101:5060;received=192.0.2.101;rport=5060"
    b";branch=z9hG4bK-524287-1---77ba7cd9eb0a1b4f\r\n"
    b"Record-Route: <sip:proxy.biloxi.example.com;lr>\r\n"
    b"Record-Route: <sip:proxy.atlanta.example.com;lr>\r\n"
    b'From: "Alice Liddell" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n'
    b'To: "Bob Sawyer" <sip:bob@biloxi.example.com>;tag=314159-8321234356\r\n'
    b"Call-ID: a84b4c76e66710f3c9d2@192.0.2.101\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:bob@198.51.100.23:5062;transport=udp>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE\r\n"
    b"Supported: replaces, timer\r\n"
    b"Server: ExampleDesk/2.14.1\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 217\r\n"
    b"\r\n" + SDP_ANSWER
)

# ACK for the 200, sent along the route set (proxy.atlanta already removed
# its own Route entry).
ACK = (
    b"ACK sip:bob@198.51.100.23:5062;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP proxy.atlanta.example.com:5060;branch=z9hG4bK2d4790.b7c0e1d3.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.101:5060;received=192.0.2.101;rport=5060"
    b";branch=z9hG4bK-524287-1---c1f0d3a9e24b7d58\r\n"
    b"Max-Forwards: 69\r\n"
    b"Route: <sip:proxy.biloxi.example.com;lr>\r\n"
    b'From: "Alice Liddell" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n'
    b'To: "Bob Sawyer" <sip:bob@biloxi.example.com>;tag=314159-8321234356\r\n'
    b"Call-ID: a84b4c76e66710f3c9d2@192.0.2.101\r\n"
    b"CSeq: 314159 ACK\r\n"
    b"User-Agent: ExamplePhone/5.2.5 (Linux; belle-sip/5.2.0)\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# BYE from Bob's phone, routed through both record-routing proxies.
BYE = (
    b"BYE sip:alice@192.0.2.101:5060;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.23:5062;rport;branch=z9hG4bK-d8754z-5e6f2a0c9b1d7e43\r\n"
    b"Max-Forwards: 70\r\n"
    b"Route: <sip:proxy.biloxi.example.com;lr>\r\n"
    b"Route: <sip:proxy.atlanta.example.com;lr>\r\n"
    b'From: "Bob Sawyer" <sip:bob@biloxi.example.com>;tag=314159-8321234356\r\n'
    b'To: "Alice Liddell" <sip:alice@atlanta.example.com>;tag=9fxced76sl\r\n'
    b"Call-ID: a84b4c76e66710f3c9d2@192.0.2.101\r\n"
    b"CSeq: 231 BYE\r\n"
    b"User-Agent: ExampleDesk/2.14.1\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

# REGISTER from Bob's phone, answering a 401 challenge.  The response is the
# real RFC 2617 digest for password "zanzibar".
REGISTER = (
    b"REGISTER sip:biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 198.51.100.23:5062;rport;branch=z9hG4bK-d8754z-6c3e8b5a2f19d4e0\r\n"
    b"Max-Forwards: 70\r\n"
    b'From: "Bob Sawyer" <sip:bob@biloxi.example.com>;tag=a73kszlfl\r\n'
    b'To: "Bob Sawyer" <sip:bob@biloxi.example.com>\r\n'
    b"Call-ID: 1j9FpLxk3uxtm8tn@198.51.100.23\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Contact: <sip:bob@198.51.100.23:5062;transport=udp>;expires=3600\r\n"
    b'Authorization: Digest username="bob", realm="biloxi.example.com",'
    b' nonce="ea9c8e88df84f1cec4341ae6cbe5a359", uri="sip:biloxi.example.com",'
    b' response="b820162e9c102db760695217288004ce", algorithm=MD5, cnonce="0a4f113b",'
    b" qop=auth, nc=00000001\r\n"
    b"Expires: 3600\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE\r\n"
    b"User-Agent: ExampleDesk/2.14.1\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


@dataclass(frozen=True, slots=True)
class Credentials:
    """Digest credentials expected in an ``Authorization`` header."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str
    cnonce: str
    qop: str
    nc: str

    def values(self) -> tuple[str, ...]:
        """Scheme and parameters in the order the benchmark readers return them."""
        return (
            "Digest",
            self.username,
            self.realm,
            self.nonce,
            self.uri,
            self.response,
            self.algorithm,
            self.cnonce,
            self.qop,
            self.nc,
        )


@dataclass(frozen=True, slots=True)
class Sample:
    """A message and the values a proxy reads from it."""

    name: str
    data: bytes
    is_request: bool
    branch: str  # top Via
    from_tag: str
    to_tag: str | None
    call_id: str
    cseq_number: int
    cseq_method: str
    contact_host: str | None  # first Contact, None when there is none
    max_forwards: int | None  # requests only
    authorization: Credentials | None = None

    def fields(self) -> tuple[str, str, str | None, str, int, str, str | None, int | None]:
        """The proxy fields in the order the benchmark readers return them."""
        return (
            self.branch,
            self.from_tag,
            self.to_tag,
            self.call_id,
            self.cseq_number,
            self.cseq_method,
            self.contact_host,
            self.max_forwards,
        )


SAMPLES: tuple[Sample, ...] = (
    Sample(
        name="INVITE (SDP)",
        data=INVITE,
        is_request=True,
        branch="z9hG4bK2d4790.a3f1c8e2.0",
        from_tag=ALICE_TAG,
        to_tag=None,
        call_id=CALL_ID,
        cseq_number=314159,
        cseq_method="INVITE",
        contact_host="192.0.2.101",
        max_forwards=69,
    ),
    Sample(
        name="180 Ringing",
        data=RINGING_180,
        is_request=False,
        branch="z9hG4bK83c1a.7e52d9f04b6a.0",
        from_tag=ALICE_TAG,
        to_tag=BOB_TAG,
        call_id=CALL_ID,
        cseq_number=314159,
        cseq_method="INVITE",
        contact_host="198.51.100.23",
        max_forwards=None,
    ),
    Sample(
        name="200 OK (SDP)",
        data=OK_200,
        is_request=False,
        branch="z9hG4bK83c1a.7e52d9f04b6a.0",
        from_tag=ALICE_TAG,
        to_tag=BOB_TAG,
        call_id=CALL_ID,
        cseq_number=314159,
        cseq_method="INVITE",
        contact_host="198.51.100.23",
        max_forwards=None,
    ),
    Sample(
        name="ACK",
        data=ACK,
        is_request=True,
        branch="z9hG4bK2d4790.b7c0e1d3.0",
        from_tag=ALICE_TAG,
        to_tag=BOB_TAG,
        call_id=CALL_ID,
        cseq_number=314159,
        cseq_method="ACK",
        contact_host=None,
        max_forwards=69,
    ),
    Sample(
        name="BYE (Route)",
        data=BYE,
        is_request=True,
        branch="z9hG4bK-d8754z-5e6f2a0c9b1d7e43",
        from_tag=BOB_TAG,
        to_tag=ALICE_TAG,
        call_id=CALL_ID,
        cseq_number=231,
        cseq_method="BYE",
        contact_host=None,
        max_forwards=70,
    ),
    Sample(
        name="REGISTER (Digest)",
        data=REGISTER,
        is_request=True,
        branch="z9hG4bK-d8754z-6c3e8b5a2f19d4e0",
        from_tag="a73kszlfl",
        to_tag=None,
        call_id="1j9FpLxk3uxtm8tn@198.51.100.23",
        cseq_number=2,
        cseq_method="REGISTER",
        contact_host="198.51.100.23",
        max_forwards=70,
        authorization=Credentials(
            username="bob",
            realm="biloxi.example.com",
            nonce="ea9c8e88df84f1cec4341ae6cbe5a359",
            uri="sip:biloxi.example.com",
            response="b820162e9c102db760695217288004ce",
            algorithm="MD5",
            cnonce="0a4f113b",
            qop="auth",
            nc="00000001",
        ),
    ),
)


def check_framing(data: bytes) -> None:
    """Raise ValueError unless ``data`` is CRLF-only and its Content-Length is exact."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise ValueError("no blank line after the headers")
    if b"\n" in head.replace(b"\r\n", b"") or b"\r" in head.replace(b"\r\n", b""):
        raise ValueError("bare CR or LF in the header section")
    lengths = [
        line.split(b":", 1)[1].strip()
        for line in head.split(b"\r\n")[1:]
        if line.split(b":", 1)[0].strip().lower() in (b"content-length", b"l")
    ]
    if len(lengths) != 1:
        raise ValueError(f"expected one Content-Length header, found {len(lengths)}")
    if int(lengths[0]) != len(body):
        raise ValueError(f"Content-Length {int(lengths[0])} but the body has {len(body)} bytes")
