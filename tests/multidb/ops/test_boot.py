"""gunicorn's boot checks in the master: unreachable aliases, the connection budget,
and fork safety (`--preload` shares no pool between processes)."""

import json
import os
import socket
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.logs import messages
from tests.support.ops import DIRECT_PASSWORD, activity, children, pooled_env, tcp_owners, uses_test_databases
from tests.support.pgcluster import free_port, wait_for
from tests.support.project import manage
from tests.support.servers import Gunicorn, http

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
        f"database 'market' (127.0.0.1:{port}/ops_market)",
        f"database 'market_jobs' (127.0.0.1:{port}/ops_market)",
    ]
    assert SECRET not in out
    assert "Booting worker" not in out


def test_silent_alias_stops_gunicorn_after_the_connect_timeout(ops_env):
    # A socket that completes the TCP handshake and never answers, like a frozen server.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        env = {
            **ops_env,
            "BLOG_DATABASE_URL": f"postgres://ops:{SECRET}@127.0.0.1:{port}/ops_blog",
            "BLOG_DATABASE_CONNECT_TIMEOUT": "1",
        }
        code, out = boot_and_wait(env, timeout=30)
    assert code != 0
    problems = failures(out)
    assert len(problems) == 2 and all("(127.0.0.1:%d/ops_blog) unreachable" % port in p for p in problems)
    assert problems[0].startswith("database 'blog' ") and "timeout" in problems[0]
    assert SECRET not in out and "Booting worker" not in out


@pytest.mark.cluster
def test_pools_that_could_exceed_a_servers_slots_stop_gunicorn_naming_server_and_aliases(ops_env, small_cluster):
    # market on a server with max_connections 20 (17 slots): 5 workers x min(pool 10, 2 threads) = 10, plus
    # market_jobs in every worker (its audit relay) and one job: (5 + 1) x 2 = 12; 22 > 17. Counting the
    # jobs pool once per instance (10 + 2) would have let it start.
    # shared and blog stay on the main server and fit: 5 x 1 + 6 x 2 each.
    env = {
        **ops_env,
        "MARKET_DATABASE_URL": small_cluster.url("ops_market"),
        "MARKET_DATABASE_POOL_MAX_SIZE": "10",
        "SHARED_DATABASE_POOL_MAX_SIZE": "1",
        "BLOG_DATABASE_POOL_MAX_SIZE": "1",
    }
    code, out = boot_and_wait(env, workers=5, threads=2)
    assert code != 0
    exceeded = failures(out)
    assert len(exceeded) == 1, out  # nothing unreachable, one server over
    assert f"on 127.0.0.1:{small_cluster.port} (aliases market, market_jobs)" in exceeded[0]
    assert "could open 22 connections (market 5x2=10, market_jobs 6x2=12)" in exceeded[0]
    assert "the server has 17 (max_connections 20 - 3 reserved)" in exceeded[0]
    assert "Booting worker" not in out


def test_an_unreachable_replica_only_warns_and_readyz_stays_200_listing_it(ops_env, serve):
    # Replicas are optional for serving: reads fall back to the primary, so boot and readiness go on.
    port = free_port()  # nothing listens there: a stopped replica
    env = {**ops_env, "MARKET_DATABASE_REPLICA_URL": f"postgres://ops:{SECRET}@127.0.0.1:{port}/ops_market"}
    server = serve(env, workers=1, threads=4)
    out = server.output()
    assert "boot check failed" not in out and "the master holds no database pool" in out
    (warning,) = messages(out, level="warning", starting="boot check: ")
    assert f"replica 'market_replica' (127.0.0.1:{port}/ops_market) unreachable" in warning
    assert "'market'" in warning  # the primary its reads go to

    status, body, _ = http("GET", server.url("/readyz"))
    assert status == 200 and body["status"] == "ok", body
    dbs = body["databases"]
    assert dbs["market_replica"]["ok"] is False and dbs["market_replica"]["role"] == "replica"
    assert dbs["market_replica"]["error"]
    assert all(dbs[a]["ok"] is True and dbs[a]["role"] == "primary" for a in ("default", "blog", "market"))
    # A read that would have used the replica is served by the primary.
    status, body, _ = http("GET", server.url("/api/market/products/no-such-sku"))
    assert (status, body["error"]["code"]) == (404, "product_not_found")
    assert SECRET not in server.output()


