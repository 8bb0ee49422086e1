"""The blog API as a client sees it: /api/blog/posts and /api/blog/posts/<slug>."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.conf import settings

from blog.models import Post
from tests.support.factories import make_post

pytestmark = pytest.mark.django_db(databases=["default", "blog"])

LIST = "/api/blog/posts"
POST_KEYS = {"id", "slug", "title", "body", "status", "published_at", "created_at", "updated_at", "tags", "author"}


def detail(slug: str) -> str:
    return f"{LIST}/{slug}"


def assert_error(result, status: int, code: str, field: str | None = None):
    got_status, body = result
    assert (got_status, body["error"]["code"]) == (status, code), body
    assert body["error"]["message"]
    if field is not None:
        error = body["error"]
        assert error.get("field") == field or field in error.get("fields", []), error
        assert field in body["error"]["message"]


# Reading -----------------------------------------------------------------------------------------


def test_list_shows_published_posts_newest_first(api, author, other):
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    make_post(author, title="Old", tags=["b", "a"], published_at=t0)
    make_post(other, title="New", published_at=t0 + dt.timedelta(hours=1))
    make_post(author, title="Hidden draft", status="draft")

    status, body = api.get(LIST)
    assert status == 200
    assert body["next"] is None
    assert [p["title"] for p in body["data"]] == ["New", "Old"]
    old = body["data"][1]
    assert set(old) == POST_KEYS
    assert old["slug"] == "old" and old["status"] == "published" and old["body"] == "Some text."
    assert old["tags"] == ["a", "b"]
    assert old["author"] == {"id": author.pk, "username": "alice"}
    assert dt.datetime.fromisoformat(old["published_at"]) == t0
    assert body["data"][0]["author"] == {"id": other.pk, "username": "bob"}


def test_list_when_empty(api):
    assert api.get(LIST) == (200, {"data": [], "next": None})


def test_detail_of_a_published_post(api, author):
    make_post(author, title="Readable", tags=["x"])
    status, body = api.get(detail("readable"))
    assert status == 200
    assert set(body["data"]) == POST_KEYS
    assert body["data"]["title"] == "Readable"
    assert body["data"]["tags"] == ["x"]
    assert body["data"]["author"] == {"id": author.pk, "username": "alice"}


def test_unknown_slug_is_post_not_found(api):
    assert_error(api.get(detail("nope")), 404, "post_not_found")
    # A slug no post can have is malformed input, not an unknown post.
    assert_error(api.get(detail("not a slug at all")), 400, "invalid_request", field="slug")


def test_a_draft_is_visible_to_its_author_and_holders_of_view_post_only(
    api, author, author_token, other_token, staff_token
):
    from tests.support.factories import UserFactory, token_for
    from tests.support.perms import grant

    make_post(author, title="Secret", status="draft")
    assert_error(api.get(detail("secret")), 404, "post_not_found")
    assert_error(api.get(detail("secret"), token=other_token), 404, "post_not_found")
    # Staff status alone grants nothing.
    staff_only = token_for(UserFactory(username="staffonly", is_staff=True))
    assert_error(api.get(detail("secret"), token=staff_only), 404, "post_not_found")
    status, body = api.get(detail("secret"), token=author_token)
    assert status == 200 and body["data"]["status"] == "draft" and body["data"]["published_at"] is None
    assert api.get(detail("secret"), token=staff_token)[0] == 200  # a superuser
    for perm in ("blog.view_post", "blog.change_post"):  # change implies view, as in the admin
        holder = UserFactory()
        grant(holder, perm)
        assert api.get(detail("secret"), token=token_for(holder))[0] == 200, perm


def test_a_bad_token_on_a_read_is_refused_not_ignored(api, author):
    make_post(author, title="Public")
    assert_error(api.get(detail("public"), token="not-a-key"), 401, "not_authenticated")


@pytest.mark.parametrize("limit", ["0", "101", "abc", "-1", "", "1.5", "١"])
def test_bad_limit(api, limit):
    assert_error(api.get(LIST, limit=limit), 400, "invalid_request", field="limit")


@pytest.mark.parametrize("cursor", ["garbage", "!!!!", "bm90IGEgY3Vyc29y", "MjAyNi0wMS0wMVQwMDowMDowMHwx", "x" * 500])
def test_bad_cursor(api, cursor):
    # "bm90IGEgY3Vyc29y" is base64 of "not a cursor"; the last but one encodes a naive timestamp.
    assert_error(api.get(LIST, cursor=cursor), 400, "invalid_request", field="cursor")


def test_pages_cover_every_post_once(api, author, other):
    """Walk the whole list 4 at a time; ties on published_at are broken by id, never lost."""
    base = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    expected = []
    for i in range(19):
        # Pairs of posts share a timestamp to exercise the tie-break.
        at = base + dt.timedelta(minutes=i // 2)
        post = make_post(author if i % 2 else other, title=f"Post {i}", published_at=at)
        expected.append(post)
    make_post(author, title="Draft", status="draft")
    expected.sort(key=lambda p: (p.published_at, p.pk), reverse=True)

    seen, cursor, pages = [], None, 0
    while True:
        query = {"limit": "4", **({"cursor": cursor} if cursor else {})}
        status, body = api.get(LIST, **query)
        assert status == 200
        assert len(body["data"]) <= 4
        seen.extend(p["id"] for p in body["data"])
        pages += 1
        cursor = body["next"]
        if cursor is None:
            break
    assert pages == 5
    assert seen == [p.pk for p in expected]


def test_a_post_published_while_paging_does_not_shift_the_pages(api, author):
    base = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    for i in range(6):
        make_post(author, title=f"P{i}", published_at=base + dt.timedelta(minutes=i))
    status, first = api.get(LIST, limit="3")
    make_post(author, title="Brand new")  # published now: newest, belongs before page one
    status, second = api.get(LIST, limit="3", cursor=first["next"])
    assert [p["title"] for p in first["data"] + second["data"]] == [f"P{i}" for i in range(5, -1, -1)]
    assert second["next"] is None


# Creating ----------------------------------------------------------------------------------------


def test_create(api, author, author_token):
    status, body = api.post(
        LIST,
        {"title": "  My first post ", "body": "Hello", "status": "draft", "tags": ["intro", "Intro"]},
        token=author_token,
    )
    assert status == 201, body
    post = body["data"]
    assert set(post) == POST_KEYS
    assert (post["title"], post["slug"], post["status"], post["published_at"]) == (
        "My first post",
        "my-first-post",
        "draft",
        None,
    )
    assert post["tags"] == ["intro"]
    assert post["author"] == {"id": author.pk, "username": "alice"}
    assert api.last["Location"] == "/api/blog/posts/my-first-post"
    assert Post.objects.using("blog").get(pk=post["id"]).author_id == author.pk


def test_create_published_sets_published_at_and_lists_it(api, author_token):
    status, body = api.post(LIST, {"title": "Out now", "body": "", "status": "published"}, token=author_token)
    assert status == 201
    assert body["data"]["published_at"] is not None
    assert [p["slug"] for p in api.get(LIST)[1]["data"]] == ["out-now"]


def test_create_defaults_to_draft(api, author_token):
    status, body = api.post(LIST, {"title": "No status", "body": "b"}, token=author_token)
    assert (status, body["data"]["status"]) == (201, "draft")


def test_same_title_twice_gets_distinct_slugs(api, author_token):
    payload = {"title": "Twice", "body": "", "status": "published"}
    slugs = [api.post(LIST, payload, token=author_token)[1]["data"]["slug"] for _ in range(2)]
    assert slugs == ["twice", "twice-2"]


def test_create_needs_a_token(api):
    assert_error(api.post(LIST, {"title": "t", "body": "b", "status": "draft"}), 401, "not_authenticated")
    assert_error(
        api.post(LIST, {"title": "t", "body": "b", "status": "draft"}, token="wrong"), 401, "not_authenticated"
    )
    assert not Post.objects.exists()


VALID = {"title": "t", "body": "b", "status": "draft"}


@pytest.mark.parametrize(
    "raw, field",
    [
        ('{"title": "t", "body": ', None),  # malformed JSON
        ("[1, 2]", None),  # not an object
        ("", None),
        (json.dumps({"body": "b", "status": "draft"}), "title"),  # missing
        (json.dumps({"title": "t", "status": "draft"}), "body"),
        (json.dumps({**VALID, "author": 1}), "author"),  # unknown
        (json.dumps({**VALID, "title": 5}), "title"),
        (json.dumps({**VALID, "title": None}), "title"),
        (json.dumps({**VALID, "title": "   "}), "title"),
        (json.dumps({**VALID, "title": "x" * 201}), "title"),
        (json.dumps({**VALID, "body": None}), "body"),
        (json.dumps({**VALID, "body": ["x"]}), "body"),
        (json.dumps({**VALID, "body": "x" * 50_001}), "body"),
        (json.dumps({**VALID, "status": "archived"}), "status"),
        (json.dumps({**VALID, "status": 1}), "status"),
        (json.dumps({**VALID, "status": ["draft"]}), "status"),
        (json.dumps({**VALID, "tags": "a,b"}), "tags"),
        (json.dumps({**VALID, "tags": ["a", 2]}), "tags"),
        (json.dumps({**VALID, "tags": [" "]}), "tags"),
        (json.dumps({**VALID, "tags": ["!!!"]}), "tags"),
        (json.dumps({**VALID, "tags": ["x" * 51]}), "tags"),
        (json.dumps({**VALID, "tags": [str(i) for i in range(21)]}), "tags"),
    ],
)
def test_create_rejects_bad_input(api, author_token, raw, field):
    result = api.post(LIST, raw=raw, token=author_token)
    assert_error(result, 400, "invalid_request")
    if field is not None:
        assert field in result[1]["error"]["message"]
    assert not Post.objects.exists()


def test_create_rejects_an_oversized_request(api, author_token):
    raw = json.dumps({**VALID, "body": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    assert_error(api.post(LIST, raw=raw, token=author_token), 413, "payload_too_large")
    assert not Post.objects.exists()


# Updating ----------------------------------------------------------------------------------------


def test_author_updates_title_body_status_and_tags(api, author, author_token):
    make_post(author, title="Before", status="draft", tags=["old"])
    status, body = api.patch(
        detail("before"),
        {"title": "After", "body": "new body", "status": "published", "tags": ["new", "other"]},
        token=author_token,
    )
    assert status == 200, body
    post = body["data"]
    assert (post["slug"], post["title"], post["body"], post["status"]) == ("before", "After", "new body", "published")
    assert post["published_at"] is not None
    assert post["tags"] == ["new", "other"]
    assert api.get(detail("before"))[1]["data"]["title"] == "After"


def test_patch_only_some_fields(api, author, author_token):
    make_post(author, title="Partial", body="keep me")
    status, body = api.patch(detail("partial"), {"status": "draft"}, token=author_token)
    assert status == 200
    assert (body["data"]["status"], body["data"]["body"], body["data"]["title"]) == ("draft", "keep me", "Partial")


def test_a_superuser_may_update_anyones_post(api, author, staff_token):
    make_post(author, title="Moderated", status="draft")
    status, body = api.patch(detail("moderated"), {"title": "Moderated!"}, token=staff_token)
    assert status == 200
    assert body["data"]["author"] == {"id": author.pk, "username": "alice"}  # the author stays


def test_a_holder_of_change_post_may_update_anyones_post_and_view_post_alone_may_not(api, author):
    from tests.support.factories import UserFactory, token_for
    from tests.support.perms import grant

    make_post(author, title="Edited", status="draft")
    make_post(author, title="Public")
    editor, reader = UserFactory(username="editor"), UserFactory(username="reader")
    grant(editor, "blog.change_post")
    grant(reader, "blog.view_post")
    status, body = api.patch(detail("edited"), {"title": "Edited!"}, token=token_for(editor))
    assert (status, body["data"]["title"]) == (200, "Edited!")
    # view_post shows the draft, so refusing it is a 403 (a draft it could not see would be a 404).
    for slug in ("edited", "public"):
        assert_error(api.patch(detail(slug), {"title": "x"}, token=token_for(reader)), 403, "forbidden")
    staff_only = token_for(UserFactory(username="staffonly", is_staff=True))
    assert_error(api.patch(detail("public"), {"title": "x"}, token=staff_only), 403, "forbidden")
    assert_error(api.patch(detail("edited"), {"title": "x"}, token=staff_only), 404, "post_not_found")
    assert set(Post.objects.values_list("title", flat=True)) == {"Edited!", "Public"}


def test_others_may_not_update(api, author, other_token):
    make_post(author, title="Mine")
    assert_error(api.patch(detail("mine"), {"title": "Yours"}, token=other_token), 403, "forbidden")
    make_post(author, title="My draft", status="draft")
    # Someone else's draft is invisible to them: the same 404 as on GET.
    assert_error(api.patch(detail("my-draft"), {"title": "x"}, token=other_token), 404, "post_not_found")
    assert set(Post.objects.values_list("title", flat=True)) == {"Mine", "My draft"}


def test_patch_errors(api, author, author_token):
    make_post(author, title="Target")
    assert_error(api.patch(detail("target"), {"title": "x"}), 401, "not_authenticated")
    assert_error(api.patch(detail("missing"), {"title": "x"}, token=author_token), 404, "post_not_found")
    assert_error(api.patch(detail("target"), {}, token=author_token), 400, "invalid_request")
    assert_error(api.patch(detail("target"), {"slug": "new"}, token=author_token), 400, "invalid_request", "slug")
    assert_error(api.patch(detail("target"), {"title": ""}, token=author_token), 400, "invalid_request", "title")
    assert_error(api.patch(detail("target"), {"status": "gone"}, token=author_token), 400, "invalid_request", "status")
    assert_error(api.patch(detail("target"), raw="{nope", token=author_token), 400, "invalid_request")
    raw = json.dumps({"body": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    assert_error(api.patch(detail("target"), raw=raw, token=author_token), 413, "payload_too_large")
    assert Post.objects.get().title == "Target"


# Methods -----------------------------------------------------------------------------------------


def test_other_methods_are_405(api, author, author_token):
    make_post(author, title="Fixed")
    calls = [
        (api.put, LIST, "GET, POST"),
        (api.delete, LIST, "GET, POST"),
        (api.patch, LIST, "GET, POST"),
        (api.post, detail("fixed"), "GET, PATCH"),
        (api.delete, detail("fixed"), "GET, PATCH"),
    ]
    for call, path, allowed in calls:
        result = call(path, token=author_token) if call == api.delete else call(path, VALID, token=author_token)
        assert_error(result, 405, "method_not_allowed")
        assert api.last["Allow"] == allowed
    assert Post.objects.count() == 1
