"""Users in the shared database and posts made the way the API makes them (through services)."""

from __future__ import annotations

import datetime as dt

import factory
from django.contrib.auth import get_user_model

from blog import services
from blog.models import Post
from config.users.tokens import api_token_create


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("pw-for-tests")


def token_for(user) -> str:
    return api_token_create(user=user)


def make_post(
    author,
    *,
    title: str = "A post",
    body: str = "Some text.",
    status: str = "published",
    tags=(),
    published_at: dt.datetime | None = None,
) -> Post:
    post = services.post_create(author=author, title=title, body=body, status=status, tags=tags)
    if published_at is not None:
        # Test setup only: pin the timestamp so ordering and ties are deterministic.
        Post.objects.filter(pk=post.pk).update(published_at=published_at)
        post.refresh_from_db()
    return post
