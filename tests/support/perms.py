"""Django permissions for test users, by their "<app>.<codename>" names."""

from __future__ import annotations


def grant(user, *perms: str) -> None:
    from django.contrib.auth.models import Permission

    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
