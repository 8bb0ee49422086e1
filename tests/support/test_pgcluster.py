"""The harness itself: a throwaway cluster starts, hangs, resumes, crashes and restarts for real."""

import psycopg
import pytest

from tests.support.pgcluster import wait_for


def test_cluster_faults_are_real(make_cluster):
    c = make_cluster("harness")
    assert c.execute("SELECT 1") == [(1,)]
    c.hang()
    with pytest.raises(psycopg.OperationalError, match="timeout"):  # hung, not refused
        psycopg.connect(c.url(), connect_timeout=1)
    c.resume()
    assert c.execute("SELECT 1") == [(1,)]
    c.crash()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(c.url(), connect_timeout=1)
    c.start()
    wait_for(c.is_ready, what="restart after crash")
