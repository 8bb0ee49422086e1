"""One database in trouble (market, in a cluster of its own) never takes the others down.

Every fault class against a real gunicorn: the market endpoints answer a clean
`503 database_unavailable` naming `market` (never a 500, never a hang), the blog
keeps answering 200 meanwhile, and market answers 200 again once its server does.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections import Counter

import psycopg
import pytest

from tests.support.faults import HTTP_TIMEOUT_S, SKU, SKUS, Load, assert_unavailable, in_parallel
from tests.support.pgcluster import wait_for
from tests.support.servers import ROOT, Gunicorn, http

pytestmark = pytest.mark.cluster


def _blog_keeps_answering(load: Load, more: int = 20) -> None:
    """The blog load makes progress (`more` answers) now; every answer so far was 200."""
    start = load.count()
    wait_for(lambda: load.count() >= start + more, timeout=30, what=f"{more} more blog answers")
    assert set(load.statuses()) == {200}, load.statuses()


def _market_statuses_are_clean(answers) -> None:
    for status, body, _ in answers:
        if status != 200:
            assert_unavailable(status, body, "market")


def test_refused_market_answers_503_and_opens_the_breaker(market_apart):
    site = market_apart
    site.wait_healthy()
    with Load(site.blog) as blog:
        site.clusters["market"].stop()
        try:
            answers = []

            def breaker_open():
                answers.append(site.product())
                status, body, _ = answers[-1]
                return status == 503 and body["error"].get("reason") == "breaker_open"

            wait_for(breaker_open, timeout=30, interval=0.05, what="market's breaker to open")
            for status, body, _ in answers:
                assert_unavailable(status, body, "market")
            status, body, headers = site.product()
            assert_unavailable(status, body, "market")
            assert int(headers["Retry-After"]) >= 1
            assert 0 < body["error"]["retry_after_ms"] <= 60_000
            assert_unavailable(*site.order()[:2], "market")
            _blog_keeps_answering(blog)
            status, body, _ = site.get("/readyz")
            assert status == 503 and body["databases"]["market"]["ok"] is False
            assert body["databases"]["blog"]["ok"] is True and body["databases"]["default"]["ok"] is True
        finally:
            site.clusters["market"].start()
        site.wait_healthy("market to answer after its server started")
    assert set(blog.statuses()) == {200}, blog.statuses()


def test_hung_market_never_holds_the_blog_and_in_flight_requests_end_in_503(market_apart):
    site = market_apart
    site.wait_healthy()
    market = site.clusters["market"]
    # A request in flight when the server freezes: an order waiting for a row lock.
    holder = market.connect("fault_market", autocommit=False)
    holder.execute("SELECT 1 FROM market_product WHERE sku = %s FOR UPDATE", [SKU])
    in_flight: list = []
    t = threading.Thread(target=lambda: in_flight.append(site.order()), daemon=True)
    t.start()
    wait_for(
        lambda: (
            market.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE application_name = 'web:market' AND wait_event_type = 'Lock'",
                dbname="fault_market",
            )[0][0]
            == 1
        ),
        what="the order to wait on the row lock",
    )
    with Load(site.blog, clients=3) as blog:
        market.hang()
        try:
            # More market requests than the pool has connections, all at once.
            answers = in_parallel([site.product for _ in range(12)] + [site.order for _ in range(4)])
            _market_statuses_are_clean(answers)
            assert all(status == 503 for status, _, _ in answers)
            t.join(30)
            assert in_flight, "the in-flight order never got an answer"
            assert_unavailable(*in_flight[0][:2], "market")
            # Cut by the client-side deadline (statement_timeout + grace): the frozen server never answered.
            assert "did not answer a statement within its timeout plus grace" in site.server.output()
            _blog_keeps_answering(blog)
        finally:
            market.resume()
            holder.close()
        site.wait_healthy("market to answer after its server resumed")
    assert set(blog.statuses()) == {200}, blog.statuses()


def test_restarted_market_fails_no_request_afterwards(market_apart):
    site = market_apart
    site.wait_healthy()
    # Fill the pool with connections that the restart will kill.
    in_parallel([site.product for _ in range(16)])
    site.clusters["market"].restart()
    answers = in_parallel([site.product for _ in range(24)] + [site.order for _ in range(8)], workers=8)
    assert [a[0] for a in answers].count(200) + [a[0] for a in answers].count(201) == len(answers), [
        a[:2] for a in answers if a[0] not in (200, 201)
    ]


def test_restart_under_load_answers_200_or_503_only(market_apart):
    site = market_apart
    site.wait_healthy()
    with Load(site.product, clients=3) as market, Load(site.blog) as blog:
        wait_for(lambda: market.count() > 10, what="market traffic")
        site.clusters["market"].restart()
        site.wait_healthy("market to answer after the restart")
        _blog_keeps_answering(blog)
    assert set(market.statuses()) <= {200, 503}, market.statuses()
    _market_statuses_are_clean([(s, b, {}) for s, b in market.results])
    assert set(blog.statuses()) == {200}, blog.statuses()


def test_crashed_market_answers_503_then_recovers(market_apart):
    site = market_apart
    site.wait_healthy()
    in_parallel([site.product for _ in range(8)])
    with Load(site.blog) as blog:
        site.clusters["market"].crash()
        try:
            answers = in_parallel([site.product for _ in range(10)] + [site.order for _ in range(2)])
            assert all(status == 503 for status, _, _ in answers), [a[:2] for a in answers]
            _market_statuses_are_clean(answers)
            _blog_keeps_answering(blog)
        finally:
            site.clusters["market"].start()
        site.wait_healthy("market to answer after crash recovery")
    assert set(blog.statuses()) == {200}, blog.statuses()


def test_slow_statement_is_cancelled_with_503_not_500(market_apart):
    site = market_apart
    site.wait_healthy()
    holder = site.clusters["market"].connect("fault_market", autocommit=False)
    try:
        holder.execute("SELECT 1 FROM market_product WHERE sku = %s FOR UPDATE", [SKU])
        status, body, _ = site.order()
        assert_unavailable(status, body, "market")
        assert body["error"]["reason"] == "statement_timeout", body
        # Reads that need no lock are not affected.
        assert site.product("FAULT-2")[0] == 200
    finally:
        holder.close()
    assert site.order()[0] == 201


@pytest.mark.parametrize("market_pool", [None, "2"], ids=["shipped-pool", "pool-of-2"])
def test_more_slow_requests_than_connections_get_503_never_a_hang(market_apart, market_pool):
    """16 writers on one locked row: with the shipped pool the bulkhead refuses the surplus
    ("busy"), with a pool of 2 the pool queue times out ("pool_timeout"); either way every
    request ends in a 503 naming market, and the blog is untouched."""
    site = market_apart
    site.wait_healthy()
    server = site.server
    if market_pool:
        server = Gunicorn({**site.env, "MARKET_DATABASE_POOL_MAX_SIZE": market_pool}, workers=1, threads=8).start()

    def order():
        return http(
            "POST",
            server.url("/api/market/orders"),
            {"items": [{"sku": SKU, "quantity": 1}]},
            headers={"Authorization": f"Token {site.token}"},
            timeout=HTTP_TIMEOUT_S,
        )

    def blog_get():
        return http("GET", server.url("/api/blog/posts"), timeout=HTTP_TIMEOUT_S)

    holder = site.clusters["market"].connect("fault_market", autocommit=False)
    try:
        holder.execute("SELECT 1 FROM market_product WHERE sku = %s FOR UPDATE", [SKU])
        with Load(blog_get) as blog:
            answers = in_parallel([order for _ in range(16)], workers=16)
            _blog_keeps_answering(blog)
        _market_statuses_are_clean(answers)
        assert not any(status == 201 for status, _, _ in answers), "an order got through a held row lock"
        reasons = Counter(body["error"].get("reason") for _, body, _ in answers)
        assert reasons["statement_timeout"] >= 1, reasons
        assert reasons["pool_timeout" if market_pool else "busy"] >= 1, reasons
        assert set(blog.statuses()) == {200}, blog.statuses()
    finally:
        holder.close()
        if market_pool:
            server.stop()
    site.wait_healthy()
    assert site.order()[0] == 201


IDLE_SESSION = """
import sys
from django.db import transaction
from market.models import Product
with transaction.atomic(using="market"):
    list(Product.objects.select_for_update().filter(sku=SKU))
    print("locked", flush=True)
    sys.stdin.readline()
    try:
        Product.objects.filter(sku=SKU).count()
        print("alive", flush=True)
    except Exception as exc:
        print("killed", type(exc).__name__, flush=True)
        raise SystemExit(0)
