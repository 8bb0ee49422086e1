"""Prometheus metrics, correct across gunicorn's worker processes.

Under gunicorn prometheus_client runs in multiprocess mode (gunicorn.conf.py
sets PROMETHEUS_MULTIPROC_DIR): each worker writes its samples to files that
/metrics merges. Nothing here queries a database: pool figures come from
psycopg_pool's in-process `get_stats()`, copied into gauges and counters by
`refresh()` (a thread in every worker, once a second, and /metrics itself).
The same thread keeps a few minutes of pool usage for the admin's Databases page.
Request metrics are recorded by `RequestMetricsMiddleware` (config/httpkit/middleware.py).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import threading
import time
from collections import deque

from django.conf import settings
from django.db.backends.postgresql.base import DatabaseWrapper
from django.db.backends.signals import connection_created
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from config.multidb.conf.aliases import aliases
from config.multidb.lifecycle import after_fork
from config.multidb.resilience.breaker import all_breakers

log = logging.getLogger(__name__)

REFRESH_SECONDS = 1.0

# -- database pools (per alias; gauges summed over live workers) ----------
POOL_SIZE = Gauge(
    "platform_db_pool_size", "Connections open in the pool (idle + in use)", ["alias"], multiprocess_mode="livesum"
)
POOL_AVAILABLE = Gauge(
    "platform_db_pool_available", "Idle connections ready in the pool", ["alias"], multiprocess_mode="livesum"
)
POOL_WAITING = Gauge(
    "platform_db_pool_waiting", "Requests waiting for a connection", ["alias"], multiprocess_mode="livesum"
)
POOL_MAX = Gauge(
    "platform_db_pool_max_size",
    "Configured pool max_size (summed: this instance's cap)",
    ["alias"],
    multiprocess_mode="livesum",
)

# Counters copied from psycopg_pool's cumulative statistics (key, counter, scale).
_POOL_COUNTERS = (
    ("requests_num", Counter("platform_db_pool_requests", "Connections requested from the pool", ["alias"]), 1),
    ("requests_queued", Counter("platform_db_pool_queued", "Requests that had to wait for a connection", ["alias"]), 1),
    (
        "requests_wait_ms",
        Counter("platform_db_pool_wait_seconds", "Time spent waiting for a connection", ["alias"]),
        0.001,
    ),
    (
        "requests_errors",
        Counter(
            "platform_db_pool_timeouts",
            "Requests that got no connection (pool timeout or waiting queue full)",
            ["alias"],
        ),
        1,
    ),
    (
        "usage_ms",
        Counter("platform_db_pool_usage_seconds", "Time connections spent checked out of the pool", ["alias"]),
        0.001,
    ),
    ("connections_num", Counter("platform_db_pool_connections_opened", "Connections opened by the pool", ["alias"]), 1),
    (
        "connections_errors",
        Counter("platform_db_pool_connection_errors", "Failed attempts to open a connection", ["alias"]),
        1,
    ),
    (
        "connections_lost",
        Counter("platform_db_pool_connections_lost", "Connections found broken by the pool", ["alias"]),
        1,
    ),
)

# -- circuit breakers (config/multidb/resilience/breaker.py) ----------------------------------
BREAKER_STATE = Gauge(
    "platform_db_breaker_state",
    "Circuit breaker: 1 while open (requests for the alias get 503 at once), worst worker",
    ["alias"],
    multiprocess_mode="livemax",
)
BREAKER_OPENED = Counter("platform_db_breaker_opened", "Times the circuit breaker opened", ["alias"])

# -- HTTP --------------------------------------------------------------------
HTTP_REQUESTS = Counter("platform_http_requests", "HTTP requests by domain and status", ["domain", "status"])
HTTP_DURATION = Histogram(
    "platform_http_request_duration_seconds",
    "HTTP request latency by domain and status",
    ["domain", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
HTTP_DB_UNAVAILABLE = Counter(
    "platform_http_database_unavailable", "503 database_unavailable answers, by the alias they name", ["alias"]
)
CONNECTION_HOLD = Histogram(
    "platform_db_connection_hold_seconds",
    "Per request and alias: from its first checkout of the alias until the response leaves the middleware "
    "(the connection goes back to the pool right after)",
    ["route", "alias"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# The audit outbox gauges (platform_audit_outbox_*) live in audit/metrics.py,
# set by the relay when it measures; they are rendered here with the rest.


# -- pool statistics -> metrics ----------------------------------------------
_refresh_lock = threading.Lock()
_seen: dict[tuple[str, str], int] = {}  # (alias, stat) -> last cumulative value copied
_seen_pool: dict[str, int] = {}  # alias -> id() of the pool those values came from
_seen_opened: dict[str, int] = {}
_labelled: set[str] = set()


@after_fork
def _forget_parent_counts() -> None:
    """The parent's counts are not the child's; nor is its lock (maybe held at fork time)."""
    global _refresh_lock, _refresher_started
    _refresh_lock = threading.Lock()
    _seen.clear()
    _seen_pool.clear()
    _seen_opened.clear()
    _labelled.clear()
    _refresher_started = False  # the parent's thread does not exist here


def _advance(counter, key: tuple[str, str], value: int, scale: float) -> None:
    last = _seen.get(key, 0)
    delta = value - last if value >= last else value  # a smaller value: the pool restarted its counts
    if delta:
        counter.labels(key[0]).inc(delta * scale)
    _seen[key] = value


def refresh() -> None:
    """Copy this process's pool statistics and breaker states into the metrics (no query)."""
    with _refresh_lock:
        pools = DatabaseWrapper._connection_pools
        breakers = all_breakers()
        for alias in aliases():
            if alias not in _labelled:  # every series exists from the start, at 0
                for _stat, counter, _scale in _POOL_COUNTERS:
                    counter.labels(alias)
                BREAKER_OPENED.labels(alias)
                HTTP_DB_UNAVAILABLE.labels(alias)
                _labelled.add(alias)
            breaker = breakers.get(alias)
            BREAKER_STATE.labels(alias).set(0 if breaker is None or breaker.state == "closed" else 1)
            if breaker is not None:
                opened, last = breaker.opened_total, _seen_opened.get(alias, 0)
                delta = opened - last if opened >= last else opened  # smaller: a new breaker object
                if delta:
                    BREAKER_OPENED.labels(alias).inc(delta)
                _seen_opened[alias] = opened
            pool = pools.get(alias)
            options = settings.DATABASES[alias]["OPTIONS"].get("pool")
            POOL_MAX.labels(alias).set(options["max_size"] if isinstance(options, dict) else 0)
            if pool is None:
                POOL_SIZE.labels(alias).set(0)
                POOL_AVAILABLE.labels(alias).set(0)
                POOL_WAITING.labels(alias).set(0)
                continue
            stats = pool.get_stats()
            POOL_SIZE.labels(alias).set(stats.get("pool_size", 0))
            POOL_AVAILABLE.labels(alias).set(stats.get("pool_available", 0))
            POOL_WAITING.labels(alias).set(stats.get("requests_waiting", 0))
            if _seen_pool.get(alias) != id(pool):
                for stat, _counter, _scale in _POOL_COUNTERS:
                    _seen.pop((alias, stat), None)
                _seen_pool[alias] = id(pool)
            for stat, counter, scale in _POOL_COUNTERS:
                _advance(counter, (alias, stat), stats.get(stat, 0), scale)


