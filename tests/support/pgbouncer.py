"""A real PgBouncer for tests, in front of a throwaway cluster or any server.

    with PgBouncer(upstream_port=cluster.port, pool_size=2).running() as bouncer:
        bouncer.url("market")          # what the app's <P>_DATABASE_URL points at
        bouncer.show("POOLS")          # the admin console, as dicts

Transaction pooling, trust auth for the test user, and no
`ignore_startup_parameters`: the app must connect through it with nothing in
the startup packet PgBouncer does not track (no libpq `options`). Runs as
`postgres` when the tests run as root, because pgbouncer refuses root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.support.pgcluster import IS_ROOT, as_postgres, free_port, wait_for


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
    if not found:
        raise RuntimeError("pgbouncer is not installed (Debian: apt-get install -y pgbouncer)")
    return found


class PgBouncer:
    def __init__(
        self,
        *,
        upstream_port: int,
        upstream_host: str = "127.0.0.1",
        pool_mode: str = "transaction",
        pool_size: int = 4,
        max_client_conn: int = 200,
        user: str = "postgres",
        extra: dict[str, str] | None = None,
    ):
        self.port = free_port()
        self.user = user
        self.root = Path(tempfile.mkdtemp(prefix="pgbouncer-test-"))
        self.log = self.root / "pgbouncer.log"
        self.settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(self.port),
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(self.root / "userlist.txt"),
            "admin_users": user,
            "pool_mode": pool_mode,
            "default_pool_size": str(pool_size),
            "min_pool_size": "0",
            "reserve_pool_size": "0",
            "max_client_conn": str(max_client_conn),
            "server_reset_query": "DISCARD ALL",
            "server_check_delay": "0",
            "logfile": str(self.log),
            "pidfile": str(self.root / "pgbouncer.pid"),
            **(extra or {}),
        }
        # Every database name is forwarded to the upstream server under the same name.
        self.databases = {"*": f"host={upstream_host} port={upstream_port}"}
        self.proc: subprocess.Popen | None = None

    def write_config(self) -> Path:
        ini = self.root / "pgbouncer.ini"
        lines = [
            "[databases]",
            *(f"{k} = {v}" for k, v in self.databases.items()),
            "",
            "[pgbouncer]",
            *(f"{k} = {v}" for k, v in self.settings.items()),
        ]
        ini.write_text("\n".join(lines) + "\n")
        (self.root / "userlist.txt").write_text(f'"{self.user}" ""\n')
        if IS_ROOT:
            for path in (self.root, *self.root.iterdir()):
                shutil.chown(path, "postgres", "postgres")
        return ini

    def start(self) -> PgBouncer:
        ini = self.write_config()
        self.proc = subprocess.Popen(
            as_postgres([pgbouncer_binary(), str(ini)]),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for(self._ready, timeout=30, what=f"pgbouncer on port {self.port}")
        return self

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"pgbouncer exited with {self.proc.returncode}:\n{self.output()}")
        try:
            with self.admin() as conn:
                conn.execute("SHOW VERSION")
            return True
        except psycopg.Error:
            return False

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            # SIGTERM is pgbouncer's immediate shutdown; the process group holds runuser and pgbouncer.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @contextlib.contextmanager
    def running(self):
        self.start()
        try:
            yield self
        finally:
            self.destroy()

    # -- access --------------------------------------------------------
    def url(self, dbname: str) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str, **kwargs) -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            dbname=dbname,
            autocommit=True,
            connect_timeout=2,
            **kwargs,
        )

    def admin(self) -> psycopg.Connection:
        # The console speaks only the simple query protocol.
        return self.connect("pgbouncer", prepare_threshold=None)

    def show(self, what: str) -> list[dict]:
        with self.admin() as conn:
            cur = conn.cursor()
            cur.execute(f"SHOW {what}".encode(), prepare=False)
            names = [d.name for d in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]
