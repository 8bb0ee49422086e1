"""Shared-database models: the audit trail and API tokens (both on `default`)."""

from __future__ import annotations

import uuid

from django.db import models


class AuditEvent(models.Model):
    """One change to one domain object, delivered from a domain outbox exactly once."""

    class Action(models.TextChoices):
        CREATE = "create"
        UPDATE = "update"
        DELETE = "delete"
        BULK = "bulk"
        DENY = "deny"  # a refused attempt (a transfer out of someone else's account): nothing changed

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    occurred_at = models.DateTimeField(db_index=True)
    recorded_at = models.DateTimeField(auto_now_add=True)
    database = models.CharField(max_length=32)
    actor = models.CharField(max_length=150, blank=True)
    actor_id = models.BigIntegerField(null=True, blank=True)
    action = models.CharField(max_length=16, choices=Action.choices)
    model = models.CharField(max_length=100)
    object_pk = models.CharField(max_length=64, blank=True)
    changes = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-occurred_at"]
        indexes = [models.Index(fields=["model", "object_pk"], name="audit_event_object_idx")]

    def __str__(self) -> str:
        return f"{self.action} {self.model}#{self.object_pk} by {self.actor or '-'}"
