"""The fast lane (config/httpkit/fastlane.py) answers exactly what Django's path answers, or steps aside.

Each request is sent to both, in-process against the test database: the
project's WSGI application (lane first) and the API handler alone (Django's
request path); status, headers and body must be identical.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connections
from django.test import override_settings
from django.utils import timezone
from prometheus_client import REGISTRY

from config.httpkit.fastlane import Lane
from config.multidb import replicas
from config.multidb.resilience import breaker
from config.users.tokens import api_token_create
from config.wsgi import ApiHandler, dispatcher
from market.models import Account, AuditOutbox, Transfer
from tests.support.wsgicall import call, environ

pytestmark = pytest.mark.django_db(databases=["default", "market"], transaction=True)


def both(env_factory) -> tuple[tuple, tuple]:
    """(lane's answer, Django's answer) to the same request; the lane must not step aside."""
    lane = call(Lane(), env_factory())
    assert lane is not None, "the lane stepped aside"
    return lane, call(ApiHandler(), env_factory())


@pytest.fixture
def user():
    return get_user_model().objects.create_user("lane-user", "lane@example.com", "x")


def test_found_and_not_found_are_identical_to_django(user):
    for user_id in (user.pk, user.pk + 1000, 10**25):
        lane, django = both(lambda: environ(f"/api/users/{user_id}"))
        assert lane == django
    status, headers, body = both(lambda: environ(f"/api/users/{user.pk}"))[0]
    assert status == "200 OK" and headers["Content-Length"] == str(len(body))
    assert body == b'{"data": {"id": %d, "username": "lane-user"}}' % user.pk  # no email for anonymous


def _token_of(username: str, *, staff: bool = False, superuser: bool = False, perms=()) -> str:
    from tests.support.perms import grant

    someone = get_user_model().objects.create_user(
        username, f"{username}@example.com", "x", is_staff=staff or superuser, is_superuser=superuser
    )
    grant(someone, *perms)
    return api_token_create(user=someone)


@pytest.mark.parametrize(
    "role, sees_email",
    [
        ("anonymous", False),
        ("themself", True),
        ("another user", False),
        ("staff without permissions", False),
        ("holder of auth.view_user", True),
        ("superuser", True),
    ],
)
def test_the_email_is_shown_to_the_user_and_view_user_and_the_lane_agrees(user, role, sees_email):
    token = {
        "anonymous": None,
        "themself": api_token_create(user=user) if role == "themself" else None,
        "another user": _token_of("someone"),
        "staff without permissions": _token_of("staffer", staff=True),
        "holder of auth.view_user": _token_of("viewer", perms=["auth.view_user"]),
        "superuser": _token_of("root", superuser=True),
    }[role]
    extra = {"HTTP_AUTHORIZATION": f"Token {token}"} if token else {}
    lane, django = both(lambda: environ(f"/api/users/{user.pk}", **extra))
    assert lane == django and lane[0] == "200 OK"
    assert (b'"email": "lane@example.com"' in lane[2]) is sees_email
    lane, django = both(lambda: environ(f"/api/users/{user.pk + 1000}", **extra))
    assert lane == django and lane[0] == "404 Not Found"


def test_an_invalid_token_on_the_user_route_gets_djangos_401(user):
    env = environ(f"/api/users/{user.pk}", HTTP_AUTHORIZATION="Token not-a-key")
    assert Lane()(env, lambda *a: None) is None
    app = dispatcher(ApiHandler(), None, Lane())
    status, _, body = call(app, environ(f"/api/users/{user.pk}", HTTP_AUTHORIZATION="Token not-a-key"))
    assert status.startswith("401") and b"not_authenticated" in body


def test_an_anonymous_read_costs_one_query_and_a_token_read_two(user):
    from django.test.utils import CaptureQueriesContext

    token = api_token_create(user=user)
    with CaptureQueriesContext(connections["default"]) as queries:
        assert call(Lane(), environ(f"/api/users/{user.pk}"))[0] == "200 OK"
    assert len(queries) == 1
    call(Lane(), environ(f"/api/users/{user.pk}", HTTP_AUTHORIZATION=f"Token {token}"))  # first use: last_used_at
    with CaptureQueriesContext(connections["default"]) as queries:
        answer = call(Lane(), environ(f"/api/users/{user.pk}", HTTP_AUTHORIZATION=f"Token {token}"))
    assert answer[0] == "200 OK" and b"email" in answer[2]
    assert len(queries) == 2  # the token (with its user's permissions) and the user


def test_the_connection_goes_back_to_the_pool_and_metrics_count_it(user):
    def sample(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0.0

    requests = sample("platform_http_requests_total", domain="users", status="200")
    holds = sample("platform_db_connection_hold_seconds_count", route="api/users/<int:user_id>", alias="default")
    assert call(Lane(), environ(f"/api/users/{user.pk}"))[0] == "200 OK"
    assert connections["default"].connection is None
    assert sample("platform_http_requests_total", domain="users", status="200") == requests + 1
    assert (
        sample("platform_db_connection_hold_seconds_count", route="api/users/<int:user_id>", alias="default")
        == holds + 1
    )


def test_database_unavailable_is_the_same_503_naming_the_database(user):
    shared = breaker.breaker_for("default")
    shared.open_seconds = 60  # no probe closes it during the test
    try:
        for _ in range(shared.failures_to_open):
            shared.failure("test: refused")
        lane, django = both(lambda: environ(f"/api/users/{user.pk}"))
    finally:
        breaker.reset_all()
    assert lane[0] == "503 Service Unavailable"
    assert b'"code": "database_unavailable"' in lane[2] and b'"database": "default"' in lane[2]
    for answer in (lane, django):  # retry_after counts down between the two calls
        answer[1].pop("Retry-After")
    assert (lane[0], lane[1]) == (django[0], django[1])
    assert lane[2].split(b'"retry_after_ms"')[0] == django[2].split(b'"retry_after_ms"')[0]


@override_settings(SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https"), SECURE_HSTS_SECONDS=3600)
def test_https_behind_a_proxy_gets_the_same_security_headers(user):
    lane, django = both(lambda: environ(f"/api/users/{user.pk}", HTTP_X_FORWARDED_PROTO="https"))
    assert lane == django
    assert lane[1]["Strict-Transport-Security"] == "max-age=3600"


@pytest.mark.parametrize(
    "env",
    [
        environ("/api/users/1", method="POST"),
        environ("/api/users/1", method="HEAD"),
        environ("/api/users/1/"),
        environ("/api/users/x1"),
        environ("/api/blog/posts"),
        environ("/api/users/1", host="evil.example.com"),
    ],
    ids=["post", "head", "slash", "not-int", "other-route", "forged-host"],
)
def test_anything_else_falls_through_to_django(env):
    assert Lane()(env, lambda *a: None) is None


def test_a_forged_host_gets_djangos_400_through_the_application():
    app = dispatcher(ApiHandler(), None, Lane())
    assert call(app, environ("/api/users/1", host="evil.example.com"))[0].startswith("400")


@override_settings(SECURE_SSL_REDIRECT=True)
def test_an_insecure_request_under_ssl_redirect_falls_through():
    assert Lane()(environ("/api/users/1"), lambda *a: None) is None
    assert Lane()(environ("/api/users/1", **{"wsgi.url_scheme": "https"}), lambda *a: None) is not None


def test_with_a_replica_the_read_goes_through_django(monkeypatch):
    monkeypatch.setattr(replicas, "has_replica", lambda base: True)
    assert Lane()(environ("/api/users/1"), lambda *a: None) is None


# POST /api/market/transfers ------------------------------------------------------------


@pytest.fixture
def owner():
    user = get_user_model().objects.create_user("lane-owner", "owner@example.com", "x")
    user.token = api_token_create(user=user)
    return user


@pytest.fixture
def accounts(owner):
    return (
        Account.objects.create(balance_cents=1000, owner_id=owner.pk),
        Account.objects.create(balance_cents=0),
        Account.objects.create(balance_cents=500, owner_id=owner.pk + 1),
    )


def transfer(token: str | None, body, key: str | None = "k-1", raw: bytes | None = None, **extra) -> dict:
    headers = {}
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Token {token}"
    if key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = key
    data = raw if raw is not None else json.dumps(body).encode()
    return environ("/api/market/transfers", method="POST", body=data, **headers, **extra)


def test_a_transfer_and_its_replay_are_identical_to_django(owner, accounts):
    src, dst, _ = accounts
    body = {"from_account": src.pk, "to_account": dst.pk, "amount_cents": 300}
    first = call(Lane(), transfer(owner.token, body))
    assert first[0] == "201 Created" and "Idempotent-Replayed" not in first[1]
    assert json.loads(first[2])["data"]["amount_cents"] == 300
    lane, django = both(lambda: transfer(owner.token, body))  # the same key: both replay the first
    assert lane == django and lane[1]["Idempotent-Replayed"] == "true"
    assert lane[2] == first[2]
    assert Account.objects.get(pk=src.pk).balance_cents == 700 and Account.objects.get(pk=dst.pk).balance_cents == 300
    # Its audit rows name the token's user, as through Django.
    rows = AuditOutbox.objects.using("market").exclude(model="market.account", action="create")  # the fixture's
    assert sorted(rows.values_list("action", "model", "actor_id")) == [
        ("create", "market.transfer", owner.pk),
        ("update", "market.account", owner.pk),
        ("update", "market.account", owner.pk),
    ]


@pytest.mark.parametrize("case", ["funds", "not_found", "forbidden", "bad_amount", "same_account", "bad_key"])
def test_refusals_by_the_service_are_identical_to_django(owner, accounts, case):
    src, dst, foreign = accounts
    body, key = {"from_account": src.pk, "to_account": dst.pk, "amount_cents": 300}, "k-ok"
    if case == "funds":
        body["amount_cents"] = 5000
    elif case == "not_found":
        body["to_account"] = dst.pk + 1000
    elif case == "forbidden":
        body["from_account"] = foreign.pk
    elif case == "bad_amount":
        body["amount_cents"] = "300"
    elif case == "same_account":
        body["to_account"] = src.pk
    else:
        key = "x" * 1000
    lane, django = both(lambda: transfer(owner.token, body, key=key))
    assert lane == django and lane[0][0] == "4"
    assert Account.objects.get(pk=src.pk).balance_cents == 1000


@pytest.mark.parametrize(
    "env",
    [
        lambda o: transfer(o.token, {"from_account": 1, "to_account": 2, "amount_cents": 1}, key=None),
        lambda o: transfer(None, {"from_account": 1, "to_account": 2, "amount_cents": 1}),
        lambda o: transfer("not-a-key", {"from_account": 1, "to_account": 2, "amount_cents": 1}),
        lambda o: transfer(o.token, None, raw=b"{not json"),
        lambda o: transfer(o.token, [1, 2, 3]),
        lambda o: transfer(o.token, None, raw=b"{}" + b" " * 70000),
    ],
    ids=["no-key", "no-token", "bad-token", "bad-json", "not-object", "too-big"],
)
def test_requests_django_refuses_before_the_service_fall_through_with_their_body(owner, env):
    assert Lane()(env(owner), lambda *a: None) is None
    app = dispatcher(ApiHandler(), None, Lane())
    status, _, body = call(app, env(owner))
    assert status[0] == "4" and b'"error"' in body  # Django read the body the lane had read
    assert not Transfer.objects.exists()


@pytest.mark.parametrize(
    "body",
    [
        {"from_account": 1, "to_account": 2},
        {"from_account": 1, "to_account": 2, "amount_cents": 1, "memo": "x"},
        {"from_account": 1, "to_account": 2, "amount_cents": True},
    ],
    ids=["missing-field", "unknown-field", "bool-amount"],
)
def test_schema_refusals_are_answered_by_the_lane_as_by_django(owner, body):
    """The lane checks the body with Django's schema (market.schemas.TransferIn): same answer."""
    lane, django = both(lambda: transfer(owner.token, body, key="k-schema"))
    assert lane == django and lane[0].startswith("400")
    assert not Transfer.objects.exists()


