"""Small helpers every layer uses to talk to the right database."""

from __future__ import annotations

from django.db import connections, router, transaction
from django.db.backends.postgresql.base import DatabaseWrapper

from config import breaker


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