@pytest.mark.cluster
def test_behind_pgbouncer_the_boot_judges_the_poolers_client_slots(small_cluster, small_bouncer):
    # One instance of 2 workers x 4 threads: 3 x 2 x min(4, 4) + 3 jobs pools x (2 + 1) x 2 = 42 clients.
    env = pooled_env(small_cluster, small_bouncer, MARKET_DATABASE_POOLER_MAX_CLIENT_CONN="40")
    code, out = boot_and_wait(env, workers=2, threads=4)
    assert code != 0
    (exceeded,) = failures(out)
    assert exceeded.startswith(f"connection budget exceeded on pgbouncer 127.0.0.1:{small_bouncer.port} ")
    assert "could open 42 connections" in exceeded and "max_client_conn 40 x 1 pooler(s)" in exceeded
    assert "MARKET_DATABASE_POOLER_MAX_CLIENT_CONN" in exceeded and "Booting worker" not in out
    assert DIRECT_PASSWORD not in out


@pytest.mark.cluster
def test_behind_pgbouncer_an_unreachable_direct_url_only_warns(small_cluster, small_bouncer, serve):
    port = free_port()
    env = pooled_env(
        small_cluster, small_bouncer, MARKET_DATABASE_DIRECT_URL=f"postgres://ops:{SECRET}@127.0.0.1:{port}/ops_market"
    )
    server = serve(env, workers=1, threads=2)
    out = server.output()
    assert "boot check failed" not in out and "the master holds no database pool" in out
    (warning,) = messages(out, level="warning", starting="boot check: ")
    assert (
        f"the direct URL of 'market' (127.0.0.1:{port}/ops_market, the server behind its pooler) unreachable"
    ) in warning
    # The other databases' server was read through their direct URLs and judged.
    assert f"budget: postgres 127.0.0.1:{small_cluster.port}: max_connections 20 - 3 reserved = 17" in out
    assert SECRET not in out and DIRECT_PASSWORD not in out


def test_preload_with_several_workers_shares_no_connection_between_processes(ops_env, ops_urls, serve):
    server = serve(ops_env, workers=3, threads=4, args=("--preload",))
    paths = ["/readyz", "/api/users/1", "/readyz", "/api/users/999999"] * 15

    def get(path: str) -> int:
        if path == "/readyz":  # opens every alias's pool; cold pools on a busy machine may miss its 1 s once
            return wait_for(lambda: http("GET", server.url(path))[0] == 200 and 200, what="/readyz 200")
        return http("GET", server.url(path))[0]

    with ThreadPoolExecutor(12) as ex:
        statuses = list(ex.map(get, paths))
    assert set(statuses) <= {200, 404} and statuses.count(200) >= 30
    assert "the master holds no database pool" in server.output()

    master = server.proc.pid
    workers = children(master)
    assert len(workers) == 3
    assert len(os.listdir(f"/proc/{master}/task")) == 1, "the master runs a thread a fork could copy mid-lock"

    def every_connection_held_by_one_worker() -> bool:
        # Two snapshots (sockets, then pg_stat_activity): a pool opening a connection in between
        # shows a port nobody holds yet; look again. A shared or master-held socket fails at once.
        owners = tcp_owners([master, *workers])
        web = [row for url in ops_urls.values() for row in activity(url, "web:%")]
        assert web, "the workers opened no connection"
        for row in web:
            holders = owners.get(row["client_port"], set())
            assert len(holders) <= 1, f"{row['application_name']} socket held by {holders}"
            assert holders <= set(workers), f"{row['application_name']} held by the master"
        return all(owners.get(row["client_port"]) for row in web)

    wait_for(every_connection_held_by_one_worker, timeout=10, what="every web connection held by a worker")


# Run by `manage.py shell -c`: boot_checks as gunicorn's master runs it, counting the threads it starts.
_COUNT_THREADS_IN_BOOT = """
import json, os, threading
started = []
start = threading.Thread.start
threading.Thread.start = lambda self: (started.append(self.name), start(self))[1]
from config.multidb.ops.boot import boot_checks
problems = boot_checks(workers=1, threads=2)
print(json.dumps({"problems": problems, "started": started, "tasks": len(os.listdir("/proc/self/task"))}))
"""


def test_the_master_starts_no_thread_so_a_fork_cannot_inherit_a_held_lock(ops_env):
    # A thread that finished a TLS connect is still releasing OpenSSL's locks after join() returns;
    # a worker forked then inherited one held, and every TLS connect in it hung. The probes run in a
    # child process, so the master has no other thread to fork beside.
    result = manage("shell", "-c", _COUNT_THREADS_IN_BOOT, env=ops_env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    assert report == {"problems": [], "started": [], "tasks": 1}
