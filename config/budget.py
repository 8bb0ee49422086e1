"""The connection budget: how many connections the configured pools could open
on each database server, against the slots the server has.

The one implementation of the arithmetic, used by gunicorn's boot check (one
instance) and by `manage.py dbbudget` (a fleet). Per process and alias:

    web / replica alias:  max(pool min_size, min(pool max_size, threads))
                          (a thread holds at most one connection per alias, and
                          the pool keeps min_size open whatever the load)
    jobs alias:           JOBS_DATABASE_POOL_MAX_SIZE, per web worker (its audit relay
                          thread uses the jobs pools) plus one CLI job per instance

    server total = sum over its aliases of per_process x processes
    available    = max_connections - superuser_reserved_connections (- reserved_connections, PG 16+)

Aliases on the same host:port share a server. Clients that are not this
project's pools (psql, other apps, replication) are not counted: leave room.

Transaction pooler (`<P>_DATABASE_POOLER=transaction`): the app's connections go
to PgBouncer/Supavisor, so they are counted on a `pgbouncer host:port` row whose
limit (its `max_client_conn`) cannot be read from the app side and is not judged
here; the PostgreSQL server behind it sees PgBouncer's pool (`default_pool_size`
per database/user pair), which is what must fit its `max_connections`.
`pooler_limits()` is the extension point for reading those numbers.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

# One round trip on a probe connection; `reserved_connections` exists from PG 16 on.
LIMITS_SQL = ("SELECT name, setting::int FROM pg_settings WHERE name IN "
              "('max_connections', 'superuser_reserved_connections', 'reserved_connections')")


@dataclass(frozen=True)
class Target:
    """What the arithmetic needs to know about one alias."""

    alias: str
    role: str  # web, replica, jobs
    server: str  # host:port the alias connects to
    database: str
    min_size: int
    max_size: int
    pooler: str = "direct"
    pooled: bool = True  # False: connect per request (one per thread)


@dataclass(frozen=True)
class Limits:
    max_connections: int
    reserved: int

    @property
    def available(self) -> int:
        return self.max_connections - self.reserved

    @classmethod
    def from_rows(cls, rows) -> "Limits":
        values = dict(rows)
        reserved = values.get("superuser_reserved_connections", 0) + values.get("reserved_connections", 0)
        return cls(values["max_connections"], reserved)


@dataclass(frozen=True)
class Row:
    alias: str
    role: str
    per_process: int
    processes: int

    @property
    def total(self) -> int:
        return self.per_process * self.processes


@dataclass
class ServerBudget:
    server: str
    kind: str  # postgres, pgbouncer
    rows: list[Row] = field(default_factory=list)
    limits: Limits | None = None
    error: str = ""

    @property
    def total(self) -> int:
        return sum(r.total for r in self.rows)

    @property
    def aliases(self) -> list[str]:
        return [r.alias for r in self.rows]

    @property
    def available(self) -> int | None:
        return self.limits.available if self.limits else None

    @property
    def over(self) -> bool:
        return self.limits is not None and self.total > self.limits.available

    @property
    def unknown(self) -> bool:
        """A PostgreSQL server whose limits could not be read (a pooler's are not expected)."""
        return self.kind == "postgres" and self.limits is None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.server}"


def targets_from_settings() -> list[Target]:
    """Every alias of this process's settings, as the arithmetic sees it."""
    from django.conf import settings

    out = []
    for alias, info in settings.DATABASE_ALIASES.items():
        sd = settings.DATABASES[alias]
        pool = sd["OPTIONS"].get("pool")
        role = {"primary": "web", "replica": "replica", "jobs": "jobs"}[info.kind]
        max_size = pool["max_size"] if isinstance(pool, dict) else info.max_size
        min_size = pool.get("min_size", 0) if isinstance(pool, dict) else 0
        out.append(Target(alias, role, f"{sd['HOST']}:{sd['PORT'] or 5432}", sd["NAME"], min_size, max_size,
                          info.pooler, pooled=bool(pool)))
    return out


def per_process(target: Target, threads: int | None) -> int:
    """Most connections one process can hold on `target` (threads None: not bounded by threads)."""
    if target.role == "jobs":
        return target.max_size
    if not target.pooled:  # connect per request: one per busy thread
        return threads if threads is not None else target.max_size
    bound = target.max_size if threads is None else min(target.max_size, threads)
    return max(target.min_size, bound)


def pooler_limits(server: str) -> Limits | None:
    """Client slots of a transaction pooler at `server`. Unknown from the app side for now
    (PgBouncer's max_client_conn is in pgbouncer.ini); a later change may read its admin console."""
    return None


