"""API tokens: created with a key shown once, stored as a digest, checked per request."""

from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth import get_user_model
from django.db import connections, router

from audit.models import ApiToken


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_token_create(*, user) -> str:
    """Create a token for `user` and return its key (the only time it exists in clear)."""
    key = secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, prefix=key[:8], digest=_digest(key))
    return key


# In the model's field order: Model.from_db() fills the fields it is given in that order.
_TOKEN_USER_FIELDS = ["id", "is_superuser", "username", "is_staff", "is_active"]
_TOKEN_USER_SQL = (
    "SELECT u.id, u.is_superuser, u.username, u.is_staff, u.is_active FROM audit_apitoken t "
    "JOIN auth_user u ON u.id = t.user_id WHERE t.digest = %s AND u.is_active"
)


def api_token_authenticate(*, key: str):
    """The active user a key belongs to, or None."""
    if not key or len(key) > 128:
        return None
    # Every API write runs this: one plain query, and a user instance with only the
    # fields authorisation needs (the others load on first access, as deferred fields do).
    User = get_user_model()
    alias = router.db_for_read(ApiToken)
    with connections[alias].cursor() as cursor:
        cursor.execute(_TOKEN_USER_SQL, [_digest(key)])
        row = cursor.fetchone()
    if row is None:
        return None
    return User.from_db(alias, _TOKEN_USER_FIELDS, row)


def user_for_username(username: str):
    return get_user_model().objects.filter(username=username).first()


class AuditPruneRefused(Exception):
    """The database refused to delete: younger than its retention, or not the jobs role."""


def audit_events_prune(*, older_than_days: int, batch_size: int = 5000, progress=None) -> int:
    """Delete events that occurred more than `older_than_days` ago, `batch_size` per transaction.

    A database provisioned by `provision_roles` lets no role delete events except through
    its prune function (config/roles.py), which refuses an age below the retention:
    `AuditPruneRefused`. Elsewhere (a development database) a plain DELETE does it.
    """
    from datetime import timedelta

    from django.db import DatabaseError, connections, router, transaction
    from django.utils import timezone

    from audit.models import AuditEvent
    from config.roles import prune_function

    db = router.db_for_write(AuditEvent)
    function = prune_function(AuditEvent._meta.db_table)
    with connections[db].cursor() as cursor:
        cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL", [f"public.{function}(integer, integer)"])
        provisioned = cursor.fetchone()[0]
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted = 0
    while True:
        with transaction.atomic(using=db):
            if provisioned:
                try:
                    with connections[db].cursor() as cursor:
                        cursor.execute(f'SELECT public."{function}"(%s, %s)', [older_than_days, batch_size])
                        n = cursor.fetchone()[0]
                except DatabaseError as exc:
                    if getattr(exc.__cause__, "sqlstate", None) != "42501":  # insufficient_privilege
                        raise
                    raise AuditPruneRefused(_first_line(exc.__cause__)) from None
            else:
                ids = list(
                    AuditEvent.objects.using(db)
                    .filter(occurred_at__lt=cutoff)
                    .order_by("occurred_at")
                    .values_list("id", flat=True)[:batch_size]
                )
                n, _ = AuditEvent.objects.using(db).filter(id__in=ids).delete() if ids else (0, None)
        if not n:
            return deleted
        deleted += n
        if progress is not None:
            progress(deleted)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0]
