"""Market reads and the JSON shapes of market objects.

The by-key reads are hot paths (benchmarked): one `.values()` query each, no
model instances, no ordering the unique lookup does not need.
"""

from __future__ import annotations

from typing import Any

from config.httpkit.permissions import may_view
from market.errors import AccountNotFound, InvalidRequest, OrderNotFound, ProductNotFound
from market.models import MAX_BIGINT, SKU_RE, Account, Order, OrderLine, Product, Transfer

PRODUCT_FIELDS = ("sku", "name", "price_cents", "stock")
ACCOUNT_FIELDS = ("id", "owner_id", "balance_cents")


def product_detail(*, sku: str) -> dict[str, Any]:
    # A string no product can have (a NUL byte would even make PostgreSQL fail) is simply not found.
    rows = list(Product.objects.filter(sku=sku).order_by().values(*PRODUCT_FIELDS)[:1]) if SKU_RE.match(sku) else []
    if not rows:
        raise ProductNotFound(f"no product with sku {sku!r}", sku=sku)
    return rows[0]


def product_list(*, limit: int, after: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """Products by sku, `limit` at a time; the cursor is the last sku of the page."""
    qs = Product.objects.order_by("sku")
    if after is not None:
        if not SKU_RE.match(after):
            raise InvalidRequest("cursor is not a cursor this API returned", field="cursor")
        qs = qs.filter(sku__gt=after)
    rows = list(qs.values(*PRODUCT_FIELDS)[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1]["sku"] if more else None)


def account_as_dict(*, id: int, owner_id: int | None, balance_cents: int) -> dict[str, Any]:
    return {"id": id, "owner": owner_id, "balance_cents": balance_cents}


def account_detail(*, account_id: int, user) -> dict[str, Any]:
    """An account its owner (or a holder of market.view_account) may see; anybody else gets
    the same 404 as for a missing one, so ids cannot be probed."""
    rows = (
        list(Account.objects.filter(pk=account_id).order_by().values(*ACCOUNT_FIELDS)[:1])
        if 0 < account_id <= MAX_BIGINT
        else []
    )
    if not rows or (rows[0]["owner_id"] != user.pk and not may_view(user, "market", "account")):
        raise AccountNotFound(f"no account with id {account_id}", account_id=account_id)
    return account_as_dict(**rows[0])


def order_as_dict(order: Order, lines: list[OrderLine]) -> dict[str, Any]:
    return {
        "id": order.pk,
        "buyer_id": order.buyer_id,
        "status": order.status,
        "total_cents": order.total_cents,
        "lines": [
            {"sku": line.product.sku, "quantity": line.quantity, "unit_price_cents": line.unit_price_cents}
            for line in lines
        ],
        "created_at": order.created_at,
    }


def order_detail(*, order_id: int, user) -> dict[str, Any]:
    """An order its buyer (or a holder of market.view_order) may see; anybody else gets the same 404
    as for a missing one."""
    order = Order.objects.filter(pk=order_id).first() if 0 < order_id <= MAX_BIGINT else None
    if order is None or (order.buyer_id != user.pk and not may_view(user, "market", "order")):
        raise OrderNotFound(f"no order with id {order_id}", order_id=order_id)
    lines = list(OrderLine.objects.filter(order_id=order.pk).select_related("product").order_by("id"))
    return order_as_dict(order, lines)


def transfer_as_dict(transfer: Transfer) -> dict[str, Any]:
    return {
        "id": transfer.pk,
        "from_account": transfer.from_account_id,
        "to_account": transfer.to_account_id,
        "amount_cents": transfer.amount_cents,
        "created_at": transfer.created_at,
    }
