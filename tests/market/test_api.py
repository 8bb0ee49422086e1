"""The market's HTTP interface as CONTRACT.md states it: shapes, and every error code."""

from __future__ import annotations

import pytest
from django.test import override_settings

from market.models import Account, Order, OrderLine, Product, Transfer
from tests.support.market import Api

pytestmark = pytest.mark.django_db(databases=["default", "market"])


def code(response) -> str:
    return response.json()["error"]["code"]


@pytest.fixture
def widget():
    return Product.objects.create(sku="WID-1", name="Widget", price_cents=250, stock=10)


@pytest.fixture
def gadget():
    return Product.objects.create(sku="GAD-1", name="Gadget", price_cents=1000, stock=2)


@pytest.fixture
def accounts(buyer):
    """Two accounts of the `api` fixture's user."""
    return (
        Account.objects.create(balance_cents=1000, owner_id=buyer.pk),
        Account.objects.create(balance_cents=0, owner_id=buyer.pk),
    )


# Products ------------------------------------------------------------------


def test_a_holder_of_add_product_creates_a_product_and_anyone_reads_it(operator_api):
    r = operator_api.post("/api/market/products", {"sku": "SKU-1", "name": "Thing", "price_cents": 199, "stock": 3})
    assert r.status_code == 201
    assert r.json() == {"data": {"sku": "SKU-1", "name": "Thing", "price_cents": 199, "stock": 3}}
    r = Api().get("/api/market/products/SKU-1")
    assert r.status_code == 200
    assert r.json() == {"data": {"sku": "SKU-1", "name": "Thing", "price_cents": 199, "stock": 3}}


def test_duplicate_sku_is_409_sku_exists(operator_api, widget):
    r = operator_api.post("/api/market/products", {"sku": "WID-1", "name": "Other", "price_cents": 1, "stock": 1})
    assert r.status_code == 409 and code(r) == "sku_exists"
    assert Product.objects.get(sku="WID-1").name == "Widget"


def test_unknown_product_is_404_product_not_found():
    r = Api().get("/api/market/products/NOPE")
    assert r.status_code == 404 and code(r) == "product_not_found"
    # A sku no product can have is malformed input, not an unknown product.
    for sku in ("bad%20sku", "x" * 300, "nul%00byte", "NOPE%0A"):
        r = Api().get(f"/api/market/products/{sku}")
        assert r.status_code == 400 and code(r) == "invalid_request" and r.json()["error"]["field"] == "sku", sku


def test_product_list_pages_by_cursor(widget, gadget):
    Product.objects.create(sku="ZED", name="Zed", price_cents=1, stock=0)
    r = Api().get("/api/market/products?limit=2")
    assert r.status_code == 200
    body = r.json()
    assert [p["sku"] for p in body["data"]] == ["GAD-1", "WID-1"] and body["next"] == "WID-1"
    body = Api().get(f"/api/market/products?limit=2&cursor={body['next']}").json()
    assert [p["sku"] for p in body["data"]] == ["ZED"] and body["next"] is None
    for bad in ("limit=0", "limit=abc", "limit=100000", "cursor=%00"):
        r = Api().get(f"/api/market/products?{bad}")
        assert r.status_code == 400 and code(r) == "invalid_request", bad


@pytest.mark.parametrize(
    "body",
    [
        {"sku": "A", "name": "n", "price_cents": -1, "stock": 0},
        {"sku": "A", "name": "n", "price_cents": "100", "stock": 0},
        {"sku": "A", "name": "n", "price_cents": 1.5, "stock": 0},
        {"sku": "A", "name": "n", "price_cents": True, "stock": 0},
        {"sku": "A", "name": "n", "price_cents": 10**30, "stock": 0},
        {"sku": "A", "name": "n", "price_cents": 1, "stock": -1},
        {"sku": "A", "name": "n", "price_cents": 1, "stock": 2**31},
        {"sku": "A", "name": "", "price_cents": 1, "stock": 0},
        {"sku": "has space", "name": "n", "price_cents": 1, "stock": 0},
        {"sku": "a/b", "name": "n", "price_cents": 1, "stock": 0},
        {"sku": "", "name": "n", "price_cents": 1, "stock": 0},
        {"sku": 12, "name": "n", "price_cents": 1, "stock": 0},
        {"sku": "A", "name": "n" * 201, "price_cents": 1, "stock": 0},
        {"name": "n", "price_cents": 1, "stock": 0},
        {"sku": "A", "name": "n", "price_cents": 1, "stock": 0, "color": "red"},
        [],
        "sku",
    ],
)
def test_bad_product_bodies_are_400_invalid_request(operator_api, body):
    r = operator_api.post("/api/market/products", body)
    assert r.status_code == 400 and code(r) == "invalid_request"
    assert not Product.objects.exists()


