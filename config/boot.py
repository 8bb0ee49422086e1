"""Checks run once before the server accepts traffic; no pool is opened."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from django.conf import settings

from config.probe import probe


def boot_checks(*, workers: int, threads: int) -> list[str]:
    """Problems that must stop the server: unreachable aliases (by name)."""
    aliases = list(settings.DATABASE_ALIASES)
    with ThreadPoolExecutor(max_workers=len(aliases)) as ex:
        results = list(ex.map(probe, aliases))
    return [f"database {r.alias!r} ({r.host}/{r.name}) unreachable: {r.error}" for r in results if not r.ok]
