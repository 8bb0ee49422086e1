"""API tokens: created with a key shown once, stored as a digest, checked per request."""

from __future__ import annotations

import functools
import hashlib
import secrets
import threading
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connections, router, transaction

from config.httpkit.errors import ApiError
from config.users.models import ApiToken


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_token_create(*, user) -> str:
    """Create a token for `user` and return its key (the only time it exists in clear)."""
    key = secrets.token_urlsafe(32)
    while key.startswith("-"):  # its prefix must read as an argument: `revoke_api_token <prefix>`
        key = secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, prefix=key[:8], digest=_digest(key))
    return key


# In the model's field order: Model.from_db() fills the fields it is given in that order.
_TOKEN_USER_FIELDS = ["id", "is_superuser", "username", "is_staff", "is_active"]
READ_TOUCH_SECONDS = 60  # a request records last_used_at at most this often (a claim always does)
WRITE_WINDOW_SECONDS = 60
# A worker claims this share of a token's per-minute rate at a time (at least one write).
CLAIM_SHARE = 100


@functools.cache
def _token_sql() -> tuple[str, str, str, str]:
    """(authenticate, touch, claim, claim outside a transaction).

    Authenticate: one read-only statement that returns the user, whether last_used_at is over
    a minute old, and the ids of the user's permissions (direct and through groups). The ids
    come in the same round trip (ModelBackend's two lazy queries would cost more than the
    lookup itself) and are never cached beyond the request, so a revoked permission or token
    stops working at the next request; only the names of permission ids are cached
    (`_permission_names`). Superusers need none: Django grants them everything without
    asking a backend. Measured with pgbench on this machine (4 clients): the plain lookup of
    user and token ran at 38k statements/s; with the names joined in and last_used_at
    recorded by a CTE of the same statement, 14k/s; with ids and no CTE (this one), 26k/s.
    """
    User = get_user_model()
    groups = User.groups.through._meta.db_table
    user_perms = User.user_permissions.through._meta.db_table
    group_perms = Group.permissions.through._meta.db_table
    perms = f"""CASE WHEN u.is_superuser THEN NULL ELSE ARRAY(
        SELECT up.permission_id FROM {user_perms} up WHERE up.user_id = u.id
        UNION ALL
        SELECT gp.permission_id FROM {groups} ug JOIN {group_perms} gp ON gp.group_id = ug.group_id
        WHERE ug.user_id = u.id) END"""
    user_cols = "u.id, u.is_superuser, u.username, u.is_staff, u.is_active"
    token, users = ApiToken._meta.db_table, User._meta.db_table
    stale = f"(t.last_used_at IS NULL OR t.last_used_at < now() - make_interval(secs => {READ_TOUCH_SECONDS}))"
    read = f"""SELECT {user_cols}, {perms}, {stale}
    FROM {token} t JOIN {users} u ON u.id = t.user_id
    WHERE t.digest = %(digest)s AND u.is_active"""
    # Rechecked on the newest row version after a lock wait: concurrent requests write it once.
    touch = f"UPDATE {token} t SET last_used_at = now() WHERE t.digest = %(digest)s AND {stale}"
    # A claim of `n` writes from this minute's window (see _claim_write): one UPDATE on the token
    # row. Windows start on the database's clock, the one clock every instance shares; a
    # window never moves back, should a failover bring a clock that is behind.
    window = f"to_timestamp(floor(extract(epoch FROM now()) / {WRITE_WINDOW_SECONDS}) * {WRITE_WINDOW_SECONDS})"
    claim = f"""UPDATE {token} t SET
        last_used_at = now(),
        write_window = GREATEST(t.write_window, {window}),
        write_count = CASE WHEN t.write_window >= {window} THEN t.write_count + %(n)s ELSE %(n)s END
    WHERE t.digest = %(digest)s
    RETURNING t.write_count, ceil(extract(epoch FROM t.write_window - now()) + {WRITE_WINDOW_SECONDS})::integer"""
    # Every claim of one token updates the same row, so claims queue on its lock, and a
    # commit holds the lock until the WAL is flushed. This transaction's commit alone
    # skips the wait (set_config(..., true) is SET LOCAL); a crash can lose the last
    # fraction of a second of counts and last-used times.
    claim_fast = claim.replace(
        "WHERE t.digest",
        "WHERE (SELECT set_config('synchronous_commit', 'off', true)) = 'off' AND t.digest",
    )
    return read, touch, claim, claim_fast


class RateLimited(ApiError):
    def __init__(self, *, limit: int, retry_after: int):
        retry_after = max(retry_after, 1)
        super().__init__(
            429,
            "rate_limited",
            f"more than {limit} writes a minute with this token; retry after the Retry-After header's seconds",
            headers={"Retry-After": str(retry_after)},
        )


def write_rate_per_minute() -> int:
    """Writes allowed per token and minute, across every worker and instance; 0 = no limit."""
    limit = getattr(settings, "API_WRITE_RATE_PER_MINUTE", None)
    return settings.ENV["API_WRITE_RATE_PER_MINUTE"] if limit is None else limit


