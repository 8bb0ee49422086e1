"""The connection budget: arithmetic (config/multidb/ops/budget.py) and `manage.py dbbudget` against a real server,
directly and behind a real PgBouncer."""

import json

import pytest

from config.multidb.ops.budget import Limits, Target, format_table, per_process, plan, problems
from tests.support.ops import DIRECT_PASSWORD, pooled_env
from tests.support.project import manage
from tests.support.servers import cluster_env

SERVER = "db1:5432"
BOUNCER = "bouncer:6432"


def target(alias, role="web", server=SERVER, min_size=1, max_size=10, pooler="direct", **kwargs):
    return Target(alias, role, server, alias, min_size, max_size, pooler, **kwargs)


def pooled(
    alias,
    role="web",
    database=None,
    direct=SERVER,
    max_size=8,
    pool_size=20,
    client_conn=100,
    server=BOUNCER,
    prefix=None,
):
    """An alias behind a transaction pooler at `server` (its jobs alias: same database and user)."""
    return Target(
        alias,
        role,
        server,
        database or alias.removesuffix("_jobs"),
        1,
        max_size,
        "transaction",
        user="app",
        prefix=prefix or alias.removesuffix("_jobs").upper(),
        direct_server=direct if role != "replica" else "",
        pooler_pool_size=pool_size,
        pooler_max_client_conn=client_conn,
    )


def fleet_of_three(pooler: bool, **kwargs) -> list[Target]:
    """The defaults of docs/scaling.md: three databases, pools 1..8, jobs pools of 2."""
    out = []
    for name in ("default", "blog", "market"):
        if pooler:
            out += [pooled(name, **kwargs), pooled(f"{name}_jobs", role="jobs", max_size=2, **kwargs)]
        else:
            out += [target(name, max_size=8), target(f"{name}_jobs", role="jobs", max_size=2)]
    return out


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


def test_jobs_pools_count_in_every_web_worker_plus_one_job_per_instance_and_servers_sum_their_aliases():
    targets = [
        target("default"),
        target("default_jobs", role="jobs", max_size=2),
        target("blog"),
        target("blog_replica", role="replica", server="db2:5432"),
    ]
    fleet = plan(targets, instances=3, workers=8, threads=4, limits={SERVER: Limits(250, 3), "db2:5432": Limits(50, 3)})
    by_server = {b.server: b for b in fleet}
    primary = by_server[SERVER]
    rows = {r.alias: (r.per_process, r.processes, r.total) for r in primary.rows}
    # jobs: 3 instances x (8 workers' audit relays + 1 job) = 27 processes of 2
    assert rows == {"default": (4, 24, 96), "default_jobs": (2, 27, 54), "blog": (4, 24, 96)}
    assert (primary.total, primary.available, primary.over) == (246, 247, False)
    replica = by_server["db2:5432"]
    assert (replica.aliases, replica.total, replica.over) == (["blog_replica"], 96, True)

    # One more worker per instance adds its web connections and its relay's jobs pool.
    bigger = {b.server: b for b in plan(targets, instances=3, workers=9, threads=4, limits={SERVER: Limits(250, 3)})}
    assert bigger[SERVER].total == 246 + 3 * (4 + 2 + 4) and bigger[SERVER].over


def test_twenty_instances_do_not_fit_a_hundred_connection_server_without_a_pooler():
    """docs/scaling.md, "without a pooler": 20 instances x 2 workers x 8 threads, defaults."""
    (server,) = plan(fleet_of_three(False), instances=20, workers=2, threads=8, limits={SERVER: Limits(100, 3)})
    assert {r.alias: r.total for r in server.rows} == {
        "default": 320,
        "blog": 320,
        "market": 320,  # 40 workers x min(8, 8)
        "default_jobs": 120,
        "blog_jobs": 120,
        "market_jobs": 120,
    }  # 20 x (2 + 1) processes x 2
    assert (server.total, server.available, server.over) == (1320, 97, True)
    # Even the smallest fleet of that shape (1 worker, 1 thread, pools of 1) needs 20 x 3 + 20 x 2 x 3 x 1.
    tiny = [target(t.alias, role=t.role, max_size=1) for t in fleet_of_three(False)]
    (small,) = plan(tiny, instances=20, workers=1, threads=1, limits={SERVER: Limits(100, 3)})
    assert small.total == 180 and small.over


