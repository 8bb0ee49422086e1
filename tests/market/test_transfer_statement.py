"""The transfer's hot path is one statement sent in autocommit (market/services.py
_TRANSFER_SQL): how many statements it costs, what it leaves behind, and the
READ COMMITTED corners of doing the lock, the checks and the writes in one
snapshot. The races are staged deterministically: the main thread holds the
account rows in an open transaction, a worker's transfer queues behind it (the
test waits until PostgreSQL reports it blocked), then the main thread commits.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from django.db import connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from audit import relay
from audit.context import acting_as
from market import services
from market.errors import AccountNotFound, InsufficientFunds
from market.models import Account, Transfer
from market.models import AuditOutbox as MarketOutbox
from tests.support.market import Api, make_user

pytestmark = pytest.mark.django_db(databases=["default", "market"], transaction=True)


def _transfer(user, src, dst, amount, key="k-1"):
    return services.transfer_create(
        user=user, from_account_id=src.pk, to_account_id=dst.pk, amount_cents=amount, idempotency_key=key
    )


def owned(user, balance: int) -> Account:
    """An account of `user`: only its owner (or market.transfer_any_account) moves money out of it."""
    return Account.objects.create(balance_cents=balance, owner_id=user.pk)


def balances(*accounts) -> list[int]:
    return [Account.objects.get(pk=a.pk).balance_cents for a in accounts]


def transfer_events():
    """Outbox rows of transfers (the accounts' creation is audited too)."""
    outbox = MarketOutbox.objects.using("market")
    return list(
        outbox.filter(action="update", model="market.account")
        .union(outbox.filter(model="market.transfer"))
        .order_by("id")
    )


def test_a_transfer_is_one_statement_and_leaves_no_transaction_open():
    user = make_user("payer")
    a, b = owned(user, 1000), Account.objects.create(balance_cents=0)
    market = connections["market"]
    with CaptureQueriesContext(market) as queries:  # BEGIN and COMMIT would be logged too
        transfer, created = _transfer(user, a, b, 300)
    assert created
    assert len(queries) == 1 and queries[0]["sql"].lstrip().startswith("WITH locked AS")
    assert not market.in_atomic_block
    assert market.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    # A replay is answered by the same single statement.
    with CaptureQueriesContext(market) as queries:
        again, created = _transfer(user, a, b, 300)
    assert (again.pk, created, len(queries)) == (transfer.pk, False, 1)
    assert again.created_at == transfer.created_at == Transfer.objects.get(pk=transfer.pk).created_at
    assert balances(a, b) == [700, 300]
    assert [(e.action, e.model) for e in transfer_events()] == [
        ("update", "market.account"),
        ("update", "market.account"),
        ("create", "market.transfer"),
    ]


def test_someone_elses_account_is_refused_in_the_same_one_statement_and_the_refusal_audited():
    owner, intruder = make_user("owner"), make_user("intruder")
    a, b = owned(owner, 1000), Account.objects.create(balance_cents=0)
    market = connections["market"]
    with CaptureQueriesContext(market) as queries, acting_as(intruder):
        with pytest.raises(AccountNotFound) as refused:
            _transfer(intruder, a, b, 300)
    assert len(queries) == 1 and not market.in_atomic_block
    # Answered exactly as a missing account: the id cannot be probed.
    with pytest.raises(AccountNotFound) as missing:
        services.transfer_create(
            user=intruder, from_account_id=a.pk + 1000, to_account_id=b.pk, amount_cents=300, idempotency_key="k-1"
        )
    assert str(refused.value) == str(missing.value).replace(str(a.pk + 1000), str(a.pk))
    assert balances(a, b) == [1000, 0] and not Transfer.objects.exists()
    (deny,) = MarketOutbox.objects.using("market").filter(action="deny")
    assert (deny.model, deny.object_pk, deny.actor, deny.actor_id) == (
        "market.account",
        str(a.pk),
        "intruder",
        intruder.pk,
    )
    assert deny.changes["transfer"] == {
        "from_account": a.pk,
        "to_account": b.pk,
        "amount_cents": 300,
        "idempotency_key": "k-1",
    }


def test_the_transfer_any_account_permission_moves_money_out_of_any_account():
    from django.contrib.auth.models import Permission

    owner, operator = make_user("owner"), make_user("operator")
    operator.user_permissions.add(Permission.objects.get(codename="transfer_any_account"))
    a, b = owned(owner, 1000), Account.objects.create(balance_cents=500)
    _transfer(operator, a, b, 300)
    _transfer(operator, b, a, 100, key="k-2")  # an account without an owner too
    assert balances(a, b) == [800, 700]
    assert not MarketOutbox.objects.using("market").filter(action="deny").exists()


def test_through_the_api_the_market_database_sees_one_statement():
    from config.users.tokens import api_token_create

    user = make_user("payer")
    api = Api(api_token_create(user=user))
    a, b = owned(user, 1000), Account.objects.create(balance_cents=0)
    with CaptureQueriesContext(connections["market"]) as queries:
        r = api.post(
            "/api/market/transfers",
            {"from_account": a.pk, "to_account": b.pk, "amount_cents": 1},
            headers={"Idempotency-Key": "api-1"},
        )
    assert r.status_code == 201, r.json()
    assert [q["sql"].lstrip()[:15] for q in queries] == ["WITH locked AS "]


def test_inside_a_callers_transaction_it_joins_it_and_kicks_the_relay_on_its_commit(settings):
    user = make_user("payer")
    a, b = owned(user, 1000), Account.objects.create(balance_cents=0)
    market = connections["market"]
    settings.AUDIT_RELAY_ON_COMMIT = True  # after the setup: its commits must not start the relay thread

    class Undo(Exception):
        pass

    with pytest.raises(Undo):
        with transaction.atomic(using="market"):
            transfer, created = _transfer(user, a, b, 300)
            assert created and balances(a, b) == [700, 300]
            kicks = [entry for entry in market.run_on_commit if entry[1] is market._audit_kick]
            assert len(kicks) == 1  # queued for the commit, not run yet
            raise Undo
    # The caller's rollback undid all of it: the statement was part of its transaction.
    assert balances(a, b) == [1000, 0]
    assert not Transfer.objects.exists() and not transfer_events()


@pytest.mark.django_db(databases=["default", "market", "default_jobs", "market_jobs"], transaction=True)
def test_in_autocommit_the_relay_is_kicked_at_once_and_delivers_the_events(settings):
    from audit.models import AuditEvent
    from tests.support.pgcluster import wait_for

    user = make_user("payer")
    a, b = owned(user, 1000), Account.objects.create(balance_cents=0)
    settings.AUDIT_RELAY_ON_COMMIT = True
    with acting_as(user):
        transfer, _ = _transfer(user, a, b, 300)
    assert not connections["market"].run_on_commit
    wait_for(
        lambda: AuditEvent.objects.filter(model="market.transfer", object_pk=str(transfer.pk)).exists(),
        timeout=10,
        what="the relay thread to deliver the transfer's event",
    )
    assert relay.flush(10)  # nothing left to arrive in the shared database after this test
    assert AuditEvent.objects.filter(model="market.account", action="update").count() == 2
    assert not transfer_events()


# Races -----------------------------------------------------------------------


def _blocked_behind_this_connection(cursor) -> bool:
    cursor.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_locks l "
        "WHERE NOT l.granted AND pg_backend_pid() = ANY (pg_blocking_pids(l.pid)))"
    )
    return cursor.fetchone()[0]


