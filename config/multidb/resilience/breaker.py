"""A circuit breaker per alias per process.

After `DATABASE_BREAKER_FAILURES` connection failures in a row the breaker
opens: every request for that alias fails at once (a 503 in milliseconds
instead of a pool timeout). While it is open, one background thread probes the
database every `DATABASE_BREAKER_OPEN_SECONDS` with a fresh connection (never a
user's request); the first probe that gets an answer closes the breaker. Any
connection that succeeds meanwhile (a pool refill, a readiness check) closes it
too.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from django.conf import settings

from config.multidb.lifecycle import after_fork
from config.multidb.resilience.connect import answers

log = logging.getLogger("config.multidb.resilience.breaker")


class DatabaseUnavailable(Exception):
    """An alias cannot be used right now. Never carries a password.

    `reason` is a short stable word (breaker_open, pool_timeout, pool_full,
    busy, connect_failed) that goes into the 503 body.
    """

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
    probe: Callable[[], bool] | None = None
    failures: int = 0
    opened_at: float | None = None
    opened_total: int = 0
    probes_total: int = 0
    last_error: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _wake: threading.Event = field(default_factory=threading.Event, repr=False)
    _prober: threading.Thread | None = field(default=None, repr=False)
    _stopped: bool = field(default=False, repr=False)

    @property
    def state(self) -> str:
        """closed, or open (a background probe is running or due)."""
        return "closed" if self.opened_at is None else "open"

    @property
    def probing(self) -> bool:
        return self._prober is not None and self._prober.is_alive()

    def before(self) -> None:
        """Raise DatabaseUnavailable at once while the breaker is open."""
        opened_at = self.opened_at
        if opened_at is None:
            return
        waited = time.monotonic() - opened_at
        retry = max(self.open_seconds - waited % max(self.open_seconds, 0.001), 0.1)
        raise DatabaseUnavailable(self.alias, "breaker_open", retry_after=retry)

    def success(self) -> None:
        if self.failures or self.opened_at is not None:
            with self._lock:
                was_open = self.opened_at is not None
                self.failures = 0
                self.opened_at = None
                self._wake.set()
            if was_open:
                log.warning("database %r answers again: circuit breaker closed", self.alias)

    def failure(self, error: str = "") -> None:
        """One more failure in a row; `error` (no password in it) is kept for the log line."""
        with self._lock:
            self.failures += 1
            if error:
                self.last_error = error
            if self.opened_at is not None or self.failures < self.failures_to_open or self._stopped:
                return
            self.opened_at = time.monotonic()
            self.opened_total += 1
            self._wake.clear()
            if not self.probing:
                self._prober = threading.Thread(target=self._probe_loop, name=f"breaker-{self.alias}", daemon=True)
                self._prober.start()
        log.warning(
            "database %r failed %d times in a row: circuit breaker open (last error: %s)",
            self.alias,
            self.failures,
            self.last_error or "-",
        )

    def stop(self) -> None:
        """End the prober (tests, fork): the breaker is forgotten."""
        with self._lock:
            self._stopped = True
            self._wake.set()

    def _probe_loop(self) -> None:
        probe = self.probe or functools.partial(answers, self.alias)
        while True:
            # Woken early only by a close (success) or stop().
            self._wake.wait(self.open_seconds)
            if self._stopped or self.opened_at is None:
                return
            self.probes_total += 1
            try:
                ok = probe()
            except Exception:  # a probe that cannot even run counts as a failed probe
                log.exception("probe of database %r failed to run", self.alias)
                ok = False
            if ok:
                self.success()
                return


_breakers: dict[str, Breaker] = {}
_lock = threading.Lock()


def breaker_for(alias: str) -> Breaker:
    try:
        return _breakers[alias]
    except KeyError:
        with _lock:
            return _breakers.setdefault(
                alias,
                Breaker(alias, settings.DATABASE_BREAKER_FAILURES, settings.DATABASE_BREAKER_OPEN_SECONDS),
            )


def all_breakers() -> dict[str, Breaker]:
    return dict(_breakers)


@after_fork
def reset_all() -> None:
    """Forget every breaker and stop their probes (after fork, and between tests)."""
    with _lock:
        for b in _breakers.values():
            b.stop()
        _breakers.clear()
