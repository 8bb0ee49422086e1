"""The databases every test environment is made of, read from the topology file
(config/topology.py): a new `Domain` line there needs no change in the harness."""

from __future__ import annotations

from config.multidb.conf.topology import SHARED_ALIAS
from config.topology import TOPOLOGY

ALIASES: tuple[str, ...] = tuple(d.alias for d in TOPOLOGY)
PREFIXES: tuple[str, ...] = tuple(d.prefix for d in TOPOLOGY)
PREFIX = {d.alias: d.prefix for d in TOPOLOGY}  # alias -> environment prefix
SHARED_PREFIX = PREFIX[SHARED_ALIAS]
DOMAIN_ALIASES: tuple[str, ...] = tuple(a for a in ALIASES if a != SHARED_ALIAS)  # the domain databases


def database_names(stem: str) -> dict[str, str]:
    """One database name per prefix: {"SHARED": "<stem>_shared", "BLOG": "<stem>_blog", ...}."""
    return {prefix: f"{stem}_{prefix.lower()}" for prefix in PREFIXES}


def others(*prefixes: str) -> tuple[str, ...]:
    """Every prefix but these, in topology order."""
    return tuple(p for p in PREFIXES if p not in prefixes)
