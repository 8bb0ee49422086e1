"""Every write to the blog goes through here: the API, the admin and commands.

Each function runs in one transaction on the blog database (`atomic_for`), so a
post, its tags and the audit rows written with them commit or roll back together.
Slugs are made once, from the first title, and never change afterwards.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, router
from django.db.models import Q
from django.utils import timezone
from django.utils.text import slugify

from blog.models import SLUG_MAX_LENGTH, TAG_NAME_MAX_LENGTH, TITLE_MAX_LENGTH, Post, Tag
from config.multidb.public import atomic_for

SLUG_BASE_MAX_LENGTH = TITLE_MAX_LENGTH
SLUG_FALLBACK = "post"  # a title without letters or digits ("!!!")
SLUG_ATTEMPTS = 5  # inserts racing for the same slug retry this often
POST_EDITABLE_FIELDS = frozenset({"title", "body", "status"})
TAG_SLUG_MAX_LENGTH = Tag._meta.get_field("slug").max_length


class InvalidInput(ValueError):
    """A value the domain refuses; `field` names it for the client."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _write_db(model) -> str:
    # Reads that decide a write go to the primary, never a lagging replica.
    return router.db_for_write(model)


def _constraint_name(exc: IntegrityError) -> str | None:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None)


def _check_post(post: Post) -> None:
    if not isinstance(post.title, str) or not post.title.strip():
        raise InvalidInput("title", "title must not be empty")
    if len(post.title) > TITLE_MAX_LENGTH:
        raise InvalidInput("title", f"title is longer than {TITLE_MAX_LENGTH} characters")
    if post.status not in Post.Status.values:
        raise InvalidInput("status", f"status must be one of: {', '.join(Post.Status.values)}")
    if not isinstance(post.body, str):
        raise InvalidInput("body", "body must be a string")


# Slugs --------------------------------------------------------------------------------------------


def post_slug_base(title: str) -> str:
    """The slug a title asks for, before any collision suffix."""
    return slugify(title)[:SLUG_BASE_MAX_LENGTH].strip("-_") or SLUG_FALLBACK


def _free_slug(base: str) -> str:
    """`base` if unused, else `base-<n>` with n one past the highest suffix in use (2 at least)."""
    # `base` comes from slugify: only [a-z0-9_-], nothing a regex would read as syntax.
    taken = set(
        Post.objects.using(_write_db(Post))
        .filter(Q(slug=base) | Q(slug__regex=rf"^{base}-[0-9]+$"))
        .order_by()
        .values_list("slug", flat=True)
    )
    if base not in taken:
        return base
    suffixes = [int(s[len(base) + 1 :]) for s in taken if s != base]
    candidate = f"{base}-{max([1, *suffixes]) + 1}"
    if len(candidate) > SLUG_MAX_LENGTH:  # absurd suffix counts only
        raise InvalidInput("title", "no free slug left for this title")
    return candidate


def _insert_with_unique_slug(post: Post) -> None:
    base = post_slug_base(post.title)
    for _ in range(SLUG_ATTEMPTS):
        post.slug = _free_slug(base)
        try:
            with atomic_for(Post):  # a savepoint: a lost race leaves the outer transaction usable
                post.save(force_insert=True)
            return
        except IntegrityError as exc:
            if _constraint_name(exc) != "blog_post_slug_unique":
                raise
            post.pk = None
            post._state.adding = True
    raise IntegrityError(f"could not find a free slug for {base!r} after {SLUG_ATTEMPTS} attempts")


# Tags ---------------------------------------------------------------------------------------------


def _tag_create(*, name: str, slug: str, using: str) -> Tag:
    try:
        with atomic_for(Tag):
            tag = Tag(name=name, slug=slug)
            tag.save(force_insert=True)
            return tag
    except IntegrityError:
        # Created concurrently by another request: use that one.
        existing = Tag.objects.using(using).filter(Q(slug=slug) | Q(name=name)).first()
        if existing is None:
            raise
        return existing


