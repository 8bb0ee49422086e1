"""`SELECT 1` against an alias with a hard deadline, outside any pool.

Used where a pool must not be opened (gunicorn's master at boot) and by
`dbcheck`. Errors are reduced to libpq's message, which never holds a password.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from django.db import connections

from config.multidb.backend.base import check_with_deadline


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


def connect_kwargs(alias: str, *, direct: bool = False) -> dict:
    """libpq keywords of an alias, as its pool would use them (without the pool)."""
    wrapper = connections[alias]
    params = wrapper.get_connection_params()
    for key in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(key, None)
    if direct and wrapper.settings_dict.get("DIRECT"):
        d = wrapper.settings_dict["DIRECT"]
        params.update(
            {"dbname": d["NAME"], "user": d["USER"], "password": d["PASSWORD"], "host": d["HOST"], "port": d["PORT"]}
        )
        params = {k: v for k, v in params.items() if v not in ("", None)}
    return params


def clean_error(exc: BaseException, password: str | None = None) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if password:
        text = text.replace(password, "***")
    return text


def probe(alias: str, timeout: float | None = None, sql: str | None = None, *, direct: bool = False) -> ProbeResult:
    """`SELECT 1` within the deadline; then `sql`, if given, on the same connection (boot reads limits so).
    `direct`: through the alias's `<P>_DATABASE_DIRECT_URL` (the server behind its pooler)."""
    sd = connections[alias].settings_dict
    if direct:
        sd = sd["DIRECT"]
    result = ProbeResult(alias, f"{sd['HOST']}:{sd['PORT'] or 5432}", sd["NAME"], ok=False)
    params = connect_kwargs(alias, direct=direct)
    deadline = timeout or float(params.get("connect_timeout", 2))
    params["connect_timeout"] = max(int(deadline + 0.999), 1)
    start = time.perf_counter()
    try:
        with psycopg.connect(**params, autocommit=True) as conn:
            check_with_deadline(conn, deadline, b"SELECT 1")
            result.tls = bool(conn.pgconn.ssl_in_use)
            if sql:
                result.rows = conn.execute(sql).fetchall()
        result.ok = True
    except Exception as exc:  # any failure is a result, reported by alias
        result.error = clean_error(exc, sd.get("PASSWORD"))
    result.ms = round((time.perf_counter() - start) * 1000, 1)
    return result