def test_a_transfer_holds_both_databases_in_the_metrics(owner, accounts):
    def holds(alias):
        return (
            REGISTRY.get_sample_value(
                "platform_db_connection_hold_seconds_count", {"route": "api/market/transfers", "alias": alias}
            )
            or 0.0
        )

    before = holds("default"), holds("market")
    body = {"from_account": accounts[0].pk, "to_account": accounts[1].pk, "amount_cents": 1}
    assert call(Lane(), transfer(owner.token, body, key="k-metrics"))[0] == "201 Created"
    assert (holds("default"), holds("market")) == (before[0] + 1, before[1] + 1)
    assert connections["default"].connection is None and connections["market"].connection is None


@pytest.mark.parametrize(
    "role, allowed",
    [
        ("owner", True),
        ("another user", False),
        ("staff without permissions", False),
        ("holder of market.transfer_any_account", True),
        ("superuser", True),
    ],
)
@pytest.mark.parametrize("first", ["lane", "django"])
def test_who_may_move_money_is_the_same_in_the_lane_and_django(owner, accounts, role, allowed, first):
    src, dst, _ = accounts
    token = {
        "owner": owner.token,
        "another user": _token_of("someone"),
        "staff without permissions": _token_of("staffer", staff=True),
        "holder of market.transfer_any_account": _token_of("operator", perms=["market.transfer_any_account"]),
        "superuser": _token_of("root", superuser=True),
    }[role]
    body = {"from_account": src.pk, "to_account": dst.pk, "amount_cents": 300}
    one = call(Lane() if first == "lane" else ApiHandler(), transfer(token, body))
    lane, django = both(lambda: transfer(token, body))  # allowed: both replay the first
    assert lane == django
    if allowed:
        assert one[0] == lane[0] == "201 Created" and one[2] == lane[2]
        assert Account.objects.get(pk=src.pk).balance_cents == 700
    else:
        assert one[0] == lane[0] == "404 Not Found" and b'"code": "account_not_found"' in lane[2]
        assert Account.objects.get(pk=src.pk).balance_cents == 1000 and not Transfer.objects.exists()
        assert AuditOutbox.objects.using("market").filter(action="deny").count() == 3  # each refusal, audited
    assert Account.objects.get(pk=dst.pk).balance_cents == (300 if allowed else 0)


