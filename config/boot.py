"""Checks run once in gunicorn's master before it accepts traffic; no pool is opened.

1. every alias answers `SELECT 1` (a raw connection per alias, config/probe.py);
   a replica that does not only logs a warning: reads fall back to its primary;
2. the pools of this instance fit each server's connection slots, and each
   transaction pooler's client slots (config/budget.py); a server behind a
   pooler is read through its `<P>_DATABASE_DIRECT_URL` when set;
3. the master holds no pool afterwards, so nothing can be inherited by a fork.

The whole check is bounded: an alias that does not answer within about twice
its connect timeout is reported as failed, whatever libpq is doing.
"""
from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.db import connections

from config import budget
from config.probe import ProbeResult, probe

logger = logging.getLogger(__name__)


def _deadline(aliases: list[str]) -> float:
    timeouts = [float(connections[a].settings_dict["OPTIONS"].get("connect_timeout", 2)) for a in aliases]
    return 2 * max(timeouts, default=2.0) + 1.0


def probe_many(requests: list[tuple[str, bool]], sql: str | None = None) -> dict[tuple[str, bool], ProbeResult]:
    """Probe (alias, direct) pairs in parallel, in daemon threads, with one overall deadline;
    `direct` probes go to the alias's `<P>_DATABASE_DIRECT_URL`."""
    results: dict[tuple[str, bool], ProbeResult] = {}

    def run(key: tuple[str, bool]) -> None:
        results[key] = probe(key[0], sql=sql, direct=key[1])

    threads = [threading.Thread(target=run, args=(key,), name=f"probe-{key[0]}", daemon=True) for key in requests]
    for t in threads:
        t.start()
    limit = _deadline([alias for alias, _ in requests])
    end = time.monotonic() + limit
    for t in threads:
        t.join(max(end - time.monotonic(), 0))
    done = dict(results)
    for key in requests:
        if key not in done:
            alias, direct = key
            sd = connections[alias].settings_dict
            sd = sd["DIRECT"] if direct else sd
            done[key] = ProbeResult(alias, f"{sd['HOST']}:{sd['PORT'] or 5432}", sd["NAME"], ok=False,
                                    error=f"no answer within {limit:g}s")
    return {key: done[key] for key in requests}


def probe_all(aliases: list[str], sql: str | None = None) -> dict[str, ProbeResult]:
    """Probe aliases (through their URLs) in parallel with one overall deadline."""
    return {alias: r for (alias, _), r in probe_many([(a, False) for a in aliases], sql=sql).items()}


def open_pools() -> list[str]:
    """Aliases with a pool object in this process (the master must have none)."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    return sorted(DatabaseWrapper._connection_pools)


def boot_checks(*, workers: int, threads: int | None, log=None) -> list[str]:
    """Problems that must stop the server: unreachable primaries or jobs aliases, a budget over a
    server's (or pooler's) slots. Unreachable replicas and direct URLs are logged as warnings."""
    log = log or logger
    targets = budget.targets_from_settings()
    kinds = {alias: info.kind for alias, info in settings.DATABASE_ALIASES.items()}
    behind = [key for key in budget.limit_probes(targets) if key[1]]
    results = probe_many([(a, False) for a in kinds] + behind, sql=budget.LIMITS_SQL)
    problems = []
    for (alias, direct), r in results.items():
        if r.ok:
            continue
        if direct:
            log.warning("boot check: the direct URL of %r (%s/%s, the server behind its pooler) unreachable: %s; "
                        "that server's connection budget is not judged", alias, r.host, r.name, r.error)
        elif kinds[alias] == "replica":
            log.warning("boot check: replica %r (%s/%s) unreachable: %s; its reads go to the primary %r until "
                        "it answers", alias, r.host, r.name, r.error, settings.DATABASE_ALIASES[alias].base)
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
        problems.append(f"the master process opened database pools ({', '.join(pools)}); "
                        "nothing may query the database at import time")
    return problems
