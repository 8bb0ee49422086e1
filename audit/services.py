"""The audit trail's operations: monthly partitions made ahead of time, retention by
dropping whole partitions.

Both go through functions in the database (config/multidb/ops/appendonly.py) owned by the
table's owner, so they work with the least-privilege roles: the web and jobs roles cannot
create or drop tables, and only the jobs role may prune, never below the retention.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MONTHS_AHEAD = 3  # partitions exist this many months ahead of the current one
LOCK_RETRIES = 5  # a DDL lock the functions gave up on (lock_timeout) is tried again this often


class AuditPruneRefused(Exception):
    """The database refused to delete: younger than its retention, or not the jobs role."""


@dataclass
class Pruned:
    partitions: list[tuple[str, int]] = field(default_factory=list)  # dropped: (name, events it held)
    deleted: int = 0  # events deleted one by one from the DEFAULT partition

    @property
    def total(self) -> int:
        return sum(n for _, n in self.partitions) + self.deleted


def _shared() -> tuple[str, str]:
    from django.db import router

    from audit.models import AuditEvent

    return router.db_for_write(AuditEvent), AuditEvent._meta.db_table


def _retrying(call: Callable[[], list], what: str, attempts: int = LOCK_RETRIES) -> list:
    """`call()`, again after 1, 2, 4, 8 s while it fails on lock_timeout (a long reader holds the table)."""
    from django.db import OperationalError

    for attempt in range(attempts):
        try:
            return call()
        except OperationalError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != "55P03" or attempt == attempts - 1:  # lock_not_available
                raise
            log.info("%s: table busy, trying again", what)
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


def audit_partitions_ensure(
    *,
    months_ahead: int = MONTHS_AHEAD,
    since: datetime.datetime | None = None,
    using: str | None = None,
    retry: bool = True,
) -> list[str]:
    """Create the missing monthly partitions (last month, or `since`'s, to `months_ahead` ahead, and
    any month the DEFAULT partition holds rows of, moving them); returns the names created.

    Called by migrate (post_migrate), by the relay once per process per hour (`retry=False`: one
    try, never a wait of seconds in the relay), and by audit_prune. Does nothing where the table
    is not partitioned yet (before audit migration 0005).
    """
    from django.db import connections, transaction

    from config.multidb.public import partitions_function

    db, table = _shared()
    db = using or db
    function = partitions_function(table)

    def call() -> list:
        with transaction.atomic(using=db), connections[db].cursor() as cursor:
            cursor.execute("SELECT to_regprocedure(%s) IS NOT NULL", [f"public.{function}(integer, timestamptz)"])
            if not cursor.fetchone()[0]:
                return []
            cursor.execute(f'SELECT public."{function}"(%s, %s)', [months_ahead, since])
            return [name for (name,) in cursor.fetchall()]

    return _retrying(call, "audit partitions", LOCK_RETRIES if retry else 1)


def audit_events_prune(
    *,
    older_than_days: int,
    batch_size: int = 5000,
    progress: Callable[[int], None] | None = None,
    dropped: Callable[[str, int], None] | None = None,
) -> Pruned:
    """Drop every partition whose whole month is older than `older_than_days`, then delete the
    older events of the DEFAULT partition, `batch_size` per transaction.

    The boundary month's partition stays until its whole month is past the cutoff: events are
    kept at least `older_than_days`, at most a month longer. The database's prune function
    refuses an age below the retention (`provision_roles --audit-retention-days`) or a role
    other than the jobs role: `AuditPruneRefused`.
    """
    from django.db import DatabaseError, connections, transaction

    from config.multidb.public import prune_function

    db, table = _shared()
    function = prune_function(table)

    def call() -> list:
        with transaction.atomic(using=db), connections[db].cursor() as cursor:
            cursor.execute(f'SELECT * FROM public."{function}"(%s, %s)', [older_than_days, batch_size])
            return cursor.fetchall()

    result = Pruned()
    while True:
        try:
            rows = _retrying(call, "audit prune")
        except DatabaseError as exc:
            if getattr(exc.__cause__, "sqlstate", None) != "42501":  # insufficient_privilege
                raise
            raise AuditPruneRefused(_first_line(exc.__cause__)) from None
        gone = [(relation, n) for relation, was_dropped, n in rows if was_dropped]
        deleted = sum(n for _, was_dropped, n in rows if not was_dropped)
        for relation, n in gone:
            result.partitions.append((relation, n))
            if dropped is not None:
                dropped(relation, n)
        if deleted:
            result.deleted += deleted
            if progress is not None:
                progress(result.deleted)
        if not gone and not deleted:
            return result


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0]
