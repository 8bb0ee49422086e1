"""The market's domain failures. Each one knows its HTTP status and stable code
(they are `ApiError`s), so services raise them and the middleware answers."""

from __future__ import annotations

from typing import Any

from config.httpkit.errors import ApiError


class MarketError(ApiError):
    status = 400
    code = "invalid_request"

    def __init__(self, message: str, **extra: Any):
        super().__init__(self.status, self.code, message, **extra)


class InvalidRequest(MarketError):
    pass


class ProductNotFound(MarketError):
    status, code = 404, "product_not_found"


class SkuExists(MarketError):
    status, code = 409, "sku_exists"


class InsufficientStock(MarketError):
    status, code = 409, "insufficient_stock"


class OrderNotFound(MarketError):
    status, code = 404, "order_not_found"


class AccountNotFound(MarketError):
    status, code = 404, "account_not_found"


class InsufficientFunds(MarketError):
    status, code = 409, "insufficient_funds"


class IdempotencyKeyReused(MarketError):
    status, code = 409, "idempotency_key_reused"
