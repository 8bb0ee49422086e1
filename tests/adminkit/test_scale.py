"""Changelists at production sizes: exact counts while small, the planner's estimate above
(`about N`, exact on request), deep pages refused, searches an index serves, and every
ModelAdmin of the project holding to the rules that keep a page fast."""

import pytest
from django.contrib import admin
from django.contrib.admin.filters import AllValuesFieldListFilter, DateFieldListFilter
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from config.adminkit.scale import EstimatedCountPaginator, ScaleAdminMixin
from market.models import Order, Product

pytestmark = pytest.mark.django_db(databases=["default", "market", "blog"])


@pytest.fixture
def client():
    user = get_user_model().objects.create_superuser("scale-root", "s@example.com", "x")
    c = Client()
    c.force_login(user)
    return c


@pytest.fixture
def small_threshold(monkeypatch):
    monkeypatch.setattr(EstimatedCountPaginator, "exact_below", 100)
    monkeypatch.setattr(EstimatedCountPaginator, "max_pages", 4)
    monkeypatch.setattr(EstimatedCountPaginator, "trust_estimate_factor", 10)


def _products(n: int, start: int = 0) -> None:
    with connections["market"].cursor() as cur:
        cur.execute(
            "INSERT INTO market_product (sku, name, price_cents, stock, created, updated)"
            " SELECT 'SC-' || lpad(g::text, 7, '0'), 'Scale product ' || g, g, g %% 3, now(), now()"
            " FROM generate_series(%s::int, %s::int) g",
            [start + 1, start + n],
        )
        cur.execute("ANALYZE market_product")


def _paginator_text(response) -> str:
    html = response.content.decode()
    start = html.index('<p class="paginator">')
    return " ".join(html[start : html.index("</p>", start)].split())


def test_small_lists_are_counted_exactly(client, small_threshold):
    _products(60)
    r = client.get("/admin/market/product/")
    assert r.status_code == 200
    text = _paginator_text(r)
    assert "60 products" in text and "about" not in text


def test_big_lists_show_the_planners_estimate_and_count_exactly_on_request(client, small_threshold):
    _products(1500)
    with CaptureQueriesContext(connections["market"]) as queries:
        r = client.get("/admin/market/product/")
    text = _paginator_text(r)
    assert "about" in text and "count exactly" in text
    estimate = int(text.split("about ")[1].split(" ")[0].replace(",", ""))
    assert 1000 <= estimate <= 2000  # ANALYZE's estimate, not a count
    sql = [q["sql"] for q in queries.captured_queries]
    assert any(s.startswith("EXPLAIN") for s in sql)
    assert not any("COUNT(" in s.upper() for s in sql)  # 1500 > 10 x 100: the estimate alone decides

    EstimatedCountPaginator.trust_estimate_factor = 100  # (restored by small_threshold's monkeypatch)
    with CaptureQueriesContext(connections["market"]) as queries:
        text = _paginator_text(client.get("/admin/market/product/"))
    assert "about" in text
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT 101" in s for s in counts)  # bounded, never a full count

    r = client.get("/admin/market/product/?exact_count=1")
    text = _paginator_text(r)
    assert "1500 products" in text and "about" not in text

    # Filtered down below the threshold: exact again.
    r = client.get("/admin/market/product/?q=Scale+product+149")
    text = _paginator_text(r)
    assert "about" not in text and "12 products" in text  # 149, 1149, 1490-1499


def test_deep_pages_beyond_the_cap_are_refused(client, small_threshold):
    _products(1500)
    assert client.get("/admin/market/product/?p=4").status_code == 200
    r = client.get("/admin/market/product/?p=5")
    assert r.status_code == 302 and "e=1" in r["Location"]  # Django's "invalid page" answer


def test_an_id_search_is_an_exact_match_an_index_serves(client):
    order = Order.objects.create(buyer_id=424242, total_cents=5)
    Order.objects.create(buyer_id=1, total_cents=5)
    with CaptureQueriesContext(connections["market"]) as queries:
        r = client.get(f"/admin/market/order/?q={order.pk}")
    assert r.status_code == 200 and f"/admin/market/order/{order.pk}/change/" in r.content.decode()
    page = [q["sql"] for q in queries.captured_queries if "market_order" in q["sql"] and "LIMIT" in q["sql"]]
    assert page and all("::text" not in s for s in page)  # not UPPER(id::text): the primary key index
    assert client.get("/admin/market/order/?q=not-a-number").status_code == 200


