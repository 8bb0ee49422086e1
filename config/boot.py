"""Checks run once in gunicorn's master before it accepts traffic; no pool is opened.

1. every alias answers `SELECT 1` (a raw connection per alias, config/probe.py);
2. the pools of this instance fit each server's connection slots (config/budget.py);
3. the master holds no pool afterwards, so nothing can be inherited by a fork.

The whole check is bounded: an alias that does not answer within about twice
its connect timeout is reported as failed, whatever libpq is doing.
"""
from __future__ import annotations

import threading
import time

from django.conf import settings
from django.db import connections

from config import budget
from config.probe import ProbeResult, probe


def _deadline(aliases: list[str]) -> float:
    timeouts = [float(connections[a].settings_dict["OPTIONS"].get("connect_timeout", 2)) for a in aliases]
    return 2 * max(timeouts, default=2.0) + 1.0


def probe_all(aliases: list[str], sql: str | None = None) -> dict[str, ProbeResult]:
    """Probe aliases in parallel, in daemon threads, with one overall deadline."""
    results: dict[str, ProbeResult] = {}

    def run(alias: str) -> None:
        results[alias] = probe(alias, sql=sql)

    threads = [threading.Thread(target=run, args=(a,), name=f"probe-{a}", daemon=True) for a in aliases]
    for t in threads:
        t.start()
    limit = _deadline(aliases)
    end = time.monotonic() + limit
    for t in threads:
        t.join(max(end - time.monotonic(), 0))
    done = dict(results)
    for alias in aliases:
        if alias not in done:
            sd = connections[alias].settings_dict
            done[alias] = ProbeResult(alias, f"{sd['HOST']}:{sd['PORT'] or 5432}", sd["NAME"], ok=False,
                                      error=f"no answer within {limit:g}s")
    return {a: done[a] for a in aliases}


def open_pools() -> list[str]:
    """Aliases with a pool object in this process (the master must have none)."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    return sorted(DatabaseWrapper._connection_pools)


def boot_checks(*, workers: int, threads: int | None, log=None) -> list[str]:
    """Problems that must stop the server: unreachable aliases, a budget over a server's slots."""
    aliases = list(settings.DATABASE_ALIASES)
    results = probe_all(aliases, sql=budget.LIMITS_SQL)
    problems = [f"database {r.alias!r} ({r.host}/{r.name}) unreachable: {r.error}"
                for r in results.values() if not r.ok]
    limits, errors = budget.limits_from_probes(results.values())
    budgets = budget.plan(budget.targets_from_settings(), instances=1, workers=workers, threads=threads,
                          limits=limits, errors=errors)
    problems += budget.problems(budgets, scope="this instance")
    if log is not None:
        for line in budget.format_table(budgets, instances=1, workers=workers, threads=threads).splitlines():
            if line:
                log.info("budget: %s", line)
        log.info("budget: clients other than this instance's pools are not counted; leave room for them")
    pools = open_pools()
    if pools:
        problems.append(f"the master process opened database pools ({', '.join(pools)}); "
                        "nothing may query the database at import time")
    return problems
