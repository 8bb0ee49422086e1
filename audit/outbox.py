"""The outbox row every domain database carries: an audit event waiting for delivery.

Each domain app declares `class AuditOutbox(OutboxEntry)` in its models so the
row lives in the same database, and is written in the same transaction, as the
change it describes.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone


class OutboxEntry(models.Model):
    event_id = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    occurred_at = models.DateTimeField(default=timezone.now)
    actor = models.CharField(max_length=150, blank=True)
    actor_id = models.BigIntegerField(null=True, blank=True)
    action = models.CharField(max_length=16)
    model = models.CharField(max_length=100)
    object_pk = models.CharField(max_length=64, blank=True)
    changes = models.JSONField(default=dict, blank=True)

    class Meta:
        abstract = True
        ordering = ["id"]
