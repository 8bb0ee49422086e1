from __future__ import annotations

import pytest

from tests.support.blog import Api
from tests.support.factories import UserFactory, token_for


@pytest.fixture
def api():
    return Api()


@pytest.fixture
def author(db):
    return UserFactory(username="alice")


@pytest.fixture
def other(db):
    return UserFactory(username="bob")


@pytest.fixture
def staff(db):
    return UserFactory(username="root", is_staff=True, is_superuser=True)


@pytest.fixture
def author_token(author):
    return token_for(author)


@pytest.fixture
def other_token(other):
    return token_for(other)


@pytest.fixture
def staff_token(staff):
    return token_for(staff)
