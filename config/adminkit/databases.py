"""The admin's Databases page (`/admin/databases/`, permission `adminkit.view_databases`).

Per alias: its pool (size, in use, waiting), its circuit breaker, a replica's lag, the audit
outbox's backlog and relay lag; per database: connections by `application_name` next to the
connection budget; the endpoints holding connections longest; pool usage over the last minutes.

Nothing is measured differently from elsewhere: pools, breakers and connection holds are read
from the merged metrics /metrics renders (every worker of this instance); connections and the
budget come from `dbstat`'s query and `dbbudget`'s arithmetic (config/multidb/ops); a pooled
`SELECT 1` per alias is /readyz's; the outbox is what the audit app registered with
`lifecycle.set_outbox_reader`. Whatever touches a database runs in a thread of its own with its
own deadline, all in parallel; the page waits at most WAIT_S for them and shows what has not
answered as unavailable, so a sick database never holds up the others. A probe still out from an
earlier load is never started twice, and once it is older than WAIT_S no load waits for it again.

`?format=json` answers the same figures as JSON; `?format=fragment` the page's panel alone, which
the page's script fetches every REFRESH_S seconds.
"""

from __future__ import annotations

import datetime
import math
import os
import threading
import time
from concurrent.futures import Future, wait

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import connections
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import path

from config.httpkit.views import ready_one
from config.multidb import metrics
from config.multidb.conf.aliases import aliases
from config.multidb.lifecycle import after_fork, outbox_reader
from config.multidb.ops import budget
from config.multidb.ops.activity import ACTIVITY_SQL, summarize
from config.multidb.redact import configured_passwords, redact
from config.multidb.replicas import monitor
from config.multidb.resilience.breaker import all_breakers
from config.multidb.resilience.connect import clean_error, connect_checked

PERMISSION = "adminkit.view_databases"
WAIT_S = 1.5  # the longest the page waits for a database; it answers well within 2 s
PROBE_TIMEOUT_S = 1.0  # connect and queries of one server probe
REFRESH_S = 5
TOP_HOLDERS = 10
CHART_W, CHART_H = 720, 180
COLORS = ("#417690", "#c0392b", "#27ae60", "#8e44ad", "#d35400", "#2c3e50", "#16a085", "#7f8c8d")

# -- probes: one thread each, at most one per key in flight ----------------------------------------

_inflight: dict[str, tuple[Future, float]] = {}  # key -> (its probe, when it started)
_inflight_lock = threading.Lock()


@after_fork
def _forget_inflight() -> None:
    global _inflight_lock
    _inflight_lock = threading.Lock()
    _inflight.clear()


def _start(key: str, fn, *args) -> tuple[Future, float]:
    """`fn(*args)` in a daemon thread, and when it started; while an earlier call for `key` is
    still running, that one."""
    with _inflight_lock:
        running = _inflight.get(key)
        if running is not None and not running[0].done():
            return running
        running = _inflight[key] = (Future(), time.monotonic())
    threading.Thread(target=_run, args=(running[0], fn, args), name=f"dbpage-{key}", daemon=True).start()
    return running


def _run(future: Future, fn, args) -> None:
    future.set_running_or_notify_cancel()
    try:
        future.set_result(fn(*args))
    except BaseException as exc:  # reported on the page, by alias
        future.set_exception(exc)
    finally:
        connections.close_all()  # this thread's connections go back to their pools


def _describe(exc: BaseException) -> str:
    return redact(clean_error(exc), configured_passwords())


def _server_probe(alias: str, direct: bool, statements: tuple[str, ...]) -> list[list[tuple]]:
    """`statements` on one fresh connection (outside the pools, as `dbstat` probes), connect and
    answers within PROBE_TIMEOUT_S; their rows, as text."""
    query = ";\n".join(statements).encode()
    with connect_checked(alias, PROBE_TIMEOUT_S, query, direct=direct) as (_conn, results):
        pass
    return [
        [
            tuple(None if (v := res.get_value(r, c)) is None else v.decode() for c in range(res.nfields))
            for r in range(res.ntuples)
        ]
        for res in results
    ]


