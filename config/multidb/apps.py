from django.apps import AppConfig


class MultiDbConfig(AppConfig):
    """The multi-database platform: configuration, pooled backend, resilience, replicas, router, jobs, operations."""

    name = "config.multidb"
    label = "multidb"
