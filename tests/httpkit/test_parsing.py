"""Malformed input answers 400 invalid_request naming the field, before anything is written.

Each case here answered 500 (or was stored as is) before the input rules of config/httpkit/parsing.py.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from blog.models import Post, Tag
from config.users.tokens import api_token_create
from market.models import Account, Order, Product, Transfer
from tests.support.wsgicall import call, environ

pytestmark = pytest.mark.django_db(databases=["default", "blog", "market"])

SURROGATE_JSON = '"\\ud800"'  # the JSON text of an unpaired surrogate: json.loads accepts it


@pytest.fixture
def root():
    user = get_user_model().objects.create_superuser("root", "root@example.com", "x")
    user.token = api_token_create(user=user)
    return user


def send(method: str, path: str, raw: str | bytes | None = None, *, token: str | None = None, **headers):
    if token:
        headers["Authorization"] = f"Token {token}"
    kwargs = {"headers": headers}
    if raw is not None:
        kwargs.update(data=raw, content_type="application/json")
    return getattr(Client(), method)(path, **kwargs)


def assert_invalid(response, field: str):
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["field"] == field, error
    assert field in error["message"], error


def body(**fields) -> str:
    """JSON text; a value given as Raw(...) is inserted verbatim (for escapes json.dumps would not write)."""
    parts = [f"{json.dumps(k)}: {v.text if isinstance(v, Raw) else json.dumps(v)}" for k, v in fields.items()]
    return "{" + ", ".join(parts) + "}"


class Raw:
    def __init__(self, text: str):
        self.text = text


def counts() -> tuple[int, ...]:
    return (
        Product.objects.count(),
        Order.objects.count(),
        Account.objects.count(),
        Transfer.objects.count(),
        Post.objects.count(),
        Tag.objects.count(),
    )


# Text that PostgreSQL cannot store ----------------------------------------------------------------


@pytest.mark.parametrize("bad", [json.dumps("a\x00b"), SURROGATE_JSON, json.dumps("two\nlines")])
def test_product_name(root, bad):
    before = counts()
    r = send("post", "/api/market/products", body(sku="S-1", name=Raw(bad), price_cents=1), token=root.token)
    assert_invalid(r, "name")
    assert counts() == before


@pytest.mark.parametrize("field", ["title", "body"])
@pytest.mark.parametrize("bad", [json.dumps("a\x00b"), SURROGATE_JSON])
def test_post_title_and_body_on_create(root, field, bad):
    fields = {"title": "T", "body": "B", field: Raw(bad)}
    before = counts()
    assert_invalid(send("post", "/api/blog/posts", body(**fields), token=root.token), field)
    assert counts() == before


@pytest.mark.parametrize("field", ["title", "body"])
@pytest.mark.parametrize("bad", [json.dumps("a\x00b"), SURROGATE_JSON])
def test_post_title_and_body_on_patch(root, field, bad):
    r = send("post", "/api/blog/posts", body(title="Kept", body="Kept"), token=root.token)
    slug = r.json()["data"]["slug"]
    assert_invalid(send("patch", f"/api/blog/posts/{slug}", body(**{field: Raw(bad)}), token=root.token), field)
    post = Post.objects.get(slug=slug)
    assert (post.title, post.body) == ("Kept", "Kept")


def test_a_body_keeps_its_line_breaks_and_a_title_loses_outer_whitespace(root):
    r = send("post", "/api/blog/posts", body(title="  Title\n", body="one\r\ntwo\tthree\n"), token=root.token)
    assert r.status_code == 201, r.content
    assert (r.json()["data"]["title"], r.json()["data"]["body"]) == ("Title", "one\r\ntwo\tthree\n")


@pytest.mark.parametrize("bad", [json.dumps("a\x00b"), SURROGATE_JSON, json.dumps("A\n")])
def test_order_item_sku(root, bad):
    Product.objects.create(sku="A", name="A", price_cents=1, stock=5)
    before = counts()
    r = send("post", "/api/market/orders", '{"items": [{"sku": %s, "quantity": 1}]}' % bad, token=root.token)
    assert_invalid(r, "items[0].sku")
    assert counts() == before and Product.objects.get(sku="A").stock == 5


# Tags: the slug is longer than the name -----------------------------------------------------------


def test_a_tag_whose_slug_outgrows_its_column(root):
    name = "\u33af" * 50  # "㎯" (rad/s²): 50 characters, its slug "rads2" * 50 is 250
    assert len(name) == 50 and Tag._meta.get_field("slug").max_length < 250
    before = counts()
    r = send("post", "/api/blog/posts", body(title="T", body="B", tags=["fine", name]), token=root.token)
    assert_invalid(r, "tags")
    assert counts() == before


@pytest.mark.parametrize("bad", [json.dumps("a\x00b"), SURROGATE_JSON, json.dumps("line\nbreak")])
def test_tag_text(root, bad):
    before = counts()
    r = send("post", "/api/blog/posts", body(title="T", body="B", tags=Raw(f"[{bad}]")), token=root.token)
    assert_invalid(r, "tags")
    assert counts() == before


# Numbers that are digits only to str.isdigit() ----------------------------------------------------


@pytest.mark.parametrize("path", ["/api/market/products", "/api/blog/posts"])
@pytest.mark.parametrize("limit", ["\u00b2", "\u0661", "\uff11", "1\n", " 1", "1" * 400])
def test_limit(path, limit):
    r = Client().get(path, {"limit": limit})
    assert_invalid(r, "limit")


# Keys: whitespace, a final newline, NUL -----------------------------------------------------------


@pytest.mark.parametrize("sku", ["ABC\n", " ABC", "ABC ", "A\x00", "A" * 65])
def test_product_sku_on_create(root, sku):
    before = counts()
    r = send("post", "/api/market/products", body(sku=sku, name="n", price_cents=1), token=root.token)
    assert_invalid(r, "sku")
    assert counts() == before


@pytest.mark.parametrize("sku", ["ABC%0A", "%20ABC", "A%00", "x%00", "A" * 65, "bad%20sku", "%ED%A0%80"])
def test_product_sku_in_the_path(sku):
    Product.objects.create(sku="ABC", name="A", price_cents=1, stock=5)
    assert_invalid(Client().get(f"/api/market/products/{sku}"), "sku")


@pytest.mark.parametrize("slug", ["x%00", "kept%0A", "%20kept", "a%20b", "x" * 256])
def test_post_slug_in_the_path(root, slug):
    send("post", "/api/blog/posts", body(title="Kept", body="B", status="published"), token=root.token)
    assert_invalid(Client().get(f"/api/blog/posts/{slug}"), "slug")
    assert_invalid(send("patch", f"/api/blog/posts/{slug}", body(title="New"), token=root.token), "slug")
    assert Post.objects.get(slug="kept").title == "Kept"


@pytest.mark.parametrize("cursor", ["ABC\n", " ABC", "A\x00", "A" * 65])
def test_product_cursor(cursor):
    assert_invalid(Client().get("/api/market/products", {"cursor": cursor}), "cursor")


def test_post_cursor(root):
    for i in range(3):
        send("post", "/api/blog/posts", body(title=f"P{i}", body="B", status="published"), token=root.token)
    cursor = Client().get("/api/blog/posts", {"limit": "1"}).json()["next"]
    assert Client().get("/api/blog/posts", {"cursor": cursor}).status_code == 200
    for bad in (cursor + "\n", " " + cursor, cursor + "\x00"):
        assert_invalid(Client().get("/api/blog/posts", {"cursor": bad}), "cursor")


@pytest.mark.parametrize(
    "stamp",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-01-01T00:00:00+00:00|\u0661"],
)
def test_post_cursor_that_decodes_to_a_date_out_of_range(stamp):
    import base64

    raw = stamp if "|" in stamp else f"{stamp}|1"
    cursor = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
    assert_invalid(Client().get("/api/blog/posts", {"cursor": cursor}), "cursor")


@pytest.mark.parametrize("key", ["k\n", " k", "k\x00", "k" * 256, "caf\u00e9"])
def test_idempotency_key(root, key):
    a, b = Account.objects.create(balance_cents=100), Account.objects.create(balance_cents=0)
    before = counts()
    transfer = body(from_account=a.pk, to_account=b.pk, amount_cents=1)
    r = send("post", "/api/market/transfers", transfer, token=root.token, **{"Idempotency-Key": key})
    assert_invalid(r, "Idempotency-Key")
    assert counts() == before and Account.objects.get(pk=a.pk).balance_cents == 100


def test_a_host_django_refuses_gets_the_error_shape():
    r = Client().get("/api/blog/posts", headers={"Host": "evil.example"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_request"
    assert r.json()["error"]["field"] == "Host"


def test_missing_and_unknown_fields_name_the_first(root):
    r = send("post", "/api/market/products", body(sku="S", price_cents=1, name="n", colour="red"), token=root.token)
    assert_invalid(r, "colour")
    assert r.json()["error"]["fields"] == ["colour"]
    r = send("post", "/api/market/products", body(sku="S"), token=root.token)
    assert_invalid(r, "name")
    assert r.json()["error"]["fields"] == ["name", "price_cents"]


# The fast lane answers a malformed transfer exactly as Django does --------------------------------


def _environ(body_bytes: bytes, token: str, key: str) -> dict:
    return environ(
        "/api/market/transfers",
        "POST",
        body=body_bytes,
        HTTP_AUTHORIZATION=f"Token {token}",
        HTTP_IDEMPOTENCY_KEY=key,
        CONTENT_TYPE="application/json",
        CONTENT_LENGTH=str(len(body_bytes)),
    )


def _call(app, env: dict):
    answer = call(app, env)
    return None if answer is None else (answer[0], answer[2])


@pytest.mark.django_db(databases=["default", "market"], transaction=True)
def test_the_fast_lane_refuses_malformed_transfers_as_django_does():
    from config.httpkit.fastlane import Lane
    from config.wsgi import ApiHandler

    user = get_user_model().objects.create_superuser("lane-root", "l@example.com", "x")
    token = api_token_create(user=user)
    a, b = Account.objects.create(balance_cents=100), Account.objects.create(balance_cents=0)
    good = {"from_account": a.pk, "to_account": b.pk, "amount_cents": 1}
    cases = [
        (json.dumps(good), "k\n", "Idempotency-Key"),
        (json.dumps(good), "k\x00", "Idempotency-Key"),
        (json.dumps(good), "", "Idempotency-Key"),
        (body(from_account=a.pk, to_account=b.pk, amount_cents=Raw(SURROGATE_JSON)), "k1", "amount_cents"),
        (json.dumps({**good, "amount_cents": 1.5}), "k2", "amount_cents"),
        (json.dumps({**good, "amount_cents": 10**30}), "k3", "amount_cents"),
        (json.dumps({**good, "from_account": "\x00"}), "k4", "from_account"),
        (json.dumps({**good, "to_account": a.pk}), "k5", "to_account"),
    ]
    for text, key, field in cases:
        raw = text.encode()
        lane = _call(Lane(), _environ(raw, token, key))
        assert lane is not None, (text, key)  # well-formed enough for the lane: it answers itself
        django = _call(ApiHandler(), _environ(raw, token, key))
        assert lane == django, (text, key)
        assert lane[0].startswith("400") and json.loads(lane[1])["error"]["field"] == field, lane
    # Missing and unknown fields: the same schema (TransferIn) refuses them in both, alike.
    for text in ('{"from_account": 1}', '{"from_account": 1, "to_account": 2, "amount_cents": 3, "x": 4}'):
        lane, django = (_call(app, _environ(text.encode(), token, "k9")) for app in (Lane(), ApiHandler()))
        assert lane == django and lane[0].startswith("400"), text
        assert json.loads(lane[1])["error"]["code"] == "invalid_request"
    # A body that is not a JSON object goes to Django, which answers 400.
    assert _call(Lane(), _environ(b"[1]", token, "k9")) is None
    status, content = _call(ApiHandler(), _environ(b"[1]", token, "k9"))
    assert status.startswith("400") and json.loads(content)["error"]["code"] == "invalid_request"
    assert Transfer.objects.count() == 0 and Account.objects.get(pk=a.pk).balance_cents == 100
