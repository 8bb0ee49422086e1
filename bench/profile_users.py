#!/usr/bin/env python3
"""Where the time of one GET /api/users/<id> goes, in-process, one thread.

    scripts/withenv .venv/bin/python bench/profile_users.py [N]

Needs the bench databases of a previous `make bench` (bench_shared and its
seeded users). Drives Django's WSGI handler directly (no gunicorn, no
sockets), so the numbers are the framework's own per-request CPU:

1. the full production stack, microseconds per request (CPU time of the
   thread unless the name says wall);
2. the same with no middleware, then adding one middleware at a time;
3. single pieces: URL resolving, the ORM query on a held connection, the raw
   query, JsonResponse, pool checkout with and without the deadline check,
   a fresh connection;
4. a pyinstrument profile of the full stack (var/bench/profile-users.txt, and
   profile-users-all.txt with library frames).

Writes var/bench/profile-users.json; bench/profile.md explains the numbers.
"""

from __future__ import annotations

import io
import json
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import VAR, bench_urls, project_env  # noqa: E402

os.environ.update(project_env(bench_urls(), APP_ROLE="web"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.db import connections  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import resolve  # noqa: E402
from psycopg_pool import ConnectionPool  # noqa: E402

from config.multidb.backend.base import check_with_deadline  # noqa: E402
from config.multidb.lifecycle import close_all_pools  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
IDS = [int(x) for x in (VAR / "user_ids.txt").read_text().split()]


def environ_for(path: str) -> dict:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": "127.0.0.1:8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_ACCEPT": "*/*",
        "HTTP_USER_AGENT": "profile",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def start_response(status, headers, exc_info=None):
    if not status.startswith("200"):
        raise RuntimeError(f"unexpected {status}")


def handler_with(middleware: list[str]) -> WSGIHandler:
    settings.MIDDLEWARE = middleware
    return WSGIHandler()


def per_request_us(fn, n: int = N, batches: int = 5, clock=time.thread_time) -> float:
    """Best batch mean. The default clock is this thread's CPU time: other work
    on a shared machine barely moves it, where wall time swings by 2x; pass
    time.perf_counter where waiting (network, server) is the point."""
    for _ in range(min(200, n)):  # warm caches and the pool
        fn()
    size = max(n // batches, 1)
    best = float("inf")
    for _ in range(batches):
        start = clock()
        for _ in range(size):
            fn()
        best = min(best, (clock() - start) / size)
    return best * 1e6


def calls_per_request(fn, n: int = 50) -> int:
    """Python function calls per request (cProfile): the same on any machine, however busy."""
    import cProfile
    import pstats

    fn()
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(n):
        fn()
    profile.disable()
    return round(pstats.Stats(profile).total_calls / n)


def request_through(handler: WSGIHandler):
    def one():
        response = handler(environ_for(f"/api/users/{random.choice(IDS)}"), start_response)
        b"".join(response)
        response.close()  # request_finished: the connection goes back to the pool

    return one


def transfer_through(handler: WSGIHandler, accounts_file: Path):
    """POST /api/market/transfers as bench/load.lua sends it (staff token, fresh key)."""
    token = (VAR / "token.txt").read_text().strip()
    accounts = [int(x) for x in accounts_file.read_text().split()]

    def one():
        body = json.dumps({"from_account": accounts[0], "to_account": accounts[1], "amount_cents": 1}).encode()
        env = environ_for("/api/market/transfers")
        env.update(
            {
                "REQUEST_METHOD": "POST",
                "CONTENT_TYPE": "application/json",
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_AUTHORIZATION": f"Token {token}",
                "HTTP_IDEMPOTENCY_KEY": f"profile-{time.time_ns()}",
                "wsgi.input": io.BytesIO(body),
            }
        )
        statuses = []
        response = handler(env, lambda status, headers, exc_info=None: statuses.append(status))
        b"".join(response)
        response.close()
        if not statuses[0].startswith("201"):
            raise RuntimeError(f"transfer answered {statuses[0]}")

    return one


def queries_of(one) -> dict:
    """SQL statements one request sends, per alias (pool checks are extra round trips, not counted here)."""
    from django.test.utils import CaptureQueriesContext

    one()  # warm
    contexts = {alias: CaptureQueriesContext(connections[alias]) for alias in settings.DATABASE_ALIASES}
    for ctx in contexts.values():
        ctx.__enter__()
    try:
        one()
    finally:
        for ctx in contexts.values():
            ctx.__exit__(None, None, None)
    return {
        alias: [q["sql"][:160] for q in ctx.captured_queries] for alias, ctx in contexts.items() if ctx.captured_queries
    }


# Functions whose inclusive share of the profiled wall time bench/profile.md quotes.
SELECTED = {
    "view user_detail": ("user_detail", None),
    "QuerySet.first (build + run the query)": ("first", "QuerySet"),
    "SQLCompiler.as_sql (compile the SQL)": ("as_sql", "SQLCompiler"),
    "psycopg Cursor.execute (the round trip)": ("execute", "Cursor"),
    "pool checkout, ConnectionPool.getconn": ("getconn", "ConnectionPool"),
    "pool check, check_with_deadline": ("check_with_deadline", None),
    "Django connect()/close() around it": ("connect", "DatabaseWrapper"),
    "close_old_connections (request start/end)": ("close_old_connections", None),
    "URL resolving, URLResolver.resolve": ("resolve", "URLResolver"),
    "JsonResponse.__init__ (JSON encoding)": ("__init__", "JsonResponse"),
    "signals, Signal.send": ("send", "Signal"),
    "request metrics, RequestMetricsMiddleware": ("__call__", "RequestMetricsMiddleware"),
}


def shares(root, selected: dict) -> dict[str, float]:
    """Inclusive share of the root's time per selected function (outermost call only)."""
    total = root.time or 1.0
    found = {label: 0.0 for label in selected}

    def walk(frame, active: frozenset):
        here = set(active)
        for label, (function, cls) in selected.items():
            if label in active:
                continue
            if frame.function == function and (cls is None or frame.class_name == cls):
                found[label] += frame.time
                here.add(label)
        for child in frame.children:
            walk(child, frozenset(here))

    walk(root, frozenset())
    return {label: round(100 * t / total, 1) for label, t in found.items()}


def main() -> None:
    results: dict = {"n": N}
    full = list(settings.MIDDLEWARE)
    results["full_stack_wall_us"] = round(
        per_request_us(request_through(handler_with(full)), clock=time.perf_counter), 1
    )
    results["full_stack_us"] = round(per_request_us(request_through(handler_with(full))), 1)
    results["no_middleware_us"] = round(per_request_us(request_through(handler_with([]))), 1)
    # Growing prefixes of the stack (a middleware may need the ones before it):
    # the step from one prefix to the next is that middleware's cost.
    results["full_stack_calls"] = calls_per_request(request_through(handler_with(full)))
    results["no_middleware_calls"] = calls_per_request(request_through(handler_with([])))
    results["middleware_added_us"], results["middleware_added_calls"] = {}, {}
    previous, previous_calls = results["no_middleware_us"], results["no_middleware_calls"]
    for i, mw in enumerate(full):
        one = request_through(handler_with(full[: i + 1]))
        total, calls = per_request_us(one), calls_per_request(one)
        results["middleware_added_us"][mw] = round(total - previous, 1)
        results["middleware_added_calls"][mw] = calls - previous_calls
        previous, previous_calls = total, calls
    settings.MIDDLEWARE = full

    user_id = IDS[len(IDS) // 2]
    User = get_user_model()
    results["resolve_us"] = round(per_request_us(lambda: resolve(f"/api/users/{user_id}")), 2)
    results["resolve_calls"] = calls_per_request(lambda: resolve(f"/api/users/{user_id}"))
    row = User.objects.filter(pk=user_id).values("id", "username", "email").first()
    results["jsonresponse_us"] = round(per_request_us(lambda: JsonResponse({"data": row})), 2)
    results["jsonresponse_calls"] = calls_per_request(lambda: JsonResponse({"data": row}))

    conn = connections["default"]
    conn.ensure_connection()  # held for the two query timings: no checkout in them

    def orm():
        return User.objects.filter(pk=user_id).values("id", "username", "email").first()

    results["orm_query_held_conn_us"] = round(per_request_us(orm), 1)
    results["orm_query_calls"] = calls_per_request(orm)

    def raw():
        with conn.cursor() as cur:
            cur.execute("SELECT id, username, email FROM auth_user WHERE id = %s", [user_id])
            cur.fetchone()

    results["raw_query_django_cursor_us"] = round(per_request_us(raw), 1)
    results["raw_query_calls"] = calls_per_request(raw)
    results["empty_check_us"] = round(per_request_us(lambda: check_with_deadline(conn.connection, 1.0)), 1)
    results["empty_check_calls"] = calls_per_request(lambda: check_with_deadline(conn.connection, 1.0))
    conn.close()

    def checkout_django():
        conn.ensure_connection()
        conn.close()

    results["django_checkout_checkin_us"] = round(per_request_us(checkout_django), 1)
    results["django_checkout_checkin_calls"] = calls_per_request(checkout_django)

    params = conn.get_connection_params()
    params["autocommit"] = True
    plain = ConnectionPool(kwargs=params, min_size=1, max_size=1, open=True)
    try:

        def getput():
            c = plain.getconn()
            plain.putconn(c)

        results["psycopg_pool_getconn_putconn_no_check_us"] = round(per_request_us(getput), 1)
    finally:
        plain.close()

    def fresh():
        psycopg.connect(**params).close()

    results["fresh_connection_us"] = round(per_request_us(fresh, n=min(N, 300)), 1)
    results["fresh_connection_wall_us"] = round(per_request_us(fresh, n=min(N, 300), clock=time.perf_counter), 1)
    results["raw_query_wall_us"] = None  # filled below on a held connection
    conn.ensure_connection()
    results["raw_query_wall_us"] = round(per_request_us(raw, clock=time.perf_counter), 1)
    results["empty_check_wall_us"] = round(
        per_request_us(lambda: check_with_deadline(conn.connection, 1.0), clock=time.perf_counter), 1
    )
    conn.close()
    results["django_checkout_checkin_wall_us"] = round(per_request_us(checkout_django, clock=time.perf_counter), 1)

    results["queries_get_user"] = queries_of(request_through(handler_with(full)))
    accounts = VAR / "account_ids.txt"
    if accounts.exists() and len(accounts.read_text().split()) >= 2:
        transfer = transfer_through(handler_with(full), accounts)
        results["queries_transfer"] = queries_of(transfer)
        results["transfer_calls"] = calls_per_request(transfer)
        results["transfer_us"] = round(per_request_us(transfer, n=min(N, 500)), 1)
        results["transfer_wall_us"] = round(per_request_us(transfer, n=min(N, 500), clock=time.perf_counter), 1)

    from pyinstrument import Profiler

    handler = handler_with(full)
    one = request_through(handler)
    for _ in range(200):
        one()
    profiler = Profiler(interval=0.0002)
    profiler.start()
    for _ in range(N):
        one()
    profiler.stop()
    (VAR / "profile-users.txt").write_text(profiler.output_text(unicode=False, color=False))
    (VAR / "profile-users-flat.txt").write_text(
        profiler.output_text(unicode=False, color=False, flat=True, time="percent_of_total")
    )
    results["profile_share_of_wall_time_pct"] = shares(profiler.last_session.root_frame(), SELECTED)
    (VAR / "profile-users-all.txt").write_text(profiler.output_text(unicode=False, color=False, show_all=True))
    (VAR / "profile-users.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"profile: {VAR / 'profile-users.txt'}")


if __name__ == "__main__":
    try:
        main()
    finally:
        close_all_pools()