def _queued_behind_main_thread(fn):
    """Start fn() in a worker thread; return once its statement waits for a lock the caller's transaction holds.

    Returns a function that joins the worker and gives its result (or raises its exception).
    """
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = fn()
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc
        finally:
            connections.close_all()

    worker = threading.Thread(target=run, name="queued-transfer")
    worker.start()
    deadline = time.monotonic() + 30  # a guard against a hang, not a timing assertion
    with connections["market"].cursor() as cursor:
        while not _blocked_behind_this_connection(cursor):
            assert worker.is_alive() and time.monotonic() < deadline, f"the worker never queued: {outcome}"

    def result():
        worker.join(60)
        assert not worker.is_alive()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    return result


def _transfer_queued_behind_a_balance_change(balance: int, changed_to: int, *, amount: int):
    """Accounts a (`balance`) and b (0); a transfer of `amount` from a to b that waits for the lock of
    a transaction changing a's balance to `changed_to` (committed before it goes on)."""
    user = make_user("payer")
    a, b = owned(user, balance), Account.objects.create(balance_cents=0)
    connections.close_all()
    with transaction.atomic(using="market"):
        Account.objects.filter(pk=a.pk).update(balance_cents=changed_to)
        result = _queued_behind_main_thread(lambda: _transfer(user, a, b, amount))
    return a, b, result


def test_money_that_arrived_while_waiting_for_the_lock_can_be_spent():
    # The statement's snapshot sees 10; the locked row holds 500. Relative arithmetic on the
    # snapshot's version would trip the balance CHECK before PostgreSQL rechecks the newest version.
    a, b, result = _transfer_queued_behind_a_balance_change(10, 500, amount=200)
    transfer, created = result()
    assert created and balances(a, b) == [300, 200]
    src_event = MarketOutbox.objects.using("market").get(model="market.account", action="update", object_pk=str(a.pk))
    assert src_event.changes == {"balance_cents": {"old": 500, "new": 300}}


def test_money_that_left_while_waiting_for_the_lock_is_refused():
    a, b, result = _transfer_queued_behind_a_balance_change(1000, 100, amount=200)
    with pytest.raises(InsufficientFunds):
        result()
    assert balances(a, b) == [100, 0] and not Transfer.objects.exists()


def _committed_copy(user, a, b, amount, key):
    """What a concurrent copy of the same request does in its transaction: move the money, record the transfer."""
    Account.objects.filter(pk=a.pk).update(balance_cents=a.balance_cents - amount)
    Account.objects.filter(pk=b.pk).update(balance_cents=b.balance_cents + amount)
    return Transfer.objects.create(
        from_account=a,
        to_account=b,
        amount_cents=amount,
        requester_id=user.pk,
        idempotency_key=key,
        request_hash=services.transfer_request_hash(from_account_id=a.pk, to_account_id=b.pk, amount_cents=amount),
        created_at=timezone.now(),
    )


@pytest.mark.parametrize(
    "opening, amount",
    [(1000, 100), (1000, 700)],
    ids=["the-copy-left-enough-so-the-unique-key-decides", "the-copy-drained-the-funds"],
)
def test_a_copy_that_committed_while_waiting_for_the_lock_is_replayed(opening, amount):
    # The copy is invisible to the statement's snapshot. With funds left, the INSERT hits the
    # unique key (nothing moves) and the replay follows; without, the refusal looks the key up afresh.
    user = make_user("payer")
    a, b = owned(user, opening), Account.objects.create(balance_cents=0)
    connections.close_all()
    with transaction.atomic(using="market"):
        first = _committed_copy(user, a, b, amount, "pay-once")
        result = _queued_behind_main_thread(lambda: _transfer(user, a, b, amount, key="pay-once"))
    transfer, created = result()
    assert (transfer.pk, created) == (first.pk, False)
    assert balances(a, b) == [opening - amount, amount]
    assert Transfer.objects.count() == 1
