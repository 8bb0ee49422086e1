"""The pool's checkout check: no round trip for a connection that just answered,
a real check (with a deadline) as soon as the server has said anything since."""

import time

import psycopg
import pytest

from config.multidb.backend.base import check_on_checkout
from tests.support.pgcluster import wait_for


@pytest.fixture
def cluster(make_cluster):
    return make_cluster("checkout")


def test_a_fresh_idle_connection_is_trusted_without_a_round_trip(cluster):
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute("SELECT 1")
        conn._last_ok = time.monotonic()
        cluster.hang()  # a round trip now could not finish: the check must not make one
        try:
            check_on_checkout(conn, timeout=0.5)
        finally:
            cluster.resume()


def test_a_stale_connection_gets_a_real_check_with_a_deadline(cluster):
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn._last_ok = 0.0
        check_on_checkout(conn, timeout=0.5)  # healthy: passes, and marks it fresh
        assert conn._last_ok > 0
        conn._last_ok = 0.0
        cluster.hang()
        try:
            with pytest.raises(psycopg.OperationalError, match="timed out"):
                check_on_checkout(conn, timeout=0.5)
        finally:
            cluster.resume()


def test_a_fresh_connection_the_server_ended_is_checked_and_refused(cluster):
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        pid = conn.info.backend_pid
        conn._last_ok = time.monotonic()
        cluster.execute("SELECT pg_terminate_backend(%s)", [pid])
        wait_for(
            lambda: not cluster.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]), what="backend to end"
        )
        with pytest.raises(psycopg.OperationalError):
            check_on_checkout(conn, timeout=0.5)