class _Claims:
    """Writes this process may still make per token (by digest) in the current window.

    The count of a token's writes lives on its row in the database, the one place every
    worker and instance sees. Counting each write there made every write of one token
    update that row, and writes of one token queued on its lock (transfers of one token:
    ~640 requests/s without the count, ~360 with it, ~530 with the commit not waiting for
    the WAL). So a worker claims a slice of the rate at once (1/CLAIM_SHARE of it, at least
    one write) and spends it locally until the window ends: the total across workers and
    instances never exceeds the limit, and a token can be refused at most (slice - 1) writes
    early per worker holding an unspent slice. Limits below CLAIM_SHARE are counted write
    by write, exactly.

    A library (django-ratelimit and the like) counts in Django's cache, which would need a
    shared cache server this platform does not run; the database is already shared.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._left: dict[str, tuple[float, int]] = {}  # digest -> (window end, monotonic; writes left)

    def take(self, digest: str) -> bool:
        with self._lock:
            ends, left = self._left.get(digest, (0.0, 0))
            if left <= 0 or time.monotonic() >= ends:
                return False
            self._left[digest] = (ends, left - 1)
            return True

    def grant(self, digest: str, *, left: int, seconds: int) -> None:
        with self._lock:
            now = time.monotonic()
            if len(self._left) > 10_000:  # forget ended windows; bounded however many tokens write
                self._left = {d: v for d, v in self._left.items() if v[0] > now}
            self._left[digest] = (now + seconds, left)

    def clear(self) -> None:
        with self._lock:
            self._left.clear()


_claims = _Claims()


def _claim_write(connection, digest: str, limit: int) -> bool:
    """Count one write of the token against `limit`: locally when this process holds a slice
    of the window, else by claiming one from the token's row. `RateLimited` beyond it; False
    when the token was deleted meanwhile."""
    if _claims.take(digest):
        return True
    _, _, claim_sql, claim_fast_sql = _token_sql()
    size = max(1, limit // CLAIM_SHARE)
    # In a caller's transaction the setting would reach the caller's own writes: not there.
    sql = claim_sql if connection.in_atomic_block else claim_fast_sql
    with connection.cursor() as cursor:
        cursor.execute(sql, {"digest": digest, "n": size})
        row = cursor.fetchone()
    if row is None:  # revoked since it was authenticated
        return False
    count, retry_after = row
    granted = min(size, limit - (count - size))  # what was left of the limit before this claim
    if granted <= 0:
        raise RateLimited(limit=limit, retry_after=retry_after)
    if granted > 1:
        _claims.grant(digest, left=granted - 1, seconds=retry_after)
    return True


def api_token_authenticate(*, key: str, write: bool = False):
    """The active user a key belongs to, or None; with `write`, the request is counted
    against the token's write rate and `RateLimited` raised beyond it.

    The user instance carries only the fields authorisation needs (the others load on
    first access, as deferred fields do) and its permissions, so `has_perm` costs no query.
    """
    if not key or len(key) > 128:
        return None
    try:
        digest = _digest(key)
    except UnicodeEncodeError:  # a lone surrogate: no key we issued
        return None
    read_sql, touch_sql, _, _ = _token_sql()
    User = get_user_model()
    # The primary, always: the statement writes, and a revoked token must stop at once
    # (a lagging replica would still know it).
    alias = router.db_for_write(ApiToken)
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(read_sql, {"digest": digest})
        row = cursor.fetchone()
    if row is None:
        return None
    *fields, perm_ids, stale = row
    limit = write_rate_per_minute() if write else 0
    if limit > 0:
        if not _claim_write(connection, digest, limit):  # a claim records last_used_at too
            return None
    elif stale:  # at most once a minute per token
        with connection.cursor() as cursor:
            cursor.execute(touch_sql, {"digest": digest})
    user = User.from_db(alias, _TOKEN_USER_FIELDS, fields)
    if perm_ids is not None:
        user._perm_cache = _permission_names(connection, perm_ids)  # as ModelBackend.get_all_permissions
    return user


class _PermissionNames:
    """ "<app_label>.<codename>" of every permission id, read once per process and again when
    an id is unknown (a permission created since) or permissions or content types change in
    this process (signals; migrations send post_migrate). A rename made by another process
    shows here after a restart, as Django's own ContentType cache behaves."""

    def __init__(self):
        self._lock = threading.Lock()
        self._names: dict[int, str] = {}

    def __call__(self, connection, ids: list[int]) -> set[str]:
        names = self._names
        if any(i not in names for i in ids):
            with self._lock:
                with connection.cursor() as cursor:
                    cursor.execute(
                        f"SELECT p.id, ct.app_label || '.' || p.codename FROM {Permission._meta.db_table} p "
                        f"JOIN {ContentType._meta.db_table} ct ON ct.id = p.content_type_id"
                    )
                    names = self._names = dict(cursor.fetchall())
        return {names[i] for i in ids if i in names}

    def clear(self, **kwargs) -> None:
        self._names = {}


_permission_names = _PermissionNames()


def api_tokens_revoke(*, username: str | None = None, prefix: str | None = None) -> list[tuple[str, str]]:
    """Delete the tokens of the user called `username`, or those whose key starts with the
    8-character `prefix`; returns (prefix, username) of each revoked token. Given both (the
    command's one argument), a value that is a username and a prefix at once is refused
    (ValueError), so one typo cannot revoke someone else's keys."""
    alias = router.db_for_write(ApiToken)
    tokens = ApiToken.objects.using(alias)
    by_user = tokens.filter(user__username=username) if username else tokens.none()
    by_prefix = tokens.filter(prefix=prefix) if prefix and len(prefix) == 8 else tokens.none()
    with transaction.atomic(using=alias):
        found_user = list(by_user.values_list("pk", "prefix", "user__username"))
        found_prefix = list(by_prefix.values_list("pk", "prefix", "user__username"))
        if found_user and found_prefix and {r[0] for r in found_user} != {r[0] for r in found_prefix}:
            raise ValueError(f"{username!r} is both a username and a key prefix")
        chosen = found_user or found_prefix
        tokens.filter(pk__in=[r[0] for r in chosen]).delete()
    return [(p, u) for _, p, u in chosen]


def user_for_username(username: str):
    return get_user_model().objects.filter(username=username).first()


def forget_permission_names(**kwargs) -> None:
    _permission_names.clear()
