"""Operations tests run the real thing: gunicorn subprocesses on free ports,
pointed at pytest-django's test databases, and throwaway clusters for faults.

Their fixtures (`ops_env`, `serve`, `small_cluster`, `small_bouncer`) are in tests/conftest.py;
here: the mark of the tests that serve from the test databases, `pooled_env`, plain
connections of the test itself, and the /proc helpers that tell which process owns a
database connection.
"""

from __future__ import annotations

from urllib.parse import urlparse

import psycopg
import pytest

from scripts import procfs
from tests.support.servers import cluster_env
from tests.support.topology import ALIASES, PREFIXES

SMALL_MAX_CONNECTIONS = 20  # superuser_reserved_connections 3 leaves 17

# pytest-django creates only the databases that marked tests ask for: every test
# that serves from the test databases carries this mark (committed data, too).
uses_test_databases = pytest.mark.django_db(databases=list(ALIASES), transaction=True)


def pooled_env(cluster, bouncer, *, direct: bool = True, **extra: str) -> dict[str, str]:
    """Every database of `cluster` through `bouncer` (POOLER=transaction, the pooler's numbers declared);
    with `direct`, DIRECT_URLs to the cluster (with a password trust auth ignores, to prove it never shows)."""
    env = cluster_env(
        {p: bouncer.url(f"ops_{p.lower()}") for p in PREFIXES},
        **{f"{p}_DATABASE_POOL_MAX_SIZE": "4" for p in PREFIXES},
        JOBS_DATABASE_POOL_MAX_SIZE="2",
    )
    for p in PREFIXES:
        env[f"{p}_DATABASE_POOLER"] = "transaction"
        env[f"{p}_DATABASE_POOLER_POOL_SIZE"] = "4"  # the bouncer's default_pool_size 4 + reserve_pool_size 0
        env[f"{p}_DATABASE_POOLER_MAX_CLIENT_CONN"] = "200"  # its max_client_conn
        if direct:
            env[f"{p}_DATABASE_DIRECT_URL"] = cluster.url(f"ops_{p.lower()}", password=DIRECT_PASSWORD)
    env.update(extra)
    return env


DIRECT_PASSWORD = "Pw-n0t-shown"


def connect(url: str, **kwargs) -> psycopg.Connection:
    """A plain connection of the test itself, labelled `test:ops` unless told otherwise."""
    kwargs.setdefault("autocommit", True)
    kwargs.setdefault("application_name", "test:ops")
    return psycopg.connect(url, connect_timeout=5, **kwargs)


def activity(url: str, label_like: str = "%") -> list[dict]:
    """pg_stat_activity rows of the database in `url` whose application_name is LIKE `label_like`
    (the test's own connection excluded)."""
    dbname = urlparse(url).path.lstrip("/")
    with connect(url) as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(
            "SELECT pid, client_port, application_name, state, wait_event_type FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid() AND application_name LIKE %s",
            (dbname, label_like),
        )
        return cur.fetchall()


def children(pid: int) -> list[int]:
    out = []
    for child in procfs.pids():
        try:
            if int(procfs.stat_fields(child)[1]) == pid:
                out.append(child)
        except OSError:
            continue
    return out


tcp_owners = procfs.tcp_owners
