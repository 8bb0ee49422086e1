"""Typed request and response schemas for the API (pydantic, through django-ninja).

The input rules of config.httpkit.parsing live here as field types, so a schema is the one
place an endpoint's input is checked and documented (OpenAPI): `Text`, `Key`, `Int`,
`QueryInt`, `QueryKey`. Each runs the rule before pydantic's own checks and raises the
rule's `400 invalid_request` naming the field, with the messages clients already get;
pydantic's constraints (`maxLength`, `minimum`, `pattern` ...) then only describe the
field in the document.

`Body` is the base of every JSON body: it refuses missing and unknown fields first, as
one error naming them all, before any value is looked at.
"""

import datetime as dt
import re
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, model_validator

from config.httpkit.errors import invalid
from config.httpkit.parsing import ASCII_DIGITS, clean_int, clean_key, clean_text, printable

T = TypeVar("T")


class Body(BaseModel):
    """A JSON object body: `400 invalid_request` for missing or unknown fields, all named."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise invalid("body", "body must be a JSON object")
        fields = cls.model_fields
        missing = sorted(name for name, f in fields.items() if f.is_required() and name not in data)
        if missing:
            raise invalid(missing[0], f"missing field(s): {', '.join(missing)}", fields=missing)
        unknown = sorted(data.keys() - fields.keys())
        if unknown:
            names = [n if printable(n) else ascii(n) for n in unknown]  # a key may hold NUL or surrogates
            raise invalid(names[0], f"unknown field(s): {', '.join(names)}", fields=names)
        return data


def Text(max_length: int, *, multiline: bool = False, allow_empty: bool = False, description: str = "") -> Any:  # noqa: N802
    """Free text: NUL, unpaired surrogates and control characters refused; stripped, then
    measured (text that may be empty, a post's body, is kept as sent)."""

    def check(value: Any, info: ValidationInfo) -> str:
        return clean_text(
            value,
            info.field_name,
            max_length=max_length,
            multiline=multiline,
            allow_empty=allow_empty,
            strip=not allow_empty,
        )

    # Constraints first (they describe the value the rule let through), then the rule. The
    # pattern states the control characters refused (both dialects read \xHH).
    refused = "\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f-\\x9f" if multiline else "\\x00-\\x1f\\x7f-\\x9f"
    return Annotated[
        str,
        Field(
            min_length=0 if allow_empty else 1,
            max_length=max_length,
            pattern=f"^[^{refused}]*$",
            description=description or None,
        ),
        BeforeValidator(check),
    ]


def Key(pattern: re.Pattern, max_length: int, description: str, *, field: str | None = None) -> Any:  # noqa: N802
    """An identifier sent exactly (a sku, a slug, an idempotency key): `pattern` in full, no
    surrounding whitespace. `field` names it when the field's name is not what clients send
    (a header)."""

    def check(value: Any, info: ValidationInfo) -> str:
        name = field or info.field_name
        return clean_key(value, name, pattern=pattern, max_length=max_length, description=description)

    # The document's pattern is ECMA-262's dialect: no \Z.
    body = pattern.pattern.removeprefix("^").removesuffix("\\Z").removesuffix("$")
    return Annotated[
        str,
        Field(
            min_length=1,
            max_length=max_length,
            pattern=f"^(?:{body})$",
            description=f"{description[:1].upper()}{description[1:]}.",
        ),
        BeforeValidator(check),
    ]


def Int(minimum: int, maximum: int, *, description: str = "") -> Any:  # noqa: N802
    """A JSON integer (not a bool, a float or a numeric string) in [minimum, maximum]."""

    def check(value: Any, info: ValidationInfo) -> int:
        return clean_int(value, info.field_name, minimum=minimum, maximum=maximum)

    return Annotated[int, Field(ge=minimum, le=maximum, description=description or None), BeforeValidator(check)]


def QueryInt(minimum: int, maximum: int, *, description: str = "") -> Any:  # noqa: N802
    """A query parameter of ASCII digits in [minimum, maximum] (str.isdigit() would also take "²")."""

    def check(value: Any, info: ValidationInfo) -> int:
        name = info.field_name
        if not isinstance(value, str) or not ASCII_DIGITS.fullmatch(value) or not minimum <= int(value) <= maximum:
            raise invalid(name, f"{name} must be an integer from {minimum} to {maximum}")
        return int(value)

    return Annotated[int, Field(ge=minimum, le=maximum, description=description or None), BeforeValidator(check)]


def QueryKey(pattern: re.Pattern, max_length: int, description: str) -> Any:  # noqa: N802
    """An optional key in the query string (a cursor): None when absent or empty."""

    def check(value: Any, info: ValidationInfo) -> str | None:
        if not value:
            return None
        return clean_key(value, info.field_name, pattern=pattern, max_length=max_length, description=description)

    body = pattern.pattern.removeprefix("^").removesuffix("\\Z").removesuffix("$")
    return Annotated[
        Annotated[str, Field(max_length=max_length, pattern=f"^(?:{body})?$")] | None,  # empty: absent
        Field(description=f"{description[:1].upper()}{description[1:]}."),
        BeforeValidator(check),
    ]


# Responses ---------------------------------------------------------------------------------------


class Data(BaseModel, Generic[T]):
    """`{"data": ...}`: every successful answer."""

    data: T


class Page(BaseModel, Generic[T]):
    """A page of a list, newest or smallest first; `next` is the cursor of the next page (null at the end)."""

    data: list[T]
    next: str | None


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")  # the code's own details: field, fields, database, retry_after_ms ...

    code: str = Field(description="Stable machine-readable code, e.g. invalid_request, account_not_found.")
    message: str
    request_id: str = Field(description="The X-Request-ID of this request: quote it when asking about it.")
    field: str | None = Field(None, description="invalid_request: the field (body, query, path or header) at fault.")


class Error(BaseModel):
    """Every error answer."""

    error: ErrorDetail


class UserRef(BaseModel):
    id: int
    username: str | None


Timestamp = Annotated[dt.datetime, Field(description="ISO 8601, UTC.")]
