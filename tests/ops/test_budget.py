"""The connection budget: arithmetic (config/budget.py) and `manage.py dbbudget` against a real server."""
import json

import pytest

from config.budget import Limits, Target, per_process, plan, problems
from tests.conftest import manage
from tests.servers import cluster_env

SERVER = "db1:5432"


def target(alias, role="web", server=SERVER, min_size=1, max_size=10, pooler="direct"):
    return Target(alias, role, server, alias, min_size, max_size, pooler)


def test_four_instances_of_fifty_connections_do_not_fit_a_hundred_slots():
    # One instance: 5 workers x min(pool max 10, 16 threads) = 50 connections.
    fleet = plan([target("default")], instances=4, workers=5, threads=16, limits={SERVER: Limits(103, 3)})
    (server,) = fleet
    assert (server.total, server.available, server.over) == (200, 100, True)
    (message,) = problems(fleet, scope="the fleet")
    assert SERVER in message and "default" in message and "200" in message and "100" in message

    two = plan([target("default")], instances=2, workers=5, threads=16, limits={SERVER: Limits(103, 3)})
    assert (two[0].total, two[0].over) == (100, False)  # exactly full still fits
    assert problems(two, scope="the fleet") == []


def test_a_worker_cannot_hold_more_connections_per_alias_than_threads_but_keeps_min_size_open():
    assert per_process(target("blog", max_size=10), threads=2) == 2
    assert per_process(target("blog", max_size=10), threads=16) == 10
    assert per_process(target("blog", min_size=4, max_size=10), threads=2) == 4
    assert per_process(target("blog", max_size=10), threads=None) == 10  # async workers: the pool bounds it


def test_jobs_pools_count_once_per_instance_and_servers_sum_their_aliases():
    targets = [target("default"), target("default_jobs", role="jobs", max_size=2), target("blog"),
               target("blog_replica", role="replica", server="db2:5432")]
    fleet = plan(targets, instances=3, workers=8, threads=4,
                 limits={SERVER: Limits(200, 3), "db2:5432": Limits(50, 3)})
    by_server = {b.server: b for b in fleet}
    primary = by_server[SERVER]
    rows = {r.alias: (r.per_process, r.processes, r.total) for r in primary.rows}
    assert rows == {"default": (4, 24, 96), "default_jobs": (2, 3, 6), "blog": (4, 24, 96)}
    assert (primary.total, primary.over) == (198, True)
    replica = by_server["db2:5432"]
    assert (replica.aliases, replica.total, replica.over) == (["blog_replica"], 96, True)


def test_transaction_pooler_connections_are_counted_against_pgbouncer_not_judged_against_the_server():
    targets = [target("default"), target("market", server="bouncer:6432", pooler="transaction")]
    fleet = plan(targets, instances=10, workers=10, threads=4, limits={SERVER: Limits(1000, 3)})
    kinds = {b.kind: b for b in fleet}
    assert kinds["pgbouncer"].server == "bouncer:6432" and kinds["pgbouncer"].total == 400
    assert not kinds["pgbouncer"].over and not kinds["pgbouncer"].unknown
    assert kinds["postgres"].aliases == ["default"] and kinds["postgres"].total == 400


def small_env(cluster, **extra):
    prefixes = ("SHARED", "BLOG", "MARKET")
    sizes = {f"{p}_DATABASE_POOL_MAX_SIZE": "4" for p in prefixes} | {"JOBS_DATABASE_POOL_MAX_SIZE": "2"}
    return cluster_env({p: cluster.url(f"ops_{p.lower()}") for p in prefixes}, **sizes, **extra)


@pytest.mark.cluster
def test_dbbudget_reads_max_connections_and_exits_1_when_the_fleet_is_over(small_cluster):
    result = manage("dbbudget", "--instances", "4", "--workers", "2", "--threads", "4", "--json",
                    env=small_env(small_cluster))
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    (server,) = report["servers"]
    assert server["server"] == f"127.0.0.1:{small_cluster.port}"
    assert (server["max_connections"], server["reserved"], server["available"]) == (20, 3, 17)
    # 3 web aliases x 4 instances x 2 workers x min(pool 4, 4 threads) + 3 jobs pools x 4 instances x 2
    assert server["total"] == 96 + 24 and server["over"] is True and report["over"] is True
    assert f"127.0.0.1:{small_cluster.port} over by 103" in result.stderr

    text = manage("dbbudget", "--instances", "4", "--workers", "2", "--threads", "4", env=small_env(small_cluster))
    assert text.returncode == 1 and "OVER by 103" in text.stdout and "market_jobs" in text.stdout


@pytest.mark.cluster
def test_dbbudget_exits_0_when_the_fleet_fits(small_cluster):
    result = manage("dbbudget", "--workers", "1", "--threads", "1", env=small_env(small_cluster))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "9 / 17  ok" in result.stdout  # 3 aliases x max(min 1, min(4, 1)) + 3 jobs pools x 2


@pytest.mark.cluster
def test_dbbudget_fails_naming_a_server_it_cannot_read(small_cluster):
    from tests.pgcluster import free_port

    port = free_port()
    env = small_env(small_cluster, MARKET_DATABASE_URL=f"postgres://ops:Pw-n0t-shown@127.0.0.1:{port}/ops_market")
    result = manage("dbbudget", env=env)
    assert result.returncode == 1
    assert f"127.0.0.1:{port} limits unknown" in result.stderr and "Pw-n0t-shown" not in result.stdout + result.stderr
