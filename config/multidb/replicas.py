"""Which alias serves a read: a streaming replica when that is safe, else the primary.

A read goes to `<alias>_replica` only inside a read scope (the HTTP middleware opens
one per GET/HEAD/OPTIONS request; other code opts in with `read_scope()`), outside
any transaction on the primary, when this scope has not written to that database,
when the replica is healthy and not lagging beyond `<P>_DATABASE_REPLICA_MAX_LAG_MS`,
and when it has replayed the client's last write (read-your-writes, compared by
WAL position). Everything else (writes, `select_for_update`, which Django routes
with `db_for_write`, reads in `atomic_for(...)` blocks, the jobs role, commands,
POST/PATCH/DELETE requests) uses the primary.

The replica's state is probed at most every `STATUS_TTL_S` per process, on the
request that needs it; a probe that fails goes through the alias's circuit
breaker, so a replica that is down is skipped without waiting and comes back by
itself. See docs/scaling.md.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections import deque
from contextvars import ContextVar
from dataclasses import dataclass, field

from django.db import ProgrammingError, connections
from django.db.backends.signals import connection_created

from config.multidb.conf.aliases import alias as alias_info
from config.multidb.conf.aliases import alias_or_none, aliases
from config.multidb.conf.databases import REPLICA_SUFFIX
from config.multidb.lifecycle import after_fork
from config.multidb.resilience.breaker import DatabaseUnavailable, breaker_for
from config.multidb.resilience.connect import check_with_deadline, connect_checked

log = logging.getLogger(__name__)

STATUS_TTL_S = 0.15  # how long a probe's answer is trusted; bounds probe traffic to ~7/s per process
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_SAMPLES = 1024

# One round trip: is it a replica, how far has it replayed and received, how old is
# the last replayed commit, and is it still streaming from its primary.
PROBE_SQL = (
    b"SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn(), pg_last_wal_receive_lsn(),"
    b" (EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) * 1000)::float8,"
    b" EXISTS (SELECT 1 FROM pg_stat_wal_receiver)"
)
# The insert position, not pg_current_wal_lsn(): with synchronous_commit=off a
# committed transaction may not be written out yet, and the replica must reach
# the end of its commit record before it can show it.
PRIMARY_LSN_SQL = "SELECT pg_current_wal_insert_lsn()::text"


# -- WAL positions --------------------------------------------------------------------------------

_LSN_RE = re.compile(r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$")


def parse_lsn(text: str | bytes) -> int:
    """`"16/B374D848"` -> an int that orders like pg_lsn; ValueError for anything else."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    m = _LSN_RE.match(text or "")
    if not m:
        raise ValueError(f"not a WAL position: {text[:40]!r}")
    return (int(m.group(1), 16) << 32) | int(m.group(2), 16)


def format_lsn(value: int) -> str:
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"


# -- refusing writes on replica aliases ------------------------------------------------------------


class WriteOnReplica(ProgrammingError):
    """A statement that writes was sent through a replica alias."""


_COMMENTS_RE = re.compile(r"\s+|--[^\n]*(\n|$)|/\*.*?\*/", re.S)
_QUOTED_RE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|\$(\w*)\$.*?\$\1\$", re.S)
_WRITE_WORD_RE = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE|TRUNCATE|COPY|CREATE|ALTER|DROP|GRANT|REVOKE)\b", re.I)
_LOCKING_RE = re.compile(r"\bFOR\s+(NO\s+KEY\s+UPDATE|UPDATE|KEY\s+SHARE|SHARE)\b", re.I)
_INTO_RE = re.compile(r"\bINTO\b", re.I)
# Statements that never change data (transaction control, cursors, session settings).
_CONTROL = frozenset(
    {
        "SHOW",
        "SAVEPOINT",
        "RELEASE",
        "ROLLBACK",
        "COMMIT",
        "BEGIN",
        "START",
        "END",
        "ABORT",
        "SET",
        "RESET",
        "FETCH",
        "MOVE",
        "CLOSE",
        "DISCARD",
        "DEALLOCATE",
        "LISTEN",
        "UNLISTEN",
    }
)
_QUERIES = frozenset({"SELECT", "WITH", "VALUES", "TABLE", "EXPLAIN", "DECLARE"})


