"""Log lines (config/httpkit/logs.py): JSON objects by default, text on request; an access line
per request naming the databases it used; never a database password."""

from __future__ import annotations

import datetime
import io
import json
import logging
import time

import pytest
from django.contrib.auth import get_user_model

from config.httpkit.fastlane import Lane
from config.httpkit.logs import TextFormatter, _timestamp, access_log, json_formatter, log_access
from config.httpkit.requestid import RequestIdFilter, bound
from config.users.tokens import api_token_create
from config.wsgi import ApiHandler, dispatcher
from tests.support.wsgicall import call, environ

pytestmark = pytest.mark.django_db(databases=["default", "blog", "market"], transaction=True)


@pytest.fixture
def console():
    """The configured console handler's output (settings.LOGGING), one line per record."""
    handler = next(h for h in logging.getLogger().handlers if h.filters)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        read = lambda: [json.loads(line) for line in stream.getvalue().splitlines()]  # noqa: E731
        read.stream = stream
        yield read
    finally:
        handler.setStream(previous)


def test_the_default_format_is_one_json_object_per_line(console):
    logging.getLogger("config.test").warning('a %s with "quotes"\nand a line break', "message")
    (line,) = console()
    assert line["event"] == 'a message with "quotes"\nand a line break'
    assert line["level"] == "warning" and line["logger"] == "config.test" and line["request_id"] == "-"
    assert line["timestamp"].endswith("Z")


def test_an_access_line_per_request_with_user_and_databases(console):
    user = get_user_model().objects.create_user("logged", "l@example.com", "x")
    token = api_token_create(user=user)
    app = dispatcher(ApiHandler(), None, None)  # Django's path
    call(app, environ(f"/api/users/{user.pk}", HTTP_AUTHORIZATION=f"Token {token}", HTTP_X_REQUEST_ID="acc-1"))
    (access,) = [line for line in console() if line["logger"] == "access"]
    assert access["method"] == "GET" and access["path"] == f"/api/users/{user.pk}" and access["status"] == 200
    assert access["request_id"] == "acc-1" and access["user_id"] == user.pk and access["duration_ms"] >= 0
    assert set(access["databases"]) == {"default"}
    assert set(access["databases"]["default"]) == {"held_ms", "wait_ms"}
    # The fast lane writes the same line.
    call(dispatcher(ApiHandler(), None, Lane()), environ(f"/api/users/{user.pk}", HTTP_AUTHORIZATION=f"Token {token}"))
    lane = [line for line in console() if line["logger"] == "access"][-1]
    assert {k: lane[k] for k in ("method", "path", "status", "user_id")} == {
        k: access[k] for k in ("method", "path", "status", "user_id")
    }
    assert set(lane["databases"]) == {"default"}


def test_anonymous_requests_and_requests_without_a_database(console):
    call(dispatcher(ApiHandler(), None, None), environ("/healthz"))
    (access,) = [line for line in console() if line["logger"] == "access"]
    assert access["status"] == 200 and access["user_id"] is None and access["databases"] == {}


SECRETS = [
    "connect failed: postgres://app:Sup3rSecretPw@db.internal:5432/market",
    "connect failed: host=db user=app password=Sup3rSecretPw dbname=market",
]


@pytest.mark.parametrize("message", SECRETS)
def test_a_password_never_reaches_a_log_line_in_either_format(message):
    record = logging.LogRecord("config.multidb", logging.ERROR, __file__, 1, message, None, None)
    RequestIdFilter().filter(record)
    try:
        raise RuntimeError(message)
    except RuntimeError:
        import sys

        with_exc = logging.LogRecord("config.multidb", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    RequestIdFilter().filter(with_exc)
    for formatter in (json_formatter(), TextFormatter()):
        for rec in (record, with_exc):
            text = formatter.format(rec)
            assert "Sup3rSecretPw" not in text and "********" in text


def test_the_text_format_names_the_request():
    record = logging.LogRecord("config", logging.INFO, __file__, 1, "hello", None, None)
    with bound("txt-1"):
        RequestIdFilter().filter(record)
    assert "config [txt-1] hello" in TextFormatter().format(record)


FIXED = ["request_id", "level", "logger", "timestamp"]


def test_the_access_line_is_the_json_of_its_fields(console):
    """The line is built by hand (config/httpkit/logs.py, for speed): it must still be valid
    JSON holding exactly its fields, whatever a path holds."""
    path = '/api/"odd"\\path/\u00fc\n\u2028\x01'
    with bound("odd-1"):
        log_access("GET", path, 404, time.perf_counter(), 7, {"default": {"held_ms": 1.234, "wait_ms": 0.0}})
    raw = console.stream.getvalue().splitlines()
    (line,) = [json.loads(text) for text in raw]
    assert f'"path": {json.dumps(path)}, ' in raw[0]  # escaped as json.dumps escapes
    assert list(line) == [*"event method path status duration_ms user_id databases".split(), *FIXED]
    assert line["event"].startswith(f"GET {path} 404 ") and line["event"].endswith("ms")
    assert {k: line[k] for k in ("method", "path", "status", "user_id", "request_id", "level", "logger")} == {
        "method": "GET",
        "path": path,
        "status": 404,
        "user_id": 7,
        "request_id": "odd-1",
        "level": "info",
        "logger": "access",
    }
    assert line["databases"] == {"default": {"held_ms": 1.23, "wait_ms": 0.0}} and line["duration_ms"] >= 0


@pytest.mark.parametrize("at", [0.0, 1733241600.25, 1733241659.5, 1733241660.000123])
def test_the_access_lines_timestamp_is_utc_iso_to_the_microsecond(at):
    for t in (at, at + 1, at):  # the cached second changes and comes back
        text = _timestamp(t)
        assert text.endswith("Z") and len(text) == len("2024-12-03T16:00:00.000000Z")
        parsed = datetime.datetime.fromisoformat(text[:-1]).replace(tzinfo=datetime.UTC)
        assert abs(parsed.timestamp() - t) < 2e-6


def test_other_handlers_get_the_access_record_as_from_logging(console):
    """Only a JSON console handler gets the line written directly; any other handler (here the
    text format) gets a LogRecord, and the console still one line."""
    text = io.StringIO()
    handler = logging.StreamHandler(text)
    handler.setFormatter(TextFormatter())
    handler.addFilter(RequestIdFilter())
    access_log.addHandler(handler)
    try:
        call(dispatcher(ApiHandler(), None, None), environ("/healthz", HTTP_X_REQUEST_ID="txt-2"))
    finally:
        access_log.removeHandler(handler)
    (line,) = text.getvalue().splitlines()
    assert " INFO access [txt-2] GET /healthz 200 " in line
    (access,) = [line for line in console() if line["logger"] == "access"]
    assert access["request_id"] == "txt-2"


def test_a_filter_on_the_access_logger_is_obeyed(console):
    class DropAll(logging.Filter):
        def filter(self, record):
            return False

    dropper = DropAll()
    access_log.addFilter(dropper)
    try:
        call(dispatcher(ApiHandler(), None, None), environ("/healthz"))
    finally:
        access_log.removeFilter(dropper)
    assert [line for line in console() if line["logger"] == "access"] == []
