"""gunicorn's boot checks in the master: unreachable aliases, the connection budget,
and fork safety (`--preload` shares no pool between processes)."""
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.ops.conftest import activity, children, tcp_owners, uses_test_databases
from tests.pgcluster import free_port
from tests.servers import Gunicorn, http

SECRET = "Sup3r-s3cret-pw"
pytestmark = uses_test_databases


def failures(out: str) -> list[str]:
    return [line.split("boot check failed: ", 1)[1] for line in out.splitlines() if "boot check failed: " in line]


def boot_and_wait(env, timeout=60, **kwargs) -> tuple[int, str]:
    server = Gunicorn(env, **kwargs).start(wait=False)
    try:
        code = server.proc.wait(timeout)
    finally:
        server.stop()
    return code, server.output()


def test_unreachable_alias_stops_gunicorn_naming_it_and_never_its_password(ops_env):
    port = free_port()  # nothing listens there
    env = {**ops_env, "MARKET_DATABASE_URL": f"postgres://ops:{SECRET}@127.0.0.1:{port}/ops_market"}
    code, out = boot_and_wait(env)
    assert code != 0
    problems = failures(out)
    assert [p.split(" unreachable")[0] for p in problems] == [
        f"database 'market' (127.0.0.1:{port}/ops_market)", f"database 'market_jobs' (127.0.0.1:{port}/ops_market)"]
    assert SECRET not in out
    assert "Booting worker" not in out


def test_silent_alias_stops_gunicorn_after_the_connect_timeout(ops_env):
    # A socket that completes the TCP handshake and never answers, like a frozen server.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        env = {**ops_env, "BLOG_DATABASE_URL": f"postgres://ops:{SECRET}@127.0.0.1:{port}/ops_blog",
               "BLOG_DATABASE_CONNECT_TIMEOUT": "1"}
        code, out = boot_and_wait(env, timeout=30)
    assert code != 0
    problems = failures(out)
    assert len(problems) == 2 and all("(127.0.0.1:%d/ops_blog) unreachable" % port in p for p in problems)
    assert problems[0].startswith("database 'blog' ") and "timeout" in problems[0]
    assert SECRET not in out and "Booting worker" not in out


@pytest.mark.cluster
def test_pools_that_could_exceed_a_servers_slots_stop_gunicorn_naming_server_and_aliases(ops_env, small_cluster):
    # market on a server with max_connections 20 (17 slots): 50 workers x min(pool 10, 4 threads) + jobs 2 = 202.
    # shared and blog stay on the main server and fit: 50 x 1 each + 2 jobs pools of 2.
    env = {**ops_env, "MARKET_DATABASE_URL": small_cluster.url("ops_market"), "MARKET_DATABASE_POOL_MAX_SIZE": "10",
           "SHARED_DATABASE_POOL_MAX_SIZE": "1", "BLOG_DATABASE_POOL_MAX_SIZE": "1"}
    code, out = boot_and_wait(env, workers=50, threads=4)
    assert code != 0
    exceeded = failures(out)
    assert len(exceeded) == 1, out  # nothing unreachable, one server over
    assert f"on 127.0.0.1:{small_cluster.port} (aliases market, market_jobs)" in exceeded[0]
    assert "could open 202 connections (market 50x4=200, market_jobs 1x2=2)" in exceeded[0]
    assert "the server has 17 (max_connections 20 - 3 reserved)" in exceeded[0]
    assert "Booting worker" not in out


def test_preload_with_several_workers_shares_no_connection_between_processes(ops_env, ops_urls, serve):
    server = serve(ops_env, workers=3, threads=4, args=("--preload",))
    paths = ["/readyz", "/api/users/1", "/readyz", "/api/users/999999"] * 15
    with ThreadPoolExecutor(12) as ex:
        statuses = list(ex.map(lambda p: http("GET", server.url(p))[0], paths))
    assert set(statuses) <= {200, 404} and statuses.count(200) >= 30
    assert "the master holds no database pool" in server.output()

    master = server.proc.pid
    workers = children(master)
    assert len(workers) == 3
    owners = tcp_owners([master, *workers])
    web = [row for url in ops_urls.values() for row in activity(url, "web:%")]
    assert web, "the workers opened no connection"
    for row in web:
        holders = owners.get(row["client_port"])
        assert holders and len(holders) == 1, f"{row['application_name']} socket held by {holders}"
        assert holders <= set(workers), f"{row['application_name']} held by the master"
