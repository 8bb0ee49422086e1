"""Market writes. Each one is a single transaction on the market database and
keeps its invariant under any concurrency:

- stock never goes below zero and an order takes all its stock or none: the
  products are locked `FOR UPDATE` in sku order (one global order, so two
  orders can never wait on each other in a cycle);
- money is never created or destroyed and no balance goes below zero: both
  accounts are locked `FOR UPDATE` in ascending id order;
- a transfer repeated with the same idempotency key moves money once, even when
  the copies arrive at the same time (a unique constraint decides the race).

The CHECK constraints in models.py back all of this up in the database.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import IntegrityError, connections, router

from audit.capture import audit_record_many, json_safe

from config.db import atomic_for
from market.errors import (
    AccountNotFound,
    Forbidden,
    IdempotencyKeyReused,
    InsufficientFunds,
    InsufficientStock,
    InvalidRequest,
    ProductNotFound,
    SkuExists,
)
from market.models import (
    MAX_BIGINT,
    MAX_CENTS,
    MAX_PRICE_CENTS,
    MAX_QUANTITY,
    MAX_STOCK,
    SKU_RE,
    Account,
    Order,
    OrderLine,
    Product,
    Transfer,
)

MAX_ORDER_LINES = 100
MAX_IDEMPOTENCY_KEY_LENGTH = 255
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,%d}$" % MAX_IDEMPOTENCY_KEY_LENGTH)  # printable ASCII, no spaces
UNIQUE_VIOLATION = "23505"


def _int_in_range(value: Any, name: str, *, minimum: int, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an integer", field=name)
    if not minimum <= value <= maximum:
        raise InvalidRequest(f"{name} must be between {minimum} and {maximum}", field=name)
    return value


def _constraint_of(exc: IntegrityError) -> str:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) or ""


def _sqlstate(exc: IntegrityError) -> str:
    return getattr(exc.__cause__, "sqlstate", None) or ""


# Products -----------------------------------------------------------------

def product_create(*, sku: str, name: str, price_cents: int, stock: int = 0) -> Product:
    """A new product; `SkuExists` when the sku is taken (also when two requests race for it)."""
    if not isinstance(sku, str) or not SKU_RE.match(sku):
        raise InvalidRequest("sku must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
                             field="sku")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        raise InvalidRequest("name must be a non-empty string of at most 200 characters", field="name")
    _int_in_range(price_cents, "price_cents", minimum=0, maximum=MAX_PRICE_CENTS)
    _int_in_range(stock, "stock", minimum=0, maximum=MAX_STOCK)
    try:
        with atomic_for(Product):
            return Product.objects.create(sku=sku, name=name.strip(), price_cents=price_cents, stock=stock)
    except IntegrityError as exc:
        if _sqlstate(exc) == UNIQUE_VIOLATION:
            raise SkuExists(f"a product with sku {sku!r} already exists", sku=sku) from None
        raise


# Orders -------------------------------------------------------------------

def _merged_items(items: Any) -> dict[str, int]:
    """{sku: quantity}, validated; the same sku twice is one line with the quantities added."""
    if not isinstance(items, list) or not items:
        raise InvalidRequest("items must be a non-empty list", field="items")
    if len(items) > MAX_ORDER_LINES:
        raise InvalidRequest(f"items may hold at most {MAX_ORDER_LINES} entries", field="items")
    wanted: dict[str, int] = {}
    for i, item in enumerate(items):
        where = f"items[{i}]"
        if not isinstance(item, Mapping):
            raise InvalidRequest(f"{where} must be an object with sku and quantity", field=where)
        extra = sorted(set(item) - {"sku", "quantity"})
        missing = sorted({"sku", "quantity"} - set(item))
        if missing or extra:
            raise InvalidRequest(f"{where} must have exactly the fields sku and quantity", field=where)
        sku = item["sku"]
        if not isinstance(sku, str) or not sku:
            raise InvalidRequest(f"{where}.sku must be a non-empty string", field=f"{where}.sku")
        quantity = _int_in_range(item["quantity"], f"{where}.quantity", minimum=1, maximum=MAX_QUANTITY)
        wanted[sku] = wanted.get(sku, 0) + quantity
        if wanted[sku] > MAX_QUANTITY:
            raise InvalidRequest(f"quantity of {sku!r} is larger than {MAX_QUANTITY}", field=f"{where}.quantity")
    return wanted


def order_create(*, buyer, items: Iterable[Mapping[str, Any]]) -> Order:
    """Place an order for `items` ([{"sku", "quantity"}]): all of its stock is taken, or none.

    `ProductNotFound` for an unknown sku, `InsufficientStock` (nothing changed)
    when any line cannot be served. Returns the order with `line_items` set.
    """
    wanted = _merged_items(items)
    skus = sorted(wanted)
    with atomic_for(Order):
        # The sort is below the lock in the plan: rows are locked in sku order.
        products = list(Product.objects.select_for_update().filter(sku__in=skus).order_by("sku"))
        found = {p.sku: p for p in products}
        unknown = [s for s in skus if s not in found]
        if unknown:
            raise ProductNotFound(f"no product with sku {unknown[0]!r}", sku=unknown[0])
        short = [
            {"sku": p.sku, "requested": wanted[p.sku], "available": p.stock}
            for p in products if p.stock < wanted[p.sku]
        ]
        if short:
            raise InsufficientStock(f"not enough stock for {short[0]['sku']!r}", items=short)
        total = sum(p.price_cents * wanted[p.sku] for p in products)
        if total > MAX_CENTS:
            raise InvalidRequest("order total is too large", field="items")
        order = Order.objects.create(buyer_id=buyer.pk, total_cents=total, status=Order.Status.PLACED)
        lines = []
        for p in products:
            p.stock -= wanted[p.sku]
            p.save(update_fields=["stock", "updated"])
            lines.append(OrderLine.objects.create(order=order, product=p, quantity=wanted[p.sku],
                                                  unit_price_cents=p.price_cents))
    order.line_items = lines
    return order


# Accounts and transfers ---------------------------------------------------

def account_create(*, balance_cents: int, owner_id: int | None = None) -> Account:
    """An account with an opening balance (>= 0)."""
    _int_in_range(balance_cents, "balance_cents", minimum=0, maximum=MAX_CENTS)
    with atomic_for(Account):
        return Account.objects.create(balance_cents=balance_cents, owner_id=owner_id)


def transfer_request_hash(*, from_account_id: int, to_account_id: int, amount_cents: int) -> str:
    """sha256 of the canonical request body: the same request always hashes the same."""
    canonical = json.dumps({"amount_cents": amount_cents, "from_account": from_account_id,
                            "to_account": to_account_id}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(existing: Transfer, request_hash: str) -> tuple[Transfer, bool]:
    if existing.request_hash != request_hash:
        raise IdempotencyKeyReused("this Idempotency-Key was already used with a different request",
                                   transfer_id=existing.pk)
    return existing, False


# The transfer is the busiest write: plain SQL, four round trips (lock, idempotency
# check, one statement that moves the money and records the transfer, commit)
# instead of the ORM's ten. Its audit rows are written with it (audit_record_many)
# in the same transaction, in the shape save() would give them.
_LOCK_ACCOUNTS_SQL = ('SELECT id, balance_cents, owner_id FROM market_account WHERE id IN (%s, %s) '
                      'ORDER BY id FOR UPDATE')
_SAME_KEY_SQL = ('SELECT id FROM market_transfer WHERE requester_id = %s AND idempotency_key = %s')
_MOVE_SQL = """
WITH moved AS (
    UPDATE market_account SET balance_cents = balance_cents + CASE WHEN id = %(src)s THEN -%(amount)s ELSE %(amount)s END
    WHERE id IN (%(src)s, %(dst)s)
    RETURNING id
)
INSERT INTO market_transfer (from_account_id, to_account_id, amount_cents, requester_id, idempotency_key,
                             request_hash, created_at)
