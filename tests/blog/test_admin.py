"""The blog in the Django admin: posts saved in the blog database, the admin log in the shared one,
an author chooser fed from the shared database, and a changelist without a query per author."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from blog.models import Post, Tag
from tests.support.factories import UserFactory, make_post

pytestmark = pytest.mark.django_db(databases=["default", "blog"])


@pytest.fixture
def admin_client(staff):
    client = Client()
    client.force_login(staff)
    return client


def test_add_post_saves_in_blog_and_logs_in_default(admin_client, staff, author):
    tag = Tag.objects.create(name="News", slug="news")
    response = admin_client.post(
        "/admin/blog/post/add/",
        {
            "title": "From the admin",
            "body": "Typed in a form.",
            "status": "published",
            "author": author.username,
            "tags": [str(tag.pk)],
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]

    with connections["blog"].cursor() as cur:
        cur.execute("SELECT id, slug, author_id, status, published_at IS NOT NULL FROM blog_post")
        [(post_id, slug, author_id, status, has_date)] = cur.fetchall()
        cur.execute("SELECT tag_id FROM blog_post_tags WHERE post_id = %s", [post_id])
        assert cur.fetchall() == [(tag.pk,)]
        cur.execute("SELECT to_regclass('django_admin_log')")
        assert cur.fetchone() == (None,)  # the admin log lives in the shared database only
    assert (slug, author_id, status, has_date) == ("from-the-admin", author.pk, "published", True)

    entry = LogEntry.objects.using("default").get(object_id=str(post_id))
    assert entry.action_flag == ADDITION and entry.user_id == staff.pk
    assert entry.content_type_id == ContentType.objects.get_for_model(Post).pk


def test_add_form_proposes_the_current_user_as_author(admin_client, staff, author):
    page = admin_client.get("/admin/blog/post/add/").content.decode()
    field = re.search(r'<input type="text" name="author"[^>]*>', page).group(0)
    assert 'value="root"' in field
    assert "alice" not in page  # no list of every user: it would not fit a page at a million users


def test_an_unknown_author_is_a_form_error(admin_client):
    response = admin_client.post(
        "/admin/blog/post/add/", {"title": "t", "body": "", "status": "draft", "author": "nobody-here"}
    )
    assert response.status_code == 200 and "No user named" in response.content.decode()
    assert not Post.objects.exists()


def test_change_keeps_the_slug_and_shows_the_author(admin_client, author):
    post = make_post(author, title="Original title", status="draft")
    page = admin_client.get(f"/admin/blog/post/{post.pk}/change/").content.decode()
    assert re.search(r'<input type="text" name="author" value="alice"', page)
    response = admin_client.post(
        f"/admin/blog/post/{post.pk}/change/",
        {
            "title": "New title",
            "body": post.body,
            "status": "published",
            "author": "alice",
        },
    )
    assert response.status_code == 302
    post.refresh_from_db()
    assert (post.title, post.slug, post.status) == ("New title", "original-title", "published")
    assert post.published_at is not None


def test_add_without_author_is_a_form_error(admin_client):
    response = admin_client.post("/admin/blog/post/add/", {"title": "t", "body": "", "status": "draft"})
    assert response.status_code == 200
    assert "This field is required" in response.content.decode()
    assert not Post.objects.exists()


def changelist_queries(client) -> tuple[str, int, int]:
    with CaptureQueriesContext(connections["default"]) as shared, CaptureQueriesContext(connections["blog"]) as blog:
        response = client.get("/admin/blog/post/")
    assert response.status_code == 200
    return response.content.decode(), len(shared.captured_queries), len(blog.captured_queries)


def test_changelist_looks_authors_up_once_per_page(admin_client):
    for i in range(2):
        make_post(UserFactory(username=f"writer{i}"), title=f"Post {i}")
    page, shared_small, blog_small = changelist_queries(admin_client)
    assert "writer0" in page and "writer1" in page
    for i in range(2, 12):
        make_post(UserFactory(username=f"writer{i}"), title=f"Post {i}")
    page, shared_large, blog_large = changelist_queries(admin_client)
    assert all(f"writer{i}" in page for i in range(12))
    assert shared_large == shared_small
    assert blog_large == blog_small


def test_changelist_filters_and_search(admin_client, author):
    make_post(author, title="Tagged one", tags=["django"])
    make_post(author, title="Plain draft", status="draft")
    tag = Tag.objects.get(slug="django")
    with CaptureQueriesContext(connections["blog"]) as blog:
        page = admin_client.get("/admin/blog/post/", {"tags": tag.pk}).content.decode()
    assert "Tagged one" in page and "Plain draft" not in page
    listed = [q["sql"] for q in blog.captured_queries if '"blog_post"."title"' in q["sql"]]
    # The link table's index decides (a semi-join), not an EXISTS over a join of every link.
    assert listed and all(' IN (SELECT U0."post_id"' in sql and "EXISTS" not in sql for sql in listed), listed
    page = admin_client.get("/admin/blog/post/", {"tags": "none"}).content.decode()
    assert "Plain draft" in page and "Tagged one" not in page
    assert admin_client.get("/admin/blog/post/", {"tags": "x"}).status_code == 302  # ?e=1: not an id
    page = admin_client.get("/admin/blog/post/", {"status__exact": "draft"}).content.decode()
    assert "Plain draft" in page and "Tagged one" not in page
    page = admin_client.get("/admin/blog/post/", {"q": "plain"}).content.decode()
    assert "Plain draft" in page and "Tagged one" not in page


def test_publish_action(admin_client, author):
    post = make_post(author, title="Waiting", status="draft")
    response = admin_client.post("/admin/blog/post/", {"action": "publish_selected", "_selected_action": [post.pk]})
    assert response.status_code == 302
    post.refresh_from_db()
    assert post.status == "published" and post.published_at is not None


def test_delete_selected(admin_client, author):
    posts = [make_post(author, title=f"Doomed {i}") for i in range(2)]
    response = admin_client.post(
        "/admin/blog/post/", {"action": "delete_selected", "post": "yes", "_selected_action": [p.pk for p in posts]}
    )
    assert response.status_code == 302
    assert not Post.objects.exists()


def test_a_tags_delete_page_counts_its_links_instead_of_listing_each(admin_client, author):
    for i in range(30):
        make_post(author, title=f"Linked {i}", tags=["busy"])
    tag = Tag.objects.get(slug="busy")
    page = admin_client.get(f"/admin/blog/tag/{tag.pk}/delete/").content.decode()
    assert "Post-tag relationships: 30" in page
    assert "Post_tags object" not in page  # not one line per link
    response = admin_client.post(f"/admin/blog/tag/{tag.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Tag.objects.filter(pk=tag.pk).exists() and Post.objects.count() == 30


def test_tag_admin_adds_a_tag(admin_client):
    response = admin_client.post("/admin/blog/tag/add/", {"name": "Release notes", "slug": "release-notes"})
    assert response.status_code == 302
    assert Tag.objects.using("blog").filter(slug="release-notes").exists()