def test_behind_a_pooler_the_server_sees_the_pooler_pools_not_the_fleet():
    """docs/scaling.md, "with PgBouncer": the client side on the pooler, the server side fixed."""
    limits = {SERVER: Limits(100, 3)}
    fleet = plan(fleet_of_three(True, client_conn=2000), instances=20, workers=2, threads=8, limits=limits)
    front, back = fleet
    assert (front.kind, front.server, back.kind, back.server) == ("pgbouncer", BOUNCER, "postgres", SERVER)
    # Client side: what the app opens, jobs included, against max_client_conn.
    assert (front.total, front.available, front.over) == (1320, 2000, False)
    # Server side: one pool per database/user pair (the jobs alias shares it), the job locks, migrate_all.
    assert [(r.alias, r.role, r.per_process, r.processes) for r in back.rows] == [
        ("default+default_jobs", "pooled", 20, 1),
        ("blog+blog_jobs", "pooled", 20, 1),
        ("market+market_jobs", "pooled", 20, 1),
        ("(job locks)", "direct", 1, 20),
        ("(migrate_all)", "direct", 1, 1),
    ]
    assert (back.total, back.available, back.over) == (81, 97, False)
    assert problems(fleet, scope="the fleet") == []

    # 200 instances: 10x the clients, and only the job locks grow on the server.
    (front10, back10) = plan(fleet_of_three(True, client_conn=2000), instances=200, workers=2, threads=8, limits=limits)
    assert (front10.total, front10.over) == (13200, True)
    assert back10.total == 60 + 200 + 1 and back10.over

    # One PgBouncer per host: each has its own pools on the server.
    three = plan(fleet_of_three(True, client_conn=2000), instances=20, workers=2, threads=8, limits=limits, poolers=3)
    assert three[1].total == 3 * 60 + 21 and three[1].over
    assert (three[0].total, three[0].available, three[0].over) == (1320, 6000, False)
    (message,) = problems(three, scope="the fleet")
    assert f"exceeded on {SERVER} " in message and "POOLER_POOL_SIZE" in message and "(job locks) 20x1=20" in message


def test_pooler_client_limit_is_the_smallest_declared_per_pooler_times_the_poolers():
    targets = [
        pooled("default", client_conn=500),
        pooled("default_jobs", role="jobs", max_size=2, client_conn=500),
        pooled("market", client_conn=300),
        pooled("market_jobs", role="jobs", max_size=2, client_conn=300),
    ]
    # 4 instances x 4 workers x min(8, 8) = 128 per web alias; jobs 4 x 5 x 2 = 40 each: 336 > 300.
    (front, _) = plan(targets, instances=4, workers=4, threads=8, limits={SERVER: Limits(100, 3)})
    assert (front.total, front.client_conn, front.available, front.over) == (336, 300, 300, True)
    (message,) = problems([front], scope="the fleet")
    assert message.startswith(f"connection budget exceeded on pgbouncer {BOUNCER} ")
    assert "max_client_conn 300 x 1 pooler(s)" in message and "MARKET_DATABASE_POOLER_MAX_CLIENT_CONN" in message
    (front2, _) = plan(targets, instances=4, workers=4, threads=8, limits={SERVER: Limits(100, 3)}, poolers=2)
    assert (front2.total, front2.available, front2.over) == (336, 600, False)  # clients spread over two


def test_pairs_that_differ_in_database_or_user_each_get_a_pool_and_a_larger_size_wins():
    targets = [
        pooled("default", pool_size=10),
        pooled("default_jobs", role="jobs", pool_size=15),
        pooled("blog", database="default", pool_size=5),  # same pooler database and user as default
        Target(
            "market",
            "web",
            BOUNCER,
            "default",
            1,
            8,
            "transaction",
            user="other",
            prefix="MARKET",
            direct_server=SERVER,
            pooler_pool_size=7,
        ),
    ]
    (_, back) = plan(targets, instances=2, workers=1, threads=1, limits={SERVER: Limits(100, 3)})
    assert [(r.alias, r.per_process) for r in back.rows if r.role == "pooled"] == [
        ("default+default_jobs+blog", 15),
        ("market", 7),
    ]
    assert back.total == 15 + 7 + 2 + 1


def test_without_a_direct_url_the_server_behind_the_pooler_is_not_judged_and_not_a_failure():
    targets = [
        target("default"),
        pooled("market", direct=""),
        pooled("market_jobs", role="jobs", max_size=2, direct=""),
        pooled("market_replica", role="replica", server="bouncer2:6432"),
    ]
    fleet = plan(targets, instances=2, workers=2, threads=4, limits={SERVER: Limits(100, 3)})
    by = {(b.kind, b.server): b for b in fleet}
    assert set(by) == {("postgres", SERVER), ("pgbouncer", BOUNCER), ("pgbouncer", "bouncer2:6432")}
    assert by[("postgres", SERVER)].aliases == ["default"]  # nothing from market: its server is unknown
    assert by[("pgbouncer", BOUNCER)].notes == ["server behind the pooler not judged; set MARKET_DATABASE_DIRECT_URL"]
    assert "replicas have no direct URL" in by[("pgbouncer", "bouncer2:6432")].notes[0]
    assert not any(b.over or b.unknown for b in fleet)
    table = format_table(fleet, instances=2, workers=2, threads=4)
    assert "note: server behind the pooler not judged; set MARKET_DATABASE_DIRECT_URL" in table


