"""API tokens: created with a key shown once, stored as a digest, checked per request."""
from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth import get_user_model

from audit.models import ApiToken


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def api_token_create(*, user) -> str:
    """Create a token for `user` and return its key (the only time it exists in clear)."""
    key = secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, prefix=key[:8], digest=_digest(key))
    return key


def api_token_authenticate(*, key: str):
    """The active user a key belongs to, or None."""
    if not key or len(key) > 128:
        return None
    token = ApiToken.objects.select_related("user").filter(digest=_digest(key)).first()
    if token is None or not token.user.is_active:
        return None
    return token.user


def user_for_username(username: str):
    return get_user_model().objects.filter(username=username).first()


def audit_events_prune(*, older_than_days: int, batch_size: int = 5000, progress=None) -> int:
    """Delete events that occurred more than `older_than_days` ago, `batch_size` per transaction."""
    from datetime import timedelta

    from django.utils import timezone

    from audit.models import AuditEvent
    from django.db import router, transaction

    db = router.db_for_write(AuditEvent)
    cutoff = timezone.now() - timedelta(days=older_than_days)
    deleted = 0
    while True:
        with transaction.atomic(using=db):
            ids = list(AuditEvent.objects.using(db).filter(occurred_at__lt=cutoff).order_by("occurred_at")
                       .values_list("id", flat=True)[:batch_size])
            if not ids:
                return deleted
            n, _ = AuditEvent.objects.using(db).filter(id__in=ids).delete()
        deleted += n
        if progress is not None:
            progress(deleted)
