"""Reference check: Kamailio 5.6's rtpengine module and sipcore_media build the same ng commands.

One kamailio (``rtpengine``, ``sl``, ``textops``, ``pv``; the cfg is below)
on 127.0.0.1 has one rtpengine node: :class:`FakeRtpengine`, a UDP socket
in this process that records every ng datagram Kamailio sends and answers
it as rtpengine would (``pong`` to a ping, ``ok`` with the received SDP to
an offer or answer, ``ok`` to the rest), so that Kamailio carries on.

Each case is one SIP message built with sipcore (an INVITE, re-INVITE,
PRACK, INFO, BYE, or a 200/486 to an INVITE; SDP, multipart or trickle-ICE
bodies) and sent from 127.0.0.1. Its ``X-Fn`` header names the module
function to call and ``X-Flags`` the flag string, hex-encoded so that
leading, trailing and repeated spaces arrive as written; without
``X-Flags`` the function is called with no argument. Kamailio calls
``<function>("$var(flags)")`` and says how that went: a request is
answered ``200`` (the function returned true) or ``500``; a reply (its top
Via is Kamailio's) gets an ``X-Ng-Result`` header and is forwarded to the
second Via, this test's socket.

Ours: the same message goes to the :class:`~sipcore_media.Rtpengine`
function of the same name (``rtp.rtpengine_offer(msg, now, flags)``...)
with the values Kamailio takes from outside the message: the source
address (``received-from``), the ``extra_id_pv`` value the cfg sets from
``X-Extra-Id``, and the branch Kamailio's core gives the next branch
(``via-branch=next``, computed here by Kamailio's formula). The datagram
it would send is decoded, and :func:`~sipcore_media.build_command` over
:func:`~sipcore_media.sip_context` must give the same dictionary.

Compared: the whole dictionary Kamailio sent, every key and value, types
and list order included, against ours; or, when Kamailio refused (no
datagram, the function failed), that ours raises
:class:`~sipcore_media.FlagError`, :class:`~sipcore_media.MessageError` or
:class:`~sipcore_media.CommandError`. Key order is not compared: ours
bencodes with sorted keys, Kamailio in the order it adds them, and
rtpengine reads either.

A flag token ``key=value`` naming a key the module writes itself (``sdp``,
``command``, ``received-from``...) makes Kamailio send that key twice in
one bencoded dictionary; a repeated ``key=value`` token does the same.
sipcore_media sends each key once, by design: the last token's value
(where rtpengine's in-order reading ends), but the module's own value for
the keys the module writes. Such cases name the repeated keys
(``repeated=``) and are compared under that rule; any other repeated key
fails the test.

A bare ``direction`` aborts Kamailio 5.6.3 (an assertion in its bencode
code); that one runs last, on a kamailio of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from sipcore import (
    Endpoint,
    Request,
    Response,
    core_hash,
    make_request,
    make_response,
    parse_message,
)
from sipcore_media import (
    CommandError,
    FlagError,
    MediaEvent,
    MessageError,
    NgDecodeError,
    NgDict,
    NgValue,
    Rtpengine,
    RtpengineConfig,
    Transmit,
    build_command,
    decode_document,
    decode_message,
    encode_message,
    manage_command,
    sip_context,
    split_cookie,
)

from .kamailio import (
    LOOPBACK,
    MODULES_DIR,
    Kamailio,
    config_head,
    free_udp_port,
    missing_modules,
    start_kamailio,
)

pytestmark = pytest.mark.interop

MODULES = ("jsonrpcs", "ctl", "kex", "sl", "pv", "textops", "rtpengine")
INSTALL_HINT = "run scripts/install-peers.sh"
#: Where the SIP messages come from (so ``received-from`` names it too).
CLIENT_HOST: Final = LOOPBACK
#: The hop before the client, in the second Via of requests.
UPSTREAM_VIA: Final = "SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bK-upstream-1"
RECEIVE_TIMEOUT = 2.0
# Datagrams skipped (late or foreign) while waiting for one SIP answer.
MAX_SKIPPED = 10
# Datagrams the fake node keeps; far more than one module run sends.
MAX_RECORDED = 1000

#: Kamailio's function → the ng command sipcore_media builds (None: the
#: command rtpengine_manage picks, sipcore_media.manage_command).
FUNCTIONS: Final[dict[str, str | None]] = {
    "rtpengine_offer": "offer",
    "rtpengine_answer": "answer",
    "rtpengine_info": "offer",
    "rtpengine_delete": "delete",
    "rtpengine_query": "query",
    "rtpengine_manage": None,
    "start_recording": "start recording",
    "stop_recording": "stop recording",
    "block_dtmf": "block DTMF",
    "unblock_dtmf": "unblock DTMF",
    "block_media": "block media",
    "unblock_media": "unblock media",
    "silence_media": "silence media",
    "unsilence_media": "unsilence media",
    "start_forwarding": "start forwarding",
    "stop_forwarding": "stop forwarding",
    "play_media": "play media",
    "stop_media": "stop media",
    "play_dtmf": "play DTMF",
}

CONFIG_TEMPLATE = (
    config_head(
        "sipcore_media's flag reference: X-Fn and X-Flags to a fake rtpengine",
        ("kex", "sl", "pv", "textops", "rtpengine"),
        children=1,
    )
    + """
