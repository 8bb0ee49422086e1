"""The WSGI application: two Django handlers over one project.

API and probe paths (`/api/`, `/healthz`, `/readyz`, `/metrics`) go through a
short middleware stack (`API_MIDDLEWARE`): they authenticate with tokens, so
sessions, CSRF, messages, clickjacking headers, login throttling and static
files would only cost time there. Everything else (the admin) gets the full
`MIDDLEWARE`.

In front of both, the fast lane (config/httpkit/fastlane.py) answers the hottest reads
without Django's request path; whatever it does not fully understand falls
through to the handlers.

With traces on (README, Traces) the whole of it runs inside a span per request
(config/httpkit/tracing.py); off, nothing wraps it.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

import django  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402


class ApiHandler(WSGIHandler):
    def load_middleware(self, is_async=False):
        # BaseHandler reads settings.MIDDLEWARE; swap in the API stack only while it loads (once, at import).
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.API_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full

    def get_response(self, request):
        # CommonMiddleware's Content-Length, without the rest of it: gunicorn then sends the
        # body as is instead of in chunks.
        response = super().get_response(request)
        if not response.streaming and not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))
        return response


def dispatcher(api, site, lane=None):
    def application(environ, start_response):
        # One id per request, bound around all of it: Django logs a 4xx/5xx after the
        # middleware returned, and that line must carry the id too.
        request_id = environ[requestid.ENVIRON_KEY] = requestid.from_header(environ.get(requestid.META_KEY))
        with requestid.bound(request_id):
            if environ.get("PATH_INFO", "").startswith(API_PREFIXES):
                if lane is not None:
                    answer = lane(environ, start_response)
                    if answer is not None:
                        return answer
                return api(environ, start_response)
            return site(environ, start_response)

    return application


django.setup(set_prefix=False)

from config.httpkit import requestid  # noqa: E402  (needs the settings)
from config.httpkit.errors import API_PREFIXES  # noqa: E402
from config.httpkit.fastlane import Lane  # noqa: E402
from config.multidb import tracing  # noqa: E402


def build():
    """The application; built after tracing is installed, so the handlers load its middleware."""
    if not tracing.on:
        return dispatcher(ApiHandler(), WSGIHandler(), Lane() if settings.API_FAST_LANE else None)
    from config.httpkit import tracing as request_tracing

    lane = request_tracing.TracedLane() if settings.API_FAST_LANE else None
    return request_tracing.wrap(dispatcher(ApiHandler(), WSGIHandler(), lane))


application = build()
