"""Shared-database models: the audit trail and API tokens (both on `default`)."""

from __future__ import annotations

import uuid

from django.db import models


class AuditEvent(models.Model):
    """One change to one domain object, delivered from a domain outbox exactly once.

    The table is partitioned by month on `occurred_at` (audit migration 0005; partitions are
    made ahead of time by `audit.services.audit_partitions_ensure` and dropped whole by
    `audit_prune`). PostgreSQL wants the partition key in every unique constraint, so the
    database's primary key is (id, occurred_at); `id` stays the primary key for the ORM only
    (lookups by id still use that key's index). An event keeps its occurred_at wherever it is
    delivered from, so the relay's `ON CONFLICT (id, occurred_at)` still delivers it once.

    The indexes serve the admin (newest first, alone or per database, model, action, actor;
    exact object_pk search) and an object's history link (model, object_pk, newest first).
    """

    class Action(models.TextChoices):
        CREATE = "create"
        UPDATE = "update"
        DELETE = "delete"
        BULK = "bulk"
        DENY = "deny"  # a refused attempt (a transfer out of someone else's account): nothing changed

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    occurred_at = models.DateTimeField()  # the partition key
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
        # Partitioned indexes: declared on the table, built on every partition.
        indexes = [
            models.Index(fields=["occurred_at", "id"], name="audit_event_recent_idx"),
            models.Index(fields=["model", "object_pk", "occurred_at"], name="audit_event_object_idx"),
            models.Index(fields=["object_pk", "occurred_at"], name="audit_event_object_pk_idx"),
            models.Index(fields=["actor", "occurred_at"], name="audit_event_actor_idx"),
            models.Index(fields=["database", "occurred_at"], name="audit_event_database_idx"),
            models.Index(fields=["model", "occurred_at"], name="audit_event_model_idx"),
            models.Index(fields=["action", "occurred_at"], name="audit_event_action_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.model}#{self.object_pk} by {self.actor or '-'}"
