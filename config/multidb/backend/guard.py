"""Every blocking database call of this process, per alias: a bulkhead and a watchdog.

- Bulkhead: a call on an alias is refused at once (DatabaseUnavailable, 503)
  while `limit` calls on that alias have been running for longer than
  SLOW_CALL_S. A healthy call takes milliseconds, so this never sheds healthy
  load however busy; a hung or crawling database can hold at most `limit`
  threads plus the few that arrived within SLOW_CALL_S, so the other aliases
  keep the rest of the worker's threads.
- Watchdog: a statement still waiting for the server `grace` seconds after its
  statement_timeout means the server is not answering at all (hung, or the
  network is gone): its socket is shut down, so the waiting thread gets a
  connection error (503) instead of blocking until gunicorn kills the worker.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass

from config.multidb.lifecycle import after_fork
from config.multidb.resilience.breaker import DatabaseUnavailable

log = logging.getLogger("config.multidb.backend")

SLOW_CALL_S = 0.25  # a call older than this on loopback or a LAN is not healthy
TICK_S = 0.1  # watchdog resolution


@dataclass(eq=False)
class Call:
    alias: str
    started: float
    deadline: float | None = None
    sock: tuple[int, int, int] | None = None  # (fd, st_dev, st_ino) of the connection's socket
    killed: bool = False


class Guard:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: set[Call] = set()
        self._thread: threading.Thread | None = None
        self.kills = 0
        self.refusals = 0

    def slow_calls(self, alias: str, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        return sum(1 for c in list(self._calls) if c.alias == alias and now - c.started >= SLOW_CALL_S)

    def call(
        self, alias: str, *, limit: int = 0, sock: tuple[int, int, int] | None = None, timeout: float | None = None
    ) -> _Registered:
        """Register a blocking call (use as `with guard.call(...):`); refuse it when the alias's
        bulkhead is full. A plain context manager object: this runs twice per request."""
        now = time.monotonic()
        entry = Call(alias, now, now + timeout if (timeout and sock) else None, sock)
        with self._lock:
            if limit and self.slow_calls(alias, now) >= limit:
                self.refusals += 1
                raise DatabaseUnavailable(alias, "busy", retry_after=1.0)
            self._calls.add(entry)
        if entry.deadline is not None and (self._thread is None or not self._thread.is_alive()):
            self._start()
        return _Registered(self, entry)

    def reset(self) -> None:
        """Forget every call and the watchdog (after fork: the parent's calls and thread are not ours)."""
        self.__init__()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._watch, name="db-watchdog", daemon=True)
                self._thread.start()

    def _watch(self) -> None:
        tick = threading.Event()
        while True:
            tick.wait(TICK_S)
            now = time.monotonic()
            with self._lock:
                # Under the lock: a registered call's connection cannot be closed
                # (its owner must unregister first), so the fd is still its socket.
                for c in self._calls:
                    if c.deadline is not None and not c.killed and now >= c.deadline:
                        c.killed = True
                        if _shutdown(c.sock):
                            self.kills += 1
                            log.warning(
                                "database %r did not answer a statement within its timeout plus grace: connection cut",
                                c.alias,
                            )


class _Registered:
    __slots__ = ("guard", "entry")

    def __init__(self, guard: Guard, entry: Call) -> None:
        self.guard, self.entry = guard, entry

    def __enter__(self) -> Call:
        return self.entry

    def __exit__(self, *exc) -> bool:
        with self.guard._lock:
            self.guard._calls.discard(self.entry)
        return False


def socket_identity(fd: int) -> tuple[int, int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return fd, st.st_dev, st.st_ino


def _shutdown(sock: tuple[int, int, int] | None) -> bool:
    if sock is None or socket_identity(sock[0]) != sock:
        return False  # closed (or reused for something else) meanwhile: not ours to cut
    try:
        with socket.socket(fileno=os.dup(sock[0])) as s:
            s.shutdown(socket.SHUT_RDWR)
    except OSError:
        return False
    return True


guard = Guard()
after_fork(guard.reset)