def test_two_names_of_one_server_share_its_slots():
    same = Limits(20, 3, identity="2026-11-21 10:00:00.123456+00 port 5432")
    targets = [
        target("default", max_size=4),
        target("market", server="localhost:5432", max_size=4),
        target("blog", server="db2:5432", max_size=4),
    ]
    limits = {SERVER: same, "localhost:5432": same, "db2:5432": Limits(20, 3, identity="another")}
    fleet = plan(targets, instances=1, workers=3, threads=4, limits=limits)

    by = {b.server: b for b in fleet}
    assert set(by) == {SERVER, "db2:5432"}
    assert by[SERVER].aliases == ["default", "market"] and by[SERVER].total == 24 and by[SERVER].over
    assert by[SERVER].notes == ["also reached as localhost:5432 (the same server)"]
    assert by["db2:5432"].total == 12 and not by["db2:5432"].over
    # Without identities (limits read elsewhere, or not at all) names are taken as written.
    apart = plan(targets, instances=1, workers=3, threads=4, limits={k: Limits(20, 3) for k in limits})
    assert sorted(b.server for b in apart) == ["db1:5432", "db2:5432", "localhost:5432"]


# -- the command, against real servers ------------------------------------------------------------

PREFIXES = ("SHARED", "BLOG", "MARKET")


def small_env(cluster, **extra):
    sizes = {f"{p}_DATABASE_POOL_MAX_SIZE": "4" for p in PREFIXES} | {"JOBS_DATABASE_POOL_MAX_SIZE": "2"}
    return cluster_env({p: cluster.url(f"ops_{p.lower()}") for p in PREFIXES}, **sizes, **extra)


@pytest.mark.cluster
def test_dbbudget_reads_max_connections_and_exits_1_when_the_fleet_is_over(small_cluster):
    result = manage(
        "dbbudget", "--instances", "4", "--workers", "2", "--threads", "4", "--json", env=small_env(small_cluster)
    )
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    (server,) = report["servers"]
    assert server["server"] == f"127.0.0.1:{small_cluster.port}"
    assert (server["max_connections"], server["reserved"], server["available"]) == (20, 3, 17)
    # 3 web aliases x 4 instances x 2 workers x min(pool 4, 4 threads) + 3 jobs pools x 4 instances x (2 + 1) x 2
    assert server["total"] == 96 + 72 and server["over"] is True and report["over"] is True
    assert f"127.0.0.1:{small_cluster.port} over by 151" in result.stderr

    text = manage("dbbudget", "--instances", "4", "--workers", "2", "--threads", "4", env=small_env(small_cluster))
    assert text.returncode == 1 and "OVER by 151" in text.stdout and "market_jobs" in text.stdout


@pytest.mark.cluster
def test_dbbudget_exits_0_when_the_fleet_fits(small_cluster):
    result = manage("dbbudget", "--workers", "1", "--threads", "1", env=small_env(small_cluster))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "15 / 17  ok" in result.stdout  # 3 aliases x max(min 1, min(4, 1)) + 3 jobs pools x (1 + 1) x 2


@pytest.mark.cluster
def test_dbbudget_counts_a_server_reached_by_two_names_once(small_cluster):
    port = small_cluster.port
    shape = ("--workers", "2", "--threads", "1", "--json")
    one_name = manage("dbbudget", *shape, env=small_env(small_cluster))
    # Per domain: 1 x 2 workers x min(4, 1 thread) + a jobs pool of 2 x (2 workers + 1 job) = 8; three: 24.
    assert one_name.returncode == 1 and json.loads(one_name.stdout)["servers"][0]["total"] == 24

    env = small_env(small_cluster, MARKET_DATABASE_URL=small_cluster.url("ops_market", host="localhost"))
    two_names = manage("dbbudget", *shape, env=env)
    # Counted per name, 16 of 17 and 8 of 17 would both pass: one server, 24 of 17.
    assert two_names.returncode == 1, two_names.stdout + two_names.stderr
    (server,) = json.loads(two_names.stdout)["servers"]
    assert (server["server"], server["total"], server["available"]) == (f"127.0.0.1:{port}", 24, 17)
    assert f"also reached as localhost:{port} (the same server)" in server["notes"]
    assert f"127.0.0.1:{port} over by 7" in two_names.stderr

    stat = manage("dbstat", "--json", env=env)
    assert stat.returncode == 0, stat.stdout + stat.stderr
    report = json.loads(stat.stdout)
    assert [s["server"] for s in report["servers"]] == [f"127.0.0.1:{port}"]
    assert {d["database"]: d["server"] for d in report["databases"]} == {
        "ops_shared": f"127.0.0.1:{port}",
        "ops_blog": f"127.0.0.1:{port}",
        "ops_market": f"127.0.0.1:{port}",
    }


