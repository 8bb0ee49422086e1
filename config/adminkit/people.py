"""People, not ids, in changelists whose rows name a user of the shared database by id (no
foreign key can cross databases): the page's usernames in one query on the users' database,
never one per row, and search by username across databases (with ScaleAdminMixin's search).

    class OrderAdmin(PeopleAdminMixin, admin.ModelAdmin):
        people = ("buyer_id",)
        buyer = person_column("buyer_id", "buyer")
        list_display = ["id", "buyer", ...]
"""

from __future__ import annotations

from collections.abc import Iterable

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import router
from django.db.models import Q
from django.utils.html import format_html

SEARCH_IDS_MAX = 200  # users a search term may stand for (a prefix of many names is not a search)


def usernames(ids: Iterable[int]) -> dict[int, str]:
    """{id: username} of these users: one query."""
    ids = {pk for pk in ids if pk is not None}
    if not ids:
        return {}
    model = get_user_model()
    rows = model.objects.using(router.db_for_read(model)).filter(pk__in=ids).values_list("pk", "username")
    return dict(rows)


def user_ids_named(term: str, limit: int = SEARCH_IDS_MAX) -> list[int]:
    """Ids of the users whose username is `term` or starts with it (case-insensitive)."""
    term = term.strip()
    if not term:
        return []
    model = get_user_model()
    qs = model.objects.using(router.db_for_read(model))
    return list(qs.filter(username__istartswith=term).order_by("pk").values_list("pk", flat=True)[:limit])


def user_ids_exactly_named(name: str) -> list[int]:
    """The id of the user called exactly `name` (usernames are unique), as a list."""
    model = get_user_model()
    qs = model.objects.using(router.db_for_read(model))
    return list(qs.filter(**{model.USERNAME_FIELD: name}).values_list("pk", flat=True)[:1])


def _name(names: dict[int, str], pk) -> str:
    if pk is None:
        return "-"
    return names.get(pk) or f"(deleted user #{pk})"


def person_column(field: str, description: str):
    """A changelist column: the username of the user `field` holds, linking to that user's rows."""

    @admin.display(description=description, ordering=field)
    def column(self, obj):
        pk = getattr(obj, field)
        names = getattr(obj, "_usernames", None)
        if names is None:  # outside a changelist page (a change form): one lookup
            names = usernames([pk])
        if pk is None:
            return "-"
        return format_html('<a href="?{}={}" title="user #{}">{}</a>', field, pk, pk, _name(names, pk))

    return column


class PeopleAdminMixin:
    """`people`: the model's fields holding user ids. Their usernames for a whole page come in
    one query; a search term also finds the rows of the users whose username starts with it."""

    people: tuple[str, ...] = ()

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        rows = list(changelist.result_list)  # evaluated once: the page's queryset caches them
        names = usernames(getattr(row, field) for row in rows for field in self.people)
        for row in rows:
            row._usernames = names
        return changelist

    def search_extra(self, term: str) -> list[Q]:
        """For ScaleAdminMixin's search: the rows of the users whose username starts with `term`."""
        ids = user_ids_named(term) if self.people else []
        if not ids:
            return []
        return [Q.create([(f"{field}__in", ids) for field in self.people], connector=Q.OR)]
