"""Read replicas: a real streaming replica (`pg_basebackup -R`) of a throwaway primary.

Replay is paused on the replica (`pg_wal_replay_pause()`) to make "the replica
has not seen this write yet" a state the tests can hold still and look at.
"""

from __future__ import annotations

import contextlib
import threading

import pytest

from tests.support.pgcluster import wait_for
from tests.support.scale import Browser, make_staff_token, run_django
from tests.support.servers import Gunicorn, cluster_env

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def replica(primary):
    rep = primary.replica("scale-replica")
    try:
        yield rep
    finally:
        rep.destroy()


def caught_up(primary, replica) -> bool:
    target = primary.execute("SELECT pg_current_wal_insert_lsn()")[0][0]
    return replica.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (str(target),))[0][0]


@pytest.fixture
def healthy(primary, replica):
    """The replica running, replaying and caught up at the start and at the end of the test."""

    def heal():
        replica.resume()
        if not replica.is_ready():
            replica.start()
        replica.execute("SELECT pg_wal_replay_resume()")
        wait_for(lambda: caught_up(primary, replica), what="replica to catch up")

    heal()
    yield replica
    heal()


@contextlib.contextmanager
def replay_paused(replica):
    replica.execute("SELECT pg_wal_replay_pause()")
    wait_for(
        lambda: replica.execute("SELECT pg_get_wal_replay_pause_state()")[0][0] == "paused", what="replay to pause"
    )
    try:
        yield
    finally:
        replica.execute("SELECT pg_wal_replay_resume()")


def insert_product(primary, sku: str) -> None:
    """A row written behind the app's back, straight on the primary."""
    primary.execute(
        "INSERT INTO market_product (sku, name, price_cents, stock, created, updated)"
        " VALUES (%s, 'x', 1, 1, now(), now())",
        (sku,),
        dbname="scale_market",
    )


def replica_env(primary, replica, **extra) -> dict[str, str]:
    urls = primary.urls
    return cluster_env(
        urls,
        MARKET_DATABASE_REPLICA_URL=replica.url("scale_market"),
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost,testserver",
        **extra,
    )


def test_replica_reads_and_what_stays_on_the_primary(primary, healthy):
    """Inside a read scope plain reads go to the replica; transactions, locks, jobs, unsafe
    requests and anything after a write go to the primary."""
    env = replica_env(primary, healthy, MARKET_DATABASE_REPLICA_MAX_LAG_MS="600000")
    with replay_paused(healthy):
        out = run_django(
            env,
            """
            from config.multidb import replicas
            from config.multidb.lifecycle import atomic_for
            from config.multidb.router import connected_to
            from market.models import Product

            Product.objects.create(sku="route-1", name="only on the primary", price_cents=100, stock=5)
            out["no_scope"] = (Product.objects.all().db, Product.objects.filter(sku="route-1").exists())
            with replicas.read_scope():
                out["scope"] = (Product.objects.all().db, Product.objects.filter(sku="route-1").exists())
                with atomic_for(Product):
                    out["atomic"] = (Product.objects.all().db, Product.objects.filter(sku="route-1").exists())
                    locked = Product.objects.select_for_update().filter(sku="route-1")
                    out["locked"] = (locked.db, [p.sku for p in locked])
                out["for_update_db"] = Product.objects.select_for_update().db
                out["get_or_create_db"] = Product.objects.get_or_create(
                    sku="route-1", defaults={"name": "x", "price_cents": 1})[0]._state.db
                with connected_to("jobs"):
                    out["jobs"] = Product.objects.all().db
            with replicas.read_scope(replicas=False):  # a POST/PATCH/DELETE request
                out["unsafe"] = Product.objects.all().db
            with replicas.read_scope():
                out["before_write"] = Product.objects.all().db
                Product.objects.filter(sku="route-1").update(stock=6)
                out["after_write"] = (Product.objects.all().db,
                                      Product.objects.filter(sku="route-1", stock=6).exists())
            lsn = replicas.primary_lsn("market")
            with replicas.read_scope(client_lsns={"market": lsn}):  # a client whose write is not replayed
                out["own_write"] = (Product.objects.all().db, Product.objects.filter(sku="route-1").exists())
        """,
        )
    assert out["no_scope"] == ["market", True]  # commands and other code outside a request: primary
    assert out["scope"] == ["market_replica", False]  # the replica, which has not replayed the insert
    assert out["atomic"] == ["market", True]
    assert out["locked"] == ["market", ["route-1"]]
    assert out["for_update_db"] == "market"  # select_for_update is routed with db_for_write
    assert out["get_or_create_db"] == "market"
    assert out["jobs"] == "market_jobs"
    assert out["unsafe"] == "market"
    assert out["before_write"] == "market_replica"
    assert out["after_write"] == ["market", True]
    assert out["own_write"] == ["market", True]


