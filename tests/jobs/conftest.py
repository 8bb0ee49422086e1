"""Fixtures of the long-job tests (helpers are in tests/jobs/helpers.py)."""

from __future__ import annotations

import pytest

from tests.servers import cluster_env, test_database_urls


@pytest.fixture
def job_env() -> dict[str, str]:
    """The environment of a project subprocess pointed at this test's databases."""
    return cluster_env(test_database_urls())


@pytest.fixture(autouse=True)
def _no_pools_of_our_own(django_db_blocker):
    """These tests count the job subprocess's connections: give back this process's first."""
    from config.multidb.lifecycle import close_all_pools

    with django_db_blocker.unblock():
        close_all_pools()