def _strip(sql: str) -> str:
    while True:
        m = _COMMENTS_RE.match(sql)
        if not m or not m.group(0):
            break
        sql = sql[m.end() :]
    return sql.lstrip("( \t\r\n")


def statement_kind(sql: str | bytes) -> str:
    """The first keyword of `sql`, upper-cased ("" if none)."""
    if isinstance(sql, bytes):
        sql = sql.decode("utf-8", "replace")
    elif not isinstance(sql, str):  # psycopg.sql.Composable
        sql = str(sql)
    head = _strip(sql)[:16]
    m = re.match(r"[A-Za-z]+", head)
    return m.group(0).upper() if m else ""


def is_read_only_sql(sql) -> bool:
    """True for statements that cannot change data: plain reads and transaction/session control.

    Deliberately strict: a query that takes row locks (`FOR UPDATE`/`FOR SHARE`),
    `SELECT ... INTO`, or a data-modifying CTE counts as a write.
    """
    kind = statement_kind(sql)
    if kind in _CONTROL:
        return True
    if kind not in _QUERIES:
        return False
    text = sql.decode("utf-8", "replace") if isinstance(sql, bytes) else str(sql)
    body = _QUOTED_RE.sub("''", text)
    if _LOCKING_RE.search(body) or _WRITE_WORD_RE.search(body):
        return False
    return not (kind == "SELECT" and _INTO_RE.search(body))


def refuse_writes(execute, sql, params, many, context):
    """execute_wrapper installed on every replica connection (config/multidb/backend/base.py)."""
    if not is_read_only_sql(sql):
        name = context["connection"].alias
        info = alias_or_none(name)
        primary = info.base if info else "the primary"
        raise WriteOnReplica(
            f"refused {statement_kind(sql) or 'a statement'} through read-only replica alias {name!r}: "
            f"writes and locking reads go to {primary!r} (router.db_for_write / atomic_for)"
        )
    return execute(sql, params, many, context)


# -- the read scope (one per request) --------------------------------------------------------------


@dataclass
class ReadScope:
    """What routing needs to know about the current request or job."""

    replicas: bool = True  # False: every read goes to the primary
    client_lsns: dict[str, int] = field(default_factory=dict)  # base alias -> WAL position the client must see
    written: set[str] = field(default_factory=set)  # base aliases written in this scope
    chosen: dict[str, str] = field(default_factory=dict)  # base alias -> alias serving its reads (sticky)

    def mark_written(self, base: str) -> None:
        self.written.add(base)
        self.chosen[base] = base

    def use_primary(self) -> None:
        """From now on every read goes to the primary (a replica failed mid-request)."""
        self.replicas = False
        self.chosen.clear()


_scope: ContextVar[ReadScope | None] = ContextVar("read_scope", default=None)


@contextlib.contextmanager
def read_scope(*, replicas: bool = True, client_lsns: dict[str, int] | None = None):
    """Let reads in the block use replicas; outside any scope every read goes to the primary."""
    scope = ReadScope(replicas=replicas, client_lsns=dict(client_lsns or {}))
    now = time.monotonic()
    for base, lsn in scope.client_lsns.items():
        if has_replica(base):
            monitor(replica_alias(base)).note_primary_lsn(lsn, now)
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


def current_scope() -> ReadScope | None:
    return _scope.get()


def replica_alias(base: str) -> str:
    return base + REPLICA_SUFFIX


def has_replica(base: str) -> bool:
    return replica_alias(base) in aliases()


