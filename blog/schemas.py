"""The blog API's request and response schemas: the one place its input rules live."""

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from blog.models import SLUG_MAX_LENGTH, TAG_NAME_MAX_LENGTH, TITLE_MAX_LENGTH
from blog.models import Post as PostModel
from config.httpkit.errors import invalid
from config.httpkit.parsing import clean_text
from config.httpkit.schemas import Body, Key, Text, Timestamp, UserRef

BODY_MAX_LENGTH = 50_000  # characters; the request itself is capped by DATA_UPLOAD_MAX_MEMORY_SIZE (413)
TAGS_MAX = 20
SLUG_RE = re.compile(r"[A-Za-z0-9_-]+")  # what slugify makes (any case: an unknown one is a 404, not a 400)
CURSOR_RE = re.compile(r"[A-Za-z0-9_-]+")  # base64url without padding (selectors.cursor_encode)
STATUSES = tuple(PostModel.Status.values)

Slug = Key(SLUG_RE, SLUG_MAX_LENGTH, "letters, digits, - or _")


def _status(value: Any) -> Any:
    if not isinstance(value, str) or value not in STATUSES:
        raise invalid("status", f"status must be one of: {', '.join(STATUSES)}")
    return value


def _tags(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise invalid("tags", "tags must be a list of strings")
    if len(value) > TAGS_MAX:
        raise invalid("tags", f"at most {TAGS_MAX} tags")
    # The tag's slug, made from the name, is checked where it is made (services.tags_resolve).
    return [clean_text(v, "tags", max_length=TAG_NAME_MAX_LENGTH) for v in value]


Title = Text(TITLE_MAX_LENGTH)
Content = Text(BODY_MAX_LENGTH, multiline=True, allow_empty=True, description="Kept as sent (not stripped).")
Status = Annotated[Literal[STATUSES], BeforeValidator(_status)]
Tags = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=TAG_NAME_MAX_LENGTH)]],
    Field(max_length=TAGS_MAX, description="Tag names; a tag is made for a new name."),
    BeforeValidator(_tags),
]


class PostIn(Body):
    title: Title
    body: Content
    status: Status = "draft"
    tags: Tags = []


class PostPatch(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    title: Title = None
    body: Content = None
    status: Status = None
    tags: Tags = None

    @model_validator(mode="before")
    @classmethod
    def _something(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data:
            names = ", ".join(sorted(cls.model_fields))
            raise invalid("body", f"nothing to update: send any of {names}")
        return data


class Post(BaseModel):
    id: int
    slug: str
    title: str
    body: str
    status: str
    published_at: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp
    tags: list[str]
    author: UserRef