SELECT %(src)s, %(dst)s, %(amount)s, %(requester)s, %(key)s, %(hash)s, now()
WHERE (SELECT count(*) FROM moved) = 2
RETURNING id, created_at
"""


def transfer_create(*, user, from_account_id: int, to_account_id: int, amount_cents: int,
                    idempotency_key: str) -> tuple[Transfer, bool]:
    """Move `amount_cents` between two accounts; returns (transfer, created).

    The same `idempotency_key` (per user) with the same body returns the first
    transfer and moves nothing (`created` False); with another body it raises
    `IdempotencyKeyReused`. `InsufficientFunds` refuses an overdraft.
    """
    if not isinstance(idempotency_key, str) or not _KEY_RE.match(idempotency_key):
        raise InvalidRequest(f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters",
                             field="Idempotency-Key")
    _int_in_range(from_account_id, "from_account", minimum=1, maximum=MAX_BIGINT)
    _int_in_range(to_account_id, "to_account", minimum=1, maximum=MAX_BIGINT)
    _int_in_range(amount_cents, "amount_cents", minimum=1, maximum=MAX_CENTS)
    if from_account_id == to_account_id:
        raise InvalidRequest("from_account and to_account must differ", field="to_account")
    request_hash = transfer_request_hash(from_account_id=from_account_id, to_account_id=to_account_id,
                                         amount_cents=amount_cents)
    # Fresh reads only: a replica may not have the first copy of this request yet.
    primary = router.db_for_write(Transfer)
    same_key = Transfer.objects.using(primary).filter(requester_id=user.pk, idempotency_key=idempotency_key)
    try:
        with atomic_for(Transfer), connections[primary].cursor() as cursor:
            # Both rows locked in ascending id order: two transfers can never wait on each other in a cycle.
            cursor.execute(_LOCK_ACCOUNTS_SQL, [from_account_id, to_account_id])
            accounts = {row[0]: row for row in cursor.fetchall()}
            for account_id in (from_account_id, to_account_id):
                if account_id not in accounts:
                    raise AccountNotFound(f"no account with id {account_id}", account_id=account_id)
            # Checked under the locks: a concurrent copy of this request that held them first has committed.
            cursor.execute(_SAME_KEY_SQL, [user.pk, idempotency_key])
            if cursor.fetchone() is not None:
                return _replay(same_key.get(), request_hash)
            _, source_balance, source_owner = accounts[from_account_id]
            target_balance = accounts[to_account_id][1]
            if source_owner is not None and source_owner != user.pk and not user.is_staff:
                raise Forbidden("only the owner of the account (or staff) may move money out of it")
            if source_balance < amount_cents:
                raise InsufficientFunds(f"account {from_account_id} has insufficient funds",
                                        account_id=from_account_id)
            if target_balance > MAX_CENTS - amount_cents:
                raise InvalidRequest("the target balance would overflow", field="amount_cents")
            cursor.execute(_MOVE_SQL, {"src": from_account_id, "dst": to_account_id, "amount": amount_cents,
                                       "requester": user.pk, "key": idempotency_key, "hash": request_hash})
            transfer_id, created_at = cursor.fetchone()
            transfer = Transfer(id=transfer_id, from_account_id=from_account_id, to_account_id=to_account_id,
                                amount_cents=amount_cents, requester_id=user.pk, idempotency_key=idempotency_key,
                                request_hash=request_hash, created_at=created_at)
            audit_record_many(app_label="market", using=primary, events=[
                ("update", "market.account", str(from_account_id),
                 {"balance_cents": {"old": source_balance, "new": source_balance - amount_cents}}),
                ("update", "market.account", str(to_account_id),
                 {"balance_cents": {"old": target_balance, "new": target_balance + amount_cents}}),
                ("create", "market.transfer", str(transfer_id), {
                    "from_account_id": {"old": None, "new": from_account_id},
                    "to_account_id": {"old": None, "new": to_account_id},
                    "amount_cents": {"old": None, "new": amount_cents},
                    "requester_id": {"old": None, "new": user.pk},
                    "idempotency_key": {"old": None, "new": idempotency_key},
                    "request_hash": {"old": None, "new": request_hash},
                    "created_at": {"old": None, "new": json_safe(created_at)},
                }),
            ])
            return transfer, True
    except IntegrityError as exc:
        # Same key, different accounts: the locks did not serialize the two
        # copies, the unique constraint did; the winner has committed.
        if _constraint_of(exc) != "market_transfer_unique_idempotency_key":
            raise
    existing = same_key.first()
    if existing is None:  # the unique index only fails us once the winner has committed
        raise IdempotencyKeyReused("this Idempotency-Key is being used by another request")
    return _replay(existing, request_hash)
