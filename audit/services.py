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
