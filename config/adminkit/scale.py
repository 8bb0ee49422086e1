"""Changelists that stay fast at millions of rows.

Django's changelist counts every matching row (`COUNT(*)`) on every page, once more for
the unfiltered total, and lets anyone open page 10,000 (`OFFSET 999,900`). Here:

- `EstimatedCountPaginator` counts exactly only while that is cheap: a bounded count
  (`SELECT count(*) FROM (... LIMIT exact_below + 1)`) decides; above it the planner's
  estimate for the same query stands in (`EXPLAIN`, no scan), shown as "about N" with a
  link that counts exactly on request (`?exact_count=1`).
- pages deeper than `max_pages` (100) are refused (narrow the list with a filter or a search:
  an `OFFSET` that deep reads every row before it);
- `ScaleAdminMixin` puts these on a ModelAdmin, with no unfiltered total count.

What else keeps a page fast is the ModelAdmin's own choice, and the admin kit's tests hold
each admin to it: an indexed default ordering, `sortable_by` only indexed columns, list
filters with fixed choices (never `SELECT DISTINCT` over the table), no `date_hierarchy`
over a big table (`DateFieldListFilter`'s fixed ranges instead), and search fields that an
index serves (`=` exact matches for codes, trigram GIN indexes for text).
"""

from __future__ import annotations

import json

from django.contrib.admin.views.main import ChangeList
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Q
from django.utils.functional import cached_property
from django.utils.text import smart_split, unescape_string_literal

from config.httpkit.parsing import ASCII_DIGITS

MAX_BIGINT = 9_223_372_036_854_775_807

EXACT_COUNT_PARAM = "exact_count"


def estimated_rows(queryset) -> int:
    """The planner's row estimate for `queryset` (EXPLAIN: nothing is read)."""
    compiler = queryset.query.get_compiler(using=queryset.db)
    sql, params = compiler.as_sql()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    if isinstance(plan, str):
        plan = json.loads(plan)
    return int(plan[0]["Plan"]["Plan Rows"])


class EstimatedCountPaginator(Paginator):
    exact_below = 10_000  # rows counted exactly (a bounded count reads at most this many)
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
        bounded = queryset.order_by()[: self.exact_below + 1].count()
        if bounded <= self.exact_below:
            return bounded
        self.estimated = True
        return max(estimated_rows(queryset.order_by()), self.exact_below + 1)

    @cached_property
    def num_pages(self) -> int:
        return min(super().num_pages, self.max_pages)


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


class ScaleAdminMixin:
    """Put first in a ModelAdmin's bases: estimated counts, capped deep pages, no full count,
    and a search an index serves:

    - `search_fields`: text fields, each word matched as a substring (`icontains`, which a
      trigram GIN index on UPPER(field) serves);
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
                every_word &= Q.create([(f"{f}__icontains", word) for f in self.search_fields], connector=Q.OR)
            alternatives.append(every_word)
        if self.id_search_fields and ASCII_DIGITS.fullmatch(term) and int(term) <= MAX_BIGINT:
            alternatives.append(Q.create([(f, int(term)) for f in self.id_search_fields], connector=Q.OR))
        extra = getattr(self, "search_extra", None)
        if extra is not None:
            alternatives.extend(extra(term))
        if not alternatives:
            return queryset.none(), False
        return queryset.filter(Q.create(alternatives, connector=Q.OR)), False

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
