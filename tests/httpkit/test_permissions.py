"""The permission model (docs/permissions.md) as one table: every rule, through the API, for
every role. Django's permissions decide; superusers hold every permission; staff status alone
grants nothing. Where an object's existence is private (accounts, orders, drafts) a refusal is
the same 404 as for a missing object."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from blog.models import Post
from blog.services import post_create
from config.users.tokens import api_token_create
from market.models import Account, AuditOutbox, Order, Product, Transfer
from tests.support.perms import grant

pytestmark = pytest.mark.django_db(databases=["default", "blog", "market"])

ROLES = ("anonymous", "owner", "another user", "permission holder", "superuser", "staff")


@dataclass
class World:
    users: dict
    tokens: dict
    account: Account
    house: Account  # no owner
    order: Order
    draft: Post
    published: Post


def make_world(holder_perms: tuple[str, ...]) -> World:
    User = get_user_model()
    users = {
        "owner": User.objects.create_user("owner", "owner@example.com", "x"),
        "another user": User.objects.create_user("another", "another@example.com", "x"),
        "permission holder": User.objects.create_user("holder", "holder@example.com", "x"),
        "superuser": User.objects.create_superuser("root", "root@example.com", "x"),
        "staff": User.objects.create_user("staff", "staff@example.com", "x", is_staff=True),
    }
    grant(users["permission holder"], *holder_perms)
    owner = users["owner"]
    product = Product.objects.create(sku="P-1", name="Thing", price_cents=100, stock=10)
    order = Order.objects.create(buyer_id=owner.pk, total_cents=100)
    order.lines.create(product=product, quantity=1, unit_price_cents=100)
    return World(
        users=users,
        tokens={role: api_token_create(user=user) for role, user in users.items()},
        account=Account.objects.create(balance_cents=1000, owner_id=owner.pk),
        house=Account.objects.create(balance_cents=1000),
        order=order,
        draft=post_create(author=owner, title="Owner draft", body="b", status="draft"),
        published=post_create(author=owner, title="Owner post", body="b", status="published"),
    )


@dataclass(frozen=True)
class Rule:
    perms: tuple[str, ...]  # what the "permission holder" holds
    method: str
    path: str  # formatted with the world
    body: dict | None
    # the status for each role, in ROLES order
    expect: tuple[int, int, int, int, int, int]


RULES = {
    "create a product": Rule(
        ("market.add_product",),
        "post",
        "/api/market/products",
        {"sku": "NEW-{n}", "name": "New", "price_cents": 1, "stock": 1},
        (401, 403, 403, 201, 201, 403),
    ),
    "open an account": Rule(
        ("market.add_account",),
        "post",
        "/api/market/accounts",
        {"owner": "{owner_id}", "balance_cents": 5},
        (401, 403, 403, 201, 201, 403),
    ),
    "read an account": Rule(
        ("market.view_account",), "get", "/api/market/accounts/{account}", None, (401, 200, 404, 200, 200, 404)
    ),
    "read an account without owner": Rule(
        ("market.view_account",), "get", "/api/market/accounts/{house}", None, (401, 404, 404, 200, 200, 404)
    ),
    "move money out of an account": Rule(
        ("market.transfer_any_account",),
        "post",
        "/api/market/transfers",
        {"from_account": "{account}", "to_account": "{house}", "amount_cents": 7},
        (401, 201, 404, 201, 201, 404),
    ),
    "move money out of an account without owner": Rule(
        ("market.transfer_any_account",),
        "post",
        "/api/market/transfers",
        {"from_account": "{house}", "to_account": "{account}", "amount_cents": 7},
        (401, 404, 404, 201, 201, 404),
    ),
    "place an order": Rule(
        (), "post", "/api/market/orders", {"items": [{"sku": "P-1", "quantity": 1}]}, (401, 201, 201, 201, 201, 201)
    ),
    "read an order": Rule(
        ("market.view_order",), "get", "/api/market/orders/{order}", None, (401, 200, 404, 200, 200, 404)
    ),
    "read a draft": Rule(("blog.view_post",), "get", "/api/blog/posts/{draft}", None, (404, 200, 404, 200, 200, 404)),
    "read a published post": Rule((), "get", "/api/blog/posts/{published}", None, (200, 200, 200, 200, 200, 200)),
    "write a post": Rule((), "post", "/api/blog/posts", {"title": "Mine", "body": "b"}, (401, 201, 201, 201, 201, 201)),
    "edit a published post": Rule(
        ("blog.change_post",),
        "patch",
        "/api/blog/posts/{published}",
        {"title": "Edited"},
        (401, 200, 403, 200, 200, 403),
    ),
    "edit a draft": Rule(
        ("blog.change_post",), "patch", "/api/blog/posts/{draft}", {"title": "Edited"}, (401, 200, 404, 200, 200, 404)
    ),
    "read a user": Rule(("auth.view_user",), "get", "/api/users/{owner_id}", None, (200, 200, 200, 200, 200, 200)),
}

# GET /api/users/<id>: the email only for the user themself and holders of auth.view_user.
SEES_EMAIL = {"anonymous": False, "owner": True, "another user": False, "permission holder": True}
SEES_EMAIL.update({"superuser": True, "staff": False})


def fill(value, world: World, n: int):
    names = {
        "account": world.account.pk,
        "house": world.house.pk,
        "order": world.order.pk,
        "owner_id": world.users["owner"].pk,
    }
    if isinstance(value, dict):
        return {k: fill(v, world, n) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, world, n) for v in value]
    if isinstance(value, str) and value.startswith("{") and value.endswith("}") and value[1:-1] in names:
        return names[value[1:-1]]  # a whole-value placeholder keeps its integer type
    if isinstance(value, str):
        return value.format(n=n)
    return value


def request(rule: Rule, world: World, role: str, n: int = 0):
    path = rule.path.format(
        account=world.account.pk,
        house=world.house.pk,
        order=world.order.pk,
        draft=world.draft.slug,
        published=world.published.slug,
        owner_id=world.users["owner"].pk,
    )
    headers = {} if role == "anonymous" else {"Authorization": f"Token {world.tokens[role]}"}
    if rule.method == "post" and path.endswith("/transfers"):
        headers["Idempotency-Key"] = f"perm-{role}-{n}".replace(" ", "-")
    client = Client()
    if rule.body is None:
        return getattr(client, rule.method)(path, headers=headers)
    body = json.dumps(fill(rule.body, world, n))
    return getattr(client, rule.method)(path, body, content_type="application/json", headers=headers)


def state(world: World) -> tuple:
    """Everything a refused request must leave alone."""
    return (
        sorted(Account.objects.values_list("id", "balance_cents")),
        Transfer.objects.count(),
        Product.objects.count(),
        Order.objects.count(),
        sorted(Post.objects.values_list("slug", "title")),
    )


ERROR_CODES = {401: "not_authenticated", 403: "forbidden"}
MISSING_ID, MISSING_SLUG = 987654, "no-such-post"


def missing_twin(rule: Rule, world: World) -> tuple[Rule, str, str]:
    """The same request naming an object that does not exist; (rule, the object's id or slug, the missing one)."""
    for name, obj in (("account", world.account), ("house", world.house), ("order", world.order)):
        placeholder = "{" + name + "}"
        if placeholder in rule.path:
            path = rule.path.replace(placeholder, str(MISSING_ID))
            return Rule(rule.perms, rule.method, path, rule.body, rule.expect), str(obj.pk), str(MISSING_ID)
        if rule.body and rule.body.get("from_account") == placeholder:
            body = {**rule.body, "from_account": MISSING_ID}
            return Rule(rule.perms, rule.method, rule.path, body, rule.expect), str(obj.pk), str(MISSING_ID)
    for name, post in (("draft", world.draft), ("published", world.published)):
        if "{" + name + "}" in rule.path:
            path = rule.path.replace("{" + name + "}", MISSING_SLUG)
            return Rule(rule.perms, rule.method, path, rule.body, rule.expect), post.slug, MISSING_SLUG
    raise AssertionError(f"no object in {rule}")


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("action", list(RULES))
def test_the_permission_table(action, role):
    rule = RULES[action]
    world = make_world(rule.perms)
    before = state(world)
    r = request(rule, world, role)
    expected = rule.expect[ROLES.index(role)]
    assert r.status_code == expected, r.content
    body = r.json()
    if expected >= 400:
        assert state(world) == before  # nothing changed
        error = body["error"]
        if expected == 404:
            # Exactly the answer for a missing object: the id cannot be probed.
            twin, value, missing_value = missing_twin(rule, world)
            missing = request(twin, world, role, n=1)
            assert missing.status_code == 404
            other = missing.json()["error"]
            assert error["code"] == other["code"] and error["code"].endswith("_not_found")
            assert error["message"] == other["message"].replace(missing_value, value)
            assert set(error) == set(other)
        else:
            assert error["code"] == ERROR_CODES[expected]
    if action == "read a user":
        assert ("email" in body["data"]) is SEES_EMAIL[role]
        if SEES_EMAIL[role]:
            assert body["data"]["email"] == "owner@example.com"


def test_every_refused_transfer_is_audited_and_nothing_else_is():
    rule = RULES["move money out of an account"]
    world = make_world(rule.perms)
    for n, role in enumerate(ROLES):
        request(rule, world, role, n)
    denied = AuditOutbox.objects.using("market").filter(action="deny").order_by("id")
    assert [(d.actor, d.object_pk) for d in denied] == [
        ("another", str(world.account.pk)),
        ("staff", str(world.account.pk)),
    ]
