"""Django's PostgreSQL backend with bulkheads.

- the pool's connection check has a real deadline (Django 5.2 refuses a `check`
  in OPTIONS["pool"], ticket #37075, so the pool is built here);
- connecting goes through the alias's circuit breaker, and every connection
  the pool opens in the background reports to it;
- every blocking call (pool wait, statement, commit, rollback) goes through the
  guard (config/multidb/backend/guard.py): a bulkhead per alias and a watchdog that
  cuts a statement the server leaves unanswered past its statement_timeout;
- every database error carries the alias it came from, so the HTTP layer can
  answer `503 database_unavailable` naming it.
"""

from __future__ import annotations

import select
import time

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError
from django.db.backends.postgresql import base as pg
from django.db.utils import DatabaseErrorWrapper
from psycopg import pq
from psycopg_pool import ConnectionPool, PoolTimeout, TooManyRequests

from config.multidb import metrics, tracing
from config.multidb.backend.guard import guard, socket_identity
from config.multidb.conf.aliases import alias_or_none
from config.multidb.replicas import refuse_writes
from config.multidb.resilience.breaker import DatabaseUnavailable, breaker_for
from config.multidb.resilience.connect import check_with_deadline, reporting_to

FRESH_S = 1.0  # a connection that answered this recently is trusted without a round trip


def check_on_checkout(conn: psycopg.Connection, timeout: float) -> None:
    """The pool's check: skipped for a connection that answered a statement less than
    FRESH_S ago and has nothing waiting on its socket (a server that shut down or
    restarted sends a message first, which makes the socket readable); otherwise an
    empty query with a deadline. Under load this saves a round trip per checkout."""
    fresh = time.monotonic() - getattr(conn, "_last_ok", 0.0) < FRESH_S
    if fresh and not conn.closed and conn.info.transaction_status == pq.TransactionStatus.IDLE:
        poller = select.poll()  # one syscall; an epoll selector would cost four
        poller.register(conn.pgconn.socket, select.POLLIN)
        if not poller.poll(0):
            return
    check_with_deadline(conn, timeout)
    conn._last_ok = time.monotonic()


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


def connection_class_for(alias: str) -> type[psycopg.Connection]:
    """A psycopg connection class whose opening reports to the alias's breaker.

    The pool opens connections in background threads; without this, a refused
    server would only show up as requests timing out in the pool queue.
    """

    class AliasConnection(psycopg.Connection):
        @classmethod
        def connect(cls, *args, **kwargs):
            with reporting_to(breaker_for(alias), kwargs.get("password")):
                return super().connect(*args, **kwargs)

    AliasConnection.__name__ = AliasConnection.__qualname__ = f"Connection[{alias}]"
    return AliasConnection


class DatabaseWrapper(pg.DatabaseWrapper):
    def __init__(self, settings_dict, alias=DEFAULT_DB_ALIAS):
        super().__init__(settings_dict, alias)
        # None for Django's own "no database" wrapper (CREATE/DROP DATABASE): defaults then.
        info = alias_or_none(alias)
        self.check_timeout = info.check_timeout if info else 1.0
        statement_ms = info.statement_timeout_ms if info else 0
        # No client deadline without a server one: a statement may legitimately run forever then.
        self.statement_deadline = statement_ms / 1000 + self.check_timeout if statement_ms else None
        self.bulkhead_limit = int(getattr(settings, "DATABASE_BULKHEAD_LIMIT", 0) or 0)
        self.execute_wrappers.insert(0, self._guarded_execute)
        if info is not None and info.kind == "replica":
            # Refuse writes in code, before the server (or a pooler pointing at a primary) sees them.
            self.execute_wrappers.append(refuse_writes)
        if tracing.on:  # statement spans tagged with the alias and role (config/multidb/tracing.py)
            tracing.tag_statements(self)

    @property
    def pool(self):
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == pg.NO_DB_ALIAS or not pool_options:
            return None
        if self.alias not in self._connection_pools:
            connect_kwargs = self.get_connection_params()
            connect_kwargs["autocommit"] = True
            timeout = self.check_timeout
            pool = ConnectionPool(
                kwargs=connect_kwargs,
                open=False,
                connection_class=connection_class_for(self.alias),
                configure=self._configure_connection,
                check=lambda conn: check_on_checkout(conn, timeout),
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
            with guard.call(self.alias, limit=self.bulkhead_limit):
                asked = time.perf_counter()
                connection = super().get_new_connection(conn_params)
                waited = time.perf_counter() - asked
                metrics.note_pool_wait(self.alias, waited)
                if tracing.on:
                    tracing.pool_acquired(self.alias, waited)
        except TooManyRequests:
            # A full queue is load, not a fault: refuse without counting a failure.
            self._trace_failed_acquire(asked, "pool_full")
            raise DatabaseUnavailable(self.alias, "pool_full", retry_after=1.0) from None
        except PoolTimeout:
            self._trace_failed_acquire(asked, "pool_timeout")
            if not self._pool_is_busy():
                breaker.failure()
            raise DatabaseUnavailable(self.alias, "pool_timeout", retry_after=breaker.open_seconds) from None
        except psycopg.OperationalError:  # a direct connection (pools disabled) failed
            self._trace_failed_acquire(asked, "connect_failed")
            breaker.failure()
            raise DatabaseUnavailable(self.alias, "connect_failed", retry_after=breaker.open_seconds) from None
        breaker.success()
        return connection

    def _trace_failed_acquire(self, asked: float, error: str) -> None:
        if tracing.on:
            tracing.pool_acquired(self.alias, time.perf_counter() - asked, error=error)

    def _pool_is_busy(self) -> bool:
        """Every connection of the pool is open and lent out: a wait for one is load
        (or another database slowing the requests that hold them), not this database failing."""
        pool = self.pool
        if pool is None:
            return False
        stats = pool.get_stats()
        return stats.get("pool_size", 0) >= pool.max_size and not stats.get("pool_available", 0)

    # -- the guard around every blocking call ----------------------------
    def _socket(self):
        conn = self.connection
        if conn is None:
            return None
        sock = getattr(conn, "_guard_socket", None)
        if sock is None:
            try:
                sock = socket_identity(conn.pgconn.socket)
            except psycopg.Error:
                return None
            conn._guard_socket = sock
        return sock

    def _guarded_execute(self, execute, sql, params, many, context):
        with guard.call(self.alias, limit=self.bulkhead_limit, sock=self._socket(), timeout=self.statement_deadline):
            result = execute(sql, params, many, context)
        self.connection._last_ok = time.monotonic()  # the server just answered: see check_on_checkout
        return result

    def _commit(self):
        with guard.call(self.alias, sock=self._socket(), timeout=self.statement_deadline):
            return super()._commit()

    def _rollback(self):
        with guard.call(self.alias, sock=self._socket(), timeout=self.statement_deadline):
            return super()._rollback()

    def is_usable(self):
        # Django's own check is a SELECT 1 with no deadline: it would hang on a hung server.
        if self.connection is None:
            return False
        try:
            check_with_deadline(self.connection, self.check_timeout, b"SELECT 1")
        except psycopg.Error:
            return False
        return True
