"""The JSON API's shared pieces: one error shape, strict body parsing, token auth.

Every failure a client can cause is an `ApiError` with a stable code; views
raise it and `DatabaseErrorMiddleware` turns it into a response.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse

from config.multidb.resilience.breaker import DatabaseUnavailable


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, headers: dict | None = None, **extra: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers  # Retry-After of a 429, say
        self.extra = extra


def error_response(status: int, code: str, message: str, headers: dict | None = None, **extra: Any) -> JsonResponse:
    body = {"error": {"code": code, "message": message, **extra}}
    return JsonResponse(body, status=status, headers=headers)


def unavailable_response(alias: str, retry_after: float = 1.0, reason: str = "", request=None) -> HttpResponse:
    """503 naming the database (the domain alias: `market`, not `market_jobs`), with Retry-After
    in whole seconds as HTTP wants it, and in milliseconds in the body; an HTML page for a browser
    (`request` given, outside the API)."""
    from config.httpkit import pages

    info = settings.DATABASE_ALIASES.get(alias)
    database = info.base if info is not None else alias
    retry_after = max(retry_after, 0.1)
    if not pages.wants_json(request):
        return pages.error_page(
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


def json_body(request: HttpRequest, *, required: set[str], optional: set[str] = frozenset()) -> dict[str, Any]:
    """Parse a JSON object body: 400 for malformed JSON, missing or unknown fields; 413 for oversized.

    Only the shape is checked here; each value then goes through one of the rules below."""
    too_big = ApiError(413, "payload_too_large", f"body larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes")
    try:
        # Django refuses a declared Content-Length above the limit while reading the body.
        body = request.body
    except RequestDataTooBig:
        raise too_big from None
    if len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        raise too_big
    try:
        data = json.loads(request.body or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise ApiError(400, "invalid_request", "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "body must be a JSON object")
    missing = sorted(required - data.keys())
    if missing:
        raise invalid(missing[0], f"missing field(s): {', '.join(missing)}", fields=missing)
    unknown = sorted(data.keys() - required - set(optional))
    if unknown:
        names = [n if _printable(n) else ascii(n) for n in unknown]  # a key may hold NUL or surrogates
        raise invalid(names[0], f"unknown field(s): {', '.join(names)}", fields=names)
    return data


# Input rules ---------------------------------------------------------------------------------------
# Every value a client sends (body field, query parameter, path parameter, header) passes one of
# these before anything reads or writes with it: a bad one is `400 invalid_request` whose `field`
# and message name it. Each is a plain function (value, field, limits) -> clean value, so a typed
# schema can call it from its validator unchanged.
#
# Text PostgreSQL cannot store (NUL; unpaired surrogates, which json.loads accepts from "\ud800"
# escapes but UTF-8 cannot encode) is refused everywhere. Free text is stripped, then measured,
# so the length checked is the length stored. Keys (skus, slugs, cursors, idempotency keys) are
# never stripped or otherwise repaired: they must match their pattern exactly (fullmatch: `$` would
# let a final newline through).

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode Cc: no line breaks or tabs in one-line text
_CONTROL_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # tab, LF and CR allowed
_ASCII_DIGITS = re.compile("[0-9]{1,19}")  # str.isdigit() also takes "²" and "١", which int() refuses or reads
_PRINTABLE = re.compile("[\x20-\x7e]*")


def _printable(text: str) -> bool:
    return _PRINTABLE.fullmatch(text) is not None


def invalid(field: str, message: str, **extra: Any) -> ApiError:
    return ApiError(400, "invalid_request", message, field=field, **extra)


def _refuse_unstorable(value: str, field: str) -> None:
    if "\x00" in value:
        raise invalid(field, f"{field} must not contain NUL characters")
    if _SURROGATE.search(value):
        raise invalid(field, f"{field} must not contain unpaired surrogates (\\ud800-\\udfff)")


def clean_text(
    value: Any, field: str, *, max_length: int, multiline: bool = False, allow_empty: bool = False, strip: bool = True
) -> str:
    """Free text (a title, a name, a body): stripped unless `strip` is False; one line unless `multiline`."""
    if not isinstance(value, str):
        raise invalid(field, f"{field} must be a string")
    _refuse_unstorable(value, field)
    if strip:
        value = value.strip()
    if (_CONTROL_MULTILINE if multiline else _CONTROL).search(value):
        what = "control characters" if multiline else "line breaks, tabs or other control characters"
        raise invalid(field, f"{field} must not contain {what}")
    if not value and not allow_empty:
        raise invalid(field, f"{field} must not be empty")
    if len(value) > max_length:
        raise invalid(field, f"{field} is longer than {max_length} characters")
    return value


def clean_key(value: Any, field: str, *, pattern: re.Pattern, max_length: int, description: str) -> str:
    """An identifier the client must send exactly: `pattern.fullmatch`, at most `max_length` characters.
    `description` completes "<field> must be ..." for a value that does not match."""
    if not isinstance(value, str):
        raise invalid(field, f"{field} must be a string")
    _refuse_unstorable(value, field)
    if value != value.strip():
        raise invalid(field, f"{field} must not start or end with whitespace or a line break")
    if len(value) > max_length:
        raise invalid(field, f"{field} is longer than {max_length} characters")
    if not pattern.fullmatch(value):
        raise invalid(field, f"{field} must be {description}")
    return value


def clean_int(value: Any, field: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """A JSON integer (not a bool, a float or a numeric string) within the column's range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field, f"{field} must be an integer")
    if minimum is not None and maximum is not None:
        if not minimum <= value <= maximum:
            raise invalid(field, f"{field} must be between {minimum} and {maximum}")
    elif minimum is not None and value < minimum:
        raise invalid(field, f"{field} must be at least {minimum}")
    elif maximum is not None and value > maximum:
        raise invalid(field, f"{field} must be at most {maximum}")
    return value