def test_product_creation_needs_add_product(api, staff_api, root_api):
    body = {"sku": "A", "name": "n", "price_cents": 1, "stock": 0}
    r = Api().post("/api/market/products", body)
    assert r.status_code == 401 and code(r) == "not_authenticated"
    r = Api("not-a-real-token").post("/api/market/products", body)
    assert r.status_code == 401 and code(r) == "not_authenticated"
    for other in (api, staff_api):  # staff status alone grants nothing
        r = other.post("/api/market/products", body)
        assert r.status_code == 403 and code(r) == "forbidden"
        assert "market.add_product" in r.json()["error"]["message"]
    assert not Product.objects.exists()
    assert root_api.post("/api/market/products", body).status_code == 201  # superusers hold every permission


# Orders --------------------------------------------------------------------


def test_order_takes_stock_and_answers_with_lines(api, buyer, widget, gadget):
    r = api.post("/api/market/orders", {"items": [{"sku": "WID-1", "quantity": 3}, {"sku": "GAD-1", "quantity": 2}]})
    assert r.status_code == 201
    order = r.json()["data"]
    assert set(order) >= {"id", "status", "total_cents", "lines", "created_at"}
    assert order["status"] == "placed"
    assert order["total_cents"] == 3 * 250 + 2 * 1000
    assert sorted(order["lines"], key=lambda line: line["sku"]) == [
        {"sku": "GAD-1", "quantity": 2, "unit_price_cents": 1000},
        {"sku": "WID-1", "quantity": 3, "unit_price_cents": 250},
    ]
    assert Product.objects.get(sku="WID-1").stock == 7
    assert Product.objects.get(sku="GAD-1").stock == 0
    assert Order.objects.get().buyer_id == buyer.pk
    r = api.get(f"/api/market/orders/{order['id']}")
    assert r.status_code == 200 and r.json()["data"]["lines"] == order["lines"]


def test_an_order_is_visible_to_its_buyer_and_holders_of_view_order(api, staff_api, operator_api, root_api, widget):
    order_id = api.post("/api/market/orders", {"items": [{"sku": "WID-1", "quantity": 1}]}).json()["data"]["id"]
    from config.users.tokens import api_token_create
    from tests.support.market import make_user

    other = Api(api_token_create(user=make_user("other")))
    for stranger in (other, staff_api):  # the same 404 as a missing order: ids cannot be probed
        r = stranger.get(f"/api/market/orders/{order_id}")
        assert r.status_code == 404 and code(r) == "order_not_found"
        assert r.json()["error"]["message"] == f"no order with id {order_id}"
    for allowed in (api, operator_api, root_api):
        r = allowed.get(f"/api/market/orders/{order_id}")
        assert r.status_code == 200 and r.json()["data"]["id"] == order_id
    assert api.get("/api/market/orders/999999").status_code == 404
    assert code(Api().get(f"/api/market/orders/{order_id}")) == "not_authenticated"


def test_the_same_sku_twice_is_one_line_with_the_quantities_added(api, widget):
    r = api.post("/api/market/orders", {"items": [{"sku": "WID-1", "quantity": 2}, {"sku": "WID-1", "quantity": 3}]})
    assert r.status_code == 201
    assert r.json()["data"]["lines"] == [{"sku": "WID-1", "quantity": 5, "unit_price_cents": 250}]
    assert Product.objects.get(sku="WID-1").stock == 5


def test_insufficient_stock_is_409_and_changes_nothing(api, widget, gadget):
    # The first line alone could be served; the order is refused as a whole.
    r = api.post("/api/market/orders", {"items": [{"sku": "WID-1", "quantity": 4}, {"sku": "GAD-1", "quantity": 3}]})
    assert r.status_code == 409 and code(r) == "insufficient_stock"
    assert Product.objects.get(sku="WID-1").stock == 10
    assert Product.objects.get(sku="GAD-1").stock == 2
    assert not Order.objects.exists() and not OrderLine.objects.exists()