_stop = threading.Event()
_refresher_started = False


def start_refresher(interval: float = REFRESH_SECONDS) -> None:
    """One daemon thread per process keeps the pool metrics current between scrapes."""
    global _refresher_started
    if _refresher_started:
        return
    _refresher_started = True

    def loop() -> None:
        failed = False
        while not _stop.wait(interval):
            try:
                refresh()
                sample_pool_history(HISTORY_EVERY_S)
                failed = False
            except Exception:  # never let metrics take a worker down; log once per failure streak
                if not failed:
                    log.exception("metrics refresh failed")
                failed = True

    threading.Thread(target=loop, name="metrics-refresh", daemon=True).start()


def multiprocess_enabled() -> bool:
    return bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def registry() -> CollectorRegistry:
    """What /metrics renders: every worker's samples merged in multiprocess mode, else this process's."""
    if multiprocess_enabled():
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)
        return merged
    return REGISTRY


def render() -> tuple[bytes, str]:
    refresh()
    return generate_latest(registry()), CONTENT_TYPE_LATEST


# -- pool usage over the last minutes (charted by the admin's Databases page) ---------------------
HISTORY_EVERY_S = 5.0
HISTORY_SPAN_S = 600.0
_POOL_GAUGES = {
    "platform_db_pool_size": "size",
    "platform_db_pool_available": "available",
    "platform_db_pool_waiting": "waiting",
    "platform_db_pool_max_size": "max_size",
}
_history: deque[tuple[float, dict[str, dict[str, float]]]] = deque(maxlen=int(HISTORY_SPAN_S / HISTORY_EVERY_S) * 2)
_history_lock = threading.Lock()


@after_fork
def _forget_parent_history() -> None:
    global _history_lock
    _history_lock = threading.Lock()
    _history.clear()


