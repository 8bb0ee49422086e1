"""Generated requests against every endpoint: never a 5xx, always the error shape, and a refused
request writes nothing.

Requests go in-process through Django's test client with the API's own middleware stack (the one
config/wsgi.py serves /api/ with), on the real test databases, as a superuser, a plain user, an
invalid token and anonymous. Bodies, path parameters, query strings and headers mix plausible values
with what breaks naive code: NUL, unpaired surrogates (as JSON's "\\ud800" escapes), non-ASCII
digits, whitespace and newlines around keys, over-long and slug-lengthening text, huge and
non-integer numbers, nested junk. The fast lane (config/httpkit/fastlane.py) gets its own test: it answers
like Django or steps aside.

Reproducible: derandomized, no example database. FUZZ_EXAMPLES=2000 searches harder.
"""

from __future__ import annotations

import json
import os
import re
from urllib.parse import quote

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import Client, override_settings
from django.test.client import ClientHandler
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from blog import services as blog_services
from config.users.tokens import api_token_create
from market.models import SKU_RE, Account, Product
from tests.support.wsgicall import call, environ

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
FUZZ = hsettings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is reproducible
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Every table a request could write, outboxes included (an UPDATE shows there as an audit row).
TABLES = {
    "blog": ["blog_post", "blog_tag", "blog_post_tags", "blog_auditoutbox"],
    "market": [
        "market_product",
        "market_order",
        "market_orderline",
        "market_account",
        "market_transfer",
        "market_auditoutbox",
    ],
}


def snapshot() -> dict[str, int]:
    counts = {}
    for alias, tables in TABLES.items():
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT " + ", ".join(f'(SELECT count(*) FROM "{t}")' for t in tables))
            counts.update(zip(tables, cursor.fetchone()))
    return counts


def without_audit(counts: dict[str, int]) -> dict[str, int]:
    return {t: n for t, n in counts.items() if not t.endswith("_auditoutbox")}


class ApiClientHandler(ClientHandler):
    """The test client's handler with the API middleware stack, as config.wsgi.ApiHandler loads it."""

    def load_middleware(self, is_async=False):
        with override_settings(MIDDLEWARE=settings.API_MIDDLEWARE):
            super().load_middleware(is_async)


class ApiClient(Client):
    def __init__(self, **defaults):
        super().__init__(**defaults)
        self.handler = ApiClientHandler(enforce_csrf_checks=False)


# Strategies ---------------------------------------------------------------------------------------

NASTY = [  # what PostgreSQL cannot store first: sampled_from favours the head of its list
    "\x00",
    "\ud800",
    "a\x00b",
    "x\udfffy",
    "\udbff\udbff",
    "\udc00",
    "",
    " ",
    "\u00b2",  # superscript two: str.isdigit() says yes, int() says no
    "\u0661",  # Arabic-Indic one: int() reads it as 1
    "\uff11",
    "A-1\n",
    " A-1",
    "A-1 ",
    "\n",
    "\r\n",
    "\t",
    "\u2028",
    "\ufeff",
    "\x7f",
    "\x85",
    "\u33af" * 50,  # 50 characters whose slug is 250
    "\ufdfa",
    "x" * 300,
    "\u00df",
    "\u0130",
    "\U0001f4a5",
    "%00",
    "../",
    "null",
    "-1",
    "1e999",
    "hello",
]
chars = st.one_of(st.characters(), st.characters(categories=["Cs"]), st.sampled_from("\x00\n\r\t \u00b2\u0661-_."))
text = st.one_of(
    st.sampled_from(NASTY),
    st.text(chars, max_size=24),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,8}", fullmatch=True),
    st.tuples(st.sampled_from(["A-1", "B-2", "hello"]), st.sampled_from(NASTY)).map("".join),
)
big = [0, 1, 2, -1, 2**31 - 1, 2**31, 2**63 - 1, 2**63, -(2**63), 10**12, 10**12 + 1, 10**30]
ints = st.one_of(st.integers(-3, 5), st.sampled_from(big), st.integers())
scalars = st.one_of(st.none(), st.booleans(), ints, st.floats(), text)
junk = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8
)


@st.composite
def existing(draw, kind: str):
    """The id of a row the fixture made (read at draw time: every test makes its own)."""
    return draw(st.sampled_from(IDS[kind]))


