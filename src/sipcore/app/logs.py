"""Structured logging for ``sipcore-proxy``: one record per line on stderr.

This module owns the two line formats (a JSON object, or ``key=value``
pairs) and :func:`event`, the one way the application logs: a short
machine name (``dialog.start``, ``destination.down``) plus fields. Records
from the libraries (``sipcore.asyncio``, ``sipcore.proxy``...) go through
the same formatter. A traceback, when there is one, is a field of its
record, so every record stays on one line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO, Any, Final

__all__ = ["JsonFormatter", "KeyValueFormatter", "configure", "event", "log"]

log = logging.getLogger("sipcore.app")

_FIELDS: Final = "sipcore_fields"
_EVENT: Final = "sipcore_event"


def event(name: str, message: str, *, level: int = logging.INFO, **fields: object) -> None:
    """Log ``message`` as event ``name`` with ``fields`` on the app's logger."""
    if log.isEnabledFor(level):
        log.log(level, message, extra={_EVENT: name, _FIELDS: fields})


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.gmtime(record.created)
    millis = int(record.msecs)
    return time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{millis:03d}Z"


def _record_fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": _timestamp(record),
        "level": record.levelname.lower(),
        "logger": record.name,
    }
    name = getattr(record, _EVENT, None)
    if name is not None:
        out["event"] = name
    out["msg"] = record.getMessage()
    fields = getattr(record, _FIELDS, None)
    if isinstance(fields, dict):
        for key, value in fields.items():
            if key not in out:
                out[key] = value
    if record.exc_info:
        out["exc"] = logging.Formatter().formatException(record.exc_info)
    return out


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: ``ts``, ``level``, ``logger``,
    ``event`` (app events), ``msg``, the event's fields, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_record_fields(record), default=str, ensure_ascii=False)


def _kv(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not any(c in text for c in ' ="\\\n\r\t'):
        return text
    return json.dumps(text, ensure_ascii=False)


class KeyValueFormatter(logging.Formatter):
    """A record as ``key=value`` pairs, values quoted when they need it."""

    def format(self, record: logging.LogRecord) -> str:
        return " ".join(f"{k}={_kv(v)}" for k, v in _record_fields(record).items())


def configure(level: str, fmt: str, stream: IO[str] | None = None) -> logging.Handler:
    """Send every record at ``level`` and above to ``stream`` (stderr),
    formatted as ``fmt`` (``json`` or ``text``); returns the handler."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
