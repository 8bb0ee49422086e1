"""The market's JSON API: typed operations (market.schemas) calling services and selectors.

Every domain failure is an `ApiError` raised by a service or selector (market.errors);
config.httpkit.api answers it in the contract's shape.
"""

from django.http import HttpRequest
from ninja import Query, Router, Schema, Status

from config.httpkit.api import Header, answer, errors, requires, token
from config.httpkit.schemas import Data, Page, QueryInt, QueryKey
from market import selectors, services
from market.models import SKU_MAX_LENGTH, SKU_RE
from market.schemas import (
    Account,
    AccountIn,
    IdempotencyKey,
    Order,
    OrderIn,
    Product,
    ProductIn,
    Sku,
    Transfer,
    TransferIn,
)

router = Router(tags=["market"])

PRODUCT_PAGE_DEFAULT = 50
PRODUCT_PAGE_MAX = 200
WRITE = (400, 401, 413, 429)  # a token's write: bad body, no token, too big, over the write rate


class ProductPage(Schema):
    limit: QueryInt(1, PRODUCT_PAGE_MAX, description="Products per page.") = PRODUCT_PAGE_DEFAULT
    # The cursor is the last sku of the previous page.
    cursor: QueryKey(SKU_RE, SKU_MAX_LENGTH, "the next of a page this API returned") = None


@router.post(
    "/products",
    auth=token,
    summary="Create a product (market.add_product)",
    **errors(
        *WRITE,
        403,
        codes={409: ["sku_exists"]},
        ok={201: Data[Product]},
        links={"product_detail": {"sku": "$response.body#/data/sku"}},
    ),
)
@requires("market.add_product")
def product_create(request: HttpRequest, payload: ProductIn):
    product = services.product_create(**payload.model_dump())
    return Status(201, {"data": {f: getattr(product, f) for f in selectors.PRODUCT_FIELDS}})


@router.get("/products", summary="Products by sku, a page at a time", **errors(400, ok={200: Page[Product]}))
def product_list(request: HttpRequest, page: Query[ProductPage]):
    rows, cursor = selectors.product_list(limit=page.limit, after=page.cursor)
    return {"data": rows, "next": cursor}


@router.get(
    "/products/{sku}",
    summary="One product",
    **errors(400, codes={404: ["product_not_found"]}, ok={200: Data[Product]}),
)
def product_detail(request: HttpRequest, sku: Sku):
    # A sku no product can have is malformed (400), a well-formed unknown one not found (404).
    return {"data": selectors.product_detail(sku=sku)}


@router.post(
    "/orders",
    auth=token,
    summary="Place an order: all of its stock is taken, or none",
    **errors(
        *WRITE,
        codes={404: ["product_not_found"], 409: ["insufficient_stock"]},
        ok={201: Data[Order]},
        links={"order_detail": {"order_id": "$response.body#/data/id"}},
    ),
)
def order_create(request: HttpRequest, payload: OrderIn):
    items = [line.model_dump() for line in payload.items]
    order = services.order_create(buyer=request.auth, items=items)
    return Status(201, {"data": selectors.order_as_dict(order, order.line_items)})


@router.get(
    "/orders/{int:order_id}",
    auth=token,
    summary="One order: its buyer's, or anyone's with market.view_order",
    **errors(401, codes={404: ["order_not_found"]}, ok={200: Data[Order]}),
)
def order_detail(request: HttpRequest, order_id: int):
    return {"data": selectors.order_detail(order_id=order_id, user=request.auth)}


@router.post(
    "/accounts",
    auth=token,
    summary="Open an account for a user (market.add_account)",
    **errors(*WRITE, 403, ok={201: Data[Account]}, links={"account_detail": {"account_id": "$response.body#/data/id"}}),
)
@requires("market.add_account")
def account_create(request: HttpRequest, payload: AccountIn):
    account = services.account_create(balance_cents=payload.balance_cents, owner_id=payload.owner)
    return Status(
        201,
        {
            "data": selectors.account_as_dict(
                id=account.pk, owner_id=account.owner_id, balance_cents=account.balance_cents
            )
        },
    )


@router.get(
    "/accounts/{int:account_id}",
    auth=token,
    summary="One account: its owner's, or anyone's with market.view_account",
    **errors(401, codes={404: ["account_not_found"]}, ok={200: Data[Account]}),
)
def account_detail(request: HttpRequest, account_id: int):
    return {"data": selectors.account_detail(account_id=account_id, user=request.auth)}


@router.post(
    "/transfers",
    auth=token,
    summary="Move money out of your account (or any, with market.transfer_any_account)",
    description=(
        "The same Idempotency-Key again returns the same transfer (header `Idempotent-Replayed: true`) "
        "and moves no money; with another body it is refused. Someone else's account answers 404, "
        "as a missing one, and the refusal is audited."
    ),
    **errors(
        *WRITE,
        codes={404: ["account_not_found"], 409: ["insufficient_funds", "idempotency_key_reused"]},
        ok={201: Data[Transfer]},
    ),
)
def transfer_create(
    request: HttpRequest,
    payload: TransferIn,
    idempotency_key: IdempotencyKey = Header(..., alias="Idempotency-Key"),  # noqa: B008 (ninja's way)
):
    transfer, created = services.transfer_create(
        user=request.auth,
        from_account_id=payload.from_account,
        to_account_id=payload.to_account,
        amount_cents=payload.amount_cents,
        idempotency_key=idempotency_key,
    )
    # A replay answers exactly like the first request did (as Stripe does), flagged by a header.
    headers = None if created else {"Idempotent-Replayed": "true"}
    return answer({"data": selectors.transfer_as_dict(transfer)}, 201, headers)  # hot: ready, as the fast lane