def chance(rnd, percent: int) -> bool:
    # The request's shape comes from one seeded Random, not from st.integers(): Hypothesis favours
    # some values and repeats draws within an example, which would skew the mix of valid and broken
    # parts far from these percentages. The broken values themselves are Hypothesis's.
    return rnd.random() * 100 < percent


IDS: dict[str, list[int]] = {}
word = st.from_regex(r"[A-Za-z][A-Za-z0-9 ]{0,12}[A-Za-z0-9]", fullmatch=True)
sku = st.one_of(st.sampled_from(["A-1", "B-2"]), st.from_regex(r"[A-Z][A-Z0-9-]{0,8}", fullmatch=True))
# A value each field accepts: a request starts valid, then up to two of its parts are broken, so
# every check is reached with the others passing.
VALID = {
    "sku": sku,
    "name": word,
    "price_cents": st.integers(0, 10**6),
    "stock": st.integers(0, 100),
    "title": word,
    "body": st.one_of(word, st.just("line one\nline two\r\n\ttab")),
    "status": st.sampled_from(["draft", "published"]),
    "tags": st.lists(word, max_size=3),
    "items": st.lists(
        st.fixed_dictionaries({"sku": st.sampled_from(["A-1", "B-2"]), "quantity": st.integers(1, 3)}),
        min_size=1,
        max_size=2,
    ),
    "balance_cents": st.integers(0, 10**6),
    "owner": existing("users"),
    "from_account": existing("accounts"),
    "to_account": existing("accounts"),
    "amount_cents": st.integers(1, 100),
}


def broken_text(near: str = "hello"):
    """Text to put where valid text was: known trouble, alone or inside `near`, or any text."""
    inside = st.tuples(st.integers(0, len(near)), st.sampled_from(NASTY)).map(
        lambda p: near[: p[0]] + p[1] + near[p[0] :]
    )
    return st.one_of(st.sampled_from(NASTY), inside, text)


# What replaces a valid value: mostly troublesome text, sometimes any JSON.
broken = st.one_of(broken_text(), broken_text(), broken_text(), ints, junk)
raw_bodies = st.one_of(st.binary(max_size=40), st.sampled_from([b"", b"{", b"[]", b"\xff\xfe", b'{"a":' * 200]))


def body_for(draw, rnd, fields: tuple[str, ...]) -> bytes:
    """A JSON text: the endpoint's fields (most of them valid), or JSON junk, or no JSON at all."""
    if chance(rnd, 8):
        return draw(raw_bodies)
    if chance(rnd, 8):
        return json.dumps(draw(junk)).encode()
    obj = {f: draw(VALID[f]) for f in fields if not chance(rnd, 10)}
    for _ in range(rnd.choice([0, 1, 1, 1, 2])):
        target = rnd.choice([*fields, "extra"])
        if chance(rnd, 10):
            obj.pop(target, None)
        elif target == "items" and isinstance(obj.get("items"), list) and obj["items"] and chance(rnd, 60):
            obj["items"][0][draw(st.sampled_from(["sku", "quantity", "x"]))] = draw(broken)
        elif target == "tags" and isinstance(obj.get("tags", []), list) and chance(rnd, 60):
            obj["tags"] = [*obj.get("tags", []), draw(broken)]
        else:
            obj[target] = draw(broken)
    return json.dumps(obj).encode()


def quoted(value: str) -> str:
    return quote(value, safe="", errors="surrogatepass")


def query(draw, rnd) -> str:
    pairs = []
    for _ in range(rnd.choice([1, 1, 2, 3])):
        name = rnd.choice(["limit", "limit", "cursor", "cursor"]) if chance(rnd, 90) else draw(broken_text())
        value = rnd.choice(["1", "2", "50", "0", "101", "A-1", "B-2", "hello"])
        pairs.append((name, draw(broken_text(value)) if chance(rnd, 60) else value))
    return "&".join(f"{quoted(k)}={quoted(v)}" for k, v in pairs)


latin1 = st.text(st.characters(min_codepoint=0, max_codepoint=0xFF, exclude_characters="\r\n"), max_size=30)
good_key = st.from_regex(r"[!-~]{1,20}", fullmatch=True)
bad_key = st.one_of(st.sampled_from(["k\n", " k", "k ", "k\x00", "k" * 256, "", "caf\u00e9"]), latin1)