def read_alias(base: str) -> str:
    """The alias that serves a read of `base`'s data right now (the router's db_for_read)."""
    replica = replica_alias(base)
    if replica not in aliases():
        return base
    scope = _scope.get()
    if scope is None or not scope.replicas or base in scope.written:
        return base
    # Inside a transaction on the primary a read must see that transaction (and
    # the locks it took): services that lock always run in atomic_for(Model).
    if connections[base].in_atomic_block:
        return base
    chosen = scope.chosen.get(base)
    if chosen is None:
        chosen = replica if monitor(replica).can_serve(scope.client_lsns.get(base)) else base
        scope.chosen[base] = chosen
    return chosen


def writes_data(sql) -> bool:
    """Whether a statement on a primary changes data (for read-your-writes). Locking reads are not
    writes: they sit in a transaction that writes, or that changes nothing."""
    kind = statement_kind(sql)
    if kind in _CONTROL or kind in ("VALUES", "TABLE", "DECLARE"):
        return False
    if kind not in ("SELECT", "WITH", "EXPLAIN"):
        return True
    text = sql.decode("utf-8", "replace") if isinstance(sql, bytes) else str(sql)
    if kind == "SELECT" and not _INTO_RE.search(text):
        return False  # the hot path: every ORM read
    body = _QUOTED_RE.sub("''", text)
    return bool(_WRITE_WORD_RE.search(body) or (kind == "SELECT" and _INTO_RE.search(body)))


def _track_writes(execute, sql, params, many, context):
    scope = _scope.get()
    if scope is not None:
        base = context["connection"].alias
        if base not in scope.written and writes_data(sql):
            scope.mark_written(base)
    return execute(sql, params, many, context)


def _install_write_tracker(sender, connection, **kwargs):
    """On primaries that have a replica, note which scopes wrote (for read-your-writes)."""
    info = alias_or_none(connection.alias)
    if info is None or info.kind != "primary" or not has_replica(connection.alias):
        return
    if _track_writes not in connection.execute_wrappers:
        connection.execute_wrappers.insert(0, _track_writes)


connection_created.connect(_install_write_tracker, dispatch_uid="config.multidb.replicas.write_tracker")


def primary_lsn(base: str) -> int:
    """The primary's WAL insert position now: a later commit-visible read must reach it."""
    with connections[base].cursor() as cursor:
        cursor.execute(PRIMARY_LSN_SQL)
        return parse_lsn(cursor.fetchone()[0])


# -- replica health --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaStatus:
    usable: bool
    reason: str = ""
    replay_lsn: int = 0
    lag_ms: float = 0.0
    checked_at: float = 0.0


