"""The relay: moves outbox rows from each domain database to `AuditEvent` in the
shared database, exactly once.

One batch: in a domain transaction, lock up to N outbox rows (`FOR UPDATE SKIP
LOCKED`, so concurrent relays take disjoint rows), insert them into the shared
database keyed on the event (`ON CONFLICT (id, occurred_at) DO NOTHING`: the table is
partitioned by occurred_at, which an event carries unchanged from its outbox row, so the
key is as unique as the id) and commit that, then
delete the rows and commit the domain transaction. A relay killed between the
two commits leaves rows that the next run delivers again and the conflict
clause ignores: every event lands once.

Delivery is triggered after each commit that wrote an outbox row (`kick()`, a
daemon thread per process, on the jobs pools), retried with a backoff while the
shared database is down, and swept by `manage.py audit_relay [--follow]`. Once an
hour per process the relay also makes sure next months' partitions exist.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from functools import cache

from django.apps import apps
from django.db import connections, router, transaction
from django.db.models import Count, Min
from django.utils import timezone
from psycopg_pool import PoolTimeout

from audit.models import AuditEvent
from audit.outbox import OutboxEntry
from config.multidb.public import DatabaseUnavailable, alias_or_none, breaker_for, connected_to, home_alias, pool_alias

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 500
CONNECT_WAIT_S = 2.0  # a jobs pool would wait 30 s for a database that refuses connections
RETRY_MIN_S = 1.0
RETRY_MAX_S = 30.0
EXIT_FLUSH_S = 5.0  # a command waits this long at exit for its events to be delivered
COALESCE_S = 0.2  # after a kick, wait this long so a burst of commits shares one drain
GAUGE_EVERY_S = 1.0  # the relay thread refreshes the outbox gauges at most this often
PARTITIONS_EVERY_S = 3600.0  # a process makes sure next months' partitions exist at most this often

_partitions_checked_at: float | None = None


@cache
def outbox_models() -> dict[str, type[OutboxEntry]]:
    """{domain alias: its outbox model}, from the app registry and the topology."""
    out: dict[str, type[OutboxEntry]] = {}
    for model in apps.get_models():
        if issubclass(model, OutboxEntry):
            alias = home_alias(model._meta.app_label)
            if alias in out:
                raise RuntimeError(
                    f"database {alias!r} has two outbox models: {out[alias].__name__}, {model._meta.label}"
                )
            out[alias] = model
    return dict(sorted(out.items()))


def domain_aliases() -> list[str]:
    """The databases that carry an outbox."""
    return list(outbox_models())


def domain_alias(alias: str) -> str:
    """The domain alias behind a jobs or replica alias (`market_jobs` -> `market`)."""
    info = alias_or_none(alias)
    return info.base if info else alias


def _connect_fast(alias: str) -> None:
    """Have a connection on `alias` within CONNECT_WAIT_S, or raise DatabaseUnavailable.

    Done before the domain transaction opens, so no outbox row stays locked
    while the shared database is unreachable.
    """
    wrapper = connections[alias]
    if wrapper.connection is not None or wrapper.pool is None:
        return
    breaker = breaker_for(alias)
    breaker.before()
    wrapper.pool.open()
    try:
        conn = wrapper.pool.getconn(timeout=CONNECT_WAIT_S)
    except PoolTimeout:
        breaker.failure()
        raise DatabaseUnavailable(alias, "pool_timeout", retry_after=breaker.open_seconds) from None
    wrapper.pool.putconn(conn)  # Django takes it (or another healthy one) right after


def relay_once(alias: str, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Deliver up to `batch_size` outbox rows of domain database `alias`; returns how many were taken.

    Plain SQL: the relay runs after every burst of commits in every web worker, so
    its cost per event is kept to copying values (no model instances)."""
    outbox = outbox_models()[alias]
    db = pool_alias(alias)
    shared = router.db_for_write(AuditEvent)
    _connect_fast(shared)
    _connect_fast(db)
    ensure_partitions_now_and_then(shared)
    table = outbox._meta.db_table
    with transaction.atomic(using=db), connections[db].cursor() as cursor:
        cursor.execute(
            f"SELECT id, event_id, occurred_at, actor, actor_id, action, model, object_pk, changes::text "
            f'FROM "{table}" ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED',
            [batch_size],
        )
        rows = cursor.fetchall()
        if not rows:
            return 0
        # The shared commit comes first on purpose (see the module docstring);
        # these are two transactions on two databases, not one nested one.
        with transaction.atomic(using=shared), connections[shared].cursor() as out:
            values = ", ".join(["(%s, %s, now(), %s, %s, %s, %s, %s, %s, %s::jsonb)"] * len(rows))
            params = []
            for _id, event_id, occurred_at, actor, actor_id, action, model, object_pk, changes in rows:
                params += [event_id, occurred_at, alias, actor, actor_id, action, model, object_pk, changes]
            out.execute(
                f'INSERT INTO "{AuditEvent._meta.db_table}" (id, occurred_at, recorded_at, database, actor, actor_id, '
                f"action, model, object_pk, changes) VALUES {values} ON CONFLICT (id, occurred_at) DO NOTHING",
                params,
            )
        cursor.execute(f'DELETE FROM "{table}" WHERE id = ANY(%s)', [[r[0] for r in rows]])
    return len(rows)