modparam("rtpengine", "rtpengine_sock", "udp:{host}:{node_port}")
modparam("rtpengine", "extra_id_pv", "$avp(extra_id)")
modparam("rtpengine", "rtpengine_tout_ms", 500)
modparam("rtpengine", "rtpengine_retr", 2)

route[NG] {{
    $var(ok) = 0;
    $avp(extra_id) = $hdr(X-Extra-Id);
    if ($hdr(X-Flags) == $null) {{
        switch ($hdr(X-Fn)) {{
{bare_cases}
        }}
    }} else {{
        # "x" alone is the empty string (substr refuses an empty rest).
        $var(flags) = "";
        if ($hdr(X-Flags) != "x") {{
            $var(flags) = $(hdr(X-Flags){{s.substr,1,0}}{{s.decode.hexa}});
        }}
        switch ($hdr(X-Fn)) {{
{flag_cases}
        }}
    }}
}}

request_route {{
    route(NG);
    if ($var(ok) == 1) {{
        sl_send_reply("200", "OK");
    }} else {{
        sl_send_reply("500", "Function Failed");
    }}
}}

reply_route {{
    route(NG);
    if ($var(ok) == 1) {{
        append_hf("X-Ng-Result: ok\\r\\n");
    }} else {{
        append_hf("X-Ng-Result: failed\\r\\n");
    }}
}}
"""
)


#: Functions Kamailio 5.6 exports only with a flag string.
FLAGS_REQUIRED: Final = frozenset({"play_media", "play_dtmf"})


def _cases(argument: str) -> str:
    return "\n".join(
        f'            case "{name}":\n'
        f"                if ({name}({argument})) {{ $var(ok) = 1; }}\n"
        f"                break;"
        for name in FUNCTIONS
        if argument or name not in FLAGS_REQUIRED
    )


# -- the fake rtpengine ------------------------------------------------------------------


@dataclass(frozen=True)
class Captured:
    """One ng request as Kamailio sent it: cookie, raw dictionary, decoded."""

    cookie: str
    raw: bytes
    document: NgDict


def answer_for(document: NgDict) -> NgDict:
    """What rtpengine would answer, enough for Kamailio to carry on."""
    command = document.get("command")
    if command == "ping":
        return {"result": "pong"}
    if command in ("offer", "answer"):
        return {"result": "ok", "sdp": document.get("sdp", "")}
    if command == "play media":
        return {"result": "ok", "duration": 1000}
    return {"result": "ok"}


class FakeRtpengine:
    """A UDP socket on 127.0.0.1 answering ng requests from a thread.

    Every request is recorded before it is answered, so that whatever
    Kamailio does after the reply (answer the SIP message) happens after
    the record exists. Pings are counted apart.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((LOOPBACK, 0))
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._captured: list[Captured] = []
        self.pings = 0
        self.undecodable: list[bytes] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-rtpengine", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                data, source = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                message = decode_message(data)
                _, raw = split_cookie(data)
            except NgDecodeError:
                with self._lock:
                    self.undecodable.append(data)
                continue
            with self._lock:
                if message.document.get("command") == "ping":
                    self.pings += 1
                elif len(self._captured) < MAX_RECORDED:
                    self._captured.append(Captured(message.cookie, raw, message.document))
            with contextlib.suppress(OSError):
                self._sock.sendto(
                    encode_message(message.cookie, answer_for(message.document)), source
                )

    def take(self) -> list[Captured]:
        """The requests (pings aside) recorded since the last call."""
        with self._lock:
            taken, self._captured = self._captured, []
            return taken

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=2.0)
        self._sock.close()


# -- the top level of a bencoded dictionary, repeats included ----------------------------


def _bencode_end(data: bytes, i: int) -> int:
    """Where the bencoded value starting at ``i`` ends (ValueError past the
    end of ``data``); a dictionary inside must not repeat a key."""
    first = data[i : i + 1]
    if first == b"i":
        return data.index(b"e", i) + 1
    if first in (b"l", b"d"):
        i += 1
        items: list[bytes] = []
        while data[i : i + 1] != b"e":
            end = _bencode_end(data, i)
            items.append(data[i:end])
            i = end
        keys = items[0::2] if first == b"d" else []
        assert len(set(keys)) == len(keys), f"a nested dictionary repeats a key: {keys}"
        return i + 1
    colon = data.index(b":", i)
    return colon + 1 + int(data[i:colon])