"""


def test_session_left_idle_in_transaction_is_killed_and_the_app_goes_on(market_apart):
    site = market_apart
    site.wait_healthy()
    market = site.clusters["market"]
    sku = SKUS[2]
    code = IDLE_SESSION.replace("SKU", repr(sku))
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT,
        env=site.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "locked"

        def idle_sessions():
            return market.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'cli:market' "
                "AND state = 'idle in transaction'",
                dbname="fault_market",
            )[0][0]

        # The server ends the idle transaction on its own (MARKET_..._IDLE_IN_TRANSACTION_TIMEOUT_MS=1000)...
        wait_for(lambda: idle_sessions() == 0, timeout=30, what="the idle transaction to be terminated")
        # ...so its row lock no longer blocks the app.
        assert site.order(sku)[0] == 201
        assert site.product(sku)[0] == 200
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().split()[0] == "killed"
    finally:
        proc.kill()
        proc.wait()
    assert "idle-in-transaction timeout" in market.log.read_text()


def test_no_connection_is_left_behind_after_the_faults(market_apart):
    """After all the faults above, the app holds no more market connections than its pool allows."""
    site = market_apart
    site.wait_healthy()
    rows = site.clusters["market"].execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'web:market'", dbname="fault_market"
    )
    assert rows[0][0] <= 8  # POOL_MAX_SIZE x 1 worker
    with psycopg.connect(site.env["MARKET_DATABASE_URL"]) as conn:
        assert (
            conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                "AND application_name LIKE 'web:%'"
            ).fetchone()[0]
            == 0
        )
