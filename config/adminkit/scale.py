"""Changelists that stay fast at millions of rows.

Django's changelist counts every matching row (`COUNT(*)`) on every page, once more for
the unfiltered total, and lets anyone open page 10,000 (`OFFSET 999,900`). Here:

- `EstimatedCountPaginator` counts exactly only while that is cheap: a bounded count
  (`SELECT count(*) FROM (... LIMIT exact_below + 1)`) decides; above it the planner's
  estimate for the same query stands in (`EXPLAIN`, no scan), shown as "about N" with a
  link that counts exactly on request (`?exact_count=1`). When the estimate alone is ten
  times the bound, the bounded count is skipped.
- pages deeper than `max_pages` (100) are refused (narrow the list with a filter or a search:
  an `OFFSET` that deep reads every row before it);
- `ScaleAdminMixin` puts these on a ModelAdmin, with no unfiltered total count.

What else keeps a page fast is the ModelAdmin's own choice, and the admin kit's tests hold
each admin to it: an indexed default ordering, `sortable_by` only indexed columns, list
filters with fixed choices (never `SELECT DISTINCT` over the table), no `date_hierarchy`
over a big table (`DateFieldListFilter`'s fixed ranges instead), many-to-many filters that
an index serves (`many_to_many_filter`), and search fields that an index serves (`^` prefix
matches for codes, trigram GIN indexes for text). A delete page counts the link rows of a
many-to-many table instead of listing each (a tag on 10,000 posts).
"""

from __future__ import annotations

import json

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import NestedObjects, quote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import EmptyResultSet
from django.core.paginator import Paginator
from django.db import connections, router
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.urls import NoReverseMatch, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.text import capfirst, smart_split, unescape_string_literal

from config.httpkit.parsing import ASCII_DIGITS

MAX_BIGINT = 9_223_372_036_854_775_807

EXACT_COUNT_PARAM = "exact_count"


