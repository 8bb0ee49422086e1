"""`SELECT 1` against an alias with a hard deadline, outside any pool, one alias or many
in parallel (config/multidb/resilience/connect.py does the connecting).

Used where a pool must not be opened (gunicorn's master at boot, through a child
process), by `dbcheck`, `dbstat` and `dbbudget`. Errors are reduced to libpq's message,
which never holds a password.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from dataclasses import dataclass

from django.db import connections

from config.multidb.resilience.connect import clean_error, connect_checked


@dataclass
class ProbeResult:
    alias: str
    host: str
    name: str
    ok: bool
    ms: float | None = None
    tls: bool | None = None
    error: str = ""
    rows: list[tuple] | None = None  # result of `sql`, when asked for


def probe(alias: str, timeout: float | None = None, sql: str | None = None, *, direct: bool = False) -> ProbeResult:
    """`SELECT 1` within the deadline; then `sql`, if given, on the same connection (boot reads limits so).
    `direct`: through the alias's `<P>_DATABASE_DIRECT_URL` (the server behind its pooler)."""
    sd = connections[alias].settings_dict
    if direct:
        sd = sd["DIRECT"]
    result = ProbeResult(alias, f"{sd['HOST']}:{sd['PORT'] or 5432}", sd["NAME"], ok=False)
    start = time.perf_counter()
    try:
        with connect_checked(alias, timeout, direct=direct) as (conn, _):
            result.tls = bool(conn.pgconn.ssl_in_use)
            if sql:
                result.rows = conn.execute(sql).fetchall()
        result.ok = True
    except Exception as exc:  # any failure is a result, reported by alias
        result.error = clean_error(exc, sd.get("PASSWORD"))
    result.ms = round((time.perf_counter() - start) * 1000, 1)
    return result


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
