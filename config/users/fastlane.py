"""The fast lane's route for GET /api/users/<id> (config/httpkit/fastlane.py), registered in
UsersConfig.ready(): config.users.api.user_detail without Django's request path."""

from __future__ import annotations

import re

from config.httpkit.errors import error_body
from config.httpkit.fastlane import Answer, Request, Route
from config.users.selectors import user_get_public


def user_detail(request: Request) -> Answer | None:
    """The email only for the user themself or a holder of auth.view_user."""
    user_id = int(request.match.group(1))
    viewer = None
    if request.environ.get("HTTP_AUTHORIZATION"):  # anonymous callers cost no token query
        viewer = request.token_user()
        if viewer is None:
            return None  # a header that is not a valid token: Django's 401
    row = user_get_public(user_id=user_id, viewer=viewer)
    if row is None:
        return 404, error_body("user_not_found", f"no user with id {user_id}"), {}
    return 200, {"data": row}, {}


ROUTE = Route("GET", re.compile(r"/api/users/([0-9]+)\Z"), "api/users/<int:user_id>", ("default",), user_detail)
