from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Demo data for make run (seed_demo, demo_login)."""

    name = "config.demo"
    label = "demo"
