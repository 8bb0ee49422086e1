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

import contextlib
import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, connections, router, transaction
from django.utils import timezone

from audit.capture import audit_relay_after_commit, json_safe
from audit.context import current_actor
from config.httpkit.parsing import clean_int, clean_key, clean_text
from config.multidb.public import atomic_for
from market.errors import (
    AccountNotFound,
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
    SKU_DESCRIPTION,
    SKU_MAX_LENGTH,
    SKU_RE,
    Account,
    AuditOutbox,
    Order,
    OrderLine,
    Product,
    Transfer,
)

MAX_ORDER_LINES = 100
MAX_IDEMPOTENCY_KEY_LENGTH = 255
# Printable ASCII, no spaces; \Z, not $ (which matches before a final newline).
IDEMPOTENCY_KEY_RE = re.compile(r"^[\x21-\x7e]{1,%d}\Z" % MAX_IDEMPOTENCY_KEY_LENGTH)
IDEMPOTENCY_KEY_DESCRIPTION = f"1-{MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII characters"
UNIQUE_VIOLATION = "23505"


def _int_in_range(value: Any, name: str, *, minimum: int, maximum: int) -> int:
    return clean_int(value, name, minimum=minimum, maximum=maximum)


def _sku(value: Any, field: str) -> str:
    return clean_key(value, field, pattern=SKU_RE, max_length=SKU_MAX_LENGTH, description=SKU_DESCRIPTION)


def _constraint_of(exc: IntegrityError) -> str:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) or ""


def _sqlstate(exc: IntegrityError) -> str:
    return getattr(exc.__cause__, "sqlstate", None) or ""


# Products -----------------------------------------------------------------


def product_create(*, sku: str, name: str, price_cents: int, stock: int = 0) -> Product:
    """A new product; `SkuExists` when the sku is taken (also when two requests race for it)."""
    sku = _sku(sku, "sku")
    name = clean_text(name, "name", max_length=Product._meta.get_field("name").max_length)
    _int_in_range(price_cents, "price_cents", minimum=0, maximum=MAX_PRICE_CENTS)
    _int_in_range(stock, "stock", minimum=0, maximum=MAX_STOCK)
    try:
        with atomic_for(Product):
            return Product.objects.create(sku=sku, name=name, price_cents=price_cents, stock=stock)
    except IntegrityError as exc:
        if _sqlstate(exc) == UNIQUE_VIOLATION:
            raise SkuExists(f"a product with sku {sku!r} already exists", sku=sku) from None
        raise


# Orders -------------------------------------------------------------------


def order_items_check(items: Any) -> dict[str, int]:
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
        sku = _sku(item["sku"], f"{where}.sku")  # a sku no product can have is malformed, not unknown
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
    wanted = order_items_check(items)
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
            for p in products
            if p.stock < wanted[p.sku]
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
            lines.append(
                OrderLine.objects.create(order=order, product=p, quantity=wanted[p.sku], unit_price_cents=p.price_cents)
            )
    order.line_items = lines
    return order


# Accounts and transfers ---------------------------------------------------


def account_create(*, balance_cents: int, owner_id: int) -> Account:
    """An account of the user `owner_id` (shared database) with an opening balance (>= 0)."""
    _int_in_range(owner_id, "owner", minimum=1, maximum=MAX_BIGINT)
    _int_in_range(balance_cents, "balance_cents", minimum=0, maximum=MAX_CENTS)
    # No foreign key across databases: the owner is looked up in the shared one.
    if not get_user_model().objects.filter(pk=owner_id).exists():
        raise InvalidRequest(f"owner: no user with id {owner_id}", field="owner")
    with atomic_for(Account):
        return Account.objects.create(balance_cents=balance_cents, owner_id=owner_id)


def transfer_request_hash(*, from_account_id: int, to_account_id: int, amount_cents: int) -> str:
    """sha256 of the canonical request body: the same request always hashes the same."""
    canonical = json.dumps(
        {"amount_cents": amount_cents, "from_account": from_account_id, "to_account": to_account_id},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(existing: Transfer, request_hash: str) -> tuple[Transfer, bool]:
    if existing.request_hash != request_hash:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was already used with a different request", transfer_id=existing.pk
        )
    return existing, False


