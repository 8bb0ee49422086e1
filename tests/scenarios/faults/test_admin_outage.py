"""A database down, seen from a logged-in admin: the admin's pages of that database answer an
HTML 503 page naming it (Retry-After, no traceback) while the API keeps its JSON 503."""

from __future__ import annotations

import pytest

from tests.support.faults import SKU, assert_unavailable, manage_out
from tests.support.pgcluster import wait_for

pytestmark = pytest.mark.cluster

# A session for `faultstaff`, written the way django.contrib.auth.login writes one.
SESSION = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
user = get_user_model().objects.get(username="faultstaff")
session = SessionStore()
session[SESSION_KEY] = str(user.pk)
session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
session[HASH_SESSION_KEY] = user.get_session_auth_hash()
session.create()
print(session.session_key)
"""
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def assert_html_unavailable(status, body, headers, database: str) -> None:
    assert status == 503, (status, body)
    assert headers["Content-Type"].startswith("text/html"), headers
    assert int(headers["Retry-After"]) >= 1
    assert f"The {database} database does not answer" in body, body
    assert "Traceback" not in body and "OperationalError" not in body


def test_admin_pages_of_a_stopped_database_answer_an_html_503_and_the_api_json(market_apart):
    site = market_apart
    site.wait_healthy()
    key = manage_out(site.env, "shell", "-c", SESSION).strip().splitlines()[-1]
    browser = {"Cookie": f"sessionid={key}", "Accept": BROWSER}
    products, posts = "/admin/market/product/", "/admin/blog/post/"
    status, body, _ = site.get(products, headers=browser)
    assert status == 200 and SKU in body  # logged in: the product list

    market = site.clusters["market"]
    market.stop()
    try:
        answer = wait_for(
            lambda: (a := site.get(products, headers=browser))[0] == 503 and a,
            timeout=30,
            what="the product list to answer 503",
        )
        assert_html_unavailable(*answer, "market")
        assert_html_unavailable(*site.get("/admin/market/order/", headers=browser), "market")
        # The API keeps its JSON, whatever the client accepts.
        status, body, headers = site.get(f"/api/market/products/{SKU}", headers={"Accept": BROWSER})
        assert_unavailable(status, body, "market")
        assert int(headers["Retry-After"]) >= 1
        # A script on an admin path that asks for JSON gets it.
        assert_unavailable(*site.get(products, headers={**browser, "Accept": "application/json"})[:2], "market")
        # The admin of the other databases goes on.
        status, body, _ = site.get(posts, headers=browser)
        assert status == 200 and "Faults" in body
    finally:
        market.start()
    site.wait_healthy("market to answer again")
    assert site.get(products, headers=browser)[0] == 200