def test_every_admin_follows_the_rules_that_keep_it_fast():
    big = {"market.product", "market.order", "market.account", "market.transfer", "blog.post", "audit.auditevent"}
    for model, model_admin in admin.site._registry.items():
        label = model._meta.label_lower
        if label not in big:
            continue
        assert isinstance(model_admin, ScaleAdminMixin), label
        assert not model_admin.date_hierarchy, label  # a DISTINCT over the table for its links
        for spec in model_admin.list_filter:
            field, cls = spec if isinstance(spec, tuple) else (spec, None)
            assert cls is not AllValuesFieldListFilter, (label, field)  # SELECT DISTINCT
            if isinstance(field, type):  # a SimpleListFilter: its lookups are fixed in code
                continue
            if cls is None and isinstance(field, str):
                f = model._meta.get_field(field)
                assert f.choices or f.many_to_many, (label, field)  # fixed choices (or a small related table)
            if cls is DateFieldListFilter:
                assert (
                    field in {i for idx in model._meta.indexes for i in idx.fields}
                    or model._meta.get_field(field).db_index
                ), (label, field)
        assert model_admin.sortable_by is not None, label  # not every column: only indexed orders
        ordering = model_admin.ordering or model._meta.ordering
        assert ordering and ordering[0].lstrip("-") in {"id", "sku", "occurred_at"}, (label, ordering)


def test_people_are_named_with_one_query_per_page(client):
    users = [get_user_model().objects.create_user(f"buyer{i}") for i in range(5)]
    for u in users:
        Order.objects.create(buyer_id=u.pk, total_cents=100)
    Order.objects.create(buyer_id=99_999_999, total_cents=100)  # a deleted user
    with CaptureQueriesContext(connections["default"]) as queries:
        r = client.get("/admin/market/order/")
    html = r.content.decode()
    for u in users:
        assert f">{u.username}</a>" in html
    assert "(deleted user #99999999)" in html
    user_queries = [q for q in queries.captured_queries if "auth_user" in q["sql"] and "IN (" in q["sql"]]
    assert len(user_queries) == 1  # the page's names in one query, not one per row
    # Searching by username finds the rows in the market database.
    r = client.get("/admin/market/order/?q=buyer3")
    assert ">buyer3</a>" in r.content.decode() and ">buyer2</a>" not in r.content.decode()


def test_product_search_uses_the_trigram_index():
    _products(200)
    with connections["market"].cursor() as cur:
        cur.execute("SET enable_seqscan = off")
        cur.execute(
            "EXPLAIN SELECT id FROM market_product WHERE UPPER(name::text) LIKE UPPER(%s)",
            ["%product 12%"],
        )
        plan = "\n".join(r[0] for r in cur.fetchall())
        cur.execute("RESET enable_seqscan")
    assert "market_product_name_trgm" in plan


def test_a_sku_is_searched_by_its_start_through_the_prefix_index(client):
    _products(200)
    page = client.get("/admin/market/product/?q=sc-000012").content.decode()
    assert "SC-0000120" in page and "SC-0000129" in page and "SC-0000130" not in page
    # A sku's middle is not searched (a name's is): no index serves a substring of codes that
    # all share their trigrams.
    assert "SC-0000012<" not in client.get("/admin/market/product/?q=0000012").content.decode()
    with connections["market"].cursor() as cur:
        cur.execute("SET enable_seqscan = off")
        cur.execute("EXPLAIN SELECT id FROM market_product WHERE UPPER(sku::text) LIKE UPPER(%s)", ["sc-00001%"])
        plan = "\n".join(r[0] for r in cur.fetchall())
        cur.execute("RESET enable_seqscan")
    assert "market_product_sku_upper_prefix" in plan


def test_a_crafted_sort_by_an_unindexed_column_is_ignored(client):
    Product.objects.create(sku="B-1", name="a", price_cents=1, stock=1)
    Product.objects.create(sku="A-1", name="b", price_cents=1, stock=1)
    with CaptureQueriesContext(connections["market"]) as queries:
        r = client.get("/admin/market/product/?o=2")  # list_display[2] is the name: not in sortable_by
    assert r.status_code == 200
    page = [q["sql"] for q in queries.captured_queries if "ORDER BY" in q["sql"] and "market_product" in q["sql"]]
    assert page and all('ORDER BY "market_product"."sku"' in sql and '"name" ASC' not in sql for sql in page)
    assert r.content.decode().index("A-1") < r.content.decode().index("B-1")
