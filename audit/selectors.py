"""Reads of the audit trail."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

from django.db.models import Q

from audit.models import AuditEvent

EXPORT_BATCH = 2000


def events_since(
    since: datetime.datetime | None, *, fields: tuple[str, ...], batch_size: int = EXPORT_BATCH
) -> Iterator[dict]:
    """Events as dicts of `fields`, oldest first (ties broken by id so the order is stable).

    Keyset batches on (occurred_at, id), each a short query of its own: memory stays flat at any
    size, nothing is held open between batches (no server-side cursor, which a transaction
    pooler would not keep), and each batch starts where the index left off, in the partitions
    from its position on. Batches are separate snapshots: an event delivered during the export
    with an occurred_at before the position reached is not in it (export again `--since`).
    """
    base = AuditEvent.objects.order_by("occurred_at", "id")
    if since is not None:
        base = base.filter(occurred_at__gte=since)
    keys = tuple(dict.fromkeys((*fields, "occurred_at", "id")))
    drop = [k for k in keys if k not in fields]
    after: tuple[datetime.datetime, object] | None = None
    while True:
        qs = base
        if after is not None:
            at, last_id = after
            # (occurred_at, id) > (at, last_id); the plain >= is what the index range starts from.
            qs = qs.filter(occurred_at__gte=at).filter(Q(occurred_at__gt=at) | Q(id__gt=last_id))
        rows = list(qs.values(*keys)[:batch_size])
        if rows:
            after = (rows[-1]["occurred_at"], rows[-1]["id"])  # before the caller may change the rows
        for row in rows:
            for k in drop:
                del row[k]
            yield row
        if len(rows) < batch_size:
            return