def _replica_lag(alias: str) -> dict:
    mon = monitor(alias)
    status = mon.status() or mon.last_status()
    if status is None:
        return {"usable": None, "lag_ms": None, "reason": "not probed yet"}
    return {"usable": status.usable, "lag_ms": round(status.lag_ms, 1), "reason": status.reason}


# -- what the merged metrics say ------------------------------------------------------------------

_POOL_COUNTERS = {
    "platform_db_pool_requests_total": "requests_total",
    "platform_db_pool_timeouts_total": "timeouts_total",
    "platform_db_pool_wait_seconds_total": "wait_seconds_total",
    "platform_db_pool_connection_errors_total": "connection_errors_total",
}


def _from_metrics() -> tuple[dict, dict, list[dict]]:
    """({alias: pool figures}, {alias: breaker figures}, connection holds by route) as /metrics has them."""
    metrics.refresh()
    metrics.sample_pool_history()
    pools: dict[str, dict] = {}
    breakers: dict[str, dict] = {}
    holds: dict[tuple[str, str], dict] = {}
    for family in metrics.registry().collect():
        for s in family.samples:
            alias = s.labels.get("alias")
            if s.name in _POOL_COUNTERS:
                key = _POOL_COUNTERS[s.name]
                pools.setdefault(alias, {})[key] = round(s.value, 3) if key.endswith("seconds_total") else int(s.value)
            elif s.name == "platform_db_breaker_state":
                breakers.setdefault(alias, {})["open"] = s.value >= 1
            elif s.name == "platform_db_breaker_opened_total":
                breakers.setdefault(alias, {})["opened_total"] = int(s.value)
            elif s.name.startswith("platform_db_connection_hold_seconds_"):
                hold = holds.setdefault((s.labels["route"], alias), {"buckets": []})
                kind = s.name.rsplit("_", 1)[1]
                if kind == "bucket":
                    hold["buckets"].append((float(s.labels["le"]), s.value))
                elif kind in ("sum", "count"):
                    hold[kind] = s.value
    for alias, gauges in metrics.pool_gauges().items():
        entry = pools.setdefault(alias, {})
        entry.update({k: int(v) for k, v in gauges.items()})
        entry["in_use"] = max(entry["size"] - entry["available"], 0)
    return pools, breakers, _holders(holds)


def _quantile(q: float, buckets: list[tuple[float, float]], count: float) -> float | None:
    """Prometheus' histogram_quantile over cumulative (le, count) buckets, in seconds."""
    if not count:
        return None
    rank, lower, below = q * count, 0.0, 0.0
    for le, cumulative in sorted(buckets):
        if cumulative >= rank:
            if math.isinf(le):
                return lower  # beyond the last bound: the bound is all we know
            return lower + (le - lower) * ((rank - below) / (cumulative - below) if cumulative > below else 1.0)
        lower, below = le, cumulative
    return lower


def _holders(holds: dict[tuple[str, str], dict]) -> list[dict]:
    out = []
    for (route, alias), h in holds.items():
        count = h.get("count", 0.0)
        if not count:
            continue
        p95 = _quantile(0.95, h["buckets"], count)
        out.append(
            {
                "route": route,
                "alias": alias,
                "requests": int(count),
                "mean_ms": round(h.get("sum", 0.0) / count * 1000, 2),
                "p95_ms": None if p95 is None else round(p95 * 1000, 2),
                "total_s": round(h.get("sum", 0.0), 3),
            }
        )
    out.sort(key=lambda h: (h["mean_ms"], h["requests"]), reverse=True)
    return out[:TOP_HOLDERS]


