"""Market fixtures: users with API tokens, JSON clients, wide pools (helpers: tests/support/market.py)."""

from __future__ import annotations

import pytest
from django.db import connections

from config.users.tokens import api_token_create
from tests.support.market import OPERATOR_PERMS, THREADS, Api, make_user


@pytest.fixture
def buyer():
    user = make_user("buyer")
    user.token = api_token_create(user=user)
    return user


@pytest.fixture
def staff():
    """Staff status and no permission: it grants nothing in the API."""
    user = make_user("staff", staff=True)
    user.token = api_token_create(user=user)
    return user


@pytest.fixture
def operator():
    """A user holding the market's operator permissions (and not staff)."""
    user = make_user("operator", perms=OPERATOR_PERMS)
    user.token = api_token_create(user=user)
    return user


@pytest.fixture
def root():
    user = make_user("root", superuser=True)
    user.token = api_token_create(user=user)
    return user


@pytest.fixture
def operator_api(operator):
    return Api(operator.token)


@pytest.fixture
def root_api(root):
    return Api(root.token)


@pytest.fixture
def api(buyer):
    return Api(buyer.token)


@pytest.fixture
def staff_api(staff):
    return Api(staff.token)


@pytest.fixture
def wide_pools():
    """Pools of THREADS connections (and as many waiters) for the databases a request touches.

    The configured pools (max 4, 4 waiters, min 1) would refuse a cold burst of
    8 threads: while a pool grows, every thread waits in its queue. Pools are
    built lazily from these settings, so closing them and editing the settings
    gives the test its own pools; the originals come back afterwards.
    """
    from config.multidb.lifecycle import close_all_pools

    saved = []
    close_all_pools()
    for alias in ("default", "market"):
        pool = connections[alias].settings_dict["OPTIONS"]["pool"]
        saved.append((pool, dict(pool)))
        pool.update(max_size=THREADS, max_waiting=THREADS)
    try:
        yield
    finally:
        close_all_pools()
        for pool, original in saved:
            pool.clear()
            pool.update(original)
