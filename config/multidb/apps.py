from django.apps import AppConfig


class MultiDbConfig(AppConfig):
    """The multi-database platform: configuration, pooled backend, resilience, replicas, router, jobs, operations."""

    name = "config.multidb"
    label = "multidb"

    def ready(self):
        from config.multidb import tracing

        tracing.install()  # only when OTEL_* ask for traces (README, Traces)
