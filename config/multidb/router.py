"""The one router: reads the topology in config/multidb/conf/databases.py.

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

ROLES = ("web", "jobs")
_role: ContextVar[str] = ContextVar("database_role", default="web")


@contextlib.contextmanager
def connected_to(role: str):
    """Send every query inside the block to the `role` pools (Rails' connected_to(role:))."""
    if role not in ROLES:
        raise ValueError(f"unknown database role {role!r}; expected one of {ROLES}")
    token = _role.set(role)
    try:
        yield
    finally:
        _role.reset(token)


def current_role() -> str:
    return _role.get()


@functools.cache
def _app_aliases() -> dict[str, str]:
    return app_alias_map()


def home_alias(app_label: str) -> str:
    """The primary alias of an app."""
    return _app_aliases().get(app_label, SHARED_ALIAS)


def domain_of(alias: str | None) -> str | None:
    info = alias_or_none(alias)
    return info.base if info else alias


def role_alias(base: str) -> str:
    if _role.get() == "jobs":
        return base + "_jobs"
    return base


class TopologyRouter:
    def db_for_read(self, model, **hints):
        base = home_alias(model._meta.app_label)
        if _role.get() == "jobs":
            return base + "_jobs"
        return replicas.read_alias(base)

    def db_for_write(self, model, **hints):
        return role_alias(home_alias(model._meta.app_label))

    def allow_relation(self, obj1, obj2, **hints):
        db1 = domain_of(obj1._state.db) or home_alias(obj1._meta.app_label)
        db2 = domain_of(obj2._state.db) or home_alias(obj2._meta.app_label)
        return db1 == db2

    def allow_migrate(self, db, app_label, model_name=None, **hints):
        info = alias_or_none(db)
        if info is None or info.kind != "primary":
            return False
        return home_alias(app_label) == db