def test_unknown_sku_in_an_order_is_404_and_changes_nothing(api, widget):
    r = api.post("/api/market/orders", {"items": [{"sku": "WID-1", "quantity": 1}, {"sku": "NOPE", "quantity": 1}]})
    assert r.status_code == 404 and code(r) == "product_not_found"
    assert Product.objects.get(sku="WID-1").stock == 10
    assert not Order.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"items": []},
        {"items": "WID-1"},
        {"items": {"sku": "WID-1", "quantity": 1}},
        {"items": [{"sku": "WID-1", "quantity": 0}]},
        {"items": [{"sku": "WID-1", "quantity": -1}]},
        {"items": [{"sku": "WID-1", "quantity": "1"}]},
        {"items": [{"sku": "WID-1", "quantity": 1.0}]},
        {"items": [{"sku": "WID-1", "quantity": True}]},
        {"items": [{"sku": "WID-1", "quantity": 10**20}]},
        {"items": [{"sku": "WID-1"}]},
        {"items": [{"quantity": 1}]},
        {"items": [{"sku": 5, "quantity": 1}]},
        {"items": [{"sku": "WID-1", "quantity": 1, "note": "x"}]},
        {"items": ["WID-1"]},
        {"items": [{"sku": "WID-1", "quantity": 1}], "coupon": "FREE"},
        {"items": [{"sku": f"S{i}", "quantity": 1} for i in range(101)]},
        {},
    ],
)
def test_bad_order_bodies_are_400_invalid_request(api, widget, body):
    r = api.post("/api/market/orders", body)
    assert r.status_code == 400 and code(r) == "invalid_request"
    assert Product.objects.get(sku="WID-1").stock == 10


def test_orders_need_a_token(widget):
    r = Api().post("/api/market/orders", {"items": [{"sku": "WID-1", "quantity": 1}]})
    assert r.status_code == 401 and code(r) == "not_authenticated"
    assert Product.objects.get(sku="WID-1").stock == 10


# Accounts ------------------------------------------------------------------


def test_a_holder_of_add_account_opens_an_account_for_a_user_who_then_reads_it(operator_api, buyer, api):
    r = operator_api.post("/api/market/accounts", {"owner": buyer.pk, "balance_cents": 5000})
    assert r.status_code == 201
    data = r.json()["data"]
    assert data == {"id": data["id"], "owner": buyer.pk, "balance_cents": 5000}
    assert Account.objects.get(pk=data["id"]).owner_id == buyer.pk
    for reader in (api, operator_api):  # the owner, a holder of market.view_account
        r = reader.get(f"/api/market/accounts/{data['id']}")
        assert r.status_code == 200 and r.json() == {"data": data}


def test_an_account_is_private_to_its_owner_and_holders_of_view_account(buyer, api, staff_api, root_api):
    from config.users.tokens import api_token_create
    from tests.support.market import make_user

    mine = Account.objects.create(balance_cents=10, owner_id=buyer.pk)
    house = Account.objects.create(balance_cents=20)  # no owner
    other = Api(api_token_create(user=make_user("other")))
    for stranger, account in ((other, mine), (staff_api, mine), (api, house)):
        r = stranger.get(f"/api/market/accounts/{account.pk}")
        assert r.status_code == 404 and code(r) == "account_not_found"
        assert r.json()["error"]["message"] == f"no account with id {account.pk}"  # as for a missing one
    r = root_api.get(f"/api/market/accounts/{house.pk}")
    assert r.json() == {"data": {"id": house.pk, "owner": None, "balance_cents": 20}}
    assert code(Api().get(f"/api/market/accounts/{mine.pk}")) == "not_authenticated"


def test_unknown_account_is_404_account_not_found(root_api):
    for account_id in ("123456", "0", "9" * 30):
        r = root_api.get(f"/api/market/accounts/{account_id}")
        assert r.status_code == 404 and code(r) == "account_not_found", account_id


@pytest.mark.parametrize(
    "body",
    [
        {"owner": "ME", "balance_cents": -1},
        {"owner": "ME", "balance_cents": "10"},
        {"owner": "ME", "balance_cents": 1.5},
        {"owner": "ME", "balance_cents": None},
        {"owner": "ME", "balance_cents": 2**63},
        {"owner": "ME"},
        {"balance_cents": 1},
        {"owner": None, "balance_cents": 1},
        {"owner": "1", "balance_cents": 1},
        {"owner": 0, "balance_cents": 1},
        {"owner": 987654321, "balance_cents": 1},
        {"owner": True, "balance_cents": 1},
        {},
        {"owner": "ME", "balance_cents": 1, "x": 1},
    ],
)
def test_bad_account_bodies_are_400_invalid_request(operator, operator_api, body):
    body = {k: operator.pk if v == "ME" else v for k, v in body.items()}
    r = operator_api.post("/api/market/accounts", body)
    assert r.status_code == 400 and code(r) == "invalid_request"
    assert not Account.objects.exists()