def plan(targets: list[Target], *, instances: int, workers: int, threads: int | None,
         limits: dict[str, Limits], errors: dict[str, str] | None = None) -> list[ServerBudget]:
    """Rows per server for a fleet of `instances` x `workers` processes of `threads` threads."""
    servers: dict[tuple[str, str], ServerBudget] = {}
    for t in targets:
        kind = "pgbouncer" if t.pooler == "transaction" else "postgres"
        budget = servers.get((kind, t.server))
        if budget is None:
            lim = pooler_limits(t.server) if kind == "pgbouncer" else limits.get(t.server)
            err = "" if kind == "pgbouncer" or lim else (errors or {}).get(t.server, "limits not read")
            budget = servers[(kind, t.server)] = ServerBudget(t.server, kind, limits=lim, error=err)
        # Jobs pools: every web worker's audit relay thread, plus one long job per instance.
        processes = instances * (workers + 1) if t.role == "jobs" else instances * workers
        budget.rows.append(Row(t.alias, t.role, per_process(t, threads), processes))
    return list(servers.values())


def problems(budgets: list[ServerBudget], *, scope: str) -> list[str]:
    """One line per server over its limit; names server and aliases, never a password."""
    out = []
    for b in budgets:
        if not b.over:
            continue
        parts = ", ".join(f"{r.alias} {r.processes}x{r.per_process}={r.total}" for r in b.rows)
        out.append(
            f"connection budget exceeded on {b.server} (aliases {', '.join(b.aliases)}): {scope} could open "
            f"{b.total} connections ({parts}) but the server has {b.limits.available} "
            f"(max_connections {b.limits.max_connections} - {b.limits.reserved} reserved); lower WEB_CONCURRENCY, "
            f"WEB_THREADS or <P>_DATABASE_POOL_MAX_SIZE, or raise max_connections"
        )
    return out


def format_table(budgets: list[ServerBudget], *, instances: int, workers: int, threads: int | None) -> str:
    lines = [f"{instances} instance(s) x {workers} worker(s) x {threads if threads is not None else '-'} thread(s); "
             "per process = max(pool min, min(pool max, threads)); jobs pools per worker (audit relay) + 1 job"]
    for b in budgets:
        lines.append("")
        if b.limits:
            head = (f"{b.label}: max_connections {b.limits.max_connections} - {b.limits.reserved} reserved = "
                    f"{b.limits.available} available")
        elif b.kind == "pgbouncer":
            head = f"{b.label}: client limit not known here; the server behind sees PgBouncer's default_pool_size"
        else:
            head = f"{b.label}: limits unknown ({b.error})"
        lines.append(head)
        lines.append(f"  {'alias':<18} {'role':<8} {'per process':>11} {'processes':>9} {'total':>7}")
        for r in b.rows:
            lines.append(f"  {r.alias:<18} {r.role:<8} {r.per_process:>11} {r.processes:>9} {r.total:>7}")
        if b.limits:
            verdict = f"OVER by {b.total - b.limits.available}" if b.over else "ok"
            lines.append(f"  {'total':<18} {'':<8} {'':>11} {'':>9} {b.total:>7} / {b.limits.available}  {verdict}")
        else:
            lines.append(f"  {'total':<18} {'':<8} {'':>11} {'':>9} {b.total:>7}")
    return "\n".join(lines)


def to_dict(budgets: list[ServerBudget], *, instances: int, workers: int, threads: int | None) -> dict:
    servers = []
    for b in budgets:
        servers.append({
            "server": b.server, "kind": b.kind, "aliases": b.aliases,
            "rows": [{**asdict(r), "total": r.total} for r in b.rows],
            "total": b.total,
            "max_connections": b.limits.max_connections if b.limits else None,
            "reserved": b.limits.reserved if b.limits else None,
            "available": b.available, "over": b.over, "error": b.error or None,
        })
    return {"instances": instances, "workers": workers, "threads": threads,
            "over": any(b.over for b in budgets), "servers": servers}


def to_json(budgets: list[ServerBudget], **kwargs) -> str:
    return json.dumps(to_dict(budgets, **kwargs), indent=2)


def limits_from_probes(results) -> tuple[dict[str, Limits], dict[str, str]]:
    """Server limits (and errors) from probe results that ran LIMITS_SQL."""
    limits: dict[str, Limits] = {}
    errors: dict[str, str] = {}
    for r in results:
        if r.ok and r.rows:
            limits.setdefault(r.host, Limits.from_rows(r.rows))
        elif not r.ok:
            errors.setdefault(r.host, f"{r.alias}: {r.error}")
    return limits, errors


def read(targets: list[Target] | None = None) -> tuple[list[Target], dict[str, Limits], dict[str, str]]:
    """Targets from settings and the limits of every direct server (one probe per server)."""
    from config.boot import probe_all

    targets = targets if targets is not None else targets_from_settings()
    one_per_server: dict[str, str] = {}
    for t in targets:
        if t.pooler == "direct":
            one_per_server.setdefault(t.server, t.alias)
    results = probe_all(list(one_per_server.values()), sql=LIMITS_SQL)
    limits, errors = limits_from_probes(results.values())
    return targets, limits, errors
