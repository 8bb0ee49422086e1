from django.apps import AppConfig


class HttpKitConfig(AppConfig):
    """The HTTP kit: errors, request parsing, token auth, middleware, probes, fast lane, pages."""

    name = "config.httpkit"
    label = "httpkit"
