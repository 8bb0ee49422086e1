"""Which alias serves a read: the replica when one is configured and safe, else the primary."""
from __future__ import annotations

from django.conf import settings


def read_alias(base: str) -> str:
    replica = base + "_replica"
    if replica not in settings.DATABASE_ALIASES:
        return base
    return base