def _breaker_here(alias: str) -> dict:
    """This process's breaker for `alias`: since when it is open (wall clock), its last error."""
    b = all_breakers().get(alias)
    if b is None:
        return {"here": "closed", "since": None, "failures": 0, "last_error": ""}
    opened_at = b.opened_at
    since = None
    if opened_at is not None:
        wall = time.time() - (time.monotonic() - opened_at)
        since = datetime.datetime.fromtimestamp(wall, datetime.UTC).isoformat(timespec="seconds")
    return {"here": b.state, "since": since, "failures": b.failures, "last_error": b.last_error}


# -- the page's figures -----------------------------------------------------------------------------


def gather() -> dict:
    """Every figure of the page, within about WAIT_S whatever the databases do."""
    started = time.monotonic()
    infos = aliases()
    targets = budget.targets_from_settings()
    by_alias = {t.alias: t for t in targets}

    # One connection per server (as written in the URLs): its limits (dbbudget) and its activity (dbstat).
    statements: dict[tuple[str, bool], list[str]] = {}
    for key in budget.limit_probes(targets):
        statements.setdefault(key, []).append(budget.LIMITS_SQL)
    activity_of: dict[str, tuple[str, bool]] = {}
    for t in targets:
        if t.server not in activity_of:
            activity_of[t.server] = (t.alias, False)
            statements.setdefault((t.alias, False), []).append(ACTIVITY_SQL)
    futures: dict[tuple, tuple[Future, float]] = {}
    for (alias, direct), sqls in statements.items():
        key = f"server:{alias}:{direct:d}"
        futures[("server", alias, direct)] = _start(key, _server_probe, alias, direct, tuple(sqls))
    for alias, info in infos.items():
        if info.kind != "jobs":
            futures[("ping", alias)] = _start(f"ping:{alias}", ready_one, alias)
        if info.kind == "replica":
            futures[("lag", alias)] = _start(f"lag:{alias}", _replica_lag, alias)
    reader = outbox_reader()
    if reader is not None:
        for alias, info in infos.items():
            if info.kind == "primary":
                futures[("outbox", alias)] = _start(f"outbox:{alias}", reader, [alias])

    # Probes an earlier load started and gave up on are not waited for again.
    fresh = [future for future, since in futures.values() if started - since < WAIT_S]
    wait(fresh, timeout=max(WAIT_S - (time.monotonic() - started), 0.0))
    pools, breakers, holders = _from_metrics()  # after the probes, which borrow pooled connections

    def outcome(key: tuple):
        """(result, "") or (None, why not)."""
        if key not in futures:
            return None, "not probed"
        future, since = futures[key]
        if not future.done():
            return None, f"no answer within {max(time.monotonic() - since, WAIT_S):.1f} s"
        exc = future.exception()
        return (None, _describe(exc)) if exc is not None else (future.result(), "")

    # Limits and activity of each server, then the budget's arithmetic over them.
    limits: dict[str, budget.Limits] = {}
    errors: dict[str, str] = {}
    activity: dict[str, tuple[list | None, str]] = {}
    for (alias, direct), sqls in statements.items():
        t = by_alias[alias]
        address = t.direct_server if direct else t.server
        result, error = outcome(("server", alias, direct))
        answers = dict(zip(sqls, result)) if result is not None else {}
        if budget.LIMITS_SQL in sqls:
            if result is not None:
                limits.setdefault(address, budget.Limits.from_rows(answers[budget.LIMITS_SQL]))
            else:
                errors.setdefault(address, f"{alias}: {error}")
        if ACTIVITY_SQL in sqls:
            activity[address] = (answers.get(ACTIVITY_SQL), error)
    workers, threads = settings.ENV["WEB_CONCURRENCY"], settings.ENV["WEB_THREADS"]
    plans = budget.plan(targets, instances=1, workers=workers, threads=threads, limits=limits, errors=errors)
    planned = {r.alias: r.total for b in plans for r in b.rows if r.role in budget.CLIENT_ROLES}
    named = budget.same_server_targets(targets, limits)
    server_rows: dict[str, tuple[list | None, str]] = {}
    for written, t in zip(targets, named):
        rows, error = activity.get(written.server, (None, "not probed"))
        if t.server not in server_rows or server_rows[t.server][0] is None:
            server_rows[t.server] = (rows, error)

    databases: dict[tuple[str, str], dict] = {}
    for t in named:
        entry = databases.get((t.server, t.database))
        if entry is None:
            rows, error = server_rows[t.server]
            entry = databases[(t.server, t.database)] = {
                "server": t.server,
                "database": t.database,
                "aliases": [],
                "available": rows is not None,
                "error": error,
                **(summarize(rows, t.database) if rows is not None else {"connections": None, "by": []}),
                "budget": 0,
            }
            entry.setdefault("oldest_idle_in_transaction_s", None)
        entry["aliases"].append(t.alias)
        entry["budget"] += planned.get(t.alias, 0)

    servers = []
    for b in plans:
        rows = server_rows.get(b.server, (None, ""))[0] if b.kind == "postgres" else None
        servers.append(
            {
                "server": b.server,
                "kind": b.kind,
                "aliases": b.aliases,
                "connections": sum(int(r[3]) for r in rows) if rows is not None else None,
                "budget": b.total,
                "max_connections": b.limits.max_connections if b.limits and b.kind == "postgres" else None,
                "slots": b.available,
                "over": b.over,
                "over_by": b.total - b.available if b.over else 0,
                "error": b.error or None,
                "notes": b.notes,
            }
        )

    out_aliases = []
    for alias, info in infos.items():
        ping, ping_error = outcome(("ping", info.base if info.kind == "jobs" else alias))
        available = bool(ping and ping.get("ok"))
        error = "" if available else (ping.get("error", "") if ping else ping_error)
        pool = pools.get(alias, {})
        merged = breakers.get(alias, {})
        here = _breaker_here(alias)
        entry = {
            "alias": alias,
            "kind": info.kind,
            "base": info.base,
            "application_name": info.label,
            "server": by_alias[alias].server,
            "database": by_alias[alias].database,
            "available": available,
            "error": error,
            "ping_ms": ping.get("ms") if ping else None,
            "pool": {
                key: pool.get(key, 0)
                for key in ("size", "in_use", "available", "waiting", "max_size", *_POOL_COUNTERS.values())
            },
            "breaker": {
                "state": "open" if merged.get("open") else "closed",
                "opened_total": merged.get("opened_total", 0),
                **here,
            },
            "budget": planned.get(alias, 0),
            "replica": None,
            "outbox": None,
        }
        if info.kind == "replica":
            lag, lag_error = outcome(("lag", alias))
            entry["replica"] = lag or {"usable": None, "lag_ms": None, "reason": lag_error}
        if ("outbox", alias) in futures:
            status, outbox_error = outcome(("outbox", alias))
            if status is None:
                entry["outbox"] = {"depth": None, "oldest_age_s": None, "error": outbox_error}
            elif alias in status:
                entry["outbox"] = {**status[alias], "error": ""}
        out_aliases.append(entry)

    now = time.time()
    return {
        "generated_at": datetime.datetime.fromtimestamp(now, datetime.UTC).isoformat(timespec="milliseconds"),
        "took_ms": round((time.monotonic() - started) * 1000, 1),
        "wait_s": WAIT_S,
        "refresh_s": REFRESH_S,
        "pid": os.getpid(),
        "multiprocess": metrics.multiprocess_enabled(),
        "workers": workers,
        "threads": threads,
        "unavailable": [a["alias"] for a in out_aliases if not a["available"]],
        "aliases": out_aliases,
        "databases": list(databases.values()),
        "servers": servers,
        "holders": holders,
        "history": _history(now),
    }


