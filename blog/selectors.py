"""Reads of the blog, shaped for the API: plain dicts from `.values()`, no model instances.

A page costs two queries whatever its size: one on the blog database (posts with
their tag names as an array subquery) and one on the shared database for the
authors of the whole page.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.postgres.expressions import ArraySubquery
from django.db import InterfaceError, OperationalError, router
from django.db.models import OuterRef, Q, QuerySet

from blog.models import Post, Tag
from config.httpkit.permissions import may_view
from config.multidb.public import DatabaseUnavailable

POST_FIELDS = ("id", "slug", "title", "body", "status", "published_at", "created_at", "updated_at", "author_id")
CURSOR_MAX_LENGTH = 100
_POST_ID = re.compile(r"[0-9]{1,19}")
_MAX_ID = 2**63 - 1  # bigint


class InvalidCursor(ValueError):
    pass


# Cursors: opaque to clients, base64url of "<published_at ISO 8601>|<id>" -----------------------------


def cursor_encode(published_at: dt.datetime, post_id: int) -> str:
    raw = f"{published_at.astimezone(dt.UTC).isoformat()}|{post_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def cursor_decode(cursor: str) -> tuple[dt.datetime, int]:
    if not cursor or len(cursor) > CURSOR_MAX_LENGTH:
        raise InvalidCursor("cursor is not one this API returned")
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True).decode()
        stamp, _, post_id = raw.partition("|")
        published_at = dt.datetime.fromisoformat(stamp)
        # In UTC here, as the database compares it: year 1 at +01:00 has no UTC time (OverflowError).
        published_at = published_at.astimezone(dt.UTC) if published_at.tzinfo is not None else None
        # ASCII digits only: int() also reads "١" and "1_0".
        pk = int(post_id) if _POST_ID.fullmatch(post_id) else 0
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        raise InvalidCursor("cursor is not one this API returned") from None
    if published_at is None or not 1 <= pk <= _MAX_ID:
        raise InvalidCursor("cursor is not one this API returned")
    return published_at, pk


# Building blocks ---------------------------------------------------------------------------------


def _with_tag_names(qs: QuerySet) -> QuerySet:
    names = Tag.objects.filter(posts=OuterRef("pk")).order_by("name").values("name")
    return qs.annotate(tag_names=ArraySubquery(names)).values(*POST_FIELDS, "tag_names")


def authors_by_id(ids) -> dict[int, dict[str, Any]]:
    """`{id: {"id", "username"}}` for users of the shared database, in one query (none for no ids)."""
    ids = {i for i in ids if i is not None}
    if not ids:
        return {}
    rows = get_user_model().objects.filter(id__in=ids).values("id", "username")
    return {row["id"]: row for row in rows}


def _payload(row: dict[str, Any], authors: dict[int, dict[str, Any]]) -> dict[str, Any]:
    author_id = row["author_id"]
    return {
        "id": row["id"],
        "slug": row["slug"],
        "title": row["title"],
        "body": row["body"],
        "status": row["status"],
        "published_at": row["published_at"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "tags": list(row["tag_names"]),
        # A user deleted from the shared database leaves an author without a name.
        "author": authors.get(author_id) or {"id": author_id, "username": None},
    }


def _payloads(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    try:
        authors = authors_by_id(row["author_id"] for row in rows)
    except (DatabaseUnavailable, OperationalError, InterfaceError):
        # Bulkhead: with the shared database down the blog still answers, its authors without names.
        authors = {}
    return [_payload(row, authors) for row in rows]


# Public reads ------------------------------------------------------------------------------------


def post_list_published(*, cursor: str | None, limit: int) -> tuple[list[dict[str, Any]], str | None]:
    """One page of published posts, newest first, and the cursor of the next page (None on the last).

    Keyset pagination on (published_at, id): stable while posts are added, no OFFSET scans.
    Raises InvalidCursor for a cursor this function did not produce.
    """
    qs = Post.objects.filter(status=Post.Status.PUBLISHED).order_by("-published_at", "-id")
    if cursor:
        published_at, pk = cursor_decode(cursor)
        qs = qs.filter(
            Q(published_at__lt=published_at) | Q(published_at=published_at, id__lt=pk), published_at__lte=published_at
        )
    rows = list(_with_tag_names(qs)[: limit + 1])
    page, more = rows[:limit], len(rows) > limit
    next_cursor = cursor_encode(page[-1]["published_at"], page[-1]["id"]) if more else None
    return _payloads(page), next_cursor


def post_visible_to(*, status: str, author_id: int, user) -> bool:
    """Published posts are public; a draft only to its author and to holders of blog.view_post
    (or blog.change_post, as in the admin)."""
    if status == Post.Status.PUBLISHED:
        return True
    return user is not None and (user.pk == author_id or may_view(user, "blog", "post"))


def post_editable_by(*, post: Post, user) -> bool:
    """The author, or a holder of blog.change_post."""
    return user is not None and user.is_active and (user.pk == post.author_id or user.has_perm("blog.change_post"))


def post_get_by_slug(*, slug: str, user=None) -> dict[str, Any] | None:
    """The post called `slug` as the API shows it, or None when it does not exist or `user` may not see it."""
    rows = list(_with_tag_names(Post.objects.filter(slug=slug).order_by())[:1])
    if not rows or not post_visible_to(status=rows[0]["status"], author_id=rows[0]["author_id"], user=user):
        return None
    return _payloads(rows)[0]


def post_get_written(*, post: Post) -> dict[str, Any]:
    """`post` as the API shows it, read back from the primary right after a write (a replica may lag)."""
    qs = Post.objects.using(router.db_for_write(Post)).filter(pk=post.pk).order_by()
    return _payloads(list(_with_tag_names(qs)[:1]))[0]


def post_get_for_update(*, slug: str) -> Post | None:
    """The model instance a write starts from, read from the primary."""
    return Post.objects.using(router.db_for_write(Post)).filter(slug=slug).first()
