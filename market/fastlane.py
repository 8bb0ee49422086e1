"""The fast lane's route for POST /api/market/transfers (config/httpkit/fastlane.py), registered
in MarketConfig.ready(): market.views.transfer_create for a well-formed request."""

from __future__ import annotations

import json
import re

from audit.context import acting_as
from config.httpkit.fastlane import Answer, Request, Route
from market import selectors, services

_TRANSFER_FIELDS = frozenset({"from_account", "to_account", "amount_cents"})


def transfer_create(request: Request) -> Answer | None:
    """market.views.transfer_create for a well-formed request; anything Django would refuse
    before the service runs (no token, no key, a body that is not exactly the three fields)
    falls through to it."""
    key = request.environ.get("HTTP_IDEMPOTENCY_KEY")
    body = request.body()
    if key is None or body is None:
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict) or data.keys() != _TRANSFER_FIELDS:
        return None
    user = request.token_user()
    if user is None:
        return None
    with acting_as(user):  # as token_required: the audit rows name the token's user
        transfer, created = services.transfer_create(
            user=user,
            from_account_id=data["from_account"],
            to_account_id=data["to_account"],
            amount_cents=data["amount_cents"],
            idempotency_key=key,
        )
    return 201, {"data": selectors.transfer_as_dict(transfer)}, {} if created else {"Idempotent-Replayed": "true"}


ROUTE = Route(
    "POST", re.compile(r"/api/market/transfers\Z"), "api/market/transfers", ("default", "market"), transfer_create
)
