"""Process-level endpoints: liveness, readiness, metrics; and the shared users API."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections
from django.http import HttpResponse, JsonResponse

from config.breaker import breaker_for
from config.db_backend.base import check_with_deadline
from config.http import error_response

READY_DEADLINE_S = 1.0


def healthz(request):
    return JsonResponse({"status": "ok"})


def _ready_one(alias: str) -> dict:
    start = time.perf_counter()
    try:
        breaker_for(alias).before()
        pool = connections[alias].pool
        pool.open(wait=False)
        with pool.connection(timeout=READY_DEADLINE_S) as conn:
            check_with_deadline(conn, READY_DEADLINE_S, b"SELECT 1")
        return {"ok": True, "ms": round((time.perf_counter() - start) * 1000, 1)}
    except Exception as exc:
        return {"ok": False, "ms": round((time.perf_counter() - start) * 1000, 1), "error": type(exc).__name__}


def readyz(request):
    aliases = [a for a, info in settings.DATABASE_ALIASES.items() if info.kind != "jobs"]
    with ThreadPoolExecutor(max_workers=len(aliases)) as ex:
        results = dict(zip(aliases, ex.map(_ready_one, aliases)))
    ok = all(r["ok"] for r in results.values())
    return JsonResponse({"status": "ok" if ok else "unavailable", "databases": results}, status=200 if ok else 503)


def user_detail(request, user_id: int):
    row = (get_user_model().objects.filter(pk=user_id).values("id", "username", "email").first())
    if row is None:
        return error_response(404, "user_not_found", f"no user with id {user_id}")
    return JsonResponse({"data": row})


def metrics(request):
    from config import metrics as m

    body, content_type = m.render()
    return HttpResponse(body, content_type=content_type)
