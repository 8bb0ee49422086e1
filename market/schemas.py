"""The market API's request and response schemas: the one place its input rules live
(config.httpkit.schemas' field types) and what the OpenAPI document shows."""

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field

from config.httpkit.schemas import Body, Int, Key, Text, Timestamp
from market.models import (
    MAX_BIGINT,
    MAX_CENTS,
    MAX_PRICE_CENTS,
    MAX_QUANTITY,
    MAX_STOCK,
    SKU_DESCRIPTION,
    SKU_MAX_LENGTH,
    SKU_RE,
)
from market.models import (
    Product as ProductModel,
)
from market.services import (
    IDEMPOTENCY_KEY_DESCRIPTION,
    IDEMPOTENCY_KEY_RE,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_ORDER_LINES,
    order_items_check,
)

Sku = Key(SKU_RE, SKU_MAX_LENGTH, SKU_DESCRIPTION)
Id = Int(1, MAX_BIGINT)
IdempotencyKey = Key(
    IDEMPOTENCY_KEY_RE, MAX_IDEMPOTENCY_KEY_LENGTH, IDEMPOTENCY_KEY_DESCRIPTION, field="Idempotency-Key"
)


class ProductIn(Body):
    sku: Sku
    name: Text(ProductModel._meta.get_field("name").max_length)
    price_cents: Int(0, MAX_PRICE_CENTS)
    stock: Int(0, MAX_STOCK) = 0


class OrderLineIn(Body):
    sku: Sku
    quantity: Int(1, MAX_QUANTITY)


def _items(value: Any) -> Any:
    order_items_check(value)  # its messages name the entry: items[2].quantity
    return value


class OrderIn(Body):
    items: Annotated[
        list[OrderLineIn],
        Field(
            min_length=1,
            max_length=MAX_ORDER_LINES,
            description="The same sku twice is one line with the quantities added.",
        ),
        BeforeValidator(_items),
    ]


class AccountIn(Body):
    owner: Annotated[Id, Field(description="The id of the user who owns the account.")]
    balance_cents: Annotated[Int(0, MAX_CENTS), Field(description="The opening balance, in cents.")]


class TransferIn(Body):
    from_account: Id
    to_account: Annotated[Id, Field(description="Another account than from_account.")]
    amount_cents: Int(1, MAX_CENTS)


class Product(BaseModel):
    sku: str
    name: str
    price_cents: int
    stock: int


class Account(BaseModel):
    id: int
    owner: int | None
    balance_cents: int


class OrderLine(BaseModel):
    sku: str
    quantity: int
    unit_price_cents: int


class Order(BaseModel):
    id: int
    buyer_id: int
    status: str
    total_cents: int
    lines: list[OrderLine]
    created_at: Timestamp


class Transfer(BaseModel):
    id: int
    from_account: int
    to_account: int
    amount_cents: int
    created_at: Timestamp
