"""Capture: each create, update and delete of an audited model writes exactly one
outbox row, in the same database and transaction, with the right action, actor
and changed fields; nothing in that path touches the shared database."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connections, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from audit.capture import _excluded, audit_bulk, capture_paused, json_safe
from audit.context import acting_as
from blog.models import AuditOutbox as BlogOutbox
from blog.models import Post, Tag
from market.models import Account, Order, OrderLine, Product, Transfer
from market.models import AuditOutbox as MarketOutbox

pytestmark = pytest.mark.django_db(databases=["default", "blog", "market"])


def events(outbox, **filters) -> list:
    return list(outbox.objects.using(outbox._meta.app_label).filter(**filters).order_by("id"))


def product(**kw) -> Product:
    return Product.objects.create(**{"sku": "sku-1", "name": "Lamp", "price_cents": 1250, "stock": 3, **kw})


def test_create_update_delete_each_write_one_event_with_the_changes():
    with acting_as("alice"):
        p = product()
        p.name = "Desk lamp"
        p.price_cents = 1500
        p.save()
        pk = p.pk
        p.delete()
    create, update, delete = events(MarketOutbox)
    assert [e.action for e in (create, update, delete)] == ["create", "update", "delete"]
    assert {e.model for e in (create, update, delete)} == {"market.product"}
    assert {e.object_pk for e in (create, update, delete)} == {str(pk)}
    assert {e.actor for e in (create, update, delete)} == {"alice"}
    assert create.changes["sku"] == {"old": None, "new": "sku-1"}
    assert create.changes["stock"] == {"old": None, "new": 3}
    assert "id" not in create.changes
    assert update.changes["name"] == {"old": "Lamp", "new": "Desk lamp"}
    assert update.changes["price_cents"] == {"old": 1250, "new": 1500}
    assert "sku" not in update.changes and "stock" not in update.changes  # unchanged fields are left out
    assert delete.changes["name"] == {"old": "Desk lamp", "new": None}
    # JSON-safe values: datetimes as ISO-8601 strings.
    assert isinstance(create.changes["created"]["new"], str) and "T" in create.changes["created"]["new"]


def test_update_fields_records_only_those_fields_and_expressions_are_read_back():
    p = product()
    p.name = "changed in memory, not saved"
    p.stock = F("stock") - 1
    p.save(update_fields=["stock"])
    update = events(MarketOutbox, action="update")
    assert len(update) == 1
    assert update[0].changes == {"stock": {"old": 3, "new": 2}}


def test_a_save_that_changes_nothing_is_no_event():
    account = Account.objects.create(balance_cents=10)
    account.save(update_fields=["balance_cents"])
    assert [e.action for e in events(MarketOutbox)] == ["create"]


def test_queryset_delete_and_cascades_write_one_event_per_row():
    a = product(sku="a")
    b = product(sku="b")
    order = Order.objects.create(buyer_id=7, total_cents=2500)
    OrderLine.objects.create(order=order, product=a, quantity=1, unit_price_cents=1250)
    OrderLine.objects.create(order=order, product=b, quantity=1, unit_price_cents=1250)
    MarketOutbox.objects.using("market").all().delete()

    Order.objects.filter(pk=order.pk).delete()  # cascades to both lines
    deleted = events(MarketOutbox)
    assert sorted((e.model, e.action) for e in deleted) == [
        ("market.order", "delete"),
        ("market.orderline", "delete"),
        ("market.orderline", "delete"),
    ]
    Product.objects.filter(sku__in=["a", "b"]).delete()
    assert len(events(MarketOutbox, model="market.product", action="delete")) == 2


def test_the_event_shares_the_transaction_of_the_change():
    with pytest.raises(IntegrityError):
        with transaction.atomic(using="market"):
            product(sku="kept-out")
            raise IntegrityError("rolled back on purpose")
    assert not Product.objects.filter(sku="kept-out").exists()
    assert events(MarketOutbox) == []  # no change, no event

    # A failed write inside a savepoint leaves no event; the retry gets exactly one.
    with transaction.atomic(using="market"):
        product(sku="dup")
        with pytest.raises(IntegrityError), transaction.atomic(using="market"):
            product(sku="dup")
        product(sku="dup-2")
    assert sorted(e.changes["sku"]["new"] for e in events(MarketOutbox)) == ["dup", "dup-2"]


def test_capture_never_queries_the_shared_database():
    with CaptureQueriesContext(connections["default"]) as shared:
        p = product()
        p.stock = 9
        p.save()
        p.delete()
        post = Post.objects.create(title="T", slug="t", body="b", author_id=1)
        post.tags.add(Tag.objects.create(name="x", slug="x"))
    assert len(shared.captured_queries) == 0


def test_excluded_and_secret_fields_never_reach_an_event(monkeypatch):
    monkeypatch.setattr(Product, "audit_exclude", ("name",))
    p = product()
    p.name = "secret name"
    p.stock = 4
    p.save()
    p.name = "another secret"
    p.save(update_fields=["name"])  # only an excluded field: still an (empty) update
    create, update, update_excluded = events(MarketOutbox)
    assert "name" not in create.changes and "name" not in update.changes
    assert update.changes["stock"] == {"old": 3, "new": 4}
    assert update_excluded.action == "update" and update_excluded.changes == {}
    for name in ("password", "api_token", "client_secret", "key_digest", "API_KEY"):
        field = Product._meta.get_field("name").clone()
        field.set_attributes_from_name(name)
        assert _excluded(Product, field), name
    assert not _excluded(Product, Product._meta.get_field("sku"))


@pytest.mark.django_db(databases=["default", "blog", "market"], transaction=True)
def test_many_to_many_changes_fold_into_the_objects_event(settings):
    settings.AUDIT_RELAY_ON_COMMIT = False  # the rows stay in the outbox to be looked at
    first = Tag.objects.create(name="one", slug="one")
    second = Tag.objects.create(name="two", slug="two")
    with transaction.atomic(using="blog"):
        post = Post.objects.create(title="T", slug="t", body="b", author_id=1)
        post.tags.set([first, second])
    BlogOutbox.objects.using("blog").filter(model="blog.tag").delete()
    (create,) = events(BlogOutbox)
    assert create.action == "create"
    assert create.changes["tags"] == {"old": [], "new": sorted([first.pk, second.pk])}

    post.tags.set([second])  # its own transaction: an update event of its own
    (_, update) = events(BlogOutbox)
    assert update.action == "update" and update.changes == {
        "tags": {"old": sorted([first.pk, second.pk]), "new": [second.pk]}
    }


def test_actor_defaults_to_the_cli_user_and_names_users():
    product(sku="cli")

    class User:  # what `acting_as` gets from the admin or the API: a loaded user
        pk = 42
        is_authenticated = True

        def get_username(self):
            return "bob"

    with acting_as(User()):
        product(sku="bob")
    cli, bob = events(MarketOutbox)
    assert cli.actor.startswith("cli:") and cli.actor_id is None
    assert (bob.actor, bob.actor_id) == ("bob", 42)


def test_bulk_job_writes_one_event_per_run():
    with transaction.atomic(using="market"), capture_paused():
        for i in range(5):
            product(sku=f"bulk-{i}")
        audit_bulk(
            model_label="market.Product", using="market", counts={"created": 5, "updated": 0}, actor="cli:importer"
        )
    (bulk,) = events(MarketOutbox)
    assert (bulk.action, bulk.model, bulk.object_pk, bulk.actor) == ("bulk", "market.product", "", "cli:importer")
    assert bulk.changes == {"counts": {"created": 5, "updated": 0}}


def test_outbox_rows_are_not_audited_themselves():
    product()
    assert [e.model for e in events(MarketOutbox)] == ["market.product"]
    assert not hasattr(MarketOutbox, "audit_exclude")


def test_a_snapshot_of_a_locked_row_replaces_the_second_read():
    p = product()
    with transaction.atomic(using="market"):
        locked = Product.objects.select_for_update().get(pk=p.pk)
        locked.audit_snapshot()
        locked.stock = 2
        with CaptureQueriesContext(connections["market"]) as queries:
            locked.save(update_fields=["stock"])
    assert not [q for q in queries if q["sql"].startswith("SELECT")]
    update = events(MarketOutbox, action="update")
    assert [e.changes for e in update] == [{"stock": {"old": 3, "new": 2}}]
    # Without a snapshot the save reads (and locks) the row itself.
    p.refresh_from_db()
    p.stock = 1
    with CaptureQueriesContext(connections["market"]) as queries:
        p.save(update_fields=["stock"])
    assert [q for q in queries if q["sql"].startswith("SELECT") and "FOR UPDATE" in q["sql"]]


def test_a_transfer_written_in_plain_sql_records_the_same_events_save_would():
    from django.contrib.auth import get_user_model

    from market.services import transfer_create

    user = get_user_model().objects.create_user("payer")
    src = Account.objects.create(balance_cents=1000, owner_id=user.pk)  # only its owner moves its money
    dst = Account.objects.create(balance_cents=5)
    MarketOutbox.objects.using("market").all().delete()
    with acting_as(user):
        transfer, created = transfer_create(
            user=user, from_account_id=src.pk, to_account_id=dst.pk, amount_cents=300, idempotency_key="k-1"
        )
    assert created
    rows = events(MarketOutbox)
    assert [(e.action, e.model, e.object_pk, e.actor) for e in rows] == [
        ("update", "market.account", str(src.pk), "payer"),
        ("update", "market.account", str(dst.pk), "payer"),
        ("create", "market.transfer", str(transfer.pk), "payer"),
    ]
    assert rows[0].changes == {"balance_cents": {"old": 1000, "new": 700}}
    assert rows[1].changes == {"balance_cents": {"old": 5, "new": 305}}
    # The same fields, in the same shape, as a save() of the model would record.
    expected = {f.attname for f in Transfer._meta.concrete_fields if not f.primary_key}
    assert set(rows[2].changes) == expected
    assert rows[2].changes["amount_cents"] == {"old": None, "new": 300}
    assert {e.actor_id for e in rows} == {user.pk}
    # The values as stored, created_at to the microsecond, exactly as save() turns them into JSON.
    stored = Transfer.objects.get(pk=transfer.pk)
    assert rows[2].changes == {
        f.attname: {"old": None, "new": json_safe(getattr(stored, f.attname))}
        for f in Transfer._meta.concrete_fields
        if not f.primary_key
    }
    with acting_as(user):
        saved = Transfer.objects.create(
            from_account=src,
            to_account=dst,
            amount_cents=1,
            requester_id=user.pk,
            idempotency_key="k-2",
            request_hash="0" * 64,
        )
    (by_save,) = events(MarketOutbox, model="market.transfer", object_pk=str(saved.pk))

    def shape(changes):
        return {name: (type(v["old"]), type(v["new"])) for name, v in changes.items()}

    assert shape(rows[2].changes) == shape(by_save.changes)
    assert by_save.changes["created_at"]["new"] == json_safe(saved.created_at)
    Transfer.objects.filter(pk=saved.pk).delete()
    MarketOutbox.objects.using("market").filter(object_pk=str(saved.pk), model="market.transfer").delete()
    # A replay moves nothing and records nothing.
    with acting_as(user):
        again, created = transfer_create(
            user=user, from_account_id=src.pk, to_account_id=dst.pk, amount_cents=300, idempotency_key="k-1"
        )
    assert (again.pk, created) == (transfer.pk, False)
    assert len(events(MarketOutbox)) == 3
