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
