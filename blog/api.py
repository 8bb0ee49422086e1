"""The blog's JSON API (see the contract): typed operations (blog.schemas) calling services
and selectors. Every bad input is a 400 `invalid_request` whose message and `field` name the
field at fault."""

from django.http import HttpRequest, HttpResponse
from ninja import Query, Router, Schema, Status

from blog import selectors, services
from blog.schemas import CURSOR_RE, Post, PostIn, PostPatch, Slug
from config.httpkit.api import errors, token, token_optional, viewer
from config.httpkit.errors import ApiError, invalid
from config.httpkit.schemas import Data, Page, QueryInt, QueryKey

router = Router(tags=["blog"])

LIMIT_DEFAULT = 20
LIMIT_MAX = 100


class PostPageQuery(Schema):
    limit: QueryInt(1, LIMIT_MAX, description="Posts per page.") = LIMIT_DEFAULT
    cursor: QueryKey(CURSOR_RE, selectors.CURSOR_MAX_LENGTH, "the next of a page this API returned") = None


def _not_found(slug: str) -> ApiError:
    return ApiError(404, "post_not_found", f"no post with slug {slug[:100]!r}")


def _saved(call, **kwargs):
    try:
        return call(**kwargs)
    except services.InvalidInput as exc:  # a rule only the database side knows (a tag's slug, a free slug)
        raise invalid(exc.field, exc.message) from None


@router.get("/posts", summary="Published posts, newest first", **errors(400, ok={200: Page[Post]}))
def post_list(request: HttpRequest, page: Query[PostPageQuery]):
    try:
        posts, next_cursor = selectors.post_list_published(cursor=page.cursor, limit=page.limit)
    except selectors.InvalidCursor as exc:
        raise invalid("cursor", str(exc)) from None
    return {"data": posts, "next": next_cursor}


@router.post(
    "/posts",
    auth=token,
    summary="Write a post (a draft unless status is published)",
    **errors(
        400,
        401,
        413,
        429,
        ok={201: Data[Post]},
        links={
            "post_detail": {"slug": "$response.body#/data/slug"},
            "post_update": {"slug": "$response.body#/data/slug"},
        },
    ),
)
def post_create(request: HttpRequest, response: HttpResponse, payload: PostIn):
    post = _saved(services.post_create, author=request.auth, **payload.model_dump())
    response["Location"] = f"/api/blog/posts/{post.slug}"
    return Status(201, {"data": selectors.post_get_written(post=post)})


@router.get(
    "/posts/{slug}",
    auth=token_optional,
    summary="One post: a draft only for its author or a holder of blog.view_post",
    **errors(400, 401, codes={404: ["post_not_found"]}, ok={200: Data[Post]}, optional_token=True),
)
def post_detail(request: HttpRequest, slug: Slug):
    post = selectors.post_get_by_slug(slug=slug, user=viewer(request))
    if post is None:
        raise _not_found(slug)
    return {"data": post}


@router.patch(
    "/posts/{slug}",
    auth=token,
    summary="Change a post: its author or a holder of blog.change_post",
    **errors(400, 401, 403, 413, 429, codes={404: ["post_not_found"]}, ok={200: Data[Post]}),
)
def post_update(request: HttpRequest, slug: Slug, payload: PostPatch):
    user = request.auth
    post = selectors.post_get_for_update(slug=slug)
    # Someone else's draft does not exist for this user: 404, as on GET.
    if post is None or not selectors.post_visible_to(status=post.status, author_id=post.author_id, user=user):
        raise _not_found(slug)
    if not selectors.post_editable_by(post=post, user=user):
        raise ApiError(403, "forbidden", "only the author or a holder of blog.change_post may change this post")
    post = _saved(services.post_update, post=post, **payload.model_dump(exclude_unset=True))
    return {"data": selectors.post_get_written(post=post)}