# The transfer is the busiest write: ONE statement, sent in autocommit (a single
# statement is its own transaction: no BEGIN, no COMMIT), that locks both
# accounts, decides, and only when the verdict is "ok" moves the money, records
# the transfer and writes its three audit outbox rows in the shape save() would
# give them;
# a forbidden one writes nothing but its `deny` audit row.
#
# - `locked`: both rows FOR UPDATE in ascending id order (two transfers can
#   never wait on each other in a cycle). Under READ COMMITTED a row we had to
#   wait for comes back in its newest committed version, so balances and owner
#   are current. `facts` aggregates over all of `locked`, so both locks are held
#   before anything below writes.
# - `verdict`: missing source; not the owner of the source and no right to move
#   money out of any account -> forbidden (answered exactly as a missing source,
#   so ids cannot be probed: it comes before any check of the target); missing
#   target; same (requester, key) already used -> replay; funds; target
#   overflow; else ok.
# - `moved` / `created` / the outbox INSERT write only when the verdict is ok.
#   The audit's old balances are the locked ones and the new ones what the
#   UPDATE stores; created_at comes from Python, so the row and its audit JSON
#   agree to the microsecond.
#
# Concurrency: the idempotency check inside the statement reads the statement's
# snapshot, taken before we waited for the row locks. A copy of this request
# (same key and body, so the same accounts) that held the locks and committed
# while we waited is therefore NOT seen by `existing`, though the balances we
# lock are its results. Both outcomes end in the replay of that copy:
# - the verdict is ok: our INSERT hits `market_transfer_unique_idempotency_key`,
#   the whole statement fails (nothing moved, nothing recorded) -> IntegrityError
#   -> the replay path below (`same_key()`, a new statement, a fresh snapshot);
# - the verdict is a refusal (the copy's debit left too little, say): before
#   refusing, the key is looked up again with a fresh snapshot, as the old
#   lock-then-check order would have seen it; a match is replayed.
# The same key with other accounts is not serialized by the locks at all; the
# unique constraint decides that race exactly as above.
#
# The UPDATE sets absolute balances computed from `locked`. It finds its rows
# with the statement's snapshot, so after a wait it first meets the version the
# concurrent transfer replaced, and PostgreSQL checks CHECK constraints on the
# new row computed from that stale version *before* it notices the concurrent
# update and recomputes from the newest one: `balance_cents - amount` could
# fail market_account_balance_nonnegative (a stale balance lower than the
# locked one) although the money is there. The locked values are the newest and
# stay so until we commit (we hold the locks), so the absolute value is right on
# either version, and the audit's old/new are exactly what is stored.
_TRANSFER_SQL = """
WITH locked AS (
    SELECT id, balance_cents, owner_id FROM market_account
    WHERE id IN (%(src)s, %(dst)s) ORDER BY id FOR UPDATE
), facts AS (
    SELECT count(*) FILTER (WHERE id = %(src)s) AS has_src,
           count(*) FILTER (WHERE id = %(dst)s) AS has_dst,
           max(balance_cents) FILTER (WHERE id = %(src)s) AS src_balance,
           max(owner_id) FILTER (WHERE id = %(src)s) AS src_owner,
           max(balance_cents) FILTER (WHERE id = %(dst)s) AS dst_balance
    FROM locked
), existing AS (
    SELECT id, from_account_id, to_account_id, amount_cents, requester_id, idempotency_key, request_hash,
           created_at
    FROM market_transfer WHERE requester_id = %(requester)s AND idempotency_key = %(key)s
), verdict AS (
    SELECT CASE
               WHEN has_src = 0 THEN 'no_source'
               WHEN NOT %(any)s AND src_owner IS DISTINCT FROM %(requester)s THEN 'forbidden'
               WHEN has_dst = 0 THEN 'no_target'
               WHEN EXISTS (SELECT 1 FROM existing) THEN 'replay'
               WHEN src_balance < %(amount)s THEN 'funds'
               WHEN dst_balance > %(max_target)s THEN 'overflow'
               ELSE 'ok'
           END AS outcome, src_balance, dst_balance
    FROM facts
), moved AS (
    -- Absolute values from the locked rows, not `balance_cents - amount`: see the note above.
    UPDATE market_account a
    SET balance_cents = CASE WHEN a.id = %(src)s THEN v.src_balance - %(amount)s ELSE v.dst_balance + %(amount)s END
    FROM verdict v
    WHERE a.id IN (%(src)s, %(dst)s) AND v.outcome = 'ok'
    RETURNING a.id
), created AS (
    INSERT INTO market_transfer (from_account_id, to_account_id, amount_cents, requester_id, idempotency_key,
                                 request_hash, created_at)
    SELECT %(src)s, %(dst)s, %(amount)s, %(requester)s, %(key)s, %(hash)s, %(created_at)s
    FROM verdict WHERE outcome = 'ok'
    RETURNING id
), recorded AS (
    INSERT INTO "{outbox}" (event_id, occurred_at, actor, actor_id, action, model, object_pk, changes)
    SELECT e.event_id, %(created_at)s, %(actor)s, %(actor_id)s, e.action, e.model, e.object_pk, e.changes
    FROM (
        -- Each branch filters on the verdict before it computes: no arithmetic on a refused transfer.
        SELECT 1 AS n, %(event_src)s::uuid AS event_id, 'update' AS action, 'market.account' AS model,
               %(src)s::text AS object_pk,
               jsonb_build_object('balance_cents', jsonb_build_object(
                   'old', v.src_balance, 'new', v.src_balance - %(amount)s)) AS changes
        FROM verdict v WHERE v.outcome = 'ok'
        UNION ALL
        SELECT 2, %(event_dst)s::uuid, 'update', 'market.account', %(dst)s::text,
               jsonb_build_object('balance_cents', jsonb_build_object(
                   'old', v.dst_balance, 'new', v.dst_balance + %(amount)s))
        FROM verdict v WHERE v.outcome = 'ok'
        UNION ALL
        SELECT 3, %(event_transfer)s::uuid, 'create', 'market.transfer', c.id::text, %(transfer_changes)s::jsonb
        FROM created c
        UNION ALL
        -- The refusal of someone else's account: who tried what (audit_export shows it).
        SELECT 4, %(event_deny)s::uuid, 'deny', 'market.account', %(src)s::text, %(deny_changes)s::jsonb
        FROM verdict v WHERE v.outcome = 'forbidden'
    ) e
    ORDER BY e.n  -- ids in event order: the source, the target, the transfer
    RETURNING 1
)
SELECT v.outcome, (SELECT id FROM created), v.src_balance, v.dst_balance,
       x.id, x.from_account_id, x.to_account_id, x.amount_cents, x.requester_id, x.idempotency_key,
       x.request_hash, x.created_at
FROM verdict v LEFT JOIN existing x ON true
""".replace("{outbox}", AuditOutbox._meta.db_table)