def headers(draw, rnd, endpoint: str) -> dict:
    hdrs = {"who": rnd.choice(["root"] * 4 + ["plain"] * 2 + ["anonymous", "garbage"])}
    if chance(rnd, 90 if endpoint == "transfer" else 10):
        hdrs["Idempotency-Key"] = draw(good_key if chance(rnd, 70) else bad_key)
    if chance(rnd, 10):
        hdrs["Content-Type"] = draw(
            st.one_of(
                st.sampled_from(["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]), latin1
            )
        )
    if chance(rnd, 5):
        hdrs["Authorization"] = draw(st.one_of(latin1.map("Token ".__add__), latin1))
    if chance(rnd, 5):
        hdrs["Host"] = draw(st.sampled_from(["evil.example", "127.0.0.1:8000", "[::1", "a\x00b"]))
    return hdrs


METHODS = ["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"]

# method, path (with {} for the path parameter), the parameter's plausible values, body fields
ENDPOINTS = {
    "probes": ("GET", "{}", st.sampled_from(["/healthz", "/readyz", "/metrics"]), ()),
    "user": ("GET", "/api/users/{}", existing("users").map(str), ()),
    "posts": ("GET", "/api/blog/posts", None, ()),
    "post_create": ("POST", "/api/blog/posts", None, ("title", "body", "status", "tags")),
    "post": ("GET", "/api/blog/posts/{}", st.sampled_from(["hello", "a-draft", "nope"]), ()),
    "post_update": (
        "PATCH",
        "/api/blog/posts/{}",
        st.sampled_from(["hello", "a-draft"]),
        ("title", "body", "status", "tags"),
    ),
    "products": ("GET", "/api/market/products", None, ()),
    "product_create": ("POST", "/api/market/products", None, ("sku", "name", "price_cents", "stock")),
    "product": ("GET", "/api/market/products/{}", sku, ()),
    "order_create": ("POST", "/api/market/orders", None, ("items",)),
    "order": ("GET", "/api/market/orders/{}", existing("orders").map(str), ()),
    "account_create": ("POST", "/api/market/accounts", None, ("balance_cents", "owner")),
    "account": ("GET", "/api/market/accounts/{}", existing("accounts").map(str), ()),
    "transfer": ("POST", "/api/market/transfers", None, ("from_account", "to_account", "amount_cents")),
}


@st.composite
def requests(draw, endpoint: str):
    method, template, param, fields = ENDPOINTS[endpoint]
    rnd = draw(st.randoms(use_true_random=True))
    if chance(rnd, 15):
        method = draw(st.sampled_from(METHODS))
    path = template
    if template == "{}":
        path = draw(param)
    elif "{}" in template:
        value = draw(param)
        path = template.format(quoted(value if chance(rnd, 40) else draw(broken_text(value))))
    qs = query(draw, rnd) if chance(rnd, 70 if param is None else 15) else ""
    body = body_for(draw, rnd, fields) if fields or method in ("POST", "PATCH", "PUT") else b""
    return method, path, qs, body, headers(draw, rnd, endpoint)


# Fixtures -----------------------------------------------------------------------------------------


@pytest.fixture
def world():
    User = get_user_model()
    root = User.objects.create_superuser("fuzz-root", "root@example.com", "x")
    plain = User.objects.create_user("fuzz-plain", "plain@example.com", "x")
    tokens = {"root": api_token_create(user=root), "plain": api_token_create(user=plain)}
    Product.objects.create(sku="A-1", name="A", price_cents=100, stock=1000)
    Product.objects.create(sku="B-2", name="B", price_cents=10**12, stock=1)
    accounts = [Account.objects.create(balance_cents=10**6, owner_id=u.pk) for u in (root, plain, root)]
    blog_services.post_create(author=plain, title="Hello", body="Hi", status="published", tags=["t"])
    blog_services.post_create(author=plain, title="A draft", body="...", status="draft")
    from market.services import order_create

    order = order_create(buyer=plain, items=[{"sku": "A-1", "quantity": 1}])
    IDS.update(users=[root.pk, plain.pk], accounts=[a.pk for a in accounts], orders=[order.pk])
    return tokens


def assert_error_shape(response) -> None:
    if response.request["REQUEST_METHOD"] == "HEAD":
        return
    assert response["Content-Type"].startswith("application/json"), response.content[:200]
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    if error["code"] == "invalid_request":
        # A value's fault names it; only a body that is no JSON object at all has no field to name.
        assert isinstance(error.get("field"), str) or error["message"].startswith(("body ", "nothing to update")), error


def assert_clean_keys(value) -> None:
    """Keys an answer shows were stored exactly as their rules say (no "ABC\\n" sku got in)."""
    if isinstance(value, list):
        for item in value:
            assert_clean_keys(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            if key == "sku":
                assert SKU_RE.fullmatch(item), value
            elif key == "slug":
                assert re.fullmatch(r"[a-z0-9_-]+", item), value
            else:
                assert_clean_keys(item)


def send(client: Client, tokens: dict, request) -> object:
    method, path, qs, body, hdrs = request
    hdrs = dict(hdrs)
    who = hdrs.pop("who")
    if who in tokens:
        hdrs.setdefault("Authorization", f"Token {tokens[who]}")
    elif who == "garbage":
        hdrs.setdefault("Authorization", "Token not-a-key")
    content_type = hdrs.pop("Content-Type", "application/json")
    return client.generic(method, f"{path}?{qs}" if qs else path, body, content_type=content_type, headers=hdrs)


@pytest.mark.django_db(databases=["default", "blog", "market"])
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_no_input_crashes_and_a_refused_request_writes_nothing(world, endpoint):
    client = ApiClient()

    @FUZZ
    @given(requests(endpoint))
    def run(request):
        before = snapshot()
        with override_settings(API_WRITE_RATE_PER_MINUTE=0):  # the fuzzer writes faster than any client may
            response = send(client, world, request)
        assert response.status_code < 500, (response.status_code, response.content[:300])
        if response.status_code >= 400:
            assert_error_shape(response)
        elif request[0] != "HEAD" and response["Content-Type"].startswith("application/json"):
            assert_clean_keys(response.json())
        after = snapshot()
        if response.status_code in (403, 404, 409):
            # A decided refusal (someone else's account, say) may leave an audit row of the attempt.
            assert without_audit(after) == without_audit(before), "a refused request wrote"
        elif response.status_code >= 400 or request[0] in ("GET", "HEAD", "OPTIONS"):
            assert after == before, "a refused or read-only request wrote"

    run()


# The fast lane ------------------------------------------------------------------------------------


def _environ(method: str, path: str, body: bytes, hdrs: dict) -> dict:
    headers = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in hdrs.items()}
    return environ(path, method, body=body, CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(body)), **headers)


def _call(app, env: dict):
    answer = call(app, env)
    return None if answer is None else (int(answer[0].split()[0]), answer[2])


@st.composite
def lane_requests(draw):
    rnd = draw(st.randoms(use_true_random=True))
    if chance(rnd, 20):
        user = draw(st.one_of(existing("users"), st.sampled_from(big[:8])))
        return "GET", f"/api/users/{abs(user)}", b"", {}
    body = body_for(draw, rnd, ("from_account", "to_account", "amount_cents"))
    hdrs = {"Authorization": f"Token {IDS['token']}"}
    if chance(rnd, 90):
        hdrs["Idempotency-Key"] = draw(good_key if chance(rnd, 60) else bad_key)
    return "POST", "/api/market/transfers", body, hdrs


@pytest.mark.django_db(databases=["default", "market"], transaction=True)
@override_settings(API_WRITE_RATE_PER_MINUTE=0)  # the fuzzer writes faster than any client may
def test_the_fast_lane_answers_like_django_or_steps_aside():
    from config.httpkit.fastlane import Lane
    from config.wsgi import ApiHandler

    root = get_user_model().objects.create_superuser("lane-root", "root@example.com", "x")
    accounts = [Account.objects.create(balance_cents=10**6, owner_id=root.pk) for _ in range(2)]
    IDS.update(users=[root.pk], accounts=[a.pk for a in accounts], token=api_token_create(user=root))
    lane, django = Lane(), ApiHandler()

    @hsettings(FUZZ, max_examples=max(EXAMPLES // 2, 10))
    @given(lane_requests())
    def run(request):
        method, path, body, hdrs = request
        answer = _call(lane, _environ(method, path, body, hdrs))
        reference = _call(django, _environ(method, path, body, hdrs))
        assert reference[0] < 500, reference
        if answer is None:
            return  # stepped aside: Django's answer above is the one the client gets
        assert answer[0] < 500, answer
        if answer[0] >= 400:  # nothing was written: Django must say exactly the same
            assert answer == reference

    run()
