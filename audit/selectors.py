"""Reads of the audit trail."""

from __future__ import annotations

import datetime
from collections.abc import Iterator

from audit.models import AuditEvent


def events_since(since: datetime.datetime | None, *, fields: tuple[str, ...]) -> Iterator[dict]:
    """Events as dicts of `fields`, oldest first (ties broken by id so the order is stable)."""
    qs = AuditEvent.objects.order_by("occurred_at", "id").values(*fields)
    if since is not None:
        qs = qs.filter(occurred_at__gte=since)
    return qs.iterator(chunk_size=2000)
