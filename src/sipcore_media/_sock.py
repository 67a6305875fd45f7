"""Kamailio's ``rtpengine_sock`` syntax: sets of weighted nodes.

This module owns :func:`parse_rtpengine_sock`, which reads the parameter
as Kamailio's ``rtpengine_add_rtpengine_set()`` / ``add_rtpengine_socks()``
do: an optional ``SETID ==`` prefix (else ``setid_default``), then
whitespace-separated node URLs, each with an optional ``=WEIGHT`` (1 when
left out): ``udp:host:port``, ``udp6:[addr]:port``, ``unix:/path``,
``ws://...``, ``wss://...``. A node repeated in a set updates the first
one. Host names are kept as text: resolving them is the caller's I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

import attrs

from ._errors import ConfigError

__all__ = ["DEFAULT_PORT", "NodeAddress", "NodeSpec", "parse_rtpengine_sock"]

#: Kamailio's port for a udp node written without one (``CPORT``).
DEFAULT_PORT: Final = 22222
_SCHEMES: Final = ("udp6:", "udp:", "unix:", "wss://", "ws://")
_DIGITS: Final = re.compile(r"[0-9]+")


@attrs.frozen
class NodeAddress:
    """Where a node is: ``scheme`` is ``udp``, ``udp6``, ``unix``, ``ws`` or
    ``wss``; ``host``/``port`` are set for udp, ``path`` for unix and
    ``url`` (as written, Kamailio's ``rn_url``) is the node's name."""

    url: str
    scheme: str
    host: str | None = None
    port: int | None = None
    path: str | None = None

    @property
    def destination(self) -> tuple[str, int]:
        """``(host, port)`` for a UDP socket; a ConfigError for other schemes."""
        if self.host is None or self.port is None:
            raise ConfigError(f"{self.url}: not a UDP node")
        return (self.host, self.port)


@attrs.frozen
class NodeSpec:
    """One configured node: its set, address and weight."""

    setid: int
    address: NodeAddress
    weight: int = 1

    @property
    def url(self) -> str:
        return self.address.url


def _strtoul(text: str) -> int:
    """glibc ``strtoul`` into an ``unsigned int``: leading digits, else 0."""
    match = re.match(r"[ \t]*([+-]?)([0-9]+)", text)
    if match is None:
        return 0
    value = min(int(match.group(2)), 2**64 - 1)
    if match.group(1) == "-":
        value = (2**64 - value) % 2**64
    return value % 2**32


def _address(url: str) -> NodeAddress:
    lowered = url.lower()
    scheme = next((s for s in _SCHEMES if lowered.startswith(s)), None)
    if scheme is None:
        raise ConfigError(
            f"rtpengine_sock: {url!r} must start with udp:, udp6:, unix:, ws:// or wss:// "
            "(Kamailio ignores such a node with a warning)"
        )
    name = scheme.rstrip(":/")
    if name in ("ws", "wss"):
        return NodeAddress(url, name)
    rest = url[len(scheme) :]
    if name == "unix":
        if not rest:
            raise ConfigError(f"rtpengine_sock: {url!r} has no socket path")
        return NodeAddress(url, name, path=rest)
    # The port check looks after "]:" (udp6) or the first ':' (udp) ...
    if name == "udp6":
        cut = rest.find("]:")
        port_text = rest[cut + 2 :] if cut >= 0 else None
    else:
        cut = rest.find(":")
        port_text = rest[cut + 1 :] if cut >= 0 else None
    if port_text and (not _DIGITS.fullmatch(port_text) or int(port_text) > 0xFFFF):
        raise ConfigError(f"rtpengine_sock: {url!r} must end with a valid port number")
    # ... but the socket is built from a split at the last ':'; an empty or
    # missing port is Kamailio's 22222.
    host, colon, port_part = rest.rpartition(":")
    if not colon:
        host, port_part = rest, ""
    if name == "udp6":
        host = host.split("]", 1)[0] if "]" in host else host
        host = host[1:] if host.startswith("[") else host
    if not host:
        raise ConfigError(f"rtpengine_sock: {url!r} has no host")
    port = int(port_part) if _DIGITS.fullmatch(port_part) else DEFAULT_PORT
    if port > 0xFFFF:
        raise ConfigError(f"rtpengine_sock: {url!r} must end with a valid port number")
    return NodeAddress(url, name, host=host, port=port)


def _one_set(text: str, setid_default: int) -> list[NodeSpec]:
    body = text.lstrip()
    if not body:
        return []
    setid = setid_default
    head, marker, tail = body.partition("==")
    if marker:
        if not tail:
            raise ConfigError("rtpengine_sock: invalid rtpengine list (nothing after '==')")
        ident = head.rstrip()
        if not _DIGITS.fullmatch(ident):
            raise ConfigError(f"rtpengine_sock: invalid set_id value {ident!r}")
        setid = int(ident)
        body = tail
    if not body.strip():
        raise ConfigError("rtpengine_sock: empty rtpengine list")
    nodes: list[NodeSpec] = []
    for token in body.split():
        url, equals, weight_text = token.partition("=")
        weight = _strtoul(weight_text) if equals else 1
        spec = NodeSpec(setid, _address(url), weight)
        for i, known in enumerate(nodes):
            if known.url == spec.url:
                nodes[i] = spec  # Kamailio updates the node already in the set
                break
        else:
            nodes.append(spec)
    return nodes


def parse_rtpengine_sock(values: str | Iterable[str], setid_default: int = 0) -> list[NodeSpec]:
    """Every node of one or more ``rtpengine_sock`` values, in order (each
    value is one ``modparam`` line).

    >>> [(n.setid, n.url, n.weight) for n in parse_rtpengine_sock(
    ...     ["udp:localhost:12221=2 udp:localhost:12222", "1 == udp6:[::1]:12225"])]
    [(0, 'udp:localhost:12221', 2), (0, 'udp:localhost:12222', 1), (1, 'udp6:[::1]:12225', 1)]
    """
    texts = [values] if isinstance(values, str) else list(values)
    nodes: list[NodeSpec] = []
    for text in texts:
        for spec in _one_set(text, setid_default):
            for i, known in enumerate(nodes):
                if known.setid == spec.setid and known.url == spec.url:
                    nodes[i] = spec
                    break
            else:
                nodes.append(spec)
    return nodes
