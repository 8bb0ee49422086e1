"""API tokens: stored as digests; a key finds its active user with the fields authorisation needs."""

import pytest
from django.contrib.auth import get_user_model

from audit.models import ApiToken
from audit.services import api_token_authenticate, api_token_create

pytestmark = pytest.mark.django_db(databases=["default"])


def test_a_key_finds_its_user_and_only_the_digest_is_stored():
    user = get_user_model().objects.create_user("keyholder", email="k@example.com", is_staff=True)
    key = api_token_create(user=user)
    assert not ApiToken.objects.filter(digest=key).exists() and ApiToken.objects.get().prefix == key[:8]
    found = api_token_authenticate(key=key)
    assert (found.pk, found.username, found.is_staff, found.is_superuser, found.is_active) == (
        user.pk,
        "keyholder",
        True,
        False,
        True,
    )
    assert found.email == "k@example.com"  # loaded on first access


def test_a_wrong_key_or_an_inactive_user_finds_nobody():
    user = get_user_model().objects.create_user("gone")
    key = api_token_create(user=user)
    assert api_token_authenticate(key=key + "x") is None
    assert api_token_authenticate(key="") is None
    user.is_active = False
    user.save()
    assert api_token_authenticate(key=key) is None
