from django.apps import AppConfig


class AdminKitConfig(AppConfig):
    """The admin kit: what every app's admin needs at production sizes (estimated counts,
    names of people across databases, money in currency) and the operators' Databases page."""

    name = "config.adminkit"
    label = "adminkit"

    def ready(self):
        from django.contrib import admin

        from config.adminkit import databases

        databases.install(admin.site)
