"""The blog's JSON API (see the contract): views check the input, then call services and selectors.

Every bad input is a 400 `invalid_request` whose message and `field` name the field at fault.
"""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse

from blog import selectors, services
from blog.models import TAG_NAME_MAX_LENGTH, TITLE_MAX_LENGTH, Post
from config.http import ApiError, json_body, require_str, token_optional, token_required

LIMIT_DEFAULT = 20
LIMIT_MAX = 100
BODY_MAX_LENGTH = 50_000  # characters; the request itself is capped by DATA_UPLOAD_MAX_MEMORY_SIZE (413)
TAGS_MAX = 20
POST_FIELDS = {"title", "body", "status", "tags"}


def _invalid(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_request", message, field=field)


def _limit(request) -> int:
    raw = request.GET.get("limit")
    if raw is None:
        return LIMIT_DEFAULT
    if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= LIMIT_MAX):
        raise _invalid("limit", f"limit must be an integer from 1 to {LIMIT_MAX}")
    return int(raw)


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _invalid("tags", "tags must be a list of strings")
    if len(value) > TAGS_MAX:
        raise _invalid("tags", f"at most {TAGS_MAX} tags")
    names = [v.strip() for v in value]
    if not all(names):
        raise _invalid("tags", "tags must not be empty strings")
    if any(len(n) > TAG_NAME_MAX_LENGTH for n in names):
        raise _invalid("tags", f"tags: a tag is longer than {TAG_NAME_MAX_LENGTH} characters")
    return names


def _post_fields(data: dict[str, Any]) -> dict[str, Any]:
    """The checked values of the post fields present in `data`."""
    fields: dict[str, Any] = {}
    if "title" in data:
        fields["title"] = require_str(data, "title", max_length=TITLE_MAX_LENGTH)
    if "body" in data:
        fields["body"] = require_str(data, "body", max_length=BODY_MAX_LENGTH, allow_empty=True)
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
    limit = _limit(request)
    try:
        posts, next_cursor = selectors.post_list_published(cursor=request.GET.get("cursor") or None, limit=limit)
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
    post = selectors.post_get_by_slug(slug=slug, user=user)
    if post is None:
        raise _not_found(slug)
    return JsonResponse({"data": post})


@token_required
def post_update(request, slug: str):
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
