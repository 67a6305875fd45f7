"""Where messages go: endpoints, the Send action, and RFC 3261 section 18.

This module owns :class:`Endpoint` (a transport, host and port, as
Kamailio writes a socket: ``udp:127.0.0.1:5060``), :class:`Send` (the one
output every layer emits: a message and where it must go), and the rules
of RFC 3261 section 18 that need no socket: stamping ``received``/``rport``
on a request's top Via (18.2.1, RFC 3581) and choosing where a response
goes (18.2.2). It performs no I/O and no DNS.
"""

from __future__ import annotations

import ipaddress
from typing import Final

import attrs

from ._errors import LocalProtocolError
from ._headers import Via
from ._message import Message, Request

__all__ = [
    "RELIABLE_TRANSPORTS",
    "Endpoint",
    "Send",
    "is_ip_address",
    "response_destination",
    "stamp_received",
]

# Transports that retransmit for us: RFC 3261 timers A, E and G do not run
# over them and D, I, J, K are zero.
RELIABLE_TRANSPORTS: Final = frozenset({"TCP", "TLS", "SCTP", "TLS-SCTP", "WS", "WSS"})
_KNOWN_TRANSPORTS: Final = RELIABLE_TRANSPORTS | {"UDP", "DTLS"}
DEFAULT_PORT: Final = 5060
DEFAULT_TLS_PORT: Final = 5061


def _upper(text: str) -> str:
    return text.upper()


@attrs.frozen
class Endpoint:
    """A transport address: where a datagram came from or must go.

    ``host`` is an IP address or name without IPv6 brackets; ``transport``
    is upper case (``"UDP"``, ``"TCP"``, ``"TLS"``...). For a connection-
    oriented transport it names the connection the adapter keeps.
    """

    host: str
    port: int
    transport: str = attrs.field(default="UDP", converter=_upper)

    def __attrs_post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise LocalProtocolError(f"port {self.port} out of range")
        if self.transport not in _KNOWN_TRANSPORTS:
            raise LocalProtocolError(f"unknown transport {self.transport!r}")

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE_TRANSPORTS

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` as a socket wants it."""
        return (self.host, self.port)

    @property
    def hostport(self) -> str:
        """``host:port`` with IPv6 brackets, as a Via sent-by or a URI writes it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        """Kamailio's socket syntax: ``udp:host:port``, ``tcp:[::1]:5060``,
        ``host:port`` (UDP) or ``host`` (UDP, 5060)."""
        rest = text.strip()
        transport = "UDP"
        scheme, colon, after = rest.partition(":")
        if colon and scheme.upper() in _KNOWN_TRANSPORTS and not after.isdigit():
            transport, rest = scheme.upper(), after
        if rest.startswith("["):
            end = rest.find("]")
            if end < 0:
                raise LocalProtocolError(f"bad endpoint {text!r}")
            host, port_text = rest[1:end], rest[end + 1 :].removeprefix(":")
        elif rest.count(":") > 1:
            host, port_text = rest, ""
        else:
            host, _, port_text = rest.partition(":")
        if not host:
            raise LocalProtocolError(f"bad endpoint {text!r}")
        if not port_text:
            port = DEFAULT_TLS_PORT if transport in ("TLS", "WSS") else DEFAULT_PORT
        elif port_text.isascii() and port_text.isdigit() and len(port_text) <= 5:
            port = int(port_text)
        else:
            raise LocalProtocolError(f"bad port in endpoint {text!r}")
        return cls(host, port, transport)

    def __str__(self) -> str:
        return f"{self.transport.lower()}:{self.hostport}"


@attrs.frozen
class Send:
    """Send ``message`` to ``destination``: the output of every layer.

    ``data`` is the wire form. A retransmission is the same ``Send`` again:
    an unmodified message keeps its bytes, so resending costs no rendering.
    """

    message: Message
    destination: Endpoint

    @property
    def data(self) -> bytes:
        return bytes(self.message)


def is_ip_address(host: str) -> bool:
    """True for an IPv4 or IPv6 address (without brackets), False for a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _same_address(host: str, address: str) -> bool:
    if host.startswith("["):
        host = host[1:-1]
    try:
        return ipaddress.ip_address(host) == ipaddress.ip_address(address)
    except ValueError:
        return False


def stamp_received(request: Request, source: Endpoint) -> None:
    """RFC 3261 section 18.2.1 and RFC 3581: note where the request came from.

    Adds ``received`` to the top Via when its sent-by host is not the source
    address, and fills an empty ``rport`` with the source port (then
    ``received`` is always added). Other Via values and headers are left as
    they were.
    """
    via = request.via[0]
    params = via.params
    has_rport = "rport" in params and not params.get("rport")
    if not has_rport and _same_address(via.host, source.host):
        return
    if "received" in params and params.get("received") == source.host and not has_rport:
        return
    params = params.with_param("received", source.host)
    if has_rport:
        params = params.with_param("rport", str(source.port))
    stamped = attrs.evolve(via, params=params)
    request.remove_first("Via")
    request.add_header("Via", str(stamped), first=True)


def response_destination(via: Via, source: Endpoint) -> Endpoint:
    """Where a response to a request with top Via ``via`` goes (RFC 3261
    section 18.2.2, RFC 3581 section 4).

    Over a reliable transport, back over the connection the request came
    on. Otherwise to ``maddr`` when present, else to the source address at
    the ``rport`` (when the request asked for it), the sent-by port, or 5060.
    """
    if source.reliable:
        return source
    maddr = via.maddr
    if maddr:
        return Endpoint(maddr, via.port or DEFAULT_PORT, source.transport)
    if "rport" in via.params:
        return Endpoint(source.host, source.port, source.transport)
    return Endpoint(source.host, via.port or DEFAULT_PORT, source.transport)
