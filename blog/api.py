"""The blog's JSON API (see the contract): views check the input, then call services and selectors.

Every bad input is a 400 `invalid_request` whose message and `field` name the field at fault.
"""

from __future__ import annotations

import re
from typing import Any

from django.http import JsonResponse

from blog import selectors, services
from blog.models import SLUG_MAX_LENGTH, TAG_NAME_MAX_LENGTH, TITLE_MAX_LENGTH, Post
from config.httpkit.auth import token_optional, token_required
from config.httpkit.errors import ApiError
from config.httpkit.parsing import clean_key, clean_text, json_body, query_int, query_key, require_str

LIMIT_DEFAULT = 20
LIMIT_MAX = 100
BODY_MAX_LENGTH = 50_000  # characters; the request itself is capped by DATA_UPLOAD_MAX_MEMORY_SIZE (413)
TAGS_MAX = 20
POST_FIELDS = {"title", "body", "status", "tags"}
SLUG_RE = re.compile(r"[A-Za-z0-9_-]+")  # what slugify makes (any case: an unknown one is a 404, not a 400)
CURSOR_RE = re.compile(r"[A-Za-z0-9_-]+")  # base64url without padding (selectors.cursor_encode)


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_request", message, field=field)


def _slug(slug: str) -> str:
    return clean_key(slug, "slug", pattern=SLUG_RE, max_length=SLUG_MAX_LENGTH, description="letters, digits, - or _")


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid("tags", "tags must be a list of strings")
    if len(value) > TAGS_MAX:
        raise _invalid("tags", f"at most {TAGS_MAX} tags")
    # The tag's slug, made from the name, is checked where it is made (services.tags_resolve).
    return [clean_text(v, "tags", max_length=TAG_NAME_MAX_LENGTH) for v in value]


def _post_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The checked values of the post fields present in `data`."""
    fields: dict[str, Any] = {}
    if "title" in data:
        fields["title"] = require_str(data, "title", max_length=TITLE_MAX_LENGTH)
    if "body" in data:
        fields["body"] = require_str(data, "body", max_length=BODY_MAX_LENGTH, allow_empty=True, multiline=True)
    if "status" in data:
        if not isinstance(data["status"], str) or data["status"] not in Post.Status.values:
            raise _invalid("status", f"status must be one of: {', '.join(Post.Status.values)}")
        fields["status"] = data["status"]
    if "tags" in data:
        fields["tags"] = _tags(data["tags"])
    return fields


def _not_found(slug: str) -> ApiError:
    return ApiError(404, "post_not_found", f"no post with slug {slug[:100]!r}")


def post_list(request):
    limit = query_int(request, "limit", default=LIMIT_DEFAULT, minimum=1, maximum=LIMIT_MAX)
    cursor = query_key(
        request,
        "cursor",
        pattern=CURSOR_RE,
        max_length=selectors.CURSOR_MAX_LENGTH,
        description="the next of a page this API returned",
    )
    try:
        posts, next_cursor = selectors.post_list_published(cursor=cursor, limit=limit)
    except selectors.InvalidCursor as exc:
        raise _invalid("cursor", str(exc)) from None
    return JsonResponse({"data": posts, "next": next_cursor})


@token_required
def post_create(request):
    data = json_body(request, required={"title", "body"}, optional=POST_FIELDS)
    fields = _post_fields(data)
    try:
        post = services.post_create(author=request.api_user, **fields)
    except services.InvalidInput as exc:
        raise _invalid(exc.field, exc.message) from None
    response = JsonResponse({"data": selectors.post_get_written(post=post)}, status=201)
    response["Location"] = f"/api/blog/posts/{post.slug}"
    return response


def post_detail(request, slug: str):
    user = token_optional(request)
    slug = _slug(slug)
    post = selectors.post_get_by_slug(slug=slug, user=user)
    if post is None:
        raise _not_found(slug)
    return JsonResponse({"data": post})


@token_required
def post_update(request, slug: str):
    slug = _slug(slug)
    data = json_body(request, required=set(), optional=POST_FIELDS)
    if not data:
        raise ApiError(400, "invalid_request", f"nothing to update: send any of {', '.join(sorted(POST_FIELDS))}")
    fields = _post_fields(data)
    user = request.api_user
    post = selectors.post_get_for_update(slug=slug)
    # Someone else's draft does not exist for this user: 404, as on GET.
    if post is None or not selectors.post_visible_to(status=post.status, author_id=post.author_id, user=user):
        raise _not_found(slug)
    if not selectors.post_editable_by(post=post, user=user):
        raise ApiError(403, "forbidden", "only the author or a holder of blog.change_post may change this post")
    try:
        post = services.post_update(post=post, **fields)
    except services.InvalidInput as exc:
        raise _invalid(exc.field, exc.message) from None
    return JsonResponse({"data": selectors.post_get_written(post=post)})