@pytest.mark.cluster
def test_dbbudget_fails_naming_a_server_it_cannot_read(small_cluster):
    from tests.support.pgcluster import free_port

    port = free_port()
    env = small_env(small_cluster, MARKET_DATABASE_URL=f"postgres://ops:Pw-n0t-shown@127.0.0.1:{port}/ops_market")
    result = manage("dbbudget", env=env)
    assert result.returncode == 1
    assert f"127.0.0.1:{port} limits unknown" in result.stderr and "Pw-n0t-shown" not in result.stdout + result.stderr


@pytest.mark.cluster
def test_dbbudget_judges_the_server_behind_pgbouncer_through_the_direct_url(small_cluster, small_bouncer):
    shape = ("--workers", "2", "--threads", "2")
    env = pooled_env(small_cluster, small_bouncer)
    with small_bouncer.connect("ops_market") as conn:  # the pooler URLs are live
        assert conn.execute("SELECT current_database()").fetchone() == ("ops_market",)

    fits = manage("dbbudget", "--instances", "4", *shape, "--json", env=env)
    assert fits.returncode == 0, fits.stdout + fits.stderr
    report = json.loads(fits.stdout)
    front, back = report["servers"]
    # Client side: 3 x 4 instances x 2 workers x min(4, 2) + 3 jobs pools x 4 x (2 + 1) x 2 = 48 + 72.
    assert (front["kind"], front["server"]) == ("pgbouncer", f"127.0.0.1:{small_bouncer.port}")
    assert (front["total"], front["max_client_conn"], front["available"], front["over"]) == (120, 200, 200, False)
    # Server side, read through the direct URL: 3 pairs x pool 4 + 4 job locks + migrate_all = 17 of 17.
    assert (back["kind"], back["server"]) == ("postgres", f"127.0.0.1:{small_cluster.port}")
    assert (back["max_connections"], back["available"]) == (20, 17)
    assert [(r["alias"], r["role"], r["total"]) for r in back["rows"]] == [
        ("default+default_jobs", "pooled", 4),
        ("blog+blog_jobs", "pooled", 4),
        ("market+market_jobs", "pooled", 4),
        ("(job locks)", "direct", 4),
        ("(migrate_all)", "direct", 1),
    ]
    assert (back["total"], back["over"]) == (17, False)

    # A fifth instance adds 30 clients but one server connection (its job lock): over by 1.
    five = manage("dbbudget", "--instances", "5", *shape, env=env)
    assert five.returncode == 1
    assert f"postgres 127.0.0.1:{small_cluster.port} over by 1" in five.stderr and "pgbouncer" not in five.stderr
    assert "150 / 200  ok" in five.stdout and "18 / 17  OVER by 1" in five.stdout
    # A second PgBouncer opens its own pools on the server.
    two = manage("dbbudget", "--instances", "4", *shape, "--poolers", "2", env=env)
    assert two.returncode == 1 and "29 / 17  OVER by 12" in two.stdout and "120 / 400  ok" in two.stdout
    # The pooler's client slots are judged too.
    tight = manage("dbbudget", "--instances", "4", *shape, env={**env, "BLOG_DATABASE_POOLER_MAX_CLIENT_CONN": "100"})
    assert tight.returncode == 1 and f"pgbouncer 127.0.0.1:{small_bouncer.port} over by 20" in tight.stderr
    assert "BLOG_DATABASE_POOLER_MAX_CLIENT_CONN" in tight.stdout
    for run in (fits, five, two, tight):
        assert DIRECT_PASSWORD not in run.stdout + run.stderr


@pytest.mark.cluster
def test_dbbudget_without_direct_urls_says_the_server_is_not_judged_and_exits_0(small_cluster, small_bouncer):
    result = manage(
        "dbbudget",
        "--instances",
        "4",
        "--workers",
        "2",
        "--threads",
        "2",
        env=pooled_env(small_cluster, small_bouncer, direct=False),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for prefix in PREFIXES:
        assert f"server behind the pooler not judged; set {prefix}_DATABASE_DIRECT_URL" in result.stdout
    assert f"postgres 127.0.0.1:{small_cluster.port}" not in result.stdout and "120 / 200  ok" in result.stdout
