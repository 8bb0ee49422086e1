"""OpenTelemetry traces of the request side, on only when config/multidb/tracing.py is on
(the standard OTEL_* variables; README, Traces). Off, config/wsgi.py wraps nothing and no
middleware is added.

- the whole WSGI application is wrapped (opentelemetry-instrumentation-wsgi): one SERVER span
  per request, fast lane included, since the lane answers before Django's middleware runs;
  it is named `<method> <route>` once the route is known (`http.route`), and carries the
  request's `request_id` (the one of its log lines);
- Django's request path (opentelemetry-instrumentation-django) adds an INTERNAL span per
  request, in both middleware stacks (the full one and `API_MIDDLEWARE`), its SQL commenter off;
- statement and pool spans (config/multidb/tracing.py) are children of these.

Paths matched by OTEL_PYTHON_DJANGO_EXCLUDED_URLS (or OTEL_PYTHON_EXCLUDED_URLS) get no span
at all (`healthz,readyz,metrics` keeps probes out).
"""

from __future__ import annotations

import os

from django.conf import settings

from config.httpkit import requestid
from config.httpkit.fastlane import Lane
from config.multidb import tracing

SERVER_SPAN = "platform.server_span"  # environ key: the request's SERVER span, for naming it later


def install() -> bool:
    """Django's instrumentation, when tracing is on (HttpKitConfig.ready, tests); idempotent."""
    if not tracing.on:
        return False
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    instrumentor = DjangoInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(
            tracer_provider=tracing.provider(),
            is_sql_commentor_enabled=False,
            response_hook=_name_after_django,
            excluded_urls=_excluded_urls(),
        )
    middleware = DjangoInstrumentor._opentelemetry_middleware
    if middleware not in settings.API_MIDDLEWARE:  # the instrumentor knows only MIDDLEWARE
        settings.API_MIDDLEWARE = [middleware, *settings.API_MIDDLEWARE]
    return True


def uninstall() -> None:
    """Undo install() (tests)."""
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    middleware = DjangoInstrumentor._opentelemetry_middleware
    settings.API_MIDDLEWARE = [m for m in settings.API_MIDDLEWARE if m != middleware]
    DjangoInstrumentor().uninstrument()


def wrap(application):
    """`application` inside a SERVER span per request (config/wsgi.py calls it only when on)."""
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware
    from opentelemetry.util.http import parse_excluded_urls

    traced = OpenTelemetryMiddleware(
        application,
        request_hook=_keep_server_span,
        response_hook=_tag_server_span,
        tracer_provider=tracing.provider(),
    )
    excluded = parse_excluded_urls(_excluded_urls() or "")

    def traced_application(environ, start_response):
        if excluded.url_disabled(environ.get("PATH_INFO", "")):
            return application(environ, start_response)
        return traced(environ, start_response)

    return traced_application


def _excluded_urls() -> str | None:
    """What the Django instrumentation reads (and its fallback), read now, for both spans alike."""
    return os.environ.get("OTEL_PYTHON_DJANGO_EXCLUDED_URLS") or os.environ.get("OTEL_PYTHON_EXCLUDED_URLS")


class TracedLane(Lane):
    """The fast lane, naming the request's span after the route it serves."""

    def _serve(self, route, request, path, secure, request_id, start_response):
        _name(request.environ, route.method, route.route)
        return super()._serve(route, request, path, secure, request_id, start_response)


def _keep_server_span(span, environ) -> None:
    environ[SERVER_SPAN] = span


def _tag_server_span(span, environ, status, response_headers) -> None:
    request_id = environ.get(requestid.ENVIRON_KEY)
    if request_id:
        span.set_attribute("request_id", request_id)


def _name_after_django(span, request, response) -> None:
    match = request.resolver_match
    if match is not None:
        _name(request.META, request.method, match.route)


def _name(environ, method: str, route: str) -> None:
    span = environ.get(SERVER_SPAN)
    if span is not None:
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
