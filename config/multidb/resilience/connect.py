"""Connecting within a deadline: the one routine the probe, the breaker's background probe,
the replica monitor and the pool's checks share.

libpq's `connect_timeout` bounds the connect; `check_with_deadline` bounds the first
round trip (psycopg's own waits block forever on a hung server). Errors are reduced to
libpq's message, which never holds a password.
"""

from __future__ import annotations

import contextlib
import selectors
import time
from collections.abc import Iterator

import psycopg
from django.db import connections
from psycopg import generators, pq
from psycopg.waiting import Ready, Wait

_EVENTS = {
    Wait.R: selectors.EVENT_READ,
    Wait.W: selectors.EVENT_WRITE,
    Wait.RW: selectors.EVENT_READ | selectors.EVENT_WRITE,
}


def check_with_deadline(conn: psycopg.Connection, timeout: float, query: bytes = b"") -> list:
    """Run `query` (empty by default), giving up after `timeout` seconds.

    psycopg_pool's own check blocks forever on a hung server; this one drives
    psycopg's non-blocking generator with a selector and a deadline.
    """
    if conn.closed or conn.info.transaction_status != pq.TransactionStatus.IDLE:
        raise psycopg.OperationalError("connection not idle")
    pgconn = conn.pgconn
    deadline = time.monotonic() + timeout
    pgconn.send_query(query)
    gen = generators.execute(pgconn)
    with selectors.DefaultSelector() as sel:
        fileno = pgconn.socket
        try:
            wait = next(gen)
            while True:
                sel.register(fileno, _EVENTS[wait])
                left = deadline - time.monotonic()
                events = sel.select(left) if left > 0 else []
                sel.unregister(fileno)
                if not events:
                    conn.close()
                    raise psycopg.OperationalError(f"connection check timed out after {timeout:g}s")
                ready = 0
                for _key, mask in events:
                    ready |= mask
                wait = gen.send(Ready(ready))
        except StopIteration as done:
            results = done.value
    for res in results or ():
        if res.status == pq.ExecStatus.FATAL_ERROR:
            raise psycopg.OperationalError("connection check failed")
    return list(results or ())  # raw PGresults, for callers that read values (config/multidb/replicas.py)


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


@contextlib.contextmanager
def connect_checked(
    alias: str, timeout: float | None = None, query: bytes = b"SELECT 1", *, direct: bool = False
) -> Iterator[tuple[psycopg.Connection, list]]:
    """A fresh connection to `alias` outside any pool, connected and `query` answered within
    `timeout` seconds (default: the alias's connect_timeout); yields it with `query`'s raw results
    and closes it afterwards. `direct`: through the alias's `<P>_DATABASE_DIRECT_URL`."""
    params = connect_kwargs(alias, direct=direct)
    deadline = timeout or float(params.get("connect_timeout", 2))
    params["connect_timeout"] = max(int(deadline + 0.999), 1)  # libpq counts whole seconds
    with psycopg.connect(**params, autocommit=True) as conn:
        yield conn, check_with_deadline(conn, deadline, query)


def answers(alias: str) -> bool:
    """Whether `alias` answers `SELECT 1` within its connect timeout (the breaker's default probe)."""
    try:
        with connect_checked(alias):
            return True
    except Exception:  # any failure is a "no"
        return False


@contextlib.contextmanager
def reporting_to(breaker, password: str | None = None) -> Iterator[None]:
    """Tell `breaker` how the connect in the block went: a refused or failed connect counts
    as a failure (with libpq's message, password masked), anything else as a success."""
    try:
        yield
    except psycopg.OperationalError as exc:
        breaker.failure(clean_error(exc, password))
        raise
    breaker.success()
