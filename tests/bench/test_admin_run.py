"""bench/admin (make bench-admin): the page list read from the admin site, on the test databases
filled by the bench's own SQL, and the judgment of the issue's targets."""

from __future__ import annotations

import datetime as dt
from urllib.parse import parse_qs, urlparse

import pytest
from django.contrib import admin

from bench.admin import fill
from bench.admin.pages import SUPERUSER, build_pages, search_terms, spread, superuser_request
from bench.admin.run import judge, merge, summary_of
from tests.support.servers import test_database_urls

TINY = {
    "users": 60,
    "groups": 3,
    "axes_logins": 20,
    "axes_failures": 10,
    "axes_attempts": 5,
    "tags": 12,
    "products": 30,
    "orders": 30,
    "accounts": 30,
    "transfers": 30,
    "posts": 30,
    "audit_events": 60,
}


@pytest.fixture
def filled(django_db_blocker):
    """The test databases filled by bench/admin/fill.py (its own connections, committed), a
    superuser, and one row per page in every changelist (so each has a deep page)."""
    urls = test_database_urls()
    end = dt.datetime.now(dt.UTC)
    for prefix, fn in (("SHARED", fill.fill_shared), ("MARKET", fill.fill_market), ("BLOG", fill.fill_blog)):
        filler = fill.Filler(urls[prefix], end, lambda msg: None, prefix)
        try:
            fn(filler, TINY)
        finally:
            filler.close()
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_superuser(SUPERUSER, "bench@example.com", "not-used-here-0123")
    return user


@pytest.fixture
def one_per_page(monkeypatch):
    for model_admin in admin.site._registry.values():
        monkeypatch.setattr(model_admin, "list_per_page", 1)


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_every_model_admin_yields_its_pages_and_each_answers(filled, one_per_page, client):
    pages = build_pages(admin.site, superuser_request())
    keys = [p["key"] for p in pages]
    assert len(keys) == len(set(keys))
    request = superuser_request()
    by_model: dict[str, list[dict]] = {}
    for p in pages:
        by_model.setdefault(p["model"], []).append(p)
    assert {"index", "app index"} <= {p["kind"] for p in by_model["admin"]}

    for model, model_admin in admin.site._registry.items():
        label = model._meta.label_lower
        mine = by_model.get(label, [])
        kinds = {p["kind"] for p in mine}
        changelist = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        assert [p["url"] for p in mine if p["kind"] == "changelist"] == [changelist], label
        # Every filter the changelist renders (a SimpleListFilter's lookups, a field's values, date ranges).
        cl = model_admin.get_changelist_instance(request)
        if model_admin.get_list_filter(request):
            assert cl.filter_specs, label
        titles = {str(spec.title) for spec in cl.filter_specs}
        assert {p["detail"].split(" = ")[0] for p in mine if p["kind"] == "filter"} == titles, label
        if model_admin.get_search_fields(request):
            assert "search" in kinds, label
        if model_admin.date_hierarchy:
            assert [p["detail"] for p in mine if p["kind"] == "date"] == ["year", "month"], label
        deep = [p for p in mine if p["kind"] == "deep page"]
        rows = model_admin.get_queryset(request).count()
        assert rows > 1 and deep and deep[0]["url"] == f"{changelist}?p={rows}", label
        assert "change" in kinds and "history" in kinds, label
        assert ("add" in kinds) == model_admin.has_add_permission(request), label

    # Each page answers, logged in: searches find their row, deep pages are pages the paginator allows.
    client.force_login(filled)
    for p in pages:
        response = client.get(p["url"])
        assert response.status_code == 200, (p["key"], p["url"], response.status_code)
        if p["kind"] == "search":
            assert response.context["cl"].result_count >= 1, p
        if p["kind"] == "deep page":
            query = parse_qs(urlparse(p["url"]).query)
            assert response.context["cl"].page_num == int(query["p"][0]), p


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_the_fill_gives_both_sets_the_same_first_rows_users_and_actors(filled):
    """Row i is a function of i: the 10k set's rows are the full set's first rows, so pages match."""
    from django.db import connections

    with connections["market"].cursor() as cur:
        cur.execute("SELECT id, sku, name, price_cents FROM market_product WHERE id = 1")
        product = cur.fetchone()
        cur.execute(
            "SELECT count(*) FROM market_order o WHERE total_cents <> "
            "(SELECT sum(quantity * unit_price_cents) FROM market_orderline l WHERE l.order_id = o.id)"
        )
        assert cur.fetchone()[0] == 0  # totals are the sums of the lines
        cur.execute("SELECT count(*) FROM market_transfer WHERE from_account_id = to_account_id")
        assert cur.fetchone()[0] == 0
    assert product[1] == "SKU-00000001" and len(product[2].split()) == 3
    with connections["default"].cursor() as cur:
        cur.execute("SELECT count(DISTINCT actor) FROM audit_auditevent WHERE actor <> ''")
        # 60 events, 3 in 10 without an actor: 42 named ones cover 42 of the 60 users in turn.
        assert cur.fetchone()[0] == 42
        cur.execute("SELECT count(*) FROM audit_auditevent a JOIN auth_user u ON u.username = a.actor")
        assert cur.fetchone()[0] == 42


