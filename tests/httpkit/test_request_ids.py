"""X-Request-ID: on every answer (the client's own when well-formed), in every JSON error body,
and on every log line of the request; the fast lane and Django's path agree."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from config.httpkit.fastlane import Lane
from config.users.tokens import api_token_create
from config.wsgi import ApiHandler, dispatcher
from tests.support.wsgicall import call, environ

pytestmark = pytest.mark.django_db(databases=["default", "blog", "market"], transaction=True)

NEW_ID = re.compile(r"[0-9a-f]{32}\Z")


@pytest.fixture
def console():
    """What the configured console handler (settings.LOGGING) writes, as text."""
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "formatter", None) and h.filters)
    stream = io.StringIO()
    previous = handler.setStream(stream)
    try:
        yield stream
    finally:
        handler.setStream(previous)


@pytest.fixture
def token():
    return api_token_create(user=get_user_model().objects.create_user("rid", "rid@example.com", "x"))


def test_the_clients_id_is_echoed_in_the_header_the_error_and_the_log_line(token, console):
    env = environ("/api/market/accounts/999999", HTTP_AUTHORIZATION=f"Token {token}", HTTP_X_REQUEST_ID="abc-123.x")
    status, headers, body = call(dispatcher(ApiHandler(), None, Lane()), env)  # as gunicorn calls it
    assert status.startswith("404")
    assert headers["X-Request-ID"] == "abc-123.x"
    assert json.loads(body)["error"]["request_id"] == "abc-123.x"
    lines = [json.loads(line) for line in console.getvalue().splitlines() if "/api/market/accounts/999999" in line]
    assert {line["logger"] for line in lines} == {"access", "django.request"}  # the access line, Django's 404
    assert all(line["request_id"] == "abc-123.x" for line in lines)


@pytest.mark.parametrize("sent", [None, "", "has space", "x" * 129, "new\nline", "-leading-dash", "ünï"])
def test_a_missing_or_malformed_id_is_replaced_never_echoed(sent):
    extra = {} if sent is None else {"HTTP_X_REQUEST_ID": sent}
    env = environ("/api/blog/posts/no-such-post", **extra)
    if sent is None:
        del env["HTTP_X_REQUEST_ID"]
    status, headers, body = call(ApiHandler(), env)
    assert status.startswith("404")
    assert NEW_ID.match(headers["X-Request-ID"]) and headers["X-Request-ID"] != sent
    assert json.loads(body)["error"]["request_id"] == headers["X-Request-ID"]


def test_two_requests_without_an_id_get_different_ones():
    ids = set()
    for _ in range(2):
        env = environ("/healthz")
        del env["HTTP_X_REQUEST_ID"]
        ids.add(call(ApiHandler(), env)[1]["X-Request-ID"])
    assert len(ids) == 2


def test_the_fast_lane_carries_the_id_as_django_does(token, console):
    user_id = get_user_model().objects.get(username="rid").pk
    for path in (f"/api/users/{user_id}", f"/api/users/{user_id + 10**6}"):
        env = lambda: environ(path, HTTP_AUTHORIZATION=f"Token {token}", HTTP_X_REQUEST_ID="lane-1")  # noqa: E731
        lane = call(Lane(), env())
        assert lane is not None and lane == call(ApiHandler(), env())
        assert lane[1]["X-Request-ID"] == "lane-1"
    assert json.loads(lane[2])["error"]["request_id"] == "lane-1"
    lines = [json.loads(line) for line in console.getvalue().splitlines()]
    assert any(line["logger"] == "django.request" and line["request_id"] == "lane-1" for line in lines)  # the 404
    # Without an id of the client's, the lane makes one and puts it in the body too.
    env = environ(f"/api/users/{user_id + 10**6}")
    del env["HTTP_X_REQUEST_ID"]
    status, headers, body = call(Lane(), env)
    assert NEW_ID.match(headers["X-Request-ID"]) and json.loads(body)["error"]["request_id"] == headers["X-Request-ID"]


def test_admin_pages_carry_an_id_too():
    response = Client().get("/admin/login/", HTTP_X_REQUEST_ID="admin-1")
    assert response.status_code == 200 and response["X-Request-ID"] == "admin-1"
    assert NEW_ID.match(Client().get("/admin/login/")["X-Request-ID"])


def test_log_lines_outside_a_request_say_so(console):
    logging.getLogger("config").warning("outside any request")
    line = json.loads(console.getvalue().splitlines()[-1])
    assert line["event"] == "outside any request" and line["request_id"] == "-"
