"""Test-wide fixtures: real PostgreSQL through the project's own pools.

Pools are closed before pytest-django drops the test databases (a pool left
open, mirrors included, would keep a database from being dropped), and every
circuit breaker starts closed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    yield
    from config.multidb.lifecycle import close_all_pools

    with django_db_blocker.unblock():
        close_all_pools()


@pytest.fixture(autouse=True)
def _closed_breakers():
    from config.multidb.resilience import breaker

    breaker.reset_all()
    yield
    breaker.reset_all()


def project_env(**overrides: str | None) -> dict[str, str]:
    """The environment a subprocess of the project gets: ours, with overrides (None removes)."""
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def manage(*args: str, env: dict | None = None, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """Run `manage.py` as a user would, in a fresh process."""
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env or project_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


@pytest.fixture
def make_cluster():
    """Factory for throwaway clusters, destroyed at the end of the test: `make_cluster("shared")`."""
    from tests.pgcluster import PgCluster

    made: list[PgCluster] = []

    def make(name: str = "pg", **kwargs) -> PgCluster:
        cluster = PgCluster(name, **kwargs).start()
        made.append(cluster)
        return cluster

    yield make
    for cluster in reversed(made):
        cluster.destroy()
