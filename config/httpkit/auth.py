"""Token authentication for the API: `Authorization: Token <key>`, checked by the authenticator
the tokens' app registers (config.users), and the one parser of Authorization headers."""

from __future__ import annotations

import hmac
from collections.abc import Callable


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
    """`context(user)` (a context manager) wraps every API operation called with a token; apps add
    theirs from AppConfig.ready() (audit: the actor of the request's writes)."""
    if context not in _request_contexts:
        _request_contexts.append(context)


def request_contexts() -> list[Callable]:
    return _request_contexts


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
