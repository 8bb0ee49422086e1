"""Sets the audit actor of admin requests to the session user, lazily.

Only requests under the admin's prefix are looked at, and the user is resolved
only when an audited save actually happens (by then the admin has loaded it for
its permission check), so API and anonymous requests cost nothing here.
"""

from __future__ import annotations

from functools import cache

from django.urls import NoReverseMatch, reverse

from audit.context import reset_actor, set_actor


@cache
def _admin_prefix() -> str | None:
    try:
        return reverse("admin:index")
    except NoReverseMatch:
        return None


class AuditActorMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        prefix = _admin_prefix()
        if prefix is None or not request.path.startswith(prefix):
            return self.get_response(request)
        token = set_actor(lambda: getattr(request, "user", None))
        try:
            return self.get_response(request)
        finally:
            reset_actor(token)
