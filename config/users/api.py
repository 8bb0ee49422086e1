"""The users API: GET /api/users/<id> (also answered by the fast lane: config/users/fastlane.py)."""

from django.http import HttpRequest
from ninja import Router
from pydantic import BaseModel, Field

from config.httpkit.api import answer, errors, token_optional, viewer
from config.httpkit.errors import ApiError
from config.httpkit.schemas import Data
from config.users.selectors import user_get_public

router = Router(tags=["users"])


class User(BaseModel):
    id: int
    username: str
    email: str | None = Field(None, description="Only for the user themself or a holder of auth.view_user.")


@router.get(
    "/{int:user_id}",
    auth=token_optional,
    summary="A user: id and username for anyone, the email for themself or auth.view_user",
    exclude_unset=True,
    **errors(401, codes={404: ["user_not_found"]}, ok={200: Data[User]}, optional_token=True),
)
def user_detail(request: HttpRequest, user_id: int):
    row = user_get_public(user_id=user_id, viewer=viewer(request))
    if row is None:
        raise ApiError(404, "user_not_found", f"no user with id {user_id}")
    return answer({"data": row})  # hot: the schema's shape already (users.selectors)
