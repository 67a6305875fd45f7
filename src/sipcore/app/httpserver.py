"""A small HTTP/1.1 server for JSON requests, on asyncio.

This module owns reading one request per connection (bounded: the head
and body together at most ``max_request_bytes``, at most 100 header
lines, ``timeout`` seconds to send it, ``max_connections`` at a time),
and writing one JSON answer with ``Connection: close``. What a request
means is the handler's; this module knows no route.

No chunked bodies, no keep-alive, no TLS, no authentication: it is meant
for a person or a script on the same host (the configuration refuses
anything but a loopback address).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Final
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs

__all__ = ["HttpError", "HttpRequest", "JsonHttpServer"]

log = logging.getLogger("sipcore.app.http")

_MAX_HEADER_LINES: Final = 100
_METHODS: Final = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"})


@attrs.frozen
class HttpRequest:
    """One request: ``path`` percent-decoded, ``query`` the last value of
    each query parameter, ``body`` as sent."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        """The body as JSON (an empty body is ``{}``); raises HttpError 400."""
        if not self.body.strip():
            return {}
        try:
            return json.loads(self.body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HttpError(400, f"the body is not JSON: {exc}") from None


class HttpError(Exception):
    """Answer ``status`` with ``message`` (as ``{"error": ...}``)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


Handler = Callable[[HttpRequest], Awaitable[tuple[int, object]]]


class JsonHttpServer:
    """Serves ``handler`` (a request in; a status and a JSON-ready value out)."""

    def __init__(
        self,
        handler: Handler,
        *,
        max_request_bytes: int = 65536,
        max_connections: int = 16,
        timeout: float = 5.0,
    ) -> None:
        self._handler = handler
        self.max_request_bytes = max_request_bytes
        self.max_connections = max_connections
        self.timeout = timeout
        self._server: asyncio.Server | None = None
        self._active: set[asyncio.Task[None]] = set()
        self.address: tuple[str, int] = ("", 0)

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (0: a free port); returns the bound address."""
        self._server = await asyncio.start_server(
            self._connected, host, port, limit=self.max_request_bytes, reuse_address=True
        )
        bound = self._server.sockets[0].getsockname()
        self.address = (bound[0], bound[1])
        return self.address

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._active:
            task.cancel()

    async def wait_closed(self) -> None:
        if self._server is not None:
            await self._server.wait_closed()
        if self._active:
            await asyncio.gather(*self._active, return_exceptions=True)

    # -- one connection --------------------------------------------------------------

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if len(self._active) >= self.max_connections or task is None:
            await self._write(writer, 503, {"error": {"code": 503, "message": "busy"}})
            return
        self._active.add(task)
        try:
            status, value = await self._serve(reader, writer)
            await self._write(writer, status, value)
        except asyncio.CancelledError:
            writer.close()
            raise
        except Exception:  # pragma: no cover - a bug must not stop the server
            log.exception("management request failed")
            writer.close()
        finally:
            self._active.discard(task)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[int, object]:
        try:
            request = await asyncio.wait_for(self._read(reader, writer), self.timeout)
        except HttpError as exc:
            return exc.status, _error(exc.status, exc.message)
        except TimeoutError:
            return 408, _error(408, f"the request took more than {self.timeout} s")
        try:
            return await self._handler(request)
        except HttpError as exc:
            return exc.status, _error(exc.status, exc.message)

    async def _read(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> HttpRequest:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise HttpError(431, "request head too large") from None
        except asyncio.IncompleteReadError:
            raise HttpError(400, "incomplete request") from None
        try:
            text = head.decode("ascii")
        except UnicodeDecodeError:
            raise HttpError(400, "the request head is not ASCII") from None
        lines = text.split("\r\n")[:-2]
        parts = lines[0].split(" ") if lines else []
        if len(parts) != 3 or parts[0] not in _METHODS or not parts[2].startswith("HTTP/1."):
            raise HttpError(400, "bad request line")
        method, target, _ = parts
        if len(lines) - 1 > _MAX_HEADER_LINES:
            raise HttpError(431, "too many header lines")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise HttpError(400, "bad header line")
            headers[name.lower()] = value.strip()
        if "transfer-encoding" in headers:
            raise HttpError(501, "chunked bodies are not supported: send Content-Length")
        length_text = headers.get("content-length", "0")
        if not length_text.isdigit() or len(length_text) > 12:
            raise HttpError(400, "bad Content-Length")
        length = int(length_text)
        if len(head) + length > self.max_request_bytes:
            raise HttpError(413, f"request larger than {self.max_request_bytes} bytes")
        if length and headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        try:
            body = await reader.readexactly(length) if length else b""
        except asyncio.IncompleteReadError:
            raise HttpError(400, "incomplete body") from None
        split = urlsplit(target)
        return HttpRequest(
            method=method,
            path=unquote(split.path),
            query=dict(parse_qsl(split.query)),
            headers=headers,
            body=body,
        )

    async def _write(self, writer: asyncio.StreamWriter, status: int, value: object) -> None:
        body = (json.dumps(value, default=str, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        )
        try:
            writer.write(head.encode("ascii") + body)
            await asyncio.wait_for(writer.drain(), self.timeout)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), self.timeout)


def _error(status: int, message: str) -> dict[str, object]:
    return {"error": {"code": status, "message": message}}
