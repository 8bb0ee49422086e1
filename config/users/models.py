"""API tokens."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """An API key, stored as its SHA-256 digest; the key itself is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    prefix = models.CharField(max_length=8, db_index=True)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Written by the authenticating statement itself (config/users/tokens.py), at most once a
    # minute, and by every claim of writes from the rate.
    last_used_at = models.DateTimeField(null=True, blank=True)
    # The write rate limit: writes claimed in a fixed one-minute window, on the row every
    # worker and instance authenticates against (so the limit holds across all of them).
    write_window = models.DateTimeField(null=True, blank=True, editable=False)
    write_count = models.IntegerField(default=0, db_default=0, editable=False)

    class Meta:
        db_table = "audit_apitoken"  # where it was created, when it lived in the audit app
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"
