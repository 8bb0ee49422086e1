"""Token authentication for the API: `Authorization: Token <key>`, checked by the authenticator
the tokens' app registers (config.users), and the one parser of Authorization headers."""

from __future__ import annotations

import contextlib
import functools
import hmac
from collections.abc import Callable

from django.http import HttpRequest

from config.httpkit.errors import ApiError, error_response


def credentials(header: str, scheme: str) -> str | None:
    """The credentials of an `Authorization: <scheme> <credentials>` header value, None for
    another scheme or none at all (the scheme compares case-insensitively, as RFC 9110 says)."""
    given_scheme, _, value = header.partition(" ")
    value = value.strip()
    if given_scheme.lower() != scheme.lower() or not value:
        return None
    return value


def credentials_match(header: str, scheme: str, secret: str) -> bool:
    """Whether the header carries exactly `secret`; compare_digest, so the time taken does not
    tell how much of a guess was right."""
    given = credentials(header, scheme)
    return given is not None and hmac.compare_digest(given.encode(), secret.encode())


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
    key = credentials(authorization, "Token")
    if key is None or not _authenticators:
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
    request.api_user = user
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
