"""Reads of the shared database's users for the API (the hottest read path: kept to one
plain query, no model instances)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import connections, router

from config.httpkit.permissions import may_view


def user_get_public(*, user_id: int, viewer=None) -> dict | None:
    """{"id", "username"} of one user, or None; "email" too when `viewer` is that user or may
    view users (auth.view_user). Checked in the cheap order: anonymous, the user themself,
    a superuser, then the permission (free for a token's user, whose permissions came with it)."""
    model = get_user_model()
    with connections[router.db_for_read(model)].cursor() as cursor:
        cursor.execute(f'SELECT id, username, email FROM "{model._meta.db_table}" WHERE id = %s', [user_id])
        row = cursor.fetchone()
    if row is None:
        return None
    if viewer is not None and (viewer.pk == row[0] or may_view(viewer, "auth", "user")):
        return {"id": row[0], "username": row[1], "email": row[2]}
    return {"id": row[0], "username": row[1]}
