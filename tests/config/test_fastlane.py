"""The fast lane (config/fastlane.py) answers exactly what Django's path answers, or steps aside.

Each request is sent to both, in-process against the test database: the
project's WSGI application (lane first) and the API handler alone (Django's
request path); status, headers and body must be identical.
"""
from __future__ import annotations

import io
import sys

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import override_settings
from prometheus_client import REGISTRY

from config import breaker, replicas
from config.fastlane import Lane
from config.wsgi import ApiHandler, dispatcher

pytestmark = pytest.mark.django_db(databases=["default"], transaction=True)


def environ(path: str, method: str = "GET", host: str = "127.0.0.1", **extra) -> dict:
    env = {"REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
           "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": host,
           "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr, "wsgi.url_scheme": "http"}
    env.update(extra)
    return env


def call(app, env: dict) -> tuple[str, dict, bytes] | None:
    connections["default"].close()  # as between two requests (the test's own work left it open)
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    answer = app(env, start_response)
    if answer is None:
        return None
    body = b"".join(answer)
    getattr(answer, "close", lambda: None)()  # Django's request_finished
    return seen["status"], seen["headers"], body


def both(env_factory) -> tuple[tuple, tuple]:
    """(lane's answer, Django's answer) to the same request; the lane must not step aside."""
    lane = call(Lane(), env_factory())
    assert lane is not None, "the lane stepped aside"
    return lane, call(ApiHandler(), env_factory())


@pytest.fixture
def user():
    return get_user_model().objects.create_user("lane-user", "lane@example.com", "x")


def test_found_and_not_found_are_identical_to_django(user):
    for user_id in (user.pk, user.pk + 1000, 10**25):
        lane, django = both(lambda: environ(f"/api/users/{user_id}"))
        assert lane == django
    status, headers, body = both(lambda: environ(f"/api/users/{user.pk}"))[0]
    assert status == "200 OK" and headers["Content-Length"] == str(len(body))
    assert body == b'{"data": {"id": %d, "username": "lane-user", "email": "lane@example.com"}}' % user.pk


def test_the_connection_goes_back_to_the_pool_and_metrics_count_it(user):
    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    requests = sample("platform_http_requests_total", domain="users", status="200")
    holds = sample("platform_db_connection_hold_seconds_count", route="api/users/<int:user_id>", alias="default")
    assert call(Lane(), environ(f"/api/users/{user.pk}"))[0] == "200 OK"
    assert connections["default"].connection is None
    assert sample("platform_http_requests_total", domain="users", status="200") == requests + 1
    assert sample("platform_db_connection_hold_seconds_count", route="api/users/<int:user_id>",
                  alias="default") == holds + 1


def test_database_unavailable_is_the_same_503_naming_the_database(user):
    shared = breaker.breaker_for("default")
    shared.open_seconds = 60  # no probe closes it during the test
    try:
        for _ in range(shared.failures_to_open):
            shared.failure("test: refused")
        lane, django = both(lambda: environ(f"/api/users/{user.pk}"))
    finally:
        breaker.reset_all()
    assert lane[0] == "503 Service Unavailable"
    assert b'"code": "database_unavailable"' in lane[2] and b'"database": "default"' in lane[2]
    for answer in (lane, django):  # retry_after counts down between the two calls
        answer[1].pop("Retry-After")
    assert (lane[0], lane[1]) == (django[0], django[1])
    assert lane[2].split(b'"retry_after_ms"')[0] == django[2].split(b'"retry_after_ms"')[0]


@override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"), SECURE_HSTS_SECONDS=3600)
def test_https_behind_a_proxy_gets_the_same_security_headers(user):
    lane, django = both(lambda: environ(f"/api/users/{user.pk}", HTTP_X_FORWARDED_PROTO="https"))
    assert lane == django
    assert lane[1]["Strict-Transport-Security"] == "max-age=3600"


@pytest.mark.parametrize("env", [
    environ("/api/users/1", method="POST"),
    environ("/api/users/1", method="HEAD"),
    environ("/api/users/1/"),
    environ("/api/users/x1"),
    environ("/api/blog/posts"),
    environ("/api/users/1", host="evil.example.com"),
], ids=["post", "head", "slash", "not-int", "other-route", "forged-host"])
def test_anything_else_falls_through_to_django(env):
    assert Lane()(env, lambda *a: None) is None


def test_a_forged_host_gets_djangos_400_through_the_application():
    app = dispatcher(ApiHandler(), None, Lane())
    assert call(app, environ("/api/users/1", host="evil.example.com"))[0].startswith("400")


@override_settings(SECURE_SSL_REDIRECT=True)
def test_an_insecure_request_under_ssl_redirect_falls_through():
    assert Lane()(environ("/api/users/1"), lambda *a: None) is None
    assert Lane()(environ("/api/users/1", **{"wsgi.url_scheme": "https"}), lambda *a: None) is not None


def test_with_a_replica_the_read_goes_through_django(monkeypatch):
    monkeypatch.setattr(replicas, "has_replica", lambda base: True)
    assert Lane()(environ("/api/users/1"), lambda *a: None) is None
