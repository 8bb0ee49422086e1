"""The audit trail in the admin (read-only, filterable, linked from objects) and
admin writes: each add, change and delete is one event naming the admin user."""

from __future__ import annotations

import uuid

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.utils import timezone

from audit.admin import AuditHistoryAdminMixin
from audit.models import AuditEvent
from blog.models import AuditOutbox as BlogOutbox
from blog.models import Post, Tag
from config.users.tokens import api_token_create
from market.models import AuditOutbox as MarketOutbox
from market.models import Product

pytestmark = pytest.mark.django_db(databases=["default", "blog", "market"])

CHANGELIST = "/admin/audit/auditevent/"


def event(**kw) -> AuditEvent:
    values = {
        "id": uuid.uuid4(),
        "occurred_at": timezone.now(),
        "database": "market",
        "action": "update",
        "model": "market.product",
        "object_pk": "12",
        "actor": "alice",
        **kw,
    }
    return AuditEvent.objects.create(**values)


def test_audit_events_are_read_only_even_for_superusers(admin_client):
    e = event(changes={"stock": {"old": 1, "new": 2}})
    page = admin_client.get(CHANGELIST)
    assert page.status_code == 200
    assert "delete_selected" not in page.content.decode()
    assert admin_client.get(CHANGELIST + "add/").status_code == 403
    detail = admin_client.get(f"{CHANGELIST}{e.pk}/change/")
    assert detail.status_code == 200 and "&quot;stock&quot;" in detail.content.decode()
    assert 'name="_save"' not in detail.content.decode()
    assert admin_client.post(f"{CHANGELIST}{e.pk}/change/", {"actor": "mallory"}).status_code == 403
    assert admin_client.post(f"{CHANGELIST}{e.pk}/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.post(CHANGELIST, {"action": "delete_selected", "_selected_action": [e.pk]}).status_code in (
        200,
        302,
    )
    assert AuditEvent.objects.get(pk=e.pk).actor == "alice"


def test_history_link_filters_the_trail_to_one_object(admin_client):
    mine = event(object_pk="12")
    event(object_pk="13")
    event(model="blog.post", object_pk="12")
    page = admin_client.get(CHANGELIST, {"model": "market.product", "object_pk": "12"})
    assert page.status_code == 200  # not the ?e=1 redirect of a refused lookup
    assert [e.pk for e in page.context["cl"].result_list] == [mine.pk]


def test_the_mixin_adds_the_link_to_a_model_admin(admin_user):
    p = Product.objects.create(sku="linked", name="L", price_cents=1, stock=1)
    linked = admin.site._registry[Product]
    assert isinstance(linked, AuditHistoryAdminMixin)
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    assert "audit_history" in linked.get_readonly_fields(request, p)
    fields = [f for _, opts in linked.get_fieldsets(request, p) for f in opts["fields"]]
    assert fields.count("audit_history") == 1
    assert "audit_history" not in [f for _, opts in linked.get_fieldsets(request, None) for f in opts["fields"]]
    assert f'href="{CHANGELIST}?model=market.product&amp;object_pk={p.pk}"' in linked.audit_history(p)


def test_api_tokens_are_listed_without_their_digest(admin_client, admin_user):
    api_token_create(user=admin_user)
    token = admin_user.api_tokens.get()
    page = admin_client.get("/admin/users/apitoken/").content.decode()
    assert token.prefix in page and token.digest not in page
    assert admin_client.get("/admin/users/apitoken/add/").status_code == 403


def test_admin_add_change_delete_are_one_event_each_naming_the_admin(admin_client, admin_user):
    base = "/admin/market/product/"
    form = {"sku": "adm-1", "name": "Chair", "price_cents": "4500", "stock": "2", "_save": "Save"}
    assert admin_client.post(base + "add/", form).status_code == 302
    p = Product.objects.get(sku="adm-1")
    assert admin_client.post(f"{base}{p.pk}/change/", {**form, "name": "Armchair"}).status_code == 302
    assert admin_client.post(f"{base}{p.pk}/delete/", {"post": "yes"}).status_code == 302

    rows = list(MarketOutbox.objects.using("market").order_by("id"))
    assert [(r.action, r.model, r.object_pk) for r in rows] == [
        ("create", "market.product", str(p.pk)),
        ("update", "market.product", str(p.pk)),
        ("delete", "market.product", str(p.pk)),
    ]
    assert {(r.actor, r.actor_id) for r in rows} == {(admin_user.username, admin_user.pk)}
    assert rows[0].changes["name"] == {"old": None, "new": "Chair"}
    assert rows[1].changes["name"] == {"old": "Chair", "new": "Armchair"}
    assert "sku" not in rows[1].changes


def test_admin_post_with_tags_is_one_event(admin_client, admin_user):
    tag = Tag.objects.create(name="news", slug="news")
    BlogOutbox.objects.using("blog").all().delete()
    form = {
        "title": "Hello",
        "body": "Text",
        "status": "draft",
        "author": admin_user.username,
        "tags": [str(tag.pk)],
        "_save": "Save",
    }
    response = admin_client.post("/admin/blog/post/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    post = Post.objects.get(title="Hello")
    (row,) = BlogOutbox.objects.using("blog").all()
    assert (row.action, row.model, row.object_pk, row.actor) == (
        "create",
        "blog.post",
        str(post.pk),
        admin_user.username,
    )
    assert row.changes["title"]["new"] == "Hello" and row.changes["tags"] == {"old": [], "new": [tag.pk]}


def test_the_changelist_filters_offer_fixed_choices_and_read_no_distinct_values(admin_client):
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    event(database="blog", model="blog.post", action="create", actor="zed")
    with CaptureQueriesContext(connections["default"]) as queries:
        page = admin_client.get(CHANGELIST)
    assert page.status_code == 200
    assert not [q["sql"] for q in queries if "DISTINCT" in q["sql"].upper()]
    listed = [q["sql"] for q in queries if q["sql"].startswith('SELECT "audit_auditevent"."id"')]
    assert listed and all(
        'ORDER BY "audit_auditevent"."occurred_at" DESC, "audit_auditevent"."id" DESC' in q for q in listed
    )
    choices = {
        spec.title: [c["display"] for c in spec.choices(page.context["cl"])] for spec in page.context["cl"].filter_specs
    }
    assert choices["database"] == ["All", "blog", "market"]  # from the topology
    assert "market.transfer" in choices["model"] and "blog.post" in choices["model"]  # from the app registry
    assert choices["action"] == ["All", "Create", "Update", "Delete", "Bulk", "Deny"]  # AuditEvent.Action
    assert choices["occurred at"][:3] == ["Any date", "Today", "Past 7 days"]  # fixed ranges, no date hierarchy
    assert "actor" not in choices
    assert admin_client.get(CHANGELIST, {"database": "blog"}).context["cl"].result_count == 1


def test_search_is_an_exact_match_on_object_pk_or_actor(admin_client):
    by_pk = event(object_pk="SKU-17", actor="bob")
    by_actor = event(object_pk="3", actor="carol")
    both = event(object_pk="carol", actor="dave")

    def found(term: str) -> set:
        page = admin_client.get(CHANGELIST, {"q": term})
        assert page.status_code == 200
        return {e.pk for e in page.context["cl"].result_list}

    assert found("SKU-17") == {by_pk.pk}
    assert found("  bob ") == {by_pk.pk}
    assert found("carol") == {by_actor.pk, both.pk}  # an actor and an object_pk
    assert found("SKU") == set() and found("sku-17") == set()  # exact, not contains
    assert found("") == {by_pk.pk, by_actor.pk, both.pk}
