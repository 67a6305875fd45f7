"""What the transaction layer tells its transaction user (TU).

Every event is a frozen value named after what happened. The transaction
layer emits them, in order and interleaved with :class:`~sipcore.Send`
actions, from :meth:`sipcore.TransactionLayer.take`; the proxy core
consumes them and turns them into calls of its hooks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeAlias

import attrs

from ._message import Request, Response
from ._transport import Endpoint

if TYPE_CHECKING:
    from ._transaction import ClientTransaction, ServerTransaction, Transaction

__all__ = [
    "AckReceived",
    "RequestReceived",
    "ResponseReceived",
    "StrayResponse",
    "TransactionEvent",
    "TransactionTerminated",
    "TransactionTimedOut",
    "TransportFailed",
]


@attrs.frozen
class RequestReceived:
    """A new request (not an ACK) created ``transaction``; the TU must answer it.

    Retransmissions of it are absorbed by the transaction and never seen again.
    """

    transaction: ServerTransaction
    request: Request


@attrs.frozen
class AckReceived:
    """An ACK for a 2xx (its own transaction: RFC 3261 section 17), passed to the TU.

    ``transaction`` is the INVITE server transaction in the Accepted state the
    ACK matched (RFC 6026), or ``None`` when it matched none (the usual case
    for a proxy: the ACK for a 2xx carries a new branch).
    """

    request: Request
    source: Endpoint
    transaction: ServerTransaction | None = None


@attrs.frozen
class ResponseReceived:
    """A response for ``transaction`` that the TU must see: every provisional,
    the first final, and (INVITE, Accepted state) each further 2xx."""

    transaction: ClientTransaction
    response: Response


@attrs.frozen
class StrayResponse:
    """A response that matched no client transaction (RFC 3261 section 17.1.3).

    A proxy forwards a stray 2xx to an INVITE statelessly (section 16.7
    step 3 via 16.11); everything else is usually dropped.
    """

    response: Response
    source: Endpoint


@attrs.frozen
class TransactionTimedOut:
    """Timer B or F (client: no final response) or H (server: no ACK) fired."""

    transaction: Transaction


@attrs.frozen
class TransportFailed:
    """The transport reported that a message of ``transaction`` could not be sent."""

    transaction: Transaction


@attrs.frozen
class TransactionTerminated:
    """``transaction`` reached the Terminated state and was forgotten."""

    transaction: Transaction


TransactionEvent: TypeAlias = (
    RequestReceived
    | AckReceived
    | ResponseReceived
    | StrayResponse
    | TransactionTimedOut
    | TransportFailed
    | TransactionTerminated
)
