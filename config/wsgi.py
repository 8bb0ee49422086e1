"""The WSGI application: two Django handlers over one project.

API and probe paths (`/api/`, `/healthz`, `/readyz`, `/metrics`) go through a
short middleware stack (`API_MIDDLEWARE`): they authenticate with tokens, so
sessions, CSRF, messages, clickjacking headers, login throttling and static
files would only cost time there. Everything else (the admin) gets the full
`MIDDLEWARE`.
"""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

import django  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402

API_PREFIXES = ("/api/", "/healthz", "/readyz", "/metrics")


class ApiHandler(WSGIHandler):
    def load_middleware(self, is_async=False):
        # BaseHandler reads settings.MIDDLEWARE; swap in the API stack only while it loads (once, at import).
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.API_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


def dispatcher(api, site):
    def application(environ, start_response):
        if environ.get("PATH_INFO", "").startswith(API_PREFIXES):
            return api(environ, start_response)
        return site(environ, start_response)

    return application


django.setup(set_prefix=False)
application = dispatcher(ApiHandler(), WSGIHandler())