def test_account_creation_needs_add_account(api, buyer, staff_api, root_api):
    body = {"owner": buyer.pk, "balance_cents": 1}
    assert code(Api().post("/api/market/accounts", body)) == "not_authenticated"
    for other in (api, staff_api):
        r = other.post("/api/market/accounts", body)
        assert r.status_code == 403 and code(r) == "forbidden"
    assert not Account.objects.exists()
    assert root_api.post("/api/market/accounts", body).status_code == 201


# Transfers -----------------------------------------------------------------


def transfer(api: Api, body, key: str | None = "key-1"):
    return api.post("/api/market/transfers", body, headers={"Idempotency-Key": key} if key is not None else None)


def balances(*accounts) -> list[int]:
    return [Account.objects.get(pk=a.pk).balance_cents for a in accounts]


def test_transfer_moves_money_and_answers_the_transfer(api, accounts):
    a, b = accounts
    r = transfer(api, {"from_account": a.pk, "to_account": b.pk, "amount_cents": 300})
    assert r.status_code == 201
    data = r.json()["data"]
    assert data == {
        "id": data["id"],
        "from_account": a.pk,
        "to_account": b.pk,
        "amount_cents": 300,
        "created_at": data["created_at"],
    }
    assert "Idempotent-Replayed" not in r.headers
    assert balances(a, b) == [700, 300]


def test_the_same_key_and_body_returns_the_same_transfer_and_moves_no_money(api, accounts):
    a, b = accounts
    body = {"from_account": a.pk, "to_account": b.pk, "amount_cents": 300}
    first = transfer(api, body)
    again = transfer(api, body)
    assert again.status_code == 201 and again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert Transfer.objects.count() == 1
    assert balances(a, b) == [700, 300]


def test_the_same_key_with_another_body_is_409_idempotency_key_reused(api, accounts):
    a, b = accounts
    transfer(api, {"from_account": a.pk, "to_account": b.pk, "amount_cents": 300})
    for body in (
        {"from_account": a.pk, "to_account": b.pk, "amount_cents": 301},
        {"from_account": b.pk, "to_account": a.pk, "amount_cents": 300},
    ):
        r = transfer(api, body)
        assert r.status_code == 409 and code(r) == "idempotency_key_reused"
    assert Transfer.objects.count() == 1
    assert balances(a, b) == [700, 300]


def test_idempotency_keys_belong_to_their_user(api, operator_api, accounts):
    a, b = accounts
    transfer(api, {"from_account": a.pk, "to_account": b.pk, "amount_cents": 100})
    r = transfer(operator_api, {"from_account": a.pk, "to_account": b.pk, "amount_cents": 200})
    assert r.status_code == 201
    assert balances(a, b) == [700, 300]


def test_overdraft_is_409_insufficient_funds_and_moves_nothing(api, accounts):
    a, b = accounts
    r = transfer(api, {"from_account": b.pk, "to_account": a.pk, "amount_cents": 1})
    assert r.status_code == 409 and code(r) == "insufficient_funds"
    r = transfer(api, {"from_account": a.pk, "to_account": b.pk, "amount_cents": 1001}, key="key-2")
    assert r.status_code == 409 and code(r) == "insufficient_funds"
    assert balances(a, b) == [1000, 0] and not Transfer.objects.exists()
    # A refused request leaves its key free: the corrected retry goes through.
    r = transfer(api, {"from_account": a.pk, "to_account": b.pk, "amount_cents": 1000}, key="key-2")
    assert r.status_code == 201 and balances(a, b) == [0, 1000]


def test_unknown_account_in_a_transfer_is_404(api, accounts):
    a, _ = accounts
    for body in (
        {"from_account": a.pk, "to_account": 999999, "amount_cents": 1},
        {"from_account": 999999, "to_account": a.pk, "amount_cents": 1},
    ):
        r = transfer(api, body)
        assert r.status_code == 404 and code(r) == "account_not_found"
    assert balances(a) == [1000]


