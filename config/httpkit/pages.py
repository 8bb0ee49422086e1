"""What a browser sees outside the admin: the home page, and error pages in HTML where the
API answers JSON. API paths always get JSON; other paths get JSON only when asked for it."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from django.utils.cache import patch_vary_headers

from config.httpkit.errors import error_response, wants_json

LINKS = {
    "admin": {"href": "/admin/", "title": "Admin"},
    "api_docs": {"href": "/api/docs", "title": "API docs (interactive)"},
    "openapi": {"href": "/api/openapi.json", "title": "OpenAPI 3.1 document"},
    "health": {"href": "/healthz", "title": "Health (liveness)"},
    "readiness": {"href": "/readyz", "title": "Readiness (every database)"},
    "metrics": {"href": "/metrics", "title": "Metrics (Prometheus)"},
}


def home(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        response = error_response(405, "method_not_allowed", "allowed: GET, HEAD")
        response["Allow"] = "GET, HEAD"
        return response
    if wants_json(request):
        links = {name: link["href"] for name, link in LINKS.items()}
        response = JsonResponse({"data": {"links": links}})
    else:
        html = render_to_string("httpkit/home.html", {"links": LINKS.values()})
        response = HttpResponse(html)
    patch_vary_headers(response, ["Accept"])
    return response
