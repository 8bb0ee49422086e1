"""A long job's own database backend at a lower CPU priority, when the server runs on this host.

`nice` lowers the job's own process, but much of a bulk job's CPU is spent by
its PostgreSQL backend (COPY, index maintenance, upserts), and the server runs
every backend at the same priority: the job's backend competes on equal terms
with the backends serving web requests. When the server runs on this host and
the OS allows it, `lowered_backend_priority` renices the job's own backend for
the duration of the job, as the `prioritize` extension's `set_backend_priority`
does from inside the server, then puts it back.

It is done only when it is certain to hit the right process:

- a direct connection (never behind a transaction pooler: there a server
  session is shared by many clients, one transaction after another);
- the connection's host is this machine: a unix-socket directory, or an
  address that is a loopback address (`localhost`, 127.0.0.1, ::1);
- `pg_backend_pid()` names a process here whose title is a PostgreSQL
  backend's (`postgres: <user> <database> <client> ...`) for this connection's
  user and database, and for TCP, this connection's own client port (another
  server reached through a forwarded port, in another pid namespace, does not
  match).

Anything else (another host, a pooler, no permission: renicing a process of
another user needs root or CAP_SYS_NICE) leaves the backend as it is and says
why; it never fails the job. Putting the priority back needs the same
privilege; when that fails, the connection is closed instead, so no lowered
backend goes back into a pool.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import connections

from config.multidb.conf.aliases import alias_or_none

Log = Callable[[str], None]


def _quiet(message: str) -> None:
    pass


@contextmanager
def lowered_backend_priority(alias: str, nice: int, log: Log = _quiet) -> Iterator[int | None]:
    """Lower the CPU priority of `alias`'s current backend by `nice` for the block; yields its pid or None."""
    pid = before = None
    if nice > 0:
        try:
            pid, before = _lower(alias, nice, log)
        except Exception as exc:  # never the job's failure
            log(f"database backend priority left as it is: {type(exc).__name__}: {exc}")
    try:
        yield pid
    finally:
        if pid is not None:
            _restore(alias, pid, before, log)


def _lower(alias: str, nice: int, log: Log) -> tuple[int | None, int | None]:
    info = alias_or_none(alias)
    if info is not None and info.pooler == "transaction":
        log("database backend priority left as it is: behind a transaction pooler a server session is shared")
        return None, None
    wrapper = connections[alias]
    wrapper.ensure_connection()
    conn = wrapper.connection
    where = local_server(conn)
    if where is None:
        log(f"database backend priority left as it is: the server ({conn.info.host}) is not on this host")
        return None, None
    with wrapper.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        pid = cur.fetchone()[0]
    if not is_own_backend(pid, conn):
        log(f"database backend priority left as it is: pid {pid} is not this connection's backend on this host")
        return None, None
    before = os.getpriority(os.PRIO_PROCESS, pid)
    target = min(19, before + nice)
    if target == before:
        return None, None
    try:
        os.setpriority(os.PRIO_PROCESS, pid, target)
    except OSError as exc:
        log(f"database backend priority left as it is: renicing pid {pid} not allowed ({exc.strerror})")
        return None, None
    log(f"lowered the CPU priority of its database backend (pid {pid}, {where}) from nice {before} to {target}")
    return pid, before


def _restore(alias: str, pid: int, before: int, log: Log) -> None:
    wrapper = connections[alias]
    conn = wrapper.connection
    if conn is None or conn.closed:
        return  # the backend is gone with its connection (and the pid may be someone else's by now)
    try:
        if not is_own_backend(pid, conn):
            return
        os.setpriority(os.PRIO_PROCESS, pid, before)
        log(f"database backend (pid {pid}) back to nice {before}")
    except OSError as exc:
        # Cannot raise it back (no CAP_SYS_NICE): drop the connection rather than pool a slowed backend.
        log(f"database backend (pid {pid}) kept its lower priority ({exc.strerror}): closing its connection")
        try:
            conn.close()
        finally:
            wrapper.close()


def local_server(conn) -> str | None:
    """How `conn` (psycopg) reaches a server on this host: "unix socket" or "loopback"; None otherwise."""
    host = conn.info.host or ""
    if host.startswith("/") or host.startswith("@"):
        return "unix socket"
    candidates = [conn.info.hostaddr or "", host]
    for candidate in candidates:
        try:
            if ipaddress.ip_address(candidate.split("%", 1)[0]).is_loopback:
                return "loopback"
        except ValueError:
            continue
    return None


def is_own_backend(pid: int, conn) -> bool:
    """Whether process `pid` here is the PostgreSQL backend serving `conn` (see the module docstring)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            title = f.read().replace(b"\x00", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return False
    if not title.startswith("postgres:"):
        return False
    words = title.split()
    if conn.info.user not in words or conn.info.dbname not in words:
        return False
    family = socket.AF_UNIX
    try:
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as sock:
            family, name = sock.family, sock.getsockname()
    except OSError:
        return False
    if family == socket.AF_UNIX:
        return "[local]" in words
    return f"({name[1]})" in title
