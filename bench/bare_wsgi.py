"""The Python limit for GET /api/users/<id>: a bare WSGI callable and one
psycopg_pool per worker, no framework. Same SQL and JSON shape as the project's
view, so the gap to it is what Django and the middleware cost.

    BARE_DATABASE_URL   postgres URL of the shared database (required)
    BARE_POOL_MAX_SIZE  pool size per worker (run.py passes SHARED_DATABASE_POOL_MAX_SIZE)

Served by gunicorn with bench/bare_gunicorn.conf.py; the pool opens lazily in
each worker after fork and closes in worker_exit.
"""

from __future__ import annotations

import json
import os
import re
import threading

from psycopg_pool import ConnectionPool

SQL = "SELECT id, username, email FROM auth_user WHERE id = %s"
PATH = re.compile(r"^/api/users/(\d+)$")
_lock = threading.Lock()
_pool: ConnectionPool | None = None


def pool() -> ConnectionPool:
    global _pool
    if _pool is None:
        with _lock:
            if _pool is None:
                size = int(os.environ.get("BARE_POOL_MAX_SIZE", "4"))
                _pool = ConnectionPool(
                    os.environ["BARE_DATABASE_URL"],
                    min_size=1,
                    max_size=size,
                    timeout=2.0,
                    kwargs={"autocommit": True, "application_name": "bench:bare"},
                    open=True,
                )
    return _pool


def close() -> None:
    if _pool is not None:
        _pool.close(timeout=5)


def _json(start_response, status: str, body: dict):
    data = json.dumps(body).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return [data]


def application(environ, start_response):
    match = PATH.match(environ.get("PATH_INFO", ""))
    if match is None or environ["REQUEST_METHOD"] != "GET":
        return _json(start_response, "404 Not Found", {"error": {"code": "not_found", "message": "no such endpoint"}})
    user_id = int(match.group(1))
    with pool().connection() as conn:
        row = conn.execute(SQL, (user_id,)).fetchone()
    if row is None:
        return _json(
            start_response,
            "404 Not Found",
            {"error": {"code": "user_not_found", "message": f"no user with id {user_id}"}},
        )
    return _json(start_response, "200 OK", {"data": {"id": row[0], "username": row[1], "email": row[2]}})
