"""The market's invariants under real concurrency: threads, each with its own
pooled connections, against real PostgreSQL.

Each thread gives its connections back after every request, as the web server
does. The pools are widened to THREADS connections for these tests (the
`wide_pools` fixture): a cold pool of 4 with 4 waiters would refuse part of a
burst of 8 with 503, which is the pool doing its job, not the market's.
"""

from __future__ import annotations

import random

import pytest
from django.db.models import Sum

from market import services
from market.errors import InsufficientFunds
from market.models import Account, Order, OrderLine, Product, Transfer
from tests.support.market import THREADS, Api, released, run_threads

pytestmark = [
    pytest.mark.django_db(databases=["default", "market"], transaction=True),
    pytest.mark.usefixtures("wide_pools"),
]


def test_threads_ordering_one_product_sell_exactly_its_stock(buyer):
    stock, attempts_per_thread = 20, 4  # 32 attempts for 20 units
    Product.objects.create(sku="HOT", name="Hot item", price_cents=100, stock=stock)

    def worker(i):
        api = Api(buyer.token)
        return [
            released(lambda: api.post("/api/market/orders", {"items": [{"sku": "HOT", "quantity": 1}]}))
            for _ in range(attempts_per_thread)
        ]

    responses = [r for result in run_threads(worker) for r in _ok(result)]
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == stock
    assert statuses.count(409) == THREADS * attempts_per_thread - stock
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {"insufficient_stock"}
    assert Product.objects.get(sku="HOT").stock == 0
    assert Order.objects.count() == stock
    assert OrderLine.objects.aggregate(n=Sum("quantity"))["n"] == stock


def test_orders_naming_products_in_any_order_never_deadlock_or_oversell(buyer):
    initial = {"A": 40, "B": 40, "C": 40}
    for sku, stock in initial.items():
        Product.objects.create(sku=sku, name=sku, price_cents=10, stock=stock)

    def worker(i):
        rng = random.Random(i)
        api = Api(buyer.token)
        out = []
        for _ in range(6):
            skus = rng.sample(sorted(initial), k=rng.randint(1, 3))  # random order on purpose
            items = [{"sku": s, "quantity": rng.randint(1, 4)} for s in skus]
            out.append(released(lambda: api.post("/api/market/orders", {"items": items})))
        return out

    responses = [r for result in run_threads(worker) for r in _ok(result)]
    assert {r.status_code for r in responses} <= {201, 409}, [r.json() for r in responses if r.status_code >= 500]
    sold: dict[str, int] = {}
    for r in responses:
        if r.status_code == 201:
            for line in r.json()["data"]["lines"]:
                sold[line["sku"]] = sold.get(line["sku"], 0) + line["quantity"]
    for sku, stock in initial.items():
        left = Product.objects.get(sku=sku).stock
        assert left >= 0
        assert left == stock - sold.get(sku, 0)
        assert (OrderLine.objects.filter(product__sku=sku).aggregate(n=Sum("quantity"))["n"] or 0) == sold.get(sku, 0)


def test_random_transfers_keep_the_total_and_never_overdraw():
    opening = [500, 500, 500, 500, 0]
    accounts = [Account.objects.create(balance_cents=b) for b in opening]
    ids = [a.pk for a in accounts]
    users = [_user(i) for i in range(THREADS)]

    def worker(i):
        rng = random.Random(100 + i)
        outcomes = {"created": 0, "insufficient_funds": 0}
        for n in range(30):
            src, dst = rng.sample(ids, 2)
            try:
                released(
                    lambda: services.transfer_create(
                        user=users[i],
                        from_account_id=src,
                        to_account_id=dst,
                        amount_cents=rng.randint(1, 300),
                        idempotency_key=f"t{i}-{n}",
                    )
                )
                outcomes["created"] += 1
            except InsufficientFunds:
                outcomes["insufficient_funds"] += 1
        return outcomes

    results = [_ok(r) for r in run_threads(worker)]
    assert sum(r["created"] for r in results) == Transfer.objects.count() > 0
    balances = dict(Account.objects.values_list("id", "balance_cents"))
    assert sum(balances.values()) == sum(opening)
    assert min(balances.values()) >= 0
    # Every cent that moved is accounted for by a transfer row.
    for account, start in zip(ids, opening):
        got = Transfer.objects.filter(to_account_id=account).aggregate(s=Sum("amount_cents"))["s"] or 0
        gave = Transfer.objects.filter(from_account_id=account).aggregate(s=Sum("amount_cents"))["s"] or 0
        assert balances[account] == start + got - gave


def test_concurrent_copies_of_one_transfer_move_money_once(buyer):
    a = Account.objects.create(balance_cents=1000, owner_id=buyer.pk)
    b = Account.objects.create(balance_cents=0)
    body = {"from_account": a.pk, "to_account": b.pk, "amount_cents": 700}

    def worker(i):
        api = Api(buyer.token)
        return released(lambda: api.post("/api/market/transfers", body, headers={"Idempotency-Key": "pay-once"}))

    responses = [_ok(r) for r in run_threads(worker)]
    assert [r.status_code for r in responses] == [201] * THREADS
    assert len({r.json()["data"]["id"] for r in responses}) == 1
    assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1
    assert Transfer.objects.count() == 1
    assert [Account.objects.get(pk=x.pk).balance_cents for x in (a, b)] == [300, 700]


def test_concurrent_reuse_of_a_key_with_other_bodies_moves_money_once(buyer):
    # Different account pairs: the row locks do not serialize these, the unique key does.
    pairs = [
        (Account.objects.create(balance_cents=100, owner_id=buyer.pk), Account.objects.create(balance_cents=0))
        for _ in range(THREADS)
    ]

    def worker(i):
        api = Api(buyer.token)
        src, dst = pairs[i]
        body = {"from_account": src.pk, "to_account": dst.pk, "amount_cents": 60}
        return released(lambda: api.post("/api/market/transfers", body, headers={"Idempotency-Key": "shared"}))

    responses = [_ok(r) for r in run_threads(worker)]
    assert sorted(r.status_code for r in responses) == [201] + [409] * (THREADS - 1)
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {"idempotency_key_reused"}
    assert Transfer.objects.count() == 1
    assert sum(Account.objects.values_list("balance_cents", flat=True)) == 100 * THREADS
    moved = [
        (src.pk, dst.pk)
        for src, dst in pairs
        if Account.objects.get(pk=src.pk).balance_cents != 100 or Account.objects.get(pk=dst.pk).balance_cents
    ]
    assert len(moved) == 1


def _ok(result):
    """A worker's result; a worker that raised (a DatabaseError, a deadlock) fails the test."""
    if isinstance(result, BaseException):
        raise AssertionError(f"worker failed: {result!r}") from result
    return result


def _user(i):
    from tests.support.market import make_user

    # Moves money between accounts of others: the operators' permission.
    return make_user(f"payer{i}", perms=("market.transfer_any_account",))


def test_racing_creations_of_one_sku_make_one_product(operator):
    def worker(i):
        api = Api(operator.token)
        body = {"sku": "RACE", "name": f"racer {i}", "price_cents": 1, "stock": 1}
        return released(lambda: api.post("/api/market/products", body))

    responses = [_ok(r) for r in run_threads(worker)]
    assert sorted(r.status_code for r in responses) == [201] + [409] * (THREADS - 1)
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 409} == {"sku_exists"}
    assert Product.objects.filter(sku="RACE").count() == 1