def top_level_pairs(raw: bytes) -> list[tuple[str, NgValue]]:
    """The top-level (key, value) pairs of a bencoded dictionary, in order,
    a key sent twice included (a Python dict would keep only one)."""
    assert raw[:1] == b"d", raw[:40]
    pairs: list[tuple[str, NgValue]] = []
    i = 1
    while raw[i : i + 1] != b"e":
        key_end = _bencode_end(raw, i)
        value_end = _bencode_end(raw, key_end)
        key = raw[raw.index(b":", i) + 1 : key_end].decode("utf-8")
        # Decode the value alone, wrapped in a dictionary of its own.
        wrapped = b"d1:k" + raw[key_end:value_end] + b"e"
        pairs.append((key, decode_document(wrapped)["k"]))
        i = value_end
    assert i == len(raw) - 1, "trailing bytes after the dictionary"
    return pairs


# -- kamailio ------------------------------------------------------------------------------


@dataclass
class Rig:
    kamailio: Kamailio
    node: FakeRtpengine


def require_modules() -> None:
    missing = missing_modules(MODULES_DIR, MODULES)
    if missing:
        pytest.skip(f"kamailio modules missing from {MODULES_DIR}: {missing}: {INSTALL_HINT}")


@contextlib.contextmanager
def running_rig(kamailio_binary: str, rundir: Path) -> Iterator[Rig]:
    """A fake rtpengine and a kamailio using it, both stopped on the way out."""
    node = FakeRtpengine()

    def render(port: int, rpc_socket: Path, ctl_socket: Path) -> str:
        return CONFIG_TEMPLATE.format(
            host=LOOPBACK,
            port=port,
            modules=f"{MODULES_DIR}/",
            rpc_socket=rpc_socket,
            ctl_socket=ctl_socket,
            node_port=node.port,
            bare_cases=_cases(""),
            flag_cases=_cases('"$var(flags)"'),
        )

    try:
        kamailio = start_kamailio(
            kamailio_binary,
            rundir,
            port=free_udp_port({node.port}),
            config=render,
            ready_method="core.version",
        )
        try:
            # The module pings its node as its processes start; without a
            # pong it would not use the node.
            deadline = time.monotonic() + RECEIVE_TIMEOUT
            while node.pings == 0 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert node.pings > 0, "kamailio never pinged the fake rtpengine"
            node.take()
            yield Rig(kamailio, node)
        finally:
            kamailio.stop()
    finally:
        node.stop()
    assert not node.undecodable, node.undecodable[:3]


