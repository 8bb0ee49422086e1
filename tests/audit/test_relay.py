"""The relay in-process: outbox rows become AuditEvents in the shared database,
exactly once, and after a commit the process's relay thread delivers them by itself."""

from __future__ import annotations

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from audit import relay
from audit.models import AuditEvent
from blog.models import AuditOutbox as BlogOutbox
from blog.models import Post
from market.models import AuditOutbox as MarketOutbox
from market.models import Product
from tests.support.pgcluster import wait_for

DBS = ["default", "blog", "market"]


@pytest.mark.django_db(databases=DBS)
def test_relay_delivers_every_domain_outbox_once():
    p = Product.objects.create(sku="r-1", name="One", price_cents=1, stock=1)
    p.stock = 0
    p.save()
    Post.objects.create(title="T", slug="t", body="b", author_id=1)
    pending = {r.event_id: r for r in [*MarketOutbox.objects.using("market"), *BlogOutbox.objects.using("blog")]}

    assert relay.relay_all() == 3
    assert relay.relay_all() == 0
    events = {e.id: e for e in AuditEvent.objects.all()}
    assert events.keys() == pending.keys()
    for event_id, row in pending.items():
        event = events[event_id]
        assert (event.occurred_at, event.actor, event.action, event.model, event.object_pk, event.changes) == (
            row.occurred_at,
            row.actor,
            row.action,
            row.model,
            row.object_pk,
            row.changes,
        )
        assert event.database == ("market" if row.model.startswith("market.") else "blog")
    assert not MarketOutbox.objects.using("market").exists() and not BlogOutbox.objects.using("blog").exists()


@pytest.mark.django_db(databases=DBS)
def test_a_redelivered_row_is_ignored_not_duplicated():
    rows = MarketOutbox.objects.using("market").bulk_create(
        [MarketOutbox(action="create", model="market.product", object_pk=str(i)) for i in range(5)]
    )
    # A relay that died after the shared commit but before deleting its rows.
    AuditEvent.objects.create(
        id=rows[0].event_id,
        occurred_at=rows[0].occurred_at,
        database="market",
        action="create",
        model="market.product",
        object_pk="0",
    )
    assert relay.relay_once("market", batch_size=3) == 3
    assert relay.relay_once("market", batch_size=3) == 2
    assert AuditEvent.objects.count() == 5
    assert set(AuditEvent.objects.values_list("id", flat=True)) == {r.event_id for r in rows}


@pytest.mark.django_db(databases=DBS)
def test_outbox_status_and_gauges_follow_the_backlog():
    old = timezone.now() - timezone.timedelta(seconds=90)
    MarketOutbox.objects.using("market").bulk_create(
        [MarketOutbox(action="create", model="market.product", object_pk=str(i), occurred_at=old) for i in range(4)]
    )
    status = relay.outbox_status()
    assert set(status) == {"blog", "market"}  # every database with an outbox, from the topology
    assert status["market"]["depth"] == 4 and status["market"]["oldest_age_s"] >= 90
    assert status["blog"] == {"depth": 0, "oldest_age_s": None}
    assert REGISTRY.get_sample_value("platform_audit_outbox_depth", {"database": "market"}) == 4
    assert REGISTRY.get_sample_value("platform_audit_outbox_oldest_age_seconds", {"database": "market"}) >= 90

    relay.relay_all()
    assert relay.outbox_status()["market"] == {"depth": 0, "oldest_age_s": None}
    assert REGISTRY.get_sample_value("platform_audit_outbox_depth", {"database": "market"}) == 0


@pytest.mark.django_db(databases=[*DBS, "default_jobs", "blog_jobs", "market_jobs"], transaction=True)
def test_after_commit_the_process_delivers_the_event_by_itself(settings):
    settings.AUDIT_RELAY_ON_COMMIT = True
    product = Product.objects.create(sku="after-commit", name="A", price_cents=1, stock=1)
    wait_for(
        lambda: AuditEvent.objects.filter(model="market.product", object_pk=str(product.pk)).exists(),
        timeout=10,
        what="the relay thread to deliver the event",
    )
    assert relay.flush(10)
    assert AuditEvent.objects.filter(model="market.product", object_pk=str(product.pk)).count() == 1
    assert not MarketOutbox.objects.using("market").exists()