def test_spread_keeps_the_first_and_last_choice():
    assert spread([1, 2, 3], 6) == [1, 2, 3]
    assert spread(list(range(101)), 6) == [0, 20, 40, 60, 80, 100]
    assert spread(list(range(10)), 1) == [0]


def test_search_terms_take_a_code_whole_and_a_word_of_a_name():
    class Row:
        sku = "SKU-00000042"
        name = "Large linen backpack"
        buyer = None

    assert search_terms(Row(), ["sku", "name"]) == [("sku", "SKU-00000042"), ("name", "backpack")]
    assert search_terms(Row(), ["name", "sku"]) == [("name", "backpack")]
    assert search_terms(Row(), ["=buyer__id", "sku"]) == [("sku", "SKU-00000042")]


def small_big(small_ms, big_ms, small_status=200, big_status=200):
    small = None if small_ms is None else {"status": small_status, "ms": small_ms}
    big = None if big_ms is None else {"status": big_status, "ms": big_ms}
    return small, big


@pytest.mark.parametrize(
    ("small_ms", "big_ms", "ok", "growth"),
    [
        (20.0, 40.0, True, 2.0),  # exactly twice: allowed ("at most 2x")
        (20.0, 40.2, False, 2.01),
        (200.0, 299.9, True, 1.5),
        (200.0, 300.0, False, 1.5),  # "under 300 ms"
        (150.0, 1200.0, False, 8.0),
    ],
)
def test_targets_under_300_ms_at_full_size_and_at_most_twice_the_10k_time(small_ms, big_ms, ok, growth):
    verdict = judge(*small_big(small_ms, big_ms))
    assert verdict["ok"] is ok and verdict["growth"] == growth
    assert len(verdict["misses"]) == (0 if ok else 1 + (big_ms >= 300 and big_ms / small_ms > 2))


def test_a_growth_the_fastest_loads_do_not_show_is_still_a_miss_marked_as_possible_noise():
    small = {"status": 200, "ms": 94.5, "min_ms": 60.0}
    verdict = judge(small, {"status": 200, "ms": 208.2, "min_ms": 66.0})
    assert not verdict["ok"] and verdict["misses"][0].endswith("the fastest loads say x1.1: noise?")
    verdict = judge(small, {"status": 200, "ms": 208.2, "min_ms": 150.0})
    assert "noise" not in verdict["misses"][0]


def test_a_page_that_fails_or_cannot_be_compared_misses():
    assert judge(*small_big(20.0, 25.0, big_status=500))["misses"] == ["answered 500 at full size"]
    assert judge(*small_big(20.0, 25.0, small_status=302))["misses"] == ["answered 302 at 10k rows"]
    assert judge(*small_big(20.0, 25.0, big_status=0))["misses"] == ["got no answer at full size"]
    assert not judge(*small_big(None, 25.0))["ok"]
    assert not judge(*small_big(20.0, None))["ok"]


def test_summary_is_the_median_server_time_and_the_first_failure():
    loads = [{"status": 200, "server_ms": ms, "wall_ms": ms + 5} for ms in (30.0, 10.0, 20.0, 50.0, 40.0)]
    assert summary_of(loads) == {"status": 200, "ms": 30.0, "min_ms": 10.0, "timing": "server"}
    loads[3].update(status=503, server_ms=None)
    assert summary_of(loads) == {"status": 503, "ms": 35.0, "min_ms": 15.0, "timing": "client"}


def test_pages_of_both_sets_are_matched_by_key():
    small = [{"key": "a | changelist", "model": "a", "kind": "changelist", "url": "/a/"}]
    big = [
        {"key": "a | changelist", "model": "a", "kind": "changelist", "url": "/a/"},
        {"key": "a | deep page", "model": "a", "kind": "deep page", "url": "/a/?p=9", "note": "p=9"},
    ]
    rows = merge({"small": small, "big": big})
    assert [r["key"] for r in rows] == ["a | changelist", "a | deep page"]
    assert rows[0]["urls"] == {"big": "/a/", "small": "/a/"} and rows[1]["urls"] == {"big": "/a/?p=9"}


@pytest.mark.django_db(databases="__all__")
def test_a_set_is_reused_only_when_each_of_its_databases_carries_the_same_mark():
    import json

    import psycopg
    from psycopg import sql

    from bench.admin import run

    urls = test_database_urls()
    mark = run.fingerprint(fill.sizes("small"))

    def comment(url: str, text: str | None) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            name = sql.Identifier(run.dbname(url))
            conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(name, sql.Literal(text)))

    try:
        assert run.reusable(urls, mark) is None
        for url in urls.values():
            comment(url, run.COMMENT_PREFIX + json.dumps({"mark": mark, "filled": {"fill_s": 12.5}}))
        assert run.reusable(urls, mark) == {"fill_s": 12.5}
        assert run.reusable(urls, run.fingerprint(fill.sizes("big"))) is None  # other sizes: refilled
        comment(urls["BLOG"], None)  # one database never finished: the whole set is refilled
        assert run.reusable(urls, mark) is None
    finally:
        for url in urls.values():
            comment(url, None)