@pytest.fixture(scope="module")
def rig(kamailio_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    require_modules()
    with running_rig(kamailio_binary, tmp_path_factory.mktemp("kamailio-ngflags")) as started:
        yield started


# -- the messages --------------------------------------------------------------------------

OFFER_SDP = (
    b"v=0\r\no=- 1545997027 1 IN IP4 127.0.0.5\r\ns=-\r\nc=IN IP4 127.0.0.5\r\nt=0 0\r\n"
    b"m=audio 30000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)
ANSWER_SDP = (
    b"v=0\r\no=- 2890844527 1 IN IP4 127.0.0.6\r\ns=-\r\nc=IN IP4 127.0.0.6\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)
# A trickle-ICE fragment (RFC 8840), as an INFO carries it.
SDP_FRAGMENT = (
    b"a=ice-ufrag:8hhY\r\na=ice-pwd:asd88fgpdd777uzjYhagZg\r\nm=audio 9 RTP/AVP 0\r\n"
    b"a=mid:0\r\na=candidate:1 1 UDP 2130706431 127.0.0.5 30000 typ host\r\n"
)
BOUNDARY = "boundary-ngflags-42"
MULTIPART = (
    f"--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nnot the SDP\r\n"
    f"--{BOUNDARY}\r\nContent-Type: application/sdp\r\n\r\n{OFFER_SDP.decode()}\r\n"
    f"--{BOUNDARY}--\r\n"
).encode()
FROM_TAG = "caller-tag-5"
TO_TAG = "callee-tag-6"


@dataclass(frozen=True)
class Shape:
    """A message the cases use: a request (``method``) or a reply to an
    INVITE (``status``), with or without a To tag, and its body.

    ``vias``: a request's Vias below its own (the hop before it); a reply
    has Kamailio's Via on top and this test's below. ``branch``: whether
    the request's own Via has a branch parameter.
    """

    method: str = "INVITE"
    status: int | None = None
    to_tag: bool = False
    body: bytes = b""
    content_type: str | None = None
    vias: tuple[str, ...] = (UPSTREAM_VIA,)
    branch: bool = True


SDP_TYPE = "application/sdp"
SHAPES: Final = {
    "INVITE": Shape(body=OFFER_SDP, content_type=SDP_TYPE),
    "INVITE, one Via": Shape(body=OFFER_SDP, content_type=SDP_TYPE, vias=()),
    "INVITE, Via without branch": Shape(body=OFFER_SDP, content_type=SDP_TYPE, branch=False),
    "INVITE, multipart": Shape(body=MULTIPART, content_type=f"multipart/mixed;boundary={BOUNDARY}"),
    "re-INVITE": Shape(to_tag=True, body=OFFER_SDP, content_type=SDP_TYPE),
    "PRACK with SDP": Shape("PRACK", to_tag=True, body=ANSWER_SDP, content_type=SDP_TYPE),
    "INFO": Shape("INFO", to_tag=True),
    "INFO with sdpfrag": Shape(
        "INFO",
        to_tag=True,
        body=SDP_FRAGMENT,
        content_type="application/trickle-ice-sdpfrag",
    ),
    "BYE": Shape("BYE", to_tag=True),
    "200 with SDP": Shape(status=200, to_tag=True, body=ANSWER_SDP, content_type=SDP_TYPE),
    "486": Shape(status=486, to_tag=True),
}


@dataclass(frozen=True)
class Case:
    """One call of a module function on one message.

    ``repeated``: the top-level keys Kamailio is expected to send twice.
    """

    flags: str | None
    function: str = "rtpengine_offer"
    message: str = "INVITE"
    extra_id: str | None = None
    repeated: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        flags = "<no flags>" if self.flags is None else repr(self.flags)
        return f"{self.function}:{self.message}:{flags}"


def offers(*flag_strings: str) -> list[Case]:
    return [Case(flags) for flags in flag_strings]


CASES: Final[list[Case]] = [
    # -- rtpengine_offer in an initial INVITE: the flag strings -------------------------
    Case(None),
    *offers(
        "",
        # The example.
        "ICE=remove replace-origin RTP/AVP codec-strip=PCMA direction=external direction=internal",
        "ICE=remove replace-origin RTP/AVP codec-strip=PCMA direction=external",
        "ICE=remove",
        "ICE=force",
        "ICE=force-relay",
        "replace-origin",
        "replace-session-connection",
        "replace-origin replace-session-connection replace=SDP-version replace-zero-address",
        "replace- replace",
        "replace=",
        # Transports: full names and the modifiers.
        "RTP/AVP",
        "RTP/SAVP",
        "RTP/AVPF",
        "RTP/SAVPF",
        "UDP/TLS/RTP/SAVP",
        "UDP/TLS/RTP/SAVPF",
        "RTP",
        "SRTP",
        "AVPF",
        "DTLS",
        "RTP SRTP",
        "SRTP AVPF",
        "DTLS AVPF",
        "RTP/SAVPF RTP",
        "RTP/SAVPF AVP",
        "SRTP RTP",
        "SRTP DTLS",
        "DTLS SRTP AVPF",
        "RTP/AVP=x DTLS=off",
        "transport-protocol=RTP/AVP",
        "transport-protocol=UDP/TLS/RTP/SAVPF",
        # Bare words into "flags".
        "trust-address",
        "SIP-source-address",
        "symmetric",
        "asymmetric",
        "symmetric asymmetric",
        "trust-address SIP-source-address asymmetric symmetric unidirectional strict-source "
        "media-handover no-redis-update force loop-protect single-codec ICE-reject "
        "port-latching record-call generate-mid inject-DTMF",
        "loop-protect",
        "port-latching",
        "generate-mid",
        "strict-source",
        "media-handover",
        "originate",
        "full-rtcp-attribute",
        "full-rtcp-attributes",
        "unidirectional",
        "record-call",
        "endpoint-learning-heuristic OSRTP-accept from-tags-x codec-accept-PCMU",
        # Via branches (the message has two Vias).
        "via-branch=1",
        "via-branch=2",
        "via-branch=auto",
        "via-branch=12",
        "via-branch=bogus",
        "via-branch",
        # Directions.
        "direction=priv direction=pub",
        "internal external",
        "external",
        "internal=foo",
        "direction=",
        "internal external direction=x",
        # Codecs.
        "codec-strip=PCMA",
        "codec-strip-G729 codec-strip=PCMA",
        "codec-offer=opus",
        "codec-transcode=PCMU transcode-PCMA codec-transcode-G722 transcode=G729",
        "codec-mask=all",
        "codec-mask-PCMU codec-mask=G722",
        "codec-set=opus/48000/2/32000",
        "codec-except=G722",
        "codec-mask=all codec-transcode=PCMU codec-transcode=PCMA",
        "codec-accept=PCMA codec-consume=G729",
        "codec-strip=all codec-offer=PCMU",
        "codec-strip",
        # Plain key=value entries.
        "address-family=IP6",
        "DTLS=off",
        "DTLS=passive",
        "DTLS=active",
        "media-address=127.0.0.9",
        "media-address=::1",
        "label=caller",
        "label=caller set-label=callee",
        "record-call=yes",
        "record-call=on metadata=a:b|c:d",
        "metadata=",
        "xmlrpc-callback=127.0.0.1",
        "ptime=20 ICE-lite=forward DTLS-fingerprint=SHA-1 media-echo=blackhole",
        "endpoint-learning=heuristic",
        "label=caf\u00e9",
        # SDES, rtcp-mux, T.38.
        "SDES-off",
        "SDES=unencrypted_srtp SDES-no-AES_CM_128_HMAC_SHA1_32 SDES-pad",
        "SDES",
        "SDES-",
        "rtcp-mux-offer",
        "rtcp-mux-demux",
        "rtcp-mux=accept rtcp-mux-reject rtcp-mux-require",
        "rtcp-mux",
        "T.38=decode",
        "T.38=force",
        "T38-stop",
        "T.38-no-ECM T38=FEC",
        "T.38",
        # Integers.
        "TOS=184",
        "TOS=-1",
        "TOS=abc",
        "TOS=99999999999",
        "TOS=256",
        "TOS",
        "TOS=",
        "repacketize=20",
        "repacketize=20ms",
        "repacketize=abc",
        "repacketize=0",
        "delete-delay=5",
        "delete-delay",
        # SIP values overridden.
        "call-id=other@host",
        "call-id",
        "from-tag=forced",
        "from-tag",
        "to-tag=forced",
        "to-tag",
        "directional",
        # Unknown tokens, repeats, spacing.
        "frobnicate",
        "frob=nicate",
        "key=a=b",
        "Ice=remove",
        "trust-address trust-address",
        "internal internal",
        "  ICE=remove    trust-address  ",
        "ICE=remove\ttrust-address",
        "=x ICE=remove",
        "trust-address =x ICE=remove",
    ),
    Case("ICE=remove ICE=force", repeated=("ICE",)),
    Case("label=a label=b", repeated=("label",)),
    Case("sdp=none command=delete supports=x", repeated=("sdp", "command", "supports")),
    Case("received-from=10.0.0.9", repeated=("received-from",)),
    Case("via-branch=extra", extra_id="extra-branch-7"),
    Case("via-branch=auto-extra", extra_id="extra-branch-8"),
    Case("via-branch=2", message="INVITE, one Via"),
    # -- offers elsewhere: re-INVITE (To tag), a 200 carrying the offer ----------------
    Case("", message="re-INVITE"),
    Case("to-tag", message="re-INVITE"),
    Case("force-answer", message="re-INVITE"),
    Case("force-answer ICE=remove", message="re-INVITE"),
    Case("", message="200 with SDP"),
    Case("via-branch=auto", message="200 with SDP"),
    Case("directional", message="200 with SDP"),
    # -- rtpengine_answer: in a 200 and in a request ----------------------------------
    *[
        Case(flags, "rtpengine_answer", "200 with SDP")
        for flags in (
            None,
            "",
            "ICE=remove replace-origin",
            "codec-strip=PCMA codec-mask=all",
            "via-branch=auto",
            "via-branch=1",
            "to-tag",
            "to-tag=forced",
            "from-tag=forced",
            "directional",
            "force-answer",
            "trust-address direction=pub",
        )
    ],
    *[
        Case(flags, "rtpengine_answer", message)
        for message in ("re-INVITE", "PRACK with SDP")
        for flags in ("", "ICE=remove", "from-tag=forced", "directional")
    ],
    Case("", "rtpengine_answer", "INVITE"),
    # -- rtpengine_delete: in a BYE and in a reply ------------------------------------
    *[
        Case(flags, "rtpengine_delete", "BYE")
        for flags in (
            None,
            "",
            "to-tag",
            "to-tag=forced",
            "delete-delay=0",
            "delete-delay=5",
            "delete-delay=abc",
            "via-branch=1",
            "via-branch=2",
            "fatal",
            "ICE=remove replace-origin codec-strip=PCMA direction=external SDES-off",
            "from-tag=forced",
            "call-id=other@host",
            "directional",
            "force-answer",
        )
    ],
    Case("", "rtpengine_delete", "486"),
    Case("to-tag", "rtpengine_delete", "486"),
    # -- rtpengine_query --------------------------------------------------------------
    Case("", "rtpengine_query", "BYE"),
    Case("to-tag", "rtpengine_query", "BYE"),
    Case("", "rtpengine_query", "200 with SDP"),
    # -- rtpengine_manage picks the command -------------------------------------------
    *[
        Case(flags, "rtpengine_manage", message)
        for message in ("INVITE", "re-INVITE", "PRACK with SDP", "BYE", "200 with SDP", "486")
        for flags in (None, "ICE=remove replace-origin")
    ],
    # -- the other commands: directional ones send tags only when asked ---------------
    *[
        Case(flags, function, "INFO")
        for function in (
            "block_dtmf",
            "unblock_dtmf",
            "block_media",
            "unblock_media",
            "silence_media",
            "unsilence_media",
            "start_forwarding",
            "stop_forwarding",
        )
        for flags in (None, "", "directional", "from-tag=forced", "directional to-tag", "all")
    ],
    Case("", "start_recording", "INFO"),
    Case("metadata=a:b output-destination=/tmp/x", "start_recording", "INFO"),
    Case("", "stop_recording", "INFO"),
    Case("file=/tmp/prompt.wav", "play_media", "INFO"),
    Case("file=/tmp/prompt.wav repeat-times=2 to-tag", "play_media", "INFO"),
    Case("", "stop_media", "INFO"),
    Case("code=5", "play_dtmf", "INFO"),
    Case("code=# duration=200 volume=-8 directional", "play_dtmf", "INFO"),
    Case("directional to-tag=forced", "block_dtmf", "INFO"),
    # -- the other commands in replies --------------------------------------------------
    Case("", "start_recording", "200 with SDP"),
    Case("directional", "block_dtmf", "200 with SDP"),
    Case("file=/tmp/prompt.wav", "play_media", "200 with SDP"),
    Case("", "rtpengine_query", "486"),
    Case("", "stop_media", "486"),
    # -- where the SDP is: none, a multipart body, a trickle-ICE fragment ----------------
    Case("", "rtpengine_offer", "BYE"),
    Case("", message="INVITE, multipart"),
    Case("ICE=remove trust-address", message="INVITE, multipart"),
    Case(None, "rtpengine_manage", "INVITE, multipart"),
    *[
        Case(flags, function, "INFO with sdpfrag")
        for function in ("rtpengine_info", "rtpengine_offer")
        for flags in (None, "", "trust-address", "ICE=remove")
    ],
    *[
        Case(flags, function, "INFO with sdpfrag")
        for function in ("rtpengine_delete", "rtpengine_query", "block_dtmf")
        for flags in ("", "trust-address")
    ],
    # -- Via branches missing -----------------------------------------------------------
    Case("", message="INVITE, Via without branch"),
    Case("via-branch=1", message="INVITE, Via without branch"),
    Case("via-branch=2", message="INVITE, Via without branch"),
    Case("via-branch=auto", "rtpengine_delete", "486"),
    Case("via-branch=1", "rtpengine_delete", "486"),
    Case("to-tag", message="200 with SDP"),
    # -- edges: empty values, case, odd numbers, via modes in replies -----------------
    *offers(
        "call-id=",
        "from-tag=",
        "TOS=12abc",
        "repacketize=-5",
        "Internal ICE",
        "label",
        "via-branch=next",
        "via-branch=auto-next",
    ),
    Case("to-tag=", message="re-INVITE"),
    Case("via-branch=next", message="re-INVITE"),
    Case("via-branch=next", "rtpengine_answer", "PRACK with SDP"),
    Case("delete-delay=", "rtpengine_delete", "BYE"),
    Case("force-answer", message="200 with SDP"),
    Case("via-branch=auto-extra", "rtpengine_answer", "200 with SDP", extra_id="extra-9"),
    Case("via-branch=extra", "rtpengine_answer", "200 with SDP", extra_id="extra-10"),
    Case("via-branch=auto-next", "rtpengine_answer", "200 with SDP"),
    Case(
        "T38-decode rtcp-mux-demux replace=origin internal codec-offer=opus", "block_dtmf", "INFO"
    ),
]


class SipClient:
    """Sends each case's message to kamailio and reads what comes back
    (bounded in time and datagrams skipped)."""

    def __init__(self, kamailio: tuple[str, int]) -> None:
        self.kamailio = kamailio
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((CLIENT_HOST, 0))
        self.port: int = self._sock.getsockname()[1]
        self.sent = 0

    def close(self) -> None:
        self._sock.close()

    def message(self, case: Case) -> Request | Response:
        """The case's message, with a Call-ID and branches of its own."""
        self.sent += 1
        shape = SHAPES[case.message]
        call_id = f"ngflags-{self.sent}@{CLIENT_HOST}"
        extra: list[tuple[str, str]] = [("X-Fn", case.function)]
        if case.flags is not None:
            # Hex, so that every space and byte arrives as written.
            extra.append(("X-Flags", "x" + case.flags.encode().hex()))
        if case.extra_id is not None:
            extra.append(("X-Extra-Id", case.extra_id))
        own_via = f"SIP/2.0/UDP {CLIENT_HOST}:{self.port}"
        if shape.branch:
            own_via += f";branch=z9hG4bK-c{self.sent}"
        to = "<sip:bob@127.0.0.6>"
        if shape.status is not None:
            # The INVITE as Kamailio would have relayed it: its Via on top.
            kamailio_via = f"SIP/2.0/UDP {self.kamailio[0]}:{self.kamailio[1]}"
            invite = make_request(
                "INVITE",
                "sip:bob@127.0.0.6",
                from_=f"<sip:alice@{CLIENT_HOST}>;tag={FROM_TAG}",
                to=to,
                via=f"{kamailio_via};branch=z9hG4bK-k{self.sent}",
                call_id=call_id,
                headers=[("Via", own_via)],
                body=OFFER_SDP,
                content_type=SDP_TYPE,
            )
            return make_response(
                invite,
                shape.status,
                to_tag=TO_TAG,
                headers=extra,
                body=shape.body,
                content_type=shape.content_type,
            )
        return make_request(
            shape.method,
            "sip:bob@127.0.0.1",
            from_=f"<sip:alice@{CLIENT_HOST}>;tag={FROM_TAG}",
            to=f"{to};tag={TO_TAG}" if shape.to_tag else to,
            via=own_via,
            call_id=call_id,
            cseq=2 if shape.method == "PRACK" else 1,
            headers=[*(("Via", via) for via in shape.vias), *extra],
            body=shape.body,
            content_type=shape.content_type,
        )

    def send(self, msg: Request | Response) -> None:
        self._sock.sendto(bytes(msg), self.kamailio)

    def run(self, msg: Request | Response) -> bool:
        """Send ``msg``; whether Kamailio's function call succeeded."""
        self.send(msg)
        deadline = time.monotonic() + RECEIVE_TIMEOUT
        for _ in range(MAX_SKIPPED):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._sock.settimeout(remaining)
            try:
                data = self._sock.recv(65535)
            except TimeoutError:
                break
            answer = parse_message(data)
            if not isinstance(answer, Response) or answer.call_id != msg.call_id:
                continue
            if isinstance(msg, Response):  # forwarded back, with the verdict
                verdict = answer.get("X-Ng-Result")
                assert verdict in ("ok", "failed"), f"forwarded reply without a verdict: {data!r}"
                return verdict == "ok"
            assert answer.status_code in (200, 500), f"kamailio answered {answer.status_code}"
            return answer.status_code == 200
        raise AssertionError(f"nothing back from kamailio within {RECEIVE_TIMEOUT}s")


@pytest.fixture(scope="module")
def client(rig: Rig) -> Iterator[SipClient]:
    sip = SipClient(rig.kamailio.address)
    yield sip
    sip.close()


# -- ours ------------------------------------------------------------------------------------

#: Where our Rtpengine sends; nothing listens, the datagram is only read.
OUR_NODE = f"udp:{LOOPBACK}:9"
# The facade's functions that take the extra_id_pv value.
EXTRA_ID_FUNCTIONS: Final = frozenset({"rtpengine_offer", "rtpengine_answer", "rtpengine_manage"})


@dataclass
class Ours:
    """What sipcore_media does for a case: the dictionary it sends, nothing
    (``rtpengine_manage`` picked no command), or the error it refuses with."""

    document: NgDict | None = None
    error: Exception | None = None


def ours_for(case: Case, msg: Request | Response, source: Endpoint) -> Ours:
    """Call the :class:`~sipcore_media.Rtpengine` function Kamailio's is
    named after and decode the datagram it would send; check that
    :func:`~sipcore_media.build_command` gives the same dictionary."""
    engine = Rtpengine(RtpengineConfig(OUR_NODE, rtpengine_retr=1), cookie_prefix="ngflags")
    function = getattr(engine, case.function)
    next_branch = kamailio_next_branch(msg)
    options: dict[str, object] = {"source": source}
    if case.function in EXTRA_ID_FUNCTIONS:
        options["extra_id"] = case.extra_id
        options["next_branch"] = next_branch
    try:
        events: list[MediaEvent] = function(msg, 0.0, case.flags, **options)
    except (FlagError, MessageError, CommandError) as exc:
        return Ours(error=exc)
    sent = [event for event in events if isinstance(event, Transmit)]
    assert len(sent) == (0 if not events else 1), events
    command = FUNCTIONS[case.function] or manage_command(msg)
    if not sent:
        assert command is None, f"{case.function} sent nothing for {command!r}"
        return Ours()
    document = decode_message(sent[0].datagram).document
    assert command is not None
    context = sip_context(msg, source, extra_id=case.extra_id, next_branch=next_branch)
    assert build_command(command, case.flags, context) == document, "facade and builder differ"
    return Ours(document)


def kamailio_next_branch(msg: Request | Response) -> str | None:
    """The branch Kamailio's core gives the next branch of a request when tm
    is not loaded (``via-branch=next``): ``branch_builder()`` of the hash
    index (``core_hash(Call-ID, CSeq number)`` over tm's 2^16 entries, its
    hex digits reversed), label 0, the ``char_msg_val()`` MD5 (From tag,
    To tag but not in an INVITE, ACK or CANCEL, Call-ID, R-URI, CSeq
    number, top Via host, port and branch) and branch 0. Computed here, so
    that the value ours is given is not taken from Kamailio's."""
    if not isinstance(msg, Request):
        return None
    via = msg.via[0]
    parts = [
        msg.from_.tag or "",
        "" if msg.method in ("INVITE", "ACK", "CANCEL") else msg.to.tag or "",
        msg.call_id,
        str(msg.uri),
        str(msg.cseq.number),
        via.host,
        "" if via.port is None else str(via.port),
        via.branch or "",
    ]
    digest = hashlib.md5("".join(parts).encode(), usedforsecurity=False).hexdigest()
    index = core_hash(msg.call_id.encode(), str(msg.cseq.number).encode(), 1 << 16)
    return f"z9hG4bK{format(index, 'x')[::-1]}.{digest}.0"


def token_values(flags: str | None) -> dict[str, list[str]]:
    """The ``key=value`` tokens of a flag string, by key."""
    values: dict[str, list[str]] = {}
    for token in (flags or "").split(" "):
        key, equals, value = token.partition("=")
        if equals:
            values.setdefault(key, []).append(value)
    return values


def resolve_repeats(case: Case, pairs: list[tuple[str, NgValue]]) -> NgDict:
    """Kamailio's pairs as one dictionary, by sipcore_media's rule for a key
    sent twice: the last value, except that a key the module also writes
    keeps the module's own value (the one no token gave)."""
    by_key: dict[str, list[NgValue]] = {}
    for key, value in pairs:
        by_key.setdefault(key, []).append(value)
    repeated = sorted(key for key, values in by_key.items() if len(values) > 1)
    assert repeated == sorted(case.repeated), (
        f"Kamailio repeated {repeated}, the case expects {sorted(case.repeated)}"
    )
    tokens = token_values(case.flags)
    resolved: NgDict = {}
    for key, values in by_key.items():
        own = [v for v in values if v not in tokens.get(key, [])]
        resolved[key] = own[-1] if len(values) > 1 and len(own) == 1 else values[-1]
    return resolved


def describe(theirs: NgDict, mine: NgDict) -> str:
    lines = []
    for key in sorted(set(theirs) | set(mine)):
        their, my = theirs.get(key, "<absent>"), mine.get(key, "<absent>")
        if their != my:
            lines.append(f"  {key!r}: Kamailio {their!r}, ours {my!r}")
    return "\n".join(lines)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_flags_give_the_dictionary_kamailio_sends(rig: Rig, client: SipClient, case: Case) -> None:
    msg = client.message(case)
    ok = client.run(msg)
    captured = rig.node.take()
    assert len(captured) <= 1, f"kamailio sent {len(captured)} commands"
    ours = ours_for(case, msg, Endpoint(CLIENT_HOST, client.port))
    if ours.error is not None:
        assert not ok and not captured, f"ours refuses ({ours.error!r}); Kamailio " + (
            f"sent {captured[0].document!r}" if captured else "sent nothing but succeeded"
        )
        return
    if ours.document is None:
        assert not captured, f"ours sends nothing; Kamailio sent {captured[0].document!r}"
        return
    assert captured, f"Kamailio refused (its function failed); ours sends {ours.document!r}"
    assert ok, "Kamailio sent the command but its function failed"
    theirs = resolve_repeats(case, top_level_pairs(captured[0].raw))
    assert ours.document == theirs, "differences:\n" + describe(theirs, ours.document)


def test_the_table_is_broad() -> None:
    """At least 60 distinct flag strings; every module function and message
    shape used; no case twice."""
    strings = {case.flags for case in CASES if case.flags is not None}
    assert len(strings) >= 60, len(strings)
    assert {case.function for case in CASES} == set(FUNCTIONS)
    assert {case.message for case in CASES} == set(SHAPES)
    assert len({case.id for case in CASES}) == len(CASES)


#: How long a kamailio whose worker aborted takes to stop by itself.
ABORT_TIMEOUT = 10.0


def test_a_bare_direction_aborts_kamailio_where_ours_refuses(
    kamailio_binary: str, tmp_path: Path
) -> None:
    """``direction`` without a value: 5.6.3 adds a string of length -1 to
    its bencode buffer, a worker dies on an assertion and the whole
    kamailio stops. sipcore_media refuses the flags (FlagError). Run on a
    kamailio of its own, so that the table above keeps one that lives."""
    require_modules()
    case = Case("direction")
    with running_rig(kamailio_binary, tmp_path / "kamailio") as aborting:
        sip = SipClient(aborting.kamailio.address)
        try:
            msg = sip.message(case)
            sip.send(msg)
            process = aborting.kamailio.process
            deadline = time.monotonic() + ABORT_TIMEOUT
            while process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            log = aborting.kamailio.log()
            assert process.poll() is not None, "kamailio survived a bare direction"
            assert "__bencode_string_alloc: Assertion" in log, log[-2000:]
            assert not aborting.node.take()
            ours = ours_for(case, msg, Endpoint(CLIENT_HOST, sip.port))
        finally:
            sip.close()
    assert isinstance(ours.error, FlagError), ours
