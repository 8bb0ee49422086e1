"""Test-wide fixtures: real PostgreSQL through the project's own pools.

Pools are closed before pytest-django drops the test databases (a pool left
open, mirrors included, would keep a database from being dropped), and every
circuit breaker starts closed. Helpers live in tests/support/; this file holds
only fixtures, the ones tests of several packages share.
"""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from tests.support.audit_stack import audit_stack, clean
from tests.support.ops import SMALL_MAX_CONNECTIONS
from tests.support.pgcluster import PgCluster
from tests.support.servers import Gunicorn, cluster_env, test_database_urls
from tests.support.topology import database_names


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    yield
    from config.multidb.lifecycle import close_all_pools

    with django_db_blocker.unblock():
        close_all_pools()


@pytest.fixture
def traced_spans(django_db_blocker):
    """Tracing installed in this process for the test (tests/support/tracing.py); the in-memory exporter."""
    from tests.support.tracing import traced

    steps = traced()
    with django_db_blocker.unblock():
        exporter = next(steps)
    yield exporter
    with django_db_blocker.unblock():
        next(steps, None)


@pytest.fixture(autouse=True)
def _closed_breakers():
    from config.multidb.resilience import breaker

    breaker.reset_all()
    yield
    breaker.reset_all()


@pytest.fixture
def make_cluster():
    """Factory for throwaway clusters, destroyed at the end of the test: `make_cluster("shared")`."""
    made: list[PgCluster] = []

    def make(name: str = "pg", **kwargs) -> PgCluster:
        cluster = PgCluster(name, **kwargs).start()
        made.append(cluster)
        return cluster

    yield make
    for cluster in reversed(made):
        cluster.destroy()


# Operations: gunicorn subprocesses on free ports pointed at pytest-django's test databases
# (tests marked `uses_test_databases`, tests/support/ops.py), and a small cluster for budgets.


@pytest.fixture(scope="session")
def ops_urls(django_db_setup) -> dict[str, str]:
    """{"SHARED": url, "BLOG": url, "MARKET": url} of the test databases."""
    urls = test_database_urls()
    names = [urlparse(u).path.lstrip("/") for u in urls.values()]
    assert all(n.startswith("test_") for n in names), f"test databases not set up (mark the test): {names}"
    return urls


@pytest.fixture(scope="session")
def ops_env(ops_urls) -> dict[str, str]:
    return cluster_env(ops_urls)


@pytest.fixture
def serve():
    """`serve(env, workers=2, threads=4, args=(...))` starts gunicorn and waits for /healthz."""
    started: list[Gunicorn] = []

    def start(env: dict[str, str], **kwargs) -> Gunicorn:
        server = Gunicorn(env, **kwargs)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def small_cluster():
    """max_connections 20, i.e. 17 slots for non-superusers; one `ops_<prefix>` database per domain."""
    cluster = PgCluster("ops", settings={"max_connections": str(SMALL_MAX_CONNECTIONS)}).start()
    for name in database_names("ops").values():
        cluster.create_database(name)
    yield cluster
    cluster.destroy()


@pytest.fixture(scope="session")
def small_bouncer(small_cluster):
    """A real PgBouncer (transaction pooling) in front of `small_cluster`: 4 server connections per
    database, 200 clients."""
    from tests.support.pgbouncer import PgBouncer

    with PgBouncer(upstream_port=small_cluster.port, pool_size=4, max_client_conn=200).running() as bouncer:
        yield bouncer


# Long jobs run as real subprocesses on the test databases.


@pytest.fixture
def job_env() -> dict[str, str]:
    """The environment of a project subprocess pointed at this test's databases."""
    return cluster_env(test_database_urls())


@pytest.fixture
def no_pools_of_our_own(django_db_blocker):
    """For tests that count a subprocess's connections: give back this process's first."""
    from config.multidb.lifecycle import close_all_pools

    with django_db_blocker.unblock():
        close_all_pools()


# The audit's throwaway stack (tests/support/audit_stack.py): the audit API over gunicorn and
# the outbox under faults share one per session.


@pytest.fixture(scope="session")
def audit_stack_session():
    yield from audit_stack()


@pytest.fixture
def stack(audit_stack_session):
    """The session's stack, running, with empty audit tables and outboxes."""
    yield from clean(audit_stack_session)
