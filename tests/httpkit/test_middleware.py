"""A database fault becomes `503 database_unavailable` wherever it is raised: in a view,
or in a middleware (Django's own error handling: handler500, or the debug page with
DEBUG on). The fault here is real: `default`'s breaker is open, so opening a
connection to it fails before any network call."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connections
from django.test import Client, override_settings

from config.multidb.resilience.breaker import breaker_for

SESSION_COOKIE = "0123456789abcdefghijklmnopqrstuv"


class UserTouchingMiddleware:
    """Like many third-party middlewares: reads request.user (session and user from `default`)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.user.is_authenticated  # noqa: B018 -- loads the session
        return self.get_response(request)


def _open_default_breaker():
    breaker = breaker_for("default")
    for _ in range(settings.DATABASE_BREAKER_FAILURES):
        breaker.failure()
    connections["default"].close()  # the next query must open a connection again
    return breaker


def _client() -> Client:
    client = Client(raise_request_exception=False)
    client.cookies[settings.SESSION_COOKIE_NAME] = SESSION_COOKIE
    return client


def _assert_503_default(response):
    assert response.status_code == 503, response.content[:300]
    body = response.json()["error"]
    assert body["code"] == "database_unavailable" and body["database"] == "default"
    assert body["reason"] == "breaker_open"
    assert 0 < body["retry_after_ms"] <= settings.DATABASE_BREAKER_OPEN_SECONDS * 1000
    assert int(response["Retry-After"]) >= 1


@pytest.mark.django_db(databases=["default"], transaction=True)
def test_fault_in_a_view_is_a_503():
    _open_default_breaker()
    _assert_503_default(_client().get("/api/users/1"))


@pytest.mark.django_db(databases=["default"], transaction=True)
@pytest.mark.parametrize("debug", [False, True], ids=["handler500", "debug-page"])
def test_fault_in_a_middleware_is_a_503_not_a_500(debug):
    stack = list(settings.MIDDLEWARE)
    stack.insert(
        stack.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1, f"{__name__}.UserTouchingMiddleware"
    )
    with override_settings(MIDDLEWARE=stack, DEBUG=debug):
        _open_default_breaker()
        _assert_503_default(_client().get("/healthz"))


@pytest.mark.django_db(databases=["default"], transaction=True)
def test_a_real_bug_is_still_a_500():
    """Only database faults are turned into 503: anything else stays visible as an error."""
    stack = list(settings.MIDDLEWARE) + [f"{__name__}.BrokenMiddleware"]
    with override_settings(MIDDLEWARE=stack, DEBUG=False):
        response = _client().get("/healthz")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"


class BrokenMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        raise RuntimeError("a bug")
