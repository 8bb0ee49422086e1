"""The shared database (`default`: users, sessions, tokens) down: reads that need no
login keep working; whatever needs it answers 503 naming `default`, never a 500."""

from __future__ import annotations

import pytest

from tests.support.faults import SKU, Load, assert_unavailable
from tests.support.pgcluster import wait_for

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("fault", ["stop", "hang"])
def test_shared_database_down_leaves_public_reads_up(shared_apart, fault):
    site = shared_apart
    site.wait_healthy()
    shared = site.clusters["shared"]
    with Load(site.blog) as blog, Load(site.product) as market:
        shared.stop() if fault == "stop" else shared.hang()
        try:
            # Reads that need no login: blog (its authors come from `default`) and market.
            for _ in range(3):
                status, body, _ = site.blog()
                assert status == 200, body
                assert body["data"][0]["slug"] == site.post_slug
                assert site.get(f"/api/blog/posts/{site.post_slug}")[0] == 200
                assert site.product(SKU)[0] == 200
            # Whatever needs the shared database says so.
            assert_unavailable(*site.get(f"/api/users/{site.user_id}")[:2], "default")
            status, body, _ = site.post("/api/blog/posts", {"title": "t", "body": "b", "status": "published"})
            assert_unavailable(status, body, "default")
            assert_unavailable(*site.order()[:2], "default")  # the token lives in `default`
            # A session cookie makes Django load the session (and user) from `default`: a browser
            # gets an HTML page naming it.
            cookie = {"Cookie": "sessionid=0123456789abcdefghijklmnopqrstuv", "Accept": "text/html"}
            status, body, headers = site.get("/admin/", headers=cookie)
            assert status == 503 and headers["Content-Type"].startswith("text/html"), (status, body)
            assert "The default database does not answer" in body and int(headers["Retry-After"]) >= 1
            start = blog.count() + market.count()
            wait_for(lambda: blog.count() + market.count() >= start + 20, what="public reads to go on")
        finally:
            shared.start() if fault == "stop" else shared.resume()
        wait_for(lambda: site.get(f"/api/users/{site.user_id}")[0] == 200, timeout=30, what="default to answer")
    assert set(blog.statuses()) == {200}, blog.statuses()
    assert set(market.statuses()) == {200}, market.statuses()
