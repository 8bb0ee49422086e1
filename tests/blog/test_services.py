"""Writes through blog.services: slugs, publication dates, tags, database constraints."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import IntegrityError, connections, transaction

from blog import services
from blog.models import Post, Tag
from tests.support.factories import make_post

pytestmark = pytest.mark.django_db(databases=["default", "blog"])


def test_posts_are_stored_in_the_blog_database(author):
    post = make_post(author, title="Where am I")
    with connections["blog"].cursor() as cur:
        cur.execute("SELECT author_id, slug FROM blog_post WHERE id = %s", [post.pk])
        assert cur.fetchone() == (author.pk, "where-am-i")
    with connections["default"].cursor() as cur:
        cur.execute("SELECT to_regclass('blog_post')")
        assert cur.fetchone() == (None,)


def test_same_title_gets_numbered_slugs(author):
    slugs = [make_post(author, title="Hello World").slug for _ in range(3)]
    assert slugs == ["hello-world", "hello-world-2", "hello-world-3"]


def test_numbering_continues_after_the_highest_suffix(author):
    make_post(author, title="Hello")
    assert make_post(author, title="Hello 7").slug == "hello-7"
    assert make_post(author, title="Hello").slug == "hello-8"
    # "hello-7" is taken as a base of its own: the next "Hello 7" is suffixed, not renumbered.
    assert make_post(author, title="Hello 7").slug == "hello-7-2"


def test_slug_stays_when_the_title_changes(author):
    post = make_post(author, title="First title")
    post = services.post_update(post=post, title="Completely different")
    post.refresh_from_db()
    assert (post.title, post.slug) == ("Completely different", "first-title")
    # The old slug stays taken: a new post with the first title does not reuse it.
    assert make_post(author, title="First title").slug == "first-title-2"


def test_title_without_letters_gets_a_fallback_slug(author):
    assert make_post(author, title="!!!").slug == "post"
    assert make_post(author, title="???").slug == "post-2"


def test_long_titles_make_slugs_that_fit(author):
    title = "x" * 200
    first, second = make_post(author, title=title), make_post(author, title=title)
    assert first.slug == "x" * 200
    assert second.slug == "x" * 200 + "-2"


def test_a_lost_slug_race_retries_with_the_next_free_slug(author, monkeypatch):
    """Another transaction took the slug between our check and our insert: the unique
    constraint refuses, the savepoint rolls back, and the insert retries."""
    make_post(author, title="Race")
    real = services._free_slug
    answers = iter(["race"])  # a stale answer, as a concurrent writer would cause
    monkeypatch.setattr(services, "_free_slug", lambda base: next(answers, None) or real(base))
    post = make_post(author, title="Race")
    assert post.slug == "race-2"
    assert Post.objects.filter(slug__startswith="race").count() == 2


def test_published_at_is_set_on_first_publication_only(author):
    post = make_post(author, title="Draft first", status="draft")
    assert post.published_at is None
    post = services.post_publish(post=post)
    first = post.published_at
    assert first is not None
    post = services.post_unpublish(post=post)
    assert post.status == "draft" and post.published_at == first
    post = services.post_publish(post=post)
    assert post.published_at == first


def test_an_update_that_changes_nothing_writes_nothing(author):
    post = make_post(author, title="Same", tags=["a"])
    before = Post.objects.get(pk=post.pk).updated_at
    services.post_update(post=post, title="Same", tags=["A"])
    assert Post.objects.get(pk=post.pk).updated_at == before


def test_tags_are_merged_by_slug_and_reused(author):
    first = make_post(author, title="One", tags=["Django", "django ", "Python"])
    assert sorted(first.tags.values_list("name", flat=True)) == ["Django", "Python"]
    second = make_post(author, title="Two", tags=["DJANGO"])
    assert list(second.tags.values_list("name", flat=True)) == ["Django"]
    assert Tag.objects.count() == 2


def test_tags_replace_on_update(author):
    post = make_post(author, title="Tagged", tags=["a", "b"])
    services.post_update(post=post, tags=["c"])
    assert list(post.tags.values_list("name", flat=True)) == ["c"]
    services.post_update(post=post, tags=[])
    assert post.tags.count() == 0


def test_a_tag_without_letters_is_refused(author):
    with pytest.raises(services.InvalidInput) as exc:
        make_post(author, title="Bad tag", tags=["!!!"])
    assert exc.value.field == "tags"
    assert not Post.objects.filter(title="Bad tag").exists()  # the whole create rolled back


def test_invalid_status_is_refused_by_the_service(author):
    with pytest.raises(services.InvalidInput) as exc:
        services.post_create(author=author, title="t", body="", status="archived")
    assert exc.value.field == "status"


def test_database_refuses_a_published_post_without_date(author):
    post = make_post(author, title="Constraint")
    with pytest.raises(IntegrityError, match="blog_post_published_has_date"):
        with transaction.atomic(using="blog"):
            Post.objects.filter(pk=post.pk).update(published_at=None)


def test_database_refuses_an_unknown_status(author):
    post = make_post(author, title="Constraint 2")
    with pytest.raises(IntegrityError, match="blog_post_status_valid"):
        with transaction.atomic(using="blog"):
            Post.objects.filter(pk=post.pk).update(status="archived")


def test_database_refuses_a_duplicate_slug(author):
    post = make_post(author, title="Dup")
    with pytest.raises(IntegrityError, match="blog_post_slug_unique"):
        with transaction.atomic(using="blog"):
            Post.objects.create(title="x", slug=post.slug, author_id=author.pk, published_at=dt.datetime.now(dt.UTC))


def test_delete(author):
    post = make_post(author, title="Gone")
    services.post_delete(post=post)
    assert not Post.objects.filter(pk=post.pk).exists()
