"""The users API: GET /api/users/<id>."""

from __future__ import annotations

from django.http import JsonResponse

from config.httpkit.auth import token_optional
from config.httpkit.errors import error_response
from config.users.selectors import user_get_public


def user_detail(request, user_id: int):
    row = user_get_public(user_id=user_id, viewer=token_optional(request))
    if row is None:
        return error_response(404, "user_not_found", f"no user with id {user_id}")
    return JsonResponse({"data": row})
