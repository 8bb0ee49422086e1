"""API tokens in the admin: listed and revoked, never created or read back."""

from __future__ import annotations

from django.contrib import admin

from config.users.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Keys are created by `manage.py create_api_token` (shown once); here they can be listed and revoked
    (as with `manage.py revoke_api_token`)."""

    list_display = ("prefix", "user", "created_at", "last_used_at")
    list_display_links = None
    list_select_related = ("user",)
    search_fields = ("prefix", "user__username")
    exclude = ("digest", "write_window", "write_count")
    readonly_fields = ("prefix", "user", "created_at", "last_used_at")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
