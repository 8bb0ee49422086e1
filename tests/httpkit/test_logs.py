"""Log lines (config/httpkit/logs.py): JSON objects by default, text on request; an access line
per request naming the databases it used; never a database password."""

from __future__ import annotations

import io
import json
import logging

import pytest
from django.contrib.auth import get_user_model

from config.httpkit.fastlane import Lane
from config.httpkit.logs import TextFormatter, json_formatter
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
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
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
