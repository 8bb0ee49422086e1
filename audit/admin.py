"""The audit trail in the admin: read-only for everyone, superusers included.

`AuditHistoryAdminMixin` gives any other ModelAdmin an "Audit history" link from
an object to its events (`?model=<app>.<model>&object_pk=<pk>`).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.utils import flatten
from django.urls import reverse
from django.utils.html import format_html

from audit.models import AuditEvent


def audit_history_url(obj) -> str:
    # Lookups on the model's own fields are always allowed in the changelist's query string.
    query = urlencode({"model": obj._meta.label_lower, "object_pk": str(obj.pk)})
    return f"{reverse('admin:audit_auditevent_changelist')}?{query}"


class ReadOnlyAdminMixin:
    """Listed and viewable, never added, changed or deleted through the admin (by anyone)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("occurred_at", "action", "model", "object_pk", "actor", "database")
    list_filter = ("database", "model", "action", "actor")
    search_fields = ("object_pk", "actor")
    date_hierarchy = "occurred_at"
    ordering = ("-occurred_at", "-id")
    fields = (
        "id",
        "occurred_at",
        "recorded_at",
        "database",
        "action",
        "model",
        "object_pk",
        "actor",
        "actor_id",
        "changes_pretty",
    )
    readonly_fields = fields
    show_full_result_count = False  # no count(*) over the whole trail on every page
    list_per_page = 100

    @admin.display(description="changes")
    def changes_pretty(self, obj: AuditEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.changes, indent=2, sort_keys=True, ensure_ascii=False))


class AuditHistoryAdminMixin:
    """Put first in the bases of a ModelAdmin: its change form and changelist get an "Audit history" link.

    `class PostAdmin(AuditHistoryAdminMixin, admin.ModelAdmin)`; add `"audit_history"`
    to `list_display` for a link per row. The change form gets it automatically
    (as a read-only field, in a "History" section when fields are declared).
    """

    @admin.display(description="Audit history")
    def audit_history(self, obj) -> str:
        if obj is None or obj.pk is None:
            return "-"
        return format_html('<a href="{}">Audit history</a>', audit_history_url(obj))

    def get_readonly_fields(self, request, obj=None):
        fields = tuple(super().get_readonly_fields(request, obj))
        if obj is not None and "audit_history" not in fields:
            fields += ("audit_history",)
        return fields

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is None:
            return fieldsets
        shown = {name for _, opts in fieldsets for name in flatten(opts.get("fields", ()))}
        if "audit_history" not in shown:
            fieldsets.append(("History", {"fields": ["audit_history"]}))
        return fieldsets