def tags_resolve(*, names: Iterable[str]) -> list[Tag]:
    """The tags called `names` (matched by slug or name), creating the missing ones; order kept, duplicates merged."""
    wanted: dict[str, str] = {}  # slug -> name, first spelling wins
    for raw in names:
        if not isinstance(raw, str):
            raise InvalidInput("tags", "tags must be a list of strings")
        name = raw.strip()
        if len(name) > TAG_NAME_MAX_LENGTH:
            raise InvalidInput("tags", f"tags: {name[:20]!r}... is longer than {TAG_NAME_MAX_LENGTH} characters")
        slug = slugify(name)
        if not slug:
            raise InvalidInput("tags", f"tags: {raw!r} needs at least one letter or digit")
        # slugify can lengthen a name ("\u33af" is "rads2"): check the column the slug goes to.
        if len(slug) > TAG_SLUG_MAX_LENGTH:
            raise InvalidInput(
                "tags", f"tags: the slug of {name[:20]!r} is longer than {TAG_SLUG_MAX_LENGTH} characters"
            )
        wanted.setdefault(slug, name)
    if not wanted:
        return []
    using = _write_db(Tag)
    found = list(Tag.objects.using(using).filter(Q(slug__in=wanted) | Q(name__in=wanted.values())))
    by_slug = {t.slug: t for t in found}
    by_name = {t.name: t for t in found}
    tags: list[Tag] = []
    for slug, name in wanted.items():
        tag = by_slug.get(slug) or by_name.get(name) or _tag_create(name=name, slug=slug, using=using)
        if tag not in tags:
            tags.append(tag)
    return tags


# Posts --------------------------------------------------------------------------------------------


def post_save(*, post: Post, tags: Iterable[Tag] | None = None) -> Post:
    """Insert or update `post` (the admin saves its form's instance through this).

    A new post gets its slug here; a post gets `published_at` the first time it is published.
    `tags`, when given, replaces the post's tags.
    """
    _check_post(post)
    with atomic_for(Post):
        if post.status == Post.Status.PUBLISHED and post.published_at is None:
            post.published_at = timezone.now()
        if post._state.adding:
            _insert_with_unique_slug(post)
        else:
            post.save()
        if tags is not None:
            post.tags.set(tags)
    return post


def post_create(
    *, author: Any, title: str, body: str, status: str = Post.Status.DRAFT, tags: Iterable[str] = ()
) -> Post:
    """A new post by `author` (a user of the shared database) with a unique slug made from `title`."""
    post = Post(author_id=author.pk, title=title.strip() if isinstance(title, str) else title, body=body, status=status)
    with atomic_for(Post):
        return post_save(post=post, tags=tags_resolve(names=tags) if tags else None)


def post_update(*, post: Post, **fields: Any) -> Post:
    """Change any of title, body, status and tags (a list of names); the slug stays.

    The row is locked for the update so two concurrent edits cannot interleave.
    Nothing is written when nothing changes.
    """
    unknown = set(fields) - POST_EDITABLE_FIELDS - {"tags"}
    if unknown:
        raise TypeError(f"post_update() got unexpected field(s): {', '.join(sorted(unknown))}")
    names = fields.pop("tags", None)
    if isinstance(fields.get("title"), str):
        fields["title"] = fields["title"].strip()
    with atomic_for(Post):
        locked = Post.objects.select_for_update().get(pk=post.pk)
        changed = [name for name, value in fields.items() if getattr(locked, name) != value]
        for name in changed:
            setattr(locked, name, fields[name])
        new_tags = None
        if names is not None:
            new_tags = tags_resolve(names=names)
            if {t.pk for t in new_tags} == set(locked.tags.values_list("pk", flat=True)):
                new_tags = None
        if changed or new_tags is not None:
            post_save(post=locked, tags=new_tags)
    return locked


def post_publish(*, post: Post) -> Post:
    """Publish; the first publication sets `published_at`, a later re-publication keeps it."""
    return post_update(post=post, status=Post.Status.PUBLISHED)


def post_unpublish(*, post: Post) -> Post:
    return post_update(post=post, status=Post.Status.DRAFT)


def post_delete(*, post: Post) -> None:
    with atomic_for(Post):
        post.delete()


def tag_delete(*, tag: Tag) -> None:
    with atomic_for(Tag):
        tag.delete()
