"""Log formats of the command line: plain text, or one JSON object per line.

:class:`JsonFormatter` writes each record as a single line of JSON with ``ts`` (UTC,
ISO 8601, milliseconds), ``level``, ``logger`` and ``message``, then any field a caller
passed with ``extra=`` (``watcher``, ``instance``...) and the fields given to the
formatter itself, and ``exc`` with the traceback when there is one. Newlines inside a
message are escaped by JSON, so one record is always exactly one line.

The library never installs a handler; only the CLI does (see ``cli.common``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message`` and fields."""

    def __init__(self, *, fields: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.fields = dict(fields or {})

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        for key, value in {**self.fields, **extra}.items():
            entry.setdefault(key, value)  # a field never hides the four above
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def formatter(name: str, *, fields: Mapping[str, Any] | None = None) -> logging.Formatter:
    """The formatter called ``name`` (one of :data:`FORMATS`)."""
    if name == "json":
        return JsonFormatter(fields=fields)
    if name == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"unknown log format {name!r}; expected one of {', '.join(FORMATS)}")
