from __future__ import annotations

import pytest

from tests.support.pgcluster import PgCluster
from tests.support.scale import fresh_databases


@pytest.fixture(scope="module")
def primary():
    cluster = PgCluster("scale-primary").start()
    try:
        cluster.urls = fresh_databases(cluster)
        yield cluster
    finally:
        cluster.destroy()