def _history(now: float) -> dict:
    """Pool usage samples over the last minutes: {span_s, aliases, samples: [{t, in_use, waiting}]}."""
    samples = []
    names: list[str] = []
    for t, gauges in metrics.pool_history():
        in_use, waiting = {}, {}
        for alias, g in gauges.items():
            if alias not in names:
                names.append(alias)
            in_use[alias] = int(max(g["size"] - g["available"], 0))
            waiting[alias] = int(g["waiting"])
        samples.append({"t": round(t, 3), "in_use": in_use, "waiting": waiting})
    order = list(aliases())
    names.sort(key=lambda a: order.index(a) if a in order else len(order))
    return {"span_s": metrics.HISTORY_SPAN_S, "now": round(now, 3), "aliases": names, "samples": samples}


# -- the chart: inline SVG, drawn here -------------------------------------------------------------


def _nice_ceiling(value: float) -> int:
    if value <= 2:
        return 2
    magnitude = 10 ** int(math.log10(value))
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return int(step * magnitude)
    return int(10 * magnitude)


def chart(history: dict) -> dict:
    """Polylines of connections in use per alias (and waiting, dashed, when any) over the span."""
    span, now, samples = history["span_s"], history["now"], history["samples"]
    left, right, top, bottom = 36, 8, 8, 22
    width, height = CHART_W - left - right, CHART_H - top - bottom
    peak = max([v for s in samples for part in ("in_use", "waiting") for v in s[part].values()], default=0)
    y_max = _nice_ceiling(peak)

    def x(t: float) -> float:
        return round(left + max(min((t - (now - span)) / span, 1.0), 0.0) * width, 1)

    def y(v: float) -> float:
        return round(top + height - v / y_max * height, 1)

    series = []
    for i, alias in enumerate(history["aliases"]):
        color = COLORS[i % len(COLORS)]
        for part, dashed in (("in_use", False), ("waiting", True)):
            points = [(x(s["t"]), y(s[part][alias])) for s in samples if alias in s[part]]
            if dashed and not any(s[part].get(alias) for s in samples):
                continue
            last = next((s[part][alias] for s in reversed(samples) if alias in s[part]), 0)
            series.append(
                {
                    "alias": alias,
                    "part": part,
                    "color": color,
                    "dashed": dashed,
                    "points": " ".join(f"{px},{py}" for px, py in points),
                    "dots": points[-1:] if len(points) == 1 else [],  # one sample: a dot, not a line
                    "last": last,
                }
            )
    minutes = int(span // 60)
    return {
        "width": CHART_W,
        "height": CHART_H,
        "left": left,
        "right": CHART_W - right,
        "top": top,
        "bottom": top + height,
        "mid": y(y_max / 2),
        "y_max": y_max,
        "y_mid": y_max / 2 if y_max % 2 else y_max // 2,
        "x_label_y": CHART_H - 6,
        "minutes": minutes,
        "series": series,
        "samples": len(samples),
    }


# -- the view and its wiring ------------------------------------------------------------------------


def databases_view(site):
    def view(request):
        if not request.user.has_perm(PERMISSION):
            raise PermissionDenied
        data = gather()
        fmt = request.GET.get("format")
        if fmt == "json":
            response = JsonResponse(data)
        else:
            context = {
                **site.each_context(request),
                "title": "Databases",
                "data": data,
                "chart": chart(data["history"]),
            }
            template = "adminkit/databases_panel.html" if fmt == "fragment" else "adminkit/databases.html"
            response = render(request, template, context)
        return response  # admin_view adds never_cache

    return view


def install(site) -> None:
    """Add the page to `site` (`admin:databases`, through `site.admin_view`, so staff only) and a
    link to it on the index for whoever may open it."""
    get_urls = site.get_urls

    def urls():
        return [path("databases/", site.admin_view(databases_view(site)), name="databases"), *get_urls()]

    site.get_urls = urls
    if site.index_template is None:
        site.index_template = "adminkit/index.html"
