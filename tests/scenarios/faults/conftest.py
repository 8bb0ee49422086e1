"""Fault scenarios' sites: `market_apart`: cluster `main` holds shared + blog (and any other
domain), cluster `market` holds market. `shared_apart`: cluster `shared` holds shared,
cluster `domains` holds every domain database.

Fixtures are module-scoped (initdb + migrate + gunicorn take seconds); every
test leaves its fault repaired and waits until the app answers again.
"""

from __future__ import annotations

import pytest

from tests.support.faults import site
from tests.support.topology import SHARED_PREFIX, others


@pytest.fixture(scope="module")
def market_apart():
    yield from site({"main": others("MARKET"), "market": ("MARKET",)})


@pytest.fixture(scope="module")
def shared_apart():
    yield from site({"shared": (SHARED_PREFIX,), "domains": others(SHARED_PREFIX)})
