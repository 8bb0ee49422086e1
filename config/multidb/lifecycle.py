"""Small helpers every layer uses to talk to the right database, the after-fork registry,
and the hooks apps register with the platform (the platform imports no app).

Imports nothing from the platform: every module of it may register here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

from django.db import connections, router, transaction
from django.db.backends.postgresql.base import DatabaseWrapper

log = logging.getLogger(__name__)


def atomic_for(model, **kwargs):
    """`transaction.atomic` on the database that holds `model` (never a guessed alias)."""
    return transaction.atomic(using=router.db_for_write(model), **kwargs)


def close_all_pools() -> None:
    """Close every pool this process opened (shutdown, end of a command, test teardown)."""
    for conn in connections.all(initialized_only=True):
        conn.close()
    for alias, pool in list(DatabaseWrapper._connection_pools.items()):
        try:
            pool.close(timeout=5)
        finally:
            DatabaseWrapper._connection_pools.pop(alias, None)


# After fork() ---------------------------------------------------------------------------------
# One os.register_at_fork hook runs every registered reset in the child, whoever forked:
# gunicorn's workers, boot's probing child (multiprocessing), a test. gunicorn's post_fork
# would cover only the first; the child gets a clean state before any of its own code runs.

_after_fork: list[Callable[[], None]] = []


def after_fork(reset: Callable[[], None]) -> Callable[[], None]:
    """Run `reset` in the child of every fork(), in registration order: what the parent held
    (pools, sockets, threads, locks maybe held at fork time, per-process counts) is not the
    child's. Returns `reset`, so it can decorate a function."""
    if reset not in _after_fork:
        _after_fork.append(reset)
    return reset


def _run_after_fork() -> None:
    for reset in list(_after_fork):
        try:
            reset()
        except Exception:  # one failing reset must not leave the others undone
            log.exception("after-fork reset %r failed", reset)


os.register_at_fork(after_in_child=_run_after_fork)

# The parent's pools are forgotten without touching their sockets (the parent still uses them).
after_fork(DatabaseWrapper._connection_pools.clear)


# Hooks registered by apps in AppConfig.ready() --------------------------------------------------

_job_exit: list[Callable[[], None]] = []
_job_connections: list[JobConnections] = []
_outbox_readers: list[Callable[..., dict]] = []


def on_job_exit(hook: Callable[[], None]) -> None:
    """Run `hook` when a job command ends, before its pools close (audit: deliver its events)."""
    if hook not in _job_exit:
        _job_exit.append(hook)


def run_job_exit_hooks() -> None:
    for hook in _job_exit:
        hook()


@dataclass(frozen=True)
class JobConnections:
    """Connections an app's jobs need beyond the web pools, for the connection budget (ops/budget.py)."""

    label: str  # the budget's words: row "(label)" for direct connections, "jobs pools per worker (label)"
    unit: str = ""  # one direct connection, for the budget's explanation line ("job lock")
    direct_per_instance: int = 0  # per instance, straight to each server behind a transaction pooler
    in_web_workers: bool = False  # the jobs pools are used from every web worker too, not only by job processes


def register_job_connections(
    label: str, *, unit: str = "", direct_per_instance: int = 0, in_web_workers: bool = False
) -> None:
    """Declare what an app's jobs hold, so the budget counts it: a session lock on a direct
    connection per instance (market's import lock), or the jobs pools used in every web worker
    (audit's relay thread)."""
    entry = JobConnections(label, unit, direct_per_instance, in_web_workers)
    if entry not in _job_connections:
        _job_connections.append(entry)


def job_connections() -> list[JobConnections]:
    return list(_job_connections)


_temp_table_models: list[str] = []


def register_temp_tables(model_label: str) -> None:
    """A job stages rows in temporary tables in the database of `model_label` ("app.Model"):
    provision_roles grants TEMP to that database's jobs role (and to no web role)."""
    if model_label not in _temp_table_models:
        _temp_table_models.append(model_label)


def temp_table_models() -> list[str]:
    return list(_temp_table_models)


def set_outbox_reader(reader: Callable[..., dict]) -> None:
    """`dbstat` and the admin's Databases page show what `reader(aliases=None)` returns:
    {alias: {depth, oldest_age_s}} of the outbox of each of `aliases` that has one (None: all);
    the page asks for one alias at a time, so a sick database delays only its own answer."""
    _outbox_readers[:] = [reader]


def outbox_reader() -> Callable[..., dict] | None:
    return _outbox_readers[0] if _outbox_readers else None
