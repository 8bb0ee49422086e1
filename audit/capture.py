"""Audit capture (stub: behaviour lands with the audit outbox work).

Every blog and market model inherits `AuditedModel`; its saves and deletes
will write an outbox row in the same database and transaction as the change.
"""
from django.db import models


class AuditedModel(models.Model):
    # Field names never copied into an audit event (secrets).
    audit_exclude: tuple[str, ...] = ()

    class Meta:
        abstract = True
