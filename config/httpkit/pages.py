"""What a browser sees outside the admin: the home page, and error pages in HTML where the
API answers JSON. API paths always get JSON; other paths get JSON only when asked for it."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.cache import patch_vary_headers

# The paths config/wsgi.py sends through the API stack.
API_PREFIXES = ("/api/", "/healthz", "/readyz", "/metrics")

# No generated docs page yet: the reference lives in the repository.
API_REFERENCE = {"title": "API reference", "where": "docs/api.md in the repository"}

LINKS = {
    "admin": {"href": "/admin/", "title": "Admin"},
    "health": {"href": "/healthz", "title": "Health (liveness)"},
    "readiness": {"href": "/readyz", "title": "Readiness (every database)"},
    "metrics": {"href": "/metrics", "title": "Metrics (Prometheus)"},
}


def wants_json(request: HttpRequest | None) -> bool:
    """JSON for the API's paths, and elsewhere for a client that prefers it over HTML."""
    if request is None:
        return True
    if request.path.startswith(API_PREFIXES):
        return True
    return request.get_preferred_type(["text/html", "application/json"]) == "application/json"


def home(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        from config.httpkit.http import error_response

        response = error_response(405, "method_not_allowed", "allowed: GET, HEAD")
        response["Allow"] = "GET, HEAD"
        return response
    if wants_json(request):
        links = {name: link["href"] for name, link in LINKS.items()}
        response = JsonResponse({"data": {"links": links, "api_reference": API_REFERENCE["where"]}})
    else:
        html = render_to_string("httpkit/home.html", {"links": LINKS.values(), "api_reference": API_REFERENCE})
        response = HttpResponse(html)
    patch_vary_headers(response, ["Accept"])
    return response


def error_page(status: int, title: str, message: str, headers: dict | None = None) -> HttpResponse:
    """A plain HTML error page. Rendered without the request: no context processor may touch
    a database that is down."""
    html = render_to_string("httpkit/error.html", {"status": status, "title": title, "message": message})
    return HttpResponse(html, status=status, headers=headers)