def query_int(request: HttpRequest, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """A query parameter of ASCII digits within [minimum, maximum]; `default` when absent."""
    raw = request.GET.get(name)
    if raw is None:
        return default
    if not _ASCII_DIGITS.fullmatch(raw) or not minimum <= int(raw) <= maximum:
        raise invalid(name, f"{name} must be an integer from {minimum} to {maximum}")
    return int(raw)


def query_key(request: HttpRequest, name: str, *, pattern: re.Pattern, max_length: int, description: str):
    """An optional key in the query string (a cursor): None when absent or empty, else `clean_key`."""
    raw = request.GET.get(name)
    if not raw:
        return None
    return clean_key(raw, name, pattern=pattern, max_length=max_length, description=description)


def require_int(data: dict, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    return clean_int(data.get(name), name, minimum=minimum, maximum=maximum)


def require_str(data: dict, name: str, *, max_length: int, allow_empty: bool = False, multiline: bool = False) -> str:
    """`clean_text` of a body field; text that may be empty (a post's body) is kept as sent, unstripped."""
    return clean_text(
        data.get(name), name, max_length=max_length, multiline=multiline, allow_empty=allow_empty, strip=not allow_empty
    )


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


_authenticators: list[Callable] = []
_request_contexts: list[Callable] = []


def add_request_context(context: Callable) -> None:
    """`context(user)` (a context manager) wraps every view behind token_required; apps add
    theirs from AppConfig.ready() (audit: the actor of the request's writes)."""
    if context not in _request_contexts:
        _request_contexts.append(context)


def set_token_authenticator(authenticate: Callable) -> None:
    """Install `authenticate(key=..., write=...) -> user | None`, the one check of a key; the
    app that owns tokens (config.users) calls it from AppConfig.ready()."""
    _authenticators[:] = [authenticate]


def token_user(authorization: str, method: str):
    """The active user of an `Authorization: Token <key>` header value, or None. A write
    (any unsafe method) is counted against the token's write rate (an ApiError beyond it)."""
    scheme, _, key = authorization.partition(" ")
    key = key.strip()
    if scheme != "Token" or not key or not _authenticators:
        return None
    return _authenticators[0](key=key, write=method not in SAFE_METHODS)


def token_optional(request: HttpRequest):
    """The user of the `Authorization: Token` header, None without the header; 401 when the header is not valid
    (a client that sends a bad key should hear so, not silently get the anonymous answer)."""
    header = request.headers.get("Authorization", "")
    if not header:
        return None  # anonymous: no query at all
    user = token_user(header, request.method)
    if user is None:
        raise ApiError(401, "not_authenticated", "the 'Authorization: Token <key>' header is not valid")
    return user


def token_required(view: Callable | None = None, *, perm: str | None = None):
    """`Authorization: Token <key>`: 401 not_authenticated without a valid key; with `perm`
    (Django's "<app>.<codename>", which superusers hold), 403 forbidden for a user without it.
    Staff status alone grants nothing here."""

    def decorate(func):
        @functools.wraps(func)
        def wrapper(request, *args, **kwargs):
            user = token_user(request.headers.get("Authorization", ""), request.method)
            if user is None:
                return error_response(
                    401, "not_authenticated", "a valid 'Authorization: Token <key>' header is required"
                )
            if perm is not None and not user.has_perm(perm):
                return error_response(403, "forbidden", f"this needs the permission {perm}")
            request.api_user = user
            with contextlib.ExitStack() as stack:
                for context in _request_contexts:  # audit: writes of this request name the token's user
                    stack.enter_context(context(user))
                return func(request, *args, **kwargs)

        return wrapper

    return decorate(view) if view is not None else decorate


def methods(**handlers: Callable) -> Callable:
    """One URL, a view per method; 405 with the error shape for any other method."""

    def dispatch(request, *args, **kwargs):
        handler = handlers.get(request.method.lower())
        if handler is None:
            allowed = ", ".join(sorted(m.upper() for m in handlers))
            response = error_response(405, "method_not_allowed", f"allowed: {allowed}")
            response["Allow"] = allowed
            return response
        return handler(request, *args, **kwargs)

    dispatch.csrf_exempt = True
    return dispatch


def not_found(request, exception=None) -> HttpResponse:
    return error_response(404, "not_found", "no such endpoint")


def server_error(request) -> HttpResponse:
    """Last resort: a database fault anywhere still gets a 503 naming the alias, never a 500."""
    import sys

    from config.httpkit import pages

    response = response_for_database_error(sys.exc_info()[1], request)
    if response is None and not pages.wants_json(request):
        return pages.error_page(500, "Server error", "Something went wrong on our side; it has been logged.")
    return response or error_response(500, "internal_error", "unexpected error")


def bad_request(request, exception=None) -> HttpResponse:
    """handler400. A Host outside DJANGO_ALLOWED_HOSTS (Django's DisallowedHost, the API stack's
    AllowedHostsMiddleware, the fast lane's fall-through) says which variable to change."""
    import logging

    from django.core.exceptions import DisallowedHost

    from config.httpkit import pages

    if isinstance(exception, DisallowedHost):
        # request.get_host() would raise again: read the header the way it does.
        host = request.META.get("HTTP_X_FORWARDED_HOST" if settings.USE_X_FORWARDED_HOST else "HTTP_HOST", "")
        logging.getLogger("config.httpkit.http").warning(
            "refused a request for host %r: it is not in DJANGO_ALLOWED_HOSTS", host[:200]
        )
        message, extra = "the Host header names a host that is not in DJANGO_ALLOWED_HOSTS", {"field": "Host"}
    else:
        message, extra = "bad request", {}
    if pages.wants_json(request):
        return error_response(400, "invalid_request", message, **extra)
    return pages.error_page(400, "Bad request", message[:1].upper() + message[1:] + ".")


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
    from django.db import InterfaceError, InternalError, OperationalError

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
