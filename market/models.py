"""Market data on the `market` database: products and orders, accounts and transfers.

Invariants that money and stock depend on are CHECK constraints, so a bug in
Python (or another client of these tables) cannot break them silently. Users
live in the shared database: they are referred to by id, never by a foreign key.
"""

from __future__ import annotations

import re

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Now

from audit.capture import AuditedModel
from audit.outbox import OutboxEntry

# Bounds checked at the API edge so no value can overflow a column (a 500).
MAX_STOCK = 2_147_483_647  # integer column
MAX_QUANTITY = MAX_STOCK
MAX_PRICE_CENTS = 10**12
# Used in URLs: no slashes, no spaces. \Z, not $: `$` also matches before a final newline ("ABC\n").
SKU_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
SKU_MAX_LENGTH = 64
SKU_DESCRIPTION = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
MAX_BIGINT = 9_223_372_036_854_775_807  # bigint column: ids and cents
MAX_CENTS = MAX_BIGINT


class AuditOutbox(OutboxEntry):
    """Audit events of this database waiting for delivery to the shared database."""


class Product(AuditedModel):
    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    price_cents = models.BigIntegerField()
    stock = models.IntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True, db_default=Now())
    updated = models.DateTimeField(auto_now=True, db_default=Now())

    class Meta:
        ordering = ["sku"]
        indexes = [
            # And, in migration 0003 only (Django cannot declare an operator class on an
            # expression), trigram GIN indexes on UPPER(name) and UPPER(sku): the admin's search
            # (icontains is UPPER(col::text) LIKE UPPER('%term%')).
            # The admin's "out of stock" filter, in sku order: the few such rows, without a scan.
            models.Index(fields=["sku"], condition=Q(stock=0), name="market_product_out_of_stock"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(price_cents__gte=0), name="market_product_price_nonnegative"),
            # The last line of defence against overselling: even a raw UPDATE cannot go below zero.
            models.CheckConstraint(condition=Q(stock__gte=0), name="market_product_stock_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"


class Order(AuditedModel):
    class Status(models.TextChoices):
        PLACED = "placed"
        CANCELLED = "cancelled"

    buyer_id = models.BigIntegerField(db_index=True)  # auth_user.id in the shared database
    total_cents = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PLACED)
    created_at = models.DateTimeField(auto_now_add=True, db_default=Now())

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The admin's filters in its order (newest first): a status, a date range.
            models.Index(fields=["status", "-id"], name="market_order_status_idx"),
            models.Index(fields=["created_at"], name="market_order_created_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(total_cents__gte=0), name="market_order_total_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"order #{self.pk}"


class OrderLine(AuditedModel):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="order_lines")
    quantity = models.IntegerField()
    unit_price_cents = models.BigIntegerField()  # the price when ordered; the product's may change later

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="market_orderline_quantity_positive"),
            models.CheckConstraint(
                condition=Q(unit_price_cents__gte=0), name="market_orderline_unit_price_nonnegative"
            ),
            # Duplicate skus in one request are merged into one line.
            models.UniqueConstraint(fields=["order", "product"], name="market_orderline_unique_product"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_id}"


class Account(AuditedModel):
    # Table and columns (`market_account`: `id`, `balance_cents`) are shared with
    # the reference Node app the benchmarks run side by side; keep their names,
    # and keep database defaults on the other columns so a plain INSERT works.
    balance_cents = models.BigIntegerField(default=0)
    # auth_user.id, shared database. Only the owner moves money out, besides holders of
    # market.transfer_any_account; no owner (a house account, or a row the benchmark's plain
    # INSERT made) means only those holders.
    owner_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True, db_default=Now())

    class Meta:
        db_table = "market_account"
        ordering = ["id"]
        permissions = [("transfer_any_account", "Can move money out of any account")]
        constraints = [
            models.CheckConstraint(condition=Q(balance_cents__gte=0), name="market_account_balance_nonnegative"),
        ]

    def __str__(self) -> str:
        return f"account #{self.pk}"


class Transfer(AuditedModel):
    from_account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="transfers_out")
    to_account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="transfers_in")
    amount_cents = models.BigIntegerField()
    requester_id = models.BigIntegerField()  # auth_user.id of the API caller, shared database
    # Idempotency keys are scoped per requesting user (as Stripe scopes them per
    # account): two clients that happen to pick the same key never collide, and
    # nobody can fetch someone else's transfer by guessing a key.
    idempotency_key = models.CharField(max_length=255)
    # sha256 of the canonical request body: the same key with another body is refused.
    request_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True, db_default=Now())

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=Q(amount_cents__gt=0), name="market_transfer_amount_positive"),
            models.CheckConstraint(
                condition=~Q(from_account=F("to_account")), name="market_transfer_distinct_accounts"
            ),
            models.UniqueConstraint(
                fields=["requester_id", "idempotency_key"], name="market_transfer_unique_idempotency_key"
            ),
        ]

    def __str__(self) -> str:
        return f"transfer #{self.pk}: {self.from_account_id} -> {self.to_account_id} ({self.amount_cents})"
