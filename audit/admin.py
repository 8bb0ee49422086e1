"""The audit trail in the admin: read-only for everyone, superusers included.

Built for a trail of millions of events: every filter offers fixed choices (databases from
the topology, models from the app registry, actions from the model, dates as fixed ranges:
no SELECT DISTINCT, no date hierarchy over the table), the search is an exact match on
indexed columns, and the only ordering is the indexed one (newest first).

`AuditHistoryAdminMixin` gives any other ModelAdmin an "Audit history" link from
an object to its events (`?model=<app>.<model>&object_pk=<pk>`).
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django.contrib import admin
from django.contrib.admin.utils import flatten
from django.db.models import Q
from django.urls import reverse
from django.utils.html import format_html

from audit.models import AuditEvent
from config.adminkit.scale import ScaleAdminMixin


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


class FixedChoicesFilter(admin.SimpleListFilter):
    """A filter on one column whose choices are known without reading the table."""

    field = ""

    def choices_known(self) -> list[str]:
        raise NotImplementedError

    def lookups(self, request, model_admin):
        return [(value, value) for value in self.choices_known()]

    def queryset(self, request, queryset):
        # Any value filters (an old model's history link too), listed or not.
        return queryset.filter(**{self.field: self.value()}) if self.value() else queryset


class DatabaseFilter(FixedChoicesFilter):
    title = "database"
    parameter_name = field = "database"

    def choices_known(self):
        from audit.relay import domain_aliases

        return domain_aliases()  # the databases with an outbox, from the topology


class ModelFilter(FixedChoicesFilter):
    title = "model"
    parameter_name = field = "model"  # the history link's ?model=<app>.<model>

    def choices_known(self):
        from audit.capture import audited_models

        return sorted(m._meta.label_lower for m in audited_models())


@admin.register(AuditEvent)
class AuditEventAdmin(ScaleAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("occurred_at", "action", "model", "object_pk", "actor", "database")
    list_filter = (DatabaseFilter, ModelFilter, "action", ("occurred_at", admin.DateFieldListFilter))
    search_fields = ("object_pk__exact", "actor__exact")
    search_help_text = "An object's primary key or an actor's username, exactly."
    ordering = ("-occurred_at", "-id")
    sortable_by = ("occurred_at",)
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
    # Counts: estimated above 10,000 rows, never a count(*) of the trail; 50 a page (ScaleAdminMixin).

    def get_search_results(self, request, queryset, search_term):
        """Events whose object_pk or actor is the term. Each column that holds it somewhere
        (one index probe each) is searched alone, so the newest-first scan of its index
        answers; an OR of both would read every match and sort them."""
        term = search_term.strip()
        if not term:
            return queryset, False
        events = AuditEvent.objects.using(queryset.db)
        columns = [c for c in ("object_pk", "actor") if events.filter(**{c: term}).exists()]
        if not columns:
            return queryset.none(), False
        match = Q()
        for column in columns:
            match |= Q(**{column: term})
        return queryset.filter(match), False

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
