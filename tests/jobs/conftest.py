"""Fixtures of the long-job tests (helpers are in tests/jobs/helpers.py)."""
from __future__ import annotations

import pytest

from tests.servers import cluster_env, test_database_urls


@pytest.fixture
def job_env() -> dict[str, str]:
    """The environment of a project subprocess pointed at this test's databases."""
    return cluster_env(test_database_urls())
