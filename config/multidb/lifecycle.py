"""Small helpers every layer uses to talk to the right database, and the hooks apps register
with the platform (the platform imports no app)."""

from __future__ import annotations

from collections.abc import Callable

from django.db import connections, router, transaction
from django.db.backends.postgresql.base import DatabaseWrapper

from config.multidb.resilience import breaker


def atomic_for(model, **kwargs):
    """`transaction.atomic` on the database that holds `model` (never a guessed alias)."""
    return transaction.atomic(using=router.db_for_write(model), **kwargs)


def close_all_pools() -> None:
    """Close every pool this process opened (shutdown, end of a command, test teardown)."""
    for conn in connections.all(initialized_only=True):
        conn.close()
    for alias, pool in list(DatabaseWrapper._connection_pools.items()):
        try:
            pool.close(timeout=5)
        finally:
            DatabaseWrapper._connection_pools.pop(alias, None)


def forget_inherited_pools() -> None:
    """After fork(): drop pools and breakers copied from the parent without touching their sockets."""
    DatabaseWrapper._connection_pools.clear()
    breaker.reset_all()


def pool_stats() -> dict[str, dict[str, int]]:
    """psycopg_pool statistics of every open pool; no query."""
    return {alias: pool.get_stats() for alias, pool in list(DatabaseWrapper._connection_pools.items())}


# Hooks registered by apps in AppConfig.ready() --------------------------------------------------

_job_exit: list[Callable[[], None]] = []
_outbox_readers: list[Callable[[], dict]] = []


def on_job_exit(hook: Callable[[], None]) -> None:
    """Run `hook` when a job command ends, before its pools close (audit: deliver its events)."""
    if hook not in _job_exit:
        _job_exit.append(hook)


def run_job_exit_hooks() -> None:
    for hook in _job_exit:
        hook()


def set_outbox_reader(reader: Callable[[], dict]) -> None:
    """`dbstat` shows what `reader()` returns: {alias: {depth, oldest_age_s}} of the outbox."""
    _outbox_readers[:] = [reader]


def outbox_reader() -> Callable[[], dict] | None:
    return _outbox_readers[0] if _outbox_readers else None
