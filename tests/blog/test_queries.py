"""The read paths cost a fixed number of queries per database, whatever the page size:
authors come from the shared database in one query for the whole page, never one per post."""

from __future__ import annotations

import contextlib

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from blog import selectors
from tests.support.factories import UserFactory, make_post

pytestmark = pytest.mark.django_db(databases=["default", "blog"])


@contextlib.contextmanager
def queries_per_alias(*aliases):
    with contextlib.ExitStack() as stack:
        captured = {alias: stack.enter_context(CaptureQueriesContext(connections[alias])) for alias in aliases}
        yield captured


def counts(captured) -> dict[str, int]:
    return {alias: len(ctx.captured_queries) for alias, ctx in captured.items()}


def publish_posts_by_distinct_authors(n: int) -> None:
    for i in range(n):
        make_post(UserFactory(), title=f"Post {i}", tags=[f"t{i}", "common"])


@pytest.mark.parametrize("n", [1, 3, 12])
def test_a_list_page_is_one_query_per_database(n):
    publish_posts_by_distinct_authors(n)
    with queries_per_alias("default", "blog") as captured:
        posts, _ = selectors.post_list_published(cursor=None, limit=20)
    assert len(posts) == n and len({p["author"]["id"] for p in posts}) == n
    assert all(p["author"]["username"] for p in posts)
    assert counts(captured) == {"default": 1, "blog": 1}
    authors_sql = captured["default"].captured_queries[0]["sql"]
    assert '"auth_user"' in authors_sql and " IN (" in authors_sql


def test_a_later_page_is_still_one_query_per_database():
    publish_posts_by_distinct_authors(5)
    _, cursor = selectors.post_list_published(cursor=None, limit=2)
    with queries_per_alias("default", "blog") as captured:
        posts, _ = selectors.post_list_published(cursor=cursor, limit=2)
    assert len(posts) == 2
    assert counts(captured) == {"default": 1, "blog": 1}


def test_the_list_endpoint_queries_do_not_grow_with_the_page(api):
    publish_posts_by_distinct_authors(2)
    with queries_per_alias("default", "blog") as small:
        assert len(api.get("/api/blog/posts")[1]["data"]) == 2
    publish_posts_by_distinct_authors(10)
    with queries_per_alias("default", "blog") as large:
        assert len(api.get("/api/blog/posts")[1]["data"]) == 12
    assert counts(small) == counts(large) == {"default": 1, "blog": 1}


def test_detail_is_one_query_per_database(api):
    publish_posts_by_distinct_authors(1)
    with queries_per_alias("default", "blog") as captured:
        status, body = api.get("/api/blog/posts/post-0")
    assert status == 200 and body["data"]["tags"] == ["common", "t0"]
    assert counts(captured) == {"default": 1, "blog": 1}


def test_an_empty_page_asks_the_shared_database_nothing():
    with queries_per_alias("default", "blog") as captured:
        assert selectors.post_list_published(cursor=None, limit=5) == ([], None)
    assert counts(captured) == {"default": 0, "blog": 1}
