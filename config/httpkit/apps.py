from django.apps import AppConfig


class HttpKitConfig(AppConfig):
    """The HTTP kit: errors, request parsing, token auth, middleware, probes, fast lane, pages."""

    name = "config.httpkit"
    label = "httpkit"

    def ready(self):
        from config.multidb import tracing

        if tracing.on:  # installed by MultiDbConfig.ready (listed before this app)
            from config.httpkit import tracing as request_tracing

            request_tracing.install()
