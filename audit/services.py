"""The audit trail's operations: pruning past the retention."""

from __future__ import annotations


class AuditPruneRefused(Exception):
    """The database refused to delete: younger than its retention, or not the jobs role."""


def audit_events_prune(*, older_than_days: int, batch_size: int = 5000, progress=None) -> int:
    """Delete events that occurred more than `older_than_days` ago, `batch_size` per transaction.

    A database provisioned by `provision_roles` lets no role delete events except through
    its prune function (config/multidb/ops/roles.py), which refuses an age below the retention:
    `AuditPruneRefused`. Elsewhere (a development database) a plain DELETE does it.
    """
    from datetime import timedelta

    from django.db import DatabaseError, connections, router, transaction
    from django.utils import timezone

    from audit.models import AuditEvent
    from config.multidb.ops.roles import prune_function

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