class ReplicaMonitor:
    """Per process, per replica alias: the last probe's answer and a lag estimate."""

    def __init__(self, name: str):
        info = alias_info(name)
        self.alias = name
        self.base = info.base
        self.check_timeout = info.check_timeout
        self.max_lag_ms = float(info.replica_max_lag_ms)
        self._lock = threading.Lock()
        self._probing = False
        self._status: ReplicaStatus | None = None
        # (monotonic time, WAL position) pairs, both strictly increasing: WAL the
        # primary (or the replica's receiver) had reached at that time.
        self._samples: deque[tuple[float, int]] = deque()

    # Lag: the replica has not replayed a position known to exist `now - t` ago.
    def note_primary_lsn(self, lsn: int, when: float | None = None) -> None:
        when = time.monotonic() if when is None else when
        with self._lock:
            if self._samples and lsn <= self._samples[-1][1]:
                return
            if len(self._samples) < MAX_SAMPLES:
                self._samples.append((when, lsn))

    def _lag_ms(self, replay: int, now: float) -> float:
        with self._lock:
            while self._samples and self._samples[0][1] <= replay:
                self._samples.popleft()
            return (now - self._samples[0][0]) * 1000 if self._samples else 0.0

    def last_status(self) -> ReplicaStatus | None:
        return self._status

    def status(self) -> ReplicaStatus | None:
        """Fresh enough status, probing if needed; None while another thread probes."""
        status = self._status
        if status is not None and time.monotonic() - status.checked_at < STATUS_TTL_S:
            return status
        with self._lock:
            if self._probing:
                return None
            self._probing = True
        try:
            status = self._probe()
            self._status = status
        finally:
            self._probing = False
        return status

    def can_serve(self, client_lsn: int | None) -> bool:
        status = self.status()
        if status is None or not status.usable:
            return False
        return client_lsn is None or status.replay_lsn >= client_lsn

    def mark_failed(self, reason: str) -> None:
        """A read on the replica failed: skip it until the next probe."""
        self._status = ReplicaStatus(False, reason, checked_at=time.monotonic())

    def _probe(self) -> ReplicaStatus:
        breaker = breaker_for(self.alias)
        try:
            breaker.before()
        except DatabaseUnavailable:
            return ReplicaStatus(False, "circuit breaker open", checked_at=time.monotonic())
        recovering = breaker.opened_at is not None  # this call is the breaker's one probe
        try:
            row = self._query(direct=recovering)
        except _PoolBusy:  # only when not recovering: the breaker has nothing to learn
            previous = self._status
            return ReplicaStatus(
                previous.usable if previous else False,
                "pool busy",
                previous.replay_lsn if previous else 0,
                previous.lag_ms if previous else 0.0,
                time.monotonic(),
            )
        except Exception as exc:  # any failure: skip the replica, count it against the breaker
            breaker.failure()
            log.warning("replica %s skipped: %s", self.alias, type(exc).__name__)
            return ReplicaStatus(False, type(exc).__name__, checked_at=time.monotonic())
        breaker.success()
        now = time.monotonic()
        in_recovery, replay, receive, replay_age_ms, streaming = row
        if not in_recovery or replay is None:
            return ReplicaStatus(False, "not a replica (not in recovery)", checked_at=now)
        if receive is not None:
            self.note_primary_lsn(receive, now)
        lag = self._lag_ms(replay, now)
        if receive is not None and replay < receive and replay_age_ms is not None:
            # WAL waits to be replayed: the last replayed commit bounds the lag from above.
            lag = max(lag, replay_age_ms)
        if not streaming:
            return ReplicaStatus(False, "not streaming from its primary", replay, lag, now)
        if lag > self.max_lag_ms:
            return ReplicaStatus(False, f"lagging {lag:.0f} ms", replay, lag, now)
        return ReplicaStatus(True, "", replay, lag, now)

    def _query(self, *, direct: bool) -> tuple:
        wrapper = connections[self.alias]
        timeout = self.check_timeout
        pool = wrapper.pool
        if pool is None or direct:
            # Without a pool, or probing a replica that was down: a direct connection
            # fails in milliseconds when refused, where a pool would wait its timeout.
            with connect_checked(self.alias, timeout, PROBE_SQL) as (_conn, results):
                pass  # raw results outlive their connection
        else:
            stats = pool.get_stats()
            if stats.get("pool_available", 0) == 0 and stats.get("pool_size", 0) >= stats.get("pool_max", 1):
                raise _PoolBusy()
            pool.open(wait=False)
            with pool.connection(timeout=timeout) as conn:
                results = check_with_deadline(conn, timeout, PROBE_SQL)
        res = results[-1]

        def value(col):
            raw = res.get_value(0, col)
            return None if raw is None else raw.decode()

        return (
            value(0) == "t",
            _lsn_or_none(value(1)),
            _lsn_or_none(value(2)),
            float(value(3)) if value(3) is not None else None,
            value(4) == "t",
        )


class _PoolBusy(Exception):
    """Every connection of the replica's pool is in use: load, not a fault."""


def _lsn_or_none(text: str | None) -> int | None:
    return None if text is None else parse_lsn(text)


_monitors: dict[str, ReplicaMonitor] = {}
_monitors_lock = threading.Lock()
after_fork(_monitors.clear)  # the parent's answers say nothing about the child


def monitor(alias: str) -> ReplicaMonitor:
    try:
        return _monitors[alias]
    except KeyError:
        with _monitors_lock:
            return _monitors.setdefault(alias, ReplicaMonitor(alias))
