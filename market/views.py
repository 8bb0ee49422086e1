"""The market's JSON API: parse, call a service or selector, shape the answer.

Validation of values and every domain failure live in services/selectors
(`market.errors`, which are `ApiError`s the middleware turns into answers).
"""

from __future__ import annotations

from django.http import JsonResponse

from config.httpkit.auth import token_required
from config.httpkit.parsing import clean_key, json_body, query_int, query_key
from config.httpkit.routing import methods
from market import selectors, services
from market.errors import InvalidRequest
from market.models import SKU_DESCRIPTION, SKU_MAX_LENGTH, SKU_RE

PRODUCT_PAGE_DEFAULT = 50
PRODUCT_PAGE_MAX = 200


def _created(data) -> JsonResponse:
    return JsonResponse({"data": data}, status=201)


@token_required(perm="market.add_product")
def product_create(request):
    data = json_body(request, required={"sku", "name", "price_cents"}, optional={"stock"})
    product = services.product_create(
        sku=data["sku"], name=data["name"], price_cents=data["price_cents"], stock=data.get("stock", 0)
    )
    return _created({f: getattr(product, f) for f in selectors.PRODUCT_FIELDS})


def product_list(request):
    limit = query_int(request, "limit", default=PRODUCT_PAGE_DEFAULT, minimum=1, maximum=PRODUCT_PAGE_MAX)
    # The cursor is the last sku of the previous page.
    after = query_key(
        request, "cursor", pattern=SKU_RE, max_length=SKU_MAX_LENGTH, description="the next of a page this API returned"
    )
    rows, cursor = selectors.product_list(limit=limit, after=after)
    return JsonResponse({"data": rows, "next": cursor})


def product_detail(request, sku: str):
    # A sku no product can have is malformed (400), a well-formed unknown one not found (404).
    sku = clean_key(sku, "sku", pattern=SKU_RE, max_length=SKU_MAX_LENGTH, description=SKU_DESCRIPTION)
    return JsonResponse({"data": selectors.product_detail(sku=sku)})


@token_required
def order_create(request):
    data = json_body(request, required={"items"})
    order = services.order_create(buyer=request.api_user, items=data["items"])
    return _created(selectors.order_as_dict(order, order.line_items))


@token_required
def order_detail(request, order_id: int):
    return JsonResponse({"data": selectors.order_detail(order_id=order_id, user=request.api_user)})


@token_required(perm="market.add_account")
def account_create(request):
    data = json_body(request, required={"owner", "balance_cents"})
    account = services.account_create(balance_cents=data["balance_cents"], owner_id=data["owner"])
    return _created(
        selectors.account_as_dict(id=account.pk, owner_id=account.owner_id, balance_cents=account.balance_cents)
    )


@token_required
def account_detail(request, account_id: int):
    return JsonResponse({"data": selectors.account_detail(account_id=account_id, user=request.api_user)})


@token_required
def transfer_create(request):
    data = json_body(request, required={"from_account", "to_account", "amount_cents"})
    key = request.headers.get("Idempotency-Key")
    if key is None:
        # Required: without a key a retried request after a lost answer would move money twice.
        raise InvalidRequest("an Idempotency-Key header is required", field="Idempotency-Key")
    transfer, created = services.transfer_create(
        user=request.api_user,
        from_account_id=data["from_account"],
        to_account_id=data["to_account"],
        amount_cents=data["amount_cents"],
        idempotency_key=key,
    )
    # A replay answers exactly like the first request did (as Stripe does), flagged by a header.
    response = _created(selectors.transfer_as_dict(transfer))
    if not created:
        response["Idempotent-Replayed"] = "true"
    return response


products = methods(get=product_list, post=product_create)
product = methods(get=product_detail)
orders = methods(post=order_create)
order = methods(get=order_detail)
accounts = methods(post=account_create)
account = methods(get=account_detail)
transfers = methods(post=transfer_create)
