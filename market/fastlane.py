"""The fast lane's route for POST /api/market/transfers (config/httpkit/fastlane.py), registered
in MarketConfig.ready(): market.api.transfer_create for a well-formed request."""

from __future__ import annotations

import json
import re

from pydantic import TypeAdapter, ValidationError

from audit.context import acting_as
from config.httpkit.fastlane import Answer, Request, Route
from market import selectors, services
from market.schemas import IdempotencyKey, TransferIn

_KEY = TypeAdapter(IdempotencyKey)


def transfer_create(request: Request) -> Answer | None:
    """market.api.transfer_create without Django's request path, in its order: the token
    (no valid one: Django's 401), then the same schemas (TransferIn, the Idempotency-Key rule),
    whose refusals it answers itself, byte for byte as Django would. A body or header Django
    must judge (missing, not JSON, oversized) falls through to it."""
    key = request.environ.get("HTTP_IDEMPOTENCY_KEY")
    body = request.body()
    if key is None or body is None:
        return None
    try:
        data = json.loads(body)  # Django's parser: config.httpkit.parsing.parse_json_object
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    user = request.token_user()
    if user is None:
        return None
    try:
        payload = TransferIn.model_validate(data)  # an ApiError is the answer, as in Django
        key = _KEY.validate_python(key)
    except ValidationError:
        return None  # what only pydantic refuses: Django's mapping answers it (unseen so far)
    with acting_as(user):  # as token_required: the audit rows name the token's user
        transfer, created = services.transfer_create(
            user=user,
            from_account_id=payload.from_account,
            to_account_id=payload.to_account,
            amount_cents=payload.amount_cents,
            idempotency_key=key,
        )
    return 201, {"data": selectors.transfer_as_dict(transfer)}, {} if created else {"Idempotent-Replayed": "true"}


ROUTE = Route(
    "POST", re.compile(r"/api/market/transfers\Z"), "api/market/transfers", ("default", "market"), transfer_create
)