def test_writes_through_a_replica_alias_are_refused_before_the_server(primary, healthy):
    env = replica_env(primary, healthy)
    out = run_django(
        env,
        """
        from django.db import connections, transaction
        from config.multidb.replicas import WriteOnReplica
        from market.models import Product

        attempts = {
            "update": lambda: Product.objects.using("market_replica").filter(sku="x").update(stock=1),
            "create": lambda: Product.objects.using("market_replica").create(sku="w-1", name="w", price_cents=1),
            "raw": lambda: connections["market_replica"].cursor().execute("DELETE FROM market_product"),
            "cte": lambda: connections["market_replica"].cursor().execute(
                "WITH gone AS (DELETE FROM market_product RETURNING 1) SELECT count(*) FROM gone"),
        }
        def lock():
            with transaction.atomic(using="market_replica"):
                list(Product.objects.using("market_replica").select_for_update())
        attempts["lock"] = lock
        for name, attempt in attempts.items():
            try:
                attempt()
                out[name] = "not refused"
            except WriteOnReplica as exc:
                out[name] = str(exc)
        with connections["market_replica"].cursor() as cur:
            cur.execute("SELECT count(*) FROM market_product")
            out["read"] = cur.fetchone()[0] >= 0
    """,
    )
    for name in ("update", "create", "raw", "cte", "lock"):
        assert "read-only replica alias 'market_replica'" in out[name], (name, out[name])
        assert "'market'" in out[name]
    assert out["read"] is True


def test_the_writer_reads_its_own_write_others_may_read_the_replica(primary, healthy):
    env = replica_env(primary, healthy, MARKET_DATABASE_REPLICA_MAX_LAG_MS="600000")
    writer = Browser(make_staff_token(env))
    reader = Browser()  # keeps cookies too, but never wrote
    with Gunicorn(env, workers=1).running() as server:
        with replay_paused(healthy):
            # Replay is paused: a product inserted behind the app's back is invisible on the replica,
            # so a 404 for it proves that reads are served by the replica.
            insert_product(primary, "behind-1")
            wait_for(
                lambda: reader.request("GET", server.url("/api/market/products/behind-1"))[0] == 404,
                what="reads to be served by the replica",
            )

            status, body = writer.request(
                "POST",
                server.url("/api/market/products"),
                {"sku": "ryw-1", "name": "mine", "price_cents": 250, "stock": 3},
            )
            assert status == 201, body
            assert writer.cookie("db_lsn")
            # The writer sees its write at once (from the primary: the replica has not replayed it) ...
            status, body = writer.request("GET", server.url("/api/market/products/ryw-1"))
            assert (status, body["data"]["stock"]) == (200, 3)
            # ... a client without the cookie reads the replica, which does not have it yet.
            assert reader.request("GET", server.url("/api/market/products/ryw-1"))[0] == 404
            assert reader.cookie("db_lsn") is None
            # A forged cookie counts for nothing.
            forged = Browser()
            forged.opener.addheaders = [("Cookie", "db_lsn=" + writer.cookie("db_lsn")[:-3] + "AAA")]
            assert forged.request("GET", server.url("/api/market/products/ryw-1"))[0] == 404
        # Replay resumed: everyone sees it, and the writer's cookie is dropped once it is replayed.
        wait_for(
            lambda: reader.request("GET", server.url("/api/market/products/ryw-1"))[0] == 200,
            what="the replica to replay the write",
        )
        wait_for(
            lambda: (
                writer.request("GET", server.url("/api/market/products/ryw-1"))[0] == 200
                and writer.cookie("db_lsn") is None
            ),
            what="the writer's cookie to be dropped",
        )


def test_a_lagging_replica_is_skipped(primary, healthy):
    env = replica_env(primary, healthy, MARKET_DATABASE_REPLICA_MAX_LAG_MS="300")
    reader = Browser()
    with Gunicorn(env, workers=1).running() as server, replay_paused(healthy):
        insert_product(primary, "lag-1")
        # The paused replica never gets the row: seeing it means the primary served the read,
        # which happens once the replica is more than 300 ms behind.
        wait_for(
            lambda: reader.request("GET", server.url("/api/market/products/lag-1"))[0] == 200,
            timeout=20,
            what="the lagging replica to be skipped",
        )
        insert_product(primary, "lag-2")
        assert reader.request("GET", server.url("/api/market/products/lag-2"))[0] == 200


