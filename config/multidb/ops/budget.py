"""The connection budget: how many connections the configured pools could open
on each database server (and each transaction pooler), against the slots it has.

The one implementation of the arithmetic, used by gunicorn's boot check (one
instance) and by `manage.py dbbudget` (a fleet). Per process and alias:

    web / replica alias:  max(pool min_size, min(pool max_size, threads))
                          (a thread holds at most one connection per alias, and
                          the pool keeps min_size open whatever the load)
    jobs alias:           JOBS_DATABASE_POOL_MAX_SIZE, per CLI job (one per instance), and per
                          web worker when an app uses the jobs pools there (registered
                          with lifecycle.register_job_connections, e.g. audit's relay):
                          processes = instances x (workers + 1)

    server total = sum over its aliases of per_process x processes
    available    = max_connections - superuser_reserved_connections (- reserved_connections, PG 16+)

Aliases on the same server share its slots, however their URLs name it: the
limits probe also reads who the server is (its postmaster's start time and
port), so `localhost:5432` and `127.0.0.1:5432` count as one server when they
are one. Clients that are not this project's pools (psql, other apps,
replication) are not counted: leave room.

Transaction pooler (`<P>_DATABASE_POOLER=transaction`), two hops:
- app -> pooler: the rows above, on a `pgbouncer host:port` server, judged against
  `<P>_DATABASE_POOLER_MAX_CLIENT_CONN` x poolers (aliases on one host:port share
  it, the smallest declared wins; clients assumed spread evenly over the poolers);
- pooler -> PostgreSQL: on the server named by `<P>_DATABASE_DIRECT_URL`,
  `<P>_DATABASE_POOLER_POOL_SIZE` per distinct (pooler host:port, database, user),
  times the poolers, whatever the instances (a jobs alias shares its primary's
  pair: nothing more); plus, directly, what apps register for their jobs per
  instance (lifecycle.register_job_connections: market's import lock) and one
  migrate_all. Without a direct URL
  the server behind the pooler is not judged (a note, not a failure).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

from django.conf import settings

from config.multidb.conf.aliases import aliases
from config.multidb.lifecycle import job_connections
from config.multidb.ops.probe import probe_many

# One round trip on a probe connection; `reserved_connections` exists from PG 16 on. The last row
# tells servers apart whatever name reaches them: one postmaster, one start time (to the
# microsecond) and port; readable by any role.
LIMITS_SQL = (
    "SELECT name, setting FROM pg_settings WHERE name IN "
    "('max_connections', 'superuser_reserved_connections', 'reserved_connections') "
    "UNION ALL SELECT 'identity', pg_postmaster_start_time()::text || ' port ' || current_setting('port')"
)

CLIENT_ROLES = ("web", "replica", "jobs")  # rows of the app's own pools; "pooled" and "direct" are server-side


@dataclass(frozen=True)
class Target:
    """What the arithmetic needs to know about one alias."""

    alias: str
    role: str  # web, replica, jobs
    server: str  # host:port the alias connects to (the pooler's, behind one)
    database: str
    min_size: int
    max_size: int
    pooler: str = "direct"
    pooled: bool = True  # False: connect per request (one per thread)
    user: str = ""
    prefix: str = ""  # <P> of its variables, for messages
    direct_server: str = ""  # host:port of <P>_DATABASE_DIRECT_URL (not for replicas)
    pooler_pool_size: int = 20
    pooler_max_client_conn: int = 100


@dataclass(frozen=True)
class Limits:
    max_connections: int
    reserved: int
    identity: str = ""  # the same for every name of one server ("" when not read)

    @property
    def available(self) -> int:
        return self.max_connections - self.reserved

    @classmethod
    def from_rows(cls, rows) -> Limits:
        values = dict(rows)
        number = {k: int(v) for k, v in values.items() if k != "identity"}
        reserved = number.get("superuser_reserved_connections", 0) + number.get("reserved_connections", 0)
        return cls(number["max_connections"], reserved, values.get("identity") or "")


def server_names(limits: dict[str, Limits], servers) -> dict[str, str]:
    """Each of `servers` (PostgreSQL host:port, not poolers) -> the first of them (in `limits`' order)
    that reaches the same server."""
    first: dict[str, str] = {}
    return {
        addr: first.setdefault(lim.identity, addr) if lim.identity else addr
        for addr, lim in limits.items()
        if addr in servers
    }


def same_server_targets(targets: list[Target], limits: dict[str, Limits]) -> list[Target]:
    """`targets` with every PostgreSQL server named as `server_names` names it (poolers as written)."""
    servers = {t.server for t in targets if t.pooler != "transaction"} | {t.direct_server for t in targets}
    names = server_names(limits, servers)
    out = []
    for t in targets:
        server = names.get(t.server, t.server) if t.pooler != "transaction" else t.server
        out.append(replace(t, server=server, direct_server=names.get(t.direct_server, t.direct_server)))
    return out


@dataclass(frozen=True)
class Row:
    alias: str
    role: str  # web, replica, jobs (the app's pools); pooled (a pooler's server pool); direct
    per_process: int  # per pooler for "pooled" rows
    processes: int  # poolers for "pooled" rows
    via: str = ""  # the pooler host:port of a "pooled" row

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
    notes: list[str] = field(default_factory=list)
    client_conn: int | None = None  # pgbouncer: the smallest declared max_client_conn
    client_conn_vars: list[str] = field(default_factory=list)
    poolers: int = 1

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
        """A PostgreSQL server whose limits could not be read (a pooler's come from variables)."""
        return self.kind == "postgres" and self.limits is None

    @property
    def label(self) -> str:
        return f"{self.kind} {self.server}"

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def targets_from_settings() -> list[Target]:
    """Every alias of this process's settings, as the arithmetic sees it."""
    out = []
    for alias, info in aliases().items():
        sd = settings.DATABASES[alias]
        pool = sd["OPTIONS"].get("pool")
        role = {"primary": "web", "replica": "replica", "jobs": "jobs"}[info.kind]
        max_size = pool["max_size"] if isinstance(pool, dict) else info.max_size
        min_size = pool.get("min_size", 0) if isinstance(pool, dict) else 0
        # A replica entry inherits the primary's DIRECT: that is the primary's server, not the replica's.
        direct = sd.get("DIRECT") if role != "replica" else None
        out.append(
            Target(
                alias,
                role,
                f"{sd['HOST']}:{sd['PORT'] or 5432}",
                sd["NAME"],
                min_size,
                max_size,
                info.pooler,
                pooled=bool(pool),
                user=sd.get("USER") or "",
                prefix=info.prefix,
                direct_server=f"{direct['HOST']}:{direct['PORT'] or 5432}" if direct else "",
                pooler_pool_size=info.pooler_pool_size,
                pooler_max_client_conn=info.pooler_max_client_conn,
            )
        )
    return out


def per_process(target: Target, threads: int | None) -> int:
    """Most connections one process can hold on `target` (threads None: not bounded by threads)."""
    if target.role == "jobs":
        return target.max_size
    if not target.pooled:  # connect per request: one per busy thread
        return threads if threads is not None else target.max_size
    bound = target.max_size if threads is None else min(target.max_size, threads)
    return max(target.min_size, bound)


def processes(target: Target, *, instances: int, workers: int) -> int:
    """Processes holding `target`'s pool: jobs pools in one CLI job per instance, and in every web
    worker when a registered job connection says so; web and replica pools in every web worker."""
    if target.role != "jobs":
        return instances * workers
    return instances * (workers + 1) if _jobs_pools_in_web_workers() else instances


def _jobs_pools_in_web_workers() -> list[str]:
    return [j.label for j in job_connections() if j.in_web_workers]


def plan(
    targets: list[Target],
    *,
    instances: int,
    workers: int,
    threads: int | None,
    limits: dict[str, Limits],
    errors: dict[str, str] | None = None,
    poolers: int = 1,
) -> list[ServerBudget]:
    """Rows per server for a fleet of `instances` x `workers` processes of `threads` threads,
    with `poolers` transaction poolers (PgBouncer instances) in front of each pooled server."""
    servers: dict[tuple[str, str], ServerBudget] = {}
    written = targets
    targets = same_server_targets(targets, limits)

    def server(kind: str, addr: str) -> ServerBudget:
        budget = servers.get((kind, addr))
        if budget is None:
            lim = limits.get(addr) if kind == "postgres" else None
            err = "" if kind == "pgbouncer" or lim else (errors or {}).get(addr, "limits not read")
            budget = servers[(kind, addr)] = ServerBudget(addr, kind, limits=lim, error=err, poolers=poolers)
        return budget

    pairs: dict[tuple[str, str, str], tuple[ServerBudget, int]] = {}  # pooler pair -> (server behind, row index)
    behind: dict[str, ServerBudget] = {}
    for t in targets:
        if t.pooler != "transaction":
            server("postgres", t.server).rows.append(
                Row(t.alias, t.role, per_process(t, threads), processes(t, instances=instances, workers=workers))
            )
            continue
        front = server("pgbouncer", t.server)
        front.rows.append(
            Row(t.alias, t.role, per_process(t, threads), processes(t, instances=instances, workers=workers))
        )
        var = f"{t.prefix}_DATABASE_POOLER_MAX_CLIENT_CONN"
        if front.client_conn is None or t.pooler_max_client_conn < front.client_conn:
            front.client_conn = t.pooler_max_client_conn
        if var not in front.client_conn_vars:
            front.client_conn_vars.append(var)
        if t.role == "replica":
            front.note(f"server behind the pooler not judged for {t.alias} (replicas have no direct URL)")
            continue
        if not t.direct_server:
            front.note(f"server behind the pooler not judged; set {t.prefix}_DATABASE_DIRECT_URL")
            continue
        back = behind[t.direct_server] = server("postgres", t.direct_server)
        key = (t.server, t.database, t.user)
        if key in pairs:  # the jobs alias of the same URL: the same PgBouncer pool
            budget, i = pairs[key]
            row = budget.rows[i]
            budget.rows[i] = replace(
                row, alias=f"{row.alias}+{t.alias}", per_process=max(row.per_process, t.pooler_pool_size)
            )
        else:
            pairs[key] = (back, len(back.rows))
            back.rows.append(Row(t.alias, "pooled", t.pooler_pool_size, poolers, via=t.server))
    for before, after in zip(written, targets):
        for was, now in ((before.server, after.server), (before.direct_server, after.direct_server)):
            if was != now:
                servers[("postgres", now)].note(f"also reached as {was} (the same server)")
    for back in behind.values():
        for job in job_connections():
            if job.direct_per_instance:
                back.rows.append(Row(f"({job.label})", "direct", job.direct_per_instance, instances))
        back.rows.append(Row("(migrate_all)", "direct", 1, 1))
    for budget in servers.values():
        if budget.kind == "pgbouncer":
            budget.limits = Limits(budget.client_conn * poolers, 0)
    return list(servers.values())


def _hint(b: ServerBudget) -> str:
    roles = {r.role for r in b.rows}
    out = []
    if roles & set(CLIENT_ROLES):
        out.append("WEB_CONCURRENCY, WEB_THREADS or <P>_DATABASE_POOL_MAX_SIZE")
    if "pooled" in roles:
        out.append("<P>_DATABASE_POOLER_POOL_SIZE (the pooler's pool size) or the number of poolers")
    lower = "lower " + " or ".join(out)
    if b.kind == "pgbouncer":
        return f"{lower}, or raise max_client_conn in the pooler and {' / '.join(b.client_conn_vars)}"
    return f"{lower}, or raise max_connections"


def problems(budgets: list[ServerBudget], *, scope: str) -> list[str]:
    """One line per server over its limit; names server and aliases, never a password."""
    out = []
    for b in budgets:
        if not b.over:
            continue
        parts = ", ".join(f"{r.alias} {r.processes}x{r.per_process}={r.total}" for r in b.rows)
        if b.kind == "pgbouncer":
            where = f"pgbouncer {b.server}"
            room = (
                f"the pooler accepts {b.limits.available} (max_client_conn {b.client_conn} x "
                f"{b.poolers} pooler(s), {' / '.join(b.client_conn_vars)})"
            )
        else:
            where = b.server
            room = (
                f"the server has {b.limits.available} "
                f"(max_connections {b.limits.max_connections} - {b.limits.reserved} reserved)"
            )
        out.append(
            f"connection budget exceeded on {where} (aliases {', '.join(b.aliases)}): {scope} could open "
            f"{b.total} connections ({parts}) but {room}; {_hint(b)}"
        )
    return out


def _shape_line(budgets: list[ServerBudget], *, instances: int, workers: int, threads: int | None) -> list[str]:
    in_workers = _jobs_pools_in_web_workers()
    jobs = f"jobs pools per worker ({', '.join(in_workers)}) + 1 job" if in_workers else "jobs pools: 1 job"
    lines = [
        f"{instances} instance(s) x {workers} worker(s) x {threads if threads is not None else '-'} thread(s); "
        f"per process = max(pool min, min(pool max, threads)); {jobs}"
    ]
    pooled = [b for b in budgets if b.kind == "pgbouncer"]
    if pooled:
        direct = "".join(
            f", {j.direct_per_instance} {j.unit or j.label} per instance"
            for j in job_connections()
            if j.direct_per_instance
        )
        lines.append(
            f"{pooled[0].poolers} pooler(s); behind a pooler: <P>_DATABASE_POOLER_POOL_SIZE per "
            f"database/user pair x poolers (whatever the instances){direct}, 1 migrate_all"
        )
    return lines


def format_table(budgets: list[ServerBudget], *, instances: int, workers: int, threads: int | None) -> str:
    lines = _shape_line(budgets, instances=instances, workers=workers, threads=threads)
    for b in budgets:
        lines.append("")
        if b.kind == "pgbouncer":
            head = (
                f"{b.label}: max_client_conn {b.client_conn} x {b.poolers} pooler(s) = {b.limits.available} "
                f"client connections ({' / '.join(b.client_conn_vars)})"
            )
        elif b.limits:
            head = (
                f"{b.label}: max_connections {b.limits.max_connections} - {b.limits.reserved} reserved = "
                f"{b.limits.available} available"
            )
        else:
            head = f"{b.label}: limits unknown ({b.error})"
        lines.append(head)
        lines.append(f"  {'alias':<20} {'role':<8} {'per process':>11} {'processes':>9} {'total':>7}")
        for r in b.rows:
            lines.append(
                f"  {r.alias:<20} {r.role:<8} {r.per_process:>11} {r.processes:>9} {r.total:>7}"
                + (f"  via pgbouncer {r.via}" if r.via else "")
            )
        if b.limits:
            verdict = f"OVER by {b.total - b.limits.available}" if b.over else "ok"
            lines.append(f"  {'total':<20} {'':<8} {'':>11} {'':>9} {b.total:>7} / {b.limits.available}  {verdict}")
        else:
            lines.append(f"  {'total':<20} {'':<8} {'':>11} {'':>9} {b.total:>7}")
        for note in b.notes:
            lines.append(f"  note: {note}")
    return "\n".join(lines)


def to_dict(
    budgets: list[ServerBudget], *, instances: int, workers: int, threads: int | None, poolers: int = 1
) -> dict:
    servers = []
    for b in budgets:
        servers.append(
            {
                "server": b.server,
                "kind": b.kind,
                "aliases": b.aliases,
                "rows": [{**asdict(r), "total": r.total} for r in b.rows],
                "total": b.total,
                "max_connections": b.limits.max_connections if b.limits and b.kind == "postgres" else None,
                "reserved": b.limits.reserved if b.limits and b.kind == "postgres" else None,
                "max_client_conn": b.client_conn,
                "available": b.available,
                "over": b.over,
                "error": b.error or None,
                "notes": b.notes,
            }
        )
    return {
        "instances": instances,
        "workers": workers,
        "threads": threads,
        "poolers": poolers,
        "over": any(b.over for b in budgets),
        "servers": servers,
    }


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


def limit_probes(targets: list[Target]) -> list[tuple[str, bool]]:
    """(alias, direct) pairs that read every PostgreSQL server's limits once: direct aliases through
    their URL, servers behind a pooler through a `<P>_DATABASE_DIRECT_URL`."""
    through_url: dict[str, str] = {}
    for t in targets:
        if t.pooler == "direct":
            through_url.setdefault(t.server, t.alias)
    direct: dict[str, str] = {}
    for t in targets:
        if t.pooler == "transaction" and t.direct_server and t.direct_server not in through_url:
            direct.setdefault(t.direct_server, t.alias)
    return [(a, False) for a in through_url.values()] + [(a, True) for a in direct.values()]


def read(targets: list[Target] | None = None) -> tuple[list[Target], dict[str, Limits], dict[str, str]]:
    """Targets from settings and the limits of every PostgreSQL server (one probe per server)."""
    targets = targets if targets is not None else targets_from_settings()
    results = probe_many(limit_probes(targets), sql=LIMITS_SQL)
    limits, errors = limits_from_probes(results.values())
    return targets, limits, errors