def pool_gauges() -> dict[str, dict[str, float]]:
    """{alias: {size, available, waiting, max_size}} as /metrics has them: summed over live workers
    in multiprocess mode (read from their gauge files alone, a few small files), else this process's."""
    if multiprocess_enabled():
        files = glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "gauge_livesum_*.db"))
        families = multiprocess.MultiProcessCollector.merge(files)
    else:
        families = [f for g in (POOL_SIZE, POOL_AVAILABLE, POOL_WAITING, POOL_MAX) for f in g.collect()]
    out: dict[str, dict[str, float]] = {}
    for family in families:
        for sample in family.samples:
            key = _POOL_GAUGES.get(sample.name)
            if key is not None:
                out.setdefault(sample.labels["alias"], dict.fromkeys(_POOL_GAUGES.values(), 0.0))[key] = sample.value
    return out


def sample_pool_history(min_gap: float = 1.0) -> None:
    """Keep one more sample of pool_gauges(), unless the last is younger than `min_gap` seconds.
    Every worker samples the same merged figures, so any worker's history tells the same story."""
    now = time.time()
    with _history_lock:
        if _history and now - _history[-1][0] < min_gap:
            return
        gauges = pool_gauges()
        _history.append((now, gauges))
        while _history and _history[0][0] < now - HISTORY_SPAN_S:
            _history.popleft()


def pool_history() -> list[tuple[float, dict[str, dict[str, float]]]]:
    """[(unix time, pool_gauges())] over the last HISTORY_SPAN_S seconds, oldest first."""
    with _history_lock:
        return list(_history)


# -- per-request recording (kept cheap: the API is benchmarked) -------------
_OPS_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
_DOMAIN_PREFIXES = (
    ("/api/users/", "users"),
    ("/api/blog/", "blog"),
    ("/api/market/", "market"),
    ("/admin/", "admin"),
    ("/static/", "static"),
)
_request_children: dict[tuple[str, int], tuple] = {}
_hold_children: dict[tuple[str, str], object] = {}
_local = threading.local()


def path_domain(path: str) -> str:
    if path in _OPS_PATHS:
        return "ops"
    for prefix, name in _DOMAIN_PREFIXES:
        if path.startswith(prefix):
            return name
    return "other"


def _on_connection_created(sender, connection, **kwargs) -> None:
    # With a pool, Django "creates" a connection on every checkout; note the first one per alias.
    held = getattr(_local, "held", None)
    if held is not None and getattr(_local, "active", False) and connection.alias not in held:
        held[connection.alias] = time.perf_counter()


connection_created.connect(_on_connection_created, dispatch_uid="platform-metrics-connection-hold")


def request_started() -> float:
    try:
        _local.held.clear()
        _local.waited.clear()
    except AttributeError:
        _local.held, _local.waited = {}, {}
    _local.active = True
    return time.perf_counter()


def note_pool_wait(alias: str, seconds: float) -> None:
    """The backend took `seconds` to get a connection of `alias` (pool wait and checkout check)."""
    waited = getattr(_local, "waited", None)
    if waited is not None and getattr(_local, "active", False):
        waited[alias] = waited.get(alias, 0.0) + seconds


def request_finished(request, response, started: float) -> dict[str, dict[str, float]]:
    match = request.resolver_match
    return record_request(
        request.path_info,
        response.status_code,
        match.route if match is not None else "unmatched",
        started,
        response=response,
    )


def record_request(path: str, status: int, route: str, started: float, response=None) -> dict[str, dict[str, float]]:
    """One answered request: its count and latency by domain, and how long it held each alias
    (`response` is read only for a 503, to count the database it names). Returns what it used
    of each database, for the access line: {alias: {"held_ms", "wait_ms"}}, not rounded (the
    line writes them to the hundredth: rounding here too would cost twice per request)."""
    end = time.perf_counter()
    used: dict[str, dict[str, float]] = {}
    _local.active = False
    domain = path_domain(path)
    children = _request_children.get((domain, status))
    if children is None:
        label = str(status)
        children = _request_children.setdefault(
            (domain, status), (HTTP_REQUESTS.labels(domain, label), HTTP_DURATION.labels(domain, label))
        )
    children[0].inc()
    children[1].observe(end - started)
    held, waited = _local.held, _local.waited
    if held:
        for alias, since in held.items():
            child = _hold_children.get((route, alias))
            if child is None:
                child = _hold_children.setdefault((route, alias), CONNECTION_HOLD.labels(route, alias))
            child.observe(end - since)
            used[alias] = {"held_ms": (end - since) * 1000, "wait_ms": waited.get(alias, 0.0) * 1000}
        held.clear()
        waited.clear()
    if status == 503 and response is not None:
        alias = _unavailable_alias(response)
        if alias:
            HTTP_DB_UNAVAILABLE.labels(alias).inc()
    return used


def _unavailable_alias(response) -> str | None:
    if not response.get("Content-Type", "").startswith("application/json") or getattr(response, "streaming", False):
        return None
    try:
        error = json.loads(response.content).get("error") or {}
    except (ValueError, AttributeError):
        return None
    return error.get("database") if error.get("code") == "database_unavailable" else None
