"""Permission rules shared by the apps' selectors and services.

Django's permissions decide everything (superusers hold them all); staff status
alone grants nothing in the API. The API checks `user.has_perm`, which costs no
query for a token's user: the token lookup loads the permissions with the user
(config/users/tokens.py).
"""

from __future__ import annotations


def may_view(user, app_label: str, model: str) -> bool:
    """Django admin's rule for reading any object of a model: its view_ or its change_ permission."""
    return user is not None and (
        user.has_perm(f"{app_label}.view_{model}") or user.has_perm(f"{app_label}.change_{model}")
    )
