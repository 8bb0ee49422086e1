"""The one router: reads the topology file (config/topology.py).

- a model goes to the alias of its app (`default` for apps not listed);
- inside `connected_to("jobs")` reads and writes go to that database's jobs pool;
- other reads may go to `<alias>_replica` when config/multidb/replicas.py says it is safe
  (writes, `select_for_update` and reads inside a transaction never do);
- `allow_migrate` answers True or False, never None, and only for primary aliases;
- relations are allowed only between objects of the same database.
"""

from __future__ import annotations

import contextlib
import functools
from contextvars import ContextVar

from config.multidb import replicas
from config.multidb.conf.aliases import alias_or_none
from config.multidb.conf.databases import app_alias_map
from config.multidb.conf.topology import SHARED_ALIAS

POOLS = ("web", "jobs")
_pool: ContextVar[str] = ContextVar("database_pool", default="web")


@contextlib.contextmanager
def connected_to(pool: str):
    """Send every query inside the block to the `pool` pools, "web" or "jobs" (Rails'
    connected_to(role:))."""
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; expected one of {POOLS}")
    token = _pool.set(pool)
    try:
        yield
    finally:
        _pool.reset(token)


def current_pool() -> str:
    return _pool.get()


@functools.cache
def _app_aliases() -> dict[str, str]:
    return app_alias_map()


def home_alias(app_label: str) -> str:
    """The primary alias of an app."""
    return _app_aliases().get(app_label, SHARED_ALIAS)


def base_alias_of(alias: str | None) -> str | None:
    info = alias_or_none(alias)
    return info.base if info else alias


def pool_alias(base: str) -> str:
    """`base`, or its jobs pool inside connected_to("jobs")."""
    if _pool.get() == "jobs":
        return base + "_jobs"
    return base


class TopologyRouter:
    def db_for_read(self, model, **hints):
        base = home_alias(model._meta.app_label)
        if _pool.get() == "jobs":
            return base + "_jobs"
        return replicas.read_alias(base)

    def db_for_write(self, model, **hints):
        return pool_alias(home_alias(model._meta.app_label))

    def allow_relation(self, obj1, obj2, **hints):
        db1 = base_alias_of(obj1._state.db) or home_alias(obj1._meta.app_label)
        db2 = base_alias_of(obj2._state.db) or home_alias(obj2._meta.app_label)
        return db1 == db2

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        info = alias_or_none(db)
        if info is None or info.kind != "primary":
            return False
        return home_alias(app_label) == db
