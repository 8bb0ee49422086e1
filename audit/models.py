"""Shared-database models: the audit trail and API tokens (both on `default`)."""

from __future__ import annotations

import uuid

from django.conf import settings
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


class ApiToken(models.Model):
    """An API key, stored as its SHA-256 digest; the key itself is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    prefix = models.CharField(max_length=8, db_index=True)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Written by the authenticating statement itself (audit/services.py), at most once a
    # minute, and by every claim of writes from the rate.
    last_used_at = models.DateTimeField(null=True, blank=True)
    # The write rate limit: writes claimed in a fixed one-minute window, on the row every
    # worker and instance authenticates against (so the limit holds across all of them).
    write_window = models.DateTimeField(null=True, blank=True, editable=False)
    write_count = models.IntegerField(default=0, db_default=0, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"