def test_lag_is_measured_by_wal_position_and_the_replica_comes_back(primary, healthy):
    env = replica_env(primary, healthy, MARKET_DATABASE_REPLICA_MAX_LAG_MS="300")
    out = run_django(
        env,
        f"""
        import time
        import psycopg
        from config.multidb import replicas
        from market.models import Product

        replicas.STATUS_TTL_S = 0  # a fresh probe on every call
        monitor = replicas.monitor("market_replica")

        def until(predicate, what):
            deadline = time.monotonic() + 30
            while not predicate():
                assert time.monotonic() < deadline, what
                time.sleep(0.05)

        until(lambda: monitor.status().usable, "healthy at the start")
        with psycopg.connect({healthy.url("scale_market")!r}, autocommit=True) as rep:
            rep.execute("SELECT pg_wal_replay_pause()")
            Product.objects.create(sku="lagged-1", name="x", price_cents=1)
            until(lambda: not monitor.status().usable, "the replica to be judged lagging")
            out["lagging"] = monitor.status().reason
            rep.execute("SELECT pg_wal_replay_resume()")
            until(lambda: monitor.status().usable, "the replica to come back")
            out["back"] = monitor.status().lag_ms
    """,
    )
    assert out["lagging"].startswith("lagging ")
    assert out["back"] <= 300


def test_reads_survive_a_stopped_or_hung_replica_and_it_comes_back(primary, healthy):
    env = replica_env(
        primary,
        healthy,
        MARKET_DATABASE_REPLICA_MAX_LAG_MS="600000",
        MARKET_DATABASE_CHECK_TIMEOUT="0.5",
        MARKET_DATABASE_CONNECT_TIMEOUT="1",
    )
    token = make_staff_token(env)
    reader = Browser()
    with Gunicorn(env, workers=1).running() as server:
        status, _ = Browser(token).request(
            "POST", server.url("/api/market/products"), {"sku": "fault-1", "name": "x", "price_cents": 1, "stock": 1}
        )
        assert status == 201
        wait_for(lambda: caught_up(primary, healthy), what="replica to catch up")
        assert reader.request("GET", server.url("/api/market/products/fault-1"))[0] == 200

        healthy.stop()
        answers = [reader.request("GET", server.url("/api/market/products/fault-1"))[0] for _ in range(30)]
        assert answers == [200] * 30

        healthy.start()
        healthy.execute("SELECT pg_wal_replay_pause()")
        insert_product(primary, "fault-2")
        # Used again by itself (breaker probe, then fresh status): the paused replica lacks fault-2.
        wait_for(
            lambda: reader.request("GET", server.url("/api/market/products/fault-2"))[0] == 404,
            timeout=30,
            what="the restarted replica to serve reads again",
        )
        healthy.execute("SELECT pg_wal_replay_resume()")

        healthy.hang()
        try:
            answers = [reader.request("GET", server.url("/api/market/products/fault-1"))[0] for _ in range(10)]
        finally:
            healthy.resume()
        assert answers == [200] * 10


def test_a_replica_failing_mid_request_is_retried_on_the_primary(primary, healthy):
    """The race a probe cannot close: the replica dies after its last good probe. A GET is safe
    to run again, so the view runs again on the primary instead of answering 503."""
    env = replica_env(primary, healthy, MARKET_DATABASE_REPLICA_MAX_LAG_MS="600000")
    run_django(
        env,
        """
        from market.models import Product
        Product.objects.get_or_create(sku="retry-1", defaults={"name": "x", "price_cents": 1})
    """,
    )
    wait_for(lambda: caught_up(primary, healthy), what="replica to catch up")
    stop_now, stopped = healthy.root / "stop-now", healthy.root / "stopped"

    def stopper():
        wait_for(stop_now.exists, timeout=60, what="the signal to stop the replica")
        healthy.stop()
        stopped.touch()

    thread = threading.Thread(target=stopper)
    thread.start()
    try:
        out = run_django(
            env,
            f"""
            import os, time
            from django.test import Client
            from config.multidb import replicas

            replicas.STATUS_TTL_S = 3600  # trust the first probe: the router keeps choosing the replica
            client = Client()
            out["before"] = client.get("/api/market/products/retry-1").status_code
            out["usable"] = replicas.monitor("market_replica").last_status().usable
            open({str(stop_now)!r}, "w").close()
            deadline = time.monotonic() + 60
            while not os.path.exists({str(stopped)!r}):
                assert time.monotonic() < deadline, "the replica was not stopped"
                time.sleep(0.05)
            out["after"] = client.get("/api/market/products/retry-1").status_code
            out["reason"] = replicas.monitor("market_replica").last_status().reason
        """,
        )
    finally:
        stop_now.touch()
        thread.join()
        stop_now.unlink(missing_ok=True)
        stopped.unlink(missing_ok=True)
    assert (out["before"], out["usable"]) == (200, True)
    assert out["after"] == 200
    assert out["reason"]  # the replica is marked failed until its next probe
