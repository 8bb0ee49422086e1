"""What a topology is: domain databases, each with its alias, its environment prefix and the
apps that live in it. The project's own topology is a file of the wiring layer
(config/topology.py); the platform reads it by name, as Django reads ROOT_URLCONF, and
never imports it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from django.utils.module_loading import import_string

TOPOLOGY_PATH = "config.topology.TOPOLOGY"
SHARED_ALIAS = "default"  # the shared database: users, sessions, admin log, tokens, audit trail


@dataclass(frozen=True)
class Domain:
    alias: str
    prefix: str  # environment prefix: <prefix>_DATABASE_URL ...
    apps: tuple[str, ...]


@functools.cache
def domains() -> tuple[Domain, ...]:
    """The project's topology (config/topology.py)."""
    return import_string(TOPOLOGY_PATH)
