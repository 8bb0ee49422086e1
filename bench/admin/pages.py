"""The page list of `make bench-admin`, read from the admin site itself, so it stays complete
as admins change: for every registered ModelAdmin (as the site's superuser sees it)

  changelist      the list as it opens
  filter          each choice of each list filter, as the changelist renders them (a
                  SimpleListFilter's lookups, a field filter's values, a date filter's ranges);
                  filters with more than MAX_CHOICES choices: MAX_CHOICES of them, spread
                  evenly from the first to the last
  search          a term taken from an existing row (the row with the lowest pk): the value of
                  the first search field (a code, a username, an id), and a word of the first
                  field holding several words (a name, a title), when there is one
  date            the date drill-down (date_hierarchy): the year, then the month, of the newest row
  deep page       ?p=<the last page the ModelAdmin's own paginator allows>
  sort            each sortable column, as clicking its header does (the header's own link)
  change, history, delete, add   of the row with the lowest pk (delete and add when allowed)
  audit history   the object's "Audit history" link, when the ModelAdmin renders one
  custom          any other view of its get_urls() without parameters, or with only the object id

plus the admin index, each app's index, and the site's own extra views (get_urls() entries
without parameters that are not login, logout, password change, jsi18n or autocomplete).

Each page has a key that does not depend on the set's size (kind and filter choice, not the
page number or pk), so the same page is found in the 10k set and in the full-size one.

Run inside the project (`python -m bench.admin.pages superuser|pages`, with the set's
databases in the environment): `superuser` makes (or resets) the bench's superuser with the
password in BENCH_ADMIN_PASSWORD; `pages` prints the list as JSON.
"""

from __future__ import annotations

import html
import json
import os
import re
import sys
from pathlib import Path

MAX_CHOICES = 6
SUPERUSER = "bench-admin"
# Views of the AdminSite itself that are no page of their own (or need parameters).
SITE_VIEWS_SKIPPED = {
    "index",
    "app_list",
    "login",
    "logout",
    "password_change",
    "password_change_done",
    "jsi18n",
    "autocomplete",
    "view_on_site",
}
MODEL_VIEWS = ("changelist", "add", "change", "delete", "history")
LOOKUP_PREFIXES = "^=@"


def spread(items: list, k: int) -> list:
    """All of `items` when there are at most `k`, else `k` of them evenly spaced, first and last included."""
    if len(items) <= k:
        return list(items)
    if k == 1:
        return [items[0]]
    return [items[round(j * (len(items) - 1) / (k - 1))] for j in range(k)]


def page(model: str, kind: str, detail: str, url: str, note: str = "") -> dict:
    return (
        {"key": " | ".join(p for p in (model, kind, detail) if p), "model": model, "kind": kind, "url": url}
        | ({"detail": detail} if detail else {})
        | ({"note": note} if note else {})
    )


def field_value(obj, path: str):
    """The value at a search field's path (`user__username`, `=from_account__id`) on `obj`."""
    value = obj
    for part in path.lstrip(LOOKUP_PREFIXES).split("__"):
        if value is None:
            return None
        if not hasattr(value, part):
            break  # a lookup (`__iexact`, `__startswith`) ends the path
        value = getattr(value, part)
    return value


def search_terms(obj, search_fields) -> list[tuple[str, str]]:
    """(field, term) pairs: the first field's whole value (a word when it holds several) and,
    when another field holds several words, one word of it (the longest that is not a number)."""
    out: list[tuple[str, str]] = []
    word_done = False
    for field in search_fields:
        value = field_value(obj, field)
        if value is None or str(value).strip() == "":
            continue
        text = str(value).strip()
        several = len(text.split()) > 1
        if several:
            words = [w for w in re.findall(r"\w+", text) if not w.isdigit()] or text.split()
            term = max(words, key=len)
        else:
            term = text
        if not out:
            out.append((field, term))
            word_done = several
        elif several and not word_done:
            out.append((field, term))
            break
    return out


def _href(rendered: str) -> str | None:
    match = re.search(r'href="([^"]+)"', str(rendered))
    return html.unescape(match.group(1)) if match else None


def _without_params(pattern) -> bool:
    return pattern.pattern.regex.groups == 0


