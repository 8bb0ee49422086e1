"""Process-level endpoints: liveness, readiness, metrics; and the shared users API."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor, wait

from django.conf import settings
from django.db import connections
from django.http import HttpResponse, JsonResponse

from config.httpkit.auth import credentials_match
from config.httpkit.errors import error_response
from config.multidb import metrics as m
from config.multidb.backend.base import check_with_deadline
from config.multidb.conf.aliases import aliases
from config.multidb.ops.probe import probe
from config.multidb.resilience.breaker import DatabaseUnavailable, breaker_for

READY_DEADLINE_S = 1.0


def healthz(request):
    return JsonResponse({"status": "ok"})


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


def ready_one(alias: str) -> dict:
    """Borrow a pooled connection and run `SELECT 1`, within READY_DEADLINE_S (readiness, and
    the admin's Databases page).

    An open breaker answers at once; the result feeds the breaker like any
    other connection attempt.
    """
    start = time.perf_counter()
    breaker = breaker_for(alias)
    try:
        breaker.before()
    except DatabaseUnavailable as exc:
        return {"ok": False, "ms": _ms(start), "error": exc.reason or "unavailable"}
    try:
        pool = connections[alias].pool
        if pool is None:  # pools disabled: a plain connection, same deadline
            result = probe(alias, timeout=READY_DEADLINE_S)
            if not result.ok:
                raise ConnectionError(result.error)
        else:
            pool.open(wait=False)
            with pool.connection(timeout=READY_DEADLINE_S) as conn:
                left = READY_DEADLINE_S - (time.perf_counter() - start)
                check_with_deadline(conn, max(left, 0.05), b"SELECT 1")
    except Exception as exc:
        breaker.failure()
        return {"ok": False, "ms": _ms(start), "error": type(exc).__name__}
    breaker.success()
    return {"ok": True, "ms": _ms(start)}


def readyz(request):
    """Every non-jobs alias in parallel; a hung one answers `ok: false` after READY_DEADLINE_S,
    whatever the pool is doing (the executor is not waited for).

    Primaries decide readiness. A replica is listed (`"role": "replica"`) but a failing one
    keeps the answer 200: its reads fall back to the primary (config/multidb/replicas.py)."""
    start = time.perf_counter()
    roles = {a: info.kind for a, info in aliases().items() if info.kind != "jobs"}
    ex = ThreadPoolExecutor(max_workers=len(roles), thread_name_prefix="readyz")
    futures = {alias: ex.submit(ready_one, alias) for alias in roles}
    wait(futures.values(), timeout=READY_DEADLINE_S + 0.5)
    ex.shutdown(wait=False)
    results = {
        alias: {
            **(f.result() if f.done() else {"ok": False, "ms": _ms(start), "error": "timeout"}),
            "role": roles[alias],
        }
        for alias, f in futures.items()
    }
    ok = all(r["ok"] for r in results.values() if r["role"] != "replica")
    return JsonResponse({"status": "ok" if ok else "unavailable", "databases": results}, status=200 if ok else 503)


def metrics(request):
    token = settings.ENV["METRICS_TOKEN"]
    if token and not credentials_match(request.headers.get("Authorization", ""), "Bearer", token):
        return error_response(
            401,
            "not_authenticated",
            "GET /metrics needs 'Authorization: Bearer <METRICS_TOKEN>'",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    body, content_type = m.render()
    return HttpResponse(body, content_type=content_type)
