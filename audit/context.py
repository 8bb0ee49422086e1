"""Who is acting: the actor recorded on every audit event written in this context.

A ContextVar, so each request thread (and each asyncio task) has its own. The
admin middleware sets a lazy actor (the session user, resolved only when an
audited save actually happens), the API's `token_required` sets the token's
user, and anything else (management commands, shells) is `cli:<os user>`.
Resolving the actor never queries a database: the capture path must work with
the shared database down.
"""

from __future__ import annotations

import contextlib
import functools
import getpass
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.conf import settings


@dataclass(frozen=True)
class Actor:
    label: str  # a username, or `cli:<os user>` / `anonymous`
    id: int | None = None  # auth_user.id in the shared database


# An Actor, a user, a label, or a zero-argument callable returning one of these.
_actor: ContextVar[Any] = ContextVar("audit_actor", default=None)


@functools.cache
def _os_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry (containers): the uid still says who
        return f"uid{os.getuid()}"


def default_actor() -> Actor:
    """The actor when nobody set one: web requests without a user are anonymous, the rest are the CLI."""
    if getattr(settings, "APP_ROLE", "cli") == "web":
        return Actor("anonymous")
    return Actor(f"cli:{_os_user()}")


def _as_actor(value: Any) -> Actor | None:
    if value is None:
        return None
    if isinstance(value, Actor):
        return value
    if isinstance(value, str):
        return Actor(value[:150])
    if callable(value) and not hasattr(value, "_meta"):
        return _as_actor(value())
    # A user instance: its username is already loaded, no query.
    if getattr(value, "is_authenticated", False):
        return Actor(str(value.get_username())[:150], value.pk)
    return None


def current_actor() -> Actor:
    """The actor of the current context (never None)."""
    return _as_actor(_actor.get()) or default_actor()


@contextlib.contextmanager
def acting_as(user_or_label: Any) -> Iterator[None]:
    """Attribute audited writes inside the block to a user, a label (`"cron:nightly"`) or a callable."""
    token = _actor.set(user_or_label)
    try:
        yield
    finally:
        _actor.reset(token)


def set_actor(user_or_label: Any | Callable[[], Any]):
    """Low-level: set the actor and return the token for `reset_actor` (middleware use)."""
    return _actor.set(user_or_label)


def reset_actor(token) -> None:
    _actor.reset(token)