def ensure_partitions_now_and_then(shared: str) -> None:
    """Next months' partitions, at most once per PARTITIONS_EVERY_S in this process.

    A failure is only logged: an event whose month has no partition lands in the DEFAULT
    partition, and the next call moves it to the partition it creates.
    """
    global _partitions_checked_at
    now = time.monotonic()
    if _partitions_checked_at is not None and now - _partitions_checked_at < PARTITIONS_EVERY_S:
        return
    _partitions_checked_at = now
    from audit.services import audit_partitions_ensure

    try:
        created = audit_partitions_ensure(using=shared, retry=False)
    except Exception as exc:
        log.warning("audit partitions not checked (%s); next try in %.0f s", describe(exc), PARTITIONS_EVERY_S)
    else:
        if created:
            log.info("audit partitions created: %s", ", ".join(created))


def relay_alias(alias: str, batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Deliver batches of one database until its outbox is empty (or only locked rows remain)."""
    total = 0
    while True:
        n = relay_once(alias, batch_size)
        total += n
        if n < batch_size:
            return total


def relay_all(batch_size: int = DEFAULT_BATCH_SIZE) -> int:
    """Drain every domain database's outbox once; returns how many events were delivered."""
    return sum(relay_alias(alias, batch_size) for alias in domain_aliases())


def outbox_status(aliases: list[str] | None = None) -> dict[str, dict]:
    """{alias: {"depth": pending rows, "oldest_age_s": age of the oldest, or None}} for each of
    `aliases` that has an outbox (None: every one); updates the gauges."""
    out = {}
    for alias in domain_aliases():
        if aliases is None or alias in aliases:
            out[alias] = alias_status(alias)
    return out


def alias_status(alias: str) -> dict:
    from audit import metrics

    outbox = outbox_models()[alias]
    row = outbox.objects.using(pool_alias(alias)).aggregate(depth=Count("id"), oldest=Min("occurred_at"))
    age = (timezone.now() - row["oldest"]).total_seconds() if row["oldest"] else None
    status = {"depth": row["depth"], "oldest_age_s": None if age is None else round(max(age, 0.0), 3)}
    metrics.set_outbox(alias, status["depth"], status["oldest_age_s"])
    return status


def update_gauges(aliases: list[str] | None = None) -> None:
    """Refresh the outbox gauges from the domain databases; a failure only leaves them as they were."""
    for alias in aliases or domain_aliases():
        try:
            with connected_to("jobs"):
                alias_status(alias)
        except Exception as exc:
            log.debug("outbox status of %r unavailable (%s)", alias, describe(exc))


def describe(exc: BaseException) -> str:
    """A log-safe description: the error class and the alias, never a connection string."""
    alias = getattr(exc, "db_alias", None) or getattr(exc, "alias", None)
    return f"{type(exc).__name__}" + (f" on {alias!r}" if alias else "")


class Courier:
    """One daemon thread per process that drains the outboxes it is kicked for.

    Kicks are cheap and non-blocking (a set and a condition); a failed drain is
    retried with a backoff, so events written while the shared database was down
    are delivered once it is back even if no sweeper runs.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._retry_at: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._busy = False
        self._gauges_at: dict[str, float] = {}
        self._thread: threading.Thread | None = None
        self._exit_registered = False

    def kick(self, alias: str) -> None:
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="audit-relay", daemon=True)
                self._thread.start()
                if not self._exit_registered:
                    atexit.register(self._at_exit)
                    self._exit_registered = True
            self._pending.add(alias)
            self._cond.notify_all()

    def reset_after_fork(self) -> None:
        # The parent's thread does not exist in the child, and its lock may have
        # been held at fork time: start from a clean state (atexit entries are inherited).
        registered = self._exit_registered
        self.__init__()
        self._exit_registered = registered

    def _due(self) -> set[str]:
        now = time.monotonic()
        return self._pending | {a for a, t in self._retry_at.items() if t <= now}

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due():
                    wait = min(self._retry_at.values(), default=None)
                    self._cond.wait(None if wait is None else max(wait - time.monotonic(), 0.01))
                self._busy = True  # flush() waits through the pause below
            # Under load every request commits an event: one drain per burst, not per commit
            # (well within the "visible in a second" promise).
            time.sleep(COALESCE_S)
            with self._cond:
                aliases = self._due()
                self._pending.clear()
                for alias in aliases:
                    self._retry_at.pop(alias, None)
                self._busy = True
            try:
                for alias in sorted(aliases):
                    self._drain(alias)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _drain(self, alias: str) -> None:
        try:
            with connected_to("jobs"):
                relay_alias(alias)
            self._backoff.pop(alias, None)
        except Exception as exc:
            delay = min(self._backoff.get(alias, RETRY_MIN_S / 2) * 2, RETRY_MAX_S)
            self._backoff[alias] = delay
            with self._cond:
                self._retry_at[alias] = time.monotonic() + delay
            log.warning("audit relay for %r failed (%s); retrying in %.0f s", alias, describe(exc), delay)
        finally:
            now = time.monotonic()
            if now - self._gauges_at.get(alias, 0.0) >= GAUGE_EVERY_S:
                self._gauges_at[alias] = now
                update_gauges([alias])
            # Give the connections back to their pools: this thread never ends a request.
            connections.close_all()

    def flush(self, timeout: float) -> bool:
        """Wait until every kick so far has been handled (delivered, or scheduled for retry)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _at_exit(self) -> None:
        # A command's events are delivered before it exits, when the shared database is up.
        if self._thread is not None and self._thread.is_alive() and (self._pending or self._busy):
            self.flush(EXIT_FLUSH_S)
            from config.multidb.public import close_all_pools

            close_all_pools()


_courier = Courier()


def kick(alias: str) -> None:
    """Ask this process's relay thread to drain `alias` (called after a commit that wrote outbox rows)."""
    _courier.kick(alias)


def reset_after_fork() -> None:
    """The child of a fork starts with no relay thread (registered with the platform's after_fork)."""
    _courier.reset_after_fork()


def flush_at_job_exit() -> None:
    """A job's events go out before its pools close (registered with the platform's job exit)."""
    flush(EXIT_FLUSH_S)


def flush(timeout: float = 10.0) -> bool:
    return _courier.flush(timeout)
