"""API tokens: stored as digests; a key finds its active user with the fields authorisation needs."""

import pytest
from django.contrib.auth import get_user_model

from config.users.models import ApiToken
from config.users.tokens import _digest, api_token_authenticate, api_token_create

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


# Permissions come with the token ---------------------------------------------------------------


def test_the_users_permissions_come_with_the_token_and_has_perm_costs_no_query():
    from django.contrib.auth.backends import ModelBackend
    from django.contrib.auth.models import Group, Permission
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    from tests.support.perms import grant

    user = get_user_model().objects.create_user("holder")
    grant(user, "market.view_account")
    group = Group.objects.create(name="editors")
    group.permissions.add(Permission.objects.get(content_type__app_label="blog", codename="change_post"))
    user.groups.add(group)
    key = api_token_create(user=user)
    # The first use records last_used_at, and a process reads the permission names once.
    api_token_authenticate(key=key)
    with CaptureQueriesContext(connections["default"]) as queries:
        found = api_token_authenticate(key=key)
        assert found.has_perm("market.view_account") and found.has_perm("blog.change_post")
        assert not found.has_perm("market.add_account")
    assert len(queries) == 1
    assert found.get_all_permissions() == ModelBackend().get_all_permissions(get_user_model().objects.get(pk=user.pk))
    # A permission granted or revoked since counts at the next request (the ids come with every request).
    grant(user, "market.add_account")
    assert api_token_authenticate(key=key).has_perm("market.add_account")
    user.groups.clear()
    assert not api_token_authenticate(key=key).has_perm("blog.change_post")
    root = get_user_model().objects.create_superuser("root", "r@example.com", "x")
    assert api_token_authenticate(key=api_token_create(user=root)).has_perm("market.transfer_any_account")


# last_used_at ----------------------------------------------------------------------------------


def _token_row(key: str) -> ApiToken:
    from config.users.tokens import _digest

    return ApiToken.objects.get(digest=_digest(key))


def test_writes_record_last_used_at_every_time_and_reads_at_most_once_a_minute():
    from datetime import timedelta

    from django.utils import timezone

    key = api_token_create(user=get_user_model().objects.create_user("user"))
    assert _token_row(key).last_used_at is None
    api_token_authenticate(key=key)
    first = _token_row(key).last_used_at
    assert first is not None
    api_token_authenticate(key=key)
    assert _token_row(key).last_used_at == first  # a read within the minute writes nothing
    a_minute_ago = timezone.now() - timedelta(seconds=61)
    ApiToken.objects.update(last_used_at=a_minute_ago)
    api_token_authenticate(key=key)
    assert _token_row(key).last_used_at > a_minute_ago
    ApiToken.objects.update(last_used_at=a_minute_ago)
    api_token_authenticate(key=key, write=True)
    assert _token_row(key).last_used_at > a_minute_ago


# The write rate ----------------------------------------------------------------------------------


def test_writes_beyond_the_rate_are_refused_until_the_next_window(settings):
    from datetime import timedelta

    from django.utils import timezone

    from config.users.tokens import RateLimited

    settings.API_WRITE_RATE_PER_MINUTE = 3
    key = api_token_create(user=get_user_model().objects.create_user("writer"))
    # This window, pinned an hour ahead: the test cannot straddle a minute boundary.
    ahead = timezone.now().replace(microsecond=0) + timedelta(hours=1)
    ApiToken.objects.update(write_window=ahead, write_count=1)
    assert api_token_authenticate(key=key, write=True) and api_token_authenticate(key=key, write=True)
    with pytest.raises(RateLimited) as refused:
        api_token_authenticate(key=key, write=True)
    assert refused.value.status == 429 and refused.value.code == "rate_limited"
    assert 3600 < int(refused.value.headers["Retry-After"]) <= 3660
    assert api_token_authenticate(key=key) is not None  # reads are not counted
    # A window that has ended starts over at one.
    ApiToken.objects.update(write_window=timezone.now() - timedelta(minutes=2), write_count=99)
    assert api_token_authenticate(key=key, write=True) is not None
    assert _token_row(key).write_count == 1
    settings.API_WRITE_RATE_PER_MINUTE = 0  # no limit
    ApiToken.objects.update(write_window=ahead, write_count=10**6)
    assert api_token_authenticate(key=key, write=True) is not None


