"""Writes through the HTTP API of a real gunicorn: each change is exactly one audit
event in the shared database, naming the token's user, delivered by the server
itself shortly after the commit (no sweeper runs here)."""

from __future__ import annotations

import pytest

from tests.support.pgcluster import wait_for
from tests.support.servers import Gunicorn, http

pytestmark = pytest.mark.cluster

USERS = """
from django.contrib.auth import get_user_model
from config.users.tokens import api_token_create
User = get_user_model()
from tests.support.perms import grant
staff = User.objects.filter(username="auditor").first() or User.objects.create_user(
    "auditor", password="x" * 12, is_staff=True)
grant(staff, "market.add_product")
print(staff.pk, api_token_create(user=staff))
"""


def wait_events(stack, where: str, n: int) -> list[tuple]:
    """The events matching `where` once there are `n` (more would fail the caller's assertions)."""
    wait_for(lambda: len(stack.audit_rows(where)) >= n, timeout=15, what=f"{n} event(s) where {where}")
    return stack.audit_rows(where)


def test_api_writes_are_one_event_each_naming_the_token_user(stack):
    user_id, key = stack.shell(USERS).stdout.split()
    auth = {"Authorization": f"Token {key}"}
    with Gunicorn(stack.env, workers=2, threads=2).running() as server:
        status, body, _ = http(
            "POST",
            server.url("/api/market/products"),
            {"sku": "api-1", "name": "Kettle", "price_cents": 2999, "stock": 5},
            auth,
        )
        assert status == 201, body
        (product_pk,) = stack.sql("market", "SELECT id FROM market_product WHERE sku = 'api-1'")[0]

        status, body, _ = http(
            "POST", server.url("/api/blog/posts"), {"title": "Audited post", "body": "First", "status": "draft"}, auth
        )
        assert status == 201, body
        slug = body["data"]["slug"]
        (post_pk,) = stack.sql("blog", "SELECT id FROM blog_post WHERE slug = %s", (slug,))[0]
        status, body, _ = http("PATCH", server.url(f"/api/blog/posts/{slug}"), {"title": "Audited, edited"}, auth)
        assert status == 200, body

        status, body, _ = http(
            "POST", server.url("/api/market/orders"), {"items": [{"sku": "api-1", "quantity": 2}]}, auth
        )
        assert status == 201, body

        products = wait_events(stack, f"model = 'market.product' AND object_pk = '{product_pk}'", 2)
        posts = wait_events(stack, f"model = 'blog.post' AND object_pk = '{post_pk}'", 2)
        orders = wait_events(stack, "model IN ('market.order', 'market.orderline')", 2)
        # Nothing else arrives later: the outboxes are drained.
        wait_for(lambda: stack.outbox_ids() == set(), what="the outboxes to drain")

    assert len(stack.audit_rows()) == 6
    assert [r[1] for r in products] == ["create", "update"]
    assert products[0][6]["sku"] == {"old": None, "new": "api-1"}
    assert products[1][6]["stock"] == {"old": 5, "new": 3}  # the order took 2
    assert [r[1] for r in posts] == ["create", "update"]
    assert posts[1][6]["title"] == {"old": "Audited post", "new": "Audited, edited"}
    assert "body" not in posts[1][6]
    assert sorted((r[2], r[1]) for r in orders) == [("market.order", "create"), ("market.orderline", "create")]
    assert {(r[4], r[5]) for r in stack.audit_rows()} == {("auditor", int(user_id))}


def test_a_refused_write_leaves_no_event(stack):
    _, key = stack.shell(USERS).stdout.split()
    auth = {"Authorization": f"Token {key}"}
    with Gunicorn(stack.env, workers=1, threads=2).running() as server:
        assert (
            http(
                "POST",
                server.url("/api/market/products"),
                {"sku": "once", "name": "A", "price_cents": 1, "stock": 1},
                auth,
            )[0]
            == 201
        )
        status, body, _ = http(
            "POST", server.url("/api/market/products"), {"sku": "once", "name": "B", "price_cents": 1, "stock": 1}, auth
        )
        assert (status, body["error"]["code"]) == (409, "sku_exists")
        status, _, _ = http("POST", server.url("/api/market/orders"), {"items": [{"sku": "once", "quantity": 9}]}, auth)
        assert status == 409  # insufficient stock: nothing changed
        wait_events(stack, "model = 'market.product'", 1)
        wait_for(lambda: stack.outbox_ids() == set(), what="the outbox to drain")
    assert [(r[1], r[2]) for r in stack.audit_rows()] == [("create", "market.product")]
