"""Log lines: one JSON object each (LOG_FORMAT=json, the default) or plain text, both with the
request's id and never a database password; and the access line of every request.

structlog formats the standard library's records (Django's, gunicorn's, ours) through its
ProcessorFormatter, so every logger of every library comes out in the same shape without
being rewritten. django-structlog was not used: it brings its own request id and its own
request events, which the kit already has (requestid.py, the access line below).
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import time

import structlog

from config.multidb.redact import configured_passwords, redact

access_log = logging.getLogger("access")


@functools.cache
def _passwords() -> frozenset[str]:
    """The configured database passwords, read once: settings do not change while serving."""
    return frozenset(configured_passwords())


def _redacted(logger, method_name, event_dict):
    for key in ("event", "exception"):
        value = event_dict.get(key)
        if isinstance(value, str) and value:
            event_dict[key] = redact(value, _passwords())
    return event_dict


_ACCESS_FIELDS = ("method", "path", "status", "duration_ms", "user_id", "databases")


class JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter, with a direct path for the access line: it is written once per
    request, is built from the request line only (nothing configured to hide) and has a fixed
    shape, so the processor chain would only add time to every request."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name != "access":
            return super().format(record)
        line = {"event": record.getMessage()}
        for name in _ACCESS_FIELDS:
            line[name] = getattr(record, name, None)
        line["request_id"] = getattr(record, "request_id", "-")
        line["level"] = "info"
        line["logger"] = "access"
        line["timestamp"] = datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat()[:-6] + "Z"
        return json.dumps(line, default=str)


def json_formatter() -> logging.Formatter:
    """{"timestamp", "level", "logger", "event", "request_id", ...extra fields, "exception"}."""
    return JsonFormatter(
        foreign_pre_chain=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.stdlib.ExtraAdder(),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redacted,
            structlog.processors.JSONRenderer(default=str),
        ],
    )


class TextFormatter(logging.Formatter):
    """Plain lines for a terminal: time, level, logger, [request id], message; passwords masked."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):  # a handler without the filter
            record.request_id = "-"
        text = super().format(record)
        if record.name == "access":  # built from the request line only: nothing configured to hide
            return text
        return redact(text, _passwords())


def log_access(method: str, path: str, status: int, started: float, user_id, databases: dict) -> None:
    """One line per answered request: method, path, status, duration, user, and per database
    how long the request held a connection and waited for one."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    duration_ms = round((time.perf_counter() - started) * 1000, 2)
    access_log.info(
        "%s %s %s %.1fms",
        method,
        path,
        status,
        duration_ms,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "user_id": user_id,
            "databases": databases,
        },
    )
