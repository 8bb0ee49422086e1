"""The JSON API on django-ninja: one `NinjaAPI` whose routers the apps declare, answering in
the contract's shapes (`{"data": ...}`, the one error envelope, `application/json`), with its
OpenAPI 3.1 document at /api/openapi.json and a docs page at /api/docs (assets from the
installed package: `ninja` is in INSTALLED_APPS, so no CDN).

What ninja would answer its own way is answered the contract's way here: a validation error
is `400 invalid_request` naming the field (never ninja's 422), a body that is not JSON or too
big is ours (400, 413), a missing or bad token is `401 not_authenticated`, a method a path
does not take is `405 method_not_allowed` with `Allow`, and any other exception goes on to
Django, where DatabaseErrorMiddleware turns a database fault into its 503.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.core.serializers.json import DjangoJSONEncoder
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from ninja import NinjaAPI, Router
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.params import models as params
from ninja.parser import Parser
from ninja.security import APIKeyHeader

from config.httpkit import auth
from config.httpkit.errors import ApiError, error_response
from config.httpkit.parsing import body_too_big, parse_json_object, printable
from config.httpkit.schemas import Error

# HTTP's phrases for the statuses the API answers, and what each means here.
_STATUS_TEXT = {
    400: "Bad request",
    401: "No valid token",
    403: "Authenticated but not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Body too large",
    429: "Too many writes from this token",
    503: "A database this endpoint needs is unavailable (Retry-After)",
}


class _JsonParser(Parser):
    def parse_body(self, request: HttpRequest) -> Any:
        # An ApiError here is wrapped in ninja's HttpError; _http_error unwraps it.
        return parse_json_object(request)


class TokenAuth(APIKeyHeader):
    """`Authorization: Token <key>`: the token's active user, or None (401)."""

    param_name = "Authorization"
    openapi_name = "Token"  # the scheme's name in the document

    def __init__(self, optional: bool = False):
        super().__init__()
        self.optional = optional
        self.openapi_description = (
            "`Authorization: Token <key>`; keys come from `manage.py create_api_token <username>`."
        )

    def __call__(self, request: HttpRequest) -> Any:
        header = request.META.get("HTTP_AUTHORIZATION", "")  # not request.headers: it parses every header
        if not header:
            return _ANONYMOUS if self.optional else None  # anonymous: no query at all
        # The write rate of the token is counted here (ApiError 429 beyond it).
        user = auth.token_user(header, request.method)
        if user is not None:
            request.api_user = user
        return user

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:  # pragma: no cover - __call__ does it
        raise NotImplementedError


class _MetaHeaders(params.HeaderModel):
    """Header parameters read from `request.META`. ninja reads them from `request.headers`,
    which Django builds by parsing the name of every header of the request, to find one."""

    @classmethod
    def get_request_data(cls, request: HttpRequest, api: Any, path_params: Any) -> dict[str, str]:
        meta = request.META
        data = {}
        for name in cls.__ninja_flatten_map__:
            key = name.upper().replace("-", "_")
            value = meta.get(key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}")
            if value is not None:
                data[name] = value
        return data


class Header(params.Header):
    """ninja's `Header(...)` parameter, read as `_MetaHeaders` reads it (the class keeps ninja's
    name: ninja calls the parameter's source by it, `in: header` in the document)."""

    _model = _MetaHeaders


class _Anonymous:
    """The `request.auth` of an optional-token endpoint called without a token (truthy for ninja)."""

    pk = None


_ANONYMOUS = _Anonymous()
token = TokenAuth()
token_optional = TokenAuth(optional=True)


def viewer(request: HttpRequest):
    """The token's user of an optional-token endpoint, None when anonymous."""
    user = getattr(request, "auth", None)
    return None if user is _ANONYMOUS else user


