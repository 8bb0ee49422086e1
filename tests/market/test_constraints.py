"""The database itself refuses broken stock and money, whatever the Python code does."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connections, router

from config.multidb.lifecycle import atomic_for
from market.models import Account, Product, Transfer

pytestmark = pytest.mark.django_db(databases=["market"])


def refused(model, constraint: str, fn) -> None:
    with pytest.raises(IntegrityError) as info:
        with atomic_for(model):
            fn()
    assert info.value.__cause__.diag.constraint_name == constraint


def test_stock_cannot_go_negative_even_by_a_direct_update():
    p = Product.objects.create(sku="S", name="s", price_cents=1, stock=2)
    refused(Product, "market_product_stock_nonnegative", lambda: Product.objects.filter(pk=p.pk).update(stock=-1))
    with connections[router.db_for_write(Product)].cursor() as cur:
        with pytest.raises(IntegrityError):
            with atomic_for(Product):
                cur.execute("UPDATE market_product SET stock = stock - 3 WHERE id = %s", [p.pk])
    assert Product.objects.get(pk=p.pk).stock == 2


def test_prices_cannot_be_negative():
    refused(
        Product,
        "market_product_price_nonnegative",
        lambda: Product.objects.create(sku="S", name="s", price_cents=-1, stock=0),
    )


def test_a_balance_cannot_go_negative_even_by_a_direct_update():
    a = Account.objects.create(balance_cents=5)
    refused(
        Account, "market_account_balance_nonnegative", lambda: Account.objects.filter(pk=a.pk).update(balance_cents=-1)
    )
    assert Account.objects.get(pk=a.pk).balance_cents == 5


def test_transfers_need_a_positive_amount_between_two_accounts():
    a, b = Account.objects.create(balance_cents=5), Account.objects.create(balance_cents=5)
    common = {"requester_id": 1, "request_hash": "x"}
    refused(
        Transfer,
        "market_transfer_amount_positive",
        lambda: Transfer.objects.create(from_account=a, to_account=b, amount_cents=0, idempotency_key="k1", **common),
    )
    refused(
        Transfer,
        "market_transfer_distinct_accounts",
        lambda: Transfer.objects.create(from_account=a, to_account=a, amount_cents=1, idempotency_key="k2", **common),
    )
    Transfer.objects.create(from_account=a, to_account=b, amount_cents=1, idempotency_key="k3", **common)
    refused(
        Transfer,
        "market_transfer_unique_idempotency_key",
        lambda: Transfer.objects.create(from_account=b, to_account=a, amount_cents=2, idempotency_key="k3", **common),
    )


def test_the_accounts_table_is_usable_by_the_reference_node_app():
    # express-seed inserts nothing itself but benchmarks seed rows with plain SQL and
    # transfer with `UPDATE market_account SET balance_cents = balance_cents +/- $1 WHERE id = $2`.
    with connections[router.db_for_write(Account)].cursor() as cur:
        cur.execute("INSERT INTO market_account (balance_cents) VALUES (100), (0) RETURNING id")
        a, b = (row[0] for row in cur.fetchall())
        cur.execute("UPDATE market_account SET balance_cents = balance_cents - %s WHERE id = %s", [40, a])
        cur.execute("UPDATE market_account SET balance_cents = balance_cents + %s WHERE id = %s", [40, b])
    assert dict(Account.objects.values_list("id", "balance_cents")) == {a: 60, b: 40}
    assert Account.objects.get(pk=a).created_at is not None
