"""Request parsing: the JSON body's shape and the rules every value a client sends passes
(body field, query parameter, path parameter, header) before anything reads or writes with it."""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from config.httpkit.errors import ApiError, invalid


def body_too_big() -> ApiError:
    return ApiError(413, "payload_too_large", f"body larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes")


def parse_json_object(request: HttpRequest) -> dict[str, Any]:
    """The JSON object of a request's body: 413 when larger than DATA_UPLOAD_MAX_MEMORY_SIZE,
    400 when not JSON or not an object. Its fields are then checked by the endpoint's schema
    (config.httpkit.schemas.Body)."""
    too_big = body_too_big()
    try:
        # Django refuses a declared Content-Length above the limit while reading the body.
        body = request.body
    except RequestDataTooBig:
        raise too_big from None
    if len(body) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        raise too_big
    try:
        data = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        raise ApiError(400, "invalid_request", "body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_request", "body must be a JSON object")
    return data


# Input rules ---------------------------------------------------------------------------------------
# Every value a client sends (body field, query parameter, path parameter, header) passes one of
# these before anything reads or writes with it: a bad one is `400 invalid_request` whose `field`
# and message name it. Each is a plain function (value, field, limits) -> clean value, so a typed
# schema can call it from its validator unchanged.
#
# Text PostgreSQL cannot store (NUL; unpaired surrogates, which json.loads accepts from "\ud800"
# escapes but UTF-8 cannot encode) is refused everywhere. Free text is stripped, then measured,
# so the length checked is the length stored. Keys (skus, slugs, cursors, idempotency keys) are
# never stripped or otherwise repaired: they must match their pattern exactly (fullmatch: `$` would
# let a final newline through).


_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode Cc: no line breaks or tabs in one-line text
_CONTROL_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # tab, LF and CR allowed
ASCII_DIGITS = re.compile("[0-9]{1,19}")  # str.isdigit() also takes "²" and "١", which int() refuses or reads
_PRINTABLE = re.compile("[\x20-\x7e]*")


def printable(text: str) -> bool:
    return _PRINTABLE.fullmatch(text) is not None


def _refuse_unstorable(value: str, field: str) -> None:
    if "\x00" in value:
        raise invalid(field, f"{field} must not contain NUL characters")
    if _SURROGATE.search(value):
        raise invalid(field, f"{field} must not contain unpaired surrogates (\\ud800-\\udfff)")


def clean_text(
    value: Any, field: str, *, max_length: int, multiline: bool = False, allow_empty: bool = False, strip: bool = True
) -> str:
    """Free text (a title, a name, a body): stripped unless `strip` is False; one line unless `multiline`."""
    if not isinstance(value, str):
        raise invalid(field, f"{field} must be a string")
    _refuse_unstorable(value, field)
    if strip:
        value = value.strip()
    if (_CONTROL_MULTILINE if multiline else _CONTROL).search(value):
        what = "control characters" if multiline else "line breaks, tabs or other control characters"
        raise invalid(field, f"{field} must not contain {what}")
    if not value and not allow_empty:
        raise invalid(field, f"{field} must not be empty")
    if len(value) > max_length:
        raise invalid(field, f"{field} is longer than {max_length} characters")
    return value


def clean_key(value: Any, field: str, *, pattern: re.Pattern, max_length: int, description: str) -> str:
    """An identifier the client must send exactly: `pattern.fullmatch`, at most `max_length` characters.
    `description` completes "<field> must be ..." for a value that does not match."""
    if not isinstance(value, str):
        raise invalid(field, f"{field} must be a string")
    _refuse_unstorable(value, field)
    if value != value.strip():
        raise invalid(field, f"{field} must not start or end with whitespace or a line break")
    if len(value) > max_length:
        raise invalid(field, f"{field} is longer than {max_length} characters")
    if not pattern.fullmatch(value):
        raise invalid(field, f"{field} must be {description}")
    return value


def clean_int(value: Any, field: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """A JSON integer (not a bool, a float or a numeric string) within the column's range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field, f"{field} must be an integer")
    if minimum is not None and maximum is not None:
        if not minimum <= value <= maximum:
            raise invalid(field, f"{field} must be between {minimum} and {maximum}")
    elif minimum is not None and value < minimum:
        raise invalid(field, f"{field} must be at least {minimum}")
    elif maximum is not None and value > maximum:
        raise invalid(field, f"{field} must be at most {maximum}")
    return value
