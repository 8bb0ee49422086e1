"""Admin login is throttled by django-axes after AXES_FAILURE_LIMIT wrong passwords,
and what axes records lives in the shared database."""

from __future__ import annotations

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connections, router
from django.test import override_settings

PASSWORD = "correct-horse-battery-staple"


def _login(client, password: str):
    return client.post(
        "/admin/login/?next=/admin/", {"username": "throttled", "password": password}, REMOTE_ADDR="203.0.113.7"
    )


@pytest.mark.django_db(databases=["default", "blog", "market"])
@override_settings(AXES_ENABLED=True)
def test_sixth_attempt_is_refused_even_with_the_right_password(client):
    get_user_model().objects.create_user("throttled", password=PASSWORD, is_staff=True, is_superuser=True)
    assert settings.AXES_FAILURE_LIMIT == 5
    statuses = [_login(client, "wrong-password").status_code for _ in range(settings.AXES_FAILURE_LIMIT)]
    # The form again with an error, until the failure that reaches the limit locks the account.
    assert statuses == [200] * (settings.AXES_FAILURE_LIMIT - 1) + [429]
    assert "_auth_user_id" not in client.session
    response = _login(client, PASSWORD)
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302  # still not logged in

    assert router.db_for_write(AccessAttempt) == "default"
    attempt = AccessAttempt.objects.using("default").get(username="throttled")
    assert attempt.failures_since_start >= settings.AXES_FAILURE_LIMIT
    for alias in ("blog", "market"):
        assert "axes_accessattempt" not in connections[alias].introspection.table_names()


@pytest.mark.django_db(databases=["default"])
@override_settings(AXES_ENABLED=True)
def test_a_right_password_before_the_limit_logs_in(client):
    get_user_model().objects.create_user("throttled", password=PASSWORD, is_staff=True, is_superuser=True)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        _login(client, "wrong-password")
    response = _login(client, PASSWORD)
    assert response.status_code == 302
    assert client.session["_auth_user_id"]


def _attempt(client, username: str, password: str, remote: str, forwarded: str | None = None):
    headers = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        headers["HTTP_X_FORWARDED_FOR"] = forwarded
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password}, **headers)


def _counted_addresses(username: str) -> set[str]:
    return set(AccessAttempt.objects.using("default").filter(username=username).values_list("ip_address", flat=True))


@pytest.mark.django_db(databases=["default"])
@override_settings(AXES_ENABLED=True)
def test_without_a_proxy_a_forged_x_forwarded_for_changes_nothing(client):
    # DJANGO_TRUSTED_PROXY_COUNT=0 (the default): a new forged address each try neither resets the count
    # nor lands the failures on someone else's address.
    assert settings.TRUSTED_PROXY_COUNT == 0
    get_user_model().objects.create_user("throttled", password=PASSWORD, is_staff=True, is_superuser=True)
    statuses = [
        _attempt(client, "throttled", "wrong-password", "203.0.113.7", f"198.51.100.{i}").status_code
        for i in range(settings.AXES_FAILURE_LIMIT)
    ]
    assert statuses[-1] == 429
    assert _counted_addresses("throttled") == {"203.0.113.7"}
    assert _attempt(client, "throttled", PASSWORD, "203.0.113.7", "198.51.100.250").status_code == 429


@pytest.mark.django_db(databases=["default"])
@override_settings(AXES_ENABLED=True, TRUSTED_PROXY_COUNT=1)
def test_behind_one_proxy_the_last_forwarded_address_is_counted_not_the_proxys(client):
    get_user_model().objects.create_user("throttled", password=PASSWORD, is_staff=True, is_superuser=True)
    proxy = "10.0.0.2"
    # The client wrote the first entry itself; the proxy appended the address it saw.
    for _ in range(settings.AXES_FAILURE_LIMIT):
        last = _attempt(client, "throttled", "wrong-password", proxy, "192.0.2.66, 203.0.113.7")
    assert last.status_code == 429
    assert _counted_addresses("throttled") == {"203.0.113.7"}
    # Another client behind the same proxy is not locked out with it.
    other = _attempt(client, "throttled", PASSWORD, proxy, "198.51.100.20")
    assert other.status_code == 302


@pytest.mark.django_db(databases=["default"])
@override_settings(AXES_ENABLED=True)
def test_locking_out_admin_from_one_address_leaves_admin_free_from_another(client):
    get_user_model().objects.create_user("admin", password=PASSWORD, is_staff=True, is_superuser=True)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        last = _attempt(client, "admin", "wrong-password", "203.0.113.66")
    assert last.status_code == 429
    assert _attempt(client, "admin", PASSWORD, "203.0.113.66").status_code == 429
    # The attacker cannot pass for the real admin's address by forging the header either.
    assert _attempt(client, "admin", PASSWORD, "203.0.113.66", "198.51.100.5").status_code == 429
    response = _attempt(client, "admin", PASSWORD, "198.51.100.5")
    assert response.status_code == 302
    assert client.session["_auth_user_id"]
