"""The pieces under the fault behaviour, each against a real server: the breaker and its
background probe, the bulkhead, the statement watchdog, the pool check's deadline."""

from __future__ import annotations

import contextlib
import threading

import psycopg
import pytest

from config.multidb.backend.base import check_with_deadline
from config.multidb.backend.guard import SLOW_CALL_S, Guard, socket_identity
from config.multidb.resilience.breaker import Breaker, DatabaseUnavailable
from tests.support.pgcluster import wait_for

pytestmark = pytest.mark.cluster


def test_breaker_opens_after_failures_in_a_row_and_one_probe_closes_it(make_cluster):
    cluster = make_cluster("breaker")
    probes = []

    def probe():
        probes.append(1)
        return cluster.is_ready()

    breaker = Breaker("market", failures_to_open=3, open_seconds=0.05, probe=probe)
    try:
        cluster.stop()
        breaker.failure()
        breaker.success()  # a success in between: the count starts again
        breaker.failure()
        breaker.failure()
        breaker.before()  # two in a row: still closed
        breaker.failure()
        with pytest.raises(DatabaseUnavailable) as refused:
            breaker.before()
        assert refused.value.alias == "market" and refused.value.reason == "breaker_open"
        wait_for(lambda: len(probes) >= 3, what="the breaker to probe the stopped server")
        assert breaker.state == "open"
        cluster.start()
        wait_for(lambda: breaker.state == "closed", what="a probe to close the breaker")
        breaker.before()
        assert not breaker.probing or wait_for(lambda: not breaker.probing, what="the prober to end")
    finally:
        breaker.stop()


def test_bulkhead_refuses_only_when_slow_calls_fill_it(make_cluster):
    cluster = make_cluster("bulkhead")
    guard = Guard()
    conns = [cluster.connect() for _ in range(2)]

    def slow(conn):
        with guard.call("market", limit=2), contextlib.suppress(psycopg.errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(30)")  # cancelled below

    threads = [threading.Thread(target=slow, args=(c,), daemon=True) for c in conns]
    try:
        # Many quick calls at once are never refused: healthy load is not shed.
        for _ in range(20):
            with guard.call("market", limit=2), cluster.connect() as c:
                c.execute("SELECT 1")
        for t in threads:
            t.start()
        wait_for(
            lambda: guard.slow_calls("market") == 2,
            timeout=10,
            interval=SLOW_CALL_S / 5,
            what="two calls to become slow",
        )
        with pytest.raises(DatabaseUnavailable) as refused:
            with guard.call("market", limit=2):
                pass
        assert refused.value.reason == "busy"
        with guard.call("blog", limit=2):  # another alias keeps its own room
            pass
    finally:
        for c in conns:
            c.cancel_safe()
        for t in threads:
            t.join(10)
        for c in conns:
            c.close()
    with guard.call("market", limit=2):  # the slow calls ended: room again
        pass


def test_watchdog_cuts_a_statement_the_hung_server_never_answers(make_cluster):
    cluster = make_cluster("watchdog")
    guard = Guard()
    conn = cluster.connect()
    try:
        cluster.hang()
        with pytest.raises(psycopg.OperationalError):
            with guard.call("market", sock=socket_identity(conn.pgconn.socket), timeout=0.3):
                conn.execute("SELECT 1")
        assert guard.kills == 1
    finally:
        cluster.resume()
        conn.close()


def test_pool_check_gives_up_on_a_hung_server(make_cluster):
    cluster = make_cluster("check")
    conn = cluster.connect()
    try:
        check_with_deadline(conn, 1.0)  # a healthy server answers the empty query
        cluster.hang()
        with pytest.raises(psycopg.OperationalError, match="timed out"):
            check_with_deadline(conn, 0.3)
        assert conn.closed
    finally:
        cluster.resume()
        conn.close()
