"""Checks run once in gunicorn's master before it accepts traffic; no pool is opened.

1. every alias answers `SELECT 1` (a raw connection per alias, config/multidb/ops/probe.py);
   a replica that does not only logs a warning: reads fall back to its primary;
2. the pools of this instance fit each server's connection slots, and each
   transaction pooler's client slots (config/multidb/ops/budget.py); a server behind a
   pooler is read through its `<P>_DATABASE_DIRECT_URL` when set;
3. the master holds no pool afterwards, so nothing can be inherited by a fork;
4. no unsafe production setting (config/multidb/ops/safety.py): a known or weak secret key,
   debug pages on a reachable address; plaintext remote databases and an open
   /metrics on a reachable address only warn.

The probes run in a short-lived child process (`probe_in_child`): the master
itself never starts a thread nor opens a connection. A thread that has just
finished a TLS connection is still releasing OpenSSL's locks after Python's
`join()` returns; a worker forked at that moment inherits a held lock and every
TLS connect in it waits forever (seen here: all aliases `PoolTimeout` until the
worker was restarted).

The whole check is bounded: an alias that does not answer within about twice
its connect timeout is reported as failed, whatever libpq is doing.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.db.backends.postgresql.base import DatabaseWrapper

from config.multidb.conf.aliases import alias as alias_info
from config.multidb.conf.aliases import aliases
from config.multidb.ops import budget
from config.multidb.ops.probe import probe_in_child
from config.multidb.ops.safety import unsafe_settings

logger = logging.getLogger(__name__)


def open_pools() -> list[str]:
    """Aliases with a pool object in this process (the master must have none)."""
    return sorted(DatabaseWrapper._connection_pools)


def boot_checks(*, workers: int, threads: int | None, log=None, binds: list[str] | None = None) -> list[str]:
    """Problems that must stop the server: unsafe production settings (config/multidb/ops/safety.py), unreachable
    primaries or jobs aliases, a budget over a server's (or pooler's) slots. Unreachable replicas and
    direct URLs are logged as warnings. `binds`: gunicorn's addresses (default: BIND)."""
    log = log or logger
    problems = unsafe_settings(binds if binds is not None else [settings.ENV["BIND"]], log)
    targets = budget.targets_from_settings()
    kinds = {alias: info.kind for alias, info in aliases().items()}
    behind = [key for key in budget.limit_probes(targets) if key[1]]
    results = probe_in_child([(a, False) for a in kinds] + behind, sql=budget.LIMITS_SQL)
    for (alias, direct), r in results.items():
        if r.ok:
            continue
        if direct:
            log.warning(
                "boot check: the direct URL of %r (%s/%s, the server behind its pooler) unreachable: %s; "
                "that server's connection budget is not judged",
                alias,
                r.host,
                r.name,
                r.error,
            )
        elif kinds[alias] == "replica":
            log.warning(
                "boot check: replica %r (%s/%s) unreachable: %s; its reads go to the primary %r until it answers",
                alias,
                r.host,
                r.name,
                r.error,
                alias_info(alias).base,
            )
        else:
            problems.append(f"database {alias!r} ({r.host}/{r.name}) unreachable: {r.error}")
    limits, errors = budget.limits_from_probes(results.values())
    budgets = budget.plan(targets, instances=1, workers=workers, threads=threads, limits=limits, errors=errors)
    problems += budget.problems(budgets, scope="this instance")
    for line in budget.format_table(budgets, instances=1, workers=workers, threads=threads).splitlines():
        if line:
            log.info("budget: %s", line)
    log.info("budget: clients other than this instance's pools are not counted; leave room for them")
    pools = open_pools()
    if pools:
        problems.append(
            f"the master process opened database pools ({', '.join(pools)}); "
            "nothing may query the database at import time"
        )
    return problems
