"""Log lines: one JSON object each (LOG_FORMAT=json, the default) or plain text, both with the
request's id and never a database password; and the access line of every request.

structlog formats the standard library's records (Django's, gunicorn's, ours) through its
ProcessorFormatter, so every logger of every library comes out in the same shape without
being rewritten. django-structlog was not used: it brings its own request id and its own
request events, which the kit already has (requestid.py, the access line below).
"""

from __future__ import annotations

import functools
import json
import logging
import time
from json.encoder import encode_basestring_ascii as _quote  # json.dumps' own string encoder (C)

import structlog

from config.httpkit.requestid import RequestIdFilter, current
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


class JsonFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's formatter, with a direct path for the access line: it is written once per
    request, is built from the request line only (nothing configured to hide) and has a fixed
    shape, so the processor chain would only add time to every request."""

    def format(self, record: logging.LogRecord) -> str:
        if record.name != "access" or not hasattr(record, "databases"):  # not from log_access
            return super().format(record)
        return _access_json(
            record.method,
            record.path,
            record.status,
            record.duration_ms,
            record.user_id,
            record.databases,
            getattr(record, "request_id", "-"),
            record.created,
        )


_stamp = (0, "")  # (a second, its "YYYY-MM-DDTHH:MM:SS" in UTC): one strftime per second, not per line


def _timestamp(created: float) -> str:
    """As structlog's TimeStamper(fmt="iso", utc=True) writes it: UTC, to the microsecond."""
    global _stamp
    second, micro = divmod(int(created * 1_000_000), 1_000_000)
    stamp = _stamp  # one read: another thread may swap it
    if stamp[0] != second:
        stamp = _stamp = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{stamp[1]}.{micro:06d}Z"


def _access_json(method, path, status, duration_ms, user_id, databases, request_id, created) -> str:
    """The access line: json.dumps' key order, separators and string escapes (its own encoder),
    milliseconds to the hundredth. Built by hand because it is written on every request: the
    dict and json.dumps cost several times this."""
    dbs = ", ".join(
        [
            f'{_quote(alias)}: {{"held_ms": {used["held_ms"]:.2f}, "wait_ms": {used["wait_ms"]:.2f}}}'
            for alias, used in databases.items()
        ]
    )
    user = "null" if user_id is None else repr(user_id) if type(user_id) is int else json.dumps(user_id, default=str)
    return (
        f'{{"event": {_quote(f"{method} {path} {status} {duration_ms:.1f}ms")}, "method": {_quote(method)}, '
        f'"path": {_quote(path)}, "status": {status:d}, "duration_ms": {duration_ms:.2f}, "user_id": {user}, '
        f'"databases": {{{dbs}}}, "request_id": {_quote(request_id)}, "level": "info", "logger": "access", '
        f'"timestamp": "{_timestamp(created)}"}}'
    )


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


def _writes_json_itself(handler: logging.Handler) -> bool:
    """A plain stream handler writing JsonFormatter's lines, filtered by RequestIdFilter at most
    (settings.LOGGING's console handler): the access line can go to its stream directly."""
    filters = handler.filters
    return (
        type(handler) is logging.StreamHandler
        and type(handler.formatter) is JsonFormatter
        and (not filters or (len(filters) == 1 and type(filters[0]) is RequestIdFilter))
    )


def log_access(method: str, path: str, status: int, started: float, user_id, databases: dict) -> None:
    """One line per answered request: method, path, status, duration, user, and per database
    how long the request held a connection and waited for one.

    It goes where logging would send an INFO record of the `access` logger (its handlers,
    then its parents' while it propagates), but a JSON console handler gets the finished
    line written to its stream without a LogRecord: the logger's caller lookup, the record,
    the filters and the formatter were most of a fast-lane request's logging time. Every
    other handler (text format, a test's capture) gets a record as from `access_log.info`."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    duration_ms = (time.perf_counter() - started) * 1000  # not rounded: the line writes it to the hundredth
    if access_log.filters:  # a filter may drop or change the record: logging's own path
        access_log.handle(_record(method, path, status, duration_ms, user_id, databases))
        return
    line = record = None
    logger = access_log
    while logger is not None:
        for handler in logger.handlers:
            if logging.INFO < handler.level:
                continue
            if _writes_json_itself(handler):
                if line is None:
                    request_id = current() or "-"
                    line = _access_json(method, path, status, duration_ms, user_id, databases, request_id, time.time())
                try:
                    with handler.lock:  # as Handler.handle: lines of concurrent requests never interleave
                        stream = handler.stream
                        stream.write(line + handler.terminator)
                        stream.flush()  # as StreamHandler: a worker killed later loses no line it wrote
                except Exception:
                    handler.handleError(_record(method, path, status, duration_ms, user_id, databases))
            else:
                if record is None:
                    record = _record(method, path, status, duration_ms, user_id, databases)
                handler.handle(record)
        logger = logger.parent if logger.propagate else None


def _record(method, path, status, duration_ms, user_id, databases) -> logging.LogRecord:
    return access_log.makeRecord(
        access_log.name,
        logging.INFO,
        __file__,
        0,
        "%s %s %s %.1fms",
        (method, path, status, duration_ms),
        None,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
            "user_id": user_id,
            "databases": databases,
        },
    )
