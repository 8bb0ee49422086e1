"""The admin manages products, orders and accounts in the market database;
orders and transfers are made by the services, so the admin cannot forge them."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connections, router
from django.test import Client

from market.models import Account, Order, OrderLine, Product, Transfer

pytestmark = pytest.mark.django_db(databases=["default", "market"])


@pytest.fixture
def admin_client():
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-not-used-here")
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def order():
    p = Product.objects.create(sku="P1", name="One", price_cents=100, stock=5)
    o = Order.objects.create(buyer_id=1, total_cents=200)
    OrderLine.objects.create(order=o, product=p, quantity=2, unit_price_cents=100)
    return o


def market_rows(table: str) -> int:
    with connections[router.db_for_write(Product)].cursor() as cur:
        cur.execute(f"SELECT count(*) FROM {table}")  # noqa: S608 - a literal table name
        return cur.fetchone()[0]


def test_every_market_page_renders(admin_client, order):
    a, b = Account.objects.create(balance_cents=10), Account.objects.create(balance_cents=0)
    t = Transfer.objects.create(
        from_account=a, to_account=b, amount_cents=1, requester_id=1, idempotency_key="k", request_hash="h"
    )
    for url in [
        "/admin/market/",
        "/admin/market/product/",
        "/admin/market/product/add/",
        f"/admin/market/product/{Product.objects.get().pk}/change/",
        "/admin/market/product/?q=P1",
        "/admin/market/product/?in_stock=yes",
        "/admin/market/product/?in_stock=no",
        "/admin/market/order/",
        f"/admin/market/order/{order.pk}/change/",
        "/admin/market/account/",
        "/admin/market/account/add/",
        f"/admin/market/account/{a.pk}/change/",
        "/admin/market/transfer/",
        f"/admin/market/transfer/{t.pk}/change/",
    ]:
        assert admin_client.get(url).status_code == 200, url


def test_a_product_added_in_the_admin_lands_in_the_market_database(admin_client):
    r = admin_client.post("/admin/market/product/add/", {"sku": "NEW-1", "name": "New", "price_cents": 5, "stock": 3})
    assert r.status_code == 302
    assert market_rows("market_product") == 1
    assert Product.objects.get().sku == "NEW-1"


def test_the_stock_filter_splits_in_and_out_of_stock(admin_client):
    Product.objects.create(sku="IN", name="in", price_cents=1, stock=1)
    Product.objects.create(sku="OUT", name="out", price_cents=1, stock=0)
    in_stock = admin_client.get("/admin/market/product/?in_stock=yes").context["cl"].queryset
    out_of_stock = admin_client.get("/admin/market/product/?in_stock=no").context["cl"].queryset
    assert [p.sku for p in in_stock] == ["IN"] and [p.sku for p in out_of_stock] == ["OUT"]


def test_a_stale_stock_is_never_written_back(admin_client):
    p = Product.objects.create(sku="P", name="p", price_cents=1, stock=5)
    page = admin_client.get(f"/admin/market/product/{p.pk}/change/")
    assert page.context["adminform"].form["stock_seen"].value() == 5
    Product.objects.filter(pk=p.pk).update(stock=2)  # orders sold 3 while the page was open
    url = f"/admin/market/product/{p.pk}/change/"
    # An edited stock that went stale is refused...
    r = admin_client.post(url, {"sku": "P", "name": "p", "price_cents": 1, "stock": 10, "stock_seen": 5})
    assert r.status_code == 200 and "stock changed to 2" in r.content.decode()
    assert Product.objects.get(pk=p.pk).stock == 2
    # ...and accepted once the user saw the new number.
    r = admin_client.post(url, {"sku": "P", "name": "p", "price_cents": 1, "stock": 10, "stock_seen": 2})
    assert r.status_code == 302 and Product.objects.get(pk=p.pk).stock == 10
    # An untouched stock keeps what orders left.
    Product.objects.filter(pk=p.pk).update(stock=7)
    r = admin_client.post(url, {"sku": "P", "name": "renamed", "price_cents": 1, "stock": 10, "stock_seen": 10})
    assert r.status_code == 302
    assert Product.objects.filter(pk=p.pk).values_list("name", "stock").get() == ("renamed", 7)


def test_orders_cannot_be_added_or_deleted_but_their_status_can_change(admin_client, order):
    assert admin_client.get("/admin/market/order/add/").status_code == 403
    assert admin_client.post(f"/admin/market/order/{order.pk}/delete/", {"post": "yes"}).status_code == 403
    r = admin_client.post(
        f"/admin/market/order/{order.pk}/change/",
        {
            "status": "cancelled",
            "total_cents": 0,
            "buyer_id": 99,
            "lines-TOTAL_FORMS": 1,
            "lines-INITIAL_FORMS": 1,
            "lines-MIN_NUM_FORMS": 0,
            "lines-MAX_NUM_FORMS": 1000,
            "lines-0-id": order.lines.get().pk,
            "lines-0-order": order.pk,
        },
    )
    assert r.status_code == 302
    order.refresh_from_db()
    assert (order.status, order.total_cents, order.buyer_id) == ("cancelled", 200, 1)


def test_balances_are_opening_balances_only(admin_client):
    # Entered as currency: 7.00 is 700 cents.
    r = admin_client.post("/admin/market/account/add/", {"balance_cents": "7.00", "owner_id": ""})
    assert r.status_code == 302
    a = Account.objects.get()
    assert a.balance_cents == 700 and market_rows("market_account") == 1
    r = admin_client.post(f"/admin/market/account/{a.pk}/change/", {"balance_cents": 10**6, "owner_id": 5})
    assert r.status_code == 302
    a.refresh_from_db()
    assert (a.balance_cents, a.owner_id) == (700, 5)
    r = admin_client.post("/admin/market/account/add/", {"balance_cents": -1, "owner_id": ""})
    assert r.status_code == 200 and Account.objects.count() == 1
    assert admin_client.post(f"/admin/market/account/{a.pk}/delete/", {"post": "yes"}).status_code == 403


def test_transfers_are_read_only(admin_client):
    a, b = Account.objects.create(balance_cents=10), Account.objects.create(balance_cents=0)
    t = Transfer.objects.create(
        from_account=a, to_account=b, amount_cents=1, requester_id=1, idempotency_key="k", request_hash="h"
    )
    assert admin_client.get("/admin/market/transfer/add/").status_code == 403
    r = admin_client.post(f"/admin/market/transfer/{t.pk}/change/", {"amount_cents": 5})
    assert r.status_code == 403
    assert admin_client.post(f"/admin/market/transfer/{t.pk}/delete/", {"post": "yes"}).status_code == 403
    t.refresh_from_db()
    assert t.amount_cents == 1
