"""The two stacks: API paths skip session, CSRF and frame-option middleware; the admin keeps them."""

import pytest

from tests.support.servers import Gunicorn, cluster_env, http, test_database_urls


@pytest.mark.django_db(databases=["default"], transaction=True)
def test_api_paths_take_the_short_stack_and_the_admin_the_full_one():
    with Gunicorn(cluster_env(test_database_urls()), workers=1, threads=2).running() as server:
        status, body, headers = http("GET", server.url("/api/users/987654"))
        assert (status, body["error"]["code"]) == (404, "user_not_found")
        assert "X-Frame-Options" not in headers and "Set-Cookie" not in headers
        assert headers.get("X-Content-Type-Options") == "nosniff"  # SecurityMiddleware stays

        status, _, headers = http("GET", server.url("/admin/login/"))
        assert status == 200
        assert headers.get("X-Frame-Options") == "DENY"
        assert "csrftoken" in headers.get("Set-Cookie", "")