def requires(perm: str) -> Callable:
    """A Django permission ("<app>.<codename>"; superusers hold all) on top of the token:
    403 forbidden without it. Staff status alone grants nothing."""

    def decorate(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.auth.has_perm(perm):
                raise ApiError(403, "forbidden", f"this needs the permission {perm}")
            return view(request, *args, **kwargs)

        wrapper.required_permission = perm
        return wrapper

    return decorate


_ENCODER = DjangoJSONEncoder()  # what ninja's renderer and the fast lane encode with


def answer(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> HttpResponse:
    """A hot route's answer, ready: `data` (built by the view in its schema's shape) as JSON,
    byte for byte what ninja would send, without ninja validating it again against the
    response schema and dumping it (about 130k instructions, 8% of a Django read). The schema
    still documents the answer; the suite holds the two together (schemathesis checks every
    response against the document, the fast lane's tests compare bytes with Django's)."""
    return HttpResponse(_ENCODER.encode(data), status=status, headers=headers, content_type="application/json")


def _request_contexts(view: Callable) -> Callable:
    """Every operation runs inside the contexts apps registered for the token's user
    (audit: the actor of the request's writes)."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        user = viewer(request)
        contexts = auth.request_contexts()
        if user is None or not contexts:
            return view(request, *args, **kwargs)
        if len(contexts) == 1:  # the usual case (audit's actor): no ExitStack per request
            with contexts[0](user):
                return view(request, *args, **kwargs)
        with contextlib.ExitStack() as stack:
            for context in contexts:
                stack.enter_context(context(user))
            return view(request, *args, **kwargs)

    return wrapper


def errors(
    *statuses: int,
    ok: dict[int, Any],
    codes: dict[int, Iterable[str]] | None = None,
    links: dict[str, dict[str, str]] | None = None,
    optional_token: bool = False,
) -> dict[str, Any]:
    """An operation's `response=` (its success schema `ok` and the error envelope for each error
    status) and its OpenAPI extras: the codes of each status, `links` from the success answer
    to the operations that read what it made (`{"order_detail": {"order_id": "$response.body#/data/id"}}`),
    and an optional token (the document says a request without one is fine):
    `errors(401, ok={200: Data[Account]}, codes={404: ["account_not_found"]})`. 503 is added to every one."""
    codes = codes or {}
    statuses = sorted({*statuses, *codes, 503})
    described: dict[int, dict] = {}
    for status in statuses:
        names = list(codes.get(status, ()))
        text = _STATUS_TEXT.get(status, "Error")
        described[status] = {"description": f"{text}: `{'`, `'.join(names)}`" if names else text}
    if links:
        (status,) = ok
        described[status] = {
            "links": {
                operation: {"operationId": operation, "parameters": parameters}
                for operation, parameters in links.items()
            }
        }
    extra: dict[str, Any] = {"responses": described}
    if optional_token:
        extra["security"] = [{}]  # added to ninja's [{"TokenAuth": []}]: no token at all is fine too
    return {"response": {**ok, **{s: Error for s in statuses}}, "openapi_extra": extra}


class _Pending:
    """What ninja calls the temporal response: the status and headers a view sets (its
    `response` parameter) before the answer exists. ninja makes an HttpResponse for it on every
    request (about 40k instructions) and throws it away when the view answers itself
    (`answer(...)`); this holds the same until `Api.create_response` makes the one answer.
    (An operation whose response schema is None, or a streaming one, would need a real
    HttpResponse here: the API has neither.)"""

    __slots__ = ("status_code", "headers")

    def __init__(self) -> None:
        self.status_code = 200
        self.headers: dict[str, str] = {}

    def __setitem__(self, name: str, value: str) -> None:
        self.headers[name] = value

    def __getitem__(self, name: str) -> str:
        return self.headers[name]


class Api(NinjaAPI):
    """NinjaAPI answering in the contract's shapes (see the module's docstring)."""

    def get_content_type(self) -> str:
        return "application/json"  # as JsonResponse, byte for byte (the fast lane's answers too)

    def create_temporal_response(self, request: HttpRequest) -> Any:
        return _Pending()

    def create_response(self, request, data, *, status=None, temporal_response=None) -> HttpResponse:
        if temporal_response is not None:
            status = temporal_response.status_code
        content = self.renderer.render(request, data, response_status=status)
        headers = temporal_response.headers if temporal_response is not None else None
        return HttpResponse(content, status=status, headers=headers, content_type="application/json")

    def get_openapi_operation_id(self, operation) -> str:
        return operation.view_func.__name__  # product_create, not market_api_product_create

    @property
    def urls(self):
        patterns, app_name, namespace = super().urls
        for pattern in patterns:
            pattern.callback = _json_not_allowed(pattern.callback)
        return patterns, app_name, namespace


def _json_not_allowed(view: Callable) -> Callable:
    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = ", ".join(sorted(m.strip() for m in response["Allow"].split(",")))
            return error_response(405, "method_not_allowed", f"allowed: {allowed}", headers={"Allow": allowed})
        return response

    return wrapper


def _api_error(request, exc: ApiError) -> HttpResponse:
    return error_response(exc.status, exc.code, exc.message, headers=exc.headers, **exc.extra)


def _http_error(request, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, ApiError):  # our body parser's answer, wrapped by ninja
        return _api_error(request, exc.__cause__)
    if isinstance(exc, AuthenticationError):
        return error_response(401, "not_authenticated", "a valid 'Authorization: Token <key>' header is required")
    return error_response(exc.status_code, "invalid_request" if exc.status_code == 400 else "error", str(exc))


def _validation_error(request, exc: ValidationError) -> HttpResponse:
    """What pydantic refused beyond the schemas' own rules (which answer themselves), named
    by the field's place: the body's field, the query parameter, the header."""
    errors = exc.errors
    missing = [e for e in errors if e.get("type") == "missing"]
    if any(tuple(e["loc"][:1]) == ("body",) and len(e["loc"]) == 2 for e in missing):
        return error_response(400, "invalid_request", "body is not valid JSON")  # no body at all, as json.loads("")
    if missing:
        names = sorted(_field_name(e) for e in missing)
        return _api_error(request, _missing(names, [e["loc"][0] for e in missing]))
    first = errors[0]
    name = _field_name(first)
    message = first.get("msg", "invalid value")
    return error_response(400, "invalid_request", f"{name}: {message}", field=name)


def _missing(names: list[str], sources: list[str]) -> ApiError:
    if sources and all(s == "header" for s in sources):
        article = "an" if names[0][:1].lower() in "aeiou" else "a"
        return ApiError(400, "invalid_request", f"{article} {names[0]} header is required", field=names[0])
    return ApiError(400, "invalid_request", f"missing field(s): {', '.join(names)}", field=names[0], fields=names)


def _field_name(error: dict) -> str:
    loc = [str(part) for part in error.get("loc", ()) if not isinstance(part, int)]
    # ("body", "<param>", "field") / ("query", "limit") / ("header", "Idempotency-Key")
    name = loc[-1] if loc else "body"
    return name if printable(name) else ascii(name)


def _too_big(request, exc: RequestDataTooBig) -> HttpResponse:
    # Django refuses a declared Content-Length above the limit when ninja reads the body.
    return _api_error(request, body_too_big())


def _reraise(request, exc: Exception) -> HttpResponse:
    raise exc  # Django's handling: a database fault becomes the 503 naming the database


def build(routers: Iterable[tuple[str, Router]], **kwargs: Any) -> Api:
    api = Api(
        title="Platform API",
        version="1",
        description=(
            'The platform\'s JSON API. Every answer is `{"data": ...}`; every error '
            '`{"error": {"code", "message", "request_id", ...}}`; every response carries `X-Request-ID`.'
        ),
        openapi_url="/openapi.json",
        docs_url="/docs",
        parser=_JsonParser(),
        urls_namespace="api",
        **kwargs,
    )
    api.add_exception_handler(ApiError, _api_error)
    api.add_exception_handler(HttpError, _http_error)
    api.add_exception_handler(ValidationError, _validation_error)
    api.add_exception_handler(RequestDataTooBig, _too_big)
    api.add_exception_handler(Exception, _reraise)
    api.add_decorator(_request_contexts, mode="operation")
    for prefix, router in routers:
        api.add_router(prefix, router)
    return api