def test_a_worker_claims_a_slice_of_the_rate_and_the_limit_still_holds(settings):
    """Above CLAIM_SHARE writes a minute, a worker claims limit/CLAIM_SHARE writes per UPDATE
    of the token row and spends them locally; the limit is never exceeded, and a claim near the
    end of the budget gets only what is left."""
    from datetime import timedelta

    from django.utils import timezone

    from config.users import tokens as services
    from config.users.tokens import CLAIM_SHARE, RateLimited

    settings.API_WRITE_RATE_PER_MINUTE = 3 * CLAIM_SHARE  # a slice of 3 writes
    key = api_token_create(user=get_user_model().objects.create_user("slicer"))
    ahead = timezone.now().replace(microsecond=0) + timedelta(hours=1)
    ApiToken.objects.update(write_window=ahead, write_count=0)
    assert api_token_authenticate(key=key, write=True) is not None
    assert _token_row(key).write_count == 3  # one claim of three
    assert api_token_authenticate(key=key, write=True) and api_token_authenticate(key=key, write=True)
    assert _token_row(key).write_count == 3  # spent locally: the row was not written
    assert api_token_authenticate(key=key, write=True) is not None
    assert _token_row(key).write_count == 6
    # Another worker has claimed all but two writes: this one's claim gets those two and no more.
    services._claims.clear()
    limit = settings.API_WRITE_RATE_PER_MINUTE
    ApiToken.objects.update(write_count=limit - 2)
    assert api_token_authenticate(key=key, write=True) and api_token_authenticate(key=key, write=True)
    with pytest.raises(RateLimited):
        api_token_authenticate(key=key, write=True)
    # A revoked token stops at once, even with writes left in this worker's slice.
    services._claims.clear()
    ApiToken.objects.update(write_count=0)
    assert api_token_authenticate(key=key, write=True) is not None
    ApiToken.objects.filter(digest=_digest(key)).delete()
    assert api_token_authenticate(key=key, write=True) is None


def test_a_key_that_is_not_text_we_could_have_issued_is_no_token():
    assert api_token_authenticate(key="\ud800abc") is None
    assert api_token_authenticate(key="x" * 129) is None


@pytest.mark.django_db(databases=["default"], transaction=True)
def test_concurrent_writes_are_counted_exactly_once_each(settings):
    """The count is the token row's, updated atomically: every thread here is what another worker
    or instance would be, and exactly the limit gets through."""
    import threading
    from datetime import timedelta

    from django.db import connections
    from django.utils import timezone

    from config.users.tokens import RateLimited

    settings.API_WRITE_RATE_PER_MINUTE = 5
    key = api_token_create(user=get_user_model().objects.create_user("burst"))
    ApiToken.objects.update(write_window=timezone.now() + timedelta(hours=1), write_count=0)
    connections.close_all()
    barrier, results = threading.Barrier(8), []

    def write():
        try:
            barrier.wait(timeout=30)
            results.append(api_token_authenticate(key=key, write=True) is not None)
        except RateLimited:
            results.append(False)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(results) == [False] * 3 + [True] * 5
    assert _token_row(key).write_count == 8


# revoke_api_token --------------------------------------------------------------------------------


def test_revoke_by_username_or_prefix_and_the_keys_stop_working():
    from io import StringIO

    from django.core.management import CommandError, call_command

    alice = get_user_model().objects.create_user("alice")
    bob = get_user_model().objects.create_user("bob")
    a1, a2, b1 = api_token_create(user=alice), api_token_create(user=alice), api_token_create(user=bob)
    out = StringIO()
    call_command("revoke_api_token", b1[:8], stdout=out)
    assert out.getvalue().strip() == f"revoked {b1[:8]}… of bob"
    assert b1 not in out.getvalue()  # the prefix only, never a key
    assert api_token_authenticate(key=b1) is None and api_token_authenticate(key=a1) is not None
    out = StringIO()
    call_command("revoke_api_token", "alice", stdout=out)
    assert len(out.getvalue().splitlines()) == 2
    assert api_token_authenticate(key=a1) is None and api_token_authenticate(key=a2) is None
    with pytest.raises(CommandError, match="no API token"):
        call_command("revoke_api_token", "alice")
    # A username that is also someone's key prefix: refused unless told which.
    carol = get_user_model().objects.create_user("carol")
    c1 = api_token_create(user=carol)
    twin = get_user_model().objects.create_user(c1[:8])
    t1 = api_token_create(user=twin)
    with pytest.raises(CommandError, match="--user or --prefix"):
        call_command("revoke_api_token", c1[:8])
    call_command("revoke_api_token", c1[:8], "--prefix", stdout=StringIO())
    assert api_token_authenticate(key=c1) is None and api_token_authenticate(key=t1) is not None
    call_command("revoke_api_token", c1[:8], "--user", stdout=StringIO())
    assert api_token_authenticate(key=t1) is None