def test_money_leaves_an_account_only_for_its_owner_or_transfer_any_account(
    api, buyer, staff_api, operator_api, root_api, accounts
):
    from config.users.tokens import api_token_create
    from market.models import AuditOutbox
    from tests.support.market import make_user

    a, b = accounts
    house = Account.objects.create(balance_cents=50)  # no owner: only the permission moves it
    other = Api(api_token_create(user=make_user("other")))
    missing = transfer(api, {"from_account": 999999, "to_account": b.pk, "amount_cents": 1}, key="k-x").json()
    for n, (stranger, src) in enumerate([(other, a), (staff_api, a), (api, house)]):
        r = transfer(stranger, {"from_account": src.pk, "to_account": b.pk, "amount_cents": 1}, key=f"k-{n}")
        assert r.status_code == 404 and code(r) == "account_not_found"
        assert r.json()["error"]["message"] == missing["error"]["message"].replace("999999", str(src.pk))
    assert balances(a, b, house) == [1000, 0, 50] and not Transfer.objects.exists()
    denied = AuditOutbox.objects.using("market").filter(action="deny").order_by("id")
    assert [(d.object_pk, d.actor) for d in denied] == [
        (str(a.pk), "other"),
        (str(a.pk), "staff"),
        (str(house.pk), "buyer"),
    ]
    assert transfer(api, {"from_account": a.pk, "to_account": b.pk, "amount_cents": 1}).status_code == 201
    assert transfer(operator_api, {"from_account": a.pk, "to_account": house.pk, "amount_cents": 2}).status_code == 201
    assert transfer(root_api, {"from_account": house.pk, "to_account": b.pk, "amount_cents": 3}).status_code == 201
    assert balances(a, b, house) == [997, 4, 49]
    assert code(transfer(Api(), {"from_account": a.pk, "to_account": b.pk, "amount_cents": 1})) == "not_authenticated"


@pytest.mark.parametrize(
    "body",
    [
        {"from_account": "A", "to_account": "B", "amount_cents": [1]},
        {"from_account": "SAME", "to_account": "SAME", "amount_cents": 1},
        {"from_account": "A", "to_account": "B", "amount_cents": 0},
        {"from_account": "A", "to_account": "B", "amount_cents": -5},
        {"from_account": "A", "to_account": "B", "amount_cents": "5"},
        {"from_account": "A", "to_account": "B", "amount_cents": 5.0},
        {"from_account": "A", "to_account": "B", "amount_cents": False},
        {"from_account": "A", "to_account": "B", "amount_cents": None},
        {"from_account": "A", "to_account": "B", "amount_cents": 2**64},
        {"from_account": "1", "to_account": "B", "amount_cents": 5},
        {"from_account": "A", "to_account": -1, "amount_cents": 5},
        {"from_account": "A", "amount_cents": 5},
        {"from_account": "A", "to_account": "B", "amount_cents": 5, "memo": "hi"},
    ],
)
def test_bad_transfer_bodies_are_400_invalid_request(api, accounts, body):
    a, b = accounts
    ids = {"A": a.pk, "B": b.pk, "SAME": a.pk}
    body = {k: ids.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    r = transfer(api, body)
    assert r.status_code == 400 and code(r) == "invalid_request", r.json()
    assert balances(a, b) == [1000, 0] and not Transfer.objects.exists()


@pytest.mark.parametrize("key", [None, "", "has space", "k" * 256, "ключ"])
def test_a_missing_or_malformed_idempotency_key_is_400(api, accounts, key):
    a, b = accounts
    headers = {"Idempotency-Key": key} if key is not None else {}
    r = api.post(
        "/api/market/transfers", {"from_account": a.pk, "to_account": b.pk, "amount_cents": 1}, headers=headers
    )
    assert r.status_code == 400 and code(r) == "invalid_request"
    assert balances(a, b) == [1000, 0]


def test_transfers_need_a_token(accounts):
    a, b = accounts
    r = transfer(Api(), {"from_account": a.pk, "to_account": b.pk, "amount_cents": 1})
    assert r.status_code == 401 and code(r) == "not_authenticated"


# Bodies and methods ----------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/api/market/products", "/api/market/orders", "/api/market/accounts", "/api/market/transfers"]
)
@pytest.mark.parametrize(
    "raw", ["{", "not json", b"\xff\xfe", "", "null", "[1]", '"text"', "1e999999", "[" * 30000, '{"items": ' * 5000]
)
def test_malformed_json_is_400_invalid_request(root_api, path, raw):
    r = root_api.post(path, raw=raw, headers={"Idempotency-Key": "k"})
    assert r.status_code == 400 and code(r) == "invalid_request"


@pytest.mark.parametrize(
    "path", ["/api/market/products", "/api/market/orders", "/api/market/accounts", "/api/market/transfers"]
)
def test_oversized_bodies_are_413(root_api, path):
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=1024):
        r = root_api.post(path, {"items": "x" * 2000}, headers={"Idempotency-Key": "k"})
    assert r.status_code == 413 and code(r) == "payload_too_large"


@pytest.mark.parametrize(
    "method,path",
    [
        ("put", "/api/market/products"),
        ("delete", "/api/market/products/A"),
        ("get", "/api/market/transfers"),
        ("patch", "/api/market/accounts/1"),
        ("get", "/api/market/orders"),
    ],
)
def test_other_methods_are_405(root_api, method, path):
    r = getattr(root_api.client, method)(path)
    assert r.status_code == 405 and code(r) == "method_not_allowed"
