"""What the apps may use of the platform: the one module they import from it (an import
contract in pyproject.toml holds them to it). Everything else in config.multidb is the
platform's own business and may change without an app noticing.

- jobs: `JobCommand` (a management command on the jobs pools);
- transactions and pools: `atomic_for(model)`, `connected_to(pool)`, `home_alias`,
  `pool_alias`, `close_all_pools`;
- aliases: `alias(name)`, `alias_or_none(name)`;
- faults: `DatabaseUnavailable`, `breaker_for(alias)`;
- a job's own connections: `connect_kwargs`, `clean_error`, `lowered_backend_priority`;
- hooks an app registers in AppConfig.ready(): `after_fork`, `on_job_exit`,
  `register_job_connections`, `register_temp_tables`, `set_outbox_reader`;
- append-only tables (the audit trail): `AppendOnly`, `install`, `narrow_grants_sql`,
  `partitions_function`, `prune_function`.
"""

from config.multidb.backend.priority import lowered_backend_priority
from config.multidb.conf.aliases import alias, alias_or_none
from config.multidb.jobs import JobCommand
from config.multidb.lifecycle import (
    after_fork,
    atomic_for,
    close_all_pools,
    on_job_exit,
    register_job_connections,
    register_temp_tables,
    set_outbox_reader,
)
from config.multidb.ops.appendonly import AppendOnly, install, narrow_grants_sql, partitions_function, prune_function
from config.multidb.resilience.breaker import DatabaseUnavailable, breaker_for
from config.multidb.resilience.connect import clean_error, connect_kwargs
from config.multidb.router import connected_to, home_alias, pool_alias

__all__ = [
    "AppendOnly",
    "DatabaseUnavailable",
    "JobCommand",
    "after_fork",
    "alias",
    "alias_or_none",
    "atomic_for",
    "breaker_for",
    "clean_error",
    "close_all_pools",
    "connect_kwargs",
    "connected_to",
    "home_alias",
    "install",
    "lowered_backend_priority",
    "narrow_grants_sql",
    "on_job_exit",
    "partitions_function",
    "pool_alias",
    "prune_function",
    "register_job_connections",
    "register_temp_tables",
    "set_outbox_reader",
]
