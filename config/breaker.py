"""A circuit breaker per alias per process.

After `DATABASE_BREAKER_FAILURES` connection failures in a row the breaker
opens: for `DATABASE_BREAKER_OPEN_SECONDS` every request for that alias fails
at once (a 503 in milliseconds instead of a pool timeout). Then one caller is
let through as a probe; its success closes the breaker, its failure reopens it.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


class DatabaseUnavailable(Exception):
    """An alias cannot be used right now. Never carries a password."""

    def __init__(self, alias: str, reason: str = "", retry_after: float = 1.0):
        self.alias = alias
        self.reason = reason
        self.retry_after = retry_after
        super().__init__(f"database {alias!r} is unavailable" + (f": {reason}" if reason else ""))


@dataclass
class Breaker:
    alias: str
    failures_to_open: int
    open_seconds: float
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False
    opened_total: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        return "half-open" if self.probing else "open"

    def before(self) -> None:
        """Raise DatabaseUnavailable while open; let exactly one probe through after the pause."""
        if self.opened_at is None:
            return
        with self._lock:
            if self.opened_at is None:
                return
            waited = time.monotonic() - self.opened_at
            if waited >= self.open_seconds and not self.probing:
                self.probing = True
                return
            retry = max(self.open_seconds - waited, 0.1)
        raise DatabaseUnavailable(self.alias, "circuit breaker open", retry_after=retry)

    def success(self) -> None:
        if self.failures or self.opened_at is not None:
            with self._lock:
                self.failures = 0
                self.opened_at = None
                self.probing = False

    def failure(self) -> None:
        with self._lock:
            self.failures += 1
            if self.probing or self.failures >= self.failures_to_open:
                if self.opened_at is None or self.probing:
                    self.opened_total += 1
                self.opened_at = time.monotonic()
                self.probing = False


_breakers: dict[str, Breaker] = {}
_lock = threading.Lock()


def breaker_for(alias: str) -> Breaker:
    try:
        return _breakers[alias]
    except KeyError:
        from django.conf import settings

        with _lock:
            return _breakers.setdefault(
                alias,
                Breaker(alias, settings.DATABASE_BREAKER_FAILURES, settings.DATABASE_BREAKER_OPEN_SECONDS),
            )


def all_breakers() -> dict[str, Breaker]:
    return dict(_breakers)


def reset_all() -> None:
    """Forget every breaker (after fork, and between tests)."""
    _breakers.clear()