def estimated_rows(queryset) -> int:
    """The planner's row estimate for `queryset` (EXPLAIN: nothing is read)."""
    compiler = queryset.query.get_compiler(using=queryset.db)
    try:
        sql, params = compiler.as_sql()
    except EmptyResultSet:  # queryset.none(), a search nothing can match: no query at all
        return 0
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatedCountPaginator(Paginator):
    exact_below = 10_000  # rows counted exactly (a bounded count reads at most this many)
    trust_estimate_factor = 10  # an estimate above 10x exact_below is shown without counting
    max_pages = 100  # deeper pages are refused (OFFSET up to 99 pages: ~10 ms a page of 50 here)

    def __init__(self, *args, exact: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.exact = exact
        self.estimated = False

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if self.exact:
            return queryset.count()
        unordered = queryset.order_by()
        estimate = estimated_rows(unordered)
        if estimate > self.exact_below * self.trust_estimate_factor:
            # Far past the bound: counting to it would read more rows than the page itself (a
            # common word in a million titles: 80,000 rows read to find 10,001).
            self.estimated = True
            return estimate
        bounded = unordered[: self.exact_below + 1].count()
        if bounded <= self.exact_below:
            return bounded
        self.estimated = True
        return max(estimate, self.exact_below + 1)

    @cached_property
    def num_pages(self) -> int:
        return min(super().num_pages, self.max_pages)


def many_to_many_filter(field_name: str, *, max_choices: int = 200) -> type[admin.SimpleListFilter]:
    """A list filter on a many-to-many field that the link table's indexes serve:
    `?<field>=<id>` keeps the rows linked to that object (a semi-join on the link table's
    index), `?<field>=none` the rows linked to nothing (an anti-join that stops once a page
    is found). Django's own filter wraps the changelist in `EXISTS (... JOIN ...)`, which at a
    million rows reads every link (2 s for "none" here). Give the link table an index on
    (the other side, this side), as blog 0003 does for tags: a tag's posts come newest first
    from it and are counted without reading the table. Choices: the related objects in their
    own order, at most `max_choices` of them."""

    class ManyToManyFilter(admin.SimpleListFilter):
        parameter_name = field_name
        title = field_name  # replaced by the field's verbose name below

        def __init__(self, request, params, model, model_admin):
            self.field = model._meta.get_field(field_name)
            self.title = self.field.verbose_name
            super().__init__(request, params, model, model_admin)

        def lookups(self, request, model_admin):
            related = self.field.related_model
            objects = related._default_manager.order_by(*(related._meta.ordering or ["pk"]))[:max_choices]
            return [*((str(o.pk), str(o)) for o in objects), ("none", f"no {self.field.verbose_name}")]

        def queryset(self, request, queryset):
            value = self.value()
            if value is None:
                return queryset
            through = self.field.remote_field.through
            own, other = self.field.m2m_field_name(), self.field.m2m_reverse_field_name()
            if value == "none":
                return queryset.filter(~Exists(through._default_manager.filter(**{own: OuterRef("pk")})))
            if not ASCII_DIGITS.fullmatch(value) or int(value) > MAX_BIGINT:
                raise IncorrectLookupParameters(f"{field_name}: not an id")
            linked = through._default_manager.filter(**{other: int(value)}).values(own)
            return queryset.filter(pk__in=linked)

    return ManyToManyFilter


class _CountingLinks(NestedObjects):
    """The delete page's collector, taking the rows of auto-created many-to-many tables as
    querysets to count instead of loading each one into memory to list it."""

    def can_fast_delete(self, objs, from_field=None):
        # Asked with a model (Collector.collect's related models) or a queryset.
        model = objs if isinstance(objs, type) else objs.model if isinstance(objs, QuerySet) else None
        return model is not None and model._meta.auto_created is not False


def deleted_objects_with_counted_links(objs, request, admin_site):
    """Django's `get_deleted_objects` (django/contrib/admin/utils.py, which builds its own
    collector: hence this copy), with the link rows of many-to-many tables as one line and one
    count per table ("Post-tag relationships: 9,871") instead of a line each, which for a tag
    on 10,000 posts made the page 23 times slower at full size."""
    try:
        first = objs[0]
    except IndexError:
        return [], {}, set(), []
    collector = _CountingLinks(using=router.db_for_write(first._meta.model), origin=objs)
    collector.collect(objs)
    perms_needed = set()

    def format_callback(obj):
        opts = obj._meta
        no_edit_link = f"{capfirst(opts.verbose_name)}: {obj}"
        if not admin_site.is_registered(obj.__class__):
            return no_edit_link
        if not admin_site.get_model_admin(obj.__class__).has_delete_permission(request, obj):
            perms_needed.add(opts.verbose_name)
        try:
            url = reverse(f"{admin_site.name}:{opts.app_label}_{opts.model_name}_change", None, (quote(obj.pk),))
        except NoReverseMatch:
            return no_edit_link
        return format_html('{}: <a href="{}">{}</a>', capfirst(opts.verbose_name), url, obj)

    to_delete = collector.nested(format_callback)
    protected = [format_callback(obj) for obj in collector.protected]
    model_count = {model._meta.verbose_name_plural: len(objs) for model, objs in collector.model_objs.items()}
    for queryset in collector.fast_deletes:
        name = queryset.model._meta.verbose_name_plural
        count = queryset.count()
        if count:
            model_count[name] = model_count.get(name, 0) + count
            to_delete.append(f"{capfirst(name)}: {count:,}")
    return to_delete, model_count, perms_needed, protected


class ScaleChangeList(ChangeList):
    def get_ordering_field(self, field_name):
        # `sortable_by` only hides the other columns' links; a crafted `?o=` would still sort a
        # million rows by a column no index serves.
        if self.sortable_by is not None and field_name not in self.sortable_by:
            return None
        return super().get_ordering_field(field_name)

    @property
    def exact_count_url(self) -> str:
        return self.get_query_string({EXACT_COUNT_PARAM: "1"})


def _search_lookup(field: str, word: str) -> tuple[str, str]:
    if field.startswith("^"):
        return f"{field[1:]}__istartswith", word
    return f"{field}__icontains", word


class ScaleAdminMixin:
    """Put first in a ModelAdmin's bases: estimated counts, capped deep pages, no full count,
    and a search an index serves:

    - `search_fields`: text fields, each word matched as a substring (`icontains`, which a
      trigram GIN index on UPPER(field) serves), or, written `^field`, as the start of the
      field (`istartswith`, which a btree index on UPPER(field) text_pattern_ops serves: for
      codes, whose trigrams are shared by every row);
    - `id_search_fields`: integer fields matched exactly when the term is a number (Django's
      `=field` would compare `UPPER(field::text)`, which no index serves);
    - `search_extra(term)`: more alternatives a mixin adds (PeopleAdminMixin: usernames).
    """

    paginator = EstimatedCountPaginator
    show_full_result_count = False
    list_per_page = 50
    id_search_fields: tuple[str, ...] = ()

    def get_search_fields(self, request):
        return (*self.search_fields, *self.id_search_fields)  # the search box shows when any is set

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        alternatives = []
        words = [w for w in smart_split(term) if w]
        if self.search_fields and words:
            every_word = Q()
            for word in words:
                if word[:1] in ('"', "'") and word[-1:] == word[:1] and len(word) > 1:
                    word = unescape_string_literal(word)
                every_word &= Q.create([_search_lookup(f, word) for f in self.search_fields], connector=Q.OR)
            alternatives.append(every_word)
        if self.id_search_fields and ASCII_DIGITS.fullmatch(term) and int(term) <= MAX_BIGINT:
            alternatives.append(Q.create([(f, int(term)) for f in self.id_search_fields], connector=Q.OR))
        extra = getattr(self, "search_extra", None)
        if extra is not None:
            alternatives.extend(extra(term))
        if not alternatives:
            return queryset.none(), False
        return queryset.filter(Q.create(alternatives, connector=Q.OR)), False

    def get_deleted_objects(self, objs, request):
        return deleted_objects_with_counted_links(objs, request, self.admin_site)

    def changelist_view(self, request, extra_context=None):
        # `exact_count` is ours, not a field lookup: take it out before the changelist reads
        # the query string (it refuses parameters it does not know).
        if EXACT_COUNT_PARAM in request.GET:
            request.GET = request.GET.copy()
            del request.GET[EXACT_COUNT_PARAM]
            request.exact_count = True
        return super().changelist_view(request, extra_context)

    def get_changelist(self, request, **kwargs):
        return ScaleChangeList

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        return self.paginator(
            queryset,
            per_page,
            orphans,
            allow_empty_first_page,
            exact=getattr(request, "exact_count", False),
        )
