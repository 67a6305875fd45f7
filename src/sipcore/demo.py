"""``sipcore-demo``: parse, inspect, edit and re-serialize a tortuous INVITE.

Until the proxy application exists this is the quickstart's demo: it shows
what the message layer reads out of RFC 4475's "A Short Tortuous INVITE"
(section 3.1.1.1: folding, odd LWS, compact and oddly cased names, leading
zeros, unknown headers), what a proxy's edits change (only their lines),
and the response a UAS builds.
"""

from __future__ import annotations

import sys

from . import ParseError, Request, make_response, new_branch, parse_message

# RFC 4475 section 3.1.1.1 (wsinv), the message as the RFC's archive has it.
TORTUOUS_INVITE = (
    b"INVITE sip:vivekg@chair-dnrc.example.com;unknownparam SIP/2.0\r\n"
    b"TO :\r\n"
    b" sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\n"
    b'from   : "J Rosenberg \\\\\\""       <sip:jdrosen@example.com>\r\n'
    b"  ;\r\n"
    b"  tag = 98asjd8\r\n"
    b"MaX-fOrWaRdS: 0068\r\n"
    b"Call-ID: wsinv.ndaksdj@192.0.2.1\r\n"
    b"Content-Length   : 150\r\n"
    b"cseq: 0009\r\n"
    b"  INVITE\r\n"
    b"Via  : SIP  /   2.0\r\n"
    b" /UDP\r\n"
    b"    192.0.2.2;branch=390skdjuw\r\n"
    b"s :\r\n"
    b"NewFangledHeader:   newfangled value\r\n"
    b" continued newfangled value\r\n"
    b"UnknownHeaderWithUnusualValue: ;;,,;;,;\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Route:\r\n"
    b" <sip:services.example.com;lr;unknownwith=value;unknown-no-value>\r\n"
    b"v:  SIP  / 2.0  / TCP     spindle.example.com   ;\r\n"
    b"  branch  =   z9hG4bK9ikj8  ,\r\n"
    b" SIP  /    2.0   / UDP  192.168.255.111   ; branch=\r\n"
    b" z9hG4bK30239\r\n"
    b'm:"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam =\r\n'
    b"      newvalue ;\r\n"
    b"  secondparam ; q = 0.33\r\n"
    b"\r\n"
    b"v=0\r\n"
    b"o=mhandley 29739 7272939 IN IP4 192.0.2.3\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.4\r\n"
    b"t=0 0\r\n"
    b"m=audio 49217 RTP/AVP 0 12\r\n"
    b"m=video 3227 RTP/AVP 31\r\n"
    b"a=rtpmap:31 LPC\r\n"
)


def run(out: list[str]) -> int:
    say = out.append
    msg = parse_message(TORTUOUS_INVITE)
    if not isinstance(msg, Request):
        raise ParseError("the demo message is not a request")
    say(f"parsed {len(TORTUOUS_INVITE)} octets: {msg!r}")
    uri = msg.uri
    say(f"  Request-URI      {uri}  (host {getattr(uri, 'host', '?')})")
    say(f"  Call-ID          {msg.call_id}")
    say(f"  CSeq             {msg.cseq.number} {msg.cseq.method}  (written '0009' + folded line)")
    say(f"  From             {msg.from_.display_name!r} <{msg.from_.uri}> tag={msg.from_.tag}")
    say(f"  To               <{msg.to.uri}> tag={msg.to.tag}")
    say(f"  Max-Forwards     {msg.max_forwards}  (written '0068')")
    for i, via in enumerate(msg.via):
        say(f"  Via[{i}]           {via.transport} {via.sent_by} branch={via.branch}")
    contact = msg.contact[0]
    say(f"  Contact          {contact.display_name!r} <{contact.uri}> q={contact.q}")
    say(f"  Route            {[str(r.uri) for r in msg.route]}")
    say(f"  NewFangledHeader {msg.get('newfangledheader')!r}  (folding joined)")
    say(f"  Subject (s:)     {msg.get('subject')!r}")
    say(f"  body             {len(msg.body)} octets of {msg.content_type}")
    say(f"  defects          {[d.reason for d in msg.validate()]}")

    # What a proxy does: one Via on top, Max-Forwards down by one, a Record-Route.
    original = bytes(msg)
    if original != TORTUOUS_INVITE:
        raise ParseError("an unmodified message did not serialize to its input")
    msg.add_header("Via", f"SIP/2.0/UDP 192.0.2.10;branch={new_branch()}", first=True)
    msg.max_forwards = (msg.max_forwards or 70) - 1
    msg.add_header("Record-Route", "<sip:192.0.2.10;lr>", first=True)
    edited = bytes(msg)
    old_lines = original.split(b"\r\n")
    new_lines = edited.split(b"\r\n")
    kept = sum(1 for line in old_lines if line in new_lines)
    say("")
    say(f"after the proxy's edits: {len(edited)} octets; {kept} of {len(old_lines)} input lines")
    say("kept byte for byte (only Max-Forwards changed; Via and Record-Route were added)")
    say(f"  top Via now      {msg.via[0]}")
    say(f"  Max-Forwards     {msg.max_forwards}")

    response = make_response(msg, 180, to_tag="demo-tag")
    say("")
    say(f"a UAS's answer: {response!r}, To tag {response.to.tag}, {len(response.via)} Vias copied")
    say(bytes(response).decode().rstrip())
    return 0


def main() -> int:
    lines: list[str] = []
    try:
        status = run(lines)
    except ParseError as exc:
        print(f"demo failed: {exc!r}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