def model_pages(site, model, model_admin, request, max_choices: int = MAX_CHOICES) -> list[dict]:
    from django.contrib.admin.templatetags.admin_list import result_headers
    from django.contrib.admin.utils import quote
    from django.db.models import Max
    from django.urls import reverse

    opts = model._meta
    label = opts.label_lower
    name = f"{site.name}:{opts.app_label}_{opts.model_name}"
    if not model_admin.has_view_or_change_permission(request):
        return []
    changelist = reverse(f"{name}_changelist", current_app=site.name)
    request.path = request.path_info = changelist
    cl = model_admin.get_changelist_instance(request)
    out = [page(label, "changelist", "", changelist)]

    for spec in cl.filter_specs:
        title = str(getattr(spec, "title", type(spec).__name__))
        choices = [c for c in spec.choices(cl) if not c.get("selected")]
        for choice in spread(choices, max_choices):
            out.append(page(label, "filter", f"{title} = {choice['display']}", changelist + choice["query_string"]))

    queryset = model_admin.get_queryset(request)
    sample = queryset.order_by("pk").first()
    search_fields = model_admin.get_search_fields(request)
    if sample is not None and search_fields:
        for field, term in search_terms(sample, search_fields):
            out.append(page(label, "search", field, f"{changelist}?q={_quote(term)}", note=f"q={term}"))

    if cl.date_hierarchy:
        field = cl.date_hierarchy
        newest = queryset.aggregate(newest=Max(field))["newest"]
        if newest is not None:
            from django.utils import timezone

            if timezone.is_aware(newest):
                newest = timezone.localtime(newest)
            # The last whole month before the newest row's (the newest month has only begun), and its year.
            y, m = (newest.year, newest.month - 1) if newest.month > 1 else (newest.year - 1, 12)
            year = f"{changelist}?{field}__year={y}"
            out.append(page(label, "date", "year", year, note=str(y)))
            out.append(page(label, "date", "month", f"{year}&{field}__month={m}", note=f"{y}-{m:02d}"))

    if cl.paginator.num_pages > 1:
        last = cl.paginator.num_pages
        out.append(page(label, "deep page", "", f"{changelist}?p={last}", note=f"p={last}"))

    for header in result_headers(cl):
        if header.get("sortable") and header.get("url_primary"):
            text = re.sub(r"<[^>]+>", "", str(header["text"])).strip()
            out.append(page(label, "sort", text, changelist + header["url_primary"]))

    if sample is not None:
        pk = quote(sample.pk)
        note = f"pk={sample.pk}"
        if model_admin.has_view_or_change_permission(request, sample):
            out.append(page(label, "change", "", reverse(f"{name}_change", args=(pk,), current_app=site.name), note))
            out.append(page(label, "history", "", reverse(f"{name}_history", args=(pk,), current_app=site.name), note))
        if model_admin.has_delete_permission(request, sample):
            out.append(page(label, "delete", "", reverse(f"{name}_delete", args=(pk,), current_app=site.name), note))
        history = getattr(model_admin, "audit_history", None)
        link = _href(history(sample)) if callable(history) else None
        if link:
            out.append(page(label, "audit history", "", link, note))
    if model_admin.has_add_permission(request):
        out.append(page(label, "add", "", reverse(f"{name}_add", current_app=site.name)))

    standard = {f"{opts.app_label}_{opts.model_name}_{view}" for view in MODEL_VIEWS}
    for pattern in model_admin.get_urls():
        if not getattr(pattern, "name", None) or pattern.name in standard:
            continue
        if _without_params(pattern):
            out.append(page(label, "custom", pattern.name, reverse(f"{site.name}:{pattern.name}")))
        elif sample is not None and set(pattern.pattern.regex.groupindex) == {"object_id"}:
            url = reverse(f"{site.name}:{pattern.name}", kwargs={"object_id": quote(sample.pk)})
            out.append(page(label, "custom", pattern.name, url, note=f"pk={sample.pk}"))
    return out


def _quote(term: str) -> str:
    from urllib.parse import quote_plus

    return quote_plus(term)


def build_pages(site, request, max_choices: int = MAX_CHOICES) -> list[dict]:
    """Every page of `site` the bench measures, for `request.user` (the bench's superuser)."""
    from django.urls import URLPattern, reverse

    pages = [page("admin", "index", "", reverse(f"{site.name}:index", current_app=site.name))]
    registry = site._registry
    for app_label in sorted({model._meta.app_label for model in registry}):
        url = reverse(f"{site.name}:app_list", kwargs={"app_label": app_label}, current_app=site.name)
        pages.append(page("admin", "app index", app_label, url))
    for pattern in site.get_urls():
        if isinstance(pattern, URLPattern) and pattern.name and pattern.name not in SITE_VIEWS_SKIPPED:
            if _without_params(pattern):
                pages.append(page("admin", "custom", pattern.name, reverse(f"{site.name}:{pattern.name}")))
    for model, model_admin in registry.items():
        pages += model_pages(site, model, model_admin, request, max_choices)
    keys = [p["key"] for p in pages]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:  # two choices with the same label: number them, in order
        seen: dict[str, int] = {}
        for p in pages:
            if p["key"] in duplicates:
                seen[p["key"]] = seen.get(p["key"], 0) + 1
                p["key"] += f" ({seen[p['key']]})"
    return pages


def superuser_request(path: str = "/admin/"):
    from django.contrib.auth import get_user_model
    from django.test import RequestFactory

    request = RequestFactory(SERVER_NAME="127.0.0.1").get(path)
    request.user = get_user_model().objects.get(username=SUPERUSER)
    return request


def ensure_superuser(password: str) -> None:
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username=SUPERUSER, defaults={"email": "bench@example.com"})
    user.is_superuser = user.is_staff = user.is_active = True
    user.set_password(password)
    user.save()
    try:  # a lockout left by an earlier, interrupted run
        from axes.utils import reset

        reset(username=SUPERUSER)
    except ImportError:
        pass


def main(argv: list[str]) -> int:
    root = Path(__file__).resolve().parents[2]
    sys.path.insert(0, str(root))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    from config.multidb.conf.env import read_dotenv

    read_dotenv()
    import django

    django.setup()
    from django.contrib import admin

    if argv[:1] == ["superuser"]:
        password = os.environ.get("BENCH_ADMIN_PASSWORD", "")
        if len(password) < 12:
            print("BENCH_ADMIN_PASSWORD is not set", file=sys.stderr)
            return 2
        ensure_superuser(password)
        return 0
    if argv[:1] == ["pages"]:
        max_choices = int(os.environ.get("BENCH_ADMIN_MAX_CHOICES") or MAX_CHOICES)
        print(json.dumps(build_pages(admin.site, superuser_request(), max_choices)))
        return 0
    print("usage: python -m bench.admin.pages superuser|pages", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
