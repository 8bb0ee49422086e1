"""What the platform knows about each database alias: one typed record per alias, built
together with DATABASES from the variables (config/multidb/conf/databases.py), read
through `alias()` / `aliases()`.

DATABASES keeps what Django and the connection need (and `DIRECT`: how to reach the
server behind a pooler, password included); everything else about an alias is here,
and never a password.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class AliasInfo:
    alias: str
    base: str  # the domain alias this one points at
    kind: str  # primary, jobs, replica
    label: str  # application_name
    max_size: int  # the most connections its pool opens per process
    pooler: str  # direct, transaction
    prefix: str  # <P> of the domain's variables
    check_timeout: float  # deadline of a pooled connection's check, seconds
    statement_timeout_ms: int  # 0 = none
    idle_in_transaction_timeout_ms: int
    replica_max_lag_ms: int
    pooler_pool_size: int
    pooler_max_client_conn: int

    def var(self, knob: str) -> str:
        """The name of one of its domain's variables, for messages: var("DIRECT_URL")."""
        return f"{self.prefix}_DATABASE_{knob}"


def aliases() -> dict[str, AliasInfo]:
    """Every alias of this process, in DATABASES order."""
    return settings.DATABASE_ALIASES


def alias(name: str) -> AliasInfo:
    """The record of alias `name`; KeyError for an alias that is not configured."""
    return settings.DATABASE_ALIASES[name]


def alias_or_none(name: str | None) -> AliasInfo | None:
    return settings.DATABASE_ALIASES.get(name) if name else None
