"""Django's PostgreSQL backend with bulkheads.

- the pool's connection check has a real deadline (Django 5.2 refuses a `check`
  in OPTIONS["pool"], ticket #37075, so the pool is built here);
- connecting goes through the alias's circuit breaker;
- every database error carries the alias it came from, so the HTTP layer can
  answer `503 database_unavailable` naming it.
"""
from __future__ import annotations

import selectors
import time

import psycopg
from django.db import DatabaseError
from django.db.backends.postgresql import base as pg
from django.db.utils import DatabaseErrorWrapper
from psycopg import generators, pq
from psycopg_pool import TooManyRequests
from psycopg.waiting import Ready, Wait

from config.breaker import DatabaseUnavailable, breaker_for

_EVENTS = {Wait.R: selectors.EVENT_READ, Wait.W: selectors.EVENT_WRITE,
           Wait.RW: selectors.EVENT_READ | selectors.EVENT_WRITE}


def check_with_deadline(conn: psycopg.Connection, timeout: float, query: bytes = b"") -> None:
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


class AliasErrorWrapper(DatabaseErrorWrapper):
    """Django's error wrapper, plus the alias on every error, plus breaker bookkeeping."""

    def __exit__(self, exc_type, exc_value, traceback):
        try:
            return super().__exit__(exc_type, exc_value, traceback)
        except DatabaseError as exc:
            exc.db_alias = self.wrapper.alias
            if is_connection_failure(exc_value):
                breaker_for(self.wrapper.alias).failure()
            raise


def is_connection_failure(exc: BaseException | None) -> bool:
    """A lost or refused connection (not a constraint, a timeout or bad SQL)."""
    if isinstance(exc, (psycopg.InterfaceError,)):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    sqlstate = getattr(exc, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith(("08", "57P"))


class DatabaseWrapper(pg.DatabaseWrapper):
    @property
    def pool(self):
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == pg.NO_DB_ALIAS or not pool_options:
            return None
        if self.alias not in self._connection_pools:
            from psycopg_pool import ConnectionPool

            connect_kwargs = self.get_connection_params()
            connect_kwargs["autocommit"] = True
            timeout = float(self.settings_dict.get("CHECK_TIMEOUT", 1.0))
            pool = ConnectionPool(
                kwargs=connect_kwargs,
                open=False,
                configure=self._configure_connection,
                check=lambda conn: check_with_deadline(conn, timeout),
                **(pool_options if isinstance(pool_options, dict) else {}),
            )
            self._connection_pools.setdefault(self.alias, pool)
        return self._connection_pools[self.alias]

    @property
    def wrap_database_errors(self):
        return AliasErrorWrapper(self)

    def get_new_connection(self, conn_params):
        breaker = breaker_for(self.alias)
        breaker.before()
        try:
            connection = super().get_new_connection(conn_params)
        except TooManyRequests:
            # A full queue is load, not a fault: refuse without counting a failure.
            raise DatabaseUnavailable(self.alias, "pool queue full", retry_after=1.0) from None
        except psycopg.Error as exc:
            breaker.failure()
            reason = type(exc).__name__
            raise DatabaseUnavailable(self.alias, reason, retry_after=breaker.open_seconds) from None
        breaker.success()
        return connection
