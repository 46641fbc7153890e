"""How a long-running command writes its log: sentences as text (the default) or one
JSON object per line, as log collectors in clusters expect.

A JSON line holds ``time`` (RFC 3339, UTC, milliseconds: ``2026-11-25T20:00:00.123Z``),
``level`` (``debug``, ``info``, ``warning``, ``error``, ``critical``), ``logger``,
``message``, ``exception`` (the formatted traceback) when there is one, ``stack`` when
``stack_info`` was asked for, and any structured field given through ``extra=``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from ferryman.errors import ConfigError

__all__ = ["ENV", "FORMATS", "JsonFormatter", "configure", "resolve"]

#: The environment variable that chooses the format when ``--log-format`` is not given.
ENV = "FERRYMAN_LOG_FORMAT"
FORMATS = ("text", "json")
_TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"

#: Attributes every LogRecord has; anything else on a record came through ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        return json.dumps(line, default=str)


def resolve(flag: str | None, environ: dict[str, str] | None = None) -> str:
    """The format to use: ``flag``, else ``$FERRYMAN_LOG_FORMAT``, else text; raises
    ConfigError for a value that is neither text nor json."""
    env = os.environ if environ is None else environ
    chosen = flag or env.get(ENV) or "text"
    if chosen not in FORMATS:
        raise ConfigError([f"{ENV}: {chosen!r} is not one of {', '.join(FORMATS)}"])
    return chosen


def configure(level: str, fmt: str) -> None:
    """Send the root logger's records to stderr at ``level`` in ``fmt``."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(_TEXT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