def _exhaust(token: str) -> None:
    """Pin the token's write window an hour ahead, full: no clock can make the next write pass."""
    from config.users.models import ApiToken
    from config.users.tokens import _digest

    ApiToken.objects.filter(digest=_digest(token)).update(
        write_window=timezone.now().replace(microsecond=0) + timedelta(hours=1), write_count=5
    )


@override_settings(API_WRITE_RATE_PER_MINUTE=5)
def test_a_rate_limited_transfer_is_the_same_429_and_moves_nothing(owner, accounts):
    src, dst, _ = accounts
    _exhaust(owner.token)
    body = {"from_account": src.pk, "to_account": dst.pk, "amount_cents": 300}
    lane, django = both(lambda: transfer(owner.token, body))
    assert lane[0] == "429 Too Many Requests" and b'"code": "rate_limited"' in lane[2]
    retry = int(lane[1].pop("Retry-After")), int(django[1].pop("Retry-After"))
    assert all(3600 < r <= 3660 for r in retry)  # the end of the pinned window
    assert lane == django
    assert Account.objects.get(pk=src.pk).balance_cents == 1000 and not Transfer.objects.exists()
    # Reads are not limited.
    assert call(Lane(), environ(f"/api/users/{owner.pk}", HTTP_AUTHORIZATION=f"Token {owner.token}"))[0] == "200 OK"
