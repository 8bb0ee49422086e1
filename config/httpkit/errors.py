"""One error shape for every answer: `ApiError` (raised by views and services, turned into a
response by DatabaseErrorMiddleware), JSON for the API and HTML pages for browsers, and the
503 that names an unavailable database."""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.db import InterfaceError, InternalError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

from config.httpkit import requestid
from config.multidb.conf.aliases import alias_or_none
from config.multidb.resilience.breaker import DatabaseUnavailable

# The paths config/wsgi.py sends through the API stack.
API_PREFIXES = ("/api/", "/healthz", "/readyz", "/metrics")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, headers: dict | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers  # Retry-After of a 429, say
        self.extra = extra


def error_body(code: str, message: str, **extra: Any) -> dict:
    """The one error shape: {"error": {"code", "message", ...extra, "request_id"}}."""
    error = {"code": code, "message": message, **extra}
    request_id = requestid.current()
    if request_id is not None:  # always, inside a request
        error["request_id"] = request_id
    return {"error": error}


def error_response(status: int, code: str, message: str, headers: dict | None = None, **extra: Any) -> JsonResponse:
    return JsonResponse(error_body(code, message, **extra), status=status, headers=headers)


def invalid(field: str, message: str, **extra: Any) -> ApiError:
    return ApiError(400, "invalid_request", message, field=field, **extra)


def unavailable_response(alias: str, retry_after: float = 1.0, reason: str = "", request=None) -> HttpResponse:
    """503 naming the database (the domain alias: `market`, not `market_jobs`), with Retry-After
    in whole seconds as HTTP wants it, and in milliseconds in the body; an HTML page for a browser
    (`request` given, outside the API)."""
    info = alias_or_none(alias)
    database = info.base if info is not None else alias
    retry_after = max(retry_after, 0.1)
    if not wants_json(request):
        return error_page(
            503,
            "Database unavailable",
            f"The {database} database does not answer right now. Try again in a few seconds.",
            headers={"Retry-After": str(max(int(retry_after + 0.999), 1))},
        )
    extra = {"database": database, "retry_after_ms": int(retry_after * 1000)}
    if reason:
        extra["reason"] = reason
    return error_response(
        503,
        "database_unavailable",
        f"database {database!r} is unavailable, try again shortly",
        headers={"Retry-After": str(max(int(retry_after + 0.999), 1))},
        **extra,
    )


_REASONS = {
    "57014": "statement_timeout",
    "25P03": "idle_in_transaction_timeout",
    "55P03": "lock_timeout",
    "40001": "conflict",
    "40P01": "conflict",
    "25006": "read_only",
}


def response_for_database_error(exc: BaseException | None, request=None) -> HttpResponse | None:
    """The answer for an API error or a database fault; None for anything else (a real bug).
    With the request, a browser page's database fault is an HTML page."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, headers=exc.headers, **exc.extra)
    if isinstance(exc, DatabaseUnavailable):
        return unavailable_response(exc.alias, exc.retry_after, exc.reason, request)
    alias = getattr(exc, "db_alias", None)
    if alias and isinstance(exc, (OperationalError, InterfaceError, InternalError)):
        sqlstate = getattr(exc.__cause__, "sqlstate", None) or ""
        if not sqlstate or sqlstate.startswith(("08", "57P")):
            reason = "connection_lost"
        else:
            reason = _REASONS.get(sqlstate, "database_error")
        return unavailable_response(alias, 1.0, reason, request)
    return None


def not_found(request, exception=None) -> HttpResponse:
    return error_response(404, "not_found", "no such endpoint")


def server_error(request) -> HttpResponse:
    """Last resort: a database fault anywhere still gets a 503 naming the alias, never a 500."""
    response = response_for_database_error(sys.exc_info()[1], request)
    if response is None and not wants_json(request):
        return error_page(500, "Server error", "Something went wrong on our side; it has been logged.")
    return response or error_response(500, "internal_error", "unexpected error")


def bad_request(request, exception=None) -> HttpResponse:
    """handler400. A Host outside DJANGO_ALLOWED_HOSTS (Django's DisallowedHost, the API stack's
    AllowedHostsMiddleware, the fast lane's fall-through) says which variable to change."""
    if isinstance(exception, DisallowedHost):
        # request.get_host() would raise again: read the header the way it does.
        host = request.META.get("HTTP_X_FORWARDED_HOST" if settings.USE_X_FORWARDED_HOST else "HTTP_HOST", "")
        logging.getLogger("config.httpkit.errors").warning(
            "refused a request for host %r: it is not in DJANGO_ALLOWED_HOSTS", host[:200]
        )
        message, extra = "the Host header names a host that is not in DJANGO_ALLOWED_HOSTS", {"field": "Host"}
    else:
        message, extra = "bad request", {}
    if wants_json(request):
        return error_response(400, "invalid_request", message, **extra)
    return error_page(400, "Bad request", message[:1].upper() + message[1:] + ".")


def wants_json(request: HttpRequest | None) -> bool:
    """JSON for the API's paths, and elsewhere for a client that prefers it over HTML."""
    if request is None:
        return True
    if request.path.startswith(API_PREFIXES):
        return True
    return request.get_preferred_type(["text/html", "application/json"]) == "application/json"


def error_page(status: int, title: str, message: str, headers: dict | None = None) -> HttpResponse:
    """A plain HTML error page. Rendered without the request: no context processor may touch
    a database that is down."""
    html = render_to_string("httpkit/error.html", {"status": status, "title": title, "message": message})
    return HttpResponse(html, status=status, headers=headers)
