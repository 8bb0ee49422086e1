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
import multiprocessing
import sys
import threading
import time

from django.conf import settings
from django.db import connections

from config.multidb.ops import budget
from config.multidb.ops.probe import ProbeResult, probe

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
    return {key: done[key] if key in done else _no_answer(key, f"no answer within {limit:g}s") for key in requests}


def probe_in_child(requests: list[tuple[str, bool]], sql: str | None = None) -> dict[tuple[str, bool], ProbeResult]:
    """`probe_many` in a forked child, its results sent back through a pipe: the calling process
    (gunicorn's master, which forks the workers) starts no thread and loads no TLS state."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_probe_and_send, args=(send, requests, sql), name="boot-probes", daemon=True)
    for stream in (sys.stdout, sys.stderr):  # or the child would write the master's buffered output again
        stream.flush()
    child.start()
    send.close()
    limit = _deadline([alias for alias, _ in requests]) + 5.0  # the child's own deadline, plus its start
    try:
        results = receive.recv() if receive.poll(limit) else None
    except EOFError:  # the child died before answering
        results = None
    finally:
        receive.close()
        child.join(1.0 if results is not None else 0)
        if child.is_alive():
            child.kill()
            child.join()
    if results is None:
        results = {key: _no_answer(key, f"the probing process gave no answer within {limit:g}s") for key in requests}
    return results


def _probe_and_send(send, requests, sql) -> None:
    send.send(probe_many(requests, sql=sql))
    send.close()


def _no_answer(key: tuple[str, bool], error: str) -> ProbeResult:
    alias, direct = key
    sd = connections[alias].settings_dict
    sd = sd["DIRECT"] if direct else sd
    return ProbeResult(alias, f"{sd['HOST']}:{sd['PORT'] or 5432}", sd["NAME"], ok=False, error=error)


def probe_all(aliases: list[str], sql: str | None = None) -> dict[str, ProbeResult]:
    """Probe aliases (through their URLs) in parallel with one overall deadline."""
    return {alias: r for (alias, _), r in probe_many([(a, False) for a in aliases], sql=sql).items()}


def open_pools() -> list[str]:
    """Aliases with a pool object in this process (the master must have none)."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    return sorted(DatabaseWrapper._connection_pools)


def boot_checks(*, workers: int, threads: int | None, log=None, binds: list[str] | None = None) -> list[str]:
    """Problems that must stop the server: unsafe production settings (config/multidb/ops/safety.py), unreachable
    primaries or jobs aliases, a budget over a server's (or pooler's) slots. Unreachable replicas and
    direct URLs are logged as warnings. `binds`: gunicorn's addresses (default: BIND)."""
    from config.multidb.ops.safety import unsafe_settings

    log = log or logger
    problems = unsafe_settings(binds if binds is not None else [settings.ENV["BIND"]], log)
    targets = budget.targets_from_settings()
    kinds = {alias: info.kind for alias, info in settings.DATABASE_ALIASES.items()}
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
                settings.DATABASE_ALIASES[alias].base,
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
