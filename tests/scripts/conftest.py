from __future__ import annotations

import pytest

from tests.support.checkout import copied_checkout


@pytest.fixture
def checkout():
    """A copy of the project in a temporary directory (tests/support/checkout.py)."""
    yield from copied_checkout()
