"""The whole app through a real PgBouncer (1.18, transaction pooling) in front of a throwaway cluster.

No `ignore_startup_parameters`: PgBouncer refuses libpq `options`, so this also
proves the app sends nothing it cannot track.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support.pgbouncer import PgBouncer
from tests.support.pgcluster import wait_for
from tests.support.project import manage
from tests.support.scale import DATABASES, Browser, make_superuser_token, run_django
from tests.support.servers import Gunicorn, cluster_env

pytestmark = pytest.mark.cluster

POOL_SIZE = 3  # server connections per database behind PgBouncer


@pytest.fixture(scope="module")
def bouncer(primary):
    with PgBouncer(upstream_port=primary.port, pool_size=POOL_SIZE).running() as b:
        yield b


def pooled_env(primary, bouncer, *, direct: bool = False, **extra) -> dict[str, str]:
    """Every alias through PgBouncer (POOLER=transaction); with `direct`, DIRECT_URLs to the server."""
    env = cluster_env({p: bouncer.url(name) for p, name in DATABASES.items()}, **extra)
    for prefix, name in DATABASES.items():
        env[f"{prefix}_DATABASE_POOLER"] = "transaction"
        if direct:
            env[f"{prefix}_DATABASE_DIRECT_URL"] = primary.url(name)
    return env


def market_transactions(bouncer) -> int:
    return sum(row["total_xact_count"] for row in bouncer.show("STATS") if row["database"] == "scale_market")


def server_backends(primary, dbname: str) -> int:
    return primary.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND backend_type = "
        "'client backend' AND pid <> pg_backend_pid()",
        (dbname,),
    )[0][0]


def test_migrate_all_refuses_without_the_direct_url_and_uses_it(primary, bouncer):
    primary.create_database("scale_market_new")
    env = pooled_env(primary, bouncer, direct=True)
    env["MARKET_DATABASE_URL"] = bouncer.url("scale_market_new")
    del env["MARKET_DATABASE_DIRECT_URL"]

    refused = manage("migrate_all", env=env)
    assert refused.returncode != 0
    assert "MARKET_DATABASE_DIRECT_URL" in refused.stderr and "MARKET_DATABASE_POOLER=transaction" in refused.stderr
    assert "Traceback" not in refused.stderr

    env["MARKET_DATABASE_DIRECT_URL"] = primary.url("scale_market_new")
    done = manage("migrate_all", env=env, timeout=180)
    assert done.returncode == 0, done.stderr
    assert "market     migrated in" in done.stdout and "(direct URL)" in done.stdout
    assert primary.execute("SELECT to_regclass('market_product') IS NOT NULL", dbname="scale_market_new")[0][0]
    # Nothing went through the pooler for that database.
    assert "scale_market_new" not in {p["database"] for p in bouncer.show("POOLS")}


def test_a_long_job_runs_through_pgbouncer(primary, bouncer, tmp_path):
    """import_products: its batches go through the pooler on the jobs pool; only its session-level
    run lock needs the direct URL, and without one it refuses before writing anything."""
    csv = tmp_path / "products.csv"
    csv.write_text("sku,name,price_cents,stock\n" + "".join(f"imp-{i:05d},imported,{i},{i % 7}\n" for i in range(3000)))
    refused = manage("import_products", str(csv), env=pooled_env(primary, bouncer), timeout=180)
    assert refused.returncode != 0 and "MARKET_DATABASE_DIRECT_URL" in refused.stderr
    before = market_transactions(bouncer)
    done = manage("import_products", str(csv), env=pooled_env(primary, bouncer, direct=True), timeout=300)
    assert done.returncode == 0, done.stderr
    assert market_transactions(bouncer) > before  # its work went through the pooler
    assert (
        primary.execute("SELECT count(*) FROM market_product WHERE sku LIKE 'imp-%%'", dbname="scale_market")[0][0]
        == 3000
    )
    assert not [c for c in bouncer.show("CLIENTS") if c["application_name"] == "jobs:market"]


def test_django_time_zone_setting_does_not_leak_through_pgbouncer(primary):
    """Django sends `SET TIME ZONE 'UTC'` on connect when the server's default differs. PgBouncer
    tracks TimeZone per client, so that SET neither leaks to other clients nor gets lost."""
    primary.create_database("scale_tz")
    primary.execute("ALTER DATABASE scale_tz SET timezone = 'America/New_York'")
    with PgBouncer(upstream_port=primary.port, pool_size=1).running() as single:
        env = pooled_env(primary, single)
        env["MARKET_DATABASE_URL"] = single.url("scale_tz")
        out = run_django(
            env,
            f"""
            import psycopg
            from django.db import connections

            def django_tz():
                with connections["market"].cursor() as cur:
                    cur.execute("SELECT current_setting('TimeZone'), pg_backend_pid()")
                    return cur.fetchone()
            other = psycopg.connect({single.url("scale_tz")!r}, autocommit=True)
            out["django"] = django_tz()
            out["other"] = other.execute("SELECT current_setting('TimeZone'), pg_backend_pid()").fetchone()
            out["django_again"] = django_tz()
        """,
        )
    # One server connection for both clients, each with its own time zone.
    assert out["django"][1] == out["other"][1] == out["django_again"][1]
    assert out["django"][0] == out["django_again"][0] == "UTC"
    assert out["other"][0] == "America/New_York"


def test_the_app_works_through_pgbouncer_and_keeps_its_invariants(primary, bouncer):
    # Invariants, not latency: a generous pool wait, so a busy test machine cannot turn a queued
    # order into a 503 (16 clients share 8 threads and PgBouncer's small pool on one product row).
    waits = {f"{p}_DATABASE_POOL_TIMEOUT": "15" for p in DATABASES}
    env = pooled_env(primary, bouncer, **waits)
    root = make_superuser_token(env)
    staff = Browser(root["key"])
    stock, buyers, accounts_n, balance = 25, 40, 4, 1000
    with Gunicorn(env, workers=2, threads=4).running() as server:
        status, body = staff.request(
            "POST",
            server.url("/api/market/products"),
            {"sku": "pgb-1", "name": "scarce", "price_cents": 100, "stock": stock},
        )
        assert status == 201, body
        accounts = []
        for _ in range(accounts_n):
            status, body = staff.request(
                "POST", server.url("/api/market/accounts"), {"owner": root["id"], "balance_cents": balance}
            )
            assert status == 201, body
            accounts.append(body["data"]["id"])

        def order(_):
            return staff.request(
                "POST", server.url("/api/market/orders"), {"items": [{"sku": "pgb-1", "quantity": 1}]}
            )[0]

        def transfer(i):
            src, dst = accounts[i % accounts_n], accounts[(i * 3 + 1) % accounts_n]
            if src == dst:
                dst = accounts[(i + 1) % accounts_n]
            key = {"Idempotency-Key": str(uuid.uuid4())}
            body = {"from_account": src, "to_account": dst, "amount_cents": 300}
            first = staff.request("POST", server.url("/api/market/transfers"), body, headers=key)
            again = staff.request("POST", server.url("/api/market/transfers"), body, headers=key)
            if first[0] == 201:
                assert again[0] == 201 and again[1]["data"]["id"] == first[1]["data"]["id"]
            return first[0]

        peak = [0]
        done = threading.Event()

        def sample():
            while not done.wait(0.02):  # a sample every 20 ms, not a busy loop competing with the server
                peak[0] = max(peak[0], server_backends(primary, "scale_market"))

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            with ThreadPoolExecutor(16) as ex:
                order_codes = list(ex.map(order, range(buyers)))
                transfer_codes = list(ex.map(transfer, range(60)))
        finally:
            done.set()
            sampler.join()
        assert order_codes.count(201) == stock
        assert set(order_codes) == {201, 409}
        assert set(transfer_codes) <= {201, 409} and 201 in transfer_codes
        # 16 clients, 2 workers x 4 threads: the server saw at most PgBouncer's pool for the database.
        assert 0 < peak[0] <= POOL_SIZE

        status, body = staff.request("GET", server.url("/api/market/products/pgb-1"))
        assert (status, body["data"]["stock"]) == (200, 0)
        balances = [
            staff.request("GET", server.url(f"/api/market/accounts/{a}"))[1]["data"]["balance_cents"] for a in accounts
        ]
        assert sum(balances) == accounts_n * balance and min(balances) >= 0
        # The workers' audit relay threads deliver through the pooler too (jobs pools).
        wait_for(
            lambda: (
                primary.execute(
                    "SELECT count(*) FROM audit_auditevent WHERE model = 'market.order' AND action = 'create'",
                    dbname="scale_shared",
                )[0][0]
                == stock
            ),
            what="order events to be relayed to the shared database",
        )
    assert "unsupported startup parameter" not in bouncer.output()


def test_iterator_admin_and_audit_relay_through_pgbouncer(primary, bouncer):
    env = pooled_env(primary, bouncer, DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost,testserver")
    out = run_django(
        env,
        """
        from django.contrib.auth import get_user_model
        from django.test import Client
        from audit.models import AuditEvent
        from market.models import Product

        Product.objects.bulk_create(Product(sku=f"it-{i:05d}", name="bulk", price_cents=i, stock=1)
                                    for i in range(10_000))
        # Other clients keep PgBouncer's few server connections busy meanwhile, so consecutive
        # statements of this client land on different server connections (as in production).
        import threading, psycopg
        from django.db import connections
        stop = threading.Event()
        def other_client():
            with psycopg.connect(**{k: v for k, v in connections["market"].get_connection_params().items()
                                    if k in ("dbname", "user", "host", "port")}, autocommit=True) as conn:
                while not stop.is_set():
                    conn.execute("SELECT count(*) FROM market_product")
        others = [threading.Thread(target=other_client) for _ in range(6)]
        for t in others:
            t.start()
        seen = 0
        try:
            for product in Product.objects.filter(sku__startswith="it-").iterator(chunk_size=500):
                seen += 1
        finally:
            stop.set()
            for t in others:
                t.join()
        out["iterated"] = seen

        admin, _ = get_user_model().objects.get_or_create(
            username="pgb-admin", defaults={"is_staff": True, "is_superuser": True})
        client = Client()
        client.force_login(admin)  # a session row in the shared database, through PgBouncer
        out["changelist"] = client.get("/admin/market/product/?q=it-0000").status_code
        product = Product.objects.get(sku="it-00001")
        response = client.post(f"/admin/market/product/{product.pk}/change/",
                               {"sku": "it-00001", "name": "renamed in the admin", "price_cents": 1, "stock": 2})
        out["change"] = response.status_code
        out["renamed"] = Product.objects.get(sku="it-00001").name
        out["events_before"] = AuditEvent.objects.filter(model="market.product").count()
    """,
    )
    assert out["iterated"] == 10_000
    assert out["changelist"] == 200
    assert out["change"] == 302 and out["renamed"] == "renamed in the admin"

    relay = manage("audit_relay", env=env, timeout=180)
    assert relay.returncode == 0, relay.stderr
    after = run_django(
        env,
        """
        from audit.models import AuditEvent
        out["events"] = AuditEvent.objects.filter(model="market.product").count()
        out["renamed"] = AuditEvent.objects.filter(model="market.product", action="update",
                                                   changes__name__isnull=False).count()
    """,
    )
    assert after["events"] > out["events_before"]
    assert after["renamed"] >= 1
    assert "unsupported startup parameter" not in bouncer.output()