_TRANSFER_FIELDS = [
    "id",
    "from_account_id",
    "to_account_id",
    "amount_cents",
    "requester_id",
    "idempotency_key",
    "request_hash",
    "created_at",
]  # the model's concrete fields, in its order (Model.from_db)


def transfer_create(
    *, user, from_account_id: int, to_account_id: int, amount_cents: int, idempotency_key: str
) -> tuple[Transfer, bool]:
    """Move `amount_cents` between two accounts; returns (transfer, created).

    The same `idempotency_key` (per user) with the same body returns the first
    transfer and moves nothing (`created` False); with another body it raises
    `IdempotencyKeyReused`. `InsufficientFunds` refuses an overdraft.

    One statement on the market database (see _TRANSFER_SQL). The API calls it
    outside any transaction, so the statement commits on its own; inside a
    caller's atomic block it runs in a savepoint of that transaction instead
    (a unique-key race then rolls back only the savepoint) and the audit relay
    is kicked when the caller commits.
    """
    if not isinstance(idempotency_key, str) or not IDEMPOTENCY_KEY_RE.match(idempotency_key):
        raise InvalidRequest(f"Idempotency-Key must be {IDEMPOTENCY_KEY_DESCRIPTION}", field="Idempotency-Key")
    _int_in_range(from_account_id, "from_account", minimum=1, maximum=MAX_BIGINT)
    _int_in_range(to_account_id, "to_account", minimum=1, maximum=MAX_BIGINT)
    _int_in_range(amount_cents, "amount_cents", minimum=1, maximum=MAX_CENTS)
    if from_account_id == to_account_id:
        raise InvalidRequest("from_account and to_account must differ", field="to_account")
    request_hash = transfer_request_hash(
        from_account_id=from_account_id, to_account_id=to_account_id, amount_cents=amount_cents
    )
    # Fresh reads only: a replica may not have the first copy of this request yet.
    primary = router.db_for_write(Transfer)

    def same_key() -> Transfer | None:  # a fresh read; built only on the rare paths (a QuerySet costs)
        return Transfer.objects.using(primary).filter(requester_id=user.pk, idempotency_key=idempotency_key).first()

    created_at = timezone.now()
    who = current_actor()
    params = {
        "src": from_account_id,
        "dst": to_account_id,
        "amount": amount_cents,
        "max_target": MAX_CENTS - amount_cents,
        "requester": user.pk,
        # Free for a token's user (its permissions came with it); superusers hold it.
        "any": user.has_perm("market.transfer_any_account"),
        "key": idempotency_key,
        "hash": request_hash,
        "created_at": created_at,
        "actor": who.label,
        "actor_id": who.id,
        "event_src": uuid.uuid4(),
        "event_dst": uuid.uuid4(),
        "event_transfer": uuid.uuid4(),
        "event_deny": uuid.uuid4(),
        "deny_changes": json.dumps(
            {
                "reason": "not the owner of from_account",
                "transfer": {
                    "from_account": from_account_id,
                    "to_account": to_account_id,
                    "amount_cents": amount_cents,
                    "idempotency_key": idempotency_key,
                },
            }
        ),
        # The transfer's audit changes, as save() records a create (old None, new as stored).
        "transfer_changes": json.dumps(
            {
                "from_account_id": {"old": None, "new": from_account_id},
                "to_account_id": {"old": None, "new": to_account_id},
                "amount_cents": {"old": None, "new": amount_cents},
                "requester_id": {"old": None, "new": user.pk},
                "idempotency_key": {"old": None, "new": idempotency_key},
                "request_hash": {"old": None, "new": request_hash},
                "created_at": {"old": None, "new": json_safe(created_at)},
            }
        ),
    }
    connection = connections[primary]
    try:
        # Inside a caller's transaction: a savepoint, so a unique-key failure leaves that transaction usable.
        with (
            transaction.atomic(using=primary) if connection.in_atomic_block else contextlib.nullcontext(),
            connection.cursor() as cursor,
        ):
            cursor.execute(_TRANSFER_SQL, params)
            outcome, transfer_id, _, _, *existing = cursor.fetchone()
    except IntegrityError as exc:
        # A copy of this request committed after our snapshot was taken (see
        # _TRANSFER_SQL): the unique constraint failed the whole statement,
        # nothing moved; the winner has committed.
        if _constraint_of(exc) != "market_transfer_unique_idempotency_key":
            raise
        existing = same_key()
        if existing is None:  # the unique index only fails us once the winner has committed
            raise IdempotencyKeyReused("this Idempotency-Key is being used by another request") from None
        return _replay(existing, request_hash)
    if outcome == "ok":
        # Committed already in autocommit (the kick runs at once); in a caller's transaction, on its commit.
        audit_relay_after_commit(primary)
        return Transfer.from_db(
            primary,
            _TRANSFER_FIELDS,
            (
                transfer_id,
                from_account_id,
                to_account_id,
                amount_cents,
                user.pk,
                idempotency_key,
                request_hash,
                created_at,
            ),
        ), True
    if outcome == "forbidden":
        # Its audit row is written (committed already in autocommit, as a transfer is).
        audit_relay_after_commit(primary)
    if outcome in ("no_source", "forbidden"):
        raise AccountNotFound(f"no account with id {from_account_id}", account_id=from_account_id)
    if outcome == "no_target":
        raise AccountNotFound(f"no account with id {to_account_id}", account_id=to_account_id)
    if outcome == "replay":
        return _replay(Transfer.from_db(primary, _TRANSFER_FIELDS, existing), request_hash)
    # A refusal: a copy of this request that committed while we waited for the locks is invisible to
    # the statement's snapshot (and may be what drained the funds); the key, looked up afresh, wins.
    replayed = same_key()
    if replayed is not None:
        return _replay(replayed, request_hash)
    if outcome == "funds":
        raise InsufficientFunds(f"account {from_account_id} has insufficient funds", account_id=from_account_id)
    if outcome == "overflow":
        raise InvalidRequest("the target balance would overflow", field="amount_cents")
    raise AssertionError(f"unexpected transfer verdict {outcome!r}")
