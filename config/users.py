"""Reads of the shared database's users for the API (the hottest read path: kept to one
plain query, no model instances)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import connections, router


def user_get_public(*, user_id: int) -> dict | None:
    """{"id", "username", "email"} of one user, or None."""
    model = get_user_model()
    with connections[router.db_for_read(model)].cursor() as cursor:
        cursor.execute(f'SELECT id, username, email FROM "{model._meta.db_table}" WHERE id = %s', [user_id])
        row = cursor.fetchone()
    return None if row is None else {"id": row[0], "username": row[1], "email": row[2]}
