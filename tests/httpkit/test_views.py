"""/readyz with a hung database: 503 naming it, quickly, while the other aliases stay ready."""

import pytest

from tests.support.ops import uses_test_databases
from tests.support.pgcluster import wait_for
from tests.support.servers import http

# Far above readyz's own 1 s deadline, far below what a hung pool would cost (gunicorn's 30 s worker timeout).
CLIENT_TIMEOUT_S = 8


@pytest.mark.cluster
@uses_test_databases
def test_readyz_answers_503_naming_a_hung_alias_and_recovers(ops_env, small_cluster, serve):
    server = serve({**ops_env, "MARKET_DATABASE_URL": small_cluster.url("ops_market")}, workers=1, threads=4)
    status, body, _ = http("GET", server.url("/readyz"))
    assert status == 200 and body["databases"]["market"]["ok"] is True  # the pool holds live connections now

    small_cluster.hang()  # SIGSTOP: TCP still accepted, nothing answers
    try:
        for _ in range(4):  # the first ones hit the deadline, later ones the open breaker
            status, body, _ = http("GET", server.url("/readyz"), timeout=CLIENT_TIMEOUT_S)
            assert status == 503 and body["status"] == "unavailable"
            dbs = body["databases"]
            assert dbs["market"]["ok"] is False and dbs["market"]["error"]
            assert dbs["default"]["ok"] is True and dbs["blog"]["ok"] is True
        assert http("GET", server.url("/api/blog/posts"), timeout=CLIENT_TIMEOUT_S)[0] == 200
    finally:
        small_cluster.resume()
    wait_for(
        lambda: http("GET", server.url("/readyz"), timeout=CLIENT_TIMEOUT_S)[0] == 200,
        timeout=30,
        what="readiness after the server resumes",
    )
